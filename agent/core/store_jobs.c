#include "agent/core/store_jobs.h"
#include "agent/core/store-private.h"

#include <errno.h>
#include <string.h>

static int
check_state_size(const char *id, const struct agent_blob *state, struct na_error **err)
{
    if (state && state->size > AGENT_JOB_STATE_SIZE_MAX)
        return na_error_set(err, NA_CODE_INTERNAL, EMSGSIZE,
                            "job %s: its state of %zu bytes is over the %d bytes a job keeps", id,
                            state->size, AGENT_JOB_STATE_SIZE_MAX);
    return 0;
}

static struct agent_job_rec *
rec_from_row(sqlite3_stmt *s)
{
    struct agent_job_rec *r = na_xcalloc(1, sizeof(*r));
    r->id = store_column_text(s, 0);
    r->kind = store_column_text(s, 1);
    r->role = store_column_text(s, 2);
    r->instance = store_column_text(s, 3);
    r->peer = store_column_text(s, 4);
    r->phase = store_column_text(s, 5);
    r->deadline_ms = sqlite3_column_int64(s, 6);
    store_column_blob(s, 7, &r->state);
    r->created_ms = sqlite3_column_int64(s, 8);
    r->updated_ms = sqlite3_column_int64(s, 9);
    return r;
}

void
agent_job_rec_free(struct agent_job_rec *rec)
{
    if (!rec)
        return;
    free(rec->id);
    free(rec->kind);
    free(rec->role);
    free(rec->instance);
    free(rec->peer);
    free(rec->phase);
    free(rec->state.data);
    free(rec);
}

int
agent_store_job_insert(struct agent_store *store, const struct agent_job_rec *rec,
                       struct na_error **err)
{
    int ret = check_state_size(rec->id, &rec->state, err);
    if (ret < 0)
        return ret;
    sqlite3_stmt *s = store_stmt_get(store, ST_JOB_INSERT);
    sqlite3_bind_text(s, 1, rec->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, rec->kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, rec->role ? rec->role : "local", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, rec->instance, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 5, rec->peer ? rec->peer : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 6, rec->phase, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 7, rec->deadline_ms);
    store_bind_blob(s, 8, &rec->state);
    sqlite3_bind_int64(s, 9, na_now_ms());
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_CONSTRAINT)
        return na_error_set(err, NA_CODE_INTERNAL, EEXIST, "job %s is already recorded", rec->id);
    if (rc != SQLITE_DONE)
        return store_db_error(store, err, "record a job");
    return 0;
}

int
agent_store_job_get(struct agent_store *store, const char *id, struct agent_job_rec **out,
                    struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_JOB_GET);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *out = rec_from_row(s);
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return -ENOENT;
    if (rc != SQLITE_ROW)
        return store_db_error(store, err, "read a job");
    return 0;
}

int
agent_store_job_set_phase(struct agent_store *store, const char *id, const char *phase,
                          const struct agent_blob *state, int64_t deadline_ms,
                          struct na_error **err)
{
    int ret = check_state_size(id, state, err);
    if (ret < 0)
        return ret;
    sqlite3_stmt *s = store_stmt_get(store, ST_JOB_SET_PHASE);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, phase, -1, SQLITE_TRANSIENT);
    store_bind_blob(s, 3, state);
    sqlite3_bind_int64(s, 4, deadline_ms);
    sqlite3_bind_int64(s, 5, na_now_ms());
    if ((ret = store_stmt_exec(store, s, err, "record a job's phase")) < 0)
        return ret;
    if (sqlite3_changes(store->db) == 0)
        return na_error_set(err, NA_CODE_INTERNAL, ENOENT, "no job %s to move to phase %s", id,
                            phase);
    return 0;
}

int
agent_store_job_delete(struct agent_store *store, const char *id, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_JOB_DELETE);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    return store_stmt_exec(store, s, err, "remove a job");
}

/* Reads every job first and calls fn after: fn may record phases and remove jobs. */
int
agent_store_job_each(struct agent_store *store, int (*fn)(struct agent_job_rec *rec, void *ctx),
                     void *ctx, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_JOB_ALL);
    struct agent_job_rec **recs = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (n == cap)
            recs = na_xrealloc(recs, (cap = cap ? 2 * cap : 8) * sizeof(*recs));
        recs[n++] = rec_from_row(s);
    }
    sqlite3_reset(s);
    int ret = rc == SQLITE_DONE ? 0 : store_db_error(store, err, "list jobs");
    size_t i = 0;
    for (; ret == 0 && i < n; i++)
        ret = fn(recs[i], ctx);
    for (; i < n; i++)
        agent_job_rec_free(recs[i]);
    free(recs);
    return ret;
}

int64_t
agent_store_job_count(struct agent_store *store)
{
    return store_stmt_int64(store, ST_JOB_COUNT);
}
