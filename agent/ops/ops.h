/* The operations room: requests become operations and run.
 *
 * Job: an accepted request waits in its lane (the table of operations says which: its
 * instance's, a control lane, or its job's), is prepared on the loop against the instance
 * table (allowed states, claims, inputs copied into the op), runs its blocking steps in a
 * worker, and ends with its terminal event recorded together with the intent's final phase.
 * Inputs: accepted intents (intake, or the replay of unfinished ones at start); the instance
 * table; the node's fixed resources (struct agent_host).
 * Outputs: changes of the instance table (which the outputs follow by themselves), PROGRESS
 * and terminal events in the outbox.
 * Threading: prepare() and finish() on the loop; run() in a worker with only the op and its
 * host (never struct agent); PROGRESS from a worker goes through the mailbox.
 */
#ifndef NODEAGENT_AGENT_OPS_OPS_H
#define NODEAGENT_AGENT_OPS_OPS_H

#include "agent/core/agent.h"

struct agent_job;
struct agent_job_kind;
struct hv_snapshot;

/* An operation: one request being executed.  Owned by the dispatcher while queued or
 * running; the worker writes only result fields. */
struct agent_op {
    struct agent *agent;
    char *request_id;
    char *instance;
    char *key;
    enum agent_request_kind kind;
    Nodeagent__V1__Envelope *env;
    int64_t bus_offset;
    uint64_t received_ns;

    /* Inputs, set on the loop by the handler's prepare(). */
    const struct agent_host *host;
    Nodeagent__V1__InstanceSpec *spec; /* a copy of the instance's spec, owned */
    int64_t uid;
    Nodeagent__V1__InstanceState state_before;
    bool owns_record;      /* create: prepare() added the instance, so a failure removes it */
    bool noop;             /* prepare() found nothing to do (delete of a missing instance) */
    struct agent_job *job; /* its recorded phases (ops/jobs.h); set once prepare() passed */

    /* Results, set by the worker. */
    struct na_error *err;
    bool uid_held; /* the instance's domain or files could not be removed: its uid stays out */
    Nodeagent__V1__InstanceState state;
    uint8_t *console_log;
    size_t console_log_size;
    char *image_sha256; /* create, rebuild: the base image now used */
    /* A kind's own result for its DONE event (struct agent_handler.event), freed with the op
     * by result_free. */
    void *result;
    void (*result_free)(void *result);
    /* snapshot_*: libvirt's snapshots of the instance, read by the job's last step. */
    struct hv_snapshot *snapshots;
    size_t n_snapshots;
    bool snapshots_read;
    /* migrate: the destination's domain XML from its migration_prepared (too large for the
     * job's state; a restart before the perform phase rolls the migration back). */
    char *peer_domain_xml;
};

/* execute.c */
void agent_execute(struct agent *a, struct agent_op *op);
int agent_replay_open_intents(struct agent *a, struct na_error **err);
void agent_park_queued(struct agent *a);
struct agent_op *agent_op_new(struct agent *a, Nodeagent__V1__Envelope *env, int64_t offset);
void agent_op_free(struct agent_op *op);

/* What a request kind does, in three steps.  A kind with no handler is UNIMPLEMENTED. */
struct agent_handler {
    /* On the loop when the operation's turn comes: check it against the instance table,
     * fill the op's inputs, mark the instance's task.  An error fails the operation
     * without running it. */
    int (*prepare)(struct agent *a, struct agent_op *op, struct na_error **err);
    /* In a worker: the blocking work of a one-phase job.  Only op and op->host may be
     * used. */
    int (*run)(struct agent_op *op, struct na_error **err);
    /* On the loop, inside the transaction that records the terminal event: apply the
     * result (success or failure) to the instance table. */
    int (*finish)(struct agent *a, struct agent_op *op, struct na_error **err);
    /* The work as recorded phases, in place of run() (ops/jobs.h); NULL: one phase. */
    const struct agent_job_kind *job;
    /* On the loop, for a DONE event: put the kind's result (op->result) into it.  NULL:
     * the event has none. */
    void (*event)(const struct agent_op *op, Nodeagent__V1__Event *ev);
};

/* handlers.c */
const struct agent_handler *agent_handler_for(enum agent_request_kind kind);
/* One handler per kind the table of operations marks handled: lifecycle.c (start, stop,
 * reboot, pause, resume, suspend, console_log), provision.c (create, delete, rebuild,
 * resize), export.c (snapshot_export), secgroups.c (security groups). */
#define HANDLER_DECL_YES(name) extern const struct agent_handler agent_handle_##name;
#define HANDLER_DECL_NO(name)
#define X(name, CASE, field, signer, instance, job_id, sender, lane, from, leaves, handled, ...)   \
    HANDLER_DECL_##handled(name)
AGENT_REQUEST_KINDS(X)
#undef X
#undef HANDLER_DECL_YES
#undef HANDLER_DECL_NO
/* Shared steps for operations on an existing instance. */
int agent_prepare_existing(struct agent *a, struct agent_op *op, struct na_error **err);
int agent_finish_power(struct agent *a, struct agent_op *op, struct na_error **err);
/* Sends a PROGRESS event for op from any thread (progress.c). */
void agent_op_progress(struct agent_op *op, unsigned percent, const char *fmt, ...) NA_PRINTF(3, 4);

#endif
