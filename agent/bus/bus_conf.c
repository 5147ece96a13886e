/* The bus's librdkafka settings and callbacks: librdkafka's log lines and errors into our
 * log, its statistics into the bus's counters, and each delivery's outcome to the outbox. */
#include "agent/bus/bus-private.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

static void
bus_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    enum na_log_level l = level <= 3 ? NA_LOG_ERROR : level <= 4 ? NA_LOG_WARN : NA_LOG_DEBUG;
    char quoted[1024];
    na_log(l, NULL, "librdkafka", "client=%s facility=%s detail=%s", rd_kafka_name(rk), fac,
           na_log_quote(quoted, sizeof(quoted), buf));
}

static void
bus_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct agent_bus *bus = opaque;
    char quoted[1024];
    /* Transport failures are already logged by librdkafka's own log callback. */
    if (err != RD_KAFKA_RESP_ERR__TRANSPORT)
        na_log(NA_LOG_WARN, NULL, "bus error", "client=%s error=%s detail=%s", rd_kafka_name(rk),
               rd_kafka_err2name(err), na_log_quote(quoted, sizeof(quoted), reason));
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN && bus->stats.up) {
        bus->stats.up = false;
        if (bus->cb.on_health)
            bus->cb.on_health(bus->cb.ctx, false);
    }
    if (rd_kafka_fatal_error(rk, NULL, 0))
        na_log(NA_LOG_ERROR, NULL, "bus client hit a fatal error", "client=%s", rd_kafka_name(rk));
}

/* The consumer's statistics say whether a broker is up and how far behind we are. */
int
bus_stats_cb(rd_kafka_t *rk, char *json, size_t json_len, void *opaque)
{
    (void)rk;
    struct agent_bus *bus = opaque;
    json_t *root = json_loadb(json, json_len, 0, NULL);
    if (!root)
        return 0;

    bool up = false;
    const char *name;
    json_t *broker;
    json_object_foreach(json_object_get(root, "brokers"), name, broker)
    {
        json_int_t nodeid = json_integer_value(json_object_get(broker, "nodeid"));
        const char *state = json_string_value(json_object_get(broker, "state"));
        if (nodeid >= 0 && state && strcmp(state, "UP") == 0)
            up = true;
    }

    int64_t lag = -1;
    json_t *parts = json_object_get(
        json_object_get(json_object_get(root, "topics"), bus->request_topic), "partitions");
    json_t *part;
    json_object_foreach(parts, name, part)
    {
        if (strcmp(name, "-1") == 0)
            continue;
        json_int_t l = json_integer_value(json_object_get(part, "consumer_lag"));
        if (l >= 0)
            lag = (lag < 0 ? 0 : lag) + l;
    }
    json_decref(root);

    bus->stats.consumer_lag = lag;
    if (up != bus->stats.up) {
        bus->stats.up = up;
        na_log(up ? NA_LOG_INFO : NA_LOG_WARN, NULL, up ? "bus is up" : "bus is down", NULL);
        if (bus->cb.on_health)
            bus->cb.on_health(bus->cb.ctx, up);
    }
    return 0;
}

/* Errors about the message itself, which no retry and no outage's end can cure.  Errors
 * about the producer or the cluster (authorization, a fatal idempotence error, a purge at
 * shutdown) are not: the same bytes go through once the cause is fixed. */
bool
bus_message_refused(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR__BAD_MSG:
        return true;
    default:
        return false;
    }
}

void
bus_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct agent_bus *bus = opaque;
    int64_t id = (int64_t)(intptr_t)m->_private;
    enum agent_bus_outcome outcome = m->err == RD_KAFKA_RESP_ERR_NO_ERROR ? AGENT_BUS_DELIVERED
                                     : bus_message_refused(m->err)        ? AGENT_BUS_REFUSED
                                                                          : AGENT_BUS_FAILED;
    if (outcome == AGENT_BUS_DELIVERED)
        bus->stats.delivered++;
    else
        bus->stats.delivery_failed++;
    if (bus->cb.on_delivery)
        bus->cb.on_delivery(bus->cb.ctx, id, outcome,
                            outcome == AGENT_BUS_DELIVERED ? NULL : rd_kafka_err2str(m->err));
}

int
bus_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, struct na_error **err)
{
    char why[512];
    if (rd_kafka_conf_set(conf, key, value, why, sizeof(why)) != RD_KAFKA_CONF_OK)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "bus setting %s=%s: %s", key, value, why);
    return 0;
}

/* Settings common to both clients, then the operator's [bus.rdkafka] on top. */
rd_kafka_conf_t *
bus_conf_new(struct agent_bus *bus, const struct agent_config *cfg, const char *role,
             const char *const *defaults, size_t n_defaults, struct na_error **err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    cleanup_free char *client_id = na_xasprintf("nodeagent-%s-%s", cfg->node_id, role);
    int ret = bus_conf_set(conf, "bootstrap.servers", cfg->bootstrap_servers, err);
    if (ret == 0)
        ret = bus_conf_set(conf, "client.id", client_id, err);
    for (size_t i = 0; ret == 0 && i + 1 < n_defaults; i += 2)
        ret = bus_conf_set(conf, defaults[i], defaults[i + 1], err);
    for (size_t i = 0; ret == 0 && i < cfg->n_rdkafka; i++)
        ret = bus_conf_set(conf, cfg->rdkafka[i].key, cfg->rdkafka[i].value, err);
    if (ret < 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, bus);
    rd_kafka_conf_set_log_cb(conf, bus_log_cb);
    rd_kafka_conf_set_error_cb(conf, bus_error_cb);
    return conf;
}
