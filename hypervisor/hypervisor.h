/* hypervisor: everything nodeagent says to libvirt and reads back from it.
 *
 * Its job is to turn an instance, described by plain structs, into what libvirt needs (the
 * domain XML), to drive libvirt's lifecycle calls, and to read libvirt's view of a domain
 * back into plain structs that the agent's reconciliation compares with its state store.
 * Inputs are plain structs whose strings the caller owns; outputs are plain structs or
 * strings the caller frees, and struct na_error (INVALID_ARGUMENT naming the spec field for
 * a refused input, HYPERVISOR for what libvirt gave or said).  The module knows nothing of
 * the bus or the state store.
 *
 * Threading: hv_open() starts one thread that runs libvirt's event loop, keeps the
 * connection (keepalive; reconnect with backoff when libvirtd goes away) and reports
 * lifecycle events and connection changes through the callbacks, from that thread: the agent
 * posts them to its loop.  Every other function may run in any worker thread; hv_domain_*
 * calls block, and share the connection (libvirt's connections are thread-safe).  No other
 * global mutable state.  libxml2 must be initialised once by the main thread before workers
 * use this module: hv_domain_xml_init() does that.
 *
 * The header is organised in sections, one per part of the module.
 */
#ifndef NODEAGENT_HYPERVISOR_H
#define NODEAGENT_HYPERVISOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

#include <sys/types.h>

/* --- Domain XML ------------------------------------------------------------------------ *
 *
 * hv_domain_xml_build() makes the libvirt domain XML of an instance.  The XML is built as a
 * libxml2 tree, so every string is escaped by the library.  What it guarantees:
 *  - the libvirt domain name is "na-<uuid>" (unique per host whatever name tenants choose);
 *    the instance name is the domain's <title>;
 *  - our metadata element (namespace HV_METADATA_NS, prefix "na") records who the domain
 *    belongs to, so that the agent finds its own domains, and only its own: the instance,
 *    and in <na:owner node=… store=…/> the node id and the id of the state store that
 *    recorded it (reconciliation destroys nothing that does not carry both of its own);
 *    and, in <na:spec>, the instance's whole spec as the agent records it (an opaque blob
 *    here, base64 in the XML), so that an operator can make a domain whose record was lost
 *    an instance again (nodectl adopt);
 *  - every disk names its format, and so does the backing file of the root disk, whose chain
 *    ends there: QEMU never probes a format.  The shared base image is never relabelled (it
 *    must be readable by every guest's uid/gid); the overlay and config drive are, to the
 *    guest's own +uid:+gid (static DAC label: one uid per guest confines guests from each
 *    other);
 *  - NICs plug into an Open vSwitch bridge with external_ids:iface-id = the port id, on a
 *    tap named "tap" + the first 11 characters of the port id;
 *  - the limits that are set become <cputune> (shares, period and quota) and the root
 *    disk's <iotune>; those at 0 are left out (unlimited);
 *  - the serial console is a pty whose output virtlogd also writes to console_log_path;
 *  - no graphics.
 * Every input is checked again (defence in depth): anything that would make bad XML or a bad
 * domain is refused with INVALID_ARGUMENT naming the hv_domain_spec field ("disk_path",
 * "nics[1].mac", ...).
 *
 * hv_domain_meta_parse() reads any domain XML (ours or not; libvirt's live XML included):
 * whether it carries our metadata, what that says, and the disks and NICs it has.  It never
 * loads external entities nor touches the network, and refuses documents with a DTD.
 */

/* The namespace of our <metadata> element. */
#define HV_METADATA_NS "urn:nodeagent:instance:1"
#define HV_METADATA_PREFIX "na"
/* Bytes of the opaque instance spec a domain's metadata may carry. */
#define HV_INSTANCE_SPEC_MAX_SIZE (1u << 20)
/* Prefix of the libvirt domain name: "na-" + instance uuid. */
#define HV_DOMAIN_NAME_PREFIX "na-"

struct hv_nic_spec {
    const char *port_id; /* uuid; the OVS iface-id, and the tap's name after "tap" */
    const char *mac;     /* xx:xx:xx:xx:xx:xx, unicast */
    const char *bridge;  /* e.g. "br-int" */
    uint32_t mtu;        /* 0: libvirt's default (omitted from the XML) */
};

/* Per-guest limits; 0 = unlimited (nothing in the XML).  The NICs' bandwidth is not here:
 * libvirt's <bandwidth> is tc on the tap, which OVS's userspace datapath can bypass; net/ovs
 * applies it with OpenFlow meters instead. */
struct hv_limits {
    uint32_t cpu_shares;         /* <cputune><shares>: the guest's weight, 2..262144 */
    uint32_t cpu_quota_percent;  /* each vCPU at most this % of one host CPU, 1..100:
                                  * <quota> of a <period> of HV_CPU_PERIOD_US */
    uint32_t disk_read_iops_sec; /* the root disk's <iotune>, 1..1000000 */
    uint32_t disk_write_iops_sec;
    uint64_t disk_read_bytes_sec; /* 1..2^40 */
    uint64_t disk_write_bytes_sec;
};

#define HV_CPU_PERIOD_US 100000u

struct hv_domain_spec {
    /* Who the instance is: recorded in the metadata. */
    const char *uuid;         /* lowercase 8-4-4-4-12 */
    const char *name;         /* the tenant's name for it; any single-line UTF-8 */
    const char *tenant_id;    /* single-line UTF-8 */
    const char *flavor_name;  /* single-line UTF-8, may be "" */
    uint32_t vcpus;           /* 1..1024 */
    uint64_t memory_mib;      /* 1..16777216 */
    uint64_t root_disk_gib;   /* recorded only */
    const char *image_id;     /* single-line UTF-8 */
    const char *image_sha256; /* 64 lowercase hex digits */
    int64_t created_ms;       /* >= 0 */
    const char *node_id;      /* the node that owns it: single-line UTF-8 */
    const char *store_id;     /* the owning agent's state store id: a uuid */
    /* The instance's spec as the agent records it (opaque here), written into <na:spec>;
     * NULL/0 for none.  At most HV_INSTANCE_SPEC_MAX_SIZE bytes. */
    const uint8_t *instance_spec;
    size_t instance_spec_size;

    /* How it runs. */
    const char *virt_type; /* "kvm" or "qemu" (TCG) */
    /* "host-model", "host-passthrough" (kvm only), "custom" (then cpu_model names the CPU
     * model, e.g. "Haswell-noTSX") or "none" (no <cpu> element: QEMU's default). */
    const char *cpu_mode;
    const char *cpu_model; /* custom only; [A-Za-z0-9._+-] */
    const char *machine;   /* NULL: "pc" */
    bool ksm;              /* false: the guest's memory is never merged (nosharepages) */
    uint32_t uid, gid;     /* the guest's QEMU runs as +uid:+gid; 0 (root) is refused */

    /* Where its files are: absolute, normalized paths (no "." or ".." components). */
    const char *disk_path;         /* the instance's qcow2 overlay */
    const char *backing_path;      /* the cached base image the overlay is backed by */
    const char *backing_format;    /* "qcow2" or "raw" */
    const char *config_drive_path; /* raw config drive, or NULL for none */
    const char *console_log_path;  /* serial console output, written by virtlogd */

    const struct hv_nic_spec *nics; /* at most 16 */
    size_t n_nics;

    struct hv_limits limits;
};

/* Makes libxml2 ready for use from several threads.  Call once, from the main thread,
 * before any worker uses this module. */
void hv_domain_xml_init(void);

/* Builds the domain XML of spec into *xml_out (UTF-8, indented, no XML declaration; the
 * caller frees it).  Refuses a bad spec with INVALID_ARGUMENT naming the field. */
int hv_domain_xml_build(const struct hv_domain_spec *spec, char **xml_out, struct na_error **err);

/* A disk found in a domain's XML.  Any member may be NULL when the XML lacks it. */
struct hv_domain_disk {
    char *device;         /* "disk", "cdrom", ... */
    char *target;         /* "vda", "hdc", ... */
    char *source;         /* source file (or block device) */
    char *format;         /* driver type: "qcow2", "raw", ... */
    char *backing_source; /* first backing store's source, if the XML names one */
    char *backing_format;
};

/* A NIC found in a domain's XML.  Any member may be NULL when the XML lacks it. */
struct hv_domain_nic {
    char *interfaceid; /* virtualport parameters interfaceid: our port id */
    char *mac;
    char *bridge;
    char *target; /* tap device name */
};

/* What a domain's XML says.  Strings are owned by the struct; hv_domain_meta_clear() frees
 * them. */
struct hv_domain_meta {
    char *domain_name; /* libvirt's <name> and <uuid>: set for every domain */
    char *domain_uuid;

    bool is_ours; /* carries our metadata element; the fields below are set only then */
    char *uuid;
    char *name;
    char *tenant_id;
    char *flavor_name;
    uint32_t vcpus;
    uint64_t memory_mib;
    uint64_t root_disk_gib;
    char *image_id;
    char *image_sha256;
    int64_t created_ms;
    char *node_id;  /* <na:owner>'s; NULL when the domain has no owner (older agents) */
    char *store_id; /* <na:owner>'s; NULL with node_id */
    /* <na:spec>'s bytes (base64-decoded, at most HV_INSTANCE_SPEC_MAX_SIZE, otherwise
     * unchecked: decode and validate them before use); NULL when the domain has none. */
    uint8_t *instance_spec;
    size_t instance_spec_size;

    /* Found in the XML, ours or not. */
    int64_t dac_uid; /* the static DAC <seclabel>'s "+UID:+GID" label, -1 when none */
    int64_t dac_gid;
    /* In document order. */
    struct hv_domain_disk *disks;
    size_t n_disks;
    struct hv_domain_nic *nics;
    size_t n_nics;
};

/* Parses domain_xml into *out (which it first zeroes).  Fails with HYPERVISOR when the XML
 * is not a well-formed <domain> without DTD, or when our metadata element is present but
 * incomplete or malformed (a domain we cannot vouch for is never silently taken as ours or
 * as foreign).  On failure *out holds nothing to free. */
int hv_domain_meta_parse(const char *domain_xml, struct hv_domain_meta *out, struct na_error **err);
/* Frees what *meta holds and zeroes it; accepts NULL. */
void hv_domain_meta_clear(struct hv_domain_meta *meta);

/* The <na:instance> element of domain_xml (which must carry our metadata) with its owner
 * set to node_id and store_id, serialized into *instance_xml (the caller frees it) as
 * virDomainSetMetadata() takes it: without namespace (libvirt puts the element and its
 * children into HV_METADATA_NS under the prefix it is given).  HYPERVISOR when domain_xml is not
 * ours or is malformed, INVALID_ARGUMENT for a bad node_id or store_id. */
int hv_domain_meta_with_owner(const char *domain_xml, const char *node_id, const char *store_id,
                              char **instance_xml, struct na_error **err);

/* --- Connection and events ------------------------------------------------------------ */

enum hv_power {
    HV_POWER_NONE = 0, /* no such domain */
    HV_POWER_RUNNING,
    HV_POWER_PAUSED,
    HV_POWER_SHUTOFF,
    HV_POWER_SUSPENDED, /* shut off with a managed-save image: resumes where it was */
    HV_POWER_CRASHED,
    HV_POWER_OTHER, /* blocked, shutting down, ...: transient */
};

const char *hv_power_name(enum hv_power power);

enum hv_event_kind {
    HV_EVENT_STARTED,
    HV_EVENT_STOPPED, /* detail says why; by_guest when the guest powered itself off */
    HV_EVENT_CRASHED,
    HV_EVENT_PAUSED,
    HV_EVENT_RESUMED,
    HV_EVENT_REBOOTED,
    HV_EVENT_SAVED, /* managed save finished */
    HV_EVENT_UNDEFINED,
};

const char *hv_event_kind_name(enum hv_event_kind kind);

struct hv_event {
    char uuid[37];
    enum hv_event_kind kind;
    bool by_guest;
    int detail; /* libvirt's detail code, for logs */
};

struct hv_callbacks {
    void *ctx;
    void (*on_event)(void *ctx, const struct hv_event *ev);
    void (*on_connection)(void *ctx, bool up, const char *detail);
};

struct hv_conn;

/* Starts the event thread, which connects to uri and reconnects for ever.  Returns at once:
 * a libvirtd that is down at start is not an error (hv_connected() tells). */
int hv_open(const char *uri, const struct hv_callbacks *cb, struct hv_conn **out,
            struct na_error **err);
void hv_close(struct hv_conn *conn);
bool hv_connected(struct hv_conn *conn);

/* --- Domain lifecycle (blocking; worker threads) --------------------------------------- */

/* Every call takes the instance uuid.  A missing domain is -ENOENT with NA_CODE_NOT_FOUND,
 * except where said; other failures are NA_CODE_HYPERVISOR with libvirt's message. */

/* Defines (or redefines) the persistent domain from xml. */
int hv_domain_define(struct hv_conn *conn, const char *xml, struct na_error **err);
/* Starts a defined domain (restoring its managed-save image if it has one); 0 once it
 * runs.  A domain found active but paused by a start that was cut short (an agent crash
 * while libvirt started it) is waited for while libvirt still starts it (bounded), then
 * resumed; an error says why it does not run. */
int hv_domain_start(struct hv_conn *conn, const char *uuid, struct na_error **err);
/* The domain's power state; HV_POWER_NONE (and 0) when it does not exist. */
int hv_domain_power(struct hv_conn *conn, const char *uuid, enum hv_power *out,
                    struct na_error **err);
/* ACPI power-off, then forced off after timeout_s; 0 if already off. */
int hv_domain_shutdown(struct hv_conn *conn, const char *uuid, unsigned timeout_s,
                       struct na_error **err);
/* Forced off at once; 0 if already off. */
int hv_domain_destroy(struct hv_conn *conn, const char *uuid, struct na_error **err);
/* hard: reset; else an ACPI reboot request. */
int hv_domain_reboot(struct hv_conn *conn, const char *uuid, bool hard, struct na_error **err);
int hv_domain_pause(struct hv_conn *conn, const char *uuid, struct na_error **err);
int hv_domain_resume(struct hv_conn *conn, const char *uuid, struct na_error **err);
/* Managed save: memory to disk, domain off; hv_domain_start() restores it. */
int hv_domain_managed_save(struct hv_conn *conn, const char *uuid, struct na_error **err);
/* Forced off and undefined with its managed save, snapshots, checkpoints and nvram;
 * 0 when there is no such domain. */
int hv_domain_undefine(struct hv_conn *conn, const char *uuid, struct na_error **err);
/* disk_copy.c: copies the running domain's root disk into target_path, an overlay the caller
 * made on the same base (only the top layer is copied), and ends the job without pivot once
 * the copy caught up: target_path then holds the disk as it was at that moment, and the guest
 * runs on, unaware.  Polls the job in the calling worker; TIMEOUT after timeout_s.  libvirt
 * relabels target_path for the guest's QEMU: give it its owner afterwards. */
int hv_domain_disk_copy(struct hv_conn *conn, const char *uuid, const char *target_path,
                        unsigned timeout_s, struct na_error **err);
/* Rewrites the owner in the domain's metadata (hv_domain_meta_with_owner()) in its
 * persistent definition, and in the running domain too when it runs: the guest is not
 * restarted. */
int hv_domain_set_owner(struct hv_conn *conn, const char *uuid, const char *node_id,
                        const char *store_id, struct na_error **err);
/* The domain's current XML (inactive definition when inactive=true). */
int hv_domain_get_xml(struct hv_conn *conn, const char *uuid, bool inactive, char **xml,
                      struct na_error **err);
struct hv_domain_entry {
    char uuid[37];
    enum hv_power power;
    char *xml; /* the current definition */
};

/* Every domain of the host (ours and others: callers tell by the metadata). */
int hv_domain_list(struct hv_conn *conn, struct hv_domain_entry **out, size_t *n,
                   struct na_error **err);
void hv_domain_list_free(struct hv_domain_entry *list, size_t n);

/* --- Live migration (blocking; worker threads; hypervisor/migrate.c) -------------------- *
 *
 * The source migrates peer to peer (its libvirtd talks to the destination's), live, with
 * the root disk's top layer copied into the fresh overlay the destination made
 * (NON_SHARED_INC), the domain defined there and undefined here, and left PAUSED on the
 * destination: the destination agent resumes it once the source's job is over (the commit
 * point; DESIGN.md section 9).
 */

struct hv_migrate_params {
    const char *libvirt_uri;  /* the destination's libvirtd, as this host's libvirtd reaches it */
    const char *migrate_uri;  /* the migration stream's address on the destination */
    const char *disks_uri;    /* the disk copy's (NBD) address there; NULL: libvirt's choice */
    const char *dest_xml;     /* the domain as the destination defines it */
    const char *disk_target;  /* the disk copied: "vda" */
    uint64_t bandwidth_mib_s; /* 0: unlimited */
    uint64_t max_downtime_ms; /* 0: libvirt's default */
    bool auto_converge;
};

struct hv_migrate_progress {
    bool active;
    unsigned long long memory_processed, memory_remaining, dirty_rate, iteration;
    unsigned long long disk_processed, disk_remaining, data_total, data_processed;
};

/* How many snapshots the domain has (a domain with snapshots cannot be migrated). */
int hv_migrate_snapshot_count(struct hv_conn *conn, const char *uuid, int *count,
                              struct na_error **err);
/* The <cpu> element of the domain's migratable XML, "" when it has none; *cpu_xml freed by
 * the caller. */
int hv_migrate_cpu_xml(struct hv_conn *conn, const char *uuid, char **cpu_xml,
                       struct na_error **err);
/* 0 when this host can run a guest with cpu_xml under virt_type
 * (virConnectCompareHypervisorCPU); HYPERVISOR saying so otherwise.  "" passes. */
int hv_migrate_cpu_compare(struct hv_conn *conn, const char *virt_type, const char *cpu_xml,
                           struct na_error **err);
/* virDomainMigrateToURI3; returns when the migration completed (the domain is gone here)
 * or failed (it still runs here).  An abort makes it fail. */
int hv_migrate_perform(struct hv_conn *conn, const char *uuid, const struct hv_migrate_params *mp,
                       struct na_error **err);
/* The domain's job statistics now. */
int hv_migrate_progress(struct hv_conn *conn, const char *uuid, struct hv_migrate_progress *out,
                        struct na_error **err);
/* virDomainAbortJob: the migration in progress fails. */
int hv_migrate_abort(struct hv_conn *conn, const char *uuid, struct na_error **err);
/* After a restart of the agent: a job libvirt still runs for the domain (a migration the
 * agent started before it died) is aborted and waited for (bounded), so that what the
 * domain is afterwards (gone: migrated; here: not) is final.  0 when there is no job or no
 * domain. */
int hv_migrate_settle(struct hv_conn *conn, const char *uuid, struct na_error **err);

/* --- Guest statistics (blocking; worker threads) ----------------------------------------- *
 *
 * hv_stats_collect() reads the figures of every running domain named "na-<uuid>" with one
 * bulk call (virConnectGetAllDomainStats: CPU, balloon, vCPUs, NICs and disks), without
 * waiting for a domain whose job lock is held (a migration, a snapshot): such a domain's
 * figures that need the lock are just absent this time.  Figures libvirt did not report
 * are HV_STAT_NONE; byte counts are bytes, times nanoseconds.
 */

#define HV_STAT_NONE (-1)
#define HV_STATS_MAX_VCPUS 1024
#define HV_STATS_MAX_DISKS 64
#define HV_STATS_MAX_NICS 64

struct hv_disk_stats {
    char name[32]; /* target: "vda" */
    int64_t rd_bytes, rd_reqs, rd_time_ns;
    int64_t wr_bytes, wr_reqs, wr_time_ns;
};

struct hv_nic_stats {
    char name[32]; /* host side: the tap's name */
    int64_t rx_bytes, rx_pkts, rx_errs, rx_drop;
    int64_t tx_bytes, tx_pkts, tx_errs, tx_drop;
};

struct hv_guest_stats {
    char uuid[37]; /* the instance's: the domain name without "na-" */
    int64_t cpu_time_ns, cpu_user_ns, cpu_system_ns; /* the QEMU process */
    /* Balloon, in bytes: what the guest has (actual), what its balloon driver says is unused
     * and available (absent without a driver in the guest), and the QEMU process's RSS. */
    int64_t memory_actual, memory_unused, memory_available, memory_rss;
    int64_t *vcpu_time_ns; /* per vCPU, n_vcpus of them */
    size_t n_vcpus;
    struct hv_disk_stats *disks;
    size_t n_disks;
    struct hv_nic_stats *nics;
    size_t n_nics;
};

/* A hold on libvirt's connection for one collection: taken without blocking (on the loop),
 * used in a worker, and still safe to use and release after hv_close(), so that a collection
 * in flight at shutdown is harmless.  NULL with UNAVAILABLE while libvirt is not connected. */
struct hv_stats_hold;
struct hv_stats_hold *hv_stats_hold(struct hv_conn *conn, struct na_error **err);
/* Accepts NULL. */
void hv_stats_release(struct hv_stats_hold *hold);

/* Every running domain of ours: *out (n of them, in libvirt's order), freed with
 * hv_stats_free(). */
int hv_stats_collect(struct hv_stats_hold *hold, struct hv_guest_stats **out, size_t *n,
                     struct na_error **err);
/* Frees what one record holds and zeroes it; accepts NULL. */
void hv_guest_stats_clear(struct hv_guest_stats *s);
void hv_stats_free(struct hv_guest_stats *list, size_t n);

#endif
