#include "common/common.h"

#include <openssl/evp.h>
#include <string.h>

void
na_hmac_sha256_hex(const uint8_t *key, size_t key_size, const uint8_t *data, size_t size,
                   char out[65])
{
    unsigned char mac[32];
    size_t mac_size = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, key_size, data, size, mac, sizeof(mac),
                   &mac_size) ||
        mac_size != sizeof(mac))
        abort();
    for (size_t i = 0; i < sizeof(mac); i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

bool
na_hmac_sha256_verify(const uint8_t *key, size_t key_size, const uint8_t *data, size_t size,
                      const char *hex, size_t hex_len)
{
    char want[65];
    na_hmac_sha256_hex(key, key_size, data, size, want);
    if (hex_len != 64)
        return false;
    /* Constant time: the comparison must not tell an attacker how many digits matched. */
    unsigned char diff = 0;
    for (size_t i = 0; i < 64; i++)
        diff |= (unsigned char)(want[i] ^ hex[i]);
    return diff == 0;
}

void
na_sha256_hex(const uint8_t *data, size_t size, char out[65])
{
    unsigned char md[32];
    unsigned int md_size = 0;
    if (!EVP_Digest(data, size, md, &md_size, EVP_sha256(), NULL) || md_size != sizeof(md))
        abort();
    for (size_t i = 0; i < sizeof(md); i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}
