/* Capacity: what this node offers, what its instances hold, and who is told.
 *
 * Claims are not kept anywhere of their own: an instance's claim is its flavor (the larger
 * of two flavors while a resize runs), and the node's usage is the sum over the instance
 * table.  The table is in the state store, so claims survive a crash exactly as instances
 * do: an instance recorded is claimed, an instance removed is released, and nothing can
 * leak or count twice.  A create is recorded when its turn comes on its instance (at once
 * for a new instance), after agent_capacity_admit() said it fits.
 *
 * Reports: on every change of usage (at most one a second) and every
 * [capacity] report_interval, a CapacityReport goes to <prefix>.capacity and, when
 * [placement] endpoint is set, a worker makes Placement hold the node's provider,
 * inventories, traits and (with manage_allocations) the instances' allocations.  A failed
 * Placement sync is retried with backoff (1 s doubling to 60 s); nothing else waits on it.
 */
#ifndef NODEAGENT_AGENT_CAPACITY_H
#define NODEAGENT_AGENT_CAPACITY_H

#include "agent/observed/instances.h"
#include "common/common.h"
#include "scheduler-client/scheduler.h"

#include <jansson.h>

struct agent;

/* --- pure arithmetic (unit-tested) ------------------------------------------------------ */

/* What Placement lets allocations of r add up to: (total - reserved) x allocation_ratio,
 * rounded down. */
uint64_t agent_capacity_limit(const struct sched_resource *r);

/* 0 when need fits next to used in inv, the way Placement decides (the sum within the
 * limit, each amount within max_unit); else NO_CAPACITY with a message that starts with
 * what (e.g. "instance X does not fit on node n1") and says what is needed and free. */
int agent_capacity_fit(const struct sched_inventory *inv, const struct agent_claim *used,
                       const struct agent_claim *need, const char *what, struct na_error **err);

/* --- the agent's side (on the loop) ------------------------------------------------------ */

/* Reads the inventory and traits (a bad reserved amount fails the start), loads or makes
 * the provider uuid, turns KSM on when configured, and sends the first report. */
int agent_capacity_open(struct agent *a, struct na_error **err);
void agent_capacity_close(struct agent *a);

/* The sum of the claims of every instance but except_uuid (may be NULL). */
void agent_capacity_usage(const struct agent *a, const char *except_uuid, struct agent_claim *out);

/* Whether instance uuid may hold need (its whole claim after the operation) next to the
 * others; NO_CAPACITY otherwise. */
int agent_capacity_admit(struct agent *a, const char *uuid, const struct agent_claim *need,
                         struct na_error **err);

/* The instance table may have changed: report within a second if usage did. */
void agent_capacity_changed(struct agent *a);
/* The bus came back: send the report it missed. */
void agent_capacity_bus_up(struct agent *a);

/* Fills g's capacity, used and placement_in_sync. */
struct agent_gauges;
void agent_capacity_gauges(struct agent *a, struct agent_gauges *g);

/* The agent's view for GET /v1/capacity: the report, plus "placement" {"endpoint",
 * "provider_uuid","ok","error","synced_ms"} and per class "capacity" and "free". */
json_t *agent_capacity_view(struct agent *a);

#endif
