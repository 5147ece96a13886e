/* The snapshots table: every snapshot of every instance, as libvirt's snapshot metadata had
 * it when the job that changed it ended (agent/ops/snapshots.c).
 *
 * A snapshot job writes the instance's rows in the transaction of its terminal event, from
 * the list it read from libvirt in its last phase, so after a crash at any step the replayed
 * job leaves the store, libvirt and the overlay's snapshot table in agreement.  An instance's
 * rows go with its record (agent_store_snapshot_replace with none).
 *
 * Threading: like the rest of the store, the main loop only.
 */
#ifndef NODEAGENT_AGENT_STORE_SNAPSHOTS_H
#define NODEAGENT_AGENT_STORE_SNAPSHOTS_H

#include "agent/core/store.h"

#include <stdbool.h>

struct agent_snapshot_rec {
    char *instance;
    char *name;
    char *parent;      /* "" for none */
    char *description; /* "" for none */
    char *state;       /* the guest's state it keeps: "running", "paused", "shutoff" */
    bool memory;       /* holds the guest's memory state */
    bool current;
    uint64_t size_bytes; /* VM state it keeps in the overlay (its snapshot table); 0 unknown */
    int64_t created_ms;
};

void agent_snapshot_recs_free(struct agent_snapshot_rec *recs, size_t n);

/* Replaces every row of instance by recs (n may be 0: none left). */
int agent_store_snapshot_replace(struct agent_store *store, const char *instance,
                                 const struct agent_snapshot_rec *recs, size_t n,
                                 struct na_error **err);
/* The rows of instance, oldest first; the caller frees *out. */
int agent_store_snapshot_list(struct agent_store *store, const char *instance,
                              struct agent_snapshot_rec **out, size_t *n, struct na_error **err);
/* How many snapshots instance has; -1 on error. */
int64_t agent_store_snapshot_count(struct agent_store *store, const char *instance);
/* Bytes of VM state instance's snapshots keep (their size_bytes summed); -1 on error. */
int64_t agent_store_snapshot_bytes(struct agent_store *store, const char *instance);
/* 1 when instance has snapshot name, 0 when not, -1 on error. */
int agent_store_snapshot_has(struct agent_store *store, const char *instance, const char *name);

#endif
