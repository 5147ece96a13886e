/* net/ovs: tenant networks on Open vSwitch.
 *
 * One thread of its own runs Open vSwitch's poll loop (the way ovn-controller does): an
 * ovsdb-idl connection to the local ovsdb-server and an OpenFlow connection to the
 * integration bridge.  The agent's loop hands it the *desired* ports (ovs_net_set_ports);
 * the thread makes sure the bridge exists (datapath type from the config, fail_mode=secure),
 * finds each port's interface (libvirt's tap, external_ids:iface-id = port id), computes the
 * whole flow table of the bridge from the bound ports and makes OpenFlow equal to it in one
 * atomic bundle per change: what is missing is added, what is extra is deleted, and after
 * every (re)connection the table is replaced as a whole.  Every flow the agent installs
 * carries OVS_NET_COOKIE; flows with another cookie are never touched.
 *
 * Tunnels: with a local tunnel endpoint configured, the agent hands the thread its peers too
 * (ovs_net_set_peers: each peer's endpoint and networks).  The bridge gets one tunnel port
 * (Geneve or VXLAN, key=flow, marked external_ids:nodeagent-tunnel=<remote ip>) to each peer
 * endpoint that hosts one of this node's networks, and none to any other; the VNI travels
 * as the tunnel key.  Broadcast and unknown unicast from a local port go to the network's
 * local ports and to every tunnel of a peer with that network; a frame from a tunnel goes to
 * local ports only, so nothing is ever sent back into the mesh.  The source MAC of a frame
 * from a tunnel is learned (per network, at most OVS_NET_LEARNED_MAX) so that unicast to it
 * takes that tunnel alone; a local port's MAC is never learned from a tunnel, and frames from
 * a tunnel that claim one are dropped.
 *
 * Isolation: a network is known inside the bridge by its VNI (in reg6).  The table's default
 * is drop, so a tap that is not bound sends and receives nothing.  A bound port may send
 * only from its MAC, IPv4 only from its addresses, ARP only for its addresses, IPv6 (when it
 * has an IPv6 address) only from its addresses and the link-local address of its MAC,
 * Neighbor Discovery only for those addresses and its MAC, and never a DHCP (or DHCPv6)
 * server's answer, a Router Advertisement or a redirect; frames go to the ports of the same
 * network only (exact MAC forwarding, broadcast, multicast and unknown unicast flooded
 * within the network; IPv6 multicast other than Neighbor Discovery through each receiving
 * port's ingress ACL).  The host's side of a bound port's tap has IPv6 disabled
 * (host_tap.c): the host takes no part in a tenant network.
 *
 * Bandwidth: a port with limits gets an OpenFlow meter per limited direction (one drop band:
 * the average as its rate, the burst as its burst size; the userspace datapath runs them
 * itself, unlike tc on the tap, which it can bypass).  Meter ids are the port's: 2 x ofport for
 * what the port sends, 2 x ofport + 1 for what it receives.  Every frame from the port
 * passes its outbound meter; frames forwarded to its MAC pass its inbound meter (frames
 * flooded to the network, such as broadcasts, do not).
 *
 * Security groups (secgroup_flows.c): every bound port's IP traffic passes a stateful
 * conntrack stage in both directions, after anti-spoofing (from the port) and before delivery
 * (to it), in the port's own conntrack zone (its OpenFlow port number, which OVS keeps in its
 * database across restarts).  A port with no group gets the default: all egress, ingress
 * only for replies of its own connections.  ovs_net_set_security_groups hands the groups put
 * on the node; a port names its groups by id.  When a port's interface goes, the entries of
 * its zone are flushed (OpenFlow conntrack flush, OVS 3.1); the zones in use are recorded in
 * the bridge (external_ids:nodeagent-ct-zones), so that an agent that starts flushes those of
 * the ports that went while no agent ran.
 *
 * Threads: ovs_net_start/stop/set_ports from the agent's loop; ovs_net_wait_bound from any
 * thread (a worker waits there for a create's ports).  The shared fields are under one
 * mutex (see ovs.c).
 */
#ifndef NODEAGENT_NET_OVS_H
#define NODEAGENT_NET_OVS_H

#include "common/common.h"

#define OVS_NET_COOKIE 0x4e41u /* "NA": marks the agent's flows */
/* Flows learned from tunnels (remote MACs) carry OVS_NET_LEARNED_COOKIE in the low 16 bits
 * of their cookie and their network's VNI above it (ovs_net_learned_cookie): OVS's learn
 * limit counts per cookie, so each network may learn at most OVS_NET_LEARNED_MAX remote MACs
 * (more are flooded to the network's tunnels, like unknown unicast, until some idle out).
 * The mask finds them all, those of agents that used the bare 0x4e42 included. */
#define OVS_NET_LEARNED_COOKIE 0x4e42u
#define OVS_NET_LEARNED_COOKIE_MASK 0xffffu
#define OVS_NET_LEARNED_IDLE_S 300
#define OVS_NET_LEARNED_MAX 1024u

static inline uint64_t
ovs_net_learned_cookie(uint32_t vni)
{
    return (uint64_t)vni << 16 | OVS_NET_LEARNED_COOKIE;
}

struct ovs_net;

struct ovs_net_config {
    const char *ovsdb;         /* "unix:/var/run/openvswitch/db.sock" */
    const char *bridge;        /* "br-int" */
    const char *datapath_type; /* "system" or "netdev" */
    const char *tunnel_type;   /* "geneve" or "vxlan" */
    const char *local_ip;      /* this node's tunnel endpoint; NULL: no tunnels */
};

/* A port's bandwidth limits, in KiB (1024 bytes) per second and KiB; 0 = unlimited (a
 * burst of 0: a tenth of a second at the average). */
struct ovs_net_bandwidth {
    uint32_t inbound_kib_sec; /* to the guest */
    uint32_t inbound_burst_kib;
    uint32_t outbound_kib_sec; /* from the guest */
    uint32_t outbound_burst_kib;
};

/* One port (NIC) of an instance on this node. */
struct ovs_net_port {
    const char *id; /* the port id: libvirt's iface-id */
    uint32_t vni;
    const char *mac;        /* "52:54:00:12:34:56" */
    const char *const *ips; /* "10.0.0.5/24", "10.0.0.5", "fd00::5/64" or "fd00::5" */
    size_t n_ips;
    struct ovs_net_bandwidth bandwidth;
    const char *const *groups; /* security group ids; none: the default */
    size_t n_groups;
};

/* One rule of a security group: it allows connections (stateful) that match it. */
struct ovs_sg_rule {
    bool egress;       /* false: ingress (to the port) */
    bool ipv6;         /* false: IPv4 */
    uint8_t protocol;  /* 0 any, 6 TCP, 17 UDP, 1 ICMP (ICMPv6 with ipv6) */
    uint16_t port_min; /* TCP and UDP destination ports; 0 and 0: all */
    uint16_t port_max;
    bool icmp_typed; /* ICMP: only the type icmp_type (false: every type) */
    bool icmp_coded; /* ...and only its code icmp_code (false: every code) */
    uint8_t icmp_type;
    uint8_t icmp_code;
    const char *remote_cidr;  /* "" or NULL: not by network */
    const char *remote_group; /* "" or NULL: not by group */
};

/* A security group as the control plane put it. */
struct ovs_sg {
    const char *id;
    const struct ovs_sg_rule *rules;
    size_t n_rules;
    const char *const *member_ips; /* addresses of its members anywhere (no prefix) */
    size_t n_member_ips;
};

/* Another node, as its announcements tell. */
struct ovs_net_peer {
    const char *node_id;
    const char *endpoint; /* its tunnel endpoint (IPv4); "" when it has none */
    const uint32_t *vnis; /* the networks it hosts */
    size_t n_vnis;
};

int ovs_net_start(const struct ovs_net_config *cfg, struct ovs_net **out, struct na_error **err);
/* Stops the thread; the flows stay in OVS (guests keep their network while the agent is
 * away).  Accepts NULL. */
void ovs_net_stop(struct ovs_net *net);
/* Replaces the desired ports (copied). */
void ovs_net_set_ports(struct ovs_net *net, const struct ovs_net_port *ports, size_t n_ports);
/* Replaces the security groups (copied). */
void ovs_net_set_security_groups(struct ovs_net *net, const struct ovs_sg *groups, size_t n_groups);
/* Replaces the peers (copied). */
void ovs_net_set_peers(struct ovs_net *net, const struct ovs_net_peer *peers, size_t n_peers);
/* Waits until every port in ids has its flows installed, or timeout_ms passes (then fails
 * with NA_CODE_NETWORK, naming the ports that did not bind). */
int ovs_net_wait_bound(struct ovs_net *net, const char *const *ids, size_t n_ids,
                       unsigned timeout_ms, struct na_error **err);
/* Waits until the bridge's flows match everything set before the call (-ETIMEDOUT after
 * timeout_ms).  For benchmarks and tools; a create waits with ovs_net_wait_bound. */
int ovs_net_wait_converged(struct ovs_net *net, unsigned timeout_ms);
/* Whether both the database and the OpenFlow connection are up; detail says why not. */
bool ovs_net_healthy(struct ovs_net *net, char *detail, size_t detail_size);

#endif
