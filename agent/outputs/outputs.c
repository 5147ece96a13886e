/* The derived outputs: what the node tells others about itself follows the instance table.
 *
 * Job: when the instance table changes (an instance added, removed, saved or touched) or the
 * security groups do, the capacity report and Placement (capacity.c), this node's
 * announcement of its networks (peers.c) and the OVS desired state of its ports and groups
 * (network.c) are recomputed from the tables, once per burst of changes: the tables' watchers
 * only arm a zero-delay timer.  The tunnels follow the peer table the same way.
 * Inputs: the instance table, the security groups and the peer table.
 * Outputs: capacity reports, announcements, OVS flows and ports.
 * Threading: the loop only; each output hands its blocking part to its own worker or thread.
 */
#include "agent/outputs/outputs.h"
#include "agent/core/agent.h"
#include "agent/outputs/capacity.h"
#include "agent/outputs/peers.h"
#include "agent/outputs/network.h"
#include "agent/ops/secgroups.h"

static void
on_outputs_timer(uv_timer_t *t)
{
    struct agent *a = t->data;
    agent_capacity_changed(a);
    agent_peers_changed(a);
    agent_net_sync(a);
}

static void
on_instances_changed(void *ctx)
{
    struct agent *a = ctx;
    if (a->outputs_timer.data && !uv_is_active((uv_handle_t *)&a->outputs_timer) &&
        !uv_is_closing((uv_handle_t *)&a->outputs_timer))
        uv_timer_start(&a->outputs_timer, on_outputs_timer, 0, 0);
}

static void
on_peers_changed(void *ctx)
{
    agent_net_sync_peers(ctx);
}

void
agent_outputs_open(struct agent *a)
{
    agent_peers_watch(a, on_peers_changed, a);
    uv_timer_init(a->loop, &a->outputs_timer);
    a->outputs_timer.data = a;
    agent_instances_watch(&a->instances, on_instances_changed, a);
    agent_secgroups_watch(a->secgroups, on_instances_changed, a);
}

void
agent_outputs_close(struct agent *a)
{
    agent_instances_watch(&a->instances, NULL, NULL);
    agent_secgroups_watch(a->secgroups, NULL, NULL);
    if (a->peers)
        agent_peers_watch(a, NULL, NULL);
    if (a->outputs_timer.data && !uv_is_closing((uv_handle_t *)&a->outputs_timer))
        uv_close((uv_handle_t *)&a->outputs_timer, NULL);
}
