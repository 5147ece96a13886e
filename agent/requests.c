#include "agent/requests.h"

#include <stddef.h>

static const char *const kind_names[AGENT_REQ__COUNT] = {[AGENT_REQ_NONE] = "none",
#define X(name, CASE, field, signer) [AGENT_REQ_##CASE] = #name,
                                                         AGENT_REQUEST_KINDS(X)
#undef X
};

static const enum agent_request_signer signers[AGENT_REQ__COUNT] = {
#define X(name, CASE, field, signer) [AGENT_REQ_##CASE] = AGENT_SIGNER_##signer,
    AGENT_REQUEST_KINDS(X)
#undef X
};

enum agent_request_signer
agent_request_signer(enum agent_request_kind kind)
{
    return (unsigned)kind < AGENT_REQ__COUNT ? signers[kind] : AGENT_SIGNER_CONTROL_PLANE;
}

enum agent_request_kind
agent_request_kind_of(const Nodeagent__V1__Envelope *env)
{
    switch (env->body_case) {
#define X(name, CASE, field, signer)                                                               \
    case NODEAGENT__V1__ENVELOPE__BODY_##CASE:                                                     \
        return AGENT_REQ_##CASE;
        AGENT_REQUEST_KINDS(X)
#undef X
    default:
        return AGENT_REQ_NONE;
    }
}

const char *
agent_request_kind_name(enum agent_request_kind kind)
{
    if ((unsigned)kind < AGENT_REQ__COUNT)
        return kind_names[kind];
    return "none";
}

static const char *
or_empty(const char *s)
{
    return s ? s : "";
}

const char *
agent_request_instance(const Nodeagent__V1__Envelope *env)
{
    switch (env->body_case) {
    case NODEAGENT__V1__ENVELOPE__BODY_CREATE:
        return env->create->spec ? or_empty(env->create->spec->uuid) : "";
    case NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_PREPARE:
        return env->migration_prepare->spec ? or_empty(env->migration_prepare->spec->uuid) : "";
    case NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_PREPARED:
    case NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_FINISH:
    case NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_ABORT:
        return "";
#define X(CASE, field)                                                                             \
    case NODEAGENT__V1__ENVELOPE__BODY_##CASE:                                                     \
        return or_empty(env->field->instance_uuid);
        X(DELETE, delete_)
        X(START, start)
        X(STOP, stop)
        X(REBOOT, reboot)
        X(PAUSE, pause)
        X(RESUME, resume)
        X(SUSPEND, suspend)
        X(SNAPSHOT_CREATE, snapshot_create)
        X(SNAPSHOT_REVERT, snapshot_revert)
        X(SNAPSHOT_DELETE, snapshot_delete)
        X(RESIZE, resize)
        X(REBUILD, rebuild)
        X(CONSOLE_LOG, console_log)
        X(MIGRATE, migrate)
        X(CANCEL_MIGRATION, cancel_migration)
#undef X
    default:
        return "";
    }
}

const char *
agent_request_key(const Nodeagent__V1__Envelope *env)
{
    switch (env->body_case) {
    case NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_PREPARED:
        return or_empty(env->migration_prepared->migration_id);
    case NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_FINISH:
        return or_empty(env->migration_finish->migration_id);
    case NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_ABORT:
        return or_empty(env->migration_abort->migration_id);
    case NODEAGENT__V1__ENVELOPE__BODY_SECURITY_GROUP_PUT:
    case NODEAGENT__V1__ENVELOPE__BODY_SECURITY_GROUP_DELETE:
    case NODEAGENT__V1__ENVELOPE__BODY_PORT_SECURITY_GROUPS:
        return AGENT_SECGROUP_KEY;
    default:
        return agent_request_instance(env);
    }
}

const char *
agent_request_sender_node(const Nodeagent__V1__Envelope *env)
{
    switch (env->body_case) {
    case NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_PREPARE:
        return or_empty(env->migration_prepare->source_node);
    case NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_PREPARED:
        return or_empty(env->migration_prepared->dest_node);
    case NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_FINISH:
        return or_empty(env->migration_finish->source_node);
    case NODEAGENT__V1__ENVELOPE__BODY_MIGRATION_ABORT:
        return or_empty(env->migration_abort->node);
    default:
        return NULL;
    }
}
