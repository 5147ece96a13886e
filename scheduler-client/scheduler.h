/* scheduler-client: what this node offers, said the way OpenStack Placement hears it.
 *
 * Three jobs.  The inventory (sched_inventory_read) turns the host's CPUs, memory and the
 * instances filesystem into Placement's resource classes VCPU, MEMORY_MB and DISK_GB, each
 * with the reserved amount and allocation ratio from the config.  The traits
 * (sched_cpu_traits, sched_compute_traits) name the CPU features and the node's
 * capabilities as os-traits spells them (HW_CPU_X86_*, COMPUTE_*), plus the operator's
 * CUSTOM_* traits.  The Placement client (sched_placement_*) makes Placement hold what
 * should be: the node's resource provider, its inventories, its traits, and the
 * allocations of its instances; it reads the provider's state, sends the difference, and
 * retries generation conflicts (another writer changed the provider in between).
 *
 * Inputs and outputs are plain structs and strings; nothing here knows the bus, the state
 * store or the agent's loop.  Every call is blocking and uses only its arguments (no global
 * mutable state, one curl handle per call), so any number of worker threads may call into
 * it at once; the agent calls it from its worker pool, never from the loop.  HTTP calls
 * end within a bounded time: each request is limited by timeout_ms, and a conflict is
 * retried at most SCHED_PLACEMENT_MAX_TRIES times.
 *
 * Errors follow common.h.  Placement failures say the method, the URL path, the HTTP
 * status and Placement's own title, detail and code; the code is NA_CODE_UNAVAILABLE when
 * Placement cannot be reached, times out, answers 5xx or answers something that is not
 * its API (an HTML page, cut-off JSON), NA_CODE_INTERNAL for a 4xx that our request
 * caused, NA_CODE_CONFLICT for a provider name held by another uuid or conflicts that
 * outlast the retries, and NA_CODE_NO_CAPACITY when an allocation does not fit.
 */
#ifndef NODEAGENT_SCHEDULER_H
#define NODEAGENT_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* --- inventory ------------------------------------------------------------------------- */

/* Resource classes reported, in this order. */
#define SCHED_RC_VCPU "VCPU"
#define SCHED_RC_MEMORY_MB "MEMORY_MB"
#define SCHED_RC_DISK_GB "DISK_GB"
#define SCHED_N_RESOURCES 3

/* One Placement inventory record. */
struct sched_resource {
    const char *resource_class; /* a static string: SCHED_RC_* */
    uint64_t total;
    uint64_t reserved;
    uint64_t min_unit;
    uint64_t max_unit;
    uint64_t step_size;
    double allocation_ratio;
};

struct sched_class_config {
    uint64_t reserved;
    double allocation_ratio; /* > 0; 0 means 1.0 */
};

struct sched_host_config {
    /* Prefix of /proc and /sys ("" or NULL on a real host; a fake tree in tests). */
    const char *root;
    /* The instances filesystem: DISK_GB is its size (statvfs), not prefixed by root. */
    const char *disk_path;
    struct sched_class_config vcpu;
    struct sched_class_config memory_mb;
    struct sched_class_config disk_gb;
};

struct sched_inventory {
    /* A class whose total is 0 (a filesystem under 1 GiB) is left out: Placement wants
     * total >= 1. */
    struct sched_resource resources[SCHED_N_RESOURCES];
    size_t n_resources;
};

/* VCPU: the online CPUs (root/sys/devices/system/cpu/online; sysconf when root is empty
 * and the file cannot be read).  MEMORY_MB: MemTotal of root/proc/meminfo in MiB.
 * DISK_GB: total size of disk_path in GiB, rounded down.  max_unit = total, min_unit =
 * step_size = 1.  A reserved amount above the total, or a negative or non-finite ratio, is
 * INVALID_ARGUMENT naming the field ("vcpu.reserved"). */
int sched_inventory_read(const struct sched_host_config *cfg, struct sched_inventory *out,
                         struct na_error **err);

/* The record of a class, or NULL. */
const struct sched_resource *sched_inventory_find(const struct sched_inventory *inv,
                                                  const char *resource_class);

/* --- traits ---------------------------------------------------------------------------- */

/* HW_CPU_X86_* traits of the first processor's flags in a /proc/cpuinfo file, sorted and
 * without duplicates.  *out is a NULL-terminated array of n strings; free it with
 * sched_traits_free().  A file without a flags line gives no traits, not an error. */
int sched_cpu_traits(const char *cpuinfo_path, char ***out, size_t *n, struct na_error **err);

/* What the node can do, in the words of its own configuration.  Each list entry must be
 * one of the values named below (lowercase, as libvirt and Glance spell them); anything
 * else is INVALID_ARGUMENT naming the entry, because a trait that does not exist in
 * os-traits would be refused by Placement anyway. */
struct sched_compute_caps {
    const char *arch; /* "x86_64", "aarch64", "ppc64le", "s390x", "mipsel", "riscv64"; NULL: none */
    const char *const *image_types; /* aki ami ari iso qcow2 raw vdi vhd vhdx vmdk ploop */
    size_t n_image_types;
    const char *const *vif_models; /* virtio e1000 e1000e rtl8139 pcnet ne2k_pci vmxnet3 ... */
    size_t n_vif_models;
    const char *const *graphics_models; /* none vga cirrus qxl virtio bochs vmvga xen gop */
    size_t n_graphics_models;
    const char *const *storage_buses; /* virtio scsi sata ide usb fdc */
    size_t n_storage_buses;
    const char *const *firmwares; /* bios uefi */
    size_t n_firmwares;
    /* The operator's CUSTOM_* traits: ^CUSTOM_[A-Z0-9_]+$, at most 255 characters. */
    const char *const *custom_traits;
    size_t n_custom_traits;
};

/* COMPUTE_NODE, the COMPUTE_* traits of caps, and caps' custom traits, sorted and without
 * duplicates; freed with sched_traits_free(). */
int sched_compute_traits(const struct sched_compute_caps *caps, char ***out, size_t *n,
                         struct na_error **err);

/* ^CUSTOM_[A-Z0-9_]+$ and at most 255 characters. */
bool sched_custom_trait_is_valid(const char *name);

/* Frees a NULL-terminated trait array; accepts NULL. */
void sched_traits_free(char **traits);

/* --- Placement client ------------------------------------------------------------------ */

/* The microversion every request asks for: 1.38 made consumer_type (INSTANCE, MIGRATION)
 * part of an allocation, which is how claims of migrations in flight are told apart. */
#define SCHED_PLACEMENT_MICROVERSION "1.39"
/* Attempts of one call when Placement answers a generation conflict. */
#define SCHED_PLACEMENT_MAX_TRIES 5

struct sched_placement_config {
    const char *endpoint; /* "http://127.0.0.1:8778" (a trailing slash is fine) */
    const char *token;    /* X-Auth-Token ("admin" for noauth2); NULL: none sent */
    unsigned timeout_ms;  /* per HTTP request, connect included; 0: 10 s */
};

/* Makes sure the provider rp_uuid exists and is called name: creates it (404), or renames
 * it when its name differs.  *generation (may be NULL) gets its generation.  A name held
 * by another provider is NA_CODE_CONFLICT. */
int sched_placement_ensure_provider(const struct sched_placement_config *p, const char *rp_uuid,
                                    const char *name, uint64_t *generation, struct na_error **err);

/* Makes the provider's inventories exactly inv (classes not in inv are removed).  Nothing
 * is written when Placement already holds inv. */
int sched_placement_set_inventories(const struct sched_placement_config *p, const char *rp_uuid,
                                    const struct sched_inventory *inv, struct na_error **err);

/* Creates the CUSTOM_* traits among traits (PUT /traits/{name}), then makes the provider's
 * traits exactly traits.  Nothing is written when they already match. */
int sched_placement_set_traits(const struct sched_placement_config *p, const char *rp_uuid,
                               const char *const *traits, size_t n, struct na_error **err);

/* Makes rp_uuid's part of consumer_uuid's allocations exactly these amounts (a zero
 * amount is left out); its parts on other providers, and an existing consumer's project,
 * user and type, stay as they are.  A new consumer is of type INSTANCE, with project_id
 * and user_id.  NA_CODE_NO_CAPACITY when they do not fit. */
int sched_placement_put_allocation(const struct sched_placement_config *p,
                                   const char *consumer_uuid, const char *rp_uuid,
                                   const char *project_id, const char *user_id, uint64_t vcpus,
                                   uint64_t memory_mb, uint64_t disk_gb, struct na_error **err);

/* Removes rp_uuid's part of consumer_uuid's allocations and nothing else: its parts on
 * other providers, project and user stay; the consumer goes when that part was its only
 * one.  A consumer without a part on rp_uuid (or unknown to Placement) is success. */
int sched_placement_remove_allocation(const struct sched_placement_config *p,
                                      const char *consumer_uuid, const char *rp_uuid,
                                      struct na_error **err);

/* One consumer's allocation against a provider. */
struct sched_allocation {
    char consumer_uuid[37];
    uint64_t vcpus;
    uint64_t memory_mb;
    uint64_t disk_gb;
};

/* Every allocation held against rp_uuid (consumers that are not uuids are skipped), in a
 * new array the caller frees. */
int sched_placement_provider_allocations(const struct sched_placement_config *p,
                                         const char *rp_uuid, struct sched_allocation **out,
                                         size_t *n, struct na_error **err);

#endif
