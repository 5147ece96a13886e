/* JSON views of bus messages: exact shapes, enum naming, UTF-8 repair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proto/proto_json.h"
#include "common/common.h"

#include <string.h>

/* Compares j with the JSON text want, printing both on mismatch. */
static void
assert_json_equal(json_t *j, const char *want)
{
    json_error_t jerr;
    json_t *w = json_loads(want, JSON_DECODE_ANY, &jerr);
    if (!w)
        fail_msg("bad expected JSON: %s", jerr.text);
    if (!json_equal(j, w)) {
        char *got = json_dumps(j, JSON_SORT_KEYS | JSON_ENCODE_ANY);
        char *exp = json_dumps(w, JSON_SORT_KEYS | JSON_ENCODE_ANY);
        print_error("got:  %s\nwant: %s\n", got, exp);
        free(got);
        free(exp);
        json_decref(w);
        fail();
    }
    json_decref(w);
}

static void
test_event_failed_full(void **state)
{
    (void)state;
    Nodeagent__V1__Error e = NODEAGENT__V1__ERROR__INIT;
    e.code = NODEAGENT__V1__ERROR_CODE__ERROR_CODE_INVALID_ARGUMENT;
    e.message = "bad mac";
    e.field = "create.spec.nics[0].mac";
    Nodeagent__V1__Event ev = NODEAGENT__V1__EVENT__INIT;
    ev.event_id = "e1";
    ev.request_id = "r1";
    ev.instance_uuid = "11111111-2222-4333-8444-555555555555";
    ev.node_id = "n1";
    ev.time_ms = 1700000000123;
    ev.kind = NODEAGENT__V1__EVENT_KIND__EVENT_KIND_FAILED;
    ev.request_kind = "create";
    ev.error = &e;
    ev.state = NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_RUNNING;
    ev.message = "refused";
    ev.progress_percent = 0;
    ev.request_offset = 7;
    ev.replayed = 1;

    cleanup_json json_t *j = agent_event_to_json(&ev);
    assert_json_equal(j, "{\"event_id\":\"e1\",\"request_id\":\"r1\","
                         "\"instance_uuid\":\"11111111-2222-4333-8444-555555555555\","
                         "\"node_id\":\"n1\",\"time_ms\":1700000000123,\"kind\":\"FAILED\","
                         "\"request_kind\":\"create\",\"error\":{\"code\":\"INVALID_ARGUMENT\","
                         "\"message\":\"bad mac\",\"field\":\"create.spec.nics[0].mac\"},"
                         "\"state\":\"RUNNING\",\"message\":\"refused\",\"progress_percent\":0,"
                         "\"request_offset\":7,\"replayed\":true}");
}

static void
test_event_minimal_omits_optional_keys(void **state)
{
    (void)state;
    Nodeagent__V1__Event ev = NODEAGENT__V1__EVENT__INIT;
    ev.kind = NODEAGENT__V1__EVENT_KIND__EVENT_KIND_PROGRESS;
    ev.progress_percent = 42;
    ev.request_offset = -1;
    cleanup_json json_t *j = agent_event_to_json(&ev);
    assert_json_equal(j, "{\"event_id\":\"\",\"request_id\":\"\",\"instance_uuid\":\"\","
                         "\"node_id\":\"\",\"time_ms\":0,\"kind\":\"PROGRESS\","
                         "\"request_kind\":\"\",\"message\":\"\",\"progress_percent\":42,"
                         "\"request_offset\":-1,\"replayed\":false}");
    assert_null(json_object_get(j, "error"));
    assert_null(json_object_get(j, "state"));
    assert_null(json_object_get(j, "console_log"));
}

static void
test_event_refused_before_authentication(void **state)
{
    (void)state;
    Nodeagent__V1__Error e = NODEAGENT__V1__ERROR__INIT;
    e.code = NODEAGENT__V1__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED;
    e.message = "no signature";
    Nodeagent__V1__Event ev = NODEAGENT__V1__EVENT__INIT;
    ev.event_id = "e2";
    ev.node_id = "n1";
    ev.kind = NODEAGENT__V1__EVENT_KIND__EVENT_KIND_FAILED;
    ev.error = &e;
    ev.request_offset = 12;
    ev.unverified_request_id = "r9";
    cleanup_json json_t *j = agent_event_to_json(&ev);
    assert_json_equal(j, "{\"event_id\":\"e2\",\"request_id\":\"\",\"instance_uuid\":\"\","
                         "\"node_id\":\"n1\",\"time_ms\":0,\"kind\":\"FAILED\","
                         "\"request_kind\":\"\",\"error\":{\"code\":\"UNAUTHENTICATED\","
                         "\"message\":\"no signature\",\"field\":\"\"},\"message\":\"\","
                         "\"progress_percent\":0,\"request_offset\":12,"
                         "\"unverified_request_id\":\"r9\",\"replayed\":false}");
}

static void
test_event_every_kind_name(void **state)
{
    (void)state;
    static const char *const names[] = {"UNSPECIFIED", "ACCEPTED", "PROGRESS",
                                        "DONE",        "FAILED",   "STATE_CHANGED"};
    for (size_t i = 0; i < NA_ARRAY_SIZE(names); i++) {
        Nodeagent__V1__Event ev = NODEAGENT__V1__EVENT__INIT;
        ev.kind = (Nodeagent__V1__EventKind)i;
        cleanup_json json_t *j = agent_event_to_json(&ev);
        assert_string_equal(json_string_value(json_object_get(j, "kind")), names[i]);
    }
}

static void
test_event_unknown_enums_render_as_numbers(void **state)
{
    (void)state;
    Nodeagent__V1__Error e = NODEAGENT__V1__ERROR__INIT;
    e.code = (Nodeagent__V1__ErrorCode)77;
    Nodeagent__V1__Event ev = NODEAGENT__V1__EVENT__INIT;
    ev.kind = (Nodeagent__V1__EventKind)42;
    ev.state = (Nodeagent__V1__InstanceState)-3;
    ev.error = &e;
    cleanup_json json_t *j = agent_event_to_json(&ev);
    assert_string_equal(json_string_value(json_object_get(j, "kind")), "42");
    assert_string_equal(json_string_value(json_object_get(j, "state")), "-3");
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "code")),
                        "77");
}

static void
test_event_console_log_utf8_repair(void **state)
{
    (void)state;
    /* valid é € 😀, lone 0xff, truncated E2 82, overlong C0 80, surrogate ED A0 80,
     * out-of-range F4 90, then a sequence truncated by the end of the buffer. */
    static const char raw[] = "ok \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xff|\xe2\x82"
                              "A|\xc0\x80|\xed\xa0\x80|\xf4\x90|\xf0\x9f\x98";
    Nodeagent__V1__Event ev = NODEAGENT__V1__EVENT__INIT;
    ev.kind = NODEAGENT__V1__EVENT_KIND__EVENT_KIND_DONE;
    ev.console_log.data = (uint8_t *)raw;
    ev.console_log.len = sizeof(raw) - 1;
    ev.message = "bad \xfe text";
    cleanup_json json_t *j = agent_event_to_json(&ev);
    /* What Python's bytes.decode("utf-8", "replace") gives for the same bytes. */
    assert_string_equal(json_string_value(json_object_get(j, "console_log")),
                        "ok \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 \xef\xbf\xbd|\xef\xbf\xbd"
                        "A|\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                        "\xef\xbf\xbd\xef\xbf\xbd|\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(j, "message")), "bad \xef\xbf\xbd text");
    /* And it serializes (jansson refuses invalid UTF-8 at json_dumps time). */
    char *text = json_dumps(j, 0);
    assert_non_null(text);
    free(text);
}

static void
test_event_console_log_keeps_nul(void **state)
{
    (void)state;
    static const uint8_t raw[] = {'a', 0, 'b'};
    json_t *s = agent_json_bytes(raw, sizeof(raw));
    assert_int_equal(json_string_length(s), 3);
    assert_memory_equal(json_string_value(s), raw, 3);
    json_decref(s);
}

static void
test_enum_name(void **state)
{
    (void)state;
    char buf[16];
    assert_string_equal(
        agent_proto_enum_name(&nodeagent__v1__error_code__descriptor, 8, buf, sizeof(buf)),
        "NO_CAPACITY");
    assert_string_equal(
        agent_proto_enum_name(&nodeagent__v1__instance_state__descriptor, 9, buf, sizeof(buf)),
        "MIGRATING");
    assert_string_equal(
        agent_proto_enum_name(&nodeagent__v1__image_format__descriptor, 1, buf, sizeof(buf)),
        "QCOW2");
    assert_string_equal(
        agent_proto_enum_name(&nodeagent__v1__reboot_type__descriptor, 99, buf, sizeof(buf)), "99");
}

static void
test_capacity(void **state)
{
    (void)state;
    Nodeagent__V1__Inventory vcpu = NODEAGENT__V1__INVENTORY__INIT;
    vcpu.resource_class = "VCPU";
    vcpu.total = 16;
    vcpu.reserved = 2;
    vcpu.min_unit = 1;
    vcpu.max_unit = 14;
    vcpu.step_size = 1;
    vcpu.allocation_ratio = 4.0;
    vcpu.used = 3;
    Nodeagent__V1__Inventory mem = NODEAGENT__V1__INVENTORY__INIT;
    mem.resource_class = "MEMORY_MB";
    mem.total = UINT64_MAX;
    mem.allocation_ratio = 1.5;
    Nodeagent__V1__Inventory *invs[] = {&vcpu, &mem};
    char *traits[] = {"HW_CPU_X86_AVX2", "COMPUTE_NET_VIRTIO"};
    Nodeagent__V1__HealthCheck bus = NODEAGENT__V1__HEALTH_CHECK__INIT;
    bus.name = "bus";
    bus.ok = 1;
    Nodeagent__V1__HealthCheck lv = NODEAGENT__V1__HEALTH_CHECK__INIT;
    lv.name = "libvirt";
    lv.detail = "connection refused";
    Nodeagent__V1__HealthCheck *checks[] = {&bus, &lv};
    Nodeagent__V1__Health health = NODEAGENT__V1__HEALTH__INIT;
    health.n_checks = 2;
    health.checks = checks;
    Nodeagent__V1__MemorySharing ms = NODEAGENT__V1__MEMORY_SHARING__INIT;
    ms.ksm_enabled = 1;
    ms.pages_sharing = 100;
    ms.saved_bytes = 409600;

    Nodeagent__V1__CapacityReport r = NODEAGENT__V1__CAPACITY_REPORT__INIT;
    r.node_id = "n1";
    r.time_ms = 5;
    r.n_inventories = 2;
    r.inventories = invs;
    r.n_traits = 2;
    r.traits = traits;
    r.instance_count = 3;
    r.health = &health;
    r.memory_sharing = &ms;

    cleanup_json json_t *j = agent_capacity_to_json(&r);
    assert_json_equal(
        j, "{\"node_id\":\"n1\",\"time_ms\":5,\"inventories\":["
           "{\"resource_class\":\"VCPU\",\"total\":16,\"reserved\":2,\"min_unit\":1,"
           "\"max_unit\":14,\"step_size\":1,\"allocation_ratio\":4.0,\"used\":3},"
           "{\"resource_class\":\"MEMORY_MB\",\"total\":9223372036854775807,\"reserved\":0,"
           "\"min_unit\":0,\"max_unit\":0,\"step_size\":0,\"allocation_ratio\":1.5,\"used\":0}],"
           "\"traits\":[\"HW_CPU_X86_AVX2\",\"COMPUTE_NET_VIRTIO\"],\"instance_count\":3,"
           "\"health\":{\"healthy\":false,\"checks\":[{\"name\":\"bus\",\"ok\":true,"
           "\"detail\":\"\"},{\"name\":\"libvirt\",\"ok\":false,"
           "\"detail\":\"connection refused\"}]},"
           "\"memory_sharing\":{\"ksm_enabled\":true,\"pages_sharing\":100,"
           "\"saved_bytes\":409600}}");

    r.health = NULL;
    r.memory_sharing = NULL;
    cleanup_json json_t *bare = agent_capacity_to_json(&r);
    assert_null(json_object_get(bare, "health"));
    assert_null(json_object_get(bare, "memory_sharing"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_failed_full),
        cmocka_unit_test(test_event_minimal_omits_optional_keys),
        cmocka_unit_test(test_event_refused_before_authentication),
        cmocka_unit_test(test_event_every_kind_name),
        cmocka_unit_test(test_event_unknown_enums_render_as_numbers),
        cmocka_unit_test(test_event_console_log_utf8_repair),
        cmocka_unit_test(test_event_console_log_keeps_nul),
        cmocka_unit_test(test_enum_name),
        cmocka_unit_test(test_capacity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
