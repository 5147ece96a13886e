/* The image cache's internals shared by image_cache.c, image_fetch.c, http.c and upload.c (and
 * their tests). */
#ifndef NODEAGENT_IMAGE_CACHE_PRIVATE_H
#define NODEAGENT_IMAGE_CACHE_PRIVATE_H

#include "storage/qcow2/qcow2.h"

#include <curl/curl.h>
#include <netinet/in.h>

#define QCOW2_SHA256_HEX_LEN 64

/* Copies url into *shown (caller frees) without its userinfo, options, query and fragment,
 * which may hold secrets, for messages and logs.  Refuses (INVALID_ARGUMENT, field "url") a
 * URL libcurl cannot parse or whose scheme is not http, https or file. */
int qcow2_image_url_for_display(const char *url, char **shown, struct na_error **err);

/* Brings part_path to the image at url whose sha256 is `sha256` (lowercase hex), following
 * cfg's timeouts, size limit, retries, backoff and TLS settings.  What part_path already
 * holds is hashed first and resumed with a Range request (or is the whole image already).
 * The part file may grow to `room` bytes (what the cache's quota leaves; UINT64_MAX: no
 * quota), past which the fetch fails with NO_CAPACITY.
 * Returns 0 with the file complete, verified and fsynced, its size in *size_out.  On failure
 * the file is deleted, unless the last failure was transient (kept for a later resume).
 * Errors name shown_url, never url. */
int qcow2_image_fetch(const struct qcow2_image_cache_config *cfg, const char *url,
                      const char *shown_url, const char *sha256, const char *part_path,
                      uint64_t room, uint64_t *size_out, struct na_error **err);

/* http.c: shared by the download and the upload. */
static inline void
curl_cleanupp(CURL **c)
{
    if (*c)
        curl_easy_cleanup(*c);
}
static inline void
curlu_cleanupp(CURLU **u)
{
    if (*u)
        curl_url_cleanup(*u);
}
#define cleanup_curl __attribute__((cleanup(curl_cleanupp)))
#define cleanup_curlu __attribute__((cleanup(curlu_cleanupp)))

/* The address check of a transfer's connections (CURLOPT_OPENSOCKETFUNCTION
 * qcow2_addr_gate_open_socket, CURLOPT_OPENSOCKETDATA the gate): allowed and n_allowed are
 * the networks allowed although not public; the rest is the last connection the check
 * refused in this attempt, and whether it was the last one libcurl tried to open (a
 * connection it reuses is not opened again).  Clear those before each attempt. */
struct qcow2_addr_gate {
    const struct qcow2_cidr *allowed;
    size_t n_allowed;
    char refused_addr[INET6_ADDRSTRLEN];
    const char *refused_why;
    bool last_refused;
};
curl_socket_t qcow2_addr_gate_open_socket(void *opaque, curlsocktype purpose,
                                          struct curl_sockaddr *a);

/* Connection failures, timeouts and cut transfers: worth another attempt. */
bool qcow2_curl_error_is_transient(CURLcode rc);
/* 5xx, 408 and 429: worth another attempt. */
bool qcow2_http_status_is_transient(long status);
/* Sleeps ms milliseconds (restarted on EINTR): the backoff between attempts. */
void qcow2_sleep_ms(uint64_t ms);

#endif
