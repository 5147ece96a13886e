/* A point-in-time copy of a running guest's root disk (DESIGN.md section 10): libvirt's
 * block copy into an overlay the caller made on the same base (SHALLOW | REUSE_EXT: only the
 * top layer is copied, the target keeps its own backing), as a transient job (the domain may
 * be persistent), and, once the copy has caught up (READY), an abort without pivot: QEMU then
 * leaves the target consistent with the disk at that moment, and the guest goes on with its
 * own disk, unpaused and unaware. */
#include "hypervisor/hypervisor-private.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define COPY_POLL_MS 100
#define ROOT_DISK "vda"

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* The target's <disk>: a qcow2 file whose backing chain QEMU reads from its header (the
 * caller made it on the very base the guest's disk has). */
static char *
target_xml(const char *target_path)
{
    return na_xasprintf("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
                        "<source file='%s'/></disk>",
                        target_path);
}

static bool
path_ok_for_xml(const char *path)
{
    return path[0] == '/' && !strpbrk(path, "'\"<>&");
}

/* Until the copy job on the root disk has caught up, failed or timed out. */
static int
wait_ready(virDomainPtr dom, const char *uuid, unsigned timeout_s, struct na_error **err)
{
    for (unsigned waited = 0;; waited += COPY_POLL_MS) {
        virDomainBlockJobInfo info;
        int r = virDomainGetBlockJobInfo(dom, ROOT_DISK, &info, 0);
        if (r < 0)
            return hv_error(err, "read the disk copy job of", uuid);
        if (r == 0)
            return na_error_quiet(err, NA_CODE_HYPERVISOR, EIO,
                                  "the disk copy job of %s ended before it caught up", uuid);
        if (info.end > 0 && info.cur == info.end)
            return 0;
        if (waited >= timeout_s * 1000u)
            return na_error_quiet(err, NA_CODE_TIMEOUT, ETIMEDOUT,
                                  "the disk copy of %s did not catch up within %u s "
                                  "(%llu of %llu bytes)",
                                  uuid, timeout_s, (unsigned long long)info.cur,
                                  (unsigned long long)info.end);
        sleep_ms(COPY_POLL_MS);
    }
}

/* A copy job already on the root disk: one into target_path is what a crash of the agent left
 * (ended here, the copy is made again); another one is not ours to end. */
static int
end_stale_copy(virDomainPtr dom, const char *uuid, const char *target_path, struct na_error **err)
{
    virDomainBlockJobInfo info;
    int r = virDomainGetBlockJobInfo(dom, ROOT_DISK, &info, 0);
    if (r <= 0)
        return r < 0 ? hv_error(err, "read the disk jobs of", uuid) : 0;
    char *xml = virDomainGetXMLDesc(dom, 0);
    cleanup_free char *needle = na_xasprintf("file='%s'", target_path);
    bool ours = xml && strstr(xml, "<mirror") && strstr(xml, needle);
    free(xml);
    if (!ours)
        return na_error_quiet(err, NA_CODE_CONFLICT, EBUSY,
                              "another disk job runs on instance %s (a clone being made?)", uuid);
    if (virDomainBlockJobAbort(dom, ROOT_DISK, 0) < 0)
        return hv_error(err, "end the interrupted disk copy of", uuid);
    return 0;
}

int
hv_domain_disk_copy(struct hv_conn *conn, const char *uuid, const char *target_path,
                    unsigned timeout_s, struct na_error **err)
{
    if (!path_ok_for_xml(target_path))
        return na_error_set(err, NA_CODE_INTERNAL, EINVAL, "disk copy target `%s`", target_path);
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "find the domain of", &c, err);
    cleanup_free char *xml = target_xml(target_path);
    if (ret == 0)
        ret = end_stale_copy(c.dom, uuid, target_path, err);
    if (ret == 0 &&
        virDomainBlockCopy(c.dom, ROOT_DISK, xml, NULL, 0,
                           VIR_DOMAIN_BLOCK_COPY_SHALLOW | VIR_DOMAIN_BLOCK_COPY_REUSE_EXT |
                               VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB) < 0)
        ret = hv_error(err, "start the disk copy of", uuid);
    else if (ret == 0) {
        ret = wait_ready(c.dom, uuid, timeout_s, err);
        /* Ready or not, the job ends here; without pivot the guest keeps its own disk. */
        if (virDomainBlockJobAbort(c.dom, ROOT_DISK, 0) < 0 && ret == 0)
            ret = hv_error(err, "end the disk copy of", uuid);
    }
    return ret;
}
