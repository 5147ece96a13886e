#include "agent/store.h"
#include "agent/store-private.h"

#include <errno.h>
#include <sqlite3.h>
#include <string.h>

/* Each entry moves the schema from version i to i + 1.  Never edit a released entry;
 * append a new one. */
static const char *const migrations[] = {
    /* 0 -> 1 */
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE intents ("
    "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  request_id TEXT NOT NULL UNIQUE,"
    "  kind TEXT NOT NULL,"
    "  instance_uuid TEXT NOT NULL,"
    "  body_hash TEXT NOT NULL,"
    "  envelope BLOB NOT NULL,"
    "  bus_offset INTEGER NOT NULL,"
    "  phase TEXT NOT NULL CHECK (phase IN ('accepted', 'running', 'done', 'failed')),"
    "  attempts INTEGER NOT NULL DEFAULT 0,"
    "  accepted_event BLOB,"
    "  result_event BLOB,"
    "  received_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL);"
    "CREATE INDEX intents_open ON intents (phase) WHERE phase IN ('accepted', 'running');"
    "CREATE TABLE outbox ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  topic TEXT NOT NULL,"
    "  key TEXT NOT NULL,"
    "  payload BLOB NOT NULL,"
    "  created_ms INTEGER NOT NULL);"
    "CREATE TABLE instances ("
    "  uuid TEXT PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  tenant_id TEXT NOT NULL,"
    "  spec BLOB NOT NULL,"
    "  desired_state TEXT NOT NULL,"
    "  observed_state TEXT NOT NULL,"
    "  task TEXT,"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL);",
    /* 1 -> 2: what an instance needs to be rebuilt after a crash: its QEMU uid, its base
     * image and the request that created it. */
    "ALTER TABLE instances ADD COLUMN uid INTEGER NOT NULL DEFAULT -1;"
    "ALTER TABLE instances ADD COLUMN image_sha256 TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE instances ADD COLUMN create_request_id TEXT NOT NULL DEFAULT '';",
    /* 2 -> 3: what reconciliation may destroy and what it must leave alone: the instances
     * this store deleted (a delete records its tombstone before it undefines anything), and
     * the orphans an operator told the agent to run beside (no hold for them). */
    "CREATE TABLE tombstones (uuid TEXT PRIMARY KEY, deleted_ms INTEGER NOT NULL);"
    "CREATE TABLE orphans_released (uuid TEXT PRIMARY KEY, released_ms INTEGER NOT NULL);",
    /* 3 -> 4: guest uids released and not yet handed out again (agent/uids.h). */
    "CREATE TABLE uid_quarantine ("
    "  uid INTEGER PRIMARY KEY,"
    "  released_ms INTEGER NOT NULL,"
    "  held INTEGER NOT NULL DEFAULT 0);",
    /* 4 -> 5: a finished intent keeps its body hash and result, not its envelope (only an
     * open intent is replayed from its envelope). */
    "UPDATE intents SET envelope = x'' WHERE phase IN ('done', 'failed');",
    /* 5 -> 6: the Placement consumers whose allocations the agent writes, so that it never
     * removes one it did not write.  The instances it holds now are taken as written by it
     * (their allocations are, when [placement] manage_allocations is on). */
    "CREATE TABLE placement_consumers ("
    "  consumer_uuid TEXT PRIMARY KEY,"
    "  recorded_ms INTEGER NOT NULL);"
    "INSERT INTO placement_consumers SELECT uuid, updated_ms FROM instances;",
    /* 6 -> 7: jobs, the recorded phases of an operation (agent/store_jobs.h): the phase is
     * written before the step it names is taken, and a restart resumes or rolls back
     * from it. */
    "CREATE TABLE jobs ("
    "  id TEXT PRIMARY KEY,"
    "  kind TEXT NOT NULL,"
    "  role TEXT NOT NULL,"
    "  instance_uuid TEXT NOT NULL,"
    "  peer TEXT NOT NULL DEFAULT '',"
    "  phase TEXT NOT NULL,"
    "  deadline_ms INTEGER NOT NULL DEFAULT 0,"
    "  state BLOB,"
    "  created_ms INTEGER NOT NULL,"
    "  updated_ms INTEGER NOT NULL);",
};

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
    ST__COUNT
};

#define INTENT_COLUMNS                                                                             \
    "seq, request_id, kind, instance_uuid, body_hash, envelope, bus_offset, phase, "               \
    "attempts, accepted_event, result_event, received_ms, updated_ms"

static const char *const stmt_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_INTENT_GET] = "SELECT " INTENT_COLUMNS " FROM intents WHERE request_id = ?1",
    [ST_INTENT_INSERT] = "INSERT INTO intents (request_id, kind, instance_uuid, body_hash, "
                         "envelope, bus_offset, phase, attempts, accepted_event, "
                         "result_event, received_ms, updated_ms) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9, ?10, ?10)",
    [ST_INTENT_START] = "UPDATE intents SET phase = 'running', attempts = attempts + 1, "
                        "updated_ms = ?2 WHERE request_id = ?1",
    [ST_INTENT_FINISH] = "UPDATE intents SET phase = ?2, result_event = ?3, updated_ms = ?4, "
                         "envelope = x'' WHERE request_id = ?1",
    [ST_INTENT_OPEN] = "SELECT " INTENT_COLUMNS " FROM intents "
                       "WHERE phase IN ('accepted', 'running') ORDER BY seq",
    [ST_INTENT_PRUNE] = "DELETE FROM intents WHERE phase IN ('done', 'failed') "
                        "AND updated_ms < ?1",
    [ST_OUTBOX_ADD] = "INSERT INTO outbox (topic, key, payload, created_ms) "
                      "VALUES (?1, ?2, ?3, ?4)",
    [ST_OUTBOX_DELETE] = "DELETE FROM outbox WHERE id = ?1",
    [ST_OUTBOX_EACH] = "SELECT id, topic, key, payload FROM outbox WHERE id > ?1 "
                       "ORDER BY id LIMIT ?2",
    [ST_OUTBOX_COUNT] = "SELECT count(*) FROM outbox",
    [ST_OUTBOX_REPLACE] = "UPDATE outbox SET payload = ?2 WHERE id = ?1",
    [ST_INTENT_COUNT] = "SELECT count(*) FROM intents",
    [ST_PAGES] = "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
    [ST_INSTANCE_PUT] = "INSERT OR REPLACE INTO instances (uuid, name, tenant_id, spec, "
                        "desired_state, observed_state, task, created_ms, updated_ms, uid, "
                        "image_sha256, create_request_id) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [ST_INSTANCE_DELETE] = "DELETE FROM instances WHERE uuid = ?1",
    [ST_INSTANCE_ALL] = "SELECT uuid, name, tenant_id, spec, desired_state, observed_state, "
                        "coalesce(task, ''), created_ms, updated_ms, uid, image_sha256, "
                        "create_request_id FROM instances ORDER BY created_ms, uuid",
    [ST_PING] = "SELECT 1",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_PUT] = "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
    [ST_TOMBSTONE_PUT] = "INSERT OR REPLACE INTO tombstones (uuid, deleted_ms) VALUES (?1, ?2)",
    [ST_TOMBSTONE_GET] = "SELECT 1 FROM tombstones WHERE uuid = ?1",
    [ST_TOMBSTONE_DELETE] = "DELETE FROM tombstones WHERE uuid = ?1",
    [ST_TOMBSTONE_PRUNE] = "DELETE FROM tombstones WHERE deleted_ms < ?1",
    [ST_TOMBSTONE_ALL] = "SELECT uuid FROM tombstones ORDER BY deleted_ms",
    [ST_RELEASED_PUT] = "INSERT OR REPLACE INTO orphans_released (uuid, released_ms) "
                        "VALUES (?1, ?2)",
    [ST_RELEASED_GET] = "SELECT 1 FROM orphans_released WHERE uuid = ?1",
    [ST_UID_PUT] = "INSERT OR REPLACE INTO uid_quarantine (uid, released_ms, held) "
                   "VALUES (?1, ?2, ?3)",
    [ST_UID_DELETE] = "DELETE FROM uid_quarantine WHERE uid = ?1",
    [ST_UID_ALL] = "SELECT uid, released_ms, held FROM uid_quarantine ORDER BY released_ms, uid",
    [ST_CONSUMER_ADD] = "INSERT OR IGNORE INTO placement_consumers (consumer_uuid, recorded_ms) "
                        "VALUES (?1, ?2)",
    [ST_CONSUMER_DELETE] = "DELETE FROM placement_consumers WHERE consumer_uuid = ?1",
    [ST_CONSUMER_ALL] = "SELECT consumer_uuid FROM placement_consumers ORDER BY consumer_uuid",
};

struct agent_store {
    sqlite3 *db;
    char *path;
    char id[37];
    sqlite3_stmt *stmt[ST__COUNT];
};

static const char *const phase_names[] = {
#define X(id, name) [AGENT_INTENT_##id] = name,
    AGENT_INTENT_PHASES(X)
#undef X
};

const char *
agent_intent_phase_name(enum agent_intent_phase phase)
{
    return (unsigned)phase < NA_ARRAY_SIZE(phase_names) ? phase_names[phase] : "unknown";
}

static int
phase_parse(const char *name, enum agent_intent_phase *out)
{
    for (size_t i = 0; i < NA_ARRAY_SIZE(phase_names); i++) {
        if (strcmp(name, phase_names[i]) == 0) {
            *out = (enum agent_intent_phase)i;
            return 0;
        }
    }
    return -EINVAL;
}

static int
db_error(struct agent_store *store, struct na_error **err, const char *what)
{
    return na_error_set(err, NA_CODE_INTERNAL, EIO, "state store `%s`: %s: %s", store->path, what,
                        sqlite3_errmsg(store->db));
}

sqlite3 *
agent_store_db(struct agent_store *store)
{
    return store->db;
}

int
agent_store_db_error(struct agent_store *store, struct na_error **err, const char *what)
{
    return db_error(store, err, what);
}

/* Resets a statement for use; statements are cached for the store's lifetime. */
static sqlite3_stmt *
stmt_get(struct agent_store *store, enum stmt_id id)
{
    sqlite3_stmt *s = store->stmt[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Runs a statement that returns no rows. */
static int
stmt_exec(struct agent_store *store, sqlite3_stmt *s, struct na_error **err, const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return db_error(store, err, what);
    return 0;
}

static void
bind_blob(sqlite3_stmt *s, int idx, const struct agent_blob *b)
{
    if (b && b->data)
        sqlite3_bind_blob(s, idx, b->data, (int)b->size, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, idx);
}

static void
column_blob(sqlite3_stmt *s, int col, struct agent_blob *out)
{
    const void *p = sqlite3_column_blob(s, col);
    int n = sqlite3_column_bytes(s, col);
    out->data = NULL;
    out->size = 0;
    if (p && n > 0) {
        out->data = na_xmalloc((size_t)n);
        memcpy(out->data, p, (size_t)n);
        out->size = (size_t)n;
    }
}

static char *
column_text(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    return na_xstrdup(t ? (const char *)t : "");
}

static int
migrate(struct agent_store *store, struct na_error **err)
{
    int version = agent_store_schema_version(store);
    if (version < 0)
        return db_error(store, err, "read schema version");
    if ((size_t)version > NA_ARRAY_SIZE(migrations))
        return na_error_set(err, NA_CODE_INTERNAL, 0,
                            "state store `%s` has schema version %d; this agent knows up to %zu "
                            "(was it written by a newer agent?)",
                            store->path, version, NA_ARRAY_SIZE(migrations));
    for (size_t v = (size_t)version; v < NA_ARRAY_SIZE(migrations); v++) {
        cleanup_free char *sql = na_xasprintf(
            "BEGIN IMMEDIATE; %s; PRAGMA user_version = %zu; COMMIT;", migrations[v], v + 1);
        if (sqlite3_exec(store->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            int ret = db_error(store, err, "migrate schema");
            sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
            return ret;
        }
        na_log(NA_LOG_INFO, NULL, "state store schema migrated", "path=%s from=%zu to=%zu",
               store->path, v, v + 1);
    }
    return 0;
}

/* The store's id: made once, when the store is new, and kept for its life. */
static int
load_id(struct agent_store *store, struct na_error **err)
{
    cleanup_free char *id = NULL;
    int ret = agent_store_meta_get(store, "store_id", &id, err);
    if (ret == 0 && na_uuid_is_valid(id)) {
        memcpy(store->id, id, sizeof(store->id));
        return 0;
    }
    if (ret == 0)
        return na_error_set(err, NA_CODE_INTERNAL, 0,
                            "state store `%s`: its meta store_id `%.64s` is not a uuid",
                            store->path, id);
    if (ret != -ENOENT)
        return ret;
    na_uuid_generate(store->id);
    if ((ret = agent_store_meta_put(store, "store_id", store->id, err)) < 0)
        return ret;
    na_log(NA_LOG_INFO, NULL, "new state store", "path=%s store_id=%s", store->path, store->id);
    return 0;
}

int
agent_store_open(const char *path, struct agent_store **out, struct na_error **err)
{
    struct agent_store *store = na_xcalloc(1, sizeof(*store));
    store->path = na_xstrdup(path);
    int ret = 0;

    if (sqlite3_open_v2(path, &store->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        ret = db_error(store, err, "open");
        goto fail;
    }
    sqlite3_busy_timeout(store->db, 5000);
    /* WAL with synchronous=FULL: a commit survives kill -9 and power loss, which the
     * intent log promises before a bus offset is committed. */
    if (sqlite3_exec(store->db,
                     "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
                     "PRAGMA foreign_keys = ON;",
                     NULL, NULL, NULL) != SQLITE_OK) {
        ret = db_error(store, err, "set WAL mode");
        goto fail;
    }
    if ((ret = migrate(store, err)) < 0)
        goto fail;
    for (int i = 0; i < ST__COUNT; i++) {
        if (sqlite3_prepare_v3(store->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &store->stmt[i], NULL) != SQLITE_OK) {
            ret = db_error(store, err, "prepare statement");
            goto fail;
        }
    }
    if ((ret = load_id(store, err)) < 0)
        goto fail;
    *out = store;
    return 0;

fail:
    agent_store_close(store);
    return ret;
}

void
agent_store_close(struct agent_store *store)
{
    if (!store)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(store->stmt[i]);
    sqlite3_close(store->db);
    free(store->path);
    free(store);
}

int
agent_store_schema_version(struct agent_store *store)
{
    sqlite3_stmt *s = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(store->db, "PRAGMA user_version", -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        version = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return version;
}

int
agent_store_begin(struct agent_store *store, struct na_error **err)
{
    return stmt_exec(store, stmt_get(store, ST_BEGIN), err, "begin transaction");
}

int
agent_store_commit(struct agent_store *store, struct na_error **err)
{
    int ret = stmt_exec(store, stmt_get(store, ST_COMMIT), err, "commit");
    if (ret < 0)
        agent_store_rollback(store);
    return ret;
}

void
agent_store_rollback(struct agent_store *store)
{
    if (!sqlite3_get_autocommit(store->db))
        stmt_exec(store, stmt_get(store, ST_ROLLBACK), NULL, "rollback");
}

void
agent_intent_free(struct agent_intent *intent)
{
    if (!intent)
        return;
    free(intent->request_id);
    free(intent->kind);
    free(intent->instance_uuid);
    free(intent->body_hash);
    free(intent->envelope.data);
    free(intent->accepted_event.data);
    free(intent->result_event.data);
    free(intent);
}

static struct agent_intent *
intent_from_row(sqlite3_stmt *s)
{
    struct agent_intent *in = na_xcalloc(1, sizeof(*in));
    in->seq = sqlite3_column_int64(s, 0);
    in->request_id = column_text(s, 1);
    in->kind = column_text(s, 2);
    in->instance_uuid = column_text(s, 3);
    in->body_hash = column_text(s, 4);
    column_blob(s, 5, &in->envelope);
    in->bus_offset = sqlite3_column_int64(s, 6);
    if (phase_parse((const char *)sqlite3_column_text(s, 7), &in->phase) < 0)
        in->phase = AGENT_INTENT_FAILED;
    in->attempts = sqlite3_column_int(s, 8);
    column_blob(s, 9, &in->accepted_event);
    column_blob(s, 10, &in->result_event);
    in->received_ms = sqlite3_column_int64(s, 11);
    in->updated_ms = sqlite3_column_int64(s, 12);
    return in;
}

int
agent_store_intent_get(struct agent_store *store, const char *request_id, struct agent_intent **out,
                       struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_INTENT_GET);
    sqlite3_bind_text(s, 1, request_id, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *out = intent_from_row(s);
        sqlite3_reset(s);
        return 0;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE)
        return -ENOENT;
    return db_error(store, err, "read intent");
}

int
agent_store_intent_insert(struct agent_store *store, const struct agent_intent *in,
                          struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_INTENT_INSERT);
    sqlite3_bind_text(s, 1, in->request_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, in->kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, in->instance_uuid ? in->instance_uuid : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, in->body_hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 5, in->envelope.data ? (const void *)in->envelope.data : "",
                      (int)in->envelope.size, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 6, in->bus_offset);
    sqlite3_bind_text(s, 7, agent_intent_phase_name(in->phase), -1, SQLITE_STATIC);
    bind_blob(s, 8, &in->accepted_event);
    bind_blob(s, 9, &in->result_event);
    sqlite3_bind_int64(s, 10, in->received_ms);
    return stmt_exec(store, s, err, "record intent");
}

int
agent_store_intent_start(struct agent_store *store, const char *request_id, struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_INTENT_START);
    sqlite3_bind_text(s, 1, request_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, na_now_ms());
    return stmt_exec(store, s, err, "mark intent running");
}

int
agent_store_intent_finish(struct agent_store *store, const char *request_id,
                          enum agent_intent_phase phase, const struct agent_blob *event,
                          struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_INTENT_FINISH);
    sqlite3_bind_text(s, 1, request_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, agent_intent_phase_name(phase), -1, SQLITE_STATIC);
    bind_blob(s, 3, event);
    sqlite3_bind_int64(s, 4, na_now_ms());
    return stmt_exec(store, s, err, "record intent result");
}

int
agent_store_intent_each_open(struct agent_store *store,
                             int (*fn)(struct agent_intent *intent, void *ctx), void *ctx,
                             struct na_error **err)
{
    /* Collect first: fn may write to the store, which would disturb a live cursor. */
    sqlite3_stmt *s = stmt_get(store, ST_INTENT_OPEN);
    struct agent_intent **list = NULL;
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        list = na_xrealloc(list, (n + 1) * sizeof(*list));
        list[n++] = intent_from_row(s);
    }
    sqlite3_reset(s);
    int ret = rc == SQLITE_DONE ? 0 : db_error(store, err, "list open intents");
    for (size_t i = 0; i < n; i++) {
        if (ret == 0)
            ret = fn(list[i], ctx);
        else
            agent_intent_free(list[i]);
    }
    free(list);
    return ret;
}

int
agent_store_intent_prune(struct agent_store *store, int64_t before_ms, struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_INTENT_PRUNE);
    sqlite3_bind_int64(s, 1, before_ms);
    int ret = stmt_exec(store, s, err, "prune intents");
    return ret < 0 ? ret : sqlite3_changes(store->db);
}

int
agent_store_outbox_add(struct agent_store *store, const char *topic, const char *key,
                       const struct agent_blob *payload, int64_t *id, struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_OUTBOX_ADD);
    sqlite3_bind_text(s, 1, topic, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, key ? key : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 3, payload->data ? (const void *)payload->data : "", (int)payload->size,
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 4, na_now_ms());
    int ret = stmt_exec(store, s, err, "queue event");
    if (ret == 0 && id)
        *id = sqlite3_last_insert_rowid(store->db);
    return ret;
}

int
agent_store_outbox_delete(struct agent_store *store, int64_t id, struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_OUTBOX_DELETE);
    sqlite3_bind_int64(s, 1, id);
    return stmt_exec(store, s, err, "remove delivered event");
}

int
agent_store_outbox_each(struct agent_store *store, int64_t after_id, int limit,
                        int (*fn)(int64_t id, const char *topic, const char *key,
                                  const struct agent_blob *payload, void *ctx),
                        void *ctx, struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_OUTBOX_EACH);
    sqlite3_bind_int64(s, 1, after_id);
    sqlite3_bind_int(s, 2, limit);
    int rc = SQLITE_DONE, ret = 0;
    while (ret == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct agent_blob payload = {
            .data = (uint8_t *)sqlite3_column_blob(s, 3),
            .size = (size_t)sqlite3_column_bytes(s, 3),
        };
        ret = fn(sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1),
                 (const char *)sqlite3_column_text(s, 2), &payload, ctx);
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = db_error(store, err, "read outbox");
    sqlite3_reset(s);
    return ret;
}

int
agent_store_outbox_replace(struct agent_store *store, int64_t id, const struct agent_blob *payload,
                           struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_OUTBOX_REPLACE);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_blob(s, 2, payload->data ? (const void *)payload->data : "", (int)payload->size,
                      SQLITE_TRANSIENT);
    return stmt_exec(store, s, err, "replace queued event");
}

/* The single integer a statement returns, or -1. */
static int64_t
stmt_int64(struct agent_store *store, enum stmt_id id)
{
    sqlite3_stmt *s = stmt_get(store, id);
    int64_t n = -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return n;
}

int64_t
agent_store_outbox_count(struct agent_store *store)
{
    return stmt_int64(store, ST_OUTBOX_COUNT);
}

int64_t
agent_store_intent_count(struct agent_store *store)
{
    return stmt_int64(store, ST_INTENT_COUNT);
}

int64_t
agent_store_size_bytes(struct agent_store *store)
{
    return stmt_int64(store, ST_PAGES);
}

int
agent_store_instance_put(struct agent_store *store, const struct agent_instance_rec *r,
                         struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_INSTANCE_PUT);
    sqlite3_bind_text(s, 1, r->uuid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, r->name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, r->tenant_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 4, r->spec.data ? (const void *)r->spec.data : "", (int)r->spec.size,
                      SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 5, r->desired_state, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 6, r->observed_state, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 7, r->task ? r->task : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 8, r->created_ms);
    sqlite3_bind_int64(s, 9, r->updated_ms);
    sqlite3_bind_int64(s, 10, r->uid);
    sqlite3_bind_text(s, 11, r->image_sha256 ? r->image_sha256 : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 12, r->create_request_id ? r->create_request_id : "", -1,
                      SQLITE_TRANSIENT);
    return stmt_exec(store, s, err, "record instance");
}

int
agent_store_instance_delete(struct agent_store *store, const char *uuid, struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_INSTANCE_DELETE);
    sqlite3_bind_text(s, 1, uuid, -1, SQLITE_TRANSIENT);
    return stmt_exec(store, s, err, "remove instance");
}

int
agent_store_instance_load(struct agent_store *store,
                          int (*fn)(const struct agent_instance_rec *rec, void *ctx), void *ctx,
                          struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_INSTANCE_ALL);
    int rc = SQLITE_DONE, ret = 0;
    while (ret == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct agent_instance_rec r = {
            .uuid = (char *)sqlite3_column_text(s, 0),
            .name = (char *)sqlite3_column_text(s, 1),
            .tenant_id = (char *)sqlite3_column_text(s, 2),
            .spec = {.data = (uint8_t *)sqlite3_column_blob(s, 3),
                     .size = (size_t)sqlite3_column_bytes(s, 3)},
            .desired_state = (char *)sqlite3_column_text(s, 4),
            .observed_state = (char *)sqlite3_column_text(s, 5),
            .task = (char *)sqlite3_column_text(s, 6),
            .created_ms = sqlite3_column_int64(s, 7),
            .updated_ms = sqlite3_column_int64(s, 8),
            .uid = sqlite3_column_int64(s, 9),
            .image_sha256 = (char *)sqlite3_column_text(s, 10),
            .create_request_id = (char *)sqlite3_column_text(s, 11),
        };
        ret = fn(&r, ctx);
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = db_error(store, err, "load instances");
    sqlite3_reset(s);
    return ret;
}

int
agent_store_ping(struct agent_store *store, struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_PING);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : db_error(store, err, "ping");
}

int
agent_store_meta_get(struct agent_store *store, const char *key, char **value,
                     struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_META_GET);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *value = column_text(s, 0);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return -ENOENT;
    return db_error(store, err, "read meta");
}

int
agent_store_meta_put(struct agent_store *store, const char *key, const char *value,
                     struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_META_PUT);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_TRANSIENT);
    return stmt_exec(store, s, err, "write meta");
}

const char *
agent_store_id(const struct agent_store *store)
{
    return store->id;
}

/* Runs a statement that binds a uuid and a time (or nothing) and returns no rows. */
static int
exec_uuid(struct agent_store *store, enum stmt_id id, const char *uuid, int64_t ms,
          struct na_error **err, const char *what)
{
    sqlite3_stmt *s = stmt_get(store, id);
    if (uuid)
        sqlite3_bind_text(s, 1, uuid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, uuid ? 2 : 1, ms);
    return stmt_exec(store, s, err, what);
}

/* 1 when the statement finds a row for uuid, 0 when not, or a negative error. */
static int
exists_uuid(struct agent_store *store, enum stmt_id id, const char *uuid, struct na_error **err,
            const char *what)
{
    sqlite3_stmt *s = stmt_get(store, id);
    sqlite3_bind_text(s, 1, uuid, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return db_error(store, err, what);
}

int
agent_store_tombstone_put(struct agent_store *store, const char *uuid, struct na_error **err)
{
    return exec_uuid(store, ST_TOMBSTONE_PUT, uuid, na_now_ms(), err, "record tombstone");
}

int
agent_store_tombstone_has(struct agent_store *store, const char *uuid, struct na_error **err)
{
    return exists_uuid(store, ST_TOMBSTONE_GET, uuid, err, "read tombstone");
}

int
agent_store_tombstone_delete(struct agent_store *store, const char *uuid, struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_TOMBSTONE_DELETE);
    sqlite3_bind_text(s, 1, uuid, -1, SQLITE_TRANSIENT);
    return stmt_exec(store, s, err, "remove tombstone");
}

int
agent_store_tombstone_prune(struct agent_store *store, int64_t before_ms, struct na_error **err)
{
    int ret = exec_uuid(store, ST_TOMBSTONE_PRUNE, NULL, before_ms, err, "prune tombstones");
    return ret < 0 ? ret : sqlite3_changes(store->db);
}

int
agent_store_orphan_release(struct agent_store *store, const char *uuid, struct na_error **err)
{
    return exec_uuid(store, ST_RELEASED_PUT, uuid, na_now_ms(), err, "record released orphan");
}

int
agent_store_orphan_released(struct agent_store *store, const char *uuid, struct na_error **err)
{
    return exists_uuid(store, ST_RELEASED_GET, uuid, err, "read released orphan");
}

int
agent_store_tombstone_list(struct agent_store *store, char (**out)[37], size_t *n,
                           struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_TOMBSTONE_ALL);
    char(*list)[37] = NULL;
    size_t count = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const char *uuid = (const char *)sqlite3_column_text(s, 0);
        if (!uuid || !na_uuid_is_valid(uuid))
            continue;
        list = na_xrealloc(list, (count + 1) * sizeof(*list));
        memcpy(list[count++], uuid, 37);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        free(list);
        return db_error(store, err, "list tombstones");
    }
    *out = list;
    *n = count;
    return 0;
}

int
agent_store_uid_quarantine_put(struct agent_store *store, int64_t uid, int64_t released_ms,
                               bool held, struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_UID_PUT);
    sqlite3_bind_int64(s, 1, uid);
    sqlite3_bind_int64(s, 2, released_ms);
    sqlite3_bind_int(s, 3, held);
    return stmt_exec(store, s, err, "quarantine a uid");
}

int
agent_store_uid_quarantine_delete(struct agent_store *store, int64_t uid, struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_UID_DELETE);
    sqlite3_bind_int64(s, 1, uid);
    return stmt_exec(store, s, err, "release a uid from quarantine");
}

int
agent_store_uid_quarantine_load(struct agent_store *store,
                                int (*fn)(int64_t uid, int64_t released_ms, bool held, void *ctx),
                                void *ctx, struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_UID_ALL);
    int rc = SQLITE_DONE, ret = 0;
    while (ret == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW)
        ret = fn(sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
                 sqlite3_column_int(s, 2) != 0, ctx);
    if (ret == 0 && rc != SQLITE_DONE)
        ret = db_error(store, err, "load the uid quarantine");
    sqlite3_reset(s);
    return ret;
}

int
agent_store_consumer_add(struct agent_store *store, const char *consumer_uuid,
                         struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_CONSUMER_ADD);
    sqlite3_bind_text(s, 1, consumer_uuid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, na_now_ms());
    return stmt_exec(store, s, err, "record placement consumer");
}

int
agent_store_consumer_delete(struct agent_store *store, const char *consumer_uuid,
                            struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_CONSUMER_DELETE);
    sqlite3_bind_text(s, 1, consumer_uuid, -1, SQLITE_TRANSIENT);
    return stmt_exec(store, s, err, "forget placement consumer");
}

int
agent_store_consumer_list(struct agent_store *store, char ***out, size_t *n, struct na_error **err)
{
    sqlite3_stmt *s = stmt_get(store, ST_CONSUMER_ALL);
    char **list = NULL;
    size_t count = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        list = na_xrealloc(list, (count + 1) * sizeof(*list));
        list[count++] = column_text(s, 0);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        for (size_t i = 0; i < count; i++)
            free(list[i]);
        free(list);
        return db_error(store, err, "list placement consumers");
    }
    *out = list;
    *n = count;
    return 0;
}
