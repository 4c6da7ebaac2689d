/*
 * CORS origin lists: exact origins such as https://app.example.com, subdomain
 * wildcards (a "*." label in front of a domain) and "*". An origin is serialized by
 * the browser as scheme "://" host [":" port] (RFC 6454), so anything else in
 * the Origin header, such as a path or user info, never matches.
 */
#include "protect/protect.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "errors.gen.h"

#define ORIGIN_TEXT_MAX 300

typedef struct parsed_origin {
    char scheme[8];
    char host[254];
    uint16_t port; /* 0 = default port of the scheme */
} parsed_origin_t;

static int is_host_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '.';
}

/* Whether `host` is dot-separated non-empty labels of [A-Za-z0-9-] (an IPv4 literal passes too). */
static int valid_host(const char *host, size_t len)
{
    size_t label = 0;

    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_host_char(host[i]))
            return 0;
        if (host[i] == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else {
            label++;
        }
    }
    return label > 0;
}

/*
 * Split an origin into scheme, lowercase host and port. `allow_wildcard`
 * accepts a leading "*." in the host, reported in *wildcard and removed.
 */
static int parse_origin(parsed_origin_t *out, int *wildcard, const char *text, size_t len, int allow_wildcard)
{
    const char *separator;
    const char *host;
    size_t host_len;
    size_t scheme_len;
    unsigned port = 0;

    memset(out, 0, sizeof(*out));
    if (wildcard != NULL)
        *wildcard = 0;
    if (len == 0 || len >= ORIGIN_TEXT_MAX)
        return ZNP_E_VALIDATION_FAILED;
    separator = NULL;
    for (size_t i = 0; i + 3 <= len; i++) {
        if (memcmp(text + i, "://", 3) == 0) {
            separator = text + i;
            break;
        }
    }
    if (separator == NULL)
        return ZNP_E_VALIDATION_FAILED;
    scheme_len = (size_t)(separator - text);
    if (scheme_len == 4 && strncasecmp(text, "http", 4) == 0)
        memcpy(out->scheme, "http", 5);
    else if (scheme_len == 5 && strncasecmp(text, "https", 5) == 0)
        memcpy(out->scheme, "https", 6);
    else
        return ZNP_E_VALIDATION_FAILED;

    host = separator + 3;
    host_len = len - scheme_len - 3;
    const char *colon = memchr(host, ':', host_len);

    if (colon != NULL) {
        const char *digits = colon + 1;
        size_t digit_count = host_len - (size_t)(colon - host) - 1;

        if (digit_count == 0 || digit_count > 5 || digits[0] == '0')
            return ZNP_E_VALIDATION_FAILED;
        for (size_t i = 0; i < digit_count; i++) {
            if (!isdigit((unsigned char)digits[i]))
                return ZNP_E_VALIDATION_FAILED;
            port = port * 10 + (unsigned)(digits[i] - '0');
        }
        if (port > 65535)
            return ZNP_E_VALIDATION_FAILED;
        host_len = (size_t)(colon - host);
    }
    if ((port == 80 && out->scheme[4] == '\0') || (port == 443 && out->scheme[4] == 's'))
        port = 0;

    if (allow_wildcard && host_len > 2 && host[0] == '*' && host[1] == '.') {
        *wildcard = 1;
        host += 2;
        host_len -= 2;
    }
    if (!valid_host(host, host_len) || host_len >= sizeof(out->host))
        return ZNP_E_VALIDATION_FAILED;
    for (size_t i = 0; i < host_len; i++)
        out->host[i] = (char)tolower((unsigned char)host[i]);
    out->host[host_len] = '\0';
    out->port = (uint16_t)port;
    return 0;
}

int znp_origin_list_parse(znp_origin_list_t *out, const char *text, char *bad, size_t bad_size)
{
    size_t capacity = 1;
    const char *p = text;

    memset(out, 0, sizeof(*out));
    if (bad != NULL && bad_size > 0)
        bad[0] = '\0';
    if (text == NULL)
        return 0;
    for (const char *q = text; *q != '\0'; q++)
        capacity += *q == ',' || *q == ' ';
    out->items = calloc(capacity, sizeof(*out->items));
    if (out->items == NULL)
        return ZNP_E_INTERNAL;

    while (*p != '\0') {
        size_t len = 0;
        parsed_origin_t parsed;
        int wildcard = 0;

        while (*p == ',' || *p == ' ' || *p == '\t' || *p == '\n')
            p++;
        while (p[len] != '\0' && p[len] != ',' && p[len] != ' ' && p[len] != '\t' && p[len] != '\n')
            len++;
        if (len == 0)
            break;
        if (len == 1 && p[0] == '*') {
            out->any = 1;
        } else if (out->count < capacity && parse_origin(&parsed, &wildcard, p, len, 1) == 0) {
            znp_origin_pattern_t *item = &out->items[out->count++];

            memcpy(item->scheme, parsed.scheme, sizeof(item->scheme));
            memcpy(item->host, parsed.host, sizeof(item->host));
            item->wildcard = wildcard;
            item->port = parsed.port;
        } else {
            if (bad != NULL && bad_size > 0) {
                size_t n = len < bad_size - 1 ? len : bad_size - 1;

                memcpy(bad, p, n);
                bad[n] = '\0';
            }
            znp_origin_list_dispose(out);
            return ZNP_E_VALIDATION_FAILED;
        }
        p += len;
    }
    return 0;
}

/* Whether `host` is `suffix` with at least one label in front: "a.example.com" for "example.com". */
static int is_subdomain(const char *host, const char *suffix)
{
    size_t host_len = strlen(host);
    size_t suffix_len = strlen(suffix);

    if (host_len < suffix_len + 2)
        return 0;
    return host[host_len - suffix_len - 1] == '.' && strcmp(host + host_len - suffix_len, suffix) == 0;
}

int znp_origin_list_match(const znp_origin_list_t *list, const char *origin, size_t len)
{
    parsed_origin_t parsed;

    if (list->any)
        return 1;
    if (parse_origin(&parsed, NULL, origin, len, 0) != 0)
        return 0;
    for (size_t i = 0; i < list->count; i++) {
        const znp_origin_pattern_t *item = &list->items[i];

        if (strcmp(item->scheme, parsed.scheme) != 0 || item->port != parsed.port)
            continue;
        if (item->wildcard ? is_subdomain(parsed.host, item->host) : strcmp(item->host, parsed.host) == 0)
            return 1;
    }
    return 0;
}

void znp_origin_list_dispose(znp_origin_list_t *list)
{
    free(list->items);
    list->items = NULL;
    list->count = 0;
    list->any = 0;
}
