/* A new instance's record (create, clone, an incoming migration): the checks against the
 * instance table, the claim, the uid, the record.  On the loop. */
#include "agent/ops/provision-private.h"
#include "agent/observed/uids.h"
#include "agent/ops/secgroups.h"
#include "agent/outputs/capacity.h"

#include <errno.h>
#include <string.h>

int
provision_prepare_new(struct agent *a, struct agent_op *op, const Nodeagent__V1__InstanceSpec *spec,
                      const char *field, Nodeagent__V1__InstanceState observed,
                      struct na_error **err)
{
    struct agent_instance *inst = agent_instances_find(&a->instances, spec->uuid);
    if (inst && strcmp(inst->create_request_id, op->request_id) != 0)
        return na_error_quiet(err, NA_CODE_ALREADY_EXISTS, EEXIST,
                              "instance %s already exists on node %s", spec->uuid, a->cfg->node_id);
    struct agent_instance *same_name =
        agent_instances_find_name(&a->instances, spec->tenant_id, spec->name);
    if (same_name && same_name != inst)
        return na_error_quiet(err, NA_CODE_ALREADY_EXISTS, EEXIST,
                              "tenant %s already has an instance named `%s` (%s)", spec->tenant_id,
                              spec->name, same_name->uuid);
    int room = agent_disk_room_check(a, agent_request_kind_name(op->kind), err);
    if (room < 0)
        return room;
    if (a->host.qemu_gid == (gid_t)-1)
        return na_error_quiet(err, NA_CODE_HYPERVISOR, ENOENT,
                              "group `%s` ([instances] qemu_group) does not exist on this host; "
                              "is libvirt installed?",
                              a->cfg->qemu_group);

    op->spec = agent_spec_copy(spec);
    if (inst) {
        /* The same create, interrupted: finish that instance. */
        op->uid = inst->uid;
        inst->task = agent_request_kind_name(op->kind);
        op->owns_record = true;
        return 0;
    }
    const Nodeagent__V1__Flavor *f = spec->flavor;
    struct agent_claim need = {f->vcpus, f->memory_mib, f->root_disk_gib};
    int ret = agent_net_check_nics(a, spec, field, err);
    if (ret == 0)
        ret = agent_secgroups_check_nics(a->secgroups, spec, field, err);
    if (ret < 0 || (ret = agent_capacity_admit(a, spec->uuid, &need, err)) < 0)
        return ret;
    int64_t uid = -1;
    if ((ret = agent_uids_allocate(a, &uid, err)) < 0)
        return ret;
    inst = na_xcalloc(1, sizeof(*inst));
    snprintf(inst->uuid, sizeof(inst->uuid), "%s", spec->uuid);
    inst->spec = agent_spec_copy(spec);
    inst->desired = S(RUNNING);
    inst->observed = observed;
    inst->task = agent_request_kind_name(op->kind);
    inst->uid = uid;
    inst->image_sha256 = na_xstrdup(spec->image->sha256);
    inst->create_request_id = na_xstrdup(op->request_id);
    inst->created_ms = na_now_ms();
    /* A uuid deleted before and created again: its old tombstone must never let
     * reconciliation take the new instance's domain for the old one's remains. */
    if ((ret = agent_store_tombstone_delete(a->store, inst->uuid, err)) < 0 ||
        (ret = agent_instance_save(a->store, inst, err)) < 0) {
        agent_instance_free(inst);
        return ret;
    }
    agent_instances_add(&a->instances, inst);
    op->uid = uid;
    op->owns_record = true;
    return 0;
}
