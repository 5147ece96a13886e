/* The state store's records besides intents and the outbox: instances, meta, tombstones and
 * released orphans, guest uids in quarantine, and the Placement consumers the agent wrote. */
#include "agent/core/store-private.h"

#include <errno.h>
#include <string.h>

int
agent_store_instance_put(struct agent_store *store, const struct agent_instance_rec *r,
                         struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_INSTANCE_PUT);
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
    return store_stmt_exec(store, s, err, "record instance");
}

int
agent_store_instance_delete(struct agent_store *store, const char *uuid, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_INSTANCE_DELETE);
    sqlite3_bind_text(s, 1, uuid, -1, SQLITE_TRANSIENT);
    return store_stmt_exec(store, s, err, "remove instance");
}

int
agent_store_instance_load(struct agent_store *store,
                          int (*fn)(const struct agent_instance_rec *rec, void *ctx), void *ctx,
                          struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_INSTANCE_ALL);
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
        ret = store_db_error(store, err, "load instances");
    sqlite3_reset(s);
    return ret;
}

int
agent_store_ping(struct agent_store *store, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_PING);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : store_db_error(store, err, "ping");
}

int
agent_store_meta_get(struct agent_store *store, const char *key, char **value,
                     struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_META_GET);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *value = store_column_text(s, 0);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 0;
    if (rc == SQLITE_DONE)
        return -ENOENT;
    return store_db_error(store, err, "read meta");
}

int
agent_store_meta_put(struct agent_store *store, const char *key, const char *value,
                     struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_META_PUT);
    sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 2, value, -1, SQLITE_TRANSIENT);
    return store_stmt_exec(store, s, err, "write meta");
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
    sqlite3_stmt *s = store_stmt_get(store, id);
    if (uuid)
        sqlite3_bind_text(s, 1, uuid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, uuid ? 2 : 1, ms);
    return store_stmt_exec(store, s, err, what);
}

/* 1 when the statement finds a row for uuid, 0 when not, or a negative error. */
static int
exists_uuid(struct agent_store *store, enum stmt_id id, const char *uuid, struct na_error **err,
            const char *what)
{
    sqlite3_stmt *s = store_stmt_get(store, id);
    sqlite3_bind_text(s, 1, uuid, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return store_db_error(store, err, what);
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
    sqlite3_stmt *s = store_stmt_get(store, ST_TOMBSTONE_DELETE);
    sqlite3_bind_text(s, 1, uuid, -1, SQLITE_TRANSIENT);
    return store_stmt_exec(store, s, err, "remove tombstone");
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
    sqlite3_stmt *s = store_stmt_get(store, ST_TOMBSTONE_ALL);
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
        return store_db_error(store, err, "list tombstones");
    }
    *out = list;
    *n = count;
    return 0;
}

int
agent_store_uid_quarantine_put(struct agent_store *store, int64_t uid, int64_t released_ms,
                               bool held, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_UID_PUT);
    sqlite3_bind_int64(s, 1, uid);
    sqlite3_bind_int64(s, 2, released_ms);
    sqlite3_bind_int(s, 3, held);
    return store_stmt_exec(store, s, err, "quarantine a uid");
}

int
agent_store_uid_quarantine_delete(struct agent_store *store, int64_t uid, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_UID_DELETE);
    sqlite3_bind_int64(s, 1, uid);
    return store_stmt_exec(store, s, err, "release a uid from quarantine");
}

int
agent_store_uid_quarantine_load(struct agent_store *store,
                                int (*fn)(int64_t uid, int64_t released_ms, bool held, void *ctx),
                                void *ctx, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_UID_ALL);
    int rc = SQLITE_DONE, ret = 0;
    while (ret == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW)
        ret = fn(sqlite3_column_int64(s, 0), sqlite3_column_int64(s, 1),
                 sqlite3_column_int(s, 2) != 0, ctx);
    if (ret == 0 && rc != SQLITE_DONE)
        ret = store_db_error(store, err, "load the uid quarantine");
    sqlite3_reset(s);
    return ret;
}

int
agent_store_consumer_add(struct agent_store *store, const char *consumer_uuid,
                         struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_CONSUMER_ADD);
    sqlite3_bind_text(s, 1, consumer_uuid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 2, na_now_ms());
    return store_stmt_exec(store, s, err, "record placement consumer");
}

int
agent_store_consumer_delete(struct agent_store *store, const char *consumer_uuid,
                            struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_CONSUMER_DELETE);
    sqlite3_bind_text(s, 1, consumer_uuid, -1, SQLITE_TRANSIENT);
    return store_stmt_exec(store, s, err, "forget placement consumer");
}

int
agent_store_consumer_list(struct agent_store *store, char ***out, size_t *n, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_CONSUMER_ALL);
    char **list = NULL;
    size_t count = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        list = na_xrealloc(list, (count + 1) * sizeof(*list));
        list[count++] = store_column_text(s, 0);
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        for (size_t i = 0; i < count; i++)
            free(list[i]);
        free(list);
        return store_db_error(store, err, "list placement consumers");
    }
    *out = list;
    *n = count;
    return 0;
}

int
agent_store_secgroup_put(struct agent_store *store, const char *id, const struct agent_blob *body,
                         struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_SECGROUP_PUT);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 2, body->data ? (const void *)body->data : "", (int)body->size,
                      SQLITE_TRANSIENT);
    sqlite3_bind_int64(s, 3, na_now_ms());
    return store_stmt_exec(store, s, err, "record security group");
}

int
agent_store_secgroup_delete(struct agent_store *store, const char *id, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_SECGROUP_DELETE);
    sqlite3_bind_text(s, 1, id, -1, SQLITE_TRANSIENT);
    return store_stmt_exec(store, s, err, "remove security group");
}

int
agent_store_secgroup_load(struct agent_store *store,
                          int (*fn)(const char *id, const struct agent_blob *body, void *ctx),
                          void *ctx, struct na_error **err)
{
    sqlite3_stmt *s = store_stmt_get(store, ST_SECGROUP_ALL);
    int rc = SQLITE_DONE, ret = 0;
    while (ret == 0 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        struct agent_blob body = {(uint8_t *)sqlite3_column_blob(s, 1),
                                  (size_t)sqlite3_column_bytes(s, 1)};
        ret = fn((const char *)sqlite3_column_text(s, 0), &body, ctx);
    }
    if (ret == 0 && rc != SQLITE_DONE)
        ret = store_db_error(store, err, "load security groups");
    sqlite3_reset(s);
    return ret;
}
