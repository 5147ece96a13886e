/* The request kinds of the bus contract, listed once.
 *
 * X(name, CASE, field) — name is the Envelope body's field name (also the request_kind string
 * of events and the `kind` label of metrics); CASE is the protobuf-c oneof case suffix; field is
 * the C member (protoc-c renames C++ keywords: delete_). Everything that needs to walk the kinds
 * (validation, dispatch, metrics, nodectl) expands this list, so a new request is added here and
 * nowhere else by hand.
 */
#ifndef NODEAGENT_AGENT_REQUESTS_H
#define NODEAGENT_AGENT_REQUESTS_H

#include "nodeagent.pb-c.h"

#define AGENT_REQUEST_KINDS(X)                                                                     \
    X(create, CREATE, create)                                                                      \
    X(delete, DELETE, delete_)                                                                     \
    X(start, START, start)                                                                         \
    X(stop, STOP, stop)                                                                            \
    X(reboot, REBOOT, reboot)                                                                      \
    X(pause, PAUSE, pause)                                                                         \
    X(resume, RESUME, resume)                                                                      \
    X(suspend, SUSPEND, suspend)                                                                   \
    X(snapshot_create, SNAPSHOT_CREATE, snapshot_create)                                           \
    X(snapshot_revert, SNAPSHOT_REVERT, snapshot_revert)                                           \
    X(snapshot_delete, SNAPSHOT_DELETE, snapshot_delete)                                           \
    X(resize, RESIZE, resize)                                                                      \
    X(rebuild, REBUILD, rebuild)                                                                   \
    X(console_log, CONSOLE_LOG, console_log)                                                       \
    X(migrate, MIGRATE, migrate)                                                                   \
    X(cancel_migration, CANCEL_MIGRATION, cancel_migration)                                        \
    X(migration_prepare, MIGRATION_PREPARE, migration_prepare)                                     \
    X(migration_prepared, MIGRATION_PREPARED, migration_prepared)                                  \
    X(migration_finish, MIGRATION_FINISH, migration_finish)                                        \
    X(migration_abort, MIGRATION_ABORT, migration_abort)

enum agent_request_kind {
    AGENT_REQ_NONE = 0,
#define X(name, CASE, field) AGENT_REQ_##CASE,
    AGENT_REQUEST_KINDS(X)
#undef X
        AGENT_REQ__COUNT
};

/* The kind of a decoded envelope, AGENT_REQ_NONE when its body is not set or unknown. */
enum agent_request_kind agent_request_kind_of(const Nodeagent__V1__Envelope *env);
/* "create", "stop", ...; "none" for AGENT_REQ_NONE. */
const char *agent_request_kind_name(enum agent_request_kind kind);
/* The instance uuid the request is about ("" when it has none, e.g. migration peer
 * messages before validation).  Points into env. */
const char *agent_request_instance(const Nodeagent__V1__Envelope *env);
/* The serialization key: requests with the same key run one at a time, in order.
 * The instance uuid, or the migration id for peer messages.  Points into env. */
const char *agent_request_key(const Nodeagent__V1__Envelope *env);

#endif
