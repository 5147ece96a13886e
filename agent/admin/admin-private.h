/* The admin API's routing, as a pure function of the request line and of where it came in
 * (agent/admin/admin_route.c).  admin.c serves what it decides; the unit tests and the fuzzer
 * call it without a server.
 *
 * Every route is declared once in ADMIN_ROUTES with its method and who may use it: a PUBLIC
 * route (/healthz, /metrics) is served on every listener; a TOKEN route on the unix socket,
 * or on TCP to a request carrying the bearer token of [admin] token_file; a UNIX route (the
 * operator's actions on orphans) on the unix socket only, whatever the request carries.
 * libmicrohttpd hands the path without its query string (and no route takes a query), so routing is
 * the method and the path alone.  Nothing here allocates or keeps state.
 */
#ifndef NODEAGENT_AGENT_ADMIN_PRIVATE_H
#define NODEAGENT_AGENT_ADMIN_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum admin_access {
    ADMIN_PUBLIC, /* every listener */
    ADMIN_TOKEN,  /* the unix socket, or TCP with the bearer token */
    ADMIN_UNIX,   /* the unix socket only */
};

/* name, method (GET also answers HEAD), path (a trailing '/' takes one argument), access */
#define ADMIN_ROUTES(R)                                                                            \
    R(HEALTHZ, "GET", "/healthz", ADMIN_PUBLIC)                                                    \
    R(METRICS, "GET", "/metrics", ADMIN_PUBLIC)                                                    \
    R(STATUS, "GET", "/v1/status", ADMIN_TOKEN)                                                    \
    R(IMAGES, "GET", "/v1/images", ADMIN_TOKEN)                                                    \
    R(CAPACITY, "GET", "/v1/capacity", ADMIN_TOKEN)                                                \
    R(PEERS, "GET", "/v1/peers", ADMIN_TOKEN)                                                      \
    R(INSTANCES, "GET", "/v1/instances", ADMIN_TOKEN)                                              \
    R(INSTANCE, "GET", "/v1/instances/", ADMIN_TOKEN)                                              \
    R(INSTANCE_SNAPSHOTS, "GET", "/v1/instances/", ADMIN_TOKEN)                                    \
    R(REQUEST, "GET", "/v1/requests/", ADMIN_TOKEN)                                                \
    R(ORPHANS, "GET", "/v1/orphans", ADMIN_UNIX)                                                   \
    R(ORPHANS_RELEASE, "POST", "/v1/orphans/release", ADMIN_UNIX)                                  \
    R(ORPHAN_PURGE, "POST", "/v1/orphans/", ADMIN_UNIX)                                            \
    R(ORPHAN_ADOPT, "POST", "/v1/orphans/", ADMIN_UNIX)

enum admin_resource {
    ADMIN_NONE, /* the request is answered with an error: see admin_route's status */
#define ADMIN_ROUTE_ENUM(name, method, path, access) ADMIN_##name,
    ADMIN_ROUTES(ADMIN_ROUTE_ENUM)
#undef ADMIN_ROUTE_ENUM
};

/* Where a request came in and what it carried. */
struct admin_request_in {
    const char *method;
    const char *url;           /* the path, query string already removed */
    size_t upload_size;        /* bytes of body seen so far */
    bool tcp;                  /* on the TCP listener, not the unix socket */
    const char *authorization; /* the Authorization header, NULL when absent */
    const uint8_t *token;      /* [admin] token_file's token, NULL when none */
    size_t token_size;
};

/* What to answer: a resource (with its argument, pointing into url), or an error. */
struct admin_route {
    enum admin_resource resource;
    /* The uuid or request id of INSTANCE and REQUEST, the uuid of ORPHAN_PURGE and
     * ORPHAN_ADOPT (followed by "/purge" or "/adopt" in the url), else NULL. */
    const char *arg;
    unsigned status;       /* the HTTP status of an error (resource ADMIN_NONE) */
    const char *error;     /* its message, a static string */
    bool www_authenticate; /* a 401: answer with WWW-Authenticate: Bearer */
};

/* Decides what a request gets.  Never fails: an unknown path, a method the route does not
 * take, a body, a TOKEN resource asked on TCP without the right token, or a UNIX resource
 * asked on TCP all become an error route. */
void admin_route(const struct admin_request_in *in, struct admin_route *out);

/* Whether an Authorization header value is "Bearer <token>" with exactly this token.  The
 * comparison takes the same time wherever the two differ, and whatever their lengths. */
bool admin_bearer_matches(const char *authorization, const uint8_t *token, size_t token_size);

/* The route's path as declared, for logs and tests ("?" for ADMIN_NONE). */
const char *admin_resource_path(enum admin_resource r);
/* Who may use the route (ADMIN_PUBLIC for ADMIN_NONE). */
enum admin_access admin_resource_access(enum admin_resource r);

#endif
