#include "agent/bus/bus-private.h"
#include "proto/trust.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <string.h>

/* How many consumer messages one wake-up handles before yielding to the loop. */
#define CONSUME_BATCH 256

static void consume_ready(struct agent_bus *bus);
static void produce_ready(struct agent_bus *bus);
static void watch_ready(struct agent_bus *bus);

static void
on_consumer_wake(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    struct agent_bus *bus = h->data;
    char buf[64];
    while (read(bus->consumer_wake.fds[0], buf, sizeof(buf)) > 0)
        ;
    consume_ready(bus);
}

static void
on_watcher_wake(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    struct agent_bus *bus = h->data;
    char buf[64];
    while (read(bus->watcher_wake.fds[0], buf, sizeof(buf)) > 0)
        ;
    watch_ready(bus);
}

static void
on_producer_wake(uv_poll_t *h, int status, int events)
{
    (void)status;
    (void)events;
    struct agent_bus *bus = h->data;
    char buf[64];
    while (read(bus->producer_wake.fds[0], buf, sizeof(buf)) > 0)
        ;
    produce_ready(bus);
}

static int
wakeup_start(struct agent_bus *bus, struct kafka_wakeup *w, rd_kafka_queue_t *q, uv_poll_cb cb,
             struct na_error **err)
{
    if (pipe2(w->fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return na_error_set(err, NA_CODE_INTERNAL, errno, "create bus wake-up pipe");
    rd_kafka_queue_io_event_enable(q, w->fds[1], "1", 1);
    uv_poll_init(bus->loop, &w->poll, w->fds[0]);
    w->poll.data = bus;
    uv_poll_start(&w->poll, UV_READABLE, cb);
    w->started = true;
    return 0;
}

static void
bus_free(struct agent_bus *bus)
{
    free(bus->request_topic);
    free(bus->nodes_topic);
    free(bus);
}

static void
on_handle_closed(uv_handle_t *h)
{
    struct agent_bus *bus = h->data;
    if (--bus->pending_closes == 0)
        bus_free(bus);
}

static void
handle_close(struct agent_bus *bus, uv_handle_t *h)
{
    bus->pending_closes++;
    uv_close(h, on_handle_closed);
}

static void
wakeup_stop(struct agent_bus *bus, struct kafka_wakeup *w, rd_kafka_queue_t *q)
{
    if (!w->started)
        return;
    rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
    uv_poll_stop(&w->poll);
    handle_close(bus, (uv_handle_t *)&w->poll);
    close(w->fds[0]);
    close(w->fds[1]);
    w->started = false;
}

/* The last value of header name, or NULL. */
static const void *
header_value(rd_kafka_headers_t *hdrs, const char *name, size_t *size)
{
    const void *val = NULL;
    *size = 0;
    if (!hdrs || rd_kafka_header_get_last(hdrs, name, &val, size) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return NULL;
    return val ? val : "";
}

static void
message_view(rd_kafka_message_t *m, struct agent_bus_msg *msg)
{
    *msg = (struct agent_bus_msg){
        .payload = m->payload,
        .size = m->len,
        .key = m->key,
        .key_len = m->key_len,
        .topic = rd_kafka_topic_name(m->rkt),
        .partition = m->partition,
        .offset = m->offset,
        .handle = m,
    };
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    struct agent_bus_headers *h = &msg->headers;
    h->signature = header_value(hdrs, TRUST_SIGNATURE_HEADER, &h->signature_len);
    h->certificate = header_value(hdrs, TRUST_CERTIFICATE_HEADER, &h->certificate_len);
    h->hmac = header_value(hdrs, NA_HMAC_HEADER, &h->hmac_len);
}

static void
handle_message(struct agent_bus *bus, rd_kafka_message_t *m)
{
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            na_log(NA_LOG_WARN, NULL, "bus consumer error", "error=%s detail=\"%s\"",
                   rd_kafka_err2name(m->err), rd_kafka_message_errstr(m));
        return;
    }
    struct agent_bus_msg msg;
    message_view(m, &msg);
    bus->stats.received++;
    bus->cb.on_request(bus->cb.ctx, &msg);
}

/* A request that is not taken now: the assignment is paused and the partition set back to
 * it, so that it is fetched again at the release (it is never acked meanwhile). */
static void
hold_back(struct agent_bus *bus, const char *topic, int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (!bus->held_paused && rd_kafka_assignment(bus->consumer, &parts) == 0 && parts) {
        if (rd_kafka_pause_partitions(bus->consumer, parts) == RD_KAFKA_RESP_ERR_NO_ERROR)
            bus->held_paused = true;
        rd_kafka_topic_partition_list_destroy(parts);
    }
    rd_kafka_topic_partition_list_t *at = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(at, topic, partition)->offset = offset;
    rd_kafka_error_t *e = rd_kafka_seek_partitions(bus->consumer, at, 5000);
    if (e) {
        na_log(NA_LOG_WARN, NULL, "held request: seeking back failed", "error=\"%s\"",
               rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(at);
}

static void
consume_ready(struct agent_bus *bus)
{
    if (bus->closing)
        return;
    for (int i = 0; i < CONSUME_BATCH; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(bus->consumer, 0);
        if (!m)
            return;
        if (bus->held && !m->err)
            hold_back(bus, rd_kafka_topic_name(m->rkt), m->partition, m->offset);
        else
            handle_message(bus, m);
        rd_kafka_message_destroy(m);
        if (bus->closing)
            return;
    }
    /* More may be waiting: the io event only fires on empty -> non-empty, so wake
     * ourselves again after the loop has served everything else. */
    if (write(bus->consumer_wake.fds[1], "1", 1) < 0 && errno != EAGAIN)
        na_log(NA_LOG_WARN, NULL, "bus wake-up write failed", "errno=%d", errno);
}

/* Once every assigned partition of the nodes topic has reported its end, the agent has
 * heard what the topic knew at start. */
static void
nodes_partition_eof(struct agent_bus *bus, int32_t partition)
{
    if (bus->nodes_caught_up || partition < 0 || partition >= 64)
        return;
    bus->nodes_eof |= UINT64_C(1) << partition;
    rd_kafka_topic_partition_list_t *assigned = NULL;
    if (rd_kafka_assignment(bus->watcher, &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    bool all = assigned->cnt > 0;
    for (int i = 0; i < assigned->cnt && all; i++) {
        int32_t p = assigned->elems[i].partition;
        all = p >= 0 && p < 64 && (bus->nodes_eof & (UINT64_C(1) << p));
    }
    rd_kafka_topic_partition_list_destroy(assigned);
    if (!all)
        return;
    bus->nodes_caught_up = true;
    if (bus->cb.on_nodes_caught_up)
        bus->cb.on_nodes_caught_up(bus->cb.ctx);
}

static void
watch_ready(struct agent_bus *bus)
{
    if (bus->closing || !bus->watcher)
        return;
    for (int i = 0; i < CONSUME_BATCH; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(bus->watcher, 0);
        if (!m)
            return;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            nodes_partition_eof(bus, m->partition);
        else if (m->err)
            na_log(NA_LOG_WARN, NULL, "bus error on the nodes topic", "error=%s detail=\"%s\"",
                   rd_kafka_err2name(m->err), rd_kafka_message_errstr(m));
        else {
            struct agent_bus_msg msg;
            message_view(m, &msg);
            bus->cb.on_announcement(bus->cb.ctx, &msg);
        }
        rd_kafka_message_destroy(m);
        if (bus->closing)
            return;
    }
    if (write(bus->watcher_wake.fds[1], "1", 1) < 0 && errno != EAGAIN)
        na_log(NA_LOG_WARN, NULL, "bus wake-up write failed", "errno=%d", errno);
}

static void
produce_ready(struct agent_bus *bus)
{
    while (rd_kafka_poll(bus->producer, 0) > 0)
        ;
}

static void
on_poll_timer(uv_timer_t *t)
{
    struct agent_bus *bus = t->data;
    consume_ready(bus);
    watch_ready(bus);
    produce_ready(bus);
}

static int
consumer_open(struct agent_bus *bus, const struct agent_config *cfg, struct na_error **err)
{
    cleanup_free char *group = na_xasprintf("nodeagent.%s", cfg->node_id);
    const char *defaults[] = {
        "group.id",
        group,
        /* Offsets are stored by agent_bus_ack() only once a request is durable. */
        "enable.auto.offset.store",
        "false",
        "enable.auto.commit",
        "true",
        "auto.commit.interval.ms",
        "1000",
        "auto.offset.reset",
        "earliest",
        "statistics.interval.ms",
        "1000",
        "enable.partition.eof",
        "false",
        /* Rejoin the group within seconds after a bus outage (librdkafka: 45 s). */
        "session.timeout.ms",
        "10000",
        "heartbeat.interval.ms",
        "1000",
        /* A request waits at most this long in the broker for the next fetch; librdkafka's
         * 500 ms doubled create latency (docs/benchmarks.md). */
        "fetch.wait.max.ms",
        "100",
        "reconnect.backoff.max.ms",
        "2000",
        "topic.metadata.refresh.interval.ms",
        "10000",
    };
    rd_kafka_conf_t *conf =
        bus_conf_new(bus, cfg, "consumer", defaults, NA_ARRAY_SIZE(defaults), err);
    if (!conf)
        return -EINVAL;
    rd_kafka_conf_set_stats_cb(conf, bus_stats_cb);

    char why[512];
    bus->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!bus->consumer) {
        rd_kafka_conf_destroy(conf);
        return na_error_set(err, NA_CODE_INTERNAL, 0, "create bus consumer: %s", why);
    }
    rd_kafka_poll_set_consumer(bus->consumer);
    bus->consumer_queue = rd_kafka_queue_get_consumer(bus->consumer);

    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, bus->request_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(bus->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "subscribe to `%s`: %s", bus->request_topic,
                            rd_kafka_err2str(e));
    return wakeup_start(bus, &bus->consumer_wake, bus->consumer_queue, on_consumer_wake, err);
}

static int
watcher_open(struct agent_bus *bus, const struct agent_config *cfg, struct na_error **err)
{
    char uuid[37];
    na_uuid_generate(uuid);
    cleanup_free char *group = na_xasprintf("nodeagent.%s.nodes.%s", cfg->node_id, uuid);
    const char *defaults[] = {
        "group.id",
        group,
        "enable.auto.commit",
        "false",
        "auto.offset.reset",
        "earliest",
        "enable.partition.eof",
        "true",
        "session.timeout.ms",
        "10000",
        "heartbeat.interval.ms",
        "1000",
        "reconnect.backoff.max.ms",
        "2000",
    };
    rd_kafka_conf_t *conf =
        bus_conf_new(bus, cfg, "watcher", defaults, NA_ARRAY_SIZE(defaults), err);
    if (!conf)
        return -EINVAL;
    char why[512];
    bus->watcher = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
    if (!bus->watcher) {
        rd_kafka_conf_destroy(conf);
        return na_error_set(err, NA_CODE_INTERNAL, 0, "create bus watcher: %s", why);
    }
    rd_kafka_poll_set_consumer(bus->watcher);
    bus->watcher_queue = rd_kafka_queue_get_consumer(bus->watcher);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, bus->nodes_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(bus->watcher, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "subscribe to `%s`: %s", bus->nodes_topic,
                            rd_kafka_err2str(e));
    return wakeup_start(bus, &bus->watcher_wake, bus->watcher_queue, on_watcher_wake, err);
}

static int
producer_open(struct agent_bus *bus, const struct agent_config *cfg, struct na_error **err)
{
    char buffer_max[32];
    snprintf(buffer_max, sizeof(buffer_max), "%u", cfg->event_buffer_max);
    const char *defaults[] = {
        /* Idempotence keeps each partition in order without duplicates on retry; with
         * no message timeout, librdkafka retries through any outage. */
        "enable.idempotence",           "true",     "message.timeout.ms", "0",
        "queue.buffering.max.messages", buffer_max, "linger.ms",          "5",
        "reconnect.backoff.max.ms",     "2000",
    };
    rd_kafka_conf_t *conf =
        bus_conf_new(bus, cfg, "producer", defaults, NA_ARRAY_SIZE(defaults), err);
    if (!conf)
        return -EINVAL;
    rd_kafka_conf_set_dr_msg_cb(conf, bus_dr_cb);

    char why[512];
    bus->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!bus->producer) {
        rd_kafka_conf_destroy(conf);
        return na_error_set(err, NA_CODE_INTERNAL, 0, "create bus producer: %s", why);
    }
    bus->producer_queue = rd_kafka_queue_get_main(bus->producer);
    return wakeup_start(bus, &bus->producer_wake, bus->producer_queue, on_producer_wake, err);
}

int
agent_bus_open(uv_loop_t *loop, const struct agent_config *cfg,
               const struct agent_bus_callbacks *cb, struct agent_bus **out, struct na_error **err)
{
    struct agent_bus *bus = na_xcalloc(1, sizeof(*bus));
    bus->loop = loop;
    bus->cb = *cb;
    bus->request_topic = agent_topic_node(cfg, cfg->node_id);
    bus->stats.consumer_lag = -1;

    bus->nodes_topic = agent_topic_nodes(cfg);
    int ret = producer_open(bus, cfg, err);
    if (ret == 0)
        ret = consumer_open(bus, cfg, err);
    if (ret == 0 && cb->on_announcement)
        ret = watcher_open(bus, cfg, err);
    if (ret < 0) {
        agent_bus_close(bus, 0);
        return ret;
    }
    uv_timer_init(loop, &bus->poll_timer);
    bus->poll_timer.data = bus;
    uv_timer_start(&bus->poll_timer, on_poll_timer, 1000, 1000);
    na_log(NA_LOG_INFO, NULL, "bus client started", "bootstrap=%s topic=%s", cfg->bootstrap_servers,
           bus->request_topic);
    *out = bus;
    return 0;
}

/* Commits the offsets stored by agent_bus_ack() and leaves the group, for at most
 * timeout_ms: with the bus away, rd_kafka_consumer_close() would wait for ever.  Offsets
 * not committed then are delivered again after the restart, and recognised as duplicates. */
static void
consumer_close(rd_kafka_t *consumer, int timeout_ms)
{
    rd_kafka_queue_t *q = rd_kafka_queue_new(consumer);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(consumer, q);
    uint64_t deadline = na_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (!e && !rd_kafka_consumer_closed(consumer) && na_mono_ns() < deadline) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 100);
        if (ev)
            rd_kafka_event_destroy(ev);
    }
    bool closed = !e && rd_kafka_consumer_closed(consumer);
    if (e)
        rd_kafka_error_destroy(e);
    rd_kafka_queue_destroy(q);
    if (!closed)
        na_log(NA_LOG_WARN, NULL,
               "bus consumer did not close in time; offsets not yet "
               "committed are delivered again after the restart",
               "client=%s timeout_ms=%d", rd_kafka_name(consumer), timeout_ms);
    rd_kafka_destroy_flags(consumer, closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

void
agent_bus_close(struct agent_bus *bus, int flush_ms)
{
    if (!bus)
        return;
    bus->closing = true;
    if (bus->poll_timer.data) {
        uv_timer_stop(&bus->poll_timer);
        handle_close(bus, (uv_handle_t *)&bus->poll_timer);
    }
    if (bus->consumer) {
        wakeup_stop(bus, &bus->consumer_wake, bus->consumer_queue);
        rd_kafka_queue_destroy(bus->consumer_queue);
        consumer_close(bus->consumer, flush_ms);
    }
    if (bus->watcher) {
        wakeup_stop(bus, &bus->watcher_wake, bus->watcher_queue);
        rd_kafka_queue_destroy(bus->watcher_queue);
        consumer_close(bus->watcher, flush_ms);
    }
    if (bus->producer) {
        wakeup_stop(bus, &bus->producer_wake, bus->producer_queue);
        rd_kafka_queue_destroy(bus->producer_queue);
        if (flush_ms > 0 && rd_kafka_flush(bus->producer, flush_ms))
            na_log(NA_LOG_WARN, NULL, "bus flush timed out; undelivered events stay queued",
                   "pending=%d", rd_kafka_outq_len(bus->producer));
        rd_kafka_purge(bus->producer, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_destroy(bus->producer);
    }
    if (bus->pending_closes == 0)
        bus_free(bus);
}

void
agent_bus_ack(struct agent_bus *bus, const struct agent_bus_msg *msg)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, msg->topic, msg->partition)->offset = msg->offset + 1;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(bus->consumer, list);
    if (e)
        na_log(NA_LOG_WARN, NULL, "storing bus offset failed", "topic=%s offset=%lld error=%s",
               msg->topic, (long long)msg->offset, rd_kafka_err2name(e));
    rd_kafka_topic_partition_list_destroy(list);
}

int
agent_bus_produce(struct agent_bus *bus, const char *topic, const char *key, const uint8_t *payload,
                  size_t size, const struct agent_bus_headers *headers, int64_t id,
                  struct na_error **err)
{
    size_t key_len = key ? strlen(key) : 0;
    rd_kafka_headers_t *hdrs = NULL;
    if (headers && (headers->signature || headers->certificate)) {
        hdrs = rd_kafka_headers_new(2);
        if (headers->signature)
            rd_kafka_header_add(hdrs, TRUST_SIGNATURE_HEADER, -1, headers->signature,
                                (ssize_t)headers->signature_len);
        if (headers->certificate)
            rd_kafka_header_add(hdrs, TRUST_CERTIFICATE_HEADER, -1, headers->certificate,
                                (ssize_t)headers->certificate_len);
    }
    rd_kafka_resp_err_t e =
        hdrs ? rd_kafka_producev(
                   bus->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                   RD_KAFKA_V_VALUE((void *)payload, size),
                   RD_KAFKA_V_KEY(key_len ? (void *)key : NULL, key_len), RD_KAFKA_V_HEADERS(hdrs),
                   RD_KAFKA_V_OPAQUE((void *)(intptr_t)id), RD_KAFKA_V_END)
             : rd_kafka_producev(bus->producer, RD_KAFKA_V_TOPIC(topic),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_VALUE((void *)payload, size),
                                 RD_KAFKA_V_KEY(key_len ? (void *)key : NULL, key_len),
                                 RD_KAFKA_V_OPAQUE((void *)(intptr_t)id), RD_KAFKA_V_END);
    /* On success the message owns the headers. */
    if (e && hdrs)
        rd_kafka_headers_destroy(hdrs);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        return -ENOBUFS;
    if (e)
        return na_error_quiet(err, NA_CODE_INTERNAL, bus_message_refused(e) ? EMSGSIZE : 0,
                              "produce %zu bytes to `%s`: %s", size, topic, rd_kafka_err2str(e));
    bus->stats.produced++;
    return 0;
}

void
agent_bus_pause(struct agent_bus *bus, bool paused)
{
    if (bus->paused == paused)
        return;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(bus->consumer, &parts) || !parts)
        return;
    rd_kafka_resp_err_t e = paused ? rd_kafka_pause_partitions(bus->consumer, parts)
                                   : rd_kafka_resume_partitions(bus->consumer, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
        bus->paused = paused;
        na_log(NA_LOG_INFO, NULL,
               paused ? "consumption paused: work queue full" : "consumption resumed", NULL);
    }
}

void
agent_bus_hold(struct agent_bus *bus, enum agent_bus_hold_reason why, bool held)
{
    unsigned want = held ? bus->held | why : bus->held & ~(unsigned)why;
    if (want == bus->held)
        return;
    bool was = bus->held != 0;
    bus->held = want;
    if (was == (want != 0))
        return;
    na_log(NA_LOG_INFO, NULL, want ? "consumption held" : "consumption no longer held", NULL);
    if (want || !bus->held_paused)
        return;
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(bus->consumer, &parts) == 0 && parts) {
        rd_kafka_resume_partitions(bus->consumer, parts);
        rd_kafka_topic_partition_list_destroy(parts);
    }
    bus->held_paused = false;
}

void
agent_bus_put_back(struct agent_bus *bus, const struct agent_bus_msg *msg)
{
    hold_back(bus, msg->topic, msg->partition, msg->offset);
}

void
agent_bus_get_stats(struct agent_bus *bus, struct agent_bus_stats *out)
{
    *out = bus->stats;
    out->producer_queue = bus->producer ? (size_t)rd_kafka_outq_len(bus->producer) : 0;
}
