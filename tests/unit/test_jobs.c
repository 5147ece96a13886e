/* Jobs: what a restart does by the recorded phase's rule, and the job's state lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/ops/jobs.h"

#include <errno.h>
#include <string.h>

static int
no_step(struct agent_op *op, struct na_error **err)
{
    (void)op;
    (void)err;
    return 0;
}

static const struct agent_job_phase phases[] = {
    {"prepare", no_step, AGENT_JOB_ROLLBACK}, {"transfer", no_step, AGENT_JOB_ASK_PEER},
    {"notify", no_step, AGENT_JOB_SKIP},      {"define", no_step, AGENT_JOB_REDO},
    {"announce", no_step, AGENT_JOB_SKIP},
};
static const struct agent_job_kind kind = {phases, NA_ARRAY_SIZE(phases), NULL};

static void
test_resume_plan_follows_the_recorded_phase_rule(void **state)
{
    (void)state;
    struct agent_job_resume r;
    assert_int_equal(agent_job_resume_plan(&kind, "prepare", &r), 0);
    assert_int_equal(r.action, AGENT_JOB_ROLLBACK);
    assert_int_equal(r.phase, 0);
    assert_int_equal(agent_job_resume_plan(&kind, "transfer", &r), 0);
    assert_int_equal(r.action, AGENT_JOB_ASK_PEER);
    assert_int_equal(r.phase, 1);
    /* skip: on with the next phase, not this one again */
    assert_int_equal(agent_job_resume_plan(&kind, "notify", &r), 0);
    assert_int_equal(r.action, AGENT_JOB_SKIP);
    assert_int_equal(r.phase, 3);
    assert_int_equal(agent_job_resume_plan(&kind, "define", &r), 0);
    assert_int_equal(r.action, AGENT_JOB_REDO);
    assert_int_equal(r.phase, 3);
    /* skip past the last phase: nothing is left to run */
    assert_int_equal(agent_job_resume_plan(&kind, "announce", &r), 0);
    assert_int_equal(r.phase, kind.n_phases);
    /* a phase this agent does not know (another version wrote it) */
    assert_int_equal(agent_job_resume_plan(&kind, "perform3", &r), -ENOENT);
    assert_int_equal(agent_job_resume_plan(&kind, "", &r), -ENOENT);
}

static void
test_restart_names(void **state)
{
    (void)state;
    assert_string_equal(agent_job_restart_name(AGENT_JOB_REDO), "redo");
    assert_string_equal(agent_job_restart_name(AGENT_JOB_SKIP), "skip");
    assert_string_equal(agent_job_restart_name(AGENT_JOB_ROLLBACK), "rollback");
    assert_string_equal(agent_job_restart_name(AGENT_JOB_ASK_PEER), "ask_peer");
    assert_string_equal(agent_job_restart_name((enum agent_job_restart)99), "unknown");
}

static void
test_state_lines(void **state)
{
    (void)state;
    struct agent_job job = {.kind = &kind};
    char buf[64];
    assert_null(agent_job_state_get(&job, "base", buf, sizeof(buf)));
    agent_job_state_put(&job, "state_before", "2");
    agent_job_state_put(&job, "base", "/var/lib/nodeagent/images/abc");
    agent_job_state_put(&job, "basement", "x");
    assert_string_equal(agent_job_state_get(&job, "base", buf, sizeof(buf)),
                        "/var/lib/nodeagent/images/abc");
    assert_string_equal(agent_job_state_get(&job, "basement", buf, sizeof(buf)), "x");
    assert_string_equal(agent_job_state_get(&job, "state_before", buf, sizeof(buf)), "2");
    /* replaced, not added twice */
    agent_job_state_put(&job, "base", "/other");
    assert_string_equal(agent_job_state_get(&job, "base", buf, sizeof(buf)), "/other");
    assert_int_equal(job.state.size, strlen("state_before=2\nbasement=x\nbase=/other\n"));
    assert_memory_equal(job.state.data, "state_before=2\nbasement=x\nbase=/other\n",
                        job.state.size);
    /* a value that does not fit the caller's buffer is not cut short */
    char small[4];
    assert_null(agent_job_state_get(&job, "base", small, sizeof(small)));
    assert_null(agent_job_state_get(&job, "bas", buf, sizeof(buf)));
    free(job.state.data);
}

/* A state read back from the store may be anything: no newline at the end, empty lines,
 * a key without '='. */
static void
test_state_from_a_damaged_blob(void **state)
{
    (void)state;
    struct agent_job job = {0};
    const char *raw = "\nnoequals\nbase=/x";
    job.state.size = strlen(raw);
    job.state.data = na_xmalloc(job.state.size);
    memcpy(job.state.data, raw, job.state.size);
    char buf[16];
    assert_string_equal(agent_job_state_get(&job, "base", buf, sizeof(buf)), "/x");
    assert_null(agent_job_state_get(&job, "noequals", buf, sizeof(buf)));
    agent_job_state_put(&job, "base", "/y");
    assert_string_equal(agent_job_state_get(&job, "base", buf, sizeof(buf)), "/y");
    free(job.state.data);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_plan_follows_the_recorded_phase_rule),
        cmocka_unit_test(test_restart_names),
        cmocka_unit_test(test_state_lines),
        cmocka_unit_test(test_state_from_a_damaged_blob),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
