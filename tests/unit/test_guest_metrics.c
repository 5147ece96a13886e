/* agent_guest_metrics_render(): every family has HELP and TYPE lines (even without guests),
 * nanoseconds are shown as seconds, figures libvirt did not report are left out, and the
 * tenant's text in label values is escaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <stdlib.h>

#include "agent/observed/guest_stats.h"

#define UUID "0b4e2c38-9f7a-4d7e-8a51-3c2f9e4d1a60"

static size_t
count_lines_starting(const char *text, const char *prefix)
{
    size_t n = 0, len = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, len) == 0)
            n++;
    return n;
}

static void
test_families_without_guests(void **state)
{
    (void)state;
    char *text = agent_guest_metrics_render(NULL, 0);
    size_t help = count_lines_starting(text, "# HELP nodeagent_vm_");
    assert_true(help >= 20);
    assert_int_equal(count_lines_starting(text, "# TYPE nodeagent_vm_"), help);
    assert_int_equal(count_lines_starting(text, "nodeagent_vm_"), 0);
    assert_non_null(strstr(text, "# TYPE nodeagent_vm_cpu_usage_seconds_total counter\n"));
    assert_non_null(strstr(text, "# TYPE nodeagent_vm_memory_resident_bytes gauge\n"));
    free(text);
}

static void
test_one_guest(void **state)
{
    (void)state;
    int64_t vcpus[] = {1500000000, HV_STAT_NONE};
    struct hv_disk_stats disk = {.name = "vda",
                                 .rd_bytes = 4096,
                                 .rd_reqs = 1,
                                 .rd_time_ns = 2000,
                                 .wr_bytes = 8192,
                                 .wr_reqs = 2,
                                 .wr_time_ns = HV_STAT_NONE};
    struct hv_nic_stats nic = {.name = "tap0b4e2c389f",
                               .rx_bytes = 10,
                               .rx_pkts = 1,
                               .rx_errs = 0,
                               .rx_drop = 0,
                               .tx_bytes = 20,
                               .tx_pkts = 2,
                               .tx_errs = 0,
                               .tx_drop = 3};
    struct hv_guest_stats st = {
        .uuid = UUID,
        .cpu_time_ns = 12000000001,
        .cpu_user_ns = HV_STAT_NONE,
        .cpu_system_ns = HV_STAT_NONE,
        .memory_actual = 268435456,
        .memory_unused = HV_STAT_NONE,
        .memory_available = HV_STAT_NONE,
        .memory_rss = 100000000,
        .vcpu_time_ns = vcpus,
        .n_vcpus = 2,
        .disks = &disk,
        .n_disks = 1,
        .nics = &nic,
        .n_nics = 1,
    };
    struct agent_guest_sample s = {
        .uuid = UUID, .name = "web \"1\" \\ x\ny", .tenant = "t1", .stats = &st};
    char *text = agent_guest_metrics_render(&s, 1);
#define LABELS "uuid=\"" UUID "\",name=\"web \\\"1\\\" \\\\ x\\ny\",tenant=\"t1\""
    assert_non_null(
        strstr(text, "\nnodeagent_vm_cpu_usage_seconds_total{" LABELS "} 12.000000001\n"));
    assert_null(strstr(text, "\nnodeagent_vm_cpu_user_usage_seconds_total{"));
    assert_non_null(
        strstr(text, "\nnodeagent_vm_vcpu_seconds_total{" LABELS ",vcpu=\"0\"} 1.500000000\n"));
    assert_null(strstr(text, "vcpu=\"1\""));
    assert_non_null(
        strstr(text, "\nnodeagent_vm_memory_actual_balloon_bytes{" LABELS "} 268435456\n"));
    assert_non_null(strstr(text, "\nnodeagent_vm_memory_resident_bytes{" LABELS "} 100000000\n"));
    assert_null(strstr(text, "\nnodeagent_vm_memory_unused_bytes{"));
    assert_non_null(strstr(text, "\nnodeagent_vm_storage_write_traffic_bytes_total{" LABELS
                                 ",drive=\"vda\"} 8192\n"));
    assert_non_null(
        strstr(text, "\nnodeagent_vm_storage_iops_read_total{" LABELS ",drive=\"vda\"} 1\n"));
    assert_non_null(strstr(text, "\nnodeagent_vm_storage_read_times_seconds_total{" LABELS
                                 ",drive=\"vda\"} 0.000002000\n"));
    assert_null(strstr(text, "\nnodeagent_vm_storage_write_times_seconds_total{"));
    assert_non_null(strstr(text, "\nnodeagent_vm_network_transmit_packets_dropped_total{" LABELS
                                 ",interface=\"tap0b4e2c389f\"} 3\n"));
    assert_non_null(strstr(text, "\nnodeagent_vm_network_receive_errors_total{" LABELS
                                 ",interface=\"tap0b4e2c389f\"} 0\n"));
    /* No raw newline inside a sample line: each line is a comment or starts with a name. */
    for (const char *p = text; *p; p = strchr(p, '\n') + 1)
        assert_true(strncmp(p, "# ", 2) == 0 || strncmp(p, "nodeagent_vm_", 13) == 0);
    free(text);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_families_without_guests),
        cmocka_unit_test(test_one_guest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
