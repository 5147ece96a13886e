/* The image sources' address check (qcow2_address_allowed) and CIDR parsing: every refused
 * range at its edges, IPv6, IPv4-mapped and NAT64 forms, and allowed_networks exceptions.
 * Pure functions: no network is touched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "storage/qcow2/qcow2.h"

/* Checks one address (IPv4 or IPv6 text) against the allowed networks (a list of CIDR
 * texts); want_reason NULL means allowed, else a substring of the refusal's reason. */
static void
check(const char *addr, const char *const *allowed_text, size_t n_allowed, const char *want_reason)
{
    struct qcow2_cidr allowed[8];
    assert_true(n_allowed <= 8);
    for (size_t i = 0; i < n_allowed; i++) {
        const char *why = NULL;
        if (qcow2_cidr_parse(allowed_text[i], &allowed[i], &why) < 0)
            fail_msg("%s: %s", allowed_text[i], why);
    }
    struct sockaddr_storage ss = {0};
    size_t size;
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, addr, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(80);
        size = sizeof(*in);
    } else {
        assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(80);
        size = sizeof(*in6);
    }
    const char *reason = NULL;
    bool ok = qcow2_address_allowed((struct sockaddr *)&ss, size, allowed, n_allowed, &reason);
    if (!want_reason && !ok)
        fail_msg("%s refused (%s), want allowed", addr, reason);
    if (want_reason && ok)
        fail_msg("%s allowed, want refused as %s", addr, want_reason);
    if (want_reason && !strstr(reason, want_reason))
        fail_msg("%s refused as \"%s\", want \"%s\"", addr, reason, want_reason);
}

#define REFUSED(addr, reason) check(addr, NULL, 0, reason)
#define ALLOWED(addr) check(addr, NULL, 0, NULL)

static void
test_ipv4_ranges(void **state)
{
    (void)state;
    static const struct {
        const char *first, *last, *reason;
    } ranges[] = {
        {"0.0.0.0", "0.255.255.255", "unspecified"},
        {"10.0.0.0", "10.255.255.255", "private (10.0.0.0/8)"},
        {"100.64.0.0", "100.127.255.255", "CGNAT"},
        {"127.0.0.0", "127.255.255.255", "loopback (127.0.0.0/8)"},
        {"169.254.0.0", "169.254.255.255", "link-local (169.254.0.0/16)"},
        {"172.16.0.0", "172.31.255.255", "private (172.16.0.0/12)"},
        {"192.0.0.0", "192.0.0.255", "IETF protocol assignments"},
        {"192.168.0.0", "192.168.255.255", "private (192.168.0.0/16)"},
        {"224.0.0.0", "239.255.255.255", "multicast"},
        {"240.0.0.0", "255.255.255.254", "reserved"},
        {"255.255.255.255", "255.255.255.255", "broadcast"},
    };
    for (size_t i = 0; i < NA_ARRAY_SIZE(ranges); i++) {
        REFUSED(ranges[i].first, ranges[i].reason);
        REFUSED(ranges[i].last, ranges[i].reason);
    }
    REFUSED("169.254.169.254", "link-local"); /* a cloud's metadata service */
    /* Just outside. */
    ALLOWED("1.0.0.0");
    ALLOWED("9.255.255.255");
    ALLOWED("11.0.0.0");
    ALLOWED("100.63.255.255");
    ALLOWED("100.128.0.0");
    ALLOWED("126.255.255.255");
    ALLOWED("128.0.0.0");
    ALLOWED("169.253.255.255");
    ALLOWED("169.255.0.0");
    ALLOWED("172.15.255.255");
    ALLOWED("172.32.0.0");
    ALLOWED("192.0.1.0");
    ALLOWED("192.167.255.255");
    ALLOWED("192.169.0.0");
    ALLOWED("223.255.255.255");
    ALLOWED("8.8.8.8");
}

static void
test_ipv6_ranges(void **state)
{
    (void)state;
    REFUSED("::", "unspecified (::)");
    REFUSED("::1", "loopback (::1)");
    REFUSED("::2", "IPv4-compatible");
    REFUSED("::7f00:1", "IPv4-compatible");
    REFUSED("fc00::", "unique-local");
    REFUSED("fd12:3456:789a::1", "unique-local");
    REFUSED("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "unique-local");
    REFUSED("fe80::", "link-local (fe80::/10)");
    REFUSED("fe80::1", "link-local");
    REFUSED("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link-local");
    REFUSED("fec0::1", "site-local");
    REFUSED("ff02::1", "multicast");
    REFUSED("ff05::1:3", "multicast");
    REFUSED("64:ff9b:1::1", "local-use NAT64");
    ALLOWED("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    ALLOWED("fe00::1");
    ALLOWED("2001:db8::1");
    ALLOWED("2606:4700:4700::1111");
    ALLOWED("::1:0:0:1"); /* outside ::/96 */
}

/* IPv4-mapped IPv6 addresses are the IPv4 addresses they carry; so are NAT64's. */
static void
test_mapped(void **state)
{
    (void)state;
    REFUSED("::ffff:0.0.0.0", "unspecified");
    REFUSED("::ffff:10.1.2.3", "private (10.0.0.0/8)");
    REFUSED("::ffff:100.64.0.1", "CGNAT");
    REFUSED("::ffff:127.0.0.1", "loopback (127.0.0.0/8)");
    REFUSED("::ffff:7f00:1", "loopback (127.0.0.0/8)");
    REFUSED("::ffff:169.254.169.254", "link-local (169.254.0.0/16)");
    REFUSED("::ffff:172.16.0.1", "private (172.16.0.0/12)");
    REFUSED("::ffff:192.168.1.1", "private (192.168.0.0/16)");
    REFUSED("::ffff:224.0.0.1", "multicast");
    REFUSED("::ffff:255.255.255.255", "broadcast");
    ALLOWED("::ffff:8.8.8.8");
    REFUSED("64:ff9b::127.0.0.1", "loopback (127.0.0.0/8)");
    REFUSED("64:ff9b::a9fe:a9fe", "link-local (169.254.0.0/16)");
    REFUSED("64:ff9b::10.0.0.1", "private");
    ALLOWED("64:ff9b::8.8.8.8");
}

static void
test_allowed_networks(void **state)
{
    (void)state;
    static const char *const lo[] = {"127.0.0.0/8"};
    check("127.0.0.1", lo, 1, NULL);
    check("127.255.255.254", lo, 1, NULL);
    check("::ffff:127.0.0.1", lo, 1, NULL); /* the mapped form follows the IPv4 list */
    check("64:ff9b::127.0.0.1", lo, 1, NULL);
    check("::1", lo, 1, "loopback (::1)"); /* IPv6 loopback is not 127.0.0.0/8 */
    check("10.0.0.1", lo, 1, "private");
    check("169.254.169.254", lo, 1, "link-local");

    static const char *const one[] = {"127.0.0.2/32"};
    check("127.0.0.2", one, 1, NULL);
    check("127.0.0.1", one, 1, "loopback");
    check("127.0.0.3", one, 1, "loopback");

    static const char *const several[] = {"10.20.30.0/24", "fd12:3456::/32", "::1/128",
                                          "::ffff:192.168.7.0/120"};
    check("10.20.30.255", several, 4, NULL);
    check("10.20.31.0", several, 4, "private");
    check("fd12:3456:ffff::1", several, 4, NULL);
    check("fd12:3457::1", several, 4, "unique-local");
    check("::1", several, 4, NULL);
    check("192.168.7.9", several, 4, NULL); /* an IPv6 CIDR over mapped addresses */
    check("192.168.8.9", several, 4, "private");
    check("8.8.8.8", several, 4, NULL); /* public: always */

    static const char *const all[] = {"0.0.0.0/0", "::/0"};
    check("169.254.169.254", all, 2, NULL);
    check("fe80::1", all, 2, NULL);
}

static void
test_not_ip(void **state)
{
    (void)state;
    struct sockaddr sa = {.sa_family = AF_UNIX};
    const char *reason = NULL;
    assert_false(qcow2_address_allowed(&sa, sizeof(sa), NULL, 0, &reason));
    assert_string_equal(reason, "not an IPv4 or IPv6 address");
    /* A truncated IPv6 sockaddr is not read past its size. */
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    assert_false(qcow2_address_allowed((struct sockaddr *)&in6, sizeof(struct sockaddr_in), NULL, 0,
                                       &reason));
}

static void
test_cidr_parse(void **state)
{
    (void)state;
    struct qcow2_cidr c;
    const char *why = NULL;
    assert_int_equal(qcow2_cidr_parse("127.0.0.0/8", &c, &why), 0);
    assert_int_equal(c.prefix_len, 104);
    assert_int_equal(c.addr[10], 0xff);
    assert_int_equal(c.addr[12], 127);
    assert_int_equal(qcow2_cidr_parse("0.0.0.0/0", &c, &why), 0);
    assert_int_equal(c.prefix_len, 96);
    assert_int_equal(qcow2_cidr_parse("fd00::/8", &c, &why), 0);
    assert_int_equal(c.prefix_len, 8);
    assert_int_equal(qcow2_cidr_parse("::/0", &c, &why), 0);
    assert_int_equal(qcow2_cidr_parse("10.1.2.3/32", &c, &why), 0);
    assert_int_equal(qcow2_cidr_parse("::1/128", &c, &why), 0);

    static const struct {
        const char *text, *why;
    } bad[] = {
        {"127.0.0.1", "is not an address, '/' and a prefix length"},
        {"/8", "is not an address, '/' and a prefix length"},
        {"", "is not an address, '/' and a prefix length"},
        {"localhost/8", "does not start with an IPv4 or IPv6 address"},
        {"127.0.0/8", "does not start with an IPv4 or IPv6 address"},
        {"127.0.0.0/33", "has no prefix length from 0 to 32"},
        {"127.0.0.0/", "has no prefix length from 0 to 32"},
        {"127.0.0.0/-1", "has no prefix length from 0 to 32"},
        {"127.0.0.0/+8", "has no prefix length from 0 to 32"},
        {"127.0.0.0/8x", "has no prefix length from 0 to 32"},
        {"fd00::/129", "has no prefix length from 0 to 128"},
        {"127.0.0.1/8", "has bits set past its prefix length"},
        {"fd00::1/8", "has bits set past its prefix length"},
        {"1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc:dddd/8",
         "is not an address, '/' and a prefix length"},
    };
    for (size_t i = 0; i < NA_ARRAY_SIZE(bad); i++) {
        why = NULL;
        if (qcow2_cidr_parse(bad[i].text, &c, &why) == 0)
            fail_msg("\"%s\" accepted", bad[i].text);
        if (!why || strcmp(why, bad[i].why) != 0)
            fail_msg("\"%s\": \"%s\", want \"%s\"", bad[i].text, why ? why : "(null)", bad[i].why);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ipv4_ranges), cmocka_unit_test(test_ipv6_ranges),
        cmocka_unit_test(test_mapped),      cmocka_unit_test(test_allowed_networks),
        cmocka_unit_test(test_not_ip),      cmocka_unit_test(test_cidr_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
