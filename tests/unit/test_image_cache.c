/* The image cache against a real HTTP server on loopback (deploy/imageserver.py), started
 * once for the group and stopped by pid.  Images are made here: random raw bytes, and qcow2
 * images from qemu-img, some of them hostile (a backing file, an external data file) or
 * patched (an L1 table past the end of the file, a virtual size of 2^62).  The server's
 * request counters (/_/stats) tell how many downloads really happened.  The caches allow
 * 127.0.0.0/8 (the server's) unless a test is about the address check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "storage/qcow2/qcow2.h"
#include "storage/qcow2/qcow2-private.h"

extern char **environ;

#define RAW_SIZE (1u << 20)
#define QCOW2_VSIZE (16u << 20)
#define TEST_GROUP ((gid_t)65534)

static struct {
    char root[64];
    char *srv; /* the server's root */
    char *base_url;
    pid_t server;
    int n_threads_at_start;
    char sha_raw[65], sha_raw2[65], sha_qcow2[65];
    char sha_backing[65], sha_datafile[65], sha_l1eof[65], sha_huge[65];
    int n_caches;
} g;

/* --- helpers --------------------------------------------------------------------------- */

static void
write_file(const char *path, const void *data, size_t size)
{
    cleanup_close int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, size), (ssize_t)size);
}

static uint8_t *
read_file(const char *path, size_t *size)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint8_t *buf = na_xmalloc((size_t)st.st_size + 1);
    assert_int_equal(read(fd, buf, (size_t)st.st_size), st.st_size);
    *size = (size_t)st.st_size;
    return buf;
}

static void
sha_of(const char *name, char out[65])
{
    cleanup_free char *path = na_xasprintf("%s/%s", g.srv, name);
    size_t size;
    cleanup_free uint8_t *b = read_file(path, &size);
    na_sha256_hex(b, size, out);
}

static void
make_random(const char *name, uint32_t seed)
{
    cleanup_free uint8_t *b = na_xmalloc(RAW_SIZE);
    uint32_t x = seed;
    for (size_t i = 0; i < RAW_SIZE; i++) {
        x = x * 1664525u + 1013904223u;
        b[i] = (uint8_t)(x >> 24);
    }
    cleanup_free char *path = na_xasprintf("%s/%s", g.srv, name);
    write_file(path, b, RAW_SIZE);
}

static void
run(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("command failed (%d): %s", rc, cmd);
}

/* Copies src to dst in the server's root, patching one big-endian 64-bit header field. */
static void
patch_copy(const char *src, const char *dst, size_t off, uint64_t value)
{
    cleanup_free char *sp = na_xasprintf("%s/%s", g.srv, src);
    cleanup_free char *dp = na_xasprintf("%s/%s", g.srv, dst);
    size_t size;
    cleanup_free uint8_t *b = read_file(sp, &size);
    qcow2_put_be64(b + off, value);
    write_file(dp, b, size);
}

static int
count_threads(void)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *opaque)
{
    char **buf = opaque;
    size_t old = *buf ? strlen(*buf) : 0;
    *buf = na_xrealloc(*buf, old + size * nmemb + 1);
    memcpy(*buf + old, data, size * nmemb);
    (*buf)[old + size * nmemb] = '\0';
    return size * nmemb;
}

/* Requests (all, or only those with a Range header) the server saw for path. */
static int
server_count(const char *path, bool ranges)
{
    CURL *c = curl_easy_init();
    assert_non_null(c);
    cleanup_free char *url = na_xasprintf("%s_/stats", g.base_url);
    char *body = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    json_t *j = json_loads(body, 0, NULL);
    assert_non_null(j);
    json_t *n = json_object_get(json_object_get(j, ranges ? "range_requests" : "requests"), path);
    int count = n ? (int)json_integer_value(n) : 0;
    json_decref(j);
    free(body);
    return count;
}

static struct qcow2_cidr loopback_v4;

static void
config(struct qcow2_image_cache_config *cfg, char **dir)
{
    qcow2_image_cache_config_init(cfg);
    cfg->allowed_networks = &loopback_v4;
    cfg->n_allowed_networks = 1;
    *dir = na_xasprintf("%s/cache%d", g.root, ++g.n_caches);
    cfg->dir = *dir;
    cfg->connect_timeout_s = 2;
    cfg->stall_timeout_s = 2;
    cfg->retries = 2;
    cfg->backoff_ms = 20;
}

static struct qcow2_image_cache *
open_cache(const struct qcow2_image_cache_config *cfg)
{
    struct qcow2_image_cache *cache = NULL;
    cleanup_error struct na_error *err = NULL;
    if (qcow2_image_cache_open(cfg, &cache, &err) < 0)
        fail_msg("open: %s", err->msg);
    return cache;
}

static char *
url_of(const char *path)
{
    return na_xasprintf("%s%s", g.base_url, path);
}

/* A get expected to succeed; returns the path. */
static char *
get_ok(struct qcow2_image_cache *cache, const char *url_path, const char *sha, const char *format,
       struct qcow2_info *info)
{
    cleanup_free char *url = url_of(url_path);
    char *path = NULL;
    cleanup_error struct na_error *err = NULL;
    if (qcow2_image_cache_get(cache, url, sha, format, &path, info, &err) < 0)
        fail_msg("get %s: %s", url, err->msg);
    assert_null(err);
    return path;
}

/* A get expected to fail with code; returns the error (caller frees). */
static struct na_error *
get_fails(struct qcow2_image_cache *cache, const char *url, const char *sha, const char *format,
          enum na_code code)
{
    char *path = NULL;
    struct na_error *err = NULL;
    int ret = qcow2_image_cache_get(cache, url, sha, format, &path, NULL, &err);
    if (ret >= 0)
        fail_msg("get %s succeeded: %s", url, path);
    assert_null(path);
    assert_non_null(err);
    if (getenv("TEST_VERBOSE"))
        fprintf(stderr, "  error: %s (%s)\n", err->msg, na_code_name(err->code));
    if (err->code != code)
        fail_msg("get %s: code %s, want %s: %s", url, na_code_name(err->code), na_code_name(code),
                 err->msg);
    return err;
}

static void
expect_msg(const struct na_error *err, const char *needle)
{
    if (!strstr(err->msg, needle))
        fail_msg("message \"%s\" lacks \"%s\"", err->msg, needle);
}

static bool
exists(const char *dir, const char *name)
{
    cleanup_free char *p = na_xasprintf("%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static int
n_partials(const char *dir)
{
    cleanup_free char *p = na_xasprintf("%s/.partial", dir);
    DIR *d = opendir(p);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

/* --- setup ----------------------------------------------------------------------------- */

static int
group_setup(void **state)
{
    (void)state;
    if (!getenv("TEST_VERBOSE"))
        na_log_set_level(NA_LOG_ERROR);
    const char *why = NULL;
    assert_int_equal(qcow2_cidr_parse("127.0.0.0/8", &loopback_v4, &why), 0);
    g.n_threads_at_start = count_threads();
    strcpy(g.root, "/tmp/nodeagent-test-imgcache-XXXXXX");
    assert_non_null(mkdtemp(g.root));
    g.srv = na_xasprintf("%s/srv", g.root);
    assert_int_equal(mkdir(g.srv, 0755), 0);

    make_random("raw.img", 1);
    make_random("raw2.img", 2);
    make_random("raw3.img", 3);
    cleanup_free char *cmd =
        na_xasprintf("cd %s && qemu-img create -q -f qcow2 good.qcow2 %u && "
                     "qemu-img create -q -f qcow2 -u -b /etc/shadow -F raw backing.qcow2 %u && "
                     "qemu-img create -q -f qcow2 -o data_file=%s/datafile.data datafile.qcow2 %u",
                     g.srv, QCOW2_VSIZE, QCOW2_VSIZE, g.srv, QCOW2_VSIZE);
    run(cmd);
    patch_copy("good.qcow2", "l1eof.qcow2", QCOW2_OFF_L1_TABLE_OFFSET, 1ull << 30);
    patch_copy("good.qcow2", "huge.qcow2", QCOW2_OFF_SIZE, 1ull << 62);
    sha_of("raw.img", g.sha_raw);
    sha_of("raw2.img", g.sha_raw2);
    sha_of("good.qcow2", g.sha_qcow2);
    sha_of("backing.qcow2", g.sha_backing);
    sha_of("datafile.qcow2", g.sha_datafile);
    sha_of("l1eof.qcow2", g.sha_l1eof);
    sha_of("huge.qcow2", g.sha_huge);

    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    char *argv[] = {(char *)"python3", (char *)NODEAGENT_SOURCE_DIR "/deploy/imageserver.py",
                    (char *)"--root", g.srv, NULL};
    int rc = posix_spawn(&g.server, "/usr/bin/python3", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(rc, 0);
    close(out[1]);
    char line[256];
    size_t len = 0;
    while (len < sizeof(line) - 1) {
        ssize_t n = read(out[0], line + len, 1);
        if (n <= 0 || line[len] == '\n')
            break;
        len++;
    }
    line[len] = '\0';
    close(out[0]);
    if (strncmp(line, "http://127.0.0.1:", 17) != 0)
        fail_msg("image server printed \"%s\"", line);
    g.base_url = na_xstrdup(line);
    return 0;
}

static int
group_teardown(void **state)
{
    (void)state;
    if (g.server > 0) {
        kill(g.server, SIGTERM);
        int status;
        waitpid(g.server, &status, 0);
    }
    cleanup_free char *cmd = na_xasprintf("rm -rf %s", g.root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g.root);
    free(g.srv);
    free(g.base_url);
    return 0;
}

/* --- tests ----------------------------------------------------------------------------- */

static void
test_get_and_hit(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    cfg.group = TEST_GROUP;
    struct qcow2_image_cache *cache = open_cache(&cfg);

    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0750);
    assert_int_equal(st.st_gid, TEST_GROUP);

    /* Upper case sha256 is accepted; the file is named in lower case. */
    char upper[65];
    for (int i = 0; i < 65; i++)
        upper[i] = (char)toupper((unsigned char)g.sha_raw[i]);
    struct qcow2_info info;
    cleanup_free char *path = get_ok(cache, "raw.img", upper, "raw", &info);
    cleanup_free char *want = na_xasprintf("%s/%s", dir, g.sha_raw);
    assert_string_equal(path, want);
    assert_int_equal(info.format, QCOW2_FORMAT_RAW);
    assert_int_equal(info.virtual_size, RAW_SIZE);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0440);
    assert_int_equal(st.st_gid, TEST_GROUP);
    assert_int_equal(st.st_size, RAW_SIZE);
    assert_int_equal(n_partials(dir), 0);
    assert_int_equal(server_count("/raw.img", false), 1);

    /* A hit: no request, the last use moves to now. */
    struct timespec old[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
    assert_int_equal(utimensat(AT_FDCWD, path, old, 0), 0);
    cleanup_free char *again = get_ok(cache, "raw.img", g.sha_raw, "raw", &info);
    assert_string_equal(again, want);
    assert_int_equal(server_count("/raw.img", false), 1);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_mtime > time(NULL) - 60);

    /* A qcow2 image. */
    cleanup_free char *qpath = get_ok(cache, "good.qcow2", g.sha_qcow2, "qcow2", &info);
    assert_int_equal(info.format, QCOW2_FORMAT_QCOW2);
    assert_int_equal(info.virtual_size, QCOW2_VSIZE);
    qcow2_image_cache_close(cache);
}

struct racer {
    struct qcow2_image_cache *cache;
    const char *url;
    const char *sha;
    pthread_barrier_t *barrier;
    char *path;
    struct na_error *err;
};

static void *
race(void *opaque)
{
    struct racer *r = opaque;
    pthread_barrier_wait(r->barrier);
    qcow2_image_cache_get(r->cache, r->url, r->sha, "raw", &r->path, NULL, &r->err);
    return NULL;
}

#define N_RACERS 10

static void
run_racers(struct qcow2_image_cache *cache, const char *url, const char *sha,
           struct racer racers[N_RACERS])
{
    pthread_t threads[N_RACERS];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, N_RACERS);
    for (int i = 0; i < N_RACERS; i++) {
        racers[i] = (struct racer){cache, url, sha, &barrier, NULL, NULL};
        assert_int_equal(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
    }
    for (int i = 0; i < N_RACERS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(count_threads(), g.n_threads_at_start);
}

static void
test_concurrent_one_download(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    struct qcow2_image_cache *cache = open_cache(&cfg);
    /* Slow enough (about 0.5 s) that every thread asks while the download runs. */
    const char *p = "/_/slow/2000000/raw.img";
    cleanup_free char *url = url_of(p + 1);
    struct racer racers[N_RACERS];
    run_racers(cache, url, g.sha_raw, racers);
    cleanup_free char *want = na_xasprintf("%s/%s", dir, g.sha_raw);
    for (int i = 0; i < N_RACERS; i++) {
        if (racers[i].err)
            fail_msg("racer %d: %s", i, racers[i].err->msg);
        assert_string_equal(racers[i].path, want);
        free(racers[i].path);
    }
    assert_int_equal(server_count(p, false), 1);
    qcow2_image_cache_close(cache);
}

static void
test_concurrent_failure_shared(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    cfg.retries = 0;
    struct qcow2_image_cache *cache = open_cache(&cfg);
    const char *p = "/_/slow/2000000/_/truncate/raw.img";
    cleanup_free char *url = url_of(p + 1);
    struct racer racers[N_RACERS];
    run_racers(cache, url, g.sha_raw, racers);
    for (int i = 0; i < N_RACERS; i++) {
        assert_null(racers[i].path);
        assert_non_null(racers[i].err);
        assert_int_equal(racers[i].err->code, NA_CODE_IMAGE);
        expect_msg(racers[i].err, "truncated");
        assert_string_equal(racers[i].err->msg, racers[0].err->msg);
    }
    for (int i = 0; i < N_RACERS; i++)
        na_error_free(racers[i].err);
    assert_int_equal(server_count(p, false), 1);
    assert_false(exists(dir, g.sha_raw));
    qcow2_image_cache_close(cache);
}

static void
test_sha256_mismatch(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    struct qcow2_image_cache *cache = open_cache(&cfg);
    cleanup_free char *url = url_of("raw3.img");
    cleanup_error struct na_error *err = get_fails(cache, url, g.sha_raw2, "raw", NA_CODE_IMAGE);
    expect_msg(err, "sha256 mismatch");
    expect_msg(err, g.sha_raw2);
    expect_msg(err, "/raw3.img");
    /* Nothing about what was read: neither its digest nor its size. */
    char actual[65];
    sha_of("raw3.img", actual);
    if (strstr(err->msg, actual) || strstr(err->msg, "1048576"))
        fail_msg("the message reveals what was read: %s", err->msg);
    assert_false(exists(dir, g.sha_raw2));
    assert_int_equal(n_partials(dir), 0);
    assert_int_equal(server_count("/raw3.img", false), 1); /* not retried */
    qcow2_image_cache_close(cache);
}

static void
test_truncated_then_resumed(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    struct qcow2_image_cache *cache = open_cache(&cfg);
    const char *p = "/_/truncate-n/1/raw.img";
    cleanup_free char *path = get_ok(cache, p + 1, g.sha_raw, "raw", NULL);
    assert_true(exists(dir, g.sha_raw));
    assert_int_equal(server_count(p, false), 2);
    assert_int_equal(server_count(p, true), 1); /* the second one resumed */
    assert_int_equal(n_partials(dir), 0);
    qcow2_image_cache_close(cache);
}

static void
test_truncated_always(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    struct qcow2_image_cache *cache = open_cache(&cfg);
    const char *p = "/_/truncate/raw.img";
    cleanup_free char *url = url_of(p + 1);
    cleanup_error struct na_error *err = get_fails(cache, url, g.sha_raw, "raw", NA_CODE_IMAGE);
    expect_msg(err, "truncated");
    expect_msg(err, "gave up after 3 attempts");
    expect_msg(err, " of 1048576 bytes");
    expect_msg(err, "/_/truncate/raw.img");
    assert_int_equal(server_count(p, false), 3);
    assert_int_equal(server_count(p, true), 2);
    assert_false(exists(dir, g.sha_raw));
    /* The partial file is kept for the next get to resume. */
    assert_int_equal(n_partials(dir), 1);
    qcow2_image_cache_close(cache);
}

static void
test_flaky_then_ok(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    struct qcow2_image_cache *cache = open_cache(&cfg);
    const char *p = "/_/flaky/2/raw.img";
    cleanup_free char *path = get_ok(cache, p + 1, g.sha_raw, "raw", NULL);
    assert_int_equal(server_count(p, false), 3);

    /* More failures than retries: the last status is reported. */
    const char *p2 = "/_/flaky/5/raw2.img";
    cleanup_free char *url = url_of(p2 + 1);
    cleanup_error struct na_error *err = get_fails(cache, url, g.sha_raw2, "raw", NA_CODE_IMAGE);
    expect_msg(err, "HTTP status 500");
    expect_msg(err, "gave up after 3 attempts");
    assert_int_equal(server_count(p2, false), 3);
    qcow2_image_cache_close(cache);
}

static void
test_not_found_no_retry(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    struct qcow2_image_cache *cache = open_cache(&cfg);
    /* Credentials and query must not reach the message. */
    cleanup_free char *url =
        na_xasprintf("http://user:hunter2@%smissing.img?token=s3cr3t#frag", g.base_url + 7);
    cleanup_error struct na_error *err = get_fails(cache, url, g.sha_raw, "raw", NA_CODE_IMAGE);
    expect_msg(err, "HTTP status 404");
    expect_msg(err, "/missing.img");
    assert_null(strstr(err->msg, "hunter2"));
    assert_null(strstr(err->msg, "user"));
    assert_null(strstr(err->msg, "s3cr3t"));
    assert_null(strstr(err->msg, "frag"));
    assert_int_equal(server_count("/missing.img", false), 1);
    assert_int_equal(n_partials(dir), 0);
    qcow2_image_cache_close(cache);
}

static void
test_hang_stall_timeout(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    cfg.stall_timeout_s = 1;
    cfg.retries = 1;
    struct qcow2_image_cache *cache = open_cache(&cfg);
    const char *p = "/_/hang/raw.img";
    cleanup_free char *url = url_of(p + 1);
    cleanup_error struct na_error *err = get_fails(cache, url, g.sha_raw, "raw", NA_CODE_IMAGE);
    expect_msg(err, "timed out");
    expect_msg(err, "gave up after 2 attempts");
    assert_int_equal(server_count(p, false), 2);
    qcow2_image_cache_close(cache);
}

static void
test_norange_restart(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    struct qcow2_image_cache *cache = open_cache(&cfg);
    /* Truncated once, then the server answers the resume with 200: start over. */
    const char *p = "/_/norange/_/truncate-n/1/raw.img";
    cleanup_free char *path = get_ok(cache, p + 1, g.sha_raw, "raw", NULL);
    assert_true(exists(dir, g.sha_raw));
    assert_true(server_count(p, true) >= 1);
    assert_true(server_count(p, false) <= 3);
    qcow2_image_cache_close(cache);
}

static void
test_resume_kept_partial(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    struct qcow2_image_cache *cache = open_cache(&cfg);
    /* A partial file from an earlier failed download: its first half, hashed first, then
     * the rest by a Range request. */
    cleanup_free char *src = na_xasprintf("%s/raw2.img", g.srv);
    size_t size;
    cleanup_free uint8_t *b = read_file(src, &size);
    cleanup_free char *part = na_xasprintf("%s/.partial/%s.part", dir, g.sha_raw2);
    write_file(part, b, size / 2);
    const char *p = "/_/flaky/0/raw2.img";
    cleanup_free char *path = get_ok(cache, p + 1, g.sha_raw2, "raw", NULL);
    assert_int_equal(server_count(p, false), 1);
    assert_int_equal(server_count(p, true), 1);

    /* A kept part with wrong bytes: the mismatch leads to one fresh download. */
    cleanup_free char *part3 = na_xasprintf("%s/.partial/%s.part", dir, g.sha_raw);
    memset(b, 0x5a, size / 2);
    write_file(part3, b, size / 2);
    const char *p3 = "/_/flaky/0/raw.img";
    cleanup_free char *path3 = get_ok(cache, p3 + 1, g.sha_raw, "raw", NULL);
    assert_int_equal(server_count(p3, false), 2);
    assert_int_equal(n_partials(dir), 0);

    /* A kept part of the full size with wrong bytes, from a server that ignores Range. */
    cleanup_free char *qsrc = na_xasprintf("%s/good.qcow2", g.srv);
    size_t qsize;
    cleanup_free uint8_t *qb = read_file(qsrc, &qsize);
    cleanup_free char *part4 = na_xasprintf("%s/.partial/%s.part", dir, g.sha_qcow2);
    memset(qb, 0, qsize);
    write_file(part4, qb, qsize);
    const char *p4 = "/_/norange/good.qcow2";
    cleanup_free char *path4 = get_ok(cache, p4 + 1, g.sha_qcow2, "qcow2", NULL);
    assert_int_equal(server_count(p4, false), 2);
    assert_int_equal(n_partials(dir), 0);
    qcow2_image_cache_close(cache);
}

static void
test_size_limit(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    cfg.max_image_size = RAW_SIZE / 2;
    struct qcow2_image_cache *cache = open_cache(&cfg);

    /* Announced by Content-Length. */
    cleanup_free char *url = url_of("raw.img");
    int before = server_count("/raw.img", false);
    cleanup_error struct na_error *err = get_fails(cache, url, g.sha_raw, "raw", NA_CODE_IMAGE);
    expect_msg(err, "above the limit of 524288");
    assert_int_equal(err->status, EFBIG);
    assert_int_equal(server_count("/raw.img", false), before + 1);

    /* Chunked: no length, stopped while writing. */
    const char *p = "/_/chunked/raw.img";
    cleanup_free char *url2 = url_of(p + 1);
    cleanup_error struct na_error *err2 = get_fails(cache, url2, g.sha_raw, "raw", NA_CODE_IMAGE);
    expect_msg(err2, "exceeds the limit of 524288");
    assert_int_equal(server_count(p, false), 1);
    assert_false(exists(dir, g.sha_raw));
    assert_int_equal(n_partials(dir), 0);
    qcow2_image_cache_close(cache);
}

static void
test_file_url_refused_and_redirects(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    struct qcow2_image_cache *cache = open_cache(&cfg);
    /* A file URL would read any host file as root. */
    cleanup_free char *furl = na_xasprintf("file://%s/raw2.img", g.srv);
    cleanup_error struct na_error *err =
        get_fails(cache, furl, g.sha_raw2, "raw", NA_CODE_INVALID_ARGUMENT);
    assert_string_equal(err->field, "url");
    expect_msg(err, "\"file\" is not http or https");
    assert_false(exists(dir, g.sha_raw2));
    assert_int_equal(n_partials(dir), 0);

    /* http redirect: followed. */
    const char *p = "/_/redirect/raw.img";
    cleanup_free char *rpath = get_ok(cache, p + 1, g.sha_raw, "raw", NULL);
    assert_int_equal(server_count(p, false), 1);

    /* A redirect to file:// is refused (it would read any host file). */
    cleanup_free char *rurl = na_xasprintf("%s_/redirect-file%s/good.qcow2", g.base_url, g.srv);
    cleanup_error struct na_error *rerr =
        get_fails(cache, rurl, g.sha_qcow2, "qcow2", NA_CODE_IMAGE);
    assert_false(exists(dir, g.sha_qcow2));
    qcow2_image_cache_close(cache);
}

/* The address check on real connections: the server is on 127.0.0.1. */
static void
test_address_refused(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    cfg.allowed_networks = NULL; /* the default: loopback is refused */
    cfg.n_allowed_networks = 0;
    struct qcow2_image_cache *cache = open_cache(&cfg);
    const char *p = "/_/flaky/0/raw3.img";
    cleanup_free char *url = url_of(p + 1);
    cleanup_error struct na_error *err = get_fails(cache, url, g.sha_raw, "raw", NA_CODE_IMAGE);
    expect_msg(err, "connection to 127.0.0.1 refused: it is loopback (127.0.0.0/8)");
    expect_msg(err, "allowed_networks");
    /* Not retried, and the server saw nothing. */
    assert_int_equal(server_count(p, false), 0);
    assert_int_equal(n_partials(dir), 0);

    /* By name: the resolved address is what counts. */
    cleanup_free char *named =
        na_xasprintf("http://localhost:%s_/flaky/0/raw3.img", strrchr(g.base_url, ':') + 1);
    cleanup_error struct na_error *nerr = get_fails(cache, named, g.sha_raw, "raw", NA_CODE_IMAGE);
    expect_msg(nerr, "loopback");
    assert_int_equal(server_count(p, false), 0);
    qcow2_image_cache_close(cache);

    /* Allowed: 127.0.0.1/32 only; a redirect to 127.0.0.2 is refused before connecting. */
    struct qcow2_cidr one;
    const char *why;
    assert_int_equal(qcow2_cidr_parse("127.0.0.1/32", &one, &why), 0);
    cleanup_free char *dir2 = NULL;
    config(&cfg, &dir2);
    cfg.allowed_networks = &one;
    cfg.n_allowed_networks = 1;
    cache = open_cache(&cfg);
    cleanup_free char *ok = get_ok(cache, "raw2.img", g.sha_raw2, "raw", NULL);
    const char *port = strrchr(g.base_url, ':') + 1; /* "PORT/" */
    cleanup_free char *rurl = na_xasprintf("%s_/redirect-to/127.0.0.2:%sraw.img", g.base_url, port);
    cleanup_error struct na_error *rerr = get_fails(cache, rurl, g.sha_raw, "raw", NA_CODE_IMAGE);
    expect_msg(rerr, "connection to 127.0.0.2 refused: it is loopback");
    cleanup_free char *rpath = na_xasprintf("/_/redirect-to/127.0.0.2:%sraw.img", port);
    assert_int_equal(server_count(rpath, false), 1); /* not retried */
    assert_false(exists(dir2, g.sha_raw));
    qcow2_image_cache_close(cache);
}

static void
test_hostile_images(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    struct qcow2_image_cache *cache = open_cache(&cfg);
    const struct {
        const char *name;
        const char *sha;
        const char *needle;
    } cases[] = {
        {"backing.qcow2", g.sha_backing, "backing file"},
        {"datafile.qcow2", g.sha_datafile, "data file"},
        {"l1eof.qcow2", g.sha_l1eof, "extends past the end of the file"},
        {"huge.qcow2", g.sha_huge, "virtual size 4611686018427387904"},
    };
    for (size_t i = 0; i < NA_ARRAY_SIZE(cases); i++) {
        cleanup_free char *url = url_of(cases[i].name);
        cleanup_error struct na_error *err =
            get_fails(cache, url, cases[i].sha, "qcow2", NA_CODE_IMAGE);
        expect_msg(err, cases[i].needle);
        expect_msg(err, "refused as qcow2");
        assert_false(exists(dir, cases[i].sha));
        assert_int_equal(n_partials(dir), 0);
    }
    /* Declared raw, the same bytes are refused too: a later tool that probes would follow
     * the backing file. */
    cleanup_free char *url = url_of("backing.qcow2");
    cleanup_error struct na_error *err = get_fails(cache, url, g.sha_backing, "raw", NA_CODE_IMAGE);
    expect_msg(err, "image declared raw is a qcow2 image");
    expect_msg(err, "refused as raw");
    assert_false(exists(dir, g.sha_backing));
    assert_int_equal(n_partials(dir), 0);
    qcow2_image_cache_close(cache);
}

static void
test_bad_arguments(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    struct qcow2_image_cache *cache = open_cache(&cfg);
    cleanup_free char *url = url_of("raw.img");
    struct na_error *err;
    err = get_fails(cache, url, "../../etc/passwd", "raw", NA_CODE_INVALID_ARGUMENT);
    na_error_free(err);
    err = get_fails(cache, url, g.sha_raw, "vmdk", NA_CODE_INVALID_ARGUMENT);
    na_error_free(err);
    err = get_fails(cache, "ftp://127.0.0.1/raw.img", g.sha_raw, "raw", NA_CODE_INVALID_ARGUMENT);
    expect_msg(err, "ftp");
    na_error_free(err);
    err = get_fails(cache, "not a url", g.sha_raw, "raw", NA_CODE_INVALID_ARGUMENT);
    na_error_free(err);
    qcow2_image_cache_close(cache);
}

static void
set_age(const char *dir, const char *name, time_t age)
{
    cleanup_free char *p = na_xasprintf("%s/%s", dir, name);
    struct timespec t[2] = {{.tv_sec = time(NULL) - age}, {.tv_sec = time(NULL) - age}};
    assert_int_equal(utimensat(AT_FDCWD, p, t, 0), 0);
}

static void
test_evict(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    struct qcow2_image_cache *cache = open_cache(&cfg);
    free(get_ok(cache, "raw.img", g.sha_raw, "raw", NULL));
    free(get_ok(cache, "raw2.img", g.sha_raw2, "raw", NULL));
    free(get_ok(cache, "good.qcow2", g.sha_qcow2, "qcow2", NULL));
    set_age(dir, g.sha_raw, 7200);  /* old, unused: goes */
    set_age(dir, g.sha_raw2, 7200); /* old but in use: stays */
    set_age(dir, g.sha_qcow2, 60);  /* recent: stays */
    cleanup_free char *stray = na_xasprintf("%s/not-an-image", dir);
    write_file(stray, "x", 1);
    set_age(dir, "not-an-image", 7200); /* not ours: stays */
    /* Partial files: a stale one goes, a fresh one stays. */
    cleanup_free char *stale = na_xasprintf("%s/.partial/stale.part", dir);
    cleanup_free char *fresh = na_xasprintf("%s/.partial/fresh.part", dir);
    write_file(stale, "x", 1);
    write_file(fresh, "x", 1);
    set_age(dir, ".partial/stale.part", 2 * 86400);

    const char *in_use[] = {g.sha_raw2};
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(qcow2_image_cache_evict(cache, in_use, 1, 3600, &err), 1);
    assert_null(err);
    assert_false(exists(dir, g.sha_raw));
    assert_true(exists(dir, g.sha_raw2));
    assert_true(exists(dir, g.sha_qcow2));
    assert_true(exists(dir, "not-an-image"));
    assert_false(exists(dir, ".partial/stale.part"));
    assert_true(exists(dir, ".partial/fresh.part"));

    /* Nothing in use, age 0: every image goes. */
    assert_int_equal(qcow2_image_cache_evict(cache, NULL, 0, 0, &err), 2);
    assert_false(exists(dir, g.sha_raw2));
    assert_false(exists(dir, g.sha_qcow2));
    qcow2_image_cache_close(cache);
}

/* A source slower than min_rate fails, though it never stalls completely. */
static void
test_min_rate(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    cfg.retries = 0;
    cfg.min_rate = 1 << 20;
    struct qcow2_image_cache *cache = open_cache(&cfg);
    cleanup_free char *url = url_of("_/slow/200000/raw.img"); /* about 5 s */
    cleanup_error struct na_error *err = get_fails(cache, url, g.sha_raw, "raw", NA_CODE_IMAGE);
    expect_msg(err, "timed out");
    assert_false(exists(dir, g.sha_raw));
    qcow2_image_cache_close(cache);
}

/* Retries end at the total bound (connect + stall + size / min_rate), not after all of
 * them: here 2 + 2 + 2 MiB at 1 MiB/s = 6 s, and the second backoff (6 s) would end past it. */
static void
test_total_bound(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    cfg.retries = 5;
    cfg.backoff_ms = 3000;
    cfg.min_rate = 1 << 20;
    cfg.max_image_size = 2 << 20;
    struct qcow2_image_cache *cache = open_cache(&cfg);
    const char *p = "/_/flaky/100/raw.img";
    cleanup_free char *url = url_of(p + 1);
    cleanup_error struct na_error *err = get_fails(cache, url, g.sha_raw, "raw", NA_CODE_IMAGE);
    expect_msg(err, "gave up after 2 attempts");
    expect_msg(err, "bound of 6 s");
    assert_int_equal(server_count(p, false), 2);
    qcow2_image_cache_close(cache);
}

/* A waiter whose own URL differs from the failed shared download's tries its own. */
static void *
get_in_thread(void *opaque)
{
    struct racer *r = opaque;
    qcow2_image_cache_get(r->cache, r->url, r->sha, "raw", &r->path, NULL, &r->err);
    return NULL;
}

static void
test_waiter_tries_its_own_url(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    cfg.retries = 0;
    struct qcow2_image_cache *cache = open_cache(&cfg);
    /* The first source sends half the image at about 200 kB/s (some 2.5 s), then fails. */
    const char *bad_p = "/_/slow/200000/_/truncate/raw.img";
    const char *good_p = "/_/truncate-n/0/raw.img";
    cleanup_free char *bad = url_of(bad_p + 1);
    cleanup_free char *good = url_of(good_p + 1);
    struct racer first = {cache, bad, g.sha_raw, NULL, NULL, NULL};
    pthread_t t0;
    assert_int_equal(pthread_create(&t0, NULL, get_in_thread, &first), 0);
    /* The others ask while it runs (the server has its request). */
    for (int i = 0; i < 5000 && server_count(bad_p, false) == 0; i++)
        usleep(1000);
    struct racer others[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        others[i] = (struct racer){cache, good, g.sha_raw, NULL, NULL, NULL};
        assert_int_equal(pthread_create(&t[i], NULL, get_in_thread, &others[i]), 0);
    }
    pthread_join(t0, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_non_null(first.err);
    expect_msg(first.err, "truncated");
    na_error_free(first.err);
    for (int i = 0; i < 4; i++) {
        if (others[i].err)
            fail_msg("waiter %d inherited: %s", i, others[i].err->msg);
        free(others[i].path);
    }
    assert_int_equal(server_count(good_p, false), 1); /* they share their own download */
    assert_true(exists(dir, g.sha_raw));
    qcow2_image_cache_close(cache);
}

/* The quota counts the cached images and the partial downloads. */
static void
test_quota(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    cfg.max_total_size = RAW_SIZE + RAW_SIZE / 2;
    struct qcow2_image_cache *cache = open_cache(&cfg);
    cleanup_free char *a = get_ok(cache, "raw.img", g.sha_raw, "raw", NULL);
    /* Announced too large for what is left: refused before the body, nothing kept. */
    cleanup_free char *url = url_of("raw2.img");
    cleanup_error struct na_error *err =
        get_fails(cache, url, g.sha_raw2, "raw", NA_CODE_NO_CAPACITY);
    expect_msg(err, "max_size_gib");
    assert_false(exists(dir, g.sha_raw2));
    assert_int_equal(n_partials(dir), 0);
    /* No length announced: stopped at the quota while it arrives. */
    cleanup_free char *churl = url_of("_/chunked/raw2.img");
    cleanup_error struct na_error *cherr =
        get_fails(cache, churl, g.sha_raw2, "raw", NA_CODE_NO_CAPACITY);
    assert_int_equal(n_partials(dir), 0);
    /* Room again once the first image is gone. */
    assert_int_equal(qcow2_image_cache_evict(cache, NULL, 0, 0, &err), 1);
    cleanup_free char *b = get_ok(cache, "raw2.img", g.sha_raw2, "raw", NULL);
    qcow2_image_cache_close(cache);
}

/* An overlay dir/<uuid>/<name> on the cached image sha256 (or on `backing` when set). */
static void
make_overlay(const char *dir, const char *uuid, const char *name, const char *backing)
{
    cleanup_free char *sub = na_xasprintf("%s/%s", dir, uuid);
    assert_true(mkdir(sub, 0700) == 0 || errno == EEXIST);
    cleanup_close int dirfd = open(sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dirfd >= 0);
    cleanup_error struct na_error *err = NULL;
    if (qcow2_overlay_create(dirfd, name, NULL, backing, "raw", RAW_SIZE, &err) < 0)
        fail_msg("overlay %s/%s: %s", sub, name, err->msg);
}

static bool
has_name(char **names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

/* The bases the overlays on disk back on are kept, whatever the records say. */
static void
test_evict_keeps_overlay_bases(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    cleanup_free char *dir = NULL;
    config(&cfg, &dir);
    struct qcow2_image_cache *cache = open_cache(&cfg);
    cleanup_free char *a = get_ok(cache, "raw.img", g.sha_raw, "raw", NULL);
    cleanup_free char *b = get_ok(cache, "raw2.img", g.sha_raw2, "raw", NULL);

    cleanup_free char *inst = na_xasprintf("%s/instances%d", g.root, g.n_caches);
    assert_int_equal(mkdir(inst, 0700), 0);
    make_overlay(inst, "0b6f1ad4-3c4e-4d8f-9a53-7b4a8e0f5c11", "disk", a);
    make_overlay(inst, "0b6f1ad4-3c4e-4d8f-9a53-7b4a8e0f5c11", "disk.next", b);
    /* Not counted: a base outside the cache, another file name, a directory that is not a
     * uuid, and a symlink to an overlay. */
    make_overlay(inst, "5e2c9f57-8a1b-4c0e-b6d2-3f9a7c1e4b20", "disk", "/etc/hostname");
    make_overlay(inst, "5e2c9f57-8a1b-4c0e-b6d2-3f9a7c1e4b20", "other", a);
    make_overlay(inst, "not-a-uuid", "disk", a);
    cleanup_free char *link_dir = na_xasprintf("%s/9d3e1b7a-2f6c-4a8e-8b1d-5c7f0a9e2d33", inst);
    assert_int_equal(mkdir(link_dir, 0700), 0);
    cleanup_free char *link = na_xasprintf("%s/disk", link_dir);
    cleanup_free char *target = na_xasprintf("%s/0b6f1ad4-3c4e-4d8f-9a53-7b4a8e0f5c11/disk", inst);
    assert_int_equal(symlink(target, link), 0);

    const char *const overlay_names[] = {"disk", "disk.next"};
    char **names = NULL;
    size_t n = 0;
    qcow2_image_cache_backed_names(cache, inst, overlay_names, 2, &names, &n);
    assert_int_equal(n, 2);
    assert_true(has_name(names, n, g.sha_raw));
    assert_true(has_name(names, n, g.sha_raw2));

    cleanup_error struct na_error *err = NULL;
    assert_int_equal(qcow2_image_cache_evict(cache, (const char *const *)names, n, 0, &err), 0);
    assert_true(exists(dir, g.sha_raw));
    assert_true(exists(dir, g.sha_raw2));
    /* Without them both go. */
    assert_int_equal(qcow2_image_cache_evict(cache, NULL, 0, 0, &err), 2);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    qcow2_image_cache_close(cache);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_and_hit),
        cmocka_unit_test(test_concurrent_one_download),
        cmocka_unit_test(test_concurrent_failure_shared),
        cmocka_unit_test(test_sha256_mismatch),
        cmocka_unit_test(test_truncated_then_resumed),
        cmocka_unit_test(test_truncated_always),
        cmocka_unit_test(test_flaky_then_ok),
        cmocka_unit_test(test_not_found_no_retry),
        cmocka_unit_test(test_hang_stall_timeout),
        cmocka_unit_test(test_norange_restart),
        cmocka_unit_test(test_resume_kept_partial),
        cmocka_unit_test(test_size_limit),
        cmocka_unit_test(test_file_url_refused_and_redirects),
        cmocka_unit_test(test_address_refused),
        cmocka_unit_test(test_hostile_images),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_evict),
        cmocka_unit_test(test_evict_keeps_overlay_bases),
        cmocka_unit_test(test_min_rate),
        cmocka_unit_test(test_total_bound),
        cmocka_unit_test(test_waiter_tries_its_own_url),
        cmocka_unit_test(test_quota),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
