/* The security groups' conntrack stage as net/ovs computes it: port ranges as exact bitmask
 * covers, rules as conjunctions (flows grow as ports + members, not ports x members), the
 * default group, and changes that touch only the flows they change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/ovs/ovs-private.h"

static const char *ips_a[] = {"10.0.0.5/24"};
static const char *ips_b[] = {"10.0.0.6/24"};
static const char *web[] = {"web"};

/* TCP 22 from anywhere, TCP 5432 from the members of "web", egress anywhere. */
static const struct ovs_sg_rule web_rules[] = {
    {.egress = false, .protocol = 6, .port_min = 22, .port_max = 22, .remote_cidr = "0.0.0.0/0"},
    {.egress = false, .protocol = 6, .port_min = 5432, .port_max = 5432, .remote_group = "web"},
    {.egress = true},
};

static const char *
actions(const struct ovs_flows *f, const char *key)
{
    const struct ovs_flow *flow = ovs_flows_find(f, key);
    return flow ? flow->actions : NULL;
}

/* The flows of a that b lacks or has with other actions. */
static size_t
diff(const struct ovs_flows *a, const struct ovs_flows *b, const char **first)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++) {
        const char *other = actions(b, a->items[i].key);
        if (!other || strcmp(other, a->items[i].actions) != 0) {
            if (first && !n)
                *first = a->items[i].key;
            n++;
        }
    }
    return n;
}

static void
compute(const struct ovs_net_port *const *ports, size_t n, const struct ovs_sg *groups,
        size_t n_groups, struct ovs_flows *out)
{
    struct ovs_bound_port bound[8];
    for (size_t i = 0; i < n; i++)
        bound[i] = (struct ovs_bound_port){ports[i], (int)(5 + 2 * i)};
    struct ovs_sg_set set = {(struct ovs_sg *)groups, n_groups};
    ovs_flows_compute(bound, n, NULL, 0, &set, out);
}

static void
test_port_ranges_are_exact_bitmask_covers(void **state)
{
    (void)state;
    static const uint16_t ranges[][2] = {{22, 22},       {1, 65535}, {1000, 1999}, {5432, 5439},
                                         {65535, 65535}, {1, 1},     {8000, 8080}};
    for (size_t r = 0; r < sizeof(ranges) / sizeof(ranges[0]); r++) {
        char *masks[32];
        size_t n = ovs_flows_port_range_masks(ranges[r][0], ranges[r][1], masks);
        assert_true(n >= 1 && n <= 30);
        uint32_t value[32], mask[32];
        for (size_t i = 0; i < n; i++) {
            char *slash = strchr(masks[i], '/');
            value[i] = (uint32_t)strtoul(masks[i], NULL, 0);
            mask[i] = slash ? (uint32_t)strtoul(slash + 1, NULL, 0) : 0xffffu;
            free(masks[i]);
        }
        for (uint32_t port = 0; port <= 0xffff; port++) {
            size_t hits = 0;
            for (size_t i = 0; i < n; i++)
                hits += (port & mask[i]) == value[i];
            bool in = port >= ranges[r][0] && port <= ranges[r][1];
            assert_int_equal(hits, in ? 1 : 0); /* covered once, nothing outside */
        }
    }
    char *one[32];
    assert_int_equal(ovs_flows_port_range_masks(22, 22, one), 1);
    assert_string_equal(one[0], "22");
    free(one[0]);
}

static void
test_rules_are_conjunctions_of_port_remote_and_protocol(void **state)
{
    (void)state;
    const char *members[] = {"10.0.1.9"};
    struct ovs_sg g = {"web", web_rules, 3, members, 1};
    struct ovs_net_port a = {"pa", 100, "52:54:00:00:00:0a", ips_a, 1, {0}, web, 1};
    struct ovs_net_port b = {"pb", 100, "52:54:00:00:00:0b", ips_b, 1, {0}, NULL, 0};
    const struct ovs_net_port *ports[] = {&a, &b};
    struct ovs_flows f = {0};
    compute(ports, 2, &g, 1, &f);

    /* Port a (ofport 5) is in both ingress rules' conjunctions; b (7) in none. */
    const char *a_in = actions(&f, "table=20,priority=100,reg7=5");
    assert_non_null(a_in);
    assert_int_equal((int)(strstr(strstr(a_in, "conjunction(") + 1, "conjunction(") != NULL), 1);
    assert_null(actions(&f, "table=20,priority=100,reg7=7"));
    /* The remote group's members: the put's address and the local member's own. */
    assert_non_null(strstr(actions(&f, "table=20,priority=100,ip,nw_src=10.0.1.9"), ",2/3)"));
    assert_non_null(strstr(actions(&f, "table=20,priority=100,ip,nw_src=10.0.0.5"), ",2/3)"));
    assert_null(actions(&f, "table=20,priority=100,ip,nw_src=10.0.0.6"));
    /* 22 from anywhere: only the ethertype as remote. */
    assert_non_null(strstr(actions(&f, "table=20,priority=100,ip"), ",2/3)"));
    assert_non_null(strstr(actions(&f, "table=20,priority=100,tcp,tp_dst=22"), ",3/3)"));
    assert_non_null(strstr(actions(&f, "table=20,priority=100,tcp,tp_dst=5432"), ",3/3)"));
    /* Each conjunction commits in the port's zone and delivers to it. */
    size_t n_conj = 0;
    for (size_t i = 0; i < f.n; i++)
        if (strncmp(f.items[i].key, "table=20,priority=100,conj_id=", 30) == 0) {
            n_conj++;
            assert_string_equal(f.items[i].actions,
                                "ct(commit,zone=NXM_NX_REG7[0..15],exec(load:0->NXM_NX_CT_MARK[])),"
                                "output:NXM_NX_REG7[]");
        }
    assert_int_equal(n_conj, 2);
    /* A network is written canonically; one of the other family matches nothing. */
    static const struct ovs_sg_rule odd[] = {
        {.protocol = 17, .remote_cidr = "10.1.0.0/16"},
        {.protocol = 17, .remote_cidr = "2001:db8::/32"},
        {.ipv6 = true, .protocol = 17, .remote_cidr = "2001:0db8:0::/48"},
    };
    struct ovs_sg og = {"odd", odd, 3, NULL, 0};
    struct ovs_net_port o = {"po", 100, "52:54:00:00:00:0c",     ips_a,
                             1,    {0}, (const char *[]){"odd"}, 1};
    const struct ovs_net_port *oports[] = {&o};
    struct ovs_flows of = {0};
    compute(oports, 1, &og, 1, &of);
    assert_non_null(actions(&of, "table=20,priority=100,ip,nw_src=10.1.0.0/16"));
    assert_non_null(actions(&of, "table=20,priority=100,ipv6,ipv6_src=2001:db8::/48"));
    for (size_t i = 0; i < of.n; i++)
        assert_null(strstr(of.items[i].key, "ipv6_src=2001:db8::/32"));
    ovs_flows_clear(&of);
    /* The fixed stages: invalid dropped, replies accepted unless cut, the rest cut. */
    assert_string_equal(actions(&f, "table=20,priority=200,ct_state=+inv+trk"), "drop");
    assert_string_equal(actions(&f, "table=20,priority=190,ct_state=+est+rpl-inv+trk,ct_mark=0"),
                        "output:NXM_NX_REG7[]");
    assert_string_equal(actions(&f, "table=20,priority=180,ct_state=+trk,ct_mark=0x1"), "drop");
    assert_string_equal(actions(&f, "table=20,priority=10,ct_state=+est-rel-rpl+trk,ip"),
                        "ct(commit,zone=NXM_NX_REG7[0..15],exec(load:1->NXM_NX_CT_MARK[]))");
    assert_string_equal(actions(&f, "table=20,priority=0"), "drop");
    ovs_flows_clear(&f);
}

/* A port without a group: egress IPv4 and IPv6 anywhere, no ingress rule. */
/* ICMP rules by type, or type and code: the protocol clause says them; three rules of one
 * protocol are three conjunctions with three clauses (and a rule without a type, all ICMP). */
static void
test_icmp_rules_match_their_type_and_code(void **state)
{
    (void)state;
    static const struct ovs_sg_rule icmp[] = {
        {.protocol = 1, .icmp_typed = true, .icmp_type = 8},
        {.ipv6 = true, .protocol = 1, .icmp_typed = true, .icmp_type = 128, .icmp_coded = true},
        {.ipv6 = true,
         .protocol = 1,
         .icmp_typed = true,
         .icmp_type = 1,
         .icmp_coded = true,
         .icmp_code = 4},
        {.egress = true, .protocol = 1},
    };
    struct ovs_sg g = {"ping", icmp, NA_ARRAY_SIZE(icmp), NULL, 0};
    struct ovs_net_port a = {"pa", 100, "52:54:00:00:00:0a",      ips_a,
                             1,    {0}, (const char *[]){"ping"}, 1};
    const struct ovs_net_port *ports[] = {&a};
    struct ovs_flows f = {0};
    compute(ports, 1, &g, 1, &f);
    const char *echo = actions(&f, "table=20,priority=100,icmp,icmp_type=8");
    assert_non_null(echo);
    assert_non_null(strstr(echo, ",3/3)"));
    assert_non_null(
        strstr(actions(&f, "table=20,priority=100,icmp6,icmp_type=128,icmp_code=0"), ",3/3)"));
    assert_non_null(
        strstr(actions(&f, "table=20,priority=100,icmp6,icmp_type=1,icmp_code=4"), ",3/3)"));
    assert_non_null(strstr(actions(&f, "table=10,priority=100,icmp"), ",3/3)"));
    /* No other ICMP clause: the type-only rule does not match every ICMP. */
    size_t n_icmp = 0;
    for (size_t i = 0; i < f.n; i++)
        n_icmp += strstr(f.items[i].key, ",icmp") != NULL && strstr(f.items[i].key, "table=20");
    assert_int_equal(n_icmp, 3);
    /* Type 8 and type 8 with code 0 are two rules, not one. */
    static const struct ovs_sg_rule two[] = {
        {.protocol = 1, .icmp_typed = true, .icmp_type = 8},
        {.protocol = 1, .icmp_typed = true, .icmp_type = 8, .icmp_coded = true},
    };
    struct ovs_sg g2 = {"ping", two, 2, NULL, 0};
    struct ovs_flows f2 = {0};
    compute(ports, 1, &g2, 1, &f2);
    size_t n_conj = 0;
    for (size_t i = 0; i < f2.n; i++)
        n_conj += strncmp(f2.items[i].key, "table=20,priority=100,conj_id=", 30) == 0;
    assert_int_equal(n_conj, 2);
    assert_non_null(actions(&f2, "table=20,priority=100,icmp,icmp_type=8,icmp_code=0"));
    ovs_flows_clear(&f2);
    ovs_flows_clear(&f);
}

static void
test_the_default_group(void **state)
{
    (void)state;
    struct ovs_net_port b = {"pb", 100, "52:54:00:00:00:0b", ips_b, 1, {0}, NULL, 0};
    const struct ovs_net_port *ports[] = {&b};
    struct ovs_flows f = {0};
    compute(ports, 1, NULL, 0, &f);
    const char *out = actions(&f, "table=10,priority=100,reg7=5");
    assert_non_null(out);
    assert_non_null(strstr(out, ",1/2),conjunction("));
    assert_non_null(strstr(actions(&f, "table=10,priority=100,ip"), ",2/2)"));
    assert_non_null(strstr(actions(&f, "table=10,priority=100,ipv6"), ",2/2)"));
    for (size_t i = 0; i < f.n; i++)
        assert_null(strstr(f.items[i].key, "table=20,priority=100,"));
    ovs_flows_clear(&f);
}

/* A member joining the remote group adds the flow of its address and nothing else. */
static void
test_a_new_member_adds_one_flow(void **state)
{
    (void)state;
    const char *one[] = {"10.0.1.9"};
    const char *two[] = {"10.0.1.9", "10.0.1.10"};
    struct ovs_sg g1 = {"web", web_rules, 3, one, 1};
    struct ovs_sg g2 = {"web", web_rules, 3, two, 2};
    struct ovs_net_port a = {"pa", 100, "52:54:00:00:00:0a", ips_a, 1, {0}, web, 1};
    struct ovs_net_port b = {"pb", 100, "52:54:00:00:00:0b", ips_b, 1, {0}, NULL, 0};
    const struct ovs_net_port *ports[] = {&a, &b};
    struct ovs_flows f1 = {0}, f2 = {0};
    compute(ports, 2, &g1, 1, &f1);
    compute(ports, 2, &g2, 1, &f2);
    const char *key = NULL;
    assert_int_equal(diff(&f1, &f2, NULL), 0);
    assert_int_equal(diff(&f2, &f1, &key), 1);
    assert_string_equal(key, "table=20,priority=100,ip,nw_src=10.0.1.10");
    ovs_flows_clear(&f1);
    ovs_flows_clear(&f2);
}

/* A rule removed takes its own flows; the other rules keep theirs (their conjunction ids
 * do not move), save the clauses they shared, which lose its conjunction. */
static void
test_a_removed_rule_takes_only_its_flows(void **state)
{
    (void)state;
    const char *members[] = {"10.0.1.9"};
    static const struct ovs_sg_rule without_5432[] = {web_rules[0], web_rules[2]};
    struct ovs_sg before = {"web", web_rules, 3, members, 1};
    struct ovs_sg after = {"web", without_5432, 2, members, 1};
    struct ovs_net_port a = {"pa", 100, "52:54:00:00:00:0a", ips_a, 1, {0}, web, 1};
    const struct ovs_net_port *ports[] = {&a};
    struct ovs_flows f1 = {0}, f2 = {0};
    compute(ports, 1, &before, 1, &f1);
    compute(ports, 1, &after, 1, &f2);
    assert_null(actions(&f2, "table=20,priority=100,tcp,tp_dst=5432"));
    assert_null(actions(&f2, "table=20,priority=100,ip,nw_src=10.0.1.9"));
    assert_string_equal(actions(&f1, "table=20,priority=100,tcp,tp_dst=22"),
                        actions(&f2, "table=20,priority=100,tcp,tp_dst=22"));
    /* What changed or went: 5432's conj_id, its port, member and address clauses, and the
     * port clause it shared with 22. */
    assert_int_equal(diff(&f1, &f2, NULL), 5);
    assert_int_equal(diff(&f2, &f1, NULL), 0 + 1);
    ovs_flows_clear(&f1);
    ovs_flows_clear(&f2);
}

/* 6 ports in the group and 200 members: the rule flows are ports + members, not their
 * product. */
static void
test_flows_grow_as_ports_plus_members(void **state)
{
    (void)state;
    enum { N_MEMBERS = 200, N_PORTS = 6 };
    char *buf[N_MEMBERS];
    const char *members[N_MEMBERS];
    for (int i = 0; i < N_MEMBERS; i++) {
        buf[i] = malloc(32);
        snprintf(buf[i], 32, "10.1.%d.%d", i / 200, i % 200 + 1);
        members[i] = buf[i];
    }
    static const char *ips[N_PORTS][1] = {{"10.0.0.1"}, {"10.0.0.2"}, {"10.0.0.3"},
                                          {"10.0.0.4"}, {"10.0.0.5"}, {"10.0.0.6"}};
    struct ovs_net_port p[N_PORTS];
    const struct ovs_net_port *ports[N_PORTS];
    char macs[N_PORTS][18];
    for (int i = 0; i < N_PORTS; i++) {
        snprintf(macs[i], sizeof(macs[i]), "52:54:00:00:01:%02x", i + 1);
        p[i] = (struct ovs_net_port){"p", 100, macs[i], ips[i], 1, {0}, web, 1};
        ports[i] = &p[i];
    }
    struct ovs_sg g = {"web", web_rules, 3, members, N_MEMBERS};
    struct ovs_flows f = {0};
    compute(ports, N_PORTS, &g, 1, &f);
    size_t n_ingress_rules = 0;
    for (size_t i = 0; i < f.n; i++)
        n_ingress_rules += strncmp(f.items[i].key, "table=20,priority=100,", 22) == 0;
    /* ports + members + local members + (ip, tcp 22, tcp 5432) + 2 conj_id flows */
    assert_int_equal(n_ingress_rules, N_PORTS + N_MEMBERS + N_PORTS + 3 + 2);
    ovs_flows_clear(&f);
    for (int i = 0; i < N_MEMBERS; i++)
        free(buf[i]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_port_ranges_are_exact_bitmask_covers),
        cmocka_unit_test(test_rules_are_conjunctions_of_port_remote_and_protocol),
        cmocka_unit_test(test_icmp_rules_match_their_type_and_code),
        cmocka_unit_test(test_the_default_group),
        cmocka_unit_test(test_a_new_member_adds_one_flow),
        cmocka_unit_test(test_a_removed_rule_takes_only_its_flows),
        cmocka_unit_test(test_flows_grow_as_ports_plus_members),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
