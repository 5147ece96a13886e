/* nodectl: the operator and control-plane CLI of nodeagent (private to the tool).
 *
 * A thin layer: cli.c turns argv into struct nodectl_args (raw strings per flag, typed
 * accessors that refuse unparseable values), build.c turns those into an Envelope, bus.c
 * moves bytes over Kafka, admin.c talks to the agent's admin socket, output.c prints,
 * keys.c makes keys and node certificates with proto/trust, and commands.c strings these
 * together per subcommand.  Nothing here checks that a request makes sense: the agent
 * validates, and tests send bad values through nodectl on purpose.
 *
 * Every function that can fail follows the common convention (struct na_error **, negative
 * return); nodectl_exit_code() maps an error's code to the documented exit status.
 */
#ifndef NODEAGENT_NODECTL_H
#define NODEAGENT_NODECTL_H

#include "proto/requests.h"
#include "common/common.h"
#include "nodeagent.pb-c.h"
#include "proto/trust.h"

#include <jansson.h>
#include <sys/types.h>

enum nodectl_exit {
    NODECTL_EXIT_OK = 0,      /* sent, or DONE */
    NODECTL_EXIT_FAILED = 1,  /* the request FAILED, or the agent is unhealthy */
    NODECTL_EXIT_USAGE = 2,   /* bad command line */
    NODECTL_EXIT_TIMEOUT = 3, /* no terminal event in time */
    NODECTL_EXIT_BUS = 4,     /* bus or admin socket unreachable, delivery failed */
};

/* The flags of every subcommand, listed once: X(ID, name, metavar, help).  metavar NULL
 * marks a boolean flag.  Two subcommands that need different meanings for one name use
 * two ids (--timeout, --request-id). */
#define NODECTL_FLAGS(X)                                                                           \
    X(REQUEST_ID, "request-id", "ID", "request id, the idempotency key (default: a new uuid)")     \
    X(WAIT, "wait", NULL,                                                                          \
      "wait for the DONE or FAILED event, printing progress; a refusal before authentication "     \
      "ends it only when it names our request id, our node and the offset we were given")          \
    X(WAIT_TIMEOUT, "timeout", "S", "with --wait: give up after S seconds (default 300)")          \
    X(OUT, "out", "FILE",                                                                          \
      "write the serialized Envelope to FILE instead of sending it; with --key, also its "         \
      "hex signature (the nodeagent-signature header value, no newline) to FILE.sig")              \
    X(UUID, "uuid", "UUID", "instance uuid (default: a new uuid)")                                 \
    X(NAME, "name", "NAME", "instance name")                                                       \
    X(TENANT, "tenant", "ID", "tenant id")                                                         \
    X(VCPUS, "vcpus", "N", "flavor: virtual CPUs")                                                 \
    X(MEMORY_MIB, "memory-mib", "N", "flavor: memory in MiB")                                      \
    X(DISK_GIB, "disk-gib", "N", "flavor: root disk in GiB")                                       \
    X(FLAVOR_NAME, "flavor-name", "NAME", "flavor: name (informational)")                          \
    X(LIMITS, "limits", "K=V,...",                                                                 \
      "flavor: limits by field name, e.g. disk_write_bytes_sec=5242880,cpu_shares=512")            \
    X(IMAGE_ID, "image-id", "ID", "image id")                                                      \
    X(IMAGE_URL, "image-url", "URL", "image URL (http:// or https://)")                            \
    X(IMAGE_SHA256, "image-sha256", "HEX", "sha256 of the image file")                             \
    X(IMAGE_FORMAT, "image-format", "FMT", "qcow2, raw, unspecified, or a number")                 \
    X(NIC, "nic", "SPEC",                                                                          \
      "port=UUID,network=UUID,vni=N,mac=MAC,ip=CIDR[,ip=CIDR...],gateway=IP,gateway6=IP6,"         \
      "mtu=N[,sg=GROUP...] (repeatable; ip: IPv4 or IPv6 CIDR)")                                   \
    X(HOSTNAME, "hostname", "NAME", "guest host name")                                             \
    X(SSH_KEY, "ssh-key", "KEY", "an SSH public key (repeatable)")                                 \
    X(SSH_KEY_FILE, "ssh-key-file", "FILE", "SSH public keys, one per line (repeatable)")          \
    X(USER_DATA_FILE, "user-data-file", "FILE", "cloud-init user data")                            \
    X(META, "meta", "K=V", "metadata item (repeatable)")                                           \
    X(SHUTDOWN_TIMEOUT, "shutdown-timeout", "S", "graceful shutdown time before forcing off")      \
    X(FORCE, "force", NULL, "power off at once")                                                   \
    X(HARD, "hard", NULL, "hard reboot (reset) instead of soft")                                   \
    X(SNAPSHOT, "snapshot", "NAME", "snapshot name")                                               \
    X(UPLOAD_URL, "upload-url", "URL",                                                             \
      "snapshot-export: PUT the image to this http(s) URL (e.g. a pre-signed object URL)")         \
    X(PUBLISH, "publish", NULL, "snapshot-export: publish the image into the node's image cache")  \
    X(DESCRIPTION, "description", "TEXT", "snapshot description (one line, at most 256 bytes)")    \
    X(QUIESCE, "quiesce", NULL, "freeze the guest's file systems first (needs a guest agent)")     \
    X(CHILDREN, "children", NULL, "also delete every snapshot made from it")                       \
    X(TAIL_BYTES, "tail-bytes", "N",                                                               \
      "bytes from the end of the console log (0: 64 KiB; at most 256 KiB)")                        \
    X(TO, "to", "NODE", "destination node id")                                                     \
    X(MAX_DOWNTIME_MS, "max-downtime-ms", "N", "maximum downtime in ms (0: libvirt's default)")    \
    X(BANDWIDTH, "bandwidth-mib-s", "N", "bandwidth limit in MiB/s (0: unlimited)")                \
    X(AUTO_CONVERGE, "auto-converge", NULL, "throttle the guest's CPUs to converge")               \
    X(POST_COPY, "post-copy", NULL, "allow switching to post-copy")                                \
    X(MIGRATION_TIMEOUT, "migration-timeout-s", "S", "migration timeout (0: the agent's default)") \
    X(FROM_BEGINNING, "from-beginning", NULL, "start at the oldest event instead of the end")      \
    X(TO_END, "to-end", NULL, "exit at the end of the topic as it was when nodectl started")       \
    X(FILTER_REQUEST_ID, "request-id", "ID", "only events of this request")                        \
    X(FILTER_INSTANCE, "instance", "UUID", "only events of this instance")                         \
    X(COUNT, "count", "N", "exit after N matching messages (exit 3 if the timeout comes first)")   \
    X(EVENTS_TIMEOUT, "timeout", "S", "stop after S seconds (default: follow until interrupted)")  \
    X(PUBLIC_OUT, "public-out", "PUBFILE",                                                         \
      "write the public key to PUBFILE (default: FILE with .key replaced by .pub)")                \
    X(NODE_ID, "node-id", "ID", "the node the certificate is for (required)")                      \
    X(PUBLIC_KEY, "public-key", "PUBFILE",                                                         \
      "the node's Ed25519 key, PEM public or private key file (required)")                         \
    X(ENDPOINT, "endpoint", "IP",                                                                  \
      "a tunnel endpoint (IPv4) the node may announce (repeatable, at most 16)")                   \
    X(DAYS, "days", "N", "valid for N days from not-before (default 365)")                         \
    X(NOT_BEFORE_MS, "not-before-ms", "MS", "valid from MS, unix milliseconds (default: now)")     \
    X(NOT_AFTER_MS, "not-after-ms", "MS",                                                          \
      "valid until MS, unix milliseconds, instead of --days (tests: an expired certificate)")      \
    X(CERT_OUT, "cert-out", "FILE",                                                                \
      "write the SignedNodeCertificate to FILE, mode 0644, replacing it atomically (required)")    \
    X(RELEASE, "release", NULL,                                                                    \
      "the orphans listed now stop holding the agent (recorded in its store); they stay "          \
      "untouched")                                                                                 \
    X(RULE, "rule", "SPEC",                                                                        \
      "dir=ingress|egress,ethertype=ipv4|ipv6[,proto=tcp|udp|icmp][,ports=MIN[-MAX]]"              \
      "[,icmp=TYPE[/CODE]][,cidr=CIDR|,group=ID] (repeatable)")                                    \
    X(MEMBER, "member", "IP", "address of a member of the group, anywhere (repeatable)")           \
    X(GROUP_NAME, "group-name", "NAME", "the group's name (informational)")                        \
    X(GROUP, "group", "ID", "a security group of the port (repeatable; none: the default)")        \
    X(CONTROL_PLANE_KEY, "control-plane-key", "PUBFILE",                                           \
      "check the signature and validity now against this control-plane public key (exit 1 if "     \
      "the check fails)")

enum nodectl_flag {
#define X(ID, name, metavar, help) NODECTL_F_##ID,
    NODECTL_FLAGS(X)
#undef X
        NODECTL_F__COUNT
};

struct nodectl_global {
    const char *bootstrap;
    const char *prefix;
    const char *node;
    const char *hmac_key_file;
    const char *key_file; /* the control plane's Ed25519 private key */
    const char *admin_socket;
    const char **rdkafka_props; /* "key=value", passed to librdkafka verbatim */
    size_t n_rdkafka_props;
    bool json;
};

struct nodectl_args;

struct nodectl_command {
    const char *name;
    const char *positional; /* "UUID" (required), "[UUID]" (optional) or NULL */
    const char *summary;
    enum agent_request_kind kind; /* AGENT_REQ_NONE for commands that send no request */
    const enum nodectl_flag *flags;
    size_t n_flags;
    int (*run)(const struct nodectl_args *a, struct na_error **err);
};

struct nodectl_values {
    const char **v;
    size_t n;
};

struct nodectl_args {
    struct nodectl_global g;
    const struct nodectl_command *cmd; /* NULL with a bare --help */
    const char *group; /* the first word of a two-word command ("node-cert"), if one */
    const char *positional;
    struct nodectl_values flags[NODECTL_F__COUNT];
    bool help;
};

/* --- cli.c ----------------------------------------------------------------------------- */

/* Fills a from argv and the NODECTL_* environment.  Usage errors come back with code
 * INVALID_ARGUMENT.  a->help asks the caller to print nodectl_usage(). */
int nodectl_parse(int argc, char **argv, struct nodectl_args *a, struct na_error **err);
void nodectl_args_free(struct nodectl_args *a);
/* Global help when cmd is NULL, else that subcommand's. */
void nodectl_usage(FILE *out, const struct nodectl_command *cmd);
/* The help of a command group ("node-cert"): its subcommands. */
void nodectl_usage_group(FILE *out, const char *group);

const char *nodectl_arg_str(const struct nodectl_args *a, enum nodectl_flag f);
bool nodectl_arg_bool(const struct nodectl_args *a, enum nodectl_flag f);
/* 0 and *out untouched when the flag is absent; INVALID_ARGUMENT when not a number. */
int nodectl_arg_u32(const struct nodectl_args *a, enum nodectl_flag f, uint32_t *out,
                    struct na_error **err);
/* Decimal unsigned number with an upper bound; INVALID_ARGUMENT naming `what` otherwise. */
int nodectl_parse_u32(const char *s, const char *what, uint32_t *out, struct na_error **err);
/* Like nodectl_arg_u32 for a signed 64-bit number. */
int nodectl_arg_i64(const struct nodectl_args *a, enum nodectl_flag f, int64_t *out,
                    struct na_error **err);

/* --- build.c --------------------------------------------------------------------------- */

/* The Envelope for a request subcommand; free with nodeagent__v1__envelope__free_unpacked(e,
 * NULL) (everything in it is malloc'd). */
int nodectl_build_envelope(const struct nodectl_args *a, Nodeagent__V1__Envelope **out,
                           struct na_error **err);

/* --- bus.c ----------------------------------------------------------------------------- */

struct nodectl_delivery {
    int32_t partition;
    int64_t offset;
};

/* The signature headers of a request; a NULL member is not sent. */
struct nodectl_signatures {
    const char *hmac;      /* NA_HMAC_HEADER, legacy */
    const char *signature; /* TRUST_SIGNATURE_HEADER, Ed25519 by the control plane */
};

/* Produces one message and waits for its delivery report. */
int nodectl_bus_send(const struct nodectl_global *g, const char *topic, const char *key,
                     const void *data, size_t size, const struct nodectl_signatures *sigs,
                     struct nodectl_delivery *out, struct na_error **err);

struct nodectl_events;

/* Assigns every partition of topic at its high watermark (or its start with
 * from_beginning), queried before returning, so nothing produced afterwards is missed.
 * No consumer group offsets are committed. */
int nodectl_events_open(const struct nodectl_global *g, const char *topic, bool from_beginning,
                        struct nodectl_events **out, struct na_error **err);
/* Waits up to timeout_ms for the next message.  Returns 1 with *ev set (NULL when the
 * payload did not decode: a warning has been printed), 0 when nothing came, negative on a
 * fatal error.  *ev is freed by the next call or by close. */
int nodectl_events_next(struct nodectl_events *es, int timeout_ms, Nodeagent__V1__Event **ev,
                        struct nodectl_delivery *where, struct na_error **err);
void nodectl_events_close(struct nodectl_events *es);

/* A message as it came; its pointers are valid until the next call or close. */
struct nodectl_message {
    const void *payload;
    size_t size;
    const void *key;
    size_t key_len;
    struct nodectl_delivery where;
};
/* Like nodectl_events_next, for any topic: 1 with *m set, 0 when nothing came. */
int nodectl_topic_next(struct nodectl_events *es, int timeout_ms, struct nodectl_message *m);
/* Whether every partition has been read up to where it ended when the topic was opened. */
bool nodectl_topic_at_end(const struct nodectl_events *es);

/* --- admin.c --------------------------------------------------------------------------- */

/* GET http://localhost<path> over the admin unix socket.  *http_status and the body as
 * JSON; UNAVAILABLE when the socket cannot be reached, INTERNAL when the body is not
 * JSON. */
int nodectl_admin_request(const char *socket_path, const char *method, const char *path,
                          long *http_status, json_t **body, struct na_error **err);
int nodectl_admin_get(const char *socket_path, const char *path, long *http_status, json_t **body,
                      struct na_error **err);

/* --- output.c -------------------------------------------------------------------------- */

/* One line per event: a JSON object (with "partition" and "offset" when where is set) or
 * a readable text line. */
void nodectl_print_event(FILE *out, bool json, const Nodeagent__V1__Event *ev,
                         const struct nodectl_delivery *where);
void nodectl_print_json(FILE *out, json_t *j, bool pretty);
/* "CODE: message (field F)" of an event's error into a new string. */
char *nodectl_error_text(const Nodeagent__V1__Error *e);
/* Unix milliseconds as ISO 8601 UTC with milliseconds ("2025-01-31T12:00:00.000Z"). */
void nodectl_format_time(int64_t ms, char *buf, size_t size);

/* --- commands.c ------------------------------------------------------------------------ */

/* Prints the messages of topic that print() takes (it returns whether it printed one),
 * honouring --from-beginning, --count and --timeout, until SIGINT/SIGTERM; what names the
 * messages in the timeout error ("events"). */
int nodectl_follow(const struct nodectl_args *a, const char *topic, const char *what,
                   bool (*print)(const struct nodectl_args *a, const struct nodectl_message *m),
                   struct na_error **err);

int nodectl_cmd_request(const struct nodectl_args *a, struct na_error **err);
int nodectl_cmd_events(const struct nodectl_args *a, struct na_error **err);
int nodectl_cmd_status(const struct nodectl_args *a, struct na_error **err);
int nodectl_cmd_instances(const struct nodectl_args *a, struct na_error **err);
int nodectl_cmd_snapshot_list(const struct nodectl_args *a, struct na_error **err);
/* The "stats" object of an instance (tools/nodectl/guest_stats.c), as text on stdout. */
void nodectl_print_guest_stats(json_t *stats);
int nodectl_cmd_capacity(const struct nodectl_args *a, struct na_error **err);
int nodectl_cmd_peers(const struct nodectl_args *a, struct na_error **err);
int nodectl_cmd_orphans(const struct nodectl_args *a, struct na_error **err);
int nodectl_cmd_purge(const struct nodectl_args *a, struct na_error **err);
int nodectl_cmd_adopt(const struct nodectl_args *a, struct na_error **err);
int nodectl_cmd_capacity_reports(const struct nodectl_args *a, struct na_error **err);

/* --- keys.c: keys, node certificates, request signatures -------------------------------- */

/* The control plane's key from --key / NODEAGENT_CP_KEY; *out NULL when none is given. */
int nodectl_cp_key_load(const struct nodectl_global *g, EVP_PKEY **out, struct na_error **err);
/* Writes data to path through a temporary file and a rename, with mode. */
int nodectl_write_atomic(const char *path, const void *data, size_t size, mode_t mode,
                         struct na_error **err);

int nodectl_cmd_keygen(const struct nodectl_args *a, struct na_error **err);
int nodectl_cmd_node_cert_issue(const struct nodectl_args *a, struct na_error **err);
int nodectl_cmd_node_cert_show(const struct nodectl_args *a, struct na_error **err);

/* The exit status for a failure carrying err's code. */
int nodectl_exit_code(const struct na_error *err);

#endif
