/* Node announcements from other agents are untrusted: agent_announcement_check() believes
 * only well-formed ones whose bus key is their node id, agent_announcement_matches_cert()
 * only those whose certificate names their node and allows their endpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "agent/outputs/announcement.h"
#include "agent/admin/metrics.h"

static Nodeagent__V1__NodeAnnouncement
good(void)
{
    Nodeagent__V1__NodeAnnouncement an = NODEAGENT__V1__NODE_ANNOUNCEMENT__INIT;
    an.node_id = "compute-7";
    an.time_ms = 1795000000000;
    an.agent_version = "0.1.0";
    an.tunnel_endpoint = "192.0.2.10";
    an.interval_s = 10;
    return an;
}

static void
refused(const Nodeagent__V1__NodeAnnouncement *an, const char *key, const char *field,
        const char *says)
{
    struct na_error *err = NULL;
    assert_true(agent_announcement_check(an, key, strlen(key), &err) < 0);
    assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
    if (strcmp(err->field, field) != 0 || !strstr(err->msg, says))
        fail_msg("field %s, message `%s`; wanted field %s saying `%s`", err->field, err->msg, field,
                 says);
    na_error_free(err);
}

static void
test_a_good_announcement_is_believed(void **state)
{
    (void)state;
    Nodeagent__V1__NodeAnnouncement an = good();
    struct na_error *err = NULL;
    assert_int_equal(agent_announcement_check(&an, "compute-7", 9, &err), 0);
    an.tunnel_endpoint = ""; /* a node without tunnels still says it is alive */
    assert_int_equal(agent_announcement_check(&an, "compute-7", 9, &err), 0);
    assert_null(err);
}

static void
test_bad_announcements_are_refused_naming_the_field(void **state)
{
    (void)state;
    Nodeagent__V1__NodeAnnouncement an = good();
    refused(&an, "compute-8", "key", "is not its node_id `compute-7`");

    an = good();
    an.node_id = "../etc";
    refused(&an, "../etc", "node_id", "a node id");
    an = good();
    an.node_id = "";
    refused(&an, "", "node_id", "is empty");

    an = good();
    an.tunnel_endpoint = "192.0.2.300";
    refused(&an, "compute-7", "tunnel_endpoint", "is not an IPv4 address");
    an.tunnel_endpoint = "224.0.0.1";
    refused(&an, "compute-7", "tunnel_endpoint", "multicast");
    an.tunnel_endpoint = "10.0.0.1/24";
    refused(&an, "compute-7", "tunnel_endpoint", "is not an IPv4 address");

    an = good();
    an.interval_s = 0;
    refused(&an, "compute-7", "interval_s", "out of range");
    an.interval_s = 86400;
    refused(&an, "compute-7", "interval_s", "out of range");

    an = good();
    an.time_ms = 0;
    refused(&an, "compute-7", "time_ms", "not a time");

    an = good();
    uint32_t vnis[] = {7, 0};
    an.vnis = vnis;
    an.n_vnis = 2;
    refused(&an, "compute-7", "vnis[1]", "out of range");
    vnis[1] = 16777216;
    refused(&an, "compute-7", "vnis[1]", "out of range");

    an = good();
    an.agent_version = "0.1 \x01";
    refused(&an, "compute-7", "agent_version", "printable ASCII");
}

static void
test_the_certificate_must_name_the_node_and_allow_the_endpoint(void **state)
{
    (void)state;
    struct trust_node_cert cert = {.node_id = "compute-7", .n_endpoints = 2};
    strcpy(cert.endpoints[0], "192.0.2.9");
    strcpy(cert.endpoints[1], "192.0.2.10");
    Nodeagent__V1__NodeAnnouncement an = good();
    struct na_error *err = NULL;
    assert_int_equal(agent_announcement_matches_cert(&an, &cert, &err), -1);
    an.tunnel_endpoint = ""; /* no tunnel: nothing to allow */
    assert_int_equal(agent_announcement_matches_cert(&an, &cert, &err), -1);
    assert_null(err);

    an = good();
    an.tunnel_endpoint = "192.0.2.11";
    assert_int_equal(agent_announcement_matches_cert(&an, &cert, &err),
                     AGENT_ANNOUNCE_REFUSED_ENDPOINT);
    assert_int_equal(err->code, NA_CODE_UNAUTHENTICATED);
    assert_non_null(strstr(err->msg, "192.0.2.11 is not one that the certificate of `compute-7`"));
    na_error_clear(&err);

    an = good();
    an.node_id = "compute-8";
    assert_int_equal(agent_announcement_matches_cert(&an, &cert, &err),
                     AGENT_ANNOUNCE_REFUSED_IDENTITY);
    assert_non_null(strstr(err->msg, "claims node `compute-8`"));
    na_error_clear(&err);

    cert.n_endpoints = 0; /* a node certified for no endpoint may announce none */
    an = good();
    assert_int_equal(agent_announcement_matches_cert(&an, &cert, &err),
                     AGENT_ANNOUNCE_REFUSED_ENDPOINT);
    na_error_clear(&err);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_good_announcement_is_believed),
        cmocka_unit_test(test_bad_announcements_are_refused_naming_the_field),
        cmocka_unit_test(test_the_certificate_must_name_the_node_and_allow_the_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
