/* The core room: the state the main loop owns, and how the rooms are wired.
 *
 * Job: start the agent (config, identity, store, instance table, libvirt, OVS, bus, admin
 * API), gate requests while the store and libvirt disagree or the store cannot be written,
 * and stop cleanly (core/loop.c).  The other rooms take their inputs from here:
 *
 *   bus ──► bus/intake.c ──► (intent recorded, ACCEPTED event, offset acked)
 *                │
 *                ▼
 *           ops/execute.c ──► dispatch (a lane per instance) ──► worker: a handler's run()
 *                                                                  │
 *           bus/outbox.c ◄── terminal event recorded ◄─────────────┘
 *                │
 *                ▼
 *               bus          observed/: libvirt events, reconciliation, orphans, uids
 *                            outputs/: capacity, announcements, OVS, from the tables
 *                            admin/: the HTTP API and /metrics
 *
 * Inputs: the configuration file and the state directory.
 * Outputs: struct agent, for the loop's callbacks of every room; struct agent_host, the fixed
 * resources a worker may use.
 * Threading: only the main loop touches struct agent.  Worker threads see the plain inputs
 * they were given (an agent_op and its agent_host, a job's copies) and nothing else.
 */
#ifndef NODEAGENT_AGENT_AGENT_H
#define NODEAGENT_AGENT_AGENT_H

#include "agent/bus/bus.h"
#include "agent/core/config.h"
#include "agent/ops/dispatch.h"
#include "agent/observed/instances.h"
#include "agent/core/mailbox.h"
#include "agent/admin/metrics.h"
#include "proto/requests.h"
#include "agent/core/store.h"
#include "common/common.h"
#include "hypervisor/hypervisor.h"
#include "nodeagent.pb-c.h"

#include <sys/types.h>
#include <uv.h>

#define AGENT_VERSION "0.2.0"

struct agent_admin;
struct agent_orphans;
struct agent_uids;
struct agent_secgroups;
struct agent_jobs;
struct agent_store_hold;
struct agent_capacity;
struct agent_guest_stats;
struct agent_peers;
struct agent_identity;
struct ovs_net;
struct qcow2_image_cache;

/* What workers may use: set up at start, never changed after; every member is safe to use
 * from any thread. */
struct agent_host {
    const struct agent_config *cfg;
    struct hv_conn *hv;
    struct qcow2_image_cache *images;
    char *instances_dir;           /* <state_dir>/instances */
    char *images_dir;              /* <state_dir>/images */
    gid_t qemu_gid;                /* [instances] qemu_group; (gid_t)-1 when the group is missing */
    struct ovs_net *net;           /* tenant networks; NULL when [network] enabled = false */
    char store_id[37];             /* the state store's id, written into every domain's owner */
    struct agent_mailbox *mailbox; /* mail to the loop (agent_mailbox_post is thread-safe) */
};

struct agent {
    const struct agent_config *cfg;
    struct agent_identity *identity;
    uv_loop_t *loop;
    struct agent_store *store;
    struct agent_bus *bus;
    struct agent_dispatch *dispatch;
    struct agent_admin *admin;
    struct agent_metrics metrics;
    struct agent_instances instances;
    struct agent_secgroups *secgroups; /* ops/secgroups.h */
    struct agent_orphans *orphans;     /* and the hold (observed/orphans.h) */
    struct agent_uids *uids; /* guest uids in quarantine, the last scan of their use (uids.h) */
    struct agent_host host;
    struct agent_mailbox *mailbox;
    struct agent_capacity *capacity;
    struct agent_peers *peers;
    struct agent_jobs *jobs;               /* the jobs waiting on the loop (ops/jobs.h) */
    struct agent_guest_stats *guest_stats; /* observed/guest_stats.h: the last per-guest figures */
    bool libvirt_up;
    char *libvirt_detail;
    bool reconciling;
    uv_timer_t reconcile_timer;
    uv_timer_t outputs_timer; /* outputs/outputs.c: recompute after the table changed */
    char *topic_events;

    uint64_t started_ns;
    bool stopping;
    bool bus_paused;
    struct agent_store_hold *store_hold; /* agent/core/store_hold.h; NULL while the store writes */
    bool replayed; /* unfinished intents have run again (once nothing held the agent) */
    int exit_status;

    /* The outbox: events recorded in the store, produced to the bus in id order. */
    int64_t outbox_cursor; /* highest id handed to the bus */
    int64_t *delivered;    /* ids acknowledged, removed from the store in batches */
    size_t n_delivered, delivered_cap;
    uv_timer_t outbox_timer; /* batch removal and retry after a full local queue */

    uv_signal_t sig_term, sig_int, sig_hup;
    uv_timer_t housekeeping;
    uv_timer_t shutdown_timer;
    uint64_t shutdown_deadline_ms; /* loop time */
};

/* main.c */
int agent_run(const struct agent_config *cfg);

/* Holds requests (and the replay of unfinished intents) while the orphans (orphans.h) or an
 * unwritable store (store_hold.h) say so, and releases them, replaying once, when neither
 * does.  Call after either changes. */
void agent_gate_update(struct agent *a);
/* The state directory's free bytes (agent/core/disk_room.c). */
int agent_disk_free(const struct agent *a, uint64_t *free_bytes, struct na_error **err);
/* NO_CAPACITY naming the filesystem when it has less than [agent] min_free_mib free; kind
 * names what is refused ("create"). */
int agent_disk_room_check(const struct agent *a, const char *kind, struct na_error **err);
/* Health, for /healthz, /v1/status and /metrics: one check per dependency. */
#define AGENT_N_CHECKS 5
struct agent_check {
    const char *name; /* "bus", "database", "libvirt", "ovs", "orphans" */
    bool ok;
    char detail[256];
};
bool agent_health(struct agent *a, struct agent_check checks[AGENT_N_CHECKS]);
void agent_gauges(struct agent *a, struct agent_gauges *g);

/* Called when the number of queued operations changed: pauses or resumes the bus. */
void agent_backpressure(struct agent *a);
/* A write to the state store failed where the agent cannot go on safely: stop at once,
 * without committing bus offsets, so that the request is delivered again after restart. */
void agent_die(struct agent *a, const struct na_error *err) __attribute__((noreturn));

#endif
