/* Share links and the base64 subscription body. */
#include "formats/formats.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/internal.h"

static void put_pct(formats__buf_t *b, const char *s)
{
    formats__buf_percent(b, s, strlen(s));
}

/* host and port, with an IPv6 literal bracketed; hosts are stored bare, so brackets appear exactly once */
static void put_authority_host(formats__buf_t *b, const znp_formats_node_t *n)
{
    if (formats__is_ipv6(n->host))
        formats__buf_printf(b, "[%s]:%d", n->host, n->port);
    else
        formats__buf_printf(b, "%s:%d", n->host, n->port);
}

static void put_param(formats__buf_t *b, int *first, const char *key, const char *value)
{
    if (!formats__set(value))
        return;
    formats__buf_puts(b, *first ? "?" : "&");
    *first = 0;
    formats__buf_puts(b, key);
    formats__buf_puts(b, "=");
    put_pct(b, value);
}

static void put_alpn(formats__buf_t *b, int *first, const znp_formats_tls_t *tls)
{
    formats__buf_t joined = {0};

    if (tls->alpn_count == 0)
        return;
    for (size_t i = 0; i < tls->alpn_count; i++) {
        if (i > 0)
            formats__buf_puts(&joined, ",");
        formats__buf_puts(&joined, tls->alpn[i]);
    }
    if (joined.failed)
        b->failed = 1;
    else
        put_param(b, first, "alpn", joined.data);
    free(joined.data);
}

static const char *network_name(znp_formats_network_t network)
{
    switch (network) {
    case ZNP_FORMATS_NET_WS: return "ws";
    case ZNP_FORMATS_NET_GRPC: return "grpc";
    case ZNP_FORMATS_NET_H2: return "http";
    case ZNP_FORMATS_NET_TCP: break;
    }
    return "tcp";
}

static void put_fragment(formats__buf_t *b, const char *name)
{
    formats__buf_puts(b, "#");
    put_pct(b, name);
}

/* query parameters shared by vless and trojan (the Xray share link convention) */
static void put_stream_params(formats__buf_t *b, int *first, const znp_formats_node_t *n)
{
    const znp_formats_tls_t *tls = &n->tls;
    const char *security = "none";

    if (tls->reality_public_key != NULL)
        security = "reality";
    else if (tls->enabled)
        security = "tls";
    put_param(b, first, "security", security);
    put_param(b, first, "type", network_name(n->transport.network));
    if (tls->enabled || tls->reality_public_key != NULL) {
        put_param(b, first, "sni", tls->sni);
        put_alpn(b, first, tls);
        put_param(b, first, "fp", tls->fingerprint);
        put_param(b, first, "pbk", tls->reality_public_key);
        put_param(b, first, "sid", tls->reality_short_id);
        if (tls->insecure)
            put_param(b, first, "allowInsecure", "1");
    }
    switch (n->transport.network) {
    case ZNP_FORMATS_NET_WS:
    case ZNP_FORMATS_NET_H2:
        put_param(b, first, "path", n->transport.path);
        put_param(b, first, "host", n->transport.host);
        break;
    case ZNP_FORMATS_NET_GRPC:
        put_param(b, first, "serviceName", n->transport.service_name);
        break;
    case ZNP_FORMATS_NET_TCP:
        break;
    }
}

static int put_vmess(formats__buf_t *b, const znp_formats_node_t *n)
{
    json_t *o = json_object();
    char port[8];
    char aid[8];
    char *text = NULL;
    const char *path = n->transport.path;
    int rc = ZNP_E_INTERNAL;

    if (o == NULL)
        goto cleanup;
    snprintf(port, sizeof(port), "%d", n->port);
    snprintf(aid, sizeof(aid), "%d", n->alter_id);
    if (n->transport.network == ZNP_FORMATS_NET_GRPC)
        path = n->transport.service_name;

    /* the v2rayN "v": "2" object; every value is a string */
    json_object_set_new(o, "v", json_string("2"));
    json_object_set_new(o, "ps", json_string(n->name));
    json_object_set_new(o, "add", json_string(n->host));
    json_object_set_new(o, "port", json_string(port));
    json_object_set_new(o, "id", json_string(n->uuid));
    json_object_set_new(o, "aid", json_string(aid));
    json_object_set_new(o, "scy", json_string(formats__set(n->cipher) ? n->cipher : "auto"));
    json_object_set_new(o, "net", json_string(n->transport.network == ZNP_FORMATS_NET_H2 ? "h2"
                                              : network_name(n->transport.network)));
    json_object_set_new(o, "type", json_string("none"));
    json_object_set_new(o, "host", json_string(n->transport.host ? n->transport.host : ""));
    json_object_set_new(o, "path", json_string(path ? path : ""));
    json_object_set_new(o, "tls", json_string(n->tls.enabled ? "tls" : ""));
    if (n->tls.enabled) {
        formats__buf_t alpn = {0};

        for (size_t i = 0; i < n->tls.alpn_count; i++) {
            if (i > 0)
                formats__buf_puts(&alpn, ",");
            formats__buf_puts(&alpn, n->tls.alpn[i]);
        }
        json_object_set_new(o, "sni", json_string(n->tls.sni ? n->tls.sni : ""));
        json_object_set_new(o, "alpn", json_string(alpn.data ? alpn.data : ""));
        json_object_set_new(o, "fp", json_string(n->tls.fingerprint ? n->tls.fingerprint : ""));
        if (n->tls.insecure)
            json_object_set_new(o, "allowInsecure", json_string("1"));
        free(alpn.data);
    }
    text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (text == NULL)
        goto cleanup;

    formats__buf_puts(b, "vmess://");
    formats__buf_base64(b, (const unsigned char *)text, strlen(text), 0);
    rc = 0;

cleanup:
    free(text);
    json_decref(o);
    return rc;
}

static void put_vless(formats__buf_t *b, const znp_formats_node_t *n)
{
    int first = 1;

    formats__buf_puts(b, "vless://");
    put_pct(b, n->uuid);
    formats__buf_puts(b, "@");
    put_authority_host(b, n);
    put_param(b, &first, "encryption", "none");
    put_param(b, &first, "flow", n->flow);
    put_stream_params(b, &first, n);
    put_fragment(b, n->name);
}

static void put_trojan(formats__buf_t *b, const znp_formats_node_t *n)
{
    int first = 1;

    formats__buf_puts(b, "trojan://");
    put_pct(b, n->password);
    formats__buf_puts(b, "@");
    put_authority_host(b, n);
    put_stream_params(b, &first, n);
    put_fragment(b, n->name);
}

/*
 * SIP002: user info is base64url("method:password") without padding, except
 * for 2022 methods, where SIP022 requires the percent-encoded plain form
 * because their base64 keys would be encoded twice.
 */
static void put_ss(formats__buf_t *b, const znp_formats_node_t *n)
{
    formats__buf_puts(b, "ss://");
    if (znp_formats_is_ss2022(n->cipher)) {
        put_pct(b, n->cipher);
        formats__buf_puts(b, ":");
        put_pct(b, n->password);
    } else {
        formats__buf_t plain = {0};

        formats__buf_printf(&plain, "%s:%s", n->cipher, n->password);
        if (plain.failed)
            b->failed = 1;
        else
            formats__buf_base64(b, (const unsigned char *)plain.data, plain.len, 1);
        free(plain.data);
    }
    formats__buf_puts(b, "@");
    put_authority_host(b, n);
    put_fragment(b, n->name);
}

static void put_hysteria2(formats__buf_t *b, const znp_formats_node_t *n)
{
    int first = 1;

    formats__buf_puts(b, "hysteria2://");
    put_pct(b, n->password);
    formats__buf_puts(b, "@");
    put_authority_host(b, n);
    formats__buf_puts(b, "/");
    put_param(b, &first, "sni", n->tls.sni);
    put_alpn(b, &first, &n->tls);
    if (n->tls.insecure)
        put_param(b, &first, "insecure", "1");
    put_param(b, &first, "obfs", n->obfs);
    put_param(b, &first, "obfs-password", n->obfs ? n->obfs_password : NULL);
    put_fragment(b, n->name);
}

static void put_tuic(formats__buf_t *b, const znp_formats_node_t *n)
{
    int first = 1;

    formats__buf_puts(b, "tuic://");
    put_pct(b, n->uuid);
    formats__buf_puts(b, ":");
    put_pct(b, n->password);
    formats__buf_puts(b, "@");
    put_authority_host(b, n);
    put_param(b, &first, "sni", n->tls.sni);
    put_alpn(b, &first, &n->tls);
    put_param(b, &first, "congestion_control", n->congestion_control);
    put_param(b, &first, "udp_relay_mode", n->udp_relay_mode);
    if (n->tls.insecure)
        put_param(b, &first, "allow_insecure", "1");
    put_fragment(b, n->name);
}

/* anytls carries no alpn: clients such as Karing reject an anytls entry that has one */
static void put_anytls(formats__buf_t *b, const znp_formats_node_t *n)
{
    int first = 1;

    formats__buf_puts(b, "anytls://");
    put_pct(b, n->password);
    formats__buf_puts(b, "@");
    put_authority_host(b, n);
    put_param(b, &first, "sni", n->tls.sni);
    put_param(b, &first, "fp", n->tls.fingerprint);
    if (n->tls.insecure)
        put_param(b, &first, "insecure", "1");
    put_fragment(b, n->name);
}

static int put_link(formats__buf_t *b, const znp_formats_node_t *n)
{
    switch (n->protocol) {
    case ZNP_FORMATS_VMESS: return put_vmess(b, n);
    case ZNP_FORMATS_VLESS: put_vless(b, n); break;
    case ZNP_FORMATS_TROJAN: put_trojan(b, n); break;
    case ZNP_FORMATS_SHADOWSOCKS: put_ss(b, n); break;
    case ZNP_FORMATS_HYSTERIA2: put_hysteria2(b, n); break;
    case ZNP_FORMATS_TUIC: put_tuic(b, n); break;
    case ZNP_FORMATS_ANYTLS: put_anytls(b, n); break;
    }
    return b->failed ? ZNP_E_INTERNAL : 0;
}

int znp_formats_share_link(char **out, const znp_formats_node_t *node, znp_error_t *err)
{
    formats__buf_t b = {0};
    int rc;

    *out = NULL;
    rc = znp_formats_node_check(node, err);
    if (rc != 0)
        return rc;
    rc = put_link(&b, node);
    if (rc == 0)
        return formats__buf_finish(&b, out, NULL);
    free(b.data);
    return rc;
}

int formats__render_links(formats__buf_t *b, const znp_formats_node_t *nodes, const int *keep, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        int rc;

        if (!keep[i])
            continue;
        rc = put_link(b, &nodes[i]);
        if (rc != 0)
            return rc;
        formats__buf_puts(b, "\n");
    }
    formats__buf_append(b, "", 0);
    return b->failed ? ZNP_E_INTERNAL : 0;
}
