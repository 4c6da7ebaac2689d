/* Surge configuration: [Proxy], one select group and a FINAL rule. */
#include "formats/formats.h"

#include <stdlib.h>
#include <string.h>

#include "formats/internal.h"

/*
 * Surge splits a line at "=" and ",", so a name may contain neither. Its
 * manual documents quoting for values with commas but no escape for a double
 * quote inside one. Values with a comma, "=" or a space are quoted.
 */
int formats__surge_name_ok(const char *name)
{
    size_t len = strlen(name);

    return strpbrk(name, "=,\"") == NULL && len > 0 && name[0] != ' ' && name[len - 1] != ' ';
}

int formats__surge_value_ok(const char *value)
{
    return value == NULL || strpbrk(value, "\"|") == NULL;
}

static void put_value(formats__buf_t *b, const char *key, const char *value)
{
    if (!formats__set(value))
        return;
    formats__buf_printf(b, ", %s=", key);
    if (strpbrk(value, ",= ") != NULL) {
        formats__buf_puts(b, "\"");
        formats__buf_puts(b, value);
        formats__buf_puts(b, "\"");
    } else {
        formats__buf_puts(b, value);
    }
}

static void put_tls(formats__buf_t *b, const znp_formats_tls_t *tls, int with_alpn)
{
    put_value(b, "sni", tls->sni);
    if (tls->insecure)
        formats__buf_puts(b, ", skip-cert-verify=true");
    if (with_alpn && tls->alpn_count > 0) {
        formats__buf_t joined = {0};

        for (size_t i = 0; i < tls->alpn_count; i++) {
            if (i > 0)
                formats__buf_puts(&joined, ",");
            formats__buf_puts(&joined, tls->alpn[i]);
        }
        if (joined.failed)
            b->failed = 1;
        else
            put_value(b, "alpn", joined.data);
        free(joined.data);
    }
}

static void put_ws(formats__buf_t *b, const znp_formats_transport_t *t)
{
    if (t->network != ZNP_FORMATS_NET_WS)
        return;
    formats__buf_puts(b, ", ws=true");
    put_value(b, "ws-path", formats__set(t->path) ? t->path : "/");
    if (formats__set(t->host)) {
        formats__buf_puts(b, ", ws-headers=Host:");
        formats__buf_puts(b, t->host);
    }
}

static void put_proxy(formats__buf_t *b, const znp_formats_node_t *n, const char *name)
{
    static const char *const types[] = {"vmess", "vless", "trojan", "ss", "hysteria2", "tuic-v5", "anytls"};

    formats__buf_printf(b, "%s = %s, %s, %d", name, types[n->protocol], n->host, n->port);
    switch (n->protocol) {
    case ZNP_FORMATS_VMESS:
        put_value(b, "username", n->uuid);
        if (n->alter_id == 0)
            formats__buf_puts(b, ", vmess-aead=true");
        if (n->cipher != NULL && (strcmp(n->cipher, "aes-128-gcm") == 0 ||
                                  strcmp(n->cipher, "chacha20-ietf-poly1305") == 0))
            put_value(b, "encrypt-method", n->cipher);
        if (n->tls.enabled) {
            formats__buf_puts(b, ", tls=true");
            put_tls(b, &n->tls, 1);
        }
        put_ws(b, &n->transport);
        break;
    case ZNP_FORMATS_TROJAN:
        put_value(b, "password", n->password);
        put_tls(b, &n->tls, 1);
        put_ws(b, &n->transport);
        break;
    case ZNP_FORMATS_SHADOWSOCKS:
        put_value(b, "encrypt-method", n->cipher);
        put_value(b, "password", n->password);
        formats__buf_puts(b, ", udp-relay=true");
        break;
    case ZNP_FORMATS_HYSTERIA2:
        put_value(b, "password", n->password);
        put_tls(b, &n->tls, 1);
        if (n->down_mbps > 0)
            formats__buf_printf(b, ", download-bandwidth=%d", n->down_mbps);
        put_value(b, "salamander-password", n->obfs ? n->obfs_password : NULL);
        break;
    case ZNP_FORMATS_TUIC:
        put_value(b, "uuid", n->uuid);
        put_value(b, "password", n->password);
        put_tls(b, &n->tls, 1);
        break;
    case ZNP_FORMATS_ANYTLS:
        put_value(b, "password", n->password);
        put_tls(b, &n->tls, 0);
        break;
    case ZNP_FORMATS_VLESS:
        /* excluded by znp_formats_supports */
        break;
    }
    formats__buf_puts(b, "\n");
}

int formats__render_surge(formats__buf_t *b, const znp_formats_node_t *nodes, const int *keep, size_t count)
{
    char **names = formats__unique_names(nodes, keep, count);

    if (names == NULL)
        return ZNP_E_INTERNAL;
    formats__buf_puts(b, "[Proxy]\n");
    for (size_t i = 0; i < count; i++)
        if (keep[i])
            put_proxy(b, &nodes[i], names[i]);

    formats__buf_puts(b, "\n[Proxy Group]\nProxy = select");
    for (size_t i = 0; i < count; i++)
        if (keep[i])
            formats__buf_printf(b, ", %s", names[i]);
    formats__buf_puts(b, ", DIRECT\n\n[Rule]\nFINAL,Proxy\n");

    formats__names_free(names, count);
    return b->failed ? ZNP_E_INTERNAL : 0;
}
