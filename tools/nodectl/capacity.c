/* `capacity` and `capacity-reports`: what the node offers and holds.
 *
 * capacity: the agent's own view, GET /v1/capacity on the admin socket (see agent/admin/admin.c):
 * the CapacityReport as JSON (proto/proto_json.h) with "capacity" and "free" per resource
 * class and a "placement" object.
 *
 * capacity-reports: the CapacityReports on <prefix>.capacity, as the scheduler reads them;
 * only those of --node when it is given. */
#include "tools/nodectl/nodectl.h"

#include "proto/proto_json.h"

#include <string.h>

static long long
jint(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

static void
print_capacity_text(json_t *v)
{
    printf("node %s, %lld instances\n\n", json_string_value(json_object_get(v, "node_id")),
           jint(v, "instance_count"));
    printf("%-10s %10s %10s %7s %10s %10s %10s\n", "class", "total", "reserved", "ratio",
           "capacity", "used", "free");
    size_t i;
    json_t *inv;
    json_array_foreach(json_object_get(v, "inventories"), i, inv)
    {
        printf("%-10s %10lld %10lld %7.2f %10lld %10lld %10lld\n",
               json_string_value(json_object_get(inv, "resource_class")), jint(inv, "total"),
               jint(inv, "reserved"), json_number_value(json_object_get(inv, "allocation_ratio")),
               jint(inv, "capacity"), jint(inv, "used"), jint(inv, "free"));
    }
    json_t *ms = json_object_get(v, "memory_sharing");
    if (ms)
        printf("\nKSM: %s, %lld pages shared, %.1f MiB saved\n",
               json_is_true(json_object_get(ms, "ksm_enabled")) ? "on" : "off",
               jint(ms, "pages_sharing"), (double)jint(ms, "saved_bytes") / (1024.0 * 1024.0));
    json_t *p = json_object_get(v, "placement");
    const char *endpoint = json_string_value(json_object_get(p, "endpoint"));
    printf("Placement: ");
    if (!endpoint)
        printf("not configured (provider uuid %s)\n",
               json_string_value(json_object_get(p, "provider_uuid")));
    else if (json_is_true(json_object_get(p, "ok")))
        printf("%s, provider %s, in sync\n", endpoint,
               json_string_value(json_object_get(p, "provider_uuid")));
    else
        printf("%s, provider %s, NOT in sync: %s\n", endpoint,
               json_string_value(json_object_get(p, "provider_uuid")),
               json_string_value(json_object_get(p, "error"))
                   ? json_string_value(json_object_get(p, "error"))
                   : "not reported yet");
    size_t n = json_array_size(json_object_get(v, "traits"));
    printf("traits (%zu):", n);
    json_t *t;
    json_array_foreach(json_object_get(v, "traits"), i, t) printf(" %s", json_string_value(t));
    printf("\n");
}

int
nodectl_cmd_capacity(const struct nodectl_args *a, struct na_error **err)
{
    long status = 0;
    cleanup_json json_t *body = NULL;
    int rc = nodectl_admin_get(a->g.admin_socket, "/v1/capacity", &status, &body, err);
    if (rc < 0)
        return rc;
    if (status != 200 || !json_is_object(body))
        return na_error_set(err, NA_CODE_UNAVAILABLE, 0, "GET /v1/capacity on %s: HTTP %ld",
                            a->g.admin_socket, status);
    if (a->g.json)
        nodectl_print_json(stdout, body, true);
    else
        print_capacity_text(body);
    return NODECTL_EXIT_OK;
}

static bool
print_report(const struct nodectl_args *a, const struct nodectl_message *m)
{
    const char *node = a->g.node && *a->g.node ? a->g.node : NULL;
    if (node && (m->key_len != strlen(node) || memcmp(m->key, node, m->key_len) != 0))
        return false;
    Nodeagent__V1__CapacityReport *r =
        nodeagent__v1__capacity_report__unpack(NULL, m->size, m->payload);
    if (!r) {
        fprintf(stderr, "nodectl: warning: undecodable capacity report at offset %lld\n",
                (long long)m->where.offset);
        return false;
    }
    cleanup_json json_t *j = agent_capacity_to_json(r);
    nodeagent__v1__capacity_report__free_unpacked(r, NULL);
    json_object_set_new(j, "offset", json_integer(m->where.offset));
    nodectl_print_json(stdout, j, !a->g.json);
    return true;
}

int
nodectl_cmd_capacity_reports(const struct nodectl_args *a, struct na_error **err)
{
    cleanup_free char *topic = na_xasprintf("%s.capacity", a->g.prefix);
    return nodectl_follow(a, topic, "capacity reports", print_report, err);
}
