/*
 * Node input normalisation: trimmed texts, hosts, control URLs and tags.
 * Every function allocates its output in ctx->arena and records a
 * validation error at `path` in ctx->err.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nodes/internal.h"

#define HOST_MAX 253

char *znp_nodes__trimmed(znp_ctx_t *ctx, const char *s)
{
    size_t len = strlen(s), start = 0;

    while (start < len && isspace((unsigned char)s[start]))
        start++;
    while (len > start && isspace((unsigned char)s[len - 1]))
        len--;
    return znp_arena_strndup(ctx->arena, s + start, len - start);
}

int znp_nodes__normalize_host(znp_ctx_t *ctx, const char *path, const char *in, size_t len, char **out, int *is_v6)
{
    char buf[HOST_MAX + 1];
    unsigned char addr[16];
    int has_colon = 0, all_numeric = 1;

    *is_v6 = 0;
    if (len >= 2 && in[0] == '[' && in[len - 1] == ']') {
        in++;
        len -= 2;
    } else if (len > 0 && (in[0] == '[' || in[len - 1] == ']')) {
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "unbalanced brackets around the host");
    }
    if (len == 0 || len > HOST_MAX)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "the host has 1 to %d characters", HOST_MAX);
    if (memchr(in, '%', len) != NULL)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "IPv6 zone ids are not accepted");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == ':')
            has_colon = 1;
        else if (!(c < 0x80 && (isalnum(c) || c == '.' || c == '-' || c == '_')))
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path,
                                 "a host has only ASCII letters, digits, '.', '-' and '_'");
        if (!(isdigit(c) || c == '.'))
            all_numeric = 0;
        buf[i] = (char)tolower(c);
    }
    buf[len] = '\0';
    if (has_colon) {
        char canon[INET6_ADDRSTRLEN];
        if (inet_pton(AF_INET6, buf, addr) != 1 || inet_ntop(AF_INET6, addr, canon, sizeof(canon)) == NULL)
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "not a valid IPv6 address");
        *is_v6 = 1;
        *out = znp_arena_strdup(ctx->arena, canon);
    } else {
        if (all_numeric && inet_pton(AF_INET, buf, addr) != 1)
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "not a valid IPv4 address");
        if (buf[0] == '.' || buf[0] == '-')
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "not a valid host name");
        *out = znp_arena_strdup(ctx->arena, buf);
    }
    return *out != NULL ? 0 : ZNP_E_INTERNAL;
}

int znp_nodes__normalize_address(znp_ctx_t *ctx, const char *path, const char *in, const char **out)
{
    char *t = znp_nodes__trimmed(ctx, in), *host;
    int is_v6, rc;

    if (t == NULL)
        return ZNP_E_INTERNAL;
    if (*t == '\0') {
        *out = "";
        return 0;
    }
    rc = znp_nodes__normalize_host(ctx, path, t, strlen(t), &host, &is_v6);
    if (rc == 0)
        *out = host;
    return rc;
}

int znp_nodes__normalize_url(znp_ctx_t *ctx, const char *path, const char *in, const char **out)
{
    char *t = znp_nodes__trimmed(ctx, in), *host;
    const char *scheme, *auth, *rest, *port = NULL, *host_end;
    size_t port_len = 0;
    int is_v6, rc;

    if (t == NULL)
        return ZNP_E_INTERNAL;
    if (strncasecmp(t, "http://", 7) == 0) {
        scheme = "http://";
        auth = t + 7;
    } else if (strncasecmp(t, "https://", 8) == 0) {
        scheme = "https://";
        auth = t + 8;
    } else {
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "must be an http or https URL");
    }
    rest = auth + strcspn(auth, "/?#");
    if (memchr(auth, '@', (size_t)(rest - auth)) != NULL)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "credentials in the URL are not accepted");
    if (*auth == '[') {
        const char *close = memchr(auth, ']', (size_t)(rest - auth));
        if (close == NULL)
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "unbalanced brackets around the host");
        host_end = close + 1;
        if (host_end < rest && *host_end != ':')
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "not a valid URL authority");
    } else {
        host_end = memchr(auth, ':', (size_t)(rest - auth));
        if (host_end == NULL)
            host_end = rest;
    }
    if (host_end < rest) {
        long value = 0;
        port = host_end + 1;
        port_len = (size_t)(rest - port);
        if (port_len == 0 || port_len > 5)
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "the port is 1 to 65535");
        for (size_t i = 0; i < port_len; i++) {
            if (!isdigit((unsigned char)port[i]))
                return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "the port is 1 to 65535");
            value = value * 10 + (port[i] - '0');
        }
        if (value < 1 || value > 65535)
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "the port is 1 to 65535");
    }
    rc = znp_nodes__normalize_host(ctx, path, auth, (size_t)(host_end - auth), &host, &is_v6);
    if (rc != 0)
        return rc;
    *out = znp_arena_printf(ctx->arena, "%s%s%s%s%s%.*s%s", scheme, is_v6 ? "[" : "", host, is_v6 ? "]" : "",
                            port != NULL ? ":" : "", (int)port_len, port != NULL ? port : "", rest);
    return *out != NULL ? 0 : ZNP_E_INTERNAL;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int znp_nodes__tags_text(znp_ctx_t *ctx, const znp_array_t *in, const char **out)
{
    char **items = NULL, *dump = NULL;
    json_t *list = json_array();
    size_t n = 0;
    int rc = ZNP_E_INTERNAL;

    if (list == NULL)
        return ZNP_E_INTERNAL;
    if (in->count > 0 && (items = znp_arena_alloc(ctx->arena, in->count * sizeof(*items))) == NULL)
        goto cleanup;
    for (size_t i = 0; i < in->count; i++) {
        char *s = znp_nodes__trimmed(ctx, ((char **)in->items)[i]);
        if (s == NULL)
            goto cleanup;
        if (*s != '\0')
            items[n++] = s;
    }
    if (n > 0)
        qsort(items, n, sizeof(*items), compare_strings);
    for (size_t i = 0; i < n; i++)
        if ((i == 0 || strcmp(items[i], items[i - 1]) != 0) && json_array_append_new(list, json_string(items[i])) != 0)
            goto cleanup;
    dump = json_dumps(list, JSON_COMPACT);
    if (dump != NULL && (*out = znp_arena_strdup(ctx->arena, dump)) != NULL)
        rc = 0;

cleanup:
    free(dump);
    json_decref(list);
    return rc;
}
