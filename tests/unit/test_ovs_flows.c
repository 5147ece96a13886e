/* The flow table net/ovs computes from the bound ports: anti-spoofing per port, forwarding
 * only within a network, default drop, and the same table for the same ports whatever their
 * order. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "net/ovs/ovs-private.h"

static const char *ips_a[] = {"10.0.0.5/24"};
static const char *ips_b[] = {"10.0.0.6/24", "fd00::6/64"};
static const char *ips_c[] = {"10.0.0.5/24"}; /* another tenant, the same range */

static const struct ovs_net_port port_a = {"pa", 100, "52:54:00:00:00:0A", ips_a, 1};
static const struct ovs_net_port port_b = {"pb", 100, "52:54:00:00:00:0b", ips_b, 2};
static const struct ovs_net_port port_c = {"pc", 200, "52:54:00:00:00:0c", ips_c, 1};

static const char *
actions(const struct ovs_flows *f, const char *key)
{
    const struct ovs_flow *flow = ovs_flows_find(f, key);
    return flow ? flow->actions : NULL;
}

/* Whether the flow is in a security-group table (10, 20). */
static bool
is_acl(const struct ovs_flow *flow)
{
    return strncmp(flow->key, "table=10,", 9) == 0 || strncmp(flow->key, "table=20,", 9) == 0;
}

/* The flows of the switching tables (0..3), without the security groups'. */
static size_t
n_switching(const struct ovs_flows *f)
{
    size_t n = 0;
    for (size_t i = 0; i < f->n; i++)
        n += !is_acl(&f->items[i]);
    return n;
}

static void
test_no_ports_is_drop_only(void **state)
{
    (void)state;
    struct ovs_flows f = {0};
    ovs_flows_compute(NULL, 0, NULL, 0, NULL, &f);
    assert_int_equal(f.n, 8); /* no port: no security-group stage either */
    assert_string_equal(actions(&f, "table=0,priority=0"), "drop");
    assert_string_equal(actions(&f, "table=1,priority=0"), "drop");
    assert_string_equal(actions(&f, "table=2,priority=0"), "drop");
    assert_string_equal(actions(&f, "table=3,priority=0"), "drop");
    for (size_t i = 0; i < f.n; i++)
        if (!is_acl(&f.items[i]))
            assert_string_equal(f.items[i].actions, "drop");
    ovs_flows_clear(&f);
}

/* DHCP server (and relay) answers, IPv4 or IPv6, are dropped before any port's
 * anti-spoofing flow could let them through: a port's own address is no excuse. */
static void
test_no_port_or_tunnel_may_answer_dhcp(void **state)
{
    (void)state;
    struct ovs_bound_port ports[] = {{&port_a, 5}};
    static const uint32_t vnis_100[] = {100};
    struct ovs_bound_tunnel tunnels[] = {{"10.200.0.2", 20, vnis_100, 1}};
    struct ovs_flows f = {0};
    ovs_flows_compute(ports, 1, tunnels, 1, NULL, &f);
    assert_string_equal(actions(&f, "table=0,priority=110,udp,tp_src=67"), "drop");
    assert_string_equal(actions(&f, "table=0,priority=110,udp6,tp_src=547"), "drop");
    /* Above every flow that admits a frame into a network. */
    for (size_t i = 0; i < f.n; i++)
        if (strstr(f.items[i].actions, "->NXM_NX_REG6[]"))
            assert_non_null(strstr(f.items[i].key, "table=0,priority=100,"));
    ovs_flows_clear(&f);
}

static void
test_port_may_send_only_from_its_mac_and_addresses(void **state)
{
    (void)state;
    struct ovs_bound_port ports[] = {{&port_a, 5}};
    struct ovs_flows f = {0};
    ovs_flows_compute(ports, 1, NULL, 0, NULL, &f);
    /* MAC canonical (lowercase), prefix length gone. */
    assert_string_equal(
        actions(&f, "table=0,priority=100,in_port=5,dl_src=52:54:00:00:00:0a,ip,nw_src=10.0.0.5"),
        "load:100->NXM_NX_REG6[],load:5->NXM_NX_REG7[],ct(table=10,zone=NXM_NX_REG7[0..15])");
    assert_string_equal(actions(&f, "table=0,priority=100,in_port=5,dl_src=52:54:00:00:00:0a,"
                                    "arp,arp_sha=52:54:00:00:00:0a,arp_spa=10.0.0.5"),
                        "load:100->NXM_NX_REG6[],resubmit(,1)");
    assert_string_equal(actions(&f, "table=1,priority=100,reg6=100,dl_dst=52:54:00:00:00:0a"),
                        "output:5");
    /* IP to the port passes its ingress conntrack first. */
    assert_string_equal(actions(&f, "table=1,priority=110,reg6=100,dl_dst=52:54:00:00:00:0a,ip"),
                        "load:5->NXM_NX_REG7[],ct(table=20,zone=NXM_NX_REG7[0..15])");
    assert_string_equal(actions(&f, "table=1,priority=50,reg6=100"), "output:5");
    /* Nothing else in table 0 matches in_port=5: every other frame meets the drop. */
    size_t from_a = 0;
    for (size_t i = 0; i < f.n; i++)
        from_a += strstr(f.items[i].key, "in_port=5,") != NULL;
    assert_int_equal(from_a, 2);
    /* IP for no local MAC (broadcast, multicast): never to a local port, which would take
     * it around its ingress ACL; without tunnels, nowhere. */
    assert_string_equal(actions(&f, "table=1,priority=60,reg6=100,ip"), "drop");
    /* 12, and the IPv6 guards (2) and IPv6 and Neighbor Discovery to the port (3); the
     * network's IPv6 (4: ND floods, multicast through the ACL, the rest to tunnels) and the
     * multicast copies' table (3: its drop, to the ACL, never back to the port). */
    assert_int_equal(n_switching(&f), 24);
    ovs_flows_clear(&f);
}

static void
test_networks_are_kept_apart(void **state)
{
    (void)state;
    struct ovs_bound_port ports[] = {{&port_c, 9}, {&port_b, 7}, {&port_a, 5}};
    struct ovs_flows f = {0};
    ovs_flows_compute(ports, 3, NULL, 0, NULL, &f);
    assert_string_equal(actions(&f, "table=1,priority=50,reg6=100"), "output:5,output:7");
    assert_string_equal(actions(&f, "table=1,priority=50,reg6=200"), "output:9");
    /* The same address in two networks: each port's traffic is tagged with its own VNI. */
    assert_string_equal(
        actions(&f, "table=0,priority=100,in_port=9,dl_src=52:54:00:00:00:0c,ip,nw_src=10.0.0.5"),
        "load:200->NXM_NX_REG6[],load:9->NXM_NX_REG7[],ct(table=10,zone=NXM_NX_REG7[0..15])");
    /* Only the port with an IPv6 address sends IPv6, tagged with its own VNI, through its
     * egress conntrack. */
    assert_string_equal(
        actions(&f,
                "table=0,priority=100,in_port=7,dl_src=52:54:00:00:00:0b,ipv6,ipv6_src=fd00::6"),
        "load:100->NXM_NX_REG6[],load:7->NXM_NX_REG7[],ct(table=10,zone=NXM_NX_REG7[0..15])");
    for (size_t i = 0; i < f.n; i++)
        if (strstr(f.items[i].key, "ipv6") || strstr(f.items[i].key, "icmp6"))
            assert_true(strstr(f.items[i].key, "in_port=7,") ||
                        !strstr(f.items[i].key, "in_port="));
    /* Every output of a network's flows goes to a port of that network. */
    for (size_t i = 0; i < f.n; i++)
        if (strstr(f.items[i].key, "reg6=200"))
            assert_null(strstr(f.items[i].actions, "output:5"));
    ovs_flows_clear(&f);
}

static void
test_same_ports_same_table_in_any_order(void **state)
{
    (void)state;
    struct ovs_bound_port one[] = {{&port_a, 5}, {&port_b, 7}, {&port_c, 9}};
    struct ovs_bound_port two[] = {{&port_c, 9}, {&port_a, 5}, {&port_b, 7}};
    struct ovs_flows f1 = {0}, f2 = {0};
    ovs_flows_compute(one, 3, NULL, 0, NULL, &f1);
    ovs_flows_compute(two, 3, NULL, 0, NULL, &f2);
    assert_int_equal(f1.n, f2.n);
    for (size_t i = 0; i < f1.n; i++) {
        assert_string_equal(f1.items[i].key, f2.items[i].key);
        assert_string_equal(f1.items[i].actions, f2.items[i].actions);
        if (i > 0)
            assert_true(strcmp(f1.items[i - 1].key, f1.items[i].key) < 0);
    }
    ovs_flows_clear(&f1);
    ovs_flows_clear(&f2);
}

static void
test_unbound_or_malformed_ports_get_nothing(void **state)
{
    (void)state;
    static const char *bad_ips[] = {"10.0.0.7,in_port=1", "10.0.0.300",    "x",
                                    "fd00::7,in_port=1",  "fd00::7::8/64", "fd00::fffff"};
    struct ovs_net_port bad_mac = {"px", 100, "52:54:00:00:00:0d,actions=NORMAL", ips_a, 1};
    struct ovs_net_port bad_ip = {"py", 100, "52:54:00:00:00:0e", bad_ips, 6};
    struct ovs_bound_port ports[] = {{&port_a, 0}, {&bad_mac, 3}, {&bad_ip, 4}};
    struct ovs_flows f = {0};
    ovs_flows_compute(ports, 3, NULL, 0, NULL, &f);
    /* port_a has no ofport yet; bad_mac is refused; bad_ip only gets its delivery flows. */
    for (size_t i = 0; i < f.n; i++) {
        assert_null(strstr(f.items[i].key, "in_port=3"));
        assert_null(strstr(f.items[i].key, "NORMAL"));
        if (strncmp(f.items[i].key, "table=4,", 8) != 0) /* multicast never back to it */
            assert_null(strstr(f.items[i].key, "in_port=4"));
        assert_null(strstr(f.items[i].key, "0a"));
    }
    assert_string_equal(actions(&f, "table=1,priority=50,reg6=100"), "output:4");
    assert_int_equal(n_switching(&f), 22);
    ovs_flows_clear(&f);
}

/* IPv6 multicast that is not Neighbor Discovery reaches each local port through its ingress
 * conntrack and ACL (a copy per port, never to its sender), from a port or a tunnel; ND is
 * flooded as it is; other IPv6 for no local MAC goes to the tunnels only. */
static void
test_ipv6_multicast_passes_each_ports_ingress_acl(void **state)
{
    (void)state;
    struct ovs_bound_port ports[] = {{&port_b, 7}, {&port_a, 5}};
    static const uint32_t vnis_100[] = {100};
    struct ovs_bound_tunnel tunnels[] = {{"10.200.0.2", 20, vnis_100, 1}};
    struct ovs_flows f = {0};
    ovs_flows_compute(ports, 2, tunnels, 1, NULL, &f);
#define MCAST6 "ipv6,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00"
#define COPIES "clone(load:5->NXM_NX_REG7[],resubmit(,4)),clone(load:7->NXM_NX_REG7[],resubmit(,4))"
    assert_string_equal(actions(&f, "table=1,priority=65,reg6=100," MCAST6),
                        COPIES ",load:100->NXM_NX_TUN_ID[],output:20");
    assert_string_equal(actions(&f, "table=2,priority=65,reg6=100," MCAST6), COPIES);
    assert_string_equal(actions(&f, "table=4,priority=50,ipv6"),
                        "ct(table=20,zone=NXM_NX_REG7[0..15])");
    assert_string_equal(actions(&f, "table=4,priority=100,reg7=5,in_port=5"), "drop");
    assert_string_equal(actions(&f, "table=4,priority=100,reg7=7,in_port=7"), "drop");
    assert_string_equal(actions(&f, "table=4,priority=0"), "drop");
    for (int type = 135; type <= 136; type++) {
        char key[96];
        snprintf(key, sizeof(key), "table=1,priority=70,reg6=100,icmp6,icmp_type=%d", type);
        assert_string_equal(actions(&f, key),
                            "output:5,output:7,load:100->NXM_NX_TUN_ID[],output:20");
        snprintf(key, sizeof(key), "table=2,priority=70,reg6=100,icmp6,icmp_type=%d", type);
        assert_string_equal(actions(&f, key), "output:5,output:7");
    }
    assert_string_equal(actions(&f, "table=1,priority=60,reg6=100,ipv6"),
                        "load:100->NXM_NX_TUN_ID[],output:20");
    assert_string_equal(actions(&f, "table=2,priority=60,reg6=100,ipv6"), "drop");
    /* The only flows that output to a local port without its ACL: frames to its MAC that are
     * not IP, ND, and the network's floods of what is neither IPv4 nor IPv6 (ARP). */
    for (size_t i = 0; i < f.n; i++)
        if (strstr(f.items[i].actions, "output:5"))
            assert_true(strstr(f.items[i].key, "priority=100,reg6=100,dl_dst=") ||
                        strstr(f.items[i].key, "icmp_type=13") ||
                        strstr(f.items[i].key, "priority=50,reg6=100"));
    ovs_flows_clear(&f);
#undef MCAST6
#undef COPIES
}

/* The host's side of a tap: a name that is not one interface name is refused before any
 * path is made of it; an interface that does not exist is an error naming it (no pid file:
 * the agent's own namespace). */
static void
test_host_tap_names_are_checked(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "..", ".", "a/b", "../all", "abcdefghijklmnop"};
    for (size_t i = 0; i < NA_ARRAY_SIZE(bad); i++) {
        struct na_error *err = NULL;
        assert_int_equal(ovs_net_tap_ipv6_off("/nonexistent/ovs-vswitchd.pid", bad[i], &err),
                         -EINVAL);
        assert_non_null(strstr(err->msg, "is not a Linux interface name"));
        na_error_free(err);
    }
    struct na_error *err = NULL;
    assert_true(ovs_net_tap_ipv6_off("/nonexistent/ovs-vswitchd.pid", "nodeagent-none", &err) < 0);
    assert_non_null(strstr(err->msg, "net.ipv6.conf.nodeagent-none.disable_ipv6"));
    na_error_free(err);
}

/* IPv6: a port with IPv6 addresses may send from them and from the link-local address its
 * MAC gives (EUI-64); ND only for those addresses and its MAC; DAD from :: only for its own
 * addresses; no Router Advertisement or redirect from anyone. */
static const char *ips_d[] = {"10.0.0.8/24", "FD00:0:0:0::8/64", "2001:db8::8/128"};
static const struct ovs_net_port port_d = {"pd", 100, "52:54:00:12:34:56", ips_d, 3};
#define LL_D "fe80::5054:ff:fe12:3456"
#define FROM_D "table=0,priority=105,in_port=6,dl_src=52:54:00:12:34:56,icmp6,"
#define ADMIT "load:100->NXM_NX_REG6[],resubmit(,1)"
#define TO_ACL_D                                                                                   \
    "load:100->NXM_NX_REG6[],load:6->NXM_NX_REG7[],ct(table=10,zone=NXM_NX_REG7[0..15])"

static void
test_ipv6_from_own_and_link_local_addresses_only(void **state)
{
    (void)state;
    struct ovs_bound_port ports[] = {{&port_d, 6}, {&port_a, 5}};
    struct ovs_flows f = {0};
    ovs_flows_compute(ports, 2, NULL, 0, NULL, &f);
    static const char *const srcs[] = {LL_D, "fd00::8", "2001:db8::8"};
    char key[256];
    for (size_t i = 0; i < NA_ARRAY_SIZE(srcs); i++) {
        snprintf(key, sizeof(key),
                 "table=0,priority=100,in_port=6,dl_src=52:54:00:12:34:56,ipv6,ipv6_src=%s",
                 srcs[i]);
        assert_string_equal(actions(&f, key), TO_ACL_D);
        /* Solicitations from it, naming its MAC or no MAC. */
        snprintf(key, sizeof(key), FROM_D "ipv6_src=%s,icmp_type=135,icmp_code=0,nd_sll=%s",
                 srcs[i], "52:54:00:12:34:56");
        assert_string_equal(actions(&f, key), ADMIT);
        snprintf(key, sizeof(key), FROM_D "ipv6_src=%s,icmp_type=135,icmp_code=0,nd_sll=%s",
                 srcs[i], "00:00:00:00:00:00");
        assert_string_equal(actions(&f, key), ADMIT);
        /* Advertisements of it, from it, naming its MAC or no MAC. */
        snprintf(key, sizeof(key),
                 FROM_D "ipv6_src=%s,icmp_type=136,icmp_code=0,nd_target=%s,nd_tll=%s", srcs[i],
                 srcs[i], "52:54:00:12:34:56");
        assert_string_equal(actions(&f, key), ADMIT);
        snprintf(key, sizeof(key),
                 FROM_D "ipv6_src=%s,icmp_type=136,icmp_code=0,nd_target=%s,nd_tll=%s", srcs[i],
                 srcs[i], "00:00:00:00:00:00");
        assert_string_equal(actions(&f, key), ADMIT);
        /* Duplicate address detection of it. */
        snprintf(key, sizeof(key),
                 FROM_D "ipv6_src=::,icmp_type=135,icmp_code=0,nd_target=%s,nd_sll=%s", srcs[i],
                 "00:00:00:00:00:00");
        assert_string_equal(actions(&f, key), ADMIT);
    }
    assert_string_equal(actions(&f, FROM_D "ipv6_src=::,icmp_type=143"), ADMIT);
    assert_string_equal(actions(&f, FROM_D "ipv6_src=::,icmp_type=131"), ADMIT);
    /* Any other ND from the port meets a drop above its plain IPv6 flows. */
    assert_string_equal(actions(&f, "table=0,priority=104,in_port=6,icmp6,icmp_type=135"), "drop");
    assert_string_equal(actions(&f, "table=0,priority=104,in_port=6,icmp6,icmp_type=136"), "drop");
    /* RA and redirects: dropped above everything, whoever sends them. */
    assert_string_equal(actions(&f, "table=0,priority=110,icmp6,icmp_type=134"), "drop");
    assert_string_equal(actions(&f, "table=0,priority=110,icmp6,icmp_type=137"), "drop");
    /* Exactly these: 3 sources x 6 + 2 MLD + 2 drops; port_a (IPv4 only) has no IPv6 flow,
     * and no flow admits ND naming another address or MAC. */
    size_t from_d = 0;
    for (size_t i = 0; i < f.n; i++) {
        const char *k = f.items[i].key;
        from_d += strstr(k, "in_port=6,") && (strstr(k, "ipv6") || strstr(k, "icmp6"));
        if (strstr(k, "in_port=5,"))
            assert_null(strstr(k, "ipv6"));
        const char *t = strstr(k, "nd_target=");
        if (t && strstr(k, "ipv6_src=") && !strstr(k, "ipv6_src=::,"))
            assert_non_null(strstr(k, "icmp_type=136"));
        assert_null(strstr(k, "icmp_type=134,"));
        if (strstr(k, "nd_sll=") || strstr(k, "nd_tll="))
            assert_true(strstr(k, "ll=52:54:00:12:34:56") || strstr(k, "ll=00:00:00:00:00:00"));
    }
    assert_int_equal(from_d, 3 * 6 + 2 + 2);
    ovs_flows_clear(&f);
}

static void
test_ipv6_link_local_is_eui64_of_the_mac(void **state)
{
    (void)state;
    static const char *ips[] = {"fd00::9/64"};
    /* The universal/local bit of the first octet is inverted: 02 -> 00, 52 -> 50. */
    struct ovs_net_port p = {"pe", 100, "02:AA:bb:00:00:01", ips, 1};
    struct ovs_bound_port ports[] = {{&p, 3}};
    struct ovs_flows f = {0};
    ovs_flows_compute(ports, 1, NULL, 0, NULL, &f);
    assert_non_null(actions(&f, "table=0,priority=100,in_port=3,dl_src=02:aa:bb:00:00:01,ipv6,"
                                "ipv6_src=fe80::aa:bbff:fe00:1"));
    ovs_flows_clear(&f);
}

static const uint32_t vnis_100_300[] = {100, 300};
static const uint32_t vnis_100_200[] = {100, 200};

static void
test_tunnels_carry_only_the_networks_both_sides_host(void **state)
{
    (void)state;
    /* Local: A and B on 100, C on 200.  Peer X (port 20) hosts 100 and 300, peer Y (port
     * 21) hosts 100 and 200. */
    struct ovs_bound_port ports[] = {{&port_a, 5}, {&port_b, 7}, {&port_c, 9}};
    struct ovs_bound_tunnel tunnels[] = {{"10.200.0.2", 20, vnis_100_300, 2},
                                         {"10.200.0.3", 21, vnis_100_200, 2}};
    struct ovs_flows f = {0};
    ovs_flows_compute(ports, 3, tunnels, 2, NULL, &f);
    /* From a local port: local ports first, then the tunnels of peers with the network,
     * the VNI as the tunnel key. */
    assert_string_equal(actions(&f, "table=1,priority=50,reg6=100"),
                        "output:5,output:7,load:100->NXM_NX_TUN_ID[],output:20,output:21");
    assert_string_equal(actions(&f, "table=1,priority=50,reg6=200"),
                        "output:9,load:200->NXM_NX_TUN_ID[],output:21");
    /* From a tunnel: local ports only. */
    assert_string_equal(actions(&f, "table=2,priority=50,reg6=100"), "output:5,output:7");
    assert_string_equal(actions(&f, "table=1,priority=60,reg6=100,ip"),
                        "load:100->NXM_NX_TUN_ID[],output:20,output:21");
    assert_string_equal(actions(&f, "table=2,priority=60,reg6=100,ip"), "drop");
    assert_string_equal(actions(&f, "table=2,priority=50,reg6=200"), "output:9");
    assert_string_equal(actions(&f, "table=2,priority=100,reg6=200,dl_dst=52:54:00:00:00:0c"),
                        "output:9");
    /* Ingress from each tunnel for the shared networks only; 300 is nobody's here. */
    assert_string_equal(actions(&f, "table=0,priority=100,in_port=20,tun_id=100"),
                        "load:100->NXM_NX_REG6[],resubmit(,3)");
    assert_non_null(actions(&f, "table=0,priority=100,in_port=21,tun_id=200"));
    assert_null(actions(&f, "table=0,priority=100,in_port=20,tun_id=200"));
    assert_null(actions(&f, "table=0,priority=100,in_port=20,tun_id=300"));
    size_t ingress = 0;
    for (size_t i = 0; i < f.n; i++) {
        ingress += ovs_flows_is_tunnel_ingress(&f.items[i]);
        assert_null(strstr(f.items[i].key, "300"));
    }
    assert_int_equal(ingress, 3);
    ovs_flows_clear(&f);
}

/* From a tunnel, a source MAC is learned per network, at most OVS_NET_LEARNED_MAX of them,
 * and never one of a local port: such frames are dropped, and the local port's delivery flow
 * outranks anything learned. */
static void
test_learned_macs_are_capped_and_never_a_local_ports(void **state)
{
    (void)state;
    struct ovs_bound_port ports[] = {{&port_a, 5}, {&port_b, 7}, {&port_c, 9}};
    struct ovs_bound_tunnel tunnels[] = {{"10.200.0.2", 20, vnis_100_300, 2},
                                         {"10.200.0.3", 21, vnis_100_200, 2}};
    struct ovs_flows f = {0};
    ovs_flows_compute(ports, 3, tunnels, 2, NULL, &f);
    assert_string_equal(actions(&f, "table=3,priority=100,reg6=100,dl_src=52:54:00:00:00:0a"),
                        "drop");
    assert_string_equal(actions(&f, "table=3,priority=100,reg6=100,dl_src=52:54:00:00:00:0b"),
                        "drop");
    assert_string_equal(actions(&f, "table=3,priority=100,reg6=200,dl_src=52:54:00:00:00:0c"),
                        "drop");
    /* C's MAC is C's network's only. */
    assert_null(actions(&f, "table=3,priority=100,reg6=100,dl_src=52:54:00:00:00:0c"));
    char want[512];
    snprintf(want, sizeof(want),
             "learn(table=1,priority=80,idle_timeout=300,cookie=0x644e42,limit=%u,"
             "NXM_NX_REG6[],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
             "load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:NXM_OF_IN_PORT[]),resubmit(,2)",
             OVS_NET_LEARNED_MAX);
    assert_string_equal(actions(&f, "table=3,priority=50,reg6=100"), want);
    const char *learn200 = actions(&f, "table=3,priority=50,reg6=200");
    assert_non_null(learn200);
    assert_non_null(strstr(learn200, "cookie=0xc84e42,"));
    assert_int_equal(ovs_net_learned_cookie(0x00ffffff), 0xffffff4e42ull);
    /* Learned flows (priority 80) rank below every local port's (100). */
    assert_string_equal(actions(&f, "table=1,priority=100,reg6=100,dl_dst=52:54:00:00:00:0a"),
                        "output:5");
    /* Only table 3 learns, and only a tunnel's ingress leads there. */
    for (size_t i = 0; i < f.n; i++) {
        if (strstr(f.items[i].actions, "learn("))
            assert_non_null(strstr(f.items[i].key, "table=3,priority=50,"));
        if (strstr(f.items[i].actions, "resubmit(,3)"))
            assert_true(ovs_flows_is_tunnel_ingress(&f.items[i]));
    }
    ovs_flows_clear(&f);

    /* Without tunnels, nothing is learned and table 3 is only its drop. */
    ovs_flows_compute(ports, 3, NULL, 0, NULL, &f);
    for (size_t i = 0; i < f.n; i++)
        if (strncmp(f.items[i].key, "table=3,", 8) == 0)
            assert_string_equal(f.items[i].key, "table=3,priority=0");
    ovs_flows_clear(&f);
}

static void
test_a_tunnel_without_a_port_number_gets_nothing(void **state)
{
    (void)state;
    struct ovs_bound_port ports[] = {{&port_a, 5}};
    struct ovs_bound_tunnel tunnels[] = {{"10.200.0.2", 0, vnis_100_300, 2}};
    struct ovs_flows f = {0};
    ovs_flows_compute(ports, 1, tunnels, 1, NULL, &f);
    assert_string_equal(actions(&f, "table=1,priority=50,reg6=100"), "output:5");
    for (size_t i = 0; i < f.n; i++)
        assert_false(ovs_flows_is_tunnel_ingress(&f.items[i]));
    ovs_flows_clear(&f);
}

static void
test_tunnel_port_names(void **state)
{
    (void)state;
    char name[16];
    ovs_net_tunnel_port_name("10.200.0.2", name);
    assert_string_equal(name, "nat0ac80002");
    ovs_net_tunnel_port_name("255.255.255.255", name);
    assert_string_equal(name, "natffffffff");
}

/* A port's limits: its outbound meter on every flow that admits its frames, its inbound
 * meter on the flows that forward to its MAC; the meters' rates in kbit/s rounded down, a
 * default burst of a tenth of a second. */
static void
test_bandwidth_limits_are_meters(void **state)
{
    (void)state;
    struct ovs_net_port limited = port_a;
    limited.bandwidth = (struct ovs_net_bandwidth){
        .inbound_kib_sec = 1000, .inbound_burst_kib = 100, .outbound_kib_sec = 512};
    static const uint32_t vnis_100[] = {100};
    struct ovs_bound_tunnel tunnels[] = {{"10.200.0.2", 20, vnis_100, 1}};
    struct ovs_bound_port ports[] = {{&limited, 5}, {&port_b, 6}};
    struct ovs_flows f = {0};
    ovs_flows_compute(ports, 2, tunnels, 1, NULL, &f);
    assert_string_equal(
        actions(&f, "table=0,priority=100,in_port=5,dl_src=52:54:00:00:00:0a,ip,nw_src=10.0.0.5"),
        "meter:10,load:100->NXM_NX_REG6[],load:5->NXM_NX_REG7[],ct(table=10,zone=NXM_NX_REG7[0..15]"
        ")");
    assert_string_equal(actions(&f, "table=0,priority=100,in_port=5,dl_src=52:54:00:00:00:0a,"
                                    "arp,arp_sha=52:54:00:00:00:0a,arp_spa=10.0.0.5"),
                        "meter:10,load:100->NXM_NX_REG6[],resubmit(,1)");
    assert_string_equal(actions(&f, "table=1,priority=100,reg6=100,dl_dst=52:54:00:00:00:0a"),
                        "meter:11,output:5");
    assert_string_equal(actions(&f, "table=2,priority=100,reg6=100,dl_dst=52:54:00:00:00:0a"),
                        "meter:11,output:5");
    /* IP to it passes its inbound meter before its ingress conntrack. */
    assert_string_equal(actions(&f, "table=1,priority=110,reg6=100,dl_dst=52:54:00:00:00:0a,ip"),
                        "meter:11,load:5->NXM_NX_REG7[],ct(table=20,zone=NXM_NX_REG7[0..15])");
    /* The unlimited port's flows have no meter. */
    for (size_t i = 0; i < f.n; i++)
        if (strstr(f.items[i].key, "in_port=6,") || strstr(f.items[i].actions, "output:6"))
            assert_null(strstr(f.items[i].actions, "meter:"));
    ovs_flows_clear(&f);

    struct ovs_meters m = {0};
    ovs_meters_compute(ports, 2, &m);
    assert_int_equal(m.n, 2);
    /* 512 KiB/s = 4194.304 kbit/s; 1000 KiB/s = 8192 kbit/s; 100 KiB = 819.2 kbit. */
    assert_string_equal(ovs_meters_find(&m, 10)->text,
                        "meter=10,kbps,burst,band=type=drop,rate=4194,burst_size=419");
    assert_string_equal(ovs_meters_find(&m, 11)->text,
                        "meter=11,kbps,burst,band=type=drop,rate=8192,burst_size=819");
    assert_null(ovs_meters_find(&m, 12));
    ovs_meters_clear(&m);

    /* No port number yet: no meter (and no flow). */
    ports[0].ofport = 0;
    ovs_meters_compute(ports, 2, &m);
    assert_int_equal(m.n, 0);
    ovs_meters_clear(&m);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_ports_is_drop_only),
        cmocka_unit_test(test_no_port_or_tunnel_may_answer_dhcp),
        cmocka_unit_test(test_port_may_send_only_from_its_mac_and_addresses),
        cmocka_unit_test(test_networks_are_kept_apart),
        cmocka_unit_test(test_same_ports_same_table_in_any_order),
        cmocka_unit_test(test_ipv6_multicast_passes_each_ports_ingress_acl),
        cmocka_unit_test(test_host_tap_names_are_checked),
        cmocka_unit_test(test_ipv6_from_own_and_link_local_addresses_only),
        cmocka_unit_test(test_ipv6_link_local_is_eui64_of_the_mac),
        cmocka_unit_test(test_unbound_or_malformed_ports_get_nothing),
        cmocka_unit_test(test_tunnels_carry_only_the_networks_both_sides_host),
        cmocka_unit_test(test_learned_macs_are_capped_and_never_a_local_ports),
        cmocka_unit_test(test_a_tunnel_without_a_port_number_gets_nothing),
        cmocka_unit_test(test_tunnel_port_names),
        cmocka_unit_test(test_bandwidth_limits_are_meters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
