/* The flow table of the integration bridge, computed from the bound ports and tunnels (pure:
 * no OVS).
 *
 * table 0, ingress:
 *   priority 110  udp,tp_src=67 / udp6,tp_src=547  -> drop (no DHCP server or relay in a
 *                 tenant network, from a port or a tunnel)
 *   priority 110  icmp6,icmp_type=134 / 137  -> drop (no Router Advertisement or redirect)
 *   priorities 100..105  a port's IPv6 and Neighbor Discovery: see flows_ipv6.c
 *                 per port P (network VNI, MAC M, addresses A):
 *   priority 100  in_port=P,dl_src=M,ip,nw_src=A              -> reg6=VNI, reg7=P,
 *                                                    ct(zone=P), table 10 (egress ACL)
 *   priority 100  in_port=P,dl_src=M,arp,arp_sha=M,arp_spa=A  -> reg6=VNI, table 1
 *                 (both through P's outbound meter first when P has an outbound limit; the
 *                 output:P of tables 1 and 2 through its inbound meter likewise)
 *                 per tunnel T and network VNI that both sides host:
 *   priority 100  in_port=T,tun_id=VNI  -> reg6=VNI, table 3
 *   priority 0    drop (unbound taps, spoofed frames, IPv6 of a port without an IPv6
 *                 address, other networks, anything else)
 * table 1, from a local port:
 *   priority 110  reg6=VNI,dl_dst=M,ip -> reg7=P, ct(zone=P), table 20 (ingress ACL)
 *   priority 100  reg6=VNI,dl_dst=M  -> output:P      (exact MAC forwarding; a learned flow
 *                                                      can never take a local MAC over)
 *   priority 80   (learned) reg6=VNI,dl_dst=remote MAC -> tun_id=VNI, output:T
 *   priority 70   reg6=VNI,icmp6,icmp_type=135 / 136  -> as priority 50 (Neighbor Discovery)
 *   priority 65   reg6=VNI,ipv6,dl_dst=multicast  -> per local port P: clone(reg7=P, table 4),
 *                                 and the tunnels of the network
 *   priority 60   reg6=VNI,ip / ipv6  -> the tunnels of the network only (IP that is not for a
 *                                 local port must not reach one around its ingress ACL)
 *   priority 50   reg6=VNI  -> every local port of the network and every tunnel to a peer
 *                              with it (broadcast, multicast, unknown unicast; OVS never
 *                              sends back to in_port)
 *   priority 0    drop
 * table 2, from a tunnel: local ports only, never back into the mesh:
 *   priority 110  reg6=VNI,dl_dst=M,ip -> reg7=P, ct(zone=P), table 20 (ingress ACL)
 *   priority 100  reg6=VNI,dl_dst=M  -> output:P
 *   priority 70   reg6=VNI,icmp6,icmp_type=135 / 136  -> every local port of the network
 *   priority 65   reg6=VNI,ipv6,dl_dst=multicast  -> per local port P: clone(reg7=P, table 4)
 *   priority 60   reg6=VNI,ip / ipv6 -> drop
 *   priority 50   reg6=VNI           -> every local port of the network
 *   priority 0    drop
 * table 3, from a tunnel, its source MAC:
 *   priority 100  reg6=VNI,dl_src=M  -> drop (a remote frame claiming a local port's MAC)
 *   priority 50   reg6=VNI  -> learn the source MAC into table 1 (cookie: the VNI and the
 *                              learned cookie, at most OVS_NET_LEARNED_MAX per network),
 *                              table 2
 *   priority 0    drop
 * table 4, a copy of IPv6 multicast for the local port P in reg7:
 *   priority 100  reg7=P,in_port=P  -> drop (never back to its sender)
 *   priority 50   ipv6  -> ct(zone=P), table 20 (P's ingress ACL)
 *   priority 0    drop
 * tables 10 and 20, the security groups: see secgroup_flows.c.
 * The numbers are OVS_TABLES and OVS_PRIORITIES (ovs-private.h).
 */
#include "net/ovs/ovs-private.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <string.h>

void
ovs_flow_push(struct ovs_flow_list *l, char *key, char *actions)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->items = na_xrealloc(l->items, l->cap * sizeof(*l->items));
    }
    l->items[l->n++] = (struct ovs_flow){key, actions};
}

static int
cmp_flow(const void *a, const void *b)
{
    return strcmp(((const struct ovs_flow *)a)->key, ((const struct ovs_flow *)b)->key);
}

/* The canonical lowercase MAC, or false. */
static bool
mac_canonical(const char *s, char out[18])
{
    uint8_t m[6];
    if (!na_mac_parse(s, m))
        return false;
    snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    return true;
}

/* The IPv4 address of "a.b.c.d[/len]", canonical, or false. */
static bool
ipv4_canonical(const char *s, char out[INET_ADDRSTRLEN])
{
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", s);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    struct in_addr a;
    if (inet_pton(AF_INET, buf, &a) != 1)
        return false;
    return inet_ntop(AF_INET, &a, out, INET_ADDRSTRLEN) != NULL;
}

static int
cmp_vni(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int
cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return x < y ? -1 : x > y;
}

static bool
has_vni(const uint32_t *vnis, size_t n, uint32_t vni)
{
    return n && bsearch(&vni, vnis, n, sizeof(*vnis), cmp_vni) != NULL;
}

/* "output:P,..." for the local ports of network vni, in port number order (the same ports
 * give the same flow), then, with tunnels, the tunnel key and "output:T,..." for every
 * tunnel that carries the network.  via_acl: each local port gets a copy through its ingress
 * conntrack instead (table MCAST6_TO_PORT with the port in reg7). */
static char *
flood_to(const struct ovs_bound_port *ports, size_t n_ports, const bool *ok,
         const struct ovs_bound_tunnel *tunnels, size_t n_tunnels, uint32_t vni, bool via_acl)
{
    int *ofports = na_xcalloc(n_ports + 1, sizeof(*ofports));
    size_t n = 0;
    for (size_t i = 0; i < n_ports; i++)
        if (ok[i] && ports[i].port->vni == vni)
            ofports[n++] = ports[i].ofport;
    qsort(ofports, n, sizeof(*ofports), cmp_int);
    size_t size = 0;
    char *actions = NULL;
    FILE *f = open_memstream(&actions, &size);
    const char *sep = "";
    for (size_t i = 0; i < n; i++) {
        if ((i == 0 || ofports[i] != ofports[i - 1]) && via_acl)
            fprintf(f, "%sclone(load:%d->NXM_NX_REG7[],resubmit(,%d))", sep, ofports[i],
                    OVS_T_MCAST6_TO_PORT);
        else if (i == 0 || ofports[i] != ofports[i - 1])
            fprintf(f, "%soutput:%d", sep, ofports[i]);
        sep = ",";
    }
    free(ofports);
    ofports = na_xcalloc(n_tunnels + 1, sizeof(*ofports));
    n = 0;
    for (size_t t = 0; t < n_tunnels; t++)
        if (tunnels[t].ofport > 0 && has_vni(tunnels[t].vnis, tunnels[t].n_vnis, vni))
            ofports[n++] = tunnels[t].ofport;
    qsort(ofports, n, sizeof(*ofports), cmp_int);
    if (n)
        fprintf(f, "%sload:%u->NXM_NX_TUN_ID[]", sep, vni);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || ofports[i] != ofports[i - 1])
            fprintf(f, ",output:%d", ofports[i]);
    fclose(f);
    free(ofports);
    return actions;
}

static char *
flood_actions(const struct ovs_bound_port *ports, size_t n_ports, const bool *ok,
              const struct ovs_bound_tunnel *tunnels, size_t n_tunnels, uint32_t vni)
{
    return flood_to(ports, n_ports, ok, tunnels, n_tunnels, vni, false);
}

/* Learns the source MAC of a frame from a tunnel as the way to it (table 1), with the
 * network's own cookie: OVS's learn limit counts the flows of one cookie in the table, so the
 * limit caps each network on its own and one network's MACs cannot crowd out another's. */
static char *
learn_actions(uint32_t vni)
{
    return na_xasprintf("learn(table=%d,priority=%d,idle_timeout=%u,cookie=%#" PRIx64 ",limit=%u,"
                        "NXM_NX_REG6[],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
                        "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:NXM_OF_IN_PORT[]),"
                        "resubmit(,%d)",
                        OVS_T_FROM_PORT, OVS_P_LEARNED, OVS_NET_LEARNED_IDLE_S,
                        ovs_net_learned_cookie(vni), OVS_NET_LEARNED_MAX, OVS_T_FROM_TUNNEL);
}

/* "table=T,priority=P" and the rest of a flow's key. */
#define KEY(table, prio, fmt, ...)                                                                 \
    na_xasprintf("table=%d,priority=%d" fmt, OVS_T_##table, OVS_P_##prio, ##__VA_ARGS__)

/* The same, with the table and priority as values. */
#define KEY_AT(table, prio, fmt, ...)                                                              \
    na_xasprintf("table=%d,priority=%d" fmt, (int)(table), (int)(prio), ##__VA_ARGS__)

/* A port's meter, as the first action ("meter:N,"), or "" when that direction has no limit. */
static void
meter_prefix(const struct ovs_net_port *p, int P, bool inbound, char out[32])
{
    uint32_t limit = inbound ? p->bandwidth.inbound_kib_sec : p->bandwidth.outbound_kib_sec;
    out[0] = '\0';
    if (limit)
        snprintf(out, 32, "meter:%" PRIu32 ",", ovs_meter_id(P, inbound));
}

/* IP to port P: through its inbound meter, then its ingress conntrack (zone P) to the ACL. */
static char *
to_port_ip_actions(const struct ovs_net_port *p, int P)
{
    char meter[32];
    meter_prefix(p, P, true, meter);
    return na_xasprintf("%sload:%d->NXM_NX_REG7[],ct(table=%d,zone=%s)", meter, P,
                        OVS_T_INGRESS_ACL, OVS_ZONE_FIELD);
}

/* The flows to deliver to port P from table (FROM_PORT or FROM_TUNNEL): IPv4 and IPv6 through
 * its ingress ACL, Neighbor Discovery for it directly (the ACL's conntrack does not track
 * it), anything else (ARP) to it. */
static void
push_to_port(struct ovs_flow_list *l, enum ovs_table table, const struct ovs_net_port *p, int P,
             const char *mac)
{
    char meter[32];
    meter_prefix(p, P, true, meter);
    ovs_flow_push(l, KEY_AT(table, OVS_P_PORT, ",reg6=%u,dl_dst=%s", p->vni, mac),
                  na_xasprintf("%soutput:%d", meter, P));
    ovs_flow_push(l, KEY_AT(table, OVS_P_TO_PORT_IP, ",reg6=%u,dl_dst=%s,ip", p->vni, mac),
                  to_port_ip_actions(p, P));
    ovs_flow_push(l, KEY_AT(table, OVS_P_TO_PORT_IP, ",reg6=%u,dl_dst=%s,ipv6", p->vni, mac),
                  to_port_ip_actions(p, P));
    for (int type = 135; type <= 136; type++)
        ovs_flow_push(l,
                      KEY_AT(table, OVS_P_TO_PORT_ND, ",reg6=%u,dl_dst=%s,icmp6,icmp_type=%d",
                             p->vni, mac, type),
                      na_xasprintf("%soutput:%d", meter, P));
}

static void
push_port(struct ovs_flow_list *l, const struct ovs_net_port *p, int P, const char *mac,
          size_t n_tunnels)
{
    char meter[32];
    meter_prefix(p, P, false, meter);
    for (size_t j = 0; j < p->n_ips; j++) {
        char ip[INET_ADDRSTRLEN];
        if (!ipv4_canonical(p->ips[j], ip))
            continue;
        /* IP from the port goes through its outbound meter and its egress conntrack (zone P)
         * to the ACL. */
        ovs_flow_push(l, KEY(CLASSIFY, PORT, ",in_port=%d,dl_src=%s,ip,nw_src=%s", P, mac, ip),
                      na_xasprintf("%sload:%u->NXM_NX_REG6[],load:%d->NXM_NX_REG7[],"
                                   "ct(table=%d,zone=%s)",
                                   meter, p->vni, P, OVS_T_EGRESS_ACL, OVS_ZONE_FIELD));
        ovs_flow_push(
            l,
            KEY(CLASSIFY, PORT, ",in_port=%d,dl_src=%s,arp,arp_sha=%s,arp_spa=%s", P, mac, mac, ip),
            na_xasprintf("%sload:%u->NXM_NX_REG6[],resubmit(,%d)", meter, p->vni, OVS_T_FROM_PORT));
    }
    push_to_port(l, OVS_T_FROM_PORT, p, P, mac);
    if (n_tunnels) {
        push_to_port(l, OVS_T_FROM_TUNNEL, p, P, mac);
        ovs_flow_push(l, KEY(TUNNEL_SRC, PORT, ",reg6=%u,dl_src=%s", p->vni, mac),
                      na_xstrdup("drop"));
    }
}

/* IPv6 in network vni that is not to a local port's MAC (FROM_PORT, FROM_TUNNEL): Neighbor
 * Discovery is flooded as it is (it is admitted in table 0 only for the sender's own
 * addresses, and conntrack does not track it); other multicast reaches each local port
 * through its ingress ACL, as unicast does (never back to its sender); anything else (unknown
 * unicast) goes to the tunnels only, as IPv4's. */
static void
push_network_ipv6(struct ovs_flow_list *l, const struct ovs_bound_port *ports, size_t n_ports,
                  const bool *ok, const struct ovs_bound_tunnel *tunnels, size_t n_tunnels,
                  uint32_t vni)
{
    static const char mcast[] = "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00";
    for (int type = 135; type <= 136; type++) {
        ovs_flow_push(l, KEY(FROM_PORT, FLOOD_ND, ",reg6=%u,icmp6,icmp_type=%d", vni, type),
                      flood_actions(ports, n_ports, ok, tunnels, n_tunnels, vni));
        if (n_tunnels)
            ovs_flow_push(l, KEY(FROM_TUNNEL, FLOOD_ND, ",reg6=%u,icmp6,icmp_type=%d", vni, type),
                          flood_actions(ports, n_ports, ok, NULL, 0, vni));
    }
    ovs_flow_push(l, KEY(FROM_PORT, FLOOD_MCAST6, ",reg6=%u,ipv6,%s", vni, mcast),
                  flood_to(ports, n_ports, ok, tunnels, n_tunnels, vni, true));
    char *to_tunnels = flood_actions(ports, 0, ok, tunnels, n_tunnels, vni);
    ovs_flow_push(l, KEY(FROM_PORT, FLOOD_IP, ",reg6=%u,ipv6", vni),
                  *to_tunnels ? to_tunnels : (free(to_tunnels), na_xstrdup("drop")));
    if (n_tunnels) {
        ovs_flow_push(l, KEY(FROM_TUNNEL, FLOOD_MCAST6, ",reg6=%u,ipv6,%s", vni, mcast),
                      flood_to(ports, n_ports, ok, NULL, 0, vni, true));
        ovs_flow_push(l, KEY(FROM_TUNNEL, FLOOD_IP, ",reg6=%u,ipv6", vni), na_xstrdup("drop"));
    }
}

/* Table MCAST6_TO_PORT: a copy of an IPv6 multicast frame for the port in reg7 enters that
 * port's ingress conntrack, unless the port sent it (a frame from a port must never pass its
 * own ingress ACL: its egress commit is in the same zone). */
static void
push_mcast6_to_ports(struct ovs_flow_list *l, const struct ovs_bound_port *ports, size_t n_ports,
                     const bool *ok)
{
    ovs_flow_push(l, KEY(MCAST6_TO_PORT, DEFAULT, ""), na_xstrdup("drop"));
    ovs_flow_push(l, KEY(MCAST6_TO_PORT, MCAST6_ACL, ",ipv6"),
                  na_xasprintf("ct(table=%d,zone=%s)", OVS_T_INGRESS_ACL, OVS_ZONE_FIELD));
    for (size_t i = 0; i < n_ports; i++)
        if (ok[i])
            ovs_flow_push(
                l,
                KEY(MCAST6_TO_PORT, PORT, ",reg7=%d,in_port=%d", ports[i].ofport, ports[i].ofport),
                na_xstrdup("drop"));
}

void
ovs_flows_compute(const struct ovs_bound_port *ports, size_t n_ports,
                  const struct ovs_bound_tunnel *tunnels, size_t n_tunnels,
                  const struct ovs_sg_set *groups, struct ovs_flows *out)
{
    struct ovs_flow_list l = {0};
    ovs_flow_push(&l, KEY(CLASSIFY, DEFAULT, ""), na_xstrdup("drop"));
    ovs_flow_push(&l, KEY(FROM_PORT, DEFAULT, ""), na_xstrdup("drop"));
    ovs_flow_push(&l, KEY(FROM_TUNNEL, DEFAULT, ""), na_xstrdup("drop"));
    ovs_flow_push(&l, KEY(TUNNEL_SRC, DEFAULT, ""), na_xstrdup("drop"));
    /* DHCP answers come from the cloud's configuration (the config drive), never from a
     * guest: a rogue server would hand its neighbours another gateway. */
    ovs_flow_push(&l, KEY(CLASSIFY, DHCP_SERVER, ",udp,tp_src=67"), na_xstrdup("drop"));
    ovs_flow_push(&l, KEY(CLASSIFY, DHCP_SERVER, ",udp6,tp_src=547"), na_xstrdup("drop"));
    struct ovs_flows v6 = {0};
    ovs_flows_ipv6_guards(&v6);

    bool *ok = na_xcalloc(n_ports + 1, sizeof(*ok));
    char(*macs)[18] = na_xcalloc(n_ports + 1, sizeof(*macs));
    uint32_t *vnis = na_xcalloc(n_ports + 1, sizeof(*vnis));
    size_t n_vnis = 0;
    for (size_t i = 0; i < n_ports; i++) {
        const struct ovs_net_port *p = ports[i].port;
        ok[i] = ports[i].ofport > 0 && mac_canonical(p->mac, macs[i]);
        if (!ok[i])
            continue;
        push_port(&l, p, ports[i].ofport, macs[i], n_tunnels);
        ovs_flows_ipv6_port(p, ports[i].ofport, macs[i], &v6);
        vnis[n_vnis++] = p->vni;
    }
    n_vnis = na_u32_sort_unique(vnis, n_vnis);

    for (size_t v = 0; v < n_vnis; v++) {
        ovs_flow_push(&l, KEY(FROM_PORT, FLOOD, ",reg6=%u", vnis[v]),
                      flood_actions(ports, n_ports, ok, tunnels, n_tunnels, vnis[v]));
        /* IP that is not to a local port's MAC would reach local ports around their ingress
         * ACL: it goes to the tunnels only (a remote port's MAC not learned yet). */
        char *to_tunnels = flood_actions(ports, 0, ok, tunnels, n_tunnels, vnis[v]);
        ovs_flow_push(&l, KEY(FROM_PORT, FLOOD_IP, ",reg6=%u,ip", vnis[v]),
                      *to_tunnels ? to_tunnels : (free(to_tunnels), na_xstrdup("drop")));
        if (n_tunnels) {
            ovs_flow_push(&l, KEY(FROM_TUNNEL, FLOOD_IP, ",reg6=%u,ip", vnis[v]),
                          na_xstrdup("drop"));
            ovs_flow_push(&l, KEY(FROM_TUNNEL, FLOOD, ",reg6=%u", vnis[v]),
                          flood_actions(ports, n_ports, ok, NULL, 0, vnis[v]));
            ovs_flow_push(&l, KEY(TUNNEL_SRC, FLOOD, ",reg6=%u", vnis[v]), learn_actions(vnis[v]));
        }
    }
    for (size_t v = 0; v < n_vnis; v++)
        push_network_ipv6(&l, ports, n_ports, ok, tunnels, n_tunnels, vnis[v]);
    if (n_vnis)
        push_mcast6_to_ports(&l, ports, n_ports, ok);
    for (size_t t = 0; t < n_tunnels; t++) {
        if (tunnels[t].ofport <= 0)
            continue;
        for (size_t k = 0; k < tunnels[t].n_vnis; k++) {
            uint32_t vni = tunnels[t].vnis[k];
            if (!has_vni(vnis, n_vnis, vni))
                continue;
            ovs_flow_push(
                &l, KEY(CLASSIFY, PORT, ",in_port=%d,tun_id=%u", tunnels[t].ofport, vni),
                na_xasprintf("load:%u->NXM_NX_REG6[],resubmit(,%d)", vni, OVS_T_TUNNEL_SRC));
        }
    }
    for (size_t i = 0; i < v6.n; i++)
        ovs_flow_push(&l, v6.items[i].key, v6.items[i].actions);
    free(v6.items);
    ovs_secgroup_flows(ports, n_ports, ok, groups, &l);
    free(ok);
    free(macs);
    free(vnis);

    qsort(l.items, l.n, sizeof(*l.items), cmp_flow);
    /* Two ports with one MAC and address on one port number would give one key twice, and
     * so would two tunnels on one port number. */
    size_t w = 0;
    for (size_t i = 0; i < l.n; i++) {
        if (w > 0 && strcmp(l.items[w - 1].key, l.items[i].key) == 0) {
            free(l.items[i].key);
            free(l.items[i].actions);
            continue;
        }
        l.items[w++] = l.items[i];
    }
    out->items = l.items;
    out->n = w;
}

bool
ovs_flows_is_tunnel_ingress(const struct ovs_flow *flow)
{
    char prefix[16];
    snprintf(prefix, sizeof(prefix), "table=%d,", OVS_T_CLASSIFY);
    return strncmp(flow->key, prefix, strlen(prefix)) == 0 && strstr(flow->key, ",tun_id=") != NULL;
}

void
ovs_net_tunnel_port_name(const char *remote_ip, char name[16])
{
    struct in_addr a = {0};
    inet_pton(AF_INET, remote_ip, &a);
    snprintf(name, 16, "nat%08x", (unsigned)ntohl(a.s_addr));
}

const struct ovs_flow *
ovs_flows_find(const struct ovs_flows *flows, const char *key)
{
    struct ovs_flow k = {(char *)key, NULL};
    return flows->n ? bsearch(&k, flows->items, flows->n, sizeof(k), cmp_flow) : NULL;
}

void
ovs_flows_clear(struct ovs_flows *flows)
{
    for (size_t i = 0; i < flows->n; i++) {
        free(flows->items[i].key);
        free(flows->items[i].actions);
    }
    free(flows->items);
    flows->items = NULL;
    flows->n = 0;
}
