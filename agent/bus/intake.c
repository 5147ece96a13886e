/* Intake: what happens to a message from the node topic before it runs.
 *
 * authenticate (signature by the kind's signer, decode, addressed to this node, fresh) →
 * validate → known request_id? (re-publish, or CONFLICT) → record the intent and its
 * ACCEPTED event in one transaction → ack the bus offset → hand to execute.c.  Every
 * message ends with an event and an acked offset; nothing here blocks but the SQLite
 * commit.  A message refused before it is authenticated gets a FAILED event whose
 * request_id is empty (the id it carried goes to unverified_request_id): whoever can write
 * to the topic must not be able to make this agent answer someone else's request.
 */
#include "agent/core/agent.h"
#include "agent/ops/ops.h"
#include "agent/bus/events.h"
#include "agent/core/store_hold.h"
#include "agent/bus/identity.h"
#include "proto/validate.h"
#include "proto/trust.h"

#include <errno.h>
#include <string.h>

struct intake {
    struct agent *a;
    const struct agent_bus_msg *msg;
    Nodeagent__V1__Envelope *env; /* NULL when undecodable */
    enum agent_request_kind kind;
    const char *request_id; /* "" unless decoded */
    const char *instance;
    bool authenticated; /* signed by the kind's signer, for this node, fresh */
    struct na_log_ctx log;
};

/* A refused message's strings may be any bytes: echo only well-formed identifiers, and
 * its request id as the answer only when the message is authenticated. */
static void
intake_refuse(struct intake *in, const struct na_error *err)
{
    if (!agent_request_id_is_valid(in->request_id))
        in->log.request_id = in->request_id = "";
    if (!na_uuid_is_valid(in->instance))
        in->log.instance = in->instance = "";
    Nodeagent__V1__Event ev;
    Nodeagent__V1__Error slot;
    agent_event_init(in->a, &ev, NODEAGENT__V1__EVENT_KIND__EVENT_KIND_FAILED,
                     in->authenticated ? in->request_id : "", in->instance,
                     agent_request_kind_name(in->kind), in->msg->offset);
    if (!in->authenticated)
        ev.unverified_request_id = (char *)in->request_id;
    agent_event_set_error(&ev, &slot, err);
    agent_event_emit(in->a, &ev);
    agent_metrics_count(&in->a->metrics, in->kind, err->code);
    char quoted[1024];
    na_log(NA_LOG_WARN, &in->log, "request refused",
           "kind=%s offset=%lld authenticated=%s code=%s error=%s",
           agent_request_kind_name(in->kind), (long long)in->msg->offset,
           in->authenticated ? "yes" : "no", na_code_name(err->code),
           na_log_quote(quoted, sizeof(quoted), err->msg));
}

/* A control-plane request: the control plane's Ed25519 signature, or the legacy HMAC when
 * [bus] hmac_key_file is set. */
static int
check_control_plane_signature(struct intake *in, struct na_error **err)
{
    const struct agent_config *cfg = in->a->cfg;
    const struct agent_bus_headers *h = &in->msg->headers;
    long long offset = (long long)in->msg->offset;
    if (h->signature) {
        if (trust_verify_hex(in->a->identity->cp_key, TRUST_REQUEST, in->msg->payload,
                             in->msg->size, h->signature, h->signature_len))
            return 0;
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "message at offset %lld: its %s is not the control plane's "
                            "signature of a request",
                            offset, TRUST_SIGNATURE_HEADER);
    }
    if (h->hmac && cfg->hmac_key) {
        if (na_hmac_sha256_verify(cfg->hmac_key, cfg->hmac_key_size, in->msg->payload,
                                  in->msg->size, h->hmac, h->hmac_len))
            return 0;
        return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                            "message at offset %lld has a wrong %s signature", offset,
                            NA_HMAC_HEADER);
    }
    return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                        "message at offset %lld has no %s header; this node takes only requests "
                        "signed by the control plane",
                        offset, TRUST_SIGNATURE_HEADER);
}

/* A peer message: signed by the certified key of the node it says it comes from. */
static int
check_peer_signature(struct intake *in, struct na_error **err)
{
    struct trust_node_cert cert;
    int ret =
        agent_identity_check_node_message(in->a->identity, TRUST_PEER_MESSAGE, in->msg, &cert, err);
    if (ret < 0)
        return na_error_wrap(err, "peer message at offset %lld", (long long)in->msg->offset);
    /* The node it names as its sender, in the envelope and in the body, is the signer. */
    const char *names[2][2] = {{"reply_to", in->env->reply_to ? in->env->reply_to : ""},
                               {"its body's node", agent_request_sender_node(in->env)}};
    for (size_t i = 0; i < 2; i++) {
        const char *from = names[i][1] ? names[i][1] : "";
        if (strcmp(from, cert.node_id) != 0)
            return na_error_set(err, NA_CODE_UNAUTHENTICATED, 0,
                                "peer message at offset %lld: %s `%s` is not `%s`, whose "
                                "certificate signed it",
                                (long long)in->msg->offset, names[i][0],
                                agent_node_id_is_valid(from) ? from : "(invalid)", cert.node_id);
    }
    return 0;
}

/* The envelope is for this node, and neither stale nor from the future.  Both fields are
 * inside the signed bytes, so a captured request cannot be replayed onto another node, or
 * after the request ids that would recognise it have been forgotten. */
static int
check_binding(struct intake *in, struct na_error **err)
{
    const struct agent_config *cfg = in->a->cfg;
    const char *target = in->env->target_node ? in->env->target_node : "";
    if (strcmp(target, cfg->node_id) != 0)
        return na_error_field(err, "target_node",
                              "target_node: the envelope is for node `%s`, and this is `%s`",
                              agent_node_id_is_valid(target) ? target : "(invalid)", cfg->node_id);
    int64_t now = na_now_ms(), sent = in->env->sent_at_ms;
    int64_t max_age_ms = (int64_t)cfg->max_request_age_s * 1000;
    if (sent < now - max_age_ms)
        return na_error_field(err, "sent_at_ms",
                              "sent_at_ms: the envelope was sent %.0f s ago; this node takes "
                              "envelopes at most [bus] max_request_age = %u s old",
                              (double)(now - sent) / 1000, cfg->max_request_age_s);
    if (sent > now + TRUST_MAX_FUTURE_MS)
        return na_error_field(err, "sent_at_ms",
                              "sent_at_ms: the envelope is dated %.0f s in the future (at most "
                              "%d s of clock skew is allowed)",
                              (double)(sent - now) / 1000, TRUST_MAX_FUTURE_MS / 1000);
    return 0;
}

static int
authenticate(struct intake *in, struct na_error **err)
{
    bool peer = in->env && agent_request_signer(in->kind) == AGENT_SIGNER_PEER;
    int ret = 0;
    if (in->a->identity->insecure)
        ret = 0;
    else if (peer)
        ret = check_peer_signature(in, err);
    else
        ret = check_control_plane_signature(in, err);
    if (ret < 0)
        return ret;
    if (!in->env)
        return na_error_set(err, NA_CODE_MALFORMED, 0,
                            "message at offset %lld (%zu bytes) is not a decodable "
                            "nodeagent.v1.Envelope",
                            (long long)in->msg->offset, in->msg->size);
    if ((ret = check_binding(in, err)) < 0)
        return ret;
    in->authenticated = !in->a->identity->insecure;
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

/* Records the intent and its ACCEPTED event together; returns 0 once both are durable, or
 * holds the request (agent/core/store_hold.h) and returns -1 when the store cannot take them. */
static int
intake_accept(struct intake *in, const char *hash)
{
    struct agent *a = in->a;
    Nodeagent__V1__Event ev;
    agent_event_init(a, &ev, NODEAGENT__V1__EVENT_KIND__EVENT_KIND_ACCEPTED, in->request_id,
                     in->instance, agent_request_kind_name(in->kind), in->msg->offset);

    const struct agent_bus_headers *h = &in->msg->headers;
    cleanup_free char *signature =
        h->signature ? na_xstrndup(h->signature, h->signature_len) : na_xstrdup("");
    struct agent_intent intent = {
        .signature = signature,
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
    if (ret < 0) {
        agent_store_rollback(a->store);
        agent_store_hold(a, err);
        agent_bus_put_back(a->bus, in->msg);
        return -1;
    }
    na_log(NA_LOG_INFO, &in->log, "request accepted", "kind=%s offset=%lld",
           agent_request_kind_name(in->kind), (long long)in->msg->offset);
    na_failpoint_ctx_set(&in->log);
    na_failpoint("intake.recorded");
    na_failpoint_ctx_set(NULL);
    return 0;
}

void
agent_intake(void *agent, const struct agent_bus_msg *msg)
{
    struct agent *a = agent;
    if (a->stopping)
        return;          /* not acked: delivered again after the restart */
    if (a->store_hold) { /* handed on before the hold took effect */
        agent_bus_put_back(a->bus, msg);
        return;
    }

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

    if (authenticate(&in, &err) < 0) {
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
            agent_store_hold(a, serr);
            agent_bus_put_back(a->bus, msg);
            nodeagent__v1__envelope__free_unpacked(in.env, NULL);
            return;
        } else {
            if (intake_accept(&in, hash) < 0) {
                nodeagent__v1__envelope__free_unpacked(in.env, NULL);
                return;
            }
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
