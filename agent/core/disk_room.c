/* The free-space watermark of the state directory's filesystem.
 *
 * The instances' disks, the image cache, managed-save images and state.db share one
 * filesystem.  Below [agent] min_free_mib free, the requests that write much to it (create,
 * rebuild, resize, suspend) are refused with NO_CAPACITY, so that what remains keeps the
 * store writable and the running guests' disks growing.  statvfs(2) reads the superblock's
 * counters, no disk I/O, so the check runs on the loop, in the requests' prepare step.
 */
#include "agent/core/agent.h"

#include <errno.h>
#include <sys/statvfs.h>

int
agent_disk_free(const struct agent *a, uint64_t *free_bytes, struct na_error **err)
{
    struct statvfs st;
    if (statvfs(a->cfg->state_dir, &st) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "statvfs `%s`", a->cfg->state_dir);
    *free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
    return 0;
}

int
agent_disk_room_check(const struct agent *a, const char *kind, struct na_error **err)
{
    uint64_t free_bytes = 0;
    int ret = agent_disk_free(a, &free_bytes, err);
    if (ret < 0)
        return ret;
    uint64_t min_free = (uint64_t)a->cfg->min_free_mib << 20;
    if (free_bytes >= min_free)
        return 0;
    return na_error_quiet(err, NA_CODE_NO_CAPACITY, ENOSPC,
                          "the filesystem of %s has %llu MiB free, under [agent] min_free_mib = "
                          "%u; no %s until space is freed",
                          a->cfg->state_dir, (unsigned long long)(free_bytes >> 20),
                          a->cfg->min_free_mib, kind);
}
