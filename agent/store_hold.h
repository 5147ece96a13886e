/* Holding the requests while the state store cannot be written.
 *
 * A request is acknowledged on the bus only once it is recorded.  When recording fails (a
 * full disk, an I/O error), exiting and being handed the same request again after the
 * restart would only fail again: a crash loop.  Instead the agent holds: consumption of
 * requests pauses, the request that could not be recorded is kept in memory (not
 * acknowledged, so a restart meanwhile loses nothing), /healthz reports the database check
 * failed with the reason, and a timer tries a small write every few seconds.  When one
 * succeeds, the held requests are taken in again, in order, and consumption resumes.  An
 * agent that starts on a store it cannot write holds from the start, and replays its open
 * intents only once it can.
 */
#ifndef NODEAGENT_AGENT_STORE_HOLD_H
#define NODEAGENT_AGENT_STORE_HOLD_H

#include "agent/bus.h"
#include "common/common.h"

struct agent;
struct agent_store_hold;

/* Starts holding (when not yet): msg (may be NULL) is kept to be taken in again later. */
void agent_store_hold(struct agent *a, const struct agent_bus_msg *msg, const struct na_error *why);
/* At start: holds when a write to the store fails; the replay of open intents is then left
 * to the recovery.  Returns true when it holds. */
bool agent_store_hold_if_unwritable(struct agent *a);
/* The reason when holding (for /healthz), else NULL. */
const char *agent_store_hold_reason(const struct agent *a);
void agent_store_hold_close(struct agent *a);

#endif
