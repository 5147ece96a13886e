/* Validation of decoded envelopes: every field of every request against the limits that
 * docs/protocol.md states.  Pure logic, no state. */
#ifndef NODEAGENT_AGENT_VALIDATE_H
#define NODEAGENT_AGENT_VALIDATE_H

#include "common/common.h"
#include "nodeagent.pb-c.h"

/* Returns 0, or fills err with INVALID_ARGUMENT naming the first bad field by its path
 * ("create.spec.nics[0].mac"). */
int agent_validate_envelope(const Nodeagent__V1__Envelope *env, struct na_error **err);

#endif
