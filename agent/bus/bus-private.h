/* What the bus room's client files share (bus.c, bus_conf.c): the bus and its librdkafka
 * clients.  Not for other files. */
#ifndef NODEAGENT_AGENT_BUS_BUS_PRIVATE_H
#define NODEAGENT_AGENT_BUS_BUS_PRIVATE_H

#include "agent/bus/bus.h"

#include <librdkafka/rdkafka.h>

struct kafka_wakeup {
    int fds[2];
    uv_poll_t poll;
    bool started;
};

struct agent_bus {
    uv_loop_t *loop;
    struct agent_bus_callbacks cb;
    char *request_topic;

    rd_kafka_t *consumer;
    rd_kafka_queue_t *consumer_queue;
    struct kafka_wakeup consumer_wake;

    rd_kafka_t *producer;
    rd_kafka_queue_t *producer_queue;
    struct kafka_wakeup producer_wake;

    /* Every node's announcements: a consumer of <prefix>.nodes in a group of its own, so
     * it reads every partition from the start and commits nothing. */
    char *nodes_topic;
    rd_kafka_t *watcher;
    rd_kafka_queue_t *watcher_queue;
    uint64_t nodes_eof; /* partitions (below 64) of the nodes topic read to their end */
    bool nodes_caught_up;
    struct kafka_wakeup watcher_wake;

    uv_timer_t poll_timer; /* safety net: serves both queues once a second */
    bool paused;
    unsigned held;    /* enum agent_bus_hold_reason bits: no request is handed on */
    bool held_paused; /* held, and the assignment paused after a message came */
    bool closing;
    int pending_closes; /* libuv handles still closing; the bus is freed after the last */
    struct agent_bus_stats stats;
};

/* bus_conf.c: a client's settings (ours, then the operator's [bus.rdkafka] on top) with the
 * log and error callbacks, and the callbacks for statistics and deliveries. */
rd_kafka_conf_t *bus_conf_new(struct agent_bus *bus, const struct agent_config *cfg,
                              const char *role, const char *const *defaults, size_t n_defaults,
                              struct na_error **err);
int bus_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, struct na_error **err);
int bus_stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque);
void bus_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);
/* Errors about the message itself, which no retry and no outage's end can cure. */
bool bus_message_refused(rd_kafka_resp_err_t e);

#endif
