/* hypervisor: everything that talks to libvirt.
 *
 * Inputs are plain structs and instance uuids; outputs are plain results and events.  The
 * module knows nothing of the bus or the state store.
 *
 * Threading: hv_open() starts one thread that runs libvirt's event loop, keeps the
 * connection (keepalive; reconnect with backoff when libvirtd goes away) and reports
 * lifecycle events and connection changes through the callbacks, from that thread: the
 * agent posts them to its loop.  Every hv_domain_* call blocks and is meant for worker
 * threads; they share the connection (libvirt's connections are thread-safe).
 */
#ifndef NODEAGENT_HYPERVISOR_H
#define NODEAGENT_HYPERVISOR_H

#include "common/common.h"

#include <sys/types.h>

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
/* Starts a defined domain (restoring its managed-save image if it has one); 0 if running. */
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

#endif
