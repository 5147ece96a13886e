/* The admin API's routing (admin_route) and bearer check (admin_bearer_matches): which
 * resource each method and path gets on the unix socket and on TCP, with and without the
 * token.  Pure functions: no server runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "agent/admin/admin-private.h"

#define UUID "0b7ae5e6-1d7c-4d3a-9a0e-0a4f5b6c7d8e"
static const uint8_t TOKEN[] = "0123456789abcdef-token";
#define TOKEN_SIZE (sizeof(TOKEN) - 1)

static struct admin_route
route(const char *method, const char *url, bool tcp, const char *authorization, bool with_token)
{
    struct admin_request_in in = {.method = method,
                                  .url = url,
                                  .tcp = tcp,
                                  .authorization = authorization,
                                  .token = with_token ? TOKEN : NULL,
                                  .token_size = with_token ? TOKEN_SIZE : 0};
    struct admin_route out;
    admin_route(&in, &out);
    return out;
}

static void
test_unix_socket_serves_everything(void **state)
{
    (void)state;
    assert_int_equal(route("GET", "/healthz", false, NULL, false).resource, ADMIN_HEALTHZ);
    assert_int_equal(route("HEAD", "/metrics", false, NULL, false).resource, ADMIN_METRICS);
    assert_int_equal(route("GET", "/v1/instances", false, NULL, false).resource, ADMIN_INSTANCES);
    struct admin_route r = route("GET", "/v1/instances/" UUID, false, NULL, false);
    assert_int_equal(r.resource, ADMIN_INSTANCE);
    assert_string_equal(r.arg, UUID);
    r = route("GET", "/v1/instances/" UUID "/snapshots", false, NULL, false);
    assert_int_equal(r.resource, ADMIN_INSTANCE_SNAPSHOTS);
    assert_string_equal(r.arg, UUID "/snapshots");
    assert_int_equal(route("GET", "/v1/instances/" UUID "/snapshotsx", false, NULL, false).status,
                     404);
    r = route("GET", "/v1/requests/r-1", false, NULL, false);
    assert_int_equal(r.resource, ADMIN_REQUEST);
    assert_string_equal(r.arg, "r-1");
    assert_int_equal(route("GET", "/v1/peers", false, NULL, false).resource, ADMIN_PEERS);
}

static void
test_errors(void **state)
{
    (void)state;
    assert_int_equal(route("POST", "/healthz", false, NULL, false).status, 405);
    assert_int_equal(route("GET", "/nope", false, NULL, false).status, 404);
    assert_int_equal(route("GET", "/v1/instances/not-a-uuid", false, NULL, false).status, 404);
    assert_int_equal(route("GET", "/v1/requests/", false, NULL, false).status, 404);
    char longid[100];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    char url[128];
    snprintf(url, sizeof(url), "/v1/requests/%s", longid);
    assert_int_equal(route("GET", url, false, NULL, false).status, 404);
    struct admin_request_in in = {.method = "GET", .url = "/healthz", .upload_size = 1};
    struct admin_route out;
    admin_route(&in, &out);
    assert_int_equal(out.status, 413);
}

static void
test_tcp_without_token(void **state)
{
    (void)state;
    assert_int_equal(route("GET", "/healthz", true, NULL, false).resource, ADMIN_HEALTHZ);
    assert_int_equal(route("GET", "/metrics", true, NULL, false).resource, ADMIN_METRICS);
    static const char *const private[] = {
        "/v1/instances", "/v1/instances/" UUID, "/v1/requests/r-1", "/v1/peers",
        "/v1/status",    "/v1/images",          "/v1/capacity"};
    for (size_t i = 0; i < sizeof(private) / sizeof(private[0]); i++) {
        struct admin_route r = route("GET", private[i], true, "Bearer anything", false);
        assert_int_equal(r.resource, ADMIN_NONE);
        assert_int_equal(r.status, 403);
        assert_false(r.www_authenticate);
    }
}

static void
test_tcp_with_token(void **state)
{
    (void)state;
    struct admin_route r = route("GET", "/v1/instances", true, NULL, true);
    assert_int_equal(r.status, 401);
    assert_true(r.www_authenticate);
    static const char *const wrong[] = {"Bearer",
                                        "Bearer ",
                                        "Bearer 0123456789abcdef-toke",
                                        "Bearer 0123456789abcdef-tokenx",
                                        "Basic 0123456789abcdef-token",
                                        "0123456789abcdef-token"};
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++)
        assert_int_equal(route("GET", "/v1/instances", true, wrong[i], true).status, 401);
    assert_int_equal(
        route("GET", "/v1/instances", true, "Bearer 0123456789abcdef-token", true).resource,
        ADMIN_INSTANCES);
    assert_int_equal(
        route("GET", "/v1/peers", true, "bearer 0123456789abcdef-token", true).resource,
        ADMIN_PEERS);
    /* Public routes need no token even when one is configured. */
    assert_int_equal(route("GET", "/metrics", true, NULL, true).resource, ADMIN_METRICS);
}

/* The operator's actions on orphans: POST on the unix socket; never on TCP, token or not. */
static void
test_orphan_routes_unix_only(void **state)
{
    (void)state;
    assert_int_equal(route("GET", "/v1/orphans", false, NULL, false).resource, ADMIN_ORPHANS);
    assert_int_equal(route("POST", "/v1/orphans/release", false, NULL, false).resource,
                     ADMIN_ORPHANS_RELEASE);
    struct admin_route r = route("POST", "/v1/orphans/" UUID "/purge", false, NULL, false);
    assert_int_equal(r.resource, ADMIN_ORPHAN_PURGE);
    assert_string_equal(r.arg, UUID "/purge");
    r = route("POST", "/v1/orphans/" UUID "/adopt", false, NULL, false);
    assert_int_equal(r.resource, ADMIN_ORPHAN_ADOPT);
    assert_string_equal(r.arg, UUID "/adopt");
    assert_int_equal(admin_resource_access(ADMIN_ORPHAN_ADOPT), ADMIN_UNIX);
    assert_int_equal(route("GET", "/v1/orphans/" UUID "/adopt", false, NULL, false).status, 405);
    assert_int_equal(route("POST", "/v1/orphans/" UUID "/adopt/", false, NULL, false).status, 404);
    assert_int_equal(route("POST", "/v1/orphans/" UUID "/adoptx", false, NULL, false).status, 404);
    assert_int_equal(route("GET", "/v1/orphans/release", false, NULL, false).status, 405);
    assert_int_equal(route("POST", "/v1/orphans", false, NULL, false).status, 405);
    assert_int_equal(route("POST", "/v1/orphans/" UUID, false, NULL, false).status, 404);
    assert_int_equal(route("POST", "/v1/orphans/not-a-uuid/purge", false, NULL, false).status, 404);
    static const char *const unix_only[] = {"/v1/orphans", "/v1/orphans/release",
                                            "/v1/orphans/" UUID "/purge",
                                            "/v1/orphans/" UUID "/adopt"};
    for (size_t i = 0; i < sizeof(unix_only) / sizeof(unix_only[0]); i++)
        for (int m = 0; m < 2; m++)
            assert_int_equal(
                route(m ? "POST" : "GET", unix_only[i], true, "Bearer 0123456789abcdef-token", true)
                    .status,
                404);
}

static void
test_bearer_matches(void **state)
{
    (void)state;
    assert_true(admin_bearer_matches("Bearer 0123456789abcdef-token", TOKEN, TOKEN_SIZE));
    assert_false(admin_bearer_matches(NULL, TOKEN, TOKEN_SIZE));
    assert_false(admin_bearer_matches("Bearer 0123456789abcdef-token", NULL, 0));
    assert_false(admin_bearer_matches("Bearer ", (const uint8_t *)"", 0));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unix_socket_serves_everything),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_tcp_without_token),
        cmocka_unit_test(test_tcp_with_token),
        cmocka_unit_test(test_orphan_routes_unix_only),
        cmocka_unit_test(test_bearer_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
