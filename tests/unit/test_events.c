/* Bounded events: the FAILED stand-in for an event the bus refuses, and the summary a
 * finished intent keeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "agent/core/agent.h"
#include "agent/bus/events.h"

#include <errno.h>
#include <string.h>

#define CONSOLE_SIZE (300 * 1024)

/* A console_log DONE event with a console tail of size bytes. */
static struct agent_blob
console_done(size_t size)
{
    static uint8_t console[CONSOLE_SIZE];
    memset(console, 'x', sizeof(console));
    Nodeagent__V1__Event ev;
    nodeagent__v1__event__init(&ev);
    ev.event_id = (char *)"6f1c7a52-5a1d-4c1e-9a52-3d0f6c1b2a11";
    ev.request_id = (char *)"r-console";
    ev.instance_uuid = (char *)"0b7ae5e6-1d7c-4d3a-9a0e-0a4f5b6c7d8e";
    ev.node_id = (char *)"n1";
    ev.kind = NODEAGENT__V1__EVENT_KIND__EVENT_KIND_DONE;
    ev.request_kind = (char *)"console_log";
    ev.request_offset = 42;
    ev.state = NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_STOPPED;
    ev.console_log.data = console;
    ev.console_log.len = size;
    struct agent_blob b = {.size = nodeagent__v1__event__get_packed_size(&ev)};
    b.data = na_xmalloc(b.size);
    nodeagent__v1__event__pack(&ev, b.data);
    return b;
}

static void
test_stand_in_keeps_the_request_and_says_why(void **state)
{
    (void)state;
    struct agent_blob big = console_done(CONSOLE_SIZE);
    struct agent_blob out = {0};
    assert_int_equal(agent_event_stand_in(&big, "Broker: Message size too large", &out), 0);
    assert_true(out.size < 1024);
    Nodeagent__V1__Event *ev = nodeagent__v1__event__unpack(NULL, out.size, out.data);
    assert_non_null(ev);
    assert_int_equal(ev->kind, NODEAGENT__V1__EVENT_KIND__EVENT_KIND_FAILED);
    assert_string_equal(ev->event_id, "6f1c7a52-5a1d-4c1e-9a52-3d0f6c1b2a11");
    assert_string_equal(ev->request_id, "r-console");
    assert_string_equal(ev->instance_uuid, "0b7ae5e6-1d7c-4d3a-9a0e-0a4f5b6c7d8e");
    assert_string_equal(ev->request_kind, "console_log");
    assert_int_equal(ev->request_offset, 42);
    assert_int_equal(ev->console_log.len, 0);
    assert_non_null(ev->error);
    assert_int_equal(ev->error->code, NODEAGENT__V1__ERROR_CODE__ERROR_CODE_INTERNAL);
    assert_non_null(strstr(ev->error->message, "EVENT_KIND_DONE"));
    assert_non_null(strstr(ev->error->message, "Message size too large"));
    nodeagent__v1__event__free_unpacked(ev, NULL);
    free(out.data);
    free(big.data);
}

static void
test_stand_in_of_what_is_not_smaller_or_not_an_event(void **state)
{
    (void)state;
    struct agent_blob small = console_done(0);
    struct agent_blob out = {0};
    /* The stand-in would be no smaller than a small event: nothing to gain. */
    assert_int_equal(agent_event_stand_in(&small, "refused", &out), -EMSGSIZE);
    assert_null(out.data);
    free(small.data);

    uint8_t junk[] = {0xff, 0xff, 0xff, 0xff};
    struct agent_blob bad = {.data = junk, .size = sizeof(junk)};
    assert_int_equal(agent_event_stand_in(&bad, "refused", &out), -EINVAL);
    assert_null(out.data);
}

static void
test_summary_drops_only_the_console(void **state)
{
    (void)state;
    struct agent_blob b = console_done(CONSOLE_SIZE);
    agent_event_summarize(&b);
    assert_true(b.size < 1024);
    Nodeagent__V1__Event *ev = nodeagent__v1__event__unpack(NULL, b.size, b.data);
    assert_non_null(ev);
    assert_int_equal(ev->kind, NODEAGENT__V1__EVENT_KIND__EVENT_KIND_DONE);
    assert_string_equal(ev->event_id, "6f1c7a52-5a1d-4c1e-9a52-3d0f6c1b2a11");
    assert_string_equal(ev->request_id, "r-console");
    assert_int_equal(ev->state, NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_STOPPED);
    assert_int_equal(ev->console_log.len, 0);
    nodeagent__v1__event__free_unpacked(ev, NULL);

    /* Without a console there is nothing to drop: the bytes stay as they are. */
    size_t size = b.size;
    agent_event_summarize(&b);
    assert_int_equal(b.size, size);
    free(b.data);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stand_in_keeps_the_request_and_says_why),
        cmocka_unit_test(test_stand_in_of_what_is_not_smaller_or_not_an_event),
        cmocka_unit_test(test_summary_drops_only_the_console),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
