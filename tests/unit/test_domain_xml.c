/* hypervisor domain XML: golden files (tests/unit/data/domain-*.json → domain-*.xml,
 * compared in canonical form), metadata read back from every build and from foreign
 * domains, hostile XML, and refused specs.
 *
 * NODEAGENT_REGEN_GOLDEN=1 rewrites the .xml files from the .json ones: review the diff. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/common.h"
#include "hypervisor/hypervisor.h"

#include <errno.h>
#include <string.h>

#include <jansson.h>
#include <libxml/c14n.h>
#include <libxml/parser.h>

#define DATA_DIR NODEAGENT_SOURCE_DIR "/tests/unit/data"

static const char *const golden_cases[] = {
    "plain",   "custom-cpu", "kvm-passthrough", "minimal",          "raw-base",
    "ksm-off", "hostile",    "limits",          "limits-disk-only",
};

static char *
read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&buf, &size);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, mem);
    fclose(f);
    fclose(mem);
    return buf;
}

/* --- specs from JSON ------------------------------------------------------------------- */

/* A spec whose strings point into json. */
struct loaded_spec {
    json_t *json;
    struct hv_domain_spec spec;
    struct hv_nic_spec *nics;
};

static const char *
opt_str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (v && !json_is_string(v))
        fail_msg("%s: not a string", key);
    return v ? json_string_value(v) : NULL;
}

static uint64_t
num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        fail_msg("%s: not a non-negative integer", key);
    return (uint64_t)json_integer_value(v);
}

/* An optional number: 0 when absent. */
static uint64_t
opt_num(json_t *o, const char *key)
{
    return json_object_get(o, key) ? num(o, key) : 0;
}

static void
load_spec(const char *name, struct loaded_spec *ls)
{
    cleanup_free char *path = na_xasprintf(DATA_DIR "/domain-%s.json", name);
    json_error_t jerr;
    memset(ls, 0, sizeof(*ls));
    ls->json = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!ls->json)
        fail_msg("%s:%d: %s", path, jerr.line, jerr.text);
    json_t *o = ls->json;
    struct hv_domain_spec *s = &ls->spec;
    s->uuid = opt_str(o, "uuid");
    s->name = opt_str(o, "name");
    s->tenant_id = opt_str(o, "tenant_id");
    s->flavor_name = opt_str(o, "flavor_name");
    s->vcpus = (uint32_t)num(o, "vcpus");
    s->memory_mib = num(o, "memory_mib");
    s->root_disk_gib = num(o, "root_disk_gib");
    s->image_id = opt_str(o, "image_id");
    s->image_sha256 = opt_str(o, "image_sha256");
    s->created_ms = (int64_t)num(o, "created_ms");
    s->node_id = opt_str(o, "node_id");
    s->store_id = opt_str(o, "store_id");
    /* The agent's blob is opaque here: any bytes JSON can carry stand for it. */
    s->instance_spec = (const uint8_t *)opt_str(o, "instance_spec");
    s->instance_spec_size = s->instance_spec ? strlen((const char *)s->instance_spec) : 0;
    s->virt_type = opt_str(o, "virt_type");
    s->cpu_mode = opt_str(o, "cpu_mode");
    s->cpu_model = opt_str(o, "cpu_model");
    s->machine = opt_str(o, "machine");
    s->ksm = json_is_true(json_object_get(o, "ksm"));
    s->uid = (uint32_t)num(o, "uid");
    s->gid = (uint32_t)num(o, "gid");
    s->disk_path = opt_str(o, "disk_path");
    s->backing_path = opt_str(o, "backing_path");
    s->backing_format = opt_str(o, "backing_format");
    s->config_drive_path = opt_str(o, "config_drive_path");
    s->console_log_path = opt_str(o, "console_log_path");
    json_t *nics = json_object_get(o, "nics");
    s->n_nics = json_array_size(nics);
    ls->nics = na_xcalloc(s->n_nics + 1, sizeof(*ls->nics));
    for (size_t i = 0; i < s->n_nics; i++) {
        json_t *n = json_array_get(nics, i);
        ls->nics[i].port_id = opt_str(n, "port_id");
        ls->nics[i].mac = opt_str(n, "mac");
        ls->nics[i].bridge = opt_str(n, "bridge");
        ls->nics[i].mtu = (uint32_t)num(n, "mtu");
    }
    s->nics = ls->nics;
    json_t *l = json_object_get(o, "limits");
    if (l) {
        s->limits.cpu_shares = (uint32_t)opt_num(l, "cpu_shares");
        s->limits.cpu_quota_percent = (uint32_t)opt_num(l, "cpu_quota_percent");
        s->limits.disk_read_iops_sec = (uint32_t)opt_num(l, "disk_read_iops_sec");
        s->limits.disk_write_iops_sec = (uint32_t)opt_num(l, "disk_write_iops_sec");
        s->limits.disk_read_bytes_sec = opt_num(l, "disk_read_bytes_sec");
        s->limits.disk_write_bytes_sec = opt_num(l, "disk_write_bytes_sec");
    }
}

static void
free_spec(struct loaded_spec *ls)
{
    json_decref(ls->json);
    free(ls->nics);
}

static char *
build_ok(const struct hv_domain_spec *spec)
{
    cleanup_error struct na_error *err = NULL;
    char *xml = NULL;
    if (hv_domain_xml_build(spec, &xml, &err) < 0)
        fail_msg("build refused: field=%s: %s", err->field ? err->field : "-", err->msg);
    assert_non_null(xml);
    return xml;
}

/* --- golden files ---------------------------------------------------------------------- */

/* Canonical XML (C14N 1.0) of text, blanks between elements dropped. */
static char *
canonical(const char *text, const char *what)
{
    xmlDocPtr doc =
        xmlReadMemory(text, (int)strlen(text), what, "UTF-8", XML_PARSE_NONET | XML_PARSE_NOBLANKS);
    if (!doc)
        fail_msg("%s does not parse", what);
    xmlChar *out = NULL;
    int size = xmlC14NDocDumpMemory(doc, NULL, XML_C14N_1_0, NULL, 0, &out);
    xmlFreeDoc(doc);
    if (size < 0)
        fail_msg("%s: C14N failed", what);
    char *copy = na_xstrndup((const char *)out, (size_t)size);
    xmlFree(out);
    return copy;
}

static void
test_golden(void **state)
{
    const char *name = *state;
    struct loaded_spec ls;
    load_spec(name, &ls);
    cleanup_free char *xml = build_ok(&ls.spec);
    cleanup_free char *path = na_xasprintf(DATA_DIR "/domain-%s.xml", name);

    const char *regen = getenv("NODEAGENT_REGEN_GOLDEN");
    if (regen && !strcmp(regen, "1")) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(xml, f);
        assert_int_equal(fclose(f), 0);
        print_message("rewrote %s\n", path);
    }

    cleanup_free char *want = read_text(path);
    cleanup_free char *c_got = canonical(xml, "built XML");
    cleanup_free char *c_want = canonical(want, path);
    if (strcmp(c_got, c_want)) {
        print_error("got:\n%s\nwant (%s):\n%s\n", c_got, path, c_want);
        fail();
    }
    free_spec(&ls);
}

/* --- metadata read back ---------------------------------------------------------------- */

/* hv_domain_meta_parse(xml) says what s says. */
static void
assert_meta_matches(const struct hv_domain_spec *s, const char *xml)
{
    struct hv_domain_meta m;
    cleanup_error struct na_error *err = NULL;
    if (hv_domain_meta_parse(xml, &m, &err) < 0)
        fail_msg("parse: %s", err->msg);
    assert_true(m.is_ours);
    cleanup_free char *domain_name = na_xasprintf("na-%s", s->uuid);
    assert_string_equal(m.domain_name, domain_name);
    assert_string_equal(m.domain_uuid, s->uuid);
    assert_string_equal(m.uuid, s->uuid);
    assert_string_equal(m.name, s->name);
    assert_string_equal(m.tenant_id, s->tenant_id);
    assert_string_equal(m.flavor_name, s->flavor_name);
    assert_int_equal(m.vcpus, s->vcpus);
    assert_int_equal(m.memory_mib, s->memory_mib);
    assert_int_equal(m.root_disk_gib, s->root_disk_gib);
    assert_string_equal(m.image_id, s->image_id);
    assert_string_equal(m.image_sha256, s->image_sha256);
    assert_int_equal(m.created_ms, s->created_ms);
    assert_string_equal(m.node_id, s->node_id);
    assert_string_equal(m.store_id, s->store_id);
    assert_int_equal(m.instance_spec_size, s->instance_spec_size);
    if (s->instance_spec_size)
        assert_memory_equal(m.instance_spec, s->instance_spec, s->instance_spec_size);
    else
        assert_null(m.instance_spec);
    assert_int_equal(m.dac_uid, s->uid);
    assert_int_equal(m.dac_gid, s->gid);

    assert_int_equal(m.n_disks, s->config_drive_path ? 2 : 1);
    assert_string_equal(m.disks[0].device, "disk");
    assert_string_equal(m.disks[0].target, "vda");
    assert_string_equal(m.disks[0].source, s->disk_path);
    assert_string_equal(m.disks[0].format, "qcow2");
    assert_string_equal(m.disks[0].backing_source, s->backing_path);
    assert_string_equal(m.disks[0].backing_format, s->backing_format);
    if (s->config_drive_path) {
        assert_string_equal(m.disks[1].device, "cdrom");
        assert_string_equal(m.disks[1].target, "hdc");
        assert_string_equal(m.disks[1].source, s->config_drive_path);
        assert_string_equal(m.disks[1].format, "raw");
        assert_null(m.disks[1].backing_source);
    }

    assert_int_equal(m.n_nics, s->n_nics);
    for (size_t i = 0; i < s->n_nics; i++) {
        assert_string_equal(m.nics[i].interfaceid, s->nics[i].port_id);
        assert_string_equal(m.nics[i].mac, s->nics[i].mac);
        assert_string_equal(m.nics[i].bridge, s->nics[i].bridge);
        char tap[16];
        snprintf(tap, sizeof(tap), "tap%.11s", s->nics[i].port_id);
        assert_string_equal(m.nics[i].target, tap);
        assert_int_equal(strlen(m.nics[i].target), 14);
    }
    hv_domain_meta_clear(&m);
    assert_null(m.uuid);
    hv_domain_meta_clear(NULL);
}

static void
test_meta_roundtrip(void **state)
{
    struct loaded_spec ls;
    load_spec(*state, &ls);
    cleanup_free char *xml = build_ok(&ls.spec);
    assert_meta_matches(&ls.spec, xml);
    free_spec(&ls);
}

/* What libvirt (its test driver: `virsh -c test:///default define` then `dumpxml`) gave
 * back for domain-hostile.xml: reformatted, with character references and the defaults
 * libvirt adds.  Reconciliation reads this kind of XML. */
static void
test_meta_from_libvirt_dumpxml(void **state)
{
    (void)state;
    struct loaded_spec ls;
    load_spec("hostile", &ls);
    cleanup_free char *xml = read_text(DATA_DIR "/libvirt-dumpxml-hostile.xml");
    assert_non_null(strstr(xml, "&#x3A9;"));
    assert_meta_matches(&ls.spec, xml);
    free_spec(&ls);
}

/* What `virsh dumpxml` shows for a domain someone else defined. */
static const char foreign_xml[] =
    "<domain type='kvm' id='3'>\n"
    "  <name>someone-elses</name>\n"
    "  <uuid>11111111-2222-4333-8444-555555555555</uuid>\n"
    "  <metadata>\n"
    "    <other:instance xmlns:other='urn:example:other:1'><other:uuid>x</other:uuid>"
    "</other:instance>\n"
    "    <na:instance xmlns:na='urn:nodeagent:instance:0'/>\n"
    "  </metadata>\n"
    "  <memory unit='KiB'>1048576</memory>\n"
    "  <os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os>\n"
    "  <devices>\n"
    "    <disk type='block' device='disk'>\n"
    "      <driver name='qemu' type='raw'/>\n"
    "      <source dev='/dev/vg0/other'/>\n"
    "      <target dev='vda' bus='virtio'/>\n"
    "    </disk>\n"
    "    <interface type='network'>\n"
    "      <mac address='52:54:00:aa:bb:cc'/>\n"
    "      <source network='default'/>\n"
    "      <target dev='vnet0'/>\n"
    "    </interface>\n"
    "  </devices>\n"
    "</domain>\n";

static void
test_meta_foreign_domain(void **state)
{
    (void)state;
    struct hv_domain_meta m;
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(hv_domain_meta_parse(foreign_xml, &m, &err), 0);
    assert_false(m.is_ours);
    assert_string_equal(m.domain_name, "someone-elses");
    assert_string_equal(m.domain_uuid, "11111111-2222-4333-8444-555555555555");
    assert_null(m.uuid);
    assert_null(m.tenant_id);
    assert_null(m.instance_spec);
    assert_int_equal(m.dac_uid, -1);
    assert_int_equal(m.n_disks, 1);
    assert_string_equal(m.disks[0].source, "/dev/vg0/other");
    assert_string_equal(m.disks[0].format, "raw");
    assert_null(m.disks[0].backing_source);
    assert_int_equal(m.n_nics, 1);
    assert_null(m.nics[0].interfaceid);
    assert_null(m.nics[0].bridge);
    assert_string_equal(m.nics[0].mac, "52:54:00:aa:bb:cc");
    assert_string_equal(m.nics[0].target, "vnet0");
    hv_domain_meta_clear(&m);

    assert_int_equal(
        hv_domain_meta_parse("<domain type='qemu'><name>bare</name></domain>", &m, &err), 0);
    assert_false(m.is_ours);
    assert_int_equal(m.n_disks, 0);
    assert_int_equal(m.n_nics, 0);
    hv_domain_meta_clear(&m);
}

/* A domain an older agent defined, before domains carried their owner: ours, no owner. */
static void
test_meta_without_owner(void **state)
{
    (void)state;
    struct loaded_spec ls;
    load_spec("plain", &ls);
    cleanup_free char *xml = build_ok(&ls.spec);
    const char *from = "<na:owner node=\"node-7\" store=\"5e0c8a1f-2b3d-4c5e-9f60-718293a4b5c6\"/>";
    char *at = strstr(xml, from);
    assert_non_null(at);
    cleanup_free char *older = na_xasprintf("%.*s%s", (int)(at - xml), xml, at + strlen(from));
    struct hv_domain_meta m;
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(hv_domain_meta_parse(older, &m, &err), 0);
    assert_true(m.is_ours);
    assert_string_equal(m.uuid, ls.spec.uuid);
    assert_null(m.node_id);
    assert_null(m.store_id);
    hv_domain_meta_clear(&m);
    free_spec(&ls);
}

static void
expect_parse_error(const char *xml, const char *needle)
{
    struct hv_domain_meta m;
    cleanup_error struct na_error *err = NULL;
    int ret = hv_domain_meta_parse(xml, &m, &err);
    if (ret >= 0)
        fail_msg("parsed, expected an error containing \"%s\"", needle);
    assert_non_null(err);
    assert_int_equal(err->code, NA_CODE_HYPERVISOR);
    if (!strstr(err->msg, needle))
        fail_msg("error \"%s\" lacks \"%s\"", err->msg, needle);
    assert_false(m.is_ours);
    assert_null(m.domain_name);
    assert_null(m.disks);
}

static void
test_meta_refuses_bad_xml(void **state)
{
    (void)state;
    expect_parse_error("<domain><name>x</name>", "not well-formed");
    expect_parse_error("", "not well-formed");
    expect_parse_error("<network><name>x</name></network>", "not a libvirt <domain>");
    /* External entity (XXE): never read. */
    expect_parse_error("<?xml version='1.0'?>\n"
                       "<!DOCTYPE domain [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>\n"
                       "<domain><name>&x;</name></domain>",
                       "DTD");
    /* Entity expansion ("billion laughs"): refused before any declaration is read. */
    expect_parse_error("<!DOCTYPE domain [<!ENTITY a 'aaaaaaaaaa'>"
                       "<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>"
                       "<!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'>]>"
                       "<domain><name>&c;</name></domain>",
                       "DTD");
    expect_parse_error("<!DOCTYPE domain SYSTEM 'http://example.invalid/domain.dtd'>"
                       "<domain/>",
                       "DTD");
}

/* Our element, but broken: an error, never silently foreign or ours. */
static void
test_meta_refuses_broken_metadata(void **state)
{
    (void)state;
    struct loaded_spec ls;
    load_spec("plain", &ls);
    cleanup_free char *xml = build_ok(&ls.spec);

    static const struct {
        const char *from, *to, *needle;
    } breaks[] = {
        {"<na:created_ms>1700000000123<", "<na:created_ms>17e3<", "na:created_ms"},
        {"<na:created_ms>1700000000123</na:created_ms>", "", "na:created_ms"},
        {"vcpus=\"2\"", "vcpus=\"-2\"", "na:flavor/@vcpus"},
        {"memory_mib=\"2048\"", "memory_mib=\"\"", "na:flavor/@memory_mib"},
        {"<na:uuid>6f1c2a3e", "<na:uuid>XX1c2a3e", "na:uuid"},
        {"<na:tenant>tenant-a</na:tenant>", "", "na:tenant"},
        {"node=\"node-7\"", "", "na:owner/@node"},
        {"node=\"node-7\"", "node=\"\"", "na:owner/@node"},
        {"store=\"5e0c8a1f", "store=\"XX0c8a1f", "na:owner/@store"},
        {" store=\"5e0c8a1f-2b3d-4c5e-9f60-718293a4b5c6\"", "", "na:owner/@store"},
        {"<na:spec encoding=\"base64\">", "<na:spec>", "na:spec/@encoding"},
        {"<na:spec encoding=\"base64\">", "<na:spec encoding=\"hex\">", "na:spec/@encoding"},
        {"<na:spec encoding=\"base64\">Ci", "<na:spec encoding=\"base64\">C!", "na:spec"},
        {"<na:spec encoding=\"base64\">Ci", "<na:spec encoding=\"base64\">\nCi", "na:spec"},
        {"<na:spec encoding=\"base64\">Ci", "<na:spec encoding=\"base64\">Cii", "na:spec"},
        {"</na:spec>", "=</na:spec>", "na:spec"},
    };
    for (size_t i = 0; i < NA_ARRAY_SIZE(breaks); i++) {
        char *at = strstr(xml, breaks[i].from);
        if (!at)
            fail_msg("golden XML lacks %s", breaks[i].from);
        cleanup_free char *broken = na_xasprintf("%.*s%s%s", (int)(at - xml), xml, breaks[i].to,
                                                 at + strlen(breaks[i].from));
        expect_parse_error(broken, breaks[i].needle);
    }
    free_spec(&ls);
}

/* A <na:spec> of more than HV_INSTANCE_SPEC_MAX_SIZE bytes: refused when built and when
 * read back; exactly that many pass both ways. */
static void
test_instance_spec_bound(void **state)
{
    (void)state;
    struct loaded_spec ls;
    load_spec("plain", &ls);
    uint8_t *blob = na_xcalloc(HV_INSTANCE_SPEC_MAX_SIZE + 3, 1);
    for (size_t i = 0; i < HV_INSTANCE_SPEC_MAX_SIZE + 3; i++)
        blob[i] = (uint8_t)(i * 7);
    ls.spec.instance_spec = blob;
    ls.spec.instance_spec_size = HV_INSTANCE_SPEC_MAX_SIZE;
    cleanup_free char *xml = build_ok(&ls.spec);
    struct hv_domain_meta m;
    cleanup_error struct na_error *err = NULL;
    assert_int_equal(hv_domain_meta_parse(xml, &m, &err), 0);
    assert_int_equal(m.instance_spec_size, HV_INSTANCE_SPEC_MAX_SIZE);
    assert_memory_equal(m.instance_spec, blob, HV_INSTANCE_SPEC_MAX_SIZE);
    hv_domain_meta_clear(&m);

    ls.spec.instance_spec_size = HV_INSTANCE_SPEC_MAX_SIZE + 1;
    char *refused = NULL;
    assert_int_equal(hv_domain_xml_build(&ls.spec, &refused, &err), -EINVAL);
    assert_null(refused);
    assert_string_equal(err->field, "instance_spec");
    na_error_clear(&err);

    /* Read back: the same element, three bytes longer (one more base64 group). */
    ls.spec.instance_spec_size = HV_INSTANCE_SPEC_MAX_SIZE + 3;
    cleanup_free char *b64 = na_base64_encode(blob, HV_INSTANCE_SPEC_MAX_SIZE + 3);
    const char *open_tag = "<na:spec encoding=\"base64\">";
    char *at = strstr(xml, open_tag);
    assert_non_null(at);
    char *end = strstr(at, "</na:spec>");
    cleanup_free char *longer =
        na_xasprintf("%.*s%s%s%s", (int)(at - xml), xml, open_tag, b64, end);
    expect_parse_error(longer, "na:spec");
    free(blob);
    free_spec(&ls);
}

/* The owner rewritten for adoption: the element carries the new node and store, and
 * everything else it said (the spec included) is unchanged. */
static void
test_meta_with_owner(void **state)
{
    (void)state;
    struct loaded_spec ls;
    load_spec("plain", &ls);
    cleanup_free char *xml = build_ok(&ls.spec);
    const char *store = "0f0e0d0c-0b0a-4908-8706-050403020100";
    cleanup_free char *element = NULL;
    cleanup_error struct na_error *err = NULL;
    if (hv_domain_meta_with_owner(xml, "node-9", store, &element, &err) < 0)
        fail_msg("with_owner: %s", err->msg);
    /* Without namespace, as virDomainSetMetadata() takes it. */
    assert_true(strncmp(element, "<instance>", strlen("<instance>")) == 0);
    assert_null(strstr(element, "xmlns"));
    assert_null(strstr(element, "na:"));
    assert_non_null(strstr(element, "<owner node=\"node-9\""));
    assert_null(strstr(element, "node-7"));
    assert_null(strstr(element, "<domain"));

    /* Put it where libvirt would, in the namespace, and read the domain again. */
    char *from = strstr(xml, "<na:instance");
    char *to = strstr(xml, "</na:instance>") + strlen("</na:instance>");
    cleanup_free char *adopted =
        na_xasprintf("%.*s<instance xmlns=\"" HV_METADATA_NS "\">%s%s", (int)(from - xml), xml,
                     element + strlen("<instance>"), to);
    ls.spec.node_id = "node-9";
    ls.spec.store_id = store;
    assert_meta_matches(&ls.spec, adopted);

    /* An older agent's domain (no owner) gets one. */
    const char *owner = strstr(xml, "<na:owner");
    const char *owner_end = strstr(owner, "/>") + 2;
    cleanup_free char *older = na_xasprintf("%.*s%s", (int)(owner - xml), xml, owner_end);
    free(element);
    element = NULL;
    assert_int_equal(hv_domain_meta_with_owner(older, "node-9", store, &element, &err), 0);
    assert_non_null(strstr(element, "store=\"0f0e0d0c-0b0a-4908-8706-050403020100\""));

    /* Not ours, a bad node id, a bad store id: refused. */
    char *none = NULL;
    assert_true(hv_domain_meta_with_owner(foreign_xml, "node-9", store, &none, &err) < 0);
    assert_null(none);
    na_error_clear(&err);
    assert_true(hv_domain_meta_with_owner(xml, "", store, &none, &err) < 0);
    assert_string_equal(err->field, "node_id");
    na_error_clear(&err);
    assert_true(hv_domain_meta_with_owner(xml, "node-9", "nope", &none, &err) < 0);
    assert_string_equal(err->field, "store_id");
    assert_null(none);
    free_spec(&ls);
}

/* --- refusals -------------------------------------------------------------------------- */

static struct hv_nic_spec base_nics[2];
static struct hv_domain_spec base;

static void
base_init(void)
{
    base_nics[0] = (struct hv_nic_spec){"0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d", "52:54:00:12:34:56",
                                        "br-int", 1450};
    base_nics[1] = (struct hv_nic_spec){"1b2c3d4e-5f6a-4b7c-9d8e-9f0a1b2c3d4e", "52:54:00:ab:cd:ef",
                                        "br-int", 0};
    base = (struct hv_domain_spec){
        .uuid = "6f1c2a3e-4b5d-4e6f-8a7b-9c0d1e2f3a4b",
        .name = "web1",
        .tenant_id = "t1",
        .flavor_name = "m1.small",
        .vcpus = 2,
        .memory_mib = 2048,
        .root_disk_gib = 20,
        .image_id = "debian12",
        .image_sha256 = "3b7e72edbc9e7c2a3f5d8e0a1b2c3d4e5f60718293a4b5c6d7e8f90123456789",
        .created_ms = 1,
        .node_id = "n1",
        .store_id = "5e0c8a1f-2b3d-4c5e-9f60-718293a4b5c6",
        .virt_type = "qemu",
        .cpu_mode = "host-model",
        .uid = 64001,
        .gid = 64001,
        .disk_path = "/var/lib/nodeagent/instances/x/disk",
        .backing_path = "/var/lib/nodeagent/images/y",
        .backing_format = "qcow2",
        .config_drive_path = "/var/lib/nodeagent/instances/x/disk.config",
        .console_log_path = "/var/lib/nodeagent/instances/x/console.log",
        .nics = base_nics,
        .n_nics = 2,
    };
}

#define MUT(id, stmt)                                                                              \
    static void mut_##id(struct hv_domain_spec *s, struct hv_nic_spec *n)                          \
    {                                                                                              \
        (void)s, (void)n;                                                                          \
        stmt;                                                                                      \
    }

MUT(uuid_upper, s->uuid = "6F1C2A3E-4B5D-4E6F-8A7B-9C0D1E2F3A4B")
MUT(uuid_null, s->uuid = NULL)
MUT(name_empty, s->name = "")
MUT(name_null, s->name = NULL)
MUT(name_latin1, s->name = "caf\xe9")
MUT(name_overlong, s->name = "\xc0\xbc")
MUT(name_surrogate, s->name = "\xed\xa0\x80")
MUT(name_newline, s->name = "a\nb")
MUT(name_c1, s->name = "a\xc2\x85")
MUT(name_fffe, s->name = "a\xef\xbf\xbe")
MUT(tenant_ctrl, s->tenant_id = "t\x01")
MUT(tenant_truncated, s->tenant_id = "t\xe6\x97")
MUT(flavor_bad, s->flavor_name = "\xff")
MUT(image_id_empty, s->image_id = "")
MUT(sha_upper, s->image_sha256 = "3B7E72EDBC9E7C2A3F5D8E0A1B2C3D4E5F60718293A4B5C6D7E8F90123456789")
MUT(sha_short, s->image_sha256 = "3b7e")
MUT(vcpus_zero, s->vcpus = 0)
MUT(vcpus_huge, s->vcpus = 100000)
MUT(memory_zero, s->memory_mib = 0)
MUT(memory_huge, s->memory_mib = UINT64_MAX)
MUT(created_neg, s->created_ms = -1)
MUT(node_null, s->node_id = NULL)
MUT(node_newline, s->node_id = "n1\nn2")
MUT(store_null, s->store_id = NULL)
MUT(store_bad, s->store_id = "not-a-uuid")
MUT(virt_xen, s->virt_type = "xen")
MUT(virt_null, s->virt_type = NULL)
MUT(cpu_mode_bad, s->cpu_mode = "maximum")
MUT(cpu_custom_nomodel, s->cpu_mode = "custom")
MUT(cpu_custom_badmodel, s->cpu_mode = "custom"; s->cpu_model = "Has<well>")
MUT(cpu_model_stray, s->cpu_model = "Haswell")
MUT(passthrough_tcg, s->cpu_mode = "host-passthrough")
MUT(machine_bad, s->machine = "pc'><evil/>")
MUT(uid_root, s->uid = 0)
MUT(gid_root, s->gid = 0)
MUT(disk_null, s->disk_path = NULL)
MUT(disk_relative, s->disk_path = "instances/x/disk")
MUT(disk_dotdot, s->disk_path = "/var/lib/nodeagent/../../etc/shadow")
MUT(disk_dot, s->disk_path = "/var/lib/./disk")
MUT(disk_double_slash, s->disk_path = "/var//disk")
MUT(disk_trailing_slash, s->disk_path = "/var/disk/")
MUT(disk_ctrl, s->disk_path = "/var/di\tsk")
MUT(backing_relative, s->backing_path = "base.qcow2")
MUT(backing_same, s->backing_path = s->disk_path)
MUT(backing_format_bad, s->backing_format = "vmdk")
MUT(backing_format_null, s->backing_format = NULL)
MUT(config_drive_relative, s->config_drive_path = "disk.config")
MUT(console_null, s->console_log_path = NULL)
MUT(console_latin1, s->console_log_path = "/var/log/\xfc.log")
MUT(nics_too_many, s->n_nics = 17)
MUT(nics_null, s->nics = NULL)
MUT(port_bad, n[1].port_id = "port-1")
MUT(port_null, n[0].port_id = NULL)
MUT(port_tap_clash, n[1].port_id = "0a1b2c3d-4eff-4a6b-8c7d-8e9f0a1b2c3d")
MUT(mac_bad, n[0].mac = "52:54:00:12:34")
MUT(mac_chars, n[0].mac = "52:54:00:12:34:5g")
MUT(mac_sep, n[0].mac = "52-54-00-12-34-56")
MUT(mac_multicast, n[1].mac = "01:00:5e:00:00:01")
MUT(mac_dup, n[1].mac = "52:54:00:12:34:56")
MUT(bridge_space, n[0].bridge = "br int")
MUT(bridge_quote, n[1].bridge = "br'int")
MUT(bridge_long, n[0].bridge = "br-int-0123456789")
MUT(bridge_dash, n[0].bridge = "-br")
MUT(bridge_empty, n[0].bridge = "")
MUT(mtu_small, n[1].mtu = 67)
MUT(mtu_big, n[0].mtu = 65536)
MUT(shares_one, s->limits.cpu_shares = 1)
MUT(shares_huge, s->limits.cpu_shares = 262145)
MUT(quota_over, s->limits.cpu_quota_percent = 101)
MUT(read_iops_huge, s->limits.disk_read_iops_sec = 1000001)
MUT(write_iops_huge, s->limits.disk_write_iops_sec = UINT32_MAX)
MUT(read_bytes_huge, s->limits.disk_read_bytes_sec = (1ULL << 40) + 1)
MUT(write_bytes_huge, s->limits.disk_write_bytes_sec = UINT64_MAX)

static const struct {
    const char *id;
    void (*mutate)(struct hv_domain_spec *, struct hv_nic_spec *);
    const char *field;
} refusals[] = {
#define R(id, field)                                                                               \
    {                                                                                              \
#id, mut_##id, field                                                                       \
    }
    R(uuid_upper, "uuid"),
    R(uuid_null, "uuid"),
    R(name_empty, "name"),
    R(name_null, "name"),
    R(name_latin1, "name"),
    R(name_overlong, "name"),
    R(name_surrogate, "name"),
    R(name_newline, "name"),
    R(name_c1, "name"),
    R(name_fffe, "name"),
    R(tenant_ctrl, "tenant_id"),
    R(tenant_truncated, "tenant_id"),
    R(flavor_bad, "flavor_name"),
    R(image_id_empty, "image_id"),
    R(sha_upper, "image_sha256"),
    R(sha_short, "image_sha256"),
    R(vcpus_zero, "vcpus"),
    R(vcpus_huge, "vcpus"),
    R(memory_zero, "memory_mib"),
    R(memory_huge, "memory_mib"),
    R(created_neg, "created_ms"),
    R(node_null, "node_id"),
    R(node_newline, "node_id"),
    R(store_null, "store_id"),
    R(store_bad, "store_id"),
    R(virt_xen, "virt_type"),
    R(virt_null, "virt_type"),
    R(cpu_mode_bad, "cpu_mode"),
    R(cpu_custom_nomodel, "cpu_model"),
    R(cpu_custom_badmodel, "cpu_model"),
    R(cpu_model_stray, "cpu_model"),
    R(passthrough_tcg, "cpu_mode"),
    R(machine_bad, "machine"),
    R(uid_root, "uid"),
    R(gid_root, "gid"),
    R(disk_null, "disk_path"),
    R(disk_relative, "disk_path"),
    R(disk_dotdot, "disk_path"),
    R(disk_dot, "disk_path"),
    R(disk_double_slash, "disk_path"),
    R(disk_trailing_slash, "disk_path"),
    R(disk_ctrl, "disk_path"),
    R(backing_relative, "backing_path"),
    R(backing_same, "backing_path"),
    R(backing_format_bad, "backing_format"),
    R(backing_format_null, "backing_format"),
    R(config_drive_relative, "config_drive_path"),
    R(console_null, "console_log_path"),
    R(console_latin1, "console_log_path"),
    R(nics_too_many, "nics"),
    R(nics_null, "nics"),
    R(port_bad, "nics[1].port_id"),
    R(port_null, "nics[0].port_id"),
    R(port_tap_clash, "nics[1].port_id"),
    R(mac_bad, "nics[0].mac"),
    R(mac_chars, "nics[0].mac"),
    R(mac_sep, "nics[0].mac"),
    R(mac_multicast, "nics[1].mac"),
    R(mac_dup, "nics[1].mac"),
    R(bridge_space, "nics[0].bridge"),
    R(bridge_quote, "nics[1].bridge"),
    R(bridge_long, "nics[0].bridge"),
    R(bridge_dash, "nics[0].bridge"),
    R(bridge_empty, "nics[0].bridge"),
    R(mtu_small, "nics[1].mtu"),
    R(mtu_big, "nics[0].mtu"),
    R(shares_one, "limits.cpu_shares"),
    R(shares_huge, "limits.cpu_shares"),
    R(quota_over, "limits.cpu_quota_percent"),
    R(read_iops_huge, "limits.disk_read_iops_sec"),
    R(write_iops_huge, "limits.disk_write_iops_sec"),
    R(read_bytes_huge, "limits.disk_read_bytes_sec"),
    R(write_bytes_huge, "limits.disk_write_bytes_sec"),
#undef R
};

static void
test_refusals(void **state)
{
    (void)state;
    base_init();
    cleanup_free char *ok = build_ok(&base);

    for (size_t i = 0; i < NA_ARRAY_SIZE(refusals); i++) {
        base_init();
        refusals[i].mutate(&base, base_nics);
        cleanup_error struct na_error *err = NULL;
        char *xml = (char *)"untouched";
        int ret = hv_domain_xml_build(&base, &xml, &err);
        if (ret >= 0)
            fail_msg("%s: built, expected a refusal on %s", refusals[i].id, refusals[i].field);
        assert_null(xml);
        assert_non_null(err);
        assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
        if (!err->field || strcmp(err->field, refusals[i].field))
            fail_msg("%s: refused on %s (%s), expected %s", refusals[i].id,
                     err->field ? err->field : "(none)", err->msg, refusals[i].field);
        if (!strstr(err->msg, refusals[i].field))
            fail_msg("%s: message \"%s\" does not name %s", refusals[i].id, err->msg,
                     refusals[i].field);
    }
}

/* Edges that must still build. */
static void
test_accepted_edges(void **state)
{
    (void)state;
    base_init();
    base.machine = "pc-i440fx-7.2";
    base.flavor_name = "";
    base.config_drive_path = NULL;
    base.n_nics = 0;
    base.nics = NULL;
    base.vcpus = 1024;
    base.memory_mib = 16777216;
    base.disk_path = "/d";
    cleanup_free char *xml = build_ok(&base);
    assert_non_null(strstr(xml, "machine=\"pc-i440fx-7.2\""));
    assert_null(strstr(xml, "cdrom"));
    assert_null(strstr(xml, "<interface"));
    assert_null(strstr(xml, "<?xml"));
}

int
main(void)
{
    hv_domain_xml_init();
    struct CMUnitTest tests[2 * NA_ARRAY_SIZE(golden_cases) + 16];
    size_t n = 0;
    for (size_t i = 0; i < NA_ARRAY_SIZE(golden_cases); i++) {
        tests[n++] = (struct CMUnitTest){.name = na_xasprintf("golden %s", golden_cases[i]),
                                         .test_func = test_golden,
                                         .initial_state = (void *)golden_cases[i]};
        tests[n++] = (struct CMUnitTest){.name = na_xasprintf("meta roundtrip %s", golden_cases[i]),
                                         .test_func = test_meta_roundtrip,
                                         .initial_state = (void *)golden_cases[i]};
    }
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_from_libvirt_dumpxml);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_foreign_domain);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_without_owner);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_refuses_bad_xml);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_refuses_broken_metadata);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_instance_spec_bound);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_meta_with_owner);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_refusals);
    tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_accepted_edges);
    int failed = _cmocka_run_group_tests("domain_xml", tests, n, NULL, NULL);
    for (size_t i = 0; i < 2 * NA_ARRAY_SIZE(golden_cases); i++)
        free((char *)tests[i].name);
    xmlCleanupParser();
    return failed;
}
