/* Rebuilding and resizing an instance (see provision.c's opening comment for both). */
#include "agent/ops/provision-private.h"
#include "agent/observed/uids.h"
#include "agent/outputs/capacity.h"
#include "agent/ops/instance_dir.h"
#include "agent/ops/snapshots.h"
#include "storage/qcow2/qcow2.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- rebuild and resize ------------------------------------------------------------------ */

/* op->spec = the instance's spec with a new image or flavor (a deep copy via the wire). */
static void
spec_with(struct agent_op *op, const Nodeagent__V1__InstanceSpec *base, Nodeagent__V1__Image *image,
          Nodeagent__V1__Flavor *flavor)
{
    Nodeagent__V1__InstanceSpec tmp = *base;
    if (image)
        tmp.image = image;
    if (flavor)
        tmp.flavor = flavor;
    if (op->spec)
        nodeagent__v1__instance_spec__free_unpacked(op->spec, NULL);
    op->spec = agent_spec_copy(&tmp);
}

static int
prepare_rebuild(struct agent *a, struct agent_op *op, struct na_error **err)
{
    int ret = agent_prepare_existing(a, op, err);
    if (ret < 0 || (ret = agent_snapshots_refuse(a, op->instance, "rebuild", err)) < 0 ||
        (ret = agent_disk_room_check(a, "rebuild", err)) < 0)
        return ret;
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (op->state_before != S(RUNNING) && op->state_before != S(STOPPED) &&
        op->state_before != S(CRASHED) && op->state_before != S(ERROR))
        return na_error_quiet(err, NA_CODE_CONFLICT, EBUSY,
                              "instance %s is %s; only a running, stopped, crashed or failed "
                              "instance can be rebuilt",
                              op->instance, agent_state_name(op->state_before));
    spec_with(op, inst->spec, op->env->rebuild->image, NULL);
    /* The new image is in use from now: eviction must not take it mid-rebuild. */
    free(inst->image_sha256);
    inst->image_sha256 = na_xstrdup(op->spec->image->sha256);
    return 0;
}

/* After a rebuild failed before the old disk was replaced: the domain is still defined on
 * the old disk; it runs again if it ran, and op->state says what it is. */
static void
restore_after_rebuild(struct agent_op *op, int dirfd, bool was_running)
{
    struct na_log_ctx log = {.request_id = op->request_id, .instance = op->instance};
    agent_instance_entry_remove(dirfd, "disk.next", NULL);
    cleanup_error struct na_error *e = NULL;
    if (provision_start_and_read_state(op, was_running, &e) < 0)
        na_log(NA_LOG_WARN, &log, "the guest could not be started again after a failed rebuild",
               "error=\"%s\"", e->msg);
}

static int
rebuild_disk(struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__InstanceSpec *spec = op->spec;
    cleanup_free char *base = NULL;
    int ret = provision_fetch_base(op, "rebuild.image", &base, err);
    if (ret < 0)
        return ret;
    agent_job_state_put(op->job, "base", base);
    cleanup_close int dirfd =
        agent_instance_dir_open(op->host->instances_dir, spec->uuid, false, err);
    if (dirfd < 0)
        return dirfd;

    /* A rebuild gives a fresh disk: one left by an interrupted attempt is made again. */
    agent_op_progress(op, 40, "writing the new root disk");
    if ((ret = agent_instance_entry_remove(dirfd, "disk.next", err)) < 0)
        return ret;
    if ((ret = provision_make_disk(op, dirfd, "disk.next", base,
                                   provision_format_name(spec->image->format), err)) < 0 ||
        (ret = provision_make_config_drive(op, dirfd, err)) < 0)
        agent_instance_entry_remove(dirfd, "disk.next", NULL);
    return ret;
}

static int
rebuild_redefine(struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__InstanceSpec *spec = op->spec;
    char buf[PATH_MAX];
    const char *base = provision_job_base(op, buf, sizeof(buf), err);
    if (!base)
        return -ENOENT;
    cleanup_close int dirfd =
        agent_instance_dir_open(op->host->instances_dir, spec->uuid, false, err);
    if (dirfd < 0)
        return dirfd;
    cleanup_paths struct instance_paths p = {0};
    provision_paths_init(&p, op->host, spec->uuid);

    agent_op_progress(op, 60, "redefining the domain on the new disk");
    int ret = hv_domain_destroy(op->host->hv, spec->uuid, err);
    if (ret < 0) {
        agent_instance_entry_remove(dirfd, "disk.next", NULL);
        return ret;
    }
    if (na_failpoint("rebuild.define"))
        ret = na_error_set(err, NA_CODE_HYPERVISOR, EIO, "failpoint rebuild.define");
    else
        ret =
            provision_define_domain(op, &p, base, provision_format_name(spec->image->format), err);
    if (ret < 0)
        restore_after_rebuild(op, dirfd, provision_job_was_running(op));
    return ret;
}

/* The domain names the new base from here: only now does the old disk go.  Done already
 * when disk.next is gone (a crash after the rename). */
static int
rebuild_swap(struct agent_op *op, struct na_error **err)
{
    cleanup_close int dirfd =
        agent_instance_dir_open(op->host->instances_dir, op->instance, false, err);
    if (dirfd < 0)
        return dirfd;
    if (renameat(dirfd, "disk.next", dirfd, "disk") == 0 || errno == ENOENT)
        return 0;
    return na_error_set(err, NA_CODE_STORAGE, errno,
                        "replace the old disk of %s with disk.next (the domain is defined on "
                        "the new image; rebuild again)",
                        op->instance);
}

/* rebuild and resize: the guest runs again if it ran. */
static int
respec_start(struct agent_op *op, struct na_error **err)
{
    int ret = provision_start_and_read_state(op, provision_job_was_running(op), err);
    if (ret == 0 && op->kind == AGENT_REQ_REBUILD)
        op->image_sha256 = na_xstrdup(op->spec->image->sha256);
    return ret;
}

static const struct agent_job_phase rebuild_phases[] = {
    {"disk", rebuild_disk, AGENT_JOB_REDO},
    {"redefine", rebuild_redefine, AGENT_JOB_REDO},
    {"swap", rebuild_swap, AGENT_JOB_REDO},
    {"start", respec_start, AGENT_JOB_REDO},
};
static const struct agent_job_kind rebuild_job = {rebuild_phases, NA_ARRAY_SIZE(rebuild_phases),
                                                  NULL};

/* rebuild and resize: on success the instance takes the new spec. */
static int
finish_respec(struct agent *a, struct agent_op *op, struct na_error **err)
{
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (!inst)
        return 0;
    inst->task = NULL;
    inst->resizing_to = (struct agent_claim){0};
    if (!op->err) {
        nodeagent__v1__instance_spec__free_unpacked(inst->spec, NULL);
        inst->spec = na_steal(&op->spec);
    }
    free(inst->image_sha256);
    inst->image_sha256 = na_xstrdup(inst->spec->image->sha256);
    if (op->state != S(UNSPECIFIED))
        inst->observed = op->state;
    return agent_instance_save(a->store, inst, err);
}

const struct agent_handler agent_handle_rebuild = {prepare_rebuild, NULL, finish_respec,
                                                   &rebuild_job};

static int
prepare_resize(struct agent *a, struct agent_op *op, struct na_error **err)
{
    int ret = agent_prepare_existing(a, op, err);
    if (ret < 0 || (ret = agent_snapshots_refuse(a, op->instance, "resize", err)) < 0 ||
        (ret = agent_disk_room_check(a, "resize", err)) < 0)
        return ret;
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    Nodeagent__V1__Flavor *flavor = op->env->resize->flavor;
    if (flavor->root_disk_gib < inst->spec->flavor->root_disk_gib)
        return na_error_field(err, "resize.flavor.root_disk_gib",
                              "resize.flavor.root_disk_gib: %u GiB is smaller than the current "
                              "%u GiB; disks only grow",
                              flavor->root_disk_gib, inst->spec->flavor->root_disk_gib);
    if (op->state_before != S(RUNNING) && op->state_before != S(STOPPED))
        return na_error_quiet(err, NA_CODE_CONFLICT, EBUSY,
                              "instance %s is %s; only a running or stopped instance can be "
                              "resized",
                              op->instance, agent_state_name(op->state_before));
    struct agent_claim now, need;
    agent_instance_claim(inst, &now);
    need = (struct agent_claim){NA_MAX(now.vcpus, flavor->vcpus),
                                NA_MAX(now.memory_mb, flavor->memory_mib),
                                NA_MAX(now.disk_gb, flavor->root_disk_gib)};
    if ((ret = agent_capacity_admit(a, inst->uuid, &need, err)) < 0)
        return ret;
    inst->resizing_to =
        (struct agent_claim){flavor->vcpus, flavor->memory_mib, flavor->root_disk_gib};
    agent_instance_touch(inst); /* its claim is the larger of both from now */
    spec_with(op, inst->spec, NULL, flavor);
    return 0;
}

/* The base the record names must be the one the disk's header names: the header is in a
 * file the guest's uid can write, so it is only compared, never used.  fd: the disk. */
static int
check_disk_base(int fd, const char *disk, const char *base, struct qcow2_info *info,
                struct na_error **err)
{
    struct qcow2_limits limits;
    qcow2_limits_init(&limits);
    limits.allow_backing = true;
    int ret = qcow2_validate(fd, &limits, info, err);
    if (ret < 0)
        return ret;
    if (strcmp(info->backing_file, base) != 0)
        return na_error_quiet(err, NA_CODE_STORAGE, EINVAL,
                              "the disk `%s` no longer backs on the instance's image `%s`; "
                              "it was changed outside the agent, and is left as it is",
                              disk, base);
    return 0;
}

/* The guest's disk, opened once (not followed, the guest's regular file) and checked to
 * back on the base the job recorded; *fd is where it is grown. */
static int
open_checked_disk(struct agent_op *op, const char *base, int *fd, struct qcow2_info *info,
                  struct na_error **err)
{
    cleanup_paths struct instance_paths p = {0};
    provision_paths_init(&p, op->host, op->instance);
    cleanup_close int dirfd =
        agent_instance_dir_open(op->host->instances_dir, op->instance, false, err);
    if (dirfd < 0)
        return dirfd;
    struct stat st;
    *fd = agent_instance_file_open(dirfd, "disk", O_RDWR, op->uid, &st, err);
    if (*fd == -ENOENT)
        return na_error_set(err, NA_CODE_STORAGE, ENOENT, "open the disk `%s`", p.disk);
    if (*fd < 0)
        return *fd;
    return check_disk_base(*fd, p.disk, base, info, err);
}

static int
resize_stop(struct agent_op *op, struct na_error **err)
{
    /* The recorded image, from the cache (kept there while the disk backs on it). */
    cleanup_free char *base = NULL;
    int ret = provision_fetch_base(op, "resize.flavor.root_disk_gib", &base, err);
    if (ret < 0)
        return ret;
    agent_job_state_put(op->job, "base", base);
    cleanup_close int fd = -1;
    struct qcow2_info info = {0};
    if ((ret = open_checked_disk(op, base, &fd, &info, err)) < 0)
        return ret;
    agent_op_progress(op, 20, "stopping the guest");
    return hv_domain_shutdown(op->host->hv, op->instance, op->host->cfg->stop_timeout_s, err);
}

static int
resize_grow(struct agent_op *op, struct na_error **err)
{
    char buf[PATH_MAX];
    const char *base = provision_job_base(op, buf, sizeof(buf), err);
    if (!base)
        return -ENOENT;
    cleanup_close int fd = -1;
    struct qcow2_info info = {0};
    int ret = open_checked_disk(op, base, &fd, &info, err); /* again, with QEMU gone */
    if (ret < 0)
        return ret;
    uint64_t size = (uint64_t)op->spec->flavor->root_disk_gib * GIB;
    if (size <= info.virtual_size)
        return 0;
    agent_op_progress(op, 40, "growing the disk to %u GiB", op->spec->flavor->root_disk_gib);
    return qcow2_grow(fd, size, err);
}

static int
resize_redefine(struct agent_op *op, struct na_error **err)
{
    char buf[PATH_MAX];
    const char *base = provision_job_base(op, buf, sizeof(buf), err);
    if (!base)
        return -ENOENT;
    cleanup_paths struct instance_paths p = {0};
    provision_paths_init(&p, op->host, op->instance);
    agent_op_progress(op, 60, "redefining the domain");
    return provision_define_domain(op, &p, base, provision_format_name(op->spec->image->format),
                                   err);
}

static const struct agent_job_phase resize_phases[] = {
    {"stop", resize_stop, AGENT_JOB_REDO},
    {"grow", resize_grow, AGENT_JOB_REDO},
    {"redefine", resize_redefine, AGENT_JOB_REDO},
    {"start", respec_start, AGENT_JOB_REDO},
};
static const struct agent_job_kind resize_job = {resize_phases, NA_ARRAY_SIZE(resize_phases), NULL};

const struct agent_handler agent_handle_resize = {prepare_resize, NULL, finish_respec, &resize_job};
