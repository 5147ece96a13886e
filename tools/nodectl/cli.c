/* Command line: the subcommand table, argv parsing and help, from one set of tables so the
 * help cannot disagree with what is accepted. */
#include "tools/nodectl/nodectl.h"

#include <errno.h>
#include <string.h>

struct flag_info {
    const char *name;
    const char *metavar;
    const char *help;
};

static const struct flag_info flag_infos[NODECTL_F__COUNT] = {
#define X(ID, n, m, h) [NODECTL_F_##ID] = {n, m, h},
    NODECTL_FLAGS(X)
#undef X
};

static bool
flag_repeatable(enum nodectl_flag f)
{
    return f == NODECTL_F_NIC || f == NODECTL_F_SSH_KEY || f == NODECTL_F_SSH_KEY_FILE ||
           f == NODECTL_F_META || f == NODECTL_F_ENDPOINT || f == NODECTL_F_RULE ||
           f == NODECTL_F_MEMBER || f == NODECTL_F_GROUP;
}

#define REQ_COMMON NODECTL_F_REQUEST_ID, NODECTL_F_WAIT, NODECTL_F_WAIT_TIMEOUT, NODECTL_F_OUT
#define IMAGE_FLAGS                                                                                \
    NODECTL_F_IMAGE_ID, NODECTL_F_IMAGE_URL, NODECTL_F_IMAGE_SHA256, NODECTL_F_IMAGE_FORMAT
#define FLAVOR_FLAGS                                                                               \
    NODECTL_F_VCPUS, NODECTL_F_MEMORY_MIB, NODECTL_F_DISK_GIB, NODECTL_F_FLAVOR_NAME,              \
        NODECTL_F_LIMITS

/* A new instance's spec (create, clone). */
#define SPEC_FLAGS                                                                                 \
    NODECTL_F_UUID, NODECTL_F_NAME, NODECTL_F_TENANT, FLAVOR_FLAGS, IMAGE_FLAGS, NODECTL_F_NIC,    \
        NODECTL_F_HOSTNAME, NODECTL_F_SSH_KEY, NODECTL_F_SSH_KEY_FILE, NODECTL_F_USER_DATA_FILE,   \
        NODECTL_F_META

static const enum nodectl_flag f_create[] = {SPEC_FLAGS, REQ_COMMON};
static const enum nodectl_flag f_clone[] = {NODECTL_F_SNAPSHOT, SPEC_FLAGS, REQ_COMMON};
static const enum nodectl_flag f_plain[] = {REQ_COMMON};
static const enum nodectl_flag f_stop[] = {NODECTL_F_SHUTDOWN_TIMEOUT, NODECTL_F_FORCE, REQ_COMMON};
static const enum nodectl_flag f_reboot[] = {NODECTL_F_HARD, REQ_COMMON};
static const enum nodectl_flag f_snapshot[] = {NODECTL_F_SNAPSHOT, REQ_COMMON};
static const enum nodectl_flag f_export[] = {NODECTL_F_SNAPSHOT, NODECTL_F_UPLOAD_URL,
                                             NODECTL_F_PUBLISH, REQ_COMMON};
static const enum nodectl_flag f_snapshot_create[] = {NODECTL_F_SNAPSHOT, NODECTL_F_DESCRIPTION,
                                                      NODECTL_F_QUIESCE, REQ_COMMON};
static const enum nodectl_flag f_snapshot_delete[] = {NODECTL_F_SNAPSHOT, NODECTL_F_CHILDREN,
                                                      REQ_COMMON};
static const enum nodectl_flag f_resize[] = {FLAVOR_FLAGS, REQ_COMMON};
static const enum nodectl_flag f_rebuild[] = {IMAGE_FLAGS, REQ_COMMON};
static const enum nodectl_flag f_console[] = {NODECTL_F_TAIL_BYTES, REQ_COMMON};
static const enum nodectl_flag f_migrate[] = {
    NODECTL_F_TO,        NODECTL_F_MAX_DOWNTIME_MS,   NODECTL_F_BANDWIDTH, NODECTL_F_AUTO_CONVERGE,
    NODECTL_F_POST_COPY, NODECTL_F_MIGRATION_TIMEOUT, REQ_COMMON};
static const enum nodectl_flag f_events[] = {
    NODECTL_F_FROM_BEGINNING,  NODECTL_F_TO_END, NODECTL_F_FILTER_REQUEST_ID,
    NODECTL_F_FILTER_INSTANCE, NODECTL_F_COUNT,  NODECTL_F_EVENTS_TIMEOUT};
static const enum nodectl_flag f_reports[] = {NODECTL_F_FROM_BEGINNING, NODECTL_F_TO_END,
                                              NODECTL_F_COUNT, NODECTL_F_EVENTS_TIMEOUT};
static const enum nodectl_flag f_keygen[] = {NODECTL_F_PUBLIC_OUT};
static const enum nodectl_flag f_cert_issue[] = {
    NODECTL_F_NODE_ID,       NODECTL_F_PUBLIC_KEY,   NODECTL_F_ENDPOINT, NODECTL_F_DAYS,
    NODECTL_F_NOT_BEFORE_MS, NODECTL_F_NOT_AFTER_MS, NODECTL_F_CERT_OUT};
static const enum nodectl_flag f_cert_show[] = {NODECTL_F_CONTROL_PLANE_KEY};
static const enum nodectl_flag f_orphans[] = {NODECTL_F_RELEASE};
static const enum nodectl_flag f_sg_put[] = {NODECTL_F_RULE, NODECTL_F_MEMBER, NODECTL_F_GROUP_NAME,
                                             REQ_COMMON};
static const enum nodectl_flag f_port_groups[] = {NODECTL_F_GROUP, REQ_COMMON};

#define FLAGS(arr) arr, NA_ARRAY_SIZE(arr)
#define REQ(name, kind, flags, summary)                                                            \
    {                                                                                              \
        name, "UUID", summary, AGENT_REQ_##kind, FLAGS(flags), nodectl_cmd_request                 \
    }

static const struct nodectl_command commands[] = {
    {"create", NULL, "create an instance", AGENT_REQ_CREATE, FLAGS(f_create), nodectl_cmd_request},
    {"clone", "SOURCE",
     "create an instance whose disk is a copy of SOURCE's (as it is, or at --snapshot)",
     AGENT_REQ_CLONE, FLAGS(f_clone), nodectl_cmd_request},
    REQ("delete", DELETE, f_plain, "delete an instance and everything it uses"),
    REQ("start", START, f_plain, "start a stopped instance"),
    REQ("stop", STOP, f_stop, "stop an instance (graceful, then forced)"),
    REQ("reboot", REBOOT, f_reboot, "reboot an instance"),
    REQ("pause", PAUSE, f_plain, "pause an instance's CPUs"),
    REQ("resume", RESUME, f_plain, "resume a paused or suspended instance"),
    REQ("suspend", SUSPEND, f_plain, "save an instance's memory to disk and stop it"),
    REQ("snapshot create", SNAPSHOT_CREATE, f_snapshot_create,
        "snapshot an instance (with its memory when it runs)"),
    REQ("snapshot revert", SNAPSHOT_REVERT, f_snapshot,
        "bring an instance back to a snapshot (running or stopped as it was then)"),
    REQ("snapshot delete", SNAPSHOT_DELETE, f_snapshot_delete,
        "delete a snapshot (with --children, its subtree)"),
    {"snapshot list", "UUID", "an instance's snapshots as the agent records them (admin socket)",
     AGENT_REQ_NONE, NULL, 0, nodectl_cmd_snapshot_list},
    REQ("snapshot export", SNAPSHOT_EXPORT, f_export,
        "flatten the disk (as it is, or at --snapshot) into a standalone image: upload and/or "
        "publish it"),
    REQ("resize", RESIZE, f_resize, "give an instance a new flavor (cold)"),
    REQ("rebuild", REBUILD, f_rebuild, "give an instance a new root disk from an image"),
    REQ("console-log", CONSOLE_LOG, f_console,
        "fetch the tail of the console log (printed with --wait)"),
    REQ("migrate", MIGRATE, f_migrate, "live-migrate an instance to another node"),
    REQ("cancel-migration", CANCEL_MIGRATION, f_plain, "cancel a running migration"),
    {"security-group-put", "ID", "create or replace a security group (its rules and members)",
     AGENT_REQ_SECURITY_GROUP_PUT, FLAGS(f_sg_put), nodectl_cmd_request},
    {"security-group-delete", "ID", "delete a security group no port of the node uses",
     AGENT_REQ_SECURITY_GROUP_DELETE, FLAGS(f_plain), nodectl_cmd_request},
    {"port-security-groups", "PORT", "set the security groups of a port",
     AGENT_REQ_PORT_SECURITY_GROUPS, FLAGS(f_port_groups), nodectl_cmd_request},
    {"events", NULL, "follow the events topic", AGENT_REQ_NONE, FLAGS(f_events),
     nodectl_cmd_events},
    {"status", NULL, "the agent's health and instance count (admin socket)", AGENT_REQ_NONE, NULL,
     0, nodectl_cmd_status},
    {"instances", "[UUID]",
     "list instances, or show one with its last CPU, memory, disk and NIC figures (admin socket)",
     AGENT_REQ_NONE, NULL, 0, nodectl_cmd_instances},
    {"capacity", NULL, "inventory, usage, free, memory sharing, Placement state (admin socket)",
     AGENT_REQ_NONE, NULL, 0, nodectl_cmd_capacity},
    {"peers", NULL, "the other nodes, as their announcements tell (admin socket)", AGENT_REQ_NONE,
     NULL, 0, nodectl_cmd_peers},
    {"orphans", NULL,
     "domains and directories of this node that its store does not record, and whether they "
     "hold the agent (admin socket)",
     AGENT_REQ_NONE, FLAGS(f_orphans), nodectl_cmd_orphans},
    {"purge", "UUID",
     "undefine a current orphan's domain and remove its directory; waits until done (admin "
     "socket)",
     AGENT_REQ_NONE, NULL, 0, nodectl_cmd_purge},
    {"adopt", "UUID",
     "make a current orphan's domain an instance of this node again, from the spec its "
     "metadata carries (the guest keeps running); waits until done (admin socket)",
     AGENT_REQ_NONE, NULL, 0, nodectl_cmd_adopt},
    {"capacity-reports", NULL, "follow the node's capacity reports on the capacity topic",
     AGENT_REQ_NONE, FLAGS(f_reports), nodectl_cmd_capacity_reports},
    /* A name of two words is a command group and its verb, given as two arguments. */
    {"keygen", "FILE", "make an Ed25519 key pair: FILE (0600, never replaced) and its .pub",
     AGENT_REQ_NONE, FLAGS(f_keygen), nodectl_cmd_keygen},
    {"node-cert issue", NULL, "issue a node certificate, signed with --key", AGENT_REQ_NONE,
     FLAGS(f_cert_issue), nodectl_cmd_node_cert_issue},
    {"node-cert show", "FILE", "print a node certificate; with --control-plane-key, check it",
     AGENT_REQ_NONE, FLAGS(f_cert_show), nodectl_cmd_node_cert_show},
};

/* The command called name: one word, or a group and its verb ("node-cert", "issue"). */
static const struct nodectl_command *
find_command(const char *group, const char *name)
{
    for (size_t i = 0; i < NA_ARRAY_SIZE(commands); i++) {
        const char *n = commands[i].name;
        const char *space = strchr(n, ' ');
        if (group ? space && (size_t)(space - n) == strlen(group) &&
                        strncmp(n, group, strlen(group)) == 0 && strcmp(space + 1, name) == 0
                  : !space && strcmp(n, name) == 0)
            return &commands[i];
    }
    return NULL;
}

static bool
is_group(const char *name)
{
    for (size_t i = 0; i < NA_ARRAY_SIZE(commands); i++) {
        const char *n = commands[i].name;
        const char *space = strchr(n, ' ');
        if (space && (size_t)(space - n) == strlen(name) && strncmp(n, name, strlen(name)) == 0)
            return true;
    }
    return false;
}

/* The flag of cmd called name, or -1. */
static int
find_flag(const struct nodectl_command *cmd, const char *name, size_t name_len)
{
    for (size_t i = 0; cmd && i < cmd->n_flags; i++) {
        const char *n = flag_infos[cmd->flags[i]].name;
        if (strlen(n) == name_len && strncmp(n, name, name_len) == 0)
            return (int)cmd->flags[i];
    }
    return -1;
}

enum global_opt { G_NONE, G_BOOTSTRAP, G_PREFIX, G_NODE, G_KEY, G_HMAC, G_ADMIN, G_JSON, G_HELP };

static const struct {
    const char *name;
    enum global_opt opt;
    const char *metavar;
    const char *env;
    const char *help;
} global_opts[] = {
    {"bootstrap", G_BOOTSTRAP, "HOST:PORT", "NODECTL_BOOTSTRAP",
     "Kafka bootstrap servers (default localhost:9092)"},
    {"prefix", G_PREFIX, "P", "NODECTL_PREFIX", "topic prefix (default nodeagent)"},
    {"node", G_NODE, "ID", "NODECTL_NODE", "target node: requests go to topic P.node.ID"},
    {"key", G_KEY, "FILE", "NODEAGENT_CP_KEY",
     "control plane's Ed25519 private key (PEM, mode 0600): signs requests "
     "(header " TRUST_SIGNATURE_HEADER ") and certificates"},
    {"hmac-key-file", G_HMAC, "F", "NODECTL_HMAC_KEY_FILE",
     "also sign requests with the legacy HMAC key in F (header " NA_HMAC_HEADER ")"},
    {"admin-socket", G_ADMIN, "PATH", "NODECTL_ADMIN_SOCKET",
     "agent admin socket (default /run/nodeagent/admin.sock)"},
    {"json", G_JSON, NULL, NULL, "one JSON object per line"},
    {"help", G_HELP, NULL, NULL, "help (also after a subcommand)"},
};

static enum global_opt
find_global(const char *name, size_t len)
{
    for (size_t i = 0; i < NA_ARRAY_SIZE(global_opts); i++)
        if (strlen(global_opts[i].name) == len && strncmp(global_opts[i].name, name, len) == 0)
            return global_opts[i].opt;
    return G_NONE;
}

static const char *
env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

static void
set_global(struct nodectl_args *a, enum global_opt opt, const char *value)
{
    switch (opt) {
    case G_BOOTSTRAP:
        a->g.bootstrap = value;
        break;
    case G_PREFIX:
        a->g.prefix = value;
        break;
    case G_NODE:
        a->g.node = value;
        break;
    case G_KEY:
        a->g.key_file = value;
        break;
    case G_HMAC:
        a->g.hmac_key_file = value;
        break;
    case G_ADMIN:
        a->g.admin_socket = value;
        break;
    case G_JSON:
        a->g.json = true;
        break;
    case G_HELP:
        a->help = true;
        break;
    case G_NONE:
        break;
    }
}

static int
add_flag(struct nodectl_args *a, enum nodectl_flag f, const char *value, struct na_error **err)
{
    struct nodectl_values *vals = &a->flags[f];
    if (vals->n && !flag_repeatable(f))
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "--%s given twice",
                            flag_infos[f].name);
    vals->v = na_xrealloc(vals->v, (vals->n + 1) * sizeof(*vals->v));
    vals->v[vals->n++] = value;
    return 0;
}

/* --name, --name=value or --name value; *i is advanced past what was used. */
static int
parse_long(int argc, char **argv, int *i, struct nodectl_args *a, struct na_error **err)
{
    const char *arg = argv[*i] + 2;
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);

    int f = find_flag(a->cmd, arg, len);
    enum global_opt g = f < 0 ? find_global(arg, len) : G_NONE;
    if (f < 0 && g == G_NONE) {
        if (a->cmd || a->group) {
            const char *name = a->cmd ? a->cmd->name : a->group;
            return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                                "unknown option `--%.*s` for %s (see nodectl %s --help)", (int)len,
                                arg, name, name);
        }
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "unknown option `--%.*s` (see nodectl --help)", (int)len, arg);
    }
    bool takes_value = f >= 0 ? flag_infos[f].metavar != NULL : (g != G_JSON && g != G_HELP);
    const char *value = NULL;
    if (takes_value) {
        if (eq) {
            value = eq + 1;
        } else if (*i + 1 < argc) {
            value = argv[++*i];
        } else {
            return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "--%.*s needs a value", (int)len,
                                arg);
        }
    } else if (eq) {
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "--%.*s takes no value", (int)len,
                            arg);
    }
    if (f >= 0)
        return add_flag(a, (enum nodectl_flag)f, value ? value : "", err);
    set_global(a, g, value);
    return 0;
}

static void
add_rdkafka_prop(struct nodectl_args *a, const char *kv)
{
    a->g.rdkafka_props =
        na_xrealloc(a->g.rdkafka_props, (a->g.n_rdkafka_props + 1) * sizeof(*a->g.rdkafka_props));
    a->g.rdkafka_props[a->g.n_rdkafka_props++] = kv;
}

static int
parse_positional(struct nodectl_args *a, const char *arg, struct na_error **err)
{
    if (!a->cmd && a->group) {
        a->cmd = find_command(a->group, arg);
        if (!a->cmd)
            return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                                "unknown command `%s %s` (see nodectl %s --help)", a->group, arg,
                                a->group);
        return 0;
    }
    if (!a->cmd) {
        a->cmd = find_command(NULL, arg);
        if (!a->cmd && is_group(arg))
            a->group = arg;
        else if (!a->cmd)
            return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                                "unknown command `%s` (see nodectl --help)", arg);
        return 0;
    }
    if (!a->cmd->positional || a->positional)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "unexpected argument `%s` for %s",
                            arg, a->cmd->name);
    a->positional = arg;
    return 0;
}

int
nodectl_parse(int argc, char **argv, struct nodectl_args *a, struct na_error **err)
{
    *a = (struct nodectl_args){0};
    a->g.bootstrap = env_or("NODECTL_BOOTSTRAP", "localhost:9092");
    a->g.prefix = env_or("NODECTL_PREFIX", "nodeagent");
    a->g.node = env_or("NODECTL_NODE", NULL);
    a->g.hmac_key_file = env_or("NODECTL_HMAC_KEY_FILE", NULL);
    a->g.key_file = env_or("NODEAGENT_CP_KEY", NULL);
    a->g.admin_socket = env_or("NODECTL_ADMIN_SOCKET", "/run/nodeagent/admin.sock");

    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        int rc = 0;
        if (options_done || arg[0] != '-' || arg[1] == '\0') {
            rc = parse_positional(a, arg, err);
        } else if (strcmp(arg, "--") == 0) {
            options_done = true;
        } else if (strcmp(arg, "-h") == 0) {
            a->help = true;
        } else if (strncmp(arg, "-X", 2) == 0) {
            const char *kv = arg[2] ? arg + 2 : (i + 1 < argc ? argv[++i] : NULL);
            if (!kv || !strchr(kv, '='))
                rc = na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "-X needs key=value");
            else
                add_rdkafka_prop(a, kv);
        } else if (arg[1] == '-') {
            rc = parse_long(argc, argv, &i, a, err);
        } else {
            rc = na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "unknown option `%s`", arg);
        }
        if (rc < 0)
            return rc;
    }
    if (a->help)
        return 0;
    if (!a->cmd && a->group)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "%s needs a subcommand (see nodectl %s --help)", a->group, a->group);
    if (!a->cmd)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "no command given (see nodectl --help)");
    if (a->cmd->positional && a->cmd->positional[0] != '[' && !a->positional)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "%s needs %s (see nodectl %s --help)",
                            a->cmd->name, a->cmd->positional, a->cmd->name);
    return 0;
}

void
nodectl_args_free(struct nodectl_args *a)
{
    for (size_t i = 0; i < NODECTL_F__COUNT; i++)
        free(a->flags[i].v);
    free(a->g.rdkafka_props);
}

static void
print_option(FILE *out, const char *name, const char *metavar, const char *help)
{
    char left[64];
    snprintf(left, sizeof(left), "--%s%s%s", name, metavar ? " " : "", metavar ? metavar : "");
    fprintf(out, "  %-26s %s\n", left, help);
}

static void
print_globals(FILE *out)
{
    fprintf(out, "\nGlobal options (before or after the command):\n");
    for (size_t i = 0; i < NA_ARRAY_SIZE(global_opts); i++) {
        char help[256];
        snprintf(help, sizeof(help), "%s%s%s%s", global_opts[i].help,
                 global_opts[i].env ? " [$" : "", global_opts[i].env ? global_opts[i].env : "",
                 global_opts[i].env ? "]" : "");
        print_option(out, global_opts[i].name, global_opts[i].metavar, help);
    }
    fprintf(out, "  %-26s %s\n", "-X KEY=VALUE",
            "librdkafka property, verbatim (TLS, SASL; repeatable)");
}

void
nodectl_usage(FILE *out, const struct nodectl_command *cmd)
{
    if (!cmd) {
        fprintf(out, "usage: nodectl [global options] COMMAND [ARGS] [options]\n\nCommands:\n");
        for (size_t i = 0; i < NA_ARRAY_SIZE(commands); i++) {
            char left[64];
            snprintf(left, sizeof(left), "%s%s%s", commands[i].name,
                     commands[i].positional ? " " : "",
                     commands[i].positional ? commands[i].positional : "");
            fprintf(out, "  %-26s %s\n", left, commands[i].summary);
        }
        print_globals(out);
        fprintf(out, "\nExit status: 0 ok (sent, DONE, healthy), 1 request FAILED, agent "
                     "unhealthy or\ncertificate check failed, 2 usage, 3 timeout, 4 bus or "
                     "admin socket error.\n"
                     "`nodectl COMMAND --help` lists a command's options.\n");
        return;
    }
    fprintf(out, "usage: nodectl %s%s%s [options]\n\n%s.\n", cmd->name, cmd->positional ? " " : "",
            cmd->positional ? cmd->positional : "", cmd->summary);
    if (cmd->n_flags) {
        fprintf(out, "\nOptions:\n");
        for (size_t i = 0; i < cmd->n_flags; i++) {
            const struct flag_info *fi = &flag_infos[cmd->flags[i]];
            print_option(out, fi->name, fi->metavar, fi->help);
        }
    }
    print_globals(out);
}

void
nodectl_usage_group(FILE *out, const char *group)
{
    fprintf(out, "usage: nodectl %s VERB [ARGS] [options]\n\nCommands:\n", group);
    size_t len = strlen(group);
    for (size_t i = 0; i < NA_ARRAY_SIZE(commands); i++) {
        const char *n = commands[i].name;
        if (strncmp(n, group, len) != 0 || n[len] != ' ')
            continue;
        char left[64];
        snprintf(left, sizeof(left), "%s%s%s", n, commands[i].positional ? " " : "",
                 commands[i].positional ? commands[i].positional : "");
        fprintf(out, "  %-26s %s\n", left, commands[i].summary);
    }
    fprintf(out, "\n`nodectl %s VERB --help` lists a command's options.\n", group);
}

int
nodectl_arg_i64(const struct nodectl_args *a, enum nodectl_flag f, int64_t *out,
                struct na_error **err)
{
    const char *s = nodectl_arg_str(a, f);
    if (!s)
        return 0;
    char *end = NULL;
    errno = 0;
    long long v = (s[0] >= '0' && s[0] <= '9') || s[0] == '-' ? strtoll(s, &end, 10) : 0;
    if (!end || end == s || *end || errno)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "--%s: `%s` is not a number",
                            flag_infos[f].name, s);
    *out = v;
    return 0;
}

const char *
nodectl_arg_str(const struct nodectl_args *a, enum nodectl_flag f)
{
    const struct nodectl_values *v = &a->flags[f];
    return v->n ? v->v[v->n - 1] : NULL;
}

bool
nodectl_arg_bool(const struct nodectl_args *a, enum nodectl_flag f)
{
    return a->flags[f].n > 0;
}

int
nodectl_parse_u32(const char *s, const char *what, uint32_t *out, struct na_error **err)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = s[0] >= '0' && s[0] <= '9' ? strtoull(s, &end, 10) : 0;
    if (!end || *end || errno || v > UINT32_MAX)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                            "%s: `%s` is not a number (0..4294967295)", what, s);
    *out = (uint32_t)v;
    return 0;
}

int
nodectl_arg_u32(const struct nodectl_args *a, enum nodectl_flag f, uint32_t *out,
                struct na_error **err)
{
    const char *s = nodectl_arg_str(a, f);
    if (!s)
        return 0;
    char what[64];
    snprintf(what, sizeof(what), "--%s", flag_infos[f].name);
    return nodectl_parse_u32(s, what, out, err);
}
