#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>

int
na_fsync_dir_of(const char *path, struct na_error **err)
{
    cleanup_free char *copy = na_xstrdup(path);
    const char *dir = dirname(copy);
    cleanup_close int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "fsync directory `%s`", dir);
    return 0;
}

/* nftw has no context argument; each thread removes one tree at a time. */
static __thread int remove_failures;

static int
remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if ((type == FTW_DP ? rmdir(path) : unlink(path)) < 0 && errno != ENOENT) {
        na_log(NA_LOG_WARN, NULL, "could not remove", "path=\"%s\" errno=%d", path, errno);
        remove_failures++;
    }
    return 0;
}

int
na_remove_tree(const char *dir)
{
    remove_failures = 0;
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 && errno != ENOENT)
        return -errno;
    return remove_failures ? -EIO : 0;
}
