/* Snapshots: create, revert and delete, each a job of recorded phases (agent/ops/jobs.h).
 *
 * create (check → snapshot → read): the instance's disks are checked for internal snapshots
 * (UEFI and writable raw disks are refused), libvirt takes the snapshot (with the guest's
 * memory when it runs), and its snapshot list is read back.
 * revert (revert → bind → read): libvirt reverts the domain, which comes back running or
 * stopped as it was at the snapshot; a running guest's ports are waited for until bound
 * again; the list is read back.
 * delete (delete → read): the snapshot, or its subtree, is deleted; the list is read back.
 *
 * Every step is idempotent (hypervisor/snapshot.h), so each phase's restart rule is redo.
 * The store's snapshots table is written from the list the last phase read, in the
 * transaction of the terminal event: after a crash at any step the replayed job leaves the
 * store, libvirt's metadata and the overlay's snapshot table in agreement.  A failed job
 * reads the list too (its rollback), so the store follows whatever libvirt did.
 */
#include "agent/ops/snapshots.h"
#include "agent/core/store_snapshots.h"
#include "agent/observed/observed.h"
#include "agent/ops/jobs.h"
#include "agent/ops/ops.h"
#include "agent/ops/instance_dir.h"
#include "agent/outputs/capacity.h"
#include "hypervisor/snapshot.h"
#include "net/ovs/ovs.h"
#include "storage/qcow2/qcow2.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>

#define S(x) NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_##x

bool
agent_instance_has_snapshots(struct agent *a, const char *instance)
{
    return agent_store_snapshot_count(a->store, instance) != 0;
}

int
agent_snapshots_refuse(struct agent *a, const char *instance, const char *what,
                       struct na_error **err)
{
    int64_t n = agent_store_snapshot_count(a->store, instance);
    if (n == 0)
        return 0;
    if (n < 0)
        return na_error_set(err, NA_CODE_INTERNAL, EIO,
                            "count the snapshots of %s in the state store", instance);
    return na_error_quiet(err, NA_CODE_HAS_SNAPSHOTS, EBUSY,
                          "instance %s has %lld snapshot(s): `%s` is refused until they are "
                          "deleted",
                          instance, (long long)n, what);
}

json_t *
agent_snapshots_view(struct agent *a, const char *uuid_arg)
{
    char uuid[37];
    snprintf(uuid, sizeof(uuid), "%.36s", uuid_arg);
    if (!agent_instances_find(&a->instances, uuid))
        return NULL;
    struct agent_snapshot_rec *recs = NULL;
    size_t n = 0;
    cleanup_error struct na_error *err = NULL;
    json_t *list = json_array();
    if (agent_store_snapshot_list(a->store, uuid, &recs, &n, &err) < 0)
        return json_pack("{s:s, s:o, s:s}", "instance", uuid, "snapshots", list, "error", err->msg);
    for (size_t i = 0; i < n; i++) {
        const struct agent_snapshot_rec *r = &recs[i];
        json_array_append_new(
            list, json_pack("{s:s, s:s, s:s, s:I, s:s, s:b, s:b, s:I}", "name", r->name, "parent",
                            r->parent, "description", r->description, "created_ms",
                            (json_int_t)r->created_ms, "state", r->state, "memory", r->memory,
                            "current", r->current, "size_bytes", (json_int_t)r->size_bytes));
    }
    agent_snapshot_recs_free(recs, n);
    return json_pack("{s:s, s:o}", "instance", uuid, "snapshots", list);
}

/* --- on the loop ----------------------------------------------------------------------- */

/* ret, with the error naming the request's field it is about. */
static int
about_field(int ret, struct na_error **err, const char *field)
{
    if (err && *err && !(*err)->field)
        (*err)->field = na_xstrdup(field);
    return ret;
}

static const char *
snapshot_name(const struct agent_op *op)
{
    switch (op->kind) {
    case AGENT_REQ_SNAPSHOT_CREATE:
        return op->env->snapshot_create->snapshot_name;
    case AGENT_REQ_SNAPSHOT_REVERT:
        return op->env->snapshot_revert->snapshot_name;
    default:
        return op->env->snapshot_delete->snapshot_name;
    }
}

/* The instance's DISK_GB claim with the new snapshot: a running or paused guest's memory
 * state takes at most its memory; a stopped guest's snapshot keeps no VM state. */
static int
admit_snapshot(struct agent *a, struct agent_op *op, struct na_error **err)
{
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    int64_t bytes = agent_store_snapshot_bytes(a->store, op->instance);
    if (!inst || bytes < 0)
        return na_error_set(err, NA_CODE_INTERNAL, EIO,
                            "read the snapshots of %s from the state store", op->instance);
    if (op->state_before == S(STOPPED))
        return 0;
    struct agent_claim need;
    agent_instance_claim(inst, &need);
    uint64_t memory = (uint64_t)inst->spec->flavor->memory_mib << 20;
    need.disk_gb += agent_snapshot_gb((uint64_t)bytes + memory) - inst->snapshot_gb;
    return agent_capacity_admit(a, op->instance, &need, err);
}

static int
prepare_create(struct agent *a, struct agent_op *op, struct na_error **err)
{
    int ret = agent_prepare_existing(a, op, err);
    if (ret < 0)
        return ret;
    const Nodeagent__V1__SnapshotCreateRequest *req = op->env->snapshot_create;
    if (req->quiesce)
        return about_field(
            na_error_quiet(err, NA_CODE_UNSUPPORTED, ENOTSUP,
                           "instance %s has no guest agent (this node's domains have no "
                           "qemu-guest-agent channel): its file systems cannot be frozen",
                           op->instance),
            err, "snapshot_create.quiesce");
    int has = agent_store_snapshot_has(a->store, op->instance, req->snapshot_name);
    if (has == 1)
        return about_field(na_error_quiet(err, NA_CODE_ALREADY_EXISTS, EEXIST,
                                          "instance %s already has a snapshot `%s`", op->instance,
                                          req->snapshot_name),
                           err, "snapshot_create.snapshot_name");
    int64_t count = agent_store_snapshot_count(a->store, op->instance);
    if (has < 0 || count < 0)
        return na_error_set(err, NA_CODE_INTERNAL, EIO,
                            "read the snapshots of %s from the state store", op->instance);
    unsigned max = a->cfg->snapshot_max_per_instance;
    if ((uint64_t)count >= max)
        return na_error_quiet(err, NA_CODE_SNAPSHOT_LIMIT, ENOSPC,
                              "instance %s has %lld snapshot(s); this node keeps at most %u per "
                              "instance ([instances] snapshot_max_per_instance)",
                              op->instance, (long long)count, max);
    return admit_snapshot(a, op, err);
}

/* revert and delete: the snapshot must be one the store records. */
static int
prepare_existing_snapshot(struct agent *a, struct agent_op *op, struct na_error **err)
{
    int ret = agent_prepare_existing(a, op, err);
    if (ret < 0)
        return ret;
    const char *name = snapshot_name(op);
    int has = agent_store_snapshot_has(a->store, op->instance, name);
    if (has < 0)
        return na_error_set(err, NA_CODE_INTERNAL, EIO,
                            "read the snapshots of %s from the state store", op->instance);
    if (has == 0) {
        cleanup_free char *field =
            na_xasprintf("%s.snapshot_name", agent_request_kind_name(op->kind));
        return about_field(na_error_quiet(err, NA_CODE_NOT_FOUND, ENOENT,
                                          "instance %s has no snapshot `%s`", op->instance, name),
                           err, field);
    }
    return 0;
}

/* In the terminal event's transaction: the instance's state, and its snapshots as the job
 * last read them from libvirt. */
static int
finish_snapshot(struct agent *a, struct agent_op *op, struct na_error **err)
{
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (inst && op->snapshots_read) {
        uint64_t bytes = 0;
        for (size_t i = 0; i < op->n_snapshots; i++)
            bytes += op->snapshots[i].size_bytes;
        inst->snapshot_gb = agent_snapshot_gb(bytes); /* its claim, saved just below */
    }
    int ret = agent_finish_power(a, op, err);
    if (ret < 0 || !op->snapshots_read)
        return ret;
    if (inst && op->kind == AGENT_REQ_SNAPSHOT_REVERT &&
        (op->state == S(RUNNING) || op->state == S(STOPPED) || op->state == S(PAUSED)))
        inst->desired = op->state; /* as the snapshot had it */
    struct agent_snapshot_rec *recs = na_xcalloc(op->n_snapshots + 1, sizeof(*recs));
    for (size_t i = 0; i < op->n_snapshots; i++) {
        const struct hv_snapshot *s = &op->snapshots[i];
        recs[i] = (struct agent_snapshot_rec){
            .name = s->name,
            .parent = s->parent,
            .description = s->description,
            .state = s->state,
            .memory = s->memory,
            .current = s->current,
            .size_bytes = s->size_bytes,
            .created_ms = s->created_s * 1000,
        };
    }
    ret = agent_store_snapshot_replace(a->store, op->instance, recs, op->n_snapshots, err);
    free(recs); /* the strings are the op's */
    return ret;
}

/* --- in a worker ----------------------------------------------------------------------- */

static int
read_power(struct agent_op *op, struct na_error **err)
{
    enum hv_power power;
    int ret = hv_domain_power(op->host->hv, op->instance, &power, err);
    if (ret == 0)
        op->state = agent_state_from_power(power);
    return ret;
}

/* The overlay's snapshot table: each snapshot's size, and a warning when it does not name
 * the snapshots libvirt has (someone else's qemu-img, or a libvirt that lost its metadata).
 * The sizes are informational: a table that cannot be read leaves them 0. */
static void
read_overlay_table(struct agent_op *op)
{
    struct na_log_ctx log = {.request_id = op->request_id, .instance = op->instance};
    cleanup_error struct na_error *err = NULL;
    struct qcow2_snapshot *table = NULL;
    size_t n = 0;
    struct stat st;
    cleanup_close int dirfd =
        agent_instance_dir_open(op->host->instances_dir, op->instance, false, &err);
    cleanup_close int fd =
        dirfd < 0 ? -1 : agent_instance_file_open(dirfd, "disk", O_RDONLY, op->uid, &st, &err);
    if (fd < 0 || qcow2_snapshot_table(fd, &table, &n, &err) < 0) {
        char quoted[512];
        NA_LOG_WARN(&log, "the overlay's snapshot table could not be read", "error=%s",
                    na_log_quote(quoted, sizeof(quoted), err ? err->msg : "?"));
        return;
    }
    size_t matched = 0;
    for (size_t i = 0; i < op->n_snapshots; i++)
        for (size_t j = 0; j < n; j++)
            if (strcmp(op->snapshots[i].name, table[j].name) == 0) {
                op->snapshots[i].size_bytes = table[j].vm_state_size;
                matched++;
                break;
            }
    if (matched != op->n_snapshots || n != op->n_snapshots)
        NA_LOG_WARN(&log, "the overlay's snapshot table and libvirt's snapshots differ",
                    "libvirt=%zu overlay=%zu both=%zu", op->n_snapshots, n, matched);
    qcow2_snapshots_free(table, n);
}

/* The last phase of each job: what libvirt has now, for finish_snapshot(). */
static int
step_read(struct agent_op *op, struct na_error **err)
{
    hv_snapshots_free(op->snapshots, op->n_snapshots);
    op->snapshots = NULL;
    op->n_snapshots = 0;
    int ret = hv_snapshot_list(op->host->hv, op->instance, &op->snapshots, &op->n_snapshots, err);
    if (ret < 0)
        return ret;
    read_overlay_table(op);
    op->snapshots_read = true;
    return read_power(op, err);
}

/* After a failed step: the store follows what libvirt did, as far as it can be read. */
static void
resync(struct agent_op *op)
{
    cleanup_error struct na_error *ignored = NULL;
    Nodeagent__V1__InstanceState keep = op->state;
    if (step_read(op, &ignored) < 0)
        op->state = keep;
}

static int
create_check(struct agent_op *op, struct na_error **err)
{
    return hv_snapshot_supported(op->host->hv, op->instance, err);
}

static int
create_snapshot(struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__SnapshotCreateRequest *req = op->env->snapshot_create;
    agent_op_progress(op, 10, "taking snapshot %s%s", req->snapshot_name,
                      op->state_before == S(STOPPED) ? " (disk only: the guest is stopped)"
                                                     : " with the guest's memory");
    int ret =
        hv_snapshot_create(op->host->hv, op->instance, req->snapshot_name, req->description, err);
    if (ret == 0)
        na_failpoint("snapshot_create.taken");
    return ret;
}

static const struct agent_job_phase create_phases[] = {
    {"check", create_check, AGENT_JOB_REDO},
    {"snapshot", create_snapshot, AGENT_JOB_REDO},
    {"read", step_read, AGENT_JOB_REDO},
};
static const struct agent_job_kind create_job = {create_phases, NA_ARRAY_SIZE(create_phases),
                                                 resync};

static int
revert_revert(struct agent_op *op, struct na_error **err)
{
    const char *name = op->env->snapshot_revert->snapshot_name;
    agent_op_progress(op, 10, "reverting to snapshot %s", name);
    int ret = hv_snapshot_revert(op->host->hv, op->instance, name, err);
    if (ret == 0)
        na_failpoint("snapshot_revert.reverted");
    return ret;
}

/* A guest that runs after the revert talks only once its taps are bound again (a guest
 * reverted from shut off to running has new ones). */
static int
revert_bind(struct agent_op *op, struct na_error **err)
{
    int ret = read_power(op, err);
    const Nodeagent__V1__InstanceSpec *spec = op->spec;
    if (ret < 0 || op->state != S(RUNNING) || !op->host->net || spec->n_nics == 0)
        return ret;
    agent_op_progress(op, 80, "binding %zu port(s)", spec->n_nics);
    const char *ids[16];
    size_t n = 0;
    for (size_t i = 0; i < spec->n_nics && i < NA_ARRAY_SIZE(ids); i++)
        ids[n++] = spec->nics[i]->port_id;
    return ovs_net_wait_bound(op->host->net, ids, n, op->host->cfg->net_bind_timeout_s * 1000, err);
}

static const struct agent_job_phase revert_phases[] = {
    {"revert", revert_revert, AGENT_JOB_REDO},
    {"bind", revert_bind, AGENT_JOB_REDO},
    {"read", step_read, AGENT_JOB_REDO},
};
static const struct agent_job_kind revert_job = {revert_phases, NA_ARRAY_SIZE(revert_phases),
                                                 resync};

static int
delete_delete(struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__SnapshotDeleteRequest *req = op->env->snapshot_delete;
    agent_op_progress(op, 10, "deleting snapshot %s%s", req->snapshot_name,
                      req->children ? " and its children" : "");
    int ret =
        hv_snapshot_delete(op->host->hv, op->instance, req->snapshot_name, req->children, err);
    if (ret == 0)
        na_failpoint("snapshot_delete.deleted");
    return ret;
}

static const struct agent_job_phase delete_phases[] = {
    {"delete", delete_delete, AGENT_JOB_REDO},
    {"read", step_read, AGENT_JOB_REDO},
};
static const struct agent_job_kind delete_job = {delete_phases, NA_ARRAY_SIZE(delete_phases),
                                                 resync};

const struct agent_handler agent_handle_snapshot_create = {prepare_create, NULL, finish_snapshot,
                                                           &create_job};
const struct agent_handler agent_handle_snapshot_revert = {prepare_existing_snapshot, NULL,
                                                           finish_snapshot, &revert_job};
const struct agent_handler agent_handle_snapshot_delete = {prepare_existing_snapshot, NULL,
                                                           finish_snapshot, &delete_job};
