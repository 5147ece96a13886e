/* Jobs: an operation as a sequence of recorded phases (libvirt's migration jobs are the
 * model: qemuMigrationJobSetPhase, and recovery by phase in qemu_process.c).
 *
 * A job kind declares its phases in order.  Each phase names one step, a function run in a
 * worker on the operation's plain inputs (op->host, op->spec, op->uid, the job's state; never
 * struct agent), and the rule that says what a restart does when a crash left the job in
 * that phase: redo the step, skip to the next, roll the job back, or wait for the peer.
 *
 *   loop: phase recorded ─► failpoint "<kind>.<phase>" ─► worker: step ─► loop: next phase …
 *
 * The phase is written to the store (agent/core/store_jobs.h) before its step is taken, so a
 * replay after a crash no longer redoes the steps already finished.  Between two steps the
 * job holds no thread: a job that waits (for a peer, a libvirt event; in tests, a failpoint
 * with the action "park") is a record and an entry on the loop, not a sleeping worker.  The
 * terminal event and the job's end are recorded in one transaction (agent_job_end).
 *
 * A request kind without a phase table of its own is a one-phase job ("<kind>.run") whose
 * step is its handler's run().
 *
 * Threading: agent_job_step() runs in a worker and touches only the op; everything else
 * runs on the loop.
 */
#ifndef NODEAGENT_AGENT_JOBS_H
#define NODEAGENT_AGENT_JOBS_H

#include "agent/core/store.h"
#include "common/common.h"

struct agent;
struct agent_op;

#define AGENT_JOB_RESTARTS(X)                                                                      \
    X(REDO, "redo")         /* take the step again: it is idempotent */                            \
    X(SKIP, "skip")         /* the step may be lost: go on with the next phase */                  \
    X(ROLLBACK, "rollback") /* undo what the job made and fail it */                               \
    X(ASK_PEER, "ask_peer") /* only the peer knows: wait for it, holding no thread */

enum agent_job_restart {
#define X(id, name) AGENT_JOB_##id,
    AGENT_JOB_RESTARTS(X)
#undef X
};

const char *agent_job_restart_name(enum agent_job_restart restart);

struct agent_job_phase {
    const char *name; /* the step it takes: "disk", "define", … */
    /* In a worker.  Fails with err set; the kind's rollback then undoes the job. */
    int (*step)(struct agent_op *op, struct na_error **err);
    enum agent_job_restart restart;
    /* On the loop, after the step succeeded (NULL: nothing): what a step cannot do from a
     * worker, such as recording a peer message in the outbox; it may park the job
     * (agent_job_park) until agent_job_wake(). */
    void (*then)(struct agent *a, struct agent_op *op);
};

struct agent_job_kind {
    const struct agent_job_phase *phases;
    size_t n_phases;
    /* In a worker, after a step failed or when a restart rolls the job back: undo what the
     * phases made, as far as it can.  NULL when a failed step leaves nothing to undo. */
    void (*rollback)(struct agent_op *op);
};

/* A job in progress, owned by its op. */
struct agent_job {
    const struct agent_job_kind *kind;
    size_t phase;            /* the phase whose step is taken next (or was, when it failed) */
    bool rolling_back;       /* the restart rule said roll back: the worker runs kind->rollback */
    bool finished;           /* nothing left to run (a skip past the last phase) */
    bool waiting;            /* parked on the loop: no step runs until something wakes it */
    bool woken;              /* agent_job_wake(): the next completion goes on to the next phase */
    struct agent_blob state; /* "key=value\n" lines the steps leave for later phases */
};

void agent_job_free(struct agent_job *job);

/* What a restart does with a job recorded in phase `recorded` of kind k.  Pure. */
struct agent_job_resume {
    enum agent_job_restart action;
    size_t phase; /* REDO: this phase again; SKIP: the next (n_phases: none left) */
};
int agent_job_resume_plan(const struct agent_job_kind *k, const char *recorded,
                          struct agent_job_resume *out);

/* The job's state, for steps: a value the job keeps across phases and restarts.  get
 * returns NULL when key is not set; put replaces it.  Keys and values have no newline. */
const char *agent_job_state_get(const struct agent_job *job, const char *key, char *buf,
                                size_t size);
void agent_job_state_put(struct agent_job *job, const char *key, const char *value);

/* The jobs of an agent that wait on the loop. */
struct agent_jobs {
    struct agent_op **waiting;
    size_t n_waiting, cap;
};

/* On the loop, after the op's prepare() succeeded: records a new job in its first phase,
 * or finds the job a crash left and applies its phase's restart rule. */
void agent_job_begin(struct agent *a, struct agent_op *op);
/* In a worker: the step of the current phase (or the rollback). */
void agent_job_step(struct agent_op *op);

enum agent_job_next {
    AGENT_JOB_NEXT_STEP, /* the next phase is recorded: hand its step to a worker */
    AGENT_JOB_WAITING,   /* parked on the loop (a->jobs holds the op) */
    AGENT_JOB_FINISHED,  /* done or failed: record the terminal event and agent_job_end */
};
/* On the loop, after a step: records the next phase, if any. */
enum agent_job_next agent_job_advance(struct agent *a, struct agent_op *op);
/* Inside the transaction that records the terminal event: the job's end. */
int agent_job_end(struct agent *a, struct agent_op *op, struct na_error **err);
/* On the loop, after a step: the phase's then(), unless the job was just woken. */
void agent_job_after_step(struct agent *a, struct agent_op *op);
/* From a phase's then(): the job waits on the loop after this step. */
void agent_job_park(struct agent_op *op);
/* The waiting op for which match(op, ctx) holds, or NULL. */
struct agent_op *agent_job_find_waiting(struct agent *a,
                                        bool (*match)(const struct agent_op *op, const void *ctx),
                                        const void *ctx);
/* Takes a waiting op off the list (it runs again through agent_job_wake, execute.c). */
void agent_job_unpark(struct agent *a, struct agent_op *op);
/* execute.c: a waiting job goes on with its next phase; with op->err set, the kind's
 * rollback runs (in a worker) and the job fails. */
void agent_job_wake(struct agent *a, struct agent_op *op);
/* On shutdown: waiting jobs stay recorded for the next start; their ops are freed. */
void agent_jobs_release_waiting(struct agent_jobs *jobs);
size_t agent_jobs_waiting(const struct agent_jobs *jobs);

#endif
