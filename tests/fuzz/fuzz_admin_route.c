/* libFuzzer target: the admin API's routing (agent/admin/admin_route.c) as libmicrohttpd hands it
 * a request: a method, a path and an Authorization header, on the unix socket or on TCP,
 * with or without a token.  The input is split at its first two NUL bytes into method, url
 * and header (absent when missing); the first byte's low bits pick the listener and whether
 * a token is configured.  Checks, whatever the bytes:
 *   - a private resource on TCP is served only with the configured token, exactly, and
 *     the unix-only ones (orphans) never;
 *   - a resource is served only to its method (GET routes also to HEAD);
 *   - /healthz and /metrics are served to GET and HEAD anywhere;
 *   - an error route has a 4xx status and a message; a served one none;
 *   - a route's argument points into the url, at its end.
 *
 * fuzz-sources: agent/admin/admin_route.c
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/admin/admin-private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const uint8_t TOKEN[] = "fuzz-token-0123456789";
#define TOKEN_SIZE (sizeof(TOKEN) - 1)

static bool
is_public(enum admin_resource r)
{
    return r == ADMIN_HEALTHZ || r == ADMIN_METRICS;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    /* A NUL-terminated copy, split at NULs into up to three strings. */
    char *text = malloc(size + 2);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    text[size] = '\0';
    const char *method = text;
    const char *url = method + strlen(method) + 1;
    const char *authorization = NULL;
    if ((size_t)(url - text) < size - 1) {
        const char *after = url + strlen(url) + 1;
        if ((size_t)(after - text) < size - 1)
            authorization = after;
    } else {
        url = "";
    }

    struct admin_request_in in = {
        .method = method,
        .url = url,
        .upload_size = (flags & 4) ? 1 : 0,
        .tcp = flags & 1,
        .authorization = authorization,
        .token = (flags & 2) ? TOKEN : NULL,
        .token_size = (flags & 2) ? TOKEN_SIZE : 0,
    };
    struct admin_route out;
    admin_route(&in, &out);

    if (out.resource == ADMIN_NONE) {
        if (out.status < 400 || out.status > 499 || !out.error || out.arg)
            __builtin_trap();
        if (out.www_authenticate != (out.status == 401))
            __builtin_trap();
    } else {
        if (out.status || out.error || in.upload_size)
            __builtin_trap();
        bool post = out.resource == ADMIN_ORPHANS_RELEASE || out.resource == ADMIN_ORPHAN_PURGE ||
                    out.resource == ADMIN_ORPHAN_ADOPT;
        if (post ? strcmp(method, "POST") != 0
                 : strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
            __builtin_trap();
        if (in.tcp && admin_resource_access(out.resource) == ADMIN_UNIX)
            __builtin_trap();
        if (in.tcp && !is_public(out.resource)) {
            if (!in.token || !authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
                __builtin_trap();
            const char *given = authorization + 7 + strspn(authorization + 7, " ");
            if (strlen(given) != TOKEN_SIZE || memcmp(given, TOKEN, TOKEN_SIZE) != 0)
                __builtin_trap();
        }
        if (out.arg) {
            if (out.arg < url || out.arg + strlen(out.arg) != url + strlen(url))
                __builtin_trap();
        } else if (strcmp(url, admin_resource_path(out.resource)) != 0) {
            __builtin_trap();
        }
    }
    /* The public routes are served to GET and HEAD on any listener. */
    if (!in.upload_size && (strcmp(url, "/healthz") == 0 || strcmp(url, "/metrics") == 0) &&
        (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) && !is_public(out.resource))
        __builtin_trap();
    free(text);
    return 0;
}
