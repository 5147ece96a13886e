/* The OpenStack config drive ("config-2") as an ISO9660 image, built with libisofs.
 *
 * The JSON follows what Nova writes and what cloud-init's OpenStack datasource and the test
 * guest (deploy/images) read: meta_data.json (uuid, name, hostname, project_id,
 * launch_index, public_keys, keys, meta) and network_data.json (links, networks, services).
 * The JSON and then the whole image are built in memory (a config drive is tens of KiB), so
 * refused input never touches the disk; the image is then written to a temp file that is
 * renamed into place.
 *
 * Reproducibility: every node gets fixed permissions, owner and timestamps, the volume
 * descriptors get fixed times, and the image is recorded in GMT, so equal input gives equal
 * bytes whatever the clock or the time zone.
 *
 * libisofs keeps process-wide state (its message queue, its character set, counters).  It
 * is set up once with pthread_once and never torn down, and images are made one at a time
 * under a mutex, in memory; the file is written outside the lock.  Messages are neither queued
 * (they would pile up in a long-running agent) nor printed (stderr belongs to our logfmt log):
 * failures come back as return codes, turned into messages with iso_error_to_msg(). */
#include "storage/qcow2/qcow2.h"
#include "storage/qcow2/qcow2-private.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
/* The struct burn_source declaration comes from libisofs.h, not from libburn. */
#define LIBISOFS_WITHOUT_LIBBURN 1
#include <libisofs/libisofs.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define CD_VOLUME_ID "config-2"
/* 2018-08-27T00:00:00Z, for every timestamp in the image. */
#define CD_TIME ((time_t)1535328000)
#define CD_PVD_TIME "2018082700000000"
#define CD_FILE_MODE 0444
#define CD_DIR_MODE 0555
#define CD_SECTOR_SIZE 2048
/* Far above what the inputs can make (user_data is at most 64 KiB upstream). */
#define CD_MAX_IMAGE_SIZE ((off_t)256 << 20)

/* --- JSON ------------------------------------------------------------------------------ */

/* A JSON string, or an error on `field` when s is not valid UTF-8. */
static int
put_str(json_t *obj, const char *key, const char *s, const char *field, struct na_error **err)
{
    json_t *v = json_string(s);
    if (!v)
        return na_error_field(err, field, "config drive: %s is not valid UTF-8", field);
    json_object_set_new(obj, key, v);
    return 0;
}

static bool
utf8_ok(const char *s)
{
    json_t *v = json_string(s); /* jansson checks UTF-8 when it makes a string */
    json_decref(v);
    return v != NULL;
}

static int
need_str(const char *s, const char *field, struct na_error **err)
{
    if (!s || !*s)
        return na_error_field(err, field, "config drive: %s is missing", field);
    return 0;
}

static char *
dump(const json_t *root)
{
    char *s = json_dumps(root, JSON_COMPACT);
    if (!s)
        abort(); /* only on allocation failure: see na_xmalloc */
    return s;
}

static int
build_meta_data(const struct qcow2_config_drive *in, char **out, struct na_error **err)
{
    int ret;
    if (!in->uuid || !na_uuid_is_valid(in->uuid))
        return na_error_field(err, "uuid", "config drive: uuid \"%s\" is not a canonical uuid",
                              in->uuid ? in->uuid : "");
    if ((ret = need_str(in->name, "name", err)) < 0 ||
        (ret = need_str(in->hostname, "hostname", err)) < 0 ||
        (ret = need_str(in->tenant_id, "tenant_id", err)) < 0)
        return ret;
    if ((in->n_public_keys && !in->public_keys) || (in->n_metadata && !in->metadata))
        return na_error_field(err,
                              in->n_public_keys && !in->public_keys ? "public_keys" : "metadata",
                              "config drive: array is NULL but its count is not 0");

    json_auto_t *root = json_object();
    if ((ret = put_str(root, "uuid", in->uuid, "uuid", err)) < 0 ||
        (ret = put_str(root, "name", in->name, "name", err)) < 0 ||
        (ret = put_str(root, "hostname", in->hostname, "hostname", err)) < 0 ||
        (ret = put_str(root, "project_id", in->tenant_id, "tenant_id", err)) < 0)
        return ret;
    json_object_set_new(root, "launch_index", json_integer(0));

    json_t *pub = json_object();
    json_t *keys = json_array();
    json_object_set_new(root, "public_keys", pub);
    json_object_set_new(root, "keys", keys);
    for (size_t i = 0; i < in->n_public_keys; i++) {
        char field[48], name[32];
        snprintf(field, sizeof(field), "public_keys[%zu]", i);
        snprintf(name, sizeof(name), "key-%zu", i);
        if ((ret = need_str(in->public_keys[i], field, err)) < 0 ||
            (ret = put_str(pub, name, in->public_keys[i], field, err)) < 0)
            return ret;
        json_array_append_new(keys, json_pack("{s:s, s:s, s:s}", "name", name, "type", "ssh",
                                              "data", in->public_keys[i]));
    }

    json_t *meta = json_object();
    json_object_set_new(root, "meta", meta);
    for (size_t i = 0; i < in->n_metadata; i++) {
        const struct qcow2_config_drive_kv *kv = &in->metadata[i];
        char field[48];
        snprintf(field, sizeof(field), "metadata[%zu].key", i);
        if ((ret = need_str(kv->key, field, err)) < 0)
            return ret;
        if (!utf8_ok(kv->key))
            return na_error_field(err, field, "config drive: %s is not valid UTF-8", field);
        if (json_object_get(meta, kv->key))
            return na_error_field(err, field, "config drive: metadata key \"%s\" repeats", kv->key);
        snprintf(field, sizeof(field), "metadata[%zu].value", i);
        if (!kv->value)
            return na_error_field(err, field, "config drive: %s is missing", field);
        if ((ret = put_str(meta, kv->key, kv->value, field, err)) < 0)
            return ret;
    }
    *out = dump(root);
    return 0;
}

/* "a.b.c.d/p" with p in 1..32; fills the address and the netmask (network byte order). */
static int
parse_cidr(const char *s, struct in_addr *addr, struct in_addr *mask, const char *field,
           struct na_error **err)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    char ip[INET_ADDRSTRLEN];
    size_t len = slash ? (size_t)(slash - s) : 0;
    if (!slash || len == 0 || len >= sizeof(ip))
        goto bad;
    memcpy(ip, s, len);
    ip[len] = '\0';
    if (inet_pton(AF_INET, ip, addr) != 1)
        goto bad;
    const char *p = slash + 1;
    size_t plen = strlen(p);
    if (plen == 0 || plen > 2 || strspn(p, "0123456789") != plen || (plen == 2 && p[0] == '0'))
        goto bad;
    unsigned prefix = (unsigned)atoi(p);
    if (prefix < 1 || prefix > 32)
        goto bad;
    mask->s_addr = htonl(prefix == 32 ? 0xffffffffu : ~(0xffffffffu >> prefix));
    return 0;
bad:
    return na_error_field(err, field,
                          "config drive: %s \"%s\" is not an IPv4 address with a prefix length "
                          "(a.b.c.d/1..32)",
                          field, s ? s : "");
}

/* "x::y/p" with p in 1..128; fills the address and the netmask. */
static int
parse_cidr6(const char *s, struct in6_addr *addr, struct in6_addr *mask, const char *field,
            struct na_error **err)
{
    const char *slash = s ? strchr(s, '/') : NULL;
    char ip[INET6_ADDRSTRLEN];
    size_t len = slash ? (size_t)(slash - s) : 0;
    if (!slash || len == 0 || len >= sizeof(ip))
        goto bad;
    memcpy(ip, s, len);
    ip[len] = '\0';
    if (inet_pton(AF_INET6, ip, addr) != 1)
        goto bad;
    const char *p = slash + 1;
    size_t plen = strlen(p);
    if (plen == 0 || plen > 3 || strspn(p, "0123456789") != plen || p[0] == '0')
        goto bad;
    unsigned prefix = (unsigned)atoi(p);
    if (prefix > 128)
        goto bad;
    memset(mask, 0, sizeof(*mask));
    for (unsigned b = 0; b < prefix; b++)
        mask->s6_addr[b / 8] |= (uint8_t)(0x80u >> (b % 8));
    return 0;
bad:
    return na_error_field(err, field,
                          "config drive: %s \"%s\" is not an IPv6 address with a prefix length "
                          "(x::y/1..128)",
                          field, s ? s : "");
}

static bool
same_prefix6(const struct in6_addr *a, const struct in6_addr *b, const struct in6_addr *mask)
{
    for (int k = 0; k < 16; k++)
        if ((a->s6_addr[k] & mask->s6_addr[k]) != (b->s6_addr[k] & mask->s6_addr[k]))
            return false;
    return true;
}

static json_t *
ntoa6(const struct in6_addr *a)
{
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, a, buf, sizeof(buf));
    return json_string(buf);
}

static bool
mac_is_valid(const char *mac)
{
    if (!mac || strlen(mac) != 17)
        return false;
    for (int i = 0; i < 17; i++) {
        bool colon = i % 3 == 2;
        if (colon ? mac[i] != ':' : !strchr("0123456789abcdefABCDEF", mac[i]))
            return false;
    }
    return true;
}

static json_t *
ntoa(struct in_addr a)
{
    char buf[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a, buf, sizeof(buf));
    return json_string(buf);
}

static json_t *
default_route(const char *gateway)
{
    return json_pack("{s:s, s:s, s:s}", "network", "0.0.0.0", "netmask", "0.0.0.0", "gateway",
                     gateway);
}

/* OpenStack's form of an IPv6 default route (nova's network_data.json). */
static json_t *
default_route6(const char *gateway)
{
    return json_pack("{s:s, s:s, s:s}", "network", "::", "netmask", "::", "gateway", gateway);
}

static int
add_nic(const struct qcow2_config_drive_nic *nic, size_t i, json_t *links, json_t *networks,
        struct na_error **err)
{
    char field[64];
    int ret;

    snprintf(field, sizeof(field), "nics[%zu].port_id", i);
    if ((ret = need_str(nic->port_id, field, err)) < 0)
        return ret;
    char link_id[3 + 11 + 1];
    snprintf(link_id, sizeof(link_id), "tap%.11s", nic->port_id);
    for (size_t k = 0; k < json_array_size(links); k++) {
        json_t *l = json_array_get(links, k);
        if (strcmp(json_string_value(json_object_get(l, "id")), link_id) == 0)
            return na_error_field(err, field,
                                  "config drive: %s \"%s\" gives link id %s, as nics[%zu] does",
                                  field, nic->port_id, link_id, k);
    }
    json_t *link = json_object();
    json_array_append_new(links, link);
    if ((ret = put_str(link, "id", link_id, field, err)) < 0)
        return ret;
    json_object_set_new(link, "type", json_string("ovs"));
    if ((ret = put_str(link, "vif_id", nic->port_id, field, err)) < 0)
        return ret;

    snprintf(field, sizeof(field), "nics[%zu].mac", i);
    if (!mac_is_valid(nic->mac))
        return na_error_field(err, field, "config drive: %s \"%s\" is not a MAC address", field,
                              nic->mac ? nic->mac : "");
    char mac[18];
    for (int k = 0; k < 18; k++)
        mac[k] = (char)(nic->mac[k] >= 'A' && nic->mac[k] <= 'F' ? nic->mac[k] + 32 : nic->mac[k]);
    for (size_t k = 0; k + 1 < json_array_size(links); k++) {
        json_t *l = json_array_get(links, k);
        if (strcmp(json_string_value(json_object_get(l, "ethernet_mac_address")), mac) == 0)
            return na_error_field(err, field, "config drive: %s %s repeats nics[%zu].mac", field,
                                  mac, k);
    }
    json_object_set_new(link, "ethernet_mac_address", json_string(mac));

    if (nic->mtu != 0 && (nic->mtu < 68 || nic->mtu > 65535)) {
        snprintf(field, sizeof(field), "nics[%zu].mtu", i);
        return na_error_field(err, field, "config drive: %s %u is outside 68..65535", field,
                              nic->mtu);
    }
    json_object_set_new(link, "mtu", nic->mtu ? json_integer(nic->mtu) : json_null());

    struct in_addr gw = {0};
    bool has_gw = nic->gateway && *nic->gateway;
    if (has_gw && inet_pton(AF_INET, nic->gateway, &gw) != 1) {
        snprintf(field, sizeof(field), "nics[%zu].gateway", i);
        return na_error_field(err, field, "config drive: %s \"%s\" is not an IPv4 address", field,
                              nic->gateway);
    }
    struct in6_addr gw6 = IN6ADDR_ANY_INIT;
    bool has_gw6 = nic->gateway6 && *nic->gateway6;
    if (has_gw6 && inet_pton(AF_INET6, nic->gateway6, &gw6) != 1) {
        snprintf(field, sizeof(field), "nics[%zu].gateway6", i);
        return na_error_field(err, field, "config drive: %s \"%s\" is not an IPv6 address", field,
                              nic->gateway6);
    }
    if (nic->network_id && !utf8_ok(nic->network_id)) {
        snprintf(field, sizeof(field), "nics[%zu].network_id", i);
        return na_error_field(err, field, "config drive: %s is not valid UTF-8", field);
    }
    if (nic->n_ips && !nic->ips) {
        snprintf(field, sizeof(field), "nics[%zu].ips", i);
        return na_error_field(err, field, "config drive: array is NULL but its count is not 0");
    }

    /* Which of the NIC's networks get the default routes (see qcow2.h). */
    json_t *first4 = NULL, *first6 = NULL;
    bool routed4 = false, routed6 = false;
    for (size_t k = 0; k < nic->n_ips; k++) {
        snprintf(field, sizeof(field), "nics[%zu].ips[%zu]", i, k);
        bool v6 = nic->ips[k] && strchr(nic->ips[k], ':');
        struct in_addr ip = {0}, mask = {0};
        struct in6_addr ip6, mask6;
        if (v6 ? (ret = parse_cidr6(nic->ips[k], &ip6, &mask6, field, err)) < 0
               : (ret = parse_cidr(nic->ips[k], &ip, &mask, field, err)) < 0)
            return ret;
        char id[32];
        snprintf(id, sizeof(id), "network%zu", json_array_size(networks));
        json_t *net =
            json_pack("{s:s, s:s, s:s, s:o, s:o, s:[]}", "id", id, "link", link_id, "type",
                      v6 ? "ipv6" : "ipv4", "ip_address", v6 ? ntoa6(&ip6) : ntoa(ip), "netmask",
                      v6 ? ntoa6(&mask6) : ntoa(mask), "routes");
        if (nic->network_id && *nic->network_id)
            json_object_set_new(net, "network_id", json_string(nic->network_id));
        json_array_append_new(networks, net);
        json_t *routes = json_object_get(net, "routes");
        if (v6) {
            first6 = first6 ? first6 : routes;
            if (has_gw6 && same_prefix6(&ip6, &gw6, &mask6)) {
                json_array_append_new(routes, default_route6(nic->gateway6));
                routed6 = true;
            }
        } else {
            first4 = first4 ? first4 : routes;
            if (has_gw && (ip.s_addr & mask.s_addr) == (gw.s_addr & mask.s_addr)) {
                json_array_append_new(routes, default_route(nic->gateway));
                routed4 = true;
            }
        }
    }
    if (has_gw && !routed4 && first4)
        json_array_append_new(first4, default_route(nic->gateway));
    if (has_gw6 && !routed6 && first6)
        json_array_append_new(first6, default_route6(nic->gateway6));
    return 0;
}

static int
build_network_data(const struct qcow2_config_drive *in, char **out, struct na_error **err)
{
    int ret;
    if ((in->n_nics && !in->nics) || (in->n_dns_servers && !in->dns_servers))
        return na_error_field(err, in->n_nics && !in->nics ? "nics" : "dns_servers",
                              "config drive: array is NULL but its count is not 0");
    json_auto_t *root = json_pack("{s:[], s:[], s:[]}", "links", "networks", "services");
    json_t *links = json_object_get(root, "links");
    json_t *networks = json_object_get(root, "networks");
    json_t *services = json_object_get(root, "services");
    for (size_t i = 0; i < in->n_nics; i++)
        if ((ret = add_nic(&in->nics[i], i, links, networks, err)) < 0)
            return ret;
    for (size_t i = 0; i < in->n_dns_servers; i++) {
        const char *a = in->dns_servers[i];
        unsigned char buf[sizeof(struct in6_addr)];
        if (!a || (inet_pton(AF_INET, a, buf) != 1 && inet_pton(AF_INET6, a, buf) != 1)) {
            char field[48];
            snprintf(field, sizeof(field), "dns_servers[%zu]", i);
            return na_error_field(err, field, "config drive: %s \"%s\" is not an IP address", field,
                                  a ? a : "");
        }
        json_array_append_new(services, json_pack("{s:s, s:s}", "type", "dns", "address", a));
    }
    *out = dump(root);
    return 0;
}

/* --- ISO9660 --------------------------------------------------------------------------- */

static pthread_once_t isofs_once = PTHREAD_ONCE_INIT;
static int isofs_init_status; /* written once, inside isofs_once */
/* Held from iso_image_new() to the last iso_image_unref(): see render_image(). */
static pthread_mutex_t isofs_lock = PTHREAD_MUTEX_INITIALIZER;

static void
isofs_init(void)
{
    /* bit0: leave the process's locale alone. */
    isofs_init_status = iso_init_with_flag(1);
    if (isofs_init_status >= 0)
        iso_set_msgs_severities("NEVER", "NEVER", "libisofs");
}

static int
isofs_error(struct na_error **err, int code, const char *what)
{
    return na_error_set(err, NA_CODE_STORAGE, EIO, "config drive: libisofs: %s: %s", what,
                        iso_error_to_msg(code));
}

static void
fix_node(IsoNode *node, mode_t mode)
{
    iso_node_set_permissions(node, mode);
    iso_node_set_uid(node, 0);
    iso_node_set_gid(node, 0);
    iso_node_set_mtime(node, CD_TIME);
    iso_node_set_atime(node, CD_TIME);
    iso_node_set_ctime(node, CD_TIME);
}

static int
add_dir(IsoDir *parent, const char *name, IsoDir **out, struct na_error **err)
{
    int r = iso_tree_add_new_dir(parent, name, out);
    if (r < 0)
        return isofs_error(err, r, name);
    fix_node((IsoNode *)*out, CD_DIR_MODE);
    return 0;
}

/* Adds a file with a private copy of data (libisofs frees it with the stream). */
static int
add_file(IsoDir *dir, const char *name, const void *data, size_t size, struct na_error **err)
{
    unsigned char *copy = na_xmalloc(size);
    memcpy(copy, data, size);
    IsoStream *stream = NULL;
    int r = iso_memory_stream_new(copy, size, &stream);
    if (r < 0) {
        free(copy);
        return isofs_error(err, r, name);
    }
    IsoFile *file = NULL;
    r = iso_tree_add_new_file(dir, name, stream, &file);
    if (r < 0) {
        iso_stream_unref(stream);
        return isofs_error(err, r, name);
    }
    fix_node((IsoNode *)file, CD_FILE_MODE);
    return 0;
}

struct cd_files {
    const char *meta_data, *network_data;
    const uint8_t *user_data;
    size_t user_data_size;
};

static int
add_version(IsoDir *openstack, const char *version, const struct cd_files *f, struct na_error **err)
{
    static const char vendor_data[] = "{}";
    IsoDir *dir;
    int ret;
    if ((ret = add_dir(openstack, version, &dir, err)) < 0 ||
        (ret = add_file(dir, "meta_data.json", f->meta_data, strlen(f->meta_data), err)) < 0 ||
        (ret = add_file(dir, "network_data.json", f->network_data, strlen(f->network_data), err)) <
            0 ||
        (ret = add_file(dir, "vendor_data.json", vendor_data, strlen(vendor_data), err)) < 0)
        return ret;
    if (f->user_data_size > 0)
        return add_file(dir, "user_data", f->user_data, f->user_data_size, err);
    return 0;
}

static int
make_image(const struct cd_files *f, IsoImage **out, struct na_error **err)
{
    IsoImage *image = NULL;
    int r = iso_image_new(CD_VOLUME_ID, &image);
    if (r < 0)
        return isofs_error(err, r, "new image");
    IsoDir *root = iso_image_get_root(image);
    fix_node((IsoNode *)root, CD_DIR_MODE);
    IsoDir *openstack;
    int ret;
    if ((ret = add_dir(root, "openstack", &openstack, err)) < 0 ||
        (ret = add_version(openstack, "latest", f, err)) < 0 ||
        (ret = add_version(openstack, QCOW2_CONFIG_DRIVE_VERSION, f, err)) < 0) {
        iso_image_unref(image);
        return ret;
    }
    *out = image;
    return 0;
}

static int
make_opts(IsoWriteOpts **out, struct na_error **err)
{
    IsoWriteOpts *o = NULL;
    int r = iso_write_opts_new(&o, 0);
    if (r < 0)
        return isofs_error(err, r, "write options");
    /* Level 2 allows the 31-character names Nova's genisoimage -l writes; Rock Ridge and
     * Joliet carry the real names.  No AAIP (xattrs, ACLs): nothing to record.  The volume
     * id is written as given ("config-2", lowercase, with '-'), as genisoimage -V does and
     * as the guests look for it.  RRIP 1.10, as genisoimage writes it, has no inode numbers
     * in PX entries: libisofs numbers memory-backed files differently from one build to the
     * next.  (Each setter sets its own field, so their order of evaluation does not matter.) */
    int rs[] = {
        iso_write_opts_set_iso_level(o, 2),
        iso_write_opts_set_rockridge(o, 1),
        iso_write_opts_set_joliet(o, 1),
        iso_write_opts_set_aaip(o, 0),
        iso_write_opts_set_relaxed_vol_atts(o, 1),
        iso_write_opts_set_rrip_version_1_10(o, 1),
        iso_write_opts_set_rrip_1_10_px_ino(o, 0),
        iso_write_opts_set_hardlinks(o, 0),
        iso_write_opts_set_always_gmt(o, 1),
        iso_write_opts_set_dir_rec_mtime(o, 7),
        iso_write_opts_set_replace_mode(o, 2, 2, 2, 2),
        iso_write_opts_set_default_dir_mode(o, CD_DIR_MODE),
        iso_write_opts_set_default_file_mode(o, CD_FILE_MODE),
        iso_write_opts_set_default_uid(o, 0),
        iso_write_opts_set_default_gid(o, 0),
        iso_write_opts_set_replace_timestamps(o, 2),
        iso_write_opts_set_default_timestamp(o, CD_TIME),
        iso_write_opts_set_pvd_times(o, CD_TIME, CD_TIME, 0, 0, (char *)CD_PVD_TIME),
    };
    for (size_t i = 0; i < NA_ARRAY_SIZE(rs); i++) {
        if (rs[i] < 0) {
            iso_write_opts_free(o);
            return isofs_error(err, rs[i], "write options");
        }
    }
    *out = o;
    return 0;
}

static int
write_all(int fd, const unsigned char *buf, size_t size, const char *tmp, struct na_error **err)
{
    while (size > 0) {
        ssize_t n = write(fd, buf, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return na_error_set(err, NA_CODE_STORAGE, errno, "config drive: write %s", tmp);
        buf += n;
        size -= (size_t)n;
    }
    return 0;
}

/* Runs libisofs's writer thread and collects the image in memory. */
static int
produce_image(IsoImage *image, IsoWriteOpts *opts, unsigned char **out, size_t *out_size,
              struct na_error **err)
{
    struct burn_source *bs = NULL;
    int r = iso_image_create_burn_source(image, opts, &bs);
    if (r < 0)
        return isofs_error(err, r, "start writer");
    off_t expected = bs->get_size(bs);
    if (expected <= 0 || expected > CD_MAX_IMAGE_SIZE) {
        bs->cancel(bs);
        bs->free_data(bs);
        free(bs);
        return na_error_set(err, NA_CODE_STORAGE, EFBIG,
                            "config drive: libisofs announces an image of %lld bytes",
                            (long long)expected);
    }
    cleanup_free unsigned char *buf = na_xmalloc((size_t)expected);
    size_t done = 0;
    int ret = 0;
    /* One sector per read, as libburn reads: a larger read may end the stream early. */
    while (done < (size_t)expected) {
        int n = bs->read_xt(bs, buf + done, CD_SECTOR_SIZE);
        if (n <= 0) {
            ret = na_error_set(err, NA_CODE_STORAGE, EIO,
                               "config drive: libisofs stopped after %zu of %lld bytes", done,
                               (long long)expected);
            break;
        }
        done += (size_t)n;
    }
    if (ret < 0)
        bs->cancel(bs);
    bs->free_data(bs); /* joins the writer thread */
    free(bs);
    if (ret < 0)
        return ret;
    *out = na_steal(&buf);
    *out_size = done;
    return 0;
}

/* The whole image in memory.  libisofs is not thread-safe where it creates images and
 * streams (unlocked global counters and a shared, refcounted local-filesystem object, as
 * helgrind shows), so everything between iso_image_new() and the last unref runs under
 * isofs_lock; the file is written outside it. */
static int
render_image(const struct cd_files *f, unsigned char **out, size_t *out_size, struct na_error **err)
{
    pthread_once(&isofs_once, isofs_init);
    if (isofs_init_status < 0)
        return isofs_error(err, isofs_init_status, "init");

    pthread_mutex_lock(&isofs_lock);
    IsoImage *image = NULL;
    IsoWriteOpts *opts = NULL;
    int ret = make_image(f, &image, err);
    if (ret == 0)
        ret = make_opts(&opts, err);
    if (ret == 0)
        ret = produce_image(image, opts, out, out_size, err);
    if (opts)
        iso_write_opts_free(opts);
    if (image)
        iso_image_unref(image);
    pthread_mutex_unlock(&isofs_lock);
    return ret;
}

int
qcow2_config_drive_write(const struct qcow2_config_drive *in, int dirfd, const char *name,
                         const struct qcow2_file_owner *owner, struct na_error **err)
{
    if (!in || !name || !*name)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, EINVAL,
                            "config drive: no input or no path");
    if (in->user_data_size > 0 && !in->user_data)
        return na_error_field(err, "user_data", "config drive: user_data is NULL");

    cleanup_free char *meta_data = NULL;
    cleanup_free char *network_data = NULL;
    int ret;
    if ((ret = build_meta_data(in, &meta_data, err)) < 0 ||
        (ret = build_network_data(in, &network_data, err)) < 0)
        return ret;

    struct cd_files files = {meta_data, network_data, in->user_data, in->user_data_size};
    cleanup_free unsigned char *iso = NULL;
    size_t iso_size = 0;
    if ((ret = render_image(&files, &iso, &iso_size, err)) < 0)
        return ret;

    cleanup_free char *tmp = NULL;
    cleanup_close int fd = qcow2_tmpfile_at(dirfd, name, &tmp, err);
    if (fd < 0)
        return fd;
    ret = write_all(fd, iso, iso_size, tmp, err);
    if (ret == 0) {
        na_failpoint("qcow2.config_drive.before_rename");
        ret = qcow2_publish_at(dirfd, fd, tmp, name, owner, true, err);
    }
    if (ret < 0)
        unlinkat(dirfd, tmp, 0);
    return ret;
}

int
qcow2_config_drive_build(const struct qcow2_config_drive *in, const char *path,
                         struct na_error **err)
{
    if (!path || !*path)
        return na_error_set(err, NA_CODE_INVALID_ARGUMENT, EINVAL,
                            "config drive: no input or no path");
    cleanup_free char *dir_copy = na_xstrdup(path);
    cleanup_free char *base_copy = na_xstrdup(path);
    const char *dir = dirname(dir_copy);
    const char *name = basename(base_copy);
    cleanup_close int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return na_error_set(err, NA_CODE_STORAGE, errno, "config drive: open the directory of `%s`",
                            path);
    int ret = qcow2_config_drive_write(in, dirfd, name, NULL, err);
    if (ret < 0 && err && *err && (*err)->code == NA_CODE_STORAGE)
        na_error_wrap(err, "config drive `%s`", path);
    return ret;
}
