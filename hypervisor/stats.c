/* Guest statistics: libvirt's bulk stats call, read into plain structs.
 *
 * One call returns every running domain's typed parameters ("cpu.time", "block.0.rd.bytes",
 * ...).  They come from libvirtd, which reads them from QEMU and /proc: trusted to be well
 * formed, not to be in range, so counts are bounded, indices checked against them and
 * values of an unexpected type skipped. */
#include "hypervisor/hypervisor-private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define STATS_GROUPS                                                                               \
    (VIR_DOMAIN_STATS_CPU_TOTAL | VIR_DOMAIN_STATS_BALLOON | VIR_DOMAIN_STATS_VCPU |               \
     VIR_DOMAIN_STATS_INTERFACE | VIR_DOMAIN_STATS_BLOCK)

/* A parameter's value as a non-negative count; false for another type or a negative one. */
static bool
param_count(const virTypedParameter *p, int64_t *v)
{
    switch (p->type) {
    case VIR_TYPED_PARAM_UINT:
        *v = p->value.ui;
        return true;
    case VIR_TYPED_PARAM_ULLONG:
        if (p->value.ul > (unsigned long long)INT64_MAX)
            return false;
        *v = (int64_t)p->value.ul;
        return true;
    case VIR_TYPED_PARAM_INT:
        *v = p->value.i;
        return p->value.i >= 0;
    case VIR_TYPED_PARAM_LLONG:
        *v = p->value.l;
        return p->value.l >= 0;
    default:
        return false;
    }
}

/* KiB figures (the balloon's) in bytes; absurd ones are dropped rather than wrapped. */
static int64_t
kib_to_bytes(int64_t kib)
{
    return kib > INT64_MAX / 1024 ? HV_STAT_NONE : kib * 1024;
}

/* "<prefix><N>.<rest>": N (a decimal index) and rest; false for anything else. */
static bool
indexed_key(const char *field, const char *prefix, size_t *index, const char **rest)
{
    size_t len = strlen(prefix);
    if (strncmp(field, prefix, len) != 0 || field[len] < '0' || field[len] > '9')
        return false;
    char *end;
    unsigned long i = strtoul(field + len, &end, 10);
    if (*end != '.' || i > 1000000)
        return false;
    *index = i;
    *rest = end + 1;
    return true;
}

struct counter_field {
    const char *key;
    size_t offset;
};

#define DISK_FIELD(key, member)                                                                    \
    {                                                                                              \
        key, offsetof(struct hv_disk_stats, member)                                                \
    }
static const struct counter_field disk_fields[] = {
    DISK_FIELD("rd.bytes", rd_bytes),   DISK_FIELD("rd.reqs", rd_reqs),
    DISK_FIELD("rd.times", rd_time_ns), DISK_FIELD("wr.bytes", wr_bytes),
    DISK_FIELD("wr.reqs", wr_reqs),     DISK_FIELD("wr.times", wr_time_ns),
};

#define NIC_FIELD(key, member)                                                                     \
    {                                                                                              \
        key, offsetof(struct hv_nic_stats, member)                                                 \
    }
static const struct counter_field nic_fields[] = {
    NIC_FIELD("rx.bytes", rx_bytes), NIC_FIELD("rx.pkts", rx_pkts),   NIC_FIELD("rx.errs", rx_errs),
    NIC_FIELD("rx.drop", rx_drop),   NIC_FIELD("tx.bytes", tx_bytes), NIC_FIELD("tx.pkts", tx_pkts),
    NIC_FIELD("tx.errs", tx_errs),   NIC_FIELD("tx.drop", tx_drop),
};

/* Sets the member of base that key names among fields; false when none does. */
static bool
set_counter(void *base, const struct counter_field *fields, size_t n_fields, const char *key,
            const virTypedParameter *p)
{
    for (size_t i = 0; i < n_fields; i++) {
        if (strcmp(fields[i].key, key) != 0)
            continue;
        int64_t v;
        if (param_count(p, &v))
            *(int64_t *)((char *)base + fields[i].offset) = v;
        return true;
    }
    return false;
}

static void
set_name(char *dst, size_t size, const virTypedParameter *p)
{
    if (p->type == VIR_TYPED_PARAM_STRING && p->value.s)
        snprintf(dst, size, "%s", p->value.s);
}

/* The sizes of the arrays, from "vcpu.maximum", "block.count" and "net.count". */
static void
parse_counts(const virTypedParameter *params, int n_params, struct hv_guest_stats *out)
{
    for (int i = 0; i < n_params; i++) {
        const virTypedParameter *p = &params[i];
        int64_t v;
        if (!param_count(p, &v))
            continue;
        if (strcmp(p->field, "vcpu.maximum") == 0)
            out->n_vcpus = (size_t)(v < HV_STATS_MAX_VCPUS ? v : HV_STATS_MAX_VCPUS);
        else if (strcmp(p->field, "block.count") == 0)
            out->n_disks = (size_t)(v < HV_STATS_MAX_DISKS ? v : HV_STATS_MAX_DISKS);
        else if (strcmp(p->field, "net.count") == 0)
            out->n_nics = (size_t)(v < HV_STATS_MAX_NICS ? v : HV_STATS_MAX_NICS);
    }
}

static void
init_arrays(struct hv_guest_stats *out)
{
    out->vcpu_time_ns = na_xcalloc(out->n_vcpus ? out->n_vcpus : 1, sizeof(*out->vcpu_time_ns));
    for (size_t i = 0; i < out->n_vcpus; i++)
        out->vcpu_time_ns[i] = HV_STAT_NONE;
    out->disks = na_xcalloc(out->n_disks ? out->n_disks : 1, sizeof(*out->disks));
    for (size_t i = 0; i < out->n_disks; i++) {
        struct hv_disk_stats *d = &out->disks[i];
        d->rd_bytes = d->rd_reqs = d->rd_time_ns = HV_STAT_NONE;
        d->wr_bytes = d->wr_reqs = d->wr_time_ns = HV_STAT_NONE;
    }
    out->nics = na_xcalloc(out->n_nics ? out->n_nics : 1, sizeof(*out->nics));
    for (size_t i = 0; i < out->n_nics; i++) {
        struct hv_nic_stats *n = &out->nics[i];
        n->rx_bytes = n->rx_pkts = n->rx_errs = n->rx_drop = HV_STAT_NONE;
        n->tx_bytes = n->tx_pkts = n->tx_errs = n->tx_drop = HV_STAT_NONE;
    }
}

static void
parse_scalar(const virTypedParameter *p, struct hv_guest_stats *out)
{
    static const struct counter_field scalars[] = {
        {"cpu.time", offsetof(struct hv_guest_stats, cpu_time_ns)},
        {"cpu.user", offsetof(struct hv_guest_stats, cpu_user_ns)},
        {"cpu.system", offsetof(struct hv_guest_stats, cpu_system_ns)},
        {"balloon.current", offsetof(struct hv_guest_stats, memory_actual)},
        {"balloon.unused", offsetof(struct hv_guest_stats, memory_unused)},
        {"balloon.available", offsetof(struct hv_guest_stats, memory_available)},
        {"balloon.rss", offsetof(struct hv_guest_stats, memory_rss)},
    };
    set_counter(out, scalars, NA_ARRAY_SIZE(scalars), p->field, p);
}

static void
parse_indexed(const virTypedParameter *p, struct hv_guest_stats *out)
{
    size_t i;
    const char *rest;
    if (indexed_key(p->field, "vcpu.", &i, &rest)) {
        int64_t v;
        if (i < out->n_vcpus && strcmp(rest, "time") == 0 && param_count(p, &v))
            out->vcpu_time_ns[i] = v;
    } else if (indexed_key(p->field, "block.", &i, &rest)) {
        if (i >= out->n_disks)
            return;
        if (strcmp(rest, "name") == 0)
            set_name(out->disks[i].name, sizeof(out->disks[i].name), p);
        else
            set_counter(&out->disks[i], disk_fields, NA_ARRAY_SIZE(disk_fields), rest, p);
    } else if (indexed_key(p->field, "net.", &i, &rest)) {
        if (i >= out->n_nics)
            return;
        if (strcmp(rest, "name") == 0)
            set_name(out->nics[i].name, sizeof(out->nics[i].name), p);
        else
            set_counter(&out->nics[i], nic_fields, NA_ARRAY_SIZE(nic_fields), rest, p);
    }
}

int
hv_stats_parse(const char *domain_name, const virTypedParameter *params, int n_params,
               struct hv_guest_stats *out)
{
    memset(out, 0, sizeof(*out));
    size_t prefix_len = strlen(HV_DOMAIN_NAME_PREFIX);
    if (!domain_name || strncmp(domain_name, HV_DOMAIN_NAME_PREFIX, prefix_len) != 0 ||
        !na_uuid_is_valid(domain_name + prefix_len))
        return -EINVAL;
    snprintf(out->uuid, sizeof(out->uuid), "%s", domain_name + prefix_len);
    out->cpu_time_ns = out->cpu_user_ns = out->cpu_system_ns = HV_STAT_NONE;
    out->memory_actual = out->memory_unused = out->memory_available = HV_STAT_NONE;
    out->memory_rss = HV_STAT_NONE;

    parse_counts(params, n_params, out);
    init_arrays(out);
    for (int i = 0; i < n_params; i++) {
        parse_scalar(&params[i], out);
        parse_indexed(&params[i], out);
    }
    int64_t *kib[] = {&out->memory_actual, &out->memory_unused, &out->memory_available,
                      &out->memory_rss};
    for (size_t i = 0; i < NA_ARRAY_SIZE(kib); i++)
        if (*kib[i] != HV_STAT_NONE)
            *kib[i] = kib_to_bytes(*kib[i]);
    return 0;
}

void
hv_guest_stats_clear(struct hv_guest_stats *s)
{
    if (!s)
        return;
    free(s->vcpu_time_ns);
    free(s->disks);
    free(s->nics);
    memset(s, 0, sizeof(*s));
}

void
hv_stats_free(struct hv_guest_stats *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        hv_guest_stats_clear(&list[i]);
    free(list);
}

/* A reference of its own on the connection: libvirt's objects are reference-counted. */
struct hv_stats_hold {
    virConnectPtr virt;
};

struct hv_stats_hold *
hv_stats_hold(struct hv_conn *conn, struct na_error **err)
{
    virConnectPtr virt = hv_borrow(conn, err);
    if (!virt)
        return NULL;
    struct hv_stats_hold *hold = na_xcalloc(1, sizeof(*hold));
    hold->virt = virt;
    return hold;
}

void
hv_stats_release(struct hv_stats_hold *hold)
{
    if (!hold)
        return;
    virConnectClose(hold->virt);
    free(hold);
}

int
hv_stats_collect(struct hv_stats_hold *hold, struct hv_guest_stats **out, size_t *n,
                 struct na_error **err)
{
    *out = NULL;
    *n = 0;
    virConnectPtr virt = hold->virt;
    virDomainStatsRecordPtr *records = NULL;
    int n_records = virConnectGetAllDomainStats(virt, STATS_GROUPS, &records,
                                                VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE |
                                                    VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT);
    if (n_records < 0)
        return hv_error(err, "read the statistics of", "the running domains");
    struct hv_guest_stats *list = na_xcalloc(n_records ? (size_t)n_records : 1, sizeof(*list));
    size_t n_list = 0;
    for (int i = 0; i < n_records; i++) {
        const char *name = virDomainGetName(records[i]->dom);
        if (hv_stats_parse(name, records[i]->params, records[i]->nparams, &list[n_list]) == 0)
            n_list++;
    }
    virDomainStatsRecordListFree(records);
    *out = list;
    *n = n_list;
    return 0;
}
