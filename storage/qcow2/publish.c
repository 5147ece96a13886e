/* Publishing a file into a directory through descriptors.
 *
 * An instance's files are written under a fresh temporary name opened with openat(O_EXCL |
 * O_NOFOLLOW) on the directory's descriptor, given their owner and mode with fchown and
 * fchmod while nobody else can reach them, fsync'd, and renamed into place with renameat.
 * Nothing here resolves a path that a guest could have changed: a symlink planted under
 * the final name is replaced, never followed. */
#include "storage/qcow2/qcow2.h"
#include "storage/qcow2/qcow2-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

int
qcow2_tmpfile_at(int dirfd, const char *name, char **tmp_name, struct na_error **err)
{
    /* One temp name per file: the one a write cut short by a crash left goes first, so a
     * retried operation leaves nothing behind. */
    cleanup_free char *tmp = na_xasprintf("%s.part", name);
    if (unlinkat(dirfd, tmp, 0) < 0 && errno != ENOENT)
        return na_error_set(err, NA_CODE_STORAGE, errno, "remove the stale temp file `%s`", tmp);
    int fd = openat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "create a temp file for `%s`", name);
    *tmp_name = na_steal(&tmp);
    return fd;
}

int
qcow2_publish_at(int dirfd, int fd, const char *tmp_name, const char *name,
                 const struct qcow2_file_owner *owner, bool replace, struct na_error **err)
{
    if (owner && (fchown(fd, owner->uid, owner->gid) < 0 || fchmod(fd, owner->mode) < 0))
        return na_error_set(err, NA_CODE_STORAGE, errno, "give `%s` to uid %u", name,
                            (unsigned)owner->uid);
    if (fsync(fd) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "fsync `%s`", tmp_name);
    int r = renameat2(dirfd, tmp_name, dirfd, name, replace ? 0 : RENAME_NOREPLACE);
    if (r < 0 && !replace && (errno == EINVAL || errno == ENOSYS)) {
        /* A filesystem without RENAME_NOREPLACE: linkat refuses to replace as well. */
        r = linkat(dirfd, tmp_name, dirfd, name, 0);
        if (r == 0)
            unlinkat(dirfd, tmp_name, 0);
    }
    if (r < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "rename `%s` to `%s`", tmp_name, name);
    if (fsync(dirfd) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "fsync the directory of `%s`", name);
    return 0;
}
