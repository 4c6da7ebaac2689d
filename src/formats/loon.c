/* Loon node lines, one per node, as Loon's subscription parser reads them. */
#include "formats/formats.h"

#include <stdlib.h>
#include <string.h>

#include "formats/internal.h"

/*
 * Only the node shapes of Loon's manual are written: Shadowsocks, vmess and
 * VLESS over tcp, ws or TLS, trojan over tcp or ws, Hysteria2 without obfs.
 * Lines split at "=" and ",", and credentials sit inside double quotes.
 */
const char *formats__loon_limits(const znp_formats_node_t *n)
{
    if (n->protocol == ZNP_FORMATS_TUIC || n->protocol == ZNP_FORMATS_ANYTLS)
        return "Loon lines are not written for tuic and anytls";
    if (n->transport.network == ZNP_FORMATS_NET_GRPC || n->transport.network == ZNP_FORMATS_NET_H2)
        return "Loon lines are written only for tcp and ws transports";
    if (n->protocol == ZNP_FORMATS_VLESS && (n->tls.reality_public_key != NULL || formats__set(n->flow)))
        return "Loon lines are not written for vless with REALITY or flow";
    if (n->protocol == ZNP_FORMATS_HYSTERIA2 && n->obfs != NULL)
        return "Loon lines are not written for hysteria2 with obfs";
    if (n->name != NULL && !formats__surge_name_ok(n->name))
        return "a Loon line cannot carry a name with \"=\", \",\", a double quote or surrounding spaces";
    if ((n->password != NULL && strchr(n->password, '"') != NULL) ||
        (n->transport.path != NULL && strpbrk(n->transport.path, ",\"") != NULL) ||
        (n->transport.host != NULL && strpbrk(n->transport.host, ",\"") != NULL))
        return "a Loon line cannot carry a double quote in a value or a comma in a path or host";
    return NULL;
}

static void put_quoted(formats__buf_t *b, const char *value)
{
    formats__buf_puts(b, ",\"");
    formats__buf_puts(b, value);
    formats__buf_puts(b, "\"");
}

static void put_value(formats__buf_t *b, const char *key, const char *value)
{
    if (formats__set(value))
        formats__buf_printf(b, ",%s=%s", key, value);
}

static void put_transport(formats__buf_t *b, const znp_formats_transport_t *t)
{
    if (t->network == ZNP_FORMATS_NET_WS) {
        formats__buf_puts(b, ",transport=ws");
        put_value(b, "path", formats__set(t->path) ? t->path : "/");
        put_value(b, "host", t->host);
    } else {
        formats__buf_puts(b, ",transport=tcp");
    }
}

static void put_tls(formats__buf_t *b, const znp_formats_tls_t *tls)
{
    put_value(b, "tls-name", tls->sni);
    if (tls->insecure)
        formats__buf_puts(b, ",skip-cert-verify=true");
}

static void put_line(formats__buf_t *b, const znp_formats_node_t *n, const char *name)
{
    formats__buf_printf(b, "%s = ", name);
    switch (n->protocol) {
    case ZNP_FORMATS_SHADOWSOCKS:
        formats__buf_printf(b, "Shadowsocks,%s,%d,%s", n->host, n->port, n->cipher);
        put_quoted(b, n->password);
        formats__buf_puts(b, ",udp=true");
        break;
    case ZNP_FORMATS_VMESS:
        formats__buf_printf(b, "vmess,%s,%d,%s", n->host, n->port, formats__set(n->cipher) ? n->cipher : "auto");
        put_quoted(b, n->uuid);
        put_transport(b, &n->transport);
        formats__buf_printf(b, ",alterId=%d,over-tls=%s", n->alter_id, n->tls.enabled ? "true" : "false");
        if (n->tls.enabled)
            put_tls(b, &n->tls);
        break;
    case ZNP_FORMATS_VLESS:
        formats__buf_printf(b, "VLESS,%s,%d", n->host, n->port);
        put_quoted(b, n->uuid);
        put_transport(b, &n->transport);
        formats__buf_printf(b, ",over-tls=%s", n->tls.enabled ? "true" : "false");
        if (n->tls.enabled)
            put_tls(b, &n->tls);
        break;
    case ZNP_FORMATS_TROJAN:
        formats__buf_printf(b, "trojan,%s,%d", n->host, n->port);
        put_quoted(b, n->password);
        if (n->transport.network == ZNP_FORMATS_NET_WS)
            put_transport(b, &n->transport);
        put_tls(b, &n->tls);
        formats__buf_puts(b, ",udp=true");
        break;
    case ZNP_FORMATS_HYSTERIA2:
        formats__buf_printf(b, "Hysteria2,%s,%d", n->host, n->port);
        put_quoted(b, n->password);
        put_tls(b, &n->tls);
        formats__buf_puts(b, ",udp=true");
        break;
    case ZNP_FORMATS_TUIC:
    case ZNP_FORMATS_ANYTLS:
        /* excluded by formats__loon_limits */
        break;
    }
    formats__buf_puts(b, "\n");
}

int formats__render_loon(formats__buf_t *b, const znp_formats_node_t *nodes, const int *keep, size_t count)
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
