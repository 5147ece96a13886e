/* Orphans and the hold (see orphans.h). */
#include "agent/observed/orphans-private.h"
#include "agent/core/agent.h"
#include "agent/bus/events.h"
#include "agent/outputs/capacity.h"
#include "agent/outputs/peers.h"
#include "proto/validate.h"

#include <errno.h>
#include <string.h>

static const char *const why_names[] = {
#define X(id, name) [AGENT_ORPHAN_##id] = name,
    AGENT_ORPHAN_WHYS(X)
#undef X
};

const char *
agent_orphan_why_name(enum agent_orphan_why why)
{
    return (unsigned)why < NA_ARRAY_SIZE(why_names) ? why_names[why] : "unknown";
}

void
agent_orphan_free(struct agent_orphan *o)
{
    if (!o)
        return;
    free(o->name);
    free(o->tenant_id);
    free(o->node_id);
    free(o->store_id);
    free(o->purge_error);
    free(o->spec);
    free(o->adopt_error);
    free(o);
}

void
agent_orphans_clear(struct agent_orphans *t)
{
    for (size_t i = 0; i < t->n; i++)
        agent_orphan_free(t->items[i]);
    free(t->items);
    t->items = NULL;
    t->n = 0;
}

struct agent_orphan *
orphans_find(const struct agent_orphans *t, const char *uuid)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->items[i]->uuid, uuid) == 0)
            return t->items[i];
    return NULL;
}

void
orphans_remove_one(struct agent_orphans *t, const char *uuid)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->items[i]->uuid, uuid) == 0) {
            agent_orphan_free(t->items[i]);
            t->items[i] = t->items[--t->n];
            return;
        }
    }
}

/* An orphan holds the agent when it is a domain this node's store should know: tagged with
 * this node id (or with no owner), and not released by the operator. */
static bool
holds(struct agent *a, const struct agent_orphan *o)
{
    if (!o->has_domain || (o->node_id && strcmp(o->node_id, a->cfg->node_id) != 0))
        return false;
    cleanup_error struct na_error *err = NULL;
    int released = agent_store_orphan_released(a->store, o->uuid, &err);
    if (released < 0)
        na_log(NA_LOG_WARN, NULL, "reading released orphans failed; holding", "error=\"%s\"",
               err->msg);
    return released != 1;
}

static size_t
count_holding(struct agent *a)
{
    size_t n = 0;
    for (size_t i = 0; i < a->orphans->n; i++)
        n += holds(a, a->orphans->items[i]);
    return n;
}

/* Consumption and replay follow the hold: nothing is taken from the bus, and no unfinished
 * intent runs, until the store is known to match libvirt (or the operator said so). */
void
orphans_apply_hold(struct agent *a)
{
    struct agent_orphans *t = a->orphans;
    size_t n_holding = t->checked ? count_holding(a) : 0;
    bool holding = n_holding > 0;
    if (holding != t->holding) {
        t->holding = holding;
        if (holding)
            na_log(NA_LOG_ERROR, NULL,
                   "HOLD: domains of this node that the state store does not record; no "
                   "request is consumed until every one is purged or released (nodectl "
                   "orphans)",
                   "orphans=%zu holding=%zu store_id=%s", t->n, n_holding,
                   agent_store_id(a->store));
        else
            na_log(NA_LOG_INFO, NULL, "hold released: requests are consumed again", NULL);
    }
    agent_gate_update(a);
}

bool
agent_orphans_gate(const struct agent *a)
{
    return !a->orphans->checked || a->orphans->holding;
}

static void
report(struct agent *a, struct agent_orphan *o)
{
    Nodeagent__V1__Orphan msg;
    nodeagent__v1__orphan__init(&msg);
    msg.name = o->name ? o->name : (char *)"";
    msg.tenant_id = o->tenant_id ? o->tenant_id : (char *)"";
    msg.node_id = o->node_id ? o->node_id : (char *)"";
    msg.store_id = o->store_id ? o->store_id : (char *)"";
    msg.has_domain = o->has_domain;
    msg.has_dir = o->has_dir;
    msg.power = (char *)(o->has_domain ? hv_power_name(o->power) : "");
    msg.why = (char *)agent_orphan_why_name(o->why);
    msg.holds = holds(a, o);

    Nodeagent__V1__Event ev;
    agent_event_init(a, &ev, NODEAGENT__V1__EVENT_KIND__EVENT_KIND_ORPHAN, "", o->uuid, "", -1);
    ev.orphan = &msg;
    ev.message = (char *)"this node's state store does not record it as its own; left "
                         "untouched until an operator purges or releases it";
    agent_event_emit(a, &ev);

    struct na_log_ctx log = {.instance = o->uuid};
    na_log(NA_LOG_WARN, &log, "orphan: left running, untouched",
           "why=%s has_domain=%s has_dir=%s power=%s node_id=%s store_id=%s holds=%s", msg.why,
           o->has_domain ? "true" : "false", o->has_dir ? "true" : "false",
           o->has_domain ? hv_power_name(o->power) : "-", *msg.node_id ? msg.node_id : "-",
           *msg.store_id ? msg.store_id : "-", msg.holds ? "true" : "false");
    o->reported = true;
}

void
agent_orphans_update(struct agent *a, struct agent_orphan **found, size_t n)
{
    struct agent_orphans *t = a->orphans;
    for (size_t i = 0; i < n; i++) {
        struct agent_orphan *o = found[i];
        const struct agent_orphan *old = orphans_find(t, o->uuid);
        if (!old)
            continue;
        o->reported = old->reported && old->why == o->why && old->has_domain == o->has_domain;
        o->purging = old->purging;
        o->purge_error = old->purge_error ? na_xstrdup(old->purge_error) : NULL;
        o->adopting = old->adopting;
        o->adopt_error = old->adopt_error ? na_xstrdup(old->adopt_error) : NULL;
    }
    agent_orphans_clear(t);
    t->items = found;
    t->n = n;
    t->checked = true;
    orphans_apply_hold(a);
    for (size_t i = 0; i < n; i++)
        if (!found[i]->reported)
            report(a, found[i]);
}

void
agent_orphans_unchecked(struct agent *a)
{
    if (a->orphans->checked)
        return;
    a->orphans->checked = true;
    na_log(NA_LOG_WARN, NULL,
           "the state store could not be compared with libvirt; requests are consumed until "
           "a comparison finds orphans",
           NULL);
    orphans_apply_hold(a);
}

bool
agent_orphans_holding(struct agent *a, char *why, size_t why_size)
{
    const struct agent_orphans *t = a->orphans;
    if (!t->checked)
        snprintf(why, why_size, "comparing the state store with libvirt before consuming");
    else if (t->holding)
        snprintf(why, why_size,
                 "HOLD: %zu domain(s) of this node that the state store does not record "
                 "(store_id %s); no request is consumed until each is purged or released "
                 "(nodectl orphans)",
                 count_holding(a), agent_store_id(a->store));
    else
        snprintf(why, why_size, "%zu orphan(s), none holds", t->n);
    return !t->checked || t->holding;
}

static json_t *
opt_string(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *
agent_orphans_view(struct agent *a)
{
    json_t *list = json_array();
    for (size_t i = 0; i < a->orphans->n; i++) {
        const struct agent_orphan *o = a->orphans->items[i];
        json_array_append_new(
            list,
            json_pack("{s:s, s:o, s:o, s:o, s:o, s:b, s:b, s:o, s:s, s:b, s:b, s:o, s:b, s:b, s:o}",
                      "uuid", o->uuid, "name", opt_string(o->name), "tenant",
                      opt_string(o->tenant_id), "node_id", opt_string(o->node_id), "store_id",
                      opt_string(o->store_id), "has_domain", o->has_domain, "has_dir", o->has_dir,
                      "power", o->has_domain ? json_string(hv_power_name(o->power)) : json_null(),
                      "why", agent_orphan_why_name(o->why), "holds", holds(a, o), "purging",
                      o->purging, "purge_error", opt_string(o->purge_error), "has_spec",
                      o->spec != NULL, "adopting", o->adopting, "adopt_error",
                      opt_string(o->adopt_error)));
    }
    char why[512];
    bool holding = agent_orphans_holding(a, why, sizeof(why));
    return json_pack("{s:o, s:b, s:s, s:s, s:s}", "orphans", list, "holding", holding, "detail",
                     why, "node_id", a->cfg->node_id, "store_id", agent_store_id(a->store));
}

/* --- purge, in the orphan's lane ---------------------------------------------------------- */

struct purge {
    struct agent *agent;
    const struct agent_host *host;
    char uuid[37];
    bool has_domain;
    bool adopted; /* an instance took this uuid before the purge's turn came */
    struct na_error *err;
};

static void
purge_start(void *data)
{
    struct purge *p = data;
    p->adopted = agent_instances_find(&p->agent->instances, p->uuid) != NULL;
}

static void
purge_work(void *data)
{
    struct purge *p = data;
    if (p->adopted || (p->has_domain && hv_domain_undefine(p->host->hv, p->uuid, &p->err) < 0))
        return;
    cleanup_free char *dir = na_xasprintf("%s/%s", p->host->instances_dir, p->uuid);
    na_remove_tree(dir);
}

static void
purge_done(void *data)
{
    struct purge *p = data;
    struct agent *a = p->agent;
    struct na_log_ctx log = {.instance = p->uuid};
    struct agent_orphan *o = orphans_find(a->orphans, p->uuid);
    if (p->adopted) {
        na_log(NA_LOG_INFO, &log, "purge skipped: an instance owns this uuid now", NULL);
        if (o)
            o->purging = false;
    } else if (p->err) {
        na_log(NA_LOG_WARN, &log, "purging an orphan failed", "error=\"%s\"", p->err->msg);
        if (o) {
            o->purging = false;
            free(o->purge_error);
            o->purge_error = na_xstrdup(p->err->msg);
        }
    } else {
        Nodeagent__V1__Event ev;
        agent_event_init(a, &ev, NODEAGENT__V1__EVENT_KIND__EVENT_KIND_STATE_CHANGED, "", p->uuid,
                         "", -1);
        ev.state = NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_DELETED;
        ev.message = (char *)"an operator purged this orphan (nodectl purge)";
        agent_event_emit(a, &ev);
        na_log(NA_LOG_INFO, &log, "orphan purged by the operator", "had_domain=%s",
               p->has_domain ? "true" : "false");
        orphans_remove_one(a->orphans, p->uuid);
        orphans_apply_hold(a);
    }
    na_error_free(p->err);
    free(p);
}

/* Shutdown came before the purge's turn: the orphan stays, for the operator to ask again. */
static void
purge_park(void *data)
{
    struct purge *p = data;
    na_error_free(p->err);
    free(p);
}

/* The current orphan uuid names, with no purge or adoption running: an operator's action may
 * start on it.  NOT_FOUND (-ENOENT) or CONFLICT (-EBUSY) otherwise. */
int
orphans_idle(struct agent *a, const char *uuid, struct agent_orphan **out, struct na_error **err)
{
    struct agent_orphan *o = orphans_find(a->orphans, uuid);
    if (!o)
        return na_error_set(err, NA_CODE_NOT_FOUND, ENOENT, "%s is not a current orphan", uuid);
    if (o->purging || o->adopting)
        return na_error_set(err, NA_CODE_CONFLICT, EBUSY, "a %s of %s is running",
                            o->purging ? "purge" : "adoption", uuid);
    *out = o;
    return 0;
}

int
agent_orphans_purge(struct agent *a, const char *uuid, struct na_error **err)
{
    struct agent_orphan *o = NULL;
    int ret = orphans_idle(a, uuid, &o, err);
    if (ret < 0)
        return ret;
    o->purging = true;
    free(o->purge_error);
    o->purge_error = NULL;
    struct purge *p = na_xcalloc(1, sizeof(*p));
    p->agent = a;
    p->host = &a->host;
    snprintf(p->uuid, sizeof(p->uuid), "%s", uuid);
    p->has_domain = o->has_domain;
    struct na_log_ctx log = {.instance = uuid};
    na_log(NA_LOG_INFO, &log, "purging an orphan at the operator's request", "why=%s",
           agent_orphan_why_name(o->why));
    agent_dispatch_submit(a->dispatch, p->uuid, purge_start, purge_work, purge_done, purge_park, p);
    return 0;
}

int
agent_orphans_release(struct agent *a, struct na_error **err)
{
    int n = 0;
    for (size_t i = 0; i < a->orphans->n; i++) {
        const struct agent_orphan *o = a->orphans->items[i];
        if (!holds(a, o))
            continue;
        int ret = agent_store_orphan_release(a->store, o->uuid, err);
        if (ret < 0)
            return ret;
        struct na_log_ctx log = {.instance = o->uuid};
        na_log(NA_LOG_WARN, &log, "orphan released by the operator: it no longer holds the agent",
               NULL);
        n++;
    }
    orphans_apply_hold(a);
    return n;
}
