/* The agent: the state the main loop owns, and the paths a request takes through it.
 *
 *   bus ──► intake.c ──► (intent recorded, ACCEPTED event, offset acked)
 *                │
 *                ▼
 *           execute.c ──► dispatch (per-instance lane) ──► worker: handlers.c
 *                                                            │
 *           outbox.c ◄── terminal event recorded ◄───────────┘
 *                │
 *                ▼
 *               bus
 *
 * Only the main loop touches struct agent.  Worker threads see the agent_op they run
 * and nothing else.
 */
#ifndef NODEAGENT_AGENT_AGENT_H
#define NODEAGENT_AGENT_AGENT_H

#include "agent/bus.h"
#include "agent/config.h"
#include "agent/dispatch.h"
#include "agent/instances.h"
#include "agent/jobs.h"
#include "agent/mailbox.h"
#include "agent/metrics.h"
#include "agent/orphans.h"
#include "agent/requests.h"
#include "agent/store.h"
#include "agent/store_hold.h"
#include "agent/uids.h"
#include "common/common.h"
#include "hypervisor/hypervisor.h"
#include "nodeagent.pb-c.h"

#include <sys/types.h>
#include <uv.h>

#define AGENT_VERSION "0.2.0"

struct agent_admin;
struct agent_capacity;
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
    char *instances_dir; /* <state_dir>/instances */
    char *images_dir;    /* <state_dir>/images */
    gid_t qemu_gid;      /* [instances] qemu_group; (gid_t)-1 when the group is missing */
    struct ovs_net *net; /* tenant networks; NULL when [network] enabled = false */
    char store_id[37];   /* the state store's id, written into every domain's owner */
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
    struct agent_orphans orphans; /* and the hold */
    struct agent_uids uids;       /* guest uids in quarantine, the last scan of their use */
    struct agent_host host;
    struct agent_mailbox *mailbox;
    struct agent_capacity *capacity;
    struct agent_peers *peers;
    struct agent_jobs jobs; /* the jobs waiting on the loop (agent/jobs.h) */
    bool libvirt_up;
    char *libvirt_detail;
    bool reconciling;
    uv_timer_t reconcile_timer;
    char *topic_events;

    uint64_t started_ns;
    bool stopping;
    bool bus_paused;
    struct agent_store_hold *store_hold; /* agent/store_hold.h; NULL while the store writes */
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

/* An operation: one request being executed.  Owned by the dispatcher while queued or
 * running; the worker writes only result fields. */
struct agent_op {
    struct agent *agent;
    char *request_id;
    char *instance;
    char *key;
    enum agent_request_kind kind;
    Nodeagent__V1__Envelope *env;
    int64_t bus_offset;
    uint64_t received_ns;

    /* Inputs, set on the loop by the handler's prepare(). */
    const struct agent_host *host;
    Nodeagent__V1__InstanceSpec *spec; /* a copy of the instance's spec, owned */
    int64_t uid;
    Nodeagent__V1__InstanceState state_before;
    bool owns_record;      /* create: prepare() added the instance, so a failure removes it */
    bool noop;             /* prepare() found nothing to do (delete of a missing instance) */
    struct agent_job *job; /* its recorded phases (agent/jobs.h); set once prepare() passed */

    /* Results, set by the worker. */
    struct na_error *err;
    bool uid_held; /* the instance's domain or files could not be removed: its uid stays out */
    Nodeagent__V1__InstanceState state;
    uint8_t *console_log;
    size_t console_log_size;
    char *image_sha256; /* create, rebuild: the base image now used */
};

/* main.c */
int agent_run(const struct agent_config *cfg);

/* intake.c: a message from the node topic. */
void agent_intake(void *agent, const struct agent_bus_msg *msg);

/* execute.c */
void agent_execute(struct agent *a, struct agent_op *op);
int agent_replay_open_intents(struct agent *a, struct na_error **err);
void agent_park_queued(struct agent *a);
struct agent_op *agent_op_new(struct agent *a, Nodeagent__V1__Envelope *env, int64_t offset);
void agent_op_free(struct agent_op *op);

/* What a request kind does, in three steps.  A kind with no handler is UNIMPLEMENTED. */
struct agent_handler {
    /* On the loop when the operation's turn comes: check it against the instance table,
     * fill the op's inputs, mark the instance's task.  An error fails the operation
     * without running it. */
    int (*prepare)(struct agent *a, struct agent_op *op, struct na_error **err);
    /* In a worker: the blocking work of a one-phase job.  Only op and op->host may be
     * used. */
    int (*run)(struct agent_op *op, struct na_error **err);
    /* On the loop, inside the transaction that records the terminal event: apply the
     * result (success or failure) to the instance table. */
    int (*finish)(struct agent *a, struct agent_op *op, struct na_error **err);
    /* The work as recorded phases, in place of run() (agent/jobs.h); NULL: one phase. */
    const struct agent_job_kind *job;
};

/* handlers.c */
const struct agent_handler *agent_handler_for(enum agent_request_kind kind);
/* lifecycle.c: start, stop, reboot, pause, resume, suspend, console_log. */
extern const struct agent_handler agent_handle_start, agent_handle_stop, agent_handle_reboot,
    agent_handle_pause, agent_handle_resume, agent_handle_suspend, agent_handle_console_log;
/* provision.c: create, delete, rebuild, resize. */
extern const struct agent_handler agent_handle_create, agent_handle_delete, agent_handle_rebuild,
    agent_handle_resize;
/* Shared steps for operations on an existing instance. */
int agent_prepare_existing(struct agent *a, struct agent_op *op, struct na_error **err);
int agent_finish_power(struct agent *a, struct agent_op *op, struct na_error **err);
Nodeagent__V1__InstanceState agent_state_from_power(enum hv_power power);
/* Sends a PROGRESS event for op from any thread. */
void agent_op_progress(struct agent_op *op, unsigned percent, const char *fmt, ...) NA_PRINTF(3, 4);

/* reconcile.c: compares libvirt's domains and the instance directories with the table. */
void agent_reconcile(struct agent *a);
/* Holds requests (and the replay of unfinished intents) while the orphans (orphans.h) or an
 * unwritable store (store_hold.h) say so, and releases them, replaying once, when neither
 * does.  Call after either changes. */
void agent_gate_update(struct agent *a);
/* The state directory's free bytes (agent/disk_room.c). */
int agent_disk_free(const struct agent *a, uint64_t *free_bytes, struct na_error **err);
/* NO_CAPACITY naming the filesystem when it has less than [agent] min_free_mib free; kind
 * names what is refused ("create"). */
int agent_disk_room_check(const struct agent *a, const char *kind, struct na_error **err);
/* Removes cached images that nothing uses (agent/eviction.c), in a worker. */
void agent_evict_images(struct agent *a);

/* hvevents.c: libvirt's lifecycle events and connection changes, on the loop. */
void agent_hv_on_event(void *agent, const struct hv_event *ev);
void agent_hv_on_connection(void *agent, bool up, const char *detail);
/* Records a change of an instance's observed state and publishes STATE_CHANGED. */
void agent_instance_observed(struct agent *a, struct agent_instance *inst,
                             Nodeagent__V1__InstanceState state, const char *why);

/* events.c */
void agent_event_init(struct agent *a, Nodeagent__V1__Event *ev, Nodeagent__V1__EventKind kind,
                      const char *request_id, const char *instance, const char *request_kind,
                      int64_t offset);
/* Packs ev and records it in the outbox (inside the caller's transaction, if any);
 * a copy of the packed bytes goes to *recorded when it is not NULL. */
int agent_event_record(struct agent *a, const Nodeagent__V1__Event *ev, struct agent_blob *recorded,
                       struct na_error **err);
/* Above this many packed bytes an event is not stored: a small FAILED event saying so
 * stands for it.  Well under librdkafka's default message.max.bytes (1000000), so one
 * request cannot stop the node's events at the bus. */
#define AGENT_EVENT_SIZE_MAX (512 * 1024)
/* A small FAILED event standing for the packed event payload that the bus refused for
 * good (why says how).  Returns 0 and *out, -EINVAL when payload is not an event, or
 * -EMSGSIZE when the stand-in would be no smaller. */
int agent_event_stand_in(const struct agent_blob *payload, const char *why, struct agent_blob *out);
/* Replaces a packed event by its summary, the event without its bulk (the console tail),
 * which is what a finished intent keeps to answer a duplicate request. */
void agent_event_summarize(struct agent_blob *event);
/* Records and sends an event that no intent refers to (its own transaction). */
void agent_event_emit(struct agent *a, const Nodeagent__V1__Event *ev);
/* Sets ev->error from err; ev keeps pointers into err until it is packed. */
void agent_event_set_error(Nodeagent__V1__Event *ev, Nodeagent__V1__Error *slot,
                           const struct na_error *err);

/* outbox.c */
void agent_outbox_init(struct agent *a);
void agent_outbox_pump(struct agent *a);
void agent_outbox_on_delivery(void *agent, int64_t id, enum agent_bus_outcome outcome,
                              const char *why);
void agent_outbox_close(struct agent *a);

/* Health, for /healthz, /v1/status and /metrics: one check per dependency. */
#define AGENT_N_CHECKS 5
struct agent_check {
    const char *name; /* "bus", "database", "libvirt", "ovs", "orphans" */
    bool ok;
    char detail[256];
};
bool agent_health(struct agent *a, struct agent_check checks[AGENT_N_CHECKS]);
void agent_gauges(struct agent *a, struct agent_gauges *g);

/* Tenant networks (network.c). */
int agent_net_open(struct agent *a, struct na_error **err);
void agent_net_close(struct agent *a);
/* Hands net/ovs the ports of the instance table; after anything that may change it. */
void agent_net_sync(struct agent *a);
/* Hands net/ovs the peers of the peer table (once it is settled); after anything that
 * changes it.  net/ovs recomputes the tunnels from the peers it has whenever the ports
 * change. */
void agent_net_sync_peers(struct agent *a);
int agent_net_check_nics(struct agent *a, const Nodeagent__V1__InstanceSpec *spec,
                         struct na_error **err);
/* A guest NIC's MTU: the requested one (0: none), at most underlay minus tunnel overhead. */
unsigned agent_nic_mtu(const struct agent_config *cfg, unsigned requested);
void agent_net_health(struct agent *a, struct agent_check *c);
/* Called when the number of queued operations changed: pauses or resumes the bus. */
void agent_backpressure(struct agent *a);
/* A write to the state store failed where the agent cannot go on safely: stop at once,
 * without committing bus offsets, so that the request is delivered again after restart. */
void agent_die(struct agent *a, const struct na_error *err) __attribute__((noreturn));

#endif
