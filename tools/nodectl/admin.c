/* The agent's admin API over its unix socket (libcurl). */
#include "tools/nodectl/nodectl.h"

#include <curl/curl.h>
#include <string.h>

#define ADMIN_TIMEOUT_S 10L

struct body_buf {
    char *data;
    size_t size;
};

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct body_buf *b = userdata;
    size_t n = size * nmemb;
    b->data = na_xrealloc(b->data, b->size + n + 1);
    memcpy(b->data + b->size, ptr, n);
    b->size += n;
    b->data[b->size] = '\0';
    return n;
}

static void
curl_cleanupp(CURL **c)
{
    if (*c)
        curl_easy_cleanup(*c);
}

int
nodectl_admin_get(const char *socket_path, const char *path, long *http_status, json_t **body,
                  struct na_error **err)
{
    return nodectl_admin_request(socket_path, "GET", path, http_status, body, err);
}

int
nodectl_admin_request(const char *socket_path, const char *method, const char *path,
                      long *http_status, json_t **body, struct na_error **err)
{
    static bool global_done;
    if (!global_done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        global_done = true;
    }
    __attribute__((cleanup(curl_cleanupp))) CURL *c = curl_easy_init();
    if (!c)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "libcurl init failed");
    cleanup_free char *url = na_xasprintf("http://localhost%s", path);
    struct body_buf b = {0};
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, socket_path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, ADMIN_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    CURLcode cc = curl_easy_perform(c);
    cleanup_free char *data = b.data;
    if (cc != CURLE_OK)
        return na_error_set(err, NA_CODE_UNAVAILABLE, 0,
                            "cannot reach the agent's admin socket %s: %s", socket_path,
                            *curl_err ? curl_err : curl_easy_strerror(cc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http_status);
    json_error_t jerr;
    json_t *j = json_loadb(data ? data : "", b.size, JSON_DECODE_ANY, &jerr);
    if (!j)
        return na_error_set(err, NA_CODE_INTERNAL, 0,
                            "%s %s on %s: HTTP %ld, body is not JSON (%s): %.200s", method, path,
                            socket_path, *http_status, jerr.text, data ? data : "");
    *body = j;
    return 0;
}
