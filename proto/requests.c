/* What derives from the table of operations (requests.h): names, signers, lanes, allowed
 * states, and where each body names its instance, job and sender. */
#include "proto/requests.h"

#include "common/common.h"

#include <stdio.h>
#include <string.h>

/* The table's vocabulary, here only. */
#define STATES_1(a) AGENT_STATE_BIT(a)
#define STATES_2(a, ...) (AGENT_STATE_BIT(a) | STATES_1(__VA_ARGS__))
#define STATES_3(a, ...) (AGENT_STATE_BIT(a) | STATES_2(__VA_ARGS__))
#define STATES_4(a, ...) (AGENT_STATE_BIT(a) | STATES_3(__VA_ARGS__))
#define STATES_PICK(_1, _2, _3, _4, n, ...) STATES_##n
#define STATES(...) STATES_PICK(__VA_ARGS__, 4, 3, 2, 1, 0)(__VA_ARGS__)
#define ANY_STATE UINT32_MAX
#define NEW 0u
#define LEAVES_SAME NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_UNSPECIFIED
#define LEAVES(s) NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_##s
#define HANDLED_YES true
#define HANDLED_NO false
#define JOB_ONE_SHOT false
#define JOB_JOB true

static const char *
or_empty(const char *s)
{
    return s ? s : "";
}

/* Where a body names its instance, job and sender (the instance, job_id, sender columns). */
#define INSTANCE_instance_uuid(body) or_empty((body)->instance_uuid)
#define INSTANCE_spec_uuid(body) ((body)->spec ? or_empty((body)->spec->uuid) : "")
#define INSTANCE_none(body) ((void)(body), "")
#define JOB_ID_migration_id(body) or_empty((body)->migration_id)
#define JOB_ID_none(body) ((void)(body), "")
#define SENDER_source_node(body) or_empty((body)->source_node)
#define SENDER_dest_node(body) or_empty((body)->dest_node)
#define SENDER_node(body) or_empty((body)->node)
#define SENDER_none(body) ((void)(body), (const char *)NULL)

/* LEAVES(SAME) would name no InstanceState: SAME maps to UNSPECIFIED. */
#define NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_SAME LEAVES_SAME

static const struct agent_request_row rows[AGENT_REQ__COUNT] = {[AGENT_REQ_NONE] = {.name = "none"},
#define X(name_, CASE, field, signer_, instance, job_id, sender, lane_, from_, leaves_, handled_,  \
          job_)                                                                                    \
    [AGENT_REQ_##CASE] = {.name = #name_,                                                          \
                          .signer = AGENT_SIGNER_##signer_,                                        \
                          .lane = AGENT_LANE_##lane_,                                              \
                          .from = from_,                                                           \
                          .leaves = LEAVES(leaves_),                                               \
                          .handled = HANDLED_##handled_,                                           \
                          .job = JOB_##job_},
                                                                AGENT_REQUEST_KINDS(X)
#undef X
};

const struct agent_request_row *
agent_request_row(enum agent_request_kind kind)
{
    return &rows[(unsigned)kind < AGENT_REQ__COUNT ? kind : AGENT_REQ_NONE];
}

enum agent_request_signer
agent_request_signer(enum agent_request_kind kind)
{
    return agent_request_row(kind)->signer;
}

const char *
agent_request_kind_name(enum agent_request_kind kind)
{
    return agent_request_row(kind)->name;
}

enum agent_request_kind
agent_request_kind_of(const Nodeagent__V1__Envelope *env)
{
    switch (env->body_case) {
#define X(name, CASE, ...)                                                                         \
    case NODEAGENT__V1__ENVELOPE__BODY_##CASE:                                                     \
        return AGENT_REQ_##CASE;
        AGENT_REQUEST_KINDS(X)
#undef X
    default:
        return AGENT_REQ_NONE;
    }
}

const char *
agent_request_instance(const Nodeagent__V1__Envelope *env)
{
    switch (env->body_case) {
#define X(name, CASE, field, signer, instance, ...)                                                \
    case NODEAGENT__V1__ENVELOPE__BODY_##CASE:                                                     \
        return INSTANCE_##instance(env->field);
        AGENT_REQUEST_KINDS(X)
#undef X
    default:
        return "";
    }
}

static const char *
request_job_id(const Nodeagent__V1__Envelope *env)
{
    switch (env->body_case) {
#define X(name, CASE, field, signer, instance, job_id, ...)                                        \
    case NODEAGENT__V1__ENVELOPE__BODY_##CASE:                                                     \
        return JOB_ID_##job_id(env->field);
        AGENT_REQUEST_KINDS(X)
#undef X
    default:
        return "";
    }
}

const char *
agent_request_sender_node(const Nodeagent__V1__Envelope *env)
{
    switch (env->body_case) {
#define X(name, CASE, field, signer, instance, job_id, sender, ...)                                \
    case NODEAGENT__V1__ENVELOPE__BODY_##CASE:                                                     \
        return SENDER_##sender(env->field);
        AGENT_REQUEST_KINDS(X)
#undef X
    default:
        return NULL;
    }
}

const char *
agent_request_key(const Nodeagent__V1__Envelope *env)
{
    if (agent_request_row(agent_request_kind_of(env))->lane == AGENT_LANE_NODE)
        return AGENT_NODE_LANE;
    const char *instance = agent_request_instance(env);
    return *instance ? instance : request_job_id(env);
}

char *
agent_request_lane(const Nodeagent__V1__Envelope *env)
{
    switch (agent_request_row(agent_request_kind_of(env))->lane) {
    case AGENT_LANE_CONTROL:
        return na_xasprintf("control:%s", agent_request_instance(env));
    case AGENT_LANE_JOB:
        return na_xasprintf("job:%s", request_job_id(env));
    case AGENT_LANE_NODE:
        return na_xstrdup(AGENT_NODE_LANE);
    case AGENT_LANE_INSTANCE:
    default:
        return na_xstrdup(agent_request_instance(env));
    }
}

bool
agent_request_allowed_from(enum agent_request_kind kind, Nodeagent__V1__InstanceState state)
{
    uint32_t from = agent_request_row(kind)->from;
    return (unsigned)state < 32 && (from & (1u << state));
}

void
agent_request_from_text(enum agent_request_kind kind, char *buf, size_t size)
{
    uint32_t from = agent_request_row(kind)->from;
    size_t n = 0, count = 0;
    buf[0] = '\0';
    for (unsigned s = 0; s < 32; s++)
        count += (from >> s) & 1u;
    for (unsigned s = 0, seen = 0; s < 32 && n < size; s++) {
        if (!((from >> s) & 1u))
            continue;
        const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(
            &nodeagent__v1__instance_state__descriptor, (int)s);
        const char *name = v ? v->name : "?";
        if (strncmp(name, "INSTANCE_STATE_", 15) == 0)
            name += 15;
        seen++;
        const char *sep = seen == 1 ? "" : seen == count ? " or " : ", ";
        int w = snprintf(buf + n, size - n, "%s%s", sep, name);
        n = w < 0 ? size : n + (size_t)w;
    }
}
