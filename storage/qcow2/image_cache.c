/* The image cache: download once, verify, validate, publish atomically, evict.
 *
 * Shared state is one table of the downloads in flight, under cache->lock.  A get first looks
 * there (and waits on the entry's condition variable when its sha256 is being downloaded),
 * then for the published file, and registers a download only when neither exists: the
 * check and the registration happen under the same lock, so one sha256 is downloaded once.
 * The downloader works without the lock, publishes the file, and only then removes its entry,
 * so a waiter woken by a success always finds the file.  Evict holds the lock while it scans,
 * so it never races with a publication or a get touching a file's mtime. */
#include "storage/qcow2/qcow2.h"

#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define SHA256_HEX_LEN 64
#define PARTIAL_DIR ".partial"
#define PARTIAL_SUFFIX ".part"
#define STALE_PARTIAL_AGE_S (24 * 3600)
#define MAX_BACKOFF_MS 60000u
#define MAX_REDIRECTS 5L
#define HASH_CHUNK (1u << 20)

struct download {
    struct download *next; /* cache->lock */
    char sha256[SHA256_HEX_LEN + 1];
    unsigned n_refs;        /* cache->lock: the downloader and its waiters */
    bool done;              /* cache->lock */
    struct na_error *error; /* cache->lock; set before done when the download failed */
    pthread_cond_t cond;    /* signalled, with cache->lock, when done turns true */
};

struct qcow2_image_cache {
    /* Immutable after open. */
    char *dir;
    char *partial_dir;
    char *ca_file;
    struct qcow2_image_cache_config cfg; /* dir and ca_file point at the copies above */

    pthread_mutex_t lock;
    struct download *downloads; /* cache->lock: in flight, by sha256 */
    size_t n_downloads;         /* cache->lock */
};

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

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc; /* written once under curl_once */

static void
curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

void
qcow2_image_cache_config_init(struct qcow2_image_cache_config *cfg)
{
    *cfg = (struct qcow2_image_cache_config){
        .max_image_size = 64ull << 30,
        .connect_timeout_s = 15,
        .stall_timeout_s = 60,
        .retries = 4,
        .backoff_ms = 1000,
        .tls_verify = true,
        .group = (gid_t)-1,
    };
    qcow2_limits_init(&cfg->limits);
}

/* --- small helpers --------------------------------------------------------------------- */

static struct na_error *
error_copy(const struct na_error *e)
{
    struct na_error *c = na_xcalloc(1, sizeof(*c));
    c->status = e->status;
    c->code = e->code;
    c->field = e->field ? na_xstrdup(e->field) : NULL;
    c->msg = na_xstrdup(e->msg);
    return c;
}

/* Lowercases a sha256 given in any case into out; false if it is not 64 hex digits. */
static bool
sha256_normalize(const char *in, char out[SHA256_HEX_LEN + 1])
{
    if (!in || strlen(in) != SHA256_HEX_LEN)
        return false;
    for (size_t i = 0; i < SHA256_HEX_LEN; i++) {
        if (!isxdigit((unsigned char)in[i]))
            return false;
        out[i] = (char)tolower((unsigned char)in[i]);
    }
    out[SHA256_HEX_LEN] = '\0';
    return true;
}

static bool
is_image_name(const char *name)
{
    if (strlen(name) != SHA256_HEX_LEN)
        return false;
    for (size_t i = 0; i < SHA256_HEX_LEN; i++)
        if (!isdigit((unsigned char)name[i]) && !(name[i] >= 'a' && name[i] <= 'f'))
            return false;
    return true;
}

static int
fsync_dir(const char *dir, struct na_error **err)
{
    cleanup_close int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: fsync directory %s", dir);
    return 0;
}

static int
make_dir(const char *path, mode_t mode, gid_t group, struct na_error **err)
{
    if (mkdir(path, mode) < 0 && errno != EEXIST)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: create directory %s", path);
    struct stat st;
    if (lstat(path, &st) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: stat %s", path);
    if (!S_ISDIR(st.st_mode))
        return na_error_set(err, NA_CODE_STORAGE, ENOTDIR, "image cache: %s", path);
    if (group != (gid_t)-1 && st.st_gid != group && chown(path, (uid_t)-1, group) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: chown %s to group %u", path,
                            (unsigned)group);
    return 0;
}

/* The URL for messages and logs: no userinfo, query or fragment (they may hold secrets).
 * Also checks the scheme. */
static int
url_for_display(const char *url, char **shown, struct na_error **err)
{
    cleanup_curlu CURLU *u = curl_url();
    if (!u)
        abort();
    if (!url || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        return na_error_field(err, "url", "image cache: the image URL is not a valid URL");
    char *scheme = NULL;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK)
        return na_error_field(err, "url", "image cache: the image URL has no scheme");
    bool ok = !strcmp(scheme, "http") || !strcmp(scheme, "https") || !strcmp(scheme, "file");
    cleanup_free char *scheme_copy = na_xstrdup(scheme);
    curl_free(scheme);
    if (!ok)
        return na_error_field(
            err, "url", "image cache: URL scheme \"%s\" is not http, https or file", scheme_copy);
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

static void
sleep_ms(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Removes partial files older than a day.  Called with no download running. */
static void
clean_partials(struct qcow2_image_cache *cache)
{
    DIR *d = opendir(cache->partial_dir);
    if (!d)
        return;
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (de->d_name[0] == '.' || fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (now - st.st_mtime < STALE_PARTIAL_AGE_S)
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            na_log(NA_LOG_INFO, NULL, "image cache: removed stale partial download", "file=%s/%s",
                   cache->partial_dir, de->d_name);
    }
    closedir(d);
}

/* --- open / close ---------------------------------------------------------------------- */

int
qcow2_image_cache_open(const struct qcow2_image_cache_config *cfg, struct qcow2_image_cache **out,
                       struct na_error **err)
{
    if (!cfg->dir || !*cfg->dir)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, EINVAL,
                            "image cache: no directory configured");
    if (cfg->max_image_size == 0)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, EINVAL,
                            "image cache: max_image_size is 0");
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "image cache: curl_global_init: %s",
                            curl_easy_strerror(curl_init_rc));

    int ret = make_dir(cfg->dir, 0750, cfg->group, err);
    if (ret < 0)
        return ret;
    cleanup_free char *partial = na_xasprintf("%s/" PARTIAL_DIR, cfg->dir);
    ret = make_dir(partial, 0700, (gid_t)-1, err);
    if (ret < 0)
        return ret;

    struct qcow2_image_cache *c = na_xcalloc(1, sizeof(*c));
    c->cfg = *cfg;
    c->dir = na_xstrdup(cfg->dir);
    c->partial_dir = na_steal(&partial);
    c->ca_file = cfg->ca_file ? na_xstrdup(cfg->ca_file) : NULL;
    c->cfg.dir = c->dir;
    c->cfg.ca_file = c->ca_file;
    c->cfg.limits.allow_backing = false; /* a base image is self-contained */
    pthread_mutex_init(&c->lock, NULL);
    clean_partials(c); /* nothing runs yet */
    *out = c;
    return 0;
}

void
qcow2_image_cache_close(struct qcow2_image_cache *cache)
{
    if (!cache)
        return;
    pthread_mutex_lock(&cache->lock);
    size_t n_downloads = cache->n_downloads;
    pthread_mutex_unlock(&cache->lock);
    if (n_downloads) { /* a caller bug: the downloading threads still use the cache */
        na_log(NA_LOG_ERROR, NULL, "image cache: closed with downloads running", "n=%zu",
               n_downloads);
        abort();
    }
    pthread_mutex_destroy(&cache->lock);
    free(cache->dir);
    free(cache->partial_dir);
    free(cache->ca_file);
    free(cache);
}

/* --- one download ---------------------------------------------------------------------- */

/* One transfer, owned by the downloading thread. */
struct xfer {
    const struct qcow2_image_cache *cache;
    const char *url;
    const char *shown_url; /* for messages */
    const char *sha256;
    const char *part_path;
    int fd;
    uint64_t size; /* bytes in the part file; all of them are hashed into md */
    EVP_MD_CTX *md;
    bool resumed;    /* some attempt started with bytes kept from before */
    bool too_big;    /* the write callback stopped at max_image_size */
    int write_errno; /* the write callback could not write */
    char errbuf[CURL_ERROR_SIZE];
};

static size_t
on_data(char *data, size_t size, size_t nmemb, void *opaque)
{
    struct xfer *x = opaque;
    size_t n = size * nmemb;
    /* Chunked responses announce no length: the limit is enforced here too. */
    if (n > x->cache->cfg.max_image_size - x->size) {
        x->too_big = true;
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
    if ((uint64_t)st.st_size > x->cache->cfg.max_image_size)
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
xfer_digest(const struct xfer *x, char out[SHA256_HEX_LEN + 1])
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

static bool
curl_error_is_transient(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_AGAIN:
        return true;
    default:
        return false;
    }
}

static bool
http_status_is_transient(long status)
{
    return status >= 500 || status == 408 || status == 429;
}

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
    const struct qcow2_image_cache_config *cfg = &x->cache->cfg;
    uint64_t start = x->size;
    if (start > 0)
        x->resumed = true;
    uint64_t room = cfg->max_image_size - start;
    x->too_big = false;
    x->write_errno = 0;
    x->errbuf[0] = '\0';
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

    switch (rc) {
    case CURLE_OK:
        /* file:// has no status; http(s) must be 200 or 206 (redirects were followed). */
        if (status != 0 && status != 200 && status != 206) {
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
        return http_status_is_transient(status) ? ATTEMPT_TRANSIENT : ATTEMPT_FAILED;
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
        return curl_error_is_transient(rc) ? ATTEMPT_TRANSIENT : ATTEMPT_FAILED;
    }
}

static CURL *
xfer_curl(struct xfer *x)
{
    const struct qcow2_image_cache_config *cfg = &x->cache->cfg;
    CURL *c = curl_easy_init();
    if (!c)
        abort();
    curl_easy_setopt(c, CURLOPT_URL, x->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https,file");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
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
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)cfg->stall_timeout_s);
    }
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
    const struct qcow2_image_cache_config *cfg = &x->cache->cfg;
    cleanup_curl CURL *curl = xfer_curl(x);
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
        char quoted[512];
        na_log(NA_LOG_WARN, NULL, "image download attempt failed, retrying",
               "sha256=%s url=%s attempt=%u of=%u delay_ms=%" PRIu64 " error=%s", x->sha256,
               x->shown_url, attempt, n_attempts, delay,
               na_log_quote(quoted, sizeof(quoted), e->msg));
        sleep_ms(delay);
    }
}

static int
publish(const struct qcow2_image_cache *cache, struct xfer *x, enum qcow2_format format,
        const char *final_path, struct na_error **err)
{
    struct qcow2_info info;
    int ret = qcow2_validate_format(x->fd, format, &cache->cfg.limits, &info, err);
    if (ret < 0)
        return na_error_wrap(err, "image %s (sha256 %s) refused as %s", x->shown_url, x->sha256,
                             qcow2_format_name(format));
    if (fchmod(x->fd, 0440) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: chmod %s", x->part_path);
    if (cache->cfg.group != (gid_t)-1 && fchown(x->fd, (uid_t)-1, cache->cfg.group) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: chown %s to group %u",
                            x->part_path, (unsigned)cache->cfg.group);
    /* Replacing is harmless: anything already there has this very content. */
    if (rename(x->part_path, final_path) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: rename %s to %s",
                            x->part_path, final_path);
    return fsync_dir(cache->dir, err);
}

/* Downloads, verifies, validates and publishes one image.  Runs without the lock; the
 * caller's entry in the download table keeps every other get of this sha256 waiting. */
static int
download(struct qcow2_image_cache *cache, const char *url, const char *shown_url,
         const char *sha256, enum qcow2_format format, struct na_error **err)
{
    cleanup_free char *part_path = na_xasprintf("%s/%s" PARTIAL_SUFFIX, cache->partial_dir, sha256);
    cleanup_free char *final_path = na_xasprintf("%s/%s", cache->dir, sha256);
    cleanup_close int fd = open(part_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: open %s", part_path);
    struct xfer x = {
        .cache = cache,
        .url = url,
        .shown_url = shown_url,
        .sha256 = sha256,
        .part_path = part_path,
        .fd = fd,
        .md = EVP_MD_CTX_new(),
    };
    if (!x.md)
        abort();
    uint64_t t0 = na_mono_ns();
    char actual[SHA256_HEX_LEN + 1] = "";
    bool keep_part = false;
    int ret = xfer_hash_kept(&x, err);
    if (ret < 0)
        goto out;
    if (x.size > 0) {
        xfer_digest(&x, actual);
        if (strcmp(actual, sha256) == 0)
            goto verified; /* an earlier download got every byte but was not published */
    }
    na_log(NA_LOG_INFO, NULL, "image download started",
           "sha256=%s url=%s format=%s resume_from=%" PRIu64, sha256, shown_url,
           qcow2_format_name(format), x.size);

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
                   "sha256=%s url=%s actual=%s", sha256, shown_url, actual);
            x.resumed = false;
            ret = xfer_restart(&x, err);
            if (ret < 0)
                goto out;
            continue;
        }
        ret = na_error_set(err, NA_CODE_IMAGE, 0,
                           "image download %s: sha256 mismatch: expected %s, got %s (%" PRIu64
                           " bytes); the file was deleted",
                           shown_url, sha256, actual, x.size);
        goto out;
    }

verified:
    if (fsync(fd) < 0) {
        ret = na_error_set(err, NA_CODE_STORAGE, errno, "image cache: fsync %s", part_path);
        goto out;
    }
    ret = publish(cache, &x, format, final_path, err);
    if (ret == 0)
        na_log(NA_LOG_INFO, NULL, "image published",
               "sha256=%s url=%s bytes=%" PRIu64 " duration_ms=%" PRIu64, sha256, shown_url, x.size,
               (na_mono_ns() - t0) / 1000000);

out:
    EVP_MD_CTX_free(x.md);
    if (ret < 0 && !keep_part)
        unlink(part_path);
    return ret;
}

/* --- get ------------------------------------------------------------------------------- */

static struct download *
find_download(struct qcow2_image_cache *cache, const char *sha256)
{
    for (struct download *d = cache->downloads; d; d = d->next)
        if (strcmp(d->sha256, sha256) == 0)
            return d;
    return NULL;
}

/* Drops one reference to d; called with cache->lock held. */
static void
download_unref(struct download *d)
{
    if (--d->n_refs > 0)
        return;
    pthread_cond_destroy(&d->cond);
    na_error_free(d->error);
    free(d);
}

/* Validates a cached file again: cheap (header and tables, no rehash) and it guards against
 * a file changed behind our back or limits lowered since it was published. */
static int
use_cached(struct qcow2_image_cache *cache, int fd, const char *path, enum qcow2_format format,
           struct qcow2_info *info, struct na_error **err)
{
    int ret = qcow2_validate_format(fd, format, &cache->cfg.limits, info, err);
    if (ret < 0)
        return na_error_wrap(err, "cached image %s refused as %s", path, qcow2_format_name(format));
    return 0;
}

int
qcow2_image_cache_get(struct qcow2_image_cache *cache, const char *url, const char *sha256,
                      const char *format, char **path_out, struct qcow2_info *info_out,
                      struct na_error **err)
{
    char sha[SHA256_HEX_LEN + 1];
    if (!sha256_normalize(sha256, sha))
        return na_error_field(err, "sha256", "image cache: sha256 \"%.80s\" is not 64 hex digits",
                              sha256 ? sha256 : "");
    enum qcow2_format fmt;
    int ret = qcow2_format_parse(format, "format", &fmt, err);
    if (ret < 0)
        return ret;
    cleanup_free char *shown_url = NULL;
    ret = url_for_display(url, &shown_url, err);
    if (ret < 0)
        return ret;
    cleanup_free char *path = na_xasprintf("%s/%s", cache->dir, sha);
    struct qcow2_info scratch;
    struct qcow2_info *info = info_out ? info_out : &scratch;

    pthread_mutex_lock(&cache->lock);
    for (;;) {
        struct download *d = find_download(cache, sha);
        if (d) {
            d->n_refs++;
            while (!d->done)
                pthread_cond_wait(&d->cond, &cache->lock);
            if (d->error) {
                ret = -(d->error->status ? d->error->status : 1);
                if (err && !*err)
                    *err = error_copy(d->error);
                download_unref(d);
                pthread_mutex_unlock(&cache->lock);
                return ret;
            }
            download_unref(d);
            continue; /* published: use it like any cached image */
        }
        cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd >= 0) {
            /* Under the lock, so that a concurrent evict sees the new last use. */
            int touched = futimens(fd, NULL);
            int touch_errno = errno;
            pthread_mutex_unlock(&cache->lock);
            if (touched < 0)
                return na_error_set(err, NA_CODE_STORAGE, touch_errno,
                                    "image cache: set the last use of %s", path);
            ret = use_cached(cache, fd, path, fmt, info, err);
            if (ret < 0)
                return ret;
            *path_out = na_steal(&path);
            return 0;
        }
        if (errno != ENOENT) {
            ret = na_error_set(err, NA_CODE_STORAGE, errno, "image cache: open %s", path);
            pthread_mutex_unlock(&cache->lock);
            return ret;
        }
        break;
    }

    /* Ours to download. */
    struct download *d = na_xcalloc(1, sizeof(*d));
    memcpy(d->sha256, sha, sizeof(sha));
    d->n_refs = 1;
    pthread_cond_init(&d->cond, NULL);
    d->next = cache->downloads;
    cache->downloads = d;
    cache->n_downloads++;
    pthread_mutex_unlock(&cache->lock);

    struct na_error *derr = NULL;
    ret = download(cache, url, shown_url, sha, fmt, &derr);

    pthread_mutex_lock(&cache->lock);
    for (struct download **pp = &cache->downloads; *pp; pp = &(*pp)->next) {
        if (*pp == d) {
            *pp = d->next;
            break;
        }
    }
    cache->n_downloads--;
    d->done = true;
    d->error = derr ? error_copy(derr) : NULL;
    pthread_cond_broadcast(&d->cond);
    download_unref(d);
    pthread_mutex_unlock(&cache->lock);

    if (ret < 0) {
        char quoted[1024];
        na_log(NA_LOG_WARN, NULL, "image download failed", "sha256=%s error=%s", sha,
               na_log_quote(quoted, sizeof(quoted), derr ? derr->msg : "?"));
        if (err && !*err)
            *err = derr;
        else
            na_error_free(derr);
        return ret;
    }
    /* Validate our own published copy the same way a hit does (fills info). */
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: open %s", path);
    ret = use_cached(cache, fd, path, fmt, info, err);
    if (ret < 0)
        return ret;
    *path_out = na_steal(&path);
    return 0;
}

/* --- evict ----------------------------------------------------------------------------- */

static bool
in_use(const char *name, const char *const *in_use_sha256, size_t n_in_use)
{
    for (size_t i = 0; i < n_in_use; i++)
        if (in_use_sha256[i] && strcasecmp(in_use_sha256[i], name) == 0)
            return true;
    return false;
}

int
qcow2_image_cache_evict(struct qcow2_image_cache *cache, const char *const *in_use_sha256,
                        size_t n_in_use, int64_t max_unused_age_s, struct na_error **err)
{
    pthread_mutex_lock(&cache->lock);
    DIR *d = opendir(cache->dir);
    if (!d) {
        int ret =
            na_error_set(err, NA_CODE_STORAGE, errno, "image cache: read directory %s", cache->dir);
        pthread_mutex_unlock(&cache->lock);
        return ret;
    }
    time_t now = time(NULL);
    int n_removed = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_image_name(de->d_name) || in_use(de->d_name, in_use_sha256, n_in_use) ||
            find_download(cache, de->d_name))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if ((int64_t)(now - st.st_mtime) < max_unused_age_s)
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) < 0) {
            na_log(NA_LOG_WARN, NULL, "image cache: could not evict an image", "sha256=%s errno=%d",
                   de->d_name, errno);
            continue;
        }
        na_log(NA_LOG_INFO, NULL, "image evicted", "sha256=%s unused_s=%lld", de->d_name,
               (long long)(now - st.st_mtime));
        n_removed++;
    }
    closedir(d);
    if (cache->n_downloads == 0)
        clean_partials(cache);
    pthread_mutex_unlock(&cache->lock);
    if (n_removed > 0) {
        struct na_error *e = NULL;
        if (fsync_dir(cache->dir, &e) < 0) {
            na_log(NA_LOG_WARN, NULL, "image cache: fsync after evict failed", "error=\"%s\"",
                   e->msg);
            na_error_free(e);
        }
    }
    return n_removed;
}
