/* A strict RFC 3986 parser for absolute URIs with an authority. */
#include "formats/formats.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "formats/internal.h"

static int unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static int sub_delim(unsigned char c)
{
    return c != '\0' && strchr("!$&'()*+,;=", c) != NULL;
}

static int hex(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Whether s[0..len) uses only unreserved, sub-delims, well-formed %HH and the characters in `extra` */
static int chars_ok(const char *s, size_t len, const char *extra)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '%') {
            if (i + 2 >= len)
                return 0;
            if (hex((unsigned char)s[i + 1]) < 0 || hex((unsigned char)s[i + 2]) < 0)
                return 0;
            i += 2;
            continue;
        }
        if (!(unreserved(c) || sub_delim(c) || (c != '\0' && strchr(extra, c) != NULL)))
            return 0;
    }
    return 1;
}

int znp_formats_percent_decode(char **out, const char *in, size_t len)
{
    char *s = malloc(len + 1);
    size_t o = 0;

    *out = NULL;
    if (s == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < len; i++) {
        if (in[i] != '%') {
            s[o++] = in[i];
            continue;
        }
        if (i + 2 >= len || hex((unsigned char)in[i + 1]) < 0 || hex((unsigned char)in[i + 2]) < 0) {
            free(s);
            return ZNP_E_VALIDATION_FAILED;
        }
        s[o++] = (char)(hex((unsigned char)in[i + 1]) << 4 | hex((unsigned char)in[i + 2]));
        i += 2;
    }
    s[o] = '\0';
    *out = s;
    return 0;
}

static char *copy(const char *s, size_t len)
{
    char *d = malloc(len + 1);

    if (d != NULL) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

void znp_formats_uri_dispose(znp_formats_uri_t *uri)
{
    if (uri == NULL)
        return;
    free(uri->scheme);
    free(uri->userinfo);
    free(uri->host);
    free(uri->path);
    free(uri->query);
    free(uri->fragment);
    memset(uri, 0, sizeof(*uri));
    uri->port = -1;
}

static int parse_host_port(znp_formats_uri_t *u, const char *s, size_t len)
{
    const char *port = NULL;
    size_t host_len;
    unsigned char addr[16];

    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);

        if (close == NULL)
            return ZNP_E_VALIDATION_FAILED;
        host_len = (size_t)(close - s - 1);
        u->host = copy(s + 1, host_len);
        if (u->host == NULL)
            return ZNP_E_INTERNAL;
        /* inet_pton rejects zone ids and anything that is not plain IPv6 */
        if (inet_pton(AF_INET6, u->host, addr) != 1)
            return ZNP_E_VALIDATION_FAILED;
        if (close + 1 < s + len) {
            if (close[1] != ':')
                return ZNP_E_VALIDATION_FAILED;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(s, ':', len);

        host_len = colon != NULL ? (size_t)(colon - s) : len;
        if (host_len == 0 || !chars_ok(s, host_len, "") || memchr(s, '[', len) != NULL)
            return ZNP_E_VALIDATION_FAILED;
        if (znp_formats_percent_decode(&u->host, s, host_len) != 0)
            return ZNP_E_VALIDATION_FAILED;
        if (colon != NULL)
            port = colon + 1;
    }
    if (port != NULL) {
        size_t digits = (size_t)(s + len - port);
        long value = 0;

        if (digits == 0 || digits > 5)
            return ZNP_E_VALIDATION_FAILED;
        for (size_t i = 0; i < digits; i++) {
            if (!isdigit((unsigned char)port[i]))
                return ZNP_E_VALIDATION_FAILED;
            value = value * 10 + (port[i] - '0');
        }
        if (value > 65535)
            return ZNP_E_VALIDATION_FAILED;
        u->port = (int)value;
    }
    return 0;
}

static int parse_authority(znp_formats_uri_t *u, const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);

    if (at != NULL) {
        size_t ui_len = (size_t)(at - s);

        if (memchr(at + 1, '@', len - ui_len - 1) != NULL || !chars_ok(s, ui_len, ":"))
            return ZNP_E_VALIDATION_FAILED;
        if (znp_formats_percent_decode(&u->userinfo, s, ui_len) != 0)
            return ZNP_E_VALIDATION_FAILED;
        len -= ui_len + 1;
        s = at + 1;
    }
    return parse_host_port(u, s, len);
}

int znp_formats_uri_parse(znp_formats_uri_t *out, const char *text)
{
    const char *p = text;
    const char *end;
    int rc = ZNP_E_VALIDATION_FAILED;

    memset(out, 0, sizeof(*out));
    out->port = -1;

    /* scheme ":" "//" */
    if (!isalpha((unsigned char)*p))
        goto cleanup;
    while (isalnum((unsigned char)*p) || *p == '+' || *p == '-' || *p == '.')
        p++;
    if (p[0] != ':' || p[1] != '/' || p[2] != '/')
        goto cleanup;
    out->scheme = copy(text, (size_t)(p - text));
    if (out->scheme == NULL)
        goto cleanup;
    for (char *c = out->scheme; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    p += 3;

    /* authority */
    end = p + strcspn(p, "/?#");
    rc = parse_authority(out, p, (size_t)(end - p));
    if (rc != 0)
        goto cleanup;
    rc = ZNP_E_VALIDATION_FAILED;
    p = end;

    /* path-abempty */
    end = p + strcspn(p, "?#");
    if (!chars_ok(p, (size_t)(end - p), ":@/") || (end > p && p[0] != '/'))
        goto cleanup;
    out->path = copy(p, (size_t)(end - p));
    p = end;

    /* query and fragment */
    if (*p == '?') {
        end = p + 1 + strcspn(p + 1, "#");
        if (!chars_ok(p + 1, (size_t)(end - p - 1), ":@/?"))
            goto cleanup;
        out->query = copy(p + 1, (size_t)(end - p - 1));
        p = end;
    }
    if (*p == '#') {
        size_t len = strlen(p + 1);

        if (!chars_ok(p + 1, len, ":@/?"))
            goto cleanup;
        if (znp_formats_percent_decode(&out->fragment, p + 1, len) != 0)
            goto cleanup;
    }
    rc = out->path != NULL ? 0 : ZNP_E_INTERNAL;

cleanup:
    if (rc != 0)
        znp_formats_uri_dispose(out);
    return rc;
}

int znp_formats_uri_query_get(char **out, const char *query, const char *key)
{
    size_t key_len = strlen(key);
    const char *p = query;

    *out = NULL;
    while (p != NULL && *p != '\0') {
        const char *amp = strchr(p, '&');
        size_t len = amp != NULL ? (size_t)(amp - p) : strlen(p);

        if (len > key_len && strncmp(p, key, key_len) == 0 && p[key_len] == '=')
            return znp_formats_percent_decode(out, p + key_len + 1, len - key_len - 1);
        p = amp != NULL ? amp + 1 : NULL;
    }
    return ZNP_E_NOT_FOUND;
}
