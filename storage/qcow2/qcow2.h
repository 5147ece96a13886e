/* qcow2: validate untrusted disk images and write qcow2 overlays, without qemu-img.
 *
 * Images come from users and are hostile input.  qcow2_validate() reads a file claimed to be
 * qcow2 (v2 or v3) and refuses anything QEMU could be tricked by or that is malformed: a
 * backing file or external data file (which would make QEMU open another host file),
 * encryption, unknown incompatible features, absurd sizes, and metadata tables that lie
 * outside the file, are misaligned, overlap the header or each other, or overflow.  It also
 * checks every L1 entry and, within a work budget, the L2 entries.  On success it fills a
 * struct qcow2_info (virtual size, cluster size, snapshots, ...).  A raw image is handed to
 * QEMU as format=raw, so QEMU never probes it, and its size is its virtual size; but it must
 * not carry another format's signature (qcow2, QED, VMDK, VHD, VHDX, VDI, LUKS, Parallels,
 * Bochs), which a later tool that probes could follow.
 *
 * qcow2_overlay_create() writes a qcow2 v3 image backed by a cached base image, naming the
 * backing format explicitly, atomically (temp file, fsync, rename) with mode 0600.
 *
 * Inputs are plain: a file descriptor or path names chosen by the caller, and limits.
 * Outputs are plain structs and struct na_error (code IMAGE for a refused image, STORAGE for
 * I/O failures).  There is no global state: every function may run in any worker thread.
 * Validation reads the file with pread(2) only, so one fd may even be shared.
 */
#ifndef NODEAGENT_QCOW2_H
#define NODEAGENT_QCOW2_H

#include <stdbool.h>
#include <stdint.h>

#include "common/common.h"

enum qcow2_format {
    QCOW2_FORMAT_RAW,
    QCOW2_FORMAT_QCOW2,
};

/* "raw" or "qcow2". */
const char *qcow2_format_name(enum qcow2_format format);
/* Parses "raw" or "qcow2"; anything else is an INVALID_ARGUMENT error on field `field`. */
int qcow2_format_parse(const char *name, const char *field, enum qcow2_format *out,
                       struct na_error **err);

struct qcow2_limits {
    uint64_t max_virtual_size; /* bytes; larger images are refused */
    uint32_t max_snapshots;    /* internal snapshots; at most 65536 whatever is set here */
    /* Bytes of L2 tables read to check their entries; past it the scan stops and
     * qcow2_info.l2_scan_complete is false.  The L1 table is always checked in full. */
    uint64_t max_l2_scan_size;
    /* Accept a backing file (our own overlays have one).  It must then name its format
     * ("qcow2" or "raw") in a backing-format extension, so that QEMU never probes it. */
    bool allow_backing;
};

/* max_virtual_size 16 TiB, 65536 snapshots, 64 MiB of L2 scan, no backing file. */
void qcow2_limits_init(struct qcow2_limits *limits);

struct qcow2_info {
    enum qcow2_format format;
    uint32_t version;      /* 2 or 3; 0 for raw */
    uint64_t virtual_size; /* bytes the guest sees */
    uint64_t file_size;    /* bytes on the host */
    uint32_t cluster_size; /* 0 for raw */
    uint32_t n_snapshots;
    bool compressed;       /* a compressed cluster was seen in the scanned L2 tables */
    bool l2_scan_complete; /* every L2 table was scanned (false when the budget ran out) */
    bool dirty;            /* refcounts may be stale (lazy refcounts); QEMU repairs on rw open */
    bool extended_l2;      /* subclusters (incompatible feature bit 4) */
    /* Only with limits->allow_backing; empty strings otherwise. */
    char backing_file[1024];
    char backing_format[16];
};

/* Validates the qcow2 image open on fd (read access suffices).  limits may be NULL for the
 * defaults of qcow2_limits_init().  Returns 0 and fills *out, or a negative errno with *err
 * set: NA_CODE_IMAGE and -EINVAL (malformed), -ENOTSUP (a refused feature) or -EFBIG (over a
 * limit), each message naming the field, its offset and value; NA_CODE_STORAGE on I/O errors.
 * out->virtual_size is what a later resize starts from. */
int qcow2_validate(int fd, const struct qcow2_limits *limits, struct qcow2_info *out,
                   struct na_error **err);

/* Validates a raw image: a non-empty regular file no larger than limits->max_virtual_size
 * whose first and last 512 bytes carry no other format's signature (see above; IMAGE and
 * -EINVAL naming the format).  Its virtual size is its size rounded up to 512 bytes, as QEMU
 * presents it. */
int qcow2_validate_raw(int fd, const struct qcow2_limits *limits, struct qcow2_info *out,
                       struct na_error **err);

/* qcow2_validate() or qcow2_validate_raw() according to format. */
int qcow2_validate_format(int fd, enum qcow2_format format, const struct qcow2_limits *limits,
                          struct qcow2_info *out, struct na_error **err);

/* Who a file of an instance belongs to once it is in place. */
struct qcow2_file_owner {
    uid_t uid;
    gid_t gid;
    mode_t mode;
};

/* Creates the qcow2 v3 overlay `name` in the directory dirfd, on top of `backing_path`
 * (stored as given: pass an absolute path) whose format is backing_format, "qcow2" or
 * "raw".  Cluster size 64 KiB, 16-bit refcounts, lazy refcounts off, every cluster
 * unallocated.  virtual_size is the flavor's disk size: the caller checks that it is not
 * below the base image's virtual size (a smaller overlay would cut the guest's disk).  The
 * file is written under a temp name opened with O_EXCL | O_NOFOLLOW on dirfd, given owner
 * (mode 0600 and the caller's ids when owner is NULL) through its descriptor, and renamed
 * into place: it appears complete or not at all; if `name` exists the call fails with
 * -EEXIST and leaves it alone. */
int qcow2_overlay_create(int dirfd, const char *name, const struct qcow2_file_owner *owner,
                         const char *backing_path, const char *backing_format,
                         uint64_t virtual_size, struct na_error **err);

/* An internal snapshot listed in a qcow2 image's snapshot table. */
struct qcow2_snapshot {
    char *name;             /* owned */
    uint64_t vm_state_size; /* bytes of VM state (guest memory, devices) it keeps; 0: disk only */
    uint32_t date_s;        /* when it was taken, seconds since the epoch */
};

void qcow2_snapshots_free(struct qcow2_snapshot *snaps, size_t n);
/* The snapshot table of the qcow2 image open at fd (read access suffices; QEMU may have it
 * open): every entry, in table order.  Bounded like qcow2_validate() (QEMU's limits on the
 * count, the table's size and each entry's extra data); STORAGE and a negative errno for an
 * unreadable or malformed table.  The caller frees *out with qcow2_snapshots_free(). */
int qcow2_snapshot_table(int fd, struct qcow2_snapshot **out, size_t *n, struct na_error **err);

/* Grows the qcow2 image open at fd to new_size bytes.  qemu-img resize runs with an argv
 * array on the descriptor (/proc/self/fd/N in the child), not on a path, and with the
 * backing chain left closed (the header's backing name is the guest's to write); the
 * caller opens fd with O_NOFOLLOW and checks it.  The image must not be in use; shrinking
 * is the caller's to refuse. */
int qcow2_grow(int fd, uint64_t new_size, struct na_error **err);

/* --- config drive ----------------------------------------------------------------------
 *
 * qcow2_config_drive_build() writes an instance's config drive: an ISO9660 image (Rock
 * Ridge and Joliet names) with volume id "config-2" in the OpenStack layout that cloud-init
 * and the test guest read, openstack/{latest,2018-08-27}/{meta_data.json,
 * network_data.json,vendor_data.json,user_data}.  The input is a plain struct whose strings
 * the caller owns; the output is a file, written atomically, that is byte-identical for
 * equal input (fixed timestamps, modes and owners).  It may run in any worker thread. */

struct qcow2_config_drive_kv {
    const char *key; /* UTF-8, unique, not empty */
    const char *value;
};

struct qcow2_config_drive_nic {
    const char *port_id;    /* the link's vif_id; the link is "tap" + its first 11 chars */
    const char *network_id; /* network_id of its networks; NULL or "" leaves it out */
    const char *mac;        /* "52:54:00:12:34:56"; written in lowercase */
    /* IPv4 "a.b.c.d/prefix" or IPv6 "x::y/prefix": one network entry each, of type "ipv4"
     * or "ipv6" (OpenStack's static types) with ip_address and netmask */
    const char *const *ips;
    size_t n_ips;
    /* IPv4 default gateway, NULL or "" for none.  It becomes a 0.0.0.0/0 route on each of
     * the NIC's IPv4 networks whose subnet holds it, or on its first IPv4 network when none
     * does. */
    const char *gateway;
    /* IPv6 default gateway (link-local allowed), NULL or "" for none: a ::/:: route, placed
     * the same way among the NIC's IPv6 networks. */
    const char *gateway6;
    uint32_t mtu; /* 68..65535, or 0 for unknown (written as null) */
};

struct qcow2_config_drive {
    const char *uuid;               /* canonical lowercase uuid */
    const char *name;               /* not empty */
    const char *hostname;           /* not empty */
    const char *tenant_id;          /* project_id; not empty */
    const char *const *public_keys; /* ssh keys, named key-0, key-1, ... */
    size_t n_public_keys;
    const uint8_t *user_data; /* may be NULL when user_data_size is 0 (no user_data file) */
    size_t user_data_size;
    const struct qcow2_config_drive_kv *metadata; /* meta_data.json "meta" */
    size_t n_metadata;
    const struct qcow2_config_drive_nic *nics;
    size_t n_nics;
    const char *const *dns_servers; /* IPv4 or IPv6 addresses; services of type dns */
    size_t n_dns_servers;
};

/* The dated version directory written beside openstack/latest. */
#define QCOW2_CONFIG_DRIVE_VERSION "2018-08-27"

/* Writes the config drive for `in` as `name` in the directory dirfd, replacing an existing
 * entry atomically (a symlink planted under that name is replaced, never followed): a temp
 * file opened with O_EXCL | O_NOFOLLOW on dirfd is written, given owner through its
 * descriptor (mode 0600 and the caller's ids when owner is NULL), fsync'd and renamed, and
 * the directory fsync'd.  On failure no temp file is left behind (a crash may leave a stray
 * "<name>.XXXXXXXX").  Nonsense input (a missing uuid, a malformed MAC, IP, prefix or
 * gateway, invalid UTF-8, duplicate metadata keys, MACs or link ids) is refused before
 * anything is written, with NA_CODE_INVALID_ARGUMENT and the field path ("nics[1].ips[0]");
 * I/O failures are NA_CODE_STORAGE errors naming the file. */
int qcow2_config_drive_write(const struct qcow2_config_drive *in, int dirfd, const char *name,
                             const struct qcow2_file_owner *owner, struct na_error **err);
/* The same at `path`, for callers that own the whole directory (tools and tests). */
int qcow2_config_drive_build(const struct qcow2_config_drive *in, const char *path,
                             struct na_error **err);

/* --- image sources ---------------------------------------------------------------------
 *
 * An image download may connect only to public addresses and to those the operator allows:
 * loopback, link-local, private (RFC 1918), CGNAT, unique-local, unspecified, multicast,
 * broadcast and reserved addresses, IPv4-mapped IPv6 forms included, are refused unless they
 * fall in one of the allowed networks.  Pure functions: any thread. */

#include <stddef.h>     /* size_t */
#include <sys/socket.h> /* struct sockaddr */

/* A network; IPv4 is kept as IPv4-mapped IPv6 (a.b.c.d/n is ::ffff:a.b.c.d/(96+n)). */
struct qcow2_cidr {
    uint8_t addr[16];    /* host bits are zero */
    unsigned prefix_len; /* 0..128 */
};

/* Parses "a.b.c.d/n" or "x:y::z/n".  Returns 0, or -EINVAL with *why saying what is wrong
 * (no prefix length, not an address, bits set past the prefix). */
int qcow2_cidr_parse(const char *text, struct qcow2_cidr *out, const char **why);

/* Whether a download may connect to sa (AF_INET or AF_INET6; sa_size bytes): true for an
 * address in one of the n_allowed networks or outside every refused range.  When false,
 * *reason names the refused range, e.g. "link-local (169.254.0.0/16)". */
bool qcow2_address_allowed(const struct sockaddr *sa, size_t sa_size,
                           const struct qcow2_cidr *allowed, size_t n_allowed, const char **reason);

/* --- image cache ---------------------------------------------------------------------------
 *
 * Base images live in <dir>/<sha256>, read-only (0440, group `group` when set so that the
 * per-guest QEMU uids can read them), each one verified by sha256 and validated as its
 * declared format before it is published.  qcow2_image_cache_get() returns the path of an
 * image, downloading it first when it is absent:
 *   - http or https URLs through libcurl, no proxy; redirects only to http/https, at most 5;
 *     the address of every connection (after DNS, after each redirect) must pass
 *     qcow2_address_allowed() with allowed_networks, or the download fails at once (IMAGE,
 *     naming the address and why) without a byte sent; connect timeout; an attempt slower
 *     than min_rate over stall_timeout_s fails, and the whole download (retries included)
 *     has a total bound derived from its size and min_rate; at most max_image_size bytes,
 *     and no more than max_total_size leaves room for; TLS verified unless tls_verify is
 *     false;
 *   - transient failures (5xx, 408, 429, timeouts, connection errors, truncated bodies) are
 *     retried `retries` times with exponential backoff, resuming the partial file with a Range
 *     request (a server that answers 200 instead of 206 sends it all again); 4xx, a sha256
 *     mismatch, a refused image or the size limit are not retried;
 *   - bytes are hashed as they arrive into <dir>/.partial/<sha256>.part, which is then fsynced,
 *     checked against the sha256 (deleted when it does not match), validated with `limits`
 *     (backing files, data files, bad tables, absurd sizes are refused), chmod 0440, renamed to
 *     <dir>/<sha256>, and the directory fsynced.  A partial file left by transient failures is
 *     resumed by the next get; partial files older than a day are removed when no download
 *     runs (at open and at evict).
 * A cached image is validated again at each get (header and tables, no rehash) and its mtime
 * set to now: the mtime is its last use, which qcow2_image_cache_evict() reads.
 *
 * Errors: INVALID_ARGUMENT for a malformed sha256, format or URL scheme (anything but http
 * and https); IMAGE for a download that failed or an image that was refused (the message
 * names the URL without its userinfo, query and fragment, the HTTP status, bytes received and
 * expected, the expected sha256 -- never the digest of what was received); STORAGE for local
 * I/O.
 *
 * Threading: get blocks and is meant for worker threads; any number may run at once.  Gets
 * of one sha256 that overlap share one download: the first caller downloads, the others
 * wait for it and then use the published file.  When it failed, a waiter with the same URL
 * fails with a copy of its error; one with another URL tries its own (a slow or wrong
 * source named by one request does not fail the others).  All gets
 * must have returned before close.  The first open in the process calls
 * curl_global_init(CURL_GLOBAL_DEFAULT) exactly once (pthread_once); it is never undone, as
 * curl_global_cleanup() is not thread-safe and other modules use libcurl too. */

#include <sys/types.h> /* gid_t */

struct qcow2_image_cache_config {
    const char *dir;            /* created 0750 (parent must exist) with dir/.partial 0700 */
    uint64_t max_image_size;    /* bytes; a larger download fails */
    unsigned connect_timeout_s; /* 0: libcurl's default */
    unsigned stall_timeout_s;   /* below min_rate for this long fails the attempt; 0: never */
    /* Bytes per second a download must keep up: an attempt slower than this over
     * stall_timeout_s fails (and is retried), and a download with its retries fails for good
     * (IMAGE) once it has run connect_timeout_s + stall_timeout_s + size / min_rate seconds,
     * size being the announced one (max_image_size while none is known).  0: 1 byte/s, and
     * no total bound. */
    uint64_t min_rate;
    /* Bytes that the cached images and partial downloads may take together; a download that
     * would go past it fails (NO_CAPACITY) and its partial file is removed.  0: no quota. */
    uint64_t max_total_size;
    unsigned retries;    /* attempts after the first one, on transient failures */
    unsigned backoff_ms; /* before retry n: backoff_ms * 2^(n-1), at most 60 s */
    bool tls_verify;
    const char *ca_file; /* CA bundle for https; NULL: the system's */
    gid_t group;         /* group of dir and of the images; (gid_t)-1: leave */
    /* Networks a download may connect to although they are not public (copied at open). */
    const struct qcow2_cidr *allowed_networks;
    size_t n_allowed_networks;
    struct qcow2_limits limits; /* for validation; allow_backing is always forced false */
};

/* max_image_size 64 GiB, connect 15 s, stall 60 s, 4 retries from 1 s, TLS verified, no
 * group, no allowed networks, qcow2_limits_init(); dir NULL (the caller sets it). */
void qcow2_image_cache_config_init(struct qcow2_image_cache_config *cfg);

struct qcow2_image_cache;

/* Opens the cache on cfg->dir (copied: cfg need not outlive the cache). */
int qcow2_image_cache_open(const struct qcow2_image_cache_config *cfg,
                           struct qcow2_image_cache **out, struct na_error **err);
/* Accepts NULL.  No get may be running: a download still running aborts the process. */
void qcow2_image_cache_close(struct qcow2_image_cache *cache);

/* Returns in *path_out (caller frees) the path <dir>/<sha256> of the image with this sha256
 * (64 hex digits, any case), downloading it from url when absent, and fills *info_out (may be
 * NULL) from its validation as `format`, "qcow2" or "raw". */
int qcow2_image_cache_get(struct qcow2_image_cache *cache, const char *url, const char *sha256,
                          const char *format, char **path_out, struct qcow2_info *info_out,
                          struct na_error **err);

/* Files made outside the cache may join it (snapshot to image, export.h): made in the staging
 * directory (on the cache's filesystem; a name that is not a sha256 never clashes with a
 * download's), then adopted as the image `sha256`, which the caller computed: validated as
 * qcow2 with the cache's limits, made 0440 and the cache's group, renamed into place (an
 * image already there has these very bytes).  Files left in the staging directory for a day
 * are removed like stale downloads.  settings: the cache's configuration, for transfers
 * that follow the same rules (timeouts, retries, TLS, allowed networks). */
const char *qcow2_image_cache_staging_dir(const struct qcow2_image_cache *cache);
int qcow2_image_cache_adopt(struct qcow2_image_cache *cache, const char *name, const char *sha256,
                            struct na_error **err);
const struct qcow2_image_cache_config *
qcow2_image_cache_settings(const struct qcow2_image_cache *cache);

/* Appends to *names (n_names entries; the caller frees each and the array) the name (sha256)
 * of every cached image that an overlay backs on, reading the overlays themselves:
 * <overlays_dir>/<uuid>/<overlay_names[i]>, opened without following symlinks and
 * validated; an overlay naming anything outside the cache adds nothing.  Headers are read,
 * not trusted: a hostile one can only keep an image longer.  For a worker thread. */
void qcow2_image_cache_backed_names(const struct qcow2_image_cache *cache, const char *overlays_dir,
                                    const char *const *overlay_names, size_t n_overlay_names,
                                    char ***names, size_t *n_names);

/* Removes the cached images that are not among in_use_sha256 (n_in_use entries) and were not
 * used for max_unused_age_s seconds or more; never one being downloaded or published.
 * Returns how many were removed, or a negative errno (STORAGE) when dir cannot be read;
 * failures to remove one image are logged and the others are still tried. */
int qcow2_image_cache_evict(struct qcow2_image_cache *cache, const char *const *in_use_sha256,
                            size_t n_in_use, int64_t max_unused_age_s, struct na_error **err);

#endif
