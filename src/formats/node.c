/* Node validation, the output buffer and the render dispatcher. */
#include "formats/formats.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/internal.h"

/* output buffer */

static int buf_reserve(formats__buf_t *b, size_t extra)
{
    size_t need;
    size_t cap;
    char *data;

    if (b->failed)
        return -1;
    need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    data = realloc(b->data, cap);
    if (data == NULL) {
        b->failed = 1;
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

void formats__buf_append(formats__buf_t *b, const char *s, size_t len)
{
    if (buf_reserve(b, len) != 0)
        return;
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void formats__buf_puts(formats__buf_t *b, const char *s)
{
    formats__buf_append(b, s, strlen(s));
}

void formats__buf_printf(formats__buf_t *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if (buf_reserve(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static int is_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

void formats__buf_percent(formats__buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";

    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[3] = {'%', hex[c >> 4], hex[c & 15]};

        if (is_unreserved(c))
            formats__buf_append(b, (const char *)&s[i], 1);
        else
            formats__buf_append(b, esc, 3);
    }
}

void formats__buf_base64(formats__buf_t *b, const unsigned char *s, size_t len, int url)
{
    static const char std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    static const char safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *alphabet = url ? safe : std;
    size_t i = 0;

    if (buf_reserve(b, (len + 2) / 3 * 4) != 0)
        return;
    for (; i + 2 < len; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
        char q[4] = {alphabet[v >> 18], alphabet[(v >> 12) & 63], alphabet[(v >> 6) & 63], alphabet[v & 63]};

        formats__buf_append(b, q, 4);
    }
    if (i < len) {
        int two = i + 1 < len;
        unsigned v = (unsigned)s[i] << 16;
        char q[4] = {'=', '=', '=', '='};
        size_t used = two ? 3 : 2;

        if (two)
            v |= (unsigned)s[i + 1] << 8;
        q[0] = alphabet[v >> 18];
        q[1] = alphabet[(v >> 12) & 63];
        if (two)
            q[2] = alphabet[(v >> 6) & 63];
        /* URL-safe output drops the padding */
        formats__buf_append(b, q, url ? used : 4);
    }
}

int formats__buf_finish(formats__buf_t *b, char **out, size_t *out_len)
{
    if (buf_reserve(b, 0) != 0) {
        free(b->data);
        b->data = NULL;
        *out = NULL;
        return ZNP_E_INTERNAL;
    }
    *out = b->data;
    if (out_len != NULL)
        *out_len = b->len;
    b->data = NULL;
    return 0;
}

/* node checks */

int formats__set(const char *s)
{
    return s != NULL && s[0] != '\0';
}

int formats__is_ipv6(const char *host)
{
    return strchr(host, ':') != NULL;
}

const char *formats__protocol_name(znp_formats_protocol_t protocol)
{
    switch (protocol) {
    case ZNP_FORMATS_VMESS: return "vmess";
    case ZNP_FORMATS_VLESS: return "vless";
    case ZNP_FORMATS_TROJAN: return "trojan";
    case ZNP_FORMATS_SHADOWSOCKS: return "shadowsocks";
    case ZNP_FORMATS_HYSTERIA2: return "hysteria2";
    case ZNP_FORMATS_TUIC: return "tuic";
    case ZNP_FORMATS_ANYTLS: return "anytls";
    }
    return "unknown";
}

/* Valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF) without C0/C1 controls or DEL. */
static int text_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    while (*p) {
        unsigned cp;
        int n;

        if (*p < 0x20 || *p == 0x7f)
            return 0;
        if (*p < 0x80) {
            p++;
            continue;
        }
        if (*p >= 0xc2 && *p <= 0xdf) {
            cp = *p & 0x1f;
            n = 1;
        } else if (*p >= 0xe0 && *p <= 0xef) {
            cp = *p & 0x0f;
            n = 2;
        } else if (*p >= 0xf0 && *p <= 0xf4) {
            cp = *p & 0x07;
            n = 3;
        } else {
            return 0;
        }
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff) ||
            (cp >= 0x80 && cp <= 0x9f))
            return 0;
        p += n + 1;
    }
    return 1;
}

/* Printable ASCII without space; used for credentials and options that clients read verbatim. */
static int token_ok(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return 0;
    return 1;
}

static int uuid_ok(const char *s)
{
    static const int dash[] = {8, 13, 18, 23};

    if (s == NULL || strlen(s) != 36)
        return 0;
    for (int i = 0, d = 0; i < 36; i++) {
        if (d < 4 && i == dash[d]) {
            if (s[i] != '-')
                return 0;
            d++;
        } else if (strchr("0123456789abcdefABCDEF", s[i]) == NULL || s[i] == '\0') {
            return 0;
        }
    }
    return 1;
}

static int hostname_ok(const char *h)
{
    size_t label = 0;
    size_t len = strlen(h);

    if (len == 0 || len > 253 || h[0] == '.' || h[0] == '-')
        return 0;
    for (const char *p = h; *p; p++) {
        if (*p == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_'))
            return 0;
        if (++label > 63)
            return 0;
    }
    return 1;
}

static int host_ok(const char *h)
{
    unsigned char addr[16];

    if (!formats__set(h))
        return 0;
    if (formats__is_ipv6(h))
        return inet_pton(AF_INET6, h, addr) == 1;
    /* digits and dots only: it must be a valid dotted-quad IPv4 address */
    if (strspn(h, "0123456789.") == strlen(h))
        return inet_pton(AF_INET, h, addr) == 1;
    return hostname_ok(h);
}

static const char *const ss_ciphers[] = {
    "aes-128-gcm", "aes-192-gcm", "aes-256-gcm", "chacha20-ietf-poly1305", "xchacha20-ietf-poly1305",
    "2022-blake3-aes-128-gcm", "2022-blake3-aes-256-gcm", "2022-blake3-chacha20-poly1305", NULL,
};

int znp_formats_is_ss2022(const char *cipher)
{
    return cipher != NULL && strncmp(cipher, "2022-blake3-", 12) == 0;
}

size_t znp_formats_ss2022_key_len(const char *cipher)
{
    if (!znp_formats_is_ss2022(cipher))
        return 0;
    return strcmp(cipher, "2022-blake3-aes-128-gcm") == 0 ? 16 : 32;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int znp_formats_ss2022_user_key(char *out, size_t size, const char *cipher, const char *password_hex)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char key[32];
    size_t key_len = znp_formats_ss2022_key_len(cipher), o = 0;

    if (key_len == 0 || password_hex == NULL || strlen(password_hex) != 64 || size < (key_len + 2) / 3 * 4 + 1)
        return ZNP_E_VALIDATION_FAILED;
    for (size_t i = 0; i < 32; i++) {
        int hi = hex_value(password_hex[2 * i]), lo = hex_value(password_hex[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return ZNP_E_VALIDATION_FAILED;
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    for (size_t i = 0; i < key_len; i += 3) {
        unsigned v = (unsigned)key[i] << 16;
        size_t left = key_len - i;

        if (left > 1)
            v |= (unsigned)key[i + 1] << 8;
        if (left > 2)
            v |= key[i + 2];
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = left > 1 ? b64[v >> 6 & 63] : '=';
        out[o++] = left > 2 ? b64[v & 63] : '=';
    }
    out[o] = '\0';
    return 0;
}

static int fail(znp_error_t *err, const char *path, const char *detail)
{
    if (err == NULL)
        return ZNP_E_VALIDATION_FAILED;
    return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "%s", detail);
}

static int known_cipher(const char *cipher)
{
    for (size_t i = 0; ss_ciphers[i] != NULL; i++)
        if (strcmp(cipher, ss_ciphers[i]) == 0)
            return 1;
    return 0;
}

static int check_credentials(const znp_formats_node_t *n, znp_error_t *err)
{
    int wants_uuid = n->protocol == ZNP_FORMATS_VMESS || n->protocol == ZNP_FORMATS_VLESS ||
                     n->protocol == ZNP_FORMATS_TUIC;
    int wants_password = !(n->protocol == ZNP_FORMATS_VMESS || n->protocol == ZNP_FORMATS_VLESS);

    if (wants_uuid && !uuid_ok(n->uuid))
        return fail(err, "uuid", "must be a UUID");
    if (wants_password && !formats__set(n->password))
        return fail(err, "password", "is required");
    if (wants_password && !text_ok(n->password))
        return fail(err, "password", "must be valid UTF-8 without control characters");
    if (n->protocol == ZNP_FORMATS_SHADOWSOCKS) {
        if (!formats__set(n->cipher) || !known_cipher(n->cipher))
            return fail(err, "cipher", "must be a supported shadowsocks AEAD or 2022 method");
    }
    if (n->protocol == ZNP_FORMATS_VMESS && n->cipher != NULL && !token_ok(n->cipher))
        return fail(err, "cipher", "must be printable ASCII");
    if (n->alter_id < 0 || n->alter_id > 65535)
        return fail(err, "alter_id", "must be between 0 and 65535");
    return 0;
}

static int check_options(const znp_formats_node_t *n, znp_error_t *err)
{
    const char *const fields[] = {n->flow, n->tls.sni, n->tls.fingerprint, n->tls.reality_public_key,
                                  n->tls.reality_short_id, n->obfs, n->congestion_control, n->udp_relay_mode,
                                  n->transport.host, n->transport.service_name};
    const char *const names[] = {"flow", "tls.sni", "tls.fingerprint", "tls.reality_public_key",
                                 "tls.reality_short_id", "obfs", "congestion_control", "udp_relay_mode",
                                 "transport.host", "transport.service_name"};

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (fields[i] != NULL && !token_ok(fields[i]))
            return fail(err, names[i], "must be printable ASCII without spaces");
    if (n->transport.path != NULL && !text_ok(n->transport.path))
        return fail(err, "transport.path", "must be valid UTF-8 without control characters");
    if (n->obfs_password != NULL && !text_ok(n->obfs_password))
        return fail(err, "obfs_password", "must be valid UTF-8 without control characters");
    if (n->tls.alpn_count > ZNP_FORMATS_ALPN_MAX)
        return fail(err, "tls.alpn", "has too many entries");
    for (size_t i = 0; i < n->tls.alpn_count; i++)
        if (!formats__set(n->tls.alpn[i]) || !token_ok(n->tls.alpn[i]) || strchr(n->tls.alpn[i], ',') != NULL)
            return fail(err, "tls.alpn", "entries must be printable ASCII without spaces or commas");
    if (n->transport.network < ZNP_FORMATS_NET_TCP || n->transport.network > ZNP_FORMATS_NET_H2)
        return fail(err, "transport.network", "is unknown");
    if (n->transport.network != ZNP_FORMATS_NET_TCP &&
        !(n->protocol == ZNP_FORMATS_VMESS || n->protocol == ZNP_FORMATS_VLESS || n->protocol == ZNP_FORMATS_TROJAN))
        return fail(err, "transport.network", "is only supported for vmess, vless and trojan");
    if (n->tls.reality_public_key != NULL) {
        if (n->protocol != ZNP_FORMATS_VLESS)
            return fail(err, "tls.reality_public_key", "REALITY is only supported for vless");
        if (!formats__set(n->tls.reality_public_key))
            return fail(err, "tls.reality_public_key", "must not be empty");
        if (n->tls.reality_short_id != NULL &&
            (strlen(n->tls.reality_short_id) > 16 ||
             strspn(n->tls.reality_short_id, "0123456789abcdefABCDEF") != strlen(n->tls.reality_short_id)))
            return fail(err, "tls.reality_short_id", "must be at most 16 hex digits");
    }
    if (n->obfs != NULL && (n->protocol != ZNP_FORMATS_HYSTERIA2 || strcmp(n->obfs, "salamander") != 0))
        return fail(err, "obfs", "only \"salamander\" for hysteria2 is supported");
    if (n->obfs != NULL && !formats__set(n->obfs_password))
        return fail(err, "obfs_password", "is required with obfs");
    if (n->up_mbps < 0 || n->down_mbps < 0)
        return fail(err, "up_mbps", "must not be negative");
    return 0;
}

int znp_formats_node_check(const znp_formats_node_t *n, znp_error_t *err)
{
    int rc;

    if (n == NULL)
        return fail(err, "node", "is missing");
    if (n->protocol < ZNP_FORMATS_VMESS || n->protocol > ZNP_FORMATS_ANYTLS)
        return fail(err, "protocol", "is unknown");
    if (!formats__set(n->name) || !text_ok(n->name))
        return fail(err, "name", "must be non-empty valid UTF-8 without control characters");
    if (!host_ok(n->host))
        return fail(err, "host",
                    "must be an IPv4 address, a bare IPv6 address without zone id or a DNS name");
    if (n->port < 1 || n->port > 65535)
        return fail(err, "port", "must be between 1 and 65535");
    rc = check_credentials(n, err);
    if (rc != 0)
        return rc;
    return check_options(n, err);
}

/* format names */

static const struct {
    const char *name;
    const char *content_type;
} format_info[ZNP_FORMATS_FORMAT_COUNT] = {
    [ZNP_FORMATS_BASE64] = {"base64", "text/plain; charset=utf-8"},
    [ZNP_FORMATS_LINKS] = {"links", "text/plain; charset=utf-8"},
    [ZNP_FORMATS_CLASH] = {"clash", "text/yaml; charset=utf-8"},
    [ZNP_FORMATS_CLASH_META] = {"clash-meta", "text/yaml; charset=utf-8"},
    [ZNP_FORMATS_STASH] = {"stash", "text/yaml; charset=utf-8"},
    [ZNP_FORMATS_SINGBOX] = {"sing-box", "application/json"},
    [ZNP_FORMATS_SIP008] = {"sip008", "application/json"},
    [ZNP_FORMATS_SURGE] = {"surge", "text/plain; charset=utf-8"},
    [ZNP_FORMATS_QUANTUMULT_X] = {"quantumult-x", "text/plain; charset=utf-8"},
    [ZNP_FORMATS_LOON] = {"loon", "text/plain; charset=utf-8"},
};

const char *znp_formats_format_name(znp_formats_format_t format)
{
    if ((unsigned)format >= ZNP_FORMATS_FORMAT_COUNT)
        return "unknown";
    return format_info[format].name;
}

const char *znp_formats_content_type(znp_formats_format_t format)
{
    if ((unsigned)format >= ZNP_FORMATS_FORMAT_COUNT)
        return "text/plain; charset=utf-8";
    return format_info[format].content_type;
}

/* unique names */

void formats__names_free(char **names, size_t count)
{
    if (names == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

static int name_taken(char **names, size_t upto, const char *candidate)
{
    for (size_t i = 0; i < upto; i++)
        if (names[i] != NULL && strcmp(names[i], candidate) == 0)
            return 1;
    return 0;
}

char **formats__unique_names(const znp_formats_node_t *nodes, const int *keep, size_t count)
{
    char **names = calloc(count ? count : 1, sizeof(*names));

    if (names == NULL)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        formats__buf_t b = {0};
        char *name = NULL;

        if (!keep[i])
            continue;
        formats__buf_puts(&b, nodes[i].name);
        for (int suffix = 2; !b.failed && name_taken(names, i, b.data); suffix++) {
            b.len = 0;
            formats__buf_printf(&b, "%s %d", nodes[i].name, suffix);
        }
        if (formats__buf_finish(&b, &name, NULL) != 0) {
            formats__names_free(names, count);
            return NULL;
        }
        names[i] = name;
    }
    return names;
}

/* render dispatch */

int *formats__select(znp_formats_format_t format, const znp_formats_node_t *nodes, size_t count,
                     const znp_formats_options_t *opts)
{
    int *keep = calloc(count ? count : 1, sizeof(*keep));
    const char *version = opts != NULL ? opts->engine_version : NULL;

    if (keep == NULL)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        znp_error_t err = {0};
        const char *reason = NULL;
        char detail[ZNP_ERROR_PATH_MAX + ZNP_ERROR_DETAIL_MAX + 2];

        if (znp_formats_node_check(&nodes[i], &err) != 0) {
            snprintf(detail, sizeof(detail), "%s %s", err.path, err.detail);
            reason = detail;
        } else if (!znp_formats_supports(format, version, &nodes[i], &reason)) {
            /* reason was set by znp_formats_supports */
        } else {
            keep[i] = 1;
            continue;
        }
        if (opts != NULL && opts->on_skip != NULL)
            opts->on_skip(opts->skip_arg, i, &nodes[i], reason);
    }
    return keep;
}

int znp_formats_render(char **out, size_t *out_len, znp_formats_format_t format, const znp_formats_node_t *nodes,
                       size_t count, const znp_formats_options_t *opts)
{
    formats__buf_t b = {0};
    int *keep = NULL;
    int rc = 0;

    *out = NULL;
    if (out_len != NULL)
        *out_len = 0;
    if ((unsigned)format >= ZNP_FORMATS_FORMAT_COUNT)
        return ZNP_E_VALIDATION_FAILED;
    keep = formats__select(format, nodes, count, opts);
    if (keep == NULL)
        return ZNP_E_INTERNAL;

    switch (format) {
    case ZNP_FORMATS_BASE64:
    case ZNP_FORMATS_LINKS:
        rc = formats__render_links(&b, nodes, keep, count);
        break;
    case ZNP_FORMATS_CLASH:
    case ZNP_FORMATS_CLASH_META:
    case ZNP_FORMATS_STASH:
        rc = formats__render_yaml(&b, format, nodes, keep, count);
        break;
    case ZNP_FORMATS_SINGBOX:
        rc = formats__render_singbox(&b, nodes, keep, count);
        break;
    case ZNP_FORMATS_SIP008:
        rc = formats__render_sip008(&b, nodes, keep, count);
        break;
    case ZNP_FORMATS_SURGE:
        rc = formats__render_surge(&b, nodes, keep, count);
        break;
    case ZNP_FORMATS_QUANTUMULT_X:
        rc = formats__render_quantumultx(&b, nodes, keep, count);
        break;
    case ZNP_FORMATS_LOON:
        rc = formats__render_loon(&b, nodes, keep, count);
        break;
    default:
        rc = ZNP_E_VALIDATION_FAILED;
        break;
    }
    if (rc == 0 && format == ZNP_FORMATS_BASE64) {
        formats__buf_t encoded = {0};

        formats__buf_base64(&encoded, (const unsigned char *)(b.data ? b.data : ""), b.len, 0);
        formats__buf_append(&encoded, "", 0);
        free(b.data);
        b = encoded;
    }
    if (rc == 0)
        rc = formats__buf_finish(&b, out, out_len);

    free(b.data);
    free(keep);
    return rc;
}
