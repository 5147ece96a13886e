/* The dispatcher: one operation at a time per key, in order; keys run concurrently;
 * parking returns exactly the operations that have not started; a job's next step runs
 * before what waits in its lane. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/ops/dispatch.h"
#include "common/common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

struct trace {
    pthread_mutex_t lock;
    char log[512]; /* "s:A1 e:A1 ..." start/end marks in the order they happened */
    atomic_int running_a;
    atomic_int max_running_a;
    atomic_bool b_started;
    bool a_saw_b; /* A1 saw B start while A1 was running: keys are concurrent */
    int done;
    char started[256]; /* start() callbacks, on the loop */
};

struct item {
    struct trace *t;
    char name[8];
    bool wait_for_b;
};

static void
mark(struct trace *t, const char *what, const char *name)
{
    pthread_mutex_lock(&t->lock);
    strcat(t->log, what);
    strcat(t->log, name);
    strcat(t->log, " ");
    pthread_mutex_unlock(&t->lock);
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = ms * 1000000L};
    nanosleep(&ts, NULL);
}

static void
work(void *data)
{
    struct item *it = data;
    struct trace *t = it->t;
    bool is_a = it->name[0] == 'A';
    if (is_a) {
        int now = atomic_fetch_add(&t->running_a, 1) + 1;
        int max = atomic_load(&t->max_running_a);
        while (now > max && !atomic_compare_exchange_weak(&t->max_running_a, &max, now))
            ;
    } else {
        atomic_store(&t->b_started, true);
    }
    mark(t, "s:", it->name);
    if (it->wait_for_b) {
        for (int i = 0; i < 2000 && !atomic_load(&t->b_started); i++)
            sleep_ms(1);
        t->a_saw_b = atomic_load(&t->b_started);
    }
    sleep_ms(5);
    mark(t, "e:", it->name);
    if (is_a)
        atomic_fetch_sub(&t->running_a, 1);
}

static void
start(void *data)
{
    struct item *it = data;
    strcat(it->t->started, it->name);
}

static void
done(void *data)
{
    struct item *it = data;
    it->t->done++;
    free(it);
}

static struct item *
item_new(struct trace *t, const char *name)
{
    struct item *it = na_xcalloc(1, sizeof(*it));
    it->t = t;
    snprintf(it->name, sizeof(it->name), "%s", name);
    return it;
}

static int n_parked;
static char parked_names[64];

static void
park(void *data)
{
    struct item *it = data;
    n_parked++;
    strcat(parked_names, it->name);
    free(it);
}

static void
test_serial_per_key_concurrent_across_keys(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct agent_dispatch *d = agent_dispatch_new(&loop);
    struct trace t = {.lock = PTHREAD_MUTEX_INITIALIZER};

    struct item *a1 = item_new(&t, "A1");
    a1->wait_for_b = true;
    agent_dispatch_submit(d, "A", start, work, done, park, a1);
    agent_dispatch_submit(d, "A", start, work, done, park, item_new(&t, "A2"));
    agent_dispatch_submit(d, "A", start, work, done, park, item_new(&t, "A3"));
    agent_dispatch_submit(d, "B", start, work, done, park, item_new(&t, "B1"));
    assert_int_equal(agent_dispatch_running(d), 2);
    assert_int_equal(agent_dispatch_queued(d), 2);

    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(t.done, 4);
    assert_int_equal(atomic_load(&t.max_running_a), 1);
    assert_true(t.a_saw_b);
    /* A's operations ran in submission order, each finished before the next started. */
    const char *a_order[] = {"s:A1", "e:A1", "s:A2", "e:A2", "s:A3", "e:A3"};
    const char *pos = t.log;
    for (size_t i = 0; i < NA_ARRAY_SIZE(a_order); i++) {
        const char *p = strstr(pos, a_order[i]);
        if (!p)
            fail_msg("`%s` missing or out of order in `%s`", a_order[i], t.log);
        pos = p;
    }
    assert_int_equal(agent_dispatch_running(d), 0);
    assert_int_equal(agent_dispatch_queued(d), 0);
    agent_dispatch_free(d);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void
test_park_returns_only_queued(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct agent_dispatch *d = agent_dispatch_new(&loop);
    struct trace t = {.lock = PTHREAD_MUTEX_INITIALIZER};
    agent_dispatch_submit(d, "A", start, work, done, park, item_new(&t, "A1"));
    agent_dispatch_submit(d, "A", start, work, done, park, item_new(&t, "A2"));
    agent_dispatch_submit(d, "A", start, work, done, park, item_new(&t, "A3"));
    agent_dispatch_submit(d, "C", start, work, done, park, item_new(&t, "C1"));

    n_parked = 0;
    parked_names[0] = '\0';
    agent_dispatch_park(d);
    assert_int_equal(n_parked, 2);
    assert_string_equal(parked_names, "A2A3");
    assert_int_equal(agent_dispatch_queued(d), 0);

    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(t.done, 2);
    assert_string_equal(t.started, "A1C1");
    agent_dispatch_free(d);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static struct agent_dispatch *continue_d;

/* done() of a job's first step: its next step goes ahead of what waits in the lane. */
static void
done_then_next_step(void *data)
{
    struct item *it = data;
    it->t->done++;
    snprintf(it->name, sizeof(it->name), "%s", "J2");
    agent_dispatch_submit_first(continue_d, "A", work, done, park, it);
}

static void
test_submit_first_runs_the_next_step_before_the_lane(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct agent_dispatch *d = agent_dispatch_new(&loop);
    continue_d = d;
    struct trace t = {.lock = PTHREAD_MUTEX_INITIALIZER};
    agent_dispatch_submit(d, "A", start, work, done_then_next_step, park, item_new(&t, "J1"));
    agent_dispatch_submit(d, "A", start, work, done, park, item_new(&t, "A2"));
    agent_dispatch_submit(d, "A", start, work, done, park, item_new(&t, "A3"));

    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(t.done, 4);
    assert_string_equal(t.log, "s:J1 e:J1 s:J2 e:J2 s:A2 e:A2 s:A3 e:A3 ");
    /* start() is the operation's, not each step's: the next step has none. */
    assert_string_equal(t.started, "J1A2A3");
    assert_int_equal(agent_dispatch_running(d), 0);
    assert_int_equal(agent_dispatch_queued(d), 0);
    agent_dispatch_free(d);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serial_per_key_concurrent_across_keys),
        cmocka_unit_test(test_park_returns_only_queued),
        cmocka_unit_test(test_submit_first_runs_the_next_step_before_the_lane),
    };
    return cmocka_run_group_tests_name("dispatch", tests, NULL, NULL);
}
