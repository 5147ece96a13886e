/* Failpoints (common/util.c): which items of NODEAGENT_FAILPOINTS act where.  Only the "fail"
 * action is exercised here: it returns instead of ending the process. */
#include "common/common.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>

#include <cmocka.h>

static void
spec(const char *value)
{
    assert_int_equal(setenv("NODEAGENT_FAILPOINTS", value, 1), 0);
}

static void
test_unset_and_other_names_do_nothing(void **state)
{
    (void)state;
    unsetenv("NODEAGENT_FAILPOINTS");
    assert_false(na_failpoint("create.defined"));
    spec("create.disk_made=fail,trace");
    assert_false(na_failpoint("create.defined"));
    assert_false(na_failpoint("create.disk"));
    assert_true(na_failpoint("create.disk_made"));
}

static void
test_an_action_for_one_request_acts_for_that_request_only(void **state)
{
    (void)state;
    spec("trace,create.defined=fail@r-2,delete.undefined=fail");
    struct na_log_ctx r1 = {.request_id = "r-1"}, r2 = {.request_id = "r-2"},
                      r22 = {.request_id = "r-22"};
    assert_false(na_failpoint("create.defined")); /* no request on this thread */
    na_failpoint_ctx_set(&r1);
    assert_false(na_failpoint("create.defined"));
    assert_true(na_failpoint("delete.undefined"));
    na_failpoint_ctx_set(&r22);
    assert_false(na_failpoint("create.defined"));
    na_failpoint_ctx_set(&r2);
    assert_true(na_failpoint("create.defined"));
    na_failpoint_ctx_set(NULL);
    assert_false(na_failpoint("create.defined"));
}

int
main(void)
{
    na_log_set_level(NA_LOG_ERROR); /* the trace lines are info */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unset_and_other_names_do_nothing),
        cmocka_unit_test(test_an_action_for_one_request_acts_for_that_request_only),
    };
    return cmocka_run_group_tests_name("failpoint", tests, NULL, NULL);
}
