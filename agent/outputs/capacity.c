/* Capacity: claims from the instance table, the admission check, and the reports to the
 * bus and to Placement.  See capacity.h for the model. */
#include "agent/outputs/capacity-private.h"
#include "agent/core/agent.h"
#include "proto/proto_json.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

/* --- arithmetic ------------------------------------------------------------------------ */

uint64_t
agent_capacity_limit(const struct sched_resource *r)
{
    if (r->reserved >= r->total)
        return 0;
    double ratio = r->allocation_ratio > 0 ? r->allocation_ratio : 1.0;
    double limit = floor((double)(r->total - r->reserved) * ratio);
    return limit >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)limit;
}

static const char *const classes[SCHED_N_RESOURCES] = {SCHED_RC_VCPU, SCHED_RC_MEMORY_MB,
                                                       SCHED_RC_DISK_GB};

static uint64_t
claim_of(const struct agent_claim *c, size_t k)
{
    return k == 0 ? c->vcpus : k == 1 ? c->memory_mb : c->disk_gb;
}

static uint64_t
free_of(const struct sched_inventory *inv, const struct agent_claim *used, size_t k)
{
    const struct sched_resource *r = sched_inventory_find(inv, classes[k]);
    uint64_t limit = r ? agent_capacity_limit(r) : 0, u = claim_of(used, k);
    return limit > u ? limit - u : 0;
}

int
agent_capacity_fit(const struct sched_inventory *inv, const struct agent_claim *used,
                   const struct agent_claim *need, const char *what, struct na_error **err)
{
    bool fits = true;
    char per_instance[160] = "";
    for (size_t k = 0; k < SCHED_N_RESOURCES; k++) {
        uint64_t n = claim_of(need, k);
        if (!n)
            continue;
        const struct sched_resource *r = sched_inventory_find(inv, classes[k]);
        if (!r || n > free_of(inv, used, k))
            fits = false;
        if (r && n > r->max_unit) {
            fits = false;
            snprintf(per_instance, sizeof(per_instance), "; one instance may have at most %llu %s",
                     (unsigned long long)r->max_unit, classes[k]);
        }
    }
    if (fits)
        return 0;
    return na_error_quiet(err, NA_CODE_NO_CAPACITY, ENOSPC,
                          "%s: it needs %llu VCPU, %llu MEMORY_MB and %llu DISK_GB; free are "
                          "%llu VCPU, %llu MEMORY_MB and %llu DISK_GB%s",
                          what, (unsigned long long)need->vcpus,
                          (unsigned long long)need->memory_mb, (unsigned long long)need->disk_gb,
                          (unsigned long long)free_of(inv, used, 0),
                          (unsigned long long)free_of(inv, used, 1),
                          (unsigned long long)free_of(inv, used, 2), per_instance);
}

/* --- claims ---------------------------------------------------------------------------- */

void
agent_capacity_usage(const struct agent *a, const char *except_uuid, struct agent_claim *out)
{
    *out = (struct agent_claim){0};
    for (size_t i = 0; i < a->instances.n; i++) {
        const struct agent_instance *inst = a->instances.items[i];
        if (except_uuid && strcmp(inst->uuid, except_uuid) == 0)
            continue;
        struct agent_claim c;
        agent_instance_claim(inst, &c);
        out->vcpus += c.vcpus;
        out->memory_mb += c.memory_mb;
        out->disk_gb += c.disk_gb;
    }
}

int
agent_capacity_admit(struct agent *a, const char *uuid, const struct agent_claim *need,
                     struct na_error **err)
{
    struct agent_claim used;
    agent_capacity_usage(a, uuid, &used);
    char what[160];
    snprintf(what, sizeof(what), "instance %s does not fit on node %s", uuid, a->cfg->node_id);
    return agent_capacity_fit(&a->capacity->inv, &used, need, what, err);
}

/* --- the report ---------------------------------------------------------------------------- */

/* A CapacityReport and the storage it points into. */
struct report {
    Nodeagent__V1__CapacityReport r;
    Nodeagent__V1__Inventory inv[SCHED_N_RESOURCES];
    Nodeagent__V1__Inventory *invp[SCHED_N_RESOURCES];
    Nodeagent__V1__Health health;
    struct agent_check checks[AGENT_N_CHECKS];
    Nodeagent__V1__HealthCheck hc[AGENT_N_CHECKS];
    Nodeagent__V1__HealthCheck *hcp[AGENT_N_CHECKS];
    Nodeagent__V1__MemorySharing ms;
};

static void
report_build(struct agent_capacity *c, const struct agent_claim *used, struct report *rep)
{
    struct agent *a = c->a;
    nodeagent__v1__capacity_report__init(&rep->r);
    rep->r.node_id = a->cfg->node_id;
    rep->r.time_ms = na_now_ms();
    for (size_t i = 0; i < c->inv.n_resources; i++) {
        const struct sched_resource *s = &c->inv.resources[i];
        Nodeagent__V1__Inventory *p = &rep->inv[i];
        nodeagent__v1__inventory__init(p);
        p->resource_class = (char *)s->resource_class;
        p->total = s->total;
        p->reserved = s->reserved;
        p->min_unit = s->min_unit;
        p->max_unit = s->max_unit;
        p->step_size = s->step_size;
        p->allocation_ratio = s->allocation_ratio;
        for (size_t k = 0; k < SCHED_N_RESOURCES; k++)
            if (strcmp(classes[k], s->resource_class) == 0)
                p->used = claim_of(used, k);
        rep->invp[i] = p;
    }
    rep->r.inventories = rep->invp;
    rep->r.n_inventories = c->inv.n_resources;
    rep->r.traits = c->traits;
    rep->r.n_traits = c->n_traits;
    rep->r.instance_count = (uint32_t)a->instances.n;

    nodeagent__v1__health__init(&rep->health);
    rep->health.healthy = agent_health(a, rep->checks);
    for (size_t i = 0; i < AGENT_N_CHECKS; i++) {
        nodeagent__v1__health_check__init(&rep->hc[i]);
        rep->hc[i].name = (char *)rep->checks[i].name;
        rep->hc[i].ok = rep->checks[i].ok;
        rep->hc[i].detail = rep->checks[i].detail;
        rep->hcp[i] = &rep->hc[i];
    }
    rep->health.checks = rep->hcp;
    rep->health.n_checks = AGENT_N_CHECKS;
    rep->r.health = &rep->health;

    nodeagent__v1__memory_sharing__init(&rep->ms);
    rep->ms.ksm_enabled = c->ksm_on;
    rep->ms.pages_sharing = c->pages_sharing;
    rep->ms.saved_bytes = c->pages_sharing * (uint64_t)sysconf(_SC_PAGESIZE);
    rep->r.memory_sharing = &rep->ms;
}

static void
send_bus_report(struct agent_capacity *c, const struct agent_claim *used)
{
    struct agent *a = c->a;
    struct agent_bus_stats st = {0};
    if (a->bus)
        agent_bus_get_stats(a->bus, &st);
    if (!st.up) {
        c->bus_missed = true;
        return;
    }
    struct report rep;
    report_build(c, used, &rep);
    size_t size = nodeagent__v1__capacity_report__get_packed_size(&rep.r);
    cleanup_free uint8_t *buf = na_xmalloc(size ? size : 1);
    nodeagent__v1__capacity_report__pack(&rep.r, buf);
    cleanup_error struct na_error *err = NULL;
    if (agent_bus_produce(a->bus, c->topic, a->cfg->node_id, buf, size, NULL, CAPACITY_DELIVERY_ID,
                          &err) < 0) {
        c->bus_missed = true;
        na_log(NA_LOG_WARN, NULL, "capacity report not sent; it goes with the next one",
               "error=\"%s\"", err ? err->msg : "local queue full");
        return;
    }
    c->bus_missed = false;
}

static void capacity_unref(struct agent_capacity *c);
static void start_job(struct agent_capacity *c);
static void schedule_report(struct agent_capacity *c, uint64_t delay_ms);

static bool
same_inventory(const struct sched_inventory *x, const struct sched_inventory *y)
{
    if (x->n_resources != y->n_resources)
        return false;
    for (size_t i = 0; i < x->n_resources; i++) {
        const struct sched_resource *p = &x->resources[i], *q = &y->resources[i];
        if (strcmp(p->resource_class, q->resource_class) != 0 || p->total != q->total ||
            p->reserved != q->reserved || p->max_unit != q->max_unit ||
            p->allocation_ratio != q->allocation_ratio)
            return false;
    }
    return true;
}

static void
on_retry_timer(uv_timer_t *t)
{
    start_job(t->data);
}

/* After a sync: forgets the consumers it is done with, and reports each consumer on the
 * provider that the agent did not write, once. */
static void
consumers_settle(struct agent_capacity *c, struct sync_job *j)
{
    struct agent *a = c->a;
    cleanup_error struct na_error *err = NULL;
    for (size_t i = 0; i < j->n_forget && !err; i++)
        agent_store_consumer_delete(a->store, j->forget[i], &err);
    if (err)
        na_log(NA_LOG_WARN, NULL, "forgetting a placement consumer failed; kept for later",
               "error=\"%s\"", err->msg);
    for (size_t i = 0; i < j->n_strangers; i++) {
        if (capacity_list_has(c->strangers, c->n_strangers, j->strangers[i]))
            continue;
        struct na_log_ctx log = {.instance = j->strangers[i]};
        na_log(NA_LOG_WARN, &log,
               "placement allocation on this node's provider not written by this agent; left "
               "alone",
               "consumer_uuid=%s provider_uuid=%s", j->strangers[i], j->rp_uuid);
    }
    capacity_list_free(c->strangers, c->n_strangers);
    c->strangers = j->strangers;
    c->n_strangers = j->n_strangers;
    j->strangers = NULL;
    j->n_strangers = 0;
}

static void
sync_done(uv_work_t *req, int status)
{
    (void)status;
    struct sync_job *j = req->data;
    struct agent_capacity *c = j->c;
    c->job_running = false;
    c->ksm_on = j->ksm_on;
    c->pages_sharing = j->pages_sharing;

    if (!c->closing) {
        if (j->inv_err) {
            na_log(NA_LOG_WARN, NULL, "reading the host's inventory failed; keeping the last one",
                   "error=\"%s\"", j->inv_err->msg);
        } else if (!same_inventory(&c->inv, &j->inv)) {
            na_log(NA_LOG_INFO, NULL, "host inventory changed", NULL);
            c->inv = j->inv;
            c->last_count = SIZE_MAX; /* report it */
            agent_capacity_changed(c->a);
        }
        if (j->placement && !j->inv_err) {
            char quoted[1024];
            if (j->err) {
                if (c->placement_ok || !c->placement_error ||
                    strcmp(c->placement_error, j->err->msg) != 0)
                    na_log(NA_LOG_WARN, NULL, "placement report failed; retrying",
                           "endpoint=%s error=%s retry_ms=%llu", c->pc.endpoint,
                           na_log_quote(quoted, sizeof(quoted), j->err->msg),
                           (unsigned long long)c->retry_ms);
                c->placement_ok = false;
                free(c->placement_error);
                c->placement_error = na_xstrdup(j->err->msg);
                uv_timer_start(&c->retry_timer, on_retry_timer, c->retry_ms, 0);
                c->retry_ms = NA_MIN(c->retry_ms * 2, RETRY_MAX_MS);
            } else {
                if (!c->placement_ok)
                    na_log(NA_LOG_INFO, NULL, "placement holds the node's capacity",
                           "provider_uuid=%s endpoint=%s", c->rp_uuid, c->pc.endpoint);
                c->placement_ok = true;
                free(c->placement_error);
                c->placement_error = NULL;
                c->placement_synced_ms = na_now_ms();
                c->retry_ms = RETRY_MIN_MS;
                uv_timer_stop(&c->retry_timer);
            }
        }
    }
    if (!c->closing && j->manage && !j->err)
        consumers_settle(c, j);
    for (size_t i = 0; i < j->n_want; i++)
        free(j->want[i].project);
    free(j->want);
    capacity_list_free(j->ours, j->n_ours);
    capacity_list_free(j->forget, j->n_forget);
    capacity_list_free(j->strangers, j->n_strangers);
    na_error_free(j->inv_err);
    na_error_free(j->err);
    free(j);
    if (c->closing) {
        capacity_unref(c);
        return;
    }
    if (c->job_again) {
        c->job_again = false;
        start_job(c);
    }
}

/* The allocations the job is to hold: one per instance, each recorded in the store as
 * the agent's own consumer before the job may write it. */
static void
wants_record(struct agent_capacity *c, struct sync_job *j)
{
    struct agent *a = c->a;
    cleanup_error struct na_error *err = NULL;
    if (agent_store_consumer_list(a->store, &j->ours, &j->n_ours, &err) < 0) {
        /* Without the record nothing may be written or removed: sync inventories only. */
        na_log(NA_LOG_WARN, NULL, "reading the placement consumers failed", "error=\"%s\"",
               err->msg);
        j->manage = false;
        return;
    }
    j->want = na_xcalloc(a->instances.n + 1, sizeof(*j->want));
    for (size_t i = 0; i < a->instances.n; i++) {
        const struct agent_instance *inst = a->instances.items[i];
        if (!capacity_list_has(j->ours, j->n_ours, inst->uuid)) {
            struct na_log_ctx log = {.instance = inst->uuid};
            if (agent_store_consumer_add(a->store, inst->uuid, &err) < 0) {
                na_log(NA_LOG_WARN, &log,
                       "recording a placement consumer failed; not writing "
                       "its allocation yet",
                       "error=\"%s\"", err->msg);
                na_error_clear(&err);
                continue;
            }
            capacity_list_add(&j->ours, &j->n_ours, inst->uuid);
        }
        struct want *w = &j->want[j->n_want++];
        snprintf(w->uuid, sizeof(w->uuid), "%s", inst->uuid);
        w->project = na_xstrdup(inst->spec->tenant_id);
        agent_instance_claim(inst, &w->claim);
    }
}

static void
start_job(struct agent_capacity *c)
{
    if (c->job_running) {
        c->job_again = true;
        return;
    }
    struct agent *a = c->a;
    struct sync_job *j = na_xcalloc(1, sizeof(*j));
    j->c = c;
    j->host = &c->host;
    j->pc = &c->pc;
    snprintf(j->rp_uuid, sizeof(j->rp_uuid), "%s", c->rp_uuid);
    j->node_id = a->cfg->node_id;
    j->traits = c->traits;
    j->n_traits = c->n_traits;
    j->placement = c->placement_on;
    j->manage = c->placement_on && a->cfg->placement_manage_allocations;
    if (j->manage)
        wants_record(c, j);
    j->req.data = j;
    c->job_running = true;
    uv_timer_stop(&c->retry_timer);
    uv_queue_work(a->loop, &j->req, capacity_sync_work, sync_done);
}

static void
report_now(struct agent_capacity *c)
{
    struct agent *a = c->a;
    struct agent_claim used;
    agent_capacity_usage(a, NULL, &used);
    c->last_used = used;
    c->last_count = a->instances.n;
    c->last_report_ms = uv_now(a->loop);
    send_bus_report(c, &used);
    start_job(c);
    schedule_report(c, (uint64_t)a->cfg->report_interval_s * 1000);
}

static void
on_report_timer(uv_timer_t *t)
{
    report_now(t->data);
}

/* The next report in delay_ms, unless one is due sooner. */
static void
schedule_report(struct agent_capacity *c, uint64_t delay_ms)
{
    if (uv_is_active((uv_handle_t *)&c->report_timer) &&
        uv_timer_get_due_in(&c->report_timer) <= delay_ms)
        return;
    uv_timer_start(&c->report_timer, on_report_timer, delay_ms, 0);
}

void
agent_capacity_changed(struct agent *a)
{
    struct agent_capacity *c = a->capacity;
    if (!c || c->closing)
        return;
    struct agent_claim used;
    agent_capacity_usage(a, NULL, &used);
    if (a->instances.n == c->last_count && memcmp(&used, &c->last_used, sizeof(used)) == 0)
        return;
    uint64_t now = uv_now(a->loop), due = c->last_report_ms + MIN_GAP_MS;
    schedule_report(c, due > now ? due - now : 0);
}

void
agent_capacity_bus_up(struct agent *a)
{
    struct agent_capacity *c = a->capacity;
    if (c && !c->closing && c->bus_missed) {
        uint64_t now = uv_now(a->loop), due = c->last_report_ms + MIN_GAP_MS;
        schedule_report(c, due > now ? due - now : 0);
    }
}

/* --- open, close, view --------------------------------------------------------------------- */

/* DISK_GB the instances' disks may not take, beyond [capacity] reserved_disk_gb: the image
 * cache's quota, room for managed-save images (a suspended guest's memory: the host's RAM
 * at most), and the free-space watermark; never more than the filesystem has. */
static uint64_t
disk_reserved_gb(const struct agent *a)
{
    const struct agent_config *cfg = a->cfg;
    uint64_t ram_gb =
        ((uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE) + (1ULL << 30) - 1) >>
        30;
    uint64_t want = (uint64_t)cfg->reserved_disk_gb + cfg->image_cache_max_size_gib + ram_gb +
                    (((uint64_t)cfg->min_free_mib + 1023) >> 10);
    struct statvfs st;
    if (statvfs(a->host.instances_dir, &st) < 0)
        return cfg->reserved_disk_gb;
    uint64_t total = (uint64_t)st.f_blocks * st.f_frsize >> 30;
    if (want <= total)
        return want;
    na_log(NA_LOG_WARN, NULL,
           "the filesystem is smaller than what DISK_GB keeps aside (reserved_disk_gb, the image "
           "cache quota, the host's RAM for managed saves, min_free_mib): no DISK_GB is offered",
           "total_gb=%llu want_reserved_gb=%llu", (unsigned long long)total,
           (unsigned long long)want);
    return NA_MAX(total, (uint64_t)cfg->reserved_disk_gb);
}

int
agent_capacity_open(struct agent *a, struct na_error **err)
{
    const struct agent_config *cfg = a->cfg;
    struct agent_capacity *c = na_xcalloc(1, sizeof(*c));
    c->a = a;
    c->host = (struct sched_host_config){
        .disk_path = a->host.instances_dir,
        .vcpu = {cfg->reserved_vcpus, cfg->vcpu_allocation_ratio},
        .memory_mb = {cfg->reserved_memory_mb, cfg->memory_allocation_ratio},
        .disk_gb = {disk_reserved_gb(a), cfg->disk_allocation_ratio},
    };
    c->pc = (struct sched_placement_config){
        .endpoint = cfg->placement_endpoint,
        .token = cfg->placement_token,
        .timeout_ms = cfg->placement_timeout_s * 1000,
    };
    c->placement_on = cfg->placement_endpoint != NULL;
    c->topic = agent_topic_capacity(cfg);
    c->retry_ms = RETRY_MIN_MS;
    a->capacity = c;
    uv_timer_init(a->loop, &c->report_timer);
    c->report_timer.data = c;
    uv_timer_init(a->loop, &c->retry_timer);
    c->retry_timer.data = c;

    int ret;
    if ((ret = sched_inventory_read(&c->host, &c->inv, err)) < 0) {
        na_error_wrap(err, "[capacity] of %s", cfg->path);
        return ret;
    }
    if ((ret = capacity_read_traits(c, err)) < 0 || (ret = capacity_load_provider_uuid(c, err)) < 0)
        return ret;
    if (cfg->ksm) {
        cleanup_error struct na_error *kerr = NULL;
        if (capacity_ksm_turn_on(&kerr) < 0)
            na_log(NA_LOG_WARN, NULL, "[memory] ksm = true, but KSM could not be turned on",
                   "error=\"%s\"", kerr->msg);
    }
    capacity_read_ksm(&c->ksm_on, &c->pages_sharing);
    na_log(NA_LOG_INFO, NULL, "capacity",
           "vcpu=%llu memory_mb=%llu disk_gb=%llu traits=%zu "
           "provider_uuid=%s placement=%s ksm=%s",
           (unsigned long long)c->inv.resources[0].total,
           (unsigned long long)c->inv.resources[1].total,
           (unsigned long long)(c->inv.n_resources > 2 ? c->inv.resources[2].total : 0),
           c->n_traits, c->rp_uuid, c->placement_on ? c->pc.endpoint : "off",
           c->ksm_on ? "on" : "off");
    report_now(c);
    return 0;
}

/* c is freed once libuv let go of both timers (they live in c) and no job runs. */
static void
capacity_unref(struct agent_capacity *c)
{
    if (--c->refs > 0)
        return;
    sched_traits_free(c->traits);
    free(c->placement_error);
    free(c->topic);
    capacity_list_free(c->strangers, c->n_strangers);
    free(c);
}

static void
on_timer_closed(uv_handle_t *h)
{
    capacity_unref(h->data);
}

void
agent_capacity_close(struct agent *a)
{
    struct agent_capacity *c = a->capacity;
    if (!c)
        return;
    a->capacity = NULL;
    c->closing = true;
    c->refs = 2 + (c->job_running ? 1 : 0);
    uv_close((uv_handle_t *)&c->report_timer, on_timer_closed);
    uv_close((uv_handle_t *)&c->retry_timer, on_timer_closed);
}

void
agent_capacity_gauges(struct agent *a, struct agent_gauges *g)
{
    struct agent_capacity *c = a->capacity;
    g->placement_in_sync = c && c->placement_on ? c->placement_ok : -1;
    if (!c)
        return;
    struct agent_claim used;
    agent_capacity_usage(a, NULL, &used);
    for (size_t k = 0; k < SCHED_N_RESOURCES; k++) {
        const struct sched_resource *r = sched_inventory_find(&c->inv, classes[k]);
        g->capacity[k] = r ? agent_capacity_limit(r) : 0;
        g->used[k] = claim_of(&used, k);
    }
}

json_t *
agent_capacity_view(struct agent *a)
{
    struct agent_capacity *c = a->capacity;
    if (!c)
        return json_null();
    struct agent_claim used;
    agent_capacity_usage(a, NULL, &used);
    struct report rep;
    report_build(c, &used, &rep);
    json_t *j = agent_capacity_to_json(&rep.r);
    json_t *invs = json_object_get(j, "inventories");
    for (size_t i = 0; i < c->inv.n_resources; i++) {
        const struct sched_resource *r = &c->inv.resources[i];
        json_t *o = json_array_get(invs, i);
        uint64_t limit = agent_capacity_limit(r), u = rep.inv[i].used;
        json_object_set_new(o, "capacity", json_integer((json_int_t)NA_MIN(limit, INT64_MAX)));
        json_object_set_new(o, "free", json_integer((json_int_t)(limit > u ? limit - u : 0)));
    }
    json_object_set_new(
        j, "placement",
        json_pack("{s:o, s:s, s:b, s:o, s:o}", "endpoint",
                  c->placement_on ? json_string(c->pc.endpoint) : json_null(), "provider_uuid",
                  c->rp_uuid, "ok", (int)c->placement_ok, "error",
                  c->placement_error ? json_string(c->placement_error) : json_null(), "synced_ms",
                  c->placement_synced_ms ? json_integer(c->placement_synced_ms) : json_null()));
    return j;
}
