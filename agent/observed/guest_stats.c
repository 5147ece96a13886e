/* Per-guest statistics: the periodic collection in a worker and the cache on the loop
 * (guest_stats.h). */
#include "agent/observed/guest_stats.h"
#include "agent/core/agent.h"

#include <string.h>

struct agent_guest_stats {
    struct agent *agent;
    uv_timer_t timer;
    bool collecting; /* a job is in a worker */
    bool closing;    /* the job's end frees this */
    int refs;        /* while closing: the timer's close and the job in flight */

    /* The last collection's result. */
    struct hv_guest_stats *items;
    size_t n;
    int64_t collected_ms;
};

struct collect_job {
    uv_work_t req;
    struct agent_guest_stats *gs;
    struct hv_stats_hold *hold; /* not the agent's hv_conn: the job may outlive it */
    struct hv_guest_stats *items;
    size_t n;
    struct na_error *err;
};

static void
gs_unref(struct agent_guest_stats *gs)
{
    if (--gs->refs > 0)
        return;
    hv_stats_free(gs->items, gs->n);
    free(gs);
}

/* libvirt away or failing: the figures would be stale, and nothing is better than stale. */
static void
forget(struct agent_guest_stats *gs, const struct na_error *err)
{
    na_log(NA_LOG_DEBUG, NULL, "guest statistics not collected", "error=\"%s\"", err->msg);
    hv_stats_free(gs->items, gs->n);
    gs->items = NULL;
    gs->n = 0;
}

static void
collect_work(uv_work_t *req)
{
    struct collect_job *job = req->data;
    hv_stats_collect(job->hold, &job->items, &job->n, &job->err);
    /* Here, not on the loop: the last reference's close talks to libvirtd. */
    hv_stats_release(job->hold);
    job->hold = NULL;
}

static void
collect_done(uv_work_t *req, int status)
{
    (void)status;
    struct collect_job *job = req->data;
    struct agent_guest_stats *gs = job->gs;
    gs->collecting = false;
    if (gs->closing) {
        hv_stats_free(job->items, job->n);
        gs_unref(gs);
    } else if (job->err) {
        forget(gs, job->err);
    } else {
        hv_stats_free(gs->items, gs->n);
        gs->items = na_steal(&job->items);
        gs->n = job->n;
        gs->collected_ms = na_now_ms();
    }
    na_error_free(job->err);
    free(job);
}

static void
on_timer(uv_timer_t *t)
{
    struct agent_guest_stats *gs = t->data;
    if (gs->collecting)
        return;
    cleanup_error struct na_error *err = NULL;
    struct hv_stats_hold *hold = hv_stats_hold(gs->agent->host.hv, &err);
    if (!hold) {
        forget(gs, err);
        return;
    }
    struct collect_job *job = na_xcalloc(1, sizeof(*job));
    job->gs = gs;
    job->hold = hold;
    job->req.data = job;
    gs->collecting = true;
    uv_queue_work(gs->agent->loop, &job->req, collect_work, collect_done);
}

void
agent_guest_stats_open(struct agent *a)
{
    struct agent_guest_stats *gs = na_xcalloc(1, sizeof(*gs));
    gs->agent = a;
    uv_timer_init(a->loop, &gs->timer);
    gs->timer.data = gs;
    uint64_t every = (uint64_t)a->cfg->guest_stats_interval_s * 1000;
    uv_timer_start(&gs->timer, on_timer, 0, every);
    a->guest_stats = gs;
}

static void
on_timer_closed(uv_handle_t *h)
{
    gs_unref(h->data);
}

void
agent_guest_stats_close(struct agent *a)
{
    struct agent_guest_stats *gs = a->guest_stats;
    if (!gs)
        return;
    a->guest_stats = NULL;
    gs->closing = true;
    gs->refs = 1 + (gs->collecting ? 1 : 0);
    uv_close((uv_handle_t *)&gs->timer, on_timer_closed);
}

static const struct hv_guest_stats *
find(const struct agent_guest_stats *gs, const char *uuid)
{
    for (size_t i = 0; gs && i < gs->n; i++)
        if (strcmp(gs->items[i].uuid, uuid) == 0)
            return &gs->items[i];
    return NULL;
}

char *
agent_guest_stats_exposition(struct agent *a)
{
    struct agent_guest_stats *gs = a->guest_stats;
    size_t n = gs ? gs->n : 0;
    struct agent_guest_sample *samples = na_xcalloc(n ? n : 1, sizeof(*samples));
    size_t n_samples = 0;
    for (size_t i = 0; i < n; i++) {
        const struct agent_instance *inst = agent_instances_find(&a->instances, gs->items[i].uuid);
        if (!inst)
            continue; /* deleted since, or not one of ours */
        samples[n_samples++] = (struct agent_guest_sample){
            .uuid = inst->uuid,
            .name = inst->spec->name,
            .tenant = inst->spec->tenant_id,
            .stats = &gs->items[i],
        };
    }
    char *text = agent_guest_metrics_render(samples, n_samples);
    free(samples);
    return text;
}

/* A figure, or JSON null when libvirt did not report it. */
static json_t *
count_json(int64_t v)
{
    return v == HV_STAT_NONE ? json_null() : json_integer(v);
}

static json_t *
seconds_json(int64_t ns)
{
    return ns == HV_STAT_NONE ? json_null() : json_real((double)ns / 1e9);
}

static json_t *
disks_json(const struct hv_guest_stats *s)
{
    json_t *list = json_array();
    for (size_t i = 0; i < s->n_disks; i++) {
        const struct hv_disk_stats *d = &s->disks[i];
        json_array_append_new(
            list,
            json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o}", "drive", d->name, "read_bytes",
                      count_json(d->rd_bytes), "write_bytes", count_json(d->wr_bytes), "read_ops",
                      count_json(d->rd_reqs), "write_ops", count_json(d->wr_reqs), "read_seconds",
                      seconds_json(d->rd_time_ns), "write_seconds", seconds_json(d->wr_time_ns)));
    }
    return list;
}

static json_t *
nics_json(const struct hv_guest_stats *s)
{
    json_t *list = json_array();
    for (size_t i = 0; i < s->n_nics; i++) {
        const struct hv_nic_stats *n = &s->nics[i];
        json_array_append_new(
            list,
            json_pack("{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "interface", n->name,
                      "rx_bytes", count_json(n->rx_bytes), "tx_bytes", count_json(n->tx_bytes),
                      "rx_packets", count_json(n->rx_pkts), "tx_packets", count_json(n->tx_pkts),
                      "rx_errors", count_json(n->rx_errs), "tx_errors", count_json(n->tx_errs),
                      "rx_dropped", count_json(n->rx_drop), "tx_dropped", count_json(n->tx_drop)));
    }
    return list;
}

json_t *
agent_guest_stats_view(struct agent *a, const char *uuid)
{
    const struct hv_guest_stats *s = find(a->guest_stats, uuid);
    if (!s)
        return NULL;
    json_t *vcpus = json_array();
    for (size_t i = 0; i < s->n_vcpus; i++)
        json_array_append_new(vcpus, seconds_json(s->vcpu_time_ns[i]));
    return json_pack("{s:I, s:o, s:o, s:o, s:o, s:{s:o, s:o, s:o, s:o}, s:o, s:o}", "collected_ms",
                     (json_int_t)a->guest_stats->collected_ms, "cpu_seconds",
                     seconds_json(s->cpu_time_ns), "cpu_user_seconds", seconds_json(s->cpu_user_ns),
                     "cpu_system_seconds", seconds_json(s->cpu_system_ns), "vcpu_seconds", vcpus,
                     "memory", "actual_balloon_bytes", count_json(s->memory_actual), "unused_bytes",
                     count_json(s->memory_unused), "available_bytes",
                     count_json(s->memory_available), "resident_bytes", count_json(s->memory_rss),
                     "disks", disks_json(s), "nics", nics_json(s));
}
