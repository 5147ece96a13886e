/* scheduler-client: CPU flags and node capabilities as os-traits names.
 *
 * Every trait name below is copied from os-traits 2.9 (python3-os-traits) and spelled as it
 * spells it; tests/system/test_traits_names.py checks each quoted HW_ and COMPUTE_ name of
 * this file against os_traits.get_traits(), so a typo fails the tests, not Placement. */
#include <errno.h>
#include <string.h>

#include "scheduler-client/scheduler.h"

/* /proc/cpuinfo flag (the kernel's spelling) -> trait.  Flags whose cpuinfo name does not
 * say which vendor's feature it is (ssbd, ibpb, spec_ctrl) are left out on purpose. */
static const struct {
    const char *flag;
    const char *trait;
} cpu_flags[] = {
    {"3dnow", "HW_CPU_X86_3DNOW"},
    {"abm", "HW_CPU_X86_ABM"},
    {"aes", "HW_CPU_X86_AESNI"},
    {"amd_ssbd", "HW_CPU_X86_AMD_SSBD"},
    {"avx", "HW_CPU_X86_AVX"},
    {"avx2", "HW_CPU_X86_AVX2"},
    {"avx512_bitalg", "HW_CPU_X86_AVX512BITALG"},
    {"avx512_vbmi2", "HW_CPU_X86_AVX512VBMI2"},
    {"avx512_vnni", "HW_CPU_X86_AVX512VNNI"},
    {"avx512_vpopcntdq", "HW_CPU_X86_AVX512VPOPCNTDQ"},
    {"avx512bw", "HW_CPU_X86_AVX512BW"},
    {"avx512cd", "HW_CPU_X86_AVX512CD"},
    {"avx512dq", "HW_CPU_X86_AVX512DQ"},
    {"avx512er", "HW_CPU_X86_AVX512ER"},
    {"avx512f", "HW_CPU_X86_AVX512F"},
    {"avx512ifma", "HW_CPU_X86_AVX512IFMA"},
    {"avx512pf", "HW_CPU_X86_AVX512PF"},
    {"avx512vbmi", "HW_CPU_X86_AVX512VBMI"},
    {"avx512vl", "HW_CPU_X86_AVX512VL"},
    {"bmi1", "HW_CPU_X86_BMI"},
    {"bmi2", "HW_CPU_X86_BMI2"},
    {"f16c", "HW_CPU_X86_F16C"},
    {"fma", "HW_CPU_X86_FMA3"},
    {"fma4", "HW_CPU_X86_FMA4"},
    {"gfni", "HW_CPU_X86_AVX512GFNI"},
    {"md_clear", "HW_CPU_X86_INTEL_MD_CLEAR"},
    {"mmx", "HW_CPU_X86_MMX"},
    {"mpx", "HW_CPU_X86_MPX"},
    {"pcid", "HW_CPU_X86_INTEL_PCID"},
    {"pclmulqdq", "HW_CPU_X86_CLMUL"},
    {"pdpe1gb", "HW_CPU_X86_PDPE1GB"},
    {"pni", "HW_CPU_X86_SSE3"},
    {"rtm", "HW_CPU_X86_TSX"},
    {"sev", "HW_CPU_X86_AMD_SEV"},
    {"sgx", "HW_CPU_X86_SGX"},
    {"sha_ni", "HW_CPU_X86_SHA"},
    {"sse", "HW_CPU_X86_SSE"},
    {"sse2", "HW_CPU_X86_SSE2"},
    {"sse4_1", "HW_CPU_X86_SSE41"},
    {"sse4_2", "HW_CPU_X86_SSE42"},
    {"sse4a", "HW_CPU_X86_SSE4A"},
    {"ssse3", "HW_CPU_X86_SSSE3"},
    {"stibp", "HW_CPU_X86_STIBP"},
    {"svm", "HW_CPU_X86_SVM"},
    {"tbm", "HW_CPU_X86_TBM"},
    {"vaes", "HW_CPU_X86_AVX512VAES"},
    {"virt_ssbd", "HW_CPU_X86_AMD_VIRT_SSBD"},
    {"vmx", "HW_CPU_X86_VMX"},
    {"vpclmulqdq", "HW_CPU_X86_AVX512VPCLMULQDQ"},
    {"xop", "HW_CPU_X86_XOP"},
};

struct cap {
    const char *value;
    const char *trait;
};

static const struct cap arches[] = {
    {"aarch64", "COMPUTE_ARCH_AARCH64"}, {"mipsel", "COMPUTE_ARCH_MIPSEL"},
    {"ppc64le", "COMPUTE_ARCH_PPC64LE"}, {"riscv64", "COMPUTE_ARCH_RISCV64"},
    {"s390x", "COMPUTE_ARCH_S390X"},     {"x86_64", "COMPUTE_ARCH_X86_64"},
};

static const struct cap image_types[] = {
    {"aki", "COMPUTE_IMAGE_TYPE_AKI"},     {"ami", "COMPUTE_IMAGE_TYPE_AMI"},
    {"ari", "COMPUTE_IMAGE_TYPE_ARI"},     {"iso", "COMPUTE_IMAGE_TYPE_ISO"},
    {"ploop", "COMPUTE_IMAGE_TYPE_PLOOP"}, {"qcow2", "COMPUTE_IMAGE_TYPE_QCOW2"},
    {"raw", "COMPUTE_IMAGE_TYPE_RAW"},     {"vdi", "COMPUTE_IMAGE_TYPE_VDI"},
    {"vhd", "COMPUTE_IMAGE_TYPE_VHD"},     {"vhdx", "COMPUTE_IMAGE_TYPE_VHDX"},
    {"vmdk", "COMPUTE_IMAGE_TYPE_VMDK"},
};

static const struct cap vif_models[] = {
    {"e1000", "COMPUTE_NET_VIF_MODEL_E1000"},
    {"e1000e", "COMPUTE_NET_VIF_MODEL_E1000E"},
    {"lan9118", "COMPUTE_NET_VIF_MODEL_LAN9118"},
    {"ne2k_pci", "COMPUTE_NET_VIF_MODEL_NE2K_PCI"},
    {"netfront", "COMPUTE_NET_VIF_MODEL_NETFRONT"},
    {"pcnet", "COMPUTE_NET_VIF_MODEL_PCNET"},
    {"rtl8139", "COMPUTE_NET_VIF_MODEL_RTL8139"},
    {"spapr-vlan", "COMPUTE_NET_VIF_MODEL_SPAPR_VLAN"},
    {"sriov", "COMPUTE_NET_VIF_MODEL_SRIOV"},
    {"virtio", "COMPUTE_NET_VIF_MODEL_VIRTIO"},
    {"vmxnet", "COMPUTE_NET_VIF_MODEL_VMXNET"},
    {"vmxnet3", "COMPUTE_NET_VIF_MODEL_VMXNET3"},
};

static const struct cap graphics_models[] = {
    {"bochs", "COMPUTE_GRAPHICS_MODEL_BOCHS"},   {"cirrus", "COMPUTE_GRAPHICS_MODEL_CIRRUS"},
    {"gop", "COMPUTE_GRAPHICS_MODEL_GOP"},       {"none", "COMPUTE_GRAPHICS_MODEL_NONE"},
    {"qxl", "COMPUTE_GRAPHICS_MODEL_QXL"},       {"vga", "COMPUTE_GRAPHICS_MODEL_VGA"},
    {"virtio", "COMPUTE_GRAPHICS_MODEL_VIRTIO"}, {"vmvga", "COMPUTE_GRAPHICS_MODEL_VMVGA"},
    {"xen", "COMPUTE_GRAPHICS_MODEL_XEN"},
};

static const struct cap storage_buses[] = {
    {"fdc", "COMPUTE_STORAGE_BUS_FDC"},   {"ide", "COMPUTE_STORAGE_BUS_IDE"},
    {"lxc", "COMPUTE_STORAGE_BUS_LXC"},   {"sata", "COMPUTE_STORAGE_BUS_SATA"},
    {"scsi", "COMPUTE_STORAGE_BUS_SCSI"}, {"uml", "COMPUTE_STORAGE_BUS_UML"},
    {"usb", "COMPUTE_STORAGE_BUS_USB"},   {"virtio", "COMPUTE_STORAGE_BUS_VIRTIO"},
    {"xen", "COMPUTE_STORAGE_BUS_XEN"},
};

static const struct cap firmwares[] = {
    {"bios", "COMPUTE_FIRMWARE_BIOS"},
    {"uefi", "COMPUTE_FIRMWARE_UEFI"},
};

/* Every provider of a compute node carries it, as Nova's do. */
static const char compute_node_trait[] = "COMPUTE_NODE";

/* A growing list of borrowed names. */
struct names {
    const char **v;
    size_t n, cap;
};

static void
names_add(struct names *l, const char *s)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->v = na_xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = s;
}

static int
cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted, unique copies in a NULL-terminated array. */
static void
names_export(struct names *l, char ***out, size_t *n)
{
    if (l->n)
        qsort(l->v, l->n, sizeof(*l->v), cmp_str);
    char **v = na_xcalloc(l->n + 1, sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < l->n; i++)
        if (k == 0 || strcmp(v[k - 1], l->v[i]) != 0)
            v[k++] = na_xstrdup(l->v[i]);
    *out = v;
    *n = k;
}

void
sched_traits_free(char **traits)
{
    if (!traits)
        return;
    for (char **t = traits; *t; t++)
        free(*t);
    free(traits);
}

int
sched_cpu_traits(const char *cpuinfo_path, char ***out, size_t *n, struct na_error **err)
{
    cleanup_fclose FILE *f = fopen(cpuinfo_path, "re");
    if (!f)
        return na_error_set(err, NA_CODE_INTERNAL, errno, "open %s", cpuinfo_path);
    struct names l = {0};
    char *line = NULL;
    size_t size = 0;
    while (getline(&line, &size, f) > 0) {
        /* "flags\t\t: fpu vme ..." on x86; the first processor speaks for all. */
        if (strncmp(line, "flags", 5) != 0 || !strchr(line, ':'))
            continue;
        char *p = line + 5;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ':')
            continue;
        char *save = NULL;
        for (char *tok = strtok_r(p + 1, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save))
            for (size_t i = 0; i < NA_ARRAY_SIZE(cpu_flags); i++)
                if (strcmp(tok, cpu_flags[i].flag) == 0)
                    names_add(&l, cpu_flags[i].trait);
        break;
    }
    free(line);
    names_export(&l, out, n);
    free(l.v);
    return 0;
}

bool
sched_custom_trait_is_valid(const char *name)
{
    size_t len = strlen(name);
    if (len <= 7 || len > 255 || strncmp(name, "CUSTOM_", 7) != 0)
        return false;
    for (size_t i = 7; i < len; i++)
        if (!((name[i] >= 'A' && name[i] <= 'Z') || (name[i] >= '0' && name[i] <= '9') ||
              name[i] == '_'))
            return false;
    return true;
}

static int
add_caps(struct names *l, const char *field, const struct cap *table, size_t n_table,
         const char *const *values, size_t n_values, struct na_error **err)
{
    for (size_t i = 0; i < n_values; i++) {
        size_t j = 0;
        while (j < n_table && (!values[i] || strcmp(values[i], table[j].value) != 0))
            j++;
        if (j == n_table) {
            char f[64];
            snprintf(f, sizeof(f), "%s[%zu]", field, i);
            return na_error_field(err, f, "%s %s%s%s has no os-traits trait", field,
                                  values[i] ? "\"" : "", values[i] ? values[i] : "(null)",
                                  values[i] ? "\"" : "");
        }
        names_add(l, table[j].trait);
    }
    return 0;
}

int
sched_compute_traits(const struct sched_compute_caps *caps, char ***out, size_t *n,
                     struct na_error **err)
{
    struct names l = {0};
    int r = 0;
    names_add(&l, compute_node_trait);
    if (caps->arch)
        r = add_caps(&l, "arch", arches, NA_ARRAY_SIZE(arches), &caps->arch, 1, err);
    if (r >= 0)
        r = add_caps(&l, "image_types", image_types, NA_ARRAY_SIZE(image_types), caps->image_types,
                     caps->n_image_types, err);
    if (r >= 0)
        r = add_caps(&l, "vif_models", vif_models, NA_ARRAY_SIZE(vif_models), caps->vif_models,
                     caps->n_vif_models, err);
    if (r >= 0)
        r = add_caps(&l, "graphics_models", graphics_models, NA_ARRAY_SIZE(graphics_models),
                     caps->graphics_models, caps->n_graphics_models, err);
    if (r >= 0)
        r = add_caps(&l, "storage_buses", storage_buses, NA_ARRAY_SIZE(storage_buses),
                     caps->storage_buses, caps->n_storage_buses, err);
    if (r >= 0)
        r = add_caps(&l, "firmwares", firmwares, NA_ARRAY_SIZE(firmwares), caps->firmwares,
                     caps->n_firmwares, err);
    for (size_t i = 0; r >= 0 && i < caps->n_custom_traits; i++) {
        const char *t = caps->custom_traits[i];
        if (!t || !sched_custom_trait_is_valid(t)) {
            char f[64];
            snprintf(f, sizeof(f), "custom_traits[%zu]", i);
            r = na_error_field(err, f,
                               "custom trait %.64s%s is not ^CUSTOM_[A-Z0-9_]+$ of at most 255 "
                               "characters",
                               t ? t : "(null)", t && strlen(t) > 64 ? "..." : "");
        } else {
            names_add(&l, t);
        }
    }
    if (r >= 0)
        names_export(&l, out, n);
    free(l.v);
    return r < 0 ? r : 0;
}
