/* The bus room's side in the agent: requests in, events out.
 *
 * Job: a message from the node topic is authenticated, decoded, validated against the
 * contract and deduplicated by request id, then recorded with its ACCEPTED event before its
 * offset is committed (intake.c); every event is recorded in the store's outbox and sent in
 * id order, surviving bus outages and crashes (outbox.c, events.c).
 * Inputs: Kafka messages (bus.c), the control plane's and peers' keys (identity.c).
 * Outputs: intents handed to the operations room; events on the events topic.
 * Threading: the loop only (librdkafka's own threads wake it through pipes).
 */
#ifndef NODEAGENT_AGENT_BUS_EVENTS_H
#define NODEAGENT_AGENT_BUS_EVENTS_H

#include "agent/core/agent.h"

/* intake.c: a message from the node topic. */
void agent_intake(void *agent, const struct agent_bus_msg *msg);

/* events.c */
void agent_event_init(struct agent *a, Nodeagent__V1__Event *ev, Nodeagent__V1__EventKind kind,
                      const char *request_id, const char *instance, const char *request_kind,
                      int64_t offset);
/* Packs ev and records it in the outbox (inside the caller's transaction, if any);
 * a copy of the packed bytes goes to *recorded when it is not NULL. */
int agent_event_record(struct agent *a, const Nodeagent__V1__Event *ev, struct agent_blob *recorded,
                       struct na_error **err);
/* Above this many packed bytes an event is not stored: a small FAILED event saying so
 * stands for it.  Well under librdkafka's default message.max.bytes (1000000), so one
 * request cannot stop the node's events at the bus. */
#define AGENT_EVENT_SIZE_MAX (512 * 1024)
/* A small FAILED event standing for the packed event payload that the bus refused for
 * good (why says how).  Returns 0 and *out, -EINVAL when payload is not an event, or
 * -EMSGSIZE when the stand-in would be no smaller. */
int agent_event_stand_in(const struct agent_blob *payload, const char *why, struct agent_blob *out);
/* Replaces a packed event by its summary, the event without its bulk (the console tail),
 * which is what a finished intent keeps to answer a duplicate request. */
void agent_event_summarize(struct agent_blob *event);
/* Records and sends an event that no intent refers to (its own transaction). */
void agent_event_emit(struct agent *a, const Nodeagent__V1__Event *ev);
/* Sets ev->error from err; ev keeps pointers into err until it is packed. */
void agent_event_set_error(Nodeagent__V1__Event *ev, Nodeagent__V1__Error *slot,
                           const struct na_error *err);

/* outbox.c */
void agent_outbox_init(struct agent *a);
void agent_outbox_pump(struct agent *a);
void agent_outbox_on_delivery(void *agent, int64_t id, enum agent_bus_outcome outcome,
                              const char *why);
void agent_outbox_close(struct agent *a);

#endif
