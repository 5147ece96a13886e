/* scheduler-client against a real Placement (or a hostile server): driven by
 * tests/system/test_placement_client.py, which starts the server, runs this binary with
 * the environment below and checks Placement's state with its own REST API.  Without
 * NODEAGENT_PLACEMENT_URL every test is skipped, so `make check-unit` passes by itself.
 *
 *   NODEAGENT_PLACEMENT_URL         endpoint
 *   NODEAGENT_PLACEMENT_STEP        which test runs: provider, allocate, deallocate,
 *                                   name_conflict, no_capacity, hostile
 *   NODEAGENT_PLACEMENT_RP          resource provider uuid; _NAME its name
 *   NODEAGENT_PLACEMENT_CONSUMER    consumer uuid (allocate, deallocate, no_capacity)
 *   NODEAGENT_PLACEMENT_VCPU_RATIO  VCPU allocation ratio (provider; default 4)
 *   NODEAGENT_PLACEMENT_TIMEOUT_MS  per-request timeout (default 5000)
 *   NODEAGENT_PLACEMENT_EXPECT      hostile: the na_code name every call must fail with
 *
 * It prints "TRAIT name" for each trait it sets and "ERR call code=... msg=..." for each
 * error, for the Python side to check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "scheduler-client/scheduler.h"

static const char *
env(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

/* Skips unless this test's step was asked for; fills the client config. */
static bool
want_step(const char *step, struct sched_placement_config *p)
{
    const char *url = getenv("NODEAGENT_PLACEMENT_URL");
    if (!url || strcmp(env("NODEAGENT_PLACEMENT_STEP", ""), step) != 0)
        return false;
    *p = (struct sched_placement_config){
        .endpoint = url,
        .token = "admin",
        .timeout_ms = (unsigned)atoi(env("NODEAGENT_PLACEMENT_TIMEOUT_MS", "5000")),
    };
    return true;
}

static void
report(const char *call, const struct na_error *err)
{
    printf("ERR %s code=%s msg=%s\n", call, na_code_name(err->code), err->msg);
    fflush(stdout);
}

#define CHECK_OK(call, expr)                                                                       \
    do {                                                                                           \
        struct na_error *err_ = NULL;                                                              \
        int r_ = (expr);                                                                           \
        if (r_ < 0)                                                                                \
            report(call, err_);                                                                    \
        assert_int_equal(r_, 0);                                                                   \
        assert_null(err_);                                                                         \
    } while (0)

static void
test_provider(void **state)
{
    (void)state;
    struct sched_placement_config p;
    if (!want_step("provider", &p))
        skip();
    const char *rp = env("NODEAGENT_PLACEMENT_RP", "");
    const char *name = env("NODEAGENT_PLACEMENT_NAME", "");

    uint64_t gen1 = 0, gen2 = 1;
    CHECK_OK("ensure_provider", sched_placement_ensure_provider(&p, rp, name, &gen1, &err_));
    CHECK_OK("ensure_provider", sched_placement_ensure_provider(&p, rp, name, &gen2, &err_));
    assert_int_equal(gen1, gen2);

    /* The real host's inventory. */
    struct sched_host_config host = {
        .root = "",
        .disk_path = "/",
        .vcpu = {.reserved = 0,
                 .allocation_ratio = atof(env("NODEAGENT_PLACEMENT_VCPU_RATIO", "4"))},
        .memory_mb = {.reserved = 256, .allocation_ratio = 1.5},
        .disk_gb = {.reserved = 0, .allocation_ratio = 1.0},
    };
    struct sched_inventory inv;
    CHECK_OK("inventory_read", sched_inventory_read(&host, &inv, &err_));
    CHECK_OK("set_inventories", sched_placement_set_inventories(&p, rp, &inv, &err_));

    char **cpu = NULL, **compute = NULL;
    size_t n_cpu = 0, n_compute = 0;
    CHECK_OK("cpu_traits", sched_cpu_traits("/proc/cpuinfo", &cpu, &n_cpu, &err_));
    static const char *const images[] = {"qcow2", "raw"};
    static const char *const vifs[] = {"virtio"};
    static const char *const graphics[] = {"none"};
    static const char *const custom[] = {"CUSTOM_NODEAGENT_TEST", "CUSTOM_RACK_7"};
    struct sched_compute_caps caps = {
        .arch = "x86_64",
        .image_types = images,
        .n_image_types = 2,
        .vif_models = vifs,
        .n_vif_models = 1,
        .graphics_models = graphics,
        .n_graphics_models = 1,
        .custom_traits = custom,
        .n_custom_traits = 2,
    };
    CHECK_OK("compute_traits", sched_compute_traits(&caps, &compute, &n_compute, &err_));
    const char **all = calloc(n_cpu + n_compute, sizeof(*all));
    for (size_t i = 0; i < n_cpu; i++)
        all[i] = cpu[i];
    for (size_t i = 0; i < n_compute; i++)
        all[n_cpu + i] = compute[i];
    for (size_t i = 0; i < n_cpu + n_compute; i++)
        printf("TRAIT %s\n", all[i]);
    fflush(stdout);
    CHECK_OK("set_traits", sched_placement_set_traits(&p, rp, all, n_cpu + n_compute, &err_));
    free(all);
    sched_traits_free(cpu);
    sched_traits_free(compute);
}

static void
test_allocate(void **state)
{
    (void)state;
    struct sched_placement_config p;
    if (!want_step("allocate", &p))
        skip();
    const char *rp = env("NODEAGENT_PLACEMENT_RP", "");
    const char *consumer = env("NODEAGENT_PLACEMENT_CONSUMER", "");
    /* A new consumer, then a change of its amounts (its generation is then 1). */
    CHECK_OK("put_allocation", sched_placement_put_allocation(&p, consumer, rp, "project-a",
                                                              "user-a", 1, 256, 0, &err_));
    CHECK_OK("put_allocation", sched_placement_put_allocation(&p, consumer, rp, "project-a",
                                                              "user-a", 2, 512, 1, &err_));
    /* Again the same: nothing to write. */
    CHECK_OK("put_allocation", sched_placement_put_allocation(&p, consumer, rp, "project-a",
                                                              "user-a", 2, 512, 1, &err_));
}

static void
test_deallocate(void **state)
{
    (void)state;
    struct sched_placement_config p;
    if (!want_step("deallocate", &p))
        skip();
    const char *rp = env("NODEAGENT_PLACEMENT_RP", "");
    const char *consumer = env("NODEAGENT_PLACEMENT_CONSUMER", "");
    CHECK_OK("remove_allocation", sched_placement_remove_allocation(&p, consumer, rp, &err_));
    CHECK_OK("remove_allocation", sched_placement_remove_allocation(&p, consumer, rp, &err_));
}

static void
test_name_conflict(void **state)
{
    (void)state;
    struct sched_placement_config p;
    if (!want_step("name_conflict", &p))
        skip();
    struct na_error *err = NULL;
    uint64_t gen;
    assert_true(sched_placement_ensure_provider(&p, env("NODEAGENT_PLACEMENT_RP", ""),
                                                env("NODEAGENT_PLACEMENT_NAME", ""), &gen,
                                                &err) < 0);
    report("ensure_provider", err);
    assert_int_equal(err->code, NA_CODE_CONFLICT);
    na_error_free(err);
}

static void
test_no_capacity(void **state)
{
    (void)state;
    struct sched_placement_config p;
    if (!want_step("no_capacity", &p))
        skip();
    struct na_error *err = NULL;
    assert_true(sched_placement_put_allocation(&p, env("NODEAGENT_PLACEMENT_CONSUMER", ""),
                                               env("NODEAGENT_PLACEMENT_RP", ""), "project-a",
                                               "user-a", 1000000, 1, 0, &err) < 0);
    report("put_allocation", err);
    assert_int_equal(err->code, NA_CODE_NO_CAPACITY);
    na_error_free(err);
}

/* Every call against a server that is not Placement fails cleanly, within its timeout. */
static void
test_hostile(void **state)
{
    (void)state;
    struct sched_placement_config p;
    if (!want_step("hostile", &p))
        skip();
    const char *rp = "3f0c2a6e-8d4b-4c1e-9a57-0b6e2d9f1c33";
    const char *expect = env("NODEAGENT_PLACEMENT_EXPECT", "UNAVAILABLE");
    struct sched_inventory inv = {
        .resources = {{.resource_class = SCHED_RC_VCPU,
                       .total = 4,
                       .min_unit = 1,
                       .max_unit = 4,
                       .step_size = 1,
                       .allocation_ratio = 1}},
        .n_resources = 1,
    };
    static const char *const traits[] = {"HW_CPU_X86_AVX2"};
    for (int call = 0; call < 5; call++) {
        struct na_error *err = NULL;
        uint64_t gen;
        uint64_t t0 = na_mono_ns();
        int r;
        const char *what;
        switch (call) {
        case 0:
            what = "ensure_provider";
            r = sched_placement_ensure_provider(&p, rp, "node", &gen, &err);
            break;
        case 1:
            what = "set_inventories";
            r = sched_placement_set_inventories(&p, rp, &inv, &err);
            break;
        case 2:
            what = "set_traits";
            r = sched_placement_set_traits(&p, rp, traits, 1, &err);
            break;
        case 3:
            what = "put_allocation";
            r = sched_placement_put_allocation(&p, rp, rp, "p", "u", 1, 1, 1, &err);
            break;
        default:
            what = "remove_allocation";
            r = sched_placement_remove_allocation(&p, rp, rp, &err);
            break;
        }
        uint64_t ms = (na_mono_ns() - t0) / 1000000;
        assert_true(r < 0);
        assert_non_null(err);
        report(what, err);
        printf("TIME %s %llu\n", what, (unsigned long long)ms);
        assert_string_equal(na_code_name(err->code), expect);
        /* One request, and it gave up: within its timeout and a margin. */
        assert_true(ms < p.timeout_ms + 1000);
        na_error_free(err);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_provider),    cmocka_unit_test(test_allocate),
        cmocka_unit_test(test_deallocate),  cmocka_unit_test(test_name_conflict),
        cmocka_unit_test(test_no_capacity), cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
