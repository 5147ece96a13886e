/* Holding the requests while the state store cannot be written.
 *
 * A request is acknowledged on the bus only once it is recorded.  When recording fails (a
 * full disk, an I/O error), exiting and being handed the same request again after the
 * restart would only fail again: a crash loop.  Instead the agent holds: the request is put
 * back on the bus (not acknowledged; the partition is set back to it), consumption is held
 * (agent_gate_update()), /healthz reports the database check failed with the reason, and a
 * timer tries a small write every few seconds, with some room free.  When one succeeds the
 * hold ends, and the held requests are fetched again, in order.  An agent that starts on a
 * store it cannot write holds from the start, and replays its unfinished intents only once
 * it can write.
 */
#ifndef NODEAGENT_AGENT_STORE_HOLD_H
#define NODEAGENT_AGENT_STORE_HOLD_H

#include "common/common.h"

#include <stdbool.h>

struct agent;
struct agent_store_hold;

/* Starts holding, for the reason why, unless it holds already. */
void agent_store_hold(struct agent *a, const struct na_error *why);
/* At start: holds when a write to the store fails.  Returns true when it holds. */
bool agent_store_hold_if_unwritable(struct agent *a);
/* The reason while holding (for /healthz), else NULL. */
const char *agent_store_hold_reason(const struct agent *a);
void agent_store_hold_close(struct agent *a);

#endif
