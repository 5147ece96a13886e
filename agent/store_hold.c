/* Holding the requests while the state store cannot be written (agent/store_hold.h). */
#include "agent/store_hold.h"
#include "agent/agent.h"

#include <errno.h>
#include <string.h>

#define PROBE_MS 2000
/* A write can succeed on a full filesystem (SQLite reuses its write-ahead log's pages): the
 * hold ends only once there is also this much room. */
#define RESUME_MIN_FREE (1ULL << 20)

/* A request as the bus delivered it, copied: the bus's own copy goes at the next poll. */
struct held_msg {
    struct agent_bus_msg msg;
    uint8_t *payload;
    char *key;
    char *topic;
    char *signature, *certificate, *hmac;
};

struct agent_store_hold {
    struct agent *a;
    uv_timer_t timer;
    char *reason;
    struct held_msg *msgs;
    size_t n_msgs;
    bool replay_pending; /* held from the start: open intents are replayed on recovery */
};

static char *
copy_bytes(const void *p, size_t n)
{
    if (!p)
        return NULL;
    char *c = na_xmalloc(n + 1);
    memcpy(c, p, n);
    c[n] = '\0';
    return c;
}

static void
held_copy(struct held_msg *h, const struct agent_bus_msg *m)
{
    h->payload = (uint8_t *)copy_bytes(m->payload, m->size);
    h->key = copy_bytes(m->key, m->key_len);
    h->topic = na_xstrdup(m->topic);
    h->signature = copy_bytes(m->headers.signature, m->headers.signature_len);
    h->certificate = copy_bytes(m->headers.certificate, m->headers.certificate_len);
    h->hmac = copy_bytes(m->headers.hmac, m->headers.hmac_len);
    h->msg = *m;
    h->msg.payload = h->payload;
    h->msg.key = h->key;
    h->msg.topic = h->topic;
    h->msg.headers.signature = h->signature;
    h->msg.headers.certificate = h->certificate;
    h->msg.headers.hmac = h->hmac;
    h->msg.handle = NULL;
}

static void
held_clear(struct held_msg *h)
{
    free(h->payload);
    free(h->key);
    free(h->topic);
    free(h->signature);
    free(h->certificate);
    free(h->hmac);
}

static void
on_timer_closed(uv_handle_t *handle)
{
    struct agent_store_hold *h = handle->data;
    for (size_t i = 0; i < h->n_msgs; i++)
        held_clear(&h->msgs[i]);
    free(h->msgs);
    free(h->reason);
    free(h);
}

static void
hold_free(struct agent_store_hold *h)
{
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
}

/* The store takes writes again: the held requests go in, in order, then the bus resumes.
 * (A request that cannot be recorded now starts a new hold.) */
static void
recover(struct agent_store_hold *h)
{
    struct agent *a = h->a;
    a->store_hold = NULL;
    na_log(NA_LOG_INFO, NULL, "the state store takes writes again; resuming", "held_requests=%zu",
           h->n_msgs);
    for (size_t i = 0; i < h->n_msgs; i++)
        agent_intake(a, &h->msgs[i].msg);
    if (h->replay_pending) {
        cleanup_error struct na_error *err = NULL;
        if (agent_replay_open_intents(a, &err) < 0)
            agent_store_hold(a, NULL, err);
        else if (a->store_hold)
            a->store_hold->replay_pending = true;
    }
    if (!a->store_hold && a->bus)
        agent_bus_pause(a->bus, AGENT_BUS_PAUSE_STORE, false);
    hold_free(h);
}

static int
probe_write(struct agent *a, struct na_error **err)
{
    uint64_t free_bytes = 0;
    int ret = agent_disk_free(a, &free_bytes, err);
    if (ret < 0)
        return ret;
    if (free_bytes < RESUME_MIN_FREE)
        return na_error_set(err, NA_CODE_STORAGE, ENOSPC,
                            "the filesystem of %s has %llu bytes free", a->cfg->state_dir,
                            (unsigned long long)free_bytes);
    char now[32];
    snprintf(now, sizeof(now), "%lld", (long long)na_now_ms());
    return agent_store_meta_put(a->store, "write_probe_ms", now, err);
}

static void
on_probe(uv_timer_t *t)
{
    struct agent_store_hold *h = t->data;
    if (h->a->stopping)
        return;
    cleanup_error struct na_error *err = NULL;
    if (probe_write(h->a, &err) == 0) {
        recover(h);
        return;
    }
    if (strcmp(h->reason, err->msg) != 0) {
        free(h->reason);
        h->reason = na_xstrdup(err->msg);
    }
}

void
agent_store_hold(struct agent *a, const struct agent_bus_msg *msg, const struct na_error *why)
{
    struct agent_store_hold *h = a->store_hold;
    if (!h) {
        h = na_xcalloc(1, sizeof(*h));
        h->a = a;
        h->reason = na_xstrdup(why ? why->msg : "unknown");
        uv_timer_init(a->loop, &h->timer);
        h->timer.data = h;
        uv_timer_start(&h->timer, on_probe, PROBE_MS, PROBE_MS);
        a->store_hold = h;
        na_log(NA_LOG_ERROR, NULL,
               "the state store cannot be written: holding requests (not acknowledged) and "
               "pausing consumption until it can",
               "error=\"%s\"", h->reason);
    }
    if (msg) {
        h->msgs = na_xrealloc(h->msgs, (h->n_msgs + 1) * sizeof(*h->msgs));
        held_copy(&h->msgs[h->n_msgs++], msg);
    }
    if (a->bus)
        agent_bus_pause(a->bus, AGENT_BUS_PAUSE_STORE, true);
}

bool
agent_store_hold_if_unwritable(struct agent *a)
{
    cleanup_error struct na_error *err = NULL;
    if (probe_write(a, &err) == 0)
        return false;
    agent_store_hold(a, NULL, err);
    a->store_hold->replay_pending = true;
    return true;
}

const char *
agent_store_hold_reason(const struct agent *a)
{
    return a->store_hold ? a->store_hold->reason : NULL;
}

void
agent_store_hold_close(struct agent *a)
{
    if (a->store_hold)
        hold_free(a->store_hold);
    a->store_hold = NULL;
}
