/* Domain lifecycle calls: each borrows the connection, looks the domain up by uuid, acts,
 * and turns libvirt's errors into ours.  All are idempotent where the name says so, because
 * an operation interrupted by a crash runs again. */
#include "hypervisor/hypervisor-private.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define SHUTDOWN_POLL_MS 200
#define START_POLL_MS 200
#define START_WAIT_MS (120 * 1000) /* libvirt's own start of a TCG guest on a busy host */

static enum hv_power
power_of(virDomainPtr dom)
{
    int state = VIR_DOMAIN_NOSTATE, reason = 0;
    if (virDomainGetState(dom, &state, &reason, 0) < 0)
        return HV_POWER_OTHER;
    switch (state) {
    case VIR_DOMAIN_RUNNING:
        return HV_POWER_RUNNING;
    case VIR_DOMAIN_PAUSED:
        return HV_POWER_PAUSED;
    case VIR_DOMAIN_SHUTOFF:
        return virDomainHasManagedSaveImage(dom, 0) == 1 ? HV_POWER_SUSPENDED : HV_POWER_SHUTOFF;
    case VIR_DOMAIN_CRASHED:
        return HV_POWER_CRASHED;
    default:
        return HV_POWER_OTHER;
    }
}

int
hv_domain_define(struct hv_conn *conn, const char *xml, struct na_error **err)
{
    virConnectPtr virt = hv_borrow(conn, err);
    if (!virt)
        return -ENOTCONN;
    virDomainPtr dom = virDomainDefineXMLFlags(virt, xml, VIR_DOMAIN_DEFINE_VALIDATE);
    int ret = dom ? 0 : hv_error(err, "define domain", NULL);
    if (dom)
        virDomainFree(dom);
    virConnectClose(virt);
    return ret;
}

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* An active domain is not yet a started one: a start that an agent's crash cut short
 * leaves it paused, either while libvirt still finishes starting it ("starting up", waited
 * for) or for good (started paused, or libvirt's start failed halfway).  The caller wants
 * it running: it is resumed, or the call fails saying why it is not running. */
static int
ensure_running(struct hv_call *c, const char *uuid, struct na_error **err)
{
    int state = VIR_DOMAIN_NOSTATE, reason = 0;
    for (unsigned waited = 0;; waited += START_POLL_MS) {
        if (virDomainGetState(c->dom, &state, &reason, 0) < 0)
            return hv_error(err, "state of", uuid);
        if (state != VIR_DOMAIN_PAUSED || reason != VIR_DOMAIN_PAUSED_STARTING_UP ||
            waited >= START_WAIT_MS)
            break;
        sleep_ms(START_POLL_MS);
    }
    if (state != VIR_DOMAIN_PAUSED)
        return 0;
    if (reason == VIR_DOMAIN_PAUSED_STARTING_UP)
        return na_error_quiet(err, NA_CODE_HYPERVISOR, ETIMEDOUT,
                              "start %s: libvirt has been starting the domain for over %u s", uuid,
                              START_WAIT_MS / 1000);
    if (virDomainResume(c->dom) < 0) {
        int ret = hv_error(err, "resume the half-started domain", uuid);
        na_error_wrap(err, "it is paused (libvirt's reason %d)", reason);
        return ret;
    }
    return 0;
}

int
hv_domain_start(struct hv_conn *conn, const char *uuid, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "start", &c, err);
    if (ret < 0)
        return ret;
    /* Already active: an earlier attempt started it, or is still starting it in libvirt. */
    if (virDomainIsActive(c.dom) != 1 && virDomainCreate(c.dom) < 0 &&
        virDomainIsActive(c.dom) != 1)
        return hv_error(err, "start", uuid);
    return ensure_running(&c, uuid, err);
}

int
hv_domain_power(struct hv_conn *conn, const char *uuid, enum hv_power *out, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    cleanup_error struct na_error *lookup = NULL;
    int ret = hv_call_begin(conn, uuid, "state of", &c, &lookup);
    if (ret == -ENOENT) {
        *out = HV_POWER_NONE;
        return 0;
    }
    if (ret < 0) {
        if (err && !*err)
            *err = na_steal(&lookup);
        return ret;
    }
    *out = power_of(c.dom);
    return 0;
}

int
hv_domain_shutdown(struct hv_conn *conn, const char *uuid, unsigned timeout_s,
                   struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "stop", &c, err);
    if (ret < 0)
        return ret;
    if (virDomainIsActive(c.dom) != 1)
        return 0;
    /* A paused guest cannot see the ACPI button: it is forced off. */
    if (power_of(c.dom) == HV_POWER_RUNNING &&
        virDomainShutdownFlags(c.dom, VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) == 0) {
        na_failpoint("domain.shutdown_requested");
        for (unsigned waited = 0; waited < timeout_s * 1000; waited += SHUTDOWN_POLL_MS) {
            if (virDomainIsActive(c.dom) != 1)
                return 0;
            sleep_ms(SHUTDOWN_POLL_MS);
        }
        na_log(NA_LOG_INFO, NULL, "guest ignored the power button; forcing it off",
               "instance=%s timeout_s=%u", uuid, timeout_s);
    }
    if (virDomainDestroy(c.dom) < 0 && virDomainIsActive(c.dom) == 1)
        return hv_error(err, "force off", uuid);
    return 0;
}

int
hv_domain_destroy(struct hv_conn *conn, const char *uuid, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "force off", &c, err);
    if (ret < 0)
        return ret;
    if (virDomainIsActive(c.dom) != 1)
        return 0;
    if (virDomainDestroy(c.dom) < 0 && virDomainIsActive(c.dom) == 1)
        return hv_error(err, "force off", uuid);
    return 0;
}

int
hv_domain_reboot(struct hv_conn *conn, const char *uuid, bool hard, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "reboot", &c, err);
    if (ret < 0)
        return ret;
    if (hard)
        ret = virDomainReset(c.dom, 0);
    else
        ret = virDomainReboot(c.dom, VIR_DOMAIN_REBOOT_ACPI_POWER_BTN);
    return ret < 0 ? hv_error(err, hard ? "reset" : "reboot", uuid) : 0;
}

int
hv_domain_pause(struct hv_conn *conn, const char *uuid, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "pause", &c, err);
    if (ret < 0)
        return ret;
    if (power_of(c.dom) == HV_POWER_PAUSED)
        return 0;
    return virDomainSuspend(c.dom) < 0 ? hv_error(err, "pause", uuid) : 0;
}

int
hv_domain_resume(struct hv_conn *conn, const char *uuid, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "resume", &c, err);
    if (ret < 0)
        return ret;
    if (power_of(c.dom) != HV_POWER_PAUSED)
        return 0;
    return virDomainResume(c.dom) < 0 ? hv_error(err, "resume", uuid) : 0;
}

int
hv_domain_managed_save(struct hv_conn *conn, const char *uuid, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "suspend", &c, err);
    if (ret < 0)
        return ret;
    if (power_of(c.dom) == HV_POWER_SUSPENDED)
        return 0;
    return virDomainManagedSave(c.dom, 0) < 0 ? hv_error(err, "suspend", uuid) : 0;
}

int
hv_domain_undefine(struct hv_conn *conn, const char *uuid, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    cleanup_error struct na_error *lookup = NULL;
    int ret = hv_call_begin(conn, uuid, "delete", &c, &lookup);
    if (ret == -ENOENT)
        return 0;
    if (ret < 0) {
        if (err && !*err)
            *err = na_steal(&lookup);
        return ret;
    }
    if (virDomainIsActive(c.dom) == 1 && virDomainDestroy(c.dom) < 0 &&
        virDomainIsActive(c.dom) == 1)
        return hv_error(err, "force off", uuid);
    unsigned flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                     VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | VIR_DOMAIN_UNDEFINE_NVRAM;
    if (virDomainUndefineFlags(c.dom, flags) < 0)
        return hv_error(err, "undefine", uuid);
    return 0;
}

int
hv_domain_set_owner(struct hv_conn *conn, const char *uuid, const char *node_id,
                    const char *store_id, struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "set the owner of", &c, err);
    if (ret < 0)
        return ret;
    cleanup_free char *xml = virDomainGetXMLDesc(c.dom, VIR_DOMAIN_XML_INACTIVE);
    if (!xml)
        return hv_error(err, "read definition of", uuid);
    cleanup_free char *instance = NULL;
    if ((ret = hv_domain_meta_with_owner(xml, node_id, store_id, &instance, err)) < 0)
        return ret;
    int active = virDomainIsActive(c.dom);
    if (active < 0)
        return hv_error(err, "set the owner of", uuid);
    unsigned flags = VIR_DOMAIN_AFFECT_CONFIG | (active ? VIR_DOMAIN_AFFECT_LIVE : 0);
    if (virDomainSetMetadata(c.dom, VIR_DOMAIN_METADATA_ELEMENT, instance, HV_METADATA_PREFIX,
                             HV_METADATA_NS, flags) < 0)
        return hv_error(err, "set the owner of", uuid);
    return 0;
}

int
hv_domain_get_xml(struct hv_conn *conn, const char *uuid, bool inactive, char **xml,
                  struct na_error **err)
{
    cleanup_hv_call struct hv_call c = {0};
    int ret = hv_call_begin(conn, uuid, "read definition of", &c, err);
    if (ret < 0)
        return ret;
    *xml = virDomainGetXMLDesc(c.dom, inactive ? VIR_DOMAIN_XML_INACTIVE : 0);
    return *xml ? 0 : hv_error(err, "read definition of", uuid);
}

int
hv_domain_list(struct hv_conn *conn, struct hv_domain_entry **out, size_t *n, struct na_error **err)
{
    virConnectPtr virt = hv_borrow(conn, err);
    if (!virt)
        return -ENOTCONN;
    virDomainPtr *doms = NULL;
    int count = virConnectListAllDomains(virt, &doms, 0);
    if (count < 0) {
        int ret = hv_error(err, "list domains", NULL);
        virConnectClose(virt);
        return ret;
    }
    struct hv_domain_entry *list = na_xcalloc((size_t)count, sizeof(*list));
    size_t used = 0;
    for (int i = 0; i < count; i++) {
        struct hv_domain_entry *e = &list[used];
        /* A domain may vanish between listing and asking: skip it. */
        if (virDomainGetUUIDString(doms[i], e->uuid) == 0 &&
            (e->xml = virDomainGetXMLDesc(doms[i], 0)) != NULL) {
            e->power = power_of(doms[i]);
            used++;
        }
        virDomainFree(doms[i]);
    }
    free(doms);
    virConnectClose(virt);
    *out = list;
    *n = used;
    return 0;
}

void
hv_domain_list_free(struct hv_domain_entry *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i].xml);
    free(list);
}
