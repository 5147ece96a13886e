/* The node's own facts for its capacity report: KSM's state, the traits the host offers,
 * and the uuid of its resource provider (kept in the store's meta table). */
#include "agent/outputs/capacity-private.h"
#include "agent/core/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

/* A number from a one-line sysfs file; false when it cannot be read. */
static bool
read_sysfs_u64(const char *name, uint64_t *out)
{
    cleanup_free char *path = na_xasprintf("%s/%s", KSM_DIR, name);
    cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
    char buf[32];
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
    if (n <= 0)
        return false;
    buf[n] = '\0';
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf)
        return false;
    *out = v;
    return true;
}

void
capacity_read_ksm(bool *on, uint64_t *pages_sharing)
{
    uint64_t run = 0;
    *on = read_sysfs_u64("run", &run) && run == 1;
    if (!*on || !read_sysfs_u64("pages_sharing", pages_sharing))
        *pages_sharing = 0;
}

int
capacity_ksm_turn_on(struct na_error **err)
{
    cleanup_close int fd = open(KSM_DIR "/run", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "1\n", 2) != 2)
        return na_error_set(err, NA_CODE_INTERNAL, errno, "turn KSM on (%s/run)", KSM_DIR);
    return 0;
}

/* Sorted and without duplicates, into a new NULL-terminated array. */
static char **
merge_traits(char **a, size_t na, char **b, size_t nb, size_t *n)
{
    char **out = na_xcalloc(na + nb + 1, sizeof(*out));
    size_t i = 0, j = 0, k = 0;
    while (i < na || j < nb) {
        int cmp = i == na ? 1 : j == nb ? -1 : strcmp(a[i], b[j]);
        const char *next = cmp <= 0 ? a[i] : b[j];
        if (cmp <= 0)
            i++;
        if (cmp >= 0)
            j++;
        if (!k || strcmp(out[k - 1], next) != 0)
            out[k++] = na_xstrdup(next);
    }
    *n = k;
    return out;
}

/* The CPU's features and what the node can do as the agent builds its guests: x86 guests
 * (the host's architecture), qcow2 and raw images, virtio disks and NICs, no graphics,
 * BIOS boot; plus the operator's custom traits. */
int
capacity_read_traits(struct agent_capacity *c, struct na_error **err)
{
    struct utsname u;
    uname(&u);
    static const char *const image_types[] = {"qcow2", "raw"};
    static const char *const vif_models[] = {"virtio"};
    static const char *const graphics[] = {"none"};
    static const char *const buses[] = {"virtio"};
    static const char *const firmwares[] = {"bios"};
    const struct agent_config *cfg = c->a->cfg;
    struct sched_compute_caps caps = {
        .arch = strcmp(u.machine, "x86_64") == 0 ? "x86_64" : NULL,
        .image_types = image_types,
        .n_image_types = NA_ARRAY_SIZE(image_types),
        .vif_models = vif_models,
        .n_vif_models = NA_ARRAY_SIZE(vif_models),
        .graphics_models = graphics,
        .n_graphics_models = NA_ARRAY_SIZE(graphics),
        .storage_buses = buses,
        .n_storage_buses = NA_ARRAY_SIZE(buses),
        .firmwares = firmwares,
        .n_firmwares = NA_ARRAY_SIZE(firmwares),
        .custom_traits = (const char *const *)cfg->custom_traits,
        .n_custom_traits = cfg->n_custom_traits,
    };
    char **cpu = NULL, **compute = NULL;
    size_t n_cpu = 0, n_compute = 0;
    int ret = sched_cpu_traits("/proc/cpuinfo", &cpu, &n_cpu, err);
    if (ret == 0)
        ret = sched_compute_traits(&caps, &compute, &n_compute, err);
    if (ret == 0)
        c->traits = merge_traits(cpu, n_cpu, compute, n_compute, &c->n_traits);
    sched_traits_free(cpu);
    sched_traits_free(compute);
    return ret;
}

int
capacity_load_provider_uuid(struct agent_capacity *c, struct na_error **err)
{
    cleanup_free char *stored = NULL;
    int ret = agent_store_meta_get(c->a->store, META_PROVIDER_UUID, &stored, err);
    if (ret == 0 && na_uuid_is_valid(stored)) {
        snprintf(c->rp_uuid, sizeof(c->rp_uuid), "%s", stored);
        return 0;
    }
    if (ret < 0 && ret != -ENOENT)
        return ret;
    na_uuid_generate(c->rp_uuid);
    return agent_store_meta_put(c->a->store, META_PROVIDER_UUID, c->rp_uuid, err);
}
