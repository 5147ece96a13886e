/* Request building: from parsed flags to an Envelope.  Only syntax is checked here (numbers
 * parse, key=value has its '='); whether values make sense is the agent's call.  Every
 * string is malloc'd so that protobuf-c's free_unpacked can free the whole tree. */
#include "tools/nodectl/nodectl.h"

#include <errno.h>
#include <string.h>

static char *
dup_or_empty(const char *s)
{
    return s ? na_xstrdup(s) : (char *)protobuf_c_empty_string;
}

static int
read_file(const char *path, const char *what, uint8_t **data, size_t *size, struct na_error **err)
{
    cleanup_fclose FILE *f = fopen(path, "rb");
    if (!f)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, errno, "%s: open `%s`", what, path);
    size_t cap = 4096, n = 0;
    cleanup_free uint8_t *buf = na_xmalloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap)
            buf = na_xrealloc(buf, cap *= 2);
    }
    if (ferror(f))
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, EIO, "%s: read `%s`", what, path);
    *data = na_steal(&buf);
    *size = n;
    return 0;
}

static void
append_str(char ***arr, size_t *n, const char *s, size_t len)
{
    *arr = na_xrealloc(*arr, (*n + 1) * sizeof(**arr));
    (*arr)[(*n)++] = na_xstrndup(s, len);
}

/* qcow2, raw, unspecified, or any number (tests send unknown values on purpose). */
static int
parse_image_format(const char *s, Nodeagent__V1__ImageFormat *out, struct na_error **err)
{
    if (strcmp(s, "qcow2") == 0)
        *out = NODEAGENT__V1__IMAGE_FORMAT__IMAGE_FORMAT_QCOW2;
    else if (strcmp(s, "raw") == 0)
        *out = NODEAGENT__V1__IMAGE_FORMAT__IMAGE_FORMAT_RAW;
    else if (strcmp(s, "unspecified") == 0)
        *out = NODEAGENT__V1__IMAGE_FORMAT__IMAGE_FORMAT_UNSPECIFIED;
    else {
        uint32_t v;
        int rc =
            nodectl_parse_u32(s, "--image-format (qcow2, raw, unspecified or a number)", &v, err);
        if (rc < 0)
            return rc;
        *out = (Nodeagent__V1__ImageFormat)v;
    }
    return 0;
}

/* NULL when no image flag is given, so requests can be sent without one. */
static int
build_image(const struct nodectl_args *a, Nodeagent__V1__Image **out, struct na_error **err)
{
    *out = NULL;
    if (!nodectl_arg_str(a, NODECTL_F_IMAGE_ID) && !nodectl_arg_str(a, NODECTL_F_IMAGE_URL) &&
        !nodectl_arg_str(a, NODECTL_F_IMAGE_SHA256) && !nodectl_arg_str(a, NODECTL_F_IMAGE_FORMAT))
        return 0;
    Nodeagent__V1__Image *img = na_xmalloc(sizeof(*img));
    nodeagent__v1__image__init(img);
    *out = img;
    img->id = dup_or_empty(nodectl_arg_str(a, NODECTL_F_IMAGE_ID));
    img->url = dup_or_empty(nodectl_arg_str(a, NODECTL_F_IMAGE_URL));
    img->sha256 = dup_or_empty(nodectl_arg_str(a, NODECTL_F_IMAGE_SHA256));
    const char *fmt = nodectl_arg_str(a, NODECTL_F_IMAGE_FORMAT);
    return fmt ? parse_image_format(fmt, &img->format, err) : 0;
}

/* `--limits K=V,...`: each K a flavor field of number 5 and above (the limits, by their
 * names in the contract), each V a decimal number. */
static int
parse_limits(const char *spec, Nodeagent__V1__Flavor *fl, struct na_error **err)
{
    const ProtobufCMessageDescriptor *desc = &nodeagent__v1__flavor__descriptor;
    for (const char *p = spec; *p;) {
        size_t item_len = strcspn(p, ",");
        cleanup_free char *item = na_xstrndup(p, item_len);
        p += item_len + (p[item_len] == ',');
        char *eq = strchr(item, '=');
        if (!eq)
            return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "--limits: `%s` is not key=value",
                                item);
        *eq = '\0';
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field_by_name(desc, item);
        if (!f || f->id < 5 ||
            (f->type != PROTOBUF_C_TYPE_UINT32 && f->type != PROTOBUF_C_TYPE_UINT64))
            return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                                "--limits: `%s` is not a limit of the flavor (docs/protocol.md "
                                "4.2.1)",
                                item);
        char *end = NULL;
        errno = 0;
        unsigned long long v = eq[1] >= '0' && eq[1] <= '9' ? strtoull(eq + 1, &end, 10) : 0;
        if (!end || *end || errno || (f->type == PROTOBUF_C_TYPE_UINT32 && v > UINT32_MAX))
            return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                                "--limits %s: `%s` is not a number", item, eq + 1);
        void *field = (char *)fl + f->offset;
        if (f->type == PROTOBUF_C_TYPE_UINT32)
            *(uint32_t *)field = (uint32_t)v;
        else
            *(uint64_t *)field = (uint64_t)v;
    }
    return 0;
}

/* NULL when no flavor flag is given. */
static int
build_flavor(const struct nodectl_args *a, Nodeagent__V1__Flavor **out, struct na_error **err)
{
    *out = NULL;
    if (!nodectl_arg_str(a, NODECTL_F_VCPUS) && !nodectl_arg_str(a, NODECTL_F_MEMORY_MIB) &&
        !nodectl_arg_str(a, NODECTL_F_DISK_GIB) && !nodectl_arg_str(a, NODECTL_F_FLAVOR_NAME) &&
        !nodectl_arg_str(a, NODECTL_F_LIMITS))
        return 0;
    Nodeagent__V1__Flavor *fl = na_xmalloc(sizeof(*fl));
    nodeagent__v1__flavor__init(fl);
    *out = fl;
    fl->name = dup_or_empty(nodectl_arg_str(a, NODECTL_F_FLAVOR_NAME));
    int rc = nodectl_arg_u32(a, NODECTL_F_VCPUS, &fl->vcpus, err);
    if (rc == 0)
        rc = nodectl_arg_u32(a, NODECTL_F_MEMORY_MIB, &fl->memory_mib, err);
    if (rc == 0)
        rc = nodectl_arg_u32(a, NODECTL_F_DISK_GIB, &fl->root_disk_gib, err);
    const char *limits = nodectl_arg_str(a, NODECTL_F_LIMITS);
    if (rc == 0 && limits)
        rc = parse_limits(limits, fl, err);
    return rc;
}

/* One `--nic` value: comma-separated key=value items; ip may repeat. */
static int
parse_nic(const char *spec, Nodeagent__V1__Nic *nic, struct na_error **err)
{
    const char *p = spec;
    while (*p) {
        size_t item_len = strcspn(p, ",");
        const char *eq = memchr(p, '=', item_len);
        if (!eq)
            return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "--nic: `%.*s` is not key=value",
                                (int)item_len, p);
        size_t key_len = (size_t)(eq - p);
        const char *val = eq + 1;
        size_t val_len = item_len - key_len - 1;
        cleanup_free char *v = na_xstrndup(val, val_len);
#define KEY(k) (key_len == strlen(k) && strncmp(p, k, key_len) == 0)
        int rc = 0;
        if (KEY("port")) {
            nic->port_id = na_steal(&v);
        } else if (KEY("network")) {
            nic->network_id = na_steal(&v);
        } else if (KEY("mac")) {
            nic->mac = na_steal(&v);
        } else if (KEY("gateway")) {
            nic->gateway = na_steal(&v);
        } else if (KEY("gateway6")) {
            nic->gateway6 = na_steal(&v);
        } else if (KEY("ip")) {
            append_str(&nic->ips, &nic->n_ips, val, val_len);
        } else if (KEY("sg")) {
            append_str(&nic->security_groups, &nic->n_security_groups, val, val_len);
        } else if (KEY("vni")) {
            rc = nodectl_parse_u32(v, "--nic vni", &nic->vni, err);
        } else if (KEY("mtu")) {
            rc = nodectl_parse_u32(v, "--nic mtu", &nic->mtu, err);
        } else {
            rc = na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                              "--nic: unknown key `%.*s` (port, network, vni, mac, ip, gateway, "
                              "gateway6, mtu, sg)",
                              (int)key_len, p);
        }
#undef KEY
        if (rc < 0)
            return rc;
        p += item_len;
        if (*p == ',')
            p++;
    }
    return 0;
}

static int
add_ssh_key_file(Nodeagent__V1__InstanceSpec *spec, const char *path, struct na_error **err)
{
    cleanup_free uint8_t *data = NULL;
    size_t size = 0;
    int rc = read_file(path, "--ssh-key-file", &data, &size, err);
    if (rc < 0)
        return rc;
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        size_t trimmed = len;
        while (trimmed && (p[trimmed - 1] == '\r' || p[trimmed - 1] == ' '))
            trimmed--;
        if (trimmed && p[0] != '#')
            append_str(&spec->ssh_keys, &spec->n_ssh_keys, p, trimmed);
        p += len + (nl ? 1 : 0);
    }
    return 0;
}

static int
add_meta(Nodeagent__V1__InstanceSpec *spec, const char *kv, struct na_error **err)
{
    const char *eq = strchr(kv, '=');
    if (!eq)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "--meta: `%s` is not key=value", kv);
    Nodeagent__V1__InstanceSpec__MetadataEntry *e = na_xmalloc(sizeof(*e));
    nodeagent__v1__instance_spec__metadata_entry__init(e);
    e->key = na_xstrndup(kv, (size_t)(eq - kv));
    e->value = na_xstrdup(eq + 1);
    spec->metadata = na_xrealloc(spec->metadata, (spec->n_metadata + 1) * sizeof(*spec->metadata));
    spec->metadata[spec->n_metadata++] = e;
    return 0;
}

static int
build_spec(const struct nodectl_args *a, Nodeagent__V1__InstanceSpec *spec, struct na_error **err)
{
    const char *uuid = nodectl_arg_str(a, NODECTL_F_UUID);
    char fresh[37];
    if (!uuid) {
        na_uuid_generate(fresh);
        uuid = fresh;
    }
    spec->uuid = na_xstrdup(uuid);
    spec->name = dup_or_empty(nodectl_arg_str(a, NODECTL_F_NAME));
    spec->tenant_id = dup_or_empty(nodectl_arg_str(a, NODECTL_F_TENANT));
    spec->hostname = dup_or_empty(nodectl_arg_str(a, NODECTL_F_HOSTNAME));
    int rc = build_flavor(a, &spec->flavor, err);
    if (rc == 0)
        rc = build_image(a, &spec->image, err);
    if (rc < 0)
        return rc;

    const struct nodectl_values *nics = &a->flags[NODECTL_F_NIC];
    spec->nics = na_xcalloc(nics->n, sizeof(*spec->nics));
    for (size_t i = 0; i < nics->n; i++) {
        Nodeagent__V1__Nic *nic = na_xmalloc(sizeof(*nic));
        nodeagent__v1__nic__init(nic);
        spec->nics[spec->n_nics++] = nic;
        rc = parse_nic(nics->v[i], nic, err);
        if (rc < 0)
            return rc;
    }
    const struct nodectl_values *keys = &a->flags[NODECTL_F_SSH_KEY];
    for (size_t i = 0; i < keys->n; i++)
        append_str(&spec->ssh_keys, &spec->n_ssh_keys, keys->v[i], strlen(keys->v[i]));
    const struct nodectl_values *key_files = &a->flags[NODECTL_F_SSH_KEY_FILE];
    for (size_t i = 0; i < key_files->n; i++) {
        rc = add_ssh_key_file(spec, key_files->v[i], err);
        if (rc < 0)
            return rc;
    }
    const char *ud = nodectl_arg_str(a, NODECTL_F_USER_DATA_FILE);
    if (ud) {
        rc = read_file(ud, "--user-data-file", &spec->user_data.data, &spec->user_data.len, err);
        if (rc < 0)
            return rc;
    }
    const struct nodectl_values *meta = &a->flags[NODECTL_F_META];
    for (size_t i = 0; i < meta->n; i++) {
        rc = add_meta(spec, meta->v[i], err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int
build_create(const struct nodectl_args *a, Nodeagent__V1__Envelope *env, struct na_error **err)
{
    Nodeagent__V1__CreateRequest *r = na_xmalloc(sizeof(*r));
    nodeagent__v1__create_request__init(r);
    env->create = r;
    r->spec = na_xmalloc(sizeof(*r->spec));
    nodeagent__v1__instance_spec__init(r->spec);
    return build_spec(a, r->spec, err);
}

static int
build_stop(const struct nodectl_args *a, Nodeagent__V1__StopRequest *r, struct na_error **err)
{
    r->force = nodectl_arg_bool(a, NODECTL_F_FORCE);
    return nodectl_arg_u32(a, NODECTL_F_SHUTDOWN_TIMEOUT, &r->timeout_s, err);
}

static int
build_migrate(const struct nodectl_args *a, Nodeagent__V1__MigrateRequest *r, struct na_error **err)
{
    r->target_node = dup_or_empty(nodectl_arg_str(a, NODECTL_F_TO));
    Nodeagent__V1__MigrationSettings *s = na_xmalloc(sizeof(*s));
    nodeagent__v1__migration_settings__init(s);
    r->settings = s;
    s->auto_converge = nodectl_arg_bool(a, NODECTL_F_AUTO_CONVERGE);
    s->post_copy = nodectl_arg_bool(a, NODECTL_F_POST_COPY);
    int rc = nodectl_arg_u32(a, NODECTL_F_MAX_DOWNTIME_MS, &s->max_downtime_ms, err);
    if (rc == 0)
        rc = nodectl_arg_u32(a, NODECTL_F_BANDWIDTH, &s->bandwidth_mib_s, err);
    if (rc == 0)
        rc = nodectl_arg_u32(a, NODECTL_F_MIGRATION_TIMEOUT, &s->timeout_s, err);
    return rc;
}

/* `icmp=TYPE[/CODE]` of a `--rule`. */
static int
parse_icmp(char *v, Nodeagent__V1__SecurityGroupRule *r, struct na_error **err)
{
    Nodeagent__V1__IcmpMatch *m = na_xcalloc(1, sizeof(*m));
    nodeagent__v1__icmp_match__init(m);
    if (r->icmp)
        nodeagent__v1__icmp_match__free_unpacked(r->icmp, NULL);
    r->icmp = m;
    char *slash = strchr(v, '/');
    if (slash)
        *slash = '\0';
    int rc = nodectl_parse_u32(v, "--rule icmp", &m->type, err);
    if (rc == 0 && slash) {
        m->match_code = true;
        rc = nodectl_parse_u32(slash + 1, "--rule icmp", &m->code, err);
    }
    return rc;
}

/* One `--rule` value: comma-separated key=value items. */
static int
parse_rule(const char *spec, Nodeagent__V1__SecurityGroupRule *r, struct na_error **err)
{
    for (const char *p = spec; *p;) {
        size_t item_len = strcspn(p, ",");
        const char *eq = memchr(p, '=', item_len);
        if (!eq)
            return na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0, "--rule: `%.*s` is not key=value",
                                (int)item_len, p);
        size_t key_len = (size_t)(eq - p);
        cleanup_free char *v = na_xstrndup(eq + 1, item_len - key_len - 1);
#define KEY(k) (key_len == strlen(k) && strncmp(p, k, key_len) == 0)
        int rc = 0;
        if (KEY("dir") && !strcmp(v, "ingress")) {
            r->direction = NODEAGENT__V1__DIRECTION__DIRECTION_INGRESS;
        } else if (KEY("dir") && !strcmp(v, "egress")) {
            r->direction = NODEAGENT__V1__DIRECTION__DIRECTION_EGRESS;
        } else if (KEY("ethertype") && !strcmp(v, "ipv4")) {
            r->ethertype = NODEAGENT__V1__ETHER_TYPE__ETHER_TYPE_IPV4;
        } else if (KEY("ethertype") && !strcmp(v, "ipv6")) {
            r->ethertype = NODEAGENT__V1__ETHER_TYPE__ETHER_TYPE_IPV6;
        } else if (KEY("proto") && !strcmp(v, "tcp")) {
            r->protocol = NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_TCP;
        } else if (KEY("proto") && !strcmp(v, "udp")) {
            r->protocol = NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_UDP;
        } else if (KEY("proto") && !strcmp(v, "icmp")) {
            r->protocol = NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_ICMP;
        } else if (KEY("ports")) {
            char *dash = strchr(v, '-');
            if (dash)
                *dash = '\0';
            rc = nodectl_parse_u32(v, "--rule ports", &r->port_range_min, err);
            if (rc == 0)
                rc =
                    nodectl_parse_u32(dash ? dash + 1 : v, "--rule ports", &r->port_range_max, err);
        } else if (KEY("icmp")) {
            rc = parse_icmp(v, r, err);
        } else if (KEY("cidr")) {
            r->remote_cidr = na_steal(&v);
        } else if (KEY("group")) {
            r->remote_group = na_steal(&v);
        } else {
            rc = na_error_set(err, NA_CODE_INVALID_ARGUMENT, 0,
                              "--rule: `%.*s` is not one of dir=ingress|egress, "
                              "ethertype=ipv4|ipv6, proto=tcp|udp|icmp, ports=MIN[-MAX], "
                              "icmp=TYPE[/CODE], cidr=CIDR, group=ID",
                              (int)item_len, p);
        }
#undef KEY
        if (rc < 0)
            return rc;
        p += item_len;
        if (*p == ',')
            p++;
    }
    return 0;
}

static int
build_security_group_put(const struct nodectl_args *a, Nodeagent__V1__Envelope *env,
                         struct na_error **err)
{
    env->body_case = NODEAGENT__V1__ENVELOPE__BODY_SECURITY_GROUP_PUT;
    Nodeagent__V1__SecurityGroupPutRequest *m = na_xmalloc(sizeof(*m));
    nodeagent__v1__security_group_put_request__init(m);
    env->security_group_put = m;
    Nodeagent__V1__SecurityGroup *g = na_xmalloc(sizeof(*g));
    nodeagent__v1__security_group__init(g);
    m->group = g;
    g->id = dup_or_empty(a->positional);
    g->name = dup_or_empty(nodectl_arg_str(a, NODECTL_F_GROUP_NAME));
    const struct nodectl_values *rules = &a->flags[NODECTL_F_RULE];
    g->rules = na_xcalloc(rules->n + 1, sizeof(*g->rules));
    for (size_t i = 0; i < rules->n; i++) {
        Nodeagent__V1__SecurityGroupRule *r = na_xmalloc(sizeof(*r));
        nodeagent__v1__security_group_rule__init(r);
        g->rules[g->n_rules++] = r;
        int rc = parse_rule(rules->v[i], r, err);
        if (rc < 0)
            return rc;
    }
    const struct nodectl_values *members = &a->flags[NODECTL_F_MEMBER];
    for (size_t i = 0; i < members->n; i++)
        append_str(&g->member_ips, &g->n_member_ips, members->v[i], strlen(members->v[i]));
    return 0;
}

static int
build_port_security_groups(const struct nodectl_args *a, Nodeagent__V1__Envelope *env)
{
    env->body_case = NODEAGENT__V1__ENVELOPE__BODY_PORT_SECURITY_GROUPS;
    Nodeagent__V1__PortSecurityGroupsRequest *m = na_xmalloc(sizeof(*m));
    nodeagent__v1__port_security_groups_request__init(m);
    env->port_security_groups = m;
    m->port_id = dup_or_empty(a->positional);
    const struct nodectl_values *groups = &a->flags[NODECTL_F_GROUP];
    for (size_t i = 0; i < groups->n; i++)
        append_str(&m->security_groups, &m->n_security_groups, groups->v[i], strlen(groups->v[i]));
    return 0;
}

/* Allocates and initializes env->FIELD of type TYPE, setting its instance_uuid; evaluates to
 * the new body. */
#define NEW_BODY(env, field, type, init_fn, uuid)                                                  \
    ({                                                                                             \
        type *_b = na_xmalloc(sizeof(*_b));                                                        \
        init_fn(_b);                                                                               \
        _b->instance_uuid = dup_or_empty(uuid);                                                    \
        (env)->field = _b;                                                                         \
        _b;                                                                                        \
    })

static int
build_clone(const struct nodectl_args *a, Nodeagent__V1__Envelope *env, struct na_error **err)
{
    Nodeagent__V1__CloneRequest *r = na_xmalloc(sizeof(*r));
    nodeagent__v1__clone_request__init(r);
    env->clone = r;
    r->source_instance_uuid = dup_or_empty(a->positional);
    r->snapshot_name = dup_or_empty(nodectl_arg_str(a, NODECTL_F_SNAPSHOT));
    r->spec = na_xmalloc(sizeof(*r->spec));
    nodeagent__v1__instance_spec__init(r->spec);
    return build_spec(a, r->spec, err);
}

static int
build_body(const struct nodectl_args *a, Nodeagent__V1__Envelope *env, struct na_error **err)
{
    const char *uuid = a->positional;
    switch (a->cmd->kind) {
    case AGENT_REQ_CREATE:
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_CREATE;
        return build_create(a, env, err);
    case AGENT_REQ_CLONE:
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_CLONE;
        return build_clone(a, env, err);
#define SIMPLE(CASE, field, Type, fn)                                                              \
    case AGENT_REQ_##CASE:                                                                         \
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_##CASE;                                     \
        NEW_BODY(env, field, Nodeagent__V1__##Type, nodeagent__v1__##fn##__init, uuid);            \
        return 0;
        SIMPLE(DELETE, delete_, DeleteRequest, delete_request)
        SIMPLE(START, start, StartRequest, start_request)
        SIMPLE(PAUSE, pause, PauseRequest, pause_request)
        SIMPLE(RESUME, resume, ResumeRequest, resume_request)
        SIMPLE(SUSPEND, suspend, SuspendRequest, suspend_request)
        SIMPLE(CANCEL_MIGRATION, cancel_migration, CancelMigrationRequest, cancel_migration_request)
#undef SIMPLE
    case AGENT_REQ_STOP:
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_STOP;
        return build_stop(a,
                          NEW_BODY(env, stop, Nodeagent__V1__StopRequest,
                                   nodeagent__v1__stop_request__init, uuid),
                          err);
    case AGENT_REQ_REBOOT: {
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_REBOOT;
        Nodeagent__V1__RebootRequest *r = NEW_BODY(env, reboot, Nodeagent__V1__RebootRequest,
                                                   nodeagent__v1__reboot_request__init, uuid);
        r->type = nodectl_arg_bool(a, NODECTL_F_HARD)
                      ? NODEAGENT__V1__REBOOT_TYPE__REBOOT_TYPE_HARD
                      : NODEAGENT__V1__REBOOT_TYPE__REBOOT_TYPE_SOFT;
        return 0;
    }
#define SNAP(CASE, field, Type, fn)                                                                \
    case AGENT_REQ_##CASE: {                                                                       \
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_##CASE;                                     \
        Nodeagent__V1__##Type *r =                                                                 \
            NEW_BODY(env, field, Nodeagent__V1__##Type, nodeagent__v1__##fn##__init, uuid);        \
        r->snapshot_name = dup_or_empty(nodectl_arg_str(a, NODECTL_F_SNAPSHOT));                   \
        return 0;                                                                                  \
    }
        SNAP(SNAPSHOT_REVERT, snapshot_revert, SnapshotRevertRequest, snapshot_revert_request)
#undef SNAP
    case AGENT_REQ_SNAPSHOT_EXPORT: {
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_SNAPSHOT_EXPORT;
        Nodeagent__V1__SnapshotExportRequest *r =
            NEW_BODY(env, snapshot_export, Nodeagent__V1__SnapshotExportRequest,
                     nodeagent__v1__snapshot_export_request__init, uuid);
        r->snapshot_name = dup_or_empty(nodectl_arg_str(a, NODECTL_F_SNAPSHOT));
        r->upload_url = dup_or_empty(nodectl_arg_str(a, NODECTL_F_UPLOAD_URL));
        r->publish = nodectl_arg_bool(a, NODECTL_F_PUBLISH);
        return 0;
    }
    case AGENT_REQ_SNAPSHOT_CREATE: {
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_SNAPSHOT_CREATE;
        Nodeagent__V1__SnapshotCreateRequest *r =
            NEW_BODY(env, snapshot_create, Nodeagent__V1__SnapshotCreateRequest,
                     nodeagent__v1__snapshot_create_request__init, uuid);
        r->snapshot_name = dup_or_empty(nodectl_arg_str(a, NODECTL_F_SNAPSHOT));
        r->description = dup_or_empty(nodectl_arg_str(a, NODECTL_F_DESCRIPTION));
        r->quiesce = nodectl_arg_bool(a, NODECTL_F_QUIESCE);
        return 0;
    }
    case AGENT_REQ_SNAPSHOT_DELETE: {
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_SNAPSHOT_DELETE;
        Nodeagent__V1__SnapshotDeleteRequest *r =
            NEW_BODY(env, snapshot_delete, Nodeagent__V1__SnapshotDeleteRequest,
                     nodeagent__v1__snapshot_delete_request__init, uuid);
        r->snapshot_name = dup_or_empty(nodectl_arg_str(a, NODECTL_F_SNAPSHOT));
        r->children = nodectl_arg_bool(a, NODECTL_F_CHILDREN);
        return 0;
    }
    case AGENT_REQ_RESIZE: {
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_RESIZE;
        Nodeagent__V1__ResizeRequest *r = NEW_BODY(env, resize, Nodeagent__V1__ResizeRequest,
                                                   nodeagent__v1__resize_request__init, uuid);
        return build_flavor(a, &r->flavor, err);
    }
    case AGENT_REQ_REBUILD: {
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_REBUILD;
        Nodeagent__V1__RebuildRequest *r = NEW_BODY(env, rebuild, Nodeagent__V1__RebuildRequest,
                                                    nodeagent__v1__rebuild_request__init, uuid);
        return build_image(a, &r->image, err);
    }
    case AGENT_REQ_CONSOLE_LOG: {
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_CONSOLE_LOG;
        Nodeagent__V1__ConsoleLogRequest *r =
            NEW_BODY(env, console_log, Nodeagent__V1__ConsoleLogRequest,
                     nodeagent__v1__console_log_request__init, uuid);
        return nodectl_arg_u32(a, NODECTL_F_TAIL_BYTES, &r->tail_bytes, err);
    }
    case AGENT_REQ_MIGRATE:
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_MIGRATE;
        return build_migrate(a,
                             NEW_BODY(env, migrate, Nodeagent__V1__MigrateRequest,
                                      nodeagent__v1__migrate_request__init, uuid),
                             err);
    case AGENT_REQ_SECURITY_GROUP_PUT:
        return build_security_group_put(a, env, err);
    case AGENT_REQ_SECURITY_GROUP_DELETE: {
        env->body_case = NODEAGENT__V1__ENVELOPE__BODY_SECURITY_GROUP_DELETE;
        Nodeagent__V1__SecurityGroupDeleteRequest *m = na_xmalloc(sizeof(*m));
        nodeagent__v1__security_group_delete_request__init(m);
        m->group_id = dup_or_empty(uuid);
        env->security_group_delete = m;
        return 0;
    }
    case AGENT_REQ_PORT_SECURITY_GROUPS:
        return build_port_security_groups(a, env);
    default:
        return na_error_set(err, NA_CODE_INTERNAL, 0, "%s sends no request", a->cmd->name);
    }
}

int
nodectl_build_envelope(const struct nodectl_args *a, Nodeagent__V1__Envelope **out,
                       struct na_error **err)
{
    Nodeagent__V1__Envelope *env = na_xmalloc(sizeof(*env));
    nodeagent__v1__envelope__init(env);
    const char *rid = nodectl_arg_str(a, NODECTL_F_REQUEST_ID);
    char fresh[37];
    if (!rid) {
        na_uuid_generate(fresh);
        rid = fresh;
    }
    env->request_id = na_xstrdup(rid);
    env->sent_at_ms = na_now_ms();
    /* Signed with the rest: an agent refuses an envelope meant for another node.  Empty
     * without --node (only possible with --out). */
    env->target_node = dup_or_empty(a->g.node && *a->g.node ? a->g.node : NULL);
    int rc = build_body(a, env, err);
    if (rc < 0) {
        nodeagent__v1__envelope__free_unpacked(env, NULL);
        return rc;
    }
    *out = env;
    return 0;
}
