/* The state store: schema versioning, the intent log, the outbox and the Placement
 * consumers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "agent/core/store.h"
#include "agent/core/store_jobs.h"
#include "agent/core/store_snapshots.h"

#include <errno.h>
#include <sqlite3.h>
#include <string.h>

struct fixture {
    char dir[64];
    char *path;
    struct agent_store *store;
};

static int
setup(void **state)
{
    struct fixture *f = na_xcalloc(1, sizeof(*f));
    strcpy(f->dir, "/tmp/nodeagent-test-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->path = na_xasprintf("%s/state.db", f->dir);
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(agent_store_open(f->path, &f->store, &err), 0);
    *state = f;
    return 0;
}

static int
teardown(void **state)
{
    struct fixture *f = *state;
    agent_store_close(f->store);
    const char *suffixes[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < 3; i++) {
        cleanup_free char *p = na_xasprintf("%s%s", f->path, suffixes[i]);
        unlink(p);
    }
    rmdir(f->dir);
    free(f->path);
    free(f);
    return 0;
}

static void
insert(struct agent_store *store, const char *request_id, enum agent_intent_phase phase)
{
    struct agent_intent in = {
        .request_id = (char *)request_id,
        .kind = (char *)"start",
        .instance_uuid = (char *)"0b7ae5e6-1d7c-4d3a-9a0e-0a4f5b6c7d8e",
        .body_hash = (char *)"abc",
        .envelope = {.data = (uint8_t *)"\x0a\x02r1", .size = 4},
        .bus_offset = 7,
        .phase = phase,
        .accepted_event = {.data = (uint8_t *)"acc", .size = 3},
        .received_ms = 1000,
    };
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(agent_store_intent_insert(store, &in, &err), 0);
}

static void
test_schema_version(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(agent_store_schema_version(f->store), 10);
    agent_store_close(f->store);
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(agent_store_open(f->path, &f->store, &err), 0);
    assert_int_equal(agent_store_schema_version(f->store), 10);
}

/* The store's id is made once, kept across opens, and differs from a new store's. */
static void
test_store_id(void **state)
{
    struct fixture *f = *state;
    char id[37];
    snprintf(id, sizeof(id), "%s", agent_store_id(f->store));
    assert_true(na_uuid_is_valid(id));
    agent_store_close(f->store);
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(agent_store_open(f->path, &f->store, &err), 0);
    assert_string_equal(agent_store_id(f->store), id);

    cleanup_free char *other_path = na_xasprintf("%s.other", f->path);
    struct agent_store *other = NULL;
    assert_int_equal(agent_store_open(other_path, &other, &err), 0);
    assert_true(na_uuid_is_valid(agent_store_id(other)));
    assert_string_not_equal(agent_store_id(other), id);
    agent_store_close(other);
    unlink(other_path);
    cleanup_free char *wal = na_xasprintf("%s-wal", other_path);
    cleanup_free char *shm = na_xasprintf("%s-shm", other_path);
    unlink(wal);
    unlink(shm);
}

static void
test_tombstones(void **state)
{
    struct fixture *f = *state;
    cleanup_error struct na_error *err = NULL;
    const char *u1 = "6f1c2a3e-4b5d-4e6f-8a7b-9c0d1e2f3a4b";
    const char *u2 = "7a2d3b4f-5c6e-4f70-9b8c-0d1e2f3a4b5c";
    assert_int_equal(agent_store_tombstone_has(f->store, u1, &err), 0);
    assert_int_equal(agent_store_tombstone_put(f->store, u1, &err), 0);
    assert_int_equal(agent_store_tombstone_put(f->store, u2, &err), 0);
    assert_int_equal(agent_store_tombstone_has(f->store, u1, &err), 1);
    char(*list)[37] = NULL;
    size_t n = 0;
    assert_int_equal(agent_store_tombstone_list(f->store, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    free(list);
    assert_int_equal(agent_store_tombstone_delete(f->store, u1, &err), 0);
    assert_int_equal(agent_store_tombstone_has(f->store, u1, &err), 0);
    /* Bounded: older than the retention, dropped. */
    assert_int_equal(agent_store_tombstone_prune(f->store, na_now_ms() - 60000, &err), 0);
    assert_int_equal(agent_store_tombstone_prune(f->store, na_now_ms() + 1, &err), 1);
    assert_int_equal(agent_store_tombstone_has(f->store, u2, &err), 0);

    assert_int_equal(agent_store_orphan_released(f->store, u1, &err), 0);
    assert_int_equal(agent_store_orphan_release(f->store, u1, &err), 0);
    assert_int_equal(agent_store_orphan_released(f->store, u1, &err), 1);
}

static void
test_future_schema_refused(void **state)
{
    struct fixture *f = *state;
    agent_store_close(f->store);
    f->store = NULL;
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    cleanup_error struct na_error *err = NULL;
    assert_true(agent_store_open(f->path, &f->store, &err) < 0);
    assert_non_null(strstr(err->msg, "schema version 99"));
}

static void
test_intent_lifecycle(void **state)
{
    struct fixture *f = *state;
    cleanup_error struct na_error *err = NULL;
    struct agent_intent *got = NULL;
    assert_int_equal(agent_store_intent_get(f->store, "r1", &got, &err), -ENOENT);

    insert(f->store, "r1", AGENT_INTENT_ACCEPTED);
    assert_int_equal(agent_store_intent_get(f->store, "r1", &got, &err), 0);
    assert_string_equal(got->kind, "start");
    assert_int_equal(got->phase, AGENT_INTENT_ACCEPTED);
    assert_int_equal(got->attempts, 0);
    assert_int_equal(got->bus_offset, 7);
    assert_int_equal(got->envelope.size, 4);
    assert_memory_equal(got->accepted_event.data, "acc", 3);
    assert_int_equal(got->result_event.size, 0);
    agent_intent_free(got);

    assert_int_equal(agent_store_intent_start(f->store, "r1", &err), 0);
    assert_int_equal(agent_store_intent_start(f->store, "r1", &err), 0);
    struct agent_blob result = {.data = (uint8_t *)"done!", .size = 5};
    assert_int_equal(agent_store_intent_finish(f->store, "r1", AGENT_INTENT_DONE, &result, &err),
                     0);
    assert_int_equal(agent_store_intent_get(f->store, "r1", &got, &err), 0);
    assert_int_equal(got->phase, AGENT_INTENT_DONE);
    assert_int_equal(got->attempts, 2);
    assert_memory_equal(got->result_event.data, "done!", 5);
    /* Finished: the body hash and the result stay, the envelope goes. */
    assert_string_equal(got->body_hash, "abc");
    assert_int_equal(got->envelope.size, 0);
    agent_intent_free(got);
    assert_int_equal(agent_store_intent_count(f->store), 1);
    assert_true(agent_store_size_bytes(f->store) > 0);
}

static void
test_duplicate_request_id_refused(void **state)
{
    struct fixture *f = *state;
    insert(f->store, "r1", AGENT_INTENT_ACCEPTED);
    struct agent_intent in = {.request_id = (char *)"r1",
                              .kind = (char *)"stop",
                              .body_hash = (char *)"x",
                              .phase = AGENT_INTENT_ACCEPTED};
    cleanup_error struct na_error *err = NULL;
    assert_true(agent_store_intent_insert(f->store, &in, &err) < 0);
    assert_non_null(strstr(err->msg, "UNIQUE"));
}

static int
collect(struct agent_intent *intent, void *ctx)
{
    char *buf = ctx;
    strcat(buf, intent->request_id);
    strcat(buf, ",");
    agent_intent_free(intent);
    return 0;
}

static void
test_open_intents_in_order(void **state)
{
    struct fixture *f = *state;
    cleanup_error struct na_error *err = NULL;
    insert(f->store, "c", AGENT_INTENT_ACCEPTED);
    insert(f->store, "a", AGENT_INTENT_ACCEPTED);
    insert(f->store, "d", AGENT_INTENT_FAILED);
    insert(f->store, "b", AGENT_INTENT_ACCEPTED);
    assert_int_equal(agent_store_intent_start(f->store, "a", &err), 0);
    assert_int_equal(agent_store_intent_finish(f->store, "b", AGENT_INTENT_DONE, NULL, &err), 0);
    char seen[64] = "";
    assert_int_equal(agent_store_intent_each_open(f->store, collect, seen, &err), 0);
    assert_string_equal(seen, "c,a,");

    /* Only finished intents older than the cut are pruned. */
    assert_int_equal(agent_store_intent_prune(f->store, na_now_ms() + 1000, &err), 2);
    seen[0] = '\0';
    assert_int_equal(agent_store_intent_each_open(f->store, collect, seen, &err), 0);
    assert_string_equal(seen, "c,a,");
}

static int
outbox_collect(int64_t id, const char *topic, const char *key, const struct agent_blob *payload,
               void *ctx)
{
    char *buf = ctx;
    char line[128];
    snprintf(line, sizeof(line), "%lld:%s:%s:%.*s;", (long long)id, topic, key, (int)payload->size,
             (const char *)payload->data);
    strcat(buf, line);
    return 0;
}

static void
test_outbox(void **state)
{
    struct fixture *f = *state;
    cleanup_error struct na_error *err = NULL;
    struct agent_blob p1 = {.data = (uint8_t *)"one", .size = 3};
    struct agent_blob p2 = {.data = (uint8_t *)"two", .size = 3};
    int64_t id1, id2;
    assert_int_equal(agent_store_begin(f->store, &err), 0);
    assert_int_equal(agent_store_outbox_add(f->store, "t.events", "k1", &p1, &id1, &err), 0);
    assert_int_equal(agent_store_outbox_add(f->store, "t.events", NULL, &p2, &id2, &err), 0);
    assert_int_equal(agent_store_commit(f->store, &err), 0);
    assert_true(id2 > id1);
    assert_int_equal(agent_store_outbox_count(f->store), 2);

    char seen[256] = "";
    assert_int_equal(agent_store_outbox_each(f->store, 0, 10, outbox_collect, seen, &err), 0);
    char want[256];
    snprintf(want, sizeof(want), "%lld:t.events:k1:one;%lld:t.events::two;", (long long)id1,
             (long long)id2);
    assert_string_equal(seen, want);

    seen[0] = '\0';
    assert_int_equal(agent_store_outbox_each(f->store, id1, 10, outbox_collect, seen, &err), 0);
    assert_non_null(strstr(seen, ":two;"));
    assert_null(strstr(seen, ":one;"));

    /* A row the bus refused for good is replaced in place: same id, same order. */
    struct agent_blob small = {.data = (uint8_t *)"1", .size = 1};
    assert_int_equal(agent_store_outbox_replace(f->store, id1, &small, &err), 0);
    seen[0] = '\0';
    assert_int_equal(agent_store_outbox_each(f->store, 0, 10, outbox_collect, seen, &err), 0);
    snprintf(want, sizeof(want), "%lld:t.events:k1:1;%lld:t.events::two;", (long long)id1,
             (long long)id2);
    assert_string_equal(seen, want);

    assert_int_equal(agent_store_outbox_delete(f->store, id1, &err), 0);
    assert_int_equal(agent_store_outbox_count(f->store), 1);
}

static void
test_placement_consumers(void **state)
{
    struct fixture *f = *state;
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(agent_store_consumer_add(f->store, "c2", &err), 0);
    assert_int_equal(agent_store_consumer_add(f->store, "c1", &err), 0);
    assert_int_equal(agent_store_consumer_add(f->store, "c1", &err), 0); /* again: no-op */
    char **list = NULL;
    size_t n = 0;
    assert_int_equal(agent_store_consumer_list(f->store, &list, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(list[0], "c1");
    assert_string_equal(list[1], "c2");
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
    assert_int_equal(agent_store_consumer_delete(f->store, "c1", &err), 0);
    assert_int_equal(agent_store_consumer_list(f->store, &list, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0], "c2");
    free(list[0]);
    free(list);
}

static void
test_rollback(void **state)
{
    struct fixture *f = *state;
    cleanup_error struct na_error *err = NULL;
    struct agent_blob p = {.data = (uint8_t *)"x", .size = 1};
    assert_int_equal(agent_store_begin(f->store, &err), 0);
    assert_int_equal(agent_store_outbox_add(f->store, "t", "k", &p, NULL, &err), 0);
    agent_store_rollback(f->store);
    assert_int_equal(agent_store_outbox_count(f->store), 0);
}

/* A job: recorded with its first phase, moved phase by phase with its state, listed oldest
 * first, and gone once removed; its id is unique and its state is small. */
static void
test_jobs(void **state)
{
    struct fixture *f = *state;
    cleanup_error struct na_error *err = NULL;
    struct agent_job_rec rec = {
        .id = (char *)"req-1",
        .kind = (char *)"create",
        .instance = (char *)"0b7ae5e6-1d7c-4d3a-9a0e-0a4f5b6c7d8e",
        .phase = (char *)"disk",
    };
    assert_int_equal(agent_store_job_insert(f->store, &rec, &err), 0);
    assert_int_equal(agent_store_job_insert(f->store, &rec, &err), -EEXIST);
    na_error_clear(&err);
    rec.id = (char *)"req-2";
    rec.kind = (char *)"delete";
    rec.role = (char *)"source";
    rec.peer = (char *)"node-b";
    assert_int_equal(agent_store_job_insert(f->store, &rec, &err), 0);
    assert_int_equal(agent_store_job_count(f->store), 2);

    struct agent_blob st = {.data = (uint8_t *)"/images/abc", .size = 11};
    assert_int_equal(agent_store_job_set_phase(f->store, "req-1", "define", &st, 1234, &err), 0);
    struct agent_job_rec *got = NULL;
    assert_int_equal(agent_store_job_get(f->store, "req-1", &got, &err), 0);
    assert_string_equal(got->kind, "create");
    assert_string_equal(got->role, "local");
    assert_string_equal(got->peer, "");
    assert_string_equal(got->phase, "define");
    assert_int_equal(got->deadline_ms, 1234);
    assert_int_equal(got->state.size, 11);
    assert_memory_equal(got->state.data, "/images/abc", 11);
    assert_true(got->updated_ms >= got->created_ms);
    agent_job_rec_free(got);

    assert_int_equal(agent_store_job_get(f->store, "req-2", &got, &err), 0);
    assert_string_equal(got->role, "source");
    assert_string_equal(got->peer, "node-b");
    assert_null(got->state.data);
    agent_job_rec_free(got);

    assert_int_equal(agent_store_job_set_phase(f->store, "req-9", "define", NULL, 0, &err),
                     -ENOENT);
    na_error_clear(&err);
    uint8_t big[AGENT_JOB_STATE_SIZE_MAX + 1] = {0};
    struct agent_blob too_big = {.data = big, .size = sizeof(big)};
    assert_int_equal(agent_store_job_set_phase(f->store, "req-1", "start", &too_big, 0, &err),
                     -EMSGSIZE);
    assert_non_null(strstr(err->msg, "req-1"));
    na_error_clear(&err);

    assert_int_equal(agent_store_job_delete(f->store, "req-1", &err), 0);
    assert_int_equal(agent_store_job_delete(f->store, "req-1", &err), 0);
    assert_int_equal(agent_store_job_get(f->store, "req-1", &got, &err), -ENOENT);
    assert_int_equal(agent_store_job_count(f->store), 1);
}

static int
collect_job(struct agent_job_rec *rec, void *ctx)
{
    char *seen = ctx;
    strcat(seen, rec->id);
    strcat(seen, ":");
    strcat(seen, rec->phase);
    strcat(seen, " ");
    agent_job_rec_free(rec);
    return 0;
}

/* Jobs survive a reopen (a restart) and come back oldest first. */
static void
test_jobs_after_reopen(void **state)
{
    struct fixture *f = *state;
    cleanup_error struct na_error *err = NULL;
    const char *ids[] = {"a", "b", "c"};
    for (size_t i = 0; i < 3; i++) {
        struct agent_job_rec rec = {
            .id = (char *)ids[i],
            .kind = (char *)"rebuild",
            .instance = (char *)"0b7ae5e6-1d7c-4d3a-9a0e-0a4f5b6c7d8e",
            .phase = (char *)"disk",
        };
        assert_int_equal(agent_store_job_insert(f->store, &rec, &err), 0);
    }
    assert_int_equal(agent_store_job_set_phase(f->store, "b", "swap", NULL, 0, &err), 0);
    agent_store_close(f->store);
    assert_int_equal(agent_store_open(f->path, &f->store, &err), 0);
    char seen[256] = "";
    assert_int_equal(agent_store_job_each(f->store, collect_job, seen, &err), 0);
    assert_string_equal(seen, "a:disk b:swap c:disk ");
}

/* An instance's snapshots are replaced as a whole, listed oldest first, and go with none. */
static void
test_snapshots(void **state)
{
    struct fixture *f = *state;
    cleanup_error struct na_error *err = NULL;
    const char *inst = "0b7ae5e6-1d7c-4d3a-9a0e-0a4f5b6c7d8e";
    const char *other = "1b7ae5e6-1d7c-4d3a-9a0e-0a4f5b6c7d8e";
    struct agent_snapshot_rec recs[] = {
        {.name = (char *)"s2",
         .parent = (char *)"s1",
         .state = (char *)"running",
         .memory = true,
         .current = true,
         .size_bytes = 3ull << 30,
         .created_ms = 2000},
        {.name = (char *)"s1",
         .description = (char *)"first",
         .state = (char *)"shutoff",
         .created_ms = 1000},
    };
    assert_int_equal(agent_store_snapshot_replace(f->store, inst, recs, 2, &err), 0);
    assert_int_equal(agent_store_snapshot_replace(f->store, other, recs, 1, &err), 0);
    assert_int_equal(agent_store_snapshot_count(f->store, inst), 2);
    assert_true(agent_store_snapshot_bytes(f->store, inst) == 3ll << 30);
    assert_int_equal(agent_store_snapshot_bytes(f->store, "nobody"), 0);
    assert_int_equal(agent_store_snapshot_has(f->store, inst, "s1"), 1);
    assert_int_equal(agent_store_snapshot_has(f->store, inst, "s3"), 0);
    assert_int_equal(agent_store_snapshot_has(f->store, other, "s1"), 0);

    struct agent_snapshot_rec *got = NULL;
    size_t n = 0;
    assert_int_equal(agent_store_snapshot_list(f->store, inst, &got, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(got[0].name, "s1");
    assert_string_equal(got[0].description, "first");
    assert_string_equal(got[0].parent, "");
    assert_false(got[0].memory);
    assert_string_equal(got[1].name, "s2");
    assert_string_equal(got[1].parent, "s1");
    assert_true(got[1].memory && got[1].current);
    assert_int_equal(got[1].created_ms, 2000);
    assert_true(got[1].size_bytes == 3ull << 30);
    agent_snapshot_recs_free(got, n);

    assert_int_equal(agent_store_snapshot_replace(f->store, inst, NULL, 0, &err), 0);
    assert_int_equal(agent_store_snapshot_count(f->store, inst), 0);
    assert_int_equal(agent_store_snapshot_count(f->store, other), 1);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_future_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_intent_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_request_id_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_intents_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_placement_consumers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tombstones, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jobs_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshots, setup, teardown),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
