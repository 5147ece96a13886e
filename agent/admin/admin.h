/* The admin API (see admin.c for the routes).  Runs on the main loop. */
#ifndef NODEAGENT_AGENT_ADMIN_H
#define NODEAGENT_AGENT_ADMIN_H

#include "agent/core/agent.h"

int agent_admin_open(struct agent *a, struct agent_admin **out, struct na_error **err);
void agent_admin_close(struct agent_admin *admin);

#endif
