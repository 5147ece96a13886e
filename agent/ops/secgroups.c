/* Security groups: the node's table of groups and the three requests that change it or a
 * port's membership.  None of them blocks: prepare() checks the request against the table
 * and the instances, finish() records it in the store (inside the transaction of its
 * terminal event) and in memory, and tells the table's watcher (outputs/outputs.c), whose
 * OVS desired state hands the result to net/ovs, which changes only the flows that differ
 * (one atomic bundle).
 */
#include "agent/ops/secgroups.h"

#include "agent/core/agent.h"
#include "agent/ops/ops.h"
#include "net/ovs/ovs.h"

#include <errno.h>
#include <string.h>

/* --- the table --------------------------------------------------------------------------- */

static int
cmp_group(const void *a, const void *b)
{
    return strcmp((*(Nodeagent__V1__SecurityGroup *const *)a)->id,
                  (*(Nodeagent__V1__SecurityGroup *const *)b)->id);
}

static size_t
index_of(const struct agent_secgroups *t, const char *id)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->items[i]->id, id) == 0)
            return i;
    return t->n;
}

const Nodeagent__V1__SecurityGroup *
agent_secgroups_find(const struct agent_secgroups *t, const char *id)
{
    size_t i = index_of(t, id);
    return i < t->n ? t->items[i] : NULL;
}

void
agent_secgroups_watch(struct agent_secgroups *t, void (*fn)(void *ctx), void *ctx)
{
    t->on_change = fn;
    t->on_change_ctx = ctx;
}

static void
changed(const struct agent_secgroups *t)
{
    if (t->on_change)
        t->on_change(t->on_change_ctx);
}

/* Takes g, replacing the group with its id. */
static void
table_put(struct agent_secgroups *t, Nodeagent__V1__SecurityGroup *g)
{
    size_t i = index_of(t, g->id);
    if (i < t->n) {
        nodeagent__v1__security_group__free_unpacked(t->items[i], NULL);
        t->items[i] = g;
        return;
    }
    t->items = na_xrealloc(t->items, (t->n + 1) * sizeof(*t->items));
    t->items[t->n++] = g;
    qsort(t->items, t->n, sizeof(*t->items), cmp_group);
}

static void
table_remove(struct agent_secgroups *t, const char *id)
{
    size_t i = index_of(t, id);
    if (i == t->n)
        return;
    nodeagent__v1__security_group__free_unpacked(t->items[i], NULL);
    memmove(&t->items[i], &t->items[i + 1], (t->n - i - 1) * sizeof(*t->items));
    t->n--;
}

void
agent_secgroups_clear(struct agent_secgroups *t)
{
    for (size_t i = 0; i < t->n; i++)
        nodeagent__v1__security_group__free_unpacked(t->items[i], NULL);
    free(t->items);
    t->items = NULL;
    t->n = 0;
}

static int
load_one(const char *id, const struct agent_blob *body, void *ctx)
{
    Nodeagent__V1__SecurityGroup *g =
        nodeagent__v1__security_group__unpack(NULL, body->size, body->data);
    if (!g || strcmp(g->id ? g->id : "", id) != 0) {
        /* Recorded after it decoded once: the store is damaged.  Without it the group's
         * ports keep the rules of their other groups (or the default). */
        na_log(NA_LOG_ERROR, NULL, "recorded security group does not decode; ignoring it",
               "group=%s", id);
        if (g)
            nodeagent__v1__security_group__free_unpacked(g, NULL);
        return 0;
    }
    table_put(ctx, g);
    return 0;
}

int
agent_secgroups_load(struct agent_secgroups *t, struct agent_store *store, struct na_error **err)
{
    return agent_store_secgroup_load(store, load_one, t, err);
}

/* NOT_FOUND at field: what names a thing this node does not have. */
static int
not_found(struct na_error **err, const char *field, const char *what)
{
    int ret = na_error_quiet(err, NA_CODE_NOT_FOUND, ENOENT, "%s: %s", field, what);
    if (err && *err && !(*err)->field)
        (*err)->field = na_xstrdup(field);
    return ret;
}

static int
group_not_found(struct na_error **err, const char *field, const char *id)
{
    cleanup_free char *what =
        na_xasprintf("security group `%s` is not on this node; put it first", id);
    return not_found(err, field, what);
}

int
agent_secgroups_check_nics(const struct agent_secgroups *t, const Nodeagent__V1__InstanceSpec *spec,
                           const char *prefix, struct na_error **err)
{
    for (size_t k = 0; k < spec->n_nics; k++) {
        const Nodeagent__V1__Nic *nic = spec->nics[k];
        for (size_t j = 0; j < nic->n_security_groups; j++) {
            if (agent_secgroups_find(t, nic->security_groups[j]))
                continue;
            char field[128];
            snprintf(field, sizeof(field), "%s.nics[%zu].security_groups[%zu]", prefix, k, j);
            return group_not_found(err, field, nic->security_groups[j]);
        }
    }
    return 0;
}

/* --- the view net/ovs takes -------------------------------------------------------------- */

static uint8_t
ip_protocol(Nodeagent__V1__IpProtocol p)
{
    switch (p) {
    case NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_TCP:
        return 6;
    case NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_UDP:
        return 17;
    case NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_ICMP:
        return 1;
    default:
        return 0;
    }
}

void
agent_secgroups_view(const struct agent_secgroups *t, struct agent_secgroups_view *out)
{
    out->groups = na_xcalloc(t->n + 1, sizeof(*out->groups));
    out->n = t->n;
    for (size_t i = 0; i < t->n; i++) {
        const Nodeagent__V1__SecurityGroup *g = t->items[i];
        struct ovs_sg_rule *rules = na_xcalloc(g->n_rules + 1, sizeof(*rules));
        for (size_t r = 0; r < g->n_rules; r++) {
            const Nodeagent__V1__SecurityGroupRule *x = g->rules[r];
            rules[r] = (struct ovs_sg_rule){
                .egress = x->direction == NODEAGENT__V1__DIRECTION__DIRECTION_EGRESS,
                .ipv6 = x->ethertype == NODEAGENT__V1__ETHER_TYPE__ETHER_TYPE_IPV6,
                .protocol = ip_protocol(x->protocol),
                .port_min = (uint16_t)x->port_range_min,
                .port_max = (uint16_t)x->port_range_max,
                .icmp_typed = x->icmp != NULL,
                .icmp_coded = x->icmp && x->icmp->match_code,
                .icmp_type = x->icmp ? (uint8_t)x->icmp->type : 0,
                .icmp_code = x->icmp ? (uint8_t)x->icmp->code : 0,
                .remote_cidr = x->remote_cidr,
                .remote_group = x->remote_group,
            };
        }
        out->groups[i] = (struct ovs_sg){g->id, rules, g->n_rules,
                                         (const char *const *)g->member_ips, g->n_member_ips};
    }
}

void
agent_secgroups_view_free(struct agent_secgroups_view *v)
{
    for (size_t i = 0; i < v->n; i++)
        free((struct ovs_sg_rule *)v->groups[i].rules);
    free(v->groups);
    v->groups = NULL;
    v->n = 0;
}

/* --- security_group_put ------------------------------------------------------------------ */

static int
finish_put(struct agent *a, struct agent_op *op, struct na_error **err)
{
    if (op->err)
        return 0;
    const Nodeagent__V1__SecurityGroup *g = op->env->security_group_put->group;
    size_t size = nodeagent__v1__security_group__get_packed_size(g);
    cleanup_free uint8_t *buf = na_xmalloc(size + 1);
    nodeagent__v1__security_group__pack(g, buf);
    struct agent_blob body = {buf, size};
    int ret = agent_store_secgroup_put(a->store, g->id, &body, err);
    if (ret < 0)
        return ret;
    Nodeagent__V1__SecurityGroup *copy = nodeagent__v1__security_group__unpack(NULL, size, buf);
    if (!copy)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "security group %s does not decode again",
                            g->id);
    table_put(a->secgroups, copy);
    changed(a->secgroups);
    na_log(NA_LOG_INFO, &(struct na_log_ctx){.request_id = op->request_id}, "security group put",
           "group=%s rules=%zu members=%zu", g->id, g->n_rules, g->n_member_ips);
    return 0;
}

const struct agent_handler agent_handle_security_group_put = {NULL, NULL, finish_put};

/* --- security_group_delete --------------------------------------------------------------- */

/* A group in use by a port of this node stays: its ports would silently fall back to other
 * rules.  Deleting a group the node does not have is done already. */
static int
prepare_delete(struct agent *a, struct agent_op *op, struct na_error **err)
{
    const char *id = op->env->security_group_delete->group_id;
    if (!agent_secgroups_find(a->secgroups, id)) {
        op->noop = true;
        return 0;
    }
    for (size_t i = 0; i < a->instances.n; i++) {
        const Nodeagent__V1__InstanceSpec *spec = a->instances.items[i]->spec;
        for (size_t k = 0; k < spec->n_nics; k++)
            for (size_t j = 0; j < spec->nics[k]->n_security_groups; j++)
                if (strcmp(spec->nics[k]->security_groups[j], id) == 0)
                    return na_error_quiet(err, NA_CODE_CONFLICT, EBUSY,
                                          "security group %s is a group of port %s of instance "
                                          "%s; change the port's groups first",
                                          id, spec->nics[k]->port_id, spec->uuid);
    }
    return 0;
}

static int
finish_delete(struct agent *a, struct agent_op *op, struct na_error **err)
{
    if (op->err || op->noop)
        return 0;
    const char *id = op->env->security_group_delete->group_id;
    int ret = agent_store_secgroup_delete(a->store, id, err);
    if (ret < 0)
        return ret;
    table_remove(a->secgroups, id);
    changed(a->secgroups);
    na_log(NA_LOG_INFO, &(struct na_log_ctx){.request_id = op->request_id},
           "security group deleted", "group=%s", id);
    return 0;
}

const struct agent_handler agent_handle_security_group_delete = {prepare_delete, NULL,
                                                                 finish_delete};

/* --- port_security_groups ---------------------------------------------------------------- */

static Nodeagent__V1__Nic *
find_port(struct agent *a, const char *port_id, struct agent_instance **inst)
{
    for (size_t i = 0; i < a->instances.n; i++) {
        Nodeagent__V1__InstanceSpec *spec = a->instances.items[i]->spec;
        for (size_t k = 0; k < spec->n_nics; k++)
            if (strcmp(spec->nics[k]->port_id, port_id) == 0) {
                *inst = a->instances.items[i];
                return spec->nics[k];
            }
    }
    return NULL;
}

static int
prepare_port(struct agent *a, struct agent_op *op, struct na_error **err)
{
    const Nodeagent__V1__PortSecurityGroupsRequest *m = op->env->port_security_groups;
    struct agent_instance *inst = NULL;
    if (!find_port(a, m->port_id, &inst)) {
        cleanup_free char *what = na_xasprintf("no instance on this node has port %s", m->port_id);
        return not_found(err, "port_security_groups.port_id", what);
    }
    /* Its events and log lines name the instance the port belongs to. */
    free(op->instance);
    op->instance = na_xstrdup(inst->uuid);
    for (size_t j = 0; j < m->n_security_groups; j++) {
        if (agent_secgroups_find(a->secgroups, m->security_groups[j]))
            continue;
        char field[96];
        snprintf(field, sizeof(field), "port_security_groups.security_groups[%zu]", j);
        return group_not_found(err, field, m->security_groups[j]);
    }
    return 0;
}

static int
finish_port(struct agent *a, struct agent_op *op, struct na_error **err)
{
    if (op->err)
        return 0;
    const Nodeagent__V1__PortSecurityGroupsRequest *m = op->env->port_security_groups;
    struct agent_instance *inst = NULL;
    Nodeagent__V1__Nic *nic = find_port(a, m->port_id, &inst);
    if (!nic)
        return 0; /* deleted meanwhile: nothing to change */
    for (size_t j = 0; j < nic->n_security_groups; j++)
        free(nic->security_groups[j]);
    free(nic->security_groups);
    nic->security_groups = na_xcalloc(m->n_security_groups + 1, sizeof(*nic->security_groups));
    for (size_t j = 0; j < m->n_security_groups; j++)
        nic->security_groups[j] = na_xstrdup(m->security_groups[j]);
    nic->n_security_groups = m->n_security_groups;
    na_log(NA_LOG_INFO, &(struct na_log_ctx){.request_id = op->request_id, .instance = inst->uuid},
           "port security groups set", "port=%s groups=%zu", m->port_id, m->n_security_groups);
    return agent_instance_save(a->store, inst, err);
}

const struct agent_handler agent_handle_port_security_groups = {prepare_port, NULL, finish_port};
