/* The flow table of the integration bridge, computed from the bound ports and tunnels (pure:
 * no OVS).
 *
 * table 0, ingress:
 *   priority 110  udp,tp_src=67 / udp6,tp_src=547  -> drop (no DHCP server or relay in a
 *                 tenant network, from a port or a tunnel)
 *   priority 110  icmp6,icmp_type=134 / 137  -> drop (no Router Advertisement or redirect)
 *   priorities 100..105  a port's IPv6 and Neighbor Discovery: see flows_ipv6.c
 *                 per port P (network VNI, MAC M, addresses A):
 *   priority 100  in_port=P,dl_src=M,ip,nw_src=A              -> reg6=VNI, table 1
 *   priority 100  in_port=P,dl_src=M,arp,arp_sha=M,arp_spa=A  -> reg6=VNI, table 1
 *                 per tunnel T and network VNI that both sides host:
 *   priority 100  in_port=T,tun_id=VNI  -> reg6=VNI, table 3
 *   priority 0    drop (unbound taps, spoofed frames, IPv6 of a port without an IPv6
 *                 address, other networks, anything else)
 * table 1, from a local port:
 *   priority 100  reg6=VNI,dl_dst=M  -> output:P      (exact MAC forwarding; a learned flow
 *                                                      can never take a local MAC over)
 *   priority 80   (learned) reg6=VNI,dl_dst=remote MAC -> tun_id=VNI, output:T
 *   priority 50   reg6=VNI  -> every local port of the network and every tunnel to a peer
 *                              with it (broadcast, multicast, unknown unicast; OVS never
 *                              sends back to in_port)
 *   priority 0    drop
 * table 2, from a tunnel: local ports only, never back into the mesh:
 *   priority 100  reg6=VNI,dl_dst=M  -> output:P
 *   priority 50   reg6=VNI           -> every local port of the network
 *   priority 0    drop
 * table 3, from a tunnel, its source MAC:
 *   priority 100  reg6=VNI,dl_src=M  -> drop (a remote frame claiming a local port's MAC)
 *   priority 50   reg6=VNI  -> learn the source MAC into table 1 (cookie: the VNI and the
 *                              learned cookie, at most OVS_NET_LEARNED_MAX per network),
 *                              table 2
 *   priority 0    drop
 */
#include "net/ovs/ovs-private.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <string.h>

struct flow_list {
    struct ovs_flow *items;
    size_t n, cap;
};

static void
push(struct flow_list *l, char *key, char *actions)
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
 * tunnel that carries the network. */
static char *
flood_actions(const struct ovs_bound_port *ports, size_t n_ports, const bool *ok,
              const struct ovs_bound_tunnel *tunnels, size_t n_tunnels, uint32_t vni)
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
        if (i == 0 || ofports[i] != ofports[i - 1])
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

/* Learns the source MAC of a frame from a tunnel as the way to it (table 1), with the
 * network's own cookie: OVS's learn limit counts the flows of one cookie in the table, so the
 * limit caps each network on its own and one network's MACs cannot crowd out another's. */
static char *
learn_actions(uint32_t vni)
{
    return na_xasprintf("learn(table=1,priority=80,idle_timeout=%u,cookie=%#" PRIx64 ",limit=%u,"
                        "NXM_NX_REG6[],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
                        "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:NXM_OF_IN_PORT[]),"
                        "resubmit(,2)",
                        OVS_NET_LEARNED_IDLE_S, ovs_net_learned_cookie(vni), OVS_NET_LEARNED_MAX);
}

void
ovs_flows_compute(const struct ovs_bound_port *ports, size_t n_ports,
                  const struct ovs_bound_tunnel *tunnels, size_t n_tunnels, struct ovs_flows *out)
{
    struct flow_list l = {0};
    push(&l, na_xstrdup("table=0,priority=0"), na_xstrdup("drop"));
    push(&l, na_xstrdup("table=1,priority=0"), na_xstrdup("drop"));
    push(&l, na_xstrdup("table=2,priority=0"), na_xstrdup("drop"));
    push(&l, na_xstrdup("table=3,priority=0"), na_xstrdup("drop"));
    /* DHCP answers come from the cloud's configuration (the config drive), never from a
     * guest: a rogue server would hand its neighbours another gateway. */
    push(&l, na_xstrdup("table=0,priority=110,udp,tp_src=67"), na_xstrdup("drop"));
    push(&l, na_xstrdup("table=0,priority=110,udp6,tp_src=547"), na_xstrdup("drop"));
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
        int P = ports[i].ofport;
        for (size_t j = 0; j < p->n_ips; j++) {
            char ip[INET_ADDRSTRLEN];
            if (!ipv4_canonical(p->ips[j], ip))
                continue;
            char *actions = na_xasprintf("load:%u->NXM_NX_REG6[],resubmit(,1)", p->vni);
            push(&l,
                 na_xasprintf("table=0,priority=100,in_port=%d,dl_src=%s,ip,nw_src=%s", P, macs[i],
                              ip),
                 actions);
            push(&l,
                 na_xasprintf("table=0,priority=100,in_port=%d,dl_src=%s,arp,arp_sha=%s,arp_spa=%s",
                              P, macs[i], macs[i], ip),
                 na_xstrdup(actions));
        }
        ovs_flows_ipv6_port(p, P, macs[i], &v6);
        push(&l, na_xasprintf("table=1,priority=100,reg6=%u,dl_dst=%s", p->vni, macs[i]),
             na_xasprintf("output:%d", P));
        if (n_tunnels) {
            push(&l, na_xasprintf("table=2,priority=100,reg6=%u,dl_dst=%s", p->vni, macs[i]),
                 na_xasprintf("output:%d", P));
            push(&l, na_xasprintf("table=3,priority=100,reg6=%u,dl_src=%s", p->vni, macs[i]),
                 na_xstrdup("drop"));
        }
        vnis[n_vnis++] = p->vni;
    }
    n_vnis = na_u32_sort_unique(vnis, n_vnis);

    for (size_t v = 0; v < n_vnis; v++) {
        push(&l, na_xasprintf("table=1,priority=50,reg6=%u", vnis[v]),
             flood_actions(ports, n_ports, ok, tunnels, n_tunnels, vnis[v]));
        if (n_tunnels) {
            push(&l, na_xasprintf("table=2,priority=50,reg6=%u", vnis[v]),
                 flood_actions(ports, n_ports, ok, NULL, 0, vnis[v]));
            push(&l, na_xasprintf("table=3,priority=50,reg6=%u", vnis[v]), learn_actions(vnis[v]));
        }
    }
    for (size_t t = 0; t < n_tunnels; t++) {
        if (tunnels[t].ofport <= 0)
            continue;
        for (size_t k = 0; k < tunnels[t].n_vnis; k++) {
            uint32_t vni = tunnels[t].vnis[k];
            if (!has_vni(vnis, n_vnis, vni))
                continue;
            push(&l,
                 na_xasprintf("table=0,priority=100,in_port=%d,tun_id=%u", tunnels[t].ofport, vni),
                 na_xasprintf("load:%u->NXM_NX_REG6[],resubmit(,3)", vni));
        }
    }
    for (size_t i = 0; i < v6.n; i++)
        push(&l, v6.items[i].key, v6.items[i].actions);
    free(v6.items);
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
    return strncmp(flow->key, "table=0,", 8) == 0 && strstr(flow->key, ",tun_id=") != NULL;
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
