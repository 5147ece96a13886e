/* proto_json: JSON views of bus messages, for humans and scripts.
 *
 * The agent's admin API and nodectl both print events and capacity reports; this module is
 * the one place that decides how they look.  Enum values are named as in the .proto without
 * their type prefix ("DONE", "INVALID_ARGUMENT", "RUNNING"); a value this build does not
 * know renders as its number ("42").  Strings and bytes that are not valid UTF-8 have each
 * maximal invalid subsequence replaced by U+FFFD (the same result as Python's
 * bytes.decode("utf-8", "replace")), so the output is always valid JSON.
 *
 * Pure functions, no I/O; safe from any thread.  Results are new references.
 */
#ifndef NODEAGENT_PROTO_PROTO_JSON_H
#define NODEAGENT_PROTO_PROTO_JSON_H

#include "nodeagent.pb-c.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#ifndef cleanup_json
static inline void
agent_json_decrefp(json_t **j)
{
    json_decref(*j);
}
#define cleanup_json __attribute__((cleanup(agent_json_decrefp)))
#endif

/* {"event_id","request_id","instance_uuid","node_id","time_ms","kind","request_kind",
 *  "error":{"code","message","field"} (only when set), "state" (omitted when UNSPECIFIED),
 *  "message","progress_percent","request_offset","replayed",
 *  "console_log" (only when non-empty)} */
json_t *agent_event_to_json(const Nodeagent__V1__Event *ev);

/* {"node_id","time_ms","inventories":[{"resource_class","total","reserved","min_unit",
 *  "max_unit","step_size","allocation_ratio","used"}],"traits":[...],"instance_count",
 *  "health":{"healthy","checks":[{"name","ok","detail"}]} (only when set),
 *  "memory_sharing":{"ksm_enabled","pages_sharing","saved_bytes"} (only when set)}
 * Counters above INT64_MAX (JSON integers are signed here) are clamped to it. */
json_t *agent_capacity_to_json(const Nodeagent__V1__CapacityReport *r);

/* The name of an enum value without its type prefix (EVENT_KIND_DONE -> "DONE"), or the
 * number as text when the descriptor has no such value.  Returns buf or a static name. */
const char *agent_proto_enum_name(const ProtobufCEnumDescriptor *desc, int value, char *buf,
                                  size_t size);

/* A JSON string of arbitrary bytes, invalid UTF-8 replaced as described above. */
json_t *agent_json_bytes(const void *data, size_t size);

#endif
