/* Per-guest statistics: what each running guest uses (CPU, memory, disks, NICs).
 *
 * A worker reads every running domain's figures with libvirt's bulk stats call
 * (hv_stats_collect()) at start and then every [metrics] guest_stats_interval seconds; the
 * result replaces a cache that the loop owns.  /metrics and the admin API's instance view
 * read the cache only: a scrape never calls libvirt.  A collection still running when the
 * next is due is not doubled.  Only instances of the instance table are shown, so a deleted
 * guest disappears at once, and a stopped one with the next collection.
 *
 * agent_guest_metrics_render() (guest_metrics.c) is the exposition itself: a pure function
 * of the samples, unit-tested.
 */
#ifndef NODEAGENT_AGENT_GUEST_STATS_H
#define NODEAGENT_AGENT_GUEST_STATS_H

#include "common/common.h"
#include "hypervisor/hypervisor.h"

#include <jansson.h>

struct agent;
struct agent_guest_stats;

/* Starts the collections (the first at once). */
void agent_guest_stats_open(struct agent *a);
/* Stops them; a collection in flight is dropped when it ends. */
void agent_guest_stats_close(struct agent *a);

/* The Prometheus text of every instance's last figures (the caller frees it). */
char *agent_guest_stats_exposition(struct agent *a);
/* The instance's last figures as JSON (the admin API's instance view), or NULL when the
 * last collection had none for it (not running, or not collected yet). */
json_t *agent_guest_stats_view(struct agent *a, const char *uuid);

/* --- guest_metrics.c: the exposition (pure) ----------------------------------------------- */

struct agent_guest_sample {
    const char *uuid;
    const char *name;   /* the tenant's name for it: any single-line text, escaped here */
    const char *tenant; /* the tenant id, idem */
    const struct hv_guest_stats *stats;
};

/* Every per-guest metric family, each with its HELP and TYPE lines even without samples,
 * and its samples for the guests (figures libvirt did not report are left out).  The
 * caller frees the text. */
char *agent_guest_metrics_render(const struct agent_guest_sample *samples, size_t n);

#endif
