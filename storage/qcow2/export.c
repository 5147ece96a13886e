/* Flattening an instance's disk into a standalone image (export.h). */
#include "storage/qcow2/export.h"
#include "storage/qcow2/qcow2-private.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <spawn.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* The descriptors the overlay and the output have in qemu-img. */
#define CHILD_OVERLAY_FD 3
#define CHILD_OUTPUT_FD 4
#define HASH_CHUNK (1u << 20)
#define SNAPSHOT_NAME_MAX 63

/* What qemu-img reads as one option value and one JSON string: 1..63 of [A-Za-z0-9._-], not
 * "." or "..". */
static bool
snapshot_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > SNAPSHOT_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

/* A path that needs no escaping in a JSON string: absolute, printable, no quote or
 * backslash.  The base is the agent's own cache path; anything else is refused. */
static bool
json_safe_path(const char *path)
{
    if (path[0] != '/')
        return false;
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\' || *p == 0x7f)
            return false;
    return true;
}

/* The source as qemu-img opens it: the overlay through its descriptor, backed by the base
 * the caller names (the header's backing name is ignored). */
static char *
source_spec(const struct qcow2_export_source *src)
{
    return na_xasprintf("json:{\"driver\":\"qcow2\",\"file\":{\"driver\":\"file\",\"filename\":"
                        "\"/proc/self/fd/%d\"},\"backing\":{\"driver\":\"%s\",\"file\":{"
                        "\"driver\":\"file\",\"filename\":\"%s\"}}}",
                        CHILD_OVERLAY_FD, src->base_format, src->base_path);
}

/* The first line of what qemu-img wrote to stderr (held in the memfd), or "". */
static void
first_line(int memfd, char *buf, size_t size)
{
    ssize_t n = pread(memfd, buf, size - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
}

/* Runs qemu-img convert from src into out_fd: a standalone compressed image, or with delta
 * an overlay on the source's base holding only what differs from it. */
static int
run_convert(const struct qcow2_export_source *src, bool delta, int out_fd, struct na_error **err)
{
    cleanup_free char *spec = source_spec(src);
    cleanup_free char *snap =
        src->snapshot ? na_xasprintf("snapshot.name=%s", src->snapshot) : NULL;
    char out_path[32];
    snprintf(out_path, sizeof(out_path), "/proc/self/fd/%d", CHILD_OUTPUT_FD);
    const char *argv[20];
    size_t n = 0;
    argv[n++] = "qemu-img";
    argv[n++] = "convert";
    argv[n++] = "-q";
    if (src->guest_running)
        argv[n++] = "-U";
    if (delta) {
        argv[n++] = "-B";
        argv[n++] = src->base_path;
        argv[n++] = "-F";
        argv[n++] = src->base_format;
    } else {
        argv[n++] = "-c";
    }
    argv[n++] = "-O";
    argv[n++] = "qcow2";
    if (snap) {
        argv[n++] = "-l";
        argv[n++] = snap;
    }
    argv[n++] = "--";
    argv[n++] = spec;
    argv[n++] = out_path;
    argv[n] = NULL;

    /* Copies above the child's numbers, so that each dup2 is a real one and clears
     * close-on-exec whatever numbers the descriptors have. */
    cleanup_close int overlay = fcntl(src->overlay_fd, F_DUPFD_CLOEXEC, CHILD_OUTPUT_FD + 1);
    cleanup_close int out = fcntl(out_fd, F_DUPFD_CLOEXEC, CHILD_OUTPUT_FD + 1);
    cleanup_close int errfd = memfd_create("qemu-img-stderr", MFD_CLOEXEC);
    if (overlay < 0 || out < 0 || errfd < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "prepare descriptors for qemu-img");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, errfd, STDERR_FILENO);
    posix_spawn_file_actions_adddup2(&fa, overlay, CHILD_OVERLAY_FD);
    posix_spawn_file_actions_adddup2(&fa, out, CHILD_OUTPUT_FD);
    pid_t pid;
    int e = posix_spawnp(&pid, "qemu-img", &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (e)
        return na_error_set(err, NA_CODE_STORAGE, e, "run qemu-img to flatten the disk");
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return na_error_set(err, NA_CODE_STORAGE, errno, "wait for qemu-img");
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    char why[512];
    first_line(errfd, why, sizeof(why));
    return na_error_quiet(
        err, NA_CODE_STORAGE, EIO, "qemu-img convert of the disk%s%s failed (status %d): %s",
        src->snapshot ? " at snapshot " : "", src->snapshot ? src->snapshot : "",
        WIFEXITED(status) ? WEXITSTATUS(status) : -1, why[0] ? why : "it said nothing");
}

/* sha256 of the whole file open on fd, and its size. */
static int
hash_file(int fd, char out[65], uint64_t *size, struct na_error **err)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL))
        abort();
    cleanup_free uint8_t *buf = na_xmalloc(HASH_CHUNK);
    uint64_t off = 0;
    ssize_t n;
    while ((n = pread(fd, buf, HASH_CHUNK, (off_t)off)) > 0) {
        EVP_DigestUpdate(md, buf, (size_t)n);
        off += (uint64_t)n;
    }
    if (n < 0) {
        EVP_MD_CTX_free(md);
        return na_error_set(err, NA_CODE_STORAGE, errno, "read the flattened image");
    }
    uint8_t digest[32];
    unsigned len = 0;
    EVP_DigestFinal_ex(md, digest, &len);
    EVP_MD_CTX_free(md);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    *size = off;
    return 0;
}

static int
check_source(const struct qcow2_export_source *src, const struct qcow2_limits *limits,
             struct na_error **err)
{
    if (src->snapshot && !snapshot_name_ok(src->snapshot))
        return na_error_field(err, "snapshot_name",
                              "snapshot name `%s`: 1..63 of A-Z a-z 0-9 . _ -, not . or ..",
                              src->snapshot);
    if (!src->snapshot && src->guest_running)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, EINVAL,
                            "the disk of a running guest is exported at a snapshot only");
    if ((strcmp(src->base_format, "qcow2") != 0 && strcmp(src->base_format, "raw") != 0) ||
        !json_safe_path(src->base_path))
        return na_error_set(err, NA_CODE_INTERNAL, EINVAL, "base image `%s` (%s) not usable",
                            src->base_path, src->base_format);
    struct qcow2_limits with_backing = limits ? *limits : (struct qcow2_limits){0};
    if (!limits)
        qcow2_limits_init(&with_backing);
    with_backing.allow_backing = true;
    struct qcow2_info info;
    int ret = qcow2_validate(src->overlay_fd, &with_backing, &info, err);
    if (ret < 0)
        na_error_wrap(err, "the instance's disk");
    return ret;
}

/* Writes the converted image into dirfd as name, validated (a delta must back on the base)
 * and, unless delta, hashed. */
static int
convert_into(const struct qcow2_export_source *src, bool delta, int dirfd, const char *name,
             const struct qcow2_file_owner *owner, const struct qcow2_limits *limits,
             struct qcow2_export *out, struct na_error **err)
{
    int ret = check_source(src, limits, err);
    if (ret < 0)
        return ret;
    cleanup_free char *tmp = NULL;
    cleanup_close int fd = qcow2_tmpfile_at(dirfd, name, &tmp, err);
    if (fd < 0)
        return fd;
    struct qcow2_limits result_limits = limits ? *limits : (struct qcow2_limits){0};
    if (!limits)
        qcow2_limits_init(&result_limits);
    result_limits.allow_backing = delta;
    struct qcow2_info info;
    *out = (struct qcow2_export){0};
    if ((ret = run_convert(src, delta, fd, err)) < 0 ||
        (ret = qcow2_validate(fd, &result_limits, &info, err)) < 0 ||
        (delta && strcmp(info.backing_file, src->base_path) != 0 &&
         (ret = na_error_set(err, NA_CODE_STORAGE, EIO, "the copy backs on `%s`, not on `%s`",
                             info.backing_file, src->base_path)) < 0) ||
        (!delta && (ret = hash_file(fd, out->sha256, &out->size, err)) < 0) ||
        (ret = qcow2_publish_at(dirfd, fd, tmp, name, owner, true, err)) < 0) {
        unlinkat(dirfd, tmp, 0);
        return ret;
    }
    out->virtual_size = info.virtual_size;
    return 0;
}

int
qcow2_export_flatten(const struct qcow2_export_source *src, int dirfd, const char *name,
                     const struct qcow2_file_owner *owner, const struct qcow2_limits *limits,
                     struct qcow2_export *out, struct na_error **err)
{
    return convert_into(src, false, dirfd, name, owner, limits, out, err);
}

int
qcow2_export_copy_delta(const struct qcow2_export_source *src, int dirfd, const char *name,
                        const struct qcow2_file_owner *owner, const struct qcow2_limits *limits,
                        struct qcow2_export *out, struct na_error **err)
{
    return convert_into(src, true, dirfd, name, owner, limits, out, err);
}
