/* net/ovs internals: the tunnel ports of the integration bridge (see ovs.h, "Tunnels").
 * Used by the OVS thread only. */
#ifndef NODEAGENT_NET_OVS_TUNNELS_H
#define NODEAGENT_NET_OVS_TUNNELS_H

#include "lib/vswitch-idl.h"
#include "net/ovs/ovs.h"

/* A tunnel the bridge should have: one per peer endpoint, with the networks of the peers
 * there that this node hosts too. */
struct ovs_tunnel {
    char *remote_ip;
    uint32_t *vnis; /* ascending */
    size_t n_vnis;
};

struct ovs_tunnel_set {
    struct ovs_tunnel *items;
    size_t n;
};

/* How tunnel ports are made; local_ip NULL: no tunnels. */
struct ovs_tunnel_config {
    const char *bridge;
    const char *type; /* "geneve" or "vxlan" */
    const char *local_ip;
};

void ovs_tunnels_clear(struct ovs_tunnel_set *s);
/* One tunnel per peer endpoint that hosts one of local_vnis (ascending); none without a
 * local endpoint.  Peers that share an endpoint share its tunnel. */
void ovs_tunnels_compute(const struct ovs_tunnel_config *cfg, const uint32_t *local_vnis,
                         size_t n_local, const struct ovs_net_peer *peers, size_t n_peers,
                         struct ovs_tunnel_set *out);
/* The tunnels as recorded on the bridge's ports (external_ids:nodeagent-tunnel and
 * nodeagent-vnis), limited to local_vnis: what the agent uses until it knows its peers, so
 * that its restart neither cuts nor changes them. */
void ovs_tunnels_from_bridge(const struct ovs_tunnel_config *cfg, const struct ovsrec_bridge *br,
                             const uint32_t *local_vnis, size_t n_local,
                             struct ovs_tunnel_set *out);
/* Makes the bridge's tunnel ports equal to want in txn: a port to a peer that hosts none
 * of this node's networks any more, or whose settings are stale, is removed; a missing one
 * is added; the networks recorded on each are kept up to date. */
void ovs_tunnels_ensure(const struct ovs_tunnel_config *cfg, struct ovsdb_idl_txn *txn,
                        const struct ovsrec_bridge *br, const struct ovs_tunnel_set *want);
/* The OpenFlow port number of the tunnel to remote_ip, or 0 when it has none yet. */
int ovs_tunnels_ofport(const struct ovs_tunnel_config *cfg, const struct ovsrec_bridge *br,
                       const char *remote_ip);

#endif
