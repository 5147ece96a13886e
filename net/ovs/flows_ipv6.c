/* IPv6 anti-spoofing: the table-0 flows that admit a port's IPv6 into its network (pure: no
 * OVS).  flows.c adds them to the bridge's table beside the IPv4 ones.
 *
 * A port with at least one IPv6 address (A: its addresses, LL: the link-local address its
 * MAC M gives by EUI-64, S = A + LL) in network VNI, on port P:
 *   priority 105  in_port=P,dl_src=M,icmp6,ipv6_src=s,icmp_type=135,icmp_code=0,
 *                 nd_sll=M or nd_sll=0                       for s in S  -> admit
 *                 (Neighbor Solicitation from its own address, naming its own MAC or none)
 *   priority 105  ...,ipv6_src=::,icmp_type=135,icmp_code=0,nd_target=t,nd_sll=0
 *                                                            for t in S  -> admit
 *                 (duplicate address detection, for its own addresses only: probing another's
 *                 address would make that one give it up)
 *   priority 105  ...,ipv6_src=t,icmp_type=136,icmp_code=0,nd_target=t,
 *                 nd_tll=M or nd_tll=0                       for t in S  -> admit
 *                 (Neighbor Advertisement of its own address, from that address, as Linux and
 *                 other hosts send them, naming its own MAC or none)
 *   priority 105  ...,ipv6_src=::,icmp_type=143 / 131                    -> admit
 *                 (MLD reports of a host whose link-local is still tentative; from LL they
 *                 pass at priority 100.  ND works without them: multicast is flooded.)
 *   priority 104  in_port=P,icmp6,icmp_type=135 / 136                    -> drop
 *                 (any other Neighbor Discovery: a guest may not answer for another)
 *   priority 100  in_port=P,dl_src=M,ipv6,ipv6_src=s         for s in S  -> admit
 * For every port and tunnel (ovs_flows_ipv6_guards):
 *   priority 110  icmp6,icmp_type=134 / 137  -> drop (Router Advertisements and redirects:
 *                 guests are hosts; addresses and routes come from the config drive)
 * "admit" is load:VNI->NXM_NX_REG6[],resubmit(,1), as for IPv4.  A port without an IPv6
 * address gets none of these and sends no IPv6 at all (the table's default drop).
 */
#include "net/ovs/ovs-private.h"

#include <arpa/inet.h>
#include <string.h>

static void
append(struct ovs_flows *out, char *key, char *actions)
{
    /* Doubles at each power of two. */
    if ((out->n & (out->n - 1)) == 0)
        out->items = na_xrealloc(out->items, (out->n ? 2 * out->n : 1) * sizeof(*out->items));
    out->items[out->n++] = (struct ovs_flow){key, actions};
}

void
ovs_flows_ipv6_guards(struct ovs_flows *out)
{
    append(out, na_xstrdup("table=0,priority=110,icmp6,icmp_type=134"), na_xstrdup("drop"));
    append(out, na_xstrdup("table=0,priority=110,icmp6,icmp_type=137"), na_xstrdup("drop"));
}

/* The canonical text of an IPv6 address given with or without a prefix length; false when
 * it is not one. */
static bool
ipv6_canonical(const char *s, char out[INET6_ADDRSTRLEN])
{
    uint8_t a[16];
    return na_ipv6_addr_parse(s, a) && inet_ntop(AF_INET6, a, out, INET6_ADDRSTRLEN) != NULL;
}

/* The port's IPv6 sources: its link-local first, then its addresses (canonical). */
static size_t
sources(const struct ovs_net_port *p, const uint8_t mac[6], char (*out)[INET6_ADDRSTRLEN])
{
    uint8_t ll[16];
    na_ipv6_link_local(mac, ll);
    inet_ntop(AF_INET6, ll, out[0], INET6_ADDRSTRLEN);
    size_t n = 1;
    for (size_t i = 0; i < p->n_ips; i++)
        if (strchr(p->ips[i], ':') && ipv6_canonical(p->ips[i], out[n]))
            n++;
    return n;
}

void
ovs_flows_ipv6_port(const struct ovs_net_port *p, int ofport, const char *mac,
                    struct ovs_flows *out)
{
    uint8_t m[6];
    if (!na_mac_parse(mac, m))
        return;
    char(*s)[INET6_ADDRSTRLEN] = na_xcalloc(p->n_ips + 1, sizeof(*s));
    size_t n = sources(p, m, s);
    if (n == 1) { /* no IPv6 address: no IPv6 */
        free(s);
        return;
    }
    static const char none[] = "00:00:00:00:00:00";
    const char *lls[] = {mac, none};
    cleanup_free char *admit = na_xasprintf("load:%u->NXM_NX_REG6[],resubmit(,1)", p->vni);
    cleanup_free char *from =
        na_xasprintf("table=0,priority=105,in_port=%d,dl_src=%s,icmp6", ofport, mac);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < NA_ARRAY_SIZE(lls); k++) {
            append(out,
                   na_xasprintf("%s,ipv6_src=%s,icmp_type=135,icmp_code=0,nd_sll=%s", from, s[i],
                                lls[k]),
                   na_xstrdup(admit));
            append(out,
                   na_xasprintf("%s,ipv6_src=%s,icmp_type=136,icmp_code=0,nd_target=%s,nd_tll=%s",
                                from, s[i], s[i], lls[k]),
                   na_xstrdup(admit));
        }
        append(out,
               na_xasprintf("%s,ipv6_src=::,icmp_type=135,icmp_code=0,nd_target=%s,nd_sll=%s", from,
                            s[i], none),
               na_xstrdup(admit));
        append(out,
               na_xasprintf("table=0,priority=100,in_port=%d,dl_src=%s,ipv6,ipv6_src=%s", ofport,
                            mac, s[i]),
               na_xstrdup(admit));
    }
    append(out, na_xasprintf("%s,ipv6_src=::,icmp_type=143", from), na_xstrdup(admit));
    append(out, na_xasprintf("%s,ipv6_src=::,icmp_type=131", from), na_xstrdup(admit));
    append(out, na_xasprintf("table=0,priority=104,in_port=%d,icmp6,icmp_type=135", ofport),
           na_xstrdup("drop"));
    append(out, na_xasprintf("table=0,priority=104,in_port=%d,icmp6,icmp_type=136", ofport),
           na_xstrdup("drop"));
    free(s);
}
