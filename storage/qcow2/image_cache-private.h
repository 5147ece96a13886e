/* The image cache's internals shared by image_cache.c and image_fetch.c (and their tests). */
#ifndef NODEAGENT_IMAGE_CACHE_PRIVATE_H
#define NODEAGENT_IMAGE_CACHE_PRIVATE_H

#include "storage/qcow2/qcow2.h"

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

#endif
