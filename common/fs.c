#include "common/common.h"

#include <errno.h>
#include <fcntl.h>
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
