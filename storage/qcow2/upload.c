/* Uploading an exported image by HTTP PUT (export.h): libcurl, one handle per upload,
 * owned by the calling thread; every attempt sends the whole file from offset 0. */
#include "storage/qcow2/export.h"
#include "storage/qcow2/image_cache-private.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_BACKOFF_MS 60000u

struct upload {
    const struct qcow2_image_cache_config *cfg;
    int fd;
    uint64_t size;
    uint64_t offset; /* next byte to send in this attempt */
    int read_errno;
    void (*progress)(void *ctx, uint64_t sent, uint64_t total);
    void *ctx;
    uint64_t reported; /* bytes sent when progress was last called */
    struct qcow2_addr_gate gate;
    char errbuf[CURL_ERROR_SIZE];
    char answer[256]; /* the start of the server's answer, for messages */
    size_t answer_len;
};

/* The answer's body: its start is kept for the error message, the rest dropped. */
static size_t
on_answer(char *data, size_t size, size_t nmemb, void *opaque)
{
    struct upload *u = opaque;
    size_t n = size * nmemb, room = sizeof(u->answer) - 1 - u->answer_len;
    memcpy(u->answer + u->answer_len, data, NA_MIN(n, room));
    u->answer_len += NA_MIN(n, room);
    u->answer[u->answer_len] = '\0';
    return n;
}

static size_t
on_read(char *buf, size_t size, size_t nitems, void *opaque)
{
    struct upload *u = opaque;
    ssize_t n = pread(u->fd, buf, size * nitems, (off_t)u->offset);
    if (n < 0) {
        u->read_errno = errno;
        return CURL_READFUNC_ABORT;
    }
    u->offset += (uint64_t)n;
    return (size_t)n;
}

/* libcurl rewinds the body when it must send it again on one attempt. */
static int
on_seek(void *opaque, curl_off_t offset, int origin)
{
    struct upload *u = opaque;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > u->size)
        return CURL_SEEKFUNC_CANTSEEK;
    u->offset = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

static int
on_progress(void *opaque, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
            curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal;
    struct upload *u = opaque;
    uint64_t sent = ulnow > 0 ? (uint64_t)ulnow : 0;
    if (u->progress && (sent >= u->reported + u->size / 10 + 1 || sent == u->size) &&
        sent != u->reported) {
        u->reported = sent;
        u->progress(u->ctx, sent, u->size);
    }
    return 0;
}

static CURL *
upload_curl(struct upload *u, const char *url)
{
    const struct qcow2_image_cache_config *cfg = u->cfg;
    CURL *c = curl_easy_init();
    if (!c)
        abort();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, qcow2_addr_gate_open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &u->gate);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, u->errbuf);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)u->size);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, u);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, on_seek);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, u);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, u);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, u);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "nodeagent-export");
    if (cfg->connect_timeout_s)
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)cfg->connect_timeout_s);
    if (cfg->stall_timeout_s) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, (long)NA_MAX(cfg->min_rate, 1));
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)cfg->stall_timeout_s);
    }
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, cfg->tls_verify ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, cfg->tls_verify ? 2L : 0L);
    if (cfg->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, cfg->ca_file);
    return c;
}

/* One PUT.  Returns 0 when the server took it, 1 for a failure worth another attempt, or a
 * negative errno; *err says why unless it returns 0. */
static int
upload_attempt(struct upload *u, CURL *c, const char *shown, struct na_error **err)
{
    u->offset = 0;
    u->answer_len = 0;
    u->answer[0] = '\0';
    u->read_errno = 0;
    u->errbuf[0] = '\0';
    u->gate.refused_addr[0] = '\0';
    u->gate.last_refused = false;
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_COULDNT_CONNECT && u->gate.last_refused)
        return na_error_quiet(err, NA_CODE_IMAGE, EACCES,
                              "upload to %s: connection to %s refused: it is %s, not in "
                              "[image_cache] allowed_networks",
                              shown, u->gate.refused_addr, u->gate.refused_why);
    if (u->read_errno)
        return na_error_set(err, NA_CODE_STORAGE, u->read_errno, "read the image to upload");
    if (rc != CURLE_OK) {
        na_error_quiet(err, NA_CODE_IMAGE, EIO, "upload to %s: %s", shown,
                       u->errbuf[0] ? u->errbuf : curl_easy_strerror(rc));
        return qcow2_curl_error_is_transient(rc) ? 1 : -EIO;
    }
    if (status >= 200 && status < 300)
        return 0;
    /* The server's words, as printable ASCII: they go into an event. */
    u->answer[strcspn(u->answer, "\r\n")] = '\0';
    for (char *p = u->answer; *p; p++)
        if (*p < 0x20 || *p > 0x7e)
            *p = '?';
    na_error_quiet(err, NA_CODE_IMAGE, EIO, "upload to %s: the server answered HTTP %ld%s%s%s",
                   shown, status, u->answer[0] ? " (\"" : "", u->answer, u->answer[0] ? "\")" : "");
    return qcow2_http_status_is_transient(status) ? 1 : -EIO;
}

int
qcow2_export_upload(const struct qcow2_image_cache_config *cfg, int fd, const char *url,
                    void (*progress)(void *ctx, uint64_t sent, uint64_t total), void *ctx,
                    struct na_error **err)
{
    cleanup_free char *shown = NULL;
    int ret = qcow2_image_url_for_display(url, &shown, err);
    if (ret < 0)
        return ret;
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        return na_error_field(err, "upload_url", "upload URL %s: only http and https", shown);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "stat the image to upload");
    struct upload u = {
        .cfg = cfg,
        .fd = fd,
        .size = (uint64_t)st.st_size,
        .progress = progress,
        .ctx = ctx,
        .gate = {.allowed = cfg->allowed_networks, .n_allowed = cfg->n_allowed_networks},
    };
    cleanup_curl CURL *c = upload_curl(&u, url);
    for (unsigned attempt = 0;; attempt++) {
        cleanup_error struct na_error *e = NULL;
        ret = upload_attempt(&u, c, shown, &e);
        if (ret == 0)
            return 0;
        if (ret < 0 || attempt >= cfg->retries) {
            if (ret > 0)
                na_error_wrap(&e, "gave up after %u attempts", attempt + 1);
            ret = -(e->status ? e->status : 1);
            if (err && !*err)
                *err = na_steal(&e);
            return ret;
        }
        uint64_t delay =
            NA_MIN((uint64_t)cfg->backoff_ms << NA_MIN(attempt, 16u), (uint64_t)MAX_BACKOFF_MS);
        char quoted[512];
        na_log(NA_LOG_WARN, NULL, "upload attempt failed, retrying",
               "url=%s attempt=%u of=%u delay_ms=%" PRIu64 " error=%s", shown, attempt + 1,
               cfg->retries + 1, delay, na_log_quote(quoted, sizeof(quoted), e->msg));
        qcow2_sleep_ms(delay);
    }
}
