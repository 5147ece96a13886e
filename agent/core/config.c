#include "agent/core/config-private.h"
#include "scheduler-client/scheduler.h"
#include "storage/qcow2/qcow2.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <librdkafka/rdkafka.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

enum key_type {
    KEY_STRING,
    KEY_LIST, /* a string that may be empty (nothing listed) */
    KEY_NAME,
    KEY_PATH,
    KEY_UINT,
    KEY_BOOL,
    KEY_CHOICE,
    KEY_LOG_LEVEL,
    KEY_HOSTPORT,
    KEY_RATIO, /* a double above 0 and at most 1000 */
    KEY_URL,   /* http:// or https:// */
    KEY_IPV4   /* dotted quad */
};

struct key_def {
    const char *section;
    const char *name;
    enum key_type type;
    size_t offset;
    const char *default_value; /* NULL: unset unless given */
    unsigned long min, max;    /* KEY_UINT */
    const char *choices;       /* KEY_CHOICE: "a|b|c" */
};

#define OFF(member) offsetof(struct agent_config, member)

/* Every key the agent knows.  deploy/nodeagent.conf.sample documents each of them. */
static const struct key_def keys[] = {
    {"agent", "node_id", KEY_NAME, OFF(node_id), NULL, 0, 0},
    {"agent", "state_dir", KEY_PATH, OFF(state_dir), "/var/lib/nodeagent", 0, 0},
    {"agent", "log_level", KEY_LOG_LEVEL, OFF(log_level), "info", 0, 0},
    {"agent", "log_file", KEY_PATH, OFF(log_file), NULL, 0, 0},
    {"agent", "workers", KEY_UINT, OFF(workers), "16", 1, 128},
    {"agent", "shutdown_timeout", KEY_UINT, OFF(shutdown_timeout_s), "30", 1, 3600},
    {"agent", "max_queued", KEY_UINT, OFF(max_queued), "1000", 1, 1000000},
    {"agent", "min_free_mib", KEY_UINT, OFF(min_free_mib), "2048", 0, 1048576},
    {"agent", "reconcile_interval", KEY_UINT, OFF(reconcile_interval_s), "60", 5, 3600},
    {"bus", "bootstrap_servers", KEY_STRING, OFF(bootstrap_servers), "localhost:9092", 0, 0},
    {"bus", "topic_prefix", KEY_NAME, OFF(topic_prefix), "nodeagent", 0, 0},
    {"bus", "control_plane_key", KEY_PATH, OFF(control_plane_key), NULL, 0, 0},
    {"bus", "node_key", KEY_PATH, OFF(node_key), NULL, 0, 0},
    {"bus", "node_cert", KEY_PATH, OFF(node_cert), NULL, 0, 0},
    {"bus", "insecure_unsigned", KEY_BOOL, OFF(insecure_unsigned), "false", 0, 0},
    {"bus", "max_request_age", KEY_UINT, OFF(max_request_age_s), "900", 10, 86400},
    {"bus", "hmac_key_file", KEY_PATH, OFF(hmac_key_file), NULL, 0, 0},
    {"bus", "event_buffer_max", KEY_UINT, OFF(event_buffer_max), "10000", 1, 10000000},
    {"hypervisor", "uri", KEY_STRING, OFF(hv_uri), "qemu:///system", 0, 0},
    {"hypervisor", "virt_type", KEY_CHOICE, OFF(virt_type), "kvm", 0, 0, "kvm|qemu"},
    {"hypervisor", "cpu_mode", KEY_CHOICE, OFF(cpu_mode), "host-model", 0, 0,
     "host-model|host-passthrough|custom|none"},
    {"hypervisor", "cpu_model", KEY_NAME, OFF(cpu_model), NULL, 0, 0},
    {"hypervisor", "machine", KEY_NAME, OFF(machine), "pc", 0, 0},
    {"hypervisor", "bridge", KEY_NAME, OFF(bridge), "br-int", 0, 0},
    {"hypervisor", "stop_timeout", KEY_UINT, OFF(stop_timeout_s), "60", 1, 3600},
    {"instances", "uid_min", KEY_UINT, OFF(uid_min), "70000", 1000, 4000000000u},
    {"instances", "uid_max", KEY_UINT, OFF(uid_max), "79999", 1000, 4000000000u},
    {"instances", "qemu_group", KEY_NAME, OFF(qemu_group), "libvirt-qemu", 0, 0},
    {"instances", "snapshot_max_per_instance", KEY_UINT, OFF(snapshot_max_per_instance), "16", 0,
     1000},
    {"image_cache", "max_unused_age", KEY_UINT, OFF(image_max_unused_age_s), "86400", 0, 31536000},
    {"image_cache", "max_image_size_gib", KEY_UINT, OFF(image_max_size_gib), "64", 1, 65536},
    {"image_cache", "max_virtual_size_gib", KEY_UINT, OFF(image_max_virtual_size_gib), "65536", 1,
     1048576},
    {"image_cache", "connect_timeout", KEY_UINT, OFF(image_connect_timeout_s), "10", 1, 600},
    {"image_cache", "stall_timeout", KEY_UINT, OFF(image_stall_timeout_s), "60", 1, 3600},
    {"image_cache", "min_rate_kib", KEY_UINT, OFF(image_min_rate_kib), "256", 1, 10485760},
    {"image_cache", "max_size_gib", KEY_UINT, OFF(image_cache_max_size_gib), "50", 1, 1048576},
    {"image_cache", "retries", KEY_UINT, OFF(image_retries), "3", 0, 100},
    {"image_cache", "tls_verify", KEY_BOOL, OFF(image_tls_verify), "true", 0, 0},
    {"image_cache", "ca_file", KEY_PATH, OFF(image_ca_file), NULL, 0, 0},
    {"image_cache", "allowed_networks", KEY_LIST, OFF(image_allowed_networks_text), NULL, 0, 0},
    {"capacity", "reserved_vcpus", KEY_UINT, OFF(reserved_vcpus), "0", 0, 1048576},
    {"capacity", "reserved_memory_mb", KEY_UINT, OFF(reserved_memory_mb), "512", 0, 4000000000u},
    {"capacity", "reserved_disk_gb", KEY_UINT, OFF(reserved_disk_gb), "0", 0, 4000000000u},
    {"capacity", "vcpu_allocation_ratio", KEY_RATIO, OFF(vcpu_allocation_ratio), "4.0", 0, 0},
    {"capacity", "memory_allocation_ratio", KEY_RATIO, OFF(memory_allocation_ratio), "1.0", 0, 0},
    {"capacity", "disk_allocation_ratio", KEY_RATIO, OFF(disk_allocation_ratio), "1.0", 0, 0},
    {"capacity", "custom_traits", KEY_STRING, OFF(custom_traits_text), NULL, 0, 0},
    {"capacity", "report_interval", KEY_UINT, OFF(report_interval_s), "60", 1, 3600},
    {"placement", "endpoint", KEY_URL, OFF(placement_endpoint), NULL, 0, 0},
    {"placement", "token", KEY_STRING, OFF(placement_token), NULL, 0, 0},
    {"placement", "timeout", KEY_UINT, OFF(placement_timeout_s), "10", 1, 300},
    {"placement", "manage_allocations", KEY_BOOL, OFF(placement_manage_allocations), "false", 0, 0},
    {"memory", "ksm", KEY_BOOL, OFF(ksm), "false", 0, 0},
    {"admin", "socket", KEY_PATH, OFF(admin_socket), "/run/nodeagent/admin.sock", 0, 0},
    {"admin", "listen", KEY_HOSTPORT, OFF(admin_listen), NULL, 0, 0},
    {"admin", "token_file", KEY_PATH, OFF(admin_token_file), NULL, 0, 0},
    {"network", "enabled", KEY_BOOL, OFF(net_enabled), "true", 0, 0},
    {"network", "ovsdb", KEY_STRING, OFF(net_ovsdb), "unix:/var/run/openvswitch/db.sock", 0, 0},
    {"network", "datapath_type", KEY_CHOICE, OFF(net_datapath_type), "system", 0, 0,
     "system|netdev"},
    {"network", "bind_timeout", KEY_UINT, OFF(net_bind_timeout_s), "60", 1, 3600},
    {"network", "underlay_mtu", KEY_UINT, OFF(net_underlay_mtu), "1500", 576, 65535},
    {"network", "tunnel_overhead", KEY_UINT, OFF(net_tunnel_overhead), "50", 0, 200},
    {"network", "tunnel_endpoint", KEY_IPV4, OFF(tunnel_endpoint), NULL, 0, 0},
    {"migration", "libvirt_uri", KEY_STRING, OFF(migration_libvirt_uri), NULL, 0, 0},
    {"migration", "migrate_uri", KEY_STRING, OFF(migration_uri), NULL, 0, 0},
    {"migration", "socket_dir", KEY_PATH, OFF(migration_socket_dir), NULL, 0, 0},
    {"migration", "prepare_timeout", KEY_UINT, OFF(migration_prepare_timeout_s), "300", 10, 3600},
    {"network", "tunnel_type", KEY_CHOICE, OFF(net_tunnel_type), "geneve", 0, 0, "geneve|vxlan"},
    {"metrics", "guest_stats_interval", KEY_UINT, OFF(guest_stats_interval_s), "10", 1, 3600},
    {"network", "announce_interval", KEY_UINT, OFF(announce_interval_s), "10", 1, 3600},
    {"peers", "max_peers", KEY_UINT, OFF(max_peers), "1000", 1, 100000},
    {"peers", "max_vnis", KEY_UINT, OFF(max_peer_vnis), "4096", 1, 4096},
};

struct parse_state {
    struct agent_config *cfg;
    bool seen[NA_ARRAY_SIZE(keys)];
    char *first_error; /* "[section] key: why", for the first bad line */
};

static bool
is_name(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0 || s[0] == '-')
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == len;
}

static bool
parse_uint(const char *s, unsigned long min, unsigned long max, unsigned *out)
{
    if (!*s || s[0] == '-' || s[0] == '+')
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return false;
    *out = (unsigned)v;
    return true;
}

static bool
is_hostport(const char *s)
{
    const char *colon = strrchr(s, ':');
    unsigned port;
    return colon && colon != s && parse_uint(colon + 1, 1, 65535, &port);
}

/* Sets one key from its text; returns a static reason on a bad value. */
static const char *
set_key(struct agent_config *cfg, const struct key_def *k, const char *value)
{
    void *field = (char *)cfg + k->offset;
    switch (k->type) {
    case KEY_STRING:
    case KEY_LIST:
    case KEY_NAME:
    case KEY_PATH:
    case KEY_HOSTPORT:
        if (k->type == KEY_NAME && !is_name(value))
            return "must be 1..64 characters of [A-Za-z0-9._-]";
        if (k->type == KEY_PATH && *value && value[0] != '/')
            return "must be an absolute path";
        /* Empty means "none" for an optional path; a path with a default is always needed. */
        if (k->type == KEY_PATH && !*value && k->default_value)
            return "must not be empty (leave the key out for its default)";
        if (k->type == KEY_HOSTPORT && *value && !is_hostport(value))
            return "must be HOST:PORT with a port from 1 to 65535";
        if (k->type == KEY_STRING && !*value)
            return "must not be empty";
        free(*(char **)field);
        *(char **)field = *value ? na_xstrdup(value) : NULL;
        return NULL;
    case KEY_UINT: {
        static char why[80];
        if (!parse_uint(value, k->min, k->max, (unsigned *)field)) {
            snprintf(why, sizeof(why), "must be a whole number from %lu to %lu", k->min, k->max);
            return why;
        }
        return NULL;
    }
    case KEY_BOOL:
        if (strcmp(value, "true") == 0)
            *(bool *)field = true;
        else if (strcmp(value, "false") == 0)
            *(bool *)field = false;
        else
            return "must be true or false";
        return NULL;
    case KEY_RATIO: {
        char *end = NULL;
        errno = 0;
        double v = strtod(value, &end);
        if (!*value || errno || *end || !isfinite(v) || v <= 0 || v > 1000)
            return "must be a number above 0 and at most 1000";
        *(double *)field = v;
        return NULL;
    }
    case KEY_URL:
        if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0)
            return "must be an http:// or https:// URL";
        if (strpbrk(value, " \t\r\n\"<>\\^`{|}"))
            return "must not contain spaces or quotes";
        free(*(char **)field);
        *(char **)field = na_xstrdup(value);
        return NULL;
    case KEY_IPV4: {
        struct in_addr addr;
        if (inet_pton(AF_INET, value, &addr) != 1)
            return "must be an IPv4 address (a.b.c.d)";
        free(*(char **)field);
        *(char **)field = na_xstrdup(value);
        return NULL;
    }
    case KEY_CHOICE: {
        static char why[160];
        size_t len = strlen(value);
        for (const char *c = k->choices; *c;) {
            size_t n = strcspn(c, "|");
            if (n == len && strncmp(c, value, n) == 0) {
                free(*(char **)field);
                *(char **)field = na_xstrdup(value);
                return NULL;
            }
            c += n + (c[n] == '|');
        }
        snprintf(why, sizeof(why), "must be one of %s", k->choices);
        return why;
    }
    case KEY_LOG_LEVEL:
        if (na_log_level_parse(value, (enum na_log_level *)field) < 0)
            return "must be one of debug, info, warn, error";
        return NULL;
    }
    return "unknown key type";
}

/* librdkafka is the judge of its own keys: try each on a scratch configuration. */
static const char *
check_rdkafka_key(const char *name, const char *value, char *why, size_t why_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, name, value, why, why_size);
    rd_kafka_conf_destroy(conf);
    return res == RD_KAFKA_CONF_OK ? NULL : why;
}

static int
on_ini_entry(void *user, const char *section, const char *name, const char *value)
{
    struct parse_state *st = user;
    const char *why = NULL;
    char rdkafka_why[512];

    if (strcmp(section, "bus.rdkafka") == 0) {
        why = check_rdkafka_key(name, value, rdkafka_why, sizeof(rdkafka_why));
        if (!why) {
            struct agent_config *cfg = st->cfg;
            for (size_t i = 0; i < cfg->n_rdkafka; i++)
                if (strcmp(cfg->rdkafka[i].key, name) == 0)
                    why = "given twice";
        }
        if (!why) {
            struct agent_config *cfg = st->cfg;
            cfg->rdkafka = na_xrealloc(cfg->rdkafka, (cfg->n_rdkafka + 1) * sizeof(*cfg->rdkafka));
            cfg->rdkafka[cfg->n_rdkafka].key = na_xstrdup(name);
            cfg->rdkafka[cfg->n_rdkafka].value = na_xstrdup(value);
            cfg->n_rdkafka++;
        }
    } else {
        const struct key_def *k = NULL;
        bool section_known = false;
        for (size_t i = 0; i < NA_ARRAY_SIZE(keys); i++) {
            if (strcmp(keys[i].section, section) == 0) {
                section_known = true;
                if (strcmp(keys[i].name, name) == 0)
                    k = &keys[i];
            }
        }
        if (!section_known)
            why = "unknown section";
        else if (!k)
            why = "unknown key";
        else if (st->seen[k - keys])
            why = "given twice";
        else {
            st->seen[k - keys] = true;
            why = set_key(st->cfg, k, value);
        }
    }

    if (!why)
        return 1;
    if (!st->first_error)
        st->first_error = na_xasprintf("[%s] %s: %s", section, name, why);
    return 0;
}

/* [capacity] custom_traits: names separated by commas and/or spaces. */
static int
split_custom_traits(struct agent_config *cfg, struct na_error **err)
{
    const char *sep = ", \t";
    for (const char *s = cfg->custom_traits_text; *s;) {
        s += strspn(s, sep);
        size_t len = strcspn(s, sep);
        if (!len)
            break;
        char *name = na_xstrndup(s, len);
        s += len;
        if (!sched_custom_trait_is_valid(name)) {
            int ret = na_error_set(err, NA_CODE_INTERNAL, 0,
                                   "%s: [capacity] custom_traits: `%s` is not a custom trait "
                                   "(CUSTOM_ and then A-Z, 0-9 or _, at most 255 characters)",
                                   cfg->path, name);
            free(name);
            return ret;
        }
        cfg->custom_traits = na_xrealloc(cfg->custom_traits,
                                         (cfg->n_custom_traits + 1) * sizeof(*cfg->custom_traits));
        cfg->custom_traits[cfg->n_custom_traits++] = name;
    }
    return 0;
}

/* [image_cache] allowed_networks: CIDRs separated by commas and/or spaces. */
static int
split_allowed_networks(struct agent_config *cfg, struct na_error **err)
{
    const char *sep = ", \t";
    for (const char *s = cfg->image_allowed_networks_text; *s;) {
        s += strspn(s, sep);
        size_t len = strcspn(s, sep);
        if (!len)
            break;
        cleanup_free char *text = na_xstrndup(s, len);
        s += len;
        struct qcow2_cidr cidr;
        const char *why = NULL;
        if (qcow2_cidr_parse(text, &cidr, &why) < 0)
            return na_error_set(err, NA_CODE_INTERNAL, 0,
                                "%s: [image_cache] allowed_networks: `%s` %s (want a CIDR such "
                                "as 127.0.0.0/8 or fd00::/8)",
                                cfg->path, text, why);
        cfg->image_allowed_networks =
            na_xrealloc(cfg->image_allowed_networks,
                        (cfg->n_image_allowed_networks + 1) * sizeof(*cfg->image_allowed_networks));
        cfg->image_allowed_networks[cfg->n_image_allowed_networks++] = cidr;
    }
    return 0;
}

static int
apply_defaults(struct agent_config *cfg, const struct parse_state *st, struct na_error **err)
{
    int ret;
    for (size_t i = 0; i < NA_ARRAY_SIZE(keys); i++) {
        if (st->seen[i] || !keys[i].default_value)
            continue;
        const char *why = set_key(cfg, &keys[i], keys[i].default_value);
        if (why)
            return na_error_set(err, NA_CODE_INTERNAL, 0, "default of [%s] %s: %s", keys[i].section,
                                keys[i].name, why);
    }
    if (strcmp(cfg->cpu_mode, "custom") == 0 && !cfg->cpu_model)
        return na_error_set(err, NA_CODE_INTERNAL, 0,
                            "%s: [hypervisor] cpu_model: must be set when cpu_mode = custom",
                            cfg->path);
    if (cfg->uid_max < cfg->uid_min)
        return na_error_set(err, NA_CODE_INTERNAL, 0,
                            "%s: [instances] uid_max: %u is below uid_min %u", cfg->path,
                            cfg->uid_max, cfg->uid_min);
    if (cfg->custom_traits_text && (ret = split_custom_traits(cfg, err)) < 0)
        return ret;
    if (cfg->image_allowed_networks_text && (ret = split_allowed_networks(cfg, err)) < 0)
        return ret;
    if (!cfg->node_id) {
        char host[HOST_NAME_MAX + 1] = "";
        gethostname(host, sizeof(host));
        if (!is_name(host))
            return na_error_set(err, NA_CODE_INTERNAL, 0,
                                "%s: [agent] node_id is not set and the host name `%s` is not "
                                "a valid node id",
                                cfg->path, host);
        cfg->node_id = na_xstrdup(host);
    }
    if (!cfg->node_key)
        cfg->node_key = na_xasprintf("%s/node.key", cfg->state_dir);
    if (!cfg->node_cert)
        cfg->node_cert = na_xasprintf("%s/node.cert", cfg->state_dir);
    return 0;
}

/* Config files are small; this bounds what a wrong path (a disk image, /dev/zero) costs. */
#define MAX_CONFIG_SIZE (1 << 20)

int
agent_config_parse(const char *path, const char *text, struct agent_config **out,
                   struct na_error **err)
{
    struct agent_config *cfg = na_xcalloc(1, sizeof(*cfg));
    struct parse_state st = {.cfg = cfg};
    cfg->path = na_xstrdup(path);

    int line = ini_parse_string(text, on_ini_entry, &st);
    int ret = 0;
    if (line == -2)
        ret = na_error_set(err, NA_CODE_INTERNAL, ENOMEM, "parse config file `%s`", path);
    else if (line != 0)
        ret = na_error_set(err, NA_CODE_INTERNAL, 0, "%s:%d: %s", path, line,
                           st.first_error ? st.first_error : "syntax error");
    else
        ret = apply_defaults(cfg, &st, err);
    free(st.first_error);
    if (ret < 0) {
        agent_config_free(cfg);
        return ret;
    }
    *out = cfg;
    return 0;
}

/* The whole file, NUL-terminated; a NUL inside it is refused (inih would stop there). */
static int
read_config_file(const char *path, char **out, struct na_error **err)
{
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        return na_error_set(err, NA_CODE_INTERNAL, errno, "open config file `%s`", path);
    if (!S_ISREG(st.st_mode) || st.st_size > MAX_CONFIG_SIZE)
        return na_error_set(err, NA_CODE_INTERNAL, 0,
                            "config file `%s` is not a regular file of at most %d bytes", path,
                            MAX_CONFIG_SIZE);
    cleanup_free char *text = na_xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return na_error_set(err, NA_CODE_INTERNAL, errno, "read config file `%s`", path);
        if (n == 0 || (got += (size_t)n) == (size_t)st.st_size)
            break;
    }
    text[got] = '\0';
    if (strlen(text) != got)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "config file `%s` contains a NUL byte", path);
    *out = text;
    text = NULL;
    return 0;
}

int
agent_config_load(const char *path, struct agent_config **out, struct na_error **err)
{
    cleanup_free char *text = NULL;
    struct agent_config *cfg = NULL;
    int ret = read_config_file(path, &text, err);
    if (ret == 0)
        ret = agent_config_parse(path, text, &cfg, err);
    if (ret == 0 && cfg->hmac_key_file)
        ret = config_read_key_file(cfg, err);
    if (ret == 0 && cfg->admin_token_file)
        ret = config_read_admin_token(cfg, err);
    if (ret < 0) {
        agent_config_free(cfg);
        return ret;
    }
    *out = cfg;
    return 0;
}

void
agent_config_free(struct agent_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NA_ARRAY_SIZE(keys); i++) {
        if (keys[i].type != KEY_UINT && keys[i].type != KEY_LOG_LEVEL && keys[i].type != KEY_BOOL &&
            keys[i].type != KEY_RATIO)
            free(*(char **)((char *)cfg + keys[i].offset));
    }
    for (size_t i = 0; i < cfg->n_rdkafka; i++) {
        free(cfg->rdkafka[i].key);
        free(cfg->rdkafka[i].value);
    }
    free(cfg->rdkafka);
    for (size_t i = 0; i < cfg->n_custom_traits; i++)
        free(cfg->custom_traits[i]);
    free(cfg->custom_traits);
    free(cfg->image_allowed_networks);
    if (cfg->hmac_key)
        memset(cfg->hmac_key, 0, cfg->hmac_key_size);
    free(cfg->hmac_key);
    if (cfg->admin_token)
        memset(cfg->admin_token, 0, cfg->admin_token_size);
    free(cfg->admin_token);
    free(cfg->path);
    free(cfg);
}

const char *
agent_config_key_name(size_t i, char *buf, size_t size)
{
    if (i >= NA_ARRAY_SIZE(keys))
        return NULL;
    snprintf(buf, size, "%s.%s", keys[i].section, keys[i].name);
    return buf;
}

char *
agent_topic_node(const struct agent_config *cfg, const char *node_id)
{
    return na_xasprintf("%s.node.%s", cfg->topic_prefix, node_id);
}

char *
agent_topic_events(const struct agent_config *cfg)
{
    return na_xasprintf("%s.events", cfg->topic_prefix);
}

char *
agent_topic_capacity(const struct agent_config *cfg)
{
    return na_xasprintf("%s.capacity", cfg->topic_prefix);
}

char *
agent_topic_nodes(const struct agent_config *cfg)
{
    return na_xasprintf("%s.nodes", cfg->topic_prefix);
}
