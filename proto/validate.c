/* Validation of decoded Envelopes against the limits of the bus contract.
 *
 * The checks run in field order and the first failure wins: the context is "sticky", every
 * check returns at once after a failure, so the per-message functions below read as lists
 * of fields and their rules, without an if after each line.  Strings are checked against
 * one of a few declared rules (struct str_rule); values with a syntax of their own (uuid,
 * URL, MAC, IPv4) have a helper each.
 */
#include "proto/validate.h"

#include "proto/requests.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>

/* --- context: the path of the field being checked and the first failure ---------------- */

struct vctx {
    struct na_error **err;
    int ret; /* 0, or the negative value of the first failure */
    size_t len;
    char path[512];
};

static const char *
or_empty(const char *s)
{
    return s ? s : "";
}

/* Appends a component to the path ("." before names, nothing before "[i]") and returns the
 * mark to restore with path_pop().  Over-long paths are cut, never overflowed. */
static size_t NA_PRINTF(2, 3) path_push(struct vctx *v, const char *fmt, ...)
{
    size_t mark = v->len;
    char part[sizeof(v->path)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(part, sizeof(part), fmt, ap);
    va_end(ap);
    const char *sep = (v->len && part[0] != '[') ? "." : "";
    int n = snprintf(v->path + v->len, sizeof(v->path) - v->len, "%s%s", sep, part);
    if (n > 0)
        v->len += (size_t)n < sizeof(v->path) - v->len ? (size_t)n : sizeof(v->path) - v->len - 1;
    return mark;
}

static void
path_pop(struct vctx *v, size_t mark)
{
    v->len = mark;
    v->path[mark] = '\0';
}

static void NA_PRINTF(4, 5)
    fail_code(struct vctx *v, enum na_code code, const char *name, const char *fmt, ...)
{
    if (v->ret)
        return;
    size_t mark = name ? path_push(v, "%s", name) : v->len;
    va_list ap;
    va_start(ap, fmt);
    char *text = na_xvasprintf(fmt, ap);
    va_end(ap);
    if (code == NA_CODE_INVALID_ARGUMENT) {
        v->ret = na_error_field(v->err, v->path, "%s: %s", v->path, text);
    } else {
        struct na_error *e = NULL;
        v->ret = na_error_set(&e, code, 0, "%s: %s", v->path, text);
        e->field = na_xstrdup(v->path);
        if (v->err && !*v->err)
            *v->err = e;
        else
            na_error_free(e);
    }
    free(text);
    path_pop(v, mark);
}

/* Fails with INVALID_ARGUMENT at path + name (name NULL: at the path itself). */
#define fail(v, name, ...) fail_code(v, NA_CODE_INVALID_ARGUMENT, name, __VA_ARGS__)

/* --- echoing values in messages --------------------------------------------------------- */

#define ECHO_MAX 48                  /* source bytes shown before "..." */
#define ECHO_SIZE (ECHO_MAX * 4 + 8) /* each byte is at most 4 chars, plus quotes and "..." */

/* s double-quoted, with '"', '\' and every byte outside printable ASCII escaped, cut after
 * ECHO_MAX bytes: safe to put in a log line or an event whatever the sender put in s. */
static const char *
echo(char buf[ECHO_SIZE], const char *s)
{
    size_t o = 0;
    buf[o++] = '"';
    size_t i = 0;
    for (; s[i] && i < ECHO_MAX; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(buf + o, 5, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
    }
    buf[o++] = '"';
    if (s[i]) {
        memcpy(buf + o, "...", 3);
        o += 3;
    }
    buf[o] = '\0';
    return buf;
}

/* --- UTF-8 ------------------------------------------------------------------------------ */

/* --- string rules ----------------------------------------------------------------------- */

enum str_chars {
    CHARS_UTF8,       /* any valid UTF-8 */
    CHARS_TEXT,       /* valid UTF-8 without control characters (so a single line) */
    CHARS_PRINTABLE,  /* printable ASCII, space included */
    CHARS_TOKEN,      /* printable ASCII without space */
    CHARS_SAFE,       /* [A-Za-z0-9._-]: safe in file names, XML, OVS columns, topics */
    CHARS_REQUEST_ID, /* [A-Za-z0-9._:-] */
    CHARS_HOSTNAME,   /* [A-Za-z0-9-] */
};

static const char *const chars_desc[] = {
    [CHARS_UTF8] = "valid UTF-8",          [CHARS_TEXT] = "UTF-8 without control characters",
    [CHARS_PRINTABLE] = "printable ASCII", [CHARS_TOKEN] = "printable ASCII without spaces",
    [CHARS_SAFE] = "[A-Za-z0-9._-]",       [CHARS_REQUEST_ID] = "[A-Za-z0-9._:-]",
    [CHARS_HOSTNAME] = "[A-Za-z0-9-]",
};

static bool
ascii_ok(enum str_chars chars, unsigned char c)
{
    bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    switch (chars) {
    case CHARS_PRINTABLE:
        return c >= 0x20 && c < 0x7f;
    case CHARS_TOKEN:
        return c > 0x20 && c < 0x7f;
    case CHARS_SAFE:
        return alnum || c == '.' || c == '_' || c == '-';
    case CHARS_REQUEST_ID:
        return alnum || c == '.' || c == '_' || c == ':' || c == '-';
    case CHARS_HOSTNAME:
        return alnum || c == '-';
    default:
        return false;
    }
}

enum {
    NOT_DOTS = 1 << 0, /* not "." or ".." (path components) */
    NO_LEADING_DASH = 1 << 1 /* not "-..." (looks like an option to tools) */,
    NO_EDGE_DASH = 1 << 2, /* neither starts nor ends with '-' (RFC 1123 labels) */
};

struct str_rule {
    size_t min, max; /* bytes */
    enum str_chars chars;
    unsigned flags;
    const char *what; /* the rule in words, for messages */
};

static const struct str_rule RULE_REQUEST_ID = {1, 64, CHARS_REQUEST_ID, 0,
                                                "1..64 characters of [A-Za-z0-9._:-]"};
#define NAME_WHAT(max)                                                                             \
    "1.." #max " characters of [A-Za-z0-9._-], not \".\" or \"..\", no leading '-'"
static const struct str_rule RULE_NAME = {1, 63, CHARS_SAFE, NOT_DOTS | NO_LEADING_DASH,
                                          NAME_WHAT(63)};
static const struct str_rule RULE_IMAGE_ID = {1, 64, CHARS_SAFE, NOT_DOTS | NO_LEADING_DASH,
                                              NAME_WHAT(64)};
static const struct str_rule RULE_TENANT = {1, 64, CHARS_SAFE, 0,
                                            "1..64 characters of [A-Za-z0-9._-]"};
static const struct str_rule RULE_NODE = {1, 64, CHARS_SAFE, NOT_DOTS,
                                          "a node id: 1..64 characters of [A-Za-z0-9._-], "
                                          "not \".\" or \"..\""};
static const struct str_rule RULE_VERSION = {1, 64, CHARS_TOKEN, 0,
                                             "1..64 characters of printable ASCII without spaces"};
static const struct str_rule RULE_FLAVOR_NAME = {0, 64, CHARS_PRINTABLE, 0,
                                                 "0..64 characters of printable ASCII"};
static const struct str_rule RULE_HOSTNAME = {
    1, 63, CHARS_HOSTNAME, NO_EDGE_DASH,
    "an RFC 1123 host name: 1..63 characters of [A-Za-z0-9-], no '-' first or last"};
static const struct str_rule RULE_SSH_KEY = {
    1, 8192, CHARS_TEXT, 0, "a single-line key of 1..8192 bytes without control characters"};
static const struct str_rule RULE_META_KEY = {
    1, 255, CHARS_TEXT, 0, "a key of 1..255 bytes of UTF-8 without control characters"};
static const struct str_rule RULE_META_VALUE = {0, 4096, CHARS_UTF8, 0,
                                                "a value of at most 4096 bytes of valid UTF-8"};
static const struct str_rule RULE_CPU_XML = {0, 65536, CHARS_UTF8, 0,
                                             "at most 65536 bytes of valid UTF-8"};
static const struct str_rule RULE_SIGNATURE_HEX = {
    0, 128, CHARS_TOKEN, 0, "the 128 hex digits of an Ed25519 signature, or empty"};
static const struct str_rule RULE_DOMAIN_XML = {1, 262144, CHARS_UTF8, 0,
                                                "1..262144 bytes of valid UTF-8"};
static const struct str_rule RULE_MIGRATE_URI = {
    1, 1024, CHARS_TOKEN, 0, "a URI of 1..1024 characters of printable ASCII without spaces"};
static const struct str_rule RULE_ERROR_MESSAGE = {0, 4096, CHARS_UTF8, 0,
                                                   "at most 4096 bytes of valid UTF-8"};
static const struct str_rule RULE_GROUP_ID = {1, 64, CHARS_SAFE, NOT_DOTS | NO_LEADING_DASH,
                                              NAME_WHAT(64)};
static const struct str_rule RULE_GROUP_NAME = {0, 255, CHARS_PRINTABLE, 0,
                                                "0..255 characters of printable ASCII"};
static const struct str_rule RULE_DESCRIPTION = {
    0, 256, CHARS_TEXT, 0, "at most 256 bytes of UTF-8 without control characters"};
static const struct str_rule RULE_ERROR_FIELD = {0, 255, CHARS_PRINTABLE, 0,
                                                 "at most 255 characters of printable ASCII"};

static void
check_str(struct vctx *v, const char *name, const char *s, const struct str_rule *r)
{
    if (v->ret)
        return;
    s = or_empty(s);
    size_t size = strlen(s);
    char q[ECHO_SIZE];
    if (size < r->min) {
        fail(v, name, "is empty; expected %s", r->what);
        return;
    }
    if (size > r->max) {
        fail(v, name, "%s is %zu bytes long; expected %s", echo(q, s), size, r->what);
        return;
    }
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < size;) {
        size_t at = i;
        uint32_t cp;
        if (r->chars == CHARS_UTF8 || r->chars == CHARS_TEXT) {
            if (!na_utf8_next(u, size, &i, &cp)) {
                fail(v, name, "%s is not valid UTF-8 (byte 0x%02x at offset %zu); expected %s",
                     echo(q, s), u[at], at, r->what);
                return;
            }
            if (r->chars == CHARS_TEXT && (cp < 0x20 || (cp >= 0x7f && cp < 0xa0))) {
                fail(v, name,
                     "%s has a control character (U+%04" PRIX32 " at offset %zu); expected %s",
                     echo(q, s), cp, at, r->what);
                return;
            }
        } else if (!ascii_ok(r->chars, u[i++])) {
            fail(v, name, "%s has a character outside %s (byte 0x%02x at offset %zu); expected %s",
                 echo(q, s), chars_desc[r->chars], u[at], at, r->what);
            return;
        }
    }
    if ((r->flags & NOT_DOTS) && (!strcmp(s, ".") || !strcmp(s, "..")))
        fail(v, name, "%s is not allowed; expected %s", echo(q, s), r->what);
    else if ((r->flags & (NO_LEADING_DASH | NO_EDGE_DASH)) && s[0] == '-')
        fail(v, name, "%s starts with '-'; expected %s", echo(q, s), r->what);
    else if ((r->flags & NO_EDGE_DASH) && s[size - 1] == '-')
        fail(v, name, "%s ends with '-'; expected %s", echo(q, s), r->what);
}

/* Optional strings: empty means unset, anything else follows the rule. */
static void
check_opt_str(struct vctx *v, const char *name, const char *s, const struct str_rule *r)
{
    if (*or_empty(s))
        check_str(v, name, s, r);
}

/* --- values with a syntax of their own -------------------------------------------------- */

static void
check_uuid(struct vctx *v, const char *name, const char *s)
{
    char q[ECHO_SIZE];
    if (v->ret || na_uuid_is_valid(s))
        return;
    if (!*or_empty(s))
        fail(v, name, "is empty; expected a lowercase uuid (8-4-4-4-12 hex digits)");
    else
        fail(v, name, "%s is not a lowercase uuid (8-4-4-4-12 hex digits)", echo(q, s));
}

static bool
is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void
check_sha256(struct vctx *v, const char *name, const char *s)
{
    char q[ECHO_SIZE];
    s = or_empty(s);
    size_t len = strlen(s);
    bool ok = len == 64;
    for (size_t i = 0; ok && i < len; i++)
        ok = is_lower_hex(s[i]);
    if (!ok)
        fail(v, name, "%s is not a SHA-256 digest; expected exactly 64 lowercase hex digits",
             echo(q, s));
}

#define URL_MAX 4096

/* http(s)://[user@]host[:port][/...] with a non-empty host.  Only printable ASCII without
 * spaces: anything else must be percent-encoded by the sender.  Never file://: the agent
 * runs as root, and a file URL would make any host file an image.  (The host's address is
 * checked by the image cache when it connects: a name may resolve anywhere.) */
static void
check_url(struct vctx *v, const char *name, const char *s)
{
    char q[ECHO_SIZE];
    s = or_empty(s);
    size_t size = strlen(s);
    if (!size) {
        fail(v, name, "is empty; expected an http:// or https:// URL");
        return;
    }
    if (size > URL_MAX) {
        fail(v, name, "%s is %zu bytes long; at most %d are allowed", echo(q, s), size, URL_MAX);
        return;
    }
    for (size_t i = 0; i < size; i++) {
        if (!ascii_ok(CHARS_TOKEN, (unsigned char)s[i])) {
            fail(v, name,
                 "%s has a space, control or non-ASCII byte (0x%02x at offset %zu); "
                 "percent-encode it",
                 echo(q, s), (unsigned char)s[i], i);
            return;
        }
    }
    const char *rest;
    if (!strncmp(s, "http://", 7) || !strncmp(s, "https://", 8)) {
        rest = strstr(s, "://") + 3;
        size_t auth_len = strcspn(rest, "/?#");
        const char *host = rest;
        const char *at = memrchr(rest, '@', auth_len);
        if (at)
            host = at + 1;
        size_t host_len = auth_len - (size_t)(host - rest);
        if (host_len && host[0] == '[') {
            const char *close = memchr(host, ']', host_len);
            host_len = close ? (size_t)(close - host) - 1 : 0;
        } else {
            const char *colon = memchr(host, ':', host_len);
            if (colon)
                host_len = (size_t)(colon - host);
        }
        if (!host_len)
            fail(v, name, "%s has no host", echo(q, s));
    } else if (!strncasecmp(s, "file:", 5)) {
        fail(v, name, "%s is a file URL; image URLs must be http:// or https://", echo(q, s));
    } else {
        fail(v, name, "%s does not start with http:// or https://", echo(q, s));
    }
}

static void
check_mac(struct vctx *v, const char *name, const char *s)
{
    char q[ECHO_SIZE];
    static const uint8_t zero[6];
    uint8_t mac[6];
    s = or_empty(s);
    if (v->ret)
        return;
    if (!na_mac_parse(s, mac))
        fail(v, name, "%s is not a MAC address; expected xx:xx:xx:xx:xx:xx in hex", echo(q, s));
    else if (mac[0] & 1)
        fail(v, name,
             "%s is a multicast address (low bit of the first octet set); a NIC needs "
             "a unicast one",
             echo(q, s));
    else if (!memcmp(mac, zero, sizeof(mac)))
        fail(v, name, "%s is all zeros", echo(q, s));
}

/* Why an address can't be a guest's (host byte order), or NULL when it can. */
static const char *
ipv4_refusal(uint32_t a)
{
    if (a == 0)
        return "the unspecified address 0.0.0.0";
    if (a == 0xffffffffu)
        return "the broadcast address 255.255.255.255";
    if ((a >> 28) == 0xe)
        return "a multicast address (224.0.0.0/4)";
    if ((a >> 24) == 127)
        return "a loopback address (127.0.0.0/8)";
    return NULL;
}

/* An IPv4 address in dotted quad, or a.b.c.d/p with p 1..32 when with_prefix. */
static void
check_ipv4(struct vctx *v, const char *name, const char *s, bool with_prefix)
{
    char q[ECHO_SIZE];
    const char *expected = with_prefix ? "an IPv4 address with a prefix length 1..32, "
                                         "\"10.0.0.5/24\""
                                       : "an IPv4 address, \"10.0.0.1\"";
    s = or_empty(s);
    if (v->ret)
        return;
    const char *slash = strchr(s, '/');
    size_t addr_len = slash ? (size_t)(slash - s) : strlen(s);
    char addr[16];
    struct in_addr in;
    bool ok = addr_len < sizeof(addr) && (slash != NULL) == with_prefix;
    if (ok) {
        memcpy(addr, s, addr_len);
        addr[addr_len] = '\0';
        ok = inet_pton(AF_INET, addr, &in) == 1;
    }
    if (ok && with_prefix) {
        const char *p = slash + 1;
        size_t plen = strlen(p);
        ok = plen >= 1 && plen <= 2 && p[0] >= '1' && p[0] <= '9' &&
             (plen == 1 || (p[1] >= '0' && p[1] <= '9')) && atoi(p) <= 32;
    }
    if (!ok) {
        fail(v, name, "%s is not %s", echo(q, s), expected);
        return;
    }
    const char *why = ipv4_refusal(ntohl(in.s_addr));
    if (why)
        fail(v, name, "%s is %s, which a guest can't use", echo(q, s), why);
}

/* Why an IPv6 address can't be a guest's, or NULL when it can; a link-local one only when
 * link_local_ok (a gateway may be one: the guest's own link-local comes from its MAC). */
static const char *
ipv6_refusal(const uint8_t a[16], bool link_local_ok)
{
    static const uint8_t zero[16], mapped[12] = {[10] = 0xff, [11] = 0xff};
    if (!memcmp(a, zero, 16))
        return "the unspecified address ::";
    if (!memcmp(a, zero, 15) && a[15] == 1)
        return "the loopback address ::1";
    if (a[0] == 0xff)
        return "a multicast address (ff00::/8)";
    if (!link_local_ok && a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        return "a link-local address (fe80::/10; the guest's own comes from its MAC)";
    if (!memcmp(a, mapped, sizeof(mapped)))
        return "an IPv4-mapped address (::ffff:0:0/96; give the IPv4 address itself)";
    return NULL;
}

/* An IPv6 address, or x::y/p with p 1..128 when with_prefix. */
static void
check_ipv6(struct vctx *v, const char *name, const char *s, bool with_prefix)
{
    char q[ECHO_SIZE];
    const char *expected = with_prefix ? "an IPv6 address with a prefix length 1..128, "
                                         "\"fd00:0:0:1::5/64\""
                                       : "an IPv6 address, \"fd00:0:0:1::1\"";
    s = or_empty(s);
    if (v->ret)
        return;
    const char *slash = strchr(s, '/');
    size_t addr_len = slash ? (size_t)(slash - s) : strlen(s);
    char addr[INET6_ADDRSTRLEN];
    uint8_t in6[16];
    bool ok = addr_len < sizeof(addr) && (slash != NULL) == with_prefix;
    if (ok) {
        memcpy(addr, s, addr_len);
        addr[addr_len] = '\0';
        ok = inet_pton(AF_INET6, addr, in6) == 1;
    }
    if (ok && with_prefix) {
        const char *p = slash + 1;
        size_t plen = strlen(p);
        ok = plen >= 1 && plen <= 3 && p[0] >= '1' && p[0] <= '9' &&
             strspn(p, "0123456789") == plen && atoi(p) <= 128;
    }
    if (!ok) {
        fail(v, name, "%s is not %s", echo(q, s), expected);
        return;
    }
    const char *why = ipv6_refusal(in6, !with_prefix);
    if (why)
        fail(v, name, "%s is %s, which a guest can't use", echo(q, s), why);
}

/* A NIC's address: IPv6 when it has a colon, IPv4 otherwise. */
static void
check_nic_ip(struct vctx *v, const char *name, const char *s)
{
    if (strchr(or_empty(s), ':'))
        check_ipv6(v, name, s, true);
    else
        check_ipv4(v, name, s, true);
}

/* --- numbers, counts and enums ---------------------------------------------------------- */

static void
check_u32(struct vctx *v, const char *name, uint32_t val, uint32_t min, uint32_t max)
{
    if (val < min || val > max)
        fail(v, name, "%" PRIu32 " is out of range; allowed %" PRIu32 "..%" PRIu32, val, min, max);
}

static void
check_count(struct vctx *v, const char *name, size_t n, size_t min, size_t max)
{
    if (n < min)
        fail(v, name, "has %zu entries; at least %zu required", n, min);
    else if (n > max)
        fail(v, name, "has %zu entries; at most %zu are allowed", n, max);
}

/* A known value of the enum; value 0 (UNSPECIFIED) only when allow_zero. protobuf-c keeps
 * numbers it doesn't know as they are, so this is the only thing between a newer sender's
 * enum value and a switch with no case for it. */
static void
check_enum(struct vctx *v, const char *name, int val, const ProtobufCEnumDescriptor *desc,
           bool allow_zero)
{
    if (v->ret || (val == 0 && allow_zero) ||
        (val != 0 && protobuf_c_enum_descriptor_get_value(desc, val)))
        return;
    char allowed[1024] = "";
    size_t o = 0;
    for (unsigned i = 0; i < desc->n_values && o < sizeof(allowed); i++) {
        if (desc->values[i].value == 0 && !allow_zero)
            continue;
        o += (size_t)snprintf(allowed + o, sizeof(allowed) - o, "%s%s", o ? ", " : "",
                              desc->values[i].name);
    }
    if (val == 0)
        fail(v, name, "must be set (0 = unspecified is refused); allowed: %s", allowed);
    else
        fail(v, name, "%d is not a known %s value; allowed: %s", val, desc->short_name, allowed);
}

/* Sub-messages that must be present; false (and failed) when absent. */
static bool
require(struct vctx *v, const char *name, const void *msg)
{
    if (!msg)
        fail(v, name, "is required");
    return msg && !v->ret;
}

/* A limit: 0 (unlimited) or min..max. */
static void
check_limit(struct vctx *v, const char *name, uint64_t val, uint64_t min, uint64_t max)
{
    if (val != 0 && (val < min || val > max))
        fail(v, name, "%" PRIu64 " is out of range; allowed 0 (unlimited) or %" PRIu64 "..%" PRIu64,
             val, min, max);
}

/* One direction of a NIC's bandwidth: a peak or burst only with an average, a peak no lower
 * than the average. */
static void
check_nic_bandwidth(struct vctx *v, const char *dir, uint32_t average, uint32_t peak,
                    uint32_t burst)
{
    char name[64];
    snprintf(name, sizeof(name), "nic_%s_average_kib_sec", dir);
    check_limit(v, name, average, 8, 4194304);
    snprintf(name, sizeof(name), "nic_%s_peak_kib_sec", dir);
    if (peak && !average)
        fail(v, name, "is set without nic_%s_average_kib_sec", dir);
    else if (peak && peak < average)
        fail(v, name, "%" PRIu32 " is lower than nic_%s_average_kib_sec (%" PRIu32 ")", peak, dir,
             average);
    check_limit(v, name, peak, 8, 4194304);
    snprintf(name, sizeof(name), "nic_%s_burst_kib", dir);
    if (burst && !average)
        fail(v, name, "is set without nic_%s_average_kib_sec", dir);
    check_limit(v, name, burst, 1, 1048576);
}

/* The optional per-guest limits (docs/protocol.md 4.2.1). */
static void
check_flavor_limits(struct vctx *v, const Nodeagent__V1__Flavor *f)
{
    check_limit(v, "cpu_shares", f->cpu_shares, 2, 262144);
    check_limit(v, "cpu_quota_percent", f->cpu_quota_percent, 1, 100);
    check_limit(v, "disk_read_iops_sec", f->disk_read_iops_sec, 1, 1000000);
    check_limit(v, "disk_write_iops_sec", f->disk_write_iops_sec, 1, 1000000);
    check_limit(v, "disk_read_bytes_sec", f->disk_read_bytes_sec, 65536, 1ULL << 40);
    check_limit(v, "disk_write_bytes_sec", f->disk_write_bytes_sec, 65536, 1ULL << 40);
    check_nic_bandwidth(v, "inbound", f->nic_inbound_average_kib_sec, f->nic_inbound_peak_kib_sec,
                        f->nic_inbound_burst_kib);
    check_nic_bandwidth(v, "outbound", f->nic_outbound_average_kib_sec,
                        f->nic_outbound_peak_kib_sec, f->nic_outbound_burst_kib);
}

/* --- security groups -------------------------------------------------------------------- */

/* A port's groups: 0..AGENT_MAX_PORT_GROUPS ids, each once. */
static void
check_group_ids(struct vctx *v, const char *name, char *const *ids, size_t n)
{
    check_count(v, name, n, 0, AGENT_MAX_PORT_GROUPS);
    for (size_t i = 0; i < n && !v->ret; i++) {
        size_t mark = path_push(v, "%s[%zu]", name, i);
        check_str(v, NULL, ids[i], &RULE_GROUP_ID);
        for (size_t j = 0; j < i && !v->ret; j++)
            if (!strcmp(or_empty(ids[i]), or_empty(ids[j])))
                fail(v, NULL, "is the same as %s[%zu]; a port is in a group once", name, j);
        path_pop(v, mark);
    }
}

/* An address ("10.0.0.5", "2001:db8::5"), or with cidr a network ("10.0.0.0/24",
 * "2001:db8::/64") whose host bits are zero; af is AF_INET or AF_INET6, or AF_UNSPEC for
 * either. */
static void
check_ip_or_cidr(struct vctx *v, const char *name, const char *s, int af, bool cidr)
{
    char q[ECHO_SIZE];
    if (v->ret)
        return;
    s = or_empty(s);
    const char *slash = strchr(s, '/');
    size_t addr_len = slash ? (size_t)(slash - s) : strlen(s);
    char addr[INET6_ADDRSTRLEN];
    uint8_t bytes[16];
    int got = AF_UNSPEC;
    if (addr_len < sizeof(addr) && (slash != NULL) == cidr) {
        memcpy(addr, s, addr_len);
        addr[addr_len] = '\0';
        if (inet_pton(AF_INET, addr, bytes) == 1)
            got = AF_INET;
        else if (inet_pton(AF_INET6, addr, bytes) == 1)
            got = AF_INET6;
    }
    const char *want = af == AF_INET    ? "an IPv4 "
                       : af == AF_INET6 ? "an IPv6 "
                                        : "an IPv4 or IPv6 ";
    if (got == AF_UNSPEC || (af != AF_UNSPEC && got != af)) {
        fail(v, name, "%s is not %s%s", echo(q, s), want,
             cidr ? "network with a prefix length (\"10.0.0.0/24\", \"2001:db8::/64\")"
                  : "address without a prefix length");
        return;
    }
    if (!cidr)
        return;
    unsigned bits = got == AF_INET ? 32 : 128;
    const char *p = slash + 1;
    size_t plen = strlen(p);
    bool ok = plen >= 1 && plen <= 3 && strspn(p, "0123456789") == plen &&
              (plen == 1 || p[0] != '0') && (unsigned)atoi(p) <= bits;
    if (!ok) {
        fail(v, name, "%s has a prefix length outside 0..%u", echo(q, s), bits);
        return;
    }
    unsigned len = (unsigned)atoi(p);
    for (unsigned b = len; b < bits; b++)
        if (bytes[b / 8] & (0x80u >> (b % 8))) {
            fail(v, name, "%s has host bits set after its /%u prefix", echo(q, s), len);
            return;
        }
}

/* A rule's ICMP type and code: ICMP rules only, each a byte, a code only when matched. */
static void
check_icmp(struct vctx *v, const Nodeagent__V1__SecurityGroupRule *r)
{
    const Nodeagent__V1__IcmpMatch *m = r->icmp;
    if (!m || v->ret)
        return;
    if (r->protocol != NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_ICMP) {
        fail(v, "icmp", "is set, but only ICMP rules have an ICMP type");
        return;
    }
    size_t mark = path_push(v, "icmp");
    check_u32(v, "type", m->type, 0, 255);
    if (m->match_code)
        check_u32(v, "code", m->code, 0, 255);
    else if (m->code)
        fail(v, "code", "is set, but match_code is false (every code of the type)");
    path_pop(v, mark);
}

static void
check_rule(struct vctx *v, const Nodeagent__V1__SecurityGroupRule *r)
{
    check_enum(v, "direction", (int)r->direction, &nodeagent__v1__direction__descriptor, false);
    check_enum(v, "ethertype", (int)r->ethertype, &nodeagent__v1__ether_type__descriptor, false);
    check_enum(v, "protocol", (int)r->protocol, &nodeagent__v1__ip_protocol__descriptor, true);
    bool l4 = r->protocol == NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_TCP ||
              r->protocol == NODEAGENT__V1__IP_PROTOCOL__IP_PROTOCOL_UDP;
    if (v->ret)
        return;
    if (!l4 && (r->port_range_min || r->port_range_max))
        fail(v, r->port_range_min ? "port_range_min" : "port_range_max",
             "is set, but only TCP and UDP rules have ports");
    else if (l4 && (r->port_range_min || r->port_range_max)) {
        check_u32(v, "port_range_min", r->port_range_min, 1, 65535);
        check_u32(v, "port_range_max", r->port_range_max, r->port_range_min, 65535);
    }
    check_icmp(v, r);
    int af = r->ethertype == NODEAGENT__V1__ETHER_TYPE__ETHER_TYPE_IPV4 ? AF_INET : AF_INET6;
    if (*or_empty(r->remote_cidr) && *or_empty(r->remote_group))
        fail(v, "remote_group", "is set together with remote_cidr; a rule has at most one");
    else if (*or_empty(r->remote_cidr))
        check_ip_or_cidr(v, "remote_cidr", r->remote_cidr, af, true);
    else
        check_opt_str(v, "remote_group", r->remote_group, &RULE_GROUP_ID);
}

static void
check_group(struct vctx *v, const char *name, const Nodeagent__V1__SecurityGroup *g)
{
    if (!require(v, name, g))
        return;
    size_t mark = path_push(v, "%s", name);
    check_str(v, "id", g->id, &RULE_GROUP_ID);
    check_str(v, "name", g->name, &RULE_GROUP_NAME);
    check_count(v, "rules", g->n_rules, 0, AGENT_MAX_GROUP_RULES);
    for (size_t i = 0; i < g->n_rules && !v->ret; i++) {
        size_t m = path_push(v, "rules[%zu]", i);
        if (!g->rules[i])
            fail(v, NULL, "is missing");
        else
            check_rule(v, g->rules[i]);
        path_pop(v, m);
    }
    check_count(v, "member_ips", g->n_member_ips, 0, AGENT_MAX_GROUP_MEMBERS);
    for (size_t i = 0; i < g->n_member_ips && !v->ret; i++) {
        char item[48];
        snprintf(item, sizeof(item), "member_ips[%zu]", i);
        check_ip_or_cidr(v, item, g->member_ips[i], AF_UNSPEC, false);
    }
    path_pop(v, mark);
}

/* --- messages --------------------------------------------------------------------------- */

static void
check_flavor(struct vctx *v, const char *name, const Nodeagent__V1__Flavor *f)
{
    if (!require(v, name, f))
        return;
    size_t mark = path_push(v, "%s", name);
    check_str(v, "name", f->name, &RULE_FLAVOR_NAME);
    check_u32(v, "vcpus", f->vcpus, 1, 1024);
    check_u32(v, "memory_mib", f->memory_mib, 64, 16777216);
    check_u32(v, "root_disk_gib", f->root_disk_gib, 1, 65536);
    check_flavor_limits(v, f);
    path_pop(v, mark);
}

static void
check_image(struct vctx *v, const char *name, const Nodeagent__V1__Image *im)
{
    if (!require(v, name, im))
        return;
    size_t mark = path_push(v, "%s", name);
    check_str(v, "id", im->id, &RULE_IMAGE_ID);
    check_url(v, "url", im->url);
    check_sha256(v, "sha256", im->sha256);
    check_enum(v, "format", (int)im->format, &nodeagent__v1__image_format__descriptor, false);
    path_pop(v, mark);
}

static void
check_nic(struct vctx *v, const Nodeagent__V1__Nic *nic)
{
    check_uuid(v, "port_id", nic->port_id);
    check_uuid(v, "network_id", nic->network_id);
    check_u32(v, "vni", nic->vni, 1, 16777215);
    check_mac(v, "mac", nic->mac);
    check_count(v, "ips", nic->n_ips, 1, 16);
    for (size_t i = 0; i < nic->n_ips && !v->ret; i++) {
        char name[32];
        snprintf(name, sizeof(name), "ips[%zu]", i);
        check_nic_ip(v, name, nic->ips[i]);
    }
    if (*or_empty(nic->gateway))
        check_ipv4(v, "gateway", nic->gateway, false);
    if (*or_empty(nic->gateway6)) {
        check_ipv6(v, "gateway6", nic->gateway6, false);
        bool has_ipv6 = false;
        for (size_t i = 0; i < nic->n_ips; i++)
            has_ipv6 |= strchr(nic->ips[i], ':') != NULL;
        if (!v->ret && !has_ipv6)
            fail(v, "gateway6", "is set but ips has no IPv6 address to reach it from");
    }
    if (nic->mtu != 0 && (nic->mtu < 576 || nic->mtu > 9000))
        fail(v, "mtu", "%" PRIu32 " is out of range; allowed 0 (the underlay's) or 576..9000",
             nic->mtu);
    check_group_ids(v, "security_groups", nic->security_groups, nic->n_security_groups);
}

/* An address of nics[i] that nics[j], in the same network, has too: two NICs of one network
 * with one address would take each other's traffic. */
static void
check_nic_ips_unique(struct vctx *v, const Nodeagent__V1__Nic *a, const Nodeagent__V1__Nic *b,
                     size_t j)
{
    if (strcmp(a->network_id, b->network_id) != 0)
        return;
    for (size_t k = 0; k < a->n_ips && !v->ret; k++) {
        for (size_t m = 0; m < b->n_ips && !v->ret; m++) {
            if (!na_ip_same_addr(a->ips[k], b->ips[m]))
                continue;
            char name[32];
            snprintf(name, sizeof(name), "ips[%zu]", k);
            fail(v, name,
                 "is the same address as nics[%zu].ips[%zu] in the same network; "
                 "addresses must be unique within a network",
                 j, m);
        }
    }
}

/* Port ids and MACs identify a NIC on the node, and addresses within its network: two NICs
 * can't share one. */
static void
check_nic_unique(struct vctx *v, const Nodeagent__V1__InstanceSpec *s, size_t i)
{
    uint8_t mac_i[6], mac_j[6];
    na_mac_parse(s->nics[i]->mac, mac_i);
    for (size_t j = 0; j < i && !v->ret; j++) {
        if (!strcmp(s->nics[i]->port_id, s->nics[j]->port_id))
            fail(v, "port_id", "is the same as nics[%zu].port_id; port ids must be unique", j);
        else if (na_mac_parse(s->nics[j]->mac, mac_j) && !memcmp(mac_i, mac_j, sizeof(mac_i)))
            fail(v, "mac", "is the same as nics[%zu].mac; MAC addresses must be unique", j);
        else
            check_nic_ips_unique(v, s->nics[i], s->nics[j], j);
    }
}

static void
check_nics(struct vctx *v, const Nodeagent__V1__InstanceSpec *s)
{
    check_count(v, "nics", s->n_nics, 0, 16);
    for (size_t i = 0; i < s->n_nics && !v->ret; i++) {
        size_t mark = path_push(v, "nics[%zu]", i);
        if (!s->nics[i])
            fail(v, NULL, "is missing");
        else
            check_nic(v, s->nics[i]);
        if (!v->ret)
            check_nic_unique(v, s, i);
        path_pop(v, mark);
    }
}

static void
check_ssh_keys(struct vctx *v, const Nodeagent__V1__InstanceSpec *s)
{
    check_count(v, "ssh_keys", s->n_ssh_keys, 0, 32);
    for (size_t i = 0; i < s->n_ssh_keys && !v->ret; i++) {
        size_t mark = path_push(v, "ssh_keys[%zu]", i);
        check_str(v, NULL, s->ssh_keys[i], &RULE_SSH_KEY);
        path_pop(v, mark);
    }
}

static void
check_metadata(struct vctx *v, const Nodeagent__V1__InstanceSpec *s)
{
    check_count(v, "metadata", s->n_metadata, 0, 128);
    for (size_t i = 0; i < s->n_metadata && !v->ret; i++) {
        const Nodeagent__V1__InstanceSpec__MetadataEntry *e = s->metadata[i];
        char q[ECHO_SIZE];
        size_t mark = path_push(v, "metadata[%s]", echo(q, or_empty(e ? e->key : NULL)));
        if (!e) {
            fail(v, NULL, "is missing");
        } else {
            check_str(v, NULL, e->key, &RULE_META_KEY);
            check_str(v, NULL, e->value, &RULE_META_VALUE);
            /* A map on the wire may repeat a key; other runtimes keep the last silently. */
            for (size_t j = 0; j < i && !v->ret; j++)
                if (s->metadata[j] && !strcmp(or_empty(e->key), or_empty(s->metadata[j]->key)))
                    fail(v, NULL, "key appears more than once");
        }
        path_pop(v, mark);
    }
}

static void
check_spec(struct vctx *v, const char *name, const Nodeagent__V1__InstanceSpec *s)
{
    if (!require(v, name, s))
        return;
    size_t mark = path_push(v, "%s", name);
    check_uuid(v, "uuid", s->uuid);
    check_str(v, "name", s->name, &RULE_NAME);
    check_str(v, "tenant_id", s->tenant_id, &RULE_TENANT);
    check_flavor(v, "flavor", s->flavor);
    check_image(v, "image", s->image);
    check_nics(v, s);
    check_str(v, "hostname", s->hostname, &RULE_HOSTNAME);
    check_ssh_keys(v, s);
    if (s->user_data.len > 65536)
        fail(v, "user_data", "is %zu bytes long; at most 65536 are allowed", s->user_data.len);
    check_metadata(v, s);
    path_pop(v, mark);
}

/* A nested Error reported by a peer: optional, but when set it must say what happened. */
static void
check_peer_error(struct vctx *v, const char *name, const Nodeagent__V1__Error *e)
{
    if (!e)
        return;
    size_t mark = path_push(v, "%s", name);
    check_enum(v, "code", (int)e->code, &nodeagent__v1__error_code__descriptor, false);
    check_str(v, "message", e->message, &RULE_ERROR_MESSAGE);
    check_str(v, "field", e->field, &RULE_ERROR_FIELD);
    path_pop(v, mark);
}

/* --- one function per request kind, named after AGENT_REQUEST_KINDS --------------------- */

#define INSTANCE_ONLY(kind, Type)                                                                  \
    static void check_##kind(struct vctx *v, const Type *m)                                        \
    {                                                                                              \
        check_uuid(v, "instance_uuid", m->instance_uuid);                                          \
    }
INSTANCE_ONLY(delete, Nodeagent__V1__DeleteRequest)
INSTANCE_ONLY(start, Nodeagent__V1__StartRequest)
INSTANCE_ONLY(pause, Nodeagent__V1__PauseRequest)
INSTANCE_ONLY(resume, Nodeagent__V1__ResumeRequest)
INSTANCE_ONLY(suspend, Nodeagent__V1__SuspendRequest)
INSTANCE_ONLY(cancel_migration, Nodeagent__V1__CancelMigrationRequest)
#undef INSTANCE_ONLY

#define SNAPSHOT(kind, Type)                                                                       \
    static void check_##kind(struct vctx *v, const Type *m)                                        \
    {                                                                                              \
        check_uuid(v, "instance_uuid", m->instance_uuid);                                          \
        check_str(v, "snapshot_name", m->snapshot_name, &RULE_NAME);                               \
    }
SNAPSHOT(snapshot_revert, Nodeagent__V1__SnapshotRevertRequest)
SNAPSHOT(snapshot_delete, Nodeagent__V1__SnapshotDeleteRequest)
#undef SNAPSHOT

static void
check_clone(struct vctx *v, const Nodeagent__V1__CloneRequest *m)
{
    check_uuid(v, "source_instance_uuid", m->source_instance_uuid);
    check_opt_str(v, "snapshot_name", m->snapshot_name, &RULE_NAME);
    check_spec(v, "spec", m->spec);
    if (m->spec && m->spec->uuid && m->source_instance_uuid &&
        !strcasecmp(m->spec->uuid, m->source_instance_uuid))
        fail(v, "spec.uuid", "is the source's uuid; a clone is a new instance");
}

static void
check_snapshot_export(struct vctx *v, const Nodeagent__V1__SnapshotExportRequest *m)
{
    check_uuid(v, "instance_uuid", m->instance_uuid);
    check_opt_str(v, "snapshot_name", m->snapshot_name, &RULE_NAME);
    if (m->upload_url && m->upload_url[0])
        check_url(v, "upload_url", m->upload_url);
    else if (!m->publish)
        fail(v, "upload_url",
             "is empty and publish is false; expected an http:// or https:// "
             "URL to upload the image to, or publish, or both");
}

static void
check_snapshot_create(struct vctx *v, const Nodeagent__V1__SnapshotCreateRequest *m)
{
    check_uuid(v, "instance_uuid", m->instance_uuid);
    check_str(v, "snapshot_name", m->snapshot_name, &RULE_NAME);
    check_str(v, "description", m->description, &RULE_DESCRIPTION);
}

static void
check_create(struct vctx *v, const Nodeagent__V1__CreateRequest *m)
{
    check_spec(v, "spec", m->spec);
}

static void
check_stop(struct vctx *v, const Nodeagent__V1__StopRequest *m)
{
    check_uuid(v, "instance_uuid", m->instance_uuid);
    check_u32(v, "timeout_s", m->timeout_s, 0, 3600);
}

static void
check_reboot(struct vctx *v, const Nodeagent__V1__RebootRequest *m)
{
    check_uuid(v, "instance_uuid", m->instance_uuid);
    check_enum(v, "type", (int)m->type, &nodeagent__v1__reboot_type__descriptor, true);
}

static void
check_resize(struct vctx *v, const Nodeagent__V1__ResizeRequest *m)
{
    check_uuid(v, "instance_uuid", m->instance_uuid);
    check_flavor(v, "flavor", m->flavor);
}

static void
check_rebuild(struct vctx *v, const Nodeagent__V1__RebuildRequest *m)
{
    check_uuid(v, "instance_uuid", m->instance_uuid);
    check_image(v, "image", m->image);
}

static void
check_console_log(struct vctx *v, const Nodeagent__V1__ConsoleLogRequest *m)
{
    check_uuid(v, "instance_uuid", m->instance_uuid);
    check_u32(v, "tail_bytes", m->tail_bytes, 0, AGENT_CONSOLE_TAIL_MAX);
}

static void
check_migrate(struct vctx *v, const Nodeagent__V1__MigrateRequest *m)
{
    check_uuid(v, "instance_uuid", m->instance_uuid);
    check_str(v, "target_node", m->target_node, &RULE_NODE);
    if (m->settings) {
        size_t mark = path_push(v, "settings");
        check_u32(v, "max_downtime_ms", m->settings->max_downtime_ms, 0, 600000);
        check_u32(v, "timeout_s", m->settings->timeout_s, 0, 86400);
        path_pop(v, mark);
    }
}

static void
check_security_group_put(struct vctx *v, const Nodeagent__V1__SecurityGroupPutRequest *m)
{
    check_group(v, "group", m->group);
}

static void
check_security_group_delete(struct vctx *v, const Nodeagent__V1__SecurityGroupDeleteRequest *m)
{
    check_str(v, "group_id", m->group_id, &RULE_GROUP_ID);
}

static void
check_port_security_groups(struct vctx *v, const Nodeagent__V1__PortSecurityGroupsRequest *m)
{
    check_uuid(v, "port_id", m->port_id);
    check_group_ids(v, "security_groups", m->security_groups, m->n_security_groups);
}

static void
check_migration_prepare(struct vctx *v, const Nodeagent__V1__MigrationPrepare *m)
{
    check_uuid(v, "migration_id", m->migration_id);
    check_str(v, "source_node", m->source_node, &RULE_NODE);
    check_spec(v, "spec", m->spec);
    check_str(v, "cpu_model_xml", m->cpu_model_xml, &RULE_CPU_XML);
    check_count(v, "disks", m->n_disks, 0, 16);
    for (size_t i = 0; i < m->n_disks && !v->ret; i++) {
        size_t mark = path_push(v, "disks[%zu]", i);
        const Nodeagent__V1__DiskSize *d = m->disks[i];
        if (!d) {
            fail(v, NULL, "is missing");
        } else {
            check_str(v, "name", d->name, &RULE_NAME);
            if (d->virtual_size == 0)
                fail(v, "virtual_size", "is 0; a disk has at least one byte");
            for (size_t j = 0; j < i && !v->ret; j++)
                if (m->disks[j] && !strcmp(or_empty(d->name), or_empty(m->disks[j]->name)))
                    fail(v, "name", "is the same as disks[%zu].name; disk names must be unique", j);
        }
        path_pop(v, mark);
    }
    if (m->migrate_envelope.len == 0 || m->migrate_envelope.len > 1048576)
        fail(v, "migrate_envelope", "is %zu bytes long; 1..1048576 are allowed",
             m->migrate_envelope.len);
    check_opt_str(v, "migrate_signature", m->migrate_signature, &RULE_SIGNATURE_HEX);
}

static void
check_migration_prepared(struct vctx *v, const Nodeagent__V1__MigrationPrepared *m)
{
    check_uuid(v, "migration_id", m->migration_id);
    check_str(v, "dest_node", m->dest_node, &RULE_NODE);
    check_peer_error(v, "error", m->error);
    /* A ready destination says where to migrate to; a failed one needn't. */
    if (m->error) {
        check_opt_str(v, "migrate_uri", m->migrate_uri, &RULE_MIGRATE_URI);
        check_opt_str(v, "libvirt_uri", m->libvirt_uri, &RULE_MIGRATE_URI);
    } else {
        check_str(v, "migrate_uri", m->migrate_uri, &RULE_MIGRATE_URI);
        check_str(v, "libvirt_uri", m->libvirt_uri, &RULE_MIGRATE_URI);
        check_str(v, "domain_xml", m->domain_xml, &RULE_DOMAIN_XML);
    }
    check_opt_str(v, "disks_uri", m->disks_uri, &RULE_MIGRATE_URI);
    check_opt_str(v, "domain_xml", m->domain_xml, &RULE_DOMAIN_XML);
}

static void
check_migration_finish(struct vctx *v, const Nodeagent__V1__MigrationFinish *m)
{
    check_uuid(v, "migration_id", m->migration_id);
    check_str(v, "source_node", m->source_node, &RULE_NODE);
}

static void
check_migration_abort(struct vctx *v, const Nodeagent__V1__MigrationAbort *m)
{
    check_uuid(v, "migration_id", m->migration_id);
    check_str(v, "node", m->node, &RULE_NODE);
    check_peer_error(v, "error", m->error);
}

/* --- the envelope ----------------------------------------------------------------------- */

/* Envelope fields 1..9 are the envelope's own; the body oneof takes 10 and up, so an unknown
 * length-delimited field there is a request kind newer than this agent. */
#define BODY_FIRST_FIELD 10

static void
check_missing_body(struct vctx *v, const Nodeagent__V1__Envelope *env)
{
    for (unsigned i = 0; i < env->base.n_unknown_fields; i++) {
        const ProtobufCMessageUnknownField *u = &env->base.unknown_fields[i];
        if (u->tag >= BODY_FIRST_FIELD && u->wire_type == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) {
            fail_code(v, NA_CODE_UNIMPLEMENTED, "body",
                      "request kind with field number %" PRIu32
                      " is not known to this agent (it is older than the sender)",
                      u->tag);
            return;
        }
    }
    fail(v, "body", "no request in envelope (missing or unknown body)");
}

static void
check_body(struct vctx *v, const Nodeagent__V1__Envelope *env)
{
    switch (env->body_case) {
#define X(name, CASE, field, ...)                                                                  \
    case NODEAGENT__V1__ENVELOPE__BODY_##CASE:                                                     \
        if (require(v, #name, env->field)) {                                                       \
            size_t mark = path_push(v, #name);                                                     \
            check_##name(v, env->field);                                                           \
            path_pop(v, mark);                                                                     \
        }                                                                                          \
        break;
        AGENT_REQUEST_KINDS(X)
#undef X
    default:
        check_missing_body(v, env);
        break;
    }
}

bool
agent_request_id_is_valid(const char *request_id)
{
    struct vctx v = {.err = NULL};
    check_str(&v, "request_id", request_id, &RULE_REQUEST_ID);
    return v.ret == 0;
}

bool
agent_node_id_is_valid(const char *node_id)
{
    struct vctx v = {.err = NULL};
    check_str(&v, "node_id", node_id, &RULE_NODE);
    return v.ret == 0;
}

int
agent_validate_envelope(const Nodeagent__V1__Envelope *env, struct na_error **err)
{
    struct vctx v = {.err = err};
    if (!env)
        return na_error_field(err, "body", "body: no envelope");
    check_str(&v, "request_id", env->request_id, &RULE_REQUEST_ID);
    if (env->sent_at_ms < 0)
        fail(&v, "sent_at_ms", "%" PRId64 " is negative; expected unix milliseconds",
             env->sent_at_ms);
    check_opt_str(&v, "reply_to", env->reply_to, &RULE_NODE);
    check_body(&v, env);
    return v.ret;
}

int
agent_validate_instance_spec(const Nodeagent__V1__InstanceSpec *spec, const char *name,
                             struct na_error **err)
{
    struct vctx v = {.err = err};
    check_spec(&v, name, spec);
    return v.ret;
}

int
agent_validate_announcement(const Nodeagent__V1__NodeAnnouncement *an, struct na_error **err)
{
    struct vctx v = {.err = err};
    check_str(&v, "node_id", an->node_id, &RULE_NODE);
    if (an->time_ms <= 0)
        fail(&v, "time_ms", "%" PRId64 " is not a time; expected unix milliseconds", an->time_ms);
    check_str(&v, "agent_version", an->agent_version, &RULE_VERSION);
    if (an->tunnel_endpoint && *an->tunnel_endpoint)
        check_ipv4(&v, "tunnel_endpoint", an->tunnel_endpoint, false);
    check_u32(&v, "interval_s", an->interval_s, 1, 3600);
    check_count(&v, "vnis", an->n_vnis, 0, AGENT_MAX_NODE_VNIS);
    for (size_t i = 0; i < an->n_vnis && !v.ret; i++) {
        char name[32];
        snprintf(name, sizeof(name), "vnis[%zu]", i);
        check_u32(&v, name, an->vnis[i], 1, 16777215);
    }
    return v.ret;
}
