/* The outputs room: what the node tells others, derived from plain inputs.
 *
 * Job: capacity reports to the bus and to Placement (capacity.h), this node's announcement
 * and the peer table (peers.h), and the OVS desired state of its ports and tunnels
 * (network.c) are recomputed whenever the instance table or the peer table changes
 * (outputs.c), never called by hand after an operation.
 * Inputs: the instance table, the peer table, the host's inventory.
 * Outputs: CapacityReport and NodeAnnouncement messages, Placement's provider and
 * allocations, br-int's flows and ports.
 * Threading: the loop; Placement in a worker; OVS in net/ovs's own thread.
 */
#ifndef NODEAGENT_AGENT_OUTPUTS_OUTPUTS_H
#define NODEAGENT_AGENT_OUTPUTS_OUTPUTS_H

#include "agent/core/agent.h"

/* The derived outputs follow the instance table (outputs/outputs.c). */
void agent_outputs_open(struct agent *a);
void agent_outputs_close(struct agent *a);

#endif
