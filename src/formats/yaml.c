/* Clash, Clash.Meta (mihomo) and Stash YAML. */
#include "formats/formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/internal.h"

/*
 * Write `s` as a YAML double-quoted scalar. Quoting every string keeps
 * leading "*", "&", "!", "-", colons, "#" and numeric-looking text literal.
 * UTF-8 passes through byte for byte. Only the characters that have a
 * meaning inside double quotes are escaped: backslash, quote, controls,
 * U+FEFF, and U+2028 and U+2029 because YAML 1.1 treats them as line breaks.
 */
static void put_quoted(formats__buf_t *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    formats__buf_puts(b, "\"");
    for (; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};

            formats__buf_append(b, esc, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            formats__buf_printf(b, "\\x%02X", *p);
        } else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
            formats__buf_puts(b, p[2] == 0xa8 ? "\\L" : "\\P");
            p += 2;
        } else if (p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
            formats__buf_puts(b, "\\uFEFF");
            p += 2;
        } else {
            formats__buf_append(b, (const char *)p, 1);
        }
    }
    formats__buf_puts(b, "\"");
}

static void put_str(formats__buf_t *b, int indent, const char *key, const char *value)
{
    if (!formats__set(value))
        return;
    formats__buf_printf(b, "%*s%s: ", indent, "", key);
    put_quoted(b, value);
    formats__buf_puts(b, "\n");
}

static void put_int(formats__buf_t *b, int indent, const char *key, int value)
{
    formats__buf_printf(b, "%*s%s: %d\n", indent, "", key, value);
}

static void put_bool(formats__buf_t *b, int indent, const char *key, int value)
{
    formats__buf_printf(b, "%*s%s: %s\n", indent, "", key, value ? "true" : "false");
}

static void put_alpn(formats__buf_t *b, int indent, const znp_formats_tls_t *tls)
{
    if (tls->alpn_count == 0)
        return;
    formats__buf_printf(b, "%*salpn:\n", indent, "");
    for (size_t i = 0; i < tls->alpn_count; i++) {
        formats__buf_printf(b, "%*s  - ", indent, "");
        put_quoted(b, tls->alpn[i]);
        formats__buf_puts(b, "\n");
    }
}

static void put_transport(formats__buf_t *b, const znp_formats_transport_t *t)
{
    switch (t->network) {
    case ZNP_FORMATS_NET_WS:
        put_str(b, 4, "network", "ws");
        formats__buf_puts(b, "    ws-opts:\n");
        put_str(b, 6, "path", formats__set(t->path) ? t->path : "/");
        if (formats__set(t->host)) {
            formats__buf_puts(b, "      headers:\n");
            put_str(b, 8, "Host", t->host);
        }
        break;
    case ZNP_FORMATS_NET_GRPC:
        put_str(b, 4, "network", "grpc");
        formats__buf_puts(b, "    grpc-opts:\n");
        if (formats__set(t->service_name))
            put_str(b, 6, "grpc-service-name", t->service_name);
        else
            formats__buf_puts(b, "      grpc-service-name: \"\"\n");
        break;
    case ZNP_FORMATS_NET_H2:
        put_str(b, 4, "network", "h2");
        formats__buf_puts(b, "    h2-opts:\n");
        if (formats__set(t->host)) {
            formats__buf_puts(b, "      host:\n        - ");
            put_quoted(b, t->host);
            formats__buf_puts(b, "\n");
        }
        put_str(b, 6, "path", formats__set(t->path) ? t->path : "/");
        break;
    case ZNP_FORMATS_NET_TCP:
        break;
    }
}

/* sni, alpn, fingerprint and verification for the protocols whose key for the server name is `sni_key` */
static void put_tls(formats__buf_t *b, const znp_formats_tls_t *tls, const char *sni_key, int with_alpn)
{
    put_str(b, 4, sni_key, tls->sni);
    if (with_alpn)
        put_alpn(b, 4, tls);
    put_str(b, 4, "client-fingerprint", tls->fingerprint);
    if (tls->insecure)
        put_bool(b, 4, "skip-cert-verify", 1);
}

static void put_proxy(formats__buf_t *b, const znp_formats_node_t *n, const char *name)
{
    static const char *const types[] = {"vmess", "vless", "trojan", "ss", "hysteria2", "tuic", "anytls"};

    formats__buf_puts(b, "  - name: ");
    put_quoted(b, name);
    formats__buf_puts(b, "\n");
    put_str(b, 4, "type", types[n->protocol]);
    put_str(b, 4, "server", n->host);
    put_int(b, 4, "port", n->port);

    switch (n->protocol) {
    case ZNP_FORMATS_VMESS:
        put_str(b, 4, "uuid", n->uuid);
        put_int(b, 4, "alterId", n->alter_id);
        put_str(b, 4, "cipher", formats__set(n->cipher) ? n->cipher : "auto");
        put_bool(b, 4, "udp", 1);
        if (n->tls.enabled) {
            put_bool(b, 4, "tls", 1);
            put_tls(b, &n->tls, "servername", 1);
        }
        put_transport(b, &n->transport);
        break;
    case ZNP_FORMATS_VLESS:
        put_str(b, 4, "uuid", n->uuid);
        put_str(b, 4, "flow", n->flow);
        put_bool(b, 4, "udp", 1);
        if (n->tls.enabled || n->tls.reality_public_key != NULL) {
            put_bool(b, 4, "tls", 1);
            put_tls(b, &n->tls, "servername", 1);
        }
        if (n->tls.reality_public_key != NULL) {
            formats__buf_puts(b, "    reality-opts:\n");
            put_str(b, 6, "public-key", n->tls.reality_public_key);
            put_str(b, 6, "short-id", n->tls.reality_short_id);
        }
        put_transport(b, &n->transport);
        break;
    case ZNP_FORMATS_TROJAN:
        put_str(b, 4, "password", n->password);
        put_bool(b, 4, "udp", 1);
        put_tls(b, &n->tls, "sni", 1);
        put_transport(b, &n->transport);
        break;
    case ZNP_FORMATS_SHADOWSOCKS:
        put_str(b, 4, "cipher", n->cipher);
        put_str(b, 4, "password", n->password);
        put_bool(b, 4, "udp", 1);
        break;
    case ZNP_FORMATS_HYSTERIA2:
        put_str(b, 4, "password", n->password);
        put_tls(b, &n->tls, "sni", 1);
        put_str(b, 4, "obfs", n->obfs);
        put_str(b, 4, "obfs-password", n->obfs ? n->obfs_password : NULL);
        if (n->up_mbps > 0)
            put_int(b, 4, "up", n->up_mbps);
        if (n->down_mbps > 0)
            put_int(b, 4, "down", n->down_mbps);
        break;
    case ZNP_FORMATS_TUIC:
        put_str(b, 4, "uuid", n->uuid);
        put_str(b, 4, "password", n->password);
        put_tls(b, &n->tls, "sni", 1);
        put_str(b, 4, "congestion-controller", n->congestion_control);
        put_str(b, 4, "udp-relay-mode", n->udp_relay_mode);
        break;
    case ZNP_FORMATS_ANYTLS:
        /* no alpn for anytls, see links.c */
        put_str(b, 4, "password", n->password);
        put_bool(b, 4, "udp", 1);
        put_tls(b, &n->tls, "sni", 0);
        break;
    }
}

/*
 * A complete configuration: the proxies, one "Proxy" select group listing
 * them plus DIRECT (so the group is valid even with no proxies) and a MATCH
 * rule sending everything through the group.
 */
int formats__render_yaml(formats__buf_t *b, znp_formats_format_t format, const znp_formats_node_t *nodes,
                         const int *keep, size_t count)
{
    char **names = formats__unique_names(nodes, keep, count);
    size_t kept_count = 0;

    if (names == NULL)
        return ZNP_E_INTERNAL;
    formats__buf_puts(b, "mixed-port: 7890\nallow-lan: false\nmode: rule\nlog-level: info\n");
    if (format == ZNP_FORMATS_CLASH_META)
        formats__buf_puts(b, "unified-delay: true\n");

    for (size_t i = 0; i < count; i++)
        kept_count += keep[i] ? 1 : 0;
    formats__buf_puts(b, kept_count ? "proxies:\n" : "proxies: []\n");
    for (size_t i = 0; i < count; i++)
        if (keep[i])
            put_proxy(b, &nodes[i], names[i]);

    formats__buf_puts(b, "proxy-groups:\n  - name: \"Proxy\"\n    type: select\n    proxies:\n");
    for (size_t i = 0; i < count; i++) {
        if (!keep[i])
            continue;
        formats__buf_puts(b, "      - ");
        put_quoted(b, names[i]);
        formats__buf_puts(b, "\n");
    }
    formats__buf_puts(b, "      - DIRECT\nrules:\n  - MATCH,Proxy\n");

    formats__names_free(names, count);
    return b->failed ? ZNP_E_INTERNAL : 0;
}
