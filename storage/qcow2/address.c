/* Which peers an image download may connect to.
 *
 * An image URL comes from the bus, and the agent runs as root on a host whose neighbours
 * (its own admin and Placement ports, a cloud's metadata service at 169.254.169.254, the
 * management network) trust it.  So the address of every connection libcurl opens, after DNS
 * and after each redirect, is checked here: addresses in the ranges below are refused unless
 * the operator lists them in allowed_networks.  Every other address is a public one and
 * allowed.  IPv4 is handled as IPv4-mapped IPv6 (::ffff:a.b.c.d), so a mapped address is
 * checked exactly as its IPv4 form, and NAT64's well-known prefix (64:ff9b::/96) is checked
 * as the IPv4 address it embeds. */
#include "storage/qcow2/qcow2.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Refused ranges; the first match names the reason. */
static const struct refused_range {
    const char *cidr;
    const char *what;
} refused[] = {
    {"0.0.0.0/8", "unspecified (0.0.0.0/8)"},
    {"10.0.0.0/8", "private (10.0.0.0/8)"},
    {"100.64.0.0/10", "shared address space, CGNAT (100.64.0.0/10)"},
    {"127.0.0.0/8", "loopback (127.0.0.0/8)"},
    {"169.254.0.0/16", "link-local (169.254.0.0/16)"},
    {"172.16.0.0/12", "private (172.16.0.0/12)"},
    {"192.0.0.0/24", "IETF protocol assignments (192.0.0.0/24)"},
    {"192.168.0.0/16", "private (192.168.0.0/16)"},
    {"224.0.0.0/4", "multicast (224.0.0.0/4)"},
    {"255.255.255.255/32", "broadcast (255.255.255.255)"},
    {"240.0.0.0/4", "reserved (240.0.0.0/4)"},
    {"::/128", "unspecified (::)"},
    {"::1/128", "loopback (::1)"},
    {"::/96", "IPv4-compatible, deprecated (::/96)"},
    {"64:ff9b:1::/48", "local-use NAT64 (64:ff9b:1::/48)"},
    {"fc00::/7", "unique-local (fc00::/7)"},
    {"fe80::/10", "link-local (fe80::/10)"},
    {"fec0::/10", "site-local, deprecated (fec0::/10)"},
    {"ff00::/8", "multicast (ff00::/8)"},
};

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
static const uint8_t nat64_prefix[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

int
qcow2_cidr_parse(const char *text, struct qcow2_cidr *out, const char **why)
{
    const char *slash = strchr(text, '/');
    if (!slash || slash == text || strlen(text) > 64) {
        *why = "is not an address, '/' and a prefix length";
        return -EINVAL;
    }
    char host[65];
    memcpy(host, text, (size_t)(slash - text));
    host[slash - text] = '\0';
    struct qcow2_cidr c = {0};
    unsigned max_len;
    struct in_addr v4;
    if (inet_pton(AF_INET, host, &v4) == 1) {
        memcpy(c.addr, v4_mapped_prefix, sizeof(v4_mapped_prefix));
        memcpy(c.addr + 12, &v4, 4);
        max_len = 32;
    } else if (inet_pton(AF_INET6, host, c.addr) == 1) {
        max_len = 128;
    } else {
        *why = "does not start with an IPv4 or IPv6 address";
        return -EINVAL;
    }
    const char *p = slash + 1;
    char *end = NULL;
    errno = 0;
    unsigned long len = strtoul(p, &end, 10);
    if (!*p || *p == '-' || *p == '+' || *end || errno || len > max_len) {
        *why = max_len == 32 ? "has no prefix length from 0 to 32"
                             : "has no prefix length from 0 to 128";
        return -EINVAL;
    }
    c.prefix_len = (unsigned)len + (128 - max_len);
    for (unsigned bit = c.prefix_len; bit < 128; bit++) {
        if (c.addr[bit / 8] & (0x80u >> (bit % 8))) {
            *why = "has bits set past its prefix length";
            return -EINVAL;
        }
    }
    *out = c;
    return 0;
}

static bool
cidr_contains(const struct qcow2_cidr *c, const uint8_t addr[16])
{
    unsigned full = c->prefix_len / 8, rest = c->prefix_len % 8;
    if (memcmp(c->addr, addr, full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

static bool
in_allowed(const uint8_t addr[16], const struct qcow2_cidr *allowed, size_t n_allowed)
{
    for (size_t i = 0; i < n_allowed; i++)
        if (cidr_contains(&allowed[i], addr))
            return true;
    return false;
}

bool
qcow2_address_allowed(const struct sockaddr *sa, size_t sa_size, const struct qcow2_cidr *allowed,
                      size_t n_allowed, const char **reason)
{
    uint8_t addr[16];
    if (sa->sa_family == AF_INET && sa_size >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(addr, v4_mapped_prefix, sizeof(v4_mapped_prefix));
        memcpy(addr + 12, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6 && sa_size >= sizeof(struct sockaddr_in6)) {
        memcpy(addr, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        *reason = "not an IPv4 or IPv6 address";
        return false;
    }
    if (in_allowed(addr, allowed, n_allowed))
        return true;
    /* A NAT64 address reaches the IPv4 address it embeds. */
    if (memcmp(addr, nat64_prefix, sizeof(nat64_prefix)) == 0) {
        memcpy(addr, v4_mapped_prefix, sizeof(v4_mapped_prefix));
        if (in_allowed(addr, allowed, n_allowed))
            return true;
    }
    for (size_t i = 0; i < NA_ARRAY_SIZE(refused); i++) {
        struct qcow2_cidr c;
        const char *why;
        if (qcow2_cidr_parse(refused[i].cidr, &c, &why) < 0)
            abort(); /* the table above is wrong */
        if (cidr_contains(&c, addr)) {
            *reason = refused[i].what;
            return false;
        }
    }
    return true;
}
