#include "agent/core/store_jobs.h"
#include "agent/core/store-private.h"

#include <errno.h>
#include <string.h>

#define JOB_COLUMNS                                                                                \
    "id, kind, role, instance_uuid, peer, phase, deadline_ms, state, created_ms, updated_ms"

static void
finalize_stmt(sqlite3_stmt **s)
{
    sqlite3_finalize(*s);
}

#define cleanup_stmt __attribute__((cleanup(finalize_stmt)))

static int
prepare(struct agent_store *store, const char *sql, sqlite3_stmt **out, struct na_error **err)
{
    if (sqlite3_prepare_v2(agent_store_db(store), sql, -1, out, NULL) != SQLITE_OK)
        return store_db_error(store, err, "prepare a jobs statement");
    return 0;
}

static void
bind_state(sqlite3_stmt *s, int idx, const struct agent_blob *b)
{
    if (b && b->data && b->size)
        sqlite3_bind_blob(s, idx, b->data, (int)b->size, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, idx);
}

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
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (ret < 0 || (ret = prepare(store,
                                  "INSERT INTO jobs (" JOB_COLUMNS ") "
                                  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                                  &s, err)) < 0)
        return ret;
    sqlite3_bind_text(s, 1, rec->id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, rec->kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, rec->role ? rec->role : "local", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, rec->instance, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 5, rec->peer ? rec->peer : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 6, rec->phase, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 7, rec->deadline_ms);
    bind_state(s, 8, &rec->state);
    sqlite3_bind_int64(s, 9, na_now_ms());
    int rc = sqlite3_step(s);
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
    cleanup_stmt sqlite3_stmt *s = NULL;
    int ret = prepare(store, "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1", &s, err);
    if (ret < 0)
        return ret;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE)
        return -ENOENT;
    if (rc != SQLITE_ROW)
        return store_db_error(store, err, "read a job");
    *out = rec_from_row(s);
    return 0;
}

int
agent_store_job_set_phase(struct agent_store *store, const char *id, const char *phase,
                          const struct agent_blob *state, int64_t deadline_ms,
                          struct na_error **err)
{
    int ret = check_state_size(id, state, err);
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (ret < 0 || (ret = prepare(store,
                                  "UPDATE jobs SET phase = ?2, state = ?3, deadline_ms = ?4, "
                                  "updated_ms = ?5 WHERE id = ?1",
                                  &s, err)) < 0)
        return ret;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, phase, -1, SQLITE_TRANSIENT);
    bind_state(s, 3, state);
    sqlite3_bind_int64(s, 4, deadline_ms);
    sqlite3_bind_int64(s, 5, na_now_ms());
    if (sqlite3_step(s) != SQLITE_DONE)
        return store_db_error(store, err, "record a job's phase");
    if (sqlite3_changes(agent_store_db(store)) == 0)
        return na_error_set(err, NA_CODE_INTERNAL, ENOENT, "no job %s to move to phase %s", id,
                            phase);
    return 0;
}

int
agent_store_job_delete(struct agent_store *store, const char *id, struct na_error **err)
{
    cleanup_stmt sqlite3_stmt *s = NULL;
    int ret = prepare(store, "DELETE FROM jobs WHERE id = ?1", &s, err);
    if (ret < 0)
        return ret;
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(s) != SQLITE_DONE)
        return store_db_error(store, err, "remove a job");
    return 0;
}

int
agent_store_job_each(struct agent_store *store, int (*fn)(struct agent_job_rec *rec, void *ctx),
                     void *ctx, struct na_error **err)
{
    cleanup_stmt sqlite3_stmt *s = NULL;
    int ret =
        prepare(store, "SELECT " JOB_COLUMNS " FROM jobs ORDER BY created_ms, rowid", &s, err);
    if (ret < 0)
        return ret;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if ((ret = fn(rec_from_row(s), ctx)) < 0)
            return ret;
    if (rc != SQLITE_DONE)
        return store_db_error(store, err, "list jobs");
    return 0;
}

int64_t
agent_store_job_count(struct agent_store *store)
{
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (prepare(store, "SELECT count(*) FROM jobs", &s, NULL) < 0 || sqlite3_step(s) != SQLITE_ROW)
        return -1;
    return sqlite3_column_int64(s, 0);
}
