/* agent/validate: every rule of the bus contract has a case that breaks it and checks the
 * field path and code of the error; valid requests of every kind pass; the wire path
 * (pack, unpack, validate) behaves the same as hand-built messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proto/requests.h"
#include "proto/validate.h"

#define UUID_A "3f0c2a6e-8d4b-4c1e-9a57-0b6e2d9f1c33"
#define UUID_B "7b1d4e90-2c3a-4f5b-8e6d-1a2b3c4d5e6f"
#define LONG_129                                                                                   \
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"                             \
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"
#define UUID_C "c0ffee00-1234-4abc-8def-0123456789ab"
#define UUID_D "d00dfeed-5678-4cde-9f01-23456789abcd"
#define SHA "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

/* A valid request of every kind; cases break one field. */
struct fx {
    Nodeagent__V1__Envelope env;

    Nodeagent__V1__CreateRequest create;
    Nodeagent__V1__InstanceSpec spec;
    Nodeagent__V1__Flavor flavor;
    Nodeagent__V1__Image image;
    Nodeagent__V1__Nic nic[2];
    Nodeagent__V1__Nic *nics[17];
    char *ips0[17];
    char *ips1[1];
    char *ips1_2[2];
    char *keys[33];
    Nodeagent__V1__InstanceSpec__MetadataEntry meta[2];
    Nodeagent__V1__InstanceSpec__MetadataEntry *metas[129];

    Nodeagent__V1__DeleteRequest delete_;
    Nodeagent__V1__StartRequest start;
    Nodeagent__V1__StopRequest stop;
    Nodeagent__V1__RebootRequest reboot;
    Nodeagent__V1__PauseRequest pause;
    Nodeagent__V1__ResumeRequest resume;
    Nodeagent__V1__SuspendRequest suspend;
    Nodeagent__V1__SnapshotCreateRequest snapshot_create;
    Nodeagent__V1__SnapshotRevertRequest snapshot_revert;
    Nodeagent__V1__SnapshotDeleteRequest snapshot_delete;
    Nodeagent__V1__SnapshotExportRequest snapshot_export;
    Nodeagent__V1__CloneRequest clone;
    Nodeagent__V1__ResizeRequest resize;
    Nodeagent__V1__RebuildRequest rebuild;
    Nodeagent__V1__ConsoleLogRequest console_log;
    Nodeagent__V1__MigrationSettings settings;
    Nodeagent__V1__MigrateRequest migrate;
    Nodeagent__V1__CancelMigrationRequest cancel_migration;
    Nodeagent__V1__DiskSize disk[2];
    Nodeagent__V1__DiskSize *disks[17];
    Nodeagent__V1__MigrationPrepare migration_prepare;
    Nodeagent__V1__MigrationPrepared migration_prepared;
    Nodeagent__V1__MigrationFinish migration_finish;
    Nodeagent__V1__Error error;
    Nodeagent__V1__MigrationAbort migration_abort;
    Nodeagent__V1__SecurityGroupRule rule[3];
    Nodeagent__V1__SecurityGroupRule *rules[3];
    Nodeagent__V1__IcmpMatch icmp;
    char *members[2];
    char *group_ids[2];
    Nodeagent__V1__SecurityGroup group;
    Nodeagent__V1__SecurityGroupPutRequest security_group_put;
    Nodeagent__V1__SecurityGroupDeleteRequest security_group_delete;
    Nodeagent__V1__PortSecurityGroupsRequest port_security_groups;

    char *owned[8]; /* long strings made by rep(), freed with the fixture */
    size_t n_owned;
};

/* n copies of c, owned by the fixture. */
static char *
rep(struct fx *f, char c, size_t n)
{
    assert_true(f->n_owned < 8);
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    f->owned[f->n_owned++] = s;
    return s;
}

static void
fx_init_spec(struct fx *f)
{
    f->flavor = (Nodeagent__V1__Flavor)NODEAGENT__V1__FLAVOR__INIT;
    f->flavor.name = "m1.small";
    f->flavor.vcpus = 2;
    f->flavor.memory_mib = 2048;
    f->flavor.root_disk_gib = 20;

    f->image = (Nodeagent__V1__Image)NODEAGENT__V1__IMAGE__INIT;
    f->image.id = "debian-12.qcow2";
    f->image.url = "https://images.example.com/debian-12.qcow2";
    f->image.sha256 = SHA;
    f->image.format = NODEAGENT__V1__IMAGE_FORMAT__IMAGE_FORMAT_QCOW2;

    f->ips0[0] = "10.0.0.5/24";
    f->ips1[0] = "192.168.7.9/32";
    for (int i = 0; i < 2; i++) {
        Nodeagent__V1__Nic *n = &f->nic[i];
        *n = (Nodeagent__V1__Nic)NODEAGENT__V1__NIC__INIT;
        n->port_id = i ? UUID_C : UUID_B;
        n->network_id = UUID_D;
        n->vni = 4242;
        n->mac = i ? "52:54:00:AB:CD:EF" : "52:54:00:12:34:56";
        n->n_ips = 1;
        n->ips = i ? f->ips1 : f->ips0;
        n->gateway = i ? "" : "10.0.0.1";
        n->mtu = i ? 0 : 1450;
    }
    for (int i = 0; i < 17; i++)
        f->nics[i] = &f->nic[i % 2];

    for (int i = 0; i < 33; i++)
        f->keys[i] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0ZXN0a2V5 alice@example";

    for (int i = 0; i < 2; i++)
        f->meta[i] = (Nodeagent__V1__InstanceSpec__MetadataEntry)
            NODEAGENT__V1__INSTANCE_SPEC__METADATA_ENTRY__INIT;
    f->meta[0].key = "role";
    f->meta[0].value = "web";
    f->meta[1].key = "owner";
    f->meta[1].value = "Zoë Ünal";
    for (int i = 0; i < 129; i++)
        f->metas[i] = &f->meta[i % 2];

    f->spec = (Nodeagent__V1__InstanceSpec)NODEAGENT__V1__INSTANCE_SPEC__INIT;
    f->spec.uuid = UUID_A;
    f->spec.name = "web-1";
    f->spec.tenant_id = "tenant_42";
    f->spec.flavor = &f->flavor;
    f->spec.image = &f->image;
    f->spec.n_nics = 2;
    f->spec.nics = f->nics;
    f->spec.hostname = "web-1";
    f->spec.n_ssh_keys = 1;
    f->spec.ssh_keys = f->keys;
    f->spec.user_data.data = (uint8_t *)"#cloud-config\n";
    f->spec.user_data.len = 14;
    f->spec.n_metadata = 2;
    f->spec.metadata = f->metas;
}

static void
fx_init_requests(struct fx *f)
{
#define INIT(member, Type, INITM)                                                                  \
    f->member = (Type)INITM;                                                                       \
    f->member.instance_uuid = UUID_A;
    INIT(delete_, Nodeagent__V1__DeleteRequest, NODEAGENT__V1__DELETE_REQUEST__INIT)
    INIT(start, Nodeagent__V1__StartRequest, NODEAGENT__V1__START_REQUEST__INIT)
    INIT(stop, Nodeagent__V1__StopRequest, NODEAGENT__V1__STOP_REQUEST__INIT)
    INIT(reboot, Nodeagent__V1__RebootRequest, NODEAGENT__V1__REBOOT_REQUEST__INIT)
    INIT(pause, Nodeagent__V1__PauseRequest, NODEAGENT__V1__PAUSE_REQUEST__INIT)
    INIT(resume, Nodeagent__V1__ResumeRequest, NODEAGENT__V1__RESUME_REQUEST__INIT)
    INIT(suspend, Nodeagent__V1__SuspendRequest, NODEAGENT__V1__SUSPEND_REQUEST__INIT)
    INIT(snapshot_create, Nodeagent__V1__SnapshotCreateRequest,
         NODEAGENT__V1__SNAPSHOT_CREATE_REQUEST__INIT)
    INIT(snapshot_revert, Nodeagent__V1__SnapshotRevertRequest,
         NODEAGENT__V1__SNAPSHOT_REVERT_REQUEST__INIT)
    INIT(snapshot_delete, Nodeagent__V1__SnapshotDeleteRequest,
         NODEAGENT__V1__SNAPSHOT_DELETE_REQUEST__INIT)
    INIT(snapshot_export, Nodeagent__V1__SnapshotExportRequest,
         NODEAGENT__V1__SNAPSHOT_EXPORT_REQUEST__INIT)
    INIT(resize, Nodeagent__V1__ResizeRequest, NODEAGENT__V1__RESIZE_REQUEST__INIT)
    INIT(rebuild, Nodeagent__V1__RebuildRequest, NODEAGENT__V1__REBUILD_REQUEST__INIT)
    INIT(console_log, Nodeagent__V1__ConsoleLogRequest, NODEAGENT__V1__CONSOLE_LOG_REQUEST__INIT)
    INIT(migrate, Nodeagent__V1__MigrateRequest, NODEAGENT__V1__MIGRATE_REQUEST__INIT)
    INIT(cancel_migration, Nodeagent__V1__CancelMigrationRequest,
         NODEAGENT__V1__CANCEL_MIGRATION_REQUEST__INIT)
#undef INIT
    f->stop.timeout_s = 60;
    f->reboot.type = NODEAGENT__V1__REBOOT_TYPE__REBOOT_TYPE_HARD;
    f->snapshot_create.snapshot_name = "before-upgrade";
    f->snapshot_revert.snapshot_name = "before-upgrade";
    f->snapshot_delete.snapshot_name = "before-upgrade";
    f->snapshot_export.upload_url = "https://objects.example/bucket/img.qcow2?X-Sig=abc";
    f->resize.flavor = &f->flavor;
    f->rebuild.image = &f->image;
    f->console_log.tail_bytes = 4096;
    f->settings = (Nodeagent__V1__MigrationSettings)NODEAGENT__V1__MIGRATION_SETTINGS__INIT;
    f->settings.max_downtime_ms = 500;
    f->settings.timeout_s = 600;
    f->migrate.target_node = "compute-07.rack2";
    f->migrate.settings = &f->settings;

    for (int i = 0; i < 2; i++) {
        f->disk[i] = (Nodeagent__V1__DiskSize)NODEAGENT__V1__DISK_SIZE__INIT;
        f->disk[i].name = i ? "disk.config" : "disk";
        f->disk[i].virtual_size = i ? 1048576 : 21474836480;
    }
    for (int i = 0; i < 17; i++)
        f->disks[i] = &f->disk[i % 2];
    f->migration_prepare = (Nodeagent__V1__MigrationPrepare)NODEAGENT__V1__MIGRATION_PREPARE__INIT;
    f->migration_prepare.migration_id = UUID_C;
    f->migration_prepare.source_node = "compute-03";
    f->migration_prepare.spec = &f->spec;
    f->migration_prepare.cpu_model_xml = "<cpu mode='custom'><model>Haswell</model></cpu>";
    f->migration_prepare.n_disks = 2;
    f->migration_prepare.disks = f->disks;
    f->migration_prepare.migrate_envelope.data = (uint8_t *)"\x0a\x01x";
    f->migration_prepare.migrate_envelope.len = 3;

    f->migration_prepared =
        (Nodeagent__V1__MigrationPrepared)NODEAGENT__V1__MIGRATION_PREPARED__INIT;
    f->migration_prepared.migration_id = UUID_C;
    f->migration_prepared.dest_node = "compute-07";
    f->migration_prepared.migrate_uri = "tcp://10.1.0.7:49152";
    f->migration_prepared.libvirt_uri = "qemu+tls://10.1.0.7/system";
    f->migration_prepared.domain_xml = "<domain type='kvm'>\n</domain>";

    f->migration_finish = (Nodeagent__V1__MigrationFinish)NODEAGENT__V1__MIGRATION_FINISH__INIT;
    f->migration_finish.migration_id = UUID_C;
    f->migration_finish.source_node = "compute-03";
    f->migration_finish.success = 1;

    f->error = (Nodeagent__V1__Error)NODEAGENT__V1__ERROR__INIT;
    f->error.code = NODEAGENT__V1__ERROR_CODE__ERROR_CODE_NO_CAPACITY;
    f->error.message = "not enough memory";
    f->migration_abort = (Nodeagent__V1__MigrationAbort)NODEAGENT__V1__MIGRATION_ABORT__INIT;
    f->migration_abort.migration_id = UUID_C;
    f->migration_abort.node = "compute-07";
    f->migration_abort.error = &f->error;

    /* TCP 22 from anywhere, TCP 5432 from the group "db", all IPv6 egress. */
    for (int i = 0; i < 3; i++) {
        f->rule[i] = (Nodeagent__V1__SecurityGroupRule)NODEAGENT__V1__SECURITY_GROUP_RULE__INIT;
        f->rule[i].direction = NODEAGENT__V1__DIRECTION__DIRECTION_INGRESS;
        f->rule[i].ethertype = NODEAGENT__V1__ETHER_TYPE__ETHER_TYPE_IPV4;
        f->rule[i].protocol = NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_TCP;
        f->rules[i] = &f->rule[i];
    }
    f->rule[0].port_range_min = f->rule[0].port_range_max = 22;
    f->rule[0].remote_cidr = "0.0.0.0/0";
    f->rule[1].port_range_min = f->rule[1].port_range_max = 5432;
    f->rule[1].remote_group = "db";
    f->rule[2].direction = NODEAGENT__V1__DIRECTION__DIRECTION_EGRESS;
    f->rule[2].ethertype = NODEAGENT__V1__ETHER_TYPE__ETHER_TYPE_IPV6;
    f->rule[2].protocol = NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_ANY;
    f->rule[2].remote_cidr = "2001:db8::/32";
    f->icmp = (Nodeagent__V1__IcmpMatch)NODEAGENT__V1__ICMP_MATCH__INIT;
    f->members[0] = "10.0.0.7";
    f->members[1] = "2001:db8::7";
    f->group = (Nodeagent__V1__SecurityGroup)NODEAGENT__V1__SECURITY_GROUP__INIT;
    f->group.id = "db";
    f->group.name = "database servers";
    f->group.n_rules = 3;
    f->group.rules = f->rules;
    f->group.n_member_ips = 2;
    f->group.member_ips = f->members;
    f->security_group_put =
        (Nodeagent__V1__SecurityGroupPutRequest)NODEAGENT__V1__SECURITY_GROUP_PUT_REQUEST__INIT;
    f->security_group_put.group = &f->group;
    f->security_group_delete = (Nodeagent__V1__SecurityGroupDeleteRequest)
        NODEAGENT__V1__SECURITY_GROUP_DELETE_REQUEST__INIT;
    f->security_group_delete.group_id = "db";
    f->group_ids[0] = "db";
    f->group_ids[1] = "web";
    f->port_security_groups =
        (Nodeagent__V1__PortSecurityGroupsRequest)NODEAGENT__V1__PORT_SECURITY_GROUPS_REQUEST__INIT;
    f->port_security_groups.port_id = UUID_C;
    f->port_security_groups.n_security_groups = 2;
    f->port_security_groups.security_groups = f->group_ids;
}

/* Switches the envelope's body to the fixture's request of that kind. */
#define USE(CASE, member)                                                                          \
    (f->env.body_case = NODEAGENT__V1__ENVELOPE__BODY_##CASE, f->env.member = &f->member)

static struct fx *
fx_new(void)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    fx_init_spec(f);
    fx_init_requests(f);
    f->create = (Nodeagent__V1__CreateRequest)NODEAGENT__V1__CREATE_REQUEST__INIT;
    f->create.spec = &f->spec;
    f->clone = (Nodeagent__V1__CloneRequest)NODEAGENT__V1__CLONE_REQUEST__INIT;
    f->clone.spec = &f->spec;
    f->clone.source_instance_uuid = UUID_D;
    f->env = (Nodeagent__V1__Envelope)NODEAGENT__V1__ENVELOPE__INIT;
    f->env.request_id = "req-0001";
    f->env.sent_at_ms = 1700000000000;
    USE(CREATE, create);
    return f;
}

static void
fx_free(struct fx *f)
{
    for (size_t i = 0; i < f->n_owned; i++)
        free(f->owned[i]);
    free(f);
}

static void
assert_valid(struct fx *f)
{
    struct na_error *err = NULL;
    int ret = agent_validate_envelope(&f->env, &err);
    if (err)
        print_error("unexpected error: field=%s msg=%s\n", err->field, err->msg);
    assert_null(err);
    assert_int_equal(ret, 0);
}

/* Validates and returns the error, which must be INVALID_ARGUMENT at field. */
static struct na_error *
assert_invalid(struct fx *f, const char *field)
{
    struct na_error *err = NULL;
    int ret = agent_validate_envelope(&f->env, &err);
    if (!err)
        print_error("expected an error at %s, got none\n", field);
    assert_non_null(err);
    assert_true(ret < 0);
    if (strcmp(err->field ? err->field : "", field))
        print_error("expected field %s, got %s (%s)\n", field, err->field, err->msg);
    assert_string_equal(err->field, field);
    assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
    if (getenv("VALIDATE_SHOW")) /* to review the messages: VALIDATE_SHOW=1 test_validate */
        print_message("%s\n", err->msg);
    /* The message starts with the path and echoes nothing unprintable. */
    assert_int_equal(strncmp(err->msg, field, strlen(field)), 0);
    for (const char *p = err->msg; *p; p++)
        assert_true(*p >= 0x20 && *p < 0x7f);
    return err;
}

/* --- one case per rule: X(id, expected field path, mutation of f) ----------------------- */

#define META(k, v) (f->meta[0].key = (k), f->meta[0].value = (v))

#define BAD_CASES(X)                                                                               \
    /* envelope */                                                                                 \
    X(request_id_empty, "request_id", f->env.request_id = "")                                      \
    X(request_id_null, "request_id", f->env.request_id = NULL)                                     \
    X(request_id_65, "request_id", f->env.request_id = rep(f, 'r', 65))                            \
    X(request_id_space, "request_id", f->env.request_id = "req 1")                                 \
    X(request_id_slash, "request_id", f->env.request_id = "req/1")                                 \
    X(sent_at_negative, "sent_at_ms", f->env.sent_at_ms = -1)                                      \
    X(reply_to_dotdot, "reply_to", f->env.reply_to = "..")                                         \
    X(reply_to_slash, "reply_to", f->env.reply_to = "a/b")                                         \
    X(body_not_set, "body", f->env.body_case = NODEAGENT__V1__ENVELOPE__BODY__NOT_SET)             \
    X(body_bogus_case, "body", f->env.body_case = 999)                                             \
    X(body_null, "create", f->env.create = NULL)                                                   \
    /* instance spec */                                                                            \
    X(spec_missing, "create.spec", f->create.spec = NULL)                                          \
    X(uuid_empty, "create.spec.uuid", f->spec.uuid = "")                                           \
    X(uuid_upper, "create.spec.uuid", f->spec.uuid = "3F0C2A6E-8D4B-4C1E-9A57-0B6E2D9F1C33")       \
    X(uuid_braces, "create.spec.uuid", f->spec.uuid = "{3f0c2a6e-8d4b-4c1e-9a57-0b6e2d9f1c33}")    \
    X(name_empty, "create.spec.name", f->spec.name = "")                                           \
    X(name_slash, "create.spec.name", f->spec.name = "a/b")                                        \
    X(name_dot, "create.spec.name", f->spec.name = ".")                                            \
    X(name_dotdot, "create.spec.name", f->spec.name = "..")                                        \
    X(name_traversal, "create.spec.name", f->spec.name = "../../etc/passwd")                       \
    X(name_dash, "create.spec.name", f->spec.name = "-rf")                                         \
    X(name_64, "create.spec.name", f->spec.name = rep(f, 'n', 64))                                 \
    X(name_space, "create.spec.name", f->spec.name = "my vm")                                      \
    X(name_utf8, "create.spec.name", f->spec.name = "caf\xc3\xa9")                                 \
    X(name_newline, "create.spec.name", f->spec.name = "a\nb")                                     \
    X(tenant_empty, "create.spec.tenant_id", f->spec.tenant_id = "")                               \
    X(tenant_65, "create.spec.tenant_id", f->spec.tenant_id = rep(f, 't', 65))                     \
    X(tenant_slash, "create.spec.tenant_id", f->spec.tenant_id = "a/b")                            \
    /* flavor */                                                                                   \
    X(flavor_missing, "create.spec.flavor", f->spec.flavor = NULL)                                 \
    X(flavor_name_65, "create.spec.flavor.name", f->flavor.name = rep(f, 'f', 65))                 \
    X(flavor_name_tab, "create.spec.flavor.name", f->flavor.name = "m1\tsmall")                    \
    X(flavor_name_utf8, "create.spec.flavor.name", f->flavor.name = "gro\xc3\x9f")                 \
    X(vcpus_0, "create.spec.flavor.vcpus", f->flavor.vcpus = 0)                                    \
    X(vcpus_1025, "create.spec.flavor.vcpus", f->flavor.vcpus = 1025)                              \
    X(vcpus_absurd, "create.spec.flavor.vcpus", f->flavor.vcpus = UINT32_MAX)                      \
    X(memory_63, "create.spec.flavor.memory_mib", f->flavor.memory_mib = 63)                       \
    X(memory_absurd, "create.spec.flavor.memory_mib", f->flavor.memory_mib = 16777217)             \
    X(disk_0, "create.spec.flavor.root_disk_gib", f->flavor.root_disk_gib = 0)                     \
    X(disk_absurd, "create.spec.flavor.root_disk_gib", f->flavor.root_disk_gib = 65537)            \
    /* flavor limits: 0 is unlimited, anything else within its range */                            \
    X(cpu_shares_1, "create.spec.flavor.cpu_shares", f->flavor.cpu_shares = 1)                     \
    X(cpu_shares_big, "create.spec.flavor.cpu_shares", f->flavor.cpu_shares = 262145)              \
    X(cpu_quota_101, "create.spec.flavor.cpu_quota_percent", f->flavor.cpu_quota_percent = 101)    \
    X(read_iops_big, "create.spec.flavor.disk_read_iops_sec",                                      \
      f->flavor.disk_read_iops_sec = 1000001)                                                      \
    X(write_iops_big, "create.spec.flavor.disk_write_iops_sec",                                    \
      f->flavor.disk_write_iops_sec = UINT32_MAX)                                                  \
    X(read_bytes_small, "create.spec.flavor.disk_read_bytes_sec",                                  \
      f->flavor.disk_read_bytes_sec = 65535)                                                       \
    X(write_bytes_small, "create.spec.flavor.disk_write_bytes_sec",                                \
      f->flavor.disk_write_bytes_sec = 1)                                                          \
    X(write_bytes_big, "create.spec.flavor.disk_write_bytes_sec",                                  \
      f->flavor.disk_write_bytes_sec = (1ULL << 40) + 1)                                           \
    X(in_avg_small, "create.spec.flavor.nic_inbound_average_kib_sec",                              \
      f->flavor.nic_inbound_average_kib_sec = 7)                                                   \
    X(out_avg_big, "create.spec.flavor.nic_outbound_average_kib_sec",                              \
      f->flavor.nic_outbound_average_kib_sec = 4194305)                                            \
    X(in_peak_alone, "create.spec.flavor.nic_inbound_peak_kib_sec",                                \
      f->flavor.nic_inbound_peak_kib_sec = 100)                                                    \
    X(out_peak_low, "create.spec.flavor.nic_outbound_peak_kib_sec",                                \
      f->flavor.nic_outbound_average_kib_sec = 100;                                                \
      f->flavor.nic_outbound_peak_kib_sec = 99)                                                    \
    X(out_burst_alone, "create.spec.flavor.nic_outbound_burst_kib",                                \
      f->flavor.nic_outbound_burst_kib = 10)                                                       \
    X(in_burst_big, "create.spec.flavor.nic_inbound_burst_kib",                                    \
      f->flavor.nic_inbound_average_kib_sec = 100;                                                 \
      f->flavor.nic_inbound_burst_kib = 1048577)                                                   \
    X(resize_write_bytes, "resize.flavor.disk_write_bytes_sec", USE(RESIZE, resize);               \
      f->flavor.disk_write_bytes_sec = 4096)                                                       \
    /* image */                                                                                    \
    X(image_missing, "create.spec.image", f->spec.image = NULL)                                    \
    X(image_id_empty, "create.spec.image.id", f->image.id = "")                                    \
    X(image_id_dotdot, "create.spec.image.id", f->image.id = "..")                                 \
    X(image_id_slash, "create.spec.image.id", f->image.id = "x/../../y")                           \
    X(image_id_65, "create.spec.image.id", f->image.id = rep(f, 'i', 65))                          \
    X(url_empty, "create.spec.image.url", f->image.url = "")                                       \
    X(url_ftp, "create.spec.image.url", f->image.url = "ftp://example.com/a.qcow2")                \
    X(url_upper_scheme, "create.spec.image.url", f->image.url = "HTTP://example.com/a")            \
    X(url_no_scheme, "create.spec.image.url", f->image.url = "/var/lib/a.qcow2")                   \
    X(url_no_host, "create.spec.image.url", f->image.url = "http:///a.qcow2")                      \
    X(url_only_port, "create.spec.image.url", f->image.url = "https://:443/a")                     \
    X(url_only_user, "create.spec.image.url", f->image.url = "https://user@/a")                    \
    X(url_space, "create.spec.image.url", f->image.url = "http://example.com/a b.qcow2")           \
    X(url_newline, "create.spec.image.url", f->image.url = "http://example.com/a\r\nX: y")         \
    X(url_utf8, "create.spec.image.url", f->image.url = "http://example.com/\xc3\xa9")             \
    X(url_file_host, "create.spec.image.url", f->image.url = "file://host/a.qcow2")                \
    X(url_file, "create.spec.image.url", f->image.url = "file:///etc/shadow")                      \
    X(url_file_upper, "create.spec.image.url", f->image.url = "FILE:///etc/shadow")                \
    X(url_4097, "create.spec.image.url", f->image.url = rep(f, 'u', 4097);                         \
      memcpy(f->image.url, "http://h/", 9))                                                        \
    X(sha_empty, "create.spec.image.sha256", f->image.sha256 = "")                                 \
    X(sha_upper, "create.spec.image.sha256",                                                       \
      f->image.sha256 = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08")        \
    X(sha_63, "create.spec.image.sha256", f->image.sha256 = rep(f, 'a', 63))                       \
    X(sha_65, "create.spec.image.sha256", f->image.sha256 = rep(f, 'a', 65))                       \
    X(sha_nonhex, "create.spec.image.sha256", f->image.sha256 = rep(f, 'g', 64))                   \
    X(format_unspecified, "create.spec.image.format",                                              \
      f->image.format = NODEAGENT__V1__IMAGE_FORMAT__IMAGE_FORMAT_UNSPECIFIED)                     \
    X(format_unknown, "create.spec.image.format", f->image.format = 7)                             \
    X(format_negative, "create.spec.image.format", f->image.format = -1)                           \
    /* nics */                                                                                     \
    X(nics_17, "create.spec.nics", f->spec.n_nics = 17)                                            \
    X(nic_port_bad, "create.spec.nics[0].port_id", f->nic[0].port_id = "port-1")                   \
    X(nic_network_bad, "create.spec.nics[0].network_id", f->nic[0].network_id = "")                \
    X(vni_0, "create.spec.nics[0].vni", f->nic[0].vni = 0)                                         \
    X(vni_2_24, "create.spec.nics[0].vni", f->nic[0].vni = 16777216)                               \
    X(mac_empty, "create.spec.nics[0].mac", f->nic[0].mac = "")                                    \
    X(mac_short, "create.spec.nics[0].mac", f->nic[0].mac = "52:54:00:12:34")                      \
    X(mac_dashes, "create.spec.nics[0].mac", f->nic[0].mac = "52-54-00-12-34-56")                  \
    X(mac_nonhex, "create.spec.nics[0].mac", f->nic[0].mac = "52:54:00:12:34:zz")                  \
    X(mac_long, "create.spec.nics[0].mac", f->nic[0].mac = "52:54:00:12:34:56:")                   \
    X(mac_multicast, "create.spec.nics[0].mac", f->nic[0].mac = "01:00:5e:00:00:01")               \
    X(mac_broadcast, "create.spec.nics[0].mac", f->nic[0].mac = "ff:ff:ff:ff:ff:ff")               \
    X(mac_zero, "create.spec.nics[0].mac", f->nic[0].mac = "00:00:00:00:00:00")                    \
    X(ips_none, "create.spec.nics[0].ips", f->nic[0].n_ips = 0)                                    \
    X(ips_17, "create.spec.nics[0].ips", f->nic[0].n_ips = 17)                                     \
    X(ip_no_prefix, "create.spec.nics[0].ips[0]", f->ips0[0] = "10.0.0.5")                         \
    X(ip_prefix_0, "create.spec.nics[0].ips[0]", f->ips0[0] = "10.0.0.5/0")                        \
    X(ip_prefix_33, "create.spec.nics[0].ips[0]", f->ips0[0] = "10.0.0.5/33")                      \
    X(ip_prefix_lead0, "create.spec.nics[0].ips[0]", f->ips0[0] = "10.0.0.5/08")                   \
    X(ip_prefix_junk, "create.spec.nics[0].ips[0]", f->ips0[0] = "10.0.0.5/24x")                   \
    X(ip_prefix_empty, "create.spec.nics[0].ips[0]", f->ips0[0] = "10.0.0.5/")                     \
    X(ip_three_octets, "create.spec.nics[0].ips[0]", f->ips0[0] = "10.0.0/24")                     \
    X(ip_octet_256, "create.spec.nics[0].ips[0]", f->ips0[0] = "10.0.0.256/24")                    \
    X(ip_leading_zero, "create.spec.nics[0].ips[0]", f->ips0[0] = "10.0.0.05/24")                  \
    X(ip_v6, "create.spec.nics[0].ips[0]", f->ips0[0] = "fe80::1/64")                              \
    X(ip_zero, "create.spec.nics[0].ips[0]", f->ips0[0] = "0.0.0.0/8")                             \
    X(ip_broadcast, "create.spec.nics[0].ips[0]", f->ips0[0] = "255.255.255.255/32")               \
    X(ip_multicast, "create.spec.nics[0].ips[0]", f->ips0[0] = "239.1.2.3/24")                     \
    X(ip_loopback, "create.spec.nics[0].ips[0]", f->ips0[0] = "127.0.0.1/8")                       \
    X(ip_second, "create.spec.nics[0].ips[1]", f->nic[0].n_ips = 2; f->ips0[1] = "10.0.0.6/24x")   \
    X(ip6_link_local, "create.spec.nics[0].ips[1]", f->nic[0].n_ips = 2;                           \
      f->ips0[1] = "fe80::5/64")                                                                   \
    X(ip6_multicast, "create.spec.nics[0].ips[1]", f->nic[0].n_ips = 2; f->ips0[1] = "ff02::1/64") \
    X(ip6_unspecified, "create.spec.nics[0].ips[1]", f->nic[0].n_ips = 2; f->ips0[1] = "::/64")    \
    X(ip6_loopback, "create.spec.nics[0].ips[1]", f->nic[0].n_ips = 2; f->ips0[1] = "::1/128")     \
    X(ip6_mapped, "create.spec.nics[0].ips[1]", f->nic[0].n_ips = 2;                               \
      f->ips0[1] = "::ffff:10.0.0.9/120")                                                          \
    X(ip6_no_prefix, "create.spec.nics[0].ips[1]", f->nic[0].n_ips = 2; f->ips0[1] = "fd00::5")    \
    X(ip6_prefix_0, "create.spec.nics[0].ips[1]", f->nic[0].n_ips = 2; f->ips0[1] = "fd00::5/0")   \
    X(ip6_prefix_129, "create.spec.nics[0].ips[1]", f->nic[0].n_ips = 2;                           \
      f->ips0[1] = "fd00::5/129")                                                                  \
    X(ip6_prefix_lead0, "create.spec.nics[0].ips[1]", f->nic[0].n_ips = 2;                         \
      f->ips0[1] = "fd00::5/064")                                                                  \
    X(ip6_bad_groups, "create.spec.nics[0].ips[1]", f->nic[0].n_ips = 2;                           \
      f->ips0[1] = "fd00::5::6/64")                                                                \
    X(ip6_zone, "create.spec.nics[0].ips[1]", f->nic[0].n_ips = 2; f->ips0[1] = "fd00::5%eth0/64") \
    X(gateway6_without_ipv6, "create.spec.nics[0].gateway6", f->nic[0].gateway6 = "fd00::1")       \
    X(gateway6_cidr, "create.spec.nics[0].gateway6", f->nic[0].n_ips = 2;                          \
      f->ips0[1] = "fd00::5/64"; f->nic[0].gateway6 = "fd00::1/64")                                \
    X(gateway6_multicast, "create.spec.nics[0].gateway6", f->nic[0].n_ips = 2;                     \
      f->ips0[1] = "fd00::5/64"; f->nic[0].gateway6 = "ff02::2")                                   \
    X(gateway6_ipv4, "create.spec.nics[0].gateway6", f->nic[0].n_ips = 2;                          \
      f->ips0[1] = "fd00::5/64"; f->nic[0].gateway6 = "10.0.0.1")                                  \
    X(nic_dup_ip6, "create.spec.nics[1].ips[0]", f->nic[0].n_ips = 2; f->ips0[1] = "fd00::5/64";   \
      f->ips1[0] = "fd00:0:0:0::5/120")                                                            \
    X(nic1_ip, "create.spec.nics[1].ips[0]", f->ips1[0] = "224.0.0.1/32")                          \
    X(gateway_cidr, "create.spec.nics[0].gateway", f->nic[0].gateway = "10.0.0.1/24")              \
    X(gateway_loopback, "create.spec.nics[0].gateway", f->nic[0].gateway = "127.0.0.1")            \
    X(gateway_name, "create.spec.nics[0].gateway", f->nic[0].gateway = "router")                   \
    X(mtu_575, "create.spec.nics[0].mtu", f->nic[0].mtu = 575)                                     \
    X(mtu_9001, "create.spec.nics[0].mtu", f->nic[0].mtu = 9001)                                   \
    X(nic_dup_port, "create.spec.nics[1].port_id", f->nic[1].port_id = UUID_B)                     \
    X(nic_dup_mac, "create.spec.nics[1].mac", f->nic[1].mac = "52:54:00:12:34:56")                 \
    X(nic_dup_mac_case, "create.spec.nics[1].mac", f->nic[0].mac = "52:54:00:ab:cd:ef";            \
      f->nic[1].mac = "52:54:00:AB:CD:EF")                                                         \
    X(nic_dup_same, "create.spec.nics[1].port_id", f->nics[1] = &f->nic[0])                        \
    X(nic_dup_ip, "create.spec.nics[1].ips[0]", f->ips1[0] = "10.0.0.5/16")                        \
    X(nic_dup_ip_second, "create.spec.nics[1].ips[1]", f->nic[1].n_ips = 2;                        \
      f->ips1_2[0] = "192.168.7.9/32"; f->ips1_2[1] = "10.0.0.5/24"; f->nic[1].ips = f->ips1_2)    \
    X(nic_null, "create.spec.nics[1]", f->nics[1] = NULL)                                          \
    /* hostname */                                                                                 \
    X(hostname_empty, "create.spec.hostname", f->spec.hostname = "")                               \
    X(hostname_64, "create.spec.hostname", f->spec.hostname = rep(f, 'h', 64))                     \
    X(hostname_dash_first, "create.spec.hostname", f->spec.hostname = "-web")                      \
    X(hostname_dash_last, "create.spec.hostname", f->spec.hostname = "web-")                       \
    X(hostname_underscore, "create.spec.hostname", f->spec.hostname = "web_1")                     \
    X(hostname_dot, "create.spec.hostname", f->spec.hostname = "web.example.com")                  \
    X(hostname_slash, "create.spec.hostname", f->spec.hostname = "a/b")                            \
    /* ssh keys, user data, metadata */                                                            \
    X(ssh_keys_33, "create.spec.ssh_keys", f->spec.n_ssh_keys = 33)                                \
    X(ssh_key_empty, "create.spec.ssh_keys[0]", f->keys[0] = "")                                   \
    X(ssh_key_8193, "create.spec.ssh_keys[0]", f->keys[0] = rep(f, 'k', 8193))                     \
    X(ssh_key_newline, "create.spec.ssh_keys[1]", f->spec.n_ssh_keys = 2;                          \
      f->keys[1] = "ssh-rsa AAAA x\nssh-rsa BBBB y")                                               \
    X(ssh_key_bad_utf8, "create.spec.ssh_keys[0]", f->keys[0] = "ssh-rsa AAAA \xc0\xaf")           \
    X(user_data_65537, "create.spec.user_data", f->spec.user_data.len = 65537)                     \
    X(metadata_129, "create.spec.metadata", f->spec.n_metadata = 129)                              \
    X(meta_key_empty, "create.spec.metadata[\"\"]", META("", "v"))                                 \
    X(meta_key_control, "create.spec.metadata[\"a\\x01\"]", META("a\x01", "v"))                    \
    X(meta_key_quote, "create.spec.metadata[\"a\\\"b\\\\\"]", META("a\"b\\", "\xff"))              \
    X(meta_key_del, "create.spec.metadata[\"a\\x7f\"]", META("a\x7f", "v"))                        \
    X(meta_value_bad_utf8, "create.spec.metadata[\"k\"]", META("k", "\xff"))                       \
    X(meta_value_surrogate, "create.spec.metadata[\"k\"]", META("k", "\xed\xa0\x80"))              \
    X(meta_value_overlong, "create.spec.metadata[\"k\"]", META("k", "\xe0\x80\xaf"))               \
    X(meta_value_truncated, "create.spec.metadata[\"k\"]", META("k", "ok \xe2\x82"))               \
    X(meta_value_4097, "create.spec.metadata[\"k\"]", META("k", rep(f, 'v', 4097)))                \
    X(meta_dup_key, "create.spec.metadata[\"role\"]", f->meta[1].key = "role")                     \
    /* the other request kinds */                                                                  \
    X(delete_uuid, "delete.instance_uuid", USE(DELETE, delete_); f->delete_.instance_uuid = "x")   \
    X(start_uuid, "start.instance_uuid", USE(START, start); f->start.instance_uuid = "")           \
    X(pause_uuid, "pause.instance_uuid", USE(PAUSE, pause); f->pause.instance_uuid = "..")         \
    X(resume_uuid, "resume.instance_uuid", USE(RESUME, resume); f->resume.instance_uuid = NULL)    \
    X(suspend_uuid, "suspend.instance_uuid", USE(SUSPEND, suspend);                                \
      f->suspend.instance_uuid = UUID_A "0")                                                       \
    X(cancel_uuid, "cancel_migration.instance_uuid", USE(CANCEL_MIGRATION, cancel_migration);      \
      f->cancel_migration.instance_uuid = "")                                                      \
    X(stop_uuid, "stop.instance_uuid", USE(STOP, stop); f->stop.instance_uuid = "")                \
    X(stop_timeout, "stop.timeout_s", USE(STOP, stop); f->stop.timeout_s = 3601)                   \
    X(reboot_type_unknown, "reboot.type", USE(REBOOT, reboot); f->reboot.type = 3)                 \
    X(reboot_type_huge, "reboot.type", USE(REBOOT, reboot); f->reboot.type = INT32_MAX)            \
    X(snap_create_slash, "snapshot_create.snapshot_name", USE(SNAPSHOT_CREATE, snapshot_create);   \
      f->snapshot_create.snapshot_name = "a/b")                                                    \
    X(snap_revert_dotdot, "snapshot_revert.snapshot_name", USE(SNAPSHOT_REVERT, snapshot_revert);  \
      f->snapshot_revert.snapshot_name = "..")                                                     \
    X(snap_delete_empty, "snapshot_delete.snapshot_name", USE(SNAPSHOT_DELETE, snapshot_delete);   \
      f->snapshot_delete.snapshot_name = "")                                                       \
    X(clone_itself, "clone.spec.uuid", USE(CLONE, clone); f->clone.source_instance_uuid = UUID_A)  \
    X(clone_no_source, "clone.source_instance_uuid", USE(CLONE, clone);                            \
      f->clone.source_instance_uuid = "")                                                          \
    X(clone_bad_spec, "clone.spec.flavor.vcpus", USE(CLONE, clone); f->flavor.vcpus = 0)           \
    X(snap_export_dotdot, "snapshot_export.snapshot_name", USE(SNAPSHOT_EXPORT, snapshot_export);  \
      f->snapshot_export.snapshot_name = "..")                                                     \
    X(snap_export_file_url, "snapshot_export.upload_url", USE(SNAPSHOT_EXPORT, snapshot_export);   \
      f->snapshot_export.upload_url = "file:///etc/shadow")                                        \
    X(snap_export_nowhere, "snapshot_export.upload_url", USE(SNAPSHOT_EXPORT, snapshot_export);    \
      f->snapshot_export.upload_url = "")                                                          \
    X(snap_delete_uuid, "snapshot_delete.instance_uuid", USE(SNAPSHOT_DELETE, snapshot_delete);    \
      f->snapshot_delete.instance_uuid = "")                                                       \
    X(resize_no_flavor, "resize.flavor", USE(RESIZE, resize); f->resize.flavor = NULL)             \
    X(resize_vcpus, "resize.flavor.vcpus", USE(RESIZE, resize); f->flavor.vcpus = 0)               \
    X(rebuild_no_image, "rebuild.image", USE(REBUILD, rebuild); f->rebuild.image = NULL)           \
    X(rebuild_sha, "rebuild.image.sha256", USE(REBUILD, rebuild); f->image.sha256 = "x")           \
    X(rebuild_file_url, "rebuild.image.url", USE(REBUILD, rebuild);                                \
      f->image.url = "file:///var/lib/nodeagent/state.db")                                         \
    X(console_tail, "console_log.tail_bytes", USE(CONSOLE_LOG, console_log);                       \
      f->console_log.tail_bytes = 262145)                                                          \
    X(migrate_no_target, "migrate.target_node", USE(MIGRATE, migrate);                             \
      f->migrate.target_node = "")                                                                 \
    X(migrate_target_slash, "migrate.target_node", USE(MIGRATE, migrate);                          \
      f->migrate.target_node = "../node")                                                          \
    X(migrate_target_dot, "migrate.target_node", USE(MIGRATE, migrate);                            \
      f->migrate.target_node = ".")                                                                \
    X(migrate_downtime, "migrate.settings.max_downtime_ms", USE(MIGRATE, migrate);                 \
      f->settings.max_downtime_ms = 600001)                                                        \
    X(migrate_timeout, "migrate.settings.timeout_s", USE(MIGRATE, migrate);                        \
      f->settings.timeout_s = 86401)                                                               \
    /* migration peer messages */                                                                  \
    X(prepare_id, "migration_prepare.migration_id", USE(MIGRATION_PREPARE, migration_prepare);     \
      f->migration_prepare.migration_id = "m-1")                                                   \
    X(prepare_source, "migration_prepare.source_node", USE(MIGRATION_PREPARE, migration_prepare);  \
      f->migration_prepare.source_node = "")                                                       \
    X(prepare_no_spec, "migration_prepare.spec", USE(MIGRATION_PREPARE, migration_prepare);        \
      f->migration_prepare.spec = NULL)                                                            \
    X(prepare_vcpus, "migration_prepare.spec.flavor.vcpus",                                        \
      USE(MIGRATION_PREPARE, migration_prepare);                                                   \
      f->flavor.vcpus = 2000)                                                                      \
    X(prepare_mac, "migration_prepare.spec.nics[0].mac",                                           \
      USE(MIGRATION_PREPARE, migration_prepare);                                                   \
      f->nic[0].mac = "03:00:00:00:00:01")                                                         \
    X(prepare_cpu_xml, "migration_prepare.cpu_model_xml",                                          \
      USE(MIGRATION_PREPARE, migration_prepare);                                                   \
      f->migration_prepare.cpu_model_xml = "<\xfe>")                                               \
    X(prepare_cpu_xml_big, "migration_prepare.cpu_model_xml",                                      \
      USE(MIGRATION_PREPARE, migration_prepare);                                                   \
      f->migration_prepare.cpu_model_xml = rep(f, 'x', 65537))                                     \
    X(prepare_disks_17, "migration_prepare.disks", USE(MIGRATION_PREPARE, migration_prepare);      \
      f->migration_prepare.n_disks = 17)                                                           \
    X(prepare_disk_name, "migration_prepare.disks[0].name",                                        \
      USE(MIGRATION_PREPARE, migration_prepare);                                                   \
      f->disk[0].name = "../../etc/shadow")                                                        \
    X(prepare_disk_size, "migration_prepare.disks[1].virtual_size",                                \
      USE(MIGRATION_PREPARE, migration_prepare);                                                   \
      f->disk[1].virtual_size = 0)                                                                 \
    X(prepare_disk_dup, "migration_prepare.disks[1].name",                                         \
      USE(MIGRATION_PREPARE, migration_prepare);                                                   \
      f->disk[1].name = "disk")                                                                    \
    X(prepare_no_envelope, "migration_prepare.migrate_envelope",                                   \
      USE(MIGRATION_PREPARE, migration_prepare);                                                   \
      f->migration_prepare.migrate_envelope.len = 0)                                               \
    X(prepare_signature_long, "migration_prepare.migrate_signature",                               \
      USE(MIGRATION_PREPARE, migration_prepare);                                                   \
      f->migration_prepare.migrate_signature = LONG_129)                                           \
    X(prepared_no_libvirt_uri, "migration_prepared.libvirt_uri",                                   \
      USE(MIGRATION_PREPARED, migration_prepared);                                                 \
      f->migration_prepared.libvirt_uri = "")                                                      \
    X(prepared_no_xml, "migration_prepared.domain_xml",                                            \
      USE(MIGRATION_PREPARED, migration_prepared);                                                 \
      f->migration_prepared.domain_xml = "")                                                       \
    X(prepared_disks_uri_space, "migration_prepared.disks_uri",                                    \
      USE(MIGRATION_PREPARED, migration_prepared);                                                 \
      f->migration_prepared.disks_uri = "unix:///a b")                                             \
    X(prepared_id, "migration_prepared.migration_id", USE(MIGRATION_PREPARED, migration_prepared); \
      f->migration_prepared.migration_id = "")                                                     \
    X(prepared_dest, "migration_prepared.dest_node", USE(MIGRATION_PREPARED, migration_prepared);  \
      f->migration_prepared.dest_node = "..")                                                      \
    X(prepared_no_uri, "migration_prepared.migrate_uri",                                           \
      USE(MIGRATION_PREPARED, migration_prepared);                                                 \
      f->migration_prepared.migrate_uri = "")                                                      \
    X(prepared_uri_space, "migration_prepared.migrate_uri",                                        \
      USE(MIGRATION_PREPARED, migration_prepared);                                                 \
      f->migration_prepared.migrate_uri = "tcp://a b")                                             \
    X(prepared_error_unknown, "migration_prepared.error.code",                                     \
      USE(MIGRATION_PREPARED, migration_prepared);                                                 \
      f->migration_prepared.error = &f->error; f->error.code = 99)                                 \
    X(prepared_error_unspecified, "migration_prepared.error.code",                                 \
      USE(MIGRATION_PREPARED, migration_prepared);                                                 \
      f->migration_prepared.error = &f->error; f->error.code = 0)                                  \
    X(prepared_error_message, "migration_prepared.error.message",                                  \
      USE(MIGRATION_PREPARED, migration_prepared);                                                 \
      f->migration_prepared.error = &f->error; f->error.message = "\x80")                          \
    X(finish_id, "migration_finish.migration_id", USE(MIGRATION_FINISH, migration_finish);         \
      f->migration_finish.migration_id = UUID_C "\xff")                                            \
    X(finish_source, "migration_finish.source_node", USE(MIGRATION_FINISH, migration_finish);      \
      f->migration_finish.source_node = "")                                                        \
    X(abort_id, "migration_abort.migration_id", USE(MIGRATION_ABORT, migration_abort);             \
      f->migration_abort.migration_id = "")                                                        \
    X(abort_node, "migration_abort.node", USE(MIGRATION_ABORT, migration_abort);                   \
      f->migration_abort.node = "a b")                                                             \
    X(abort_error_code, "migration_abort.error.code", USE(MIGRATION_ABORT, migration_abort);       \
      f->error.code = 99)                                                                          \
    X(abort_error_field, "migration_abort.error.field", USE(MIGRATION_ABORT, migration_abort);     \
      f->error.field = "a\nb")                                                                     \
    X(sg_port_min, "security_group_put.group.rules[0].port_range_min",                             \
      USE(SECURITY_GROUP_PUT, security_group_put);                                                 \
      f->rule[0].port_range_min = 0)                                                               \
    X(sg_port_max, "security_group_put.group.rules[1].port_range_max",                             \
      USE(SECURITY_GROUP_PUT, security_group_put);                                                 \
      f->rule[1].port_range_max = 80)                                                              \
    X(sg_icmp_ports, "security_group_put.group.rules[2].port_range_min",                           \
      USE(SECURITY_GROUP_PUT, security_group_put);                                                 \
      f->rule[2].port_range_min = 1)                                                               \
    X(sg_icmp_not_icmp, "security_group_put.group.rules[0].icmp",                                  \
      USE(SECURITY_GROUP_PUT, security_group_put);                                                 \
      f->rule[0].icmp = &f->icmp)                                                                  \
    X(sg_icmp_type, "security_group_put.group.rules[2].icmp.type",                                 \
      USE(SECURITY_GROUP_PUT, security_group_put);                                                 \
      f->rule[2].protocol = NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_ICMP;                          \
      f->rule[2].icmp = &f->icmp; f->icmp.type = 256)                                              \
    X(sg_icmp_code, "security_group_put.group.rules[2].icmp.code",                                 \
      USE(SECURITY_GROUP_PUT, security_group_put);                                                 \
      f->rule[2].protocol = NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_ICMP;                          \
      f->rule[2].icmp = &f->icmp; f->icmp.type = 128; f->icmp.match_code = 1; f->icmp.code = 256)  \
    X(sg_icmp_code_unmatched, "security_group_put.group.rules[2].icmp.code",                       \
      USE(SECURITY_GROUP_PUT, security_group_put);                                                 \
      f->rule[2].protocol = NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_ICMP;                          \
      f->rule[2].icmp = &f->icmp; f->icmp.type = 1; f->icmp.code = 4)                              \
    X(sg_direction, "security_group_put.group.rules[0].direction",                                 \
      USE(SECURITY_GROUP_PUT, security_group_put);                                                 \
      f->rule[0].direction = 0)                                                                    \
    X(sg_cidr_family, "security_group_put.group.rules[2].remote_cidr",                             \
      USE(SECURITY_GROUP_PUT, security_group_put);                                                 \
      f->rule[2].remote_cidr = "10.0.0.0/8")                                                       \
    X(sg_cidr_host_bits, "security_group_put.group.rules[0].remote_cidr",                          \
      USE(SECURITY_GROUP_PUT, security_group_put);                                                 \
      f->rule[0].remote_cidr = "10.0.0.1/24")                                                      \
    X(sg_both_remotes, "security_group_put.group.rules[1].remote_group",                           \
      USE(SECURITY_GROUP_PUT, security_group_put);                                                 \
      f->rule[1].remote_cidr = "10.0.0.0/24")                                                      \
    X(sg_member, "security_group_put.group.member_ips[1]",                                         \
      USE(SECURITY_GROUP_PUT, security_group_put);                                                 \
      f->members[1] = "10.0.0.0/24")                                                               \
    X(sg_id, "security_group_put.group.id", USE(SECURITY_GROUP_PUT, security_group_put);           \
      f->group.id = "../x")                                                                        \
    X(sg_delete_id, "security_group_delete.group_id",                                              \
      USE(SECURITY_GROUP_DELETE, security_group_delete);                                           \
      f->security_group_delete.group_id = "")                                                      \
    X(sg_port_repeat, "port_security_groups.security_groups[1]",                                   \
      USE(PORT_SECURITY_GROUPS, port_security_groups);                                             \
      f->group_ids[1] = "db")                                                                      \
    X(sg_nic_group, "create.spec.nics[0].security_groups[0]", f->nic[0].n_security_groups = 1;     \
      f->nic[0].security_groups = f->group_ids; f->group_ids[0] = "a b")                           \
    /* the first bad field wins */                                                                 \
    X(first_wins, "create.spec.name", f->spec.name = "/"; f->nic[0].mac = "x")

struct bad_case {
    void (*mutate)(struct fx *f);
    const char *field;
};

#define X(id, field, ...)                                                                          \
    static void mutate_##id(struct fx *f)                                                          \
    {                                                                                              \
        __VA_ARGS__;                                                                               \
    }
BAD_CASES(X)
#undef X

static const struct {
    const char *name;
    struct bad_case c;
} bad_cases[] = {
#define X(id, field, ...) {"bad_" #id, {mutate_##id, field}},
    BAD_CASES(X)
#undef X
};

static void
test_bad_case(void **state)
{
    const struct bad_case *c = *state;
    struct fx *f = fx_new();
    c->mutate(f);
    na_error_free(assert_invalid(f, c->field));
    fx_free(f);
}

/* --- valid requests ----------------------------------------------------------------------- */

static void
test_valid_create(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    assert_valid(f);
    fx_free(f);
}

static void
test_valid_every_kind(void **state)
{
    (void)state;
    struct fx *f = fx_new();
#define X(name, CASE, field, ...)                                                                  \
    USE(CASE, field);                                                                              \
    assert_valid(f);
    AGENT_REQUEST_KINDS(X)
#undef X
    fx_free(f);
}

/* An ICMP rule may name a type (any code), or a type and its code (0 included). */
static void
test_valid_icmp_type_and_code(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    USE(SECURITY_GROUP_PUT, security_group_put);
    f->rule[2].protocol = NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_ICMP;
    f->rule[2].icmp = &f->icmp;
    f->icmp.type = 128;
    assert_valid(f);
    f->icmp.type = 0;
    f->icmp.match_code = 1;
    f->icmp.code = 0;
    assert_valid(f);
    f->icmp.type = 255;
    f->icmp.code = 255;
    assert_valid(f);
    fx_free(f);
}

/* A spec read back from a domain's metadata gets a create's checks, named under "spec". */
static void
test_instance_spec_alone(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(agent_validate_instance_spec(&f->spec, "spec", &err), 0);
    f->nic[1].mac = (char *)"ff:ff:ff:ff:ff:ff";
    assert_true(agent_validate_instance_spec(&f->spec, "spec", &err) < 0);
    assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
    assert_string_equal(err->field, "spec.nics[1].mac");
    na_error_clear(&err);
    assert_true(agent_validate_instance_spec(NULL, "spec", &err) < 0);
    assert_string_equal(err->field, "spec");
    fx_free(f);
}

/* The edges of every range are inside it, and optional things may be absent. */
static void
test_valid_edges(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->env.request_id = "3f0c2a6e-8d4b-4c1e-9a57-0b6e2d9f1c33:retry.2_x";
    f->env.sent_at_ms = 0;
    f->env.reply_to = "compute-03";
    f->spec.name = rep(f, 'n', 63);
    f->spec.tenant_id = rep(f, 't', 64);
    f->spec.hostname = "a1-b2-c3";
    f->image.id = rep(f, 'i', 64);
    f->image.format = NODEAGENT__V1__IMAGE_FORMAT__IMAGE_FORMAT_RAW;
    f->flavor.name = "";
    f->flavor.vcpus = 1024;
    f->flavor.memory_mib = 16777216;
    f->flavor.root_disk_gib = 65536;
    f->flavor.cpu_shares = 262144;
    f->flavor.cpu_quota_percent = 100;
    f->flavor.disk_read_iops_sec = 1000000;
    f->flavor.disk_write_iops_sec = 1000000;
    f->flavor.disk_read_bytes_sec = 1ULL << 40;
    f->flavor.disk_write_bytes_sec = 1ULL << 40;
    f->flavor.nic_inbound_average_kib_sec = 4194304;
    f->flavor.nic_inbound_peak_kib_sec = 4194304;
    f->flavor.nic_inbound_burst_kib = 1048576;
    f->flavor.nic_outbound_average_kib_sec = 4194304;
    f->flavor.nic_outbound_peak_kib_sec = 4194304;
    f->flavor.nic_outbound_burst_kib = 1048576;
    f->nic[0].vni = 16777215;
    f->nic[0].mtu = 9000;
    f->nic[1].mtu = 576;
    f->nic[0].n_ips = 16;
    for (int i = 0; i < 16; i++)
        f->ips0[i] = "172.16.0.1/12";
    f->ips1[0] = "1.2.3.4/1";
    f->spec.n_ssh_keys = 32;
    f->spec.user_data.len = 65536;
    f->spec.user_data.data = (uint8_t *)rep(f, 'u', 65536);
    f->spec.n_metadata = 1;
    f->meta[0].key = rep(f, 'k', 255);
    f->meta[0].value = rep(f, 'v', 4096);
    assert_valid(f);

    f->spec.n_nics = 0;
    f->spec.n_ssh_keys = 0;
    f->spec.n_metadata = 0;
    f->spec.user_data.len = 0;
    f->flavor.vcpus = 1;
    f->flavor.memory_mib = 64;
    f->flavor.root_disk_gib = 1;
    f->flavor.cpu_shares = 2;
    f->flavor.cpu_quota_percent = 1;
    f->flavor.disk_read_iops_sec = 1;
    f->flavor.disk_write_iops_sec = 1;
    f->flavor.disk_read_bytes_sec = 65536;
    f->flavor.disk_write_bytes_sec = 65536;
    f->flavor.nic_inbound_average_kib_sec = 8;
    f->flavor.nic_inbound_peak_kib_sec = 0;
    f->flavor.nic_inbound_burst_kib = 1;
    f->flavor.nic_outbound_average_kib_sec = 8;
    f->flavor.nic_outbound_peak_kib_sec = 8;
    f->flavor.nic_outbound_burst_kib = 0;
    f->spec.hostname = "a";
    f->spec.name = "a";
    assert_valid(f);

    USE(REBOOT, reboot);
    f->reboot.type = NODEAGENT__V1__REBOOT_TYPE__REBOOT_TYPE_UNSPECIFIED;
    assert_valid(f);
    USE(STOP, stop);
    f->stop.timeout_s = 3600;
    assert_valid(f);
    USE(CONSOLE_LOG, console_log);
    f->console_log.tail_bytes = 262144;
    assert_valid(f);
    USE(MIGRATE, migrate);
    f->settings.max_downtime_ms = 600000;
    f->settings.timeout_s = 86400;
    assert_valid(f);
    f->migrate.settings = NULL;
    assert_valid(f);
    USE(MIGRATION_PREPARED, migration_prepared);
    f->migration_prepared.error = &f->error; /* a failed destination needs no URI */
    f->migration_prepared.migrate_uri = "";
    assert_valid(f);
    USE(MIGRATION_ABORT, migration_abort);
    f->migration_abort.error = NULL;
    assert_valid(f);
    USE(MIGRATION_PREPARE, migration_prepare);
    f->migration_prepare.n_disks = 0;
    f->migration_prepare.cpu_model_xml = "";
    assert_valid(f);
    fx_free(f);
}

/* A dual-stack NIC: IPv4 and IPv6 addresses, both gateways (the IPv6 one link-local). */
static void
test_valid_dual_stack(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->nic[0].n_ips = 3;
    f->ips0[1] = "fd00:0:0:1::5/64";
    f->ips0[2] = "2001:db8::5/128";
    f->nic[0].gateway6 = "fd00:0:0:1::1";
    assert_valid(f);
    f->nic[0].gateway6 = "fe80::1";
    assert_valid(f);
    f->ips1[0] = "fd00:0:0:1::6/1";
    assert_valid(f);
    fx_free(f);
}

/* Addresses are unique within a network, not across networks. */
static void
test_valid_same_address_in_two_networks(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->ips1[0] = "10.0.0.5/24";
    f->nic[1].network_id = UUID_A;
    f->nic[1].vni = 4243;
    assert_valid(f);
    fx_free(f);
}

static void
test_valid_strings(void **state)
{
    (void)state;
    static const char *const urls[] = {
        "http://example.com/a.qcow2",
        "https://user:pw@example.com:8443/a.qcow2?sig=abc%20def#frag",
        "https://[2001:db8::1]:443/a.raw",
        "https://10.0.0.1",
    };
    static const char *const macs[] = {"52:54:00:12:34:56", "FA:16:3E:AA:BB:CC",
                                       "02:00:00:00:00:00", "fe:ff:ff:ff:ff:ff"};
    struct fx *f = fx_new();
    for (size_t i = 0; i < NA_ARRAY_SIZE(urls); i++) {
        f->image.url = (char *)urls[i];
        assert_valid(f);
    }
    for (size_t i = 0; i < NA_ARRAY_SIZE(macs); i++) {
        f->nic[0].mac = (char *)macs[i];
        assert_valid(f);
    }
    f->spec.n_ssh_keys = 1;
    f->keys[0] = "ssh-ed25519 AAAA Zoë's laptop";
    f->meta[0].key = "ключ";
    f->meta[0].value = "multi\nline\tvalue \xf0\x9f\x98\x80";
    assert_valid(f);
    fx_free(f);
}

/* --- messages ----------------------------------------------------------------------------- */

static void
test_message_says_what_and_allowed(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->spec.name = "a/b";
    struct na_error *err = assert_invalid(f, "create.spec.name");
    assert_non_null(strstr(err->msg, "create.spec.name: \"a/b\" has a character outside "
                                     "[A-Za-z0-9._-]"));
    assert_non_null(strstr(err->msg, "1..63"));
    na_error_free(err);

    f->spec.name = "ok";
    f->flavor.vcpus = 4096;
    err = assert_invalid(f, "create.spec.flavor.vcpus");
    assert_string_equal(err->msg,
                        "create.spec.flavor.vcpus: 4096 is out of range; allowed 1..1024");
    na_error_free(err);

    f->flavor.vcpus = 1;
    f->image.url = "file:///etc/shadow";
    err = assert_invalid(f, "create.spec.image.url");
    assert_string_equal(err->msg, "create.spec.image.url: \"file:///etc/shadow\" is a file URL; "
                                  "image URLs must be http:// or https://");
    na_error_free(err);

    f->image.url = "http://example.com/a.qcow2";
    f->flavor.vcpus = 1;
    f->image.format = 7;
    err = assert_invalid(f, "create.spec.image.format");
    assert_string_equal(err->msg, "create.spec.image.format: 7 is not a known ImageFormat value; "
                                  "allowed: IMAGE_FORMAT_QCOW2, IMAGE_FORMAT_RAW");
    na_error_free(err);
    fx_free(f);
}

/* Hostile values come back escaped and cut, never verbatim. */
static void
test_message_escapes_and_cuts(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->spec.name = "\x1b[31mred\"\\";
    struct na_error *err = assert_invalid(f, "create.spec.name");
    assert_non_null(strstr(err->msg, "\"\\x1b[31mred\\\"\\\\\""));
    na_error_free(err);

    char *huge = rep(f, 'A', 100000);
    huge[50] = '/';
    f->spec.name = huge;
    err = assert_invalid(f, "create.spec.name");
    assert_true(strlen(err->msg) < 400);
    assert_non_null(strstr(err->msg, "AAAA\"... is 100000 bytes long"));
    na_error_free(err);

    /* A long metadata key is cut in the path too. */
    f->spec.name = "ok";
    f->meta[0].key = rep(f, 'k', 300);
    err = assert_invalid(f,
                         "create.spec.metadata[\"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\""
                         "...]");
    assert_non_null(strstr(err->msg, "300 bytes long"));
    na_error_free(err);
    fx_free(f);
}

static void
test_null_err_and_null_env(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->spec.name = "..";
    assert_true(agent_validate_envelope(&f->env, NULL) < 0);
    struct na_error *err = NULL;
    assert_true(agent_validate_envelope(NULL, &err) < 0);
    assert_string_equal(err->field, "body");
    na_error_free(err);
    fx_free(f);
}

/* --- through the wire --------------------------------------------------------------------- */

static Nodeagent__V1__Envelope *
roundtrip(const Nodeagent__V1__Envelope *env, uint8_t *extra, size_t extra_size)
{
    size_t size = nodeagent__v1__envelope__get_packed_size(env);
    uint8_t *buf = malloc(size + extra_size);
    assert_non_null(buf);
    nodeagent__v1__envelope__pack(env, buf);
    if (extra_size)
        memcpy(buf + size, extra, extra_size);
    Nodeagent__V1__Envelope *out = nodeagent__v1__envelope__unpack(NULL, size + extra_size, buf);
    free(buf);
    assert_non_null(out);
    return out;
}

static void
test_wire_valid_and_unknown_enum(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    Nodeagent__V1__Envelope *env = roundtrip(&f->env, NULL, 0);
    struct na_error *err = NULL;
    assert_int_equal(agent_validate_envelope(env, &err), 0);
    nodeagent__v1__envelope__free_unpacked(env, NULL);

    /* protobuf-c keeps an enum number it doesn't know; validation refuses it. */
    f->image.format = 42;
    env = roundtrip(&f->env, NULL, 0);
    assert_int_equal(env->create->spec->image->format, 42);
    assert_true(agent_validate_envelope(env, &err) < 0);
    assert_string_equal(err->field, "create.spec.image.format");
    assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
    na_error_clear(&err);
    nodeagent__v1__envelope__free_unpacked(env, NULL);
    fx_free(f);
}

/* A request kind newer than this agent (an unknown body field) is UNIMPLEMENTED; an unknown
 * field outside the body range with no body is an envelope without a request. */
static void
test_wire_unknown_kind(void **state)
{
    (void)state;
    struct fx *f = fx_new();
    f->env.body_case = NODEAGENT__V1__ENVELOPE__BODY__NOT_SET;
    /* field 99, length-delimited (tag 99 << 3 | 2 = 794 = 0x9a 0x06), 2 bytes of payload */
    uint8_t future_kind[] = {0x9a, 0x06, 0x02, 0x0a, 0x00};
    Nodeagent__V1__Envelope *env = roundtrip(&f->env, future_kind, sizeof(future_kind));
    struct na_error *err = NULL;
    assert_true(agent_validate_envelope(env, &err) < 0);
    assert_int_equal(err->code, NA_CODE_UNIMPLEMENTED);
    assert_string_equal(err->field, "body");
    assert_non_null(strstr(err->msg, "99"));
    na_error_clear(&err);
    nodeagent__v1__envelope__free_unpacked(env, NULL);

    /* field 5, varint */
    uint8_t future_scalar[] = {0x28, 0x01};
    env = roundtrip(&f->env, future_scalar, sizeof(future_scalar));
    assert_true(agent_validate_envelope(env, &err) < 0);
    assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
    assert_string_equal(err->field, "body");
    assert_string_equal(err->msg, "body: no request in envelope (missing or unknown body)");
    na_error_clear(&err);
    nodeagent__v1__envelope__free_unpacked(env, NULL);

    /* Unknown fields beside a known body are ignored. */
    USE(STOP, stop);
    env = roundtrip(&f->env, future_kind, sizeof(future_kind));
    assert_int_equal(agent_validate_envelope(env, &err), 0);
    nodeagent__v1__envelope__free_unpacked(env, NULL);
    fx_free(f);
}

int
main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_valid_create),
        cmocka_unit_test(test_instance_spec_alone),
        cmocka_unit_test(test_valid_every_kind),
        cmocka_unit_test(test_valid_icmp_type_and_code),
        cmocka_unit_test(test_valid_edges),
        cmocka_unit_test(test_valid_same_address_in_two_networks),
        cmocka_unit_test(test_valid_dual_stack),
        cmocka_unit_test(test_valid_strings),
        cmocka_unit_test(test_message_says_what_and_allowed),
        cmocka_unit_test(test_message_escapes_and_cuts),
        cmocka_unit_test(test_null_err_and_null_env),
        cmocka_unit_test(test_wire_valid_and_unknown_enum),
        cmocka_unit_test(test_wire_unknown_kind),
    };
    size_t n_fixed = NA_ARRAY_SIZE(fixed), n_bad = NA_ARRAY_SIZE(bad_cases);
    struct CMUnitTest *tests = calloc(n_fixed + n_bad, sizeof(*tests));
    memcpy(tests, fixed, sizeof(fixed));
    for (size_t i = 0; i < n_bad; i++)
        tests[n_fixed + i] = (struct CMUnitTest){.name = bad_cases[i].name,
                                                 .test_func = test_bad_case,
                                                 .initial_state = (void *)&bad_cases[i].c};
    int failed = _cmocka_run_group_tests("validate", tests, n_fixed + n_bad, NULL, NULL);
    free(tests);
    return failed;
}
