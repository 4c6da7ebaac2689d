/*
 * The protocol entries a subscription grants, as znp_formats_node_t values.
 * An entry's client parameters come from its own profile. Keys that both
 * ends of a connection share (method, transport, TLS server name,
 * obfuscation...) fall back to the binding profile, the kernel-side
 * configuration. Keys that only a server has (a REALITY private key, a
 * certificate) are never read. docs/clients.md lists the keys.
 */
#include "download/download.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sql.h"
#include "core/log.h"
#include "download/internal.h"
#include "identity/identity.h"

#define LOG_MODULE "download"

static const char ENTRIES_SQL[] = "SELECT e.id, e.name, b.protocol, e.entry_address, e.entry_port, e.profile::text,"
                                  " b.profile::text, s.user_id" DOWNLOAD_ENTRY_SCOPE("$1") DOWNLOAD_ENTRY_ORDER;

enum { C_ID, C_NAME, C_PROTOCOL, C_ADDRESS, C_PORT, C_ENTRY_PROFILE, C_BINDING_PROFILE, C_USER_ID };

/* The two profiles of one entry. */
typedef struct profiles {
    json_t *entry;
    json_t *binding;
} profiles_t;

typedef struct protocol_name {
    const char *name;
    znp_formats_protocol_t protocol;
} protocol_name_t;

/* Binding protocol names the built-in formats can render, with the aliases the kernel accepts. */
static const protocol_name_t protocol_names[] = {
    {"vmess", ZNP_FORMATS_VMESS},
    {"vless", ZNP_FORMATS_VLESS},
    {"trojan", ZNP_FORMATS_TROJAN},
    {"shadowsocks", ZNP_FORMATS_SHADOWSOCKS},
    {"ss", ZNP_FORMATS_SHADOWSOCKS},
    {"hysteria2", ZNP_FORMATS_HYSTERIA2},
    {"hy2", ZNP_FORMATS_HYSTERIA2},
    {"tuic", ZNP_FORMATS_TUIC},
    {"anytls", ZNP_FORMATS_ANYTLS},
    {"any_tls", ZNP_FORMATS_ANYTLS},
};

int znp_download_protocol_of(const char *name, znp_formats_protocol_t *out)
{
    for (size_t i = 0; i < sizeof(protocol_names) / sizeof(protocol_names[0]); i++) {
        if (strcmp(name, protocol_names[i].name) == 0) {
            *out = protocol_names[i].protocol;
            return 1;
        }
    }
    return 0;
}

/* The value of the first of `keys` (NULL-terminated) in `obj`, or NULL. */
static json_t *lookup(json_t *obj, const char *const *keys)
{
    if (!json_is_object(obj))
        return NULL;
    for (size_t i = 0; keys[i] != NULL; i++) {
        json_t *v = json_object_get(obj, keys[i]);

        if (v != NULL && !json_is_null(v))
            return v;
    }
    return NULL;
}

/* The entry's value of `keys`, else the binding's when `shared` (a key both ends use). */
static json_t *pick(const profiles_t *p, int shared, const char *const *keys)
{
    json_t *v = lookup(p->entry, keys);

    if (v == NULL && shared)
        v = lookup(p->binding, keys);
    return v;
}

/* A string value copied into the arena; NULL when absent, not a string or empty. */
static const char *text(znp_ctx_t *ctx, const profiles_t *p, int shared, const char *const *keys)
{
    json_t *v = pick(p, shared, keys);

    if (!json_is_string(v) || json_string_length(v) == 0)
        return NULL;
    return znp_arena_strndup(ctx->arena, json_string_value(v), json_string_length(v));
}

static int integer(const profiles_t *p, int shared, const char *const *keys)
{
    json_t *v = pick(p, shared, keys);

    if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 1000000)
        return (int)json_integer_value(v);
    return 0;
}

static int flag(const profiles_t *p, int shared, const char *const *keys)
{
    json_t *v = pick(p, shared, keys);

    return json_is_true(v) || (json_is_integer(v) && json_integer_value(v) != 0);
}

static const char *const K_NETWORK[] = {"network", "transport", "type", NULL};
static const char *const K_PATH[] = {"path", NULL};
static const char *const K_HOST[] = {"host", NULL};
static const char *const K_SERVICE[] = {"service_name", "serviceName", NULL};
static const char *const K_SECURITY[] = {"security", NULL};
static const char *const K_TLS[] = {"tls", NULL};
static const char *const K_SNI[] = {"sni", "server_name", NULL};
static const char *const K_ALPN[] = {"alpn", NULL};
static const char *const K_FP[] = {"fingerprint", "fp", NULL};
static const char *const K_INSECURE[] = {"insecure", "allow_insecure", NULL};
static const char *const K_PBK[] = {"reality_public_key", "public_key", "pbk", NULL};
static const char *const K_SID[] = {"reality_short_id", "short_id", "sid", NULL};
static const char *const K_FLOW[] = {"flow", NULL};
static const char *const K_CIPHER[] = {"cipher", "method", NULL};
static const char *const K_ALTER[] = {"alter_id", "alterId", NULL};
static const char *const K_OBFS[] = {"obfs", NULL};
static const char *const K_OBFS_PASSWORD[] = {"obfs_password", NULL};
static const char *const K_UP[] = {"up_mbps", NULL};
static const char *const K_DOWN[] = {"down_mbps", NULL};
static const char *const K_CC[] = {"congestion_control", NULL};
static const char *const K_UDP[] = {"udp_relay_mode", NULL};
static const char *const K_SERVER_KEY[] = {"server_key", "psk", NULL};

/* ALPN from an array of strings or one comma-separated string. */
static void fill_alpn(znp_ctx_t *ctx, const profiles_t *p, znp_formats_tls_t *tls)
{
    json_t *v = pick(p, 1, K_ALPN);

    if (json_is_array(v)) {
        size_t i;
        json_t *item;

        json_array_foreach(v, i, item)
        {
            if (tls->alpn_count < ZNP_FORMATS_ALPN_MAX && json_is_string(item) && json_string_length(item) > 0)
                tls->alpn[tls->alpn_count++] = znp_arena_strdup(ctx->arena, json_string_value(item));
        }
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);

        while (*s != '\0' && tls->alpn_count < ZNP_FORMATS_ALPN_MAX) {
            size_t len = strcspn(s, ",");

            if (len > 0)
                tls->alpn[tls->alpn_count++] = znp_arena_strndup(ctx->arena, s, len);
            s += len;
            if (*s == ',')
                s++;
        }
    }
}

static znp_formats_network_t network_of(const char *name)
{
    if (name == NULL)
        return ZNP_FORMATS_NET_TCP;
    if (strcmp(name, "ws") == 0 || strcmp(name, "websocket") == 0)
        return ZNP_FORMATS_NET_WS;
    if (strcmp(name, "grpc") == 0)
        return ZNP_FORMATS_NET_GRPC;
    if (strcmp(name, "h2") == 0 || strcmp(name, "http") == 0)
        return ZNP_FORMATS_NET_H2;
    return ZNP_FORMATS_NET_TCP;
}

/*
 * Fill `node` from one entry row. The credential is the user's identity:
 * the UUID for vmess, vless and tuic, the password for the others. A
 * shadowsocks 2022 method gets the key znp_formats_ss2022_user_key derives
 * from the password, prefixed with "<server key>:" when the profile names a
 * server key (SIP022 multi-user mode). Returns 0, or 1 when the entry cannot
 * be rendered (the reason is logged).
 */
static int fill_node(znp_ctx_t *ctx, const PGresult *res, int row, const char *uuid, const char *password,
                     znp_formats_node_t *node)
{
    profiles_t p = {NULL, NULL};
    const char *security;
    int rc = 0;

    memset(node, 0, sizeof(*node));
    if (!znp_download_protocol_of(PQgetvalue(res, row, C_PROTOCOL), &node->protocol)) {
        ZNP_INFO(LOG_MODULE, ctx->request_id, "entry %s left out: protocol %s has no client format",
                 PQgetvalue(res, row, C_ID), PQgetvalue(res, row, C_PROTOCOL));
        return 1;
    }
    p.entry = json_loads(PQgetvalue(res, row, C_ENTRY_PROFILE), 0, NULL);
    p.binding = json_loads(PQgetvalue(res, row, C_BINDING_PROFILE), 0, NULL);

    node->name = znp_arena_strdup(ctx->arena, PQgetvalue(res, row, C_NAME));
    node->host = znp_arena_strdup(ctx->arena, PQgetvalue(res, row, C_ADDRESS));
    node->port = (int)znp_sql_int64(res, row, C_PORT);
    node->uuid = uuid;
    node->password = password;
    node->cipher = text(ctx, &p, 1, K_CIPHER);
    node->alter_id = integer(&p, 1, K_ALTER);
    node->flow = text(ctx, &p, 1, K_FLOW);
    node->transport.network = network_of(text(ctx, &p, 1, K_NETWORK));
    node->transport.path = text(ctx, &p, 1, K_PATH);
    node->transport.host = text(ctx, &p, 1, K_HOST);
    node->transport.service_name = text(ctx, &p, 1, K_SERVICE);

    security = text(ctx, &p, 1, K_SECURITY);
    node->tls.enabled = flag(&p, 1, K_TLS) || (security != NULL && (strcmp(security, "tls") == 0 ||
                                                                    strcmp(security, "reality") == 0));
    if (node->protocol == ZNP_FORMATS_TROJAN || node->protocol == ZNP_FORMATS_HYSTERIA2 ||
        node->protocol == ZNP_FORMATS_TUIC || node->protocol == ZNP_FORMATS_ANYTLS)
        node->tls.enabled = 1;
    node->tls.sni = text(ctx, &p, 1, K_SNI);
    fill_alpn(ctx, &p, &node->tls);
    node->tls.fingerprint = text(ctx, &p, 1, K_FP);
    node->tls.insecure = flag(&p, 1, K_INSECURE);
    /* the public key is client-side only; the binding stores the private key, which is never read */
    if (security != NULL && strcmp(security, "reality") == 0) {
        node->tls.reality_public_key = text(ctx, &p, 0, K_PBK);
        node->tls.reality_short_id = text(ctx, &p, 0, K_SID);
        if (node->tls.reality_public_key == NULL) {
            ZNP_INFO(LOG_MODULE, ctx->request_id, "entry %s left out: REALITY without reality_public_key",
                     PQgetvalue(res, row, C_ID));
            rc = 1;
            goto cleanup;
        }
        if (node->tls.reality_short_id == NULL)
            node->tls.reality_short_id = "";
    }
    node->obfs = text(ctx, &p, 1, K_OBFS);
    node->obfs_password = text(ctx, &p, 1, K_OBFS_PASSWORD);
    node->up_mbps = integer(&p, 1, K_UP);
    node->down_mbps = integer(&p, 1, K_DOWN);
    node->congestion_control = text(ctx, &p, 1, K_CC);
    node->udp_relay_mode = text(ctx, &p, 1, K_UDP);

    if (node->protocol == ZNP_FORMATS_SHADOWSOCKS && znp_formats_is_ss2022(node->cipher)) {
        const char *server_key = text(ctx, &p, 1, K_SERVER_KEY);
        char key[48];

        if (znp_formats_ss2022_user_key(key, sizeof(key), node->cipher, password) != 0) {
            ZNP_INFO(LOG_MODULE, ctx->request_id, "entry %s left out: no shadowsocks 2022 key for %s",
                     PQgetvalue(res, row, C_ID), node->cipher);
            rc = 1;
            goto cleanup;
        }
        node->password = server_key != NULL ? znp_arena_printf(ctx->arena, "%s:%s", server_key, key)
                                            : znp_arena_strdup(ctx->arena, key);
    }
    if (node->name == NULL || node->host == NULL || node->password == NULL)
        rc = ZNP_E_INTERNAL;

cleanup:
    json_decref(p.entry);
    json_decref(p.binding);
    return rc;
}

int znp_download_load_nodes(znp_ctx_t *ctx, int64_t subscription_id, znp_formats_node_t **nodes, size_t *count)
{
    char id_text[24];
    const char *params[1] = {id_text};
    znp_identity_t identity;
    PGresult *res = NULL;
    znp_formats_node_t *list = NULL;
    size_t used = 0;
    int rows, rc;

    *nodes = NULL;
    *count = 0;
    snprintf(id_text, sizeof(id_text), "%" PRId64, subscription_id);
    rc = znp_sql_exec(&res, ctx->db, ENTRIES_SQL, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rows = PQntuples(res);
    if (rows == 0)
        goto cleanup;
    memset(&identity, 0, sizeof(identity));
    rc = znp_identity_ensure(ctx->db, ctx->config, znp_sql_int64(res, 0, C_USER_ID), &identity, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    list = znp_arena_alloc(ctx->arena, (size_t)rows * sizeof(*list));
    if (list == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    /* the identity strings must outlive this frame */
    {
        const char *uuid_copy = znp_arena_strdup(ctx->arena, identity.uuid);
        const char *password_copy = znp_arena_strdup(ctx->arena, identity.password);

        if (uuid_copy == NULL || password_copy == NULL) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
        for (int i = 0; i < rows; i++) {
            int filled = fill_node(ctx, res, i, uuid_copy, password_copy, &list[used]);

            if (filled < 0) {
                rc = filled;
                goto cleanup;
            }
            if (filled == 0)
                used++;
        }
    }
    *nodes = used > 0 ? list : NULL;
    *count = used;

cleanup:
    explicit_bzero(&identity, sizeof(identity));
    PQclear(res);
    return rc;
}
