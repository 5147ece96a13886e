/* The admin API's routing, as a pure function of the request line and of where it came in
 * (agent/admin_route.c).  admin.c serves what it decides; the unit tests and the fuzzer
 * call it without a server.
 *
 * Every route is declared once in ADMIN_ROUTES with whether it is public: a public route
 * (/healthz, /metrics) is served on every listener; everything else only on the unix socket,
 * or on TCP to a request carrying the bearer token of [admin] token_file.  libmicrohttpd
 * hands the path without its query string (and no route takes a query), so routing is the
 * method and the path alone.  Nothing here allocates or keeps state.
 */
#ifndef NODEAGENT_AGENT_ADMIN_PRIVATE_H
#define NODEAGENT_AGENT_ADMIN_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* name, path (a trailing '/' takes one argument), public */
#define ADMIN_ROUTES(R)                                                                            \
    R(HEALTHZ, "/healthz", true)                                                                   \
    R(METRICS, "/metrics", true)                                                                   \
    R(STATUS, "/v1/status", false)                                                                 \
    R(IMAGES, "/v1/images", false)                                                                 \
    R(CAPACITY, "/v1/capacity", false)                                                             \
    R(PEERS, "/v1/peers", false)                                                                   \
    R(INSTANCES, "/v1/instances", false)                                                           \
    R(INSTANCE, "/v1/instances/", false)                                                           \
    R(REQUEST, "/v1/requests/", false)

enum admin_resource {
    ADMIN_NONE, /* the request is answered with an error: see admin_route's status */
#define ADMIN_ROUTE_ENUM(name, path, public) ADMIN_##name,
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
    const char *arg;       /* the uuid or request id of INSTANCE and REQUEST, else NULL */
    unsigned status;       /* the HTTP status of an error (resource ADMIN_NONE) */
    const char *error;     /* its message, a static string */
    bool www_authenticate; /* a 401: answer with WWW-Authenticate: Bearer */
};

/* Decides what a request gets.  Never fails: an unknown path, a method other than GET or
 * HEAD, a body, or a private resource asked on TCP without the right token all become an
 * error route. */
void admin_route(const struct admin_request_in *in, struct admin_route *out);

/* Whether an Authorization header value is "Bearer <token>" with exactly this token.  The
 * comparison takes the same time wherever the two differ, and whatever their lengths. */
bool admin_bearer_matches(const char *authorization, const uint8_t *token, size_t token_size);

/* The route's path as declared, for logs and tests ("?" for ADMIN_NONE). */
const char *admin_resource_path(enum admin_resource r);

#endif
