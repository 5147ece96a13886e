/* Snapshot to image (storage/qcow2/export.h) with the real qemu-img and a real HTTP server on
 * loopback (deploy/imageserver.py, which takes PUT /uploads/<name>), started once for the
 * group and stopped by pid.
 *
 * The disk: a qcow2 base holding 0xaa in its first MiB, and an overlay on it whose header
 * names /etc/shadow as its raw backing file (what a hostile guest could write there), with
 * 0xbb in its second MiB at snapshot s1 and 0xcc there now.  The export reads the overlay
 * with the base the caller names, so the header's backing name never matters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "storage/qcow2/export.h"

extern char **environ;

#define MIB (1u << 20)

static struct {
    char root[64];
    char *base, *overlay, *datafile_overlay;
    char *srv; /* the server's root */
    char *base_url;
    pid_t server;
    struct qcow2_cidr loopback;
} g;

static void
run(const char *cmd)
{
    int rc = system(cmd);
    if (rc != 0)
        fail_msg("command failed (%d): %s", rc, cmd);
}

/* qemu-io's json: spec of the overlay on the base (its header names /etc/shadow). */
static char *
overlay_spec(void)
{
    return na_xasprintf("'json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":"
                        "\"%s\"},\"backing\":{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\","
                        "\"filename\":\"%s\"}}}'",
                        g.overlay, g.base);
}

static int
group_setup(void **state)
{
    (void)state;
    strcpy(g.root, "/tmp/nodeagent-test-export-XXXXXX");
    assert_non_null(mkdtemp(g.root));
    g.base = na_xasprintf("%s/base.qcow2", g.root);
    g.overlay = na_xasprintf("%s/disk.qcow2", g.root);
    g.datafile_overlay = na_xasprintf("%s/datafile.qcow2", g.root);
    g.srv = na_xasprintf("%s/srv", g.root);
    assert_int_equal(mkdir(g.srv, 0755), 0);
    cleanup_free char *spec = overlay_spec();
    cleanup_free char *cmd =
        na_xasprintf("qemu-img create -q -f qcow2 %s 64M && "
                     "qemu-io -f qcow2 -c 'write -q -P 0xaa 0 1M' %s && "
                     "qemu-img create -q -f qcow2 -u -b /etc/shadow -F raw %s 64M && "
                     "qemu-io -c 'write -q -P 0xbb 1M 1M' %s && "
                     "qemu-img snapshot -c s1 %s && "
                     "qemu-io -c 'write -q -P 0xcc 1M 1M' %s && "
                     "qemu-img create -q -f qcow2 -o data_file=%s/datafile.data %s 64M",
                     g.base, g.base, g.overlay, spec, g.overlay, spec, g.root, g.datafile_overlay);
    run(cmd);
    const char *why;
    assert_int_equal(qcow2_cidr_parse("127.0.0.0/8", &g.loopback, &why), 0);

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
    while (len < sizeof(line) - 1 && read(out[0], line + len, 1) == 1 && line[len] != '\n')
        len++;
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
    free(g.base);
    free(g.overlay);
    free(g.datafile_overlay);
    free(g.srv);
    free(g.base_url);
    return 0;
}

static int
open_dir(void)
{
    int fd = open(g.root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static int
flatten(const char *overlay, const char *snapshot, bool running, const char *name,
        struct qcow2_export *out, struct na_error **err)
{
    cleanup_close int ov = open(overlay, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    assert_true(ov >= 0);
    cleanup_close int dir = open_dir();
    struct qcow2_export_source src = {
        .overlay_fd = ov,
        .base_path = g.base,
        .base_format = "qcow2",
        .snapshot = snapshot,
        .guest_running = running,
    };
    struct qcow2_file_owner owner = {.uid = 0, .gid = 0, .mode = 0440};
    return qcow2_export_flatten(&src, dir, name, &owner, NULL, out, err);
}

/* The exported file reads as expected (qemu-io's pattern check), passes qemu-img check, and
 * its sha256 and size are what the export says. */
static void
check_export(const char *name, const struct qcow2_export *ex, int second_mib)
{
    cleanup_free char *path = na_xasprintf("%s/%s", g.root, name);
    cleanup_free char *cmd =
        na_xasprintf("qemu-io -r -f qcow2 -c 'read -q -P 0xaa 0 1M' -c 'read -q -P 0x%02x 1M 1M' "
                     "%s | grep -q Pattern && exit 1; qemu-img check -q %s && "
                     "! qemu-img info %s | grep -q 'backing file'",
                     second_mib, path, path, path);
    run(cmd);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((uint64_t)st.st_size, ex->size);
    assert_int_equal(st.st_mode & 07777, 0440);
    assert_int_equal(ex->virtual_size, 64u * MIB);
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    cleanup_free uint8_t *buf = na_xmalloc(ex->size);
    assert_int_equal(read(fd, buf, ex->size), (ssize_t)ex->size);
    char sha[65];
    na_sha256_hex(buf, ex->size, sha);
    assert_string_equal(sha, ex->sha256);
}

static void
test_flatten_at_a_snapshot_and_now(void **state)
{
    (void)state;
    struct qcow2_export at_s1, now;
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(flatten(g.overlay, "s1", true, "s1.qcow2", &at_s1, &err), 0);
    check_export("s1.qcow2", &at_s1, 0xbb);
    assert_int_equal(flatten(g.overlay, NULL, false, "now.qcow2", &now, &err), 0);
    check_export("now.qcow2", &now, 0xcc);
    assert_string_not_equal(at_s1.sha256, now.sha256);
    /* Compressed: 2 MiB of data in far less. */
    assert_true(now.size < MIB);
}

/* A clone's disk: only the overlay's own clusters, on the same base. */
static void
test_copy_delta_keeps_the_base(void **state)
{
    (void)state;
    cleanup_close int ov = open(g.overlay, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    cleanup_close int dir = open_dir();
    struct qcow2_export_source src = {
        .overlay_fd = ov, .base_path = g.base, .base_format = "qcow2", .snapshot = "s1"};
    struct qcow2_file_owner owner = {.uid = 0, .gid = 0, .mode = 0600};
    struct qcow2_export out;
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(qcow2_export_copy_delta(&src, dir, "delta.qcow2", &owner, NULL, &out, &err),
                     0);
    assert_int_equal(out.virtual_size, 64u * MIB);
    cleanup_free char *cmd = na_xasprintf(
        "cd %s && qemu-img info delta.qcow2 | grep -q '^backing file: %s$' && "
        "qemu-io -r -c 'read -q -P 0xaa 0 1M' -c 'read -q -P 0xbb 1M 1M' delta.qcow2 | "
        "grep -q Pattern && exit 1; qemu-img check -q %s/delta.qcow2",
        g.root, g.base, g.root);
    run(cmd);
    /* Only the overlay's MiB was copied, not the base's. */
    struct stat st;
    cleanup_free char *path = na_xasprintf("%s/delta.qcow2", g.root);
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size < 2 * (off_t)MIB);
}

static void
test_refusals(void **state)
{
    (void)state;
    struct qcow2_export ex;
    struct na_error *err = NULL;
    assert_true(flatten(g.overlay, NULL, true, "x.qcow2", &ex, &err) < 0);
    assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
    na_error_clear(&err);
    assert_true(flatten(g.overlay, "s1,file.filename=/etc/shadow", true, "x.qcow2", &ex, &err) < 0);
    assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
    assert_string_equal(err->field, "snapshot_name");
    na_error_clear(&err);
    /* An external data file would make qemu-img read another host file. */
    assert_true(flatten(g.datafile_overlay, NULL, false, "x.qcow2", &ex, &err) < 0);
    assert_int_equal(err->code, NA_CODE_IMAGE);
    assert_non_null(strstr(err->msg, "the instance's disk"));
    na_error_clear(&err);
    assert_true(flatten(g.overlay, "nosuch", true, "x.qcow2", &ex, &err) < 0);
    assert_int_equal(err->code, NA_CODE_STORAGE);
    assert_non_null(strstr(err->msg, "nosuch"));
    na_error_clear(&err);
    cleanup_free char *left = na_xasprintf("%s/x.qcow2", g.root);
    cleanup_free char *part = na_xasprintf("%s/x.qcow2.part", g.root);
    assert_int_equal(access(left, F_OK), -1);
    assert_int_equal(access(part, F_OK), -1);
}

/* --- upload ------------------------------------------------------------------------------ */

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

static int
server_count(const char *path)
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
    json_t *n = json_object_get(json_object_get(j, "requests"), path);
    int count = n ? (int)json_integer_value(n) : 0;
    json_decref(j);
    free(body);
    return count;
}

static void
upload_config(struct qcow2_image_cache_config *cfg)
{
    qcow2_image_cache_config_init(cfg);
    cfg->allowed_networks = &g.loopback;
    cfg->n_allowed_networks = 1;
    cfg->connect_timeout_s = 2;
    cfg->stall_timeout_s = 5;
    cfg->retries = 3;
    cfg->backoff_ms = 10;
}

struct seen {
    uint64_t last_sent, total;
    int calls;
};

static void
on_progress(void *ctx, uint64_t sent, uint64_t total)
{
    struct seen *s = ctx;
    assert_true(sent >= s->last_sent);
    s->last_sent = sent;
    s->total = total;
    s->calls++;
}

static int
upload(const char *url_path, const struct qcow2_image_cache_config *cfg, struct seen *seen,
       struct na_error **err)
{
    cleanup_free char *path = na_xasprintf("%s/now.qcow2", g.root);
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    cleanup_free char *url = na_xasprintf("%s%s", g.base_url, url_path);
    return qcow2_export_upload(cfg, fd, url, seen ? on_progress : NULL, seen, err);
}

static void
assert_same_file(const char *a, const char *b)
{
    cleanup_free char *cmd = na_xasprintf("cmp -s %s %s", a, b);
    run(cmd);
}

static void
test_upload_puts_the_image(void **state)
{
    (void)state;
    struct qcow2_export ex;
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(flatten(g.overlay, NULL, false, "now.qcow2", &ex, &err), 0);
    struct qcow2_image_cache_config cfg;
    upload_config(&cfg);
    struct seen seen = {0};
    assert_int_equal(upload("uploads/img1.qcow2?sig=secret", &cfg, &seen, &err), 0);
    cleanup_free char *got = na_xasprintf("%s/uploads/img1.qcow2", g.srv);
    cleanup_free char *sent = na_xasprintf("%s/now.qcow2", g.root);
    assert_same_file(got, sent);
    assert_true(seen.calls >= 1);
    assert_int_equal(seen.last_sent, ex.size);
    assert_int_equal(seen.total, ex.size);
    assert_int_equal(server_count("/uploads/img1.qcow2"), 1);
}

static void
test_upload_retries_transient_failures(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    upload_config(&cfg);
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(upload("_/flaky/2/uploads/img2.qcow2", &cfg, NULL, &err), 0);
    assert_int_equal(server_count("/_/flaky/2/uploads/img2.qcow2"), 3);
    cleanup_free char *got = na_xasprintf("%s/uploads/img2.qcow2", g.srv);
    cleanup_free char *sent = na_xasprintf("%s/now.qcow2", g.root);
    assert_same_file(got, sent);

    /* More failures than retries: it gives up, saying so, without the URL's query. */
    cfg.retries = 1;
    assert_true(upload("_/flaky/5/uploads/img3.qcow2?sig=secret", &cfg, NULL, &err) < 0);
    assert_int_equal(err->code, NA_CODE_IMAGE);
    assert_non_null(strstr(err->msg, "HTTP 503"));
    assert_non_null(strstr(err->msg, "gave up after 2 attempts"));
    assert_null(strstr(err->msg, "secret"));
    assert_int_equal(server_count("/_/flaky/5/uploads/img3.qcow2"), 2);
}

static void
test_upload_refusals(void **state)
{
    (void)state;
    struct qcow2_image_cache_config cfg;
    upload_config(&cfg);
    struct na_error *err = NULL;
    /* A 4xx is not retried. */
    assert_true(upload("elsewhere/img4.qcow2", &cfg, NULL, &err) < 0);
    assert_non_null(strstr(err->msg, "HTTP 403"));
    assert_int_equal(server_count("/elsewhere/img4.qcow2"), 1);
    na_error_clear(&err);
    /* Loopback is not public: without allowed_networks nothing is sent there. */
    cfg.n_allowed_networks = 0;
    assert_true(upload("uploads/img5.qcow2", &cfg, NULL, &err) < 0);
    assert_int_equal(err->status, EACCES);
    assert_non_null(strstr(err->msg, "allowed_networks"));
    assert_int_equal(server_count("/uploads/img5.qcow2"), 0);
    na_error_clear(&err);
    /* Only http and https. */
    cleanup_close int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    assert_true(qcow2_export_upload(&cfg, fd, "file:///tmp/x", NULL, NULL, &err) < 0);
    assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
    na_error_clear(&err);
}

int
main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flatten_at_a_snapshot_and_now),
        cmocka_unit_test(test_copy_delta_keeps_the_base),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_upload_puts_the_image),
        cmocka_unit_test(test_upload_retries_transient_failures),
        cmocka_unit_test(test_upload_refusals),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
