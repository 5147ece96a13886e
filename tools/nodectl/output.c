/* Printing: events and results as one JSON object or one readable line each. */
#include "tools/nodectl/nodectl.h"

#include "proto/proto_json.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

void
nodectl_print_json(FILE *out, json_t *j, bool pretty)
{
    char *text = json_dumps(j, pretty ? JSON_INDENT(2) | JSON_PRESERVE_ORDER
                                      : JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text) {
        fprintf(out, "%s\n", text);
        free(text);
    }
    fflush(out);
}

char *
nodectl_error_text(const Nodeagent__V1__Error *e)
{
    char buf[16];
    const char *code = agent_proto_enum_name(&nodeagent__v1__error_code__descriptor, (int)e->code,
                                             buf, sizeof(buf));
    if (e->field && *e->field)
        return na_xasprintf("%s: %s (field %s)", code, e->message, e->field);
    return na_xasprintf("%s: %s", code, e->message);
}

void
nodectl_format_time(int64_t ms, char *buf, size_t size)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03dZ", (int)(ms % 1000 + 1000) % 1000);
}

static void
print_event_text(FILE *out, const Nodeagent__V1__Event *ev)
{
    char ts[40], kind_buf[16], state_buf[16];
    nodectl_format_time(ev->time_ms, ts, sizeof(ts));
    fprintf(out, "%s %s %s instance=%s request_id=%s node=%s", ts,
            agent_proto_enum_name(&nodeagent__v1__event_kind__descriptor, (int)ev->kind, kind_buf,
                                  sizeof(kind_buf)),
            *ev->request_kind ? ev->request_kind : "-",
            *ev->instance_uuid ? ev->instance_uuid : "-", *ev->request_id ? ev->request_id : "-",
            *ev->node_id ? ev->node_id : "-");
    if (*ev->unverified_request_id)
        fprintf(out, " unverified_request_id=%s", ev->unverified_request_id);
    if (ev->state)
        fprintf(out, " state=%s",
                agent_proto_enum_name(&nodeagent__v1__instance_state__descriptor, (int)ev->state,
                                      state_buf, sizeof(state_buf)));
    if (ev->kind == NODEAGENT__V1__EVENT_KIND__EVENT_KIND_PROGRESS || ev->progress_percent)
        fprintf(out, " progress=%" PRIu32 "%%", ev->progress_percent);
    if (*ev->message)
        fprintf(out, " message=\"%s\"", ev->message);
    if (ev->error) {
        cleanup_free char *e = nodectl_error_text(ev->error);
        fprintf(out, " error=\"%s\"", e);
    }
    if (ev->console_log.len)
        fprintf(out, " console_log=%zu bytes", ev->console_log.len);
    if (ev->image_export)
        fprintf(out, " image_sha256=%s image_bytes=%" PRIu64 "%s%s", ev->image_export->sha256,
                ev->image_export->size_bytes, ev->image_export->uploaded ? " uploaded" : "",
                ev->image_export->published ? " published" : "");
    if (ev->replayed)
        fprintf(out, " replayed");
    fputc('\n', out);
    fflush(out);
}

void
nodectl_print_event(FILE *out, bool json, const Nodeagent__V1__Event *ev,
                    const struct nodectl_delivery *where)
{
    if (!json) {
        print_event_text(out, ev);
        return;
    }
    cleanup_json json_t *j = agent_event_to_json(ev);
    if (where) {
        json_object_set_new(j, "partition", json_integer(where->partition));
        json_object_set_new(j, "offset", json_integer(where->offset));
    }
    nodectl_print_json(out, j, false);
}
