/* hypervisor/snapshot: internal snapshots of a domain (DESIGN.md section 10).
 *
 * A snapshot is an internal qcow2 snapshot in the instance's overlay, with the guest's memory
 * state when the domain is active (libvirt's virDomainSnapshotCreateXML without flags: the
 * only kind libvirt 9.0 reverts with memory) and of the disk alone when it is shut off.  The
 * config drive, a read-only cdrom, is skipped by libvirt.  UEFI guests and writable raw disks
 * cannot have internal snapshots: hv_snapshot_supported() says so before libvirt is asked.
 *
 * Every call is idempotent, because a job interrupted by a crash takes its step again:
 * creating a snapshot that exists, or deleting one that does not, succeeds.
 *
 * Threading: any worker thread; every call blocks (libvirt pauses the guest while its
 * memory is saved).
 */
#ifndef NODEAGENT_HYPERVISOR_SNAPSHOT_H
#define NODEAGENT_HYPERVISOR_SNAPSHOT_H

#include "hypervisor/hypervisor.h"

/* A snapshot as libvirt's metadata has it.  Strings owned by the struct. */
struct hv_snapshot {
    char *name;
    char *parent;      /* "" for a snapshot made when there was no current one */
    char *description; /* "" when none */
    int64_t created_s; /* <creationTime>, seconds since the epoch */
    char *state;       /* the domain's state it keeps: "running", "paused", "shutoff" */
    bool memory;       /* it holds the guest's memory state (reverts to a running guest) */
    bool current;      /* the one the domain was last created from or reverted to */
    /* Not libvirt's: bytes of VM state the overlay's snapshot table says it keeps, filled by
     * a caller that read the table (storage/qcow2); 0 until then and for a disk-only one. */
    uint64_t size_bytes;
};

void hv_snapshots_free(struct hv_snapshot *snaps, size_t n);

/* 0 when the domain's disks can have internal snapshots; UNSUPPORTED (-ENOTSUP) naming why
 * for a UEFI guest (a <loader> or <nvram>) or a writable raw disk. */
int hv_snapshot_supported(struct hv_conn *conn, const char *uuid, struct na_error **err);
/* Makes snapshot name of the domain (description may be ""); 0 as well when it exists
 * already (an earlier attempt made it). */
int hv_snapshot_create(struct hv_conn *conn, const char *uuid, const char *name,
                       const char *description, struct na_error **err);
/* Reverts the domain to snapshot name: running (resumed at the snapshot's moment), paused or
 * shut off as it was then.  NOT_FOUND (-ENOENT) when there is no such snapshot. */
int hv_snapshot_revert(struct hv_conn *conn, const char *uuid, const char *name,
                       struct na_error **err);
/* Deletes snapshot name, with children every snapshot made from it too; 0 when there is no
 * such snapshot (any more). */
int hv_snapshot_delete(struct hv_conn *conn, const char *uuid, const char *name, bool children,
                       struct na_error **err);
/* Every snapshot of the domain, in no particular order; the caller frees *out with
 * hv_snapshots_free().  NOT_FOUND (-ENOENT) when there is no such domain. */
int hv_snapshot_list(struct hv_conn *conn, const char *uuid, struct hv_snapshot **out, size_t *n,
                     struct na_error **err);
/* Parses a <domainsnapshot> XML document into s (everything but name, parent and current).
 * Pure; for tests. */
int hv_snapshot_parse_xml(const char *xml, struct hv_snapshot *s, struct na_error **err);

#endif
