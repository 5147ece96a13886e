/* Base64 (RFC 4648, standard alphabet, padded), strict on the way in: what it decodes was
 * written by us, so anything else (whitespace, a missing or misplaced '=', non-zero bits
 * after the last byte) is refused rather than guessed at. */
#include "common/common.h"

#include <errno.h>
#include <string.h>

static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
na_base64_encode(const uint8_t *data, size_t size)
{
    char *out = na_xmalloc((size + 2) / 3 * 4 + 1);
    char *o = out;
    for (size_t i = 0; i < size; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < size)
            v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < size)
            v |= data[i + 2];
        *o++ = alphabet[v >> 18 & 63];
        *o++ = alphabet[v >> 12 & 63];
        *o++ = i + 1 < size ? alphabet[v >> 6 & 63] : '=';
        *o++ = i + 2 < size ? alphabet[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

static int
sextet(char c)
{
    const char *p = c ? strchr(alphabet, c) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

int
na_base64_decode(const char *text, size_t max_size, uint8_t **out, size_t *out_size)
{
    *out = NULL;
    *out_size = 0;
    size_t len = strlen(text);
    if (len % 4 != 0 || len / 4 * 3 > max_size + 2)
        return -EINVAL;
    size_t pad = len && text[len - 1] == '=' ? (text[len - 2] == '=' ? 2 : 1) : 0;
    size_t size = len / 4 * 3 - pad;
    if (size > max_size)
        return -EINVAL;
    uint8_t *buf = na_xmalloc(size ? size : 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int s[4];
        for (int k = 0; k < 4; k++) {
            bool padding = last && k >= 4 - (int)pad;
            s[k] = padding ? (text[i + k] == '=' ? 0 : -1) : sextet(text[i + k]);
        }
        if (s[0] < 0 || s[1] < 0 || s[2] < 0 || s[3] < 0) {
            free(buf);
            return -EINVAL;
        }
        uint32_t v =
            (uint32_t)s[0] << 18 | (uint32_t)s[1] << 12 | (uint32_t)s[2] << 6 | (uint32_t)s[3];
        /* The bits a padded group leaves over must be zero: one encoding per input. */
        if ((last && pad == 1 && (v & 0xff)) || (last && pad == 2 && (v & 0xffff))) {
            free(buf);
            return -EINVAL;
        }
        buf[n++] = (uint8_t)(v >> 16);
        if (n < size)
            buf[n++] = (uint8_t)(v >> 8);
        if (n < size)
            buf[n++] = (uint8_t)v;
    }
    *out = buf;
    *out_size = size;
    return 0;
}
