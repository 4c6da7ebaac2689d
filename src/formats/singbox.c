/* sing-box and SIP008 JSON, built with jansson so escaping is always correct. */
#include "formats/formats.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "formats/internal.h"

static void set_str(json_t *o, const char *key, const char *value)
{
    if (formats__set(value))
        json_object_set_new(o, key, json_string(value));
}

/* `with_alpn` is 0 for anytls, whose clients reject an alpn list */
static json_t *tls_object(const znp_formats_node_t *n, int with_alpn)
{
    json_t *tls = json_object();

    json_object_set_new(tls, "enabled", json_true());
    set_str(tls, "server_name", n->tls.sni);
    if (n->tls.insecure)
        json_object_set_new(tls, "insecure", json_true());
    if (with_alpn && n->tls.alpn_count > 0) {
        json_t *alpn = json_array();

        for (size_t i = 0; i < n->tls.alpn_count; i++)
            json_array_append_new(alpn, json_string(n->tls.alpn[i]));
        json_object_set_new(tls, "alpn", alpn);
    }
    /* REALITY needs uTLS in sing-box, so it falls back to the chrome fingerprint */
    if (formats__set(n->tls.fingerprint) || n->tls.reality_public_key != NULL)
        json_object_set_new(tls, "utls",
                            json_pack("{s:b, s:s}", "enabled", 1, "fingerprint",
                                      formats__set(n->tls.fingerprint) ? n->tls.fingerprint : "chrome"));
    if (n->tls.reality_public_key != NULL) {
        json_t *reality = json_pack("{s:b, s:s}", "enabled", 1, "public_key", n->tls.reality_public_key);

        set_str(reality, "short_id", n->tls.reality_short_id);
        json_object_set_new(tls, "reality", reality);
    }
    return tls;
}

static json_t *transport_object(const znp_formats_transport_t *t)
{
    json_t *o = json_object();

    switch (t->network) {
    case ZNP_FORMATS_NET_WS:
        json_object_set_new(o, "type", json_string("ws"));
        set_str(o, "path", t->path);
        if (formats__set(t->host))
            json_object_set_new(o, "headers", json_pack("{s:s}", "Host", t->host));
        break;
    case ZNP_FORMATS_NET_GRPC:
        json_object_set_new(o, "type", json_string("grpc"));
        set_str(o, "service_name", t->service_name);
        break;
    case ZNP_FORMATS_NET_H2:
        json_object_set_new(o, "type", json_string("http"));
        if (formats__set(t->host))
            json_object_set_new(o, "host", json_pack("[s]", t->host));
        set_str(o, "path", t->path);
        break;
    case ZNP_FORMATS_NET_TCP:
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *outbound(const znp_formats_node_t *n, const char *tag)
{
    json_t *o = json_object();
    json_t *transport = transport_object(&n->transport);

    json_object_set_new(o, "type", json_string(formats__protocol_name(n->protocol)));
    json_object_set_new(o, "tag", json_string(tag));
    json_object_set_new(o, "server", json_string(n->host));
    json_object_set_new(o, "server_port", json_integer(n->port));

    switch (n->protocol) {
    case ZNP_FORMATS_VMESS:
        json_object_set_new(o, "uuid", json_string(n->uuid));
        json_object_set_new(o, "security", json_string(formats__set(n->cipher) ? n->cipher : "auto"));
        json_object_set_new(o, "alter_id", json_integer(n->alter_id));
        if (n->tls.enabled)
            json_object_set_new(o, "tls", tls_object(n, 1));
        break;
    case ZNP_FORMATS_VLESS:
        json_object_set_new(o, "uuid", json_string(n->uuid));
        set_str(o, "flow", n->flow);
        if (n->tls.enabled || n->tls.reality_public_key != NULL)
            json_object_set_new(o, "tls", tls_object(n, 1));
        break;
    case ZNP_FORMATS_TROJAN:
        json_object_set_new(o, "password", json_string(n->password));
        if (n->tls.enabled)
            json_object_set_new(o, "tls", tls_object(n, 1));
        break;
    case ZNP_FORMATS_SHADOWSOCKS:
        json_object_set_new(o, "method", json_string(n->cipher));
        json_object_set_new(o, "password", json_string(n->password));
        break;
    case ZNP_FORMATS_HYSTERIA2:
        json_object_set_new(o, "password", json_string(n->password));
        if (n->up_mbps > 0)
            json_object_set_new(o, "up_mbps", json_integer(n->up_mbps));
        if (n->down_mbps > 0)
            json_object_set_new(o, "down_mbps", json_integer(n->down_mbps));
        if (n->obfs != NULL)
            json_object_set_new(o, "obfs", json_pack("{s:s, s:s}", "type", n->obfs, "password", n->obfs_password));
        json_object_set_new(o, "tls", tls_object(n, 1));
        break;
    case ZNP_FORMATS_TUIC:
        json_object_set_new(o, "uuid", json_string(n->uuid));
        json_object_set_new(o, "password", json_string(n->password));
        set_str(o, "congestion_control", n->congestion_control);
        set_str(o, "udp_relay_mode", n->udp_relay_mode);
        json_object_set_new(o, "tls", tls_object(n, 1));
        break;
    case ZNP_FORMATS_ANYTLS:
        json_object_set_new(o, "password", json_string(n->password));
        json_object_set_new(o, "tls", tls_object(n, 0));
        break;
    }
    if (transport != NULL)
        json_object_set_new(o, "transport", transport);
    return o;
}

static int dump(formats__buf_t *b, json_t *root)
{
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

    if (text == NULL)
        return ZNP_E_INTERNAL;
    formats__buf_puts(b, text);
    formats__buf_puts(b, "\n");
    free(text);
    return b->failed ? ZNP_E_INTERNAL : 0;
}

/*
 * Outbounds only, led by a "proxy" selector over every node plus "direct",
 * and a route whose final outbound is the selector. Inbounds, DNS and rules
 * belong to the client.
 */
int formats__render_singbox(formats__buf_t *b, const znp_formats_node_t *nodes, const int *keep, size_t count)
{
    char **names = formats__unique_names(nodes, keep, count);
    json_t *root = json_object();
    json_t *outbounds = json_array();
    json_t *selector = json_pack("{s:s, s:s}", "type", "selector", "tag", "proxy");
    json_t *members = json_array();
    int rc = ZNP_E_INTERNAL;

    if (names == NULL || root == NULL || outbounds == NULL || selector == NULL || members == NULL)
        goto cleanup;
    json_array_append(outbounds, selector);
    for (size_t i = 0; i < count; i++) {
        if (!keep[i])
            continue;
        json_array_append_new(members, json_string(names[i]));
        json_array_append_new(outbounds, outbound(&nodes[i], names[i]));
    }
    json_array_append_new(members, json_string("direct"));
    json_object_set(selector, "outbounds", members);
    json_array_append_new(outbounds, json_pack("{s:s, s:s}", "type", "direct", "tag", "direct"));
    json_object_set(root, "outbounds", outbounds);
    json_object_set_new(root, "route", json_pack("{s:s}", "final", "proxy"));
    rc = dump(b, root);

cleanup:
    json_decref(members);
    json_decref(selector);
    json_decref(outbounds);
    json_decref(root);
    formats__names_free(names, count);
    return rc;
}

/* SIP008 online configuration: version 1 and the shadowsocks servers */
int formats__render_sip008(formats__buf_t *b, const znp_formats_node_t *nodes, const int *keep, size_t count)
{
    json_t *root = json_pack("{s:i}", "version", 1);
    json_t *servers = json_array();
    int rc = ZNP_E_INTERNAL;

    if (root == NULL || servers == NULL)
        goto cleanup;
    for (size_t i = 0; i < count; i++) {
        if (!keep[i])
            continue;
        json_array_append_new(servers, json_pack("{s:s, s:s, s:i, s:s, s:s}", "remarks", nodes[i].name, "server",
                                                 nodes[i].host, "server_port", nodes[i].port, "password",
                                                 nodes[i].password, "method", nodes[i].cipher));
    }
    json_object_set(root, "servers", servers);
    rc = dump(b, root);

cleanup:
    json_decref(servers);
    json_decref(root);
    return rc;
}
