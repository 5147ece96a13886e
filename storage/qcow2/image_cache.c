/* The image cache: download once, verify, validate, publish atomically, evict.
 *
 * Shared state is one table of the downloads in flight, under cache->lock.  A get first looks
 * there (and waits on the entry's condition variable when its sha256 is being downloaded),
 * then for the published file, and registers a download only when neither exists: the
 * check and the registration happen under the same lock, so one sha256 is downloaded once.
 * The downloader works without the lock, publishes the file, and only then removes its entry,
 * so a waiter woken by a success always finds the file.  Evict holds the lock while it scans,
 * so it never races with a publication or a get touching a file's mtime. */
#include "storage/qcow2/image_cache-private.h"

#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define PARTIAL_DIR ".partial"
#define PARTIAL_SUFFIX ".part"
#define STALE_PARTIAL_AGE_S (24 * 3600)

struct download {
    struct download *next; /* cache->lock */
    char sha256[QCOW2_SHA256_HEX_LEN + 1];
    char *url;              /* the URL it fetches, as the requester gave it */
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
    struct qcow2_cidr *allowed_networks;
    struct qcow2_image_cache_config cfg; /* dir, ca_file, allowed_networks: the copies above */

    pthread_mutex_t lock;
    struct download *downloads; /* cache->lock: in flight, by sha256 */
    size_t n_downloads;         /* cache->lock */
};

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
sha256_normalize(const char *in, char out[QCOW2_SHA256_HEX_LEN + 1])
{
    if (!in || strlen(in) != QCOW2_SHA256_HEX_LEN)
        return false;
    for (size_t i = 0; i < QCOW2_SHA256_HEX_LEN; i++) {
        if (!isxdigit((unsigned char)in[i]))
            return false;
        out[i] = (char)tolower((unsigned char)in[i]);
    }
    out[QCOW2_SHA256_HEX_LEN] = '\0';
    return true;
}

static bool
is_image_name(const char *name)
{
    if (strlen(name) != QCOW2_SHA256_HEX_LEN)
        return false;
    for (size_t i = 0; i < QCOW2_SHA256_HEX_LEN; i++)
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

/* Bytes of the regular files directly in dir, except `skip`. */
static uint64_t
dir_usage(const char *dir, const char *skip)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    uint64_t total = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (strcmp(de->d_name, skip) == 0 ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

/* What the quota leaves for the partial download part_name: the images and every other
 * partial download count.  UINT64_MAX without a quota. */
static uint64_t
quota_room(const struct qcow2_image_cache *cache, const char *part_name)
{
    if (!cache->cfg.max_total_size)
        return UINT64_MAX;
    uint64_t used = dir_usage(cache->dir, "") + dir_usage(cache->partial_dir, part_name);
    return used >= cache->cfg.max_total_size ? 0 : cache->cfg.max_total_size - used;
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
    if (cfg->n_allowed_networks) {
        size_t size = cfg->n_allowed_networks * sizeof(*c->allowed_networks);
        c->allowed_networks = na_xmalloc(size);
        memcpy(c->allowed_networks, cfg->allowed_networks, size);
    }
    c->cfg.allowed_networks = c->allowed_networks;
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
    free(cache->allowed_networks);
    free(cache);
}

static int
publish(const struct qcow2_image_cache *cache, const char *shown_url, const char *sha256,
        const char *part_path, enum qcow2_format format, const char *final_path,
        struct na_error **err)
{
    cleanup_close int fd = open(part_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: open %s", part_path);
    struct qcow2_info info;
    int ret = qcow2_validate_format(fd, format, &cache->cfg.limits, &info, err);
    if (ret < 0)
        return na_error_wrap(err, "image %s (sha256 %s) refused as %s", shown_url, sha256,
                             qcow2_format_name(format));
    if (fchmod(fd, 0440) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: chmod %s", part_path);
    if (cache->cfg.group != (gid_t)-1 && fchown(fd, (uid_t)-1, cache->cfg.group) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: chown %s to group %u",
                            part_path, (unsigned)cache->cfg.group);
    /* Replacing is harmless: anything already there has this very content. */
    if (rename(part_path, final_path) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "image cache: rename %s to %s", part_path,
                            final_path);
    return fsync_dir(cache->dir, err);
}

const char *
qcow2_image_cache_staging_dir(const struct qcow2_image_cache *cache)
{
    return cache->partial_dir;
}

const struct qcow2_image_cache_config *
qcow2_image_cache_settings(const struct qcow2_image_cache *cache)
{
    return &cache->cfg;
}

int
qcow2_image_cache_adopt(struct qcow2_image_cache *cache, const char *name, const char *sha256,
                        struct na_error **err)
{
    char sha[QCOW2_SHA256_HEX_LEN + 1];
    if (!sha256_normalize(sha256, sha) || !name[0] || strchr(name, '/') || !strcmp(name, ".") ||
        !strcmp(name, ".."))
        return na_error_set(err, NA_CODE_INTERNAL, EINVAL, "image cache: adopt `%s` as %s", name,
                            sha256);
    cleanup_free char *path = na_xasprintf("%s/%s", cache->partial_dir, name);
    cleanup_free char *final_path = na_xasprintf("%s/%s", cache->dir, sha);
    int ret = publish(cache, "(exported)", sha, path, QCOW2_FORMAT_QCOW2, final_path, err);
    if (ret == 0)
        na_log(NA_LOG_INFO, NULL, "image published", "sha256=%s source=export", sha);
    return ret;
}

/* Downloads, verifies, validates and publishes one image.  Runs without the lock; the
 * caller's entry in the download table keeps every other get of this sha256 waiting. */
static int
download(struct qcow2_image_cache *cache, const char *url, const char *shown_url,
         const char *sha256, enum qcow2_format format, struct na_error **err)
{
    cleanup_free char *part_path = na_xasprintf("%s/%s" PARTIAL_SUFFIX, cache->partial_dir, sha256);
    cleanup_free char *final_path = na_xasprintf("%s/%s", cache->dir, sha256);
    cleanup_free char *part_name = na_xasprintf("%s" PARTIAL_SUFFIX, sha256);
    uint64_t t0 = na_mono_ns();
    uint64_t size = 0;
    int ret = qcow2_image_fetch(&cache->cfg, url, shown_url, sha256, part_path,
                                quota_room(cache, part_name), &size, err);
    if (ret < 0)
        return ret;
    ret = publish(cache, shown_url, sha256, part_path, format, final_path, err);
    if (ret < 0) {
        unlink(part_path);
        return ret;
    }
    na_log(NA_LOG_INFO, NULL, "image published",
           "sha256=%s url=%s format=%s bytes=%" PRIu64 " duration_ms=%" PRIu64, sha256, shown_url,
           qcow2_format_name(format), size, (na_mono_ns() - t0) / 1000000);
    return 0;
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
    free(d->url);
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
    char sha[QCOW2_SHA256_HEX_LEN + 1];
    if (!sha256_normalize(sha256, sha))
        return na_error_field(err, "sha256", "image cache: sha256 \"%.80s\" is not 64 hex digits",
                              sha256 ? sha256 : "");
    enum qcow2_format fmt;
    int ret = qcow2_format_parse(format, "format", &fmt, err);
    if (ret < 0)
        return ret;
    cleanup_free char *shown_url = NULL;
    ret = qcow2_image_url_for_display(url, &shown_url, err);
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
            if (d->error && strcmp(d->url, url) != 0) {
                /* Its source failed; ours may not: try it (or wait for whoever does). */
                na_log(NA_LOG_INFO, NULL,
                       "a shared image download failed; trying this request's own URL",
                       "sha256=%s url=%s", sha, shown_url);
                download_unref(d);
                continue;
            }
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
    d->url = na_xstrdup(url);
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

static void
add_name(char ***names, size_t *n_names, const char *name)
{
    *names = na_xrealloc(*names, (*n_names + 1) * sizeof(**names));
    (*names)[(*n_names)++] = na_xstrdup(name);
}

/* The cache entry that the overlay `name` in directory dirfd backs on, if any. */
static void
add_backing_of(const struct qcow2_image_cache *cache, int dirfd, const char *name, char ***names,
               size_t *n_names)
{
    cleanup_close int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return;
    struct qcow2_limits limits;
    qcow2_limits_init(&limits);
    limits.allow_backing = true;
    struct qcow2_info info = {0};
    if (qcow2_validate(fd, &limits, &info, NULL) < 0)
        return;
    size_t dir_len = strlen(cache->dir);
    if (strncmp(info.backing_file, cache->dir, dir_len) == 0 && info.backing_file[dir_len] == '/' &&
        is_image_name(info.backing_file + dir_len + 1))
        add_name(names, n_names, info.backing_file + dir_len + 1);
}

void
qcow2_image_cache_backed_names(const struct qcow2_image_cache *cache, const char *overlays_dir,
                               const char *const *overlay_names, size_t n_overlay_names,
                               char ***names, size_t *n_names)
{
    DIR *d = opendir(overlays_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!na_uuid_is_valid(e->d_name))
            continue;
        cleanup_close int sub =
            openat(dirfd(d), e->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (sub < 0)
            continue;
        for (size_t i = 0; i < n_overlay_names; i++)
            add_backing_of(cache, sub, overlay_names[i], names, n_names);
    }
    closedir(d);
}

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
