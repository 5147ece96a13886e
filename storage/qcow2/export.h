/* Snapshot to image: an instance's disk, as it is or at one of its internal snapshots,
 * flattened with its base into a standalone compressed qcow2, validated by our own
 * validator and hashed; then uploaded by HTTP PUT to a URL the control plane gives, and/or
 * published into the image cache under its sha256.
 *
 * The overlay is the guest's to write, header included: it is validated first, read by
 * qemu-img through the descriptor the caller opened (never a path), and its backing chain is
 * the base the caller names, never the one its header names.  qemu-img runs with an argv
 * array.  Everything here blocks: for worker threads. */
#ifndef NODEAGENT_QCOW2_EXPORT_H
#define NODEAGENT_QCOW2_EXPORT_H

#include "storage/qcow2/qcow2.h"

struct qcow2_export_source {
    int overlay_fd;          /* the instance's qcow2 overlay, opened by the caller */
    const char *base_path;   /* the cached base image the overlay backs on */
    const char *base_format; /* "qcow2" or "raw" */
    /* An internal snapshot's name ([A-Za-z0-9._-], 1..63), or NULL: the disk as it is, which
     * is only consistent while no guest runs on it. */
    const char *snapshot;
    /* The guest runs: open the overlay although QEMU holds its lock (qemu-img -U).  Only
     * with a snapshot, whose clusters the running guest cannot change. */
    bool guest_running;
};

struct qcow2_export {
    char sha256[65];
    uint64_t size;         /* bytes of the file */
    uint64_t virtual_size; /* bytes the disk has */
};

/* Writes the flattened image into the directory dirfd as `name` (a temp name first;
 * fsynced, given owner, renamed; an existing `name` is replaced), validates it with limits
 * (no backing file, whatever limits say) and hashes it.  Errors: INVALID_ARGUMENT (field
 * "snapshot_name") for a name qemu-img could misread, IMAGE for an overlay the validator
 * refuses or a result it refuses, STORAGE for qemu-img's failure (its first line of
 * stderr in the message) and for local I/O. */
int qcow2_export_flatten(const struct qcow2_export_source *src, int dirfd, const char *name,
                         const struct qcow2_file_owner *owner, const struct qcow2_limits *limits,
                         struct qcow2_export *out, struct na_error **err);

/* Writes into dirfd as `name` (temp name, fsynced, given owner, renamed; replacing) a qcow2
 * overlay on the source's base (src->base_path, stored as given) holding what the source's
 * disk has over its base, as it is or at src->snapshot: a clone's disk.  Its virtual size is
 * the source's.  Validated with limits (the backing file must be the base), not hashed
 * (out->sha256 empty).  Errors as qcow2_export_flatten(). */
int qcow2_export_copy_delta(const struct qcow2_export_source *src, int dirfd, const char *name,
                            const struct qcow2_file_owner *owner, const struct qcow2_limits *limits,
                            struct qcow2_export *out, struct na_error **err);

/* Uploads the file open on fd (read from offset 0 with pread) by HTTP PUT to url (http or
 * https), with cfg's connect timeout, stall timeout and min_rate, retries and backoff, TLS
 * settings and allowed_networks (the same address check as a download's; nothing is sent
 * to a refused address).  No redirects are followed.  2xx is success; 5xx, 408, 429 and
 * connection failures are retried from the start; other answers fail at once.  progress
 * (may be NULL) is called from this thread after each attempt's bytes sent grow by a tenth,
 * with bytes sent and total.  Errors (IMAGE, naming the URL without its userinfo, query
 * and fragment, and the HTTP status): never the URL's secrets. */
int qcow2_export_upload(const struct qcow2_image_cache_config *cfg, int fd, const char *url,
                        void (*progress)(void *ctx, uint64_t sent, uint64_t total), void *ctx,
                        struct na_error **err);

#endif
