/* The Placement sync, in a worker: the node's inventory and KSM state read fresh, then its
 * provider, inventories and traits, and (when the agent manages allocations) every wanted
 * consumer's allocation written and every unwanted one of ours removed; consumers the
 * agent did not write are listed, never touched.  Only the job's own copies are used. */
#include "agent/outputs/capacity-private.h"

#include <string.h>

static bool
want_has(const struct sync_job *j, const char *uuid)
{
    for (size_t i = 0; i < j->n_want; i++)
        if (strcmp(j->want[i].uuid, uuid) == 0)
            return true;
    return false;
}

bool
capacity_list_has(char *const *list, size_t n, const char *uuid)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], uuid) == 0)
            return true;
    return false;
}

void
capacity_list_add(char ***list, size_t *n, const char *uuid)
{
    *list = na_xrealloc(*list, (*n + 1) * sizeof(**list));
    (*list)[(*n)++] = na_xstrdup(uuid);
}

void
capacity_list_free(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static const struct sched_allocation *
held_find(const struct sched_allocation *held, size_t n, const char *uuid)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(held[i].consumer_uuid, uuid) == 0)
            return &held[i];
    return NULL;
}

/* Removes this provider's part of the allocations of consumers the agent wrote and no
 * longer wants; a consumer it did not write is left alone (and reported). */
static int
remove_unwanted(struct sync_job *j, const struct sched_allocation *held, size_t n_held,
                struct na_error **err)
{
    for (size_t i = 0; i < n_held; i++) {
        const char *uuid = held[i].consumer_uuid;
        if (want_has(j, uuid))
            continue;
        if (!capacity_list_has(j->ours, j->n_ours, uuid)) {
            capacity_list_add(&j->strangers, &j->n_strangers, uuid);
            continue;
        }
        int ret = sched_placement_remove_allocation(j->pc, uuid, j->rp_uuid, err);
        if (ret < 0)
            return ret;
        struct na_log_ctx log = {.instance = uuid};
        na_log(NA_LOG_INFO, &log, "placement allocation removed", "provider_uuid=%s", j->rp_uuid);
    }
    /* What is neither wanted nor on the provider any more needs no record. */
    for (size_t i = 0; i < j->n_ours; i++)
        if (!want_has(j, j->ours[i]))
            capacity_list_add(&j->forget, &j->n_forget, j->ours[i]);
    return 0;
}

/* Placement's allocations against the provider, read each time (Placement may have lost
 * or gained some behind the agent's back), made equal to the instances' claims: those of
 * instances that are gone first (room for the new ones), then the missing or different.
 * Only this provider's part of a consumer is ever written or removed. */
static int
sync_allocations(struct sync_job *j, struct na_error **err)
{
    cleanup_free struct sched_allocation *held = NULL;
    size_t n_held = 0;
    int ret = sched_placement_provider_allocations(j->pc, j->rp_uuid, &held, &n_held, err);
    if (ret < 0 || (ret = remove_unwanted(j, held, n_held, err)) < 0)
        return ret;
    for (size_t i = 0; i < j->n_want; i++) {
        const struct want *w = &j->want[i];
        const struct sched_allocation *h = held_find(held, n_held, w->uuid);
        if (h && h->vcpus == w->claim.vcpus && h->memory_mb == w->claim.memory_mb &&
            h->disk_gb == w->claim.disk_gb)
            continue;
        if ((ret = sched_placement_put_allocation(j->pc, w->uuid, j->rp_uuid, w->project,
                                                  ALLOCATION_USER, w->claim.vcpus,
                                                  w->claim.memory_mb, w->claim.disk_gb, err)) < 0)
            return ret;
        struct na_log_ctx log = {.instance = w->uuid};
        na_log(NA_LOG_INFO, &log, "placement allocation written",
               "vcpu=%llu memory_mb=%llu disk_gb=%llu", (unsigned long long)w->claim.vcpus,
               (unsigned long long)w->claim.memory_mb, (unsigned long long)w->claim.disk_gb);
    }
    return 0;
}

static int
sync_placement(struct sync_job *j, struct na_error **err)
{
    int ret;
    if ((ret = sched_placement_ensure_provider(j->pc, j->rp_uuid, j->node_id, NULL, err)) < 0 ||
        (ret = sched_placement_set_inventories(j->pc, j->rp_uuid, &j->inv, err)) < 0 ||
        (ret = sched_placement_set_traits(j->pc, j->rp_uuid, (const char *const *)j->traits,
                                          j->n_traits, err)) < 0)
        return ret;
    return j->manage ? sync_allocations(j, err) : 0;
}

void
capacity_sync_work(uv_work_t *req)
{
    struct sync_job *j = req->data;
    capacity_read_ksm(&j->ksm_on, &j->pages_sharing);
    if (sched_inventory_read(j->host, &j->inv, &j->inv_err) < 0)
        return;
    if (j->placement)
        sync_placement(j, &j->err);
}
