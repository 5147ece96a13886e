/* Intake: what happens to a message from the node topic before it runs.
 *
 * verify signature → decode → validate → known request_id? (re-publish, or CONFLICT) →
 * record the intent and its ACCEPTED event in one transaction → ack the bus offset →
 * hand to execute.c.  Every message ends with an event and an acked offset; nothing here
 * blocks but the SQLite commit.
 */
#include "agent/agent.h"
#include "agent/validate.h"

#include <errno.h>
#include <string.h>

struct intake {
    struct agent *a;
    const struct agent_bus_msg *msg;
    Nodeagent__V1__Envelope *env; /* NULL when undecodable */
    enum agent_request_kind kind;
    const char *request_id; /* "" unless decoded */
    const char *instance;
    struct na_log_ctx log;
};

/* A refused message's strings may be any bytes: echo only well-formed identifiers. */
static void
intake_refuse(struct intake *in, const struct na_error *err)
{
    if (!agent_request_id_is_valid(in->request_id))
        in->log.request_id = in->request_id = "";
    if (!na_uuid_is_valid(in->instance))
        in->log.instance = in->instance = "";
    Nodeagent__V1__Event ev;
    Nodeagent__V1__Error slot;
    agent_event_init(in->a, &ev, NODEAGENT__V1__EVENT_KIND__EVENT_KIND_FAILED, in->request_id,
                     in->instance, agent_request_kind_name(in->kind), in->msg->offset);
    agent_event_set_error(&ev, &slot, err);
    agent_event_emit(in->a, &ev);
    agent_metrics_count(&in->a->metrics, in->kind, err->code);
    char quoted[1024];
    na_log(NA_LOG_WARN, &in->log, "request refused", "kind=%s offset=%lld code=%s error=%s",
           agent_request_kind_name(in->kind), (long long)in->msg->offset, na_code_name(err->code),
           na_log_quote(quoted, sizeof(quoted), err->msg));
}

static int
check_signature(struct intake *in, struct na_error **err)
{
    const struct agent_config *cfg = in->a->cfg;
    if (!in->msg->signature)
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "message at offset %lld has no %s header; this node requires "
                            "signed requests",
                            (long long)in->msg->offset, NA_HMAC_HEADER);
    if (!na_hmac_sha256_verify(cfg->hmac_key, cfg->hmac_key_size, in->msg->payload, in->msg->size,
                               in->msg->signature, in->msg->signature_len))
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "message at offset %lld has a wrong %s signature",
                            (long long)in->msg->offset, NA_HMAC_HEADER);
    return 0;
}

/* The body hash ignores sent_at_ms and reply_to, so a client may resend with a fresh
 * timestamp. */
static void
body_hash(Nodeagent__V1__Envelope *env, char out[65])
{
    int64_t sent_at = env->sent_at_ms;
    char *reply_to = env->reply_to;
    env->sent_at_ms = 0;
    env->reply_to = (char *)"";
    size_t size = nodeagent__v1__envelope__get_packed_size(env);
    cleanup_free uint8_t *buf = na_xmalloc(size);
    nodeagent__v1__envelope__pack(env, buf);
    env->sent_at_ms = sent_at;
    env->reply_to = reply_to;
    na_sha256_hex(buf, size, out);
}

/* A request_id seen before: no second effect; its recorded answer goes out again. */
static void
intake_duplicate(struct intake *in, struct agent_intent *intent, const char *hash)
{
    struct agent *a = in->a;
    a->metrics.duplicates++;
    if (strcmp(intent->body_hash, hash) != 0) {
        cleanup_error struct na_error *err = NULL;
        na_error_set(&err, NA_CODE_CONFLICT, 0,
                     "request_id `%s` was already used for a different %s request",
                     intent->request_id, intent->kind);
        intake_refuse(in, err);
        return;
    }

    const struct agent_blob *recorded =
        intent->result_event.size ? &intent->result_event : &intent->accepted_event;
    Nodeagent__V1__Event *ev = nodeagent__v1__event__unpack(NULL, recorded->size, recorded->data);
    if (!ev) {
        na_log(NA_LOG_ERROR, &in->log, "recorded event does not decode", NULL);
        return;
    }
    ev->replayed = 1;
    agent_event_emit(a, ev);
    nodeagent__v1__event__free_unpacked(ev, NULL);
    na_log(NA_LOG_INFO, &in->log, "duplicate request: recorded answer re-published",
           "kind=%s phase=%s offset=%lld", intent->kind, agent_intent_phase_name(intent->phase),
           (long long)in->msg->offset);
}

/* Records the intent and its ACCEPTED event together; returns once both are durable. */
static void
intake_accept(struct intake *in, const char *hash)
{
    struct agent *a = in->a;
    Nodeagent__V1__Event ev;
    agent_event_init(a, &ev, NODEAGENT__V1__EVENT_KIND__EVENT_KIND_ACCEPTED, in->request_id,
                     in->instance, agent_request_kind_name(in->kind), in->msg->offset);

    struct agent_intent intent = {
        .request_id = (char *)in->request_id,
        .kind = (char *)agent_request_kind_name(in->kind),
        .instance_uuid = (char *)in->instance,
        .body_hash = (char *)hash,
        .envelope = {.data = (uint8_t *)in->msg->payload, .size = in->msg->size},
        .bus_offset = in->msg->offset,
        .phase = AGENT_INTENT_ACCEPTED,
        .received_ms = na_now_ms(),
    };
    cleanup_error struct na_error *err = NULL;
    int ret = agent_store_begin(a->store, &err);
    if (ret == 0)
        ret = agent_event_record(a, &ev, &intent.accepted_event, &err);
    if (ret == 0)
        ret = agent_store_intent_insert(a->store, &intent, &err);
    if (ret == 0)
        ret = agent_store_commit(a->store, &err);
    free(intent.accepted_event.data);
    if (ret < 0)
        agent_die(a, err);
    na_log(NA_LOG_INFO, &in->log, "request accepted", "kind=%s offset=%lld",
           agent_request_kind_name(in->kind), (long long)in->msg->offset);
    na_failpoint("intake.recorded");
}

void
agent_intake(void *agent, const struct agent_bus_msg *msg)
{
    struct agent *a = agent;
    if (a->stopping)
        return; /* not acked: delivered again after the restart */

    struct intake in = {.a = a, .msg = msg, .request_id = "", .instance = ""};
    cleanup_error struct na_error *err = NULL;
    in.env = nodeagent__v1__envelope__unpack(NULL, msg->size, msg->payload);
    if (in.env) {
        in.kind = agent_request_kind_of(in.env);
        in.request_id = in.env->request_id ? in.env->request_id : "";
        in.instance = agent_request_instance(in.env);
        in.log.request_id = in.request_id;
        in.log.instance = in.instance;
    }

    if (a->cfg->hmac_key && check_signature(&in, &err) < 0) {
        intake_refuse(&in, err);
    } else if (!in.env) {
        na_error_set(&err, NA_CODE_MALFORMED, 0,
                     "message at offset %lld (%zu bytes) is not a decodable "
                     "nodeagent.v1.Envelope",
                     (long long)msg->offset, msg->size);
        intake_refuse(&in, err);
    } else if (agent_validate_envelope(in.env, &err) < 0) {
        /* Not recorded: the sender may fix the request and send it with the same id. */
        intake_refuse(&in, err);
    } else {
        char hash[65];
        body_hash(in.env, hash);
        struct agent_intent *known = NULL;
        cleanup_error struct na_error *serr = NULL;
        int found = agent_store_intent_get(a->store, in.request_id, &known, &serr);
        if (found == 0) {
            intake_duplicate(&in, known, hash);
            agent_intent_free(known);
        } else if (found != -ENOENT) {
            agent_die(a, serr);
        } else {
            intake_accept(&in, hash);
            agent_bus_ack(a->bus, msg);
            agent_outbox_pump(a);
            agent_execute(a, agent_op_new(a, na_steal(&in.env), msg->offset));
            return;
        }
    }
    agent_bus_ack(a->bus, msg);
    if (in.env)
        nodeagent__v1__envelope__free_unpacked(in.env, NULL);
}
