/* The handler of each request kind, run in a worker thread.  A kind without a handler
 * here is answered with UNIMPLEMENTED: the contract is complete before its handlers are
 * (hypervisor/, storage/, net/ovs/ and scheduler-client/ fill this table in). */
#include "agent/agent.h"

static const agent_handler_fn handlers[AGENT_REQ__COUNT] = {
    [AGENT_REQ_NONE] = NULL,
};

agent_handler_fn
agent_handler_for(enum agent_request_kind kind)
{
    return (unsigned)kind < AGENT_REQ__COUNT ? handlers[kind] : NULL;
}
