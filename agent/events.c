#include "agent/agent.h"

#include <string.h>

_Static_assert((int)NA_CODE_UNAVAILABLE == (int)NODEAGENT__V1__ERROR_CODE__ERROR_CODE_UNAVAILABLE,
               "enum na_code must mirror nodeagent.v1.ErrorCode");
_Static_assert((int)NA_CODE_INVALID_ARGUMENT ==
                   (int)NODEAGENT__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT,
               "enum na_code must mirror nodeagent.v1.ErrorCode");
_Static_assert((int)NA_CODE_NO_CAPACITY == (int)NODEAGENT__V1__ERROR_CODE__ERROR_CODE_NO_CAPACITY,
               "enum na_code must mirror nodeagent.v1.ErrorCode");

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

    int ret = agent_store_outbox_add(a->store, a->topic_events, ev.instance_uuid, &blob, NULL, err);
    if (ret == 0 && recorded)
        *recorded = blob;
    else
        free(blob.data);
    return ret;
}

void
agent_event_emit(struct agent *a, const Nodeagent__V1__Event *ev)
{
    cleanup_error struct na_error *err = NULL;
    if (agent_event_record(a, ev, NULL, &err) < 0)
        agent_die(a, err);
    agent_outbox_pump(a);
}
