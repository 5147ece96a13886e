/* Adopting an orphan (see orphans.h): its spec read back from its domain's metadata and
 * checked as a create's, its claim admitted, then, in its lane, its domain given this
 * node's and this store's ids and recorded as an instance. */
#include "agent/observed/orphans-private.h"
#include "agent/core/agent.h"
#include "agent/observed/observed.h"
#include "agent/bus/events.h"
#include "agent/outputs/network.h"
#include "agent/outputs/capacity.h"
#include "proto/validate.h"

#include <errno.h>
#include <string.h>

/* --- adopt: in the orphan's lane, then on the loop ---------------------------------------- */

#define S(x) NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_##x

/* The orphan's spec, decoded and checked as a create's would be, or NULL with err set. */
static Nodeagent__V1__InstanceSpec *
adoptable_spec(struct agent *a, const struct agent_orphan *o, struct na_error **err)
{
    if (!o->has_domain) {
        na_error_quiet(err, NA_CODE_CONFLICT, EINVAL,
                       "%s has no domain to adopt, only a directory (purge it instead)", o->uuid);
        return NULL;
    }
    if (o->node_id && strcmp(o->node_id, a->cfg->node_id) != 0) {
        na_error_quiet(err, NA_CODE_CONFLICT, EPERM,
                       "the domain of %s belongs to node %s, not to this node (%s); only its "
                       "own node may adopt it",
                       o->uuid, o->node_id, a->cfg->node_id);
        return NULL;
    }
    if (!o->spec) {
        na_error_quiet(err, NA_CODE_CONFLICT, EINVAL,
                       "the domain of %s carries no instance spec in its metadata (defined by "
                       "an agent without adopt): it cannot be made an instance again; purge "
                       "or release it",
                       o->uuid);
        return NULL;
    }
    Nodeagent__V1__InstanceSpec *spec =
        nodeagent__v1__instance_spec__unpack(NULL, o->spec_size, o->spec);
    if (!spec) {
        na_error_quiet(err, NA_CODE_CONFLICT, EINVAL,
                       "the instance spec in the domain of %s does not decode (%zu bytes)", o->uuid,
                       o->spec_size);
        return NULL;
    }
    if (agent_validate_instance_spec(spec, "spec", err) < 0) {
        na_error_wrap(err, "the instance spec in the domain of %s is invalid", o->uuid);
    } else if (strcmp(spec->uuid, o->uuid) != 0) {
        na_error_quiet(err, NA_CODE_CONFLICT, EINVAL,
                       "the instance spec in the domain of %s names another uuid (%s)", o->uuid,
                       spec->uuid);
    } else if (o->uid <= 0) {
        na_error_quiet(err, NA_CODE_CONFLICT, EINVAL,
                       "the domain of %s has no static DAC label with its guest's uid", o->uuid);
    } else {
        return spec;
    }
    nodeagent__v1__instance_spec__free_unpacked(spec, NULL);
    return NULL;
}

/* What an instance with spec and uid would collide with on this node now, or 0. */
static int
check_fits(struct agent *a, const Nodeagent__V1__InstanceSpec *spec, int64_t uid,
           struct na_error **err)
{
    if (agent_instances_find(&a->instances, spec->uuid))
        return na_error_quiet(err, NA_CODE_ALREADY_EXISTS, EEXIST,
                              "uuid %s is already used by an instance of node %s", spec->uuid,
                              a->cfg->node_id);
    const struct agent_instance *same_name =
        agent_instances_find_name(&a->instances, spec->tenant_id, spec->name);
    if (same_name)
        return na_error_quiet(err, NA_CODE_ALREADY_EXISTS, EEXIST,
                              "tenant %s already has an instance named `%s` (%s)", spec->tenant_id,
                              spec->name, same_name->uuid);
    for (size_t i = 0; i < a->instances.n; i++)
        if (a->instances.items[i]->uid == uid)
            return na_error_quiet(err, NA_CODE_CONFLICT, EEXIST,
                                  "the guest's uid %lld is instance %s's", (long long)uid,
                                  a->instances.items[i]->uuid);
    int ret = agent_net_check_nics(a, spec, "spec", err);
    if (ret < 0)
        return ret;
    const Nodeagent__V1__Flavor *f = spec->flavor;
    struct agent_claim need = {f->vcpus, f->memory_mib, f->root_disk_gib};
    if ((ret = agent_capacity_admit(a, spec->uuid, &need, err)) < 0)
        na_error_wrap(err, "not enough capacity");
    return ret;
}

struct adopt {
    struct agent *agent;
    const struct agent_host *host;
    char uuid[37];
    uint8_t *spec_bytes; /* what was checked: the domain must still carry exactly this */
    size_t spec_size;
    Nodeagent__V1__InstanceSpec *spec; /* decoded and validated */
    int64_t uid;
    bool taken; /* an instance took this uuid before the adoption's turn came */
    enum hv_power power;
    struct na_error *err;
};

static void
adopt_free(struct adopt *p)
{
    free(p->spec_bytes);
    if (p->spec)
        nodeagent__v1__instance_spec__free_unpacked(p->spec, NULL);
    na_error_free(p->err);
    free(p);
}

static void
adopt_start(void *data)
{
    struct adopt *p = data;
    p->taken = agent_instances_find(&p->agent->instances, p->uuid) != NULL;
}

/* The domain still says what was checked: the same spec and uid, and no other node. */
static int
still_adoptable(struct adopt *p, const char *xml)
{
    struct hv_domain_meta m;
    if (hv_domain_meta_parse(xml, &m, &p->err) < 0)
        return -EINVAL;
    bool same = m.is_ours && m.instance_spec_size == p->spec_size &&
                memcmp(m.instance_spec, p->spec_bytes, p->spec_size) == 0 && m.dac_uid == p->uid &&
                (!m.node_id || strcmp(m.node_id, p->host->cfg->node_id) == 0);
    hv_domain_meta_clear(&m);
    if (!same)
        return na_error_quiet(&p->err, NA_CODE_CONFLICT, EAGAIN,
                              "the domain of %s changed since it was checked; list the orphans "
                              "again",
                              p->uuid);
    return 0;
}

static void
adopt_work(void *data)
{
    struct adopt *p = data;
    if (p->taken)
        return;
    cleanup_free char *xml = NULL;
    if (hv_domain_get_xml(p->host->hv, p->uuid, true, &xml, &p->err) < 0 ||
        still_adoptable(p, xml) < 0)
        return;
    if (hv_domain_power(p->host->hv, p->uuid, &p->power, &p->err) < 0)
        return;
    if (p->power == HV_POWER_NONE || p->power == HV_POWER_OTHER) {
        na_error_quiet(&p->err, NA_CODE_CONFLICT, EAGAIN,
                       "the domain of %s is %s, between states; adopt it again in a moment",
                       p->uuid, hv_power_name(p->power));
        return;
    }
    hv_domain_set_owner(p->host->hv, p->uuid, p->host->cfg->node_id, p->host->store_id, &p->err);
}

/* Records the adopted instance, with its STATE_CHANGED event, in one transaction. */
static void
record_adopted(struct agent *a, struct adopt *p)
{
    struct agent_instance *inst = na_xcalloc(1, sizeof(*inst));
    snprintf(inst->uuid, sizeof(inst->uuid), "%s", p->uuid);
    inst->spec = na_steal(&p->spec);
    inst->observed = agent_state_from_power(p->power);
    inst->desired = inst->observed == S(CRASHED) ? S(STOPPED) : inst->observed;
    inst->uid = p->uid;
    inst->image_sha256 = na_xstrdup(inst->spec->image->sha256);
    inst->create_request_id = na_xstrdup(""); /* no request created it here */
    inst->created_ms = na_now_ms();

    Nodeagent__V1__Event ev;
    agent_event_init(a, &ev, NODEAGENT__V1__EVENT_KIND__EVENT_KIND_STATE_CHANGED, "", p->uuid, "",
                     -1);
    ev.state = inst->observed;
    ev.message = (char *)"an operator adopted this orphan (nodectl adopt): an instance of this "
                         "node again";
    cleanup_error struct na_error *err = NULL;
    int ret = agent_store_begin(a->store, &err);
    if (ret == 0)
        ret = agent_store_tombstone_delete(a->store, inst->uuid, &err);
    if (ret == 0)
        ret = agent_instance_save(a->store, inst, &err);
    if (ret == 0)
        ret = agent_event_record(a, &ev, NULL, &err);
    if (ret == 0)
        ret = agent_store_commit(a->store, &err);
    if (ret < 0)
        agent_die(a, err);
    agent_instances_add(&a->instances, inst);
    agent_outbox_pump(a);
    struct na_log_ctx log = {.instance = p->uuid};
    na_log(NA_LOG_WARN, &log, "orphan adopted by the operator: an instance of this node again",
           "name=%s tenant=%s uid=%lld state=%s", inst->spec->name, inst->spec->tenant_id,
           (long long)inst->uid, agent_state_name(inst->observed));
}

static void
adopt_done(void *data)
{
    struct adopt *p = data;
    struct agent *a = p->agent;
    struct agent_orphan *o = orphans_find(a->orphans, p->uuid);
    if (p->taken && !p->err)
        na_error_quiet(&p->err, NA_CODE_ALREADY_EXISTS, EEXIST,
                       "an instance took uuid %s before the adoption's turn came", p->uuid);
    /* The node may have changed while the worker ran: check again before recording. */
    if (!p->err)
        check_fits(a, p->spec, p->uid, &p->err);
    if (p->err) {
        struct na_log_ctx log = {.instance = p->uuid};
        na_log(NA_LOG_WARN, &log, "adopting an orphan failed", "error=\"%s\"", p->err->msg);
        if (o) {
            o->adopting = false;
            free(o->adopt_error);
            o->adopt_error = na_xstrdup(p->err->msg);
        }
        adopt_free(p);
        return;
    }
    record_adopted(a, p);
    orphans_remove_one(a->orphans, p->uuid);
    orphans_apply_hold(a);
    adopt_free(p);
}

/* Shutdown came before the adoption's turn: the orphan stays, for the operator to ask again. */
static void
adopt_park(void *data)
{
    adopt_free(data);
}

int
agent_orphans_adopt(struct agent *a, const char *uuid, struct na_error **err)
{
    struct agent_orphan *o = NULL;
    int ret = orphans_idle(a, uuid, &o, err);
    if (ret < 0)
        return ret;
    Nodeagent__V1__InstanceSpec *spec = adoptable_spec(a, o, err);
    if (!spec)
        return -EINVAL;
    ret = check_fits(a, spec, o->uid, err);
    if (ret < 0) {
        nodeagent__v1__instance_spec__free_unpacked(spec, NULL);
        return ret == -ENOENT ? -EEXIST : ret;
    }
    o->adopting = true;
    free(o->adopt_error);
    o->adopt_error = NULL;
    struct adopt *p = na_xcalloc(1, sizeof(*p));
    p->agent = a;
    p->host = &a->host;
    snprintf(p->uuid, sizeof(p->uuid), "%s", uuid);
    p->spec_bytes = na_xmalloc(o->spec_size ? o->spec_size : 1);
    memcpy(p->spec_bytes, o->spec, o->spec_size);
    p->spec_size = o->spec_size;
    p->spec = spec;
    p->uid = o->uid;
    struct na_log_ctx log = {.instance = uuid};
    na_log(NA_LOG_INFO, &log, "adopting an orphan at the operator's request",
           "why=%s name=%s tenant=%s uid=%lld", agent_orphan_why_name(o->why), spec->name,
           spec->tenant_id, (long long)o->uid);
    agent_dispatch_submit(a->dispatch, p->uuid, adopt_start, adopt_work, adopt_done, adopt_park, p);
    return 0;
}
