/* Bus I/O: one produce with its delivery report, and an assign-only reader of a topic. */
#include "tools/nodectl/nodectl.h"

#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <string.h>

#define METADATA_TIMEOUT_MS 10000

static void
rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    char q[1024];
    na_log(level <= 3   ? NA_LOG_ERROR
           : level <= 4 ? NA_LOG_WARN
                        : NA_LOG_DEBUG,
           NULL, "rdkafka", "facility=%s detail=%s", fac, na_log_quote(q, sizeof(q), buf));
}

/* Our defaults first, then -X verbatim so the user can override any of them. */
static int
make_conf(const struct nodectl_global *g, const char *const *defaults, rd_kafka_conf_t **out,
          struct na_error **err)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, rdkafka_log);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", g->bootstrap, errstr, sizeof(errstr)))
        goto bad;
    for (size_t i = 0; defaults[i]; i += 2)
        if (rd_kafka_conf_set(conf, defaults[i], defaults[i + 1], errstr, sizeof(errstr)))
            goto bad;
    for (size_t i = 0; i < g->n_rdkafka_props; i++) {
        const char *kv = g->rdkafka_props[i];
        const char *eq = strchr(kv, '=');
        cleanup_free char *key = na_xstrndup(kv, (size_t)(eq - kv));
        if (rd_kafka_conf_set(conf, key, eq + 1, errstr, sizeof(errstr))) {
            rd_kafka_conf_destroy(conf);
            return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "-X %s: %s", kv, errstr);
        }
    }
    *out = conf;
    return 0;
bad:
    rd_kafka_conf_destroy(conf);
    return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "kafka configuration: %s", errstr);
}

static int
make_client(const struct nodectl_global *g, rd_kafka_type_t type, const char *const *defaults,
            void *opaque, rd_kafka_t **out, struct na_error **err)
{
    rd_kafka_conf_t *conf = NULL;
    int rc = make_conf(g, defaults, &conf, err);
    if (rc < 0)
        return rc;
    if (type == RD_KAFKA_PRODUCER)
        rd_kafka_conf_set_opaque(conf, opaque);
    char errstr[512];
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return na_error_set(err, NA_CODE_UNAVAILABLE, 0, "kafka client: %s", errstr);
    }
    *out = rk;
    return 0;
}

/* --- producing -------------------------------------------------------------------------- */

struct delivery_state {
    bool done;
    rd_kafka_resp_err_t err;
    int32_t partition;
    int64_t offset;
};

static void
on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct delivery_state *st = opaque;
    st->done = true;
    st->err = m->err;
    st->partition = m->partition;
    st->offset = m->offset;
}

int
nodectl_bus_send(const struct nodectl_global *g, const char *topic, const char *key,
                 const void *data, size_t size, const struct nodectl_signatures *sigs,
                 struct nodectl_delivery *out, struct na_error **err)
{
    /* A CLI should not sit for librdkafka's default 5 minutes when the bus is away. */
    static const char *const defaults[] = {"message.timeout.ms", "30000", "enable.idempotence",
                                           "false", NULL};
    struct delivery_state st = {0};
    rd_kafka_t *rk = NULL;
    rd_kafka_conf_t *conf = NULL;
    int rc = make_conf(g, defaults, &conf, err);
    if (rc < 0)
        return rc;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, &st);
    char errstr[512];
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        return na_error_set(err, NA_CODE_UNAVAILABLE, 0, "kafka producer: %s", errstr);
    }

    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(2);
    if (sigs && sigs->hmac)
        rd_kafka_header_add(hdrs, NA_HMAC_HEADER, -1, sigs->hmac, (ssize_t)strlen(sigs->hmac));
    if (sigs && sigs->signature)
        rd_kafka_header_add(hdrs, TRUST_SIGNATURE_HEADER, -1, sigs->signature,
                            (ssize_t)strlen(sigs->signature));
    rd_kafka_resp_err_t perr = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)data, size), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (perr) {
        rd_kafka_headers_destroy(hdrs); /* only owned by the message on success */
        rc = na_error_set(err, NA_CODE_UNAVAILABLE, 0, "produce to %s: %s", topic,
                          rd_kafka_err2str(perr));
        goto out;
    }
    /* message.timeout.ms guarantees a delivery report, success or failure. */
    while (!st.done)
        rd_kafka_poll(rk, 100);
    if (st.err) {
        rc = na_error_set(err, NA_CODE_UNAVAILABLE, 0, "delivery to %s failed: %s", topic,
                          rd_kafka_err2str(st.err));
        goto out;
    }
    out->partition = st.partition;
    out->offset = st.offset;
out:
    rd_kafka_flush(rk, 1000);
    rd_kafka_destroy(rk);
    return rc;
}

/* --- reading ----------------------------------------------------------------------------- */

struct nodectl_events {
    rd_kafka_t *rk;
    rd_kafka_message_t *msg;
    Nodeagent__V1__Event *ev;
    int n_parts;
    int64_t *end;  /* per partition: its high watermark when opened */
    int64_t *next; /* per partition: the offset after the last message read, or -1 */
};

static void
events_release_current(struct nodectl_events *es)
{
    if (es->ev)
        nodeagent__v1__event__free_unpacked(es->ev, NULL);
    if (es->msg)
        rd_kafka_message_destroy(es->msg);
    es->ev = NULL;
    es->msg = NULL;
}

static int
topic_partitions(rd_kafka_t *rk, const char *topic, int *n, struct na_error **err)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, METADATA_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    if (e)
        return na_error_set(err, NA_CODE_UNAVAILABLE, 0, "metadata of %s: %s", topic,
                            rd_kafka_err2str(e));
    int rc = 0;
    if (md->topic_cnt != 1 || md->topics[0].err)
        rc = na_error_set(err, NA_CODE_UNAVAILABLE, 0, "topic %s: %s", topic,
                          md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "not found");
    else
        *n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return rc;
}

int
nodectl_events_open(const struct nodectl_global *g, const char *topic, bool from_beginning,
                    struct nodectl_events **out, struct na_error **err)
{
    /* assign() needs a group.id for the consumer API, but nothing is ever committed to it. */
    char group[64];
    char uuid[37];
    na_uuid_generate(uuid);
    snprintf(group, sizeof(group), "nodectl-%s", uuid);
    const char *const defaults[] = {"group.id",
                                    group,
                                    "enable.auto.commit",
                                    "false",
                                    "enable.auto.offset.store",
                                    "false",
                                    "allow.auto.create.topics",
                                    "false",
                                    NULL};
    struct nodectl_events *es = na_xcalloc(1, sizeof(*es));
    rd_kafka_topic_partition_list_t *parts = NULL;
    int n = 0;
    int rc = make_client(g, RD_KAFKA_CONSUMER, defaults, NULL, &es->rk, err);
    if (rc == 0)
        rc = topic_partitions(es->rk, topic, &n, err);
    if (rc < 0)
        goto fail;
    rd_kafka_poll_set_consumer(es->rk);
    parts = rd_kafka_topic_partition_list_new(n);
    es->n_parts = n;
    es->end = na_xcalloc((size_t)n + 1, sizeof(*es->end));
    es->next = na_xcalloc((size_t)n + 1, sizeof(*es->next));
    for (int p = 0; p < n; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(es->rk, topic, p, &lo, &hi, METADATA_TIMEOUT_MS);
        if (e) {
            rc = na_error_set(err, NA_CODE_UNAVAILABLE, 0, "watermarks of %s [%d]: %s", topic, p,
                              rd_kafka_err2str(e));
            goto fail;
        }
        es->end[p] = hi;
        es->next[p] = from_beginning ? lo : hi;
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
            from_beginning ? RD_KAFKA_OFFSET_BEGINNING : hi;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(es->rk, parts);
    if (e) {
        rc = na_error_set(err, NA_CODE_UNAVAILABLE, 0, "assign %s: %s", topic, rd_kafka_err2str(e));
        goto fail;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    *out = es;
    return 0;
fail:
    if (parts)
        rd_kafka_topic_partition_list_destroy(parts);
    nodectl_events_close(es);
    return rc;
}

int
nodectl_topic_next(struct nodectl_events *es, int timeout_ms, struct nodectl_message *m)
{
    events_release_current(es);
    es->msg = rd_kafka_consumer_poll(es->rk, timeout_ms);
    if (!es->msg)
        return 0;
    if (es->msg->err) {
        /* Transport trouble is transient: librdkafka reconnects; the caller's timeout
         * decides when to give up. */
        if (es->msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            NA_LOG_WARN(NULL, "bus", "error=\"%s\"", rd_kafka_message_errstr(es->msg));
        return 0;
    }
    if (es->msg->partition >= 0 && es->msg->partition < es->n_parts)
        es->next[es->msg->partition] = es->msg->offset + 1;
    *m = (struct nodectl_message){
        .payload = es->msg->payload,
        .size = es->msg->len,
        .key = es->msg->key,
        .key_len = es->msg->key_len,
        .where = {es->msg->partition, es->msg->offset},
    };
    return 1;
}

int
nodectl_events_next(struct nodectl_events *es, int timeout_ms, Nodeagent__V1__Event **ev,
                    struct nodectl_delivery *where, struct na_error **err)
{
    (void)err;
    *ev = NULL;
    struct nodectl_message m;
    if (nodectl_topic_next(es, timeout_ms, &m) == 0)
        return 0;
    *where = m.where;
    es->ev = nodeagent__v1__event__unpack(NULL, m.size, m.payload);
    if (!es->ev)
        fprintf(stderr,
                "nodectl: warning: undecodable event at partition %d offset %" PRId64
                " (%zu bytes), skipped\n",
                (int)m.where.partition, m.where.offset, m.size);
    *ev = es->ev;
    return 1;
}

bool
nodectl_topic_at_end(const struct nodectl_events *es)
{
    for (int p = 0; p < es->n_parts; p++)
        if (es->next[p] < es->end[p])
            return false;
    return true;
}

void
nodectl_events_close(struct nodectl_events *es)
{
    if (!es)
        return;
    free(es->end);
    free(es->next);
    events_release_current(es);
    if (es->rk) {
        rd_kafka_consumer_close(es->rk);
        rd_kafka_destroy(es->rk);
    }
    free(es);
}
