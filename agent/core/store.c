#include "agent/core/store-private.h"

#include <errno.h>
#include <sqlite3.h>
#include <string.h>

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

int
store_db_error(struct agent_store *store, struct na_error **err, const char *what)
{
    return na_error_set(err, NA_CODE_INTERNAL, EIO, "state store `%s`: %s: %s", store->path, what,
                        sqlite3_errmsg(store->db));
}

/* Resets a statement for use; statements are cached for the store's lifetime. */
sqlite3_stmt *
store_stmt_get(struct agent_store *store, enum stmt_id id)
{
    sqlite3_stmt *s = store->stmt[id];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Runs a statement that returns no rows. */
int
store_stmt_exec(struct agent_store *store, sqlite3_stmt *s, struct na_error **err, const char *what)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc != SQLITE_DONE)
        return store_db_error(store, err, what);
    return 0;
}

void
store_bind_blob(sqlite3_stmt *s, int idx, const struct agent_blob *b)
{
    if (b && b->data)
        sqlite3_bind_blob(s, idx, b->data, (int)b->size, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(s, idx);
}

void
store_column_blob(sqlite3_stmt *s, int col, struct agent_blob *out)
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

char *
store_column_text(sqlite3_stmt *s, int col)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    return na_xstrdup(t ? (const char *)t : "");
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
        ret = store_db_error(store, err, "open");
        goto fail;
    }
    sqlite3_busy_timeout(store->db, 5000);
    /* WAL with synchronous=FULL: a commit survives kill -9 and power loss, which the
     * intent log promises before a bus offset is committed. */
    if (sqlite3_exec(store->db,
                     "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
                     "PRAGMA foreign_keys = ON;",
                     NULL, NULL, NULL) != SQLITE_OK) {
        ret = store_db_error(store, err, "set WAL mode");
        goto fail;
    }
    if ((ret = store_migrate(store, err)) < 0)
        goto fail;
    for (int i = 0; i < ST__COUNT; i++) {
        if (sqlite3_prepare_v3(store->db, store_stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &store->stmt[i], NULL) != SQLITE_OK) {
            ret = store_db_error(store, err, "prepare statement");
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
    return store_stmt_exec(store, store_stmt_get(store, ST_BEGIN), err, "begin transaction");
}

int
agent_store_commit(struct agent_store *store, struct na_error **err)
{
    int ret = store_stmt_exec(store, store_stmt_get(store, ST_COMMIT), err, "commit");
    if (ret < 0)
        agent_store_rollback(store);
    return ret;
}

void
agent_store_rollback(struct agent_store *store)
{
    if (!sqlite3_get_autocommit(store->db))
        store_stmt_exec(store, store_stmt_get(store, ST_ROLLBACK), NULL, "rollback");
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
    free(intent->signature);
    free(intent);
}

static struct agent_intent *
intent_from_row(sqlite3_stmt *s)
{
    struct agent_intent *in = na_xcalloc(1, sizeof(*in));
    in->seq = sqlite3_column_int64(s, 0);
    in->request_id = store_column_text(s, 1);
    in->kind = store_column_text(s, 2);
    in->instance_uuid = store_column_text(s, 3);
    in->body_hash = store_column_text(s, 4);
    store_column_blob(s, 5, &in->envelope);
    in->bus_offset = sqlite3_column_int64(s, 6);
    if (phase_parse((const char *)sqlite3_column_text(s, 7), &in->phase) < 0)
        in->phase = AGENT_INTENT_FAILED;
    in->attempts = sqlite3_column_int(s, 8);
    store_column_blob(s, 9, &in->accepted_event);
    store_column_blob(s, 10, &in->result_event);
    in->received_ms = sqlite3_column_int64(s, 11);
    in->updated_ms = sqlite3_column_int64(s, 12);
    in->signature = store_column_text(s, 13);
    return in;
}

int
agent_store_intent_get(struct agent_store *store, const char *request_id, struct agent_intent **out,
                       struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_INTENT_GET);
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
    return store_db_error(store, err, "read intent");
}

int
agent_store_intent_insert(struct agent_store *store, const struct agent_intent *in,
                          struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_INTENT_INSERT);
    sqlite3_bind_text(s, 1, in->request_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, in->kind, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, in->instance_uuid ? in->instance_uuid : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 4, in->body_hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 5, in->envelope.data ? (const void *)in->envelope.data : "",
                      (int)in->envelope.size, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 6, in->bus_offset);
    sqlite3_bind_text(s, 7, agent_intent_phase_name(in->phase), -1, SQLITE_STATIC);
    store_bind_blob(s, 8, &in->accepted_event);
    store_bind_blob(s, 9, &in->result_event);
    sqlite3_bind_int64(s, 10, in->received_ms);
    sqlite3_bind_text(s, 11, in->signature ? in->signature : "", -1, SQLITE_TRANSIENT);
    return store_stmt_exec(store, s, err, "record intent");
}

int
agent_store_intent_start(struct agent_store *store, const char *request_id, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_INTENT_START);
    sqlite3_bind_text(s, 1, request_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, na_now_ms());
    return store_stmt_exec(store, s, err, "mark intent running");
}

int
agent_store_intent_finish(struct agent_store *store, const char *request_id,
                          enum agent_intent_phase phase, const struct agent_blob *event,
                          struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_INTENT_FINISH);
    sqlite3_bind_text(s, 1, request_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, agent_intent_phase_name(phase), -1, SQLITE_STATIC);
    store_bind_blob(s, 3, event);
    sqlite3_bind_int64(s, 4, na_now_ms());
    return store_stmt_exec(store, s, err, "record intent result");
}

int
agent_store_intent_each_open(struct agent_store *store,
                             int (*fn)(struct agent_intent *intent, void *ctx), void *ctx,
                             struct na_error **err)
{
    /* Collect first: fn may write to the store, which would disturb a live cursor. */
    sqlite3_stmt *s = store_stmt_get(store, ST_INTENT_OPEN);
    struct agent_intent **list = NULL;
    size_t n = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        list = na_xrealloc(list, (n + 1) * sizeof(*list));
        list[n++] = intent_from_row(s);
    }
    sqlite3_reset(s);
    int ret = rc == SQLITE_DONE ? 0 : store_db_error(store, err, "list open intents");
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
    sqlite3_stmt *s = store_stmt_get(store, ST_INTENT_PRUNE);
    sqlite3_bind_int64(s, 1, before_ms);
    int ret = store_stmt_exec(store, s, err, "prune intents");
    return ret < 0 ? ret : sqlite3_changes(store->db);
}

int
agent_store_outbox_add(struct agent_store *store, const char *topic, const char *key,
                       const struct agent_blob *payload, int64_t *id, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_OUTBOX_ADD);
    sqlite3_bind_text(s, 1, topic, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, key ? key : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 3, payload->data ? (const void *)payload->data : "", (int)payload->size,
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 4, na_now_ms());
    int ret = store_stmt_exec(store, s, err, "queue event");
    if (ret == 0 && id)
        *id = sqlite3_last_insert_rowid(store->db);
    return ret;
}

int
agent_store_outbox_delete(struct agent_store *store, int64_t id, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_OUTBOX_DELETE);
    sqlite3_bind_int64(s, 1, id);
    return store_stmt_exec(store, s, err, "remove delivered event");
}

int
agent_store_outbox_each(struct agent_store *store, int64_t after_id, int limit,
                        int (*fn)(int64_t id, const char *topic, const char *key,
                                  const struct agent_blob *payload, void *ctx),
                        void *ctx, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_OUTBOX_EACH);
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
        ret = store_db_error(store, err, "read outbox");
    sqlite3_reset(s);
    return ret;
}

int
agent_store_outbox_replace(struct agent_store *store, int64_t id, const struct agent_blob *payload,
                           struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_OUTBOX_REPLACE);
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_blob(s, 2, payload->data ? (const void *)payload->data : "", (int)payload->size,
                      SQLITE_TRANSIENT);
    return store_stmt_exec(store, s, err, "replace queued event");
}

/* The single integer a statement returns, or -1. */
int64_t
store_stmt_int64(struct agent_store *store, enum stmt_id id)
{
    sqlite3_stmt *s = store_stmt_get(store, id);
    int64_t n = -1;
    if (sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    sqlite3_reset(s);
    return n;
}

int64_t
agent_store_outbox_count(struct agent_store *store)
{
    return store_stmt_int64(store, ST_OUTBOX_COUNT);
}

int64_t
agent_store_intent_count(struct agent_store *store)
{
    return store_stmt_int64(store, ST_INTENT_COUNT);
}

int64_t
agent_store_size_bytes(struct agent_store *store)
{
    return store_stmt_int64(store, ST_PAGES);
}
