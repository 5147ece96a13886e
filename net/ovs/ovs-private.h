/* net/ovs internals shared with the unit tests: the pure flow computation. */
#ifndef NODEAGENT_NET_OVS_PRIVATE_H
#define NODEAGENT_NET_OVS_PRIVATE_H

#include "net/ovs/ovs.h"

/* A port with the OpenFlow port number of its interface on the bridge. */
struct ovs_bound_port {
    const struct ovs_net_port *port;
    int ofport;
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

/* The whole flow table for the bound ports.  A port whose MAC is not a MAC is left out
 * (and so is any address that is not an IPv4 address). */
void ovs_flows_compute(const struct ovs_bound_port *ports, size_t n_ports, struct ovs_flows *out);
const struct ovs_flow *ovs_flows_find(const struct ovs_flows *flows, const char *key);
void ovs_flows_clear(struct ovs_flows *flows);

#endif
