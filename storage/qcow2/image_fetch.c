/* Fetching one image into a partial file: libcurl, retries, resume, incremental sha256.
 *
 * Everything here belongs to the calling thread: one CURL handle per fetch, no shared state
 * (the cache makes sure that one sha256 is fetched by one thread at a time).  Attempts are
 * classified as done, transient (retried after a backoff, resuming), restart (the server
 * ignored the Range: empty the file and ask again at once) or failed.  The file always holds
 * exactly the bytes hashed so far, so a resume continues the same hash. */
#include "storage/qcow2/image_cache-private.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_BACKOFF_MS 60000u
#define MAX_REDIRECTS 5L
#define HASH_CHUNK (1u << 20)

/* The URL for messages and logs: no userinfo, query or fragment (they may hold secrets).
 * Also checks the scheme: a file:// URL would read any file the agent (root) can. */
int
qcow2_image_url_for_display(const char *url, char **shown, struct na_error **err)
{
    cleanup_curlu CURLU *u = curl_url();
    if (!u)
        abort();
    if (!url || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        return na_error_field(err, "url", "image cache: the image URL is not a valid URL");
    char *scheme = NULL;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
        return na_error_field(err, "url", "image cache: the image URL has no scheme");
    bool ok = !strcmp(scheme, "http") || !strcmp(scheme, "https");
    cleanup_free char *scheme_copy = na_xstrdup(scheme);
    curl_free(scheme);
    if (!ok)
        return na_error_field(err, "url", "image cache: URL scheme \"%s\" is not http or https",
                              scheme_copy);
    curl_url_set(u, CURLUPART_USER, NULL, 0);
    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
    curl_url_set(u, CURLUPART_OPTIONS, NULL, 0);
    curl_url_set(u, CURLUPART_QUERY, NULL, 0);
    curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
    char *s = NULL;
    if (curl_url_get(u, CURLUPART_URL, &s, 0) != CURLUE_OK)
        return na_error_field(err, "url", "image cache: the image URL is not a valid URL");
    *shown = na_xstrdup(s);
    curl_free(s);
    return 0;
}

/* One transfer, owned by the downloading thread. */
struct xfer {
    const struct qcow2_image_cache_config *cfg;
    const char *url;
    const char *shown_url; /* for messages */
    const char *sha256;
    const char *part_path;
    int fd;
    uint64_t size; /* bytes in the part file; all of them are hashed into md */
    EVP_MD_CTX *md;
    bool resumed;    /* some attempt started with bytes kept from before */
    bool too_big;    /* the write callback stopped at max_image_size */
    uint64_t room;   /* the quota's room for the part file; UINT64_MAX: none */
    bool over_quota; /* the transfer stopped at room */
    /* The total bound: the fetch started at t0_ns; expected is the size the bound is
     * computed from (the announced one once known). */
    uint64_t t0_ns;
    uint64_t expected;
    uint64_t attempt_start; /* bytes kept when this attempt started */
    CURL *curl;
    bool over_time;  /* the progress callback stopped the transfer at the bound */
    int write_errno; /* the write callback could not write */
    char errbuf[CURL_ERROR_SIZE];
    struct qcow2_addr_gate gate; /* the address check of this fetch's connections */
};

static size_t
on_data(char *data, size_t size, size_t nmemb, void *opaque)
{
    struct xfer *x = opaque;
    size_t n = size * nmemb;
    /* Chunked responses announce no length: the limit is enforced here too. */
    if (n > x->cfg->max_image_size - x->size) {
        x->too_big = true;
        return 0;
    }
    if (n > x->room - NA_MIN(x->room, x->size)) {
        x->over_quota = true;
        return 0;
    }
    for (size_t done = 0; done < n;) {
        ssize_t w = pwrite(x->fd, data + done, n - done, (off_t)(x->size + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            x->write_errno = errno;
            return 0;
        }
        done += (size_t)w;
    }
    if (!EVP_DigestUpdate(x->md, data, n))
        abort();
    x->size += n;
    return n;
}

/* Seconds a whole fetch may take: connect and one stall window, then the expected size at
 * min_rate.  UINT64_MAX without a min_rate. */
static uint64_t
xfer_bound_s(const struct xfer *x)
{
    const struct qcow2_image_cache_config *cfg = x->cfg;
    if (!cfg->min_rate)
        return UINT64_MAX;
    return (uint64_t)cfg->connect_timeout_s + cfg->stall_timeout_s + x->expected / cfg->min_rate;
}

static bool
xfer_past_bound(const struct xfer *x, uint64_t extra_ms)
{
    uint64_t bound_s = xfer_bound_s(x);
    uint64_t elapsed_ms = (na_mono_ns() - x->t0_ns) / 1000000 + extra_ms;
    return bound_s != UINT64_MAX && elapsed_ms > bound_s * 1000;
}

/* libcurl's progress callback: learns the announced size, and stops a transfer that would
 * not fit in the quota or has run past the total bound. */
static int
on_progress(void *opaque, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
            curl_off_t ulnow)
{
    (void)dlnow, (void)ultotal, (void)ulnow;
    struct xfer *x = opaque;
    long status = 0;
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
    if (dltotal > 0 && (status == 200 || status == 206)) { /* not an error page's length */
        uint64_t total = x->attempt_start + (uint64_t)dltotal;
        x->expected = NA_MIN(total, x->cfg->max_image_size);
        if (total > x->room) {
            x->over_quota = true;
            return 1;
        }
    }
    if (xfer_past_bound(x, 0)) {
        x->over_time = true;
        return 1;
    }
    return 0;
}

/* Empties the part file and the hash: the next attempt starts from byte 0. */
static int
xfer_restart(struct xfer *x, struct na_error **err)
{
    if (ftruncate(x->fd, 0) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: truncate %s", x->part_path);
    if (!EVP_DigestInit_ex(x->md, EVP_sha256(), NULL))
        abort();
    x->size = 0;
    return 0;
}

/* Hashes what the part file already holds (a download interrupted earlier). */
static int
xfer_hash_kept(struct xfer *x, struct na_error **err)
{
    struct stat st;
    if (fstat(x->fd, &st) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: stat %s", x->part_path);
    if (!EVP_DigestInit_ex(x->md, EVP_sha256(), NULL))
        abort();
    x->size = 0;
    if ((uint64_t)st.st_size > x->cfg->max_image_size)
        return xfer_restart(x, err);
    cleanup_free uint8_t *buf = na_xmalloc(HASH_CHUNK);
    while (x->size < (uint64_t)st.st_size) {
        ssize_t n = pread(x->fd, buf, HASH_CHUNK, (off_t)x->size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: read %s", x->part_path);
        if (n == 0)
            break;
        if (!EVP_DigestUpdate(x->md, buf, (size_t)n))
            abort();
        x->size += (uint64_t)n;
    }
    return 0;
}

static void
xfer_digest(const struct xfer *x, char out[QCOW2_SHA256_HEX_LEN + 1])
{
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    unsigned char md[32];
    unsigned int md_size = 0;
    if (!copy || !EVP_MD_CTX_copy_ex(copy, x->md) || !EVP_DigestFinal_ex(copy, md, &md_size) ||
        md_size != sizeof(md))
        abort();
    EVP_MD_CTX_free(copy);
    for (size_t i = 0; i < sizeof(md); i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

enum attempt_result {
    ATTEMPT_DONE,
    ATTEMPT_TRANSIENT, /* retry, resuming */
    ATTEMPT_RESTART,   /* the server ignored the Range: start again from 0, at once */
    ATTEMPT_FAILED,    /* permanent */
};

/* "received X of Y bytes" (Y unknown without a Content-Length). */
static char *
bytes_text(uint64_t received, int64_t expected)
{
    if (expected < 0)
        return na_xasprintf("received %" PRIu64 " bytes of an unknown length", received);
    return na_xasprintf("received %" PRIu64 " of %" PRId64 " bytes", received, expected);
}

/* One request.  Sets *err to a message about this attempt unless it is DONE or RESTART. */
static enum attempt_result
xfer_attempt(struct xfer *x, CURL *curl, struct na_error **err)
{
    const struct qcow2_image_cache_config *cfg = x->cfg;
    uint64_t start = x->size;
    if (start > 0)
        x->resumed = true;
    uint64_t room = cfg->max_image_size - start;
    x->too_big = false;
    x->over_quota = false;
    x->over_time = false;
    x->attempt_start = start;
    x->write_errno = 0;
    x->errbuf[0] = '\0';
    x->gate.refused_addr[0] = '\0';
    x->gate.last_refused = false;
    curl_easy_setopt(curl, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)start);
    curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)(room ? room : 1));

    CURLcode rc = curl_easy_perform(curl);

    long status = 0;
    curl_off_t length = -1; /* of this response's body */
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length);
    int64_t expected = length >= 0 ? (int64_t)(start + (uint64_t)length) : -1;
    cleanup_free char *bytes = bytes_text(x->size, expected);
    const char *detail = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);

    /* Refused, not a network failure to retry.  (When the check let another address of the
     * name through after a refused one, what happened there is the outcome.) */
    if (rc == CURLE_COULDNT_CONNECT && x->gate.last_refused) {
        na_error_quiet(err, NA_CODE_IMAGE, EACCES,
                       "connection to %s refused: it is %s, not in [image_cache] "
                       "allowed_networks",
                       x->gate.refused_addr, x->gate.refused_why);
        return ATTEMPT_FAILED;
    }
    if (x->over_quota) {
        na_error_set(err, NA_CODE_NO_CAPACITY, ENOSPC,
                     "the image cache's quota ([image_cache] max_size_gib) leaves room for %" PRIu64
                     " more bytes: %s",
                     x->room, bytes);
        return ATTEMPT_FAILED;
    }
    if (x->over_time) {
        na_error_set(err, NA_CODE_IMAGE, ETIMEDOUT,
                     "slower than [image_cache] min_rate_kib: not done after %" PRIu64
                     " s, the bound for %" PRIu64 " bytes (%s)",
                     xfer_bound_s(x), x->expected, bytes);
        return ATTEMPT_FAILED;
    }
    switch (rc) {
    case CURLE_OK:
        /* 200 or 206 (redirects were followed). */
        if (status != 200 && status != 206) {
            na_error_set(err, NA_CODE_IMAGE, 0, "unexpected HTTP status %ld, %s", status, bytes);
            return ATTEMPT_FAILED;
        }
        /* A 200 to a Range request whose length equals the kept part: libcurl calls that
         * complete without writing anything, but the kept bytes did not hash right (or we
         * would not be here), so they are not trusted: the whole file comes again. */
        if (start > 0 && status == 200)
            return ATTEMPT_RESTART;
        if (expected >= 0 && x->size != (uint64_t)expected) {
            na_error_set(err, NA_CODE_IMAGE, 0, "truncated: %s", bytes);
            return ATTEMPT_TRANSIENT;
        }
        return ATTEMPT_DONE;
    case CURLE_RANGE_ERROR:
        /* libcurl refuses a 200 answer to a Range request: the whole file comes again. */
        return ATTEMPT_RESTART;
    case CURLE_HTTP_RETURNED_ERROR:
        if (status == 416 && start > 0)
            return ATTEMPT_RESTART; /* the kept part does not fit the file any more */
        /* Only the status: the length and bytes would be those of the error page. */
        na_error_set(err, NA_CODE_IMAGE, 0, "HTTP status %ld", status);
        return qcow2_http_status_is_transient(status) ? ATTEMPT_TRANSIENT : ATTEMPT_FAILED;
    case CURLE_WRITE_ERROR:
        if (x->too_big) {
            na_error_set(err, NA_CODE_IMAGE, EFBIG,
                         "the image exceeds the limit of %" PRIu64 " bytes (%s)",
                         cfg->max_image_size, bytes);
        } else if (x->write_errno) {
            na_error_set(err, NA_CODE_STORAGE, x->write_errno, "write %s", x->part_path);
        } else {
            na_error_set(err, NA_CODE_IMAGE, 0, "%s (%s)", detail, bytes);
        }
        return ATTEMPT_FAILED;
    case CURLE_FILESIZE_EXCEEDED:
        if (expected >= 0)
            na_error_set(err, NA_CODE_IMAGE, EFBIG,
                         "the server announces %" PRId64 " bytes, above the limit of %" PRIu64,
                         expected, cfg->max_image_size);
        else
            na_error_set(err, NA_CODE_IMAGE, EFBIG,
                         "the server announces a size above the limit of %" PRIu64 " bytes",
                         cfg->max_image_size);
        return ATTEMPT_FAILED;
    case CURLE_PARTIAL_FILE:
        na_error_set(err, NA_CODE_IMAGE, 0, "truncated: %s (%s)", bytes, detail);
        return ATTEMPT_TRANSIENT;
    case CURLE_OPERATION_TIMEDOUT:
        na_error_set(err, NA_CODE_IMAGE, 0, "timed out: %s (%s)", bytes, detail);
        return ATTEMPT_TRANSIENT;
    default:
        if (status)
            na_error_set(err, NA_CODE_IMAGE, 0, "%s (HTTP status %ld, %s)", detail, status, bytes);
        else
            na_error_set(err, NA_CODE_IMAGE, 0, "%s (%s)", detail, bytes);
        return qcow2_curl_error_is_transient(rc) ? ATTEMPT_TRANSIENT : ATTEMPT_FAILED;
    }
}

static CURL *
xfer_curl(struct xfer *x)
{
    const struct qcow2_image_cache_config *cfg = x->cfg;
    CURL *c = curl_easy_init();
    if (!c)
        abort();
    curl_easy_setopt(c, CURLOPT_URL, x->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, qcow2_addr_gate_open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, &x->gate);
    /* A proxy would connect on our behalf, past the address check: none, whatever the
     * environment says. */
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, MAX_REDIRECTS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* worker threads: no SIGALRM */
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "nodeagent-image-cache");
    if (cfg->connect_timeout_s)
        curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)cfg->connect_timeout_s);
    if (cfg->stall_timeout_s) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, (long)NA_MAX(cfg->min_rate, 1));
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)cfg->stall_timeout_s);
    }
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, cfg->tls_verify ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, cfg->tls_verify ? 2L : 0L);
    if (cfg->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, cfg->ca_file);
    return c;
}

/* Brings the part file to the whole image: attempts with retries, backoff and resume.
 * Returns 0 when a transfer completed; otherwise *transient tells whether the last failure
 * was a transient one (the part file is then worth keeping). */
static int
xfer_fetch(struct xfer *x, bool *transient, struct na_error **err)
{
    const struct qcow2_image_cache_config *cfg = x->cfg;
    cleanup_curl CURL *curl = xfer_curl(x);
    x->curl = curl;
    unsigned n_attempts = cfg->retries + 1;
    *transient = false;
    for (unsigned attempt = 1;; attempt++) {
        cleanup_error struct na_error *e = NULL;
        uint64_t start = x->size;
        enum attempt_result r = xfer_attempt(x, curl, &e);
        while (r == ATTEMPT_RESTART) {
            na_log(NA_LOG_INFO, NULL, "image download: the server does not resume, starting over",
                   "sha256=%s url=%s kept=%" PRIu64, x->sha256, x->shown_url, start);
            int ret = xfer_restart(x, err);
            if (ret < 0)
                return ret;
            start = 0;
            r = xfer_attempt(x, curl, &e); /* from 0: cannot be RESTART again */
        }
        if (r == ATTEMPT_DONE)
            return 0;
        if (r == ATTEMPT_FAILED || attempt >= n_attempts) {
            *transient = r == ATTEMPT_TRANSIENT;
            int ret = -(e->status ? e->status : 1);
            if (err && !*err)
                *err = na_steal(&e);
            if (n_attempts > 1 && *transient)
                na_error_wrap(err, "gave up after %u attempts", attempt);
            return ret;
        }
        uint64_t delay = (uint64_t)cfg->backoff_ms << (attempt - 1 < 16 ? attempt - 1 : 16);
        if (delay > MAX_BACKOFF_MS)
            delay = MAX_BACKOFF_MS;
        if (xfer_past_bound(x, delay)) {
            int ret = -(e->status ? e->status : 1);
            if (err && !*err)
                *err = na_steal(&e);
            *transient = true;
            na_error_wrap(err,
                          "gave up after %u attempts: another would end past the bound of "
                          "%" PRIu64 " s ([image_cache] min_rate_kib)",
                          attempt, xfer_bound_s(x));
            return ret;
        }
        char quoted[512];
        na_log(NA_LOG_WARN, NULL, "image download attempt failed, retrying",
               "sha256=%s url=%s attempt=%u of=%u delay_ms=%" PRIu64 " error=%s", x->sha256,
               x->shown_url, attempt, n_attempts, delay,
               na_log_quote(quoted, sizeof(quoted), e->msg));
        qcow2_sleep_ms(delay);
    }
}

int
qcow2_image_fetch(const struct qcow2_image_cache_config *cfg, const char *url,
                  const char *shown_url, const char *sha256, const char *part_path, uint64_t room,
                  uint64_t *size_out, struct na_error **err)
{
    cleanup_close int fd = open(part_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: open %s", part_path);
    struct xfer x = {
        .cfg = cfg,
        .url = url,
        .shown_url = shown_url,
        .sha256 = sha256,
        .part_path = part_path,
        .fd = fd,
        .md = EVP_MD_CTX_new(),
        .room = room,
        .t0_ns = na_mono_ns(),
        .expected = cfg->max_image_size,
        .gate = {.allowed = cfg->allowed_networks, .n_allowed = cfg->n_allowed_networks},
    };
    if (!x.md)
        abort();
    char actual[QCOW2_SHA256_HEX_LEN + 1] = "";
    bool keep_part = false;
    int ret = xfer_hash_kept(&x, err);
    if (ret < 0)
        goto out;
    if (x.size > 0) {
        xfer_digest(&x, actual);
        if (strcmp(actual, sha256) == 0)
            goto verified; /* an earlier download got every byte but was not published */
    }
    na_log(NA_LOG_INFO, NULL, "image download started", "sha256=%s url=%s resume_from=%" PRIu64,
           sha256, shown_url, x.size);

    for (int pass = 0;; pass++) {
        bool transient = false;
        ret = xfer_fetch(&x, &transient, err);
        if (ret < 0) {
            keep_part = transient;
            na_error_wrap(err, "image download %s (sha256 %s)", shown_url, sha256);
            goto out;
        }
        xfer_digest(&x, actual);
        if (strcmp(actual, sha256) == 0)
            break;
        /* The bytes kept from an earlier attempt may be the wrong ones: one fresh try. */
        if (pass == 0 && x.resumed) {
            na_log(NA_LOG_WARN, NULL, "image download: sha256 mismatch after resume, starting over",
                   "sha256=%s url=%s", sha256, shown_url);
            x.resumed = false;
            ret = xfer_restart(&x, err);
            if (ret < 0)
                goto out;
            continue;
        }
        /* Neither the digest nor the size of what was read: they would tell the requester
         * about content it may not know (and let it ask for that content by digest). */
        ret = na_error_set(err, NA_CODE_IMAGE, 0,
                           "image download %s: sha256 mismatch: the content did not match the "
                           "expected sha256 %s; the file was deleted",
                           shown_url, sha256);
        goto out;
    }

verified:
    if (fsync(fd) < 0)
        ret = na_error_set(err, NA_CODE_STORAGE, errno, "image cache: fsync %s", part_path);
    *size_out = x.size;

out:
    EVP_MD_CTX_free(x.md);
    if (ret < 0 && !keep_part)
        unlink(part_path);
    return ret;
}
