/*
 * Public subscription download: GET /api/v1/subscriptions/{token} and its
 * alias GET /s/{token}. The token is the credential, so the row is found
 * through the unique token index and the stored token is then compared in
 * constant time. The file is rendered with the built-in formats of
 * src/formats for the client that src/formats detects; browsers get a short
 * page instead of nodes. Over HTTP the body goes out through ctx->stream
 * with its own content type and headers; over gRPC the typed response
 * carries the same file.
 */
#include "download/download.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/sql.h"
#include "core/log.h"
#include "core/stream.h"
#include "download/internal.h"
#include "formats/formats.h"
#include "identity/identity.h"
#include "operations.gen.h"
#include "protect/protect.h"
#include "system/site.h"
#include "template/template.h"

#define LOG_MODULE  "download"
#define TOKEN_CHARS 22 /* 128 bits in base64url without padding */

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
    int64_t expires_at; /* Unix seconds, 0 when it never expires */
    int64_t total_bytes; /* 0 = unlimited */
    int64_t used_bytes;
    int expired; /* expires_at has passed by the database clock */
    int64_t template_id; /* 0 when the subscription names no template */
    int user_active;     /* the owner's account is active */
    char stamp[40];      /* newest update time of the plan's nodes, see load_subscription */
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

/* Take one download from the bucket of `token`. Returns 0 or ZNP_E_TOO_MANY_REQUESTS with err->retry_after. */
static int admit_token(znp_ctx_t *ctx, const char *token)
{
    static const znp_rate_t rate = {TOKEN_RATE_PER_MINUTE, TOKEN_RATE_BURST};
    znp_rate_verdict_t verdict;

    pthread_once(&limiter_once, limiter_create);
    if (token_limiter == NULL) {
        ZNP_ERROR(LOG_MODULE, ctx->request_id, "per-token rate limiter unavailable: out of memory");
        return 0;
    }
    znp_limiter_take(token_limiter, token, strlen(token), rate, &verdict);
    if (verdict.allowed)
        return 0;
    ZNP_INFO(LOG_MODULE, ctx->request_id, "subscription download rate-limited for one token");
    if (ctx->err == NULL)
        return ZNP_E_TOO_MANY_REQUESTS;
    znp_error_set(ctx->err, ZNP_E_TOO_MANY_REQUESTS, NULL, NULL);
    ctx->err->retry_after = verdict.retry_after_s > 0 ? (int)verdict.retry_after_s : 1;
    return ZNP_E_TOO_MANY_REQUESTS;
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
    /*
     * Writes to entries, bindings, plan links and credentials empty the
     * download cache through NOTIFY znp_eligibility, and at once on the
     * instance that wrote. A node's status has no notification, so the newest
     * update time of the plan's nodes is part of the cache key. So a node put
     * into maintenance or disabled is never served from a cached file.
     */
    static const char sql[] =
        "SELECT q.id, q.status, q.token, coalesce(extract(epoch FROM q.expires_at)::bigint, 0),"
        " q.traffic_total_bytes, q.traffic_used_bytes,"
        " q.expires_at IS NOT NULL AND q.expires_at <= now(), coalesce(q.template_id, 0), u.status = 1,"
        " coalesce((SELECT max(n.updated_at)::text FROM nodes n WHERE n.id IN (SELECT b.node_id FROM plan_bindings pb"
        "  JOIN protocol_bindings b ON b.id = pb.binding_id WHERE pb.plan_id = q.plan_id)), '')"
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
    snprintf(out->stamp, sizeof(out->stamp), "%s", PQgetvalue(res, 0, 9));

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
 * Rendered bodies of active subscriptions, keyed by subscription id, source
 * (template id and published version, or the built-in format), client
 * format and locale, so one token can never get another subscription's
 * body. Entries older than download.cache_ttl_s are never served, which
 * bounds how long a write on another instance stays unseen; writes on this
 * instance and NOTIFY znp_subscriptions clear entries sooner. Least recently
 * used entries go first once download.cache_entries is reached.
 */
typedef struct cache_entry {
    struct cache_entry *prev, *next; /* recency list, most recent first */
    struct cache_entry *chain;       /* hash bucket */
    int64_t subscription_id;
    char *key;
    char *body;
    size_t len;
    const char *content_type; /* static */
    const char *format_name;  /* static */
    char etag[68];
    struct timespec stored;
} cache_entry_t;

#define CACHE_BUCKETS 4096

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cache_entry_t *cache_buckets[CACHE_BUCKETS];
static cache_entry_t *cache_head, *cache_tail;
static size_t cache_count;

static size_t key_bucket(const char *key)
{
    uint64_t h = 1469598103934665603ull;

    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % CACHE_BUCKETS);
}

static void unlink_recency(cache_entry_t *e)
{
    if (e->prev != NULL)
        e->prev->next = e->next;
    else
        cache_head = e->next;
    if (e->next != NULL)
        e->next->prev = e->prev;
    else
        cache_tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(cache_entry_t *e)
{
    e->next = cache_head;
    e->prev = NULL;
    if (cache_head != NULL)
        cache_head->prev = e;
    cache_head = e;
    if (cache_tail == NULL)
        cache_tail = e;
}

/* Unlink and free `e`; the caller holds cache_lock. */
static void drop_entry(cache_entry_t *e)
{
    cache_entry_t **link = &cache_buckets[key_bucket(e->key)];

    while (*link != NULL && *link != e)
        link = &(*link)->chain;
    if (*link == e)
        *link = e->chain;
    unlink_recency(e);
    cache_count--;
    free(e->key);
    free(e->body);
    free(e);
}

static double age_seconds(const struct timespec *since)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) + (double)(now.tv_nsec - since->tv_nsec) / 1e9;
}

/* Copy the fresh entry of `key` into out and etag. Returns 1 on a hit, 0 otherwise. */
static int cache_get(const znp_config_t *config, const char *key, rendered_t *out, char etag[68])
{
    int hit = 0;

    if (config->download.cache_entries == 0 || config->download.cache_ttl_s == 0)
        return 0;
    pthread_mutex_lock(&cache_lock);
    for (cache_entry_t *e = cache_buckets[key_bucket(key)]; e != NULL; e = e->chain) {
        if (strcmp(e->key, key) != 0)
            continue;
        if (age_seconds(&e->stored) >= (double)config->download.cache_ttl_s) {
            drop_entry(e);
            break;
        }
        out->body = malloc(e->len + 1);
        if (out->body == NULL)
            break;
        memcpy(out->body, e->body, e->len + 1);
        out->len = e->len;
        out->content_type = e->content_type;
        out->format_name = e->format_name;
        memcpy(etag, e->etag, sizeof(e->etag));
        unlink_recency(e);
        push_front(e);
        hit = 1;
        break;
    }
    pthread_mutex_unlock(&cache_lock);
    return hit;
}

/* Store a copy of `file` under `key`. Out of memory only skips the store. */
static void cache_put(const znp_config_t *config, int64_t subscription_id, const char *key, const rendered_t *file,
                      const char *etag)
{
    cache_entry_t *e;
    size_t bucket = key_bucket(key);

    if (config->download.cache_entries == 0 || config->download.cache_ttl_s == 0)
        return;
    e = calloc(1, sizeof(*e));
    if (e == NULL)
        return;
    e->key = strdup(key);
    e->body = malloc(file->len + 1);
    if (e->key == NULL || e->body == NULL) {
        free(e->key);
        free(e->body);
        free(e);
        return;
    }
    memcpy(e->body, file->body, file->len);
    e->body[file->len] = '\0';
    e->len = file->len;
    e->subscription_id = subscription_id;
    e->content_type = file->content_type;
    e->format_name = file->format_name;
    memcpy(e->etag, etag, sizeof(e->etag));
    clock_gettime(CLOCK_MONOTONIC, &e->stored);

    pthread_mutex_lock(&cache_lock);
    for (cache_entry_t *old = cache_buckets[bucket]; old != NULL; old = old->chain) {
        if (strcmp(old->key, key) == 0) {
            drop_entry(old);
            break;
        }
    }
    while (cache_count >= config->download.cache_entries && cache_tail != NULL)
        drop_entry(cache_tail);
    e->chain = cache_buckets[bucket];
    cache_buckets[bucket] = e;
    push_front(e);
    cache_count++;
    pthread_mutex_unlock(&cache_lock);
}

void znp_download_cache_forget(int64_t subscription_id)
{
    pthread_mutex_lock(&cache_lock);
    for (cache_entry_t *e = cache_head; e != NULL;) {
        cache_entry_t *next = e->next;

        if (subscription_id <= 0 || e->subscription_id == subscription_id)
            drop_entry(e);
        e = next;
    }
    pthread_mutex_unlock(&cache_lock);
}

void znp_download_cache_clear(void)
{
    znp_download_cache_forget(0);
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
static void strong_etag(char out[68], const char *body, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char digest[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)body, len, digest);
    out[0] = '"';
    for (size_t i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[1 + 2 * i] = hex[digest[i] >> 4];
        out[2 + 2 * i] = hex[digest[i] & 0xf];
    }
    out[1 + 2 * SHA256_DIGEST_LENGTH] = '"';
    out[2 + 2 * SHA256_DIGEST_LENGTH] = '\0';
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

static int send_headers(znp_ctx_t *ctx, const subscription_t *sub, const rendered_t *file, const char *etag,
                        const char *disposition)
{
    znp_stream_t *stream = ctx->stream;
    char value[160];
    int rc;

    if ((rc = znp_stream_header(stream, "etag", etag)) != 0)
        return rc;
    if (file->is_page)
        return 0;
    snprintf(value, sizeof(value), "upload=0; download=%" PRId64 "; total=%" PRId64 "; expire=%" PRId64,
             sub->used_bytes, sub->total_bytes, sub->expires_at);
    if ((rc = znp_stream_header(stream, "subscription-userinfo", value)) != 0)
        return rc;
    snprintf(value, sizeof(value), "%" PRIu32, ctx->config->site.subscription_update_hours);
    if ((rc = znp_stream_header(stream, "profile-update-interval", value)) != 0)
        return rc;
    return znp_stream_header(stream, "content-disposition", disposition);
}

/*
 * The file of an active subscription: from the cache when a fresh entry
 * exists, else rendered from the published template that applies, or the
 * built-in format when none applies or it fails. Returns 0 or a negative znp_err.
 */
static int render_active(znp_ctx_t *ctx, rendered_t *file, char etag[68], const znp_formats_client_t *client,
                         const subscription_t *sub)
{
    PGresult *tmpl_res = NULL;
    char key[224];
    int have_template, rc;

    if ((rc = find_template(ctx, client, sub, &tmpl_res)) != 0)
        goto cleanup;
    have_template = PQntuples(tmpl_res) == 1;
    /* template id and version, or "built-in"; then the client format, whose name is also the template's client type */
    snprintf(key, sizeof(key), "%" PRId64 "|%s%s%s|%s|%s|%d|%s", sub->id,
             have_template ? PQgetvalue(tmpl_res, 0, 0) : "built-in", have_template ? ":" : "",
             have_template ? PQgetvalue(tmpl_res, 0, 3) : "", znp_formats_format_name(client->format),
             client->version, (int)ctx->locale, sub->stamp);
    if (cache_get(ctx->config, key, file, etag))
        goto cleanup;
    rc = have_template ? render_template(ctx, file, client, sub, tmpl_res) : 0;
    if (rc == 1)
        rc = 0;
    else if ((rc = render_file(ctx, file, client, sub, REASON_NONE)) != 0)
        goto cleanup;
    strong_etag(etag, file->body, file->len);
    cache_put(ctx->config, sub->id, key, file, etag);

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
    const char *accept = ctx->stream != NULL ? ctx->stream->accept : NULL;
    char etag[68];
    char disposition[sizeof(site.name) * 3 + 96];
    int rc;

    rc = load_subscription(ctx, token, &sub);
    if (rc != 0)
        return rc;
    /* only known tokens get a bucket, so made-up tokens cannot crowd out real ones */
    if ((rc = admit_token(ctx, token)) != 0)
        return rc;
    reason = blocked_reason(&sub);
    znp_site_cache_get(&site);
    znp_formats_detect(&client, flag != NULL && flag[0] != '\0' ? flag : format, ctx->user_agent, accept);

    if (client.matched_by == ZNP_FORMATS_MATCH_BROWSER) {
        rc = render_page(&file, site.name, ctx->locale, reason);
        if (rc == 0)
            strong_etag(etag, file.body, file.len);
    } else if (reason != REASON_NONE) {
        /* a blocked subscription always gets the built-in file with its informational entry, never a cached one */
        rc = render_file(ctx, &file, &client, &sub, reason);
        if (rc == 0)
            strong_etag(etag, file.body, file.len);
    } else {
        rc = render_active(ctx, &file, etag, &client, &sub);
    }
    if (rc != 0)
        goto cleanup;
    if ((rc = znp_download_content_disposition(disposition, sizeof(disposition), site.name)) != 0)
        goto cleanup;

    if (ctx->stream == NULL) {
        resp->format = znp_arena_strdup(ctx->arena, file.format_name);
        resp->content_type = znp_arena_strdup(ctx->arena, file.content_type);
        resp->filename = znp_arena_strdup(ctx->arena, site.name);
        resp->body = znp_arena_strndup(ctx->arena, file.body, file.len);
        if (resp->format == NULL || resp->content_type == NULL || resp->filename == NULL || resp->body == NULL) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
        resp->has.format = resp->has.content_type = resp->has.filename = resp->has.body = ZNP_SET;
        goto cleanup;
    }

    if ((rc = send_headers(ctx, &sub, &file, etag, disposition)) != 0)
        goto cleanup;
    if (znp_download_etag_matches(ctx->stream->if_none_match, etag)) {
        ctx->stream->status = 304;
        rc = znp_stream_begin(ctx->stream, file.content_type, NULL);
        goto cleanup;
    }
    if ((rc = znp_stream_begin(ctx->stream, file.content_type, NULL)) != 0)
        goto cleanup;
    rc = znp_stream_write(ctx->stream, file.body, file.len);

cleanup:
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
