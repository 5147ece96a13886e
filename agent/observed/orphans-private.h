/* What the orphans' files share (orphans.c, orphan_adopt.c).  Not for other files. */
#ifndef NODEAGENT_AGENT_OBSERVED_ORPHANS_PRIVATE_H
#define NODEAGENT_AGENT_OBSERVED_ORPHANS_PRIVATE_H

#include "agent/observed/orphans.h"

struct agent_orphan *orphans_find(const struct agent_orphans *t, const char *uuid);
void orphans_remove_one(struct agent_orphans *t, const char *uuid);
/* The current orphan uuid names, with no purge or adoption running: an operator's action may
 * start on it.  NOT_FOUND (-ENOENT) or CONFLICT (-EBUSY) otherwise. */
int orphans_idle(struct agent *a, const char *uuid, struct agent_orphan **out,
                 struct na_error **err);
/* Holds or releases requests as the orphans that hold the agent say. */
void orphans_apply_hold(struct agent *a);

#endif
