/*
 * Nodes under /api/v1/{admin}/nodes (kernel records are in kernels.c).
 * Every admin write runs in one transaction with its audit row. Deleted
 * nodes keep their row (deleted_at) and are invisible to every operation.
 * Control credentials are sealed with security.master_key under the
 * associated data "node:<id>:<field>", never returned and never logged.
 * This module holds only the data and the admin API: the kernel client, the
 * status poller and binding sync live elsewhere.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "bindings/bindings.h"
#include "config/config.h"
#include "core/crypto.h"
#include "core/log.h"
#include "download/download.h"
#include "nodes/internal.h"
#include "operations.gen.h"
#include "core/pagination.h"

#define LOG_TAG "nodes"
#define SECRET_MAX 2048
#define SEALED_B64_MAX (4 * ((SECRET_MAX + ZNP_CRYPTO_OVERHEAD + 2) / 3) + 1)

#define NODE_COLUMNS                                                                                                   \
    "n.id, n.name, n.region, n.country, n.isp, n.status, array_to_json(n.tags)::text, n.capacity_mbps,"               \
    " n.description, n.access_address, n.control_endpoint, n.control_access_key_sealed IS NOT NULL,"                  \
    " n.control_secret_key_sealed IS NOT NULL, n.control_token_sealed IS NOT NULL, n.kernel_default_protocol,"          \
    " n.kernel_http_timeout_seconds, n.kernel_status_poll_interval_seconds, n.kernel_status_poll_backoff_enabled,"      \
    " n.kernel_status_poll_backoff_max_interval_seconds, n.kernel_status_poll_backoff_multiplier,"                     \
    " n.kernel_status_poll_backoff_jitter, n.kernel_offline_probe_max_interval_seconds, n.status_sync_enabled,"        \
    " coalesce(extract(epoch FROM n.last_synced_at)::bigint, 0), extract(epoch FROM n.created_at)::bigint,"            \
    " extract(epoch FROM n.updated_at)::bigint"

enum {
    C_ID, C_NAME, C_REGION, C_COUNTRY, C_ISP, C_STATUS, C_TAGS, C_CAPACITY, C_DESCRIPTION, C_ACCESS, C_ENDPOINT,
    C_HAS_AK, C_HAS_SK, C_HAS_TOKEN, C_PROTOCOL, C_TIMEOUT, C_INTERVAL, C_BACKOFF, C_MAX_INTERVAL, C_MULTIPLIER,
    C_JITTER, C_PROBE, C_SYNC, C_SYNCED, C_CREATED, C_UPDATED
};

static const char *real_text(char *buf, size_t size, double v)
{
    snprintf(buf, size, "%.17g", v);
    return buf;
}

static int fill_node(znp_ctx_t *ctx, const PGresult *res, int row, znp_node_t *out)
{
    json_t *tags;
    size_t count;

    memset(out, 0, sizeof(*out));
    out->id = znp_sql_int64(res, row, C_ID);
    out->name = znp_nodes__column(ctx, res, row, C_NAME);
    out->region = znp_nodes__column(ctx, res, row, C_REGION);
    out->country = znp_nodes__column(ctx, res, row, C_COUNTRY);
    out->isp = znp_nodes__column(ctx, res, row, C_ISP);
    out->status = znp_sql_int64(res, row, C_STATUS);
    out->capacity_mbps = znp_sql_int64(res, row, C_CAPACITY);
    out->description = znp_nodes__column(ctx, res, row, C_DESCRIPTION);
    out->access_address = znp_nodes__column(ctx, res, row, C_ACCESS);
    out->control_endpoint = znp_nodes__column(ctx, res, row, C_ENDPOINT);
    out->has_control_access_key = znp_sql_bool(res, row, C_HAS_AK);
    out->has_control_secret_key = znp_sql_bool(res, row, C_HAS_SK);
    out->has_control_token = znp_sql_bool(res, row, C_HAS_TOKEN);
    out->kernel_default_protocol = znp_nodes__column(ctx, res, row, C_PROTOCOL);
    out->kernel_http_timeout_seconds = znp_sql_int64(res, row, C_TIMEOUT);
    out->kernel_status_poll_interval_seconds = znp_sql_int64(res, row, C_INTERVAL);
    out->kernel_status_poll_backoff_enabled = znp_sql_bool(res, row, C_BACKOFF);
    out->kernel_status_poll_backoff_max_interval_seconds = znp_sql_int64(res, row, C_MAX_INTERVAL);
    out->kernel_status_poll_backoff_multiplier = strtod(PQgetvalue(res, row, C_MULTIPLIER), NULL);
    out->kernel_status_poll_backoff_jitter = strtod(PQgetvalue(res, row, C_JITTER), NULL);
    out->kernel_offline_probe_max_interval_seconds = znp_sql_int64(res, row, C_PROBE);
    out->status_sync_enabled = znp_sql_bool(res, row, C_SYNC);
    out->last_synced_at = znp_sql_int64(res, row, C_SYNCED);
    out->created_at = znp_sql_int64(res, row, C_CREATED);
    out->updated_at = znp_sql_int64(res, row, C_UPDATED);
    if (out->name == NULL || out->region == NULL || out->country == NULL || out->isp == NULL ||
        out->description == NULL || out->access_address == NULL || out->control_endpoint == NULL ||
        out->kernel_default_protocol == NULL)
        return ZNP_E_INTERNAL;
    tags = znp_nodes__json(ctx, PQgetvalue(res, row, C_TAGS));
    if (!json_is_array(tags))
        return ZNP_E_INTERNAL;
    count = json_array_size(tags);
    out->tags.count = 0;
    out->tags.items = NULL;
    if (count > 0) {
        char **items = znp_arena_alloc(ctx->arena, count * sizeof(*items));
        if (items == NULL)
            return ZNP_E_INTERNAL;
        for (size_t i = 0; i < count; i++)
            if ((items[i] = znp_arena_strdup(ctx->arena, json_string_value(json_array_get(tags, i)))) == NULL)
                return ZNP_E_INTERNAL;
        out->tags.items = items;
        out->tags.count = count;
    }
    return 0;
}

/* Read live node `id` into `out`. Unknown and deleted nodes are ZNP_E_NOT_FOUND. */
static int reload(znp_ctx_t *ctx, int64_t id, znp_node_t *out)
{
    static const char sql[] = "SELECT " NODE_COLUMNS " FROM nodes n WHERE n.id = $1 AND n.deleted_at IS NULL";
    char text[24];
    const char *params[1] = {znp_nodes__int(text, sizeof(text), id)};
    PGresult *res = NULL;
    int rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);

    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no node with this id");
    if (rc == 0)
        rc = fill_node(ctx, res, 0, out);
    PQclear(res);
    return rc;
}

/* The kernel polling settings, checked as a set. */
typedef struct settings {
    int64_t timeout, interval, max_interval, probe;
    double multiplier, jitter;
    int backoff;
} settings_t;

static int check_settings(znp_ctx_t *ctx, const settings_t *s)
{
    if (s->timeout <= 0)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.kernel_http_timeout_seconds", "must be above 0");
    if (!(s->multiplier > 1.0))
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.kernel_status_poll_backoff_multiplier",
                             "must be above 1");
    if (!(s->jitter >= 0.0 && s->jitter <= 1.0))
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.kernel_status_poll_backoff_jitter",
                             "must be between 0 and 1");
    if (s->backoff && s->interval == 0)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.kernel_status_poll_interval_seconds",
                             "must be above 0 while backoff is enabled");
    if (s->backoff && s->max_interval > 0 && s->max_interval < s->interval)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.kernel_status_poll_backoff_max_interval_seconds",
                             "must be 0 or at least the poll interval while backoff is enabled");
    return 0;
}

/*
 * Seal `plain` for node `id` and field `field` into base64 text in the
 * arena. An empty `plain` gives "", which the SQL stores as NULL (no credential).
 */
static int seal(znp_ctx_t *ctx, int64_t id, const char *field, const char *plain, const char **out)
{
    uint8_t key[ZNP_CRYPTO_KEY_LEN], sealed[SECRET_MAX + ZNP_CRYPTO_OVERHEAD];
    char aad[64], *b64;
    size_t len = strlen(plain), sealed_len = 0;
    int rc = ZNP_E_INTERNAL;

    if (len == 0) {
        *out = "";
        return 0;
    }
    if (len > SECRET_MAX)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, field, "too long");
    if (znp_crypto_key_decode(key, ctx->config->security.master_key) != 0) {
        ZNP_ERROR(LOG_TAG, ctx->request_id, "security.master_key is missing or malformed");
        return ZNP_E_INTERNAL;
    }
    snprintf(aad, sizeof(aad), "node:%" PRId64 ":%s", id, field);
    if (znp_crypto_seal(sealed, sizeof(sealed), &sealed_len, key, plain, len, aad, strlen(aad)) != 0)
        goto cleanup;
    b64 = znp_arena_alloc(ctx->arena, SEALED_B64_MAX);
    if (b64 == NULL)
        goto cleanup;
    EVP_EncodeBlock((unsigned char *)b64, sealed, (int)sealed_len);
    *out = b64;
    rc = 0;

cleanup:
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

/* A statement that breaks the unique index on the name. Its parameters contain sealed credentials. */
static const znp_sql_unique_t NAME_TAKEN = {ZNP_E_NODE_NAME_TAKEN, "$.name", "another node uses this name", NULL, 1};

/* Trim `in` into *out and reject a blank value. */
static int required_text(znp_ctx_t *ctx, const char *path, const char *in, const char **out)
{
    char *t = znp_nodes__trimmed(ctx, in);

    if (t == NULL)
        return ZNP_E_INTERNAL;
    if (*t == '\0')
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "must not be blank");
    *out = t;
    return 0;
}

/* Commit a node write that may change subscription files (status, name, region, country, deletion). */
static int finish_served(znp_ctx_t *ctx, int rc)
{
    rc = znp_nodes__finish(ctx, rc);
    /* this instance drops its cached downloads before it responds; others follow the NOTIFY of migration 0019 */
    if (rc == 0)
        znp_download_cache_clear();
    return rc;
}

/* ---- operations ---- */

int znp_op_create_admin_node(znp_ctx_t *ctx, const znp_create_admin_node_request_t *req,
                             znp_create_admin_node_response_t *resp)
{
    static const char sql_id[] = "SELECT nextval(pg_get_serial_sequence('nodes', 'id'))";
    static const char sql[] =
        "INSERT INTO nodes (id, name, region, country, isp, description, access_address, status, tags,"
        " capacity_mbps, control_endpoint, control_access_key_sealed, control_secret_key_sealed,"
        " control_token_sealed, kernel_default_protocol, kernel_http_timeout_seconds,"
        " kernel_status_poll_interval_seconds, kernel_status_poll_backoff_enabled,"
        " kernel_status_poll_backoff_max_interval_seconds, kernel_status_poll_backoff_multiplier,"
        " kernel_status_poll_backoff_jitter, kernel_offline_probe_max_interval_seconds, status_sync_enabled)"
        " OVERRIDING SYSTEM VALUE VALUES ($1::bigint, $2, $3, $4, $5, $6, $7, $8::smallint,"
        " ARRAY(SELECT json_array_elements_text($9::json)), $10::integer, $11, nullif($12, ''), nullif($13, ''),"
        " nullif($14, ''), $15, $16::integer, $17::integer, $18::boolean, $19::integer, $20::double precision,"
        " $21::double precision, $22::integer, $23::boolean)";
    static const znp_array_t empty = {0, NULL};
    const znp_node_create_t *body = &req->body;
    settings_t s = {0};
    char id_text[24], status[24], capacity[24], timeout[24], interval[24], max_interval[24], multiplier[32],
        jitter[32], probe[24];
    const char *params[23] = {0}, *access_key, *secret_key;
    PGresult *res = NULL;
    json_t *diff = NULL;
    int64_t id;
    int rc;

    if ((rc = required_text(ctx, "$.name", body->name, &params[1])) != 0)
        return rc;
    params[2] = znp_nodes__trimmed(ctx, body->has.region == ZNP_SET ? body->region : "");
    params[3] = znp_nodes__trimmed(ctx, body->has.country == ZNP_SET ? body->country : "");
    params[4] = znp_nodes__trimmed(ctx, body->has.isp == ZNP_SET ? body->isp : "");
    params[5] = znp_nodes__trimmed(ctx, body->has.description == ZNP_SET ? body->description : "");
    if (params[2] == NULL || params[3] == NULL || params[4] == NULL || params[5] == NULL)
        return ZNP_E_INTERNAL;
    params[6] = "";
    if (body->has.access_address == ZNP_SET &&
        (rc = znp_nodes__normalize_address(ctx, "$.access_address", body->access_address, &params[6])) != 0)
        return rc;
    params[7] = znp_nodes__int(status, sizeof(status), body->has.status == ZNP_SET ? body->status : 2);
    if ((rc = znp_nodes__tags_text(ctx, body->has.tags == ZNP_SET ? &body->tags : &empty, &params[8])) != 0)
        return rc;
    params[9] = znp_nodes__int(capacity, sizeof(capacity), body->capacity_mbps);
    if ((rc = znp_nodes__normalize_url(ctx, "$.control_endpoint", body->control_endpoint, &params[10])) != 0)
        return rc;
    params[14] = znp_nodes__lower(ctx, body->kernel_default_protocol != NULL ? body->kernel_default_protocol : "http");
    if (params[14] == NULL)
        return ZNP_E_INTERNAL;
    s.timeout = body->kernel_http_timeout_seconds;
    s.interval = body->kernel_status_poll_interval_seconds;
    s.backoff = body->kernel_status_poll_backoff_enabled;
    s.max_interval = body->kernel_status_poll_backoff_max_interval_seconds;
    s.multiplier = body->has.kernel_status_poll_backoff_multiplier == ZNP_SET
                       ? body->kernel_status_poll_backoff_multiplier : 2.0;
    s.jitter = body->has.kernel_status_poll_backoff_jitter == ZNP_SET ? body->kernel_status_poll_backoff_jitter : 0.2;
    s.probe = body->kernel_offline_probe_max_interval_seconds;
    if ((rc = check_settings(ctx, &s)) != 0)
        return rc;
    params[15] = znp_nodes__int(timeout, sizeof(timeout), s.timeout);
    params[16] = znp_nodes__int(interval, sizeof(interval), s.interval);
    params[17] = s.backoff ? "true" : "false";
    params[18] = znp_nodes__int(max_interval, sizeof(max_interval), s.max_interval);
    params[19] = real_text(multiplier, sizeof(multiplier), s.multiplier);
    params[20] = real_text(jitter, sizeof(jitter), s.jitter);
    params[21] = znp_nodes__int(probe, sizeof(probe), s.probe);
    params[22] = body->status_sync_enabled ? "true" : "false";

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, sql_id, 0, NULL, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    id = znp_sql_int64(res, 0, 0);
    PQclear(res);
    res = NULL;
    params[0] = znp_nodes__int(id_text, sizeof(id_text), id);
    params[11] = params[12] = params[13] = "";
    access_key = body->has.control_access_key == ZNP_SET ? body->control_access_key : "";
    if (*access_key == '\0' && body->has.ak == ZNP_SET)
        access_key = body->ak;
    secret_key = body->has.control_secret_key == ZNP_SET ? body->control_secret_key : "";
    if (*secret_key == '\0' && body->has.sk == ZNP_SET)
        secret_key = body->sk;
    if ((rc = seal(ctx, id, "control_access_key", access_key, &params[11])) != 0)
        goto cleanup;
    if ((rc = seal(ctx, id, "control_secret_key", secret_key, &params[12])) != 0)
        goto cleanup;
    if (body->has.control_token == ZNP_SET &&
        (rc = seal(ctx, id, "control_token", body->control_token, &params[13])) != 0)
        goto cleanup;
    rc = znp_sql_exec_unique(&res, ctx->err, ctx->db, sql, 23, params, &NAME_TAKEN, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    diff = json_pack("{s:s, s:s, s:b, s:b, s:b}", "name", params[1], "control_endpoint", params[10],
                     "control_access_key", params[11][0] != '\0', "control_secret_key", params[12][0] != '\0',
                     "control_token", params[13][0] != '\0');
    if (diff == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    rc = znp_nodes__audit(ctx, "admin.node.create", id, diff);
    if (rc == 0)
        rc = reload(ctx, id, &resp->node);

cleanup:
    json_decref(diff);
    PQclear(res);
    return znp_nodes__finish(ctx, rc);
}

int znp_op_get_admin_node(znp_ctx_t *ctx, const znp_get_admin_node_request_t *req, znp_get_admin_node_response_t *resp)
{
    return reload(ctx, req->id, &resp->node);
}

/* Optional text of a PATCH: absent -> NULL (unchanged), null -> "", value -> trimmed. */
static int patch_text(znp_ctx_t *ctx, znp_presence_t has, const char *value, const char **out)
{
    *out = NULL;
    if (has == ZNP_ABSENT)
        return 0;
    *out = znp_nodes__trimmed(ctx, has == ZNP_SET ? value : "");
    return *out != NULL ? 0 : ZNP_E_INTERNAL;
}

/* The credential a PATCH stores: the field itself unless it is absent, then its alias; null or "" clears. */
static const char *patch_secret(znp_presence_t has, const char *value, znp_presence_t alias_has, const char *alias)
{
    if (has == ZNP_SET)
        return value;
    if (has == ZNP_NULL)
        return "";
    return alias_has == ZNP_SET ? alias : "";
}

int znp_op_update_admin_node(znp_ctx_t *ctx, const znp_update_admin_node_request_t *req,
                             znp_update_admin_node_response_t *resp)
{
    static const char sql_lock[] =
        "SELECT kernel_http_timeout_seconds, kernel_status_poll_interval_seconds,"
        " kernel_status_poll_backoff_enabled, kernel_status_poll_backoff_max_interval_seconds,"
        " kernel_status_poll_backoff_multiplier, kernel_status_poll_backoff_jitter,"
        " kernel_offline_probe_max_interval_seconds FROM nodes WHERE id = $1 AND deleted_at IS NULL FOR UPDATE";
    /* a sealed value of "" clears the credential, NULL keeps it */
    static const char sql[] =
        "UPDATE nodes SET name = coalesce($2, name), region = coalesce($3, region), country = coalesce($4, country),"
        " isp = coalesce($5, isp), description = coalesce($6, description),"
        " access_address = coalesce($7, access_address), status = coalesce($8::smallint, status),"
        " tags = CASE WHEN $9::json IS NULL THEN tags ELSE ARRAY(SELECT json_array_elements_text($9::json)) END,"
        " capacity_mbps = coalesce($10::integer, capacity_mbps),"
        " control_endpoint = coalesce($11, control_endpoint),"
        " control_access_key_sealed = CASE WHEN $12::text IS NULL THEN control_access_key_sealed"
        " ELSE nullif($12, '') END,"
        " control_secret_key_sealed = CASE WHEN $13::text IS NULL THEN control_secret_key_sealed"
        " ELSE nullif($13, '') END,"
        " control_token_sealed = CASE WHEN $14::text IS NULL THEN control_token_sealed ELSE nullif($14, '') END,"
        " kernel_default_protocol = coalesce($15, kernel_default_protocol),"
        " kernel_http_timeout_seconds = $16::integer, kernel_status_poll_interval_seconds = $17::integer,"
        " kernel_status_poll_backoff_enabled = $18::boolean,"
        " kernel_status_poll_backoff_max_interval_seconds = $19::integer,"
        " kernel_status_poll_backoff_multiplier = $20::double precision,"
        " kernel_status_poll_backoff_jitter = $21::double precision,"
        " kernel_offline_probe_max_interval_seconds = $22::integer,"
        " status_sync_enabled = coalesce($23::boolean, status_sync_enabled), updated_at = now() WHERE id = $1";
    static const char *const names[] = {
        NULL, "name", "region", "country", "isp", "description", "access_address", "status", "tags",
        "capacity_mbps", "control_endpoint", "control_access_key", "control_secret_key", "control_token",
        "kernel_default_protocol", "kernel_http_timeout_seconds", "kernel_status_poll_interval_seconds",
        "kernel_status_poll_backoff_enabled", "kernel_status_poll_backoff_max_interval_seconds",
        "kernel_status_poll_backoff_multiplier", "kernel_status_poll_backoff_jitter",
        "kernel_offline_probe_max_interval_seconds", "status_sync_enabled"};
    static const znp_array_t empty = {0, NULL};
    const znp_node_update_t *body = &req->body;
    char id_text[24], status[24], capacity[24], timeout[24], interval[24], max_interval[24], multiplier[32],
        jitter[32], probe[24];
    const char *params[23] = {0};
    int set[23] = {0};
    settings_t s;
    PGresult *res = NULL;
    json_t *changed = NULL, *diff = NULL;
    int rc;

    params[0] = znp_nodes__int(id_text, sizeof(id_text), req->id);
    if (body->has.name == ZNP_SET && (rc = required_text(ctx, "$.name", body->name, &params[1])) != 0)
        return rc;
    if ((rc = patch_text(ctx, body->has.region, body->region, &params[2])) != 0 ||
        (rc = patch_text(ctx, body->has.country, body->country, &params[3])) != 0 ||
        (rc = patch_text(ctx, body->has.isp, body->isp, &params[4])) != 0 ||
        (rc = patch_text(ctx, body->has.description, body->description, &params[5])) != 0)
        return rc;
    if (body->has.access_address == ZNP_NULL)
        params[6] = "";
    else if (body->has.access_address == ZNP_SET &&
             (rc = znp_nodes__normalize_address(ctx, "$.access_address", body->access_address, &params[6])) != 0)
        return rc;
    if (body->has.status == ZNP_SET)
        params[7] = znp_nodes__int(status, sizeof(status), body->status);
    if (body->has.tags != ZNP_ABSENT &&
        (rc = znp_nodes__tags_text(ctx, body->has.tags == ZNP_SET ? &body->tags : &empty, &params[8])) != 0)
        return rc;
    if (body->has.capacity_mbps == ZNP_SET)
        params[9] = znp_nodes__int(capacity, sizeof(capacity), body->capacity_mbps);
    if (body->has.control_endpoint == ZNP_SET &&
        (rc = znp_nodes__normalize_url(ctx, "$.control_endpoint", body->control_endpoint, &params[10])) != 0)
        return rc;
    if (body->has.kernel_default_protocol == ZNP_SET &&
        (params[14] = znp_nodes__lower(ctx, body->kernel_default_protocol)) == NULL)
        return ZNP_E_INTERNAL;
    if (body->has.status_sync_enabled == ZNP_SET)
        params[22] = body->status_sync_enabled ? "true" : "false";
    for (int i = 1; i < 23; i++)
        set[i] = params[i] != NULL;
    set[11] = body->has.control_access_key != ZNP_ABSENT || body->has.ak == ZNP_SET;
    set[12] = body->has.control_secret_key != ZNP_ABSENT || body->has.sk == ZNP_SET;
    set[13] = body->has.control_token != ZNP_ABSENT;
    set[15] = body->has.kernel_http_timeout_seconds == ZNP_SET;
    set[16] = body->has.kernel_status_poll_interval_seconds == ZNP_SET;
    set[17] = body->has.kernel_status_poll_backoff_enabled == ZNP_SET;
    set[18] = body->has.kernel_status_poll_backoff_max_interval_seconds == ZNP_SET;
    set[19] = body->has.kernel_status_poll_backoff_multiplier == ZNP_SET;
    set[20] = body->has.kernel_status_poll_backoff_jitter == ZNP_SET;
    set[21] = body->has.kernel_offline_probe_max_interval_seconds == ZNP_SET;

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, sql_lock, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no node with this id");
        goto cleanup;
    }
    s.timeout = set[15] ? body->kernel_http_timeout_seconds : znp_sql_int64(res, 0, 0);
    s.interval = set[16] ? body->kernel_status_poll_interval_seconds : znp_sql_int64(res, 0, 1);
    s.backoff = set[17] ? body->kernel_status_poll_backoff_enabled : znp_sql_bool(res, 0, 2);
    s.max_interval = set[18] ? body->kernel_status_poll_backoff_max_interval_seconds : znp_sql_int64(res, 0, 3);
    s.multiplier = set[19] ? body->kernel_status_poll_backoff_multiplier : strtod(PQgetvalue(res, 0, 4), NULL);
    s.jitter = set[20] ? body->kernel_status_poll_backoff_jitter : strtod(PQgetvalue(res, 0, 5), NULL);
    s.probe = set[21] ? body->kernel_offline_probe_max_interval_seconds : znp_sql_int64(res, 0, 6);
    PQclear(res);
    res = NULL;
    if ((rc = check_settings(ctx, &s)) != 0)
        goto cleanup;
    params[15] = znp_nodes__int(timeout, sizeof(timeout), s.timeout);
    params[16] = znp_nodes__int(interval, sizeof(interval), s.interval);
    params[17] = s.backoff ? "true" : "false";
    params[18] = znp_nodes__int(max_interval, sizeof(max_interval), s.max_interval);
    params[19] = real_text(multiplier, sizeof(multiplier), s.multiplier);
    params[20] = real_text(jitter, sizeof(jitter), s.jitter);
    params[21] = znp_nodes__int(probe, sizeof(probe), s.probe);
    if (set[11] && (rc = seal(ctx, req->id, "control_access_key",
                               patch_secret(body->has.control_access_key, body->control_access_key,
                                            body->has.ak, body->ak),
                               &params[11])) != 0)
        goto cleanup;
    if (set[12] && (rc = seal(ctx, req->id, "control_secret_key",
                               patch_secret(body->has.control_secret_key, body->control_secret_key,
                                            body->has.sk, body->sk),
                               &params[12])) != 0)
        goto cleanup;
    if (set[13] && (rc = seal(ctx, req->id, "control_token",
                               body->has.control_token == ZNP_SET ? body->control_token : "", &params[13])) != 0)
        goto cleanup;
    rc = znp_sql_exec_unique(&res, ctx->err, ctx->db, sql, 23, params, &NAME_TAKEN, ctx->request_id);
    if (rc != 0)
        goto cleanup;

    /* the audit row names the fields the request set, never their secret values */
    if ((changed = json_array()) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    for (int i = 1; i < 23; i++)
        if (set[i])
            json_array_append_new(changed, json_string(names[i]));
    if (json_array_size(changed) > 0) {
        diff = json_pack("{s:O}", "changed", changed);
        if (diff == NULL) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
        rc = znp_nodes__audit(ctx, "admin.node.update", req->id, diff);
    }
    if (rc == 0)
        rc = reload(ctx, req->id, &resp->node);

cleanup:
    json_decref(changed);
    json_decref(diff);
    PQclear(res);
    return finish_served(ctx, rc);
}

int znp_op_delete_admin_node(znp_ctx_t *ctx, const znp_delete_admin_node_request_t *req)
{
    static const char sql[] = "UPDATE nodes SET deleted_at = now(), updated_at = now()"
                              " WHERE id = $1 AND deleted_at IS NULL RETURNING id";
    static const char sql_kernels[] = "DELETE FROM node_kernels WHERE node_id = $1";
    char text[24];
    const char *params[1] = {znp_nodes__int(text, sizeof(text), req->id)};
    znp_bindings_removal_t *removal = NULL;
    PGresult *res = NULL;
    json_t *binding_ids = NULL, *diff = NULL;
    int rc = znp_sql_begin(ctx->db, ctx->request_id);

    if (rc != 0)
        return rc;
    /* the bindings go first, while the node's kernel credentials can still be read */
    if ((binding_ids = json_array()) == NULL)
        rc = ZNP_E_INTERNAL;
    if (rc == 0)
        rc = znp_bindings_delete_node(ctx->db, ctx->config, req->id, binding_ids, &removal, ctx->request_id);
    if (rc == 0)
        rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);
    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no node with this id");
    if (rc == 0)
        rc = znp_sql_exec(NULL, ctx->db, sql_kernels, 1, params, ctx->request_id);
    if (rc == 0 && (diff = json_pack("{s:O}", "binding_ids", binding_ids)) == NULL)
        rc = ZNP_E_INTERNAL;
    if (rc == 0)
        rc = znp_nodes__audit(ctx, "admin.node.delete", req->id, diff);
    PQclear(res);
    json_decref(binding_ids);
    json_decref(diff);
    rc = finish_served(ctx, rc);
    /* after the commit, a best-effort DELETE removes the bindings from the kernel */
    znp_bindings_removal_finish(removal, rc == 0, ctx->request_id);
    return rc;
}

int znp_op_disable_admin_node(znp_ctx_t *ctx, const znp_disable_admin_node_request_t *req,
                              znp_disable_admin_node_response_t *resp)
{
    /*
     * NOTE: the status poller and every sync must leave nodes in status 3
     * (maintenance) and 4 (disabled) alone: their updates must carry
     * "AND status IN (1, 2) AND status_sync_enabled" in the WHERE clause.
     */
    static const char sql[] = "UPDATE nodes SET status = 4, updated_at = now()"
                              " WHERE id = $1 AND deleted_at IS NULL RETURNING id";
    char text[24];
    const char *params[1] = {znp_nodes__int(text, sizeof(text), req->id)};
    PGresult *res = NULL;
    int rc = znp_sql_begin(ctx->db, ctx->request_id);

    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);
    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no node with this id");
    if (rc == 0)
        rc = znp_nodes__audit(ctx, "admin.node.disable", req->id, NULL);
    if (rc == 0)
        rc = reload(ctx, req->id, &resp->node);
    PQclear(res);
    return finish_served(ctx, rc);
}

/* ORDER BY text of each sort key. The codec already limits `sort` and `direction` to their enums. */
static const znp_sql_order_t ORDERS[] = {
    {"updated_at", "n.updated_at ASC, n.id ASC", "n.updated_at DESC, n.id DESC"},
    {"name", "n.name ASC, n.id ASC", "n.name DESC, n.id DESC"},
    {"region", "lower(n.region) ASC, n.id ASC", "lower(n.region) DESC, n.id DESC"},
    {"last_synced_at", "n.last_synced_at ASC NULLS FIRST, n.id ASC", "n.last_synced_at DESC NULLS LAST, n.id DESC"},
    {"capacity_mbps", "n.capacity_mbps ASC, n.id ASC", "n.capacity_mbps DESC, n.id DESC"},
    {"id", "n.id ASC", "n.id DESC"},
};

#define NODE_FILTER                                                                                                    \
    " FROM nodes n WHERE n.deleted_at IS NULL"                                                                         \
    " AND ($1::text IS NULL OR strpos(lower(n.name), lower($1)) > 0 OR strpos(lower(n.region), lower($1)) > 0"         \
    " OR strpos(lower(n.description), lower($1)) > 0)"                                                                 \
    " AND ($2::smallint IS NULL OR n.status = $2::smallint) AND ($3::text IS NULL OR lower(n.region) = lower($3))"     \
    " AND ($4::json IS NULL OR n.tags @> ARRAY(SELECT json_array_elements_text($4::json)))"                           \
    " AND ($5::text IS NULL OR EXISTS (SELECT 1 FROM node_kernels k WHERE k.node_id = n.id AND k.protocol = lower($5)))"

/* The comma-separated tag filter as a JSON array text (NULL when it names no tag). */
static int tag_filter(znp_ctx_t *ctx, const char *in, const char **out)
{
    char **parts;
    size_t count = 1, n = 0;
    znp_array_t list;
    const char *p;
    int rc;

    *out = NULL;
    for (p = in; *p != '\0'; p++)
        count += *p == ',';
    if ((parts = znp_arena_alloc(ctx->arena, count * sizeof(*parts))) == NULL)
        return ZNP_E_INTERNAL;
    for (p = in;;) {
        size_t len = strcspn(p, ",");
        if ((parts[n++] = znp_arena_strndup(ctx->arena, p, len)) == NULL)
            return ZNP_E_INTERNAL;
        if (p[len] == '\0')
            break;
        p += len + 1;
    }
    list.count = n;
    list.items = parts;
    rc = znp_nodes__tags_text(ctx, &list, out);
    if (rc == 0 && strcmp(*out, "[]") == 0)
        *out = NULL;
    return rc;
}

int znp_op_list_admin_nodes(znp_ctx_t *ctx, const znp_list_admin_nodes_request_t *req,
                            znp_list_admin_nodes_response_t *resp)
{
    char status[24];
    const char *filter[5] = {0};
    znp_sql_list_t list = {"SELECT count(*)" NODE_FILTER, NULL, filter, 5, req->page, req->per_page};
    PGresult *res = NULL;
    znp_node_t *items = NULL;
    int rows, rc;

    filter[0] = req->has.q == ZNP_SET && req->q[0] != '\0' ? req->q : NULL;
    filter[1] =
        req->has.status == ZNP_SET && req->status != 0 ? znp_nodes__int(status, sizeof(status), req->status) : NULL;
    filter[2] = req->has.region == ZNP_SET && req->region[0] != '\0' ? req->region : NULL;
    if (req->has.tags == ZNP_SET && (rc = tag_filter(ctx, req->tags, &filter[3])) != 0)
        return rc;
    filter[4] = req->has.protocol == ZNP_SET && req->protocol[0] != '\0' ? req->protocol : NULL;
    list.page_sql =
        znp_arena_printf(ctx->arena, "SELECT " NODE_COLUMNS NODE_FILTER " ORDER BY %s LIMIT $6 OFFSET $7",
                         znp_sql_order(ORDERS, sizeof(ORDERS) / sizeof(ORDERS[0]), req->sort, req->direction, 1));
    if (list.page_sql == NULL)
        return ZNP_E_INTERNAL;

    rc = znp_sql_list(&res, &resp->pagination, ctx->db, &list, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rows = PQntuples(res);
    if (rows > 0 && (items = znp_arena_alloc(ctx->arena, (size_t)rows * sizeof(*items))) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    for (int i = 0; i < rows && rc == 0; i++)
        rc = fill_node(ctx, res, i, &items[i]);
    if (rc != 0)
        goto cleanup;
    resp->nodes.count = (size_t)rows;
    resp->nodes.items = items;

cleanup:
    znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    return rc;
}
