#include "agent/ops/instance_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

int
agent_instance_dir_open(const char *instances_dir, const char *uuid, bool create,
                        struct na_error **err)
{
    cleanup_close int parent = open(instances_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (parent < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "open `%s`", instances_dir);
    if (create && mkdirat(parent, uuid, AGENT_INSTANCE_DIR_MODE) < 0 && errno != EEXIST)
        return na_error_set(err, NA_CODE_STORAGE, errno, "create `%s/%s`", instances_dir, uuid);
    int fd = openat(parent, uuid, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "open `%s/%s`", instances_dir, uuid);
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return na_error_set(err, NA_CODE_STORAGE, e, "stat `%s/%s`", instances_dir, uuid);
    }
    /* Through the descriptor: the directory itself, whatever its name points at now. */
    if (st.st_uid != 0 || st.st_gid != 0 || (st.st_mode & 07777) != AGENT_INSTANCE_DIR_MODE) {
        struct na_log_ctx log = {.instance = uuid};
        na_log(NA_LOG_WARN, &log, "taking an instance directory back from its guest",
               "uid=%u gid=%u mode=%o", (unsigned)st.st_uid, (unsigned)st.st_gid,
               (unsigned)(st.st_mode & 07777));
    }
    if ((st.st_uid != 0 || st.st_gid != 0) && fchown(fd, 0, 0) < 0) {
        int e = errno;
        close(fd);
        return na_error_set(err, NA_CODE_STORAGE, e, "make `%s/%s` root's", instances_dir, uuid);
    }
    if ((st.st_mode & 07777) != AGENT_INSTANCE_DIR_MODE &&
        fchmod(fd, AGENT_INSTANCE_DIR_MODE) < 0) {
        int e = errno;
        close(fd);
        return na_error_set(err, NA_CODE_STORAGE, e, "set the mode of `%s/%s`", instances_dir,
                            uuid);
    }
    return fd;
}

int
agent_instance_file_open(int dirfd, const char *name, int flags, int64_t uid, struct stat *st,
                         struct na_error **err)
{
    int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return -ENOENT;
        return na_error_set(err, NA_CODE_STORAGE, errno, "open `%s`%s", name,
                            errno == ELOOP ? ": it is a symlink" : "");
    }
    if (fstat(fd, st) < 0) {
        int e = errno;
        close(fd);
        return na_error_set(err, NA_CODE_STORAGE, e, "stat `%s`", name);
    }
    if (!S_ISREG(st->st_mode) || (uid >= 0 && st->st_uid != (uid_t)uid)) {
        close(fd);
        return na_error_quiet(err, NA_CODE_STORAGE, EPERM,
                              "`%s` is not a regular file%s%lld (mode %o, owner %u)", name,
                              uid >= 0 ? " owned by uid " : "", uid >= 0 ? (long long)uid : 0LL,
                              (unsigned)st->st_mode, (unsigned)st->st_uid);
    }
    return fd;
}

int
agent_instance_entry_remove(int dirfd, const char *name, struct na_error **err)
{
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno == EISDIR && unlinkat(dirfd, name, AT_REMOVEDIR) == 0)
        return 0;
    return na_error_set(err, NA_CODE_STORAGE, errno, "remove `%s`", name);
}

int
agent_instance_dir_secure(const char *instances_dir, const char *uuid, struct na_error **err)
{
    cleanup_error struct na_error *open_err = NULL;
    cleanup_close int dirfd = agent_instance_dir_open(instances_dir, uuid, false, &open_err);
    if (dirfd == -ENOENT)
        return 0;
    if (dirfd < 0) {
        *err = na_steal(&open_err);
        return dirfd;
    }
    static const char *const names[] = {"disk", "disk.config", "console.log"};
    for (size_t i = 0; i < NA_ARRAY_SIZE(names); i++) {
        struct stat st;
        if (fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISREG(st.st_mode))
            continue;
        struct na_log_ctx log = {.instance = uuid};
        na_log(NA_LOG_ERROR, &log,
               "removing an entry of an instance directory that is not a "
               "regular file; a guest may have planted it",
               "name=%s mode=%o uid=%u", names[i], (unsigned)st.st_mode, (unsigned)st.st_uid);
        int ret = agent_instance_entry_remove(dirfd, names[i], err);
        if (ret < 0)
            return ret;
    }
    return 0;
}
