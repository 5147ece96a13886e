/* scheduler-client: the host's VCPU, MEMORY_MB and DISK_GB as Placement inventory records. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>
#include <sys/statvfs.h>

#include "scheduler-client/scheduler.h"

/* Placement's columns are signed 32-bit. */
#define PLACEMENT_MAX_INT 2147483647ULL

static char *
root_path(const struct sched_host_config *cfg, const char *path)
{
    return na_xasprintf("%s%s", cfg->root ? cfg->root : "", path);
}

/* Counts the CPUs of a kernel cpu list ("0-3,8,10-11\n"). */
static int
parse_cpu_list(const char *s, uint64_t *count)
{
    uint64_t n = 0;
    const char *q = s;
    while (*q && *q != '\n') {
        char *end;
        if (*q < '0' || *q > '9')
            return -1;
        errno = 0;
        unsigned long a = strtoul(q, &end, 10);
        if (end == q || errno)
            return -1;
        unsigned long b = a;
        q = end;
        if (*q == '-') {
            q++;
            if (*q < '0' || *q > '9')
                return -1;
            b = strtoul(q, &end, 10);
            if (end == q || errno || b < a)
                return -1;
            q = end;
        }
        n += b - a + 1;
        if (*q == ',')
            q++;
        else if (*q && *q != '\n')
            return -1;
    }
    if (n == 0)
        return -1;
    *count = n;
    return 0;
}

static int
read_vcpus(const struct sched_host_config *cfg, uint64_t *out, struct na_error **err)
{
    cleanup_free char *path = root_path(cfg, "/sys/devices/system/cpu/online");
    cleanup_fclose FILE *f = fopen(path, "re");
    if (!f) {
        if (cfg->root && *cfg->root)
            return na_error_set(err, NA_CODE_INTERNAL, errno, "open %s", path);
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        if (n < 1)
            return na_error_set(err, NA_CODE_INTERNAL, errno, "sysconf(_SC_NPROCESSORS_ONLN)");
        *out = (uint64_t)n;
        return 0;
    }
    char line[4096];
    if (!fgets(line, sizeof(line), f) || parse_cpu_list(line, out) < 0)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "%s: not a cpu list", path);
    return 0;
}

static int
read_memory_mb(const struct sched_host_config *cfg, uint64_t *out, struct na_error **err)
{
    cleanup_free char *path = root_path(cfg, "/proc/meminfo");
    cleanup_fclose FILE *f = fopen(path, "re");
    if (!f)
        return na_error_set(err, NA_CODE_INTERNAL, errno, "open %s", path);
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        uint64_t kib;
        char unit[8];
        if (strncmp(line, "MemTotal:", 9) != 0)
            continue;
        if (sscanf(line + 9, "%" SCNu64 " %7s", &kib, unit) != 2 || strcmp(unit, "kB") != 0)
            return na_error_set(err, NA_CODE_INTERNAL, 0, "%s: cannot parse MemTotal", path);
        *out = kib / 1024;
        return 0;
    }
    return na_error_set(err, NA_CODE_INTERNAL, 0, "%s: no MemTotal line", path);
}

static int
read_disk_gb(const struct sched_host_config *cfg, uint64_t *out, struct na_error **err)
{
    if (!cfg->disk_path || !*cfg->disk_path)
        return na_error_field(err, "disk_path", "the instances filesystem path is not set");
    struct statvfs st;
    if (statvfs(cfg->disk_path, &st) < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "statvfs %s", cfg->disk_path);
    *out = (uint64_t)st.f_blocks * st.f_frsize >> 30;
    return 0;
}

static int
fill(struct sched_inventory *inv, const char *rc, const char *field, uint64_t total,
     const struct sched_class_config *cc, struct na_error **err)
{
    char f[64];
    double ratio = cc->allocation_ratio == 0 ? 1.0 : cc->allocation_ratio;
    if (!isfinite(ratio) || ratio < 0 || ratio > 3.4e38) {
        snprintf(f, sizeof(f), "%s.allocation_ratio", field);
        return na_error_field(err, f, "allocation ratio %g is not a positive number", ratio);
    }
    if (total > PLACEMENT_MAX_INT)
        total = PLACEMENT_MAX_INT;
    if (cc->reserved > total && total > 0) {
        snprintf(f, sizeof(f), "%s.reserved", field);
        return na_error_field(err, f, "%" PRIu64 " %s reserved, but the host has %" PRIu64,
                              cc->reserved, rc, total);
    }
    if (total == 0)
        return 0;
    inv->resources[inv->n_resources++] = (struct sched_resource){
        .resource_class = rc,
        .total = total,
        .reserved = cc->reserved,
        .min_unit = 1,
        .max_unit = total,
        .step_size = 1,
        .allocation_ratio = ratio,
    };
    return 0;
}

int
sched_inventory_read(const struct sched_host_config *cfg, struct sched_inventory *out,
                     struct na_error **err)
{
    uint64_t vcpus = 0, memory_mb = 0, disk_gb = 0;
    int r;
    if ((r = read_vcpus(cfg, &vcpus, err)) < 0 || (r = read_memory_mb(cfg, &memory_mb, err)) < 0 ||
        (r = read_disk_gb(cfg, &disk_gb, err)) < 0)
        return r;
    struct sched_inventory inv = {0};
    if ((r = fill(&inv, SCHED_RC_VCPU, "vcpu", vcpus, &cfg->vcpu, err)) < 0 ||
        (r = fill(&inv, SCHED_RC_MEMORY_MB, "memory_mb", memory_mb, &cfg->memory_mb, err)) < 0 ||
        (r = fill(&inv, SCHED_RC_DISK_GB, "disk_gb", disk_gb, &cfg->disk_gb, err)) < 0)
        return r;
    *out = inv;
    return 0;
}

const struct sched_resource *
sched_inventory_find(const struct sched_inventory *inv, const char *resource_class)
{
    for (size_t i = 0; i < inv->n_resources; i++)
        if (strcmp(inv->resources[i].resource_class, resource_class) == 0)
            return &inv->resources[i];
    return NULL;
}
