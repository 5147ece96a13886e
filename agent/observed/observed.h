/* The observed-state room: what the node really has, kept true in the instance table.
 *
 * Job: libvirt's lifecycle events and connection changes keep each instance's observed state
 * current; a periodic reconciliation compares libvirt's domains and the instance
 * directories with the table, finishes recorded deletes, and reports anything else that
 * looks like ours as an orphan (orphans.h); released guest uids wait in quarantine (uids.h);
 * cached images nothing uses are evicted.
 * Inputs: libvirt (events; domain and directory listings in a worker), the instance table,
 * the store's tombstones.
 * Outputs: observed states and STATE_CHANGED events, orphans and the hold, freed uids and
 * images.
 * Threading: the loop; listings, clean-ups, scans and evictions in workers with plain inputs.
 */
#ifndef NODEAGENT_AGENT_OBSERVED_OBSERVED_H
#define NODEAGENT_AGENT_OBSERVED_OBSERVED_H

#include "agent/core/agent.h"

/* reconcile.c: compares libvirt's domains and the instance directories with the table. */
void agent_reconcile(struct agent *a);
/* Removes cached images that nothing uses (agent/observed/eviction.c), in a worker. */
void agent_evict_images(struct agent *a);

/* hvevents.c: libvirt's lifecycle events and connection changes, on the loop. */
void agent_hv_on_event(void *agent, const struct hv_event *ev);
void agent_hv_on_connection(void *agent, bool up, const char *detail);
/* Records a change of an instance's observed state and publishes STATE_CHANGED. */
void agent_instance_observed(struct agent *a, struct agent_instance *inst,
                             Nodeagent__V1__InstanceState state, const char *why);

/* A domain's power state as an instance state (instances.c). */
Nodeagent__V1__InstanceState agent_state_from_power(enum hv_power power);

#endif
