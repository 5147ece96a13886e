/* Announcement: whether one NodeAnnouncement may be believed, as far as the message itself
 * and its sender's certificate can tell (DESIGN.md section 12, docs/protocol.md 9.2).
 *
 * Pure functions of their inputs, used by peers.c on the main loop and by the unit tests
 * and the fuzzer; what depends on the peer table (replays, limits) stays in peers.c.
 */
#ifndef NODEAGENT_AGENT_ANNOUNCEMENT_H
#define NODEAGENT_AGENT_ANNOUNCEMENT_H

#include "common/common.h"
#include "nodeagent.pb-c.h"
#include "proto/trust.h"

/* Whether an announcement that arrived with key is well formed and keyed by its node id;
 * INVALID_ARGUMENT naming the field otherwise. */
int agent_announcement_check(const Nodeagent__V1__NodeAnnouncement *an, const void *key,
                             size_t key_len, struct na_error **err);

/* Whether cert (the sender's, already checked) vouches for an: -1 when it does, else the
 * refusal's reason (AGENT_ANNOUNCE_REFUSED_IDENTITY: another node; _ENDPOINT: a tunnel
 * endpoint the certificate does not allow) with *err saying so. */
int agent_announcement_matches_cert(const Nodeagent__V1__NodeAnnouncement *an,
                                    const struct trust_node_cert *cert, struct na_error **err);

#endif
