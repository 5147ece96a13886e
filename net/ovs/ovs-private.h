/* net/ovs internals shared with the unit tests: the pure flow and meter computations. */
#ifndef NODEAGENT_NET_OVS_PRIVATE_H
#define NODEAGENT_NET_OVS_PRIVATE_H

#include "net/ovs/ovs.h"

/* The tables of the integration bridge, named once (docs/operations.md describes them). */
#define OVS_TABLES(X)                                                                              \
    X(CLASSIFY, 0)       /* from ports (anti-spoofing) and tunnels: which network */               \
    X(FROM_PORT, 1)      /* switching of frames from a local port */                               \
    X(FROM_TUNNEL, 2)    /* switching of frames from a tunnel: local ports only */                 \
    X(TUNNEL_SRC, 3)     /* a tunnel frame's source MAC: refuse local ones, learn the rest */      \
    X(MCAST6_TO_PORT, 4) /* IPv6 multicast, one copy per local port: to its ingress conntrack */   \
    X(EGRESS_ACL, 10)    /* security groups, traffic from a port, after conntrack */               \
    X(INGRESS_ACL, 20)   /* security groups, traffic to a port, after conntrack */

enum ovs_table {
#define X(name, number) OVS_T_##name = number,
    OVS_TABLES(X)
#undef X
};

/* Flow priorities, named once; within a table a higher one wins. */
#define OVS_PRIORITIES(X)                                                                          \
    X(DHCP_SERVER, 110) /* CLASSIFY: a DHCP server's answer, from anywhere: drop */                \
    X(TO_PORT_ND, 120)  /* FROM_PORT, FROM_TUNNEL: Neighbor Discovery to a local port */           \
    X(TO_PORT_IP, 110)  /* FROM_PORT, FROM_TUNNEL: IP to a local port: its ingress conntrack */    \
    X(PORT, 100)        /* anti-spoofing, tunnel ingress, exact MAC forwarding */                  \
    X(LEARNED, 80)      /* FROM_PORT: remote MACs learned from tunnels */                          \
    X(FLOOD_ND, 70)     /* FROM_PORT, FROM_TUNNEL: Neighbor Discovery, flooded around the ACL */   \
    X(FLOOD_MCAST6, 65) /* FROM_PORT, FROM_TUNNEL: IPv6 multicast, through each port's ACL */      \
    X(MCAST6_ACL, 50)   /* MCAST6_TO_PORT: into the port's ingress conntrack */                    \
    X(FLOOD_IP, 60)     /* IPv4 multicast, unknown unicast IP: tunnels only, never a local port */ \
    X(FLOOD, 50)        /* broadcast, multicast, unknown unicast */                                \
    X(CT_INVALID, 200)  /* ACL: conntrack says invalid: drop */                                    \
    X(CT_REPLY, 190)    /* ACL: replies and related traffic of an allowed connection */            \
    X(CT_CUT, 180)      /* ACL: a connection no rule allows any more (ct_mark): drop */            \
    X(CT_RULE, 100)     /* ACL: the rules, as conjunctions */                                      \
    X(CT_UNALLOWED, 10) /* ACL: an established connection no rule allows: mark it, drop */         \
    X(DEFAULT, 0)       /* every table: drop */

enum ovs_priority {
#define X(name, number) OVS_P_##name = number,
    OVS_PRIORITIES(X)
#undef X
};

/* The conntrack zone of a port's connections is its OpenFlow port number, kept in reg7
 * (with the port) from the ACL's ct() on. */
#define OVS_ZONE_FIELD "NXM_NX_REG7[0..15]"

/* A port with the OpenFlow port number of its interface on the bridge. */
struct ovs_bound_port {
    const struct ovs_net_port *port;
    int ofport;
};

/* A tunnel port to a peer endpoint, with the networks the peers behind it host. */
struct ovs_bound_tunnel {
    const char *remote_ip;
    int ofport;
    const uint32_t *vnis; /* ascending */
    size_t n_vnis;
};

/* One flow in ovs-ofctl syntax; key ("table=T,priority=P,MATCH") identifies it. */
struct ovs_flow {
    char *key;
    char *actions;
};

struct ovs_flows {
    struct ovs_flow *items; /* sorted by key */
    size_t n;
};

/* A growing list of flows (the key and actions are owned by the list). */
struct ovs_flow_list {
    struct ovs_flow *items;
    size_t n, cap;
};

void ovs_flow_push(struct ovs_flow_list *l, char *key, char *actions);

/* Security groups as the OVS thread holds them: owned copies. */
struct ovs_sg_set {
    struct ovs_sg *items;
    size_t n;
};

void ovs_flows_sg_copy(struct ovs_sg_set *dst, const struct ovs_sg *groups, size_t n);
void ovs_flows_sg_clear(struct ovs_sg_set *set);

/* The conntrack stage (tables EGRESS_ACL and INGRESS_ACL) for the bound ports (those with
 * ok[i]) and the groups, appended to l.  Rules become conjunctions whose clauses are the
 * port's membership of the group, the remote (network, member addresses or just the
 * ethertype) and the protocol with its destination ports as bitmask matches, so that the
 * flows grow as ports + members + rules, and a member or port joining adds its own flows
 * only. */
void ovs_secgroup_flows(const struct ovs_bound_port *ports, size_t n_ports, const bool *ok,
                        const struct ovs_sg_set *groups, struct ovs_flow_list *l);
/* The value/mask pairs that cover min..max (16 bits) exactly; returns how many (at most
 * 30) and fills out[] with "value/mask" strings (caller frees each). */
size_t ovs_flows_port_range_masks(uint16_t min, uint16_t max, char *out[32]);

/* The whole flow table for the bound ports and tunnels.  A port whose MAC is not a MAC is
 * left out (and so is any address that is neither an IPv4 nor an IPv6 address); a tunnel
 * carries only the networks that have a bound port here. */
void ovs_flows_compute(const struct ovs_bound_port *ports, size_t n_ports,
                       const struct ovs_bound_tunnel *tunnels, size_t n_tunnels,
                       const struct ovs_sg_set *groups, struct ovs_flows *out);
/* IPv6 anti-spoofing (flows_ipv6.c; the flows are listed there).  Both append to out,
 * unsorted.  The guards drop Router Advertisements and redirects from every port and
 * tunnel; a port's flows (none when it has no IPv6 address; mac canonical) admit IPv6 from
 * its addresses and its EUI-64 link-local only, and Neighbor Discovery only for them. */
void ovs_flows_ipv6_guards(struct ovs_flows *out);
void ovs_flows_ipv6_port(const struct ovs_net_port *port, int ofport, const char *mac,
                         struct ovs_flows *out);
/* Whether the flow is a tunnel's ingress (the flows that learn remote MACs). */
bool ovs_flows_is_tunnel_ingress(const struct ovs_flow *flow);
/* The name of the tunnel port to remote_ip: "nat" and the address in hex (11 characters,
 * within an interface name's 15). */
void ovs_net_tunnel_port_name(const char *remote_ip, char name[16]);
const struct ovs_flow *ovs_flows_find(const struct ovs_flows *flows, const char *key);
void ovs_flows_clear(struct ovs_flows *flows);

/* --- the host's side of a tap (host_tap.c) --- */

/* Disables IPv6 on the host's side of interface ifname (net.ipv6.conf.IF.disable_ipv6 = 1),
 * in the network namespace of the process whose pid file is vswitchd_pidfile (the agent's
 * own when that file cannot be read). */
int ovs_net_tap_ipv6_off(const char *vswitchd_pidfile, const char *ifname, struct na_error **err);

/* --- meters (meters.c) --- */

/* The meter of what the port at ofport sends (outbound) or receives. */
static inline uint32_t
ovs_meter_id(int ofport, bool inbound)
{
    return 2u * (uint32_t)ofport + (inbound ? 1u : 0u);
}

/* One meter in ovs-ofctl syntax ("meter=N,kbps,burst,band=type=drop,rate=R,burst_size=B"). */
struct ovs_meter {
    uint32_t id;
    char *text;
};

struct ovs_meters {
    struct ovs_meter *items; /* sorted by id */
    size_t n;
};

/* The meters of the bound ports' limits. */
void ovs_meters_compute(const struct ovs_bound_port *ports, size_t n_ports, struct ovs_meters *out);
const struct ovs_meter *ovs_meters_find(const struct ovs_meters *meters, uint32_t id);
void ovs_meters_clear(struct ovs_meters *meters);

#endif
