/* The guest uid choice of agent/observed/uids.c: never a uid in use, on a host user or seen on a
 * process or file; fresh uids first; a released uid only once a scan cleared it, the one
 * released longest ago first; a held uid never. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>

#include "agent/observed/uids.h"

static bool
host_user_70001(uint32_t uid, void *ctx)
{
    (void)ctx;
    return uid == 70001;
}

static void
test_lowest_fresh_uid_first(void **state)
{
    (void)state;
    uint32_t in_use[] = {70000, 70002};
    struct agent_uid_quarantined q[] = {{.uid = 70003, .released_ms = 1, .cleared = true}};
    struct agent_uid_choice_in in = {
        .min = 70000,
        .max = 70010,
        .in_use = in_use,
        .n_in_use = 2,
        .quarantined = q,
        .n_quarantined = 1,
        .host_user = host_user_70001,
    };
    uint32_t uid = 0;
    assert_int_equal(agent_uid_choose(&in, &uid), 0);
    assert_int_equal(uid, 70004); /* 70001 a host user, 70003 released: fresh ones first */
}

static void
test_busy_uid_is_skipped(void **state)
{
    (void)state;
    uint32_t busy[] = {70000, 70001};
    struct agent_uid_choice_in in = {.min = 70000, .max = 70002, .busy = busy, .n_busy = 2};
    uint32_t uid = 0;
    assert_int_equal(agent_uid_choose(&in, &uid), 0);
    assert_int_equal(uid, 70002);
    in.max = 70001; /* only busy ones left: a later scan may free one */
    assert_int_equal(agent_uid_choose(&in, &uid), -EAGAIN);
}

static void
test_released_uid_waits_for_a_clearing_scan(void **state)
{
    (void)state;
    struct agent_uid_quarantined q[] = {{.uid = 70000, .released_ms = 5}};
    struct agent_uid_choice_in in = {
        .min = 70000, .max = 70000, .quarantined = q, .n_quarantined = 1};
    uint32_t uid = 0;
    assert_int_equal(agent_uid_choose(&in, &uid), -EAGAIN);
    q[0].cleared = true;
    assert_int_equal(agent_uid_choose(&in, &uid), 0);
    assert_int_equal(uid, 70000);
    /* Cleared, but the latest scan saw it again. */
    uint32_t busy[] = {70000};
    in.busy = busy;
    in.n_busy = 1;
    assert_int_equal(agent_uid_choose(&in, &uid), -EAGAIN);
}

static void
test_released_longest_ago_first(void **state)
{
    (void)state;
    struct agent_uid_quarantined q[] = {
        {.uid = 70000, .released_ms = 300, .cleared = true},
        {.uid = 70001, .released_ms = 100, .cleared = true},
        {.uid = 70002, .released_ms = 200, .cleared = true},
        {.uid = 70003, .released_ms = 50, .cleared = false},
    };
    struct agent_uid_choice_in in = {
        .min = 70000, .max = 70003, .quarantined = q, .n_quarantined = 4};
    uint32_t uid = 0;
    assert_int_equal(agent_uid_choose(&in, &uid), 0);
    assert_int_equal(uid, 70001);
}

static void
test_held_uid_is_never_reused(void **state)
{
    (void)state;
    struct agent_uid_quarantined q[] = {
        {.uid = 70000, .released_ms = 1, .held = true, .cleared = true}};
    struct agent_uid_choice_in in = {
        .min = 70000, .max = 70000, .quarantined = q, .n_quarantined = 1};
    uint32_t uid = 0;
    assert_int_equal(agent_uid_choose(&in, &uid), -ENOSPC);
}

static void
test_full_range(void **state)
{
    (void)state;
    uint32_t in_use[] = {70000, 70001};
    struct agent_uid_choice_in in = {.min = 70000, .max = 70001, .in_use = in_use, .n_in_use = 2};
    uint32_t uid = 0;
    assert_int_equal(agent_uid_choose(&in, &uid), -ENOSPC);
    /* The top of the uid space does not wrap around. */
    struct agent_uid_choice_in top = {.min = UINT32_MAX - 1, .max = UINT32_MAX};
    assert_int_equal(agent_uid_choose(&top, &uid), 0);
    assert_int_equal(uid, UINT32_MAX - 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lowest_fresh_uid_first),
        cmocka_unit_test(test_busy_uid_is_skipped),
        cmocka_unit_test(test_released_uid_waits_for_a_clearing_scan),
        cmocka_unit_test(test_released_longest_ago_first),
        cmocka_unit_test(test_held_uid_is_never_reused),
        cmocka_unit_test(test_full_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
