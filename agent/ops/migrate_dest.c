/* The destination's side of a live migration: the `migration_prepare` job (DESIGN.md
 * section 9).
 *
 *   check ─► disk ─► answer ─► resume
 *
 * On the loop first: the control plane's `migrate` that the source hands on is checked here
 * (its signature, and that it moves this instance from that source to this node); the
 * instance must not exist here; its flavor is claimed and a uid allocated, and it is
 * recorded as MIGRATING (counted in the node's usage from then on).
 * check (restart: rollback): the guest's CPU against this host's, no domain and no directory
 *   of that uuid here.
 * disk (restart: rollback): the base image fetched or reused, a fresh empty overlay on it
 *   (NON_SHARED_INC copies only the top layer into it), the config drive written again.
 * answer (restart: wait for the peer): on the loop, migration_prepared answers the source
 *   with the addresses and the domain XML built for this node, and the job waits.
 * resume (restart: redo): woken by migration_finish, sent only once the source's job
 *   completed and its domain is gone: the paused guest is resumed (the commit point) and
 *   its ports bound.  Nothing here resumes an incoming guest on its own.
 * migration_abort, or a failure, rolls back: the incoming domain (if libvirt left one) and
 * the directory go, and the record, claim and uid with the terminal event.
 */
#include "agent/ops/migrate.h"
#include "agent/ops/jobs.h"
#include "agent/ops/provision-private.h"
#include "agent/ops/instance_dir.h"
#include "agent/core/store_jobs.h"
#include "agent/bus/events.h"
#include "agent/bus/identity.h"
#include "agent/observed/uids.h"
#include "proto/trust.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

/* The control plane's migrate, as the source received it: signed by the control plane,
 * addressed to the source, moving this very instance to this node, and fresh. */
static int
check_migrate_envelope(struct agent *a, const Nodeagent__V1__MigrationPrepare *m,
                       struct na_error **err)
{
    const char *f = "migration_prepare.migrate_envelope";
    if (!a->identity->insecure &&
        !trust_verify_hex(a->identity->cp_key, TRUST_REQUEST, m->migrate_envelope.data,
                          m->migrate_envelope.len, m->migrate_signature,
                          strlen(m->migrate_signature)))
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "%s: not signed by the control plane (migrate_signature); node %s "
                            "cannot show that the control plane asked for this migration",
                            f, m->source_node);
    Nodeagent__V1__Envelope *env =
        nodeagent__v1__envelope__unpack(NULL, m->migrate_envelope.len, m->migrate_envelope.data);
    int ret = 0;
    if (!env || env->body_case != NODEAGENT__V1__ENVELOPE__BODY_MIGRATE || !env->migrate)
        ret = na_error_field(err, f, "%s: not an Envelope with a migrate request", f);
    else if (strcmp(env->target_node ? env->target_node : "", m->source_node) != 0)
        ret = na_error_field(err, f, "%s: addressed to node `%s`, not to the source `%s`", f,
                             env->target_node ? env->target_node : "", m->source_node);
    else if (strcmp(env->migrate->target_node ? env->migrate->target_node : "", a->cfg->node_id) !=
             0)
        ret = na_error_field(err, f, "%s: moves the instance to node `%s`, not to this one (%s)", f,
                             env->migrate->target_node ? env->migrate->target_node : "",
                             a->cfg->node_id);
    else if (strcmp(env->migrate->instance_uuid ? env->migrate->instance_uuid : "",
                    m->spec->uuid) != 0)
        ret = na_error_field(err, f, "%s: moves instance %s, not %s", f,
                             env->migrate->instance_uuid ? env->migrate->instance_uuid : "",
                             m->spec->uuid);
    else if (env->sent_at_ms < na_now_ms() - (int64_t)a->cfg->max_request_age_s * 1000)
        ret = na_error_field(err, f, "%s: sent more than [bus] max_request_age = %u s ago", f,
                             a->cfg->max_request_age_s);
    if (env)
        nodeagent__v1__envelope__free_unpacked(env, NULL);
    return ret;
}

static int
prepare_incoming(struct agent *a, struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__MigrationPrepare *m = op->env->migration_prepare;
    const Nodeagent__V1__InstanceSpec *spec = m->spec;
    int ret = check_migrate_envelope(a, m, err);
    if (ret < 0)
        return ret;
    return provision_prepare_new(a, op, spec, "migration_prepare.spec", S(MIGRATING), err);
}

/* --- check ------------------------------------------------------------------------------ */

static int
dest_check(struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__MigrationPrepare *m = op->env->migration_prepare;
    agent_job_state_put(op->job, MIGRATE_KEY_ID, m->migration_id);
    agent_job_state_put(op->job, MIGRATE_KEY_PEER, m->source_node);
    int ret = hv_migrate_cpu_compare(op->host->hv, op->host->cfg->virt_type, m->cpu_model_xml, err);
    if (ret < 0)
        return ret;
    enum hv_power power;
    if ((ret = hv_domain_power(op->host->hv, op->instance, &power, err)) < 0)
        return ret;
    if (power != HV_POWER_NONE)
        return na_error_set(err, NA_CODE_ALREADY_EXISTS, EEXIST,
                            "a domain of instance %s is already defined on node %s (%s)",
                            op->instance, op->host->cfg->node_id, hv_power_name(power));
    cleanup_paths struct instance_paths p = {0};
    provision_paths_init(&p, op->host, op->instance);
    struct stat st;
    if (lstat(p.dir, &st) == 0)
        return na_error_set(err, NA_CODE_ALREADY_EXISTS, EEXIST,
                            "the directory of instance %s (%s) already exists on node %s",
                            op->instance, p.dir, op->host->cfg->node_id);
    agent_job_state_put(op->job, "dir_made", "1");
    return 0;
}

/* --- disk ------------------------------------------------------------------------------- */

static int
dest_disk(struct agent_op *op, struct na_error **err)
{
    cleanup_free char *base = NULL;
    int ret = provision_fetch_base(op, "migration_prepare.spec.image", &base, err);
    if (ret < 0)
        return ret;
    const char *fmt = provision_format_name(op->spec->image->format);
    cleanup_close int dirfd =
        agent_instance_dir_open(op->host->instances_dir, op->instance, true, err);
    if (dirfd < 0)
        return dirfd;
    /* Fresh and empty: what the guest wrote comes from the source's overlay. */
    if ((ret = agent_instance_entry_remove(dirfd, "disk", err)) < 0 ||
        (ret = provision_make_disk(op, dirfd, "disk", base, fmt, err)) < 0 ||
        (ret = provision_make_config_drive(op, dirfd, err)) < 0 ||
        (ret = agent_instance_entry_remove(dirfd, "console.log", err)) < 0)
        return ret;
    agent_job_state_put(op->job, "base", base);
    return 0;
}

/* This node's addresses for the migration ([migration] in the config). */
static void
dest_addresses(const struct agent_config *cfg, const char *id, char **libvirt_uri,
               char **migrate_uri, char **disks_uri)
{
    const char *ep = cfg->tunnel_endpoint ? cfg->tunnel_endpoint : "";
    *libvirt_uri = cfg->migration_libvirt_uri ? na_xstrdup(cfg->migration_libvirt_uri)
                                              : na_xasprintf("qemu+tls://%s/system", ep);
    if (cfg->migration_socket_dir) {
        *migrate_uri = na_xasprintf("unix://%s/%s.mig", cfg->migration_socket_dir, id);
        *disks_uri = na_xasprintf("unix://%s/%s.nbd", cfg->migration_socket_dir, id);
    } else {
        *migrate_uri =
            cfg->migration_uri ? na_xstrdup(cfg->migration_uri) : na_xasprintf("tcp://%s", ep);
        *disks_uri = na_xstrdup("");
    }
}

static int
send_prepared(struct agent *a, struct agent_op *op, const struct na_error *fail,
              struct na_error **err)
{
    const Nodeagent__V1__MigrationPrepare *req = op->env->migration_prepare;
    cleanup_free char *libvirt_uri = NULL, *migrate_uri = NULL, *disks_uri = NULL, *xml = NULL;
    Nodeagent__V1__MigrationPrepared m = NODEAGENT__V1__MIGRATION_PREPARED__INIT;
    Nodeagent__V1__Error e = NODEAGENT__V1__ERROR__INIT;
    m.migration_id = req->migration_id;
    m.dest_node = a->cfg->node_id;
    if (fail) {
        e.code = (Nodeagent__V1__ErrorCode)fail->code;
        e.message = fail->msg;
        e.field = fail->field;
        m.error = &e;
    } else {
        dest_addresses(a->cfg, req->migration_id, &libvirt_uri, &migrate_uri, &disks_uri);
        /* Built here, on the loop (no I/O): too large for the job's state. */
        char base[PATH_MAX];
        cleanup_paths struct instance_paths p = {0};
        provision_paths_init(&p, op->host, op->instance);
        if (!agent_job_state_get(op->job, "base", base, sizeof(base)))
            return na_error_set(err, NA_CODE_INTERNAL, ENOENT,
                                "migration %s: the job's state names no base image",
                                req->migration_id);
        if (provision_domain_xml(op, &p, base, provision_format_name(op->spec->image->format), &xml,
                                 err) < 0)
            return na_error_wrap(err, "migration %s", req->migration_id);
        m.libvirt_uri = libvirt_uri;
        m.migrate_uri = migrate_uri;
        m.disks_uri = disks_uri;
        m.domain_xml = xml ? xml : (char *)"";
    }
    Nodeagent__V1__Envelope env = NODEAGENT__V1__ENVELOPE__INIT;
    env.body_case = NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_PREPARED;
    env.migration_prepared = &m;
    if (op->job)
        agent_job_state_put(op->job, "answered", "1");
    return agent_migration_send(a, req->source_node, &env, err);
}

static void
dest_answer(struct agent *a, struct agent_op *op)
{
    int ret = agent_store_begin(a->store, &op->err);
    if (ret == 0)
        ret = send_prepared(a, op, NULL, &op->err);
    if (ret == 0)
        ret = agent_store_job_set_phase(a->store, op->request_id, "answer", &op->job->state, 0,
                                        &op->err);
    if (ret == 0)
        ret = agent_store_commit(a->store, &op->err);
    if (ret < 0) {
        agent_store_rollback(a->store);
        return;
    }
    agent_outbox_pump(a);
    agent_job_park(op);
}

/* The answer is the loop's (dest_answer); from then on the source may migrate the guest
 * here at any moment, so a restart in this phase waits for the source's word instead of
 * rolling back: a paused incoming guest may be the only copy. */
static int
dest_no_step(struct agent_op *op, struct na_error **err)
{
    (void)op;
    (void)err;
    return 0;
}

/* --- resume ----------------------------------------------------------------------------- */

static int
dest_resume(struct agent_op *op, struct na_error **err)
{
    enum hv_power power;
    int ret = hv_domain_power(op->host->hv, op->instance, &power, err);
    if (ret < 0)
        return ret;
    if (power == HV_POWER_NONE)
        return na_error_set(err, NA_CODE_HYPERVISOR, ENOENT,
                            "instance %s: the source says the migration completed, but no "
                            "incoming domain is here",
                            op->instance);
    agent_op_progress(op, 90, "resuming the guest");
    if ((ret = hv_domain_resume(op->host->hv, op->instance, err)) < 0 ||
        (ret = provision_wait_ports_bound(op, err)) < 0 ||
        (ret = provision_start_and_read_state(op, false, err)) < 0)
        return ret;
    op->image_sha256 = na_xstrdup(op->spec->image->sha256);
    return 0;
}

/* Undo, in a worker: the incoming domain (libvirt removes it itself when the migration
 * fails; one it left is ours: our XML, our uid) and the directory, only when this job made
 * it. */
static void
dest_rollback(struct agent_op *op)
{
    char made[4];
    if (!op->job || !agent_job_state_get(op->job, "dir_made", made, sizeof(made)))
        return;
    cleanup_paths struct instance_paths p = {0};
    provision_paths_init(&p, op->host, op->instance);
    if (hv_domain_undefine(op->host->hv, op->instance, NULL) < 0 || na_remove_tree(p.dir) < 0) {
        op->uid_held = true;
        struct na_log_ctx log = {.request_id = op->request_id, .instance = op->instance};
        NA_LOG_WARN(&log, "a failed incoming migration could not be undone; its uid stays held",
                    "uid=%lld", (long long)op->uid);
    }
}

static const struct agent_job_phase incoming_phases[] = {
    {"check", dest_check, AGENT_JOB_ROLLBACK, NULL},
    {"disk", dest_disk, AGENT_JOB_ROLLBACK, NULL},
    {"answer", dest_no_step, AGENT_JOB_ASK_PEER, dest_answer},
    {"resume", dest_resume, AGENT_JOB_REDO, NULL},
};
static const struct agent_job_kind incoming_job = {incoming_phases, NA_ARRAY_SIZE(incoming_phases),
                                                   dest_rollback};

static int
finish_incoming(struct agent *a, struct agent_op *op, struct na_error **err)
{
    char answered[4];
    if (op->err &&
        !(op->job && agent_job_state_get(op->job, "answered", answered, sizeof(answered)))) {
        /* The source waits for an answer: it is this failure. */
        int ret = send_prepared(a, op, op->err, err);
        if (ret < 0)
            return ret;
    }
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

const struct agent_handler agent_handle_migration_prepare = {prepare_incoming, NULL,
                                                             finish_incoming, &incoming_job};
