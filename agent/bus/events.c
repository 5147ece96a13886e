#include "agent/bus/events.h"
#include "agent/core/agent.h"
#include "proto/validate.h"

#include <errno.h>
#include <string.h>

_Static_assert((int)NA_CODE_HAS_SNAPSHOTS ==
                   (int)NODEAGENT__V1__ERROR_CODE__ERROR_CODE_HAS_SNAPSHOTS,
               "enum na_code must mirror nodeagent.v1.ErrorCode");
_Static_assert((int)NA_CODE_UNAVAILABLE == (int)NODEAGENT__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE,
               "enum na_code must mirror nodeagent.v1.ErrorCode");
_Static_assert((int)NA_CODE_INVALID_ARGUMENT ==
                   (int)NODEAGENT__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
               "enum na_code must mirror nodeagent.v1.ErrorCode");
_Static_assert((int)NA_CODE_NO_CAPACITY == (int)NODEAGENT__V1__ERROR_CODE__ERROR_CODE_NO_CAPACITY,
               "enum na_code must mirror nodeagent.v1.ErrorCode");

_Static_assert(AGENT_CONSOLE_TAIL_MAX + 64 * 1024 <= AGENT_EVENT_SIZE_MAX,
               "a console_log DONE event with the longest tail must fit in one event");

void
agent_event_init(struct agent *a, Nodeagent__V1__Event *ev, Nodeagent__V1__EventKind kind,
                 const char *request_id, const char *instance, const char *request_kind,
                 int64_t offset)
{
    nodeagent__v1__event__init(ev);
    /* event_id is filled by agent_event_record(); the rest point at caller memory. */
    ev->request_id = (char *)(request_id ? request_id : "");
    ev->instance_uuid = (char *)(instance ? instance : "");
    ev->node_id = a->cfg->node_id;
    ev->time_ms = na_now_ms();
    ev->kind = kind;
    ev->request_kind = (char *)(request_kind ? request_kind : "");
    ev->request_offset = offset;
}

void
agent_event_set_error(Nodeagent__V1__Event *ev, Nodeagent__V1__Error *slot,
                      const struct na_error *err)
{
    nodeagent__v1__error__init(slot);
    slot->code = (Nodeagent__V1__ErrorCode)err->code;
    slot->message = err->msg ? err->msg : (char *)"";
    slot->field = err->field ? err->field : (char *)"";
    ev->error = slot;
}

static const char *
event_kind_name(Nodeagent__V1__EventKind kind)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&nodeagent__v1__event_kind__descriptor, (int)kind);
    return v ? v->name : "EVENT_KIND_UNKNOWN";
}

/* A small FAILED event standing for one that cannot be published: the same event id,
 * request, instance and kind, and an INTERNAL error whose message says why.  The
 * original's bulky fields (console output, free text) are left out. */
static void
stand_in_pack(const Nodeagent__V1__Event *orig, const char *why, struct agent_blob *out)
{
    Nodeagent__V1__Event ev;
    nodeagent__v1__event__init(&ev);
    ev.event_id = orig->event_id;
    ev.request_id = orig->request_id;
    ev.instance_uuid = orig->instance_uuid;
    ev.node_id = orig->node_id;
    ev.time_ms = na_now_ms();
    ev.kind = NODEAGENT__V1__EVENT_KIND__EVENT_KIND_FAILED;
    ev.request_kind = orig->request_kind;
    ev.state = orig->state;
    ev.request_offset = orig->request_offset;
    ev.replayed = orig->replayed;
    Nodeagent__V1__Error error;
    nodeagent__v1__error__init(&error);
    error.code = NODEAGENT__V1__ERROR_CODE__ERROR_CODE_INTERNAL;
    error.message = (char *)why;
    ev.error = &error;
    out->size = nodeagent__v1__event__get_packed_size(&ev);
    out->data = na_xmalloc(out->size);
    nodeagent__v1__event__pack(&ev, out->data);
}

int
agent_event_stand_in(const struct agent_blob *payload, const char *why, struct agent_blob *out)
{
    Nodeagent__V1__Event *orig = nodeagent__v1__event__unpack(NULL, payload->size, payload->data);
    if (!orig)
        return -EINVAL;
    cleanup_free char *text = na_xasprintf("the %s event of this request (%zu bytes) was refused "
                                           "by the bus and will not be published: %s",
                                           event_kind_name(orig->kind), payload->size, why);
    stand_in_pack(orig, text, out);
    nodeagent__v1__event__free_unpacked(orig, NULL);
    if (out->size < payload->size)
        return 0;
    /* Nothing to gain: the stand-in would be refused as surely as the original. */
    free(out->data);
    out->data = NULL;
    out->size = 0;
    return -EMSGSIZE;
}

int
agent_event_record(struct agent *a, const Nodeagent__V1__Event *ev_in, struct agent_blob *recorded,
                   struct na_error **err)
{
    Nodeagent__V1__Event ev = *ev_in;
    char event_id[37];
    if (!ev.event_id || !*ev.event_id) {
        na_uuid_generate(event_id);
        ev.event_id = event_id;
    }
    size_t size = nodeagent__v1__event__get_packed_size(&ev);
    struct agent_blob blob = {.data = na_xmalloc(size), .size = size};
    nodeagent__v1__event__pack(&ev, blob.data);
    if (size > AGENT_EVENT_SIZE_MAX) {
        /* Stored as it is, it would stop every later event of the node at the bus. */
        struct na_log_ctx log = {.request_id = ev.request_id, .instance = ev.instance_uuid};
        na_log(NA_LOG_ERROR, &log, "event too large to publish; a FAILED event stands for it",
               "kind=%s size=%zu limit=%u", event_kind_name(ev.kind), size,
               (unsigned)AGENT_EVENT_SIZE_MAX);
        cleanup_free char *why = na_xasprintf(
            "the %s event of this request was %zu bytes, over the limit of %u bytes for one "
            "event; it was not published",
            event_kind_name(ev.kind), size, (unsigned)AGENT_EVENT_SIZE_MAX);
        free(blob.data);
        stand_in_pack(&ev, why, &blob);
    }

    int ret = agent_store_outbox_add(a->store, a->topic_events, ev.instance_uuid, &blob, NULL, err);
    if (ret == 0 && recorded)
        *recorded = blob;
    else
        free(blob.data);
    return ret;
}

void
agent_event_summarize(struct agent_blob *event)
{
    Nodeagent__V1__Event *ev = nodeagent__v1__event__unpack(NULL, event->size, event->data);
    if (!ev || !ev->console_log.len) {
        nodeagent__v1__event__free_unpacked(ev, NULL);
        return;
    }
    ProtobufCBinaryData bulk = ev->console_log;
    ev->console_log.data = NULL;
    ev->console_log.len = 0;
    free(event->data);
    event->size = nodeagent__v1__event__get_packed_size(ev);
    event->data = na_xmalloc(event->size);
    nodeagent__v1__event__pack(ev, event->data);
    ev->console_log = bulk;
    nodeagent__v1__event__free_unpacked(ev, NULL);
}

void
agent_event_emit(struct agent *a, const Nodeagent__V1__Event *ev)
{
    cleanup_error struct na_error *err = NULL;
    if (agent_event_record(a, ev, NULL, &err) < 0)
        agent_die(a, err);
    agent_outbox_pump(a);
}
