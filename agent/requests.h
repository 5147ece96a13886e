/* The request kinds of the bus contract, listed once.
 *
 * X(name, CASE, field, signer) — name is the Envelope body's field name (also the request_kind
 * string of events and the `kind` label of metrics); CASE is the protobuf-c oneof case suffix;
 * field is the C member (protoc-c renames C++ keywords: delete_); signer is who must sign it:
 * CONTROL_PLANE (the control plane's key) or PEER (the sending node's certified key). Everything
 * that needs to walk the kinds (validation, dispatch, metrics, nodectl) expands this list, so a new
 * request is added here and nowhere else by hand.
 */
#ifndef NODEAGENT_AGENT_REQUESTS_H
#define NODEAGENT_AGENT_REQUESTS_H

#include "nodeagent.pb-c.h"

#define AGENT_REQUEST_KINDS(X)                                                                     \
    X(create, CREATE, create, CONTROL_PLANE)                                                       \
    X(delete, DELETE, delete_, CONTROL_PLANE)                                                      \
    X(start, START, start, CONTROL_PLANE)                                                          \
    X(stop, STOP, stop, CONTROL_PLANE)                                                             \
    X(reboot, REBOOT, reboot, CONTROL_PLANE)                                                       \
    X(pause, PAUSE, pause, CONTROL_PLANE)                                                          \
    X(resume, RESUME, resume, CONTROL_PLANE)                                                       \
    X(suspend, SUSPEND, suspend, CONTROL_PLANE)                                                    \
    X(snapshot_create, SNAPSHOT_CREATE, snapshot_create, CONTROL_PLANE)                            \
    X(snapshot_revert, SNAPSHOT_REVERT, snapshot_revert, CONTROL_PLANE)                            \
    X(snapshot_delete, SNAPSHOT_DELETE, snapshot_delete, CONTROL_PLANE)                            \
    X(resize, RESIZE, resize, CONTROL_PLANE)                                                       \
    X(rebuild, REBUILD, rebuild, CONTROL_PLANE)                                                    \
    X(console_log, CONSOLE_LOG, console_log, CONTROL_PLANE)                                        \
    X(migrate, MIGRATE, migrate, CONTROL_PLANE)                                                    \
    X(cancel_migration, CANCEL_MIGRATION, cancel_migration, CONTROL_PLANE)                         \
    X(security_group_put, SECURITY_GROUP_PUT, security_group_put, CONTROL_PLANE)                   \
    X(security_group_delete, SECURITY_GROUP_DELETE, security_group_delete, CONTROL_PLANE)          \
    X(port_security_groups, PORT_SECURITY_GROUPS, port_security_groups, CONTROL_PLANE)             \
    X(migration_prepare, MIGRATION_PREPARE, migration_prepare, PEER)                               \
    X(migration_prepared, MIGRATION_PREPARED, migration_prepared, PEER)                            \
    X(migration_finish, MIGRATION_FINISH, migration_finish, PEER)                                  \
    X(migration_abort, MIGRATION_ABORT, migration_abort, PEER)

enum agent_request_kind {
    AGENT_REQ_NONE = 0,
#define X(name, CASE, field, signer) AGENT_REQ_##CASE,
    AGENT_REQUEST_KINDS(X)
#undef X
        AGENT_REQ__COUNT
};

enum agent_request_signer { AGENT_SIGNER_CONTROL_PLANE, AGENT_SIGNER_PEER };
/* Who must sign a request of this kind (AGENT_REQ_NONE: the control plane). */
enum agent_request_signer agent_request_signer(enum agent_request_kind kind);

/* The node a peer message says it comes from (MigrationPrepare.source_node,
 * MigrationPrepared.dest_node, MigrationFinish.source_node, MigrationAbort.node); NULL for
 * other kinds.  Points into env. */
const char *agent_request_sender_node(const Nodeagent__V1__Envelope *env);

/* The kind of a decoded envelope, AGENT_REQ_NONE when its body is not set or unknown. */
enum agent_request_kind agent_request_kind_of(const Nodeagent__V1__Envelope *env);
/* "create", "stop", ...; "none" for AGENT_REQ_NONE. */
const char *agent_request_kind_name(enum agent_request_kind kind);
/* The instance uuid the request is about ("" when it has none, e.g. migration peer
 * messages before validation).  Points into env. */
const char *agent_request_instance(const Nodeagent__V1__Envelope *env);
/* The serialization key of the security-group kinds: one lane, as they change node-wide
 * state. */
#define AGENT_SECGROUP_KEY "security-groups"
/* The serialization key: requests with the same key run one at a time, in order.
 * The instance uuid, the migration id for peer messages, AGENT_SECGROUP_KEY for the
 * security-group kinds.  Points into env or is static. */
const char *agent_request_key(const Nodeagent__V1__Envelope *env);

#endif
