/* clone: a new instance whose disk is a point-in-time copy of another instance's on this
 * node (DESIGN.md section 10).  It is a create whose disk phase copies instead of making an
 * empty overlay:
 *   copy    the clone's overlay on the source's (shared, cached) base: a running source's
 *           disk by libvirt's block copy, ended without pivot (the source runs on); a stopped
 *           source's, or a snapshot's, by qemu-img (only what differs from the base); then
 *           grown to the clone's flavor and given the clone's config drive (its own uuid,
 *           hostname, NICs: cloud-init runs again).  Redone after a crash.
 *   define, start, bind  as a create's.
 * The source is read, never changed; a failure undoes the clone as a failed create. */
#include "agent/core/agent.h"
#include "agent/ops/instance_dir.h"
#include "agent/ops/provision-private.h"
#include "storage/qcow2/export.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#define COPY_TIMEOUT_S 3600

static const Nodeagent__V1__CloneRequest *
request(const struct agent_op *op)
{
    return op->env->clone;
}

static bool
at_snapshot(const struct agent_op *op)
{
    return request(op)->snapshot_name && request(op)->snapshot_name[0];
}

static int
prepare_clone(struct agent *a, struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__CloneRequest *r = request(op);
    const struct agent_instance *src = agent_instances_find(&a->instances, r->source_instance_uuid);
    if (!src)
        return na_error_quiet(err, NA_CODE_NOT_FOUND, ENOENT,
                              "no instance %s (the clone's source) on node %s",
                              r->source_instance_uuid, a->cfg->node_id);
    if (src->observed != S(RUNNING) && src->observed != S(PAUSED) && src->observed != S(STOPPED))
        return na_error_quiet(err, NA_CODE_CONFLICT, EBUSY,
                              "source instance %s is %s; a clone is made of a RUNNING, PAUSED or "
                              "STOPPED instance",
                              src->uuid, agent_state_name(src->observed));
    if (strcmp(src->spec->image->sha256, r->spec->image->sha256) != 0)
        return na_error_field(err, "clone.spec.image.sha256",
                              "clone.spec.image.sha256: a clone shares its source's base image "
                              "(sha256 %s), not %s",
                              src->spec->image->sha256, r->spec->image->sha256);
    if (r->spec->flavor->root_disk_gib < src->spec->flavor->root_disk_gib)
        return na_error_field(err, "clone.spec.flavor.root_disk_gib",
                              "clone.spec.flavor.root_disk_gib: %u GiB is smaller than the "
                              "source's disk (%u GiB)",
                              r->spec->flavor->root_disk_gib, src->spec->flavor->root_disk_gib);
    return provision_prepare_new(a, op, r->spec, "clone.spec", S(BUILDING), err);
}

/* The source's disk, opened read-only (never followed), and its virtual size. */
static int
open_source_disk(struct agent_op *op, uint64_t *size, struct na_error **err)
{
    const char *uuid = request(op)->source_instance_uuid;
    cleanup_close int dirfd = agent_instance_dir_open(op->host->instances_dir, uuid, false, err);
    if (dirfd < 0)
        return dirfd;
    int fd = openat(dirfd, "disk", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "open the disk of instance %s", uuid);
    struct qcow2_limits limits;
    qcow2_limits_init(&limits);
    limits.allow_backing = true;
    struct qcow2_info info;
    if (qcow2_validate(fd, &limits, &info, err) < 0) {
        close(fd);
        return na_error_wrap(err, "the disk of instance %s", uuid);
    }
    *size = info.virtual_size;
    return fd;
}

/* A running source's disk as it is, by block copy into a fresh overlay of its size. */
static int
copy_running(struct agent_op *op, int dirfd, const char *base, const char *base_format,
             uint64_t size, struct na_error **err)
{
    const char *uuid = request(op)->source_instance_uuid;
    agent_op_progress(op, 30, "copying the disk of running instance %s", uuid);
    struct qcow2_file_owner owner = {(uid_t)op->uid, op->host->qemu_gid, 0600};
    int ret = agent_instance_entry_remove(dirfd, "disk", err);
    if (ret < 0 ||
        (ret = qcow2_overlay_create(dirfd, "disk", &owner, base, base_format, size, err)) < 0)
        return ret;
    cleanup_paths struct instance_paths p = {0};
    provision_paths_init(&p, op->host, op->spec->uuid);
    if ((ret = hv_domain_disk_copy(op->host->hv, uuid, p.disk, COPY_TIMEOUT_S, err)) < 0)
        return ret;
    /* libvirt gave the file to the source's QEMU for the copy: the clone's again. */
    cleanup_close int fd = openat(dirfd, "disk", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fchown(fd, owner.uid, owner.gid) < 0 || fchmod(fd, owner.mode) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "give the copied disk to uid %u",
                            (unsigned)owner.uid);
    return 0;
}

static int
clone_copy(struct agent_op *op, struct na_error **err)
{
    cleanup_free char *base = NULL;
    int ret = provision_fetch_base(op, "clone.spec.flavor.root_disk_gib", &base, err);
    if (ret < 0)
        return ret;
    agent_job_state_put(op->job, "base", base);
    const char *base_format = provision_format_name(op->spec->image->format);
    const char *uuid = request(op)->source_instance_uuid;
    enum hv_power power;
    if ((ret = hv_domain_power(op->host->hv, uuid, &power, err)) < 0)
        return ret;
    bool running = power == HV_POWER_RUNNING || power == HV_POWER_PAUSED;
    uint64_t size = 0;
    cleanup_close int source = open_source_disk(op, &size, err);
    if (source < 0)
        return source;
    cleanup_close int dirfd =
        agent_instance_dir_open(op->host->instances_dir, op->spec->uuid, true, err);
    if (dirfd < 0)
        return dirfd;
    if (running && !at_snapshot(op)) {
        ret = copy_running(op, dirfd, base, base_format, size, err);
    } else {
        agent_op_progress(op, 30, "copying the disk of instance %s%s%s", uuid,
                          at_snapshot(op) ? " at snapshot " : "",
                          at_snapshot(op) ? request(op)->snapshot_name : "");
        struct qcow2_export_source src = {
            .overlay_fd = source,
            .base_path = base,
            .base_format = base_format,
            .snapshot = at_snapshot(op) ? request(op)->snapshot_name : NULL,
            .guest_running = running,
        };
        struct qcow2_file_owner owner = {(uid_t)op->uid, op->host->qemu_gid, 0600};
        struct qcow2_export made;
        ret = qcow2_export_copy_delta(&src, dirfd, "disk", &owner, NULL, &made, err);
    }
    if (ret < 0)
        return ret;
    na_failpoint("clone.copied");
    uint64_t want = (uint64_t)op->spec->flavor->root_disk_gib * GIB;
    if (want > size) {
        cleanup_close int fd = openat(dirfd, "disk", O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            return na_error_set(err, NA_CODE_STORAGE, errno, "open the clone's disk");
        if ((ret = qcow2_grow(fd, want, err)) < 0)
            return ret;
    }
    agent_op_progress(op, 50, "writing the config drive");
    if ((ret = provision_make_config_drive(op, dirfd, err)) < 0)
        return ret;
    return agent_instance_entry_remove(dirfd, "console.log", err);
}

static const struct agent_job_phase clone_phases[] = {
    {"copy", clone_copy, AGENT_JOB_REDO},
    {"define", provision_create_define, AGENT_JOB_REDO},
    {"start", provision_create_start, AGENT_JOB_REDO},
    {"bind", provision_create_bind, AGENT_JOB_REDO},
};
static const struct agent_job_kind clone_job = {clone_phases, NA_ARRAY_SIZE(clone_phases),
                                                provision_create_rollback};

const struct agent_handler agent_handle_clone = {
    .prepare = prepare_clone,
    .finish = provision_finish_create,
    .job = &clone_job,
};
