/* Orphans and the hold: what looks like an instance of this node but is not provably one of
 * the store's, and the agent's refusal to mutate anything while the store does not match
 * libvirt.
 *
 * Reconciliation (reconcile.c) finds orphans on every pass and hands the whole list here
 * (agent_orphans_update): a domain with our metadata namespace whose uuid the store has no
 * record of (and no tombstone with our node and store id), or a directory under
 * <state_dir>/instances with neither a record nor a domain.  Nothing here destroys anything
 * by itself: each orphan is reported once (an ORPHAN event, a log line), counted
 * (nodeagent_orphans), listed (GET /v1/orphans) and left alone until an operator purges it
 * (nodectl purge), releases it (nodectl orphans --release) or adopts it (nodectl adopt:
 * its domain, with the spec its metadata carries, becomes an instance of this node again,
 * without a restart of the guest).
 *
 * The hold: while an unreleased orphan has a domain tagged with this node id (or with no
 * owner at all), the store does not match libvirt (a lost, emptied or restored state.db),
 * and the agent consumes no request and replays no intent: requests wait on the bus.  Until
 * the first comparison with libvirt is made (or libvirt is found down), the agent holds too.
 *
 * Main loop only.
 */
#ifndef NODEAGENT_AGENT_ORPHANS_H
#define NODEAGENT_AGENT_ORPHANS_H

#include "common/common.h"
#include "hypervisor/hypervisor.h"

#include <jansson.h>

struct agent;

/* Why something is an orphan: X(ID, name). */
#define AGENT_ORPHAN_WHYS(X)                                                                       \
    X(NO_RECORD, "no_record")                   /* our node and store id, no record */             \
    X(RECORD_UNDECODABLE, "record_undecodable") /* the store's record does not decode */           \
    X(NO_OWNER, "no_owner")                     /* no node/store id: an older agent's domain */    \
    X(OTHER_NODE, "other_node")                 /* another node id */                              \
    X(OTHER_STORE, "other_store")               /* this node id, another store id */               \
    X(DIR_ONLY, "dir_only")                     /* a directory with no domain and no record */

enum agent_orphan_why {
#define X(id, name) AGENT_ORPHAN_##id,
    AGENT_ORPHAN_WHYS(X)
#undef X
};

const char *agent_orphan_why_name(enum agent_orphan_why why);

struct agent_orphan {
    char uuid[37];
    char *name;      /* from the domain's metadata; NULL when unknown */
    char *tenant_id; /* idem */
    char *node_id;   /* the domain's owner; NULL when none */
    char *store_id;
    bool has_domain;
    bool has_dir;
    enum hv_power power;
    enum agent_orphan_why why;
    /* The domain's instance spec (packed, unchecked) and its guest's uid (static DAC label),
     * from its metadata: what an adoption records; NULL and -1 when it has none. */
    uint8_t *spec;
    size_t spec_size;
    int64_t uid;
    /* Kept from pass to pass. */
    bool reported;
    bool purging;
    char *purge_error; /* the last purge's failure, or NULL */
    bool adopting;
    char *adopt_error; /* the last adoption's failure in its lane, or NULL */
};

struct agent_orphans {
    struct agent_orphan **items;
    size_t n;
    bool checked; /* the store has been compared with libvirt once (or libvirt was down) */
    bool holding;
};

void agent_orphan_free(struct agent_orphan *o);
void agent_orphans_clear(struct agent_orphans *t);

/* Replaces the table with found (taking ownership of its entries and of found), reports
 * the new ones and re-evaluates the hold.  Also marks the store checked. */
void agent_orphans_update(struct agent *a, struct agent_orphan **found, size_t n);
/* The store could not be compared with libvirt (libvirt down at start, listing failed):
 * the agent proceeds as if it matched until a comparison says otherwise. */
void agent_orphans_unchecked(struct agent *a);
/* Whether the agent holds, and why (for /healthz). */
bool agent_orphans_holding(struct agent *a, char *why, size_t why_size);
/* Whether the orphans hold requests: the store not yet compared with libvirt, or orphans of
 * this node neither purged nor released (agent_gate_update() reads it). */
bool agent_orphans_gate(const struct agent *a);

/* GET /v1/orphans. */
json_t *agent_orphans_view(struct agent *a);
/* POST /v1/orphans/<uuid>/purge: undefines the orphan's domain and removes its directory,
 * in the uuid's lane.  -ENOENT when uuid is not a current orphan, -EBUSY when a purge
 * runs. */
int agent_orphans_purge(struct agent *a, const char *uuid, struct na_error **err);
/* POST /v1/orphans/<uuid>/adopt: makes a current orphan's domain an instance of this node
 * again.  Checked here, at once: the orphan has a domain owned by this node or by none,
 * whose metadata carries a spec that decodes, passes a create's validation and names the
 * uuid, and a guest uid; no instance has its uuid, name (in its tenant), uid or ports; it
 * fits the node's capacity.  -ENOENT when uuid is not a current orphan; another negative
 * value with a message saying why for a refusal.  Then, in the uuid's lane, the domain's
 * owner becomes this node and store (the guest keeps running) and, back on the loop, the
 * instance is recorded with the state libvirt reports (STATE_CHANGED); the orphan leaves
 * the table and the hold is re-evaluated.  A failure there is the orphan's adopt_error. */
int agent_orphans_adopt(struct agent *a, const char *uuid, struct na_error **err);
/* POST /v1/orphans/release: every current orphan no longer holds the agent (recorded in
 * the store).  Returns how many were released. */
int agent_orphans_release(struct agent *a, struct na_error **err);

#endif
