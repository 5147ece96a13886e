/* Execution: an accepted request becomes an operation in its instance's lane, runs its
 * handler in a worker, and ends with its terminal event recorded together with the
 * intent's final phase.  At start, intents left unfinished by a crash or a shutdown run
 * again, in the order they arrived.
 */
#include "agent/core/agent.h"
#include "agent/ops/ops.h"
#include "agent/ops/jobs.h"
#include "agent/bus/events.h"
#include "hypervisor/snapshot.h"

#include <string.h>

struct agent_op *
agent_op_new(struct agent *a, Nodeagent__V1__Envelope *env, int64_t offset)
{
    struct agent_op *op = na_xcalloc(1, sizeof(*op));
    op->agent = a;
    op->env = env;
    op->kind = agent_request_kind_of(env);
    op->request_id = na_xstrdup(env->request_id);
    op->instance = na_xstrdup(agent_request_instance(env));
    op->key = agent_request_lane(env);
    op->bus_offset = offset;
    op->received_ns = na_mono_ns();
    op->host = &a->host;
    op->uid = -1;
    return op;
}

void
agent_op_free(struct agent_op *op)
{
    if (!op)
        return;
    free(op->request_id);
    free(op->instance);
    free(op->key);
    if (op->env)
        nodeagent__v1__envelope__free_unpacked(op->env, NULL);
    na_error_free(op->err);
    free(op->console_log);
    if (op->spec)
        nodeagent__v1__instance_spec__free_unpacked(op->spec, NULL);
    free(op->image_sha256);
    if (op->result_free)
        op->result_free(op->result);
    hv_snapshots_free(op->snapshots, op->n_snapshots);
    free(op->peer_domain_xml);
    agent_job_free(op->job);
    free(op);
}

static struct na_log_ctx
op_log_ctx(const struct agent_op *op)
{
    return (struct na_log_ctx){.request_id = op->request_id, .instance = op->instance};
}

/* From a prepared operation on: the instance's desired state is the one its kind leaves
 * (the table of operations), so reconciliation holds it there. */
static void
desire_what_the_kind_leaves(struct agent_op *op)
{
    Nodeagent__V1__InstanceState leaves = agent_request_row(op->kind)->leaves;
    struct agent_instance *inst = agent_instances_find(&op->agent->instances, op->instance);
    if (inst && leaves != NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_UNSPECIFIED)
        inst->desired = leaves;
}

/* On the loop, just before a worker takes the operation. */
static void
op_start(void *data)
{
    struct agent_op *op = data;
    struct na_log_ctx log = op_log_ctx(op);
    na_failpoint_ctx_set(&log);
    na_failpoint("execute.start");
    cleanup_error struct na_error *err = NULL;
    if (agent_store_intent_start(op->agent->store, op->request_id, &err) < 0)
        agent_die(op->agent, err);
    na_log(NA_LOG_INFO, &log, "executing request", "kind=%s", agent_request_kind_name(op->kind));

    const struct agent_handler *h = agent_handler_for(op->kind);
    if (!h)
        na_error_set(&op->err, NA_CODE_UNIMPLEMENTED, 0,
                     "this agent (version %s) has no handler for `%s` requests yet", AGENT_VERSION,
                     agent_request_kind_name(op->kind));
    else if (h->prepare && h->prepare(op->agent, op, &op->err) < 0) {
        if (!op->err)
            na_error_set(&op->err, NA_CODE_INTERNAL, 0, "%s refused without saying why",
                         agent_request_kind_name(op->kind));
    } else
        desire_what_the_kind_leaves(op);
    if (!op->err)
        agent_job_begin(op->agent, op);
    na_failpoint_ctx_set(NULL);
}

/* In a worker thread: only op (and op->host) is ours.  prepare() may have failed it. */
static void
op_work(void *data)
{
    struct agent_op *op = data;
    struct na_log_ctx log = op_log_ctx(op);
    na_failpoint_ctx_set(&log);
    agent_job_step(op);
    na_failpoint_ctx_set(NULL);
}

static void park_op(void *data);

static void
op_done(void *data)
{
    struct agent_op *op = data;
    struct agent *a = op->agent;
    struct na_log_ctx log = op_log_ctx(op);
    na_failpoint_ctx_set(&log);

    /* The worker's PROGRESS events go out before its DONE or FAILED, whichever of the
     * mailbox's wake-up and this completion libuv runs first. */
    agent_mailbox_deliver(a->mailbox);

    agent_job_after_step(a, op);
    /* A job with phases left goes on in its lane, ahead of what waits there. */
    switch (agent_job_advance(a, op)) {
    case AGENT_JOB_NEXT_STEP:
        na_failpoint_ctx_set(NULL);
        agent_dispatch_submit_first(a->dispatch, op->key, op_work, op_done, park_op, op);
        return;
    case AGENT_JOB_WAITING:
        na_failpoint_ctx_set(NULL);
        return;
    case AGENT_JOB_FINISHED:
        break;
    }

    cleanup_error struct na_error *err = NULL;
    const struct agent_handler *h = agent_handler_for(op->kind);
    int ret = agent_store_begin(a->store, &err);
    /* finish() applies the result to the instance table and may still fail the op. */
    if (ret == 0 && h && h->finish)
        ret = h->finish(a, op, &err);

    Nodeagent__V1__Event ev;
    Nodeagent__V1__Error slot;
    agent_event_init(a, &ev,
                     op->err ? NODEAGENT__V1__EVENT_KIND__EVENT_KIND_FAILED
                             : NODEAGENT__V1__EVENT_KIND__EVENT_KIND_DONE,
                     op->request_id, op->instance, agent_request_kind_name(op->kind),
                     op->bus_offset);
    ev.state = op->state;
    if (op->console_log) {
        ev.console_log.data = op->console_log;
        ev.console_log.len = op->console_log_size;
    }
    if (op->err)
        agent_event_set_error(&ev, &slot, op->err);
    else if (h && h->event)
        h->event(op, &ev);

    struct agent_blob recorded = {0};
    if (ret == 0)
        ret = agent_event_record(a, &ev, &recorded, &err);
    if (ret == 0)
        agent_event_summarize(&recorded);
    if (ret == 0)
        ret = agent_store_intent_finish(a->store, op->request_id,
                                        op->err ? AGENT_INTENT_FAILED : AGENT_INTENT_DONE,
                                        &recorded, &err);
    if (ret == 0)
        ret = agent_job_end(a, op, &err);
    if (ret == 0)
        ret = agent_store_commit(a->store, &err);
    free(recorded.data);
    if (ret < 0)
        agent_die(a, err);
    na_failpoint("execute.recorded"); /* the terminal event is stored, not yet published */
    agent_outbox_pump(a);

    double seconds = (double)(na_mono_ns() - op->received_ns) / 1e9;
    agent_metrics_count(&a->metrics, op->kind, op->err ? op->err->code : NA_CODE_UNSPECIFIED);
    agent_metrics_latency(&a->metrics, op->kind, seconds);
    if (op->err) {
        char quoted[1024];
        na_log(NA_LOG_WARN, &log, "request failed", "kind=%s code=%s seconds=%.3f error=%s",
               agent_request_kind_name(op->kind), na_code_name(op->err->code), seconds,
               na_log_quote(quoted, sizeof(quoted), op->err->msg));
    } else {
        na_log(NA_LOG_INFO, &log, "request done", "kind=%s seconds=%.3f",
               agent_request_kind_name(op->kind), seconds);
    }
    na_failpoint_ctx_set(NULL);
    agent_op_free(op);
    agent_backpressure(a);
}

/* On shutdown, an operation that has not started stays recorded for the next start. */
static void
park_op(void *data)
{
    struct agent_op *op = data;
    struct na_log_ctx log = op_log_ctx(op);
    na_log(NA_LOG_INFO, &log, "request parked until the next start", "kind=%s",
           agent_request_kind_name(op->kind));
    agent_op_free(op);
}

/* In a worker: a woken job has no step to take, but a failed one is undone. */
static void
op_woken(void *data)
{
    struct agent_op *op = data;
    struct na_log_ctx log = op_log_ctx(op);
    na_failpoint_ctx_set(&log);
    if (op->err && op->job && op->job->kind->rollback)
        op->job->kind->rollback(op);
    na_failpoint_ctx_set(NULL);
}

void
agent_job_wake(struct agent *a, struct agent_op *op)
{
    agent_job_unpark(a, op);
    agent_dispatch_submit_first(a->dispatch, op->key, op_woken, op_done, park_op, op);
}

void
agent_execute(struct agent *a, struct agent_op *op)
{
    agent_dispatch_submit(a->dispatch, op->key, op_start, op_work, op_done, park_op, op);
    agent_backpressure(a);
}

static int
replay_one(struct agent_intent *intent, void *ctx)
{
    struct agent *a = ctx;
    struct na_log_ctx log = {.request_id = intent->request_id, .instance = intent->instance_uuid};
    Nodeagent__V1__Envelope *env =
        nodeagent__v1__envelope__unpack(NULL, intent->envelope.size, intent->envelope.data);
    if (!env) {
        /* Recorded after it decoded once: the store itself is damaged. */
        na_log(NA_LOG_ERROR, &log, "recorded request does not decode; dropping it", NULL);
        cleanup_error struct na_error *err = NULL;
        agent_store_intent_finish(a->store, intent->request_id, AGENT_INTENT_FAILED, NULL, &err);
        agent_intent_free(intent);
        return 0;
    }
    na_log(NA_LOG_INFO, &log, "resuming unfinished request", "kind=%s phase=%s attempts=%d",
           intent->kind, agent_intent_phase_name(intent->phase), intent->attempts);
    agent_execute(a, agent_op_new(a, env, intent->bus_offset));
    agent_intent_free(intent);
    return 0;
}

int
agent_replay_open_intents(struct agent *a, struct na_error **err)
{
    return agent_store_intent_each_open(a->store, replay_one, a, err);
}

void
agent_park_queued(struct agent *a)
{
    agent_dispatch_park(a->dispatch);
    agent_jobs_release_waiting(a->jobs);
}
