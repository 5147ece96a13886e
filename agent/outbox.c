/* The outbox: every event is first recorded in the store (with the state change it
 * reports, in one transaction), then produced to the bus, and removed from the store once
 * the bus acknowledges it.  So an event survives a bus outage, a full local queue and a
 * crash of the agent; after a crash it may be sent twice (consumers dedupe by event_id).
 */
#include "agent/agent.h"

#include <errno.h>

#define PUMP_BATCH 512
#define RETRY_MS 500

static int
produce_row(int64_t id, const char *topic, const char *key, const struct agent_blob *payload,
            void *ctx)
{
    struct agent *a = ctx;
    cleanup_error struct na_error *err = NULL;
    int ret = agent_bus_produce(a->bus, topic, key, payload->data, payload->size, NULL, id, &err);
    if (ret == -ENOBUFS)
        return 1; /* local queue full: try again when the bus has drained some */
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

void
agent_outbox_on_delivery(void *agent, int64_t id, bool ok, const char *why)
{
    struct agent *a = agent;
    if (id < 1) /* not the outbox's: a capacity report, sent once; the next one follows */
        return;
    if (!ok) {
        na_log(NA_LOG_WARN, NULL, "bus refused an event; it will be sent again",
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
