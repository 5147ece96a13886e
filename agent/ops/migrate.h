/* Live migration between two agents (DESIGN.md section 9, docs/protocol.md "Live
 * migration"): what the source's job (migrate_source.c) and the destination's job
 * (migrate_dest.c) share, and the peer messages that connect them (migrate.c).
 *
 * Each side is a recorded job (ops/jobs.h).  A peer message is an Envelope recorded in the
 * outbox for the peer's node topic inside the transaction that records the step it follows,
 * and signed with this node's key when it is produced (bus/outbox.c).  An answer from the
 * peer arrives as a request of its own (migration_prepared, _finish, _abort, in the job
 * lane of the migration id): its handler finds the waiting job by migration id and peer,
 * hands it the answer and wakes it.
 *
 * Job state keys: migration_id, peer (the other node), and on the source the destination's
 * answer (migrate_uri, disks_uri, libvirt_uri, domain_xml as hex).
 * Threading: the loop, but for the steps in the two job files.
 */
#ifndef NODEAGENT_AGENT_OPS_MIGRATE_H
#define NODEAGENT_AGENT_OPS_MIGRATE_H

#include "agent/core/agent.h"
#include "agent/ops/ops.h"

#define MIGRATE_DISK_TARGET "vda"
#define MIGRATE_KEY_ID "migration_id"
#define MIGRATE_KEY_PEER "peer"

/* Fills env's request_id, sent_at_ms, reply_to and target_node, and records it in the outbox
 * for node's topic (inside the caller's transaction, if one is open).  env's body is the
 * caller's. */
int agent_migration_send(struct agent *a, const char *node, Nodeagent__V1__Envelope *env,
                         struct na_error **err);
/* The waiting job of kind for migration_id whose peer is node, or NULL. */
struct agent_op *agent_migration_waiting(struct agent *a, enum agent_request_kind kind,
                                         const char *migration_id, const char *node);
/* Wakes a waiting job; with fail, it fails with a copy of it (and rolls back). */
void agent_migration_wake(struct agent *a, struct agent_op *op, const struct na_error *fail);
/* Housekeeping: a source still waiting for migration_prepared past its deadline (job state
 * "deadline_ms") gives up with TIMEOUT (its finish tells the destination to undo). */
void agent_migrations_expire(struct agent *a);
/* Sends migration_abort for the job's migration to its peer, saying why (its op->err). */
int agent_migration_send_abort(struct agent *a, struct agent_op *op, struct na_error **err);

#endif
