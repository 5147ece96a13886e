/* The table of operations (proto/requests.h) walked row by row: it lists exactly the
 * contract's request kinds, and from each row alone a request gets its name, its validation,
 * its lane, its handler or UNIMPLEMENTED, and its allowed-state check with an error message
 * naming the states (agent_prepare_existing). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "agent/core/agent.h"
#include "agent/ops/ops.h"
#include "proto/requests.h"
#include "proto/validate.h"

#define UUID "3f1c2b9a-8d4e-4f6a-9b2c-1d2e3f4a5b6c"
#define JOB_UUID "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
#define S(x) NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_##x

static const ProtobufCFieldDescriptor *
body_field(enum agent_request_kind kind)
{
    const ProtobufCMessageDescriptor *d = &nodeagent__v1__envelope__descriptor;
    return protobuf_c_message_descriptor_get_field_by_name(d, agent_request_kind_name(kind));
}

/* Every member of Envelope.body has a row of the same name, and every row is a member. */
static void
test_the_table_is_the_contract(void **state)
{
    (void)state;
    const ProtobufCMessageDescriptor *d = &nodeagent__v1__envelope__descriptor;
    size_t in_body = 0;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        in_body++;
        bool found = false;
        for (int k = 1; k < AGENT_REQ__COUNT; k++)
            found =
                found || strcmp(agent_request_kind_name((enum agent_request_kind)k), f->name) == 0;
        if (!found)
            fail_msg("Envelope.body member %s has no row in the table of operations", f->name);
    }
    assert_int_equal(in_body, AGENT_REQ__COUNT - 1);
    for (int k = 1; k < AGENT_REQ__COUNT; k++) {
        const ProtobufCFieldDescriptor *f = body_field((enum agent_request_kind)k);
        assert_non_null(f);
        assert_int_equal(f->type, PROTOBUF_C_TYPE_MESSAGE);
    }
    assert_string_equal(agent_request_kind_name(AGENT_REQ_NONE), "none");
    assert_string_equal(agent_request_kind_name((enum agent_request_kind)999), "none");
}

/* A request of kind, with an empty body whose instance and job ids (where the body has such
 * fields) are set; built from the descriptors alone, as a new kind would be. */
struct built {
    Nodeagent__V1__Envelope env;
    ProtobufCMessage *body;
    Nodeagent__V1__InstanceSpec spec;
};

static void
set_string(ProtobufCMessage *m, const char *name, const char *value)
{
    const ProtobufCFieldDescriptor *f =
        protobuf_c_message_descriptor_get_field_by_name(m->descriptor, name);
    if (f && f->type == PROTOBUF_C_TYPE_STRING)
        *(const char **)((char *)m + f->offset) = value;
}

static void
build(struct built *b, enum agent_request_kind kind)
{
    const ProtobufCFieldDescriptor *f = body_field(kind);
    const ProtobufCMessageDescriptor *md = f->descriptor;
    nodeagent__v1__envelope__init(&b->env);
    b->body = na_xcalloc(1, md->sizeof_message);
    protobuf_c_message_init(md, b->body);
    set_string(b->body, "instance_uuid", UUID);
    set_string(b->body, "migration_id", JOB_UUID);
    const ProtobufCFieldDescriptor *spec =
        protobuf_c_message_descriptor_get_field_by_name(md, "spec");
    if (spec) {
        nodeagent__v1__instance_spec__init(&b->spec);
        b->spec.uuid = UUID;
        *(Nodeagent__V1__InstanceSpec **)((char *)b->body + spec->offset) = &b->spec;
    }
    b->env.body_case = (Nodeagent__V1__Envelope__BodyCase)f->id;
    *(ProtobufCMessage **)((char *)&b->env + f->offset) = b->body;
}

/* From the row alone: the kind is recognised, the body is validated by its own check (the
 * first error is inside the body, never "no request"), and the lane follows the lane column. */
static void
test_each_row_is_named_validated_and_laned(void **state)
{
    (void)state;
    for (int k = 1; k < AGENT_REQ__COUNT; k++) {
        enum agent_request_kind kind = (enum agent_request_kind)k;
        const struct agent_request_row *row = agent_request_row(kind);
        struct built b;
        build(&b, kind);
        assert_int_equal(agent_request_kind_of(&b.env), kind);

        cleanup_error struct na_error *err = NULL;
        b.env.request_id = "r-1";
        int rc = agent_validate_envelope(&b.env, &err);
        if (rc < 0 && err->field && strcmp(err->field, "body") == 0)
            fail_msg("%s: not validated by its own check: %s", row->name, err->msg);

        cleanup_free char *lane = agent_request_lane(&b.env);
        const char *instance = agent_request_instance(&b.env);
        switch (row->lane) {
        case AGENT_LANE_INSTANCE:
            assert_string_equal(instance, UUID);
            assert_string_equal(lane, UUID);
            break;
        case AGENT_LANE_CONTROL:
            assert_string_equal(instance, UUID);
            assert_string_equal(lane, "control:" UUID);
            break;
        case AGENT_LANE_JOB:
            assert_string_equal(lane, "job:" JOB_UUID);
            assert_string_equal(agent_request_key(&b.env), JOB_UUID);
            break;
        case AGENT_LANE_NODE:
            assert_string_equal(lane, AGENT_NODE_LANE);
            assert_string_equal(agent_request_key(&b.env), AGENT_NODE_LANE);
            break;
        }
        if (row->signer == AGENT_SIGNER_PEER)
            assert_non_null(agent_request_sender_node(&b.env));
        else
            assert_null(agent_request_sender_node(&b.env));
        free(b.body);
    }
}

/* A cancel must not wait behind the job it cancels: its lane is not the instance's. */
static void
test_cancel_does_not_queue_behind_migrate(void **state)
{
    (void)state;
    struct built m, c;
    build(&m, AGENT_REQ_MIGRATE);
    build(&c, AGENT_REQ_CANCEL_MIGRATION);
    cleanup_free char *lm = agent_request_lane(&m.env);
    cleanup_free char *lc = agent_request_lane(&c.env);
    assert_string_not_equal(lm, lc);
    assert_true(agent_request_row(AGENT_REQ_MIGRATE)->job);
    free(m.body);
    free(c.body);
}

/* Every handled row has its handler; every other one is answered UNIMPLEMENTED. */
static void
test_handled_rows_have_handlers(void **state)
{
    (void)state;
    for (int k = 0; k < AGENT_REQ__COUNT; k++) {
        enum agent_request_kind kind = (enum agent_request_kind)k;
        bool handled = agent_request_row(kind)->handled;
        if (handled != (agent_handler_for(kind) != NULL))
            fail_msg("%s: handled=%d but handler %p", agent_request_kind_name(kind), handled,
                     (void *)agent_handler_for(kind));
    }
}

/* The state check of every kind on an existing instance, for every state: allowed exactly
 * from the row's states, and the refusal is CONFLICT naming the state and the allowed ones. */
static void
test_state_checks_follow_the_from_column(void **state)
{
    (void)state;
    struct agent_config cfg = {.node_id = "node-1"};
    struct agent a = {.cfg = &cfg};
    struct agent_instance *inst = na_xcalloc(1, sizeof(*inst));
    strcpy(inst->uuid, UUID);
    inst->spec = na_xcalloc(1, sizeof(*inst->spec));
    nodeagent__v1__instance_spec__init(inst->spec);
    inst->spec->uuid = na_xstrdup(UUID);
    agent_instances_add(&a.instances, inst);

    const ProtobufCEnumDescriptor *states = &nodeagent__v1__instance_state__descriptor;
    for (int k = 1; k < AGENT_REQ__COUNT; k++) {
        enum agent_request_kind kind = (enum agent_request_kind)k;
        const struct agent_request_row *row = agent_request_row(kind);
        if (row->from == 0 || row->lane == AGENT_LANE_JOB || row->lane == AGENT_LANE_NODE)
            continue; /* a new instance, or no instance: not checked against one */
        char allowed[256];
        agent_request_from_text(kind, allowed, sizeof(allowed));
        for (unsigned v = 0; v < states->n_values; v++) {
            Nodeagent__V1__InstanceState st = (Nodeagent__V1__InstanceState)states->values[v].value;
            inst->observed = st;
            inst->task = NULL;
            struct agent_op op = {.kind = kind, .instance = UUID};
            cleanup_error struct na_error *err = NULL;
            int rc = agent_prepare_existing(&a, &op, &err);
            bool expect = (row->from >> st) & 1u;
            if (expect) {
                assert_int_equal(rc, 0);
                assert_string_equal(inst->task, row->name);
            } else {
                assert_true(rc < 0);
                assert_int_equal(err->code, NA_CODE_CONFLICT);
                assert_non_null(strstr(err->msg, agent_state_name(st)));
                assert_non_null(strstr(err->msg, allowed));
                assert_non_null(strstr(err->msg, row->name));
            }
            if (op.spec)
                nodeagent__v1__instance_spec__free_unpacked(op.spec, NULL);
        }
    }
    agent_instances_clear(&a.instances);
}

static void
test_from_text_lists_the_states(void **state)
{
    (void)state;
    char buf[128];
    agent_request_from_text(AGENT_REQ_RESIZE, buf, sizeof(buf));
    assert_string_equal(buf, "RUNNING or STOPPED");
    agent_request_from_text(AGENT_REQ_REBOOT, buf, sizeof(buf));
    assert_string_equal(buf, "RUNNING");
    agent_request_from_text(AGENT_REQ_START, buf, sizeof(buf));
    assert_string_equal(buf, "RUNNING, STOPPED, SUSPENDED or CRASHED");
    assert_true(agent_request_allowed_from(AGENT_REQ_DELETE, S(ERROR)));
    assert_false(agent_request_allowed_from(AGENT_REQ_REBOOT, S(PAUSED)));
    assert_int_equal(agent_request_row(AGENT_REQ_STOP)->leaves, S(STOPPED));
    assert_int_equal(agent_request_row(AGENT_REQ_CONSOLE_LOG)->leaves, S(UNSPECIFIED));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_table_is_the_contract),
        cmocka_unit_test(test_each_row_is_named_validated_and_laned),
        cmocka_unit_test(test_cancel_does_not_queue_behind_migrate),
        cmocka_unit_test(test_handled_rows_have_handlers),
        cmocka_unit_test(test_state_checks_follow_the_from_column),
        cmocka_unit_test(test_from_text_lists_the_states),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
