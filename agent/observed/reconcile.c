/* Reconciliation: libvirt's domains and the instance directories compared with the
 * instance table, at start, after libvirt reconnects, and every reconcile_interval.
 *
 *   an instance whose power state differs   → corrected, STATE_CHANGED
 *   an instance with no domain              → ERROR, STATE_CHANGED (once)
 *   a domain with no instance that carries this node's id and this store's id, and whose
 *   uuid the store has a tombstone for (a delete that did not finish)
 *                                           → undefined, its directory removed
 *   a directory with no instance, no domain and a tombstone
 *                                           → removed
 *   anything else that looks like ours      → an orphan (orphans.c): reported, kept
 *                                             (with what its metadata says, so that an
 *                                             operator can adopt it)
 *
 * Nothing the store does not record as its own and deleted is destroyed here.  Instances
 * with an operation running are left to it.  The listing runs in a worker; the comparison
 * runs on the loop; clean-ups run in the uuid's lane, so they never race an operation on
 * the same uuid.
 */
#include "agent/core/agent.h"
#include "agent/observed/observed.h"
#include "agent/bus/events.h"
#include "agent/observed/orphans.h"

#include <dirent.h>
#include <string.h>

#define S(x) NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_##x

struct seen_domain {
    char uuid[37];
    enum hv_power power;
    char *name, *tenant_id; /* from our metadata */
    char *node_id;          /* the owner's; NULL when the domain has none */
    char *store_id;
    uint8_t *spec; /* the metadata's instance spec (packed, unchecked), NULL when none */
    size_t spec_size;
    int64_t uid; /* its static DAC label's, -1 when none */
};

struct reconcile_job {
    uv_work_t req;
    struct agent *agent;
    const struct agent_host *host;
    /* Results of the worker. */
    struct na_error *err;
    struct seen_domain *domains; /* ours only */
    size_t n_domains;
    char (*dirs)[37]; /* instance directories, by uuid */
    size_t n_dirs;
};

static void
list_domains(struct reconcile_job *job)
{
    struct hv_domain_entry *list = NULL;
    size_t n = 0;
    if (hv_domain_list(job->host->hv, &list, &n, &job->err) < 0)
        return;
    job->domains = na_xcalloc(n, sizeof(*job->domains));
    for (size_t i = 0; i < n; i++) {
        struct hv_domain_meta meta = {0};
        if (hv_domain_meta_parse(list[i].xml, &meta, NULL) == 0 && meta.is_ours) {
            struct seen_domain *d = &job->domains[job->n_domains++];
            snprintf(d->uuid, sizeof(d->uuid), "%s", list[i].uuid);
            d->power = list[i].power;
            d->name = meta.name ? na_xstrdup(meta.name) : NULL;
            d->tenant_id = meta.tenant_id ? na_xstrdup(meta.tenant_id) : NULL;
            d->node_id = meta.node_id ? na_xstrdup(meta.node_id) : NULL;
            d->store_id = meta.store_id ? na_xstrdup(meta.store_id) : NULL;
            d->spec = na_steal(&meta.instance_spec);
            d->spec_size = meta.instance_spec_size;
            d->uid = meta.dac_uid;
        }
        hv_domain_meta_clear(&meta);
    }
    hv_domain_list_free(list, n);
}

static void
list_dirs(struct reconcile_job *job)
{
    DIR *d = opendir(job->host->instances_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!na_uuid_is_valid(e->d_name))
            continue;
        job->dirs = na_xrealloc(job->dirs, (job->n_dirs + 1) * sizeof(*job->dirs));
        memcpy(job->dirs[job->n_dirs++], e->d_name, 37); /* a valid uuid: 36 + NUL */
    }
    closedir(d);
}

static void
on_list(uv_work_t *req)
{
    struct reconcile_job *job = req->data;
    list_domains(job);
    if (!job->err)
        list_dirs(job);
}

/* --- finishing a recorded delete, in its lane --------------------------------------------- */

struct leftover {
    struct agent *agent;           /* the loop's callbacks only */
    const struct agent_host *host; /* the worker's */
    char uuid[37];
    bool had_domain;
    bool adopted; /* an instance took this uuid before the clean-up's turn came */
    struct na_error *err;
};

/* On the loop, when the clean-up's turn comes in the uuid's lane: a create queued there
 * before it has recorded its instance by now, and its domain is not a leftover. */
static void
leftover_start(void *data)
{
    struct leftover *o = data;
    o->adopted = agent_instances_find(&o->agent->instances, o->uuid) != NULL;
}

static void
leftover_work(void *data)
{
    struct leftover *o = data;
    if (o->adopted || (o->had_domain && hv_domain_undefine(o->host->hv, o->uuid, &o->err) < 0))
        return;
    cleanup_free char *dir = na_xasprintf("%s/%s", o->host->instances_dir, o->uuid);
    na_remove_tree(dir);
}

static void
leftover_done(void *data)
{
    struct leftover *o = data;
    struct agent *a = o->agent;
    struct na_log_ctx log = {.instance = o->uuid};
    if (o->adopted) {
        na_log(NA_LOG_INFO, &log, "not a leftover after all: an instance owns it now", NULL);
    } else if (o->err) {
        na_log(NA_LOG_WARN, &log, "finishing a recorded delete failed; next reconciliation retries",
               "error=\"%s\"", o->err->msg);
    } else {
        Nodeagent__V1__Event ev;
        agent_event_init(a, &ev, NODEAGENT__V1__EVENT_KIND__EVENT_KIND_STATE_CHANGED, "", o->uuid,
                         "", -1);
        ev.state = S(DELETED);
        ev.message = o->had_domain ? (char *)"reconciliation finished a recorded delete: the "
                                             "domain and its files are removed"
                                   : (char *)"reconciliation finished a recorded delete: the "
                                             "files are removed";
        agent_event_emit(a, &ev);
        na_log(NA_LOG_INFO, &log, "recorded delete finished", "had_domain=%s",
               o->had_domain ? "true" : "false");
    }
    na_error_free(o->err);
    free(o);
}

/* Shutdown came before the clean-up's turn: the next start's reconciliation finds it again. */
static void
leftover_park(void *data)
{
    struct leftover *o = data;
    na_error_free(o->err);
    free(o);
}

static void
finish_delete(struct agent *a, const char *uuid, bool had_domain)
{
    struct leftover *o = na_xcalloc(1, sizeof(*o));
    o->agent = a;
    o->host = &a->host;
    snprintf(o->uuid, sizeof(o->uuid), "%s", uuid);
    o->had_domain = had_domain;
    agent_dispatch_submit(a->dispatch, o->uuid, leftover_start, leftover_work, leftover_done,
                          leftover_park, o);
}

/* --- the comparison, on the loop --------------------------------------------------------- */

static const struct seen_domain *
find_domain(const struct reconcile_job *job, const char *uuid)
{
    for (size_t i = 0; i < job->n_domains; i++)
        if (strcmp(job->domains[i].uuid, uuid) == 0)
            return &job->domains[i];
    return NULL;
}

static bool
has_dir(const struct reconcile_job *job, const char *uuid)
{
    for (size_t i = 0; i < job->n_dirs; i++)
        if (strcmp(job->dirs[i], uuid) == 0)
            return true;
    return false;
}

static bool
has_tombstone(struct agent *a, const char *uuid)
{
    cleanup_error struct na_error *err = NULL;
    int ret = agent_store_tombstone_has(a->store, uuid, &err);
    if (ret < 0)
        na_log(NA_LOG_WARN, NULL, "reading a tombstone failed; nothing is removed",
               "instance=%s error=\"%s\"", uuid, err->msg);
    return ret == 1;
}

static bool
same(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* Whether a domain carries this node's and this store's ids. */
static bool
owned_here(struct agent *a, const struct seen_domain *d)
{
    return same(d->node_id, a->cfg->node_id) && same(d->store_id, agent_store_id(a->store));
}

static enum agent_orphan_why
domain_orphan_why(struct agent *a, const struct seen_domain *d)
{
    if (agent_instances_undecodable(&a->instances, d->uuid))
        return AGENT_ORPHAN_RECORD_UNDECODABLE;
    if (!d->node_id)
        return AGENT_ORPHAN_NO_OWNER;
    if (!same(d->node_id, a->cfg->node_id))
        return AGENT_ORPHAN_OTHER_NODE;
    if (!same(d->store_id, agent_store_id(a->store)))
        return AGENT_ORPHAN_OTHER_STORE;
    return AGENT_ORPHAN_NO_RECORD;
}

static struct agent_orphan *
orphan_new(const char *uuid, enum agent_orphan_why why, bool with_dir)
{
    struct agent_orphan *o = na_xcalloc(1, sizeof(*o));
    snprintf(o->uuid, sizeof(o->uuid), "%s", uuid);
    o->why = why;
    o->has_dir = with_dir;
    o->uid = -1;
    return o;
}

static struct agent_orphan *
domain_orphan(struct agent *a, const struct reconcile_job *job, const struct seen_domain *d)
{
    struct agent_orphan *o = orphan_new(d->uuid, domain_orphan_why(a, d), has_dir(job, d->uuid));
    o->has_domain = true;
    o->power = d->power;
    o->name = d->name ? na_xstrdup(d->name) : NULL;
    o->tenant_id = d->tenant_id ? na_xstrdup(d->tenant_id) : NULL;
    o->node_id = d->node_id ? na_xstrdup(d->node_id) : NULL;
    o->store_id = d->store_id ? na_xstrdup(d->store_id) : NULL;
    if (d->spec) {
        o->spec = na_xmalloc(d->spec_size ? d->spec_size : 1);
        memcpy(o->spec, d->spec, d->spec_size);
        o->spec_size = d->spec_size;
    }
    o->uid = d->uid;
    return o;
}

/* Domains and directories with no instance: a recorded delete to finish, or an orphan. */
static void
compare_unrecorded(struct agent *a, const struct reconcile_job *job)
{
    struct agent_orphan **found = na_xcalloc(job->n_domains + job->n_dirs + 1, sizeof(*found));
    size_t n = 0;
    for (size_t i = 0; i < job->n_domains; i++) {
        const struct seen_domain *d = &job->domains[i];
        if (agent_instances_find(&a->instances, d->uuid))
            continue;
        if (owned_here(a, d) && has_tombstone(a, d->uuid))
            finish_delete(a, d->uuid, true);
        else
            found[n++] = domain_orphan(a, job, d);
    }
    for (size_t i = 0; i < job->n_dirs; i++) {
        const char *uuid = job->dirs[i];
        if (agent_instances_find(&a->instances, uuid) || find_domain(job, uuid))
            continue;
        if (has_tombstone(a, uuid))
            finish_delete(a, uuid, false);
        else
            found[n++] = orphan_new(uuid, AGENT_ORPHAN_DIR_ONLY, true);
    }
    agent_orphans_update(a, found, n);
}

/* Tombstones of which nothing is left (no domain, no directory, no record), or whose uuid
 * an instance took again, have done their job. */
static void
drop_spent_tombstones(struct agent *a, const struct reconcile_job *job)
{
    cleanup_error struct na_error *err = NULL;
    char(*uuids)[37] = NULL;
    size_t n = 0;
    if (agent_store_tombstone_list(a->store, &uuids, &n, &err) < 0) {
        na_log(NA_LOG_WARN, NULL, "listing tombstones failed", "error=\"%s\"", err->msg);
        return;
    }
    for (size_t i = 0; i < n && !err; i++) {
        bool recorded = agent_instances_find(&a->instances, uuids[i]) != NULL;
        if (!recorded && (find_domain(job, uuids[i]) || has_dir(job, uuids[i])))
            continue;
        if (agent_store_tombstone_delete(a->store, uuids[i], &err) < 0)
            na_log(NA_LOG_WARN, NULL, "dropping a tombstone failed", "instance=%s error=\"%s\"",
                   uuids[i], err->msg);
    }
    free(uuids);
}

static void
compare(struct agent *a, const struct reconcile_job *job)
{
    compare_unrecorded(a, job);
    drop_spent_tombstones(a, job);

    for (size_t i = 0; i < a->instances.n; i++) {
        struct agent_instance *inst = a->instances.items[i];
        if (inst->task || inst->observed == S(BUILDING))
            continue; /* an operation owns it now */
        const struct seen_domain *d = find_domain(job, inst->uuid);
        Nodeagent__V1__InstanceState state = d ? agent_state_from_power(d->power) : S(ERROR);
        if (state == S(UNSPECIFIED) || state == inst->observed)
            continue;
        agent_instance_observed(a, inst, state,
                                d ? "reconciliation: libvirt reports another power state"
                                  : "reconciliation: the instance's domain is missing");
    }
}

static void
free_domains(struct reconcile_job *job)
{
    for (size_t i = 0; i < job->n_domains; i++) {
        free(job->domains[i].name);
        free(job->domains[i].tenant_id);
        free(job->domains[i].node_id);
        free(job->domains[i].store_id);
        free(job->domains[i].spec);
    }
    free(job->domains);
}

static void
on_listed(uv_work_t *req, int status)
{
    (void)status;
    struct reconcile_job *job = req->data;
    struct agent *a = job->agent;
    a->reconciling = false;
    if (job->err) {
        na_log(NA_LOG_WARN, NULL, "reconciliation could not list domains", "error=\"%s\"",
               job->err->msg);
        agent_orphans_unchecked(a);
    } else if (!a->stopping) {
        compare(a, job);
    }
    na_error_free(job->err);
    free_domains(job);
    free(job->dirs);
    free(job);
}

void
agent_reconcile(struct agent *a)
{
    if (a->reconciling || a->stopping || !a->libvirt_up)
        return;
    a->reconciling = true;
    struct reconcile_job *job = na_xcalloc(1, sizeof(*job));
    job->agent = a;
    job->host = &a->host;
    job->req.data = job;
    uv_queue_work(a->loop, &job->req, on_list, on_listed);
}
