#include "agent/admin/metrics.h"

#include <ctype.h>
#include <string.h>

static const double bucket_bounds[AGENT_METRICS_N_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120, 600,
};

void
agent_metrics_count(struct agent_metrics *m, enum agent_request_kind kind, enum na_code code)
{
    if ((unsigned)kind < AGENT_REQ__COUNT && (unsigned)code < AGENT_METRICS_N_CODES)
        m->requests[kind][code]++;
}

void
agent_metrics_latency(struct agent_metrics *m, enum agent_request_kind kind, double seconds)
{
    if ((unsigned)kind >= AGENT_REQ__COUNT)
        return;
    for (int b = 0; b < AGENT_METRICS_N_BUCKETS; b++)
        if (seconds <= bucket_bounds[b])
            m->latency_buckets[kind][b]++;
    m->latency_count[kind]++;
    m->latency_sum[kind] += seconds;
}

struct text {
    char *buf;
    size_t len, cap;
};

static void NA_PRINTF(2, 3) text_add(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        t->cap = t->cap * 2 + (size_t)(n > 0 ? n : 0) + 256;
        t->buf = na_xrealloc(t->buf, t->cap);
    }
}

static const char *
result_label(enum na_code code, char *buf, size_t size)
{
    if (code == NA_CODE_UNSPECIFIED)
        return "ok";
    snprintf(buf, size, "%s", na_code_name(code));
    for (char *p = buf; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return buf;
}

const char *
agent_announce_refusal_name(enum agent_announce_refusal r)
{
    static const char *const names[] = {
#define X(ID, label) [AGENT_ANNOUNCE_REFUSED_##ID] = label,
        AGENT_ANNOUNCE_REFUSALS(X)
#undef X
    };
    return r < AGENT_ANNOUNCE_REFUSED__COUNT ? names[r] : "unknown";
}

static void
render_trust(struct text *t, const struct agent_metrics *m, const struct agent_gauges *g)
{
    text_add(t, "# HELP nodeagent_announcements_refused_total Node announcements not believed, "
                "by reason.\n# TYPE nodeagent_announcements_refused_total counter\n");
    for (int r = 0; r < AGENT_ANNOUNCE_REFUSED__COUNT; r++)
        text_add(t, "nodeagent_announcements_refused_total{reason=\"%s\"} %llu\n",
                 agent_announce_refusal_name((enum agent_announce_refusal)r),
                 (unsigned long long)m->announcements_refused[r]);
    text_add(t,
             "# HELP nodeagent_peers Other nodes in the peer table.\n"
             "# TYPE nodeagent_peers gauge\nnodeagent_peers %zu\n"
             "# HELP nodeagent_insecure_unsigned Whether [bus] insecure_unsigned lets "
             "unauthenticated requests and announcements in.\n"
             "# TYPE nodeagent_insecure_unsigned gauge\nnodeagent_insecure_unsigned %d\n"
             "# HELP nodeagent_node_cert_expiry_seconds Seconds until this node's certificate "
             "expires (0 without one).\n"
             "# TYPE nodeagent_node_cert_expiry_seconds gauge\n"
             "nodeagent_node_cert_expiry_seconds %.0f\n",
             g->peers, g->insecure_unsigned ? 1 : 0, g->node_cert_expiry_s);
}

static void
render_disk(struct text *t, const struct agent_gauges *g)
{
    text_add(t,
             "# HELP nodeagent_store_held Whether requests are held because the state store "
             "cannot be written.\n"
             "# TYPE nodeagent_store_held gauge\nnodeagent_store_held %d\n"
             "# HELP nodeagent_disk_free_bytes Free bytes on the state directory's filesystem.\n"
             "# TYPE nodeagent_disk_free_bytes gauge\nnodeagent_disk_free_bytes %llu\n"
             "# HELP nodeagent_disk_min_free_bytes Below this many free bytes, creates, "
             "rebuilds, resizes and suspends are refused ([agent] min_free_mib).\n"
             "# TYPE nodeagent_disk_min_free_bytes gauge\nnodeagent_disk_min_free_bytes %llu\n",
             g->store_held ? 1 : 0, (unsigned long long)g->disk_free_bytes,
             (unsigned long long)g->min_free_bytes);
}

static void
render_orphans(struct text *t, const struct agent_gauges *g)
{
    text_add(t,
             "# HELP nodeagent_orphans Domains and instance directories that look like this "
             "node's and that its state store does not record as its own (left untouched).\n"
             "# TYPE nodeagent_orphans gauge\nnodeagent_orphans %zu\n"
             "# HELP nodeagent_hold Whether the agent consumes no request: orphans of this node "
             "hold it, or its store has not been compared with libvirt yet.\n"
             "# TYPE nodeagent_hold gauge\nnodeagent_hold %d\n",
             g->orphans, g->holding ? 1 : 0);
}

static void
render_uids(struct text *t, const struct agent_gauges *g)
{
    text_add(t,
             "# HELP nodeagent_guest_uids_quarantined Guest uids released and not yet "
             "reusable.\n"
             "# TYPE nodeagent_guest_uids_quarantined gauge\n"
             "nodeagent_guest_uids_quarantined %zu\n"
             "# HELP nodeagent_guest_uids_held Quarantined guest uids whose instance could not "
             "be cleaned up: never reused without an operator.\n"
             "# TYPE nodeagent_guest_uids_held gauge\nnodeagent_guest_uids_held %zu\n",
             g->uids_quarantined, g->uids_held);
}

char *
agent_metrics_render(const struct agent_metrics *m, const struct agent_gauges *g)
{
    struct text t = {.cap = 8192};
    t.buf = na_xmalloc(t.cap);
    t.buf[0] = '\0';

    text_add(&t, "# HELP nodeagent_requests_total Requests finished, by kind and result.\n"
                 "# TYPE nodeagent_requests_total counter\n");
    for (int k = 0; k < AGENT_REQ__COUNT; k++) {
        for (int c = 0; c < AGENT_METRICS_N_CODES; c++) {
            if (!m->requests[k][c])
                continue;
            char label[32];
            text_add(&t, "nodeagent_requests_total{kind=\"%s\",result=\"%s\"} %llu\n",
                     agent_request_kind_name((enum agent_request_kind)k),
                     result_label((enum na_code)c, label, sizeof(label)),
                     (unsigned long long)m->requests[k][c]);
        }
    }
    text_add(&t,
             "# HELP nodeagent_duplicate_requests_total Requests seen again by request_id.\n"
             "# TYPE nodeagent_duplicate_requests_total counter\n"
             "nodeagent_duplicate_requests_total %llu\n",
             (unsigned long long)m->duplicates);
    text_add(&t,
             "# HELP nodeagent_events_refused_total Events the bus refused for good (too large, "
             "malformed), each replaced by a small FAILED event or dropped.\n"
             "# TYPE nodeagent_events_refused_total counter\n"
             "nodeagent_events_refused_total %llu\n",
             (unsigned long long)m->events_refused);
    text_add(&t,
             "# HELP nodeagent_store_bytes Size of the state store (state.db) in bytes.\n"
             "# TYPE nodeagent_store_bytes gauge\nnodeagent_store_bytes %lld\n"
             "# HELP nodeagent_store_intents Requests recorded in the store, open and "
             "finished.\n# TYPE nodeagent_store_intents gauge\nnodeagent_store_intents %lld\n"
             "# HELP nodeagent_store_intent_retention_seconds How long a finished request's "
             "hash and result summary are kept to answer duplicates.\n"
             "# TYPE nodeagent_store_intent_retention_seconds gauge\n"
             "nodeagent_store_intent_retention_seconds %.0f\n",
             (long long)g->store_bytes, (long long)g->store_intents, g->intent_retention_s);
    render_trust(&t, m, g);
    render_disk(&t, g);
    render_orphans(&t, g);
    render_uids(&t, g);

    text_add(&t, "# HELP nodeagent_operation_duration_seconds Time from a request's arrival "
                 "to its terminal event.\n"
                 "# TYPE nodeagent_operation_duration_seconds histogram\n");
    for (int k = 0; k < AGENT_REQ__COUNT; k++) {
        if (!m->latency_count[k])
            continue;
        const char *kind = agent_request_kind_name((enum agent_request_kind)k);
        for (int b = 0; b < AGENT_METRICS_N_BUCKETS; b++)
            text_add(&t,
                     "nodeagent_operation_duration_seconds_bucket{kind=\"%s\",le=\"%g\"} "
                     "%llu\n",
                     kind, bucket_bounds[b], (unsigned long long)m->latency_buckets[k][b]);
        text_add(&t,
                 "nodeagent_operation_duration_seconds_bucket{kind=\"%s\",le=\"+Inf\"} %llu\n"
                 "nodeagent_operation_duration_seconds_sum{kind=\"%s\"} %.6f\n"
                 "nodeagent_operation_duration_seconds_count{kind=\"%s\"} %llu\n",
                 kind, (unsigned long long)m->latency_count[k], kind, m->latency_sum[k], kind,
                 (unsigned long long)m->latency_count[k]);
    }

    text_add(&t,
             "# HELP nodeagent_queue_depth Operations waiting for their instance's turn.\n"
             "# TYPE nodeagent_queue_depth gauge\nnodeagent_queue_depth %zu\n"
             "# HELP nodeagent_operations_running Operations running in workers.\n"
             "# TYPE nodeagent_operations_running gauge\nnodeagent_operations_running %zu\n"
             "# HELP nodeagent_jobs_waiting Jobs waiting between phases (for a peer, an event), "
             "holding no thread.\n"
             "# TYPE nodeagent_jobs_waiting gauge\nnodeagent_jobs_waiting %zu\n"
             "# HELP nodeagent_outbox_depth Events recorded but not yet acknowledged by the "
             "bus.\n# TYPE nodeagent_outbox_depth gauge\nnodeagent_outbox_depth %lld\n"
             "# HELP nodeagent_bus_consumer_lag Requests on the node topic not yet consumed "
             "(-1 unknown).\n# TYPE nodeagent_bus_consumer_lag gauge\n"
             "nodeagent_bus_consumer_lag %lld\n"
             "# HELP nodeagent_bus_up Whether a bus broker is reachable.\n"
             "# TYPE nodeagent_bus_up gauge\nnodeagent_bus_up %d\n"
             "# HELP nodeagent_bus_messages_received_total Messages consumed from the node "
             "topic.\n# TYPE nodeagent_bus_messages_received_total counter\n"
             "nodeagent_bus_messages_received_total %llu\n"
             "# HELP nodeagent_bus_messages_delivered_total Messages the bus acknowledged.\n"
             "# TYPE nodeagent_bus_messages_delivered_total counter\n"
             "nodeagent_bus_messages_delivered_total %llu\n"
             "# HELP nodeagent_bus_delivery_failures_total Messages the bus refused.\n"
             "# TYPE nodeagent_bus_delivery_failures_total counter\n"
             "nodeagent_bus_delivery_failures_total %llu\n"
             "# HELP nodeagent_healthy Whether every health check passes.\n"
             "# TYPE nodeagent_healthy gauge\nnodeagent_healthy %d\n"
             "# HELP nodeagent_uptime_seconds Seconds since the agent started.\n"
             "# TYPE nodeagent_uptime_seconds gauge\nnodeagent_uptime_seconds %.3f\n",
             g->queued, g->running, g->jobs_waiting, (long long)g->outbox, (long long)g->bus_lag,
             g->bus_up ? 1 : 0, (unsigned long long)g->bus_received,
             (unsigned long long)g->bus_delivered, (unsigned long long)g->bus_delivery_failed,
             g->healthy ? 1 : 0, g->uptime_s);

    static const char *const classes[3] = {"VCPU", "MEMORY_MB", "DISK_GB"};
    text_add(&t, "# HELP nodeagent_capacity What instances may claim of a resource class: "
                 "(total - reserved) x allocation ratio.\n"
                 "# TYPE nodeagent_capacity gauge\n");
    for (size_t i = 0; i < 3; i++)
        text_add(&t, "nodeagent_capacity{resource_class=\"%s\"} %llu\n", classes[i],
                 (unsigned long long)g->capacity[i]);
    text_add(&t, "# HELP nodeagent_capacity_used What the node's instances claim.\n"
                 "# TYPE nodeagent_capacity_used gauge\n");
    for (size_t i = 0; i < 3; i++)
        text_add(&t, "nodeagent_capacity_used{resource_class=\"%s\"} %llu\n", classes[i],
                 (unsigned long long)g->used[i]);
    if (g->placement_in_sync >= 0)
        text_add(&t,
                 "# HELP nodeagent_placement_in_sync Whether the last report to Placement "
                 "succeeded.\n# TYPE nodeagent_placement_in_sync gauge\n"
                 "nodeagent_placement_in_sync %d\n",
                 g->placement_in_sync);
    return t.buf;
}
