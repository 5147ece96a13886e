/* `status`, `instances` and `peers`: the agent's view of itself, read from its admin API.
 *
 * Contract (the agent's side): GET /v1/status returns {"node_id","version","uptime_s",
 * "healthy","checks":[{"name","ok","detail"}],"instances","queue_depth"} (HTTP 503 when
 * unhealthy, like /healthz); GET /v1/instances a list of instances (a bare array or
 * {"instances":[...]}); GET /v1/instances/UUID one instance or 404, with the guest's last
 * figures in "stats" while it runs. */
#include "tools/nodectl/nodectl.h"

#include "proto/proto_json.h"

#include <string.h>

static const char *
jstr(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

/* Scalars as text, anything else as compact JSON; into a new string. */
static char *
jtext(json_t *v)
{
    if (json_is_string(v))
        return na_xstrdup(json_string_value(v));
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    return s ? s : na_xstrdup("?");
}

static const char *
instance_state(json_t *inst)
{
    static const char *const keys[] = {"state", "observed_state", "power_state"};
    for (size_t i = 0; i < NA_ARRAY_SIZE(keys); i++)
        if (json_is_string(json_object_get(inst, keys[i])))
            return jstr(inst, keys[i]);
    return "-";
}

static json_t *
instance_list(json_t *body)
{
    if (json_is_array(body))
        return body;
    json_t *l = json_object_get(body, "instances");
    return json_is_array(l) ? l : NULL;
}

static int
get_ok(const struct nodectl_args *a, const char *path, bool allow_503, long *status, json_t **body,
       struct na_error **err)
{
    int rc = nodectl_admin_get(a->g.admin_socket, path, status, body, err);
    if (rc < 0)
        return rc;
    if (*status >= 400 && !(allow_503 && *status == 503) && *status != 404) {
        cleanup_free char *text = jtext(*body);
        json_decref(*body);
        *body = NULL;
        return na_error_set(err, NA_CODE_UNAVAILABLE, 0, "GET %s on %s: HTTP %ld: %s", path,
                            a->g.admin_socket, *status, text);
    }
    return 0;
}

static void
print_instances_text(json_t *list)
{
    size_t i;
    json_t *inst;
    json_array_foreach(list, i, inst)
    {
        printf("  %s  %s  %s\n", jstr(inst, "uuid"), *jstr(inst, "name") ? jstr(inst, "name") : "-",
               instance_state(inst));
    }
}

static void
print_status_text(json_t *st)
{
    bool healthy = json_is_true(json_object_get(st, "healthy"));
    printf("node %s (version %s, up %lld s): %s\n", jstr(st, "node_id"), jstr(st, "version"),
           (long long)json_integer_value(json_object_get(st, "uptime_s")),
           healthy ? "healthy" : "UNHEALTHY");
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(st, "checks"), i, c)
    {
        bool ok = json_is_true(json_object_get(c, "ok"));
        const char *detail = jstr(c, "detail");
        printf("  check %s: %s%s%s%s\n", jstr(c, "name"), ok ? "ok" : "FAIL", *detail ? " (" : "",
               detail, *detail ? ")" : "");
    }
    printf("instances: %lld, queue depth: %lld\n",
           (long long)json_integer_value(json_object_get(st, "instances")),
           (long long)json_integer_value(json_object_get(st, "queue_depth")));
}

int
nodectl_cmd_status(const struct nodectl_args *a, struct na_error **err)
{
    long status = 0;
    cleanup_json json_t *st = NULL;
    int rc = get_ok(a, "/v1/status", true, &status, &st, err);
    if (rc < 0)
        return rc;
    if (!json_is_object(st) || !json_is_boolean(json_object_get(st, "healthy")))
        return na_error_set(err, NA_CODE_UNAVAILABLE, 0,
                            "GET /v1/status on %s: HTTP %ld without a \"healthy\" flag",
                            a->g.admin_socket, status);
    bool healthy = json_is_true(json_object_get(st, "healthy"));
    if (a->g.json) {
        nodectl_print_json(stdout, st, true);
    } else {
        print_status_text(st);
        cleanup_json json_t *list = NULL;
        rc = get_ok(a, "/v1/instances", false, &status, &list, err);
        if (rc < 0)
            return rc;
        if (instance_list(list))
            print_instances_text(instance_list(list));
    }
    return healthy ? NODECTL_EXIT_OK : NODECTL_EXIT_FAILED;
}

int
nodectl_cmd_instances(const struct nodectl_args *a, struct na_error **err)
{
    cleanup_free char *path = a->positional ? na_xasprintf("/v1/instances/%s", a->positional)
                                            : na_xstrdup("/v1/instances");
    long status = 0;
    cleanup_json json_t *body = NULL;
    int rc = get_ok(a, path, false, &status, &body, err);
    if (rc < 0)
        return rc;
    if (status == 404) {
        fprintf(stderr, "nodectl: no instance %s on this node\n",
                a->positional ? a->positional : "");
        return NODECTL_EXIT_FAILED;
    }
    if (a->g.json) {
        nodectl_print_json(stdout, body, true);
        return NODECTL_EXIT_OK;
    }
    if (!a->positional) {
        json_t *list = instance_list(body);
        printf("%zu instance(s)\n", list ? json_array_size(list) : 0);
        if (list)
            print_instances_text(list);
        return NODECTL_EXIT_OK;
    }
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "stats") == 0)
            continue;
        cleanup_free char *text = jtext(v);
        printf("%s: %s\n", key, text);
    }
    json_t *stats = json_object_get(body, "stats");
    if (json_is_object(stats))
        nodectl_print_guest_stats(stats);
    return NODECTL_EXIT_OK;
}

int
nodectl_cmd_peers(const struct nodectl_args *a, struct na_error **err)
{
    long status = 0;
    cleanup_json json_t *body = NULL;
    int rc = get_ok(a, "/v1/peers", false, &status, &body, err);
    if (rc < 0)
        return rc;
    if (a->g.json) {
        nodectl_print_json(stdout, body, true);
        return NODECTL_EXIT_OK;
    }
    printf("node %s, tunnel endpoint %s, announcing every %lld s\n", jstr(body, "node_id"),
           *jstr(body, "tunnel_endpoint") ? jstr(body, "tunnel_endpoint") : "-",
           (long long)json_integer_value(json_object_get(body, "announce_interval_s")));
    size_t i;
    json_t *p;
    printf("%-24s %-16s %-10s %-12s %s\n", "PEER", "TUNNEL ENDPOINT", "VERSION", "HEARD",
           "NETWORKS (VNI)");
    json_array_foreach(json_object_get(body, "peers"), i, p)
    {
        char heard[32];
        snprintf(heard, sizeof(heard), "%.1f s ago",
                 json_number_value(json_object_get(p, "heard_s_ago")));
        printf("%-24s %-16s %-10s %-12s", jstr(p, "node_id"),
               *jstr(p, "tunnel_endpoint") ? jstr(p, "tunnel_endpoint") : "-",
               jstr(p, "agent_version"), heard);
        size_t k;
        json_t *v;
        json_array_foreach(json_object_get(p, "vnis"), k, v)
            printf("%s%lld", k ? "," : " ", (long long)json_integer_value(v));
        printf("\n");
    }
    return NODECTL_EXIT_OK;
}
