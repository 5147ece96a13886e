/* Reconciliation: libvirt's domains and the instance directories compared with the
 * instance table, at start, after libvirt reconnects, and every reconcile_interval.
 *
 *   a domain of ours with no instance       → orphan: undefined, its files removed
 *   an instance directory with no instance  → orphan: removed
 *   an instance whose power state differs   → corrected, STATE_CHANGED
 *   an instance with no domain              → ERROR, STATE_CHANGED (once)
 *
 * Instances with an operation running are left to it.  The listing runs in a worker; the
 * comparison runs on the loop; clean-ups run in the orphan's lane, so they never race an
 * operation on the same uuid.
 */
#include "agent/agent.h"

#include <dirent.h>
#include <string.h>

#define S(x) NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_##x

struct seen_domain {
    char uuid[37];
    enum hv_power power;
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

/* --- removing an orphan, in its lane ----------------------------------------------------- */

struct orphan {
    struct agent *agent;
    char uuid[37];
    bool had_domain;
    bool adopted; /* an instance took this uuid before the clean-up's turn came */
    struct na_error *err;
};

/* On the loop, when the clean-up's turn comes in the uuid's lane: a create queued there
 * before it has recorded its instance by now, and its domain is not an orphan. */
static void
orphan_start(void *data)
{
    struct orphan *o = data;
    o->adopted = agent_instances_find(&o->agent->instances, o->uuid) != NULL;
}

static void
orphan_work(void *data)
{
    struct orphan *o = data;
    if (o->adopted || hv_domain_undefine(o->agent->host.hv, o->uuid, &o->err) < 0)
        return;
    cleanup_free char *dir = na_xasprintf("%s/%s", o->agent->host.instances_dir, o->uuid);
    na_remove_tree(dir);
}

static void
orphan_done(void *data)
{
    struct orphan *o = data;
    struct agent *a = o->agent;
    struct na_log_ctx log = {.instance = o->uuid};
    if (o->adopted) {
        na_log(NA_LOG_INFO, &log, "not an orphan after all: an instance owns it now", NULL);
    } else if (o->err) {
        na_log(NA_LOG_WARN, &log, "removing an orphan failed; next reconciliation retries",
               "error=\"%s\"", o->err->msg);
    } else {
        Nodeagent__V1__Event ev;
        agent_event_init(a, &ev, NODEAGENT__V1__EVENT_KIND__EVENT_KIND_STATE_CHANGED, "", o->uuid,
                         "", -1);
        ev.state = S(DELETED);
        ev.message = o->had_domain ? (char *)"reconciliation removed a domain (and its files) "
                                             "that no instance of this node owns"
                                   : (char *)"reconciliation removed files that no instance "
                                             "of this node owns";
        agent_event_emit(a, &ev);
        na_log(NA_LOG_INFO, &log, "orphan removed", "had_domain=%s",
               o->had_domain ? "true" : "false");
    }
    na_error_free(o->err);
    free(o);
}

static void
remove_orphan(struct agent *a, const char *uuid, bool had_domain)
{
    struct orphan *o = na_xcalloc(1, sizeof(*o));
    o->agent = a;
    snprintf(o->uuid, sizeof(o->uuid), "%s", uuid);
    o->had_domain = had_domain;
    agent_dispatch_submit(a->dispatch, o->uuid, orphan_start, orphan_work, orphan_done, o);
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

static void
compare(struct agent *a, const struct reconcile_job *job)
{
    for (size_t i = 0; i < job->n_domains; i++) {
        const struct seen_domain *d = &job->domains[i];
        if (!agent_instances_find(&a->instances, d->uuid))
            remove_orphan(a, d->uuid, true);
    }
    for (size_t i = 0; i < job->n_dirs; i++)
        if (!agent_instances_find(&a->instances, job->dirs[i]) && !find_domain(job, job->dirs[i]))
            remove_orphan(a, job->dirs[i], false);

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
on_listed(uv_work_t *req, int status)
{
    (void)status;
    struct reconcile_job *job = req->data;
    struct agent *a = job->agent;
    a->reconciling = false;
    if (job->err)
        na_log(NA_LOG_WARN, NULL, "reconciliation could not list domains", "error=\"%s\"",
               job->err->msg);
    else if (!a->stopping)
        compare(a, job);
    na_error_free(job->err);
    free(job->domains);
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
