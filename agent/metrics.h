/* Counters and histograms for /metrics, in Prometheus text format.
 *
 * Requests are counted by kind and result (the error code, or "ok"); operation latency is
 * a histogram by kind, from the request's arrival to its terminal event.  Gauges (queue
 * depths, bus lag) are read from the agent when rendering.  Main loop only.
 */
#ifndef NODEAGENT_AGENT_METRICS_H
#define NODEAGENT_AGENT_METRICS_H

#include "agent/requests.h"
#include "common/common.h"

#define AGENT_METRICS_N_CODES 17 /* na_code values 0..16; 0 counts successes */
#define AGENT_METRICS_N_BUCKETS 12

struct agent_metrics {
    uint64_t requests[AGENT_REQ__COUNT][AGENT_METRICS_N_CODES];
    uint64_t latency_buckets[AGENT_REQ__COUNT][AGENT_METRICS_N_BUCKETS];
    uint64_t latency_count[AGENT_REQ__COUNT];
    double latency_sum[AGENT_REQ__COUNT];
    uint64_t duplicates;
};

struct agent_gauges {
    double uptime_s;
    size_t queued;
    size_t running;
    int64_t outbox;
    int64_t bus_lag;
    bool bus_up;
    bool healthy;
    uint64_t bus_received;
    uint64_t bus_delivered;
    uint64_t bus_delivery_failed;
    int placement_in_sync;  /* 1, 0, or -1 when [placement] endpoint is unset */
    uint64_t capacity[3];   /* VCPU, MEMORY_MB, DISK_GB: what may be allocated */
    uint64_t used[3];       /* the instances' claims */
};

/* code NA_CODE_UNSPECIFIED (0) means success. */
void agent_metrics_count(struct agent_metrics *m, enum agent_request_kind kind, enum na_code code);
void agent_metrics_latency(struct agent_metrics *m, enum agent_request_kind kind, double seconds);
/* The whole exposition text; the caller frees it. */
char *agent_metrics_render(const struct agent_metrics *m, const struct agent_gauges *g);

#endif
