#include "agent/core/store_snapshots.h"
#include "agent/core/store-private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SNAPSHOT_COLUMNS                                                                           \
    "instance_uuid, name, parent, description, state, memory, current, created_ms, size_bytes"

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
        return store_db_error(store, err, "prepare a snapshots statement");
    return 0;
}

void
agent_snapshot_recs_free(struct agent_snapshot_rec *recs, size_t n)
{
    for (size_t i = 0; recs && i < n; i++) {
        free(recs[i].instance);
        free(recs[i].name);
        free(recs[i].parent);
        free(recs[i].description);
        free(recs[i].state);
    }
    free(recs);
}

static int
insert(struct agent_store *store, sqlite3_stmt *s, const char *instance,
       const struct agent_snapshot_rec *r, struct na_error **err)
{
    sqlite3_reset(s);
    sqlite3_bind_text(s, 1, instance, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, r->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, r->parent ? r->parent : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, r->description ? r->description : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 5, r->state ? r->state : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 6, r->memory);
    sqlite3_bind_int(s, 7, r->current);
    sqlite3_bind_int64(s, 8, r->created_ms);
    sqlite3_bind_int64(s, 9, (sqlite3_int64)r->size_bytes);
    if (sqlite3_step(s) != SQLITE_DONE)
        return store_db_error(store, err, "record a snapshot");
    return 0;
}

int
agent_store_snapshot_replace(struct agent_store *store, const char *instance,
                             const struct agent_snapshot_rec *recs, size_t n, struct na_error **err)
{
    cleanup_stmt sqlite3_stmt *del = NULL;
    int ret = prepare(store, "DELETE FROM snapshots WHERE instance_uuid = ?1", &del, err);
    if (ret < 0)
        return ret;
    sqlite3_bind_text(del, 1, instance, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(del) != SQLITE_DONE)
        return store_db_error(store, err, "remove an instance's snapshots");
    if (n == 0)
        return 0;
    cleanup_stmt sqlite3_stmt *s = NULL;
    if ((ret = prepare(store,
                       "INSERT INTO snapshots (" SNAPSHOT_COLUMNS
                       ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                       &s, err)) < 0)
        return ret;
    for (size_t i = 0; i < n; i++)
        if ((ret = insert(store, s, instance, &recs[i], err)) < 0)
            return ret;
    return 0;
}

int
agent_store_snapshot_list(struct agent_store *store, const char *instance,
                          struct agent_snapshot_rec **out, size_t *n, struct na_error **err)
{
    *out = NULL;
    *n = 0;
    cleanup_stmt sqlite3_stmt *s = NULL;
    int ret = prepare(store,
                      "SELECT " SNAPSHOT_COLUMNS " FROM snapshots WHERE instance_uuid = ?1 "
                      "ORDER BY created_ms, name",
                      &s, err);
    if (ret < 0)
        return ret;
    sqlite3_bind_text(s, 1, instance, -1, SQLITE_TRANSIENT);
    struct agent_snapshot_rec *recs = NULL;
    size_t count = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        recs = na_xrealloc(recs, (count + 1) * sizeof(*recs));
        struct agent_snapshot_rec *r = &recs[count++];
        r->instance = store_column_text(s, 0);
        r->name = store_column_text(s, 1);
        r->parent = store_column_text(s, 2);
        r->description = store_column_text(s, 3);
        r->state = store_column_text(s, 4);
        r->memory = sqlite3_column_int(s, 5) != 0;
        r->current = sqlite3_column_int(s, 6) != 0;
        r->created_ms = sqlite3_column_int64(s, 7);
        r->size_bytes = (uint64_t)sqlite3_column_int64(s, 8);
    }
    if (rc != SQLITE_DONE) {
        agent_snapshot_recs_free(recs, count);
        return store_db_error(store, err, "list an instance's snapshots");
    }
    *out = recs;
    *n = count;
    return 0;
}

int64_t
agent_store_snapshot_count(struct agent_store *store, const char *instance)
{
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (prepare(store, "SELECT count(*) FROM snapshots WHERE instance_uuid = ?1", &s, NULL) < 0)
        return -1;
    sqlite3_bind_text(s, 1, instance, -1, SQLITE_TRANSIENT);
    return sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
}

int64_t
agent_store_snapshot_bytes(struct agent_store *store, const char *instance)
{
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (prepare(store,
                "SELECT coalesce(sum(size_bytes), 0) FROM snapshots WHERE instance_uuid = ?1", &s,
                NULL) < 0)
        return -1;
    sqlite3_bind_text(s, 1, instance, -1, SQLITE_TRANSIENT);
    return sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
}

int
agent_store_snapshot_has(struct agent_store *store, const char *instance, const char *name)
{
    cleanup_stmt sqlite3_stmt *s = NULL;
    if (prepare(store, "SELECT 1 FROM snapshots WHERE instance_uuid = ?1 AND name = ?2", &s, NULL) <
        0)
        return -1;
    sqlite3_bind_text(s, 1, instance, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}
