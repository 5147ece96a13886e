/* net/ovs internals shared with the unit tests: the pure flow computation. */
#ifndef NODEAGENT_NET_OVS_PRIVATE_H
#define NODEAGENT_NET_OVS_PRIVATE_H

#include "net/ovs/ovs.h"

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

/* The whole flow table for the bound ports and tunnels.  A port whose MAC is not a MAC is
 * left out (and so is any address that is neither an IPv4 nor an IPv6 address); a tunnel
 * carries only the networks that have a bound port here. */
void ovs_flows_compute(const struct ovs_bound_port *ports, size_t n_ports,
                       const struct ovs_bound_tunnel *tunnels, size_t n_tunnels,
                       struct ovs_flows *out);
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

#endif
