/* The admin API's routing and its bearer-token check: pure functions (admin-private.h). */
#include "agent/admin/admin-private.h"
#include "common/common.h"

#include <string.h>
#include <strings.h>

#define MAX_REQUEST_ID_LEN 64

struct route_def {
    enum admin_resource resource;
    const char *method;
    const char *path;
    enum admin_access access;
};

static const struct route_def routes[] = {
#define ADMIN_ROUTE_DEF(name, method, path, access) {ADMIN_##name, method, path, access},
    ADMIN_ROUTES(ADMIN_ROUTE_DEF)
#undef ADMIN_ROUTE_DEF
};

const char *
admin_resource_path(enum admin_resource r)
{
    for (size_t i = 0; i < NA_ARRAY_SIZE(routes); i++)
        if (routes[i].resource == r)
            return routes[i].path;
    return "?";
}

enum admin_access
admin_resource_access(enum admin_resource r)
{
    for (size_t i = 0; i < NA_ARRAY_SIZE(routes); i++)
        if (routes[i].resource == r)
            return routes[i].access;
    return ADMIN_PUBLIC;
}

static void
route_error(struct admin_route *out, unsigned status, const char *msg)
{
    *out = (struct admin_route){.resource = ADMIN_NONE, .status = status, .error = msg};
}

/* "<uuid><suffix>" and nothing else. */
static bool
is_uuid_then(const char *arg, const char *suffix)
{
    char uuid[37];
    if (strlen(arg) != 36 + strlen(suffix) || strcmp(arg + 36, suffix) != 0)
        return false;
    memcpy(uuid, arg, 36);
    uuid[36] = '\0';
    return na_uuid_is_valid(uuid);
}

/* The argument of a route with one ("/v1/instances/<uuid>"), checked; false when it is not
 * one the route takes. */
static bool
arg_is_valid(enum admin_resource r, const char *arg)
{
    switch (r) {
    case ADMIN_INSTANCE:
        return na_uuid_is_valid(arg);
    case ADMIN_REQUEST:
        return arg[0] && strlen(arg) <= MAX_REQUEST_ID_LEN;
    case ADMIN_INSTANCE_SNAPSHOTS:
        return is_uuid_then(arg, "/snapshots");
    case ADMIN_ORPHAN_PURGE:
        return is_uuid_then(arg, "/purge");
    case ADMIN_ORPHAN_ADOPT:
        return is_uuid_then(arg, "/adopt");
    default:
        return false;
    }
}

/* The declared route that url names, or NULL; *arg gets a route's argument. */
static const struct route_def *
find_route(const char *url, const char **arg)
{
    *arg = NULL;
    for (size_t i = 0; i < NA_ARRAY_SIZE(routes); i++) {
        const struct route_def *d = &routes[i];
        size_t len = strlen(d->path);
        if (d->path[len - 1] != '/') {
            if (strcmp(url, d->path) == 0)
                return d;
        } else if (strncmp(url, d->path, len) == 0 && arg_is_valid(d->resource, url + len)) {
            *arg = url + len;
            return d;
        }
    }
    return NULL;
}

bool
admin_bearer_matches(const char *authorization, const uint8_t *token, size_t token_size)
{
    if (!authorization || !token || !token_size)
        return false;
    if (strncasecmp(authorization, "Bearer ", 7) != 0)
        return false;
    const char *given = authorization + 7;
    given += strspn(given, " ");
    /* Digests of both: equal length, so the comparison time says nothing about either. */
    char want_hex[65], given_hex[65];
    na_sha256_hex(token, token_size, want_hex);
    na_sha256_hex((const uint8_t *)given, strlen(given), given_hex);
    unsigned char diff = 0;
    for (size_t i = 0; i < 64; i++)
        diff |= (unsigned char)(want_hex[i] ^ given_hex[i]);
    return diff == 0;
}

void
admin_route(const struct admin_request_in *in, struct admin_route *out)
{
    if (in->upload_size) {
        route_error(out, 413, "request bodies are not accepted");
        return;
    }
    const char *arg;
    const struct route_def *d = find_route(in->url, &arg);
    if (!d || (in->tcp && d->access == ADMIN_UNIX)) {
        route_error(out, 404, "no such resource");
        return;
    }
    bool get = strcmp(d->method, "GET") == 0;
    if (strcmp(in->method, d->method) != 0 && !(get && strcmp(in->method, "HEAD") == 0)) {
        route_error(out, 405, get ? "only GET is served here" : "only POST is served here");
        return;
    }
    if (in->tcp && d->access == ADMIN_TOKEN) {
        if (!in->token) {
            route_error(out, 403,
                        "only /healthz and /metrics are served on TCP without [admin] "
                        "token_file; use the unix socket");
            return;
        }
        if (!admin_bearer_matches(in->authorization, in->token, in->token_size)) {
            route_error(out, 401, "this resource needs the admin bearer token");
            out->www_authenticate = true;
            return;
        }
    }
    *out = (struct admin_route){.resource = d->resource, .arg = arg};
}
