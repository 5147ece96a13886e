/* `snapshot list UUID`: an instance's snapshots, read from the agent's admin API.
 *
 * Contract (the agent's side): GET /v1/instances/UUID/snapshots returns {"instance",
 * "snapshots":[{"name","parent","description","created_ms","state","memory","current",
 * "size_bytes"}]},
 * or 404 when the node has no such instance. */
#include "tools/nodectl/nodectl.h"

#include "proto/proto_json.h"

#include <string.h>
#include <time.h>

static const char *
jstr(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

static void
print_snapshot(json_t *s)
{
    time_t t = (time_t)(json_integer_value(json_object_get(s, "created_ms")) / 1000);
    struct tm tm;
    char when[32] = "-";
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *parent = jstr(s, "parent");
    printf("  %s%s  %s  %s  %s  parent=%s  %s\n", jstr(s, "name"),
           json_is_true(json_object_get(s, "current")) ? " (current)" : "", when, jstr(s, "state"),
           json_is_true(json_object_get(s, "memory")) ? "memory" : "disk-only",
           *parent ? parent : "-", jstr(s, "description"));
}

int
nodectl_cmd_snapshot_list(const struct nodectl_args *a, struct na_error **err)
{
    if (!a->positional || !na_uuid_is_valid(a->positional))
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "snapshot list: give the instance's uuid");
    cleanup_free char *path = na_xasprintf("/v1/instances/%s/snapshots", a->positional);
    long status = 0;
    cleanup_json json_t *body = NULL;
    int rc = nodectl_admin_get(a->g.admin_socket, path, &status, &body, err);
    if (rc < 0)
        return rc;
    if (status == 404) {
        fprintf(stderr, "nodectl: no instance %s on this node\n", a->positional);
        return NODECTL_EXIT_FAILED;
    }
    if (status >= 400)
        return na_error_set(err, NA_CODE_UNAVAILABLE, 0, "GET %s on %s: HTTP %ld", path,
                            a->g.admin_socket, status);
    if (a->g.json) {
        nodectl_print_json(stdout, body, true);
        return NODECTL_EXIT_OK;
    }
    json_t *list = json_object_get(body, "snapshots");
    printf("%zu snapshot(s)\n", json_array_size(list));
    size_t i;
    json_t *s;
    json_array_foreach(list, i, s) print_snapshot(s);
    return NODECTL_EXIT_OK;
}
