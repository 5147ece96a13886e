/* Snapshots of instances: snapshot_create, snapshot_revert and snapshot_delete as jobs of
 * recorded phases (snapshots.c), and what other operations ask of them.
 *
 * Inputs: the request, the instance table, the store's snapshots table
 * (agent/core/store_snapshots.h), libvirt (hypervisor/snapshot.h).
 * Outputs: the snapshots table, written from libvirt's list in the transaction of the job's
 * terminal event; the instance's observed state.
 * Threading: prepare and finish on the loop; the phases' steps in workers.
 */
#ifndef NODEAGENT_AGENT_OPS_SNAPSHOTS_H
#define NODEAGENT_AGENT_OPS_SNAPSHOTS_H

#include "agent/core/agent.h"

#include <jansson.h>

/* Whether the store records a snapshot of instance (on the loop). */
bool agent_instance_has_snapshots(struct agent *a, const char *instance);
/* For operations an instance with snapshots cannot take (migrate, rebuild, resize): 0 when
 * it has none, else HAS_SNAPSHOTS (-EBUSY) saying how many and that `what` is refused. */
int agent_snapshots_refuse(struct agent *a, const char *instance, const char *what,
                           struct na_error **err);

/* The admin API's view of an instance's snapshots, {"instance", "snapshots": [...]}, from
 * "<uuid>" or "<uuid>/<anything>"; NULL when the node has no such instance. */
json_t *agent_snapshots_view(struct agent *a, const char *uuid_arg);

#endif
