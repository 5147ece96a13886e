/* The table of operations: every request kind of the bus contract, listed once.
 *
 * X(name, CASE, field, signer, instance, job_id, sender, lane, from, leaves, handled, job)
 *
 *   name      the Envelope body's field name; also the request_kind of events, the `kind`
 *             label of metrics and nodectl's command
 *   CASE      the protobuf-c oneof case suffix
 *   field     the C member (protoc-c renames C++ keywords: delete_)
 *   signer    who must sign it: CONTROL_PLANE (the control plane's key) or PEER (the sending
 *             node's certified key)
 *   instance  where the body names its instance: instance_uuid, spec_uuid (body->spec->uuid)
 *             or none
 *   job_id    where the body names its job: migration_id, or none
 *   sender    peer messages: the body's member naming the node it comes from; none otherwise
 *   lane      INSTANCE: one at a time per instance, in arrival order; CONTROL: a lane of its
 *             own per instance, so that it reaches a job that holds the instance's lane (a
 *             cancel); JOB: the lane of the job it names (peer messages); NODE: one lane for
 *             the node's own state (security groups)
 *   from      the instance states it is allowed from: STATES(...) of InstanceState names,
 *             ANY_STATE, or NEW (the instance must not exist yet)
 *   leaves    the state it leaves the instance in (its desired state from then on), or SAME
 *   handled   YES when this agent has a handler (agent_handle_<name>), NO: UNIMPLEMENTED
 *   job       ONE_SHOT (one worker call) or JOB (recorded phases, may wait on a peer)
 *
 * Validation (validate.c), dispatch lanes (requests.c), the agent's handlers and state
 * checks (agent/ops/handlers.c), metrics and nodectl expand this list: a new kind is added here
 * and its check_<name>() in validate.c, and nowhere else by hand.
 */
#ifndef NODEAGENT_PROTO_REQUESTS_H
#define NODEAGENT_PROTO_REQUESTS_H

#include "nodeagent.pb-c.h"

#include <stdbool.h>
#include <stdint.h>

/* clang-format off */
#define AGENT_REQUEST_KINDS(X)                                                                     \
  X(create,             CREATE,             create,             CONTROL_PLANE, spec_uuid,     none,         none,        INSTANCE, NEW,                                   RUNNING,   YES, ONE_SHOT) \
  X(delete,             DELETE,             delete_,            CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, ANY_STATE,                             DELETED,   YES, ONE_SHOT) \
  X(start,              START,              start,              CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, STATES(STOPPED, SUSPENDED, CRASHED, RUNNING), RUNNING, YES, ONE_SHOT) \
  X(stop,               STOP,               stop,               CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, STATES(RUNNING, PAUSED, STOPPED, CRASHED), STOPPED, YES, ONE_SHOT) \
  X(reboot,             REBOOT,             reboot,             CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, STATES(RUNNING),                       RUNNING,   YES, ONE_SHOT) \
  X(pause,              PAUSE,              pause,              CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, STATES(RUNNING, PAUSED),               PAUSED,    YES, ONE_SHOT) \
  X(resume,             RESUME,             resume,             CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, STATES(PAUSED, SUSPENDED, RUNNING),    RUNNING,   YES, ONE_SHOT) \
  X(suspend,            SUSPEND,            suspend,            CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, STATES(RUNNING, PAUSED, SUSPENDED),    SUSPENDED, YES, ONE_SHOT) \
  X(snapshot_create,    SNAPSHOT_CREATE,    snapshot_create,    CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, STATES(RUNNING, STOPPED, PAUSED),      SAME,      YES, JOB)      \
  X(snapshot_revert,    SNAPSHOT_REVERT,    snapshot_revert,    CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, STATES(RUNNING, STOPPED, PAUSED),      SAME,      YES, JOB)      \
  X(snapshot_delete,    SNAPSHOT_DELETE,    snapshot_delete,    CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, ANY_STATE,                             SAME,      YES, JOB)      \
  X(resize,             RESIZE,             resize,             CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, STATES(RUNNING, STOPPED),              SAME,      YES, ONE_SHOT) \
  X(rebuild,            REBUILD,            rebuild,            CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, STATES(RUNNING, STOPPED, CRASHED, ERROR), SAME,   YES, ONE_SHOT) \
  X(console_log,        CONSOLE_LOG,        console_log,        CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, ANY_STATE,                             SAME,      YES, ONE_SHOT) \
  X(migrate,            MIGRATE,            migrate,            CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, STATES(RUNNING),                       SAME,      YES,  JOB)      \
  X(cancel_migration,   CANCEL_MIGRATION,   cancel_migration,   CONTROL_PLANE, instance_uuid, none,         none,        CONTROL,  ANY_STATE,                             SAME,      YES,  ONE_SHOT) \
  X(security_group_put,    SECURITY_GROUP_PUT,    security_group_put,    CONTROL_PLANE, none, none, none,   NODE,  ANY_STATE,                         SAME,      YES, ONE_SHOT) \
  X(security_group_delete, SECURITY_GROUP_DELETE, security_group_delete, CONTROL_PLANE, none, none, none,   NODE,  ANY_STATE,                         SAME,      YES, ONE_SHOT) \
  X(port_security_groups,  PORT_SECURITY_GROUPS,  port_security_groups,  CONTROL_PLANE, none, none, none,   NODE,  ANY_STATE,                         SAME,      YES, ONE_SHOT) \
  X(clone,              CLONE,              clone,              CONTROL_PLANE, spec_uuid,     none,         none,        INSTANCE, NEW,                                   RUNNING,   YES, JOB)      \
  X(snapshot_export,    SNAPSHOT_EXPORT,    snapshot_export,    CONTROL_PLANE, instance_uuid, none,         none,        INSTANCE, STATES(RUNNING, STOPPED, PAUSED),      SAME,      YES, JOB)      \
  X(migration_prepare,  MIGRATION_PREPARE,  migration_prepare,  PEER,          spec_uuid,     migration_id, source_node, INSTANCE, NEW,                                   SAME,      YES,  JOB)      \
  X(migration_prepared, MIGRATION_PREPARED, migration_prepared, PEER,          none,          migration_id, dest_node,   JOB,      ANY_STATE,                             SAME,      YES,  JOB)      \
  X(migration_finish,   MIGRATION_FINISH,   migration_finish,   PEER,          none,          migration_id, source_node, JOB,      ANY_STATE,                             SAME,      YES,  JOB)      \
  X(migration_abort,    MIGRATION_ABORT,    migration_abort,    PEER,          none,          migration_id, node,        JOB,      ANY_STATE,                             SAME,      YES,  JOB)
/* clang-format on */

/* The `from` column as bits: AGENT_STATE_BIT(RUNNING) | ... */
#define AGENT_STATE_BIT(S) (1u << NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_##S)

enum agent_request_kind {
    AGENT_REQ_NONE = 0,
#define X(name, CASE, ...) AGENT_REQ_##CASE,
    AGENT_REQUEST_KINDS(X)
#undef X
        AGENT_REQ__COUNT
};

enum agent_request_signer { AGENT_SIGNER_CONTROL_PLANE, AGENT_SIGNER_PEER };
enum agent_request_lane {
    AGENT_LANE_INSTANCE,
    AGENT_LANE_CONTROL,
    AGENT_LANE_JOB,
    AGENT_LANE_NODE
};

/* One row of the table, for code that walks it at run time. */
struct agent_request_row {
    const char *name;
    enum agent_request_signer signer;
    enum agent_request_lane lane;
    uint32_t from; /* AGENT_STATE_BIT()s; 0: the instance must not exist; all: any */
    Nodeagent__V1__InstanceState leaves; /* UNSPECIFIED: as it was */
    bool handled;
    bool job;
};

/* The row of kind; a row named "none" for AGENT_REQ_NONE and out-of-range kinds. */
const struct agent_request_row *agent_request_row(enum agent_request_kind kind);
/* Who must sign a request of this kind (AGENT_REQ_NONE: the control plane). */
enum agent_request_signer agent_request_signer(enum agent_request_kind kind);

/* The node a peer message says it comes from (the table's sender column); NULL for other
 * kinds.  Points into env. */
const char *agent_request_sender_node(const Nodeagent__V1__Envelope *env);

/* The kind of a decoded envelope, AGENT_REQ_NONE when its body is not set or unknown. */
enum agent_request_kind agent_request_kind_of(const Nodeagent__V1__Envelope *env);
/* "create", "stop", ...; "none" for AGENT_REQ_NONE. */
const char *agent_request_kind_name(enum agent_request_kind kind);
/* The instance uuid the request is about ("" when it names none, e.g. a migration peer
 * message other than the prepare).  Points into env. */
const char *agent_request_instance(const Nodeagent__V1__Envelope *env);
/* The message key on the bus: the instance uuid, the job id for a message that names no
 * instance, or AGENT_NODE_LANE for the node-wide kinds.  Points into env, or is static. */
#define AGENT_NODE_LANE "node"
const char *agent_request_key(const Nodeagent__V1__Envelope *env);
/* The dispatch lane (requests in one lane run one at a time, in order), from the table's
 * lane column: the instance uuid, "control:" + the instance uuid, "job:" + the job id, or
 * AGENT_NODE_LANE.
 * Allocated. */
char *agent_request_lane(const Nodeagent__V1__Envelope *env);

/* Whether an instance in state may take a request of kind (the table's from column). */
bool agent_request_allowed_from(enum agent_request_kind kind, Nodeagent__V1__InstanceState state);
/* "RUNNING, STOPPED or CRASHED": the states kind is allowed from, for error messages. */
void agent_request_from_text(enum agent_request_kind kind, char *buf, size_t size);

#endif
