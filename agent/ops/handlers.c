/* The handler of each request kind, from the table of operations (proto/requests.h):
 * a kind marked handled has agent_handle_<name>; the others are answered UNIMPLEMENTED, so
 * the contract is complete before its handlers are. */
#include "agent/core/agent.h"
#include "agent/ops/ops.h"

#define HANDLER_YES(name) &agent_handle_##name
#define HANDLER_NO(name) NULL

static const struct agent_handler *const handlers[AGENT_REQ__COUNT] = {
#define X(name, CASE, field, signer, instance, job_id, sender, lane, from, leaves, handled, ...)   \
    [AGENT_REQ_##CASE] = HANDLER_##handled(name),
    AGENT_REQUEST_KINDS(X)
#undef X
};

const struct agent_handler *
agent_handler_for(enum agent_request_kind kind)
{
    return (unsigned)kind < AGENT_REQ__COUNT ? handlers[kind] : NULL;
}
