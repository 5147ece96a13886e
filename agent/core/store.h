/* The agent's durable state: SQLite in WAL mode at <state_dir>/state.db.
 *
 * Tables: intents (every request received, its phase and its recorded events; a finished
 * one keeps its body hash and result summary only), outbox (events not yet acknowledged by
 * the bus), instances (spec, desired and observed state), tombstones (instances deleted),
 * orphans_released, uid_quarantine (guest uids released and not yet reusable,
 * observed/uids.h), placement_consumers (whose allocations the agent writes), security_groups
 * (the groups put on this node, ops/secgroups.c), jobs (the recorded phases of operations,
 * core/store_jobs.h), snapshots (core/store_snapshots.h), meta (the store's id, ...).  The
 * schema carries a version (PRAGMA user_version) and is migrated forward at open.
 *
 * Threading: the store belongs to the main loop; no other thread touches it.  Writes that
 * must be atomic together go between agent_store_begin() and agent_store_commit().
 */
#ifndef NODEAGENT_AGENT_STORE_H
#define NODEAGENT_AGENT_STORE_H

#include "common/common.h"

struct agent_store;

#define AGENT_INTENT_PHASES(X)                                                                     \
    X(ACCEPTED, "accepted")                                                                        \
    X(RUNNING, "running")                                                                          \
    X(DONE, "done")                                                                                \
    X(FAILED, "failed")

enum agent_intent_phase {
#define X(id, name) AGENT_INTENT_##id,
    AGENT_INTENT_PHASES(X)
#undef X
};

const char *agent_intent_phase_name(enum agent_intent_phase phase);

struct agent_blob {
    uint8_t *data;
    size_t size;
};

struct agent_intent {
    int64_t seq;
    char *request_id;
    char *kind;
    char *instance_uuid;
    char *body_hash;
    struct agent_blob envelope; /* empty once the intent is finished */
    int64_t bus_offset;
    enum agent_intent_phase phase;
    int attempts;
    struct agent_blob accepted_event; /* the ACCEPTED event as published, may be empty */
    struct agent_blob result_event;   /* the terminal event's summary, may be empty */
    int64_t received_ms;
    int64_t updated_ms;
    char *signature; /* the nodeagent-signature header as received (hex), "" or NULL: none */
};

void agent_intent_free(struct agent_intent *intent);

int agent_store_open(const char *path, struct agent_store **out, struct na_error **err);
void agent_store_close(struct agent_store *store);
int agent_store_schema_version(struct agent_store *store);

int agent_store_begin(struct agent_store *store, struct na_error **err);
int agent_store_commit(struct agent_store *store, struct na_error **err);
void agent_store_rollback(struct agent_store *store);

/* Returns 0 and *out, or -ENOENT when no intent has that request id. */
int agent_store_intent_get(struct agent_store *store, const char *request_id,
                           struct agent_intent **out, struct na_error **err);
int agent_store_intent_insert(struct agent_store *store, const struct agent_intent *intent,
                              struct na_error **err);
/* Marks the intent running and counts the attempt. */
int agent_store_intent_start(struct agent_store *store, const char *request_id,
                             struct na_error **err);
/* Records the terminal phase (DONE or FAILED) and the terminal event's summary, and drops
 * the envelope: a finished intent is only compared (body hash) and answered again. */
int agent_store_intent_finish(struct agent_store *store, const char *request_id,
                              enum agent_intent_phase phase, const struct agent_blob *event,
                              struct na_error **err);
/* Calls fn for each intent still ACCEPTED or RUNNING, oldest first. */
int agent_store_intent_each_open(struct agent_store *store,
                                 int (*fn)(struct agent_intent *intent, void *ctx), void *ctx,
                                 struct na_error **err);
/* Deletes finished intents last updated before before_ms; returns how many. */
int agent_store_intent_prune(struct agent_store *store, int64_t before_ms, struct na_error **err);

int agent_store_outbox_add(struct agent_store *store, const char *topic, const char *key,
                           const struct agent_blob *payload, int64_t *id, struct na_error **err);
int agent_store_outbox_delete(struct agent_store *store, int64_t id, struct na_error **err);
/* Calls fn for up to limit outbox rows with id > after_id, in id order. */
int agent_store_outbox_each(struct agent_store *store, int64_t after_id, int limit,
                            int (*fn)(int64_t id, const char *topic, const char *key,
                                      const struct agent_blob *payload, void *ctx),
                            void *ctx, struct na_error **err);
/* Replaces the payload of row id (an event the bus refused for good, by a small one). */
int agent_store_outbox_replace(struct agent_store *store, int64_t id,
                               const struct agent_blob *payload, struct na_error **err);
int64_t agent_store_outbox_count(struct agent_store *store);
/* Intents recorded, open and finished; -1 on error. */
int64_t agent_store_intent_count(struct agent_store *store);
/* The database file's size in bytes (pages x page size, free pages included); -1 on
 * error. */
int64_t agent_store_size_bytes(struct agent_store *store);

/* An instance as stored; strings are borrowed (valid during the call that passes them). */
struct agent_instance_rec {
    char *uuid;
    char *name;
    char *tenant_id;
    struct agent_blob spec; /* nodeagent.v1.InstanceSpec, packed */
    char *desired_state;
    char *observed_state;
    char *task;
    int64_t uid;
    char *image_sha256;
    char *create_request_id;
    int64_t created_ms;
    int64_t updated_ms;
};

/* Inserts or replaces the instance with r->uuid. */
int agent_store_instance_put(struct agent_store *store, const struct agent_instance_rec *r,
                             struct na_error **err);
int agent_store_instance_delete(struct agent_store *store, const char *uuid, struct na_error **err);
/* Calls fn for every instance, oldest first. */
int agent_store_instance_load(struct agent_store *store,
                              int (*fn)(const struct agent_instance_rec *rec, void *ctx), void *ctx,
                              struct na_error **err);

/* The meta table: small named values of the node (its Placement provider uuid).
 * meta_get returns 0 and a new *value, or -ENOENT. */
int agent_store_meta_get(struct agent_store *store, const char *key, char **value,
                         struct na_error **err);
int agent_store_meta_put(struct agent_store *store, const char *key, const char *value,
                         struct na_error **err);

/* The store's id: a random uuid made when the store was created (meta store_id).  Every
 * domain the agent defines carries it, so that a domain recorded by another store (a lost,
 * replaced or restored state.db, another agent) is never taken for one of this store's. */
const char *agent_store_id(const struct agent_store *store);

/* Tombstones: the instances this store deleted, recorded before a delete undefines
 * anything; only what carries a tombstone may be removed by reconciliation.
 * tombstone_has returns 1, 0, or a negative error. */
int agent_store_tombstone_put(struct agent_store *store, const char *uuid, struct na_error **err);
int agent_store_tombstone_has(struct agent_store *store, const char *uuid, struct na_error **err);
int agent_store_tombstone_delete(struct agent_store *store, const char *uuid,
                                 struct na_error **err);
/* Every tombstone's uuid; the caller frees *out. */
int agent_store_tombstone_list(struct agent_store *store, char (**out)[37], size_t *n,
                               struct na_error **err);
/* Drops tombstones older than before_ms; returns how many. */
int agent_store_tombstone_prune(struct agent_store *store, int64_t before_ms,
                                struct na_error **err);

/* Orphans the operator released: they stay orphans (reported, untouched) but no longer hold
 * the agent.  orphan_released returns 1, 0, or a negative error. */
int agent_store_orphan_release(struct agent_store *store, const char *uuid, struct na_error **err);
int agent_store_orphan_released(struct agent_store *store, const char *uuid, struct na_error **err);

/* The uid quarantine: a guest uid released at released_ms; held when its instance could
 * not be cleaned up (never reused without an operator). */
int agent_store_uid_quarantine_put(struct agent_store *store, int64_t uid, int64_t released_ms,
                                   bool held, struct na_error **err);
int agent_store_uid_quarantine_delete(struct agent_store *store, int64_t uid,
                                      struct na_error **err);
/* Calls fn for every quarantined uid, released longest ago first. */
int agent_store_uid_quarantine_load(struct agent_store *store,
                                    int (*fn)(int64_t uid, int64_t released_ms, bool held,
                                              void *ctx),
                                    void *ctx, struct na_error **err);

/* The Placement consumers whose allocations the agent writes (recorded before it first
 * writes one), so that it removes only what it wrote.  consumer_list returns a new array
 * of new strings. */
int agent_store_consumer_add(struct agent_store *store, const char *consumer_uuid,
                             struct na_error **err);
int agent_store_consumer_delete(struct agent_store *store, const char *consumer_uuid,
                                struct na_error **err);
int agent_store_consumer_list(struct agent_store *store, char ***out, size_t *n,
                              struct na_error **err);

/* Security groups put on this node: id and the packed nodeagent.v1.SecurityGroup.  load
 * calls fn for each, by id; body is borrowed for the call. */
int agent_store_secgroup_put(struct agent_store *store, const char *id,
                             const struct agent_blob *body, struct na_error **err);
int agent_store_secgroup_delete(struct agent_store *store, const char *id, struct na_error **err);
int agent_store_secgroup_load(struct agent_store *store,
                              int (*fn)(const char *id, const struct agent_blob *body, void *ctx),
                              void *ctx, struct na_error **err);

/* A cheap liveness probe for /healthz. */
int agent_store_ping(struct agent_store *store, struct na_error **err);

#endif
