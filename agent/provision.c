/* Creating and deleting instances.
 *
 * create: on the loop, the instance is recorded (BUILDING, with its QEMU uid and the request
 * that creates it) before any work starts; in a worker, the base image is fetched into the
 * cache, the overlay disk and the config drive are written, the domain is defined and
 * started.  Every step is idempotent: a create interrupted by a crash runs again from the
 * start and finishes the same instance exactly once.  A create that fails undoes what it
 * made (domain, files, record); the cached image stays for others.
 *
 * delete: a tombstone is recorded first; then the domain is forced off and undefined with
 * everything libvirt keeps for it, the instance's directory is removed, and so is its
 * record.  Deleting a missing instance is done.
 *
 * rebuild: a new root disk from another image, same identity (uuid, NICs, config drive).
 * The image is fetched and the new disk written beside the old one (disk.next) while the
 * guest still runs; the old disk is replaced only once the domain is defined on the new one,
 * so a failure up to there leaves the instance as it was (started again if it was running).
 *
 * resize (cold): the guest is stopped, its disk grown (never shrunk), the domain redefined
 * with the new flavor on the base the record names (never the one the overlay's header,
 * which the guest's uid can write, claims), and started again if it was running.
 *
 * create, rebuild and resize are refused below the free-space watermark (disk_room.c).
 */
#include "agent/agent.h"
#include "agent/capacity.h"
#include "agent/instance_dir.h"
#include "net/ovs/ovs.h"
#include "storage/qcow2/qcow2.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#define S(x) NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_##x
#define GIB (1024ULL * 1024 * 1024)

/* The files of one instance. */
struct instance_paths {
    char *dir;
    char *disk;
    char *config_drive;
    char *console_log;
};

static void
paths_init(struct instance_paths *p, const struct agent_host *h, const char *uuid)
{
    p->dir = na_xasprintf("%s/%s", h->instances_dir, uuid);
    p->disk = na_xasprintf("%s/disk", p->dir);
    p->config_drive = na_xasprintf("%s/disk.config", p->dir);
    p->console_log = na_xasprintf("%s/console.log", p->dir);
}

static void
paths_clear(struct instance_paths *p)
{
    free(p->dir);
    free(p->disk);
    free(p->config_drive);
    free(p->console_log);
}

#define cleanup_paths __attribute__((cleanup(paths_clear)))

/* --- create ---------------------------------------------------------------------------- */

static int
prepare_create(struct agent *a, struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__InstanceSpec *spec = op->env->create->spec;
    struct agent_instance *inst = agent_instances_find(&a->instances, spec->uuid);
    if (inst && strcmp(inst->create_request_id, op->request_id) != 0)
        return na_error_quiet(err, NA_CODE_ALREADY_EXISTS, EEXIST,
                              "instance %s already exists on node %s", spec->uuid, a->cfg->node_id);
    struct agent_instance *same_name =
        agent_instances_find_name(&a->instances, spec->tenant_id, spec->name);
    if (same_name && same_name != inst)
        return na_error_quiet(err, NA_CODE_ALREADY_EXISTS, EEXIST,
                              "tenant %s already has an instance named `%s` (%s)", spec->tenant_id,
                              spec->name, same_name->uuid);
    int room = agent_disk_room_check(a, "create", err);
    if (room < 0)
        return room;
    if (a->host.qemu_gid == (gid_t)-1)
        return na_error_quiet(err, NA_CODE_HYPERVISOR, ENOENT,
                              "group `%s` ([instances] qemu_group) does not exist on this host; "
                              "is libvirt installed?",
                              a->cfg->qemu_group);

    op->spec = agent_spec_copy(spec);
    if (inst) {
        /* The same create, interrupted: finish that instance. */
        op->uid = inst->uid;
        inst->task = agent_request_kind_name(op->kind);
        op->owns_record = true;
        return 0;
    }
    const Nodeagent__V1__Flavor *f = spec->flavor;
    struct agent_claim need = {f->vcpus, f->memory_mib, f->root_disk_gib};
    int ret = agent_net_check_nics(a, spec, err);
    if (ret < 0 || (ret = agent_capacity_admit(a, spec->uuid, &need, err)) < 0)
        return ret;
    int64_t uid = -1;
    if ((ret = agent_uids_allocate(a, &uid, err)) < 0)
        return ret;
    inst = na_xcalloc(1, sizeof(*inst));
    snprintf(inst->uuid, sizeof(inst->uuid), "%s", spec->uuid);
    inst->spec = agent_spec_copy(spec);
    inst->desired = S(RUNNING);
    inst->observed = S(BUILDING);
    inst->task = agent_request_kind_name(op->kind);
    inst->uid = uid;
    inst->image_sha256 = na_xstrdup(spec->image->sha256);
    inst->create_request_id = na_xstrdup(op->request_id);
    inst->created_ms = na_now_ms();
    /* A uuid deleted before and created again: its old tombstone must never let
     * reconciliation take the new instance's domain for the old one's remains. */
    if ((ret = agent_store_tombstone_delete(a->store, inst->uuid, err)) < 0 ||
        (ret = agent_instance_save(a->store, inst, err)) < 0) {
        agent_instance_free(inst);
        return ret;
    }
    agent_instances_add(&a->instances, inst);
    op->uid = uid;
    op->owns_record = true;
    return 0;
}

/* Who the guest's files belong to: its QEMU uid, libvirt's qemu group. */
static struct qcow2_file_owner
guest_owner(const struct agent_op *op, mode_t mode)
{
    return (struct qcow2_file_owner){(uid_t)op->uid, op->host->qemu_gid, mode};
}

/* The overlay `name`, unless an earlier attempt already wrote it: an existing one is kept
 * only if it is a regular file of the guest's uid (never followed) on this base and size. */
static int
make_disk(struct agent_op *op, int dirfd, const char *name, const char *base,
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

static int
make_config_drive(struct agent_op *op, int dirfd, struct na_error **err)
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

static int
define_domain(struct agent_op *op, const struct instance_paths *p, const char *base,
              const char *base_format, struct na_error **err)
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
    };
    /* The whole spec rides in the metadata, so that a domain whose record is lost can be
     * made an instance again (nodectl adopt). */
    cleanup_free uint8_t *packed =
        na_xmalloc(nodeagent__v1__instance_spec__get_packed_size(spec) + 1);
    d.instance_spec = packed;
    d.instance_spec_size = nodeagent__v1__instance_spec__pack(spec, packed);
    cleanup_free char *xml = NULL;
    int ret = hv_domain_xml_build(&d, &xml, err);
    return ret < 0 ? ret : hv_domain_define(op->host->hv, xml, err);
}

static const char *
format_name(Nodeagent__V1__ImageFormat f)
{
    return f == NODEAGENT__V1__IMAGE_FORMAT__IMAGE_FORMAT_RAW ? "raw" : "qcow2";
}

/* The spec's image, in the cache (fetched once however many ask), and no larger than the
 * flavor's root disk; a refusal names field. */
static int
fetch_base(struct agent_op *op, const char *field, char **base, struct na_error **err)
{
    const Nodeagent__V1__InstanceSpec *spec = op->spec;
    agent_op_progress(op, 10, "fetching image %s", spec->image->id);
    struct qcow2_info info = {0};
    int ret = qcow2_image_cache_get(op->host->images, spec->image->url, spec->image->sha256,
                                    format_name(spec->image->format), base, &info, err);
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
static int
start_and_read_state(struct agent_op *op, bool start, struct na_error **err)
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
static int
wait_ports_bound(struct agent_op *op, struct na_error **err)
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

/* The instance's directory, disk, config drive and domain, made anew or kept where an
 * earlier attempt made them whole. */
static int
lay_out_and_define(struct agent_op *op, const struct instance_paths *p, const char *base,
                   const char *base_format, struct na_error **err)
{
    agent_op_progress(op, 40, "writing disk and config drive");
    cleanup_close int dirfd =
        agent_instance_dir_open(op->host->instances_dir, op->instance, true, err);
    if (dirfd < 0)
        return dirfd;
    int ret = make_disk(op, dirfd, "disk", base, base_format, err);
    if (ret < 0)
        return ret;
    na_failpoint("create.disk_made");
    /* virtlogd opens the console log as root, following a symlink: what an earlier attempt
     * left under that name goes first (nothing but root can put one there now). */
    if ((ret = make_config_drive(op, dirfd, err)) < 0 ||
        (ret = agent_instance_entry_remove(dirfd, "console.log", err)) < 0)
        return ret;

    agent_op_progress(op, 60, "defining the domain");
    if ((ret = define_domain(op, p, base, base_format, err)) < 0)
        return ret;
    na_failpoint("create.defined");
    return 0;
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

static int
run_create(struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__InstanceSpec *spec = op->spec;
    const struct agent_host *h = op->host;
    cleanup_paths struct instance_paths p = {0};
    paths_init(&p, h, spec->uuid);

    cleanup_free char *base = NULL;
    bool active = false;
    int ret = fetch_base(op, "create.spec.flavor.root_disk_gib", &base, err);
    if (ret < 0 || (ret = domain_active(op, &active, err)) < 0)
        goto fail;
    if (!active &&
        (ret = lay_out_and_define(op, &p, base, format_name(spec->image->format), err)) < 0)
        goto fail;
    if ((ret = start_and_read_state(op, true, err)) < 0)
        goto fail;
    na_failpoint("create.started");
    if ((ret = wait_ports_bound(op, err)) < 0)
        goto fail;
    op->image_sha256 = na_xstrdup(spec->image->sha256);
    return 0;

fail:
    /* Undo: nothing of a failed create stays but the shared image cache.  What cannot be
     * undone keeps the uid out of use: the domain or its files may still run or hold it. */
    if (hv_domain_undefine(h->hv, spec->uuid, NULL) < 0 || na_remove_tree(p.dir) < 0) {
        op->uid_held = true;
        struct na_log_ctx log = {.request_id = op->request_id, .instance = op->instance};
        NA_LOG_WARN(&log, "a failed create could not be undone; its uid stays held", "uid=%lld",
                    (long long)op->uid);
    }
    return ret;
}

static int
finish_create(struct agent *a, struct agent_op *op, struct na_error **err)
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

const struct agent_handler agent_handle_create = {prepare_create, run_create, finish_create};

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
run_delete(struct agent_op *op, struct na_error **err)
{
    if (op->noop)
        return 0;
    na_failpoint("delete.tombstoned");
    int ret = hv_domain_undefine(op->host->hv, op->instance, err);
    if (ret < 0)
        return ret; /* the instance stays, whole, for a retry */
    na_failpoint("delete.undefined");
    cleanup_paths struct instance_paths p = {0};
    paths_init(&p, op->host, op->instance);
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
    int ret = agent_store_instance_delete(a->store, inst->uuid, err);
    agent_instances_remove(&a->instances, op->instance);
    return ret < 0 ? ret : agent_uids_release(a, uid, op->uid_held, err);
}

const struct agent_handler agent_handle_delete = {prepare_delete, run_delete, finish_delete};

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
    if (ret < 0 || (ret = agent_disk_room_check(a, "rebuild", err)) < 0)
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
    if (start_and_read_state(op, was_running, &e) < 0)
        na_log(NA_LOG_WARN, &log, "the guest could not be started again after a failed rebuild",
               "error=\"%s\"", e->msg);
}

static int
run_rebuild(struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__InstanceSpec *spec = op->spec;
    const struct agent_host *h = op->host;
    cleanup_paths struct instance_paths p = {0};
    paths_init(&p, h, spec->uuid);
    const char *base_format = format_name(spec->image->format);
    bool was_running = op->state_before == S(RUNNING);

    cleanup_free char *base = NULL;
    int ret = fetch_base(op, "rebuild.image", &base, err);
    if (ret < 0)
        return ret;
    cleanup_close int dirfd = agent_instance_dir_open(h->instances_dir, spec->uuid, false, err);
    if (dirfd < 0)
        return dirfd;

    /* A rebuild gives a fresh disk: one left by an interrupted attempt is made again. */
    agent_op_progress(op, 40, "writing the new root disk");
    if ((ret = agent_instance_entry_remove(dirfd, "disk.next", err)) < 0)
        return ret;
    if ((ret = make_disk(op, dirfd, "disk.next", base, base_format, err)) < 0 ||
        (ret = make_config_drive(op, dirfd, err)) < 0) {
        agent_instance_entry_remove(dirfd, "disk.next", NULL);
        return ret;
    }
    na_failpoint("rebuild.disk_made");

    agent_op_progress(op, 60, "redefining the domain on the new disk");
    if ((ret = hv_domain_destroy(h->hv, spec->uuid, err)) < 0) {
        agent_instance_entry_remove(dirfd, "disk.next", NULL);
        return ret;
    }
    if (na_failpoint("rebuild.define"))
        ret = na_error_set(err, NA_CODE_HYPERVISOR, EIO, "failpoint rebuild.define");
    else
        ret = define_domain(op, &p, base, base_format, err);
    if (ret < 0) {
        restore_after_rebuild(op, dirfd, was_running);
        return ret;
    }
    na_failpoint("rebuild.defined");
    /* The domain names the new base from here: only now does the old disk go. */
    if (renameat(dirfd, "disk.next", dirfd, "disk") < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno,
                            "replace the old disk `%s` with disk.next (the domain is defined on "
                            "the new image; rebuild again)",
                            p.disk);
    na_failpoint("rebuild.replaced");
    if ((ret = start_and_read_state(op, was_running, err)) < 0)
        return ret;
    op->image_sha256 = na_xstrdup(spec->image->sha256);
    return 0;
}

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

const struct agent_handler agent_handle_rebuild = {prepare_rebuild, run_rebuild, finish_respec};

static int
prepare_resize(struct agent *a, struct agent_op *op, struct na_error **err)
{
    int ret = agent_prepare_existing(a, op, err);
    if (ret < 0 || (ret = agent_disk_room_check(a, "resize", err)) < 0)
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

static int
run_resize(struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__InstanceSpec *spec = op->spec;
    const struct agent_host *h = op->host;
    cleanup_paths struct instance_paths p = {0};
    paths_init(&p, h, spec->uuid);
    bool was_running = op->state_before == S(RUNNING);

    /* The recorded image, from the cache (kept there while the disk backs on it). */
    cleanup_free char *base = NULL;
    int ret = fetch_base(op, "resize.flavor.root_disk_gib", &base, err);
    if (ret < 0)
        return ret;
    /* The disk is opened once, not followed, checked to be the guest's regular file, and
     * grown through that fd. */
    cleanup_close int dirfd = agent_instance_dir_open(h->instances_dir, spec->uuid, false, err);
    if (dirfd < 0)
        return dirfd;
    struct stat st;
    cleanup_close int fd = agent_instance_file_open(dirfd, "disk", O_RDWR, op->uid, &st, err);
    if (fd == -ENOENT)
        return na_error_set(err, NA_CODE_STORAGE, ENOENT, "open the disk `%s`", p.disk);
    if (fd < 0)
        return fd;
    struct qcow2_info info = {0};
    if ((ret = check_disk_base(fd, p.disk, base, &info, err)) < 0)
        return ret;

    agent_op_progress(op, 20, "stopping the guest");
    if ((ret = hv_domain_shutdown(h->hv, spec->uuid, h->cfg->stop_timeout_s, err)) < 0 ||
        (ret = check_disk_base(fd, p.disk, base, &info, err)) < 0) /* again, with QEMU gone */
        return ret;
    na_failpoint("resize.stopped");
    uint64_t size = (uint64_t)spec->flavor->root_disk_gib * GIB;
    if (size > info.virtual_size) {
        agent_op_progress(op, 40, "growing the disk to %u GiB", spec->flavor->root_disk_gib);
        if ((ret = qcow2_grow(fd, size, err)) < 0)
            return ret;
        na_failpoint("resize.grown");
    }
    agent_op_progress(op, 60, "redefining the domain");
    if ((ret = define_domain(op, &p, base, format_name(spec->image->format), err)) < 0)
        return ret;
    na_failpoint("resize.defined");
    return start_and_read_state(op, was_running, err);
}

const struct agent_handler agent_handle_resize = {prepare_resize, run_resize, finish_respec};
