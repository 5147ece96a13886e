/* The agent's life: start every part in order, run the loop, and stop gracefully.
 *
 * Start: state store (migrated), dispatcher, admin API, bus; undelivered events go out.
 * Once nothing holds the agent (the store compared with libvirt: orphans.h; the store
 * writable: store_hold.h), unfinished intents run again and requests are consumed.
 * SIGTERM/SIGINT: stop taking requests, park what
 * has not started (it stays recorded), let running operations finish for at most
 * agent.shutdown_timeout seconds, flush the bus, exit 0.  SIGHUP reopens the log file.
 */
#include "agent/core/agent.h"
#include "agent/ops/secgroups.h"
#include "agent/ops/jobs.h"
#include "agent/ops/ops.h"
#include "agent/ops/migrate.h"
#include "agent/observed/observed.h"
#include "agent/bus/events.h"
#include "agent/outputs/network.h"
#include "agent/outputs/outputs.h"
#include "agent/core/store_hold.h"
#include "agent/observed/uids.h"
#include "agent/observed/orphans.h"
#include "agent/admin/admin.h"
#include "agent/outputs/capacity.h"
#include "agent/bus/identity.h"
#include "agent/ops/instance_dir.h"
#include "agent/outputs/peers.h"
#include "agent/observed/guest_stats.h"
#include "storage/qcow2/qcow2.h"

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#define HOUSEKEEPING_MS (60 * 1000)
#define INTENT_RETENTION_MS (7LL * 24 * 3600 * 1000)
#define SHUTDOWN_POLL_MS 100
#define FLUSH_MS 5000

static int
mkdir_p(const char *path, mode_t mode, struct na_error **err)
{
    cleanup_free char *p = na_xstrdup(path);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char saved = *s;
        *s = '\0';
        if (mkdir(p, mode) < 0 && errno != EEXIST)
            return na_error_set(err, NA_CODE_INTERNAL, errno, "create directory `%s`", p);
        *s = saved;
        if (!saved)
            return 0;
    }
}

bool
agent_health(struct agent *a, struct agent_check checks[AGENT_N_CHECKS])
{
    struct agent_bus_stats st = {0};
    if (a->bus)
        agent_bus_get_stats(a->bus, &st);
    struct agent_check *bus = &checks[0], *db = &checks[1], *virt = &checks[2];
    bus->name = "bus";
    bus->ok = a->bus && st.up;
    snprintf(bus->detail, sizeof(bus->detail), "%s (bootstrap %s)",
             bus->ok ? "a broker is up" : "no broker reachable", a->cfg->bootstrap_servers);

    cleanup_error struct na_error *err = NULL;
    db->name = "database";
    db->ok = agent_store_ping(a->store, &err) == 0;
    snprintf(db->detail, sizeof(db->detail), "%s", db->ok ? "state store answers" : err->msg);
    if (db->ok && agent_store_hold_reason(a)) {
        db->ok = false;
        snprintf(db->detail, sizeof(db->detail),
                 "state store cannot be written (%s): requests are held, consumption is paused "
                 "until a write succeeds",
                 agent_store_hold_reason(a));
    }

    virt->name = "libvirt";
    virt->ok = a->libvirt_up;
    snprintf(virt->detail, sizeof(virt->detail), "%s (%s)",
             a->libvirt_detail ? a->libvirt_detail : "connecting", a->cfg->hv_uri);
    agent_net_health(a, &checks[3]);
    struct agent_check *orphans = &checks[4];
    orphans->name = "orphans";
    orphans->ok = !agent_orphans_holding(a, orphans->detail, sizeof(orphans->detail));
    return bus->ok && db->ok && virt->ok && checks[3].ok && orphans->ok;
}

void
agent_gauges(struct agent *a, struct agent_gauges *g)
{
    struct agent_bus_stats st = {.consumer_lag = -1};
    if (a->bus)
        agent_bus_get_stats(a->bus, &st);
    struct agent_check checks[AGENT_N_CHECKS];
    *g = (struct agent_gauges){
        .uptime_s = (double)(na_mono_ns() - a->started_ns) / 1e9,
        .queued = agent_dispatch_queued(a->dispatch),
        .running = agent_dispatch_running(a->dispatch),
        .jobs_waiting = agent_jobs_waiting(a->jobs),
        .outbox = agent_store_outbox_count(a->store),
        .store_bytes = agent_store_size_bytes(a->store),
        .store_intents = agent_store_intent_count(a->store),
        .intent_retention_s = (double)INTENT_RETENTION_MS / 1000.0,
        .bus_lag = st.consumer_lag,
        .bus_up = st.up,
        .healthy = agent_health(a, checks),
        .bus_received = st.received,
        .bus_delivered = st.delivered,
        .bus_delivery_failed = st.delivery_failed,
        .insecure_unsigned = a->identity && a->identity->insecure,
        .peers = agent_peers_count(a),
        .store_held = a->store_hold != NULL,
        .orphans = a->orphans->n,
        .holding = a->orphans->holding || !a->orphans->checked,
        .min_free_bytes = (uint64_t)a->cfg->min_free_mib << 20,
        .uids_quarantined = a->uids->n_quarantined,
    };
    if (agent_disk_free(a, &g->disk_free_bytes, NULL) < 0)
        g->disk_free_bytes = 0;
    for (size_t i = 0; i < a->uids->n_quarantined; i++)
        g->uids_held += a->uids->quarantined[i].held;
    if (a->identity && !a->identity->insecure)
        g->node_cert_expiry_s =
            (double)(a->identity->cert_info.not_after_ms - na_now_ms()) / 1000.0;
    agent_capacity_gauges(a, g);
}

void
agent_backpressure(struct agent *a)
{
    if (!a->bus || a->stopping)
        return;
    size_t queued = agent_dispatch_queued(a->dispatch);
    if (!a->bus_paused && queued >= a->cfg->max_queued) {
        a->bus_paused = true;
        agent_bus_pause(a->bus, true);
    } else if (a->bus_paused && queued <= a->cfg->max_queued / 2) {
        a->bus_paused = false;
        agent_bus_pause(a->bus, false);
    }
}

void
agent_gate_update(struct agent *a)
{
    bool orphans = agent_orphans_gate(a);
    bool store = a->store_hold != NULL;
    if (a->bus) {
        agent_bus_hold(a->bus, AGENT_BUS_HOLD_ORPHANS, orphans);
        agent_bus_hold(a->bus, AGENT_BUS_HOLD_STORE, store);
    }
    if (orphans || store || a->replayed || a->stopping)
        return;
    a->replayed = true;
    cleanup_error struct na_error *err = NULL;
    if (agent_replay_open_intents(a, &err) < 0)
        agent_die(a, err);
}

void
agent_die(struct agent *a, const struct na_error *err)
{
    (void)a;
    na_log(NA_LOG_ERROR, NULL,
           "state store write failed; exiting without acknowledging the request, which the "
           "bus will deliver again",
           "error=\"%s\"", err ? err->msg : "unknown");
    _exit(1);
}

static void
on_health(void *ctx, bool up)
{
    /* Otherwise read on demand by /healthz; logged by the bus. */
    if (up) {
        agent_capacity_bus_up(ctx);
        agent_peers_bus_up(ctx);
    }
}

static void
close_handle(uv_handle_t *h)
{
    if (h->loop && !uv_is_closing(h))
        uv_close(h, NULL);
}

/* Running operations are done (or we gave up waiting): close everything. */
static void
finish_shutdown(struct agent *a)
{
    uv_timer_stop(&a->shutdown_timer);
    close_handle((uv_handle_t *)&a->shutdown_timer);
    close_handle((uv_handle_t *)&a->housekeeping);
    agent_store_hold_close(a);
    close_handle((uv_handle_t *)&a->reconcile_timer);
    close_handle((uv_handle_t *)&a->sig_term);
    close_handle((uv_handle_t *)&a->sig_int);
    close_handle((uv_handle_t *)&a->sig_hup);
    agent_outputs_close(a);
    agent_capacity_close(a);
    agent_peers_close(a);
    agent_guest_stats_close(a);
    agent_outbox_pump(a);
    agent_bus_close(a->bus, FLUSH_MS);
    a->bus = NULL;
    agent_outbox_close(a);
    close_handle((uv_handle_t *)&a->outbox_timer);
    agent_admin_close(a->admin);
    a->admin = NULL;
    /* The libvirt thread posts to the mailbox: stop it first. */
    hv_close(a->host.hv);
    a->host.hv = NULL;
    agent_mailbox_close(a->mailbox);
    a->mailbox = NULL;
    a->host.mailbox = NULL;
    na_log(NA_LOG_INFO, NULL, "agent stopped", "outbox=%lld",
           a->store ? (long long)agent_store_outbox_count(a->store) : -1LL);
}

static void
on_shutdown_tick(uv_timer_t *t)
{
    struct agent *a = t->data;
    size_t running = agent_dispatch_running(a->dispatch);
    if (running == 0) {
        finish_shutdown(a);
        return;
    }
    if (uv_now(a->loop) >= a->shutdown_deadline_ms) {
        /* Their intents stay "running" and run again at the next start. */
        na_log(NA_LOG_WARN, NULL,
               "shutdown timeout: operations still running are left "
               "recorded for the next start",
               "running=%zu", running);
        _exit(0);
    }
}

static void
begin_shutdown(struct agent *a, const char *why)
{
    if (a->stopping)
        return;
    a->stopping = true;
    size_t running = agent_dispatch_running(a->dispatch);
    na_log(NA_LOG_INFO, NULL, "shutting down", "reason=%s running=%zu queued=%zu", why, running,
           agent_dispatch_queued(a->dispatch));
    agent_park_queued(a);
    if (running == 0) {
        finish_shutdown(a);
        return;
    }
    a->shutdown_deadline_ms = uv_now(a->loop) + (uint64_t)a->cfg->shutdown_timeout_s * 1000;
    uv_timer_start(&a->shutdown_timer, on_shutdown_tick, SHUTDOWN_POLL_MS, SHUTDOWN_POLL_MS);
}

static void
on_signal(uv_signal_t *h, int signum)
{
    struct agent *a = h->data;
    if (signum == SIGHUP) {
        cleanup_error struct na_error *err = NULL;
        if (na_log_open(a->cfg->log_file, &err) < 0)
            na_log(NA_LOG_ERROR, NULL, "reopening the log failed", "error=\"%s\"", err->msg);
        else
            na_log(NA_LOG_INFO, NULL, "log reopened", NULL);
        return;
    }
    begin_shutdown(a, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void
on_reconcile_timer(uv_timer_t *t)
{
    agent_reconcile(t->data);
}

/* At start, before the loop runs and before any request: every instance's directory made
 * safe to hand to libvirt (agent/ops/instance_dir.h).  A few system calls per instance. */
static void
secure_instance_dirs(struct agent *a)
{
    for (size_t i = 0; i < a->instances.n; i++) {
        const char *uuid = a->instances.items[i]->uuid;
        cleanup_error struct na_error *err = NULL;
        if (agent_instance_dir_secure(a->host.instances_dir, uuid, &err) < 0) {
            struct na_log_ctx log = {.instance = uuid};
            na_log(NA_LOG_ERROR, &log, "could not secure the instance's directory", "error=\"%s\"",
                   err->msg);
        }
    }
}

static void
on_housekeeping(uv_timer_t *t)
{
    struct agent *a = t->data;
    if (!a->stopping)
        agent_evict_images(a);
    if (agent_uids_waiting(a->uids))
        agent_uids_scan(a);
    if (!a->stopping)
        agent_migrations_expire(a);
    cleanup_error struct na_error *err = NULL;
    int n = agent_store_intent_prune(a->store, na_now_ms() - INTENT_RETENTION_MS, &err);
    if (n < 0)
        na_log(NA_LOG_WARN, NULL, "pruning old intents failed", "error=\"%s\"", err->msg);
    else if (n > 0)
        na_log(NA_LOG_INFO, NULL, "pruned finished intents", "count=%d", n);
    /* A tombstone outlives what it marks (reconciliation drops it then); one whose delete
     * never finished is kept as long as the intents, then its remains become orphans. */
    n = agent_store_tombstone_prune(a->store, na_now_ms() - INTENT_RETENTION_MS, &err);
    if (n < 0)
        na_log(NA_LOG_WARN, NULL, "pruning old tombstones failed", "error=\"%s\"", err->msg);
}

static void
signal_watch(struct agent *a, uv_signal_t *h, int signum)
{
    uv_signal_init(a->loop, h);
    h->data = a;
    uv_signal_start(h, on_signal, signum);
}

static int
open_image_cache(struct agent *a, struct na_error **err)
{
    const struct agent_config *cfg = a->cfg;
    struct qcow2_image_cache_config c;
    qcow2_image_cache_config_init(&c);
    c.dir = a->host.images_dir;
    c.max_image_size = (uint64_t)cfg->image_max_size_gib << 30;
    c.connect_timeout_s = cfg->image_connect_timeout_s;
    c.stall_timeout_s = cfg->image_stall_timeout_s;
    c.min_rate = (uint64_t)cfg->image_min_rate_kib << 10;
    c.max_total_size = (uint64_t)cfg->image_cache_max_size_gib << 30;
    c.retries = cfg->image_retries;
    c.tls_verify = cfg->image_tls_verify;
    c.ca_file = cfg->image_ca_file;
    c.allowed_networks = cfg->image_allowed_networks;
    c.n_allowed_networks = cfg->n_image_allowed_networks;
    c.group = a->host.qemu_gid;
    c.limits.max_virtual_size = (uint64_t)cfg->image_max_virtual_size_gib << 30;
    return qcow2_image_cache_open(&c, &a->host.images, err);
}

static int
agent_start(struct agent *a, struct na_error **err)
{
    const struct agent_config *cfg = a->cfg;
    a->host.cfg = cfg;
    a->host.instances_dir = na_xasprintf("%s/instances", cfg->state_dir);
    a->host.images_dir = na_xasprintf("%s/images", cfg->state_dir);
    struct group *grp = getgrnam(cfg->qemu_group);
    a->host.qemu_gid = grp ? grp->gr_gid : (gid_t)-1;
    if (!grp)
        na_log(NA_LOG_WARN, NULL, "the qemu group does not exist; creates will fail",
               "qemu_group=%s", cfg->qemu_group);
    /* Guests' QEMU uids must reach their own instance directory, and nothing else: the
     * state directory and instances/ are traversable, not listable. */
    int ret = mkdir_p(a->host.instances_dir, 0711, err);
    if (ret < 0)
        return ret;
    if (chmod(cfg->state_dir, 0711) < 0 || chmod(a->host.instances_dir, 0711) < 0)
        return na_error_set(err, NA_CODE_INTERNAL, errno, "set the mode of `%s`", cfg->state_dir);
    if ((ret = agent_identity_load(cfg, true, &a->identity, err)) < 0)
        return ret;
    if (a->identity->insecure)
        na_log(NA_LOG_WARN, NULL,
               "INSECURE: [bus] insecure_unsigned = true: requests and announcements are not "
               "authenticated; anyone who can write to the bus controls this node",
               NULL);
    else
        na_log(NA_LOG_INFO, NULL, "identity loaded",
               "node_key=%s fingerprint=%s cert_not_after_ms=%lld", cfg->node_key,
               a->identity->fingerprint, (long long)a->identity->cert_info.not_after_ms);
    cleanup_free char *db = na_xasprintf("%s/state.db", cfg->state_dir);
    if ((ret = agent_store_open(db, &a->store, err)) < 0)
        return ret;
    memcpy(a->host.store_id, agent_store_id(a->store), sizeof(a->host.store_id));
    if ((ret = agent_instances_load(&a->instances, a->store, err)) < 0 ||
        (ret = agent_secgroups_load(a->secgroups, a->store, err)) < 0)
        return ret;
    secure_instance_dirs(a);
    if ((ret = open_image_cache(a, err)) < 0 || (ret = agent_uids_open(a, err)) < 0)
        return ret;
    a->mailbox = agent_mailbox_new(a->loop, a);
    a->host.mailbox = a->mailbox;
    hv_domain_xml_init();
    struct hv_callbacks hv_cb = {
        .ctx = a,
        .on_event = agent_hv_on_event,
        .on_connection = agent_hv_on_connection,
    };
    if ((ret = hv_open(cfg->hv_uri, &hv_cb, &a->host.hv, err)) < 0)
        return ret;
    if ((ret = agent_net_open(a, err)) < 0)
        return ret;

    a->dispatch = agent_dispatch_new(a->loop);
    agent_outbox_init(a);
    uv_timer_init(a->loop, &a->housekeeping);
    a->housekeeping.data = a;
    uv_timer_init(a->loop, &a->reconcile_timer);
    a->reconcile_timer.data = a;
    uv_timer_init(a->loop, &a->shutdown_timer);
    a->shutdown_timer.data = a;
    signal_watch(a, &a->sig_term, SIGTERM);
    signal_watch(a, &a->sig_int, SIGINT);
    signal_watch(a, &a->sig_hup, SIGHUP);

    if ((ret = agent_admin_open(a, &a->admin, err)) < 0)
        return ret;
    struct agent_bus_callbacks cb = {
        .ctx = a,
        .on_request = agent_intake,
        .on_delivery = agent_outbox_on_delivery,
        .on_health = on_health,
        .on_announcement = agent_peers_on_announcement,
        .on_nodes_caught_up = agent_peers_caught_up,
    };
    if ((ret = agent_bus_open(a->loop, cfg, &cb, &a->bus, err)) < 0)
        return ret;
    if ((ret = agent_capacity_open(a, err)) < 0 || (ret = agent_peers_open(a, err)) < 0)
        return ret;
    agent_outputs_open(a);
    /* Nothing is consumed, and nothing unfinished runs again, until the store is compared with
     * libvirt (orphans.h) and can be written (store_hold.h): agent_gate_update() opens. */
    agent_store_hold_if_unwritable(a);
    agent_gate_update(a);
    agent_outbox_pump(a);
    agent_guest_stats_open(a);
    uv_timer_start(&a->housekeeping, on_housekeeping, HOUSEKEEPING_MS, HOUSEKEEPING_MS);
    uint64_t every = (uint64_t)cfg->reconcile_interval_s * 1000;
    uv_timer_start(&a->reconcile_timer, on_reconcile_timer, every, every);
    return 0;
}

int
agent_run(const struct agent_config *cfg)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct agent a = {
        .cfg = cfg,
        .loop = &loop,
        .started_ns = na_mono_ns(),
        .topic_events = agent_topic_events(cfg),
        .orphans = na_xcalloc(1, sizeof(*a.orphans)),
        .uids = na_xcalloc(1, sizeof(*a.uids)),
        .secgroups = na_xcalloc(1, sizeof(*a.secgroups)),
        .jobs = na_xcalloc(1, sizeof(*a.jobs)),
    };

    cleanup_error struct na_error *err = NULL;
    if (agent_start(&a, &err) < 0) {
        na_log(NA_LOG_ERROR, NULL, "agent failed to start", "error=\"%s\"", err->msg);
        a.exit_status = 1;
        a.stopping = true;
        finish_shutdown(&a);
    } else {
        na_log(NA_LOG_INFO, NULL, "agent started",
               "node_id=%s version=%s state_dir=%s admin_socket=%s workers=%u", cfg->node_id,
               AGENT_VERSION, cfg->state_dir, cfg->admin_socket, cfg->workers);
    }

    uv_run(&loop, UV_RUN_DEFAULT);

    agent_jobs_release_waiting(a.jobs);
    free(a.jobs);
    agent_dispatch_free(a.dispatch);
    agent_net_close(&a);
    agent_store_close(a.store);
    agent_instances_clear(&a.instances);
    agent_secgroups_clear(a.secgroups);
    free(a.secgroups);
    agent_orphans_clear(a.orphans);
    free(a.orphans);
    agent_uids_close(a.uids);
    free(a.uids);
    qcow2_image_cache_close(a.host.images);
    free(a.host.instances_dir);
    free(a.host.images_dir);
    free(a.libvirt_detail);
    free(a.topic_events);
    agent_identity_free(a.identity);
    if (uv_loop_close(&loop) != 0)
        na_log(NA_LOG_WARN, NULL, "event loop closed with handles still open", NULL);
    return a.exit_status;
}
