/* hv_stats_parse(): libvirt's bulk stats of one domain, as typed parameters, into
 * struct hv_guest_stats: units (balloon KiB to bytes), indexed disks, NICs and vCPUs,
 * and what is skipped (other domains, mistyped values, indices past the counts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>

#include "hypervisor/hypervisor-private.h"

#define UUID "0b4e2c38-9f7a-4d7e-8a51-3c2f9e4d1a60"

static virTypedParameter
ull(const char *field, unsigned long long v)
{
    virTypedParameter p = {.type = VIR_TYPED_PARAM_ULLONG};
    snprintf(p.field, sizeof(p.field), "%s", field);
    p.value.ul = v;
    return p;
}

static virTypedParameter
ui(const char *field, unsigned v)
{
    virTypedParameter p = {.type = VIR_TYPED_PARAM_UINT};
    snprintf(p.field, sizeof(p.field), "%s", field);
    p.value.ui = v;
    return p;
}

static virTypedParameter
str(const char *field, char *v)
{
    virTypedParameter p = {.type = VIR_TYPED_PARAM_STRING};
    snprintf(p.field, sizeof(p.field), "%s", field);
    p.value.s = v;
    return p;
}

static void
test_full_record(void **state)
{
    (void)state;
    char vda[] = "vda", tap[] = "tap0b4e2c389f";
    virTypedParameter params[] = {
        ull("cpu.time", 7000000000ULL),
        ull("cpu.user", 5000000000ULL),
        ull("cpu.system", 1000000000ULL),
        ull("balloon.current", 262144),
        ull("balloon.maximum", 262144),
        ull("balloon.unused", 100000),
        ull("balloon.available", 240000),
        ull("balloon.rss", 150000),
        ui("vcpu.current", 2),
        ui("vcpu.maximum", 2),
        ull("vcpu.0.time", 3000000000ULL),
        ull("vcpu.1.time", 1000000000ULL),
        ui("net.count", 1),
        str("net.0.name", tap),
        ull("net.0.rx.bytes", 1000),
        ull("net.0.rx.pkts", 10),
        ull("net.0.rx.errs", 1),
        ull("net.0.rx.drop", 2),
        ull("net.0.tx.bytes", 2000),
        ull("net.0.tx.pkts", 20),
        ull("net.0.tx.errs", 3),
        ull("net.0.tx.drop", 4),
        ui("block.count", 1),
        str("block.0.name", vda),
        ull("block.0.rd.reqs", 5),
        ull("block.0.rd.bytes", 4096),
        ull("block.0.rd.times", 123),
        ull("block.0.wr.reqs", 6),
        ull("block.0.wr.bytes", 8192),
        ull("block.0.wr.times", 456),
        ull("block.0.capacity", 1ULL << 30),
    };
    struct hv_guest_stats s;
    assert_int_equal(hv_stats_parse("na-" UUID, params, (int)NA_ARRAY_SIZE(params), &s), 0);
    assert_string_equal(s.uuid, UUID);
    assert_int_equal(s.cpu_time_ns, 7000000000LL);
    assert_int_equal(s.cpu_user_ns, 5000000000LL);
    assert_int_equal(s.cpu_system_ns, 1000000000LL);
    assert_int_equal(s.memory_actual, 262144LL * 1024);
    assert_int_equal(s.memory_unused, 100000LL * 1024);
    assert_int_equal(s.memory_available, 240000LL * 1024);
    assert_int_equal(s.memory_rss, 150000LL * 1024);
    assert_int_equal(s.n_vcpus, 2);
    assert_int_equal(s.vcpu_time_ns[0], 3000000000LL);
    assert_int_equal(s.vcpu_time_ns[1], 1000000000LL);
    assert_int_equal(s.n_nics, 1);
    assert_string_equal(s.nics[0].name, "tap0b4e2c389f");
    assert_int_equal(s.nics[0].rx_bytes, 1000);
    assert_int_equal(s.nics[0].rx_pkts, 10);
    assert_int_equal(s.nics[0].rx_errs, 1);
    assert_int_equal(s.nics[0].rx_drop, 2);
    assert_int_equal(s.nics[0].tx_bytes, 2000);
    assert_int_equal(s.nics[0].tx_pkts, 20);
    assert_int_equal(s.nics[0].tx_errs, 3);
    assert_int_equal(s.nics[0].tx_drop, 4);
    assert_int_equal(s.n_disks, 1);
    assert_string_equal(s.disks[0].name, "vda");
    assert_int_equal(s.disks[0].rd_reqs, 5);
    assert_int_equal(s.disks[0].rd_bytes, 4096);
    assert_int_equal(s.disks[0].rd_time_ns, 123);
    assert_int_equal(s.disks[0].wr_reqs, 6);
    assert_int_equal(s.disks[0].wr_bytes, 8192);
    assert_int_equal(s.disks[0].wr_time_ns, 456);
    hv_guest_stats_clear(&s);
}

/* A guest without a balloon driver: libvirt reports the actual size and the RSS only. */
static void
test_missing_figures_are_none(void **state)
{
    (void)state;
    virTypedParameter params[] = {ull("balloon.current", 1024), ull("balloon.rss", 2048)};
    struct hv_guest_stats s;
    assert_int_equal(hv_stats_parse("na-" UUID, params, 2, &s), 0);
    assert_int_equal(s.memory_actual, 1024 * 1024);
    assert_int_equal(s.memory_rss, 2048 * 1024);
    assert_int_equal(s.memory_unused, HV_STAT_NONE);
    assert_int_equal(s.memory_available, HV_STAT_NONE);
    assert_int_equal(s.cpu_time_ns, HV_STAT_NONE);
    assert_int_equal(s.n_vcpus, 0);
    assert_int_equal(s.n_disks, 0);
    assert_int_equal(s.n_nics, 0);
    hv_guest_stats_clear(&s);
}

/* Indices at or past the counts, absurd counts, mistyped and negative values. */
static void
test_out_of_range_is_skipped(void **state)
{
    (void)state;
    char vdb[] = "vdb";
    virTypedParameter neg = {.type = VIR_TYPED_PARAM_LLONG, .field = "cpu.user"};
    neg.value.l = -5;
    virTypedParameter dbl = {.type = VIR_TYPED_PARAM_DOUBLE, .field = "cpu.system"};
    dbl.value.d = 1.5;
    virTypedParameter params[] = {
        ui("block.count", 1),
        str("block.1.name", vdb),
        ull("block.1.wr.bytes", 99),
        ull("block.0.wr.bytes", 7),
        ui("block.0.name", 3), /* a name that is not a string */
        ui("net.count", 4000000000u),
        ull("net.0.rx.bytes", 1),
        ull("net.99.rx.bytes", 1),
        ull("net.x.rx.bytes", 1),
        ui("vcpu.maximum", 1),
        ull("vcpu.1.time", 5),
        ull("cpu.time", 0xffffffffffffffffULL),
        neg,
        dbl,
        ull("balloon.current", 0x7fffffffffffffffULL),
    };
    struct hv_guest_stats s;
    assert_int_equal(hv_stats_parse("na-" UUID, params, (int)NA_ARRAY_SIZE(params), &s), 0);
    assert_int_equal(s.n_disks, 1);
    assert_string_equal(s.disks[0].name, "");
    assert_int_equal(s.disks[0].wr_bytes, 7);
    assert_int_equal(s.disks[0].rd_bytes, HV_STAT_NONE);
    assert_int_equal(s.n_nics, HV_STATS_MAX_NICS);
    assert_int_equal(s.nics[0].rx_bytes, 1);
    assert_int_equal(s.n_vcpus, 1);
    assert_int_equal(s.vcpu_time_ns[0], HV_STAT_NONE);
    assert_int_equal(s.cpu_time_ns, HV_STAT_NONE);
    assert_int_equal(s.cpu_user_ns, HV_STAT_NONE);
    assert_int_equal(s.cpu_system_ns, HV_STAT_NONE);
    assert_int_equal(s.memory_actual, HV_STAT_NONE);
    hv_guest_stats_clear(&s);
}

static void
test_other_domains_are_refused(void **state)
{
    (void)state;
    struct hv_guest_stats s;
    assert_int_equal(hv_stats_parse("web-1", NULL, 0, &s), -EINVAL);
    assert_int_equal(hv_stats_parse("na-not-a-uuid", NULL, 0, &s), -EINVAL);
    assert_int_equal(hv_stats_parse("na-" UUID "x", NULL, 0, &s), -EINVAL);
    assert_int_equal(hv_stats_parse(NULL, NULL, 0, &s), -EINVAL);
    hv_guest_stats_clear(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_record),
        cmocka_unit_test(test_missing_figures_are_none),
        cmocka_unit_test(test_out_of_range_is_skipped),
        cmocka_unit_test(test_other_domains_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
