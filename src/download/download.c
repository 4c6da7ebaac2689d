/*
 * Public subscription download: GET /api/v1/subscriptions/{token} and its
 * alias GET /s/{token}. The token is the credential, so the row is found
 * through the unique token index and the stored token is then compared in
 * constant time. The file is rendered with the built-in formats of
 * src/formats for the client that src/formats detects; browsers get a short
 * page instead of nodes. Over HTTP the body goes out through ctx->stream
 * with its own content type and headers; over gRPC the typed response
 * carries the same file. A repeated download is served from memory (see
 * the response cache below). Over HTTP that happens on the event loop,
 * before the request would go to the worker pool (core/warm.h). A file of
 * GZIP_MIN_BYTES or more is also kept gzip-compressed, and a client whose
 * Accept-Encoding allows gzip gets those bytes, on the first download too.
 */
#include "download/download.h"

#include <inttypes.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ZLIB_CONST
#include <zlib.h>

#include "auth/sql.h"
#include "core/hotmem.h"
#include "core/log.h"
#include "core/stream.h"
#include "core/warm.h"
#include "download/internal.h"
#include "formats/formats.h"
#include "identity/identity.h"
#include "operations.gen.h"
#include "protect/protect.h"
#include "system/site.h"
#include "template/template.h"

#define LOG_MODULE        "download"
#define TOKEN_CHARS       22 /* 128 bits in base64url without padding */
#define CLIENT_KEY_MAX    96
#define ETAG_DIGEST_BYTES 16   /* bytes of the SHA-256 kept in a download tag (128 bits) */
#define ETAG_MAX          32   /* quotes, 22 base64url characters, "-gzip" and the NUL */
#define GZIP_MIN_BYTES    1024 /* smaller bodies are sent as they are: compression would save too little */

/*
 * Per-token limit on top of the per-IP x-rate-limit of the operation, so a
 * leaked token fetched from many addresses is slowed down too. The update
 * interval we send is in hours, so 30 a minute leaves room for many devices.
 */
#define TOKEN_RATE_PER_MINUTE 30
#define TOKEN_RATE_BURST      30
#define TOKEN_LIMITER_KEYS    65536

enum {
    STATUS_ACTIVE = 1,
    STATUS_DISABLED = 2,
    STATUS_EXPIRED = 3,
};

typedef enum reason {
    REASON_NONE = 0,
    REASON_DISABLED,
    REASON_EXPIRED,
    REASON_QUOTA,
} reason_t;

typedef struct subscription {
    int64_t id;
    int status;
    int64_t expires_at;  /* Unix seconds, rounded down, so a cached response never outlives it; 0 = never */
    int64_t total_bytes; /* 0 = unlimited */
    int64_t used_bytes;
    int expired; /* expires_at has passed by the database clock */
    int64_t template_id; /* 0 when the subscription names no template */
    int user_active;     /* the owner's account is active */
} subscription_t;

/* A rendered response body, owned here, with its static content type. */
typedef struct rendered {
    char *body;
    size_t len;
    const char *content_type; /* static */
    const char *format_name;  /* static */
    int is_page;              /* the browser page, not a client file */
} rendered_t;

static pthread_once_t limiter_once = PTHREAD_ONCE_INIT;
static znp_limiter_t *token_limiter; /* lives until the process exits; NULL when it could not be made */

static void limiter_create(void)
{
    if (znp_limiter_create(&token_limiter, TOKEN_LIMITER_KEYS, NULL, NULL) != 0)
        token_limiter = NULL;
}

/* The per-token limiter, made on first use; NULL when out of memory. */
static znp_limiter_t *limiter(void)
{
    pthread_once(&limiter_once, limiter_create);
    return token_limiter;
}

/*
 * Take one download from the bucket of `token` (`len` bytes), whose limiter
 * hash is `hash` (see token_hash). Returns 0 or ZNP_E_TOO_MANY_REQUESTS with
 * *retry_after.
 */
static int take_hashed(const char *token, size_t len, uint64_t hash, const char *request_id, int *retry_after)
{
    static const znp_rate_t rate = {TOKEN_RATE_PER_MINUTE, TOKEN_RATE_BURST};
    znp_limiter_t *table = limiter();
    znp_rate_verdict_t verdict;

    if (table == NULL) {
        ZNP_ERROR(LOG_MODULE, request_id, "per-token rate limiter unavailable: out of memory");
        return 0;
    }
    znp_limiter_take_hashed(table, hash, token, len, rate, &verdict);
    if (verdict.allowed)
        return 0;
    ZNP_INFO(LOG_MODULE, request_id, "subscription download rate-limited for one token");
    *retry_after = verdict.retry_after_s > 0 ? (int)verdict.retry_after_s : 1;
    return ZNP_E_TOO_MANY_REQUESTS;
}

/* The limiter hash of `token` (`len` bytes); 0 when there is no limiter. */
static uint64_t token_hash(const char *token, size_t len)
{
    znp_limiter_t *table = limiter();

    return table != NULL ? znp_limiter_hash(table, token, len) : 0;
}

static int take_token(const char *token, const char *request_id, int *retry_after)
{
    size_t len = strlen(token);

    return take_hashed(token, len, token_hash(token, len), request_id, retry_after);
}

/* Start loading the bucket memory of the token with limiter hash `hash`: its slot at step 0, its bucket at step 1. */
static void limiter_prefetch(uint64_t hash, int step)
{
    znp_limiter_t *table = limiter();

    if (table == NULL)
        return;
    if (step == 0)
        znp_limiter_prefetch_slot(table, hash);
    else
        znp_limiter_prefetch_bucket(table, hash);
}

static int admit_token(znp_ctx_t *ctx, const char *token)
{
    int retry_after = 0;
    int rc = take_token(token, ctx->request_id, &retry_after);

    if (rc != 0 && ctx->err != NULL) {
        znp_error_set(ctx->err, rc, NULL, NULL);
        ctx->err->retry_after = retry_after;
    }
    return rc;
}

static int token_well_formed(const char *token)
{
    size_t len = strlen(token);

    if (len != TOKEN_CHARS)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = token[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* Find the subscription of `token`. Returns 0, ZNP_E_NOT_FOUND or a database error. */
static int load_subscription(znp_ctx_t *ctx, const char *token, subscription_t *out)
{
    static const char sql[] =
        "SELECT q.id, q.status, q.token, coalesce(floor(extract(epoch FROM q.expires_at))::bigint, 0),"
        " q.traffic_total_bytes, q.traffic_used_bytes,"
        " q.expires_at IS NOT NULL AND q.expires_at <= now(), coalesce(q.template_id, 0), u.status = 1"
        " FROM subscriptions q JOIN users u ON u.id = q.user_id WHERE q.token = $1";
    const char *params[1] = {token};
    PGresult *res = NULL;
    const char *stored;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!token_well_formed(token))
        return ZNP_E_NOT_FOUND;
    rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = ZNP_E_NOT_FOUND;
        goto cleanup;
    }
    /* the index lookup already matched; the constant-time check keeps the comparison itself from leaking */
    stored = PQgetvalue(res, 0, 2);
    if (strlen(stored) != TOKEN_CHARS || CRYPTO_memcmp(stored, token, TOKEN_CHARS) != 0) {
        rc = ZNP_E_NOT_FOUND;
        goto cleanup;
    }
    out->id = znp_sql_int64(res, 0, 0);
    out->status = (int)znp_sql_int64(res, 0, 1);
    out->expires_at = znp_sql_int64(res, 0, 3);
    out->total_bytes = znp_sql_int64(res, 0, 4);
    out->used_bytes = znp_sql_int64(res, 0, 5);
    out->expired = znp_sql_bool(res, 0, 6);
    out->template_id = znp_sql_int64(res, 0, 7);
    out->user_active = znp_sql_bool(res, 0, 8);

cleanup:
    PQclear(res);
    return rc;
}

static reason_t blocked_reason(const subscription_t *sub)
{
    /* a disabled account gets no entries either, as in the view binding_eligible_users */
    if (sub->status == STATUS_DISABLED || !sub->user_active)
        return REASON_DISABLED;
    if (sub->status == STATUS_EXPIRED || sub->expired)
        return REASON_EXPIRED;
    if (sub->total_bytes > 0 && sub->used_bytes >= sub->total_bytes)
        return REASON_QUOTA;
    return REASON_NONE;
}

static const char *reason_text(reason_t reason, znp_locale_t locale)
{
    int zh = locale == ZNP_LOCALE_ZH_CN;

    switch (reason) {
    case REASON_DISABLED:
        return zh ? "订阅已停用 Subscription disabled" : "Subscription disabled 订阅已停用";
    case REASON_EXPIRED:
        return zh ? "订阅已过期 Subscription expired" : "Subscription expired 订阅已过期";
    case REASON_QUOTA:
        return zh ? "流量已用尽 Traffic quota used up" : "Traffic quota used up 流量已用尽";
    case REASON_NONE:
        break;
    }
    return "";
}

/*
 * The single entry a blocked subscription gets: a shadowsocks node, which
 * every built-in format can carry, pointing at the loopback address so it
 * carries no traffic anywhere. Its name states the reason.
 */
static void info_node(znp_formats_node_t *node, const char *name)
{
    memset(node, 0, sizeof(*node));
    node->protocol = ZNP_FORMATS_SHADOWSOCKS;
    node->name = name;
    node->host = "127.0.0.1";
    node->port = 1;
    node->password = "unavailable";
    node->cipher = "aes-128-gcm";
}

static void on_skip(void *arg, size_t index, const znp_formats_node_t *node, const char *reason)
{
    znp_ctx_t *ctx = arg;

    (void)node;
    ZNP_INFO(LOG_MODULE, ctx->request_id, "node %zu left out of the subscription file: %s", index, reason);
}

/* Append `text` to the growing buffer, HTML-escaped when `escape` is set. Returns 0 or ZNP_E_INTERNAL. */
static int append(char **buf, size_t *len, size_t *cap, const char *text, int escape)
{
    for (const char *p = text; *p != '\0'; p++) {
        const char *piece = NULL;
        char one[2] = {*p, '\0'};
        size_t piece_len;

        if (escape && *p == '<')
            piece = "&lt;";
        else if (escape && *p == '>')
            piece = "&gt;";
        else if (escape && *p == '&')
            piece = "&amp;";
        else if (escape && *p == '"')
            piece = "&quot;";
        else
            piece = one;
        piece_len = strlen(piece);
        if (*len + piece_len + 1 > *cap) {
            size_t grown_cap = *cap > 0 ? *cap * 2 : 1024;
            char *grown;

            while (*len + piece_len + 1 > grown_cap)
                grown_cap *= 2;
            grown = realloc(*buf, grown_cap);
            if (grown == NULL)
                return ZNP_E_INTERNAL;
            *buf = grown;
            *cap = grown_cap;
        }
        memcpy(*buf + *len, piece, piece_len);
        *len += piece_len;
        (*buf)[*len] = '\0';
    }
    return 0;
}

/* Render the page a browser gets: how to use the URL, in the caller's language, without any node. */
static int render_page(rendered_t *out, const char *site_name, znp_locale_t locale, reason_t reason)
{
    int zh = locale == ZNP_LOCALE_ZH_CN;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;

    rc = append(&buf, &len, &cap, zh ? "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n" : "<!DOCTYPE html>\n<html lang=\"en\">\n",
                0);
    rc = rc != 0 ? rc : append(&buf, &len, &cap, "<head><meta charset=\"utf-8\"><title>", 0);
    rc = rc != 0 ? rc : append(&buf, &len, &cap, site_name, 1);
    rc = rc != 0 ? rc : append(&buf, &len, &cap, "</title></head>\n<body>\n<h1>", 0);
    rc = rc != 0 ? rc : append(&buf, &len, &cap, site_name, 1);
    rc = rc != 0 ? rc : append(&buf, &len, &cap, "</h1>\n<p>", 0);
    rc = rc != 0 ? rc
                 : append(&buf, &len, &cap,
                          zh ? "这是一个订阅链接，请不要在浏览器中打开。复制本页地址，在代理客户端（如 Clash、sing-box、"
                               "v2rayN、Shadowrocket）中选择“从 URL 导入订阅”并粘贴。"
                             : "This is a subscription link, not a web page. Copy this page's address and import it "
                               "into your proxy client (Clash, sing-box, v2rayN, Shadowrocket...) with \"import "
                               "subscription from URL\".",
                          1);
    rc = rc != 0 ? rc : append(&buf, &len, &cap, "</p>\n", 0);
    if (reason != REASON_NONE) {
        rc = rc != 0 ? rc : append(&buf, &len, &cap, "<p>", 0);
        rc = rc != 0 ? rc : append(&buf, &len, &cap, reason_text(reason, locale), 1);
        rc = rc != 0 ? rc : append(&buf, &len, &cap, "</p>\n", 0);
    }
    rc = rc != 0 ? rc : append(&buf, &len, &cap, "</body>\n</html>\n", 0);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    out->body = buf;
    out->len = len;
    out->content_type = "text/html; charset=utf-8";
    out->format_name = "html";
    out->is_page = 1;
    return 0;
}

static int render_file(znp_ctx_t *ctx, rendered_t *out, const znp_formats_client_t *client, const subscription_t *sub,
                       reason_t reason)
{
    znp_formats_node_t info;
    znp_formats_node_t *nodes = NULL;
    size_t count = 0;
    znp_formats_options_t opts = {
        .engine_version = client->version,
        .on_skip = on_skip,
        .skip_arg = ctx,
    };
    int rc;

    if (reason != REASON_NONE) {
        info_node(&info, reason_text(reason, ctx->locale));
        nodes = &info;
        count = 1;
        /* the informational entry must reach every client, whatever its engine version */
        opts.engine_version = NULL;
    } else if ((rc = znp_download_load_nodes(ctx, sub->id, &nodes, &count)) != 0) {
        return rc;
    }
    rc = znp_formats_render(&out->body, &out->len, client->format, nodes, count, &opts);
    if (rc != 0)
        return rc == ZNP_E_VALIDATION_FAILED ? ZNP_E_INTERNAL : rc;
    out->content_type = znp_formats_content_type(client->format);
    out->format_name = znp_formats_format_name(client->format);
    return 0;
}

/*
 * The template context of reference section 12.3 for subscription `id`, as
 * JSON text built by the database, without `template`. It has the keys of
 * the sample data src/templates checks a template against at publish, and
 * test_download.py checks that the two keep the same keys.
 * `nodes` lists the entries of DOWNLOAD_ENTRY_SCOPE, also those of protocols
 * without a built-in format; protocol_bindings (the same list) and
 * user_identity (identity_context) are added in C.
 */
static const char CONTEXT_SQL[] =
    "SELECT jsonb_build_object("
    " 'subscription', jsonb_build_object('id', s.id, 'name', s.name, 'plan', s.plan_name, 'plan_id', s.plan_id,"
    "  'plan_snapshot', s.plan_snapshot,"
    "  'status', CASE s.status WHEN 1 THEN 'active' WHEN 2 THEN 'disabled' ELSE 'expired' END, 'token', s.token,"
    "  'expires_at', coalesce(to_char(s.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), ''),"
    "  'traffic_total_bytes', s.traffic_total_bytes, 'traffic_used_bytes', s.traffic_used_bytes,"
    "  'traffic_remaining_bytes', CASE WHEN s.traffic_total_bytes > 0"
    "   THEN greatest(s.traffic_total_bytes - s.traffic_used_bytes, 0) ELSE 0 END,"
    "  'devices_limit', s.devices_limit, 'available_template_ids', to_jsonb(s.available_template_ids)),"
    " 'nodes', coalesce((SELECT jsonb_agg(jsonb_build_object('id', b.id, 'binding_id', b.id, 'entry_id', e.id,"
    "   'name', e.name, 'kernel_id', b.kernel_id, 'protocol', b.protocol, 'role', b.role, 'hostname', e.entry_address,"
    "   'port', e.entry_port, 'listen', b.listen, 'connect', b.connect, 'access_address', e.entry_address,"
    "   'entry_address', e.entry_address, 'access_port', e.entry_port, 'entry_port', e.entry_port, 'node_id', n.id,"
    "   'node_name', n.name, 'region', n.region, 'country', n.country, 'status', 'active', 'binding_status', 'active',"
    "   'health_status', CASE b.health_status WHEN 1 THEN 'healthy' WHEN 2 THEN 'degraded' ELSE 'unknown' END,"
    "   'profile', e.profile, 'tags', to_jsonb(e.tags),"
    "   'updated_at', to_char(e.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))"
    "  " DOWNLOAD_ENTRY_ORDER ")" DOWNLOAD_ENTRY_SCOPE("$1") "), '[]'::jsonb),"
    " 'generated_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))::text, u.id"
    " FROM subscriptions s JOIN users u ON u.id = s.user_id WHERE s.id = $1";

/* user_identity of the context: the user's active credential, created on first use. NULL on failure. */
static json_t *identity_context(znp_ctx_t *ctx, int64_t user_id)
{
    znp_identity_t identity;

    if (znp_identity_ensure(ctx->db, ctx->config, user_id, &identity, ctx->request_id) != 0)
        return NULL;
    return json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "version", (json_int_t)identity.version,
                     "status", "active", "account_id", identity.uuid, "account", identity.uuid, "id", identity.uuid,
                     "uuid", identity.uuid, "username", identity.uuid, "password", identity.password, "secret",
                     identity.password);
}

/*
 * The newest published version of the template this download uses: the
 * subscription's own template when it is for `client_type`, otherwise the
 * default template of `client_type`. Drafts (subscription_templates.content)
 * are never read.
 */
static const char TEMPLATE_SQL[] =
    "SELECT t.id, t.name, v.format, v.version, v.content FROM subscription_templates t"
    " JOIN LATERAL (SELECT version, content, format FROM subscription_template_versions"
    "  WHERE template_id = t.id ORDER BY version DESC LIMIT 1) v ON true"
    " WHERE t.client_type = $2 AND (t.id = $1::bigint OR t.is_default)"
    " ORDER BY t.id = $1::bigint DESC LIMIT 1";

/* Output bounds for a download: smaller than the engine's defaults, since every client fetch pays them. */
static const znp_template_limits_t RENDER_LIMITS = {
    .max_output_bytes = 2u << 20,
    .max_steps = 500000,
    .max_depth = 64,
    .max_memory_bytes = 8u << 20,
};

/* Build the context of `sub` with `template` set from row 0 of `tmpl_res`. Returns the new reference or NULL. */
static json_t *template_context(znp_ctx_t *ctx, const subscription_t *sub, const PGresult *tmpl_res)
{
    char id_text[24];
    const char *params[1] = {id_text};
    PGresult *res = NULL;
    json_t *root = NULL;

    snprintf(id_text, sizeof(id_text), "%" PRId64, sub->id);
    if (znp_sql_exec(&res, ctx->db, CONTEXT_SQL, 1, params, ctx->request_id) != 0 || PQntuples(res) != 1)
        goto cleanup;
    root = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (root == NULL)
        goto cleanup;
    if (json_object_set_new(root, "user_identity", identity_context(ctx, znp_sql_int64(res, 0, 1))) != 0) {
        json_decref(root);
        root = NULL;
        goto cleanup;
    }
    if (json_object_set(root, "protocol_bindings", json_object_get(root, "nodes")) != 0) {
        json_decref(root);
        root = NULL;
        goto cleanup;
    }
    /* json_object_set_new takes the value even when it fails */
    if (json_object_set_new(root, "template",
                            json_pack("{s:I, s:s, s:s, s:I}", "id", (json_int_t)znp_sql_int64(tmpl_res, 0, 0), "name",
                                      PQgetvalue(tmpl_res, 0, 1), "format", PQgetvalue(tmpl_res, 0, 2), "version",
                                      (json_int_t)znp_sql_int64(tmpl_res, 0, 3))) != 0) {
        json_decref(root);
        root = NULL;
    }

cleanup:
    PQclear(res);
    return root;
}

/* The newest published version that applies, as *out with 0 or 1 rows (owned). Returns 0 or a database error. */
static int find_template(znp_ctx_t *ctx, const znp_formats_client_t *client, const subscription_t *sub, PGresult **out)
{
    char id_text[24];
    const char *params[2] = {id_text, znp_formats_format_name(client->format)};

    snprintf(id_text, sizeof(id_text), "%" PRId64, sub->template_id);
    return znp_sql_exec(out, ctx->db, TEMPLATE_SQL, 2, params, ctx->request_id);
}

/*
 * Render the template version in row 0 of `tmpl_res` into out. Returns 1
 * when out holds the rendering, or 0 when rendering failed (logged once per
 * template version; the caller then uses the built-in format).
 */
static int render_template(znp_ctx_t *ctx, rendered_t *out, const znp_formats_client_t *client,
                           const subscription_t *sub, const PGresult *res)
{
    static pthread_mutex_t failed_lock = PTHREAD_MUTEX_INITIALIZER;
    static int64_t failed_id, failed_version; /* the version whose failure was last logged */
    znp_template_t *tmpl = NULL;
    znp_template_error_t err = {0};
    json_t *data = NULL;
    int64_t id = znp_sql_int64(res, 0, 0), version = znp_sql_int64(res, 0, 3);
    int rc = 0, log_it;

    if (znp_template_compile(&tmpl, PQgetvalue(res, 0, 4), (size_t)PQgetlength(res, 0, 4), &err) != 0)
        goto failed;
    data = template_context(ctx, sub, res);
    if (data == NULL) {
        snprintf(err.message, sizeof(err.message), "the data context could not be built");
        goto failed;
    }
    if (znp_template_render(tmpl, data, &RENDER_LIMITS, &out->body, &out->len, &err) != 0)
        goto failed;
    out->content_type = znp_formats_content_type(client->format);
    out->format_name = znp_formats_format_name(client->format);
    rc = 1;
    goto cleanup;

failed:
    pthread_mutex_lock(&failed_lock);
    log_it = failed_id != id || failed_version != version;
    failed_id = id;
    failed_version = version;
    pthread_mutex_unlock(&failed_lock);
    if (log_it)
        ZNP_ERROR(LOG_MODULE, ctx->request_id,
                  "template %" PRId64 " version %" PRId64 " failed at %d:%d, using the built-in format: %s", id,
                  version, err.line, err.column, err.message);

cleanup:
    json_decref(data);
    znp_template_destroy(tmpl);
    return rc;
}

/*
 * Complete responses, kept in memory so a repeated download runs no query.
 * A cached response is keyed by the token and the client key (format, engine
 * version, locale, or the browser page). A keyed 64-bit hash of both picks
 * the candidates, the token itself is then compared in constant time, and
 * only tokens that the database resolved are ever stored. Each
 * entry contains what the response needs: headers, ETag, body, and the site
 * name for the gRPC response. It is served while all of these hold:
 *   - no invalidation reached its subscription since it was read. Writes on
 *     this instance call znp_download_cache_forget or _clear before they
 *     respond, and the NOTIFY of migration 0019 (znp_subscriptions) and
 *     znp_eligibility reach every instance;
 *   - it is younger than download.cache_ttl_s;
 *   - the subscription's expires_at has not passed by this instance's clock,
 *     so an expired subscription gets its notice without any write.
 * Traffic counting sends no notification, so the used bytes in
 * subscription-userinfo may lag by up to download.cache_ttl_s. Crossing the
 * quota notifies, because it blocks the subscription.
 *
 * A response built from rows read before an invalidation must never be
 * stored after it. So the caller takes cache_generation before its first
 * query, and cache_put stores nothing when the generation moved since.
 * Forgetting one subscription bumps the generation of its slot in O(1), which
 * makes its entries stale. They are freed when next looked up or stored, or
 * when they reach the end of the recency list. Once download.cache_entries
 * is reached, the oldest entry goes first unless it was served since it last
 * reached the end of the list (second chance). So a hit only sets a flag and
 * never relinks entries under the lock.
 */
typedef struct cached {
    struct cached *prev, *next; /* recency list, newest first */
    struct cached *chain;       /* hash bucket */
    uint64_t key_hash;          /* of the token, compared before the strings */
    int used;                   /* served since it last reached the end of the recency list */
    atomic_int refs;            /* one for the cache while listed, one per response in flight */
    int64_t subscription_id;
    uint32_t slot_generation;
    char token[TOKEN_CHARS];
    char client[CLIENT_KEY_MAX];
    int64_t expires_at; /* Unix seconds; not served from then on; 0 = no deadline */
    struct timespec stored;
    const char *content_type; /* static */
    const char *format_name;  /* static */
    char etag[ETAG_MAX];      /* of the body as it is */
    char gzip_etag[ETAG_MAX]; /* the same tag with "-gzip" inside the quotes */
    char *site_name;
    char *headers; /* name NUL value NUL ..., etag first */
    size_t headers_len;
    znp_warm_header_t *list; /* the headers, pointing into `headers` */
    size_t count;
    char *body;
    size_t len;
    /* the gzip form; gzip is NULL when the body is below GZIP_MIN_BYTES or does not shrink */
    char *gzip_headers; /* as headers, with gzip_etag, and content-encoding last */
    size_t gzip_headers_len;
    size_t gzip_headers_len_304; /* without content-encoding, which a 304 does not send */
    znp_warm_header_t *gzip_list;
    size_t gzip_count, gzip_count_304;
    char *gzip;
    size_t gzip_len;
} cached_t;

#define CACHE_BUCKETS 16384
#define CACHE_SLOTS   4096 /* generations by subscription id */

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cached_t *bucket_storage[CACHE_BUCKETS]; /* the buckets when hotmem has no memory */
static cached_t **cache_buckets = bucket_storage;  /* set once by cache_setup, before the first entry */
static cached_t *cache_head, *cache_tail;
static size_t cache_count;
static uint64_t cache_generation = 1;          /* bumped by every forget and clear */
static uint32_t slot_generations[CACHE_SLOTS]; /* bumped by a forget of an id in the slot */
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
static uint64_t bucket_seed;

/*
 * Seed the bucket hash, and move the buckets to hotmem (core/hotmem.h): a
 * download reads one bucket among thousands, and in a huge page that read
 * needs no page walk.
 */
static void cache_setup(void)
{
    cached_t **buckets = znp_hotmem_calloc(CACHE_BUCKETS, sizeof(*buckets));

    if (RAND_bytes((unsigned char *)&bucket_seed, sizeof(bucket_seed)) != 1)
        bucket_seed = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull;
    if (buckets != NULL)
        cache_buckets = buckets;
}

static size_t slot_of(int64_t subscription_id)
{
    return (size_t)((uint64_t)subscription_id % CACHE_SLOTS);
}

static uint64_t key_hash_of(const char *token)
{
    uint64_t h;

    pthread_once(&setup_once, cache_setup);
    h = 1469598103934665603ull ^ bucket_seed;
    for (size_t i = 0; i < TOKEN_CHARS; i++)
        h = (h ^ (unsigned char)token[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* An entry is one block (see cached_pack). */
static void cached_free(cached_t *a)
{
    znp_hotmem_free(a);
}

static void cached_release(void *ref)
{
    cached_t *a = ref;

    if (a != NULL && atomic_fetch_sub(&a->refs, 1) == 1)
        cached_free(a);
}

static void unlink_recency(cached_t *a)
{
    if (a->prev != NULL)
        a->prev->next = a->next;
    else
        cache_head = a->next;
    if (a->next != NULL)
        a->next->prev = a->prev;
    else
        cache_tail = a->prev;
    a->prev = a->next = NULL;
}

static void push_front(cached_t *a)
{
    a->next = cache_head;
    a->prev = NULL;
    if (cache_head != NULL)
        cache_head->prev = a;
    cache_head = a;
    if (cache_tail == NULL)
        cache_tail = a;
}

/* Unlink `a` and drop the cache's reference; the caller holds cache_lock. */
static void drop_cached(cached_t *a)
{
    cached_t **link = &cache_buckets[a->key_hash % CACHE_BUCKETS];

    while (*link != NULL && *link != a)
        link = &(*link)->chain;
    if (*link == a)
        __atomic_store_n(link, a->chain, __ATOMIC_RELAXED); /* cache_prefetch reads heads without the lock */
    unlink_recency(a);
    cache_count--;
    cached_release(a);
}

static int cache_enabled(const znp_config_t *config)
{
    return config->download.cache_entries > 0 && config->download.cache_ttl_s > 0;
}

/* Whether `a` may still be served; the caller holds cache_lock. */
static int cached_fresh(const znp_config_t *config, const cached_t *a)
{
    struct timespec now;

    if (a->slot_generation != slot_generations[slot_of(a->subscription_id)])
        return 0;
    if (a->expires_at > 0 && (int64_t)time(NULL) >= a->expires_at)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - a->stored.tv_sec) + (double)(now.tv_nsec - a->stored.tv_nsec) / 1e9 <
           (double)config->download.cache_ttl_s;
}

/*
 * Cache lines that a warm gzip response reads from the start of an entry:
 * the entry, then the gzip header list and about 320 bytes of headers.
 */
#define ENTRY_PREFETCH_LINES ((sizeof(cached_t) + 10 * sizeof(znp_warm_header_t) + 320) / 64)

/* Start loading `len` bytes at `start` (at most 4 KiB), one prefetch per cache line. */
static void prefetch_span(const void *start, size_t len)
{
    if (start == NULL)
        return;
    if (len > 4096)
        len = 4096; /* the hardware prefetcher follows a long copy by itself */
    for (size_t at = 0; at < len; at += 64)
        __builtin_prefetch((const char *)start + at);
}

/*
 * Start loading the bucket of key hash `hash` at step 0, and at step 1 the
 * first entry it lists, so that a lookup soon after waits less. Step 1 reads
 * the head without the lock: it may see an entry that is being dropped,
 * which is harmless because a prefetch never faults. It loads every line that
 * a warm response reads up to the gzip body (see cached_pack) at once, so
 * the misses overlap instead of coming one after another.
 */
static void cache_prefetch(uint64_t hash, int step)
{
    cached_t **bucket = &cache_buckets[hash % CACHE_BUCKETS];

    if (step == 0)
        __builtin_prefetch(bucket);
    else
        prefetch_span(__atomic_load_n(bucket, __ATOMIC_RELAXED), ENTRY_PREFETCH_LINES * 64);
}

/* The fresh entry of (token, client), whose key hash is `hash`, with one reference for the caller, or NULL. */
static cached_t *cache_acquire_hashed(const znp_config_t *config, uint64_t hash, const char *token,
                                      const char *client)
{
    cached_t *found = NULL;

    if (!cache_enabled(config))
        return NULL;
    pthread_mutex_lock(&cache_lock);
    for (cached_t *a = cache_buckets[hash % CACHE_BUCKETS]; a != NULL; a = a->chain) {
        if (a->key_hash != hash || CRYPTO_memcmp(a->token, token, TOKEN_CHARS) != 0 || strcmp(a->client, client) != 0)
            continue;
        if (!cached_fresh(config, a)) {
            drop_cached(a);
            break;
        }
        atomic_fetch_add(&a->refs, 1);
        a->used = 1;
        found = a;
        break;
    }
    pthread_mutex_unlock(&cache_lock);
    return found;
}

static cached_t *cache_acquire(const znp_config_t *config, const char *token, const char *client)
{
    return cache_enabled(config) ? cache_acquire_hashed(config, key_hash_of(token), token, client) : NULL;
}

/* The generation to pass to cache_put; take it before the first query of a download. */
static uint64_t cache_generation_now(void)
{
    uint64_t generation;

    pthread_mutex_lock(&cache_lock);
    generation = cache_generation;
    pthread_mutex_unlock(&cache_lock);
    return generation;
}

/* List `a` (the cache takes its own reference) unless an invalidation came after `generation`. */
static void cache_put(const znp_config_t *config, cached_t *a, uint64_t generation)
{
    size_t bucket;

    if (!cache_enabled(config))
        return;
    a->key_hash = key_hash_of(a->token);
    bucket = a->key_hash % CACHE_BUCKETS;
    pthread_mutex_lock(&cache_lock);
    if (generation != cache_generation) {
        pthread_mutex_unlock(&cache_lock);
        return;
    }
    for (cached_t *old = cache_buckets[bucket]; old != NULL; old = old->chain) {
        if (old->key_hash == a->key_hash && CRYPTO_memcmp(old->token, a->token, TOKEN_CHARS) == 0 &&
            strcmp(old->client, a->client) == 0) {
            drop_cached(old);
            break;
        }
    }
    /* each pass drops the oldest entry or clears its flag, so this ends */
    while (cache_count >= config->download.cache_entries && cache_tail != NULL) {
        cached_t *oldest = cache_tail;

        if (oldest->used && cached_fresh(config, oldest)) {
            oldest->used = 0;
            unlink_recency(oldest);
            push_front(oldest);
        } else {
            drop_cached(oldest);
        }
    }
    a->slot_generation = slot_generations[slot_of(a->subscription_id)];
    clock_gettime(CLOCK_MONOTONIC, &a->stored);
    atomic_fetch_add(&a->refs, 1);
    a->chain = cache_buckets[bucket];
    __atomic_store_n(&cache_buckets[bucket], a, __ATOMIC_RELAXED); /* cache_prefetch reads heads without the lock */
    push_front(a);
    cache_count++;
    pthread_mutex_unlock(&cache_lock);
}

void znp_download_cache_forget(int64_t subscription_id)
{
    if (subscription_id <= 0) {
        znp_download_cache_clear();
        return;
    }
    pthread_mutex_lock(&cache_lock);
    cache_generation++;
    slot_generations[slot_of(subscription_id)]++;
    pthread_mutex_unlock(&cache_lock);
}

void znp_download_cache_clear(void)
{
    pthread_mutex_lock(&cache_lock);
    cache_generation++;
    while (cache_head != NULL)
        drop_cached(cache_head);
    pthread_mutex_unlock(&cache_lock);
}

size_t znp_download_cache_size(void)
{
    size_t count;

    pthread_mutex_lock(&cache_lock);
    count = cache_count;
    pthread_mutex_unlock(&cache_lock);
    return count;
}

/* Write the quoted hex SHA-256 of the body into out (67 bytes with the NUL). */
/*
 * "<22 characters>": the first 128 bits of the body's SHA-256 in base64url.
 * Short, because every download sends a tag that is new to the connection's
 * HPACK table, so both ends encode and store every character of it.
 */
static void strong_etag(char out[ETAG_MAX], const char *body, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char digest[SHA256_DIGEST_LENGTH];
    size_t at = 1;
    uint32_t bits = 0;
    int pending = 0;

    SHA256((const unsigned char *)body, len, digest);
    out[0] = '"';
    for (size_t i = 0; i < ETAG_DIGEST_BYTES; i++) {
        bits = bits << 8 | digest[i];
        pending += 8;
        while (pending >= 6) {
            pending -= 6;
            out[at++] = alphabet[(bits >> pending) & 0x3f];
        }
    }
    if (pending > 0)
        out[at++] = alphabet[(bits << (6 - pending)) & 0x3f];
    out[at++] = '"';
    out[at] = '\0';
}

int znp_download_etag_matches(const char *if_none_match, const char *etag)
{
    size_t etag_len = strlen(etag);
    const char *p = if_none_match;

    if (p == NULL)
        return 0;
    /* RFC 9110 13.1.2: weak comparison, so W/"x" matches "x"; "*" matches any current representation */
    while (*p != '\0') {
        const char *start;

        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        if (*p == '*')
            return 1;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        start = p;
        if (*p == '"') {
            p++;
            while (*p != '\0' && *p != '"')
                p++;
            if (*p == '"')
                p++;
        } else {
            while (*p != '\0' && *p != ',' && *p != ' ' && *p != '\t')
                p++;
        }
        if ((size_t)(p - start) == etag_len && memcmp(start, etag, etag_len) == 0)
            return 1;
        while (*p != '\0' && *p != ',')
            p++;
    }
    return 0;
}

/* A qvalue (RFC 9110 12.4.2) in thousandths, or -1 when `len` bytes at `p` are not one. */
static int qvalue(const char *p, size_t len)
{
    int value, scale = 100;

    if (len == 0 || (p[0] != '0' && p[0] != '1'))
        return -1;
    value = (p[0] - '0') * 1000;
    if (len == 1)
        return value;
    if (p[1] != '.' || len > 5)
        return -1;
    for (size_t i = 2; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        value += (p[i] - '0') * scale;
        scale /= 10;
    }
    return value > 1000 ? -1 : value;
}

static int coding_is(const char *name, size_t len, const char *coding)
{
    return len == strlen(coding) && strncasecmp(name, coding, len) == 0;
}

int znp_download_accepts_gzip(const char *accept_encoding)
{
    int gzip = -1, identity = -1, star = -1; /* weights in thousandths, -1 = not listed */
    const char *p = accept_encoding;

    if (p == NULL)
        return 0;
    while (*p != '\0') {
        const char *name;
        size_t name_len;
        int weight = 1000, valid;

        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        name = p;
        while (*p != '\0' && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        name_len = (size_t)(p - name);
        valid = name_len > 0;
        /* parameters up to the next element; a malformed element is ignored as a whole */
        while (*p != '\0' && *p != ',') {
            const char *param;

            if (*p == ' ' || *p == '\t') {
                p++;
                continue;
            }
            if (*p != ';') {
                valid = 0;
                p++;
                continue;
            }
            p++;
            while (*p == ' ' || *p == '\t')
                p++;
            param = p;
            while (*p != '\0' && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
                p++;
            if (p - param >= 2 && (param[0] == 'q' || param[0] == 'Q') && param[1] == '=') {
                weight = qvalue(param + 2, (size_t)(p - param - 2));
                if (weight < 0)
                    valid = 0;
            }
        }
        if (!valid)
            continue;
        /* the first mention of a coding counts */
        if ((coding_is(name, name_len, "gzip") || coding_is(name, name_len, "x-gzip")) && gzip < 0)
            gzip = weight;
        else if (coding_is(name, name_len, "identity") && identity < 0)
            identity = weight;
        else if (coding_is(name, name_len, "*") && star < 0)
            star = weight;
    }
    if (gzip < 0)
        gzip = star < 0 ? 0 : star;
    /* an unlisted identity is acceptable but preferred to nothing the client named (RFC 9110 12.5.3) */
    if (identity < 0)
        identity = star < 0 ? 0 : star;
    return gzip > 0 && gzip >= identity;
}

int znp_download_content_disposition(char *out, size_t size, const char *name)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = 0;
    int ascii_only = 1, fallback_chars = 0;
    int n;

    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        if (*p >= 0x80)
            ascii_only = 0;
    }
    n = snprintf(out, size, "attachment; filename=\"");
    if (n < 0 || (size_t)n >= size)
        return ZNP_E_INTERNAL;
    len = (size_t)n;
    /* the ASCII fallback keeps printable characters except quote and backslash, and writes "_" for each non-ASCII character */
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        char c;

        if (*p >= 0x80) {
            if ((*p & 0xC0) == 0x80)
                continue; /* continuation byte */
            c = '_';
        } else if (*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\') {
            continue;
        } else {
            c = (char)*p;
        }
        if (len + 2 >= size)
            return ZNP_E_INTERNAL;
        out[len++] = c;
        fallback_chars++;
    }
    if (fallback_chars == 0) {
        n = snprintf(out + len, size - len, "subscription");
        if (n < 0 || (size_t)n >= size - len)
            return ZNP_E_INTERNAL;
        len += (size_t)n;
    }
    if (len + 2 >= size)
        return ZNP_E_INTERNAL;
    out[len++] = '"';
    out[len] = '\0';
    if (ascii_only)
        return 0;
    n = snprintf(out + len, size - len, "; filename*=UTF-8''");
    if (n < 0 || (size_t)n >= size - len)
        return ZNP_E_INTERNAL;
    len += (size_t)n;
    /* RFC 5987 attr-char: ALPHA / DIGIT / "!" / "#" / "$" / "&" / "+" / "-" / "." / "^" / "_" / "`" / "|" / "~" */
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        unsigned char c = *p;
        int plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    (c != 0 && strchr("!#$&+-.^_`|~", c) != NULL);

        if (c < 0x20 || c == 0x7f)
            continue;
        if (len + 4 >= size)
            return ZNP_E_INTERNAL;
        if (plain) {
            out[len++] = (char)c;
        } else {
            out[len++] = '%';
            out[len++] = hex[c >> 4];
            out[len++] = hex[c & 0xf];
        }
    }
    out[len] = '\0';
    return 0;
}

/*
 * The client key of an entry: the browser page in the caller's language, or
 * the client format, the engine version and the language of the notices.
 * Returns 0 when the key does not fit (the response is then not cached).
 */
static int client_key(char out[CLIENT_KEY_MAX], const znp_formats_client_t *client, znp_locale_t locale)
{
    int page = client->matched_by == ZNP_FORMATS_MATCH_BROWSER;
    const char *format = page ? "page" : znp_formats_format_name(client->format);
    const char *version = page ? "" : client->version;
    size_t format_len = strlen(format), version_len = strlen(version);
    size_t at = 0;

    /* "<format>|<version>|<locale>", built by hand: snprintf took about 1,200 instructions per download (callgrind) */
    if ((unsigned)locale > 9 || format_len + version_len + 4 >= CLIENT_KEY_MAX)
        return 0;
    memcpy(out, format, format_len);
    at += format_len;
    out[at++] = '|';
    memcpy(out + at, version, version_len);
    at += version_len;
    out[at++] = '|';
    out[at++] = (char)('0' + (int)locale);
    out[at] = '\0';
    return 1;
}

/*
 * A per-thread memo of client detection for the warm path. Clients poll
 * with the same few User-Agent strings over and over, and detection takes
 * about 1,500 instructions per download (callgrind) where a hit takes a few
 * hundred. Detection depends on the flag, User-Agent and Accept values
 * alone, so a slot keyed by their bytes gives its result exactly. A slot is
 * replaced when another key hashes to it; longer keys are not kept.
 */
#define DETECT_SLOTS    32
#define DETECT_TEXT_MAX 256

typedef struct detect_slot {
    uint64_t hash;
    size_t len;                  /* of `text`; 0 for an empty slot */
    char text[DETECT_TEXT_MAX];  /* flag NUL user-agent NUL accept */
    char prefix[CLIENT_KEY_MAX]; /* the client key up to its locale: "<format>|<version>|" */
    size_t prefix_len;
} detect_slot_t;

static __thread detect_slot_t detect_slots[DETECT_SLOTS];

/* Append `text` (NULL as "") and its NUL to `buf`; 0 when it does not fit. */
static int detect_text_add(char *buf, size_t *len, const char *text)
{
    size_t n = text != NULL ? strlen(text) : 0;

    if (*len + n + 1 > DETECT_TEXT_MAX)
        return 0;
    memcpy(buf + *len, text != NULL ? text : "", n);
    buf[*len + n] = '\0';
    *len += n + 1;
    return 1;
}

/* A hash of `len` bytes at `text`: FNV-1a over 8-byte words, the last one zero-padded. */
static uint64_t detect_hash(const char *text, size_t len)
{
    uint64_t h = 1469598103934665603ull;

    for (size_t at = 0; at < len; at += 8) {
        uint64_t word = 0;

        memcpy(&word, text + at, len - at < 8 ? len - at : 8);
        h = (h ^ word) * 1099511628211ull;
        h ^= h >> 32;
    }
    return h;
}

/* client_key() of the detected client, through the memo when the key is short enough. */
static int detected_client_key(char out[CLIENT_KEY_MAX], const char *flag, const char *user_agent, const char *accept,
                               znp_locale_t locale)
{
    char text[DETECT_TEXT_MAX];
    size_t len = 0;
    detect_slot_t *slot = NULL;
    znp_formats_client_t client;
    uint64_t hash = 0;

    if ((unsigned)locale > 9)
        return 0;
    if (detect_text_add(text, &len, flag) && detect_text_add(text, &len, user_agent) &&
        detect_text_add(text, &len, accept)) {
        hash = detect_hash(text, len);
        slot = &detect_slots[hash % DETECT_SLOTS];
        if (slot->len == len && slot->hash == hash && memcmp(slot->text, text, len) == 0) {
            memcpy(out, slot->prefix, slot->prefix_len);
            out[slot->prefix_len] = (char)('0' + (int)locale);
            out[slot->prefix_len + 1] = '\0';
            return 1;
        }
    }
    znp_formats_detect(&client, flag, user_agent, accept);
    if (!client_key(out, &client, locale))
        return 0;
    if (slot != NULL) {
        /* the key minus its one-digit locale */
        slot->prefix_len = strlen(out) - 1;
        memcpy(slot->prefix, out, slot->prefix_len);
        memcpy(slot->text, text, len);
        slot->hash = hash;
        slot->len = len;
    }
    return 1;
}

/* A growing header block: name NUL value NUL ... */
typedef struct header_block {
    char *data;
    size_t len, cap;
} header_block_t;

/* Append `len` bytes to the block. Returns 0 or ZNP_E_INTERNAL. */
static int block_append(header_block_t *block, const char *bytes, size_t len)
{
    if (block->len + len > block->cap) {
        size_t grown_cap = block->cap > 0 ? block->cap * 2 : 256;
        char *grown;

        while (grown_cap < block->len + len)
            grown_cap *= 2;
        grown = realloc(block->data, grown_cap);
        if (grown == NULL)
            return ZNP_E_INTERNAL;
        block->data = grown;
        block->cap = grown_cap;
    }
    memcpy(block->data + block->len, bytes, len);
    block->len += len;
    return 0;
}

/* Append "name NUL value NUL" to the block. Returns 0 or ZNP_E_INTERNAL. */
static int add_header(header_block_t *block, const char *name, const char *value)
{
    int rc = block_append(block, name, strlen(name) + 1);

    return rc != 0 ? rc : block_append(block, value, strlen(value) + 1);
}

/*
 * The headers of one encoding: etag, vary, the headers of `shared`, and
 * content-encoding when `encoding` is not NULL. *len_304 receives the length
 * without content-encoding. Returns 0 or ZNP_E_INTERNAL.
 */
static int encoding_headers(header_block_t *out, size_t *len_304, const char *etag, const header_block_t *shared,
                            const char *encoding)
{
    int rc = add_header(out, "etag", etag);

    rc = rc != 0 ? rc : add_header(out, "vary", "Accept-Encoding");
    rc = rc != 0 || shared->len == 0 ? rc : block_append(out, shared->data, shared->len);
    *len_304 = out->len;
    if (rc == 0 && encoding != NULL)
        rc = add_header(out, "content-encoding", encoding);
    return rc;
}

/*
 * The gzip form of `len` bytes at `body`, as *out (malloc'd) and *out_len.
 * Returns 1 when it is smaller than the body, else 0 with nothing kept (also
 * when zlib fails: the body is then sent as it is).
 */
static int gzip_body(const char *body, size_t len, char **out, size_t *out_len)
{
    z_stream z;
    char *buf = NULL, *shrunk;
    uLong bound;
    int rc;

    *out = NULL;
    *out_len = 0;
    if (len > UINT_MAX)
        return 0;
    memset(&z, 0, sizeof(z));
    /* 15 + 16: the largest window with the gzip wrapper, whose mtime zlib leaves at 0, so equal bodies compress equally */
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return 0;
    bound = deflateBound(&z, (uLong)len);
    if (bound > UINT_MAX || (buf = malloc(bound)) == NULL) {
        deflateEnd(&z);
        return 0;
    }
    z.next_in = (const Bytef *)body;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)buf;
    z.avail_out = (uInt)bound;
    rc = deflate(&z, Z_FINISH);
    deflateEnd(&z);
    if (rc != Z_STREAM_END || z.total_out >= len) {
        free(buf);
        return 0;
    }
    shrunk = realloc(buf, z.total_out);
    *out = shrunk != NULL ? shrunk : buf;
    *out_len = z.total_out;
    return 1;
}

/*
 * Build the cache entry for `file`, taking over its body, with one reference
 * for the caller. Its headers are the ETag, Vary and, for a client file,
 * subscription-userinfo, profile-update-interval and content-disposition.
 * A body of GZIP_MIN_BYTES or more that shrinks also gets its gzip form.
 * NULL when out of memory.
 */
/* Free the separately allocated parts of an entry that cached_build has not packed yet. */
static void draft_dispose(cached_t *d)
{
    free(d->site_name);
    free(d->headers);
    free(d->body);
    free(d->gzip_headers);
    free(d->gzip);
}

/* The number of headers in the first `len` bytes of a block of name NUL value NUL ... */
static size_t block_count(const char *block, size_t len)
{
    size_t nuls = 0;

    for (size_t i = 0; i < len; i++)
        nuls += block[i] == '\0';
    return nuls / 2;
}

/* Fill `out` with the headers of the block at `block`, whose strings stay in the block. */
static void block_list(const char *block, size_t len, znp_warm_header_t *out)
{
    size_t at = 0;

    while (at < len) {
        out->name = block + at;
        out->name_len = strlen(out->name);
        out->value = out->name + out->name_len + 1;
        out->value_len = strlen(out->value);
        at += out->name_len + out->value_len + 2;
        out++;
    }
}

/* `size` rounded up to a multiple of 8, so a header list after it is aligned. */
static size_t align8(size_t size)
{
    return (size + 7) & ~(size_t)7;
}

/*
 * Copy draft `d` into one block: the entry, then the gzip header list,
 * headers and body, the plain header list, headers and body, and the site
 * name. A warm download then reads one allocation, often one page, instead
 * of five scattered ones: with thousands of entries each scattered read is a
 * cache and TLB miss. The header lists spare the transport parsing the
 * headers on each request.
 */
static cached_t *cached_pack(const cached_t *d)
{
    size_t site_len = strlen(d->site_name) + 1;
    size_t count = block_count(d->headers, d->headers_len);
    size_t gzip_count = d->gzip != NULL ? block_count(d->gzip_headers, d->gzip_headers_len) : 0;
    size_t size = sizeof(*d) + gzip_count * sizeof(znp_warm_header_t) + align8(d->gzip_headers_len + d->gzip_len) +
                  count * sizeof(znp_warm_header_t) + d->headers_len + d->len + 1 + site_len;
    cached_t *a = znp_hotmem_alloc(size);
    char *at;

    if (a == NULL)
        return NULL;
    memcpy(a, d, sizeof(*a));
    atomic_init(&a->refs, 1);
    at = (char *)(a + 1);
    if (d->gzip != NULL) {
        a->gzip_list = (znp_warm_header_t *)(void *)at;
        a->gzip_count = gzip_count;
        a->gzip_count_304 = block_count(d->gzip_headers, d->gzip_headers_len_304);
        at += gzip_count * sizeof(znp_warm_header_t);
        a->gzip_headers = memcpy(at, d->gzip_headers, d->gzip_headers_len);
        block_list(a->gzip_headers, a->gzip_headers_len, a->gzip_list);
        at += d->gzip_headers_len;
        a->gzip = memcpy(at, d->gzip, d->gzip_len);
        at += align8(d->gzip_headers_len + d->gzip_len) - d->gzip_headers_len;
    }
    a->list = (znp_warm_header_t *)(void *)at;
    a->count = count;
    at += count * sizeof(znp_warm_header_t);
    a->headers = memcpy(at, d->headers, d->headers_len);
    block_list(a->headers, a->headers_len, a->list);
    at += d->headers_len;
    a->body = memcpy(at, d->body, d->len);
    a->body[d->len] = '\0';
    at += d->len + 1;
    a->site_name = memcpy(at, d->site_name, site_len);
    return a;
}

static cached_t *cached_build(znp_ctx_t *ctx, const char *token, const char *client, const subscription_t *sub,
                              rendered_t *file, reason_t reason, const char *site_name)
{
    cached_t d, *a = NULL;
    char value[160];
    char disposition[sizeof(((znp_site_snapshot_t *)NULL)->name) * 3 + 96];
    header_block_t shared = {0}, plain = {0}, gzipped = {0};
    size_t unused;
    int rc = 0;

    memset(&d, 0, sizeof(d));
    d.subscription_id = sub->id;
    memcpy(d.token, token, TOKEN_CHARS);
    snprintf(d.client, sizeof(d.client), "%s", client);
    /* an expired subscription's notice stays right until a write renews it, which notifies */
    d.expires_at = reason == REASON_EXPIRED ? 0 : sub->expires_at;
    d.content_type = file->content_type;
    d.format_name = file->format_name;
    d.body = file->body;
    d.len = file->len;
    file->body = NULL;
    d.site_name = strdup(site_name);
    if (d.site_name == NULL)
        goto failed;
    strong_etag(d.etag, d.body, d.len);
    /* RFC 9110 8.8.3: each encoding is its own representation, so it has its own strong tag */
    snprintf(d.gzip_etag, sizeof(d.gzip_etag), "%.*s-gzip\"", (int)strlen(d.etag) - 1, d.etag);
    if (!file->is_page) {
        snprintf(value, sizeof(value), "upload=0; download=%" PRId64 "; total=%" PRId64 "; expire=%" PRId64,
                 sub->used_bytes, sub->total_bytes, sub->expires_at);
        rc = add_header(&shared, "subscription-userinfo", value);
        snprintf(value, sizeof(value), "%" PRIu32, ctx->config->site.subscription_update_hours);
        rc = rc != 0 ? rc : add_header(&shared, "profile-update-interval", value);
        rc = rc != 0 ? rc : znp_download_content_disposition(disposition, sizeof(disposition), site_name);
        rc = rc != 0 ? rc : add_header(&shared, "content-disposition", disposition);
    }
    rc = rc != 0 ? rc : encoding_headers(&plain, &unused, d.etag, &shared, NULL);
    if (rc == 0 && d.len >= GZIP_MIN_BYTES && gzip_body(d.body, d.len, &d.gzip, &d.gzip_len))
        rc = encoding_headers(&gzipped, &d.gzip_headers_len_304, d.gzip_etag, &shared, "gzip");
    d.headers = plain.data;
    d.headers_len = plain.len;
    d.gzip_headers = gzipped.data;
    d.gzip_headers_len = gzipped.len;
    free(shared.data);
    if (rc == 0)
        a = cached_pack(&d);

failed:
    draft_dispose(&d);
    return a;
}

/* What one request gets from entry `a`: status 200 or 304, the headers and the body of one encoding. */
typedef struct answer {
    int status;
    const znp_warm_header_t *headers;
    size_t header_count;
    const char *body;
    size_t len;
} answer_t;

/*
 * Pick the encoding of `a` for a request with these Accept-Encoding and
 * If-None-Match values (either may be NULL). Either encoding's tag makes a
 * 304, so a client that changes its Accept-Encoding keeps its revalidation.
 */
static void choose_answer(const cached_t *a, const char *accept_encoding, const char *if_none_match, answer_t *out)
{
    int gzip = a->gzip != NULL && znp_download_accepts_gzip(accept_encoding);
    int unchanged = znp_download_etag_matches(if_none_match, a->etag) ||
                    (a->gzip != NULL && znp_download_etag_matches(if_none_match, a->gzip_etag));

    out->status = unchanged ? 304 : 200;
    if (gzip) {
        out->headers = a->gzip_list;
        out->header_count = unchanged ? a->gzip_count_304 : a->gzip_count;
        out->body = a->gzip;
        out->len = a->gzip_len;
    } else {
        out->headers = a->list;
        out->header_count = a->count;
        out->body = a->body;
        out->len = a->len;
    }
}

/* Send entry `a` over ctx->stream, or fill the typed response for gRPC. Returns 0 or a negative znp_err. */
static int send_cached(znp_ctx_t *ctx, const cached_t *a, znp_subscription_download_response_t *resp)
{
    znp_stream_t *stream = ctx->stream;
    answer_t answer;
    int rc;

    if (stream == NULL) {
        resp->format = znp_arena_strdup(ctx->arena, a->format_name);
        resp->content_type = znp_arena_strdup(ctx->arena, a->content_type);
        resp->filename = znp_arena_strdup(ctx->arena, a->site_name);
        resp->body = znp_arena_strndup(ctx->arena, a->body, a->len);
        if (resp->format == NULL || resp->content_type == NULL || resp->filename == NULL || resp->body == NULL)
            return ZNP_E_INTERNAL;
        resp->has.format = resp->has.content_type = resp->has.filename = resp->has.body = ZNP_SET;
        return 0;
    }
    choose_answer(a, stream->accept_encoding, stream->if_none_match, &answer);
    for (size_t i = 0; i < answer.header_count; i++) {
        if ((rc = znp_stream_header(stream, answer.headers[i].name, answer.headers[i].value)) != 0)
            return rc;
    }
    if (answer.status == 304) {
        stream->status = 304;
        return znp_stream_begin(stream, a->content_type, NULL);
    }
    if ((rc = znp_stream_begin(stream, a->content_type, NULL)) != 0)
        return rc;
    return znp_stream_write(stream, answer.body, answer.len);
}

/*
 * The file of an active subscription, rendered from the published template
 * that applies, or the built-in format when none applies or it fails.
 * Returns 0 or a negative znp_err.
 */
static int render_active(znp_ctx_t *ctx, rendered_t *file, const znp_formats_client_t *client,
                         const subscription_t *sub)
{
    PGresult *tmpl_res = NULL;
    int rc;

    if ((rc = find_template(ctx, client, sub, &tmpl_res)) != 0)
        goto cleanup;
    rc = PQntuples(tmpl_res) == 1 ? render_template(ctx, file, client, sub, tmpl_res) : 0;
    if (rc == 1)
        rc = 0;
    else
        rc = render_file(ctx, file, client, sub, REASON_NONE);

cleanup:
    PQclear(tmpl_res);
    return rc;
}

static int download(znp_ctx_t *ctx, const char *token, const char *flag, const char *format,
                    znp_subscription_download_response_t *resp)
{
    znp_site_snapshot_t site;
    subscription_t sub;
    znp_formats_client_t client;
    rendered_t file = {0};
    reason_t reason;
    cached_t *a = NULL;
    const char *accept = ctx->stream != NULL ? ctx->stream->accept : NULL;
    char client_text[CLIENT_KEY_MAX];
    int keyed, rc;
    uint64_t generation;

    if (!token_well_formed(token))
        return ZNP_E_NOT_FOUND;
    znp_formats_detect(&client, flag != NULL && flag[0] != '\0' ? flag : format, ctx->user_agent, accept);
    keyed = client_key(client_text, &client, ctx->locale);
    if (keyed && (a = cache_acquire(ctx->config, token, client_text)) != NULL) {
        rc = admit_token(ctx, token);
        if (rc == 0)
            rc = send_cached(ctx, a, resp);
        cached_release(a);
        return rc;
    }

    /* before the first query, so an invalidation while this renders keeps the result out of the cache */
    generation = cache_generation_now();
    rc = load_subscription(ctx, token, &sub);
    if (rc != 0)
        return rc;
    /* only known tokens get a bucket, so made-up tokens cannot crowd out real ones */
    if ((rc = admit_token(ctx, token)) != 0)
        return rc;
    reason = blocked_reason(&sub);
    znp_site_cache_get(&site);

    if (client.matched_by == ZNP_FORMATS_MATCH_BROWSER)
        rc = render_page(&file, site.name, ctx->locale, reason);
    else if (reason != REASON_NONE)
        /* a blocked subscription gets the built-in file with its informational entry */
        rc = render_file(ctx, &file, &client, &sub, reason);
    else
        rc = render_active(ctx, &file, &client, &sub);
    if (rc != 0)
        goto cleanup;
    a = cached_build(ctx, token, keyed ? client_text : "", &sub, &file, reason, site.name);
    if (a == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    if (keyed)
        cache_put(ctx->config, a, generation);
    rc = send_cached(ctx, a, resp);

cleanup:
    cached_release(a);
    free(file.body);
    return rc;
}

int znp_op_download_subscription(znp_ctx_t *ctx, const znp_download_subscription_request_t *req,
                                 znp_download_subscription_response_t *resp)
{
    return download(ctx, req->token, req->flag, req->format, resp);
}

int znp_op_download_subscription_short(znp_ctx_t *ctx, const znp_download_subscription_short_request_t *req,
                                       znp_download_subscription_short_response_t *resp)
{
    return download(ctx, req->token, req->flag, req->format, resp);
}

/*
 * The query of a warm download: `flag` and `format` with plain values only
 * ([A-Za-z0-9._-], at most 64 bytes, each at most once). Anything else
 * (escapes, other names) returns 0, and the request then takes the full path
 * with the strict codec.
 */
static int plain_query(const char *query, size_t len, char flag[65], char format[65])
{
    size_t at = 0;
    int seen_flag = 0, seen_format = 0;

    flag[0] = format[0] = '\0';

    while (query != NULL && at < len) {
        size_t end = at, eq, value_len;
        char *target;
        int *seen;

        while (end < len && query[end] != '&')
            end++;
        for (eq = at; eq < end && query[eq] != '='; eq++)
            ;
        if (eq - at == 4 && memcmp(query + at, "flag", 4) == 0) {
            target = flag;
            seen = &seen_flag;
        } else if (eq - at == 6 && memcmp(query + at, "format", 6) == 0) {
            target = format;
            seen = &seen_format;
        } else {
            return 0;
        }
        value_len = eq < end ? end - eq - 1 : 0;
        if (*seen || value_len > 64)
            return 0;
        for (size_t i = 0; i < value_len; i++) {
            char c = query[eq + 1 + i];

            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  c == '.'))
                return 0;
        }
        memcpy(target, query + eq + 1, value_len);
        target[value_len] = '\0';
        *seen = 1;
        at = end + 1;
    }
    return 1;
}

/* The token path parameter of either download route, or NULL. */
static const char *token_param(const znp_param_t *params, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(params[i].name, "token") == 0)
            return params[i].value;
    }
    return NULL;
}

/*
 * The hint of both download routes (core/warm.h). The token's cache bucket
 * and rate bucket are cold memory among thousands of others. Both levels of
 * each (the bucket or slot, then the entry it names) start loading here, so
 * the loads overlap the transport's checks of the request.
 */
static void hint_download(const znp_param_t *path_params, size_t path_param_count, znp_warm_hint_t *hint)
{
    const char *token = token_param(path_params, path_param_count);

    if (token == NULL || !token_well_formed(token))
        return;
    hint->values[0] = key_hash_of(token);
    hint->values[1] = token_hash(token, TOKEN_CHARS);
    cache_prefetch(hint->values[0], 0);
    limiter_prefetch(hint->values[1], 0);
    cache_prefetch(hint->values[0], 1);
    limiter_prefetch(hint->values[1], 1);
    hint->set = 1;
}

/* Serve a cached response of either download route on the event loop, with no query (core/warm.h). */
static int warm_download(const znp_warm_request_t *request, znp_warm_response_t *response)
{
    const char *token = token_param(request->path_params, request->path_param_count);
    char flag[65], format[65], client_text[CLIENT_KEY_MAX];
    answer_t answer;
    cached_t *a;
    uint64_t hash, limit_hash;
    int retry_after = 0;
    int keyed, rc;

    if (token == NULL || !plain_query(request->query, request->query_len, flag, format))
        return 0;
    if (request->hint->set) {
        hash = request->hint->values[0];
        limit_hash = request->hint->values[1];
    } else {
        if (!token_well_formed(token))
            return 0;
        hash = key_hash_of(token);
        limit_hash = token_hash(token, TOKEN_CHARS); /* token_well_formed checked its length */
        cache_prefetch(hash, 0);
        limiter_prefetch(limit_hash, 0);
        cache_prefetch(hash, 1);
        limiter_prefetch(limit_hash, 1);
    }
    keyed = detected_client_key(client_text, flag[0] != '\0' ? flag : format, request->user_agent, request->accept,
                                request->locale);
    if (!keyed)
        return 0;
    a = cache_acquire_hashed(request->config, hash, token, client_text);
    if (a == NULL)
        return 0;
    rc = take_hashed(token, TOKEN_CHARS, limit_hash, request->request_id, &retry_after);
    if (rc != 0) {
        cached_release(a);
        response->retry_after = retry_after;
        return rc;
    }
    choose_answer(a, request->accept_encoding, request->if_none_match, &answer);
    /* h2o copies the body into its frames only after it has encoded the headers */
    if (answer.status == 200)
        prefetch_span(answer.body, answer.len);
    response->status = answer.status;
    response->content_type = a->content_type;
    response->headers = answer.headers;
    response->header_count = answer.header_count;
    response->body = answer.body;
    response->len = answer.len;
    response->release = cached_release;
    response->ref = a;
    return 1;
}

int znp_download_register_warm(void)
{
    int rc = znp_warm_register("download_subscription", warm_download, hint_download);

    return rc != 0 ? rc : znp_warm_register("download_subscription_short", warm_download, hint_download);
}
