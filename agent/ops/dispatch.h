/* The dispatcher: runs blocking work in the libuv worker pool, one operation at a time
 * per key (an instance uuid), in submission order; different keys run concurrently.
 *
 * work() runs on a worker thread and must touch nothing but its own data; done() runs on
 * the loop afterwards and may change agent state.  On shutdown, agent_dispatch_park()
 * hands every operation that has not started to its own park(), so that its owner can
 * leave it recorded for the next start, or drop it.
 */
#ifndef NODEAGENT_AGENT_DISPATCH_H
#define NODEAGENT_AGENT_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct agent_dispatch;

typedef void (*agent_work_fn)(void *data);
typedef void (*agent_done_fn)(void *data);

struct agent_dispatch *agent_dispatch_new(uv_loop_t *loop);
void agent_dispatch_free(struct agent_dispatch *d);

/* Queues data under key (copied).  start() runs on the loop just before work() is handed
 * to a worker (may be NULL): it is the moment to record that the operation began.  park()
 * takes data back if the operation never starts (agent_dispatch_park); it frees it. */
void agent_dispatch_submit(struct agent_dispatch *d, const char *key, agent_done_fn start,
                           agent_work_fn work, agent_done_fn done, agent_done_fn park, void *data);
/* Queues data under key ahead of what waits there: the next step of the operation whose
 * done() is running (a job's next phase), so that nothing else of that key runs between. */
void agent_dispatch_submit_first(struct agent_dispatch *d, const char *key, agent_work_fn work,
                                 agent_done_fn done, agent_done_fn park, void *data);
/* Removes every queued, not started, operation and calls its park(data). */
void agent_dispatch_park(struct agent_dispatch *d);

size_t agent_dispatch_queued(const struct agent_dispatch *d);
size_t agent_dispatch_running(const struct agent_dispatch *d);

#endif
