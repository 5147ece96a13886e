/* The per-guest metrics of /metrics, in Prometheus text format (version 0.0.4).
 *
 * Names follow KubeVirt's kubevirt_vmi_* metrics with our prefix: units in the name
 * (seconds, bytes), counters ending in _total.  Every series carries the instance's uuid,
 * name and tenant; disks add drive="vda", NICs interface="tap…", vCPUs vcpu="0".  Label
 * values are the tenant's text: escaped as the format requires. */
#include "agent/observed/guest_stats.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

enum family_scope {
    PER_GUEST, /* offset into struct hv_guest_stats */
    PER_VCPU,
    PER_DISK, /* offset into struct hv_disk_stats */
    PER_NIC,  /* offset into struct hv_nic_stats */
};

struct family {
    const char *name; /* after "nodeagent_vm_" */
    const char *type;
    const char *help;
    enum family_scope scope;
    size_t offset;
    bool nanoseconds; /* shown in seconds */
};

#define GUEST(member) PER_GUEST, offsetof(struct hv_guest_stats, member)
#define DISK(member) PER_DISK, offsetof(struct hv_disk_stats, member)
#define NIC(member) PER_NIC, offsetof(struct hv_nic_stats, member)

static const struct family families[] = {
    {"cpu_usage_seconds_total", "counter", "CPU time the guest's QEMU process used.",
     GUEST(cpu_time_ns), true},
    {"cpu_user_usage_seconds_total", "counter",
     "CPU time the guest's QEMU process used in user mode.", GUEST(cpu_user_ns), true},
    {"cpu_system_usage_seconds_total", "counter",
     "CPU time the guest's QEMU process used in the kernel.", GUEST(cpu_system_ns), true},
    {"vcpu_seconds_total", "counter", "CPU time each vCPU of the guest ran.", PER_VCPU, 0, true},
    {"memory_actual_balloon_bytes", "gauge",
     "Memory the guest has: its size less what the balloon took back.", GUEST(memory_actual),
     false},
    {"memory_unused_bytes", "gauge",
     "Memory the guest leaves unused, as its balloon driver reports.", GUEST(memory_unused), false},
    {"memory_available_bytes", "gauge",
     "Memory the guest sees as usable in total, as its balloon driver reports.",
     GUEST(memory_available), false},
    {"memory_resident_bytes", "gauge", "Resident set size of the guest's QEMU process.",
     GUEST(memory_rss), false},
    {"storage_read_traffic_bytes_total", "counter", "Bytes the guest read from a disk.",
     DISK(rd_bytes), false},
    {"storage_write_traffic_bytes_total", "counter", "Bytes the guest wrote to a disk.",
     DISK(wr_bytes), false},
    {"storage_iops_read_total", "counter", "Read operations of the guest on a disk.", DISK(rd_reqs),
     false},
    {"storage_iops_write_total", "counter", "Write operations of the guest on a disk.",
     DISK(wr_reqs), false},
    {"storage_read_times_seconds_total", "counter",
     "Time the guest's read operations on a disk took.", DISK(rd_time_ns), true},
    {"storage_write_times_seconds_total", "counter",
     "Time the guest's write operations on a disk took.", DISK(wr_time_ns), true},
    {"network_receive_bytes_total", "counter", "Bytes a NIC of the guest received.", NIC(rx_bytes),
     false},
    {"network_transmit_bytes_total", "counter", "Bytes a NIC of the guest sent.", NIC(tx_bytes),
     false},
    {"network_receive_packets_total", "counter", "Packets a NIC of the guest received.",
     NIC(rx_pkts), false},
    {"network_transmit_packets_total", "counter", "Packets a NIC of the guest sent.", NIC(tx_pkts),
     false},
    {"network_receive_errors_total", "counter", "Receive errors on a NIC of the guest.",
     NIC(rx_errs), false},
    {"network_transmit_errors_total", "counter", "Transmit errors on a NIC of the guest.",
     NIC(tx_errs), false},
    {"network_receive_packets_dropped_total", "counter",
     "Packets for a NIC of the guest that were dropped.", NIC(rx_drop), false},
    {"network_transmit_packets_dropped_total", "counter",
     "Packets from a NIC of the guest that were dropped.", NIC(tx_drop), false},
};

/* A label value as the text format wants it: backslash, double quote and newline escaped. */
static void
put_label_value(FILE *f, const char *v)
{
    for (const char *p = v ? v : ""; *p; p++) {
        if (*p == '\\')
            fputs("\\\\", f);
        else if (*p == '"')
            fputs("\\\"", f);
        else if (*p == '\n')
            fputs("\\n", f);
        else
            fputc(*p, f);
    }
}

/* One sample line; extra_label NULL for none. */
static void
put_sample(FILE *f, const struct family *fam, const struct agent_guest_sample *s,
           const char *extra_label, const char *extra_value, int64_t value)
{
    if (value == HV_STAT_NONE)
        return;
    fprintf(f, "nodeagent_vm_%s{uuid=\"", fam->name);
    put_label_value(f, s->uuid);
    fputs("\",name=\"", f);
    put_label_value(f, s->name);
    fputs("\",tenant=\"", f);
    put_label_value(f, s->tenant);
    if (extra_label) {
        fprintf(f, "\",%s=\"", extra_label);
        put_label_value(f, extra_value);
    }
    if (fam->nanoseconds)
        fprintf(f, "\"} %" PRId64 ".%09" PRId64 "\n", value / 1000000000, value % 1000000000);
    else
        fprintf(f, "\"} %" PRId64 "\n", value);
}

static int64_t
member(const void *base, size_t offset)
{
    return *(const int64_t *)((const char *)base + offset);
}

static void
put_family(FILE *f, const struct family *fam, const struct agent_guest_sample *samples, size_t n)
{
    fprintf(f, "# HELP nodeagent_vm_%s %s\n# TYPE nodeagent_vm_%s %s\n", fam->name, fam->help,
            fam->name, fam->type);
    for (size_t i = 0; i < n; i++) {
        const struct agent_guest_sample *s = &samples[i];
        const struct hv_guest_stats *st = s->stats;
        switch (fam->scope) {
        case PER_GUEST:
            put_sample(f, fam, s, NULL, NULL, member(st, fam->offset));
            break;
        case PER_VCPU:
            for (size_t k = 0; k < st->n_vcpus; k++) {
                char id[24];
                snprintf(id, sizeof(id), "%zu", k);
                put_sample(f, fam, s, "vcpu", id, st->vcpu_time_ns[k]);
            }
            break;
        case PER_DISK:
            for (size_t k = 0; k < st->n_disks; k++)
                put_sample(f, fam, s, "drive", st->disks[k].name,
                           member(&st->disks[k], fam->offset));
            break;
        case PER_NIC:
            for (size_t k = 0; k < st->n_nics; k++)
                put_sample(f, fam, s, "interface", st->nics[k].name,
                           member(&st->nics[k], fam->offset));
            break;
        }
    }
}

char *
agent_guest_metrics_render(const struct agent_guest_sample *samples, size_t n)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f)
        abort(); /* out of memory, like na_xmalloc() */
    for (size_t i = 0; i < NA_ARRAY_SIZE(families); i++)
        put_family(f, &families[i], samples, n);
    if (fclose(f) != 0)
        abort();
    return text;
}
