/* Tenant networks, the agent's side (network.c): net/ovs started and handed the ports of the
 * instance table and the peers of the peer table as its desired state; a create's NICs
 * checked against what the node already has; guests' MTUs. */
#ifndef NODEAGENT_AGENT_OUTPUTS_NETWORK_H
#define NODEAGENT_AGENT_OUTPUTS_NETWORK_H

#include "agent/core/agent.h"

/* Tenant networks (network.c). */
int agent_net_open(struct agent *a, struct na_error **err);
void agent_net_close(struct agent *a);
/* Hands net/ovs the ports of the instance table; after anything that may change it. */
void agent_net_sync(struct agent *a);
/* Hands net/ovs the peers of the peer table (once it is settled); after anything that
 * changes it.  net/ovs recomputes the tunnels from the peers it has whenever the ports
 * change. */
void agent_net_sync_peers(struct agent *a);
/* Whether spec's NICs may join the node (VNIs, MACs and addresses); a refusal names the field
 * under prefix ("create.spec"). */
int agent_net_check_nics(struct agent *a, const Nodeagent__V1__InstanceSpec *spec,
                         const char *prefix, struct na_error **err);
/* A guest NIC's MTU: the requested one (0: none), at most underlay minus tunnel overhead. */
unsigned agent_nic_mtu(const struct agent_config *cfg, unsigned requested);
void agent_net_health(struct agent *a, struct agent_check *c);

#endif
