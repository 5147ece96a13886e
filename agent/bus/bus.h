/* The bus: librdkafka's consumer of this node's request topic, a second consumer (the
 * watcher) of every node's announcements, and the producer of events, capacity reports and
 * announcements, driven from the libuv loop.
 *
 * librdkafka signals its queues through a pipe (rd_kafka_queue_io_event_enable) that the
 * loop polls, so every callback below runs on the main loop.  The consumer never commits
 * an offset by itself: the agent calls agent_bus_ack() once a request is durable, and the
 * auto-commit thread commits what was acked.  The producer is idempotent and retries for
 * ever; its local queue is bounded (bus.event_buffer_max) and agent_bus_produce() says so
 * with -ENOBUFS, leaving the event in the agent's outbox for later.
 */
#ifndef NODEAGENT_AGENT_BUS_H
#define NODEAGENT_AGENT_BUS_H

#include "agent/core/config.h"
#include "common/common.h"

#include <uv.h>

struct agent_bus;

/* The trust headers of a message (proto/trust.h); values are not NUL-terminated, NULL
 * when the header is absent. */
struct agent_bus_headers {
    const char *signature; /* nodeagent-signature: hex Ed25519 */
    size_t signature_len;
    const char *certificate; /* nodeagent-certificate: hex SignedNodeCertificate */
    size_t certificate_len;
    const char *hmac; /* nodeagent-hmac: legacy hex HMAC-SHA256 */
    size_t hmac_len;
};

struct agent_bus_msg {
    const uint8_t *payload;
    size_t size;
    const void *key;
    size_t key_len;
    const char *topic;
    int32_t partition;
    int64_t offset;
    struct agent_bus_headers headers;
    void *handle; /* the bus's own, for agent_bus_ack() */
};

/* What became of a produced message. */
enum agent_bus_outcome {
    AGENT_BUS_DELIVERED,
    AGENT_BUS_FAILED,  /* not delivered this time; the same bytes may go through later */
    AGENT_BUS_REFUSED, /* never deliverable as it is: too large for the producer, malformed */
};

struct agent_bus_callbacks {
    void *ctx;
    /* A request arrived.  Call agent_bus_ack() once it is durable (or refused for good). */
    void (*on_request)(void *ctx, const struct agent_bus_msg *msg);
    /* The bus acknowledged the message produced with id, or gave up on it (why says
     * why); refused: the message itself can never be delivered as it is. */
    void (*on_delivery)(void *ctx, int64_t id, enum agent_bus_outcome outcome, const char *why);
    /* Broker connectivity changed. */
    void (*on_health)(void *ctx, bool up);
    /* A message on <prefix>.nodes (every one, from the start of the topic); NULL: the
     * topic is not read.  Never acked. */
    void (*on_announcement)(void *ctx, const struct agent_bus_msg *msg);
    /* Every partition of <prefix>.nodes has been read to its end once: what the topic knew
     * of the other nodes when the agent started is known now.  Called once. */
    void (*on_nodes_caught_up)(void *ctx);
};

struct agent_bus_stats {
    bool up;
    int64_t consumer_lag; /* -1 when unknown */
    uint64_t received;
    uint64_t produced;
    uint64_t delivered;
    uint64_t delivery_failed;
    size_t producer_queue; /* messages in librdkafka's local queue */
};

int agent_bus_open(uv_loop_t *loop, const struct agent_config *cfg,
                   const struct agent_bus_callbacks *cb, struct agent_bus **out,
                   struct na_error **err);
/* Stops consuming, commits acked offsets, and flushes the producer for at most
 * flush_ms; messages not delivered by then stay in the caller's outbox. */
void agent_bus_close(struct agent_bus *bus, int flush_ms);

void agent_bus_ack(struct agent_bus *bus, const struct agent_bus_msg *msg);
/* Queues a message; returns 0, -ENOBUFS when the local queue is full, or -EMSGSIZE when
 * the producer refuses the message itself for good (larger than its message.max.bytes).
 * headers may be NULL; its hmac is never sent. */
int agent_bus_produce(struct agent_bus *bus, const char *topic, const char *key,
                      const uint8_t *payload, size_t size, const struct agent_bus_headers *headers,
                      int64_t id, struct na_error **err);
/* Pauses or resumes consumption (backpressure when the dispatcher queue is long). */
void agent_bus_pause(struct agent_bus *bus, bool paused);
/* Why requests are held. */
enum agent_bus_hold_reason {
    AGENT_BUS_HOLD_ORPHANS = 1 << 0, /* the store does not match libvirt (observed/orphans.h) */
    AGENT_BUS_HOLD_STORE = 1 << 1,   /* the state store cannot be written (store_hold.h) */
};
/* Sets or clears one reason to hold consumption; it is held while any reason is set.  While
 * held, no request is handed to on_request, recorded or acked.  The consumer keeps polling
 * (group membership, statistics); the first request that arrives pauses the assignment and
 * seeks the partition back to it, so it and those after it stay on the bus and are fetched
 * again at the release. */
void agent_bus_hold(struct agent_bus *bus, enum agent_bus_hold_reason why, bool held);
/* A request already handed to on_request that cannot be taken now (call agent_bus_hold
 * first): the assignment pauses and its partition is set back to it, so that it is fetched
 * again at the release. */
void agent_bus_put_back(struct agent_bus *bus, const struct agent_bus_msg *msg);
void agent_bus_get_stats(struct agent_bus *bus, struct agent_bus_stats *out);

#endif
