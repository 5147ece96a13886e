#include "agent/observed/instances.h"
#include "agent/core/store_snapshots.h"

#include <errno.h>
#include <string.h>

const char *
agent_state_name(Nodeagent__V1__InstanceState state)
{
    const ProtobufCEnumValue *v =
        protobuf_c_enum_descriptor_get_value(&nodeagent__v1__instance_state__descriptor, state);
    /* The C names carry the prefix INSTANCE_STATE_; the short name is what people read. */
    return v ? v->name + strlen("INSTANCE_STATE_") : "UNSPECIFIED";
}

Nodeagent__V1__InstanceState
agent_state_parse(const char *name)
{
    const ProtobufCEnumDescriptor *d = &nodeagent__v1__instance_state__descriptor;
    for (unsigned i = 0; i < d->n_values; i++)
        if (strcmp(d->values[i].name + strlen("INSTANCE_STATE_"), name) == 0)
            return (Nodeagent__V1__InstanceState)d->values[i].value;
    return NODEAGENT__V1__INSTANCE_STATE__INSTANCE_STATE_UNSPECIFIED;
}

struct agent_instance *
agent_instances_find(const struct agent_instances *t, const char *uuid)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->items[i]->uuid, uuid) == 0)
            return t->items[i];
    return NULL;
}

bool
agent_instances_undecodable(const struct agent_instances *t, const char *uuid)
{
    for (size_t i = 0; i < t->n_undecodable; i++)
        if (strcmp(t->undecodable[i], uuid) == 0)
            return true;
    return false;
}

struct agent_instance *
agent_instances_find_name(const struct agent_instances *t, const char *tenant_id, const char *name)
{
    for (size_t i = 0; i < t->n; i++) {
        const Nodeagent__V1__InstanceSpec *s = t->items[i]->spec;
        if (strcmp(s->tenant_id, tenant_id) == 0 && strcmp(s->name, name) == 0)
            return t->items[i];
    }
    return NULL;
}

void
agent_instances_add(struct agent_instances *t, struct agent_instance *inst)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16;
        t->items = na_xrealloc(t->items, t->cap * sizeof(*t->items));
    }
    t->items[t->n++] = inst;
    inst->table = t;
    agent_instance_touch(inst);
}

void
agent_instances_watch(struct agent_instances *t, void (*fn)(void *ctx), void *ctx)
{
    t->on_change = fn;
    t->on_change_ctx = ctx;
}

void
agent_instance_touch(struct agent_instance *inst)
{
    struct agent_instances *t = inst->table;
    if (t && t->on_change)
        t->on_change(t->on_change_ctx);
}

void
agent_instance_free(struct agent_instance *inst)
{
    if (!inst)
        return;
    if (inst->spec)
        nodeagent__v1__instance_spec__free_unpacked(inst->spec, NULL);
    free(inst->image_sha256);
    free(inst->create_request_id);
    free(inst);
}

void
agent_instances_remove(struct agent_instances *t, const char *uuid)
{
    for (size_t i = 0; i < t->n; i++) {
        if (strcmp(t->items[i]->uuid, uuid) == 0) {
            agent_instance_free(t->items[i]);
            t->items[i] = t->items[--t->n];
            if (t->on_change)
                t->on_change(t->on_change_ctx);
            return;
        }
    }
}

void
agent_instances_clear(struct agent_instances *t)
{
    for (size_t i = 0; i < t->n; i++)
        agent_instance_free(t->items[i]);
    free(t->items);
    free(t->undecodable);
    *t = (struct agent_instances){0};
}

static int
load_one(const struct agent_instance_rec *r, void *ctx)
{
    struct agent_instances *t = ctx;
    Nodeagent__V1__InstanceSpec *spec =
        nodeagent__v1__instance_spec__unpack(NULL, r->spec.size, r->spec.data);
    if (!spec) {
        na_log(NA_LOG_ERROR, NULL,
               "stored instance spec does not decode; skipping it (its domain, if any, is "
               "reported as an orphan and left alone)",
               "instance=%s", r->uuid);
        if (na_uuid_is_valid(r->uuid)) {
            t->undecodable =
                na_xrealloc(t->undecodable, (t->n_undecodable + 1) * sizeof(*t->undecodable));
            memcpy(t->undecodable[t->n_undecodable++], r->uuid, 37);
        }
        return 0;
    }
    struct agent_instance *inst = na_xcalloc(1, sizeof(*inst));
    snprintf(inst->uuid, sizeof(inst->uuid), "%s", r->uuid);
    inst->spec = spec;
    inst->desired = agent_state_parse(r->desired_state);
    inst->observed = agent_state_parse(r->observed_state);
    inst->uid = r->uid;
    inst->image_sha256 = na_xstrdup(r->image_sha256);
    inst->create_request_id = na_xstrdup(r->create_request_id);
    inst->created_ms = r->created_ms;
    inst->updated_ms = r->updated_ms;
    agent_instances_add(t, inst);
    return 0;
}

int
agent_instances_load(struct agent_instances *t, struct agent_store *store, struct na_error **err)
{
    int ret = agent_store_instance_load(store, load_one, t, err);
    for (size_t i = 0; ret == 0 && i < t->n; i++) {
        int64_t bytes = agent_store_snapshot_bytes(store, t->items[i]->uuid);
        if (bytes < 0)
            return na_error_set(err, NA_CODE_INTERNAL, EIO, "read the snapshots of %s",
                                t->items[i]->uuid);
        t->items[i]->snapshot_gb = agent_snapshot_gb((uint64_t)bytes);
    }
    return ret;
}

int
agent_instance_save(struct agent_store *store, struct agent_instance *inst, struct na_error **err)
{
    size_t size = nodeagent__v1__instance_spec__get_packed_size(inst->spec);
    cleanup_free uint8_t *buf = na_xmalloc(size);
    nodeagent__v1__instance_spec__pack(inst->spec, buf);
    inst->updated_ms = na_now_ms();
    struct agent_instance_rec r = {
        .uuid = inst->uuid,
        .name = inst->spec->name,
        .tenant_id = inst->spec->tenant_id,
        .spec = {.data = buf, .size = size},
        .desired_state = (char *)agent_state_name(inst->desired),
        .observed_state = (char *)agent_state_name(inst->observed),
        .task = (char *)inst->task,
        .uid = inst->uid,
        .image_sha256 = inst->image_sha256,
        .create_request_id = inst->create_request_id,
        .created_ms = inst->created_ms,
        .updated_ms = inst->updated_ms,
    };
    agent_instance_touch(inst);
    return agent_store_instance_put(store, &r, err);
}

Nodeagent__V1__InstanceSpec *
agent_spec_copy(const Nodeagent__V1__InstanceSpec *spec)
{
    size_t size = nodeagent__v1__instance_spec__get_packed_size(spec);
    cleanup_free uint8_t *buf = na_xmalloc(size);
    nodeagent__v1__instance_spec__pack(spec, buf);
    Nodeagent__V1__InstanceSpec *copy = nodeagent__v1__instance_spec__unpack(NULL, size, buf);
    if (!copy)
        abort(); /* it was packed from a valid message a moment ago */
    return copy;
}

void
agent_instance_claim(const struct agent_instance *inst, struct agent_claim *out)
{
    const Nodeagent__V1__Flavor *f = inst->spec ? inst->spec->flavor : NULL;
    *out = (struct agent_claim){0};
    if (f)
        *out = (struct agent_claim){f->vcpus, f->memory_mib, f->root_disk_gib};
    out->vcpus = NA_MAX(out->vcpus, inst->resizing_to.vcpus);
    out->memory_mb = NA_MAX(out->memory_mb, inst->resizing_to.memory_mb);
    out->disk_gb = NA_MAX(out->disk_gb, inst->resizing_to.disk_gb) + inst->snapshot_gb;
}

uint64_t
agent_snapshot_gb(uint64_t bytes)
{
    return (bytes + (1ull << 30) - 1) >> 30;
}
