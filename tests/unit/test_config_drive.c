/* The config drive: build ISO images and read them back with libisofs's reader.
 *
 * The expected JSON is written out here by hand (json_pack), independently of the builder,
 * and compared value for value with what the image holds; user_data byte for byte.
 *
 * With NODEAGENT_CONFIG_DRIVE_OUT=<dir> set, the contents test also leaves its image in
 * dir/config.iso, for tests/system/test_config_drive_guest_parse.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <libisofs/libisofs.h>

#include "storage/qcow2/qcow2.h"

#define UUID "6f1c0f4e-5b0a-4d3c-9a2e-1d2c3b4a5f60"
#define PORT0 "1a81968a-797a-4c56-9a48-2b2b4a9f1c11"
#define PORT1 "2c3d4e5f-6071-4829-a3b4-c5d6e7f80912"
#define CD_TIME ((time_t)1535328000)

static const char *const keys[] = {
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0 alice@example",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC bob@example\n",
};
/* JSON-special characters, control characters and non-ASCII UTF-8 in keys and values. */
static const struct qcow2_config_drive_kv metadata[] = {
    {"role", "db \"primary\" \\ back/slash\n\ttab </script>"},
    {"ünïcødé ☃", "値 😀 ß"},
    {"empty", ""},
    {"ctl", "\x01\x1f"},
};
static const char *const ips0[] = {"10.0.0.5/24", "10.0.1.7/28"};
static const char *const ips1[] = {"192.168.5.9/16"};
static const struct qcow2_config_drive_nic nics[] = {
    {.port_id = PORT0,
     .network_id = "0b8e2a33-1c1d-4e0f-9a55-6d8a4c2b1e00",
     .mac = "52:54:00:AA:bb:01",
     .ips = ips0,
     .n_ips = 2,
     .gateway = "10.0.0.1",
     .mtu = 1450},
    {.port_id = PORT1, .mac = "52:54:00:12:34:02", .ips = ips1, .n_ips = 1, .gateway = ""},
};
static const char *const dns[] = {"10.0.0.2", "2001:db8::53"};
/* Binary user data: a NUL and a byte that is not UTF-8. */
static const uint8_t user_data[] = "#cloud-config\nruncmd: [\"echo hi\"]\n\0\xff\xfe end";

static struct qcow2_config_drive
spec(void)
{
    return (struct qcow2_config_drive){
        .uuid = UUID,
        .name = "web1",
        .hostname = "web1.example",
        .tenant_id = "tenant-42",
        .public_keys = keys,
        .n_public_keys = NA_ARRAY_SIZE(keys),
        .user_data = user_data,
        .user_data_size = sizeof(user_data) - 1,
        .metadata = metadata,
        .n_metadata = NA_ARRAY_SIZE(metadata),
        .nics = nics,
        .n_nics = NA_ARRAY_SIZE(nics),
        .dns_servers = dns,
        .n_dns_servers = NA_ARRAY_SIZE(dns),
    };
}

static json_t *
expected_meta_data(void)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:i, s:{s:s, s:s}, s:[{s:s, s:s, s:s}, {s:s, s:s, s:s}],"
                     " s:{s:s, s:s, s:s, s:s}}",
                     "uuid", UUID, "name", "web1", "hostname", "web1.example", "project_id",
                     "tenant-42", "launch_index", 0, "public_keys", "key-0", keys[0], "key-1",
                     keys[1], "keys", "name", "key-0", "type", "ssh", "data", keys[0], "name",
                     "key-1", "type", "ssh", "data", keys[1], "meta", "role", metadata[0].value,
                     "ünïcødé ☃", "値 😀 ß", "empty", "", "ctl", "\x01\x1f");
}

static json_t *
expected_network_data(void)
{
    json_t *def = json_pack("{s:s, s:s, s:s}", "network", "0.0.0.0", "netmask", "0.0.0.0",
                            "gateway", "10.0.0.1");
    return json_pack(
        "{s:[{s:s, s:s, s:s, s:s, s:i}, {s:s, s:s, s:s, s:s, s:n}],"
        " s:[{s:s, s:s, s:s, s:s, s:s, s:[o], s:s}, {s:s, s:s, s:s, s:s, s:s, s:[], s:s},"
        "    {s:s, s:s, s:s, s:s, s:s, s:[]}],"
        " s:[{s:s, s:s}, {s:s, s:s}]}",
        "links", "id", "tap1a81968a-79", "type", "ovs", "vif_id", PORT0, "ethernet_mac_address",
        "52:54:00:aa:bb:01", "mtu", 1450, "id", "tap2c3d4e5f-60", "type", "ovs", "vif_id", PORT1,
        "ethernet_mac_address", "52:54:00:12:34:02", "mtu", "networks", "id", "network0", "link",
        "tap1a81968a-79", "type", "ipv4", "ip_address", "10.0.0.5", "netmask", "255.255.255.0",
        "routes", def, "network_id", nics[0].network_id, "id", "network1", "link", "tap1a81968a-79",
        "type", "ipv4", "ip_address", "10.0.1.7", "netmask", "255.255.255.240", "routes",
        "network_id", nics[0].network_id, "id", "network2", "link", "tap2c3d4e5f-60", "type",
        "ipv4", "ip_address", "192.168.5.9", "netmask", "255.255.0.0", "routes", "services", "type",
        "dns", "address", "10.0.0.2", "type", "dns", "address", "2001:db8::53");
}

/* --- reading an image back ------------------------------------------------------------- */

struct iso {
    IsoImage *image;
    bool rockridge, joliet;
};

static void
iso_open(const char *path, struct iso *out, bool joliet_only)
{
    IsoDataSource *src = NULL;
    IsoReadOpts *ro = NULL;
    IsoReadImageFeatures *features = NULL;
    assert_true(iso_data_source_new_from_file(path, &src) >= 0);
    assert_true(iso_read_opts_new(&ro, 0) >= 0);
    if (joliet_only)
        iso_read_opts_set_no_rockridge(ro, 1);
    assert_true(iso_image_new("read", &out->image) >= 0);
    assert_true(iso_image_import(out->image, src, ro, &features) >= 0);
    out->rockridge = iso_read_image_features_has_rockridge(features);
    out->joliet = iso_read_image_features_has_joliet(features);
    iso_read_image_features_destroy(features);
    iso_read_opts_free(ro);
    iso_data_source_unref(src);
}

static void
iso_close(struct iso *iso)
{
    iso_image_unref(iso->image);
}

/* The file's bytes (NUL-terminated too), or NULL when there is no such node. */
static char *
iso_read(struct iso *iso, const char *path, size_t *size)
{
    IsoNode *node = NULL;
    if (iso_tree_path_to_node(iso->image, path, &node) != 1)
        return NULL;
    assert_true(ISO_NODE_IS_FILE(node));
    IsoStream *st = iso_file_get_stream((IsoFile *)node);
    off_t n = iso_stream_get_size(st);
    char *buf = na_xcalloc(1, (size_t)n + 1);
    assert_true(iso_stream_open(st) >= 0);
    assert_int_equal(iso_stream_read(st, buf, (size_t)n), n);
    iso_stream_close(st);
    *size = (size_t)n;
    return buf;
}

static void
check_node(struct iso *iso, const char *path, mode_t mode)
{
    IsoNode *node = NULL;
    assert_int_equal(iso_tree_path_to_node(iso->image, path, &node), 1);
    assert_int_equal(iso_node_get_permissions(node), mode);
    assert_int_equal(iso_node_get_uid(node), 0);
    assert_int_equal(iso_node_get_gid(node), 0);
    assert_int_equal(iso_node_get_mtime(node), CD_TIME);
}

static void
check_json(struct iso *iso, const char *path, json_t *expected)
{
    size_t size;
    cleanup_free char *s = iso_read(iso, path, &size);
    if (!s)
        fail_msg("%s is missing", path);
    json_error_t jerr;
    json_t *got = json_loadb(s, size, 0, &jerr);
    if (!got)
        fail_msg("%s: %s", path, jerr.text);
    if (!json_equal(got, expected)) {
        char *e = json_dumps(expected, JSON_SORT_KEYS);
        fail_msg("%s differs:\n got      %s\n expected %s", path, s, e);
    }
    json_decref(got);
    check_node(iso, path, 0444);
}

/* Every path in the image, sorted, as "/a/b\n/a/c\n...". */
static void
walk(IsoDir *dir, const char *prefix, char *out, size_t size)
{
    IsoDirIter *it = NULL;
    IsoNode *node;
    assert_true(iso_dir_get_children(dir, &it) >= 0);
    while (iso_dir_iter_next(it, &node) == 1) {
        char path[256];
        snprintf(path, sizeof(path), "%s/%s", prefix, iso_node_get_name(node));
        strncat(out, path, size - strlen(out) - 1);
        strncat(out, "\n", size - strlen(out) - 1);
        if (ISO_NODE_IS_DIR(node))
            walk((IsoDir *)node, path, out, size);
    }
    iso_dir_iter_free(it);
}

static char *
tmpdir(void)
{
    char tmpl[] = "/tmp/test_config_drive.XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    return na_xstrdup(tmpl);
}

static int
count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void
rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            cleanup_free char *p = na_xasprintf("%s/%s", dir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
    rmdir(dir);
}

static uint8_t *
slurp(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = na_xmalloc((size_t)n);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return b;
}

static void
build_ok(const struct qcow2_config_drive *in, const char *path)
{
    struct na_error *err = NULL;
    int ret = qcow2_config_drive_build(in, path, &err);
    if (ret != 0)
        fail_msg("build: %s", err ? err->msg : "?");
}

/* --- tests ----------------------------------------------------------------------------- */

static void
test_contents(void **state)
{
    (void)state;
    cleanup_free char *dir = tmpdir();
    cleanup_free char *path = na_xasprintf("%s/disk.config", dir);
    struct qcow2_config_drive in = spec();
    build_ok(&in, path);

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(count_entries(dir), 1); /* no temp file left */

    /* The volume id where the guest's /init and blkid look: PVD (sector 16), offset 40. */
    size_t size;
    cleanup_free uint8_t *raw = slurp(path, &size);
    assert_true(size >= 17 * 2048 && size % 2048 == 0);
    assert_int_equal(raw[16 * 2048], 1);
    assert_memory_equal(raw + 16 * 2048 + 1, "CD001", 5);
    assert_memory_equal(raw + 16 * 2048 + 40, "config-2                        ", 32);

    struct iso iso;
    iso_open(path, &iso, false);
    assert_true(iso.rockridge);
    assert_true(iso.joliet);
    assert_string_equal(iso_image_get_volume_id(iso.image), "config-2");

    char listing[2048] = "";
    walk(iso_image_get_root(iso.image), "", listing, sizeof(listing));
    assert_string_equal(listing, "/openstack\n"
                                 "/openstack/2018-08-27\n"
                                 "/openstack/2018-08-27/meta_data.json\n"
                                 "/openstack/2018-08-27/network_data.json\n"
                                 "/openstack/2018-08-27/user_data\n"
                                 "/openstack/2018-08-27/vendor_data.json\n"
                                 "/openstack/latest\n"
                                 "/openstack/latest/meta_data.json\n"
                                 "/openstack/latest/network_data.json\n"
                                 "/openstack/latest/user_data\n"
                                 "/openstack/latest/vendor_data.json\n");

    json_t *meta = expected_meta_data(), *net = expected_network_data(), *vendor = json_object();
    assert_non_null(meta);
    assert_non_null(net);
    const char *versions[] = {"latest", QCOW2_CONFIG_DRIVE_VERSION};
    cleanup_free char *first_meta = NULL;
    for (size_t v = 0; v < NA_ARRAY_SIZE(versions); v++) {
        char p[128];
        snprintf(p, sizeof(p), "/openstack/%s", versions[v]);
        check_node(&iso, p, 0555);
        snprintf(p, sizeof(p), "/openstack/%s/meta_data.json", versions[v]);
        check_json(&iso, p, meta);
        snprintf(p, sizeof(p), "/openstack/%s/network_data.json", versions[v]);
        check_json(&iso, p, net);
        snprintf(p, sizeof(p), "/openstack/%s/vendor_data.json", versions[v]);
        check_json(&iso, p, vendor);
        snprintf(p, sizeof(p), "/openstack/%s/user_data", versions[v]);
        size_t n;
        cleanup_free char *ud = iso_read(&iso, p, &n);
        assert_non_null(ud);
        assert_int_equal(n, sizeof(user_data) - 1);
        assert_memory_equal(ud, user_data, n);
        check_node(&iso, p, 0444);
        /* Non-ASCII stays raw UTF-8 (no \u escapes): what cloud-init and the guest read. */
        snprintf(p, sizeof(p), "/openstack/%s/meta_data.json", versions[v]);
        cleanup_free char *m = iso_read(&iso, p, &n);
        assert_non_null(strstr(m, "\"ünïcødé ☃\":\"値 😀 ß\""));
        if (v == 0)
            first_meta = na_steal(&m);
        else
            assert_string_equal(m, first_meta);
    }
    check_node(&iso, "/openstack", 0555);
    iso_close(&iso);

    /* The same names through Joliet, as Windows guests (cloudbase-init) see them. */
    struct iso jol;
    iso_open(path, &jol, true);
    size_t n;
    cleanup_free char *jm = iso_read(&jol, "/openstack/2018-08-27/network_data.json", &n);
    assert_non_null(jm);
    iso_close(&jol);

    json_decref(meta);
    json_decref(net);
    json_decref(vendor);

    const char *out = getenv("NODEAGENT_CONFIG_DRIVE_OUT");
    if (out && *out) {
        cleanup_free char *keep = na_xasprintf("%s/config.iso", out);
        build_ok(&in, keep);
    }
    rm_dir(dir);
}

static void
test_reproducible(void **state)
{
    (void)state;
    cleanup_free char *dir = tmpdir();
    cleanup_free char *a = na_xasprintf("%s/a", dir);
    cleanup_free char *b = na_xasprintf("%s/b", dir);
    struct qcow2_config_drive in = spec();
    const char *tz = getenv("TZ");
    cleanup_free char *saved_tz = tz ? na_xstrdup(tz) : NULL;
    setenv("TZ", "Pacific/Chatham", 1); /* UTC+12:45: timestamps must not depend on it */
    tzset();
    build_ok(&in, a);
    time_t built = time(NULL);
    while (time(NULL) == built) /* b in a later clock second too */
        usleep(20 * 1000);
    setenv("TZ", "America/St_Johns", 1);
    tzset();
    build_ok(&in, b);
    if (saved_tz)
        setenv("TZ", saved_tz, 1);
    else
        unsetenv("TZ");
    tzset();
    size_t na, nb;
    cleanup_free uint8_t *ba = slurp(a, &na);
    cleanup_free uint8_t *bb = slurp(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na);

    /* A different input gives a different image. */
    in.hostname = "web2";
    build_ok(&in, b);
    cleanup_free uint8_t *bc = slurp(b, &nb);
    assert_true(na != nb || memcmp(ba, bc, na) != 0);
    rm_dir(dir);
}

static void
test_no_user_data(void **state)
{
    (void)state;
    cleanup_free char *dir = tmpdir();
    cleanup_free char *path = na_xasprintf("%s/disk.config", dir);
    struct qcow2_config_drive in = {.uuid = UUID, .name = "n", .hostname = "h", .tenant_id = "t"};
    build_ok(&in, path);
    struct iso iso;
    iso_open(path, &iso, false);
    char listing[2048] = "";
    walk(iso_image_get_root(iso.image), "", listing, sizeof(listing));
    assert_null(strstr(listing, "user_data\n"));
    assert_non_null(strstr(listing, "/openstack/latest/meta_data.json\n"));
    json_t *meta = json_pack("{s:s, s:s, s:s, s:s, s:i, s:{}, s:[], s:{}}", "uuid", UUID, "name",
                             "n", "hostname", "h", "project_id", "t", "launch_index", 0,
                             "public_keys", "keys", "meta");
    json_t *net = json_pack("{s:[], s:[], s:[]}", "links", "networks", "services");
    check_json(&iso, "/openstack/latest/meta_data.json", meta);
    check_json(&iso, "/openstack/latest/network_data.json", net);
    json_decref(meta);
    json_decref(net);
    iso_close(&iso);
    rm_dir(dir);
}

/* A gateway outside every subnet of its NIC still gives that NIC a default route. */
static void
test_gateway_outside_subnets(void **state)
{
    (void)state;
    cleanup_free char *dir = tmpdir();
    cleanup_free char *path = na_xasprintf("%s/disk.config", dir);
    static const char *const ips[] = {"203.0.113.10/32", "198.51.100.4/30"};
    struct qcow2_config_drive_nic nic = {.port_id = PORT0,
                                         .mac = "52:54:00:00:00:01",
                                         .ips = ips,
                                         .n_ips = 2,
                                         .gateway = "203.0.113.1",
                                         .mtu = 9000};
    struct qcow2_config_drive in = {
        .uuid = UUID, .name = "n", .hostname = "h", .tenant_id = "t", .nics = &nic, .n_nics = 1};
    build_ok(&in, path);
    struct iso iso;
    iso_open(path, &iso, false);
    size_t n;
    cleanup_free char *s = iso_read(&iso, "/openstack/latest/network_data.json", &n);
    json_t *got = json_loads(s, 0, NULL);
    json_t *nets = json_object_get(got, "networks");
    assert_string_equal(json_string_value(json_object_get(json_array_get(nets, 0), "netmask")),
                        "255.255.255.255");
    assert_int_equal(json_array_size(json_object_get(json_array_get(nets, 0), "routes")), 1);
    assert_int_equal(json_array_size(json_object_get(json_array_get(nets, 1), "routes")), 0);
    assert_null(json_object_get(json_array_get(nets, 0), "network_id"));
    json_decref(got);
    iso_close(&iso);
    rm_dir(dir);
}

static json_t *
network_data(const struct qcow2_config_drive *in, const char *dir)
{
    cleanup_free char *path = na_xasprintf("%s/disk.config", dir);
    build_ok(in, path);
    struct iso iso;
    iso_open(path, &iso, false);
    size_t n;
    cleanup_free char *s = iso_read(&iso, "/openstack/latest/network_data.json", &n);
    iso_close(&iso);
    return json_loads(s, 0, NULL);
}

/* A dual-stack NIC: its IPv6 addresses are networks of OpenStack's static type "ipv6" with
 * the address alone and the netmask spelled out, and the IPv6 gateway is a ::/:: route on
 * the IPv6 network whose prefix holds it; the IPv4 side is as before. */
static void
test_dual_stack(void **state)
{
    (void)state;
    cleanup_free char *dir = tmpdir();
    static const char *const ips[] = {"10.0.0.5/24", "2001:db8:0:7::5/56", "fd00:0:0:1::5/64"};
    struct qcow2_config_drive_nic nic = {.port_id = PORT0,
                                         .network_id = "0b8e2a33-1c1d-4e0f-9a55-6d8a4c2b1e00",
                                         .mac = "52:54:00:00:00:01",
                                         .ips = ips,
                                         .n_ips = 3,
                                         .gateway = "10.0.0.1",
                                         .gateway6 = "fd00:0:0:1::1",
                                         .mtu = 1450};
    struct qcow2_config_drive in = {
        .uuid = UUID, .name = "n", .hostname = "h", .tenant_id = "t", .nics = &nic, .n_nics = 1};
    json_t *got = network_data(&in, dir);
    json_t *want =
        json_pack("[{s:s, s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:s}], s:s},"
                  " {s:s, s:s, s:s, s:s, s:s, s:[], s:s},"
                  " {s:s, s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:s}], s:s}]",
                  "id", "network0", "link", "tap1a81968a-79", "type", "ipv4", "ip_address",
                  "10.0.0.5", "netmask", "255.255.255.0", "routes", "network", "0.0.0.0", "netmask",
                  "0.0.0.0", "gateway", "10.0.0.1", "network_id", nic.network_id, "id", "network1",
                  "link", "tap1a81968a-79", "type", "ipv6", "ip_address", "2001:db8:0:7::5",
                  "netmask", "ffff:ffff:ffff:ff00::", "routes", "network_id", nic.network_id, "id",
                  "network2", "link", "tap1a81968a-79", "type", "ipv6", "ip_address",
                  "fd00:0:0:1::5", "netmask", "ffff:ffff:ffff:ffff::", "routes", "network",
                  "::", "netmask", "::", "gateway", "fd00:0:0:1::1", "network_id", nic.network_id);
    assert_true(json_equal(json_object_get(got, "networks"), want));
    json_decref(want);
    json_decref(got);

    /* A link-local gateway is in no prefix: the first IPv6 network gets the route.  An
     * IPv6-only NIC has no IPv4 network and no IPv4 route. */
    static const char *const ips6[] = {"2001:db8::5/128", "fd00::5/64"};
    nic.ips = ips6;
    nic.n_ips = 2;
    nic.gateway6 = "fe80::1";
    got = network_data(&in, dir);
    json_t *nets = json_object_get(got, "networks");
    assert_int_equal(json_array_size(nets), 2);
    json_t *r0 = json_object_get(json_array_get(nets, 0), "routes");
    assert_int_equal(json_array_size(r0), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(r0, 0), "gateway")),
                        "fe80::1");
    assert_string_equal(json_string_value(json_object_get(json_array_get(nets, 0), "netmask")),
                        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
    assert_int_equal(json_array_size(json_object_get(json_array_get(nets, 1), "routes")), 0);
    json_decref(got);
    rm_dir(dir);
}

static void
test_replaces_atomically(void **state)
{
    (void)state;
    cleanup_free char *dir = tmpdir();
    cleanup_free char *path = na_xasprintf("%s/disk.config", dir);
    FILE *f = fopen(path, "w");
    fputs("old", f);
    fclose(f);
    struct qcow2_config_drive in = spec();
    build_ok(&in, path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true(st.st_size > 3);
    assert_int_equal(count_entries(dir), 1);
    rm_dir(dir);
}

/* A symlink planted under the final name is replaced, never followed, and the file gets its
 * owner and mode through its descriptor before it appears. */
static void
test_write_at_does_not_follow_a_symlink(void **state)
{
    (void)state;
    struct qcow2_config_drive in = spec();
    struct na_error *err = NULL;
    cleanup_free char *dir = tmpdir();
    cleanup_free char *outside = tmpdir();
    cleanup_free char *target = na_xasprintf("%s/target", outside);
    FILE *f = fopen(target, "w");
    fputs("precious", f);
    fclose(f);
    assert_int_equal(chmod(target, 0644), 0);
    cleanup_free char *link = na_xasprintf("%s/disk.config", dir);
    assert_int_equal(symlink(target, link), 0);

    cleanup_close int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    struct qcow2_file_owner owner = {getuid(), getgid(), 0400};
    assert_int_equal(qcow2_config_drive_write(&in, dirfd, "disk.config", &owner, &err), 0);
    assert_null(err);
    struct stat st;
    assert_int_equal(lstat(link, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_mode & 07777, 0400);
    assert_int_equal(stat(target, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(st.st_size, 8);
    assert_int_equal(count_entries(dir), 1);
    rm_dir(dir);
    rm_dir(outside);
}

static void
test_io_failures(void **state)
{
    (void)state;
    struct qcow2_config_drive in = spec();
    struct na_error *err = NULL;

    /* A directory that does not exist: the message names the path. */
    assert_true(qcow2_config_drive_build(&in, "/nonexistent-dir/x/disk.config", &err) < 0);
    assert_int_equal(err->code, NA_CODE_STORAGE);
    assert_int_equal(err->status, ENOENT);
    assert_non_null(strstr(err->msg, "/nonexistent-dir/x/disk.config"));
    na_error_clear(&err);

    /* The write fails halfway (file size limit): the temp file goes, the old file stays. */
    cleanup_free char *dir = tmpdir();
    cleanup_free char *path = na_xasprintf("%s/disk.config", dir);
    FILE *f = fopen(path, "w");
    fputs("old", f);
    fclose(f);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 64 << 10;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int ret = qcow2_config_drive_build(&in, path, &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_true(ret < 0);
    assert_int_equal(err->code, NA_CODE_STORAGE);
    assert_int_equal(err->status, EFBIG);
    assert_non_null(strstr(err->msg, path));
    na_error_clear(&err);
    assert_int_equal(count_entries(dir), 1);
    size_t n;
    cleanup_free uint8_t *b = slurp(path, &n);
    assert_int_equal(n, 3);

    /* A read-only filesystem refuses even root. */
    assert_true(qcow2_config_drive_build(&in, "/proc/disk.config", &err) < 0);
    assert_int_equal(err->code, NA_CODE_STORAGE);
    assert_non_null(strstr(err->msg, "/proc/disk.config"));
    na_error_clear(&err);
    rm_dir(dir);
}

/* Worker threads build drives at the same time: each equals the one built alone. */
struct worker {
    const char *dir;
    int id;
    const uint8_t *ref;
    size_t ref_size;
    int failures;
};

static void *
worker_main(void *arg)
{
    struct worker *w = arg;
    struct qcow2_config_drive in = spec();
    for (int i = 0; i < 8; i++) {
        cleanup_free char *p = na_xasprintf("%s/w%d", w->dir, w->id);
        struct na_error *err = NULL;
        if (qcow2_config_drive_build(&in, p, &err) < 0) {
            na_error_free(err);
            w->failures++;
            continue;
        }
        size_t n;
        cleanup_free uint8_t *b = slurp(p, &n);
        w->failures += n != w->ref_size || memcmp(b, w->ref, n) != 0;
    }
    return NULL;
}

static void
test_threads(void **state)
{
    (void)state;
    cleanup_free char *dir = tmpdir();
    cleanup_free char *ref = na_xasprintf("%s/ref", dir);
    struct qcow2_config_drive in = spec();
    build_ok(&in, ref);
    size_t ref_size;
    cleanup_free uint8_t *rb = slurp(ref, &ref_size);
    struct worker w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){dir, i, rb, ref_size, 0};
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    assert_int_equal(count_entries(dir), 5);
    rm_dir(dir);
}

/* A write cut short by a crash left its temp file: the next write of that name takes its
 * place, and nothing but the published file stays. */
static void
test_stale_temp_file_goes(void **state)
{
    (void)state;
    cleanup_free char *dir = tmpdir();
    cleanup_free char *path = na_xasprintf("%s/disk.config", dir);
    cleanup_free char *stale = na_xasprintf("%s/disk.config.part", dir);
    FILE *f = fopen(stale, "w");
    assert_non_null(f);
    fputs("half a config drive", f);
    fclose(f);
    struct qcow2_config_drive in = spec();
    build_ok(&in, path);
    assert_int_equal(count_entries(dir), 1);
    rm_dir(dir);
}

/* --- refusals -------------------------------------------------------------------------- */

static const char *const bad_ip_prefix[] = {"10.0.0.5/33"};
static const char *const bad_ip_noprefix[] = {"10.0.0.5"};
static const char *const bad_ip_short[] = {"10.0.0/24"};
static const char *const bad_ip_zero[] = {"10.0.0.5/0"};
static const char *const bad_ip_lead[] = {"10.0.0.5/024"};
static const char *const bad_ip_v6[] = {"2001:db8::1/129"};
static const char *const bad_ip_v6_lead[] = {"2001:db8::1/064"};
static const char *const bad_ip_v6_none[] = {"2001:db8::1"};
static const char *const null_str[] = {NULL};
static const char *const bad_dns[] = {"ns1.example"};
static const struct qcow2_config_drive_kv dup_meta[] = {{"a", "1"}, {"a", "2"}};
static const struct qcow2_config_drive_kv bad_utf8_meta[] = {{"k", "\xc3\x28"}};
static const struct qcow2_config_drive_kv bad_utf8_key[] = {{"\xff", "v"}};
static const struct qcow2_config_drive_kv null_value[] = {{"k", NULL}};

struct refusal {
    const char *name;
    const char *field;
    void (*mutate)(struct qcow2_config_drive *in, struct qcow2_config_drive_nic *nic);
};

#define NIC_MUTATION(fn, stmt)                                                                     \
    static void fn(struct qcow2_config_drive *in, struct qcow2_config_drive_nic *nic)              \
    {                                                                                              \
        (void)in;                                                                                  \
        (void)nic;                                                                                 \
        stmt;                                                                                      \
    }
NIC_MUTATION(m_null_uuid, in->uuid = NULL)
NIC_MUTATION(m_bad_uuid, in->uuid = "6F1C0F4E-5B0A-4D3C-9A2E-1D2C3B4A5F60")
NIC_MUTATION(m_empty_name, in->name = "")
NIC_MUTATION(m_null_hostname, in->hostname = NULL)
NIC_MUTATION(m_null_tenant, in->tenant_id = NULL)
NIC_MUTATION(m_bad_utf8_name, in->name = "caf\xe9")
NIC_MUTATION(m_null_key, in->public_keys = null_str; in->n_public_keys = 1)
NIC_MUTATION(m_keys_array_null, in->public_keys = NULL; in->n_public_keys = 2)
NIC_MUTATION(m_dup_meta, in->metadata = dup_meta; in->n_metadata = 2)
NIC_MUTATION(m_bad_utf8_meta, in->metadata = bad_utf8_meta; in->n_metadata = 1)
NIC_MUTATION(m_bad_utf8_key, in->metadata = bad_utf8_key; in->n_metadata = 1)
NIC_MUTATION(m_null_meta_value, in->metadata = null_value; in->n_metadata = 1)
NIC_MUTATION(m_user_data_null, in->user_data = NULL)
NIC_MUTATION(m_null_port, nic[1].port_id = NULL)
NIC_MUTATION(m_dup_link, nic[1].port_id = "1a81968a-79ff-4c56-9a48-2b2b4a9f1c11")
NIC_MUTATION(m_dup_mac, nic[1].mac = "52:54:00:aa:BB:01")
NIC_MUTATION(m_bad_mac, nic[1].mac = "52:54:00:12:34")
NIC_MUTATION(m_bad_mac_sep, nic[1].mac = "52-54-00-12-34-02")
NIC_MUTATION(m_null_mac, nic[0].mac = NULL)
NIC_MUTATION(m_bad_prefix, nic[1].ips = bad_ip_prefix)
NIC_MUTATION(m_no_prefix, nic[1].ips = bad_ip_noprefix)
NIC_MUTATION(m_short_ip, nic[1].ips = bad_ip_short)
NIC_MUTATION(m_zero_prefix, nic[1].ips = bad_ip_zero)
NIC_MUTATION(m_leading_zero, nic[1].ips = bad_ip_lead)
NIC_MUTATION(m_ipv6, nic[1].ips = bad_ip_v6)
NIC_MUTATION(m_ipv6_lead, nic[1].ips = bad_ip_v6_lead)
NIC_MUTATION(m_ipv6_none, nic[1].ips = bad_ip_v6_none)
NIC_MUTATION(m_bad_gateway6, nic[0].gateway6 = "10.0.0.1")
NIC_MUTATION(m_null_ip, nic[1].ips = null_str)
NIC_MUTATION(m_ips_array_null, nic[1].ips = NULL)
NIC_MUTATION(m_bad_gateway, nic[0].gateway = "10.0.0.256")
NIC_MUTATION(m_small_mtu, nic[0].mtu = 10)
NIC_MUTATION(m_big_mtu, nic[0].mtu = 70000)
NIC_MUTATION(m_bad_dns, in->dns_servers = bad_dns; in->n_dns_servers = 1)
NIC_MUTATION(m_null_dns, in->dns_servers = null_str; in->n_dns_servers = 1)
NIC_MUTATION(m_nics_array_null, in->nics = NULL)

static const struct refusal refusals[] = {
    {"null uuid", "uuid", m_null_uuid},
    {"uppercase uuid", "uuid", m_bad_uuid},
    {"empty name", "name", m_empty_name},
    {"null hostname", "hostname", m_null_hostname},
    {"null tenant", "tenant_id", m_null_tenant},
    {"latin-1 name", "name", m_bad_utf8_name},
    {"null key", "public_keys[0]", m_null_key},
    {"keys array null", "public_keys", m_keys_array_null},
    {"duplicate metadata key", "metadata[1].key", m_dup_meta},
    {"invalid utf-8 value", "metadata[0].value", m_bad_utf8_meta},
    {"invalid utf-8 key", "metadata[0].key", m_bad_utf8_key},
    {"null metadata value", "metadata[0].value", m_null_meta_value},
    {"user_data null", "user_data", m_user_data_null},
    {"null port", "nics[1].port_id", m_null_port},
    {"duplicate link id", "nics[1].port_id", m_dup_link},
    {"duplicate mac", "nics[1].mac", m_dup_mac},
    {"short mac", "nics[1].mac", m_bad_mac},
    {"mac with dashes", "nics[1].mac", m_bad_mac_sep},
    {"null mac", "nics[0].mac", m_null_mac},
    {"prefix 33", "nics[1].ips[0]", m_bad_prefix},
    {"no prefix", "nics[1].ips[0]", m_no_prefix},
    {"three octets", "nics[1].ips[0]", m_short_ip},
    {"prefix 0", "nics[1].ips[0]", m_zero_prefix},
    {"prefix 024", "nics[1].ips[0]", m_leading_zero},
    {"ipv6 prefix 129", "nics[1].ips[0]", m_ipv6},
    {"ipv6 prefix 064", "nics[1].ips[0]", m_ipv6_lead},
    {"ipv6 no prefix", "nics[1].ips[0]", m_ipv6_none},
    {"ipv4 gateway6", "nics[0].gateway6", m_bad_gateway6},
    {"null ip", "nics[1].ips[0]", m_null_ip},
    {"ips array null", "nics[1].ips", m_ips_array_null},
    {"bad gateway", "nics[0].gateway", m_bad_gateway},
    {"mtu 10", "nics[0].mtu", m_small_mtu},
    {"mtu 70000", "nics[0].mtu", m_big_mtu},
    {"dns name", "dns_servers[0]", m_bad_dns},
    {"null dns", "dns_servers[0]", m_null_dns},
    {"nics array null", "nics", m_nics_array_null},
};

static void
test_refusals(void **state)
{
    (void)state;
    cleanup_free char *dir = tmpdir();
    cleanup_free char *path = na_xasprintf("%s/disk.config", dir);
    for (size_t i = 0; i < NA_ARRAY_SIZE(refusals); i++) {
        struct qcow2_config_drive in = spec();
        struct qcow2_config_drive_nic nic[2];
        memcpy(nic, nics, sizeof(nic));
        in.nics = nic;
        refusals[i].mutate(&in, nic);
        struct na_error *err = NULL;
        int ret = qcow2_config_drive_build(&in, path, &err);
        if (ret == 0)
            fail_msg("%s: accepted", refusals[i].name);
        assert_int_equal(ret, -EINVAL);
        assert_int_equal(err->code, NA_CODE_INVALID_ARGUMENT);
        if (!err->field || strcmp(err->field, refusals[i].field) != 0)
            fail_msg("%s: field %s, expected %s (%s)", refusals[i].name,
                     err->field ? err->field : "(none)", refusals[i].field, err->msg);
        na_error_free(err);
        assert_int_equal(count_entries(dir), 0); /* refused before touching the disk */
    }

    struct na_error *err = NULL;
    assert_int_equal(qcow2_config_drive_build(NULL, path, &err), -EINVAL);
    na_error_clear(&err);
    struct qcow2_config_drive in = spec();
    assert_int_equal(qcow2_config_drive_build(&in, NULL, &err), -EINVAL);
    na_error_clear(&err);
    assert_int_equal(qcow2_config_drive_build(&in, "", &err), -EINVAL);
    na_error_clear(&err);
    assert_int_equal(count_entries(dir), 0);
    rm_dir(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contents),
        cmocka_unit_test(test_reproducible),
        cmocka_unit_test(test_no_user_data),
        cmocka_unit_test(test_gateway_outside_subnets),
        cmocka_unit_test(test_dual_stack),
        cmocka_unit_test(test_replaces_atomically),
        cmocka_unit_test(test_io_failures),
        cmocka_unit_test(test_write_at_does_not_follow_a_symlink),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_stale_temp_file_goes),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests_name("config_drive", tests, NULL, NULL);
}
