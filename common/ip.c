/* IPv6 addresses and comparisons of addresses of either family (IPv4 is in mac.c's
 * neighbour na_ipv4_addr_parse). */
#include "common/common.h"

#include <arpa/inet.h>
#include <string.h>

bool
na_ipv6_addr_parse(const char *s, uint8_t addr[16])
{
    char buf[INET6_ADDRSTRLEN];
    size_t len = strcspn(s, "/");
    if (len >= sizeof(buf))
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return inet_pton(AF_INET6, buf, addr) == 1;
}

bool
na_ip_same_addr(const char *a, const char *b)
{
    uint32_t x, y;
    if (na_ipv4_addr_parse(a, &x) && na_ipv4_addr_parse(b, &y))
        return x == y;
    uint8_t x6[16], y6[16];
    return na_ipv6_addr_parse(a, x6) && na_ipv6_addr_parse(b, y6) && !memcmp(x6, y6, sizeof(x6));
}

void
na_ipv6_link_local(const uint8_t mac[6], uint8_t addr[16])
{
    memset(addr, 0, 16);
    addr[0] = 0xfe;
    addr[1] = 0x80;
    addr[8] = mac[0] ^ 0x02; /* the universal/local bit, inverted (RFC 4291 appendix A) */
    addr[9] = mac[1];
    addr[10] = mac[2];
    addr[11] = 0xff;
    addr[12] = 0xfe;
    addr[13] = mac[3];
    addr[14] = mac[4];
    addr[15] = mac[5];
}
