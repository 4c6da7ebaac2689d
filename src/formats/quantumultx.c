/* Quantumult X server lines (a server_remote resource). */
#include "formats/formats.h"

#include <stdlib.h>
#include <string.h>

#include "formats/internal.h"

/*
 * Quantumult X splits a line at ",", and its host:port field has no IPv6
 * form in the published samples, so those nodes are skipped. Only the
 * options shown in the app's published server samples are written:
 * shadowsocks, vmess over tcp or ws with optional TLS, and trojan over TLS.
 */
const char *formats__quantumultx_limits(const znp_formats_node_t *n)
{
    if (n->protocol != ZNP_FORMATS_SHADOWSOCKS && n->protocol != ZNP_FORMATS_VMESS && n->protocol != ZNP_FORMATS_TROJAN)
        return "Quantumult X lines are written only for shadowsocks, vmess and trojan";
    if (n->transport.network == ZNP_FORMATS_NET_GRPC || n->transport.network == ZNP_FORMATS_NET_H2 ||
        (n->protocol == ZNP_FORMATS_TROJAN && n->transport.network != ZNP_FORMATS_NET_TCP))
        return "Quantumult X lines are written only for tcp, and ws for vmess";
    if (n->host != NULL && formats__is_ipv6(n->host))
        return "Quantumult X lines are not written for IPv6 hosts";
    if ((n->name != NULL && strchr(n->name, ',') != NULL) || (n->password != NULL && strchr(n->password, ',') != NULL) ||
        (n->transport.path != NULL && strchr(n->transport.path, ',') != NULL) ||
        (n->transport.host != NULL && strchr(n->transport.host, ',') != NULL))
        return "a Quantumult X line cannot carry a comma in a name or value";
    return NULL;
}

static void put_value(formats__buf_t *b, const char *key, const char *value)
{
    if (formats__set(value))
        formats__buf_printf(b, ", %s=%s", key, value);
}

/* vmess "security" as Quantumult X spells it; "auto" and unknown values use chacha20-poly1305 */
static const char *vmess_method(const char *cipher)
{
    if (cipher != NULL && (strcmp(cipher, "aes-128-gcm") == 0 || strcmp(cipher, "none") == 0))
        return cipher;
    return "chacha20-poly1305";
}

static void put_line(formats__buf_t *b, const znp_formats_node_t *n, const char *name)
{
    const char *tls_verification = n->tls.insecure ? "false" : "true";

    switch (n->protocol) {
    case ZNP_FORMATS_SHADOWSOCKS:
        formats__buf_printf(b, "shadowsocks=%s:%d", n->host, n->port);
        put_value(b, "method", n->cipher);
        put_value(b, "password", n->password);
        formats__buf_puts(b, ", udp-relay=true");
        break;
    case ZNP_FORMATS_VMESS:
        formats__buf_printf(b, "vmess=%s:%d", n->host, n->port);
        put_value(b, "method", vmess_method(n->cipher));
        put_value(b, "password", n->uuid);
        if (n->transport.network == ZNP_FORMATS_NET_WS) {
            put_value(b, "obfs", n->tls.enabled ? "wss" : "ws");
            put_value(b, "obfs-host", formats__set(n->transport.host) ? n->transport.host : n->tls.sni);
            put_value(b, "obfs-uri", formats__set(n->transport.path) ? n->transport.path : "/");
        } else if (n->tls.enabled) {
            put_value(b, "obfs", "over-tls");
            put_value(b, "obfs-host", n->tls.sni);
        }
        if (n->tls.enabled)
            put_value(b, "tls-verification", tls_verification);
        break;
    case ZNP_FORMATS_TROJAN:
        formats__buf_printf(b, "trojan=%s:%d", n->host, n->port);
        put_value(b, "password", n->password);
        formats__buf_puts(b, ", over-tls=true");
        put_value(b, "tls-host", n->tls.sni);
        put_value(b, "tls-verification", tls_verification);
        break;
    default:
        /* excluded by formats__quantumultx_limits */
        break;
    }
    put_value(b, "tag", name);
    formats__buf_puts(b, "\n");
}

int formats__render_quantumultx(formats__buf_t *b, const znp_formats_node_t *nodes, const int *keep, size_t count)
{
    char **names = formats__unique_names(nodes, keep, count);

    if (names == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < count; i++)
        if (keep[i])
            put_line(b, &nodes[i], names[i]);
    formats__buf_append(b, "", 0);
    formats__names_free(names, count);
    return b->failed ? ZNP_E_INTERNAL : 0;
}
