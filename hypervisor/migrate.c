/* Live migration calls (DESIGN.md section 9): the source's peer-to-peer migration with its
 * disk copied, its progress and its abort; the destination's CPU check.  Blocking; worker
 * threads. */
#include "hypervisor/hypervisor-private.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define SETTLE_POLL_MS 200
#define SETTLE_WAIT_MS (120 * 1000)

int
hv_migrate_snapshot_count(struct hv_conn *conn, const char *uuid, int *count, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "count snapshots", &c, err);
    if (ret < 0)
        return ret;
    *count = virDomainSnapshotNum(c.dom, 0);
    return *count < 0 ? hv_error(err, "count snapshots", uuid) : 0;
}

int
hv_migrate_cpu_xml(struct hv_conn *conn, const char *uuid, char **cpu_xml, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "read the guest CPU", &c, err);
    if (ret < 0)
        return ret;
    cleanup_free char *xml = virDomainGetXMLDesc(c.dom, VIR_DOMAIN_XML_MIGRATABLE);
    if (!xml)
        return hv_error(err, "read the guest CPU", uuid);
    /* libvirt's own XML: its <cpu> element, if the guest has one, verbatim. */
    const char *start = strstr(xml, "<cpu");
    const char *end = start ? strstr(start, "</cpu>") : NULL;
    if (start && end)
        *cpu_xml = na_xstrndup(start, (size_t)(end - start) + strlen("</cpu>"));
    else
        *cpu_xml = na_xstrdup("");
    return 0;
}

int
hv_migrate_cpu_compare(struct hv_conn *conn, const char *virt_type, const char *cpu_xml,
                       struct na_error **err)
{
    if (!*cpu_xml)
        return 0; /* no <cpu>: QEMU's default model, which every host runs */
    virConnectPtr virt = hv_borrow(conn, err);
    if (!virt)
        return -ENOTCONN;
    int r = virConnectCompareHypervisorCPU(virt, NULL, NULL, NULL, virt_type, cpu_xml, 0);
    int ret = 0;
    if (r < 0)
        ret = hv_error(err, "compare the guest CPU with this host's", NULL);
    else if (r == VIR_CPU_COMPARE_INCOMPATIBLE)
        ret = na_error_set(err, NA_CODE_HYPERVISOR, EINVAL,
                           "the guest's CPU is not compatible with this host's (%s): %s", virt_type,
                           cpu_xml);
    virConnectClose(virt);
    return ret;
}

/* Adds one typed parameter; 0 or -ENOMEM. */
static int
param_str(virTypedParameterPtr *p, int *n, int *max, const char *name, const char *value)
{
    return value && *value && virTypedParamsAddString(p, n, max, name, value) < 0 ? -ENOMEM : 0;
}

int
hv_migrate_perform(struct hv_conn *conn, const char *uuid, const struct hv_migrate_params *mp,
                   struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "migrate", &c, err);
    if (ret < 0)
        return ret;
    virTypedParameterPtr params = NULL;
    int n = 0, max = 0;
    if (param_str(&params, &n, &max, VIR_MIGRATE_PARAM_URI, mp->migrate_uri) < 0 ||
        param_str(&params, &n, &max, VIR_MIGRATE_PARAM_DISKS_URI, mp->disks_uri) < 0 ||
        param_str(&params, &n, &max, VIR_MIGRATE_PARAM_DEST_XML, mp->dest_xml) < 0 ||
        param_str(&params, &n, &max, VIR_MIGRATE_PARAM_PERSIST_XML, mp->dest_xml) < 0 ||
        param_str(&params, &n, &max, VIR_MIGRATE_PARAM_MIGRATE_DISKS, mp->disk_target) < 0 ||
        (mp->bandwidth_mib_s &&
         virTypedParamsAddULLong(&params, &n, &max, VIR_MIGRATE_PARAM_BANDWIDTH,
                                 mp->bandwidth_mib_s) < 0)) {
        virTypedParamsFree(params, n);
        return na_error_set(err, NA_CODE_INTERNAL, ENOMEM, "migration parameters: out of memory");
    }
    if (mp->max_downtime_ms)
        virDomainMigrateSetMaxDowntime(c.dom, mp->max_downtime_ms, 0);
    unsigned flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST |
                     VIR_MIGRATE_UNDEFINE_SOURCE | VIR_MIGRATE_NON_SHARED_INC | VIR_MIGRATE_PAUSED;
    if (mp->auto_converge)
        flags |= VIR_MIGRATE_AUTO_CONVERGE;
    if (virDomainMigrateToURI3(c.dom, mp->libvirt_uri, params, n, flags) < 0)
        ret = hv_error(err, "migrate", uuid);
    virTypedParamsFree(params, n);
    return ret;
}

int
hv_migrate_progress(struct hv_conn *conn, const char *uuid, struct hv_migrate_progress *out,
                    struct na_error **err)
{
    memset(out, 0, sizeof(*out));
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "read migration progress", &c, err);
    if (ret < 0)
        return ret;
    int type = 0, n = 0;
    virTypedParameterPtr params = NULL;
    if (virDomainGetJobStats(c.dom, &type, &params, &n, 0) < 0)
        return hv_error(err, "read migration progress", uuid);
    out->active = type == VIR_DOMAIN_JOB_UNBOUNDED || type == VIR_DOMAIN_JOB_BOUNDED;
    virTypedParamsGetULLong(params, n, VIR_DOMAIN_JOB_MEMORY_PROCESSED, &out->memory_processed);
    virTypedParamsGetULLong(params, n, VIR_DOMAIN_JOB_MEMORY_REMAINING, &out->memory_remaining);
    virTypedParamsGetULLong(params, n, VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE, &out->dirty_rate);
    virTypedParamsGetULLong(params, n, VIR_DOMAIN_JOB_MEMORY_ITERATION, &out->iteration);
    virTypedParamsGetULLong(params, n, VIR_DOMAIN_JOB_DISK_PROCESSED, &out->disk_processed);
    virTypedParamsGetULLong(params, n, VIR_DOMAIN_JOB_DISK_REMAINING, &out->disk_remaining);
    virTypedParamsGetULLong(params, n, VIR_DOMAIN_JOB_DATA_TOTAL, &out->data_total);
    virTypedParamsGetULLong(params, n, VIR_DOMAIN_JOB_DATA_PROCESSED, &out->data_processed);
    virTypedParamsFree(params, n);
    return 0;
}

int
hv_migrate_abort(struct hv_conn *conn, const char *uuid, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "abort the migration", &c, err);
    if (ret < 0)
        return ret;
    return virDomainAbortJob(c.dom) < 0 ? hv_error(err, "abort the migration", uuid) : 0;
}

int
hv_migrate_settle(struct hv_conn *conn, const char *uuid, struct na_error **err)
{
    struct hv_migrate_progress pr;
    int ret = hv_migrate_progress(conn, uuid, &pr, err);
    if (ret < 0 || !pr.active)
        return ret == -ENOENT ? (na_error_clear(err), 0) : ret;
    if ((ret = hv_migrate_abort(conn, uuid, err)) < 0 && ret != -ENOENT)
        na_error_clear(err); /* it may have ended meanwhile: what follows tells */
    for (unsigned waited = 0; waited < SETTLE_WAIT_MS; waited += SETTLE_POLL_MS) {
        ret = hv_migrate_progress(conn, uuid, &pr, err);
        if (ret == -ENOENT) {
            na_error_clear(err); /* completed: the domain is the destination's */
            return 0;
        }
        if (ret < 0 || !pr.active)
            return ret;
        struct timespec ts = {0, SETTLE_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
    return na_error_set(err, NA_CODE_TIMEOUT, ETIMEDOUT,
                        "instance %s: its libvirt job did not end within %d s of its abort", uuid,
                        SETTLE_WAIT_MS / 1000);
}
