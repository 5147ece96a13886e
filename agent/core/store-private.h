/* What the state store's files share (store.c, store_schema.c, store_records.c,
 * store_jobs.c, store_snapshots.c): the
 * store, its prepared statements by id, and the helpers that run them.  Not for other
 * files. */
#ifndef NODEAGENT_AGENT_CORE_STORE_PRIVATE_H
#define NODEAGENT_AGENT_CORE_STORE_PRIVATE_H

#include "agent/core/store.h"

#include <sqlite3.h>

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_INTENT_GET,
    ST_INTENT_INSERT,
    ST_INTENT_START,
    ST_INTENT_FINISH,
    ST_INTENT_OPEN,
    ST_INTENT_PRUNE,
    ST_OUTBOX_ADD,
    ST_OUTBOX_DELETE,
    ST_OUTBOX_EACH,
    ST_OUTBOX_COUNT,
    ST_OUTBOX_REPLACE,
    ST_INTENT_COUNT,
    ST_PAGES,
    ST_INSTANCE_PUT,
    ST_INSTANCE_DELETE,
    ST_INSTANCE_ALL,
    ST_PING,
    ST_META_GET,
    ST_META_PUT,
    ST_TOMBSTONE_PUT,
    ST_TOMBSTONE_GET,
    ST_TOMBSTONE_DELETE,
    ST_TOMBSTONE_PRUNE,
    ST_TOMBSTONE_ALL,
    ST_RELEASED_PUT,
    ST_RELEASED_GET,
    ST_UID_PUT,
    ST_UID_DELETE,
    ST_UID_ALL,
    ST_CONSUMER_ADD,
    ST_CONSUMER_DELETE,
    ST_CONSUMER_ALL,
    ST_SECGROUP_PUT,
    ST_SECGROUP_DELETE,
    ST_SECGROUP_ALL,
    ST_JOB_INSERT,
    ST_JOB_GET,
    ST_JOB_SET_PHASE,
    ST_JOB_DELETE,
    ST_JOB_ALL,
    ST_JOB_COUNT,
    ST_SNAPSHOT_DELETE_ALL,
    ST_SNAPSHOT_INSERT,
    ST_SNAPSHOT_LIST,
    ST_SNAPSHOT_COUNT,
    ST_SNAPSHOT_BYTES,
    ST_SNAPSHOT_HAS,
    ST__COUNT
};

/* The jobs table's columns in the order store_jobs.c reads them. */
#define JOB_COLUMNS                                                                                \
    "id, kind, role, instance_uuid, peer, phase, deadline_ms, state, created_ms, updated_ms"

/* The snapshots table's columns in the order store_snapshots.c reads them. */
#define SNAPSHOT_COLUMNS                                                                           \
    "instance_uuid, name, parent, description, state, memory, current, created_ms, size_bytes"

struct agent_store {
    sqlite3 *db;
    char *path;
    char id[37];
    sqlite3_stmt *stmt[ST__COUNT];
};

/* store_schema.c: the statements' SQL by id, and the migrations to the newest schema. */
extern const char *const store_stmt_sql[ST__COUNT];
int store_migrate(struct agent_store *store, struct na_error **err);

/* store.c */
int store_db_error(struct agent_store *store, struct na_error **err, const char *what);
/* Resets a statement for use; statements are cached for the store's lifetime. */
sqlite3_stmt *store_stmt_get(struct agent_store *store, enum stmt_id id);
/* Runs a statement that returns no rows. */
int store_stmt_exec(struct agent_store *store, sqlite3_stmt *s, struct na_error **err,
                    const char *what);
void store_bind_blob(sqlite3_stmt *s, int idx, const struct agent_blob *b);
void store_column_blob(sqlite3_stmt *s, int col, struct agent_blob *out);
char *store_column_text(sqlite3_stmt *s, int col);
/* The single integer a statement returns, or -1. */
int64_t store_stmt_int64(struct agent_store *store, enum stmt_id id);

#endif
