/* The loop's mailbox (agent/core/mailbox.c): mail posted from other threads runs on the loop, in
 * order, and agent_mailbox_deliver() runs what was posted without waiting for the wake-up,
 * as a worker's completion does before it publishes DONE. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "agent/core/mailbox.h"
#include "common/common.h"

struct seen {
    char order[64];
};

static void
note(void *ctx, void *data)
{
    struct seen *s = ctx;
    strcat(s->order, data);
    free(data);
}

static void *
poster(void *mb)
{
    for (int i = 0; i < 3; i++)
        agent_mailbox_post(mb, note, na_xasprintf("%d", i));
    return NULL;
}

static void
test_deliver_runs_what_was_posted_in_order(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct seen s = {{0}};
    struct agent_mailbox *mb = agent_mailbox_new(&loop, &s);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, poster, mb), 0);
    pthread_join(t, NULL);
    /* The loop has not run: the wake-up is pending, the mail is delivered by the call. */
    assert_string_equal(s.order, "");
    agent_mailbox_deliver(mb);
    assert_string_equal(s.order, "012");
    /* The wake-up then finds nothing more. */
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_string_equal(s.order, "012");
    agent_mailbox_post(mb, note, na_xstrdup("3"));
    agent_mailbox_close(mb);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_string_equal(s.order, "0123");
    assert_int_equal(uv_loop_close(&loop), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deliver_runs_what_was_posted_in_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
