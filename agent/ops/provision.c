/* Creating and deleting instances.
 *
 * Each is a job of recorded phases (agent/ops/jobs.h): a phase is written before its step is
 * taken, and a crash resumes at the recorded phase by its restart rule (all of these redo
 * their step, which is idempotent) instead of running the whole operation again.
 *
 * create (disk → define → start → bind): on the loop, the instance is recorded (BUILDING,
 * with its QEMU uid and the request that creates it) before any work starts; then the base
 * image is fetched into the cache and the overlay disk and the config drive are written;
 * the domain is defined; started; and its ports bound.  A create interrupted by a crash
 * finishes the same instance exactly once.  A create that fails undoes what it made
 * (domain, files, record); the cached image stays for others.
 *
 * delete (destroy → undefine → remove_files): a tombstone is recorded first; then the
 * domain is forced off, undefined with everything libvirt keeps for it (its snapshots'
 * metadata included), the instance's directory is removed, and so is its record with its
 * snapshots' rows.  Deleting a missing instance is done.
 *
 * rebuild (disk → redefine → swap → start): a new root disk from another image, same
 * identity (uuid, NICs, config drive).
 * The image is fetched and the new disk written beside the old one (disk.next) while the
 * guest still runs; the old disk is replaced only once the domain is defined on the new one,
 * so a failure up to there leaves the instance as it was (started again if it was running).
 *
 * resize (cold; stop → grow → redefine → start): the guest is stopped, its disk grown (never
 * shrunk), the domain redefined
 * with the new flavor on the base the record names (never the one the overlay's header,
 * which the guest's uid can write, claims), and started again if it was running.
 *
 * create, rebuild and resize are refused below the free-space watermark (disk_room.c).
 */
#include "agent/ops/provision-private.h"
#include "agent/ops/secgroups.h"
#include "agent/observed/uids.h"
#include "agent/outputs/capacity.h"
#include "agent/ops/instance_dir.h"
#include "agent/core/store_snapshots.h"
#include "net/ovs/ovs.h"
#include "storage/qcow2/qcow2.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

void
provision_paths_init(struct instance_paths *p, const struct agent_host *h, const char *uuid)
{
    p->dir = na_xasprintf("%s/%s", h->instances_dir, uuid);
    p->disk = na_xasprintf("%s/disk", p->dir);
    p->config_drive = na_xasprintf("%s/disk.config", p->dir);
    p->console_log = na_xasprintf("%s/console.log", p->dir);
}

void
provision_paths_clear(struct instance_paths *p)
{
    free(p->dir);
    free(p->disk);
    free(p->config_drive);
    free(p->console_log);
}

/* --- create ---------------------------------------------------------------------------- */

static int
prepare_create(struct agent *a, struct agent_op *op, struct na_error **err)
{
    return provision_prepare_new(a, op, op->env->create->spec, "create.spec", S(BUILDING), err);
}

/* Who the guest's files belong to: its QEMU uid, libvirt's qemu group. */
static struct qcow2_file_owner
guest_owner(const struct agent_op *op, mode_t mode)
{
    return (struct qcow2_file_owner){(uid_t)op->uid, op->host->qemu_gid, mode};
}

/* The overlay `name`, unless an earlier attempt already wrote it: an existing one is kept
 * only if it is a regular file of the guest's uid (never followed) on this base and size. */
int
provision_make_disk(struct agent_op *op, int dirfd, const char *name, const char *base,
                    const char *base_format, struct na_error **err)
{
    uint64_t size = (uint64_t)op->spec->flavor->root_disk_gib * GIB;
    struct stat st;
    cleanup_close int fd = agent_instance_file_open(dirfd, name, O_RDONLY, op->uid, &st, NULL);
    if (fd >= 0) {
        struct qcow2_limits limits;
        qcow2_limits_init(&limits);
        limits.allow_backing = true;
        struct qcow2_info info = {0};
        if (qcow2_validate(fd, &limits, &info, NULL) == 0 && strcmp(info.backing_file, base) == 0 &&
            info.virtual_size == size)
            return 0;
    }
    /* Half-made, stale or not ours: make it again. */
    int ret = agent_instance_entry_remove(dirfd, name, err);
    if (ret < 0)
        return ret;
    struct qcow2_file_owner owner = guest_owner(op, 0600);
    return qcow2_overlay_create(dirfd, name, &owner, base, base_format, size, err);
}

int
provision_make_config_drive(struct agent_op *op, int dirfd, struct na_error **err)
{
    const Nodeagent__V1__InstanceSpec *spec = op->spec;
    struct qcow2_config_drive_nic nics[16];
    for (size_t i = 0; i < spec->n_nics && i < NA_ARRAY_SIZE(nics); i++) {
        const Nodeagent__V1__Nic *n = spec->nics[i];
        nics[i] = (struct qcow2_config_drive_nic){
            .port_id = n->port_id,
            .network_id = n->network_id,
            .mac = n->mac,
            .ips = (const char *const *)n->ips,
            .n_ips = n->n_ips,
            .gateway = n->gateway,
            .gateway6 = n->gateway6,
            .mtu = agent_nic_mtu(op->host->cfg, n->mtu),
        };
    }
    struct qcow2_config_drive_kv meta[128];
    for (size_t i = 0; i < spec->n_metadata && i < NA_ARRAY_SIZE(meta); i++)
        meta[i] = (struct qcow2_config_drive_kv){spec->metadata[i]->key, spec->metadata[i]->value};
    struct qcow2_config_drive cd = {
        .uuid = spec->uuid,
        .name = spec->name,
        .hostname = spec->hostname,
        .tenant_id = spec->tenant_id,
        .public_keys = (const char *const *)spec->ssh_keys,
        .n_public_keys = spec->n_ssh_keys,
        .user_data = spec->user_data.data,
        .user_data_size = spec->user_data.len,
        .metadata = meta,
        .n_metadata = spec->n_metadata,
        .nics = nics,
        .n_nics = spec->n_nics,
    };
    struct qcow2_file_owner owner = guest_owner(op, 0400);
    return qcow2_config_drive_write(&cd, dirfd, "disk.config", &owner, err);
}

int
provision_define_domain(struct agent_op *op, const struct instance_paths *p, const char *base,
                        const char *base_format, struct na_error **err)
{
    cleanup_free char *xml = NULL;
    int ret = provision_domain_xml(op, p, base, base_format, &xml, err);
    return ret < 0 ? ret : hv_domain_define(op->host->hv, xml, err);
}

int
provision_domain_xml(struct agent_op *op, const struct instance_paths *p, const char *base,
                     const char *base_format, char **xml, struct na_error **err)
{
    const Nodeagent__V1__InstanceSpec *spec = op->spec;
    const struct agent_config *cfg = op->host->cfg;
    struct hv_nic_spec nics[16];
    for (size_t i = 0; i < spec->n_nics && i < NA_ARRAY_SIZE(nics); i++)
        nics[i] = (struct hv_nic_spec){
            .port_id = spec->nics[i]->port_id,
            .mac = spec->nics[i]->mac,
            .bridge = cfg->bridge,
            .mtu = agent_nic_mtu(cfg, spec->nics[i]->mtu),
        };
    struct hv_domain_spec d = {
        .uuid = spec->uuid,
        .name = spec->name,
        .tenant_id = spec->tenant_id,
        .flavor_name = spec->flavor->name,
        .vcpus = spec->flavor->vcpus,
        .memory_mib = spec->flavor->memory_mib,
        .root_disk_gib = spec->flavor->root_disk_gib,
        .image_id = spec->image->id,
        .image_sha256 = spec->image->sha256,
        .created_ms = na_now_ms(),
        .node_id = cfg->node_id,
        .store_id = op->host->store_id,
        .virt_type = cfg->virt_type,
        .cpu_mode = cfg->cpu_mode,
        .cpu_model = cfg->cpu_model,
        .machine = cfg->machine,
        .ksm = cfg->ksm,
        .uid = (uint32_t)op->uid,
        .gid = op->host->qemu_gid,
        .disk_path = p->disk,
        .backing_path = base,
        .backing_format = base_format,
        .config_drive_path = p->config_drive,
        .console_log_path = p->console_log,
        .nics = nics,
        .n_nics = spec->n_nics,
        .limits =
            {
                .cpu_shares = spec->flavor->cpu_shares,
                .cpu_quota_percent = spec->flavor->cpu_quota_percent,
                .disk_read_iops_sec = spec->flavor->disk_read_iops_sec,
                .disk_write_iops_sec = spec->flavor->disk_write_iops_sec,
                .disk_read_bytes_sec = spec->flavor->disk_read_bytes_sec,
                .disk_write_bytes_sec = spec->flavor->disk_write_bytes_sec,
            },
    };
    /* The whole spec rides in the metadata, so that a domain whose record is lost can be
     * made an instance again (nodectl adopt). */
    cleanup_free uint8_t *packed =
        na_xmalloc(nodeagent__v1__instance_spec__get_packed_size(spec) + 1);
    d.instance_spec = packed;
    d.instance_spec_size = nodeagent__v1__instance_spec__pack(spec, packed);
    return hv_domain_xml_build(&d, xml, err);
}

const char *
provision_format_name(Nodeagent__V1__ImageFormat f)
{
    return f == NODEAGENT__V1__IMAGE_FORMAT__IMAGE_FORMAT_RAW ? "raw" : "qcow2";
}

/* The spec's image, in the cache (fetched once however many ask), and no larger than the
 * flavor's root disk; a refusal names field. */
int
provision_fetch_base(struct agent_op *op, const char *field, char **base, struct na_error **err)
{
    const Nodeagent__V1__InstanceSpec *spec = op->spec;
    agent_op_progress(op, 10, "fetching image %s", spec->image->id);
    struct qcow2_info info = {0};
    int ret = qcow2_image_cache_get(op->host->images, spec->image->url, spec->image->sha256,
                                    provision_format_name(spec->image->format), base, &info, err);
    if (ret < 0)
        return ret;
    if (info.virtual_size > (uint64_t)spec->flavor->root_disk_gib * GIB)
        return na_error_field(err, field,
                              "%s: image %s has a virtual size of %llu bytes, more than the "
                              "flavor's %u GiB root disk",
                              field, spec->image->id, (unsigned long long)info.virtual_size,
                              spec->flavor->root_disk_gib);
    return 0;
}

/* Starts the domain when asked, then records the power state libvirt reports. */
int
provision_start_and_read_state(struct agent_op *op, bool start, struct na_error **err)
{
    int ret;
    if (start) {
        agent_op_progress(op, 80, "starting the domain");
        if ((ret = hv_domain_start(op->host->hv, op->instance, err)) < 0)
            return ret;
    }
    enum hv_power power;
    if ((ret = hv_domain_power(op->host->hv, op->instance, &power, err)) < 0)
        return ret;
    op->state = agent_state_from_power(power);
    return 0;
}

/* A create is RUNNING only once its NICs can talk: each tap is on the bridge with its
 * port's flows (until then the bridge drops everything it sends or should receive). */
int
provision_wait_ports_bound(struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__InstanceSpec *spec = op->spec;
    if (!op->host->net || spec->n_nics == 0)
        return 0;
    agent_op_progress(op, 90, "binding %zu port(s)", spec->n_nics);
    const char *ids[16];
    size_t n = 0;
    for (size_t i = 0; i < spec->n_nics && i < NA_ARRAY_SIZE(ids); i++)
        ids[n++] = spec->nics[i]->port_id;
    return ovs_net_wait_bound(op->host->net, ids, n, op->host->cfg->net_bind_timeout_s * 1000, err);
}

/* The base image a job's first phase fetched, from the job's state. */
const char *
provision_job_base(struct agent_op *op, char *buf, size_t size, struct na_error **err)
{
    const char *base = agent_job_state_get(op->job, "base", buf, size);
    if (!base)
        na_error_set(err, NA_CODE_INTERNAL, ENOENT,
                     "%s of %s: the job's state names no base image (damaged store?)",
                     agent_request_kind_name(op->kind), op->instance);
    return base;
}

/* Whether the guest ran when the job began (the job keeps what it was then). */
bool
provision_job_was_running(const struct agent_op *op)
{
    return op->state_before == S(RUNNING);
}

/* The config drive, unless one is there already: a regular file of the guest's uid (never
 * followed) is kept; anything else under that name is replaced. */
static int
ensure_config_drive(struct agent_op *op, int dirfd, struct na_error **err)
{
    struct stat st;
    cleanup_close int fd =
        agent_instance_file_open(dirfd, "disk.config", O_RDONLY, op->uid, &st, NULL);
    if (fd >= 0)
        return 0;
    int ret = agent_instance_entry_remove(dirfd, "disk.config", err);
    return ret < 0 ? ret : provision_make_config_drive(op, dirfd, err);
}

/* The files a create's domain is defined and started on, checked again before each of
 * those steps (what a crash left in the directory is not taken on trust; the agent's start
 * removed whatever was not a regular file): the overlay and the config drive are kept when
 * they are the guest's own, made again otherwise, and the console log goes (virtlogd opens
 * it as root, following a symlink). */
static int
ensure_files(struct agent_op *op, int dirfd, const char *base, struct na_error **err)
{
    int ret = provision_make_disk(op, dirfd, "disk", base,
                                  provision_format_name(op->spec->image->format), err);
    if (ret < 0 || (ret = ensure_config_drive(op, dirfd, err)) < 0)
        return ret;
    return agent_instance_entry_remove(dirfd, "console.log", err);
}

static int
create_disk(struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__InstanceSpec *spec = op->spec;
    cleanup_free char *base = NULL;
    int ret = provision_fetch_base(op, "create.spec.flavor.root_disk_gib", &base, err);
    if (ret < 0)
        return ret;
    agent_job_state_put(op->job, "base", base);

    agent_op_progress(op, 40, "writing disk and config drive");
    cleanup_close int dirfd =
        agent_instance_dir_open(op->host->instances_dir, spec->uuid, true, err);
    if (dirfd < 0)
        return dirfd;
    if ((ret = provision_make_disk(op, dirfd, "disk", base,
                                   provision_format_name(spec->image->format), err)) < 0)
        return ret;
    na_failpoint("create.disk_made");
    /* A config drive an interrupted attempt left is written again: it may be half done. */
    if ((ret = provision_make_config_drive(op, dirfd, err)) < 0)
        return ret;
    return agent_instance_entry_remove(dirfd, "console.log", err);
}

/* Whether an earlier attempt of this create started the domain already (libvirt may still
 * be starting it): QEMU then has the files open, and they are left alone. */
static int
domain_active(struct agent_op *op, bool *active, struct na_error **err)
{
    enum hv_power power;
    int ret = hv_domain_power(op->host->hv, op->instance, &power, err);
    *active = ret == 0 && (power == HV_POWER_RUNNING || power == HV_POWER_PAUSED);
    return ret;
}

int
provision_create_define(struct agent_op *op, struct na_error **err)
{
    char buf[PATH_MAX];
    const char *base = provision_job_base(op, buf, sizeof(buf), err);
    if (!base)
        return -ENOENT;
    bool active = false;
    int ret = domain_active(op, &active, err);
    if (ret < 0 || active)
        return ret; /* started by an attempt a crash cut short: the start phase finishes it */
    cleanup_close int dirfd =
        agent_instance_dir_open(op->host->instances_dir, op->instance, false, err);
    if (dirfd < 0)
        return dirfd;
    ret = ensure_files(op, dirfd, base, err);
    if (ret < 0)
        return ret;
    cleanup_paths struct instance_paths p = {0};
    provision_paths_init(&p, op->host, op->spec->uuid);
    agent_op_progress(op, 60, "defining the domain");
    if ((ret = provision_define_domain(op, &p, base, provision_format_name(op->spec->image->format),
                                       err)) == 0)
        na_failpoint("create.defined");
    return ret;
}

int
provision_create_start(struct agent_op *op, struct na_error **err)
{
    enum hv_power power;
    int ret = hv_domain_power(op->host->hv, op->instance, &power, err);
    if (ret < 0)
        return ret;
    if (power == HV_POWER_SHUTOFF || power == HV_POWER_NONE) {
        /* Not started yet (or a crash stopped it): its files are checked again first. */
        char buf[PATH_MAX];
        const char *base = provision_job_base(op, buf, sizeof(buf), err);
        if (!base)
            return -ENOENT;
        cleanup_close int dirfd =
            agent_instance_dir_open(op->host->instances_dir, op->instance, false, err);
        if (dirfd < 0)
            return dirfd;
        if ((ret = ensure_files(op, dirfd, base, err)) < 0)
            return ret;
    }
    agent_op_progress(op, 80, "starting the domain");
    return hv_domain_start(op->host->hv, op->instance, err);
}

int
provision_create_bind(struct agent_op *op, struct na_error **err)
{
    int ret = provision_wait_ports_bound(op, err);
    if (ret < 0 || (ret = provision_start_and_read_state(op, false, err)) < 0)
        return ret;
    op->image_sha256 = na_xstrdup(op->spec->image->sha256);
    return 0;
}

/* Undo: nothing of a failed create stays but the shared image cache.  What cannot be
 * undone keeps the uid out of use: the domain or its files may still run or hold it. */
void
provision_create_rollback(struct agent_op *op)
{
    cleanup_paths struct instance_paths p = {0};
    provision_paths_init(&p, op->host, op->spec->uuid);
    if (hv_domain_undefine(op->host->hv, op->spec->uuid, NULL) < 0 || na_remove_tree(p.dir) < 0) {
        op->uid_held = true;
        struct na_log_ctx log = {.request_id = op->request_id, .instance = op->instance};
        NA_LOG_WARN(&log, "a failed create could not be undone; its uid stays held", "uid=%lld",
                    (long long)op->uid);
    }
}

static const struct agent_job_phase create_phases[] = {
    {"disk", create_disk, AGENT_JOB_REDO},
    {"define", provision_create_define, AGENT_JOB_REDO},
    {"start", provision_create_start, AGENT_JOB_REDO},
    {"bind", provision_create_bind, AGENT_JOB_REDO},
};
static const struct agent_job_kind create_job = {create_phases, NA_ARRAY_SIZE(create_phases),
                                                 provision_create_rollback};

int
provision_finish_create(struct agent *a, struct agent_op *op, struct na_error **err)
{
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (!inst || !op->owns_record)
        return 0;
    if (op->err) {
        int64_t uid = inst->uid;
        int ret = agent_store_instance_delete(a->store, inst->uuid, err);
        agent_instances_remove(&a->instances, op->instance);
        op->state = S(DELETED);
        return ret < 0 ? ret : agent_uids_release(a, uid, op->uid_held, err);
    }
    inst->task = NULL;
    inst->observed = op->state;
    return agent_instance_save(a->store, inst, err);
}

const struct agent_handler agent_handle_create = {prepare_create, NULL, provision_finish_create,
                                                  &create_job};

/* --- delete ---------------------------------------------------------------------------- */

static int
prepare_delete(struct agent *a, struct agent_op *op, struct na_error **err)
{
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (!inst) {
        op->noop = true;
        op->state = S(DELETED);
        return 0;
    }
    if (inst->observed == S(MIGRATING))
        return na_error_quiet(err, NA_CODE_CONFLICT, EBUSY,
                              "instance %s is MIGRATING; cancel the migration "
                              "(cancel_migration) or let it end before deleting it",
                              inst->uuid);
    /* Before anything is undefined: whatever a crash leaves of the instance is then known
     * as this store's and deleted, and reconciliation may finish removing it. */
    int ret = agent_store_tombstone_put(a->store, inst->uuid, err);
    if (ret < 0)
        return ret;
    inst->task = agent_request_kind_name(op->kind);
    inst->desired = S(DELETED);
    op->state_before = inst->observed;
    return 0;
}

static int
delete_destroy(struct agent_op *op, struct na_error **err)
{
    if (op->noop)
        return 0;
    na_failpoint("delete.tombstoned");
    int ret = hv_domain_destroy(op->host->hv, op->instance, err);
    if (ret == -ENOENT) {
        na_error_clear(err); /* never defined, or undefined before a crash */
        return 0;
    }
    return ret; /* the instance stays, whole, for a retry */
}

static int
delete_undefine(struct agent_op *op, struct na_error **err)
{
    return op->noop ? 0 : hv_domain_undefine(op->host->hv, op->instance, err);
}

static int
delete_remove_files(struct agent_op *op, struct na_error **err)
{
    (void)err;
    if (op->noop)
        return 0;
    cleanup_paths struct instance_paths p = {0};
    provision_paths_init(&p, op->host, op->instance);
    if (na_remove_tree(p.dir) < 0) {
        /* The domain is gone; what is left of its files keeps its uid out of use. */
        op->uid_held = true;
        struct na_log_ctx log = {.request_id = op->request_id, .instance = op->instance};
        NA_LOG_WARN(&log, "the instance's directory could not be removed; its uid stays held",
                    "dir=%s uid=%lld", p.dir, (long long)op->uid);
    }
    op->state = S(DELETED);
    return 0;
}

static const struct agent_job_phase delete_phases[] = {
    {"destroy", delete_destroy, AGENT_JOB_REDO},
    {"undefine", delete_undefine, AGENT_JOB_REDO},
    {"remove_files", delete_remove_files, AGENT_JOB_REDO},
};
static const struct agent_job_kind delete_job = {delete_phases, NA_ARRAY_SIZE(delete_phases), NULL};

static int
finish_delete(struct agent *a, struct agent_op *op, struct na_error **err)
{
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (!inst)
        return 0;
    if (op->err) {
        inst->task = NULL;
        return agent_instance_save(a->store, inst, err);
    }
    int64_t uid = inst->uid;
    /* libvirt's snapshot metadata went with the domain, the overlay with the directory. */
    int ret = agent_store_snapshot_replace(a->store, inst->uuid, NULL, 0, err);
    if (ret == 0)
        ret = agent_store_instance_delete(a->store, inst->uuid, err);
    agent_instances_remove(&a->instances, op->instance);
    return ret < 0 ? ret : agent_uids_release(a, uid, op->uid_held, err);
}

const struct agent_handler agent_handle_delete = {prepare_delete, NULL, finish_delete, &delete_job};
