#include "agent/core/mailbox.h"

#include "common/common.h"

#include <pthread.h>

struct mail {
    struct mail *next;
    agent_mail_fn fn;
    void *data;
};

struct agent_mailbox {
    uv_async_t async;
    void *ctx;
    pthread_mutex_t lock;
    struct mail *head, *tail; /* guarded by lock */
    bool closed;              /* guarded by lock */
};

static void
deliver(struct agent_mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    struct mail *m = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);
    while (m) {
        struct mail *next = m->next;
        m->fn(mb->ctx, m->data);
        free(m);
        m = next;
    }
}

static void
on_async(uv_async_t *h)
{
    deliver(h->data);
}

void
agent_mailbox_deliver(struct agent_mailbox *mb)
{
    deliver(mb);
}

struct agent_mailbox *
agent_mailbox_new(uv_loop_t *loop, void *ctx)
{
    struct agent_mailbox *mb = na_xcalloc(1, sizeof(*mb));
    mb->ctx = ctx;
    pthread_mutex_init(&mb->lock, NULL);
    uv_async_init(loop, &mb->async, on_async);
    mb->async.data = mb;
    return mb;
}

void
agent_mailbox_post(struct agent_mailbox *mb, agent_mail_fn fn, void *data)
{
    struct mail *m = na_xcalloc(1, sizeof(*m));
    m->fn = fn;
    m->data = data;
    pthread_mutex_lock(&mb->lock);
    bool closed = mb->closed;
    if (!closed) {
        if (mb->tail)
            mb->tail->next = m;
        else
            mb->head = m;
        mb->tail = m;
    }
    pthread_mutex_unlock(&mb->lock);
    if (closed) {
        /* After close nobody will run it: let its owner's function see and free it. */
        na_log(NA_LOG_DEBUG, NULL, "mail after close dropped", NULL);
        free(m);
        return;
    }
    uv_async_send(&mb->async);
}

static void
on_closed(uv_handle_t *h)
{
    struct agent_mailbox *mb = h->data;
    pthread_mutex_destroy(&mb->lock);
    free(mb);
}

void
agent_mailbox_close(struct agent_mailbox *mb)
{
    if (!mb)
        return;
    deliver(mb);
    pthread_mutex_lock(&mb->lock);
    mb->closed = true;
    pthread_mutex_unlock(&mb->lock);
    deliver(mb);
    uv_close((uv_handle_t *)&mb->async, on_closed);
}
