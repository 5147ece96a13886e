/* The libvirt domain XML of an instance (built as a libxml2 tree, never printed), and our
 * metadata, disks and NICs read back from any domain's XML. */
#include "hypervisor/hypervisor.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlsave.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#define TEXT_MAX 1024      /* bytes of a name, tenant, flavor or image id */
#define PATH_MAX_SIZE 4096 /* bytes of a path */
#define NICS_MAX 16
#define VCPUS_MAX 1024
#define MEMORY_MIB_MAX 16777216ULL /* 16 TiB */
#define XML_MAX_SIZE (16u << 20)   /* bytes of domain XML we agree to parse */

static void
xml_docp(xmlDocPtr *doc)
{
    if (*doc)
        xmlFreeDoc(*doc);
}
static void
xml_xpath_ctxp(xmlXPathContextPtr *ctx)
{
    if (*ctx)
        xmlXPathFreeContext(*ctx);
}
static void
xml_xpath_objp(xmlXPathObjectPtr *obj)
{
    if (*obj)
        xmlXPathFreeObject(*obj);
}
static void
xml_bufferp(xmlBufferPtr *buf)
{
    if (*buf)
        xmlBufferFree(*buf);
}
static void
xml_parser_ctxtp(xmlParserCtxtPtr *ctxt)
{
    if (*ctxt)
        xmlFreeParserCtxt(*ctxt);
}
#define cleanup_xml_doc __attribute__((cleanup(xml_docp)))
#define cleanup_xml_xpath_ctx __attribute__((cleanup(xml_xpath_ctxp)))
#define cleanup_xml_xpath_obj __attribute__((cleanup(xml_xpath_objp)))
#define cleanup_xml_buffer __attribute__((cleanup(xml_bufferp)))
#define cleanup_xml_parser_ctxt __attribute__((cleanup(xml_parser_ctxtp)))

void
hv_domain_xml_init(void)
{
    xmlInitParser();
}

/* --- checking the spec ----------------------------------------------------------------- */

/* A single line of text that XML 1.0 can carry and libvirt accepts: strict UTF-8 without
 * control characters (C0, DEL, C1) or the non-characters U+FFFE and U+FFFF. */
static int
check_text(const char *field, const char *s, size_t min, size_t max, struct na_error **err)
{
    if (!s)
        return na_error_field(err, field, "%s is required", field);
    size_t size = strlen(s);
    if (size < min)
        return na_error_field(err, field, "%s is empty", field);
    if (size > max)
        return na_error_field(err, field, "%s is %zu bytes long; at most %zu are allowed", field,
                              size, max);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < size;) {
        size_t at = i;
        uint32_t cp;
        if (!na_utf8_next(u, size, &i, &cp))
            return na_error_field(err, field, "%s is not valid UTF-8 (byte 0x%02x at offset %zu)",
                                  field, u[at], at);
        if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0) || cp == 0xfffe || cp == 0xffff)
            return na_error_field(err, field,
                                  "%s has a control character (U+%04" PRIX32 " at offset %zu)",
                                  field, cp, at);
    }
    return 0;
}

/* 1..max characters of [A-Za-z0-9] plus the characters in extra, no leading '-'. */
static int
check_token(const char *field, const char *s, size_t max, const char *extra, struct na_error **err)
{
    if (!s || !*s)
        return na_error_field(err, field, "%s is required", field);
    size_t len = strlen(s);
    if (len > max)
        return na_error_field(err, field, "%s is %zu characters long; at most %zu are allowed",
                              field, len, max);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !(c && strchr(extra, c)))
            return na_error_field(err, field,
                                  "%s has a character outside [A-Za-z0-9%s] (byte 0x%02x at "
                                  "offset %zu)",
                                  field, extra, c, i);
    }
    if (s[0] == '-')
        return na_error_field(err, field, "%s starts with '-'", field);
    return 0;
}

/* An absolute, normalized path: no empty, "." or ".." components, no trailing '/'. */
static int
check_path(const char *field, const char *s, struct na_error **err)
{
    int ret = check_text(field, s, 1, PATH_MAX_SIZE, err);
    if (ret < 0)
        return ret;
    if (s[0] != '/')
        return na_error_field(err, field, "%s is not an absolute path", field);
    for (const char *c = s + 1;;) {
        const char *end = strchrnul(c, '/');
        size_t n = (size_t)(end - c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
            return na_error_field(err, field,
                                  "%s is not a normalized path (empty, \".\" or \"..\" "
                                  "component)",
                                  field);
        if (!*end)
            break;
        c = end + 1;
    }
    return 0;
}

static int
check_one_of(const char *field, const char *s, const char *const *allowed, size_t n,
             struct na_error **err)
{
    for (size_t i = 0; s && i < n; i++)
        if (!strcmp(s, allowed[i]))
            return 0;
    char list[256] = "";
    for (size_t i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s\"%s\"", i ? ", " : "",
                 allowed[i]);
    if (!s)
        return na_error_field(err, field, "%s is required; allowed: %s", field, list);
    return na_error_field(err, field, "%s is not one of %s", field, list);
}

static int
check_nic(const struct hv_domain_spec *spec, size_t i, struct na_error **err)
{
    const struct hv_nic_spec *nic = &spec->nics[i];
    char field[64];
    int ret;

    snprintf(field, sizeof(field), "nics[%zu].port_id", i);
    if (!nic->port_id || !na_uuid_is_valid(nic->port_id))
        return na_error_field(err, field, "%s is not a lowercase uuid", field);
    for (size_t j = 0; j < i; j++)
        if (!strncmp(nic->port_id, spec->nics[j].port_id, 11))
            return na_error_field(err, field,
                                  "%s starts like nics[%zu].port_id: their tap names would clash",
                                  field, j);

    snprintf(field, sizeof(field), "nics[%zu].mac", i);
    uint8_t mac[6], other[6];
    if (!nic->mac || !na_mac_parse(nic->mac, mac))
        return na_error_field(err, field, "%s is not a MAC address (xx:xx:xx:xx:xx:xx in hex)",
                              field);
    if (mac[0] & 1)
        return na_error_field(err, field, "%s is a multicast MAC address", field);
    for (size_t j = 0; j < i; j++)
        if (na_mac_parse(spec->nics[j].mac, other) && !memcmp(mac, other, sizeof(mac)))
            return na_error_field(err, field, "%s is the same as nics[%zu].mac", field, j);

    /* A Linux interface name: at most IFNAMSIZ - 1 characters. */
    snprintf(field, sizeof(field), "nics[%zu].bridge", i);
    if ((ret = check_token(field, nic->bridge, 15, "._-", err)) < 0)
        return ret;

    if (nic->mtu != 0 && (nic->mtu < 68 || nic->mtu > 65535)) {
        snprintf(field, sizeof(field), "nics[%zu].mtu", i);
        return na_error_field(err, field, "%s %" PRIu32 " is out of range; allowed 0 or 68..65535",
                              field, nic->mtu);
    }
    return 0;
}

/* 0 (unlimited) or min..max. */
static int
check_limit(const char *field, uint64_t val, uint64_t min, uint64_t max, struct na_error **err)
{
    if (val != 0 && (val < min || val > max))
        return na_error_field(err, field,
                              "%s %" PRIu64 " is out of range; allowed 0 or %" PRIu64 "..%" PRIu64,
                              field, val, min, max);
    return 0;
}

static int
check_limits(const struct hv_limits *l, struct na_error **err)
{
    int ret;
    if ((ret = check_limit("limits.cpu_shares", l->cpu_shares, 2, 262144, err)) < 0 ||
        (ret = check_limit("limits.cpu_quota_percent", l->cpu_quota_percent, 1, 100, err)) < 0 ||
        (ret = check_limit("limits.disk_read_iops_sec", l->disk_read_iops_sec, 1, 1000000, err)) <
            0 ||
        (ret = check_limit("limits.disk_write_iops_sec", l->disk_write_iops_sec, 1, 1000000, err)) <
            0 ||
        (ret = check_limit("limits.disk_read_bytes_sec", l->disk_read_bytes_sec, 1, 1ULL << 40,
                           err)) < 0 ||
        (ret = check_limit("limits.disk_write_bytes_sec", l->disk_write_bytes_sec, 1, 1ULL << 40,
                           err)) < 0)
        return ret;
    return 0;
}

static int
check_spec(const struct hv_domain_spec *spec, struct na_error **err)
{
    static const char *const virt_types[] = {"kvm", "qemu"};
    static const char *const cpu_modes[] = {"host-model", "host-passthrough", "custom", "none"};
    static const char *const formats[] = {"qcow2", "raw"};
    int ret;

    if (!spec->uuid || !na_uuid_is_valid(spec->uuid))
        return na_error_field(err, "uuid", "uuid is not a lowercase uuid");
    if (!spec->store_id || !na_uuid_is_valid(spec->store_id))
        return na_error_field(err, "store_id", "store_id is not a lowercase uuid");
    if ((ret = check_text("name", spec->name, 1, TEXT_MAX, err)) < 0 ||
        (ret = check_text("tenant_id", spec->tenant_id, 1, TEXT_MAX, err)) < 0 ||
        (ret = check_text("flavor_name", spec->flavor_name, 0, TEXT_MAX, err)) < 0 ||
        (ret = check_text("image_id", spec->image_id, 1, TEXT_MAX, err)) < 0 ||
        (ret = check_text("node_id", spec->node_id, 1, TEXT_MAX, err)) < 0)
        return ret;
    if (spec->instance_spec_size > HV_INSTANCE_SPEC_MAX_SIZE)
        return na_error_field(err, "instance_spec",
                              "instance_spec is %zu bytes long; at most %u are allowed",
                              spec->instance_spec_size, HV_INSTANCE_SPEC_MAX_SIZE);
    if (spec->instance_spec_size && !spec->instance_spec)
        return na_error_field(err, "instance_spec", "instance_spec has a size and no bytes");
    const char *h = spec->image_sha256;
    if (!h || strlen(h) != 64 || strspn(h, "0123456789abcdef") != 64)
        return na_error_field(err, "image_sha256", "image_sha256 is not 64 lowercase hex digits");
    if (spec->vcpus < 1 || spec->vcpus > VCPUS_MAX)
        return na_error_field(err, "vcpus", "vcpus %" PRIu32 " is out of range; allowed 1..%d",
                              spec->vcpus, VCPUS_MAX);
    if (spec->memory_mib < 1 || spec->memory_mib > MEMORY_MIB_MAX)
        return na_error_field(err, "memory_mib",
                              "memory_mib %" PRIu64 " is out of range; allowed 1..%llu",
                              spec->memory_mib, MEMORY_MIB_MAX);
    if (spec->created_ms < 0)
        return na_error_field(err, "created_ms", "created_ms is negative");

    if ((ret = check_one_of("virt_type", spec->virt_type, virt_types, NA_ARRAY_SIZE(virt_types),
                            err)) < 0 ||
        (ret = check_one_of("cpu_mode", spec->cpu_mode, cpu_modes, NA_ARRAY_SIZE(cpu_modes), err)) <
            0)
        return ret;
    if (!strcmp(spec->cpu_mode, "custom")) {
        if ((ret = check_token("cpu_model", spec->cpu_model, 64, "._+-", err)) < 0)
            return ret;
    } else if (spec->cpu_model) {
        return na_error_field(err, "cpu_model", "cpu_model is set but cpu_mode is \"%s\"",
                              spec->cpu_mode);
    }
    if (!strcmp(spec->cpu_mode, "host-passthrough") && strcmp(spec->virt_type, "kvm"))
        return na_error_field(err, "cpu_mode",
                              "cpu_mode \"host-passthrough\" needs virt_type "
                              "\"kvm\"");
    if (spec->machine && (ret = check_token("machine", spec->machine, 64, "._-", err)) < 0)
        return ret;
    if (spec->uid == 0)
        return na_error_field(err, "uid",
                              "uid 0 (root) is refused: each guest runs as its own "
                              "uid");
    if (spec->gid == 0)
        return na_error_field(err, "gid", "gid 0 (root) is refused");

    if ((ret = check_path("disk_path", spec->disk_path, err)) < 0 ||
        (ret = check_path("backing_path", spec->backing_path, err)) < 0 ||
        (ret = check_one_of("backing_format", spec->backing_format, formats, NA_ARRAY_SIZE(formats),
                            err)) < 0 ||
        (spec->config_drive_path &&
         (ret = check_path("config_drive_path", spec->config_drive_path, err)) < 0) ||
        (ret = check_path("console_log_path", spec->console_log_path, err)) < 0)
        return ret;
    if (!strcmp(spec->disk_path, spec->backing_path))
        return na_error_field(err, "backing_path", "backing_path is the same as disk_path");

    if (spec->n_nics > NICS_MAX)
        return na_error_field(err, "nics", "nics has %zu entries; at most %d are allowed",
                              spec->n_nics, NICS_MAX);
    if (spec->n_nics && !spec->nics)
        return na_error_field(err, "nics", "nics is NULL but n_nics is %zu", spec->n_nics);
    for (size_t i = 0; i < spec->n_nics; i++)
        if ((ret = check_nic(spec, i, err)) < 0)
            return ret;
    return check_limits(&spec->limits, err);
}

/* --- building -------------------------------------------------------------------------- */

/* libxml2 returns NULL only when out of memory; like na_xmalloc, we abort then. */
static void *
must(void *p)
{
    if (!p)
        abort();
    return p;
}

/* A child element, with text content escaped by the library when text is not NULL. */
static xmlNodePtr
child(xmlNodePtr parent, xmlNsPtr ns, const char *name, const char *text)
{
    return must(xmlNewTextChild(parent, ns, BAD_CAST name, BAD_CAST text));
}

static void
prop(xmlNodePtr node, const char *name, const char *value)
{
    must(xmlNewProp(node, BAD_CAST name, BAD_CAST value));
}

static void
prop_u64(xmlNodePtr node, const char *name, uint64_t value)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, value);
    prop(node, name, buf);
}

static xmlNodePtr
child_u64(xmlNodePtr parent, const char *name, uint64_t value)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%" PRIu64, value);
    return child(parent, NULL, name, buf);
}

static void
build_metadata(xmlNodePtr domain, const struct hv_domain_spec *spec)
{
    xmlNodePtr metadata = child(domain, NULL, "metadata", NULL);
    xmlNodePtr inst = child(metadata, NULL, "instance", NULL);
    xmlNsPtr ns = must(xmlNewNs(inst, BAD_CAST HV_METADATA_NS, BAD_CAST HV_METADATA_PREFIX));
    xmlSetNs(inst, ns);
    child(inst, ns, "uuid", spec->uuid);
    child(inst, ns, "name", spec->name);
    child(inst, ns, "tenant", spec->tenant_id);
    xmlNodePtr flavor = child(inst, ns, "flavor", NULL);
    prop(flavor, "name", spec->flavor_name);
    prop_u64(flavor, "vcpus", spec->vcpus);
    prop_u64(flavor, "memory_mib", spec->memory_mib);
    prop_u64(flavor, "root_disk_gib", spec->root_disk_gib);
    xmlNodePtr image = child(inst, ns, "image", NULL);
    prop(image, "id", spec->image_id);
    prop(image, "sha256", spec->image_sha256);
    char created[24];
    snprintf(created, sizeof(created), "%" PRId64, spec->created_ms);
    child(inst, ns, "created_ms", created);
    xmlNodePtr owner = child(inst, ns, "owner", NULL);
    prop(owner, "node", spec->node_id);
    prop(owner, "store", spec->store_id);
    if (spec->instance_spec_size) {
        cleanup_free char *b64 = na_base64_encode(spec->instance_spec, spec->instance_spec_size);
        prop(child(inst, ns, "spec", b64), "encoding", "base64");
    }
}

static void
build_cpu(xmlNodePtr domain, const struct hv_domain_spec *spec)
{
    if (!strcmp(spec->cpu_mode, "none"))
        return;
    xmlNodePtr cpu = child(domain, NULL, "cpu", NULL);
    prop(cpu, "mode", spec->cpu_mode);
    if (!strcmp(spec->cpu_mode, "custom")) {
        prop(cpu, "match", "exact");
        prop(cpu, "check", "partial");
        xmlNodePtr model = child(cpu, NULL, "model", spec->cpu_model);
        prop(model, "fallback", "forbid");
    }
}

/* <cputune>: the guest's CPU weight and each vCPU's quota; nothing when both are 0. */
static void
build_cputune(xmlNodePtr domain, const struct hv_limits *l)
{
    if (!l->cpu_shares && !l->cpu_quota_percent)
        return;
    xmlNodePtr cputune = child(domain, NULL, "cputune", NULL);
    if (l->cpu_shares)
        child_u64(cputune, "shares", l->cpu_shares);
    if (l->cpu_quota_percent) {
        child_u64(cputune, "period", HV_CPU_PERIOD_US);
        child_u64(cputune, "quota", (uint64_t)HV_CPU_PERIOD_US * l->cpu_quota_percent / 100);
    }
}

/* The root disk's <iotune>; nothing when every disk limit is 0. */
static void
build_iotune(xmlNodePtr disk, const struct hv_limits *l)
{
    const struct {
        const char *name;
        uint64_t value;
    } tunes[] = {
        {"read_bytes_sec", l->disk_read_bytes_sec},
        {"write_bytes_sec", l->disk_write_bytes_sec},
        {"read_iops_sec", l->disk_read_iops_sec},
        {"write_iops_sec", l->disk_write_iops_sec},
    };
    xmlNodePtr iotune = NULL;
    for (size_t i = 0; i < NA_ARRAY_SIZE(tunes); i++) {
        if (!tunes[i].value)
            continue;
        if (!iotune)
            iotune = child(disk, NULL, "iotune", NULL);
        child_u64(iotune, tunes[i].name, tunes[i].value);
    }
}

static void
build_root_disk(xmlNodePtr devices, const struct hv_domain_spec *spec)
{
    xmlNodePtr disk = child(devices, NULL, "disk", NULL);
    prop(disk, "type", "file");
    prop(disk, "device", "disk");
    xmlNodePtr driver = child(disk, NULL, "driver", NULL);
    prop(driver, "name", "qemu");
    prop(driver, "type", "qcow2");
    prop(driver, "discard", "unmap");
    prop(child(disk, NULL, "source", NULL), "file", spec->disk_path);

    /* The chain is spelled out and ends here (the empty backingStore), so libvirt and QEMU
     * take the base's format from us and never probe; the base is shared by every guest of
     * the image, so it must not be relabelled to this guest's uid. */
    xmlNodePtr backing = child(disk, NULL, "backingStore", NULL);
    prop(backing, "type", "file");
    prop(child(backing, NULL, "format", NULL), "type", spec->backing_format);
    xmlNodePtr source = child(backing, NULL, "source", NULL);
    prop(source, "file", spec->backing_path);
    xmlNodePtr seclabel = child(source, NULL, "seclabel", NULL);
    prop(seclabel, "model", "dac");
    prop(seclabel, "relabel", "no");
    child(backing, NULL, "backingStore", NULL);

    xmlNodePtr target = child(disk, NULL, "target", NULL);
    prop(target, "dev", "vda");
    prop(target, "bus", "virtio");
    build_iotune(disk, &spec->limits);
}

static void
build_config_drive(xmlNodePtr devices, const struct hv_domain_spec *spec)
{
    if (!spec->config_drive_path)
        return;
    xmlNodePtr disk = child(devices, NULL, "disk", NULL);
    prop(disk, "type", "file");
    prop(disk, "device", "cdrom");
    xmlNodePtr driver = child(disk, NULL, "driver", NULL);
    prop(driver, "name", "qemu");
    prop(driver, "type", "raw");
    prop(child(disk, NULL, "source", NULL), "file", spec->config_drive_path);
    /* IDE: the test guest's kernel has no AHCI driver, and the "pc" machine has IDE. */
    xmlNodePtr target = child(disk, NULL, "target", NULL);
    prop(target, "dev", "hdc");
    prop(target, "bus", "ide");
    child(disk, NULL, "readonly", NULL);
}

static void
build_nic(xmlNodePtr devices, const struct hv_nic_spec *nic)
{
    xmlNodePtr iface = child(devices, NULL, "interface", NULL);
    prop(iface, "type", "bridge");
    prop(child(iface, NULL, "mac", NULL), "address", nic->mac);
    prop(child(iface, NULL, "source", NULL), "bridge", nic->bridge);
    xmlNodePtr vport = child(iface, NULL, "virtualport", NULL);
    prop(vport, "type", "openvswitch");
    prop(child(vport, NULL, "parameters", NULL), "interfaceid", nic->port_id);
    /* IFNAMSIZ is 16: "tap" + 11 characters of the port id + NUL. */
    char tap[16];
    snprintf(tap, sizeof(tap), "tap%.11s", nic->port_id);
    prop(child(iface, NULL, "target", NULL), "dev", tap);
    prop(child(iface, NULL, "model", NULL), "type", "virtio");
    /* No checksum or segmentation offload between guest and host: OVS's userspace datapath
     * would read TCP with partial checksums from the tap, which its conntrack (security
     * groups) finds invalid, and tunnels would carry them unfinished. */
    xmlNodePtr driver = child(iface, NULL, "driver", NULL);
    static const char *const offloads[] = {"csum", "tso4", "tso6", "ecn", "ufo"};
    xmlNodePtr sides[] = {child(driver, NULL, "host", NULL), child(driver, NULL, "guest", NULL)};
    for (size_t s = 0; s < NA_ARRAY_SIZE(sides); s++)
        for (size_t o = 0; o < NA_ARRAY_SIZE(offloads); o++)
            if (s == 0 || o != 4) /* the guest side has no ufo */
                prop(sides[s], offloads[o], "off");
    if (nic->mtu)
        prop_u64(child(iface, NULL, "mtu", NULL), "size", nic->mtu);
}

static void
build_devices(xmlNodePtr domain, const struct hv_domain_spec *spec)
{
    xmlNodePtr devices = child(domain, NULL, "devices", NULL);
    build_root_disk(devices, spec);
    build_config_drive(devices, spec);
    for (size_t i = 0; i < spec->n_nics; i++)
        build_nic(devices, &spec->nics[i]);

    xmlNodePtr serial = child(devices, NULL, "serial", NULL);
    prop(serial, "type", "pty");
    xmlNodePtr log = child(serial, NULL, "log", NULL);
    prop(log, "file", spec->console_log_path);
    prop(log, "append", "on");
    prop(child(serial, NULL, "target", NULL), "port", "0");

    xmlNodePtr console = child(devices, NULL, "console", NULL);
    prop(console, "type", "pty");
    xmlNodePtr ctarget = child(console, NULL, "target", NULL);
    prop(ctarget, "type", "serial");
    prop(ctarget, "port", "0");

    xmlNodePtr video = child(devices, NULL, "video", NULL);
    prop(child(video, NULL, "model", NULL), "type", "none");

    xmlNodePtr balloon = child(devices, NULL, "memballoon", NULL);
    prop(balloon, "model", "virtio");
    prop(child(balloon, NULL, "stats", NULL), "period", "10");

    xmlNodePtr rng = child(devices, NULL, "rng", NULL);
    prop(rng, "model", "virtio");
    prop(child(rng, NULL, "backend", "/dev/urandom"), "model", "random");
}

static xmlDocPtr
build_doc(const struct hv_domain_spec *spec)
{
    xmlDocPtr doc = must(xmlNewDoc(BAD_CAST "1.0"));
    xmlNodePtr domain = must(xmlNewNode(NULL, BAD_CAST "domain"));
    xmlDocSetRootElement(doc, domain);
    prop(domain, "type", spec->virt_type);

    cleanup_free char *name = na_xasprintf(HV_DOMAIN_NAME_PREFIX "%s", spec->uuid);
    child(domain, NULL, "name", name);
    child(domain, NULL, "uuid", spec->uuid);
    child(domain, NULL, "title", spec->name);
    build_metadata(domain, spec);

    prop(child_u64(domain, "memory", spec->memory_mib), "unit", "MiB");
    prop(child_u64(domain, "currentMemory", spec->memory_mib), "unit", "MiB");
    if (!spec->ksm)
        child(child(domain, NULL, "memoryBacking", NULL), NULL, "nosharepages", NULL);
    prop(child_u64(domain, "vcpu", spec->vcpus), "placement", "static");
    build_cputune(domain, &spec->limits);

    xmlNodePtr os = child(domain, NULL, "os", NULL);
    xmlNodePtr type = child(os, NULL, "type", "hvm");
    prop(type, "arch", "x86_64");
    prop(type, "machine", spec->machine ? spec->machine : "pc");
    prop(child(os, NULL, "boot", NULL), "dev", "hd");

    xmlNodePtr features = child(domain, NULL, "features", NULL);
    child(features, NULL, "acpi", NULL);
    child(features, NULL, "apic", NULL);

    build_cpu(domain, spec);
    prop(child(domain, NULL, "clock", NULL), "offset", "utc");
    child(domain, NULL, "on_poweroff", "destroy");
    child(domain, NULL, "on_reboot", "restart");
    child(domain, NULL, "on_crash", "destroy");

    build_devices(domain, spec);

    xmlNodePtr seclabel = child(domain, NULL, "seclabel", NULL);
    prop(seclabel, "type", "static");
    prop(seclabel, "model", "dac");
    prop(seclabel, "relabel", "yes");
    char label[32];
    snprintf(label, sizeof(label), "+%" PRIu32 ":+%" PRIu32, spec->uid, spec->gid);
    child(seclabel, NULL, "label", label);
    return doc;
}

int
hv_domain_xml_build(const struct hv_domain_spec *spec, char **xml_out, struct na_error **err)
{
    *xml_out = NULL;
    int ret = check_spec(spec, err);
    if (ret < 0)
        return ret;

    cleanup_xml_doc xmlDocPtr doc = build_doc(spec);
    cleanup_xml_buffer xmlBufferPtr buf = must(xmlBufferCreate());
    xmlSaveCtxtPtr save = must(xmlSaveToBuffer(buf, "UTF-8", XML_SAVE_FORMAT | XML_SAVE_NO_DECL));
    long saved = xmlSaveDoc(save, doc);
    if (xmlSaveClose(save) < 0 || saved < 0)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "cannot serialize the domain XML of %s",
                            spec->uuid);
    *xml_out = na_xstrndup((const char *)xmlBufferContent(buf), (size_t)xmlBufferLength(buf));
    return 0;
}

/* --- reading back ---------------------------------------------------------------------- */

/* libvirt never writes a DTD; one in a domain's XML is an attack (external or recursive
 * entities), so parsing stops at the DOCTYPE before any declaration is read. */
static void
refuse_dtd(void *ctx, const xmlChar *name, const xmlChar *external_id, const xmlChar *system_id)
{
    (void)name, (void)external_id, (void)system_id;
    xmlParserCtxtPtr ctxt = ctx;
    *(bool *)ctxt->_private = true;
    xmlStopParser(ctxt);
}

static char *
xdup(xmlChar *s)
{
    if (!s)
        return NULL;
    char *copy = na_xstrdup((const char *)s);
    xmlFree(s);
    return copy;
}

/* The first node expr selects relative to node, or NULL. */
static xmlNodePtr
xp_node(xmlXPathContextPtr ctx, xmlNodePtr node, const char *expr)
{
    ctx->node = node;
    cleanup_xml_xpath_obj xmlXPathObjectPtr obj = xmlXPathEvalExpression(BAD_CAST expr, ctx);
    if (!obj || obj->type != XPATH_NODESET || xmlXPathNodeSetIsEmpty(obj->nodesetval))
        return NULL;
    return obj->nodesetval->nodeTab[0];
}

/* The attribute (name starting with '@') or text of the first node under node at path. */
static char *
xp_value(xmlXPathContextPtr ctx, xmlNodePtr node, const char *path, const char *attr)
{
    xmlNodePtr n = path ? xp_node(ctx, node, path) : node;
    if (!n)
        return NULL;
    return xdup(attr ? xmlGetNoNsProp(n, BAD_CAST attr) : xmlNodeGetContent(n));
}

static bool
parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 19)
        return false;
    *out = strtoull(s, NULL, 10);
    return true;
}

static int
parse_ours(xmlXPathContextPtr ctx, xmlNodePtr inst, struct hv_domain_meta *out,
           struct na_error **err)
{
    out->is_ours = true;
    out->uuid = xp_value(ctx, inst, "na:uuid", NULL);
    out->name = xp_value(ctx, inst, "na:name", NULL);
    out->tenant_id = xp_value(ctx, inst, "na:tenant", NULL);
    out->flavor_name = xp_value(ctx, inst, "na:flavor", "name");
    out->image_id = xp_value(ctx, inst, "na:image", "id");
    out->image_sha256 = xp_value(ctx, inst, "na:image", "sha256");
    cleanup_free char *vcpus = xp_value(ctx, inst, "na:flavor", "vcpus");
    cleanup_free char *memory = xp_value(ctx, inst, "na:flavor", "memory_mib");
    cleanup_free char *disk = xp_value(ctx, inst, "na:flavor", "root_disk_gib");
    cleanup_free char *created = xp_value(ctx, inst, "na:created_ms", NULL);
    xmlNodePtr owner = xp_node(ctx, inst, "na:owner");
    if (owner) {
        out->node_id = xp_value(ctx, owner, NULL, "node");
        out->store_id = xp_value(ctx, owner, NULL, "store");
    }
    xmlNodePtr spec = xp_node(ctx, inst, "na:spec");
    cleanup_free char *spec_text = spec ? xp_value(ctx, spec, NULL, NULL) : NULL;
    cleanup_free char *spec_encoding = spec ? xp_value(ctx, spec, NULL, "encoding") : NULL;

    const char *bad = NULL;
    uint64_t n_vcpus = 0, created_ms = 0;
    if (!out->uuid || !na_uuid_is_valid(out->uuid))
        bad = "na:uuid";
    else if (!out->name)
        bad = "na:name";
    else if (!out->tenant_id)
        bad = "na:tenant";
    else if (!out->flavor_name)
        bad = "na:flavor/@name";
    else if (!parse_u64(vcpus, &n_vcpus) || n_vcpus > UINT32_MAX)
        bad = "na:flavor/@vcpus";
    else if (!parse_u64(memory, &out->memory_mib))
        bad = "na:flavor/@memory_mib";
    else if (!parse_u64(disk, &out->root_disk_gib))
        bad = "na:flavor/@root_disk_gib";
    else if (!out->image_id)
        bad = "na:image/@id";
    else if (!out->image_sha256)
        bad = "na:image/@sha256";
    else if (!parse_u64(created, &created_ms) || created_ms > INT64_MAX)
        bad = "na:created_ms";
    else if (owner && (!out->node_id || !*out->node_id))
        bad = "na:owner/@node";
    else if (owner && (!out->store_id || !na_uuid_is_valid(out->store_id)))
        bad = "na:owner/@store";
    else if (spec && (!spec_encoding || strcmp(spec_encoding, "base64") != 0))
        bad = "na:spec/@encoding";
    else if (spec && na_base64_decode(spec_text ? spec_text : "", HV_INSTANCE_SPEC_MAX_SIZE,
                                      &out->instance_spec, &out->instance_spec_size) < 0)
        bad = "na:spec";
    out->vcpus = (uint32_t)n_vcpus;
    out->created_ms = (int64_t)created_ms;
    if (bad)
        return na_error_set(err, NA_CODE_HYPERVISOR, 0,
                            "domain %s carries nodeagent metadata with a missing or malformed %s",
                            out->domain_name ? out->domain_name : "(unnamed)", bad);
    return 0;
}

/* "+UID:+GID" (libvirt also takes names; we only ever write numbers). */
static bool
parse_dac_label(const char *label, int64_t *uid, int64_t *gid)
{
    if (!label || label[0] != '+')
        return false;
    const char *colon = strchr(label, ':');
    if (!colon || colon[1] != '+')
        return false;
    cleanup_free char *u = na_xstrndup(label + 1, (size_t)(colon - label - 1));
    uint64_t nu, ng;
    if (!parse_u64(u, &nu) || !parse_u64(colon + 2, &ng) || nu > UINT32_MAX || ng > UINT32_MAX)
        return false;
    *uid = (int64_t)nu;
    *gid = (int64_t)ng;
    return true;
}

static void
parse_seclabel(xmlXPathContextPtr ctx, xmlNodePtr root, struct hv_domain_meta *out)
{
    out->dac_uid = out->dac_gid = -1;
    cleanup_free char *label =
        xp_value(ctx, root, "seclabel[@model='dac' and @type='static']/label", NULL);
    if (!parse_dac_label(label, &out->dac_uid, &out->dac_gid))
        out->dac_uid = out->dac_gid = -1;
}

static void
parse_devices(xmlXPathContextPtr ctx, xmlNodePtr root, struct hv_domain_meta *out)
{
    ctx->node = root;
    cleanup_xml_xpath_obj xmlXPathObjectPtr disks =
        xmlXPathEvalExpression(BAD_CAST "devices/disk", ctx);
    if (disks && disks->type == XPATH_NODESET && disks->nodesetval) {
        xmlNodeSetPtr set = disks->nodesetval;
        out->disks = na_xcalloc((size_t)set->nodeNr + 1, sizeof(*out->disks));
        for (int i = 0; i < set->nodeNr; i++) {
            xmlNodePtr n = set->nodeTab[i];
            struct hv_domain_disk *d = &out->disks[out->n_disks++];
            d->device = xp_value(ctx, n, NULL, "device");
            d->target = xp_value(ctx, n, "target", "dev");
            d->source = xp_value(ctx, n, "source", "file");
            if (!d->source)
                d->source = xp_value(ctx, n, "source", "dev");
            d->format = xp_value(ctx, n, "driver", "type");
            d->backing_source = xp_value(ctx, n, "backingStore/source", "file");
            if (!d->backing_source)
                d->backing_source = xp_value(ctx, n, "backingStore/source", "dev");
            d->backing_format = xp_value(ctx, n, "backingStore/format", "type");
        }
    }

    ctx->node = root;
    cleanup_xml_xpath_obj xmlXPathObjectPtr nics =
        xmlXPathEvalExpression(BAD_CAST "devices/interface", ctx);
    if (nics && nics->type == XPATH_NODESET && nics->nodesetval) {
        xmlNodeSetPtr set = nics->nodesetval;
        out->nics = na_xcalloc((size_t)set->nodeNr + 1, sizeof(*out->nics));
        for (int i = 0; i < set->nodeNr; i++) {
            xmlNodePtr n = set->nodeTab[i];
            struct hv_domain_nic *nic = &out->nics[out->n_nics++];
            nic->interfaceid = xp_value(ctx, n, "virtualport/parameters", "interfaceid");
            nic->mac = xp_value(ctx, n, "mac", "address");
            nic->bridge = xp_value(ctx, n, "source", "bridge");
            nic->target = xp_value(ctx, n, "target", "dev");
        }
    }
}

/* domain_xml as a document whose root is a libvirt <domain>, or NULL with err set. */
static xmlDocPtr
read_domain(const char *domain_xml, struct na_error **err)
{
    size_t size = strlen(domain_xml);
    if (size > XML_MAX_SIZE) {
        na_error_set(err, NA_CODE_HYPERVISOR, 0,
                     "domain XML is %zu bytes long; at most %u are parsed", size, XML_MAX_SIZE);
        return NULL;
    }

    cleanup_xml_parser_ctxt xmlParserCtxtPtr ctxt = must(xmlNewParserCtxt());
    bool has_dtd = false;
    ctxt->_private = &has_dtd;
    ctxt->sax->internalSubset = refuse_dtd;
    /* No XML_PARSE_NOENT nor DTDLOAD: entities are never loaded nor substituted. */
    cleanup_xml_doc xmlDocPtr doc =
        xmlCtxtReadMemory(ctxt, domain_xml, (int)size, "domain.xml", NULL,
                          XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (has_dtd) {
        na_error_set(err, NA_CODE_HYPERVISOR, 0, "domain XML has a DTD: refused");
        return NULL;
    }
    if (!doc) {
        const xmlError *e = xmlCtxtGetLastError(ctxt);
        cleanup_free char *msg = na_xstrdup(e && e->message ? e->message : "unknown error");
        msg[strcspn(msg, "\n")] = '\0';
        na_error_set(err, NA_CODE_HYPERVISOR, 0, "domain XML is not well-formed: %s (line %d)", msg,
                     e ? e->line : 0);
        return NULL;
    }
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (!root || root->ns || strcmp((const char *)root->name, "domain")) {
        na_error_set(err, NA_CODE_HYPERVISOR, 0, "XML is not a libvirt <domain>");
        return NULL;
    }
    return na_steal(&doc);
}

static xmlXPathContextPtr
new_xpath(xmlDocPtr doc)
{
    xmlXPathContextPtr ctx = must(xmlXPathNewContext(doc));
    if (xmlXPathRegisterNs(ctx, BAD_CAST HV_METADATA_PREFIX, BAD_CAST HV_METADATA_NS) < 0)
        abort();
    return ctx;
}

int
hv_domain_meta_parse(const char *domain_xml, struct hv_domain_meta *out, struct na_error **err)
{
    memset(out, 0, sizeof(*out));
    cleanup_xml_doc xmlDocPtr doc = read_domain(domain_xml, err);
    if (!doc)
        return -EINVAL;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    cleanup_xml_xpath_ctx xmlXPathContextPtr ctx = new_xpath(doc);

    out->domain_name = xp_value(ctx, root, "name", NULL);
    out->domain_uuid = xp_value(ctx, root, "uuid", NULL);
    xmlNodePtr inst = xp_node(ctx, root, "metadata/na:instance");
    if (inst && parse_ours(ctx, inst, out, err) < 0) {
        hv_domain_meta_clear(out);
        return -EINVAL;
    }
    parse_seclabel(ctx, root, out);
    parse_devices(ctx, root, out);
    return 0;
}

void
hv_domain_meta_clear(struct hv_domain_meta *meta)
{
    if (!meta)
        return;
    free(meta->domain_name);
    free(meta->domain_uuid);
    free(meta->uuid);
    free(meta->name);
    free(meta->tenant_id);
    free(meta->flavor_name);
    free(meta->image_id);
    free(meta->image_sha256);
    free(meta->node_id);
    free(meta->store_id);
    free(meta->instance_spec);
    for (size_t i = 0; i < meta->n_disks; i++) {
        struct hv_domain_disk *d = &meta->disks[i];
        free(d->device);
        free(d->target);
        free(d->source);
        free(d->format);
        free(d->backing_source);
        free(d->backing_format);
    }
    free(meta->disks);
    for (size_t i = 0; i < meta->n_nics; i++) {
        struct hv_domain_nic *n = &meta->nics[i];
        free(n->interfaceid);
        free(n->mac);
        free(n->bridge);
        free(n->target);
    }
    free(meta->nics);
    memset(meta, 0, sizeof(*meta));
}

/* libvirt's virDomainSetMetadata() declares the namespace itself, on the element it is
 * given and on every element below it that has none: it refuses an element that already
 * declares its prefix. */
static void
strip_namespace(xmlNodePtr node)
{
    for (xmlNodePtr n = node; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        n->ns = NULL;
        strip_namespace(n->children);
    }
}

static void
without_namespace(xmlNodePtr inst)
{
    xmlNodePtr next = inst->next;
    inst->next = NULL; /* its siblings are not part of it */
    strip_namespace(inst);
    inst->next = next;
    xmlFreeNsList(inst->nsDef);
    inst->nsDef = NULL;
}

int
hv_domain_meta_with_owner(const char *domain_xml, const char *node_id, const char *store_id,
                          char **instance_xml, struct na_error **err)
{
    *instance_xml = NULL;
    int ret = check_text("node_id", node_id, 1, TEXT_MAX, err);
    if (ret < 0)
        return ret;
    if (!store_id || !na_uuid_is_valid(store_id))
        return na_error_field(err, "store_id", "store_id is not a lowercase uuid");
    struct hv_domain_meta meta;
    if ((ret = hv_domain_meta_parse(domain_xml, &meta, err)) < 0)
        return ret;
    bool ours = meta.is_ours;
    hv_domain_meta_clear(&meta);
    if (!ours)
        return na_error_set(err, NA_CODE_HYPERVISOR, 0, "the domain carries no nodeagent metadata");

    cleanup_xml_doc xmlDocPtr doc = read_domain(domain_xml, err);
    if (!doc)
        return -EINVAL;
    cleanup_xml_xpath_ctx xmlXPathContextPtr ctx = new_xpath(doc);
    xmlNodePtr inst = xp_node(ctx, xmlDocGetRootElement(doc), "metadata/na:instance");
    xmlNodePtr owner;
    while ((owner = xp_node(ctx, inst, "na:owner"))) {
        xmlUnlinkNode(owner);
        xmlFreeNode(owner);
    }
    owner = child(inst, inst->ns, "owner", NULL);
    prop(owner, "node", node_id);
    prop(owner, "store", store_id);
    without_namespace(inst);

    cleanup_xml_buffer xmlBufferPtr buf = must(xmlBufferCreate());
    if (xmlNodeDump(buf, doc, inst, 0, 0) < 0)
        return na_error_set(err, NA_CODE_INTERNAL, 0, "cannot serialize the metadata of %s",
                            "a domain");
    *instance_xml = na_xstrndup((const char *)xmlBufferContent(buf), (size_t)xmlBufferLength(buf));
    return 0;
}
