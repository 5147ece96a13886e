/* The handler of each request kind (see struct agent_handler).  A kind without one is
 * answered UNIMPLEMENTED: the contract is complete before its handlers are. */
#include "agent/agent.h"

static const struct agent_handler *const handlers[AGENT_REQ__COUNT] = {
    [AGENT_REQ_CREATE] = &agent_handle_create,
    [AGENT_REQ_DELETE] = &agent_handle_delete,
    [AGENT_REQ_REBUILD] = &agent_handle_rebuild,
    [AGENT_REQ_RESIZE] = &agent_handle_resize,
    [AGENT_REQ_START] = &agent_handle_start,
    [AGENT_REQ_STOP] = &agent_handle_stop,
    [AGENT_REQ_REBOOT] = &agent_handle_reboot,
    [AGENT_REQ_PAUSE] = &agent_handle_pause,
    [AGENT_REQ_RESUME] = &agent_handle_resume,
    [AGENT_REQ_SUSPEND] = &agent_handle_suspend,
    [AGENT_REQ_CONSOLE_LOG] = &agent_handle_console_log,
    [AGENT_REQ_SECURITY_GROUP_PUT] = &agent_handle_security_group_put,
    [AGENT_REQ_SECURITY_GROUP_DELETE] = &agent_handle_security_group_delete,
    [AGENT_REQ_PORT_SECURITY_GROUPS] = &agent_handle_port_security_groups,
};

const struct agent_handler *
agent_handler_for(enum agent_request_kind kind)
{
    return (unsigned)kind < AGENT_REQ__COUNT ? handlers[kind] : NULL;
}
