/*
 * IP addresses, CIDR lists and the client address behind trusted proxies.
 */
#include "protect/protect.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "errors.gen.h"

#define ENTRY_TEXT_MAX 64 /* maximum length of an address or CIDR entry, in bytes */

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int znp_ip_parse(znp_ip_t *out, const char *text, size_t len)
{
    char buffer[ENTRY_TEXT_MAX];

    memset(out, 0, sizeof(*out));
    if (len == 0 || len >= sizeof(buffer))
        return ZNP_E_VALIDATION_FAILED;
    memcpy(buffer, text, len);
    buffer[len] = '\0';
    if (memchr(buffer, '\0', len) != NULL)
        return ZNP_E_VALIDATION_FAILED;

    if (inet_pton(AF_INET, buffer, out->bytes) == 1) {
        out->family = 4;
        return 0;
    }
    if (inet_pton(AF_INET6, buffer, out->bytes) == 1) {
        out->family = 6;
        if (memcmp(out->bytes, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0) {
            memmove(out->bytes, out->bytes + 12, 4);
            memset(out->bytes + 4, 0, 12);
            out->family = 4;
        }
        return 0;
    }
    memset(out, 0, sizeof(*out));
    return ZNP_E_VALIDATION_FAILED;
}

void znp_ip_from_sockaddr(znp_ip_t *out, const struct sockaddr *addr)
{
    memset(out, 0, sizeof(*out));
    if (addr->sa_family == AF_INET) {
        memcpy(out->bytes, &((const struct sockaddr_in *)addr)->sin_addr, 4);
        out->family = 4;
    } else if (addr->sa_family == AF_INET6) {
        memcpy(out->bytes, &((const struct sockaddr_in6 *)addr)->sin6_addr, 16);
        out->family = 6;
        if (memcmp(out->bytes, v4_mapped_prefix, sizeof(v4_mapped_prefix)) == 0) {
            memmove(out->bytes, out->bytes + 12, 4);
            memset(out->bytes + 4, 0, 12);
            out->family = 4;
        }
    }
}

/* Dotted-quad text of 4 bytes. Every request formats its peer, and glibc's inet_ntop goes through printf. */
static void format_ipv4(char *text, const uint8_t *bytes)
{
    char *p = text;

    for (int i = 0; i < 4; i++) {
        unsigned v = bytes[i];

        if (i > 0)
            *p++ = '.';
        if (v >= 100)
            *p++ = (char)('0' + v / 100);
        if (v >= 10)
            *p++ = (char)('0' + v / 10 % 10);
        *p++ = (char)('0' + v % 10);
    }
    *p = '\0';
}

void znp_ip_format(char *out, size_t out_size, const znp_ip_t *ip)
{
    char text[ZNP_IP_TEXT_MAX];

    text[0] = '\0';
    if (ip->family == 4)
        format_ipv4(text, ip->bytes);
    else if (ip->family == 6)
        inet_ntop(AF_INET6, ip->bytes, text, sizeof(text));
    if (out_size > 0) {
        size_t len = strlen(text) < out_size - 1 ? strlen(text) : out_size - 1;

        memcpy(out, text, len);
        out[len] = '\0';
    }
}

/* Whether the first `bits` bits of a and b are equal. */
static int prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
    unsigned whole = bits / 8;
    unsigned rest = bits % 8;

    if (memcmp(a, b, whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));

    return (a[whole] & mask) == (b[whole] & mask);
}

int znp_cidr_parse(znp_cidr_t *out, const char *text, size_t len)
{
    const char *slash = memchr(text, '/', len);
    size_t address_len = slash != NULL ? (size_t)(slash - text) : len;
    unsigned max_bits;
    unsigned bits = 0;

    memset(out, 0, sizeof(*out));
    if (znp_ip_parse(&out->base, text, address_len) != 0)
        return ZNP_E_VALIDATION_FAILED;
    /* "::ffff:10.0.0.0/104" is the IPv4 network 10.0.0.0/8 */
    max_bits = out->base.family == 4 ? 32 : 128;
    if (slash == NULL) {
        out->prefix = (uint8_t)max_bits;
        return 0;
    }

    const char *digits = slash + 1;
    size_t digit_count = len - address_len - 1;

    if (digit_count == 0 || digit_count > 3 || (digits[0] == '0' && digit_count > 1))
        goto invalid;
    for (size_t i = 0; i < digit_count; i++) {
        if (digits[i] < '0' || digits[i] > '9')
            goto invalid;
        bits = bits * 10 + (unsigned)(digits[i] - '0');
    }
    if (out->base.family == 4 && memchr(text, ':', address_len) != NULL) {
        if (bits < 96 || bits > 128)
            goto invalid;
        bits -= 96;
    }
    if (bits > max_bits)
        goto invalid;
    out->prefix = (uint8_t)bits;

    /* host bits must be zero: 10.0.0.1/8 is more likely a typo than a network */
    {
        uint8_t masked[16];

        memcpy(masked, out->base.bytes, sizeof(masked));
        for (unsigned bit = bits; bit < max_bits; bit++)
            masked[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
        if (memcmp(masked, out->base.bytes, sizeof(masked)) != 0)
            goto invalid;
    }
    return 0;

invalid:
    memset(out, 0, sizeof(*out));
    return ZNP_E_VALIDATION_FAILED;
}

int znp_cidr_contains(const znp_cidr_t *cidr, const znp_ip_t *ip)
{
    if (ip->family == 0 || ip->family != cidr->base.family)
        return 0;
    return prefix_equal(cidr->base.bytes, ip->bytes, cidr->prefix);
}

static int is_list_separator(char c)
{
    return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void copy_bad(char *bad, size_t bad_size, const char *text, size_t len)
{
    if (bad == NULL || bad_size == 0)
        return;
    if (len >= bad_size)
        len = bad_size - 1;
    memcpy(bad, text, len);
    bad[len] = '\0';
}

int znp_cidr_list_parse(znp_cidr_list_t *out, const char *text, char *bad, size_t bad_size)
{
    size_t capacity = 0;
    const char *p = text;

    memset(out, 0, sizeof(*out));
    if (bad != NULL && bad_size > 0)
        bad[0] = '\0';
    if (text == NULL)
        return 0;
    for (const char *q = text; *q != '\0'; q++)
        capacity += *q == ',' || *q == ' ';
    capacity++;
    out->items = calloc(capacity, sizeof(*out->items));
    if (out->items == NULL)
        return ZNP_E_INTERNAL;

    while (*p != '\0') {
        size_t len = 0;

        while (is_list_separator(*p))
            p++;
        while (p[len] != '\0' && !is_list_separator(p[len]))
            len++;
        if (len == 0)
            break;
        if (out->count == capacity || znp_cidr_parse(&out->items[out->count], p, len) != 0) {
            copy_bad(bad, bad_size, p, len);
            znp_cidr_list_dispose(out);
            return ZNP_E_VALIDATION_FAILED;
        }
        out->count++;
        p += len;
    }
    return 0;
}

int znp_cidr_list_contains(const znp_cidr_list_t *list, const znp_ip_t *ip)
{
    for (size_t i = 0; i < list->count; i++) {
        if (znp_cidr_contains(&list->items[i], ip))
            return 1;
    }
    return 0;
}

void znp_cidr_list_dispose(znp_cidr_list_t *list)
{
    free(list->items);
    list->items = NULL;
    list->count = 0;
}

/* Strip spaces and tabs around [start, start + len). */
static void trim(const char **start, size_t *len)
{
    while (*len > 0 && (**start == ' ' || **start == '\t')) {
        (*start)++;
        (*len)--;
    }
    while (*len > 0 && ((*start)[*len - 1] == ' ' || (*start)[*len - 1] == '\t'))
        (*len)--;
}

/*
 * Parse one hop of a forwarding chain: an address, "[IPv6]" or
 * "[IPv6]:port", or "IPv4:port". Quotes are removed (RFC 7239 quotes
 * IPv6 hops). Returns 0 when the hop is an address.
 */
static int parse_hop(znp_ip_t *out, const char *text, size_t len)
{
    trim(&text, &len);
    if (len >= 2 && text[0] == '"' && text[len - 1] == '"') {
        text++;
        len -= 2;
    }
    if (len > 0 && text[0] == '[') {
        const char *close = memchr(text, ']', len);

        if (close == NULL)
            return ZNP_E_VALIDATION_FAILED;
        return znp_ip_parse(out, text + 1, (size_t)(close - text - 1));
    }
    if (znp_ip_parse(out, text, len) == 0)
        return 0;
    /* "a.b.c.d:port": exactly one colon, so not IPv6 */
    const char *colon = memchr(text, ':', len);

    if (colon != NULL && memchr(colon + 1, ':', len - (size_t)(colon - text) - 1) == NULL)
        return znp_ip_parse(out, text, (size_t)(colon - text));
    return ZNP_E_VALIDATION_FAILED;
}

/* The value of the for= parameter in one Forwarded element ("for=1.2.3.4;proto=https"), or len 0. */
static void forwarded_for(const char *element, size_t len, const char **value, size_t *value_len)
{
    const char *p = element;
    const char *end = element + len;

    *value = NULL;
    *value_len = 0;
    while (p < end) {
        const char *semicolon = memchr(p, ';', (size_t)(end - p));
        const char *pair_end = semicolon != NULL ? semicolon : end;
        const char *pair = p;
        size_t pair_len = (size_t)(pair_end - p);

        trim(&pair, &pair_len);
        if (pair_len > 4 && strncasecmp(pair, "for=", 4) == 0) {
            *value = pair + 4;
            *value_len = pair_len - 4;
            return;
        }
        p = pair_end + 1;
    }
}

void znp_client_ip_resolve(znp_ip_t *out, const znp_ip_t *peer, const znp_cidr_list_t *trusted,
                           const char *x_forwarded_for, size_t xff_len, const char *forwarded, size_t forwarded_len)
{
    const char *chain = x_forwarded_for != NULL ? x_forwarded_for : forwarded;
    size_t chain_len = x_forwarded_for != NULL ? xff_len : forwarded_len;
    int is_forwarded = x_forwarded_for == NULL;
    size_t end;

    *out = *peer;
    if (chain == NULL || trusted->count == 0 || !znp_cidr_list_contains(trusted, peer))
        return;

    /* from the right: each hop was appended by the proxy to its right, which is trusted so far */
    end = chain_len;
    for (;;) {
        size_t start = end;
        const char *hop;
        size_t hop_len;
        znp_ip_t address;

        while (start > 0 && chain[start - 1] != ',')
            start--;
        hop = chain + start;
        hop_len = end - start;
        if (is_forwarded)
            forwarded_for(chain + start, end - start, &hop, &hop_len);
        if (hop == NULL || parse_hop(&address, hop, hop_len) != 0)
            return; /* "unknown", an obfuscated name or garbage: keep the last trusted hop */
        *out = address;
        if (!znp_cidr_list_contains(trusted, &address) || start == 0)
            return;
        end = start - 1;
    }
}
