/* The state store's schema: the migrations that lead to it, in order, and the SQL of every
 * statement the store prepares.  The tables (see store.h): meta, intents, outbox, instances,
 * tombstones, orphans_released, uid_quarantine, placement_consumers, security_groups,
 * jobs, snapshots. */
#include "agent/core/store-private.h"

#include <string.h>

/* Each entry moves the schema from version i to i + 1.  Never edit a released entry;
 * append a new one. */
static const char *const store_migrations[] = {
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
    /* 3 -> 4: guest uids released and not yet handed out again (agent/observed/uids.h). */
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
    /* 6 -> 7: the security groups put on this node (nodeagent.v1.SecurityGroup, packed). */
    "CREATE TABLE security_groups ("
    "  id TEXT PRIMARY KEY,"
    "  body BLOB NOT NULL,"
    "  updated_ms INTEGER NOT NULL);",
    /* 7 -> 8: jobs, the recorded phases of an operation (agent/core/store_jobs.h): the phase
     * is written before the step it names is taken, and a restart resumes or rolls back
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
    /* 8 -> 9: the instances' snapshots (agent/core/store_snapshots.h), as libvirt's snapshot
     * metadata had them when the job that changed them ended. */
    "CREATE TABLE snapshots ("
    "  instance_uuid TEXT NOT NULL,"
    "  name TEXT NOT NULL,"
    "  parent TEXT NOT NULL DEFAULT '',"
    "  description TEXT NOT NULL DEFAULT '',"
    "  state TEXT NOT NULL DEFAULT '',"
    "  memory INTEGER NOT NULL DEFAULT 0,"
    "  current INTEGER NOT NULL DEFAULT 0,"
    "  size_bytes INTEGER NOT NULL DEFAULT 0,"
    "  created_ms INTEGER NOT NULL,"
    "  PRIMARY KEY (instance_uuid, name));",
    /* 9 -> 10: the request's signature header as it came (hex; '' when unsigned), which a
     * migrate hands on to the destination with the envelope's bytes. */
    "ALTER TABLE intents ADD COLUMN signature TEXT NOT NULL DEFAULT '';",
};

#define INTENT_COLUMNS                                                                             \
    "seq, request_id, kind, instance_uuid, body_hash, envelope, bus_offset, phase, "               \
    "attempts, accepted_event, result_event, received_ms, updated_ms, signature"

const char *const store_stmt_sql[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_INTENT_GET] = "SELECT " INTENT_COLUMNS " FROM intents WHERE request_id = ?1",
    [ST_INTENT_INSERT] = "INSERT INTO intents (request_id, kind, instance_uuid, body_hash, "
                         "envelope, bus_offset, phase, attempts, accepted_event, "
                         "result_event, received_ms, updated_ms, signature) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?9, ?10, ?10, ?11)",
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
    [ST_SECGROUP_PUT] = "INSERT OR REPLACE INTO security_groups (id, body, updated_ms) "
                        "VALUES (?1, ?2, ?3)",
    [ST_SECGROUP_DELETE] = "DELETE FROM security_groups WHERE id = ?1",
    [ST_SECGROUP_ALL] = "SELECT id, body FROM security_groups ORDER BY id",
    [ST_JOB_INSERT] = "INSERT INTO jobs (" JOB_COLUMNS ") "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    [ST_JOB_GET] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1",
    [ST_JOB_SET_PHASE] = "UPDATE jobs SET phase = ?2, state = ?3, deadline_ms = ?4, "
                         "updated_ms = ?5 WHERE id = ?1",
    [ST_JOB_DELETE] = "DELETE FROM jobs WHERE id = ?1",
    [ST_JOB_ALL] = "SELECT " JOB_COLUMNS " FROM jobs ORDER BY created_ms, rowid",
    [ST_JOB_COUNT] = "SELECT count(*) FROM jobs",
    [ST_SNAPSHOT_DELETE_ALL] = "DELETE FROM snapshots WHERE instance_uuid = ?1",
    [ST_SNAPSHOT_INSERT] =
        "INSERT INTO snapshots (" SNAPSHOT_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    [ST_SNAPSHOT_LIST] = "SELECT " SNAPSHOT_COLUMNS " FROM snapshots WHERE instance_uuid = ?1 "
                         "ORDER BY created_ms, name",
    [ST_SNAPSHOT_COUNT] = "SELECT count(*) FROM snapshots WHERE instance_uuid = ?1",
    [ST_SNAPSHOT_BYTES] =
        "SELECT coalesce(sum(size_bytes), 0) FROM snapshots WHERE instance_uuid = ?1",
    [ST_SNAPSHOT_HAS] = "SELECT 1 FROM snapshots WHERE instance_uuid = ?1 AND name = ?2",
};

int
store_migrate(struct agent_store *store, struct na_error **err)
{
    int version = agent_store_schema_version(store);
    if (version < 0)
        return store_db_error(store, err, "read schema version");
    if ((size_t)version > NA_ARRAY_SIZE(store_migrations))
        return na_error_set(err, NA_CODE_INTERNAL, 0,
                            "state store `%s` has schema version %d; this agent knows up to %zu "
                            "(was it written by a newer agent?)",
                            store->path, version, NA_ARRAY_SIZE(store_migrations));
    for (size_t v = (size_t)version; v < NA_ARRAY_SIZE(store_migrations); v++) {
        cleanup_free char *sql = na_xasprintf(
            "BEGIN IMMEDIATE; %s; PRAGMA user_version = %zu; COMMIT;", store_migrations[v], v + 1);
        if (sqlite3_exec(store->db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            int ret = store_db_error(store, err, "migrate schema");
            sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
            return ret;
        }
        na_log(NA_LOG_INFO, NULL, "state store schema migrated", "path=%s from=%zu to=%zu",
               store->path, v, v + 1);
    }
    return 0;
}