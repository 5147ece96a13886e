#include "proto/proto_json.h"

#include "common/common.h"

#include <inttypes.h>
#include <string.h>

/* "EventKind" -> "EVENT_KIND_": protoc's style guide prefixes every value with its type's
 * name in UPPER_SNAKE_CASE, and the contract follows it. */
static void
enum_prefix(const char *short_name, char *buf, size_t size)
{
    size_t o = 0;
    for (const char *p = short_name; *p && o + 3 < size; p++) {
        if (p != short_name && *p >= 'A' && *p <= 'Z')
            buf[o++] = '_';
        buf[o++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    }
    buf[o++] = '_';
    buf[o] = '\0';
}

const char *
agent_proto_enum_name(const ProtobufCEnumDescriptor *desc, int value, char *buf, size_t size)
{
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(desc, value);
    if (!v) {
        snprintf(buf, size, "%d", value);
        return buf;
    }
    char prefix[128];
    enum_prefix(desc->short_name, prefix, sizeof(prefix));
    size_t len = strlen(prefix);
    if (strncmp(v->name, prefix, len) == 0 && v->name[len])
        return v->name + len;
    return v->name;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when invalid; *bad_len is then the
 * length of the maximal invalid subpart to replace with one U+FFFD (Unicode 3.9, "best
 * practice", as Python does). */
static size_t
utf8_sequence(const uint8_t *p, size_t avail, size_t *bad_len)
{
    uint8_t b = p[0];
    size_t n;
    uint8_t lo = 0x80, hi = 0xbf; /* range of the second byte */
    if (b < 0x80)
        return 1;
    if (b >= 0xc2 && b <= 0xdf) {
        n = 2;
    } else if (b >= 0xe0 && b <= 0xef) {
        n = 3;
        if (b == 0xe0)
            lo = 0xa0;
        else if (b == 0xed)
            hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 4;
        if (b == 0xf0)
            lo = 0x90;
        else if (b == 0xf4)
            hi = 0x8f;
    } else {
        *bad_len = 1;
        return 0;
    }
    size_t i = 1;
    for (; i < n && i < avail; i++) {
        uint8_t c = p[i];
        bool ok = i == 1 ? c >= lo && c <= hi : c >= 0x80 && c <= 0xbf;
        if (!ok)
            break;
    }
    if (i == n)
        return n;
    *bad_len = i;
    return 0;
}

json_t *
agent_json_bytes(const void *data, size_t size)
{
    const uint8_t *p = data ? data : (const uint8_t *)"";
    /* Each replaced byte becomes at most 3 bytes. */
    cleanup_free char *out = na_xmalloc(size * 3 + 1);
    size_t o = 0;
    for (size_t i = 0; i < size;) {
        size_t bad = 0;
        size_t n = utf8_sequence(p + i, size - i, &bad);
        if (n) {
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i += bad;
        }
    }
    out[o] = '\0';
    json_t *s = json_stringn(out, o);
    if (!s)
        abort();
    return s;
}

static json_t *
str(const char *s)
{
    s = s ? s : "";
    return agent_json_bytes(s, strlen(s));
}

static json_t *
u64(uint64_t v)
{
    return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static json_t *
enum_json(const ProtobufCEnumDescriptor *desc, int value)
{
    char buf[16];
    return json_string(agent_proto_enum_name(desc, value, buf, sizeof(buf)));
}

static json_t *
error_to_json(const Nodeagent__V1__Error *e)
{
    return json_pack("{s:o, s:o, s:o}", "code",
                     enum_json(&nodeagent__v1__error_code__descriptor, (int)e->code), "message",
                     str(e->message), "field", str(e->field));
}

static json_t *
image_export_to_json(const Nodeagent__V1__ImageExport *x)
{
    return json_pack("{s:o, s:o, s:o, s:b, s:b}", "sha256", str(x->sha256), "size_bytes",
                     u64(x->size_bytes), "virtual_size_bytes", u64(x->virtual_size_bytes),
                     "uploaded", x->uploaded, "published", x->published);
}

json_t *
agent_event_to_json(const Nodeagent__V1__Event *ev)
{
    json_t *j =
        json_pack("{s:o, s:o, s:o, s:o, s:I, s:o, s:o}", "event_id", str(ev->event_id),
                  "request_id", str(ev->request_id), "instance_uuid", str(ev->instance_uuid),
                  "node_id", str(ev->node_id), "time_ms", (json_int_t)ev->time_ms, "kind",
                  enum_json(&nodeagent__v1__event_kind__descriptor, (int)ev->kind), "request_kind",
                  str(ev->request_kind));
    if (!j)
        abort();
    if (ev->error)
        json_object_set_new(j, "error", error_to_json(ev->error));
    if (ev->state != NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_UNSPECIFIED)
        json_object_set_new(j, "state",
                            enum_json(&nodeagent__v1__instance_state__descriptor, (int)ev->state));
    json_object_set_new(j, "message", str(ev->message));
    json_object_set_new(j, "progress_percent", json_integer(ev->progress_percent));
    json_object_set_new(j, "request_offset", json_integer(ev->request_offset));
    /* Only with a refusal before authentication: other events keep their shape. */
    if (ev->unverified_request_id && *ev->unverified_request_id)
        json_object_set_new(j, "unverified_request_id", str(ev->unverified_request_id));
    json_object_set_new(j, "replayed", json_boolean(ev->replayed));
    if (ev->console_log.len)
        json_object_set_new(j, "console_log",
                            agent_json_bytes(ev->console_log.data, ev->console_log.len));
    if (ev->image_export)
        json_object_set_new(j, "image_export", image_export_to_json(ev->image_export));
    return j;
}

static json_t *
inventory_to_json(const Nodeagent__V1__Inventory *inv)
{
    return json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:f, s:o}", "resource_class",
                     str(inv->resource_class), "total", u64(inv->total), "reserved",
                     u64(inv->reserved), "min_unit", u64(inv->min_unit), "max_unit",
                     u64(inv->max_unit), "step_size", u64(inv->step_size), "allocation_ratio",
                     inv->allocation_ratio, "used", u64(inv->used));
}

static json_t *
health_to_json(const Nodeagent__V1__Health *h)
{
    json_t *checks = json_array();
    for (size_t i = 0; i < h->n_checks; i++) {
        const Nodeagent__V1__HealthCheck *c = h->checks[i];
        json_array_append_new(checks, json_pack("{s:o, s:b, s:o}", "name", str(c->name), "ok",
                                                (int)c->ok, "detail", str(c->detail)));
    }
    return json_pack("{s:b, s:o}", "healthy", (int)h->healthy, "checks", checks);
}

json_t *
agent_capacity_to_json(const Nodeagent__V1__CapacityReport *r)
{
    json_t *inventories = json_array();
    for (size_t i = 0; i < r->n_inventories; i++)
        json_array_append_new(inventories, inventory_to_json(r->inventories[i]));
    json_t *traits = json_array();
    for (size_t i = 0; i < r->n_traits; i++)
        json_array_append_new(traits, str(r->traits[i]));

    json_t *j = json_pack("{s:o, s:I, s:o, s:o, s:I}", "node_id", str(r->node_id), "time_ms",
                          (json_int_t)r->time_ms, "inventories", inventories, "traits", traits,
                          "instance_count", (json_int_t)r->instance_count);
    if (!j)
        abort();
    if (r->health)
        json_object_set_new(j, "health", health_to_json(r->health));
    if (r->memory_sharing) {
        const Nodeagent__V1__MemorySharing *m = r->memory_sharing;
        json_object_set_new(j, "memory_sharing",
                            json_pack("{s:b, s:o, s:o}", "ksm_enabled", (int)m->ksm_enabled,
                                      "pages_sharing", u64(m->pages_sharing), "saved_bytes",
                                      u64(m->saved_bytes)));
    }
    return j;
}
