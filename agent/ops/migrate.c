/* Live migration: the peer messages between the two agents' jobs, and the handlers of the
 * answers that wake them (migrate.h). */
#include "agent/ops/migrate.h"
#include "agent/ops/jobs.h"
#include "agent/bus/events.h"
#include "proto/trust.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int
agent_migration_send(struct agent *a, const char *node, Nodeagent__V1__Envelope *env,
                     struct na_error **err)
{
    char request_id[37];
    na_uuid_generate(request_id);
    env->request_id = request_id;
    env->sent_at_ms = na_now_ms();
    env->reply_to = a->cfg->node_id;
    env->target_node = (char *)node;
    struct agent_blob blob = {.size = nodeagent__v1__envelope__get_packed_size(env)};
    blob.data = na_xmalloc(blob.size + 1);
    nodeagent__v1__envelope__pack(env, blob.data);
    cleanup_free char *topic = agent_topic_node(a->cfg, node);
    const char *key = agent_request_key(env);
    int ret = agent_store_outbox_add(a->store, topic, key, &blob, NULL, err);
    free(blob.data);
    env->request_id = env->reply_to = env->target_node = NULL;
    if (ret == 0)
        na_log(NA_LOG_INFO, NULL, "peer message recorded", "peer=%s kind=%s request_id=%s", node,
               agent_request_kind_name(agent_request_kind_of(env)), request_id);
    return ret;
}

struct match {
    enum agent_request_kind kind;
    const char *id, *node;
};

static bool
is_the_job(const struct agent_op *op, const void *ctx)
{
    const struct match *m = ctx;
    char id[64], peer[80];
    return op->kind == m->kind && op->job &&
           agent_job_state_get(op->job, MIGRATE_KEY_ID, id, sizeof(id)) &&
           agent_job_state_get(op->job, MIGRATE_KEY_PEER, peer, sizeof(peer)) &&
           strcmp(id, m->id) == 0 && strcmp(peer, m->node) == 0;
}

struct agent_op *
agent_migration_waiting(struct agent *a, enum agent_request_kind kind, const char *migration_id,
                        const char *node)
{
    struct match m = {kind, migration_id, node};
    return agent_job_find_waiting(a, is_the_job, &m);
}

void
agent_migration_wake(struct agent *a, struct agent_op *op, const struct na_error *fail)
{
    if (fail && !op->err)
        na_error_set(&op->err, fail->code, fail->status, "%s", fail->msg);
    agent_job_wake(a, op);
}

static bool
is_overdue(const struct agent_op *op, const void *ctx)
{
    char v[32];
    return op->kind == AGENT_REQ_MIGRATE && op->job &&
           !agent_job_state_get(op->job, "performing", v, sizeof(v)) &&
           agent_job_state_get(op->job, "deadline_ms", v, sizeof(v)) &&
           strtoll(v, NULL, 10) <= *(const int64_t *)ctx;
}

void
agent_migrations_expire(struct agent *a)
{
    int64_t now = na_now_ms();
    struct agent_op *op;
    while ((op = agent_job_find_waiting(a, is_overdue, &now))) {
        char peer[80] = "";
        agent_job_state_get(op->job, MIGRATE_KEY_PEER, peer, sizeof(peer));
        cleanup_error struct na_error *why = NULL;
        na_error_set(&why, NA_CODE_TIMEOUT, ETIMEDOUT,
                     "node %s did not answer migration_prepare within [migration] "
                     "prepare_timeout = %u s; instance %s stays here",
                     peer, a->cfg->migration_prepare_timeout_s, op->instance);
        agent_migration_wake(a, op, why);
    }
}

int
agent_migration_send_abort(struct agent *a, struct agent_op *op, struct na_error **err)
{
    char id[64], peer[80];
    if (!op->job || !agent_job_state_get(op->job, MIGRATE_KEY_ID, id, sizeof(id)) ||
        !agent_job_state_get(op->job, MIGRATE_KEY_PEER, peer, sizeof(peer)))
        return 0; /* the peer was never asked */
    Nodeagent__V1__Error e = NODEAGENT__V1__ERROR__INIT;
    e.code = op->err ? (Nodeagent__V1__ErrorCode)op->err->code
                     : NODEAGENT__V1__ERROR_CODE__ERROR_CODE_CANCELLED;
    e.message = op->err ? op->err->msg : (char *)"aborted";
    Nodeagent__V1__MigrationAbort m = NODEAGENT__V1__MIGRATION_ABORT__INIT;
    m.migration_id = id;
    m.node = a->cfg->node_id;
    m.error = &e;
    Nodeagent__V1__Envelope env = NODEAGENT__V1__ENVELOPE__INIT;
    env.body_case = NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_ABORT;
    env.migration_abort = &m;
    return agent_migration_send(a, peer, &env, err);
}

/* --- the answers: each wakes the job it is for ------------------------------------------ */

static int
not_waiting(const char *what, const char *id, const char *node, struct na_error **err)
{
    return na_error_quiet(err, NA_CODE_NOT_FOUND, ENOENT,
                          "%s: no migration %s with node %s waits for it on this node", what, id,
                          node);
}

static void
peer_error(const Nodeagent__V1__Error *e, const char *node, struct na_error **out)
{
    int c = (int)e->code;
    enum na_code code = c > 0 && c <= (int)NA_CODE_UNAVAILABLE ? (enum na_code)c : NA_CODE_INTERNAL;
    na_error_set(out, code, 0, "node %s: %s", node, e->message ? e->message : "");
}

static int
answer_abort(struct agent *a, const char *migration_id, const char *node, struct na_error **err)
{
    Nodeagent__V1__Error e = NODEAGENT__V1__ERROR__INIT;
    e.code = NODEAGENT__V1__ERROR_CODE__ERROR_CODE_CANCELLED;
    e.message = (char *)"the source's migration ended before this answer came";
    Nodeagent__V1__MigrationAbort m = NODEAGENT__V1__MIGRATION_ABORT__INIT;
    m.migration_id = (char *)migration_id;
    m.node = a->cfg->node_id;
    m.error = &e;
    Nodeagent__V1__Envelope env = NODEAGENT__V1__ENVELOPE__INIT;
    env.body_case = NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_ABORT;
    env.migration_abort = &m;
    int ret = agent_migration_send(a, node, &env, err);
    if (ret == 0)
        agent_outbox_pump(a);
    return ret;
}

static int
prepare_prepared(struct agent *a, struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__MigrationPrepared *m = op->env->migration_prepared;
    struct agent_op *job =
        agent_migration_waiting(a, AGENT_REQ_MIGRATE, m->migration_id, m->dest_node);
    if (!job) {
        /* The source's job ended (cancelled, failed) before the answer came: the
         * destination is told to undo what it prepared. */
        if (!m->error && answer_abort(a, m->migration_id, m->dest_node, err) < 0)
            return -1;
        return not_waiting("migration_prepared", m->migration_id, m->dest_node, err);
    }
    cleanup_error struct na_error *fail = NULL;
    if (m->error) {
        peer_error(m->error, m->dest_node, &fail);
    } else {
        agent_job_state_put(job->job, "migrate_uri", m->migrate_uri);
        agent_job_state_put(job->job, "disks_uri", m->disks_uri ? m->disks_uri : "");
        agent_job_state_put(job->job, "libvirt_uri", m->libvirt_uri);
        free(job->peer_domain_xml);
        job->peer_domain_xml = na_xstrdup(m->domain_xml);
    }
    agent_migration_wake(a, job, fail);
    return 0;
}

const struct agent_handler agent_handle_migration_prepared = {prepare_prepared, NULL, NULL, NULL};

static int
prepare_finish(struct agent *a, struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__MigrationFinish *m = op->env->migration_finish;
    struct agent_op *job =
        agent_migration_waiting(a, AGENT_REQ_MIGRATION_PREPARE, m->migration_id, m->source_node);
    if (!job)
        return not_waiting("migration_finish", m->migration_id, m->source_node, err);
    cleanup_error struct na_error *fail = NULL;
    if (!m->success)
        na_error_set(&fail, NA_CODE_CANCELLED, 0, "node %s: the migration did not complete",
                     m->source_node);
    agent_migration_wake(a, job, fail);
    return 0;
}

const struct agent_handler agent_handle_migration_finish = {prepare_finish, NULL, NULL, NULL};

static int
prepare_abort(struct agent *a, struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__MigrationAbort *m = op->env->migration_abort;
    struct agent_op *job =
        agent_migration_waiting(a, AGENT_REQ_MIGRATION_PREPARE, m->migration_id, m->node);
    if (!job)
        job = agent_migration_waiting(a, AGENT_REQ_MIGRATE, m->migration_id, m->node);
    if (!job)
        return not_waiting("migration_abort", m->migration_id, m->node, err);
    cleanup_error struct na_error *fail = NULL;
    if (m->error)
        peer_error(m->error, m->node, &fail);
    else
        na_error_set(&fail, NA_CODE_CANCELLED, 0, "node %s aborted the migration", m->node);
    agent_migration_wake(a, job, fail);
    return 0;
}

const struct agent_handler agent_handle_migration_abort = {prepare_abort, NULL, NULL, NULL};
