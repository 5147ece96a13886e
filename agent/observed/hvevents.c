/* libvirt's view arriving on the loop: lifecycle events keep each instance's observed power
 * state true between reconciliations; a guest that changes by itself (powers off, crashes,
 * reboots) is reported with a STATE_CHANGED event.  While an operation runs on an instance,
 * its own terminal event reports the state instead. */
#include "agent/core/agent.h"
#include "agent/observed/observed.h"
#include "agent/bus/events.h"
#include "agent/observed/orphans.h"

#include <string.h>

#define S(x) NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_##x

void
agent_instance_observed(struct agent *a, struct agent_instance *inst,
                        Nodeagent__V1__InstanceState state, const char *why)
{
    Nodeagent__V1__InstanceState before = inst->observed;
    inst->observed = state;
    Nodeagent__V1__Event ev;
    agent_event_init(a, &ev, NODEAGENT__V1__EVENT_KIND__EVENT_KIND_STATE_CHANGED, "", inst->uuid,
                     "", -1);
    ev.state = state;
    ev.message = (char *)why;

    cleanup_error struct na_error *err = NULL;
    int ret = agent_store_begin(a->store, &err);
    if (ret == 0)
        ret = agent_instance_save(a->store, inst, &err);
    if (ret == 0)
        ret = agent_event_record(a, &ev, NULL, &err);
    if (ret == 0)
        ret = agent_store_commit(a->store, &err);
    if (ret < 0)
        agent_die(a, err);
    agent_outbox_pump(a);
    struct na_log_ctx log = {.instance = inst->uuid};
    na_log(NA_LOG_INFO, &log, "instance state changed", "from=%s to=%s why=\"%s\"",
           agent_state_name(before), agent_state_name(state), why);
}

static void
on_event_mail(void *ctx, void *data)
{
    struct agent *a = ctx;
    struct hv_event *ev = data;
    struct agent_instance *inst = agent_instances_find(&a->instances, ev->uuid);
    if (!inst || inst->task) {
        /* Not ours, or an operation is changing it and will report the outcome. */
        free(ev);
        return;
    }
    Nodeagent__V1__InstanceState state = inst->observed;
    const char *why = NULL;
    switch (ev->kind) {
    case HV_EVENT_STARTED:
    case HV_EVENT_RESUMED:
        state = S(RUNNING);
        why = "the domain is running";
        break;
    case HV_EVENT_REBOOTED:
        state = S(RUNNING);
        why = "the guest rebooted";
        break;
    case HV_EVENT_PAUSED:
        state = S(PAUSED);
        why = "the domain was paused";
        break;
    case HV_EVENT_STOPPED:
        state = S(STOPPED);
        why = ev->by_guest ? "the guest powered itself off" : "the domain stopped";
        break;
    case HV_EVENT_CRASHED:
        state = S(CRASHED);
        why = "the guest crashed";
        break;
    case HV_EVENT_SAVED:
        state = S(SUSPENDED);
        why = "the domain was saved";
        break;
    case HV_EVENT_UNDEFINED:
        state = S(ERROR);
        why = "the domain was undefined outside the agent";
        break;
    }
    if (why && (state != inst->observed || ev->kind == HV_EVENT_REBOOTED))
        agent_instance_observed(a, inst, state, why);
    free(ev);
}

void
agent_hv_on_event(void *agent, const struct hv_event *ev)
{
    struct agent *a = agent;
    struct hv_event *copy = na_xmalloc(sizeof(*copy));
    *copy = *ev;
    agent_mailbox_post(a->mailbox, on_event_mail, copy);
}

struct connection_mail {
    bool up;
    char detail[];
};

static void
on_connection_mail(void *ctx, void *data)
{
    struct agent *a = ctx;
    struct connection_mail *m = data;
    a->libvirt_up = m->up;
    free(a->libvirt_detail);
    a->libvirt_detail = na_xstrdup(m->detail);
    free(m);
    /* Whatever happened while libvirt was away (or before the agent started) is found now. */
    if (a->libvirt_up)
        agent_reconcile(a);
    else
        agent_orphans_unchecked(a); /* down at start: the store cannot be compared */
}

void
agent_hv_on_connection(void *agent, bool up, const char *detail)
{
    struct agent *a = agent;
    size_t len = strlen(detail ? detail : "");
    struct connection_mail *m = na_xmalloc(sizeof(*m) + len + 1);
    m->up = up;
    memcpy(m->detail, detail ? detail : "", len + 1);
    agent_mailbox_post(a->mailbox, on_connection_mail, m);
}

Nodeagent__V1__InstanceState
agent_state_from_power(enum hv_power power)
{
    switch (power) {
    case HV_POWER_RUNNING:
        return S(RUNNING);
    case HV_POWER_PAUSED:
        return S(PAUSED);
    case HV_POWER_SHUTOFF:
        return S(STOPPED);
    case HV_POWER_SUSPENDED:
        return S(SUSPENDED);
    case HV_POWER_CRASHED:
        return S(CRASHED);
    case HV_POWER_NONE:
        return S(ERROR);
    case HV_POWER_OTHER:
    default:
        return S(UNSPECIFIED);
    }
}
