/* Counters and histograms for /metrics, in Prometheus text format.
 *
 * Requests are counted by kind and result (the error code, or "ok"); operation latency is
 * a histogram by kind, from the request's arrival to its terminal event.  Gauges (queue
 * depths, bus lag) are read from the agent when rendering.  Main loop only.
 */
#ifndef NODEAGENT_AGENT_METRICS_H
#define NODEAGENT_AGENT_METRICS_H

#include "proto/requests.h"
#include "common/common.h"

#define AGENT_METRICS_N_CODES 17 /* na_code values 0..16; 0 counts successes */
#define AGENT_METRICS_N_BUCKETS 12

/* Why an announcement on <prefix>.nodes was not believed: X(ID, label). */
#define AGENT_ANNOUNCE_REFUSALS(X)                                                                 \
    X(UNAUTHENTICATED, "unauthenticated") /* no, or a wrong, signature or certificate */           \
    X(MALFORMED, "malformed")             /* not a NodeAnnouncement, or a field out of range */    \
    X(IDENTITY, "identity")               /* node id or key other than the certificate's */        \
    X(ENDPOINT, "endpoint")               /* a tunnel endpoint the certificate does not allow */   \
    X(STALE, "stale")                     /* too old, or from the future */                        \
    X(REPLAYED, "replayed")               /* not newer than the node's last one */                 \
    X(LIMIT, "limit")                     /* [peers] max_peers or max_vnis reached */

enum agent_announce_refusal {
#define X(ID, label) AGENT_ANNOUNCE_REFUSED_##ID,
    AGENT_ANNOUNCE_REFUSALS(X)
#undef X
        AGENT_ANNOUNCE_REFUSED__COUNT
};
const char *agent_announce_refusal_name(enum agent_announce_refusal r);

struct agent_metrics {
    uint64_t requests[AGENT_REQ__COUNT][AGENT_METRICS_N_CODES];
    uint64_t latency_buckets[AGENT_REQ__COUNT][AGENT_METRICS_N_BUCKETS];
    uint64_t latency_count[AGENT_REQ__COUNT];
    double latency_sum[AGENT_REQ__COUNT];
    uint64_t duplicates;
    uint64_t events_refused; /* events the bus refused for good, replaced or dropped */
    uint64_t announcements_refused[AGENT_ANNOUNCE_REFUSED__COUNT];
};

struct agent_gauges {
    double uptime_s;
    size_t queued;
    size_t running;
    size_t jobs_waiting; /* jobs parked on the loop, holding no thread (agent/ops/jobs.h) */
    int64_t outbox;
    int64_t store_bytes;   /* state.db's size */
    int64_t store_intents; /* intents recorded, open and finished */
    double intent_retention_s;
    int64_t bus_lag;
    bool bus_up;
    bool healthy;
    uint64_t bus_received;
    uint64_t bus_delivered;
    uint64_t bus_delivery_failed;
    int placement_in_sync; /* 1, 0, or -1 when [placement] endpoint is unset */
    uint64_t capacity[3];  /* VCPU, MEMORY_MB, DISK_GB: what may be allocated */
    uint64_t used[3];      /* the instances' claims */
    bool insecure_unsigned;
    double node_cert_expiry_s; /* seconds until the node certificate expires; 0 insecure */
    size_t peers;
    bool store_held;          /* requests held: the state store cannot be written */
    uint64_t disk_free_bytes; /* on the state directory's filesystem */
    uint64_t min_free_bytes;  /* [agent] min_free_mib */
    size_t orphans;           /* orphans.h */
    bool holding; /* no request is consumed: orphans hold, or the store is not checked yet */
    size_t uids_quarantined; /* guest uids released and not yet reusable (agent/observed/uids.h) */
    size_t uids_held;        /* of which held: their instance could not be cleaned up */
};

/* code NA_CODE_UNSPECIFIED (0) means success. */
void agent_metrics_count(struct agent_metrics *m, enum agent_request_kind kind, enum na_code code);
void agent_metrics_latency(struct agent_metrics *m, enum agent_request_kind kind, double seconds);
/* The whole exposition text; the caller frees it. */
char *agent_metrics_render(const struct agent_metrics *m, const struct agent_gauges *g);

#endif
