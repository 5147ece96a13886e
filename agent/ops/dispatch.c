#include "agent/ops/dispatch.h"

#include "common/common.h"

#include <string.h>

#define N_BUCKETS 256

struct op {
    struct op *next;
    struct agent_dispatch *d;
    struct lane *lane;
    agent_done_fn start;
    agent_work_fn work;
    agent_done_fn done;
    agent_done_fn park;
    void *data;
    uv_work_t req;
};

/* The operations of one key: at most one running, the rest waiting in order. */
struct lane {
    struct lane *next_in_bucket;
    char *key;
    struct op *head, *tail; /* waiting */
    bool busy;
};

struct agent_dispatch {
    uv_loop_t *loop;
    struct lane *buckets[N_BUCKETS];
    size_t n_queued;
    size_t n_running;
};

static unsigned
hash_key(const char *key)
{
    unsigned h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % N_BUCKETS;
}

static struct lane *
lane_get(struct agent_dispatch *d, const char *key)
{
    struct lane **slot = &d->buckets[hash_key(key)];
    for (struct lane *l = *slot; l; l = l->next_in_bucket)
        if (strcmp(l->key, key) == 0)
            return l;
    struct lane *l = na_xcalloc(1, sizeof(*l));
    l->key = na_xstrdup(key);
    l->next_in_bucket = *slot;
    *slot = l;
    return l;
}

/* A lane with nothing waiting and nothing running is forgotten. */
static void
lane_release(struct agent_dispatch *d, struct lane *lane)
{
    if (lane->busy || lane->head)
        return;
    struct lane **slot = &d->buckets[hash_key(lane->key)];
    while (*slot != lane)
        slot = &(*slot)->next_in_bucket;
    *slot = lane->next_in_bucket;
    free(lane->key);
    free(lane);
}

static void lane_run_next(struct agent_dispatch *d, struct lane *lane);

static void
on_work(uv_work_t *req)
{
    struct op *op = req->data;
    op->work(op->data);
}

static void
on_after_work(uv_work_t *req, int status)
{
    (void)status; /* never cancelled: only queued ops are parked, and they are ours */
    struct op *op = req->data;
    struct agent_dispatch *d = op->d;
    struct lane *lane = op->lane;
    d->n_running--;
    lane->busy = false;
    op->done(op->data);
    free(op);
    lane_run_next(d, lane);
}

static void
lane_run_next(struct agent_dispatch *d, struct lane *lane)
{
    struct op *op = lane->head;
    if (lane->busy || !op) {
        lane_release(d, lane);
        return;
    }
    lane->head = op->next;
    if (!lane->head)
        lane->tail = NULL;
    d->n_queued--;
    d->n_running++;
    lane->busy = true;
    if (op->start)
        op->start(op->data);
    op->req.data = op;
    uv_queue_work(d->loop, &op->req, on_work, on_after_work);
}

struct agent_dispatch *
agent_dispatch_new(uv_loop_t *loop)
{
    struct agent_dispatch *d = na_xcalloc(1, sizeof(*d));
    d->loop = loop;
    return d;
}

void
agent_dispatch_free(struct agent_dispatch *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < N_BUCKETS; i++) {
        struct lane *l = d->buckets[i];
        while (l) {
            struct lane *next = l->next_in_bucket;
            struct op *op = l->head;
            while (op) {
                struct op *op_next = op->next;
                free(op);
                op = op_next;
            }
            free(l->key);
            free(l);
            l = next;
        }
    }
    free(d);
}

void
agent_dispatch_submit(struct agent_dispatch *d, const char *key, agent_done_fn start,
                      agent_work_fn work, agent_done_fn done, agent_done_fn park, void *data)
{
    struct lane *lane = lane_get(d, key ? key : "");
    struct op *op = na_xcalloc(1, sizeof(*op));
    op->d = d;
    op->lane = lane;
    op->start = start;
    op->work = work;
    op->done = done;
    op->park = park;
    op->data = data;
    if (lane->tail)
        lane->tail->next = op;
    else
        lane->head = op;
    lane->tail = op;
    d->n_queued++;
    lane_run_next(d, lane);
}

void
agent_dispatch_submit_first(struct agent_dispatch *d, const char *key, agent_work_fn work,
                            agent_done_fn done, agent_done_fn park, void *data)
{
    struct lane *lane = lane_get(d, key ? key : "");
    struct op *op = na_xcalloc(1, sizeof(*op));
    op->d = d;
    op->lane = lane;
    op->work = work;
    op->done = done;
    op->park = park;
    op->data = data;
    op->next = lane->head;
    lane->head = op;
    if (!lane->tail)
        lane->tail = op;
    d->n_queued++;
    lane_run_next(d, lane);
}

void
agent_dispatch_park(struct agent_dispatch *d)
{
    for (size_t i = 0; i < N_BUCKETS; i++) {
        struct lane *l = d->buckets[i];
        while (l) {
            struct lane *next = l->next_in_bucket;
            struct op *op = l->head;
            l->head = l->tail = NULL;
            while (op) {
                struct op *op_next = op->next;
                d->n_queued--;
                op->park(op->data);
                free(op);
                op = op_next;
            }
            lane_release(d, l);
            l = next;
        }
    }
}

size_t
agent_dispatch_queued(const struct agent_dispatch *d)
{
    return d->n_queued;
}

size_t
agent_dispatch_running(const struct agent_dispatch *d)
{
    return d->n_running;
}
