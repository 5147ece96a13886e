/* What the capacity room's files share (capacity.c, host_facts.c, placement_sync.c): the
 * room's state, owned by the loop, and the Placement sync job a worker runs with copies of
 * it.  Not for other rooms. */
#ifndef NODEAGENT_AGENT_OUTPUTS_CAPACITY_PRIVATE_H
#define NODEAGENT_AGENT_OUTPUTS_CAPACITY_PRIVATE_H

#include "agent/outputs/capacity.h"
#include "scheduler-client/scheduler.h"

#include <uv.h>

#define KSM_DIR "/sys/kernel/mm/ksm"
#define META_PROVIDER_UUID "placement.provider_uuid"
#define MIN_GAP_MS 1000    /* reports on change: at most one a second */
#define RETRY_MIN_MS 1000  /* Placement sync retries: 1 s, doubling ... */
#define RETRY_MAX_MS 60000 /* ... up to a minute */
#define ALLOCATION_USER "nodeagent"
/* Bus deliveries of capacity reports carry this id; outbox ids are positive. */
#define CAPACITY_DELIVERY_ID (-1)

struct agent_capacity {
    struct agent *a;
    struct sched_host_config host;
    struct sched_inventory inv; /* as last read */
    char **traits;              /* sorted, NULL-terminated */
    size_t n_traits;
    char rp_uuid[37];
    struct sched_placement_config pc;
    bool placement_on; /* [placement] endpoint is set */
    char *topic;

    uv_timer_t report_timer; /* the next report: a change, or the heartbeat */
    uv_timer_t retry_timer;  /* the next Placement sync after a failure */
    uint64_t last_report_ms; /* loop time */
    struct agent_claim last_used;
    size_t last_count;
    bool bus_missed; /* a report was due while the bus was down */

    bool job_running;
    bool job_again; /* a report came while the job ran */
    bool closing;
    int refs; /* while closing: timers not yet closed and the running job */
    uint64_t retry_ms;
    bool placement_ok;
    char *placement_error;
    int64_t placement_synced_ms;

    bool ksm_on;
    uint64_t pages_sharing;

    /* Consumers on the provider that the agent did not write, as the last sync saw them:
     * reported once each, never removed. */
    char **strangers;
    size_t n_strangers;
};

struct want {
    char uuid[37];
    char *project;
    struct agent_claim claim;
};

struct sync_job {
    uv_work_t req;
    struct agent_capacity *c;
    /* Inputs: copies, or parts of c that do not change while the job runs. */
    const struct sched_host_config *host;
    const struct sched_placement_config *pc;
    char rp_uuid[37];
    const char *node_id;
    char **traits;
    size_t n_traits;
    bool placement;
    bool manage;
    struct want *want;
    size_t n_want;
    char **ours; /* consumers recorded in the store as written by the agent */
    size_t n_ours;
    /* Results. */
    char **forget; /* of ours: no longer wanted and no longer on the provider */
    size_t n_forget;
    char **strangers; /* on the provider, not ours: left alone */
    size_t n_strangers;
    struct sched_inventory inv;
    struct na_error *inv_err;
    bool ksm_on;
    uint64_t pages_sharing;
    struct na_error *err;
};

/* host_facts.c: what the node has (KSM, traits, its provider's uuid), read in a worker or at
 * start. */
void capacity_read_ksm(bool *on, uint64_t *pages_sharing);
int capacity_ksm_turn_on(struct na_error **err);
int capacity_read_traits(struct agent_capacity *c, struct na_error **err);
int capacity_load_provider_uuid(struct agent_capacity *c, struct na_error **err);

/* placement_sync.c: in a worker, with j's inputs only: the host's inventory and KSM state,
 * then Placement's provider, inventories, traits and (when managed) allocations. */
void capacity_sync_work(uv_work_t *req);
/* Lists of uuids (consumers). */
bool capacity_list_has(char *const *list, size_t n, const char *uuid);
void capacity_list_add(char ***list, size_t *n, const char *uuid);
void capacity_list_free(char **list, size_t n);

#endif
