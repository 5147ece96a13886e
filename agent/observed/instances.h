/* The instance table: every instance on this node, owned by the main loop, mirrored in the
 * state store (agent_instance_save() inside the caller's transaction). */
#ifndef NODEAGENT_AGENT_INSTANCES_H
#define NODEAGENT_AGENT_INSTANCES_H

#include "agent/core/store.h"
#include "common/common.h"
#include "nodeagent.pb-c.h"

/* What an instance holds of the node: Placement's VCPU, MEMORY_MB and DISK_GB. */
struct agent_claim {
    uint64_t vcpus;
    uint64_t memory_mb;
    uint64_t disk_gb;
};

struct agent_instance {
    char uuid[37];
    Nodeagent__V1__InstanceSpec *spec; /* owned; name, tenant and flavor live here */
    Nodeagent__V1__InstanceState desired;
    Nodeagent__V1__InstanceState observed;
    const char *task;   /* the kind of the operation running on it, or NULL */
    int64_t uid;        /* its QEMU's uid, -1 until allocated */
    char *image_sha256; /* its base image in the cache */
    char *create_request_id;
    int64_t created_ms;
    int64_t updated_ms;
    /* While a resize runs: the new flavor's amounts (the instance holds the larger of old
     * and new of each); all zero otherwise.  Not stored: a resize interrupted by a crash
     * runs again from prepare(), which sets it again. */
    struct agent_claim resizing_to;
    /* DISK_GB its snapshots keep in its overlay (the VM states of the store's snapshots
     * rows, rounded up to GiB as a whole), added to its claim; derived, not stored. */
    uint64_t snapshot_gb;
    struct agent_instances *table; /* the table it is in, told of every change saved */
};

/* The instance's claim: its flavor, or during a resize the larger of each amount; its
 * snapshots' DISK_GB on top. */
void agent_instance_claim(const struct agent_instance *inst, struct agent_claim *out);
/* DISK_GB for bytes of snapshots: rounded up to whole GiB. */
uint64_t agent_snapshot_gb(uint64_t bytes);

struct agent_instances {
    struct agent_instance **items;
    size_t n, cap;
    /* Stored records whose spec did not decode at load: not instances, but their uuids
     * are the store's, and reconciliation reports their domains as orphans saying so. */
    char (*undecodable)[37];
    size_t n_undecodable;
    /* Told after every change (an instance added, removed or saved, or touched): what is
     * derived from the table recomputes from it (agent/outputs/outputs.c). */
    void (*on_change)(void *ctx);
    void *on_change_ctx;
};

/* Calls fn(ctx) after every change of the table from now on. */
void agent_instances_watch(struct agent_instances *t, void (*fn)(void *ctx), void *ctx);
/* Tells the table's watcher that inst changed in a way its record does not show (a resize's
 * claim while it runs). */
void agent_instance_touch(struct agent_instance *inst);

/* "RUNNING", "STOPPED", ... (the enum's name without its prefix). */
const char *agent_state_name(Nodeagent__V1__InstanceState state);
Nodeagent__V1__InstanceState agent_state_parse(const char *name);

struct agent_instance *agent_instances_find(const struct agent_instances *t, const char *uuid);
struct agent_instance *agent_instances_find_name(const struct agent_instances *t,
                                                 const char *tenant_id, const char *name);
bool agent_instances_undecodable(const struct agent_instances *t, const char *uuid);
/* Takes ownership of inst. */
void agent_instances_add(struct agent_instances *t, struct agent_instance *inst);
/* Removes and frees it. */
void agent_instances_remove(struct agent_instances *t, const char *uuid);
void agent_instances_clear(struct agent_instances *t);
void agent_instance_free(struct agent_instance *inst);

/* A deep copy, owned by the caller (free with nodeagent__v1__instance_spec__free_unpacked). */
Nodeagent__V1__InstanceSpec *agent_spec_copy(const Nodeagent__V1__InstanceSpec *spec);

int agent_instances_load(struct agent_instances *t, struct agent_store *store,
                         struct na_error **err);
int agent_instance_save(struct agent_store *store, struct agent_instance *inst,
                        struct na_error **err);

#endif
