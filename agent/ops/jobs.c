#include "agent/ops/jobs.h"
#include "agent/core/agent.h"
#include "agent/ops/ops.h"
#include "agent/core/store_jobs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const restart_names[] = {
#define X(id, name) [AGENT_JOB_##id] = name,
    AGENT_JOB_RESTARTS(X)
#undef X
};

const char *
agent_job_restart_name(enum agent_job_restart restart)
{
    return (unsigned)restart < NA_ARRAY_SIZE(restart_names) ? restart_names[restart] : "unknown";
}

void
agent_job_free(struct agent_job *job)
{
    if (!job)
        return;
    free(job->state.data);
    free(job);
}

int
agent_job_resume_plan(const struct agent_job_kind *k, const char *recorded,
                      struct agent_job_resume *out)
{
    for (size_t i = 0; i < k->n_phases; i++) {
        if (strcmp(k->phases[i].name, recorded) != 0)
            continue;
        out->action = k->phases[i].restart;
        out->phase = out->action == AGENT_JOB_SKIP ? i + 1 : i;
        return 0;
    }
    return -ENOENT;
}

/* --- the job's state: "key=value\n" lines ------------------------------------------------ */

/* The line of key in state, or NULL; *len its length without the newline. */
static const char *
state_find(const struct agent_blob *state, const char *key, size_t *len)
{
    size_t key_len = strlen(key);
    const char *p = (const char *)state->data, *end = p + state->size;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t line_len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (line_len > key_len && memcmp(p, key, key_len) == 0 && p[key_len] == '=') {
            *len = line_len;
            return p;
        }
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

const char *
agent_job_state_get(const struct agent_job *job, const char *key, char *buf, size_t size)
{
    size_t len;
    const char *line = state_find(&job->state, key, &len);
    size_t key_len = strlen(key);
    if (!line || len - key_len - 1 >= size)
        return NULL;
    memcpy(buf, line + key_len + 1, len - key_len - 1);
    buf[len - key_len - 1] = '\0';
    return buf;
}

void
agent_job_state_put(struct agent_job *job, const char *key, const char *value)
{
    struct agent_blob *st = &job->state;
    size_t len;
    const char *line = state_find(st, key, &len);
    if (line) {
        size_t off = (size_t)(line - (const char *)st->data);
        size_t cut = off + len < st->size ? len + 1 : len;
        memmove(st->data + off, st->data + off + cut, st->size - off - cut);
        st->size -= cut;
    }
    cleanup_free char *add = na_xasprintf("%s=%s\n", key, value);
    size_t add_size = strlen(add);
    st->data = na_xrealloc(st->data, st->size + add_size);
    memcpy(st->data + st->size, add, add_size);
    st->size += add_size;
}

/* --- one-phase jobs: a handler's run() --------------------------------------------------- */

static int
run_handler(struct agent_op *op, struct na_error **err)
{
    const struct agent_handler *h = agent_handler_for(op->kind);
    return h && h->run ? h->run(op, err) : 0;
}

static const struct agent_job_phase one_phase[] = {{"run", run_handler, AGENT_JOB_REDO}};
static const struct agent_job_kind one_phase_kind = {one_phase, 1, NULL};

static const struct agent_job_kind *
kind_of(const struct agent_op *op)
{
    const struct agent_handler *h = agent_handler_for(op->kind);
    return h && h->job ? h->job : &one_phase_kind;
}

/* --- on the loop ----------------------------------------------------------------------- */

static struct na_log_ctx
log_ctx(const struct agent_op *op)
{
    return (struct na_log_ctx){.request_id = op->request_id, .instance = op->instance};
}

static const char *
phase_name(const struct agent_job *job)
{
    return job->phase < job->kind->n_phases ? job->kind->phases[job->phase].name : "end";
}

static void
wait_on_loop(struct agent *a, struct agent_op *op)
{
    struct agent_jobs *jobs = a->jobs;
    if (jobs->n_waiting == jobs->cap) {
        jobs->cap = jobs->cap ? 2 * jobs->cap : 4;
        jobs->waiting = na_xrealloc(jobs->waiting, jobs->cap * sizeof(*jobs->waiting));
    }
    jobs->waiting[jobs->n_waiting++] = op;
    op->job->waiting = true;
    struct na_log_ctx log = log_ctx(op);
    na_log(NA_LOG_INFO, &log, "job waiting", "kind=%s phase=%s", agent_request_kind_name(op->kind),
           phase_name(op->job));
}

/* The boundary before the step of the job's phase: a failpoint of its own, where a job can
 * also be parked (tests). */
static void
phase_boundary(struct agent_op *op)
{
    cleanup_free char *name =
        na_xasprintf("%s.%s", agent_request_kind_name(op->kind), phase_name(op->job));
    na_failpoint(name);
    if (na_failpoint_parks(name))
        op->job->waiting = true; /* parked once the current worker call returns */
}

static void
record_phase(struct agent *a, struct agent_op *op)
{
    cleanup_error struct na_error *err = NULL;
    if (agent_store_job_set_phase(a->store, op->request_id, phase_name(op->job), &op->job->state, 0,
                                  &err) < 0)
        agent_die(a, err);
}

/* A job a crash left: its recorded phase's restart rule says where it goes on. */
static void
resume(struct agent *a, struct agent_op *op, struct agent_job_rec *rec)
{
    struct agent_job *job = op->job;
    struct na_log_ctx log = log_ctx(op);
    job->state = rec->state;
    rec->state = (struct agent_blob){0};
    /* What the instance was when the job began, not what the interrupted steps left. */
    char before[16];
    if (agent_job_state_get(job, "state_before", before, sizeof(before)))
        op->state_before = (Nodeagent__V1__InstanceState)atoi(before);
    struct agent_job_resume plan;
    if (agent_job_resume_plan(job->kind, rec->phase, &plan) < 0) {
        /* Written by another version of the agent: every step is idempotent from the
         * start, as operations were before they had phases. */
        na_log(NA_LOG_WARN, &log, "job recorded in a phase this agent does not know; redoing it",
               "kind=%s phase=%s", rec->kind, rec->phase);
        plan = (struct agent_job_resume){AGENT_JOB_REDO, 0};
    }
    na_log(NA_LOG_INFO, &log, "resuming job", "kind=%s phase=%s restart=%s", rec->kind, rec->phase,
           agent_job_restart_name(plan.action));
    job->phase = plan.phase;
    switch (plan.action) {
    case AGENT_JOB_REDO:
        break;
    case AGENT_JOB_SKIP:
        job->finished = job->phase >= job->kind->n_phases;
        record_phase(a, op);
        break;
    case AGENT_JOB_ROLLBACK:
        job->rolling_back = true;
        break;
    case AGENT_JOB_ASK_PEER:
        job->waiting = true;
        break;
    }
}

void
agent_job_begin(struct agent *a, struct agent_op *op)
{
    struct agent_job *job = na_xcalloc(1, sizeof(*job));
    job->kind = kind_of(op);
    op->job = job;
    cleanup_error struct na_error *err = NULL;
    struct agent_job_rec *rec = NULL;
    int ret = agent_store_job_get(a->store, op->request_id, &rec, &err);
    if (ret == 0) {
        resume(a, op, rec);
        agent_job_rec_free(rec);
        return;
    }
    if (ret != -ENOENT)
        agent_die(a, err);
    char before[16];
    snprintf(before, sizeof(before), "%d", (int)op->state_before);
    agent_job_state_put(job, "state_before", before);
    struct agent_job_rec fresh = {
        .id = op->request_id,
        .kind = (char *)agent_request_kind_name(op->kind),
        .role = (char *)"local",
        .instance = op->instance,
        .phase = (char *)phase_name(job),
        .state = job->state,
    };
    if (agent_store_job_insert(a->store, &fresh, &err) < 0)
        agent_die(a, err);
    phase_boundary(op);
}

enum agent_job_next
agent_job_advance(struct agent *a, struct agent_op *op)
{
    struct agent_job *job = op->job;
    if (!job || op->err || job->rolling_back || job->finished)
        return AGENT_JOB_FINISHED;
    if (!job->waiting) {
        if (job->phase + 1 >= job->kind->n_phases)
            return AGENT_JOB_FINISHED;
        job->phase++;
        record_phase(a, op);
        phase_boundary(op);
    }
    if (job->waiting) {
        wait_on_loop(a, op);
        return AGENT_JOB_WAITING;
    }
    return AGENT_JOB_NEXT_STEP;
}

int
agent_job_end(struct agent *a, struct agent_op *op, struct na_error **err)
{
    return agent_store_job_delete(a->store, op->request_id, err);
}

void
agent_job_after_step(struct agent *a, struct agent_op *op)
{
    struct agent_job *job = op->job;
    if (!job)
        return;
    if (job->woken) {
        job->woken = false;
        return;
    }
    if (op->err || job->rolling_back || job->finished || job->waiting ||
        job->phase >= job->kind->n_phases)
        return;
    const struct agent_job_phase *phase = &job->kind->phases[job->phase];
    if (phase->then)
        phase->then(a, op);
}

void
agent_job_park(struct agent_op *op)
{
    op->job->waiting = true;
}

struct agent_op *
agent_job_find_waiting(struct agent *a, bool (*match)(const struct agent_op *op, const void *ctx),
                       const void *ctx)
{
    for (size_t i = 0; i < a->jobs->n_waiting; i++)
        if (match(a->jobs->waiting[i], ctx))
            return a->jobs->waiting[i];
    return NULL;
}

void
agent_job_unpark(struct agent *a, struct agent_op *op)
{
    struct agent_jobs *jobs = a->jobs;
    for (size_t i = 0; i < jobs->n_waiting; i++) {
        if (jobs->waiting[i] != op)
            continue;
        memmove(&jobs->waiting[i], &jobs->waiting[i + 1],
                (jobs->n_waiting - i - 1) * sizeof(*jobs->waiting));
        jobs->n_waiting--;
        break;
    }
    op->job->waiting = false;
    op->job->woken = true;
}

void
agent_jobs_release_waiting(struct agent_jobs *jobs)
{
    for (size_t i = 0; i < jobs->n_waiting; i++) {
        struct agent_op *op = jobs->waiting[i];
        struct na_log_ctx log = log_ctx(op);
        na_log(NA_LOG_INFO, &log, "waiting job stays recorded until the next start",
               "kind=%s phase=%s", agent_request_kind_name(op->kind), phase_name(op->job));
        agent_op_free(op);
    }
    free(jobs->waiting);
    *jobs = (struct agent_jobs){0};
}

size_t
agent_jobs_waiting(const struct agent_jobs *jobs)
{
    return jobs->n_waiting;
}

/* --- in a worker ----------------------------------------------------------------------- */

void
agent_job_step(struct agent_op *op)
{
    struct agent_job *job = op->job;
    if (op->err || !job || job->finished || job->waiting)
        return;
    if (job->rolling_back) {
        if (job->kind->rollback)
            job->kind->rollback(op);
        na_error_set(&op->err, NA_CODE_CANCELLED, EINTR,
                     "%s %s was interrupted by a restart in its `%s` phase and rolled back",
                     agent_request_kind_name(op->kind), op->instance, phase_name(job));
        return;
    }
    const struct agent_job_phase *phase = &job->kind->phases[job->phase];
    if (phase->step(op, &op->err) < 0 || op->err) {
        if (!op->err)
            na_error_set(&op->err, NA_CODE_INTERNAL, 0,
                         "%s failed in its `%s` phase without "
                         "saying why",
                         agent_request_kind_name(op->kind), phase->name);
        if (job->kind->rollback)
            job->kind->rollback(op);
    }
}
