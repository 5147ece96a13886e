/* The agent's side of tenant networks: it starts net/ovs, hands it the ports of the
 * instance table and the peers of the peer table as the desired state whenever either may
 * have changed, checks a create's NICs against the networks, MACs and addresses already on
 * the node, and gives guests their MTU. */
#include "agent/core/agent.h"
#include "agent/outputs/network.h"
#include "agent/ops/secgroups.h"
#include "agent/outputs/peers.h"
#include "net/ovs/ovs.h"

#include <errno.h>
#include <string.h>

int
agent_net_open(struct agent *a, struct na_error **err)
{
    const struct agent_config *cfg = a->cfg;
    if (!cfg->net_enabled)
        return 0;
    struct ovs_net_config c = {
        .ovsdb = cfg->net_ovsdb,
        .bridge = cfg->bridge,
        .datapath_type = cfg->net_datapath_type,
        .tunnel_type = cfg->net_tunnel_type,
        .local_ip = cfg->tunnel_endpoint,
    };
    int ret = ovs_net_start(&c, &a->host.net, err);
    if (ret < 0)
        return ret;
    agent_net_sync(a);
    return 0;
}

void
agent_net_close(struct agent *a)
{
    ovs_net_stop(a->host.net);
    a->host.net = NULL;
}

void
agent_net_sync(struct agent *a)
{
    if (!a->host.net)
        return;
    size_t n = 0;
    for (size_t i = 0; i < a->instances.n; i++)
        n += a->instances.items[i]->spec->n_nics;
    struct ovs_net_port *ports = na_xcalloc(n + 1, sizeof(*ports));
    n = 0;
    for (size_t i = 0; i < a->instances.n; i++) {
        const Nodeagent__V1__InstanceSpec *spec = a->instances.items[i]->spec;
        for (size_t j = 0; j < spec->n_nics; j++) {
            const Nodeagent__V1__Nic *nic = spec->nics[j];
            const Nodeagent__V1__Flavor *f = spec->flavor;
            ports[n++] = (struct ovs_net_port){
                .id = nic->port_id,
                .vni = nic->vni,
                .mac = nic->mac,
                .ips = (const char *const *)nic->ips,
                .n_ips = nic->n_ips,
                .bandwidth = {f->nic_inbound_average_kib_sec, f->nic_inbound_burst_kib,
                              f->nic_outbound_average_kib_sec, f->nic_outbound_burst_kib},
                .groups = (const char *const *)nic->security_groups,
                .n_groups = nic->n_security_groups,
            };
        }
    }
    /* The groups first: ports naming a group the thread does not know yet would get no
     * rule of it for one convergence. */
    struct agent_secgroups_view groups;
    agent_secgroups_view(a->secgroups, &groups);
    ovs_net_set_security_groups(a->host.net, groups.groups, groups.n);
    agent_secgroups_view_free(&groups);
    ovs_net_set_ports(a->host.net, ports, n);
    free(ports);
}

void
agent_net_sync_peers(struct agent *a)
{
    if (!a->host.net || !agent_peers_settled(a))
        return;
    struct ovs_net_peer *peers = NULL;
    size_t n = agent_peers_for_tunnels(a, &peers);
    ovs_net_set_peers(a->host.net, peers, n);
    free(peers);
}

/* nics[k] of a create against NIC o of another instance in the same network: one MAC or one
 * address in a network would let either guest take the other's frames. */
static int
check_nic_identity(const char *prefix, const Nodeagent__V1__Nic *nic, size_t k,
                   const Nodeagent__V1__Nic *o, const char *other, struct na_error **err)
{
    char field[96];
    uint8_t mac[6], other_mac[6];
    if (na_mac_parse(nic->mac, mac) && na_mac_parse(o->mac, other_mac) &&
        memcmp(mac, other_mac, sizeof(mac)) == 0) {
        snprintf(field, sizeof(field), "%s.nics[%zu].mac", prefix, k);
        return na_error_field(err, field,
                              "%s: %s is already the MAC of port %s of instance %s in network %s",
                              field, o->mac, o->port_id, other, o->network_id);
    }
    for (size_t i = 0; i < nic->n_ips; i++) {
        for (size_t j = 0; j < o->n_ips; j++) {
            if (!na_ip_same_addr(nic->ips[i], o->ips[j]))
                continue;
            snprintf(field, sizeof(field), "%s.nics[%zu].ips[%zu]", prefix, k, i);
            return na_error_field(err, field,
                                  "%s: %s is already an address of port %s of instance %s in "
                                  "network %s",
                                  field, o->ips[j], o->port_id, other, o->network_id);
        }
    }
    return 0;
}

/* Inside the bridge a network is known by its VNI: two networks with one VNI on a node
 * would be one network.  Within a network, a MAC or an address belongs to one NIC: checked
 * against every instance of the table, those still being built included (a create enters the
 * table here, on the loop, before the next one is prepared). */
int
agent_net_check_nics(struct agent *a, const Nodeagent__V1__InstanceSpec *spec, const char *prefix,
                     struct na_error **err)
{
    for (size_t k = 0; k < spec->n_nics; k++) {
        const Nodeagent__V1__Nic *nic = spec->nics[k];
        for (size_t i = 0; i < a->instances.n; i++) {
            const Nodeagent__V1__InstanceSpec *other = a->instances.items[i]->spec;
            if (strcmp(other->uuid, spec->uuid) == 0)
                continue;
            for (size_t j = 0; j < other->n_nics; j++) {
                const Nodeagent__V1__Nic *o = other->nics[j];
                if (o->vni == nic->vni && strcmp(o->network_id, nic->network_id) != 0)
                    return na_error_quiet(err, NA_CODE_CONFLICT, EEXIST,
                                          "network %s has VNI %u, which network %s of instance "
                                          "%s already has on node %s",
                                          nic->network_id, nic->vni, o->network_id, other->uuid,
                                          a->cfg->node_id);
                if (strcmp(o->port_id, nic->port_id) == 0)
                    return na_error_quiet(err, NA_CODE_CONFLICT, EEXIST,
                                          "port %s is already a NIC of instance %s", nic->port_id,
                                          other->uuid);
                int ret;
                if (o->vni == nic->vni &&
                    (ret = check_nic_identity(prefix, nic, k, o, other->uuid, err)) < 0)
                    return ret;
            }
        }
    }
    return 0;
}

unsigned
agent_nic_mtu(const struct agent_config *cfg, unsigned requested)
{
    unsigned max = cfg->net_underlay_mtu > cfg->net_tunnel_overhead + 576
                       ? cfg->net_underlay_mtu - cfg->net_tunnel_overhead
                       : 576;
    return requested && requested < max ? requested : max;
}

void
agent_net_health(struct agent *a, struct agent_check *c)
{
    c->name = "ovs";
    if (!a->host.net) {
        c->ok = true;
        snprintf(c->detail, sizeof(c->detail), "tenant networks disabled ([network] enabled)");
        return;
    }
    c->ok = ovs_net_healthy(a->host.net, c->detail, sizeof(c->detail));
}
