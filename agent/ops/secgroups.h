/* The security groups put on this node (docs/protocol.md, "Security groups"): the table the
 * main loop owns, mirrored in the store's security_groups table, the handlers of
 * security_group_put, security_group_delete and port_security_groups, and the groups as
 * net/ovs takes them.
 *
 * Threading: the main loop only.
 */
#ifndef NODEAGENT_AGENT_SECGROUPS_H
#define NODEAGENT_AGENT_SECGROUPS_H

#include "agent/core/store.h"
#include "common/common.h"
#include "nodeagent.pb-c.h"

struct ovs_sg;

struct agent_secgroups {
    Nodeagent__V1__SecurityGroup **items; /* owned, by id */
    size_t n;
    void (*on_change)(void *ctx); /* told after a group is put or deleted */
    void *on_change_ctx;
};

/* Calls fn(ctx) after every change of the table from now on (outputs/outputs.c). */
void agent_secgroups_watch(struct agent_secgroups *t, void (*fn)(void *ctx), void *ctx);

int agent_secgroups_load(struct agent_secgroups *t, struct agent_store *store,
                         struct na_error **err);
void agent_secgroups_clear(struct agent_secgroups *t);
const Nodeagent__V1__SecurityGroup *agent_secgroups_find(const struct agent_secgroups *t,
                                                         const char *id);

/* NOT_FOUND naming the field (under prefix: "create.spec") when a NIC of spec names a group
 * this node does not have: groups are put before the ports that use them. */
int agent_secgroups_check_nics(const struct agent_secgroups *t,
                               const Nodeagent__V1__InstanceSpec *spec, const char *prefix,
                               struct na_error **err);

/* The groups as net/ovs takes them: *out points into t and into *owned (free with
 * agent_secgroups_view_free); valid while t does not change. */
struct agent_secgroups_view {
    struct ovs_sg *groups;
    size_t n;
};
void agent_secgroups_view(const struct agent_secgroups *t, struct agent_secgroups_view *out);
void agent_secgroups_view_free(struct agent_secgroups_view *v);

#endif
