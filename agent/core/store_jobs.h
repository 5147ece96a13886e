/* The jobs table: one row per operation in progress, naming the phase it is in.
 *
 * A job's phase is written before the step it names is taken (agent/ops/jobs.h), so that after
 * a crash the agent knows which steps are done and resumes or rolls back from the recorded
 * phase instead of running the operation again from the start.  A job's row goes in the
 * same transaction as its request's terminal event.
 *
 * Inputs and outputs: plain records; strings are owned by the record (agent_job_rec_free).
 * Threading: like the rest of the store, the main loop only.
 */
#ifndef NODEAGENT_AGENT_STORE_JOBS_H
#define NODEAGENT_AGENT_STORE_JOBS_H

#include "agent/core/store.h"

/* A job's state blob is small: what a later phase needs from an earlier one (a path). */
#define AGENT_JOB_STATE_SIZE_MAX 4096

struct agent_job_rec {
    char *id;            /* the request id of the operation that runs it */
    char *kind;          /* its request kind: "create", "delete", ... */
    char *role;          /* "local"; "source" or "destination" for a job between two nodes */
    char *instance;      /* the instance's uuid */
    char *peer;          /* the other node's id; "" when none */
    char *phase;         /* the step being taken, as named in the kind's phase table */
    int64_t deadline_ms; /* wall clock; 0 when the phase has none */
    struct agent_blob state;
    int64_t created_ms;
    int64_t updated_ms;
};

void agent_job_rec_free(struct agent_job_rec *rec);

/* Records a new job (created and updated now).  -EEXIST when the id is taken; -EMSGSIZE
 * when its state is over AGENT_JOB_STATE_SIZE_MAX. */
int agent_store_job_insert(struct agent_store *store, const struct agent_job_rec *rec,
                           struct na_error **err);
/* Returns 0 and *out, or -ENOENT. */
int agent_store_job_get(struct agent_store *store, const char *id, struct agent_job_rec **out,
                        struct na_error **err);
/* Moves job id to phase with its state (NULL: none) and deadline.  -ENOENT when there is
 * no such job. */
int agent_store_job_set_phase(struct agent_store *store, const char *id, const char *phase,
                              const struct agent_blob *state, int64_t deadline_ms,
                              struct na_error **err);
/* Removes the job; none is not an error. */
int agent_store_job_delete(struct agent_store *store, const char *id, struct na_error **err);
/* Calls fn for every job, oldest first; fn owns the record it is given. */
int agent_store_job_each(struct agent_store *store, int (*fn)(struct agent_job_rec *rec, void *ctx),
                         void *ctx, struct na_error **err);
int64_t agent_store_job_count(struct agent_store *store);

#endif
