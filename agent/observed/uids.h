/* Guest uids: which uid a new instance's QEMU runs as.
 *
 * A uid is handed out only if nothing may still run as it or own a file with it.  A uid
 * given back (a delete, a failed create) goes into quarantine, recorded in the store; it
 * leaves quarantine when a scan that began after the release found no process running as
 * it (Uid: lines of /proc/<pid>/status) and no file of it in the instances directory or
 * the image cache.  A uid whose instance could not be undefined or cleaned up is held:
 * kept out of use until an operator deletes its row (docs/operations.md).  The allocator
 * takes the lowest uid never handed out (and seen on nothing); when none is left, the
 * quarantined uid released longest ago that a scan cleared.
 *
 * Threading: agent_uids and the choice belong to the loop; the scan runs in a worker on a
 * copy of its inputs and posts its result back. */
#ifndef NODEAGENT_AGENT_UIDS_H
#define NODEAGENT_AGENT_UIDS_H

#include "common/common.h"

#include <stdbool.h>
#include <stdint.h>

struct agent;

struct agent_uid_quarantined {
    uint32_t uid;
    int64_t released_ms;
    bool held;          /* its instance could not be cleaned up: never reused automatically */
    uint64_t need_scan; /* only a scan numbered at least this may clear it */
    bool cleared;       /* such a scan saw no process and no file with this uid */
};

/* --- the choice (pure, unit-tested) ----------------------------------------------------- */

struct agent_uid_choice_in {
    uint32_t min, max;      /* [instances] uid_min..uid_max */
    const uint32_t *in_use; /* uids of recorded instances, sorted, unique */
    size_t n_in_use;
    const uint32_t *busy; /* uids of the range the last scan saw, sorted, unique */
    size_t n_busy;
    const struct agent_uid_quarantined *quarantined;
    size_t n_quarantined;
    bool (*host_user)(uint32_t uid, void *ctx); /* the host's own users (getpwuid), or NULL */
    void *ctx;
};

/* 0 and *out; -EAGAIN when the only uids left are in quarantine and not cleared yet (a scan
 * may free them); -ENOSPC when none is left at all. */
int agent_uid_choose(const struct agent_uid_choice_in *in, uint32_t *out);

/* --- the agent's uids (on the loop) ------------------------------------------------------ */

struct agent_uids {
    struct agent_uid_quarantined *quarantined;
    size_t n_quarantined, cap;
    uint32_t *busy; /* what the last scan saw, sorted */
    size_t n_busy;
    uint64_t scans_started;
    bool scanning; /* a scan is in a worker */
    bool rescan;   /* another was asked for meanwhile */
};

/* Loads the quarantine from the store and starts a first scan. */
int agent_uids_open(struct agent *a, struct na_error **err);
void agent_uids_close(struct agent_uids *u);

/* A uid for a new instance, taken out of quarantine (and the store) if it came from there.
 * Refuses with NO_CAPACITY naming the quarantined uids when none is free now, and asks for a
 * scan so that a later create may get one. */
int agent_uids_allocate(struct agent *a, int64_t *out, struct na_error **err);

/* Puts a uid given back into quarantine (held: its instance could not be cleaned up). */
int agent_uids_release(struct agent *a, int64_t uid, bool held, struct na_error **err);

/* Starts a scan unless one runs (then one more follows it). */
void agent_uids_scan(struct agent *a);
/* Whether a quarantined uid waits for a scan to clear it. */
bool agent_uids_waiting(const struct agent_uids *u);

#endif
