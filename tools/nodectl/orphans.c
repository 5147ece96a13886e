/* `orphans`, `purge` and `adopt`: what the agent found that looks like this node's and that its
 * store does not record, and the operator's decisions about it (agent/observed/orphans.h).
 *
 * Contract (the agent's side, unix socket only): GET /v1/orphans returns {"orphans":[{"uuid",
 * "name","tenant","node_id","store_id","has_domain","has_dir","power","why","holds",
 * "purging","purge_error"}],"holding","detail","node_id","store_id"}; POST
 * /v1/orphans/release returns {"released":N}; POST /v1/orphans/UUID/purge returns 202 and
 * the purge runs in the uuid's lane, after which the uuid leaves the list (or purge_error
 * says why not); POST /v1/orphans/UUID/adopt returns 202 (409 with the reason when the
 * orphan cannot be adopted) and the adoption runs in the uuid's lane, after which the uuid
 * leaves the list and GET /v1/instances/UUID shows the instance (or adopt_error says why
 * not). */
#include "tools/nodectl/nodectl.h"

#include "proto/proto_json.h"

#include <string.h>
#include <time.h>

#define PURGE_WAIT_S 120
#define ADOPT_WAIT_S 120

static const char *
jstr(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "-";
}

static int
admin_call(const struct nodectl_args *a, const char *method, const char *path, long want,
           json_t **body, struct na_error **err)
{
    long status = 0;
    int rc = nodectl_admin_request(a->g.admin_socket, method, path, &status, body, err);
    if (rc < 0)
        return rc;
    if (status == want)
        return 0;
    const char *msg = json_string_value(json_object_get(*body, "error"));
    cleanup_free char *text = na_xstrdup(msg ? msg : "no error message");
    json_decref(*body);
    *body = NULL;
    return na_error_set(err, status == 404 ? NA_CODE_NOT_FOUND : NA_CODE_UNAVAILABLE, 0,
                        "%s %s on %s: HTTP %ld: %s", method, path, a->g.admin_socket, status, text);
}

static void
print_orphans(json_t *body)
{
    json_t *list = json_object_get(body, "orphans");
    printf("node %s, store %s: %zu orphan(s)%s\n", jstr(body, "node_id"), jstr(body, "store_id"),
           json_array_size(list),
           json_is_true(json_object_get(body, "holding")) ? ", HOLDING" : "");
    printf("  %s\n", jstr(body, "detail"));
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o)
    {
        printf("  %s  %s  tenant %s  node %s  store %s  why %s  domain %s  dir %s%s%s\n",
               jstr(o, "uuid"), jstr(o, "name"), jstr(o, "tenant"), jstr(o, "node_id"),
               jstr(o, "store_id"), jstr(o, "why"),
               json_is_true(json_object_get(o, "has_domain")) ? jstr(o, "power") : "none",
               json_is_true(json_object_get(o, "has_dir")) ? "yes" : "no",
               json_is_true(json_object_get(o, "holds")) ? "  HOLDS" : "",
               json_is_true(json_object_get(o, "purging")) ? "  purging" : "");
    }
}

int
nodectl_cmd_orphans(const struct nodectl_args *a, struct na_error **err)
{
    cleanup_json json_t *body = NULL;
    if (nodectl_arg_bool(a, NODECTL_F_RELEASE)) {
        int rc = admin_call(a, "POST", "/v1/orphans/release", 200, &body, err);
        if (rc < 0)
            return rc;
        if (a->g.json)
            nodectl_print_json(stdout, body, true);
        else
            printf("released %lld orphan(s)\n",
                   (long long)json_integer_value(json_object_get(body, "released")));
        return NODECTL_EXIT_OK;
    }
    int rc = admin_call(a, "GET", "/v1/orphans", 200, &body, err);
    if (rc < 0)
        return rc;
    if (a->g.json)
        nodectl_print_json(stdout, body, true);
    else
        print_orphans(body);
    return NODECTL_EXIT_OK;
}

static json_t *
find_orphan(json_t *body, const char *uuid)
{
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(body, "orphans"), i, o)
    {
        if (strcmp(jstr(o, "uuid"), uuid) == 0)
            return o;
    }
    return NULL;
}

int
nodectl_cmd_purge(const struct nodectl_args *a, struct na_error **err)
{
    if (!na_uuid_is_valid(a->positional))
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "purge: `%s` is not a uuid",
                            a->positional);
    cleanup_free char *path = na_xasprintf("/v1/orphans/%s/purge", a->positional);
    cleanup_json json_t *queued = NULL;
    int rc = admin_call(a, "POST", path, 202, &queued, err);
    if (rc < 0)
        return rc;
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
    for (int i = 0; i < PURGE_WAIT_S * 5; i++) {
        cleanup_json json_t *body = NULL;
        if ((rc = admin_call(a, "GET", "/v1/orphans", 200, &body, err)) < 0)
            return rc;
        json_t *o = find_orphan(body, a->positional);
        if (!o) {
            printf("purged %s\n", a->positional);
            return NODECTL_EXIT_OK;
        }
        const char *failed = json_string_value(json_object_get(o, "purge_error"));
        if (failed && !json_is_true(json_object_get(o, "purging"))) {
            fprintf(stderr, "nodectl: purging %s failed: %s\n", a->positional, failed);
            return NODECTL_EXIT_FAILED;
        }
        nanosleep(&pause, NULL);
    }
    fprintf(stderr, "nodectl: %s is still an orphan after %d s\n", a->positional, PURGE_WAIT_S);
    return NODECTL_EXIT_TIMEOUT;
}

/* Polls until the adoption of uuid ended: the uuid left the orphans (adopted) or the orphan
 * says why it failed. */
static int
wait_adopted(const struct nodectl_args *a, const char *uuid, struct na_error **err)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
    for (int i = 0; i < ADOPT_WAIT_S * 5; i++) {
        cleanup_json json_t *body = NULL;
        int rc = admin_call(a, "GET", "/v1/orphans", 200, &body, err);
        if (rc < 0)
            return rc;
        json_t *o = find_orphan(body, uuid);
        if (!o)
            return NODECTL_EXIT_OK;
        const char *failed = json_string_value(json_object_get(o, "adopt_error"));
        if (failed && !json_is_true(json_object_get(o, "adopting"))) {
            fprintf(stderr, "nodectl: adopting %s failed: %s\n", uuid, failed);
            return NODECTL_EXIT_FAILED;
        }
        nanosleep(&pause, NULL);
    }
    fprintf(stderr, "nodectl: %s is still an orphan after %d s\n", uuid, ADOPT_WAIT_S);
    return NODECTL_EXIT_TIMEOUT;
}

int
nodectl_cmd_adopt(const struct nodectl_args *a, struct na_error **err)
{
    if (!na_uuid_is_valid(a->positional))
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "adopt: `%s` is not a uuid",
                            a->positional);
    cleanup_free char *path = na_xasprintf("/v1/orphans/%s/adopt", a->positional);
    cleanup_json json_t *queued = NULL;
    int rc = admin_call(a, "POST", path, 202, &queued, err);
    if (rc < 0)
        return rc;
    if ((rc = wait_adopted(a, a->positional, err)) != NODECTL_EXIT_OK)
        return rc;
    cleanup_free char *inst_path = na_xasprintf("/v1/instances/%s", a->positional);
    cleanup_json json_t *inst = NULL;
    if ((rc = admin_call(a, "GET", inst_path, 200, &inst, err)) < 0)
        return rc;
    if (a->g.json)
        nodectl_print_json(stdout, inst, true);
    else
        printf("adopted %s: %s %s\n", a->positional, jstr(inst, "name"), jstr(inst, "state"));
    return NODECTL_EXIT_OK;
}
