/*
 * The UniProxy endpoints under /api/v1/server/UniProxy/. Every request
 * carries the node's backend token (query `token`), a protocol binding id
 * of that node (`node_id`) and optionally the protocol (`node_type`). Over
 * HTTP the responses go out through ctx->stream as plain JSON documents with
 * their own ETag, because node backends expect the bare document and not a
 * znp envelope. Over gRPC the typed UniProxyDocument contains the same.
 *
 * The user lists are cached per binding and eligibility version (see
 * znp_uniproxy_invalidate), so a pull whose If-None-Match matches gets a
 * 304 from memory without a query.
 */
#include "uniproxy/uniproxy.h"

#include <inttypes.h>
#include <jansson.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/sql.h"
#include "core/log.h"
#include "core/stream.h"
#include "download/download.h"
#include "operations.gen.h"
#include "traffic/traffic.h"
#include "uniproxy/internal.h"

#define LOG_MODULE "uniproxy"

enum {
    BINDING_ACTIVE = 1,
};

typedef struct binding {
    int64_t id;
    int64_t node_id;
    char protocol[40];
    int status;
    int64_t access_port;
    const char *listen;  /* ctx->arena */
    const char *profile; /* JSON object text, ctx->arena */
} binding_t;

/* The query parameters every UniProxy request carries. */
typedef struct pull {
    const char *token;
    int has_binding_id;
    int64_t binding_id;
    const char *node_type; /* NULL when absent */
} pull_t;

/* One cached user list. */
typedef struct cache_entry {
    int64_t binding_id; /* 0 = free slot */
    int64_t node_id;
    char protocol[40];
    uint64_t version;
    int64_t expires_at; /* Unix seconds; 0 = only a version change ends it */
    uint64_t last_used;
    char etag[UNIPROXY_ETAG_SIZE];
    char *body;
    size_t len;
} cache_entry_t;

/* A growable text buffer. */
typedef struct buffer {
    char *data;
    size_t len;
    size_t cap;
    int failed;
} buffer_t;

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cache_entry_t cache[UNIPROXY_CACHE_ENTRIES]; /* guarded by cache_lock */
static uint64_t cache_tick;

void uniproxy_etag(char out[UNIPROXY_ETAG_SIZE], const char *body, size_t len)
{
    unsigned char digest[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)body, len, digest);
    out[0] = '"';
    for (size_t i = 0; i < sizeof(digest); i++)
        snprintf(out + 1 + 2 * i, 3, "%02x", digest[i]);
    out[65] = '"';
    out[66] = '\0';
}

size_t znp_uniproxy_cache_size(void)
{
    size_t n = 0;

    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < UNIPROXY_CACHE_ENTRIES; i++)
        n += cache[i].binding_id != 0;
    pthread_mutex_unlock(&cache_lock);
    return n;
}

/*
 * The fresh entry of `binding_id` at `version`: copies its node, protocol
 * and ETag and, when `body` is not NULL, a malloc'd copy of its body.
 * Returns 1 on a hit, 0 on a miss, -1 when the copy could not be made.
 */
static int cache_get(int64_t binding_id, uint64_t version, int64_t now, cache_entry_t *out, char **body)
{
    int hit = 0;

    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < UNIPROXY_CACHE_ENTRIES; i++) {
        cache_entry_t *e = &cache[i];

        if (e->binding_id != binding_id)
            continue;
        if (e->version != version || (e->expires_at != 0 && now >= e->expires_at))
            break;
        e->last_used = ++cache_tick;
        *out = *e;
        out->body = NULL;
        hit = 1;
        if (body != NULL) {
            *body = malloc(e->len + 1);
            if (*body == NULL)
                hit = -1;
            else
                memcpy(*body, e->body, e->len + 1);
        }
        break;
    }
    pthread_mutex_unlock(&cache_lock);
    return hit;
}

/* Store a copy of `body` as the list of `entry->binding_id`, replacing its old entry or the least recently used one. */
static void cache_put(const cache_entry_t *entry, const char *body, size_t len)
{
    cache_entry_t *slot = NULL;
    char *copy = malloc(len + 1);

    if (copy == NULL)
        return;
    memcpy(copy, body, len);
    copy[len] = '\0';

    pthread_mutex_lock(&cache_lock);
    for (size_t i = 0; i < UNIPROXY_CACHE_ENTRIES && slot == NULL; i++) {
        if (cache[i].binding_id == entry->binding_id)
            slot = &cache[i];
    }
    for (size_t i = 0; i < UNIPROXY_CACHE_ENTRIES && slot == NULL; i++) {
        if (cache[i].binding_id == 0)
            slot = &cache[i];
    }
    if (slot == NULL) {
        slot = &cache[0];
        for (size_t i = 1; i < UNIPROXY_CACHE_ENTRIES; i++) {
            if (cache[i].last_used < slot->last_used)
                slot = &cache[i];
        }
    }
    /* a list built under an older version than the stored one is already stale */
    if (slot->binding_id == entry->binding_id && slot->version > entry->version) {
        free(copy);
    } else {
        free(slot->body);
        *slot = *entry;
        slot->body = copy;
        slot->len = len;
        slot->last_used = ++cache_tick;
    }
    pthread_mutex_unlock(&cache_lock);
}

static void buffer_append(buffer_t *b, const char *data, size_t len)
{
    if (b->failed)
        return;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : 4096;
        char *grown;

        while (cap < b->len + len + 1)
            cap *= 2;
        grown = realloc(b->data, cap);
        if (grown == NULL) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

/* Check the token and the binding id. Returns 0 and *node_id, or the node_token_* errors. */
static int authenticate(znp_ctx_t *ctx, const pull_t *pull, int64_t *node_id)
{
    int rc = znp_uniproxy_token_node(ctx->db, pull->token, node_id);

    if (rc == ZNP_E_UNAUTHENTICATED)
        return znp_error_set(ctx->err, ZNP_E_NODE_TOKEN_MISSING, "token", NULL);
    if (rc == ZNP_E_TOKEN_INVALID) {
        ZNP_INFO(LOG_MODULE, ctx->request_id, "node backend token rejected client_ip=%s", ctx->client_ip);
        return znp_error_set(ctx->err, ZNP_E_NODE_TOKEN_INVALID, "token", NULL);
    }
    if (rc != 0)
        return rc;
    if (!pull->has_binding_id)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "node_id", "is required: the protocol binding id");
    return 0;
}

/* Whether the binding belongs to the token's node and serves `node_type` (when given). */
static int check_binding(znp_ctx_t *ctx, const pull_t *pull, int64_t token_node, int64_t binding_node,
                         const char *protocol)
{
    if (binding_node != token_node) {
        ZNP_INFO(LOG_MODULE, ctx->request_id, "binding of another node requested binding_id=%" PRId64
                 " node_id=%" PRId64, pull->binding_id, token_node);
        return znp_error_set(ctx->err, ZNP_E_NODE_BINDING_FORBIDDEN, "node_id", NULL);
    }
    if (pull->node_type != NULL && pull->node_type[0] != '\0' &&
        strcasecmp(uniproxy_canonical_protocol(pull->node_type), uniproxy_canonical_protocol(protocol)) != 0)
        return znp_error_set(ctx->err, ZNP_E_NODE_TYPE_MISMATCH, "node_type", "the binding serves %s", protocol);
    return 0;
}

static int load_binding(znp_ctx_t *ctx, int64_t id, binding_t *out)
{
    static const char sql[] = "SELECT node_id, protocol, status, access_port, listen, profile::text"
                              " FROM protocol_bindings WHERE id = $1";
    char id_text[24];
    const char *params[1] = {id_text};
    PGresult *res = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    snprintf(id_text, sizeof id_text, "%" PRId64, id);
    rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "node_id", "no protocol binding %" PRId64, id);
        goto cleanup;
    }
    out->id = id;
    out->node_id = znp_sql_int64(res, 0, 0);
    snprintf(out->protocol, sizeof out->protocol, "%s", PQgetvalue(res, 0, 1));
    out->status = (int)znp_sql_int64(res, 0, 2);
    out->access_port = znp_sql_int64(res, 0, 3);
    out->listen = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, 4));
    out->profile = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, 5));
    if (out->listen == NULL || out->profile == NULL)
        rc = ZNP_E_INTERNAL;

cleanup:
    PQclear(res);
    return rc;
}

/* Authenticate, load the binding and check it. */
static int open_binding(znp_ctx_t *ctx, const pull_t *pull, binding_t *binding)
{
    int64_t node_id = 0;
    int rc;

    if ((rc = authenticate(ctx, pull, &node_id)) != 0)
        return rc;
    if ((rc = load_binding(ctx, pull->binding_id, binding)) != 0)
        return rc;
    return check_binding(ctx, pull, node_id, binding->node_id, binding->protocol);
}

static void decref_document(void *data)
{
    json_decref(data);
}

/*
 * Send a JSON document. Over HTTP it is the body, with `etag` (may be NULL),
 * or a 304 when If-None-Match matches that tag. Over gRPC it goes into the
 * typed response.
 */
static int send_document(znp_ctx_t *ctx, const char *body, size_t len, const char *etag, znp_uni_proxy_document_t *resp)
{
    znp_stream_t *stream = ctx->stream;
    json_t *document;
    int rc;

    if (stream == NULL) {
        document = json_loadb(body, len, 0, NULL);
        if (document == NULL || znp_arena_defer(ctx->arena, decref_document, document) != 0) {
            json_decref(document);
            return ZNP_E_INTERNAL;
        }
        resp->document = document;
        resp->etag = znp_arena_strdup(ctx->arena, etag != NULL ? etag : "");
        return resp->etag != NULL ? 0 : ZNP_E_INTERNAL;
    }
    if (etag != NULL) {
        if ((rc = znp_stream_header(stream, "etag", etag)) != 0)
            return rc;
        if (znp_download_etag_matches(stream->if_none_match, etag)) {
            stream->status = 304;
            return znp_stream_begin(stream, "application/json", NULL);
        }
    }
    if ((rc = znp_stream_begin(stream, "application/json", NULL)) != 0)
        return rc;
    return znp_stream_write(stream, body, len);
}

/* config */

static int64_t port_of_listen(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    char *end = NULL;
    long v;

    if (colon == NULL)
        return 0;
    v = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || v < 1 || v > 65535)
        return 0;
    return v;
}

static void set_default(json_t *doc, const char *key, json_t *value)
{
    if (json_object_get(doc, key) == NULL)
        json_object_set(doc, key, value);
    json_decref(value);
}

/*
 * The configuration document of a binding: the defaults of its protocol,
 * then every key of its profile (the profile wins), then server_port and
 * base_config. Keys are sorted so equal configurations have equal ETags.
 */
static char *config_document(const binding_t *b)
{
    const char *type = uniproxy_canonical_protocol(b->protocol);
    json_t *doc = json_loads(b->profile, 0, NULL);
    json_t *base = NULL;
    json_t *given;
    int64_t port = b->access_port > 0 ? b->access_port : port_of_listen(b->listen);
    char *text = NULL;

    if (!json_is_object(doc)) {
        json_decref(doc);
        doc = json_object();
    }
    if (doc == NULL)
        return NULL;

    /* protocol defaults */
    set_default(doc, "server_port", json_integer(port));
    set_default(doc, "routes", json_array());
    if (strcmp(type, "vmess") == 0 || strcmp(type, "vless") == 0 || strcmp(type, "trojan") == 0) {
        set_default(doc, "network", json_string("tcp"));
        set_default(doc, "network_settings", json_object());
        /* older node backends read the camel-case name */
        set_default(doc, "networkSettings", json_deep_copy(json_object_get(doc, "network_settings")));
        set_default(doc, "tls", json_integer(strcmp(type, "trojan") == 0 ? 1 : 0));
        set_default(doc, "tls_settings", json_object());
        set_default(doc, "server_name", json_string(""));
        if (strcmp(type, "vless") == 0)
            set_default(doc, "flow", json_string(""));
    } else if (strcmp(type, "shadowsocks") == 0) {
        set_default(doc, "cipher", json_string("aes-128-gcm"));
    } else if (strcmp(type, "hysteria") == 0 || strcmp(type, "hysteria2") == 0) {
        set_default(doc, "up_mbps", json_integer(0));
        set_default(doc, "down_mbps", json_integer(0));
        set_default(doc, "server_name", json_string(""));
    } else if (strcmp(type, "tuic") == 0) {
        set_default(doc, "congestion_control", json_string("bbr"));
        set_default(doc, "zero_rtt_handshake", json_false());
        set_default(doc, "server_name", json_string(""));
    } else if (strcmp(type, "anytls") == 0) {
        set_default(doc, "padding_scheme", json_array());
        set_default(doc, "server_name", json_string(""));
    }

    /* base_config: push and pull periods in seconds */
    given = json_object_get(doc, "base_config");
    base = json_is_object(given) ? json_deep_copy(given) : json_object();
    if (base != NULL) {
        set_default(base, "push_interval", json_integer(UNIPROXY_PUSH_INTERVAL_S));
        set_default(base, "pull_interval", json_integer(UNIPROXY_PULL_INTERVAL_S));
        json_object_set_new(doc, "base_config", base);
        text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    }
    json_decref(doc);
    return text;
}

int znp_op_uniproxy_config(znp_ctx_t *ctx, const znp_uniproxy_config_request_t *req,
                           znp_uniproxy_config_response_t *resp)
{
    pull_t pull = {req->token, req->has.node_id == ZNP_SET, req->node_id, req->node_type};
    char etag[UNIPROXY_ETAG_SIZE];
    binding_t binding;
    char *text = NULL;
    int rc;

    rc = open_binding(ctx, &pull, &binding);
    if (rc != 0)
        return rc;
    text = config_document(&binding);
    if (text == NULL)
        return ZNP_E_INTERNAL;
    uniproxy_etag(etag, text, strlen(text));
    rc = send_document(ctx, text, strlen(text), etag, resp);
    free(text);
    return rc;
}

/* user */

static int64_t speed_limit_of(const char *profile)
{
    json_t *doc = json_loads(profile, 0, NULL);
    json_t *value = json_object_get(doc, "speed_limit");
    int64_t limit = json_is_integer(value) && json_integer_value(value) > 0 ? json_integer_value(value) : 0;

    json_decref(doc);
    return limit;
}

/*
 * The identity UUIDs of the rows of `res` into uuids (one per row; "" when
 * unavailable, and such users are left out). Users without an identity get
 * one inside a single transaction, so a first pull of a large list costs
 * one commit instead of one per user. When that transaction fails, each is
 * tried again on its own.
 */
static int resolve_identities(znp_ctx_t *ctx, const PGresult *res, char (*uuids)[37])
{
    int rows = PQntuples(res);
    int missing = 0;
    int rc = 0;

    for (int i = 0; i < rows; i++) {
        if (PQgetisnull(res, i, 4)) {
            missing++;
            continue;
        }
        if (uniproxy_identity_uuid(NULL, ctx->config, znp_sql_int64(res, i, 0), znp_sql_int64(res, i, 3),
                                   PQgetvalue(res, i, 4), PQgetvalue(res, i, 5), uuids[i], ctx->request_id) != 0)
            uuids[i][0] = '\0';
    }
    if (missing == 0)
        return 0;

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    for (int i = 0; i < rows && rc == 0; i++) {
        if (PQgetisnull(res, i, 4))
            rc = uniproxy_identity_uuid(ctx->db, ctx->config, znp_sql_int64(res, i, 0), 0, NULL, NULL, uuids[i],
                                        ctx->request_id);
    }
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc == 0)
        return 0;
    znp_sql_rollback(ctx->db, ctx->request_id);
    if (rc == ZNP_E_DATABASE_UNAVAILABLE)
        return rc;
    ZNP_WARN(LOG_MODULE, ctx->request_id, "creating %d identities in one transaction failed, trying one by one",
             missing);
    for (int i = 0; i < rows; i++) {
        if (PQgetisnull(res, i, 4) && uniproxy_identity_uuid(ctx->db, ctx->config, znp_sql_int64(res, i, 0), 0, NULL,
                                                            NULL, uuids[i], ctx->request_id) != 0)
            uuids[i][0] = '\0';
    }
    return 0;
}

/*
 * Build the user list of `b` into out (malloc'd) and the earliest expiry of
 * its users (0 when none expires). A disabled binding lists no users.
 */
static int build_user_list(znp_ctx_t *ctx, const binding_t *b, buffer_t *out, int64_t *expires_at)
{
    static const char sql[] =
        "SELECT e.user_id, e.devices_limit, coalesce(extract(epoch FROM e.expires_at)::bigint, 0),"
        " c.version, c.key_id, c.secret_sealed"
        " FROM binding_eligible_users e"
        " LEFT JOIN user_credentials c ON c.user_id = e.user_id AND c.status = 1"
        " WHERE e.binding_id = $1 ORDER BY e.user_id, c.version DESC";
    char id_text[24];
    const char *params[1] = {id_text};
    PGresult *res = NULL;
    char (*uuids)[37] = NULL;
    int64_t speed_limit = speed_limit_of(b->profile);
    int64_t previous = 0;
    size_t users = 0;
    int rc = 0;

    *expires_at = 0;
    buffer_append(out, "{\"users\":[", 10);
    if (b->status != BINDING_ACTIVE)
        goto finish;
    snprintf(id_text, sizeof id_text, "%" PRId64, b->id);
    rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    uuids = calloc((size_t)PQntuples(res) + 1, sizeof(*uuids));
    if (uuids == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    rc = resolve_identities(ctx, res, uuids);
    if (rc != 0)
        goto cleanup;

    for (int i = 0; i < PQntuples(res); i++) {
        int64_t user_id = znp_sql_int64(res, i, 0);
        int64_t expiry = znp_sql_int64(res, i, 2);
        char item[192];
        int n;

        if (user_id == previous)
            continue;
        previous = user_id;
        if (uuids[i][0] == '\0') {
            ZNP_ERROR(LOG_MODULE, ctx->request_id, "identity of user %" PRId64 " unavailable, left out of the list",
                      user_id);
            continue;
        }
        if (expiry > 0 && (*expires_at == 0 || expiry < *expires_at))
            *expires_at = expiry;
        n = snprintf(item, sizeof item, "%s{\"id\":%" PRId64 ",\"uuid\":\"%s\",\"speed_limit\":%" PRId64
                     ",\"device_limit\":%" PRId64 "}",
                     users > 0 ? "," : "", user_id, uuids[i], speed_limit, znp_sql_int64(res, i, 1));
        buffer_append(out, item, (size_t)n);
        users++;
    }

finish:
    buffer_append(out, "]}", 2);
    if (out->failed)
        rc = ZNP_E_INTERNAL;

cleanup:
    free(uuids);
    PQclear(res);
    return rc;
}

int znp_op_uniproxy_user(znp_ctx_t *ctx, const znp_uniproxy_user_request_t *req, znp_uniproxy_user_response_t *resp)
{
    pull_t pull = {req->token, req->has.node_id == ZNP_SET, req->node_id, req->node_type};
    uint64_t version = znp_uniproxy_version();
    int64_t now = ctx->now != NULL ? ctx->now() : (int64_t)time(NULL);
    int revalidating = ctx->stream != NULL && ctx->stream->if_none_match != NULL;
    cache_entry_t entry;
    binding_t binding;
    buffer_t built = {0};
    char *body = NULL;
    int64_t node_id = 0;
    int hit;
    int rc;

    rc = authenticate(ctx, &pull, &node_id);
    if (rc != 0)
        return rc;

    /* from memory: a matching If-None-Match needs no body copy */
    hit = cache_get(pull.binding_id, version, now, &entry, NULL);
    if (hit > 0) {
        rc = check_binding(ctx, &pull, node_id, entry.node_id, entry.protocol);
        if (rc != 0)
            return rc;
        if (revalidating && znp_download_etag_matches(ctx->stream->if_none_match, entry.etag))
            return send_document(ctx, "", 0, entry.etag, resp);
        /* the entry may have gone since the first look; then the list is built below */
        hit = cache_get(pull.binding_id, version, now, &entry, &body);
        if (hit > 0) {
            rc = send_document(ctx, body, entry.len, entry.etag, resp);
            free(body);
            return rc;
        }
    }

    /* build it; the version was read before the query, so a write during the build leaves it stale */
    rc = load_binding(ctx, pull.binding_id, &binding);
    if (rc == 0)
        rc = check_binding(ctx, &pull, node_id, binding.node_id, binding.protocol);
    if (rc != 0)
        return rc;
    memset(&entry, 0, sizeof(entry));
    rc = build_user_list(ctx, &binding, &built, &entry.expires_at);
    if (rc != 0)
        goto cleanup;
    entry.binding_id = binding.id;
    entry.node_id = binding.node_id;
    snprintf(entry.protocol, sizeof entry.protocol, "%s", binding.protocol);
    entry.version = version;
    uniproxy_etag(entry.etag, built.data, built.len);
    cache_put(&entry, built.data, built.len);
    rc = send_document(ctx, built.data, built.len, entry.etag, resp);

cleanup:
    free(built.data);
    return rc;
}

/* push */

/* The report id from the query, else from X-Report-Id. Returns 0 (*out may be NULL) or a validation error. */
static int report_id_of(znp_ctx_t *ctx, const znp_uniproxy_push_request_t *req, const char **out)
{
    const char *id = req->has.report_id == ZNP_SET ? req->report_id : NULL;

    if (id == NULL && ctx->stream != NULL)
        id = ctx->stream->report_id;
    *out = NULL;
    if (id == NULL || id[0] == '\0')
        return 0;
    if (strlen(id) > UNIPROXY_REPORT_ID_MAX)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "report_id", "must be at most %d characters",
                             UNIPROXY_REPORT_ID_MAX);
    for (const char *p = id; *p != '\0'; p++) {
        if (*p < 0x21 || *p > 0x7e)
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "report_id",
                                 "must be printable ASCII without spaces");
    }
    *out = id;
    return 0;
}

/* Record the 422 of a rejected report: the first bad value in path/detail, the others in more_details. */
static int reject_report(znp_ctx_t *ctx, const uniproxy_report_t *report)
{
    ZNP_INFO(LOG_MODULE, ctx->request_id, "node report rejected bad_values=%zu", report->bad_count);
    znp_error_set(ctx->err, ZNP_E_NODE_REPORT_INVALID, report->first_field, "%s", report->first_message);
    if (ctx->err != NULL && report->more_details != NULL)
        ctx->err->more_details = znp_arena_strdup(ctx->arena, report->more_details);
    return ZNP_E_NODE_REPORT_INVALID;
}

int znp_op_uniproxy_push(znp_ctx_t *ctx, const znp_uniproxy_push_request_t *req, znp_uniproxy_push_response_t *resp)
{
    pull_t pull = {req->token, req->has.node_id == ZNP_SET, req->node_id, req->node_type};
    uniproxy_report_t report = {0};
    znp_traffic_record_t *records = NULL;
    znp_traffic_result_t result = {0};
    const char *report_id = NULL;
    binding_t binding;
    char reply[160];
    int n;
    int rc;

    /* check the caller and the report */
    rc = open_binding(ctx, &pull, &binding);
    if (rc != 0)
        goto cleanup;
    rc = report_id_of(ctx, req, &report_id);
    if (rc != 0)
        goto cleanup;
    if (ctx->stream == NULL) {
        rc = znp_error_set(ctx->err, ZNP_E_BODY_REQUIRED, NULL, "the report is sent over HTTP");
        goto cleanup;
    }
    rc = uniproxy_parse_push(ctx->stream->body, ctx->stream->body_len, &report);
    if (rc == ZNP_E_NODE_REPORT_INVALID) {
        rc = reject_report(ctx, &report);
        goto cleanup;
    }
    if (rc != 0) {
        znp_error_set(ctx->err, rc, "$", rc == ZNP_E_INVALID_JSON ? "must be a JSON object of user id keys" : NULL);
        goto cleanup;
    }

    /* count it, once per report id */
    if (report.count > 0) {
        records = calloc(report.count, sizeof(*records));
        if (records == NULL) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
        for (size_t i = 0; i < report.count; i++) {
            records[i].user_id = report.usage[i].user_id;
            records[i].protocol = binding.protocol; /* the name plan multipliers are keyed by */
            records[i].node_id = binding.node_id;
            records[i].binding_id = binding.id;
            records[i].bytes_up = report.usage[i].upload;
            records[i].bytes_down = report.usage[i].download;
        }
        rc = znp_traffic_ingest(ctx->db, ctx->config, binding.node_id, report_id, records, report.count, &result,
                                ctx->request_id);
        if (rc != 0)
            goto cleanup;
    }

    n = snprintf(reply, sizeof reply, "{\"data\":true,\"accepted\":%" PRId64 ",\"failed\":%" PRId64
                 ",\"duplicate\":%s}", result.accepted, result.failed, result.duplicate ? "true" : "false");
    rc = send_document(ctx, reply, (size_t)n, NULL, resp);

cleanup:
    free(records);
    uniproxy_report_dispose(&report);
    return rc;
}

/* alive */

/* Append `items` as a PostgreSQL array literal of quoted text or plain integers. */
static void append_array_item(buffer_t *b, const char *text, int quoted)
{
    if (b->len > 1)
        buffer_append(b, ",", 1);
    if (quoted)
        buffer_append(b, "\"", 1);
    buffer_append(b, text, strlen(text));
    if (quoted)
        buffer_append(b, "\"", 1);
}

int znp_op_uniproxy_alive(znp_ctx_t *ctx, const znp_uniproxy_alive_request_t *req, znp_uniproxy_alive_response_t *resp)
{
    static const char upsert_sql[] =
        "INSERT INTO node_online_ips (node_id, user_id, ip, seen_at)"
        " SELECT DISTINCT $1::bigint, t.user_id, t.ip, now()"
        " FROM unnest($2::bigint[], $3::text[]) AS t(user_id, ip) JOIN users u ON u.id = t.user_id"
        " ON CONFLICT (node_id, user_id, ip) DO UPDATE SET seen_at = excluded.seen_at";
    static const char purge_sql[] =
        "DELETE FROM node_online_ips WHERE node_id = $1 AND seen_at < now() - make_interval(secs => $2)";
    pull_t pull = {req->token, req->has.node_id == ZNP_SET, req->node_id, req->node_type};
    uniproxy_report_t report = {0};
    buffer_t users = {0};
    buffer_t ips = {0};
    binding_t binding;
    char node_text[24];
    char ttl_text[16];
    const char *params[3] = {node_text, NULL, NULL};
    static const char reply[] = "{\"data\":true}";
    int rc;

    /* check the caller and the report */
    rc = open_binding(ctx, &pull, &binding);
    if (rc != 0)
        goto cleanup;
    if (ctx->stream == NULL) {
        rc = znp_error_set(ctx->err, ZNP_E_BODY_REQUIRED, NULL, "the report is sent over HTTP");
        goto cleanup;
    }
    rc = uniproxy_parse_alive(ctx->stream->body, ctx->stream->body_len, &report);
    if (rc == ZNP_E_NODE_REPORT_INVALID) {
        rc = reject_report(ctx, &report);
        goto cleanup;
    }
    if (rc != 0) {
        znp_error_set(ctx->err, rc, "$", rc == ZNP_E_INVALID_JSON ? "must be a JSON object of user id keys" : NULL);
        goto cleanup;
    }

    /* record the addresses of this node and drop its expired ones */
    snprintf(node_text, sizeof node_text, "%" PRId64, binding.node_id);
    if (report.count > 0) {
        buffer_append(&users, "{", 1);
        buffer_append(&ips, "{", 1);
        for (size_t i = 0; i < report.count; i++) {
            char id_text[24];

            snprintf(id_text, sizeof id_text, "%" PRId64, report.online[i].user_id);
            append_array_item(&users, id_text, 0);
            /* the parser admits no quote or backslash in an address, so quoting is enough */
            append_array_item(&ips, report.online[i].ip, 1);
        }
        buffer_append(&users, "}", 1);
        buffer_append(&ips, "}", 1);
        if (users.failed || ips.failed) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
        params[1] = users.data;
        params[2] = ips.data;
        rc = znp_sql_exec(NULL, ctx->db, upsert_sql, 3, params, ctx->request_id);
        if (rc != 0)
            goto cleanup;
    }
    snprintf(ttl_text, sizeof ttl_text, "%d", UNIPROXY_ALIVE_TTL_S);
    params[1] = ttl_text;
    rc = znp_sql_exec(NULL, ctx->db, purge_sql, 2, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rc = send_document(ctx, reply, sizeof(reply) - 1, NULL, resp);

cleanup:
    free(users.data);
    free(ips.data);
    uniproxy_report_dispose(&report);
    return rc;
}

/* alivelist */

int znp_op_uniproxy_alivelist(znp_ctx_t *ctx, const znp_uniproxy_alivelist_request_t *req,
                              znp_uniproxy_alivelist_response_t *resp)
{
    static const char sql[] =
        "SELECT o.user_id, count(DISTINCT o.ip) FROM node_online_ips o"
        " JOIN binding_eligible_users e ON e.user_id = o.user_id AND e.binding_id = $1"
        " WHERE o.seen_at >= now() - make_interval(secs => $2)"
        " GROUP BY o.user_id ORDER BY o.user_id";
    pull_t pull = {req->token, req->has.node_id == ZNP_SET, req->node_id, req->node_type};
    char id_text[24];
    char ttl_text[16];
    const char *params[2] = {id_text, ttl_text};
    PGresult *res = NULL;
    buffer_t out = {0};
    binding_t binding;
    int rc;

    rc = open_binding(ctx, &pull, &binding);
    if (rc != 0)
        goto cleanup;
    snprintf(id_text, sizeof id_text, "%" PRId64, binding.id);
    snprintf(ttl_text, sizeof ttl_text, "%d", UNIPROXY_ALIVE_TTL_S);
    rc = znp_sql_exec(&res, ctx->db, sql, 2, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;

    buffer_append(&out, "{\"alive\":{", 10);
    for (int i = 0; i < PQntuples(res); i++) {
        char item[64];
        int n = snprintf(item, sizeof item, "%s\"%" PRId64 "\":%" PRId64, i > 0 ? "," : "", znp_sql_int64(res, i, 0),
                         znp_sql_int64(res, i, 1));

        buffer_append(&out, item, (size_t)n);
    }
    buffer_append(&out, "}}", 2);
    if (out.failed) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    rc = send_document(ctx, out.data, out.len, NULL, resp);

cleanup:
    free(out.data);
    PQclear(res);
    return rc;
}
