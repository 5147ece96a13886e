/* The outbox: every event is first recorded in the store (with the state change it
 * reports, in one transaction), then produced to the bus, and removed from the store once
 * the bus acknowledges it.  So an event survives a bus outage, a full local queue and a
 * crash of the agent; after a crash it may be sent twice (consumers dedupe by event_id).
 *
 * Rows go out in id order, so a row the bus refuses for good (too large for the producer,
 * malformed) would hold back every later one: such a row is replaced by a small FAILED
 * event about it, and dropped when even that cannot be made smaller.
 */
#include "agent/core/agent.h"
#include "agent/bus/events.h"
#include "agent/bus/identity.h"

#include <errno.h>
#include <string.h>

#define PUMP_BATCH 512
#define RETRY_MS 500

/* Replaces row id, which the bus refused for good, by its FAILED stand-in (left in
 * *stand_in for the caller to free), or drops the row when there is none (*stand_in
 * empty).  A store that cannot be written is no reason to stop: the stand-in still goes
 * out under the row's id (its delivery removes the row), and a row left as it was is
 * refused and replaced again on the next attempt. */
static void
replace_refused(struct agent *a, int64_t id, const struct agent_blob *payload, const char *why,
                struct agent_blob *stand_in)
{
    cleanup_error struct na_error *err = NULL;
    int ret;
    if (agent_event_stand_in(payload, why, stand_in) == 0) {
        na_log(NA_LOG_ERROR, NULL, "bus refused an event for good; a FAILED event replaces it",
               "outbox_id=%lld size=%zu error=\"%s\"", (long long)id, payload->size, why);
        ret = agent_store_outbox_replace(a->store, id, stand_in, &err);
    } else {
        na_log(NA_LOG_ERROR, NULL, "bus refused an event for good; dropping it",
               "outbox_id=%lld size=%zu error=\"%s\"", (long long)id, payload->size, why);
        ret = agent_store_outbox_delete(a->store, id, &err);
    }
    if (ret < 0)
        na_log(NA_LOG_WARN, NULL, "recording the refused event's replacement failed",
               "outbox_id=%lld error=\"%s\"", (long long)id, err->msg);
    a->metrics.events_refused++;
}

/* A row for another topic than the events' is a peer message (agent/ops/migrate.h): it goes
 * out signed by this node's key, with its certificate.  0, or -1 when it cannot be signed. */
static int
peer_headers(struct agent *a, const char *topic, const struct agent_blob *payload,
             struct agent_bus_headers *h, char sig[TRUST_SIGNATURE_HEX_LEN + 1])
{
    *h = (struct agent_bus_headers){0};
    if (strcmp(topic, a->topic_events) == 0 || a->identity->insecure)
        return 0;
    cleanup_error struct na_error *err = NULL;
    if (trust_sign_hex(a->identity->node_key, TRUST_PEER_MESSAGE, payload->data, payload->size, sig,
                       &err) < 0) {
        na_log(NA_LOG_ERROR, NULL, "a peer message could not be signed", "error=\"%s\"", err->msg);
        return -1;
    }
    h->signature = sig;
    h->signature_len = strlen(sig);
    h->certificate = a->identity->cert_hex;
    h->certificate_len = strlen(a->identity->cert_hex);
    return 0;
}

static int
produce_row(int64_t id, const char *topic, const char *key, const struct agent_blob *payload,
            void *ctx)
{
    struct agent *a = ctx;
    cleanup_error struct na_error *err = NULL;
    struct agent_bus_headers headers;
    char sig[TRUST_SIGNATURE_HEX_LEN + 1];
    if (peer_headers(a, topic, payload, &headers, sig) < 0)
        return 1;
    int ret =
        agent_bus_produce(a->bus, topic, key, payload->data, payload->size, &headers, id, &err);
    if (ret == -ENOBUFS)
        return 1; /* local queue full: try again when the bus has drained some */
    if (ret == -EMSGSIZE) {
        cleanup_free uint8_t *data = NULL;
        struct agent_blob stand_in = {0};
        replace_refused(a, id, payload, err->msg, &stand_in);
        data = stand_in.data;
        if (!stand_in.data) {
            a->outbox_cursor = id;
            return 0;
        }
        return produce_row(id, topic, key, &stand_in, ctx);
    }
    if (ret < 0) {
        na_log(NA_LOG_ERROR, NULL, "event could not be queued", "outbox_id=%lld error=\"%s\"",
               (long long)id, err->msg);
        return 1;
    }
    a->outbox_cursor = id;
    return 0;
}

static void
flush_delivered(struct agent *a)
{
    if (!a->n_delivered)
        return;
    cleanup_error struct na_error *err = NULL;
    int ret = agent_store_begin(a->store, &err);
    for (size_t i = 0; ret == 0 && i < a->n_delivered; i++)
        ret = agent_store_outbox_delete(a->store, a->delivered[i], &err);
    if (ret == 0)
        ret = agent_store_commit(a->store, &err);
    if (ret < 0) {
        /* Not fatal: the events stay in the outbox and are sent again after a restart. */
        agent_store_rollback(a->store);
        na_log(NA_LOG_WARN, NULL, "removing delivered events failed", "error=\"%s\"", err->msg);
    }
    a->n_delivered = 0;
}

static void
on_outbox_timer(uv_timer_t *t)
{
    struct agent *a = t->data;
    flush_delivered(a);
    agent_outbox_pump(a);
}

void
agent_outbox_init(struct agent *a)
{
    uv_timer_init(a->loop, &a->outbox_timer);
    a->outbox_timer.data = a;
    a->outbox_cursor = 0;
}

void
agent_outbox_pump(struct agent *a)
{
    if (!a->bus)
        return;
    cleanup_error struct na_error *err = NULL;
    int ret;
    do {
        int64_t before = a->outbox_cursor;
        ret = agent_store_outbox_each(a->store, a->outbox_cursor, PUMP_BATCH, produce_row, a, &err);
        if (ret < 0) {
            na_log(NA_LOG_ERROR, NULL, "reading the outbox failed", "error=\"%s\"", err->msg);
            break;
        }
        if (a->outbox_cursor == before)
            break;
    } while (ret == 0);
    if (ret != 0)
        uv_timer_start(&a->outbox_timer, on_outbox_timer, RETRY_MS, 0);
}

/* The refused row's payload is read back from the store: librdkafka's copy is gone. */
static int
replace_refused_row(int64_t id, const char *topic, const char *key,
                    const struct agent_blob *payload, void *ctx)
{
    (void)topic;
    (void)key;
    const void **args = ctx;
    struct agent *a = (struct agent *)args[0];
    if (id == *(const int64_t *)args[1]) {
        struct agent_blob stand_in = {0};
        replace_refused(a, id, payload, args[2], &stand_in);
        free(stand_in.data);
    }
    return 1; /* one row only */
}

void
agent_outbox_on_delivery(void *agent, int64_t id, enum agent_bus_outcome outcome, const char *why)
{
    struct agent *a = agent;
    if (id < 1) /* not the outbox's: a capacity report, sent once; the next one follows */
        return;
    if (outcome == AGENT_BUS_REFUSED) {
        const void *args[] = {a, &id, why ? why : "refused"};
        cleanup_error struct na_error *err = NULL;
        if (agent_store_outbox_each(a->store, id - 1, 1, replace_refused_row, args, &err) < 0)
            na_log(NA_LOG_ERROR, NULL, "reading a refused event failed",
                   "outbox_id=%lld error=\"%s\"", (long long)id, err->msg);
    }
    if (outcome != AGENT_BUS_DELIVERED) {
        na_log(NA_LOG_WARN, NULL, "bus did not take an event; it will be sent again",
               "outbox_id=%lld error=\"%s\"", (long long)id, why ? why : "");
        if (id <= a->outbox_cursor)
            a->outbox_cursor = id - 1;
        uv_timer_start(&a->outbox_timer, on_outbox_timer, RETRY_MS, 0);
        return;
    }
    if (a->n_delivered == a->delivered_cap) {
        a->delivered_cap = a->delivered_cap ? a->delivered_cap * 2 : 64;
        a->delivered = na_xrealloc(a->delivered, a->delivered_cap * sizeof(*a->delivered));
    }
    a->delivered[a->n_delivered++] = id;
    /* Remove in one transaction on the next loop turn, not one fsync per event. */
    if (!uv_is_active((uv_handle_t *)&a->outbox_timer))
        uv_timer_start(&a->outbox_timer, on_outbox_timer, 0, 0);
}

void
agent_outbox_close(struct agent *a)
{
    uv_timer_stop(&a->outbox_timer);
    flush_delivered(a);
    free(a->delivered);
    a->delivered = NULL;
    a->delivered_cap = 0;
}
