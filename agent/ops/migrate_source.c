/* The source's side of a live migration: the `migrate` job (DESIGN.md section 9).
 *
 *   prepare ─► perform ─► handover ─► release
 *
 * prepare (restart: rollback): the guest must run here without snapshots; its CPU is read;
 *   then, on the loop, migration_prepare (with the control plane's signed `migrate`) goes to
 *   the destination and the job waits for migration_prepared.
 * perform (restart: redo): virDomainMigrateToURI3 peer to peer, the guest left paused there
 *   (hv_migrate_perform), in a thread of the pool while the job waits on the loop, so that
 *   the instance's lane is free: a second migrate, a stop or a delete is refused at once
 *   (the instance is MIGRATING), and cancel_migration aborts it.  Progress every second from
 *   the job statistics.  Redone after a crash, the step finds the domain gone when the
 *   migration completed and goes on to the handover, never to a rollback.
 * handover (redo): the source's domain is gone: migration_finish tells the destination to
 *   resume the guest (the commit point).
 * release (redo): the instance's directory goes; its record, claim, ports and uid go with
 *   the terminal event.
 * A failure before the handover leaves the guest running here and sends migration_abort.
 */
#include "agent/ops/migrate.h"
#include "agent/ops/jobs.h"
#include "agent/ops/provision-private.h"
#include "agent/core/store_jobs.h"
#include "agent/bus/events.h"
#include "agent/observed/uids.h"
#include "agent/outputs/peers.h"
#include "proto/trust.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define PROGRESS_INTERVAL_MS 1000

static bool
is_recorded_job(struct agent *a, const char *request_id)
{
    struct agent_job_rec *rec = NULL;
    cleanup_error struct na_error *err = NULL;
    if (agent_store_job_get(a->store, request_id, &rec, &err) < 0)
        return false;
    agent_job_rec_free(rec);
    return true;
}

static int
prepare_migrate(struct agent *a, struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__MigrateRequest *m = op->env->migrate;
    if (strcmp(m->target_node, a->cfg->node_id) == 0)
        return na_error_field(err, "migrate.target_node",
                              "migrate.target_node: `%s` is this node; a migration goes to "
                              "another one",
                              m->target_node);
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (inst && inst->observed == S(MIGRATING) && is_recorded_job(a, op->request_id)) {
        /* This very migration, replayed after a restart: its recorded phase says how it
         * goes on (agent_job_begin). */
        op->spec = agent_spec_copy(inst->spec);
        op->uid = inst->uid;
        op->state_before = S(RUNNING);
        inst->task = agent_request_kind_name(op->kind);
        return 0;
    }
    int ret = agent_prepare_existing(a, op, err);
    if (ret < 0)
        return ret;
    inst = agent_instances_find(&a->instances, op->instance);
    if (!agent_peers_is_live(a, m->target_node)) {
        inst->task = NULL;
        return na_error_quiet(err, NA_CODE_UNAVAILABLE, EHOSTUNREACH,
                              "node %s is not a live peer of node %s (no valid announcement "
                              "from it in time); instance %s stays here",
                              m->target_node, a->cfg->node_id, op->instance);
    }
    inst->observed = S(MIGRATING);
    return agent_instance_save(a->store, inst, err);
}

/* --- prepare ---------------------------------------------------------------------------- */

static int
source_check(struct agent_op *op, struct na_error **err)
{
    enum hv_power power;
    int ret = hv_domain_power(op->host->hv, op->instance, &power, err);
    if (ret < 0)
        return ret;
    if (power != HV_POWER_RUNNING)
        return na_error_set(err, NA_CODE_CONFLICT, EBUSY,
                            "instance %s is %s in libvirt; only a running guest is migrated",
                            op->instance, hv_power_name(power));
    int snapshots = 0;
    if ((ret = hv_migrate_snapshot_count(op->host->hv, op->instance, &snapshots, err)) < 0)
        return ret;
    if (snapshots > 0)
        return na_error_quiet(
            err, NA_CODE_HAS_SNAPSHOTS, EBUSY,
            "instance %s has %d snapshot(s); libvirt cannot live-migrate a domain "
            "with snapshots: delete them first",
            op->instance, snapshots);
    cleanup_free char *cpu = NULL;
    if ((ret = hv_migrate_cpu_xml(op->host->hv, op->instance, &cpu, err)) < 0)
        return ret;
    cleanup_free char *hex = trust_hex_encode((const uint8_t *)cpu, strlen(cpu));
    agent_job_state_put(op->job, "cpu_xml", hex);
    agent_op_progress(op, 5, "asking node %s to prepare", op->env->migrate->target_node);
    return 0;
}

/* A hex value of the job's state, decoded into a string; NULL when absent. */
static char *
state_hex_string(const struct agent_op *op, const char *key)
{
    size_t cap = op->job->state.size + 1;
    cleanup_free char *hex = na_xmalloc(cap);
    uint8_t *raw = NULL;
    size_t size = 0;
    if (!agent_job_state_get(op->job, key, hex, cap) ||
        !trust_hex_decode(hex, strlen(hex), cap, &raw, &size))
        return NULL;
    char *s = na_xmalloc(size + 1);
    memcpy(s, raw, size);
    s[size] = '\0';
    free(raw);
    return s;
}

/* Records the job's state now (it is read back after a restart) and the peer message. */
static int
record_and_send(struct agent *a, struct agent_op *op, const char *node,
                Nodeagent__V1__Envelope *env, struct na_error **err)
{
    int ret = agent_store_begin(a->store, err);
    if (ret == 0)
        ret = agent_store_job_set_phase(a->store, op->request_id,
                                        op->job->kind->phases[op->job->phase].name, &op->job->state,
                                        0, err);
    if (ret == 0)
        ret = agent_migration_send(a, node, env, err);
    if (ret == 0)
        ret = agent_store_commit(a->store, err);
    if (ret < 0)
        agent_store_rollback(a->store);
    else
        agent_outbox_pump(a);
    return ret;
}

static void
source_ask(struct agent *a, struct agent_op *op)
{
    const char *dest = op->env->migrate->target_node;
    char id[37];
    na_uuid_generate(id);
    agent_job_state_put(op->job, MIGRATE_KEY_ID, id);
    agent_job_state_put(op->job, MIGRATE_KEY_PEER, dest);
    char deadline[32];
    snprintf(deadline, sizeof(deadline), "%lld",
             (long long)(na_now_ms() + (int64_t)a->cfg->migration_prepare_timeout_s * 1000));
    agent_job_state_put(op->job, "deadline_ms", deadline);
    struct agent_intent *intent = NULL;
    if (agent_store_intent_get(a->store, op->request_id, &intent, &op->err) < 0)
        return;
    cleanup_free char *cpu = state_hex_string(op, "cpu_xml");
    Nodeagent__V1__MigrationPrepare m = NODEAGENT__V1__MIGRATION_PREPARE__INIT;
    m.migration_id = id;
    m.source_node = a->cfg->node_id;
    m.spec = op->spec;
    m.cpu_model_xml = cpu ? cpu : (char *)"";
    m.migrate_envelope.data = intent->envelope.data;
    m.migrate_envelope.len = intent->envelope.size;
    m.migrate_signature = intent->signature ? intent->signature : (char *)"";
    Nodeagent__V1__Envelope env = NODEAGENT__V1__ENVELOPE__INIT;
    env.body_case = NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_PREPARE;
    env.migration_prepare = &m;
    if (record_and_send(a, op, dest, &env, &op->err) == 0)
        agent_job_park(op);
    agent_intent_free(intent);
}

/* --- perform ---------------------------------------------------------------------------- */

static int
source_still_here(struct agent_op *op, struct na_error **err)
{
    enum hv_power power;
    /* Redone after a restart: a migration libvirt may still run is ended first, so that
     * the domain's presence says for certain whether the guest moved. */
    int ret = hv_migrate_settle(op->host->hv, op->instance, err);
    if (ret == 0)
        ret = hv_domain_power(op->host->hv, op->instance, &power, err);
    if (ret < 0)
        return ret;
    /* UNDEFINE_SOURCE: a domain gone here is a migration that completed (a restart redoes
     * this phase): the guest is the destination's now. */
    agent_job_state_put(op->job, "migrated", power == HV_POWER_NONE ? "1" : "0");
    if (power != HV_POWER_NONE && power != HV_POWER_RUNNING)
        return na_error_set(err, NA_CODE_CONFLICT, EBUSY,
                            "instance %s is %s in libvirt; only a running guest is migrated",
                            op->instance, hv_power_name(power));
    return 0;
}

/* The migration in a thread of the pool, with its own copies of what it needs. */
struct perform {
    uv_work_t req;
    struct agent *a;
    struct agent_op *shadow; /* request id, instance and host, for PROGRESS only */
    char *libvirt_uri, *migrate_uri, *disks_uri, *dest_xml;
    struct hv_migrate_params mp;
    atomic_bool done;
    struct na_error *err;
};

static void *
progress_thread(void *data)
{
    struct perform *p = data;
    while (!atomic_load(&p->done)) {
        for (int i = 0; i < PROGRESS_INTERVAL_MS / 50 && !atomic_load(&p->done); i++)
            usleep(50 * 1000);
        struct hv_migrate_progress pr;
        if (atomic_load(&p->done) ||
            hv_migrate_progress(p->shadow->host->hv, p->shadow->instance, &pr, NULL) < 0 ||
            !pr.active)
            continue;
        unsigned pct = pr.data_total ? (unsigned)(pr.data_processed * 90 / pr.data_total) : 0;
        agent_op_progress(p->shadow, 10 + (pct > 89 ? 89 : pct),
                          "migrating: memory %llu processed, %llu remaining, dirty rate %llu "
                          "pages/s, iteration %llu; disk %llu processed, %llu remaining",
                          pr.memory_processed, pr.memory_remaining, pr.dirty_rate, pr.iteration,
                          pr.disk_processed, pr.disk_remaining);
    }
    return NULL;
}

static void
perform_work(uv_work_t *req)
{
    struct perform *p = req->data;
    pthread_t t;
    bool progress = pthread_create(&t, NULL, progress_thread, p) == 0;
    hv_migrate_perform(p->shadow->host->hv, p->shadow->instance, &p->mp, &p->err);
    atomic_store(&p->done, true);
    if (progress)
        pthread_join(t, NULL);
}

static bool
is_request(const struct agent_op *op, const void *ctx)
{
    return strcmp(op->request_id, ctx) == 0;
}

static void
perform_free(struct perform *p)
{
    agent_op_free(p->shadow);
    free(p->libvirt_uri);
    free(p->migrate_uri);
    free(p->disks_uri);
    free(p->dest_xml);
    na_error_free(p->err);
    free(p);
}

static void
perform_after(uv_work_t *req, int status)
{
    (void)status;
    struct perform *p = req->data;
    struct agent_op *op = agent_job_find_waiting(p->a, is_request, p->shadow->request_id);
    if (op) {
        char by[80];
        if (!p->err)
            agent_job_state_put(op->job, "migrated", "1");
        else if (agent_job_state_get(op->job, "cancelled_by", by, sizeof(by)))
            /* libvirt's "operation aborted" is the cancel this node was asked for. */
            p->err->code = NA_CODE_CANCELLED;
        agent_migration_wake(p->a, op, p->err);
    }
    perform_free(p);
}

static void
source_launch(struct agent *a, struct agent_op *op)
{
    char migrated[4];
    if (agent_job_state_get(op->job, "migrated", migrated, sizeof(migrated)) &&
        strcmp(migrated, "1") == 0)
        return; /* on to the handover */
    struct perform *p = na_xcalloc(1, sizeof(*p));
    p->a = a;
    p->shadow = na_xcalloc(1, sizeof(*p->shadow));
    p->shadow->request_id = na_xstrdup(op->request_id);
    p->shadow->instance = na_xstrdup(op->instance);
    p->shadow->kind = op->kind;
    p->shadow->bus_offset = op->bus_offset;
    p->shadow->host = op->host;
    char buf[1100];
    p->libvirt_uri =
        na_xstrdup(agent_job_state_get(op->job, "libvirt_uri", buf, sizeof(buf)) ?: "");
    p->migrate_uri =
        na_xstrdup(agent_job_state_get(op->job, "migrate_uri", buf, sizeof(buf)) ?: "");
    p->disks_uri = na_xstrdup(agent_job_state_get(op->job, "disks_uri", buf, sizeof(buf)) ?: "");
    p->dest_xml = op->peer_domain_xml ? na_xstrdup(op->peer_domain_xml) : NULL;
    const Nodeagent__V1__MigrationSettings *s = op->env->migrate->settings;
    p->mp = (struct hv_migrate_params){
        .libvirt_uri = p->libvirt_uri,
        .migrate_uri = p->migrate_uri,
        .disks_uri = p->disks_uri,
        .dest_xml = p->dest_xml,
        .disk_target = MIGRATE_DISK_TARGET,
        .bandwidth_mib_s = s ? s->bandwidth_mib_s : 0,
        .max_downtime_ms = s ? s->max_downtime_ms : 0,
        .auto_converge = s && s->auto_converge,
    };
    if (!p->dest_xml || !*p->libvirt_uri || !*p->migrate_uri) {
        na_error_set(&op->err, NA_CODE_CANCELLED, 0,
                     "migrate %s was interrupted by a restart before libvirt's migration began "
                     "(the destination's answer is not kept across restarts) and is given up; "
                     "the guest runs on here",
                     op->instance);
        perform_free(p);
        return;
    }
    agent_job_state_put(op->job, "performing", "1");
    p->req.data = p;
    uv_queue_work(a->loop, &p->req, perform_work, perform_after);
    agent_job_park(op);
}

/* --- handover and release --------------------------------------------------------------- */

static int
source_gone(struct agent_op *op, struct na_error **err)
{
    enum hv_power power;
    int ret = hv_domain_power(op->host->hv, op->instance, &power, err);
    if (ret == 0 && power != HV_POWER_NONE)
        return na_error_set(err, NA_CODE_INTERNAL, EEXIST,
                            "instance %s: the migration completed but the domain is still "
                            "defined here (%s); the destination is not told to resume it",
                            op->instance, hv_power_name(power));
    return ret;
}

static void
source_commit(struct agent *a, struct agent_op *op)
{
    char id[64], peer[80];
    agent_job_state_get(op->job, MIGRATE_KEY_ID, id, sizeof(id));
    agent_job_state_get(op->job, MIGRATE_KEY_PEER, peer, sizeof(peer));
    Nodeagent__V1__MigrationFinish m = NODEAGENT__V1__MIGRATION_FINISH__INIT;
    m.migration_id = id;
    m.source_node = a->cfg->node_id;
    m.success = 1;
    Nodeagent__V1__Envelope env = NODEAGENT__V1__ENVELOPE__INIT;
    env.body_case = NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_FINISH;
    env.migration_finish = &m;
    agent_job_state_put(op->job, "handed_over", "1");
    record_and_send(a, op, peer, &env, &op->err);
}

static int
source_release(struct agent_op *op, struct na_error **err)
{
    (void)err;
    cleanup_paths struct instance_paths p = {0};
    provision_paths_init(&p, op->host, op->instance);
    if (na_remove_tree(p.dir) < 0) {
        op->uid_held = true;
        struct na_log_ctx log = {.request_id = op->request_id, .instance = op->instance};
        NA_LOG_WARN(&log,
                    "the migrated instance's directory could not be removed; its uid "
                    "stays held",
                    "dir=%s", p.dir);
    }
    agent_op_progress(op, 100, "handed over to node %s", op->env->migrate->target_node);
    return 0;
}

static const struct agent_job_phase migrate_phases[] = {
    {"prepare", source_check, AGENT_JOB_ROLLBACK, source_ask},
    {"perform", source_still_here, AGENT_JOB_REDO, source_launch},
    {"handover", source_gone, AGENT_JOB_REDO, source_commit},
    {"release", source_release, AGENT_JOB_REDO, NULL},
};
static const struct agent_job_kind migrate_job = {migrate_phases, NA_ARRAY_SIZE(migrate_phases),
                                                  NULL};

static bool
state_is_set(const struct agent_op *op, const char *key)
{
    char v[4];
    return op->job && agent_job_state_get(op->job, key, v, sizeof(v)) && strcmp(v, "1") == 0;
}

static int
finish_migrate(struct agent *a, struct agent_op *op, struct na_error **err)
{
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (!inst || !op->job)
        return 0;
    if (op->err && state_is_set(op, "migrated") && !state_is_set(op, "handed_over")) {
        /* libvirt moved the guest, but this side could not hand it over: the destination
         * keeps it paused (it never resumes on its own, and is not told to undo it).  An
         * operator decides; nothing is destroyed. */
        inst->task = NULL;
        inst->observed = S(ERROR);
        op->state = S(ERROR);
        return agent_instance_save(a->store, inst, err);
    }
    if (op->err && !state_is_set(op, "handed_over")) {
        /* The guest still runs here, as it did; the destination undoes what it prepared. */
        inst->task = NULL;
        inst->observed = op->state_before;
        op->state = op->state_before;
        int ret = agent_migration_send_abort(a, op, err);
        return ret < 0 ? ret : agent_instance_save(a->store, inst, err);
    }
    int64_t uid = inst->uid;
    int ret = agent_store_instance_delete(a->store, inst->uuid, err);
    agent_instances_remove(&a->instances, op->instance);
    op->state = S(UNSPECIFIED);
    return ret < 0 ? ret : agent_uids_release(a, uid, op->uid_held, err);
}

const struct agent_handler agent_handle_migrate = {prepare_migrate, NULL, finish_migrate,
                                                   &migrate_job};

/* --- cancel_migration ------------------------------------------------------------------- */

static bool
is_migration_of(const struct agent_op *op, const void *ctx)
{
    return op->kind == AGENT_REQ_MIGRATE && strcmp(op->instance, ctx) == 0;
}

static int
prepare_cancel(struct agent *a, struct agent_op *op, struct na_error **err)
{
    struct agent_instance *inst = agent_instances_find(&a->instances, op->instance);
    if (!inst)
        return na_error_quiet(err, NA_CODE_NOT_FOUND, ENOENT, "no instance %s on node %s",
                              op->instance, a->cfg->node_id);
    if (inst->observed != S(MIGRATING) || !inst->task || strcmp(inst->task, "migrate") != 0)
        return na_error_quiet(err, NA_CODE_CONFLICT, EBUSY,
                              "instance %s is %s; no migration of it is in progress on node %s",
                              op->instance, agent_state_name(inst->observed), a->cfg->node_id);
    struct agent_op *job = agent_job_find_waiting(a, is_migration_of, op->instance);
    char v[4];
    if (job && !(agent_job_state_get(job->job, "performing", v, sizeof(v)) && !strcmp(v, "1"))) {
        /* Still waiting for the destination: nothing runs in libvirt yet. */
        cleanup_error struct na_error *why = NULL;
        na_error_set(&why, NA_CODE_CANCELLED, ECANCELED, "migration of %s cancelled (%s)",
                     op->instance, op->request_id);
        agent_migration_wake(a, job, why);
        op->noop = true;
    } else if (job) {
        agent_job_state_put(job->job, "cancelled_by", op->request_id);
    }
    return 0;
}

static int
run_cancel(struct agent_op *op, struct na_error **err)
{
    return op->noop ? 0 : hv_migrate_abort(op->host->hv, op->instance, err);
}

const struct agent_handler agent_handle_cancel_migration = {prepare_cancel, run_cancel, NULL, NULL};
