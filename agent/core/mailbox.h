/* The loop's mailbox: any thread posts a function and its data, the loop runs it.  Worker
 * progress and libvirt's events enter the loop this way; nothing else crosses threads. */
#ifndef NODEAGENT_AGENT_MAILBOX_H
#define NODEAGENT_AGENT_MAILBOX_H

#include <uv.h>

struct agent_mailbox;

typedef void (*agent_mail_fn)(void *ctx, void *data);

struct agent_mailbox *agent_mailbox_new(uv_loop_t *loop, void *ctx);
/* Any thread.  fn(ctx, data) runs on the loop; it owns data. */
void agent_mailbox_post(struct agent_mailbox *mb, agent_mail_fn fn, void *data);
/* On the loop: runs, in order, what was posted before this call, without waiting for the
 * wake-up (libuv may run a worker's completion before the mailbox's wake-up: what the worker
 * posted must come first). */
void agent_mailbox_deliver(struct agent_mailbox *mb);
/* Runs what is still waiting, then closes; the mailbox is freed once libuv lets go. */
void agent_mailbox_close(struct agent_mailbox *mb);

#endif
