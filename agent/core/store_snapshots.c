#include "agent/core/store_snapshots.h"
#include "agent/core/store-private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
    sqlite3_bind_text(s, 1, instance, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, r->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, r->parent ? r->parent : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, r->description ? r->description : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 5, r->state ? r->state : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 6, r->memory);
    sqlite3_bind_int(s, 7, r->current);
    sqlite3_bind_int64(s, 8, r->created_ms);
    sqlite3_bind_int64(s, 9, (sqlite3_int64)r->size_bytes);
    return store_stmt_exec(store, s, err, "record a snapshot");
}

int
agent_store_snapshot_replace(struct agent_store *store, const char *instance,
                             const struct agent_snapshot_rec *recs, size_t n, struct na_error **err)
{
    sqlite3_stmt *del = store_stmt_get(store, ST_SNAPSHOT_DELETE_ALL);
    sqlite3_bind_text(del, 1, instance, -1, SQLITE_TRANSIENT);
    int ret = store_stmt_exec(store, del, err, "remove an instance's snapshots");
    for (size_t i = 0; ret == 0 && i < n; i++)
        ret = insert(store, store_stmt_get(store, ST_SNAPSHOT_INSERT), instance, &recs[i], err);
    return ret;
}

int
agent_store_snapshot_list(struct agent_store *store, const char *instance,
                          struct agent_snapshot_rec **out, size_t *n, struct na_error **err)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *s = store_stmt_get(store, ST_SNAPSHOT_LIST);
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
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        agent_snapshot_recs_free(recs, count);
        return store_db_error(store, err, "list an instance's snapshots");
    }
    *out = recs;
    *n = count;
    return 0;
}

/* The single integer statement id returns for instance, or -1. */
static int64_t
int_for_instance(struct agent_store *store, enum stmt_id id, const char *instance)
{
    sqlite3_stmt *s = store_stmt_get(store, id);
    sqlite3_bind_text(s, 1, instance, -1, SQLITE_TRANSIENT);
    int64_t v = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    return v;
}

int64_t
agent_store_snapshot_count(struct agent_store *store, const char *instance)
{
    return int_for_instance(store, ST_SNAPSHOT_COUNT, instance);
}

int64_t
agent_store_snapshot_bytes(struct agent_store *store, const char *instance)
{
    return int_for_instance(store, ST_SNAPSHOT_BYTES, instance);
}

int
agent_store_snapshot_has(struct agent_store *store, const char *instance, const char *name)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_SNAPSHOT_HAS);
    sqlite3_bind_text(s, 1, instance, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, name, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}
