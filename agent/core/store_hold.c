/* Holding the requests while the state store cannot be written (agent/core/store_hold.h). */
#include "agent/core/store_hold.h"
#include "agent/core/agent.h"

#include <errno.h>
#include <string.h>

#define PROBE_MS 2000
/* A write can succeed on a full filesystem (SQLite reuses its write-ahead log's pages): the
 * hold ends only once there is also this much room. */
#define RESUME_MIN_FREE (1ULL << 20)

struct agent_store_hold {
    struct agent *a;
    uv_timer_t timer;
    char *reason;
};

static void
on_timer_closed(uv_handle_t *handle)
{
    struct agent_store_hold *h = handle->data;
    free(h->reason);
    free(h);
}

static void
hold_free(struct agent_store_hold *h)
{
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->timer, on_timer_closed);
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
    struct agent *a = h->a;
    if (a->stopping)
        return;
    cleanup_error struct na_error *err = NULL;
    if (probe_write(a, &err) < 0) {
        if (strcmp(h->reason, err->msg) != 0) {
            free(h->reason);
            h->reason = na_xstrdup(err->msg);
        }
        return;
    }
    na_log(NA_LOG_INFO, NULL, "the state store takes writes again; held requests are taken in",
           NULL);
    a->store_hold = NULL;
    hold_free(h);
    agent_gate_update(a);
}

void
agent_store_hold(struct agent *a, const struct na_error *why)
{
    if (a->store_hold)
        return;
    struct agent_store_hold *h = na_xcalloc(1, sizeof(*h));
    h->a = a;
    h->reason = na_xstrdup(why ? why->msg : "unknown");
    uv_timer_init(a->loop, &h->timer);
    h->timer.data = h;
    uv_timer_start(&h->timer, on_probe, PROBE_MS, PROBE_MS);
    a->store_hold = h;
    na_log(NA_LOG_ERROR, NULL,
           "the state store cannot be written: requests are held on the bus (not acknowledged) "
           "until it can",
           "error=\"%s\"", h->reason);
    agent_gate_update(a);
}

bool
agent_store_hold_if_unwritable(struct agent *a)
{
    cleanup_error struct na_error *err = NULL;
    if (probe_write(a, &err) == 0)
        return false;
    agent_store_hold(a, err);
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
