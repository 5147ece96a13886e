/* The libvirt connection: one event thread owns connecting, keepalive, reconnecting and
 * event delivery; worker threads borrow the connection for their calls. */
#include "hypervisor/hypervisor-private.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 5000
#define KEEPALIVE_INTERVAL_S 5
#define KEEPALIVE_COUNT 3

struct hv_conn {
    char *uri;
    struct hv_callbacks cb;
    pthread_t thread;
    atomic_bool stop;

    pthread_mutex_t lock;
    virConnectPtr virt; /* guarded by lock; NULL while disconnected */
    atomic_bool closed; /* set by libvirt's close callback, from the event loop */
    int lifecycle_cb;   /* event thread only */
    int reboot_cb;      /* event thread only */
    int tick_timer;     /* event thread only */
};

static const char *const power_names[] = {
    [HV_POWER_NONE] = "none",           [HV_POWER_RUNNING] = "running",
    [HV_POWER_PAUSED] = "paused",       [HV_POWER_SHUTOFF] = "shutoff",
    [HV_POWER_SUSPENDED] = "suspended", [HV_POWER_CRASHED] = "crashed",
    [HV_POWER_OTHER] = "other",
};

const char *
hv_power_name(enum hv_power power)
{
    return (unsigned)power < NA_ARRAY_SIZE(power_names) ? power_names[power] : "unknown";
}

static const char *const event_names[] = {
    [HV_EVENT_STARTED] = "started", [HV_EVENT_STOPPED] = "stopped",
    [HV_EVENT_CRASHED] = "crashed", [HV_EVENT_PAUSED] = "paused",
    [HV_EVENT_RESUMED] = "resumed", [HV_EVENT_REBOOTED] = "rebooted",
    [HV_EVENT_SAVED] = "saved",     [HV_EVENT_UNDEFINED] = "undefined",
};

const char *
hv_event_kind_name(enum hv_event_kind kind)
{
    return (unsigned)kind < NA_ARRAY_SIZE(event_names) ? event_names[kind] : "unknown";
}

int
hv_error(struct na_error **err, const char *what, const char *uuid)
{
    virErrorPtr e = virGetLastError();
    bool missing = e && e->code == VIR_ERR_NO_DOMAIN;
    const char *msg = e && e->message ? e->message : "unknown libvirt error";
    if (missing)
        return na_error_quiet(err, NA_CODE_NOT_FOUND, ENOENT, "%s %s: no such domain", what,
                              uuid ? uuid : "");
    return na_error_quiet(err, NA_CODE_HYPERVISOR, EIO, "%s %s: %s", what, uuid ? uuid : "", msg);
}

virConnectPtr
hv_borrow(struct hv_conn *conn, struct na_error **err)
{
    pthread_mutex_lock(&conn->lock);
    virConnectPtr v = conn->virt;
    if (v)
        virConnectRef(v);
    pthread_mutex_unlock(&conn->lock);
    if (!v)
        na_error_quiet(err, NA_CODE_UNAVAILABLE, ENOTCONN, "libvirt at %s is not connected",
                       conn->uri);
    return v;
}

bool
hv_connected(struct hv_conn *conn)
{
    pthread_mutex_lock(&conn->lock);
    bool up = conn->virt != NULL;
    pthread_mutex_unlock(&conn->lock);
    return up;
}

static void
emit(struct hv_conn *conn, virDomainPtr dom, enum hv_event_kind kind, bool by_guest, int detail)
{
    struct hv_event ev = {.kind = kind, .by_guest = by_guest, .detail = detail};
    if (virDomainGetUUIDString(dom, ev.uuid) < 0)
        return;
    if (conn->cb.on_event)
        conn->cb.on_event(conn->cb.ctx, &ev);
}

static int
on_lifecycle(virConnectPtr virt, virDomainPtr dom, int event, int detail, void *opaque)
{
    (void)virt;
    struct hv_conn *conn = opaque;
    switch (event) {
    case VIR_DOMAIN_EVENT_STARTED:
        emit(conn, dom, HV_EVENT_STARTED, false, detail);
        break;
    case VIR_DOMAIN_EVENT_SUSPENDED:
        emit(conn, dom, HV_EVENT_PAUSED, false, detail);
        break;
    case VIR_DOMAIN_EVENT_RESUMED:
        emit(conn, dom, HV_EVENT_RESUMED, false, detail);
        break;
    case VIR_DOMAIN_EVENT_STOPPED:
        if (detail == VIR_DOMAIN_EVENT_STOPPED_CRASHED)
            emit(conn, dom, HV_EVENT_CRASHED, false, detail);
        else if (detail == VIR_DOMAIN_EVENT_STOPPED_SAVED)
            emit(conn, dom, HV_EVENT_SAVED, false, detail);
        else
            emit(conn, dom, HV_EVENT_STOPPED, detail == VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN, detail);
        break;
    case VIR_DOMAIN_EVENT_CRASHED:
        emit(conn, dom, HV_EVENT_CRASHED, false, detail);
        break;
    case VIR_DOMAIN_EVENT_UNDEFINED:
        emit(conn, dom, HV_EVENT_UNDEFINED, false, detail);
        break;
    default:
        break;
    }
    return 0;
}

static int
on_reboot(virConnectPtr virt, virDomainPtr dom, void *opaque)
{
    (void)virt;
    emit(opaque, dom, HV_EVENT_REBOOTED, true, 0);
    return 0;
}

static void
on_close(virConnectPtr virt, int reason, void *opaque)
{
    (void)virt;
    struct hv_conn *conn = opaque;
    na_log(NA_LOG_WARN, NULL, "libvirt connection closed", "uri=%s reason=%d", conn->uri, reason);
    atomic_store(&conn->closed, true);
}

static void
on_tick(int timer, void *opaque)
{
    (void)timer;
    (void)opaque; /* only makes virEventRunDefaultImpl() return, to look at the flags */
}

static void
disconnect(struct hv_conn *conn, const char *why)
{
    pthread_mutex_lock(&conn->lock);
    virConnectPtr v = conn->virt;
    conn->virt = NULL;
    pthread_mutex_unlock(&conn->lock);
    if (!v)
        return;
    if (conn->lifecycle_cb >= 0)
        virConnectDomainEventDeregisterAny(v, conn->lifecycle_cb);
    if (conn->reboot_cb >= 0)
        virConnectDomainEventDeregisterAny(v, conn->reboot_cb);
    virConnectUnregisterCloseCallback(v, on_close);
    conn->lifecycle_cb = conn->reboot_cb = -1;
    virConnectClose(v);
    if (conn->cb.on_connection)
        conn->cb.on_connection(conn->cb.ctx, false, why);
}

static bool
try_connect(struct hv_conn *conn, char *why, size_t why_size)
{
    virConnectPtr v = virConnectOpen(conn->uri);
    if (!v) {
        virErrorPtr e = virGetLastError();
        snprintf(why, why_size, "%s", e && e->message ? e->message : "connect failed");
        return false;
    }
    virConnectSetKeepAlive(v, KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT);
    virConnectRegisterCloseCallback(v, on_close, conn, NULL);
    conn->lifecycle_cb =
        virConnectDomainEventRegisterAny(v, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                         VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), conn, NULL);
    conn->reboot_cb = virConnectDomainEventRegisterAny(
        v, NULL, VIR_DOMAIN_EVENT_ID_REBOOT, VIR_DOMAIN_EVENT_CALLBACK(on_reboot), conn, NULL);
    atomic_store(&conn->closed, false);
    pthread_mutex_lock(&conn->lock);
    conn->virt = v;
    pthread_mutex_unlock(&conn->lock);
    return true;
}

static void
sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void *
event_thread(void *arg)
{
    struct hv_conn *conn = arg;
    unsigned backoff = BACKOFF_MIN_MS;
    char why[512] = "";
    bool said_down = false;
    while (!atomic_load(&conn->stop)) {
        if (!hv_connected(conn)) {
            if (try_connect(conn, why, sizeof(why))) {
                backoff = BACKOFF_MIN_MS;
                said_down = false;
                na_log(NA_LOG_INFO, NULL, "libvirt connected", "uri=%s", conn->uri);
                if (conn->cb.on_connection)
                    conn->cb.on_connection(conn->cb.ctx, true, "connected");
            } else {
                if (!said_down) {
                    char quoted[600];
                    na_log(NA_LOG_WARN, NULL, "libvirt not reachable; retrying", "uri=%s error=%s",
                           conn->uri, na_log_quote(quoted, sizeof(quoted), why));
                    if (conn->cb.on_connection)
                        conn->cb.on_connection(conn->cb.ctx, false, why);
                    said_down = true;
                }
                for (unsigned slept = 0; slept < backoff && !atomic_load(&conn->stop); slept += 100)
                    sleep_ms(100);
                backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
                continue;
            }
        }
        virEventRunDefaultImpl();
        if (atomic_load(&conn->closed))
            disconnect(conn, "connection closed (libvirtd restarted or went away)");
    }
    disconnect(conn, "agent stopping");
    return NULL;
}

/* libvirt prints every error on stderr unless told otherwise; ours are logged where they
 * happen, with context. */
static void
quiet_errors(void *opaque, virErrorPtr e)
{
    (void)opaque;
    (void)e;
}

static void
register_event_impl(void)
{
    virSetErrorFunc(NULL, quiet_errors);
    if (virEventRegisterDefaultImpl() < 0)
        na_log(NA_LOG_ERROR, NULL, "libvirt event loop could not be registered", NULL);
}

int
hv_open(const char *uri, const struct hv_callbacks *cb, struct hv_conn **out, struct na_error **err)
{
    /* libvirt's event implementation is process-wide and must exist before a connection
     * is opened. */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_event_impl);

    struct hv_conn *conn = na_xcalloc(1, sizeof(*conn));
    conn->uri = na_xstrdup(uri);
    conn->cb = *cb;
    conn->lifecycle_cb = conn->reboot_cb = -1;
    pthread_mutex_init(&conn->lock, NULL);
    conn->tick_timer = virEventAddTimeout(500, on_tick, NULL, NULL);
    int e = pthread_create(&conn->thread, NULL, event_thread, conn);
    if (e) {
        virEventRemoveTimeout(conn->tick_timer);
        free(conn->uri);
        free(conn);
        return na_error_set(err, NA_CODE_INTERNAL, e, "start the libvirt event thread");
    }
    *out = conn;
    return 0;
}

void
hv_close(struct hv_conn *conn)
{
    if (!conn)
        return;
    atomic_store(&conn->stop, true);
    pthread_join(conn->thread, NULL);
    virEventRemoveTimeout(conn->tick_timer);
    pthread_mutex_destroy(&conn->lock);
    free(conn->uri);
    free(conn);
}

int
hv_call_begin(struct hv_conn *conn, const char *uuid, const char *what, struct hv_call *c,
              struct na_error **err)
{
    c->virt = hv_borrow(conn, err);
    if (!c->virt)
        return -ENOTCONN;
    c->dom = virDomainLookupByUUIDString(c->virt, uuid);
    return c->dom ? 0 : hv_error(err, what, uuid);
}

void
hv_call_end(struct hv_call *c)
{
    if (c->dom)
        virDomainFree(c->dom);
    if (c->virt)
        virConnectClose(c->virt);
}
