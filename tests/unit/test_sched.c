/* scheduler-client: inventory from a fake /proc and /sys, CPU flags and capabilities to
 * os-traits names, custom trait validation, and the Placement client's argument checks
 * and transport errors (no server needed; tests/system/test_placement_client.py drives it
 * against a real Placement). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cmocka.h>

#include "scheduler-client/scheduler.h"

#define RP "3f0c2a6e-8d4b-4c1e-9a57-0b6e2d9f1c33"

struct fx {
    char root[64];
    char cpuinfo[128];
};

static void
write_file(const char *root, const char *rel, const char *text)
{
    char path[512], dir[512];
    snprintf(path, sizeof(path), "%s%s", root, rel);
    /* mkdir -p of the parent */
    snprintf(dir, sizeof(dir), "%s", path);
    for (char *s = dir + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = '\0';
        mkdir(dir, 0755);
        *s = '/';
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int
setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    snprintf(fx->root, sizeof(fx->root), "/tmp/test_sched.XXXXXX");
    assert_non_null(mkdtemp(fx->root));
    write_file(fx->root, "/sys/devices/system/cpu/online", "0-3,6\n");
    write_file(fx->root, "/proc/meminfo",
               "MemTotal:        8388608 kB\nMemFree:         1000000 kB\n");
    snprintf(fx->cpuinfo, sizeof(fx->cpuinfo), "%s/proc/cpuinfo", fx->root);
    *state = fx;
    return 0;
}

static int
teardown(void **state)
{
    struct fx *fx = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->root);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

static uint64_t
disk_gib(const char *path)
{
    struct statvfs st;
    assert_int_equal(statvfs(path, &st), 0);
    return (uint64_t)st.f_blocks * st.f_frsize >> 30;
}

static void
test_inventory(void **state)
{
    struct fx *fx = *state;
    struct sched_host_config cfg = {
        .root = fx->root,
        .disk_path = fx->root,
        .vcpu = {.reserved = 1, .allocation_ratio = 4.0},
        .memory_mb = {.reserved = 512, .allocation_ratio = 1.5},
        .disk_gb = {.reserved = 0, .allocation_ratio = 0 /* default 1.0 */},
    };
    struct sched_inventory inv;
    struct na_error *err = NULL;
    assert_int_equal(sched_inventory_read(&cfg, &inv, &err), 0);
    assert_null(err);

    const struct sched_resource *v = sched_inventory_find(&inv, SCHED_RC_VCPU);
    assert_non_null(v);
    assert_int_equal(v->total, 5);
    assert_int_equal(v->reserved, 1);
    assert_int_equal(v->min_unit, 1);
    assert_int_equal(v->max_unit, 5);
    assert_int_equal(v->step_size, 1);
    assert_true(v->allocation_ratio == 4.0);

    const struct sched_resource *m = sched_inventory_find(&inv, SCHED_RC_MEMORY_MB);
    assert_non_null(m);
    assert_int_equal(m->total, 8192);
    assert_int_equal(m->reserved, 512);
    assert_int_equal(m->max_unit, 8192);
    assert_true(m->allocation_ratio == 1.5);

    uint64_t gib = disk_gib(fx->root);
    const struct sched_resource *d = sched_inventory_find(&inv, SCHED_RC_DISK_GB);
    if (gib == 0) {
        assert_null(d);
        assert_int_equal(inv.n_resources, 2);
    } else {
        assert_non_null(d);
        assert_int_equal(d->total, gib);
        assert_int_equal(d->max_unit, gib);
        assert_true(d->allocation_ratio == 1.0);
        assert_int_equal(inv.n_resources, 3);
        assert_string_equal(inv.resources[2].resource_class, "DISK_GB");
    }
    assert_string_equal(inv.resources[0].resource_class, "VCPU");
    assert_string_equal(inv.resources[1].resource_class, "MEMORY_MB");
}

static void
test_inventory_cpu_lists(void **state)
{
    struct fx *fx = *state;
    static const struct {
        const char *text;
        int64_t want; /* -1: an error */
    } cases[] = {
        {"0\n", 1},     {"0-1,3-4\n", 4}, {"0-127", 128}, {"2,4,8\n", 3}, {"", -1},
        {"x\n", -1},    {"3-1\n", -1},    {"0-3,\n", 4},  {"0,,1\n", -1}, {"-1\n", -1},
        {"0--1\n", -1}, {"0-\n", -1},     {"1 2\n", -1},
    };
    for (size_t i = 0; i < NA_ARRAY_SIZE(cases); i++) {
        write_file(fx->root, "/sys/devices/system/cpu/online", cases[i].text);
        struct sched_host_config cfg = {.root = fx->root, .disk_path = fx->root};
        struct sched_inventory inv;
        cleanup_error struct na_error *err = NULL;
        int r = sched_inventory_read(&cfg, &inv, &err);
        if (cases[i].want < 0) {
            assert_true(r < 0);
            assert_non_null(err);
            assert_non_null(strstr(err->msg, "not a cpu list"));
        } else {
            assert_int_equal(r, 0);
            assert_int_equal(inv.resources[0].total, cases[i].want);
        }
    }
}

static void
test_inventory_errors(void **state)
{
    struct fx *fx = *state;
    struct sched_inventory inv;
    struct na_error *err = NULL;

    /* More reserved than the host has. */
    struct sched_host_config cfg = {
        .root = fx->root, .disk_path = fx->root, .vcpu = {.reserved = 6}};
    assert_true(sched_inventory_read(&cfg, &inv, &err) < 0);
    assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
    assert_string_equal(err->field, "vcpu.reserved");
    na_error_clear(&err);

    cfg = (struct sched_host_config){
        .root = fx->root, .disk_path = fx->root, .memory_mb = {.allocation_ratio = -1}};
    assert_true(sched_inventory_read(&cfg, &inv, &err) < 0);
    assert_string_equal(err->field, "memory_mb.allocation_ratio");
    na_error_clear(&err);

    /* No disk path, a disk path that does not exist. */
    cfg = (struct sched_host_config){.root = fx->root};
    assert_true(sched_inventory_read(&cfg, &inv, &err) < 0);
    assert_string_equal(err->field, "disk_path");
    na_error_clear(&err);
    cfg.disk_path = "/nonexistent/instances";
    assert_int_equal(sched_inventory_read(&cfg, &inv, &err), -ENOENT);
    assert_non_null(strstr(err->msg, "/nonexistent/instances"));
    na_error_clear(&err);

    /* A fake root without /sys: no silent fallback to the real host. */
    char other[96];
    snprintf(other, sizeof(other), "%s/empty", fx->root);
    mkdir(other, 0755);
    cfg = (struct sched_host_config){.root = other, .disk_path = fx->root};
    assert_int_equal(sched_inventory_read(&cfg, &inv, &err), -ENOENT);
    assert_non_null(strstr(err->msg, "/sys/devices/system/cpu/online"));
    na_error_clear(&err);

    /* meminfo without MemTotal, or with a unit we do not know. */
    write_file(fx->root, "/proc/meminfo", "MemFree: 1 kB\n");
    cfg = (struct sched_host_config){.root = fx->root, .disk_path = fx->root};
    assert_true(sched_inventory_read(&cfg, &inv, &err) < 0);
    assert_non_null(strstr(err->msg, "no MemTotal"));
    na_error_clear(&err);
    write_file(fx->root, "/proc/meminfo", "MemTotal: 12 MB\n");
    assert_true(sched_inventory_read(&cfg, &inv, &err) < 0);
    assert_non_null(strstr(err->msg, "cannot parse MemTotal"));
    na_error_clear(&err);
}

/* The real host, as production reads it. */
static void
test_inventory_real_host(void **state)
{
    (void)state;
    struct sched_host_config cfg = {.root = "", .disk_path = "/"};
    struct sched_inventory inv;
    struct na_error *err = NULL;
    assert_int_equal(sched_inventory_read(&cfg, &inv, &err), 0);
    assert_int_equal(inv.resources[0].total, (uint64_t)sysconf(_SC_NPROCESSORS_ONLN));
    assert_true(inv.resources[1].total > 0);
}

static void
assert_traits(char **got, size_t n, const char *const *want, size_t n_want)
{
    for (size_t i = 0; i < n && i < n_want; i++)
        assert_string_equal(got[i], want[i]);
    assert_int_equal(n, n_want);
    assert_null(got[n]);
}

static void
test_cpu_traits(void **state)
{
    struct fx *fx = *state;
    write_file(fx->root, "/proc/cpuinfo",
               "processor\t: 0\nvendor_id\t: GenuineIntel\n"
               "flags\t\t: fpu vme sse sse2 pni ssse3 sse4_1 sse4_2 avx avx2 aes pclmulqdq fma "
               "f16c bmi1 bmi2 avx512f avx512_vnni vaes sha_ni vmx pdpe1gb mmx sse\n"
               "bugs\t\t: spectre_v1\n\n"
               "processor\t: 1\nflags\t\t: fpu avx512bw svm\n");
    char **traits = NULL;
    size_t n = 0;
    struct na_error *err = NULL;
    assert_int_equal(sched_cpu_traits(fx->cpuinfo, &traits, &n, &err), 0);
    static const char *const want[] = {
        "HW_CPU_X86_AESNI",      "HW_CPU_X86_AVX",        "HW_CPU_X86_AVX2",  "HW_CPU_X86_AVX512F",
        "HW_CPU_X86_AVX512VAES", "HW_CPU_X86_AVX512VNNI", "HW_CPU_X86_BMI",   "HW_CPU_X86_BMI2",
        "HW_CPU_X86_CLMUL",      "HW_CPU_X86_F16C",       "HW_CPU_X86_FMA3",  "HW_CPU_X86_MMX",
        "HW_CPU_X86_PDPE1GB",    "HW_CPU_X86_SHA",        "HW_CPU_X86_SSE",   "HW_CPU_X86_SSE2",
        "HW_CPU_X86_SSE3",       "HW_CPU_X86_SSE41",      "HW_CPU_X86_SSE42", "HW_CPU_X86_SSSE3",
        "HW_CPU_X86_VMX",
    };
    assert_traits(traits, n, want, NA_ARRAY_SIZE(want));
    sched_traits_free(traits);

    /* No flags line (another architecture): no traits, no error. */
    write_file(fx->root, "/proc/cpuinfo", "processor\t: 0\nfeatures\t: fp asimd\n");
    assert_int_equal(sched_cpu_traits(fx->cpuinfo, &traits, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_null(traits[0]);
    sched_traits_free(traits);

    assert_int_equal(sched_cpu_traits("/nonexistent/cpuinfo", &traits, &n, &err), -ENOENT);
    assert_non_null(strstr(err->msg, "/nonexistent/cpuinfo"));
    na_error_clear(&err);
    sched_traits_free(NULL);
}

static void
test_cpu_traits_real_host(void **state)
{
    (void)state;
    char **traits = NULL;
    size_t n = 0;
    struct na_error *err = NULL;
    assert_int_equal(sched_cpu_traits("/proc/cpuinfo", &traits, &n, &err), 0);
#if defined(__x86_64__)
    bool sse2 = false; /* every x86_64 CPU has it */
    for (size_t i = 0; i < n; i++)
        sse2 = sse2 || strcmp(traits[i], "HW_CPU_X86_SSE2") == 0;
    assert_true(sse2);
#endif
    sched_traits_free(traits);
}

static void
test_compute_traits(void **state)
{
    (void)state;
    static const char *const images[] = {"qcow2", "raw", "qcow2"};
    static const char *const vifs[] = {"virtio"};
    static const char *const graphics[] = {"none"};
    static const char *const buses[] = {"virtio", "scsi"};
    static const char *const firmwares[] = {"bios"};
    static const char *const custom[] = {"CUSTOM_GPU_LANE_2", "CUSTOM_A"};
    struct sched_compute_caps caps = {
        .arch = "x86_64",
        .image_types = images,
        .n_image_types = NA_ARRAY_SIZE(images),
        .vif_models = vifs,
        .n_vif_models = NA_ARRAY_SIZE(vifs),
        .graphics_models = graphics,
        .n_graphics_models = NA_ARRAY_SIZE(graphics),
        .storage_buses = buses,
        .n_storage_buses = NA_ARRAY_SIZE(buses),
        .firmwares = firmwares,
        .n_firmwares = NA_ARRAY_SIZE(firmwares),
        .custom_traits = custom,
        .n_custom_traits = NA_ARRAY_SIZE(custom),
    };
    char **traits = NULL;
    size_t n = 0;
    struct na_error *err = NULL;
    assert_int_equal(sched_compute_traits(&caps, &traits, &n, &err), 0);
    static const char *const want[] = {
        "COMPUTE_ARCH_X86_64",
        "COMPUTE_FIRMWARE_BIOS",
        "COMPUTE_GRAPHICS_MODEL_NONE",
        "COMPUTE_IMAGE_TYPE_QCOW2",
        "COMPUTE_IMAGE_TYPE_RAW",
        "COMPUTE_NET_VIF_MODEL_VIRTIO",
        "COMPUTE_NODE",
        "COMPUTE_STORAGE_BUS_SCSI",
        "COMPUTE_STORAGE_BUS_VIRTIO",
        "CUSTOM_A",
        "CUSTOM_GPU_LANE_2",
    };
    assert_traits(traits, n, want, NA_ARRAY_SIZE(want));
    sched_traits_free(traits);

    /* Nothing given: the node is still a compute node. */
    struct sched_compute_caps none = {0};
    assert_int_equal(sched_compute_traits(&none, &traits, &n, &err), 0);
    static const char *const want_none[] = {"COMPUTE_NODE"};
    assert_traits(traits, n, want_none, 1);
    sched_traits_free(traits);

    /* A value without an os-traits name is refused with its field. */
    static const char *const bad_images[] = {"qcow2", "QCOW2"};
    caps.image_types = bad_images;
    caps.n_image_types = 2;
    traits = NULL;
    assert_true(sched_compute_traits(&caps, &traits, &n, &err) < 0);
    assert_null(traits);
    assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
    assert_string_equal(err->field, "image_types[1]");
    na_error_clear(&err);
    caps.image_types = images;

    caps.arch = "sparc";
    assert_true(sched_compute_traits(&caps, &traits, &n, &err) < 0);
    assert_string_equal(err->field, "arch[0]");
    na_error_clear(&err);
    caps.arch = NULL;

    static const char *const bad_custom[] = {"CUSTOM_OK", "CUSTOM_lower"};
    caps.custom_traits = bad_custom;
    assert_true(sched_compute_traits(&caps, &traits, &n, &err) < 0);
    assert_string_equal(err->field, "custom_traits[1]");
    na_error_clear(&err);
}

static void
test_custom_trait_validation(void **state)
{
    (void)state;
    char long_ok[256], too_long[257];
    memcpy(long_ok, "CUSTOM_", 7);
    memset(long_ok + 7, 'X', 248);
    long_ok[255] = '\0';
    memcpy(too_long, long_ok, 255);
    too_long[255] = 'X';
    too_long[256] = '\0';

    assert_true(sched_custom_trait_is_valid("CUSTOM_A"));
    assert_true(sched_custom_trait_is_valid("CUSTOM_GPU_2"));
    assert_true(sched_custom_trait_is_valid("CUSTOM__"));
    assert_true(sched_custom_trait_is_valid(long_ok));
    assert_false(sched_custom_trait_is_valid(too_long));
    assert_false(sched_custom_trait_is_valid("CUSTOM_"));
    assert_false(sched_custom_trait_is_valid("CUSTOM"));
    assert_false(sched_custom_trait_is_valid(""));
    assert_false(sched_custom_trait_is_valid("custom_a"));
    assert_false(sched_custom_trait_is_valid("CUSTOM_a"));
    assert_false(sched_custom_trait_is_valid("CUSTOM_A-B"));
    assert_false(sched_custom_trait_is_valid("CUSTOM_A B"));
    assert_false(sched_custom_trait_is_valid("CUSTOM_A\n"));
    assert_false(sched_custom_trait_is_valid("HW_CPU_X86_AVX"));
    assert_false(sched_custom_trait_is_valid("XCUSTOM_A"));
    assert_false(sched_custom_trait_is_valid("CUSTOM_\xc3\x84"));
}

/* Bad arguments never reach the network; an address where nothing listens is UNAVAILABLE. */
static void
test_placement_arguments(void **state)
{
    (void)state;
    struct sched_placement_config p = {.endpoint = "http://127.0.0.1:1", .timeout_ms = 2000};
    struct na_error *err = NULL;
    uint64_t gen;

    assert_true(sched_placement_ensure_provider(&p, "not-a-uuid", "n", &gen, &err) < 0);
    assert_string_equal(err->field, "rp_uuid");
    na_error_clear(&err);
    assert_true(sched_placement_ensure_provider(&p, RP "/../x", "n", &gen, &err) < 0);
    assert_string_equal(err->field, "rp_uuid");
    na_error_clear(&err);
    assert_true(sched_placement_ensure_provider(&p, RP, "", &gen, &err) < 0);
    assert_string_equal(err->field, "name");
    na_error_clear(&err);

    static const char *const bad_traits[] = {"CUSTOM_A", "../admin"};
    assert_true(sched_placement_set_traits(&p, RP, bad_traits, 2, &err) < 0);
    assert_string_equal(err->field, "traits[1]");
    na_error_clear(&err);

    assert_true(sched_placement_put_allocation(&p, RP, RP, "proj", "user", 0, 0, 0, &err) < 0);
    assert_string_equal(err->field, "resources");
    na_error_clear(&err);
    assert_true(sched_placement_put_allocation(&p, RP, RP, "", "user", 1, 0, 0, &err) < 0);
    assert_string_equal(err->field, "project_id");
    na_error_clear(&err);
    assert_true(sched_placement_remove_allocation(&p, "x", RP, &err) < 0);
    assert_string_equal(err->field, "consumer_uuid");
    na_error_clear(&err);

    struct sched_placement_config bad = {.endpoint = "file:///etc/passwd"};
    assert_true(sched_placement_remove_allocation(&bad, RP, RP, &err) < 0);
    assert_string_equal(err->field, "endpoint");
    na_error_clear(&err);
    struct sched_placement_config inject = {.endpoint = "http://127.0.0.1:1",
                                            .token = "admin\r\nX-Evil: 1"};
    assert_true(sched_placement_remove_allocation(&inject, RP, RP, &err) < 0);
    assert_string_equal(err->field, "token");
    na_error_clear(&err);

    /* Nothing listens on port 1. */
    assert_true(sched_placement_ensure_provider(&p, RP, "node", &gen, &err) < 0);
    assert_int_equal(err->code, NA_CODE_UNAVAILABLE);
    assert_non_null(strstr(err->msg, "GET /resource_providers/" RP));
    assert_non_null(strstr(err->msg, "127.0.0.1:1"));
    na_error_clear(&err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_inventory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inventory_cpu_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inventory_errors, setup, teardown),
        cmocka_unit_test(test_inventory_real_host),
        cmocka_unit_test_setup_teardown(test_cpu_traits, setup, teardown),
        cmocka_unit_test(test_cpu_traits_real_host),
        cmocka_unit_test(test_compute_traits),
        cmocka_unit_test(test_custom_trait_validation),
        cmocka_unit_test(test_placement_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
