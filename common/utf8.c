#include "common/common.h"

bool
na_utf8_next(const unsigned char *s, size_t size, size_t *i, uint32_t *cp)
{
    unsigned char c = s[*i];
    size_t n;
    uint32_t min;
    if (c < 0x80) {
        *cp = c;
        (*i)++;
        return true;
    } else if ((c & 0xe0) == 0xc0) {
        n = 1, min = 0x80, *cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 2, min = 0x800, *cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 3, min = 0x10000, *cp = c & 0x07;
    } else {
        return false;
    }
    if (size - *i <= n)
        return false;
    for (size_t k = 1; k <= n; k++) {
        if ((s[*i + k] & 0xc0) != 0x80)
            return false;
        *cp = (*cp << 6) | (s[*i + k] & 0x3f);
    }
    if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff))
        return false;
    *i += n + 1;
    return true;
}
