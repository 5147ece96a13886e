/* The agent's configuration: an INI file read once at start with inih.
 *
 * Every key is declared in one table (config.c) with its type, range and default; the
 * sample file deploy/nodeagent.conf.sample documents each one.  Unknown sections or keys,
 * duplicate keys and bad values are refused, naming the file, the line and the key.
 * The result is an immutable snapshot: nothing changes it after agent_config_load().
 */
#ifndef NODEAGENT_AGENT_CONFIG_H
#define NODEAGENT_AGENT_CONFIG_H

#include "common/common.h"

#define AGENT_DEFAULT_CONFIG "/etc/nodeagent/nodeagent.conf"

struct qcow2_cidr;

struct agent_config_pair {
    char *key;
    char *value;
};

struct agent_config {
    char *path;

    /* [agent] */
    char *node_id;
    char *state_dir;
    enum na_log_level log_level;
    char *log_file; /* NULL: stderr */
    unsigned workers;
    unsigned shutdown_timeout_s;
    unsigned max_queued;
    unsigned min_free_mib; /* below it, creates, rebuilds, resizes and suspends are refused */
    unsigned reconcile_interval_s;

    /* [bus] */
    char *bootstrap_servers;
    char *topic_prefix;
    char *control_plane_key; /* the control plane's Ed25519 public key (PEM) */
    char *node_key;          /* this node's Ed25519 private key; default state_dir/node.key */
    char *node_cert;         /* its SignedNodeCertificate; default state_dir/node.cert */
    bool insecure_unsigned;  /* accept unsigned requests and announcements */
    unsigned max_request_age_s;
    char *hmac_key_file;
    uint8_t *hmac_key; /* contents of hmac_key_file, NULL when unset */
    size_t hmac_key_size;
    unsigned event_buffer_max;

    /* [bus.rdkafka]: passed to librdkafka verbatim, already checked by it */
    struct agent_config_pair *rdkafka;
    size_t n_rdkafka;

    /* [hypervisor] */
    char *hv_uri;
    char *virt_type; /* "kvm" or "qemu" */
    char *cpu_mode;  /* "host-model", "host-passthrough", "custom" or "none" */
    char *cpu_model; /* with cpu_mode = custom */
    char *machine;
    char *bridge;
    unsigned stop_timeout_s;

    /* [instances] */
    unsigned uid_min;
    unsigned uid_max;
    unsigned snapshot_max_per_instance; /* 0: snapshots refused */
    char *qemu_group;

    /* [image_cache] */
    unsigned image_max_unused_age_s;
    unsigned image_max_size_gib;
    unsigned image_max_virtual_size_gib;
    unsigned image_connect_timeout_s;
    unsigned image_stall_timeout_s;
    unsigned image_min_rate_kib; /* KiB/s */
    unsigned image_cache_max_size_gib;
    unsigned image_retries;
    bool image_tls_verify;
    char *image_ca_file;
    char *image_allowed_networks_text;         /* as written: "127.0.0.0/8, fd00::/8" */
    struct qcow2_cidr *image_allowed_networks; /* the same, parsed */
    size_t n_image_allowed_networks;

    /* [capacity] */
    unsigned reserved_vcpus;
    unsigned reserved_memory_mb;
    unsigned reserved_disk_gb;
    double vcpu_allocation_ratio;
    double memory_allocation_ratio;
    double disk_allocation_ratio;
    char *custom_traits_text; /* as written: "CUSTOM_A, CUSTOM_B" */
    char **custom_traits;     /* the same, split and checked */
    size_t n_custom_traits;
    unsigned report_interval_s;

    /* [placement] */
    char *placement_endpoint; /* NULL: no reports to Placement */
    char *placement_token;    /* X-Auth-Token; NULL: none */
    unsigned placement_timeout_s;
    bool placement_manage_allocations;

    /* [memory] */
    bool ksm;

    /* [admin] */
    char *admin_socket;
    char *admin_listen;     /* "host:port" or NULL */
    char *admin_token_file; /* bearer token for the private routes on TCP; NULL: none */
    uint8_t *admin_token;   /* its token (no newline), NULL when unset */
    size_t admin_token_size;

    /* [metrics] */
    unsigned guest_stats_interval_s; /* between two collections of per-guest figures */

    /* [network] */
    bool net_enabled;
    char *net_ovsdb;         /* "unix:PATH" */
    char *net_datapath_type; /* "system" or "netdev" */
    unsigned net_bind_timeout_s;
    unsigned net_underlay_mtu;
    unsigned net_tunnel_overhead;
    char *tunnel_endpoint; /* this node's underlay IPv4 address; NULL: none */
    char *net_tunnel_type; /* "geneve" or "vxlan" */
    unsigned announce_interval_s;

    /* [peers] */
    unsigned max_peers;
    unsigned max_peer_vnis;

    /* [migration] (docs/operations.md, "Live migration") */
    char *migration_libvirt_uri; /* how peers' libvirtd reach ours; NULL: from tunnel_endpoint */
    char *migration_uri;         /* where incoming migration streams go; NULL: likewise */
    char *migration_socket_dir;  /* set: incoming streams on UNIX sockets in it instead */
    unsigned migration_prepare_timeout_s; /* how long a source waits for migration_prepared */
};

/* Loads and validates path, and reads the key files it names.  On error, err's message
 * reads "FILE:LINE: [section] key: why". */
int agent_config_load(const char *path, struct agent_config **out, struct na_error **err);
/* Parses and validates text, the contents of the file path names (for messages), without
 * reading any other file: hmac_key and admin_token stay unset.  A pure function of the
 * text but for the host name (the default node_id). */
int agent_config_parse(const char *path, const char *text, struct agent_config **out,
                       struct na_error **err);
void agent_config_free(struct agent_config *cfg);

/* The i-th key the agent knows as "section.key", or NULL past the last (for the test that
 * keeps nodeagent.conf.sample complete). */
const char *agent_config_key_name(size_t i, char *buf, size_t size);

/* Topic names derived from the prefix; the caller frees them. */
char *agent_topic_node(const struct agent_config *cfg, const char *node_id);
char *agent_topic_events(const struct agent_config *cfg);
char *agent_topic_capacity(const struct agent_config *cfg);
char *agent_topic_nodes(const struct agent_config *cfg);

#endif
