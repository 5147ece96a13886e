/* The security groups' conntrack stage, computed from the bound ports and the groups (pure:
 * no OVS).  Tables EGRESS_ACL (from a port) and INGRESS_ACL (to a port) are entered after
 * ct(zone=P) with the port P in reg7 (flows.c); in both:
 *
 *   CT_INVALID    ct_state=+trk+inv                       -> drop
 *   CT_REPLY      ct_state=+trk+est+rpl-inv,ct_mark=0     -> accept (the fast path: replies)
 *                 ct_state=+trk+rel-inv,ct_mark=0         -> accept (ICMP errors, ...)
 *   CT_CUT        ct_state=+trk,ct_mark=1                 -> drop (a connection cut below)
 *   CT_RULE       the rules, as conjunctions (below)      -> commit with ct_mark=0, accept
 *   CT_UNALLOWED  ct_state=+trk+est-rel-rpl,ip (and ipv6)  -> commit with ct_mark=1 (drop)
 *   DEFAULT                                               -> drop
 *
 * "accept" is resubmit to FROM_PORT (egress) or output to reg7 (ingress).  A new connection
 * and every packet of an established one in its original direction go through the rules,
 * so a rule removed stops the connections it allowed at their next packet: that packet
 * finds no rule, is marked (ct_mark=1, Neutron's way) and dropped, and so are the replies.
 *
 * A rule of group G is conjunction C (a stable hash of G and the rule) with clauses:
 *   1/n  reg7=P                        for each local port P in G
 *   2/n  the remote: nw_src=A (ipv6_src; the destination for egress) for each member
 *        address A of the remote group, or the CIDR, or only the ethertype (ip/ipv6)
 *   3/n  the protocol, with value/mask matches of tp_dst covering the port range (ICMP: its
 *        type and code when the rule has them)
 * and one flow conj_id=C,ip (or ipv6) that commits and accepts.  Clauses with one match are one
 * flow whatever the rules that share it (their conjunction() actions are merged), so flows grow as
 * ports + members + rules: a member joining a remote group adds its address's flow, a port joining
 * a group changes its own reg7 flow, and nothing else moves.  A port with no group gets the default
 * group: egress IPv4 and IPv6 to anywhere, no ingress rule.
 */
#include "net/ovs/ovs-private.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* --- owned copies ----------------------------------------------------------------------- */

static char *
dup_or_empty(const char *s)
{
    return na_xstrdup(s ? s : "");
}

void
ovs_flows_sg_copy(struct ovs_sg_set *dst, const struct ovs_sg *groups, size_t n)
{
    dst->items = na_xcalloc(n + 1, sizeof(*dst->items));
    dst->n = n;
    for (size_t i = 0; i < n; i++) {
        const struct ovs_sg *g = &groups[i];
        struct ovs_sg_rule *rules = na_xcalloc(g->n_rules + 1, sizeof(*rules));
        for (size_t r = 0; r < g->n_rules; r++) {
            rules[r] = g->rules[r];
            rules[r].remote_cidr = dup_or_empty(g->rules[r].remote_cidr);
            rules[r].remote_group = dup_or_empty(g->rules[r].remote_group);
        }
        char **members = na_xcalloc(g->n_member_ips + 1, sizeof(*members));
        for (size_t m = 0; m < g->n_member_ips; m++)
            members[m] = na_xstrdup(g->member_ips[m]);
        dst->items[i] = (struct ovs_sg){dup_or_empty(g->id), rules, g->n_rules,
                                        (const char *const *)members, g->n_member_ips};
    }
}

void
ovs_flows_sg_clear(struct ovs_sg_set *set)
{
    for (size_t i = 0; i < set->n; i++) {
        struct ovs_sg *g = &set->items[i];
        for (size_t r = 0; r < g->n_rules; r++) {
            free((char *)g->rules[r].remote_cidr);
            free((char *)g->rules[r].remote_group);
        }
        free((struct ovs_sg_rule *)g->rules);
        for (size_t m = 0; m < g->n_member_ips; m++)
            free((char *)g->member_ips[m]);
        free((char **)g->member_ips);
        free((char *)g->id);
    }
    free(set->items);
    set->items = NULL;
    set->n = 0;
}

/* --- port ranges ------------------------------------------------------------------------ */

size_t
ovs_flows_port_range_masks(uint16_t min, uint16_t max, char *out[32])
{
    size_t n = 0;
    uint32_t lo = min, hi = max;
    while (lo <= hi && n < 32) {
        /* The largest aligned block that starts at lo and ends by hi. */
        uint32_t size = 1;
        while (size < 0x10000 && (lo & (2 * size - 1)) == 0 && lo + 2 * size - 1 <= hi)
            size *= 2;
        uint32_t mask = 0xffffu & ~(size - 1);
        out[n++] = mask == 0xffffu ? na_xasprintf("%" PRIu32, lo)
                                   : na_xasprintf("%#" PRIx32 "/%#" PRIx32, lo, mask);
        lo += size;
    }
    return n;
}

/* --- helpers ---------------------------------------------------------------------------- */

/* The canonical address of s ("10.0.0.5", "10.0.0.5/24", "2001:db8::5") if it is of the
 * family (ipv6 or not), else false. */
static bool
addr_canonical(const char *s, bool ipv6, char out[INET6_ADDRSTRLEN])
{
    char buf[INET6_ADDRSTRLEN + 8];
    snprintf(buf, sizeof(buf), "%s", s);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    uint8_t bytes[16];
    int af = ipv6 ? AF_INET6 : AF_INET;
    return inet_pton(af, buf, bytes) == 1 && inet_ntop(af, bytes, out, INET6_ADDRSTRLEN);
}

static const struct ovs_sg *
find_group(const struct ovs_sg_set *set, const char *id)
{
    for (size_t i = 0; set && i < set->n; i++)
        if (strcmp(set->items[i].id, id) == 0)
            return &set->items[i];
    return NULL;
}

static bool
port_in_group(const struct ovs_net_port *p, const char *id)
{
    for (size_t i = 0; i < p->n_groups; i++)
        if (strcmp(p->groups[i], id) == 0)
            return true;
    return false;
}

/* The default: all egress, no ingress rule (only replies come in). */
static const struct ovs_sg_rule default_rules[] = {
    {.egress = true, .ipv6 = false},
    {.egress = true, .ipv6 = true},
};
static const struct ovs_sg default_group = {"", default_rules, NA_ARRAY_SIZE(default_rules), NULL,
                                            0};

/* The groups a port is in: its own, or the default one. */
static bool
port_uses(const struct ovs_net_port *p, const struct ovs_sg *g)
{
    return g == &default_group ? p->n_groups == 0 : port_in_group(p, g->id);
}

/* --- conjunction ids -------------------------------------------------------------------- */

struct conj {
    const struct ovs_sg *group;
    const struct ovs_sg_rule *rule;
    char *text; /* what identifies the rule */
    uint32_t id;
};

static char *
rule_text(const struct ovs_sg *g, const struct ovs_sg_rule *r)
{
    return na_xasprintf("%s|%d|%d|%u|%u|%u|%s|%s|%d:%u|%d:%u", g->id, r->egress, r->ipv6,
                        r->protocol, r->port_min, r->port_max, r->remote_cidr ? r->remote_cidr : "",
                        r->remote_group ? r->remote_group : "", r->icmp_typed, r->icmp_type,
                        r->icmp_coded, r->icmp_code);
}

static uint32_t
fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h ? h : 1;
}

static int
cmp_conj_text(const void *a, const void *b)
{
    return strcmp(((const struct conj *)a)->text, ((const struct conj *)b)->text);
}

/* Ids from the rules' hashes, so that a rule keeps its id (and its flows) while others come
 * and go; the rare collision moves the later rule (by text) to the next free id. */
static void
assign_ids(struct conj *c, size_t n)
{
    qsort(c, n, sizeof(*c), cmp_conj_text);
    for (size_t i = 0; i < n; i++) {
        c[i].id = fnv1a(c[i].text);
        for (bool clash = true; clash;) {
            clash = false;
            for (size_t j = 0; j < i && !clash; j++)
                clash = c[j].id == c[i].id && strcmp(c[j].text, c[i].text) != 0;
            if (clash)
                c[i].id = c[i].id + 1 ? c[i].id + 1 : 1;
        }
    }
}

/* --- flows ------------------------------------------------------------------------------ */

static int
acl_table(bool egress)
{
    return egress ? OVS_T_EGRESS_ACL : OVS_T_INGRESS_ACL;
}

static char *
accept_actions(bool egress)
{
    return egress ? na_xasprintf("resubmit(,%d)", OVS_T_FROM_PORT)
                  : na_xstrdup("output:NXM_NX_REG7[]");
}

static void
push_fixed(struct ovs_flow_list *l, bool egress)
{
    int t = acl_table(egress);
#define K(prio, match) na_xasprintf("table=%d,priority=%d%s", t, OVS_P_##prio, match)
    ovs_flow_push(l, K(DEFAULT, ""), na_xstrdup("drop"));
    ovs_flow_push(l, K(CT_INVALID, ",ct_state=+inv+trk"), na_xstrdup("drop"));
    ovs_flow_push(l, K(CT_REPLY, ",ct_state=+est+rpl-inv+trk,ct_mark=0"), accept_actions(egress));
    ovs_flow_push(l, K(CT_REPLY, ",ct_state=+rel-inv+trk,ct_mark=0"), accept_actions(egress));
    ovs_flow_push(l, K(CT_CUT, ",ct_state=+trk,ct_mark=0x1"), na_xstrdup("drop"));
    /* ct() needs the ethertype in the match. */
    ovs_flow_push(
        l, K(CT_UNALLOWED, ",ct_state=+est-rel-rpl+trk,ip"),
        na_xasprintf("ct(commit,zone=%s,exec(load:1->NXM_NX_CT_MARK[]))", OVS_ZONE_FIELD));
    ovs_flow_push(
        l, K(CT_UNALLOWED, ",ct_state=+est-rel-rpl+trk,ipv6"),
        na_xasprintf("ct(commit,zone=%s,exec(load:1->NXM_NX_CT_MARK[]))", OVS_ZONE_FIELD));
#undef K
}

/* The remote clause's matches of rule r: one per address, the CIDR, or the ethertype.
 * Returns how many (0: the rule matches nothing yet). */
static size_t
remote_matches(const struct ovs_sg_rule *r, const struct ovs_bound_port *ports, size_t n_ports,
               const bool *ok, const struct ovs_sg_set *groups, char ***out)
{
    const char *eth = r->ipv6 ? "ipv6" : "ip";
    const char *field =
        r->ipv6 ? (r->egress ? "ipv6_dst" : "ipv6_src") : (r->egress ? "nw_dst" : "nw_src");
    char **m = NULL;
    size_t n = 0;
    if (r->remote_group && *r->remote_group) {
        const struct ovs_sg *rg = find_group(groups, r->remote_group);
        size_t cap = (rg ? rg->n_member_ips : 0) + 1;
        for (size_t i = 0; i < n_ports; i++)
            cap += ok[i] ? ports[i].port->n_ips : 0;
        m = na_xcalloc(cap, sizeof(*m));
        char a[INET6_ADDRSTRLEN];
        for (size_t i = 0; rg && i < rg->n_member_ips; i++)
            if (addr_canonical(rg->member_ips[i], r->ipv6, a))
                m[n++] = na_xasprintf("%s,%s=%s", eth, field, a);
        for (size_t i = 0; i < n_ports; i++) {
            if (!ok[i] || !port_in_group(ports[i].port, r->remote_group))
                continue;
            for (size_t j = 0; j < ports[i].port->n_ips; j++)
                if (addr_canonical(ports[i].port->ips[j], r->ipv6, a))
                    m[n++] = na_xasprintf("%s,%s=%s", eth, field, a);
        }
    } else {
        m = na_xcalloc(1, sizeof(*m));
        const char *cidr = r->remote_cidr ? r->remote_cidr : "";
        const char *slash = strchr(cidr, '/');
        char a[INET6_ADDRSTRLEN];
        unsigned len = slash ? (unsigned)strtoul(slash + 1, NULL, 10) : 0;
        if (!*cidr || (slash && len == 0))
            m[n++] = na_xstrdup(eth);
        else if (addr_canonical(cidr, r->ipv6, a) && slash && len <= (r->ipv6 ? 128u : 32u))
            m[n++] = na_xasprintf("%s,%s=%s/%u", eth, field, a, len);
        /* else: not a network of the rule's family; the rule matches nothing */
    }
    *out = m;
    return n;
}

/* The protocol clause's matches: none for any protocol. */
static size_t
l4_matches(const struct ovs_sg_rule *r, char ***out)
{
    const char *proto = NULL;
    switch (r->protocol) {
    case 6:
        proto = r->ipv6 ? "tcp6" : "tcp";
        break;
    case 17:
        proto = r->ipv6 ? "udp6" : "udp";
        break;
    case 1:
        proto = r->ipv6 ? "icmp6" : "icmp";
        break;
    default:
        *out = NULL;
        return 0;
    }
    char **m = na_xcalloc(33, sizeof(*m));
    if (r->protocol == 1 && r->icmp_typed) {
        char code[24] = "";
        if (r->icmp_coded)
            snprintf(code, sizeof(code), ",icmp_code=%u", r->icmp_code);
        m[0] = na_xasprintf("%s,icmp_type=%u%s", proto, r->icmp_type, code);
        *out = m;
        return 1;
    }
    if (!r->port_min && !r->port_max) {
        m[0] = na_xstrdup(proto);
        *out = m;
        return 1;
    }
    char *masks[32];
    size_t n =
        ovs_flows_port_range_masks(r->port_min, r->port_max ? r->port_max : r->port_min, masks);
    for (size_t i = 0; i < n; i++) {
        m[i] = na_xasprintf("%s,tp_dst=%s", proto, masks[i]);
        free(masks[i]);
    }
    *out = m;
    return n;
}

static void
free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void
push_rule(struct ovs_flow_list *l, const struct conj *c, const struct ovs_bound_port *ports,
          size_t n_ports, const bool *ok, const struct ovs_sg_set *groups)
{
    const struct ovs_sg_rule *r = c->rule;
    char **remote = NULL, **l4 = NULL;
    size_t n_remote = remote_matches(r, ports, n_ports, ok, groups, &remote);
    size_t n_l4 = l4_matches(r, &l4);
    int t = acl_table(r->egress);
    unsigned clauses = n_l4 ? 3 : 2;
    if (n_remote) {
        for (size_t i = 0; i < n_ports; i++)
            if (ok[i] && port_uses(ports[i].port, c->group))
                ovs_flow_push(
                    l,
                    na_xasprintf("table=%d,priority=%d,reg7=%d", t, OVS_P_CT_RULE, ports[i].ofport),
                    na_xasprintf("conjunction(%" PRIu32 ",1/%u)", c->id, clauses));
        for (size_t i = 0; i < n_remote; i++)
            ovs_flow_push(l, na_xasprintf("table=%d,priority=%d,%s", t, OVS_P_CT_RULE, remote[i]),
                          na_xasprintf("conjunction(%" PRIu32 ",2/%u)", c->id, clauses));
        for (size_t i = 0; i < n_l4; i++)
            ovs_flow_push(l, na_xasprintf("table=%d,priority=%d,%s", t, OVS_P_CT_RULE, l4[i]),
                          na_xasprintf("conjunction(%" PRIu32 ",3/3)", c->id));
        char *accept = accept_actions(r->egress);
        ovs_flow_push(l,
                      na_xasprintf("table=%d,priority=%d,conj_id=%" PRIu32 ",%s", t, OVS_P_CT_RULE,
                                   c->id, r->ipv6 ? "ipv6" : "ip"),
                      na_xasprintf("ct(commit,zone=%s,exec(load:0->NXM_NX_CT_MARK[])),%s",
                                   OVS_ZONE_FIELD, accept));
        free(accept);
    }
    free_strv(remote, n_remote);
    free_strv(l4, n_l4);
}

static int
cmp_key(const void *a, const void *b)
{
    return strcmp(((const struct ovs_flow *)a)->key, ((const struct ovs_flow *)b)->key);
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Flows of one key made by several rules: one flow with all their conjunction() actions, in
 * a stable order. */
static char *
merge_actions(struct ovs_flow *items, size_t n)
{
    char **parts = na_xcalloc(n + 1, sizeof(*parts));
    for (size_t i = 0; i < n; i++)
        parts[i] = items[i].actions;
    qsort(parts, n, sizeof(*parts), cmp_str);
    size_t size = 0;
    char *out = NULL;
    FILE *f = open_memstream(&out, &size);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || strcmp(parts[i], parts[i - 1]) != 0)
            fprintf(f, "%s%s", i ? "," : "", parts[i]);
    fclose(f);
    free(parts);
    return out;
}

/* Moves the rule flows of r into l, one flow per key. */
static void
merge_into(struct ovs_flow_list *l, struct ovs_flow_list *r)
{
    qsort(r->items, r->n, sizeof(*r->items), cmp_key);
    for (size_t i = 0; i < r->n;) {
        size_t j = i + 1;
        while (j < r->n && strcmp(r->items[j].key, r->items[i].key) == 0)
            j++;
        if (j - i == 1) {
            ovs_flow_push(l, r->items[i].key, r->items[i].actions);
        } else {
            ovs_flow_push(l, r->items[i].key, merge_actions(&r->items[i], j - i));
            free(r->items[i].actions);
            for (size_t k = i + 1; k < j; k++) {
                free(r->items[k].key);
                free(r->items[k].actions);
            }
        }
        i = j;
    }
    free(r->items);
}

void
ovs_secgroup_flows(const struct ovs_bound_port *ports, size_t n_ports, const bool *ok,
                   const struct ovs_sg_set *groups, struct ovs_flow_list *l)
{
    /* A node without a port has nothing to filter: its table stays the drops. */
    bool any = false;
    for (size_t i = 0; i < n_ports && !any; i++)
        any = ok[i];
    if (!any)
        return;
    push_fixed(l, true);
    push_fixed(l, false);

    /* The rules of the groups some local port uses (the default group's too). */
    size_t n_groups = groups ? groups->n : 0;
    size_t cap = default_group.n_rules + 1;
    for (size_t g = 0; g < n_groups; g++)
        cap += groups->items[g].n_rules;
    struct conj *conjs = na_xcalloc(cap, sizeof(*conjs));
    size_t n = 0;
    for (size_t g = 0; g <= n_groups; g++) {
        const struct ovs_sg *grp = g < n_groups ? &groups->items[g] : &default_group;
        bool used = false;
        for (size_t i = 0; i < n_ports && !used; i++)
            used = ok[i] && port_uses(ports[i].port, grp);
        for (size_t r = 0; used && r < grp->n_rules; r++)
            conjs[n++] = (struct conj){grp, &grp->rules[r], rule_text(grp, &grp->rules[r]), 0};
    }
    assign_ids(conjs, n);

    struct ovs_flow_list rule_flows = {0};
    for (size_t i = 0; i < n; i++) {
        /* A group that repeats a rule gives it once. */
        if (i == 0 || strcmp(conjs[i].text, conjs[i - 1].text) != 0)
            push_rule(&rule_flows, &conjs[i], ports, n_ports, ok, groups);
    }
    merge_into(l, &rule_flows);
    for (size_t i = 0; i < n; i++)
        free(conjs[i].text);
    free(conjs);
}
