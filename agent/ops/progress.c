/* PROGRESS events: a worker describes a step of its operation; the event is recorded and
 * sent on the loop, through the mailbox, which a worker's completion empties before it
 * records the terminal event (execute.c), so no PROGRESS follows its DONE or FAILED. */
#include "agent/core/agent.h"
#include "agent/ops/ops.h"
#include "agent/bus/events.h"

#include <stdarg.h>

struct progress_mail {
    char *request_id;
    char *instance;
    const char *kind;
    int64_t offset;
    unsigned percent;
    char *message;
};

static void
on_progress_mail(void *ctx, void *data)
{
    struct agent *a = ctx;
    struct progress_mail *m = data;
    Nodeagent__V1__Event ev;
    agent_event_init(a, &ev, NODEAGENT__V1__EVENT_KIND__EVENT_KIND_PROGRESS, m->request_id,
                     m->instance, m->kind, m->offset);
    ev.progress_percent = m->percent;
    ev.message = m->message;
    agent_event_emit(a, &ev);
    struct na_log_ctx log = {.request_id = m->request_id, .instance = m->instance};
    na_log(NA_LOG_INFO, &log, "progress", "kind=%s percent=%u step=\"%s\"", m->kind, m->percent,
           m->message);
    free(m->request_id);
    free(m->instance);
    free(m->message);
    free(m);
}

void
agent_op_progress(struct agent_op *op, unsigned percent, const char *fmt, ...)
{
    struct progress_mail *m = na_xcalloc(1, sizeof(*m));
    m->request_id = na_xstrdup(op->request_id);
    m->instance = na_xstrdup(op->instance);
    m->kind = agent_request_kind_name(op->kind);
    m->offset = op->bus_offset;
    m->percent = percent;
    va_list ap;
    va_start(ap, fmt);
    m->message = na_xvasprintf(fmt, ap);
    va_end(ap);
    agent_mailbox_post(op->host->mailbox, on_progress_mail, m);
}
