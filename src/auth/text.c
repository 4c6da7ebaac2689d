#include "auth/text.h"

#include <stdint.h>
#include <string.h>

/* Decode the code point at s[i] and store its byte count in *width (1 for a stray byte). */
static uint32_t decode(const unsigned char *s, size_t len, size_t i, size_t *width)
{
    unsigned char c = s[i];
    size_t n;
    uint32_t cp;

    if (c < 0x80) {
        *width = 1;
        return c;
    }
    if ((c & 0xe0) == 0xc0) {
        n = 2;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4;
        cp = c & 0x07;
    } else {
        *width = 1;
        return 0xfffd;
    }
    if (i + n > len) {
        *width = 1;
        return 0xfffd;
    }
    for (size_t k = 1; k < n; k++)
        cp = (cp << 6) | (s[i + k] & 0x3f);
    *width = n;
    return cp;
}

static int is_space(uint32_t cp)
{
    switch (cp) {
    case 0x09:
    case 0x0a:
    case 0x0b:
    case 0x0c:
    case 0x0d:
    case 0x20:
    case 0x85:
    case 0xa0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202f:
    case 0x205f:
    case 0x3000:
    case 0xfeff:
        return 1;
    default:
        return cp >= 0x2000 && cp <= 0x200a;
    }
}

size_t znp_text_trim(const char *s, size_t len, size_t *start)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t begin = 0, end = 0, i = 0, width;

    /* skip leading space */
    while (i < len && is_space(decode(u, len, i, &width)))
        i += width;
    begin = i;

    /* end is one past the last byte of a non-space code point */
    end = begin;
    while (i < len) {
        uint32_t cp = decode(u, len, i, &width);
        i += width;
        if (!is_space(cp))
            end = i;
    }

    *start = begin;
    return end - begin;
}

size_t znp_text_length(const char *s, size_t len)
{
    size_t count = 0;

    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            count++;
    }
    return count;
}

size_t znp_text_prefix(const char *s, size_t len, size_t max_chars)
{
    size_t count = 0;

    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80) {
            if (count == max_chars)
                return i;
            count++;
        }
    }
    return len;
}

size_t znp_text_copy(char *out, size_t out_size, const char *s, size_t len)
{
    if (out_size == 0)
        return 0;
    if (len >= out_size) {
        len = out_size - 1;
        while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
            len--;
    }
    memcpy(out, s, len);
    out[len] = '\0';
    return len;
}
