/* The capacity arithmetic of agent/outputs/capacity.c: Placement's limit of a resource class and
 * the admission check that refuses with NO_CAPACITY, saying what is free. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/outputs/capacity.h"

static struct sched_inventory
inventory(uint64_t vcpu, uint64_t mem, uint64_t disk)
{
    struct sched_inventory inv = {.n_resources = 3};
    const char *names[] = {SCHED_RC_VCPU, SCHED_RC_MEMORY_MB, SCHED_RC_DISK_GB};
    uint64_t totals[] = {vcpu, mem, disk};
    for (size_t i = 0; i < 3; i++)
        inv.resources[i] = (struct sched_resource){names[i], totals[i], 0, 1, totals[i], 1, 1.0};
    return inv;
}

static void
test_limit_is_total_minus_reserved_times_ratio(void **state)
{
    (void)state;
    struct sched_resource r = {SCHED_RC_VCPU, 8, 2, 1, 8, 1, 4.0};
    assert_int_equal(agent_capacity_limit(&r), 24);
    r.allocation_ratio = 1.5;
    r.reserved = 1;
    assert_int_equal(agent_capacity_limit(&r), 10); /* 7 x 1.5 = 10.5, rounded down */
    r.reserved = 8;
    assert_int_equal(agent_capacity_limit(&r), 0);
    r.reserved = 9; /* never negative */
    assert_int_equal(agent_capacity_limit(&r), 0);
    r.reserved = 0;
    r.allocation_ratio = 0; /* unset: 1.0 */
    assert_int_equal(agent_capacity_limit(&r), 8);
}

static void
test_fit_up_to_the_limit_and_not_beyond(void **state)
{
    (void)state;
    struct sched_inventory inv = inventory(4, 4096, 100);
    inv.resources[0].allocation_ratio = 2.0; /* 8 VCPU to sell, at most 4 per instance */
    struct agent_claim used = {6, 3072, 90};
    struct agent_claim need = {2, 1024, 10};
    struct na_error *err = NULL;
    assert_int_equal(agent_capacity_fit(&inv, &used, &need, "x", &err), 0);
    assert_null(err);

    need.memory_mb = 1025;
    assert_true(agent_capacity_fit(&inv, &used, &need, "instance u does not fit on node n1", &err) <
                0);
    assert_int_equal(err->code, NA_CODE_NO_CAPACITY);
    assert_string_equal(err->msg, "instance u does not fit on node n1: it needs 2 VCPU, 1025 "
                                  "MEMORY_MB and 10 DISK_GB; free are 2 VCPU, 1024 MEMORY_MB "
                                  "and 10 DISK_GB");
    na_error_free(err);
    err = NULL;

    /* More than one instance may have (max_unit), however empty the node. */
    struct agent_claim none = {0};
    struct agent_claim big = {5, 1, 1};
    assert_true(agent_capacity_fit(&inv, &none, &big, "x", &err) < 0);
    assert_non_null(strstr(err->msg, "one instance may have at most 4 VCPU"));
    na_error_free(err);
}

static void
test_fit_when_used_is_over_the_limit(void **state)
{
    (void)state;
    /* The host shrank (or reserved grew) under running instances: nothing more fits, and
     * free is 0, not a wrapped-around number. */
    struct sched_inventory inv = inventory(2, 1024, 10);
    struct agent_claim used = {3, 2048, 20};
    struct agent_claim need = {1, 64, 1};
    struct na_error *err = NULL;
    assert_true(agent_capacity_fit(&inv, &used, &need, "x", &err) < 0);
    assert_non_null(strstr(err->msg, "free are 0 VCPU, 0 MEMORY_MB and 0 DISK_GB"));
    na_error_free(err);
}

static void
test_a_class_missing_from_the_inventory_fits_nothing(void **state)
{
    (void)state;
    /* A state directory under 1 GiB has no DISK_GB inventory. */
    struct sched_inventory inv = inventory(2, 1024, 10);
    inv.n_resources = 2;
    struct agent_claim used = {0};
    struct agent_claim need = {1, 64, 1};
    struct na_error *err = NULL;
    assert_true(agent_capacity_fit(&inv, &used, &need, "x", &err) < 0);
    assert_non_null(strstr(err->msg, "0 DISK_GB"));
    na_error_free(err);
    err = NULL;
    need.disk_gb = 0;
    assert_int_equal(agent_capacity_fit(&inv, &used, &need, "x", &err), 0);
}

static void
test_claim_of_an_instance_during_a_resize(void **state)
{
    (void)state;
    Nodeagent__V1__Flavor f = NODEAGENT__V1__FLAVOR__INIT;
    f.vcpus = 2;
    f.memory_mib = 2048;
    f.root_disk_gib = 20;
    Nodeagent__V1__InstanceSpec spec = NODEAGENT__V1__INSTANCE_SPEC__INIT;
    spec.flavor = &f;
    struct agent_instance inst = {.spec = &spec};
    struct agent_claim c;
    agent_instance_claim(&inst, &c);
    assert_int_equal(c.vcpus, 2);
    assert_int_equal(c.memory_mb, 2048);
    assert_int_equal(c.disk_gb, 20);
    /* Resizing to 4 VCPU, 1024 MiB, 40 GiB: it holds the larger of each until done. */
    inst.resizing_to = (struct agent_claim){4, 1024, 40};
    agent_instance_claim(&inst, &c);
    assert_int_equal(c.vcpus, 4);
    assert_int_equal(c.memory_mb, 2048);
    assert_int_equal(c.disk_gb, 40);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limit_is_total_minus_reserved_times_ratio),
        cmocka_unit_test(test_fit_up_to_the_limit_and_not_beyond),
        cmocka_unit_test(test_fit_when_used_is_over_the_limit),
        cmocka_unit_test(test_a_class_missing_from_the_inventory_fits_nothing),
        cmocka_unit_test(test_claim_of_an_instance_during_a_resize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
