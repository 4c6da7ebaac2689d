/*
 * GET and PATCH /api/v1/{admin}/security-settings, the secret rotation and
 * the in-process copy of the row. The secret is write-only: it is generated
 * here, returned once (by the read that created the row, or by a rotation)
 * and stored sealed with security.master_key.
 */
#include "operations.gen.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "core/crypto.h"
#include "core/log.h"
#include "protect/protect.h"
#include "security/internal.h"

#define LOG_TAG    "security"
#define SECRET_AAD "security_settings:api_secret"
#define SEALED_MAX (((SECURITY_SECRET_LEN + ZNP_CRYPTO_OVERHEAD) + 2) / 3 * 4 + 1)

#define COLUMNS                                                                                                        \
    "third_party_api_enabled, api_key, api_secret_sealed, api_secret_last4, encryption_algorithm,"                    \
    " nonce_ttl_seconds, array_to_json(signed_route_groups)::text,"                                                    \
    " floor(extract(epoch FROM created_at))::bigint, floor(extract(epoch FROM updated_at))::bigint"

enum { COL_ENABLED, COL_KEY, COL_SEALED, COL_LAST4, COL_ALGORITHM, COL_TTL, COL_GROUPS, COL_CREATED, COL_UPDATED };

static const char SQL_SELECT[] = "SELECT " COLUMNS " FROM security_settings WHERE id = 1";
static const char SQL_LOCK[] = "SELECT " COLUMNS " FROM security_settings WHERE id = 1 FOR UPDATE";
static const char SQL_INSERT[] = "INSERT INTO security_settings (id, api_key, api_secret_sealed, api_secret_last4)"
                                 " VALUES (1, $1, $2, $3) ON CONFLICT (id) DO NOTHING RETURNING " COLUMNS;

/* updated_at moves by at least a second per write, so a stale copy never matches */
#define NEXT_UPDATED_AT "date_trunc('second', greatest(now(), updated_at + interval '1 second'))"

static const char SQL_UPDATE[] =
    "UPDATE security_settings SET"
    " third_party_api_enabled = CASE WHEN $1::boolean THEN $2::boolean ELSE third_party_api_enabled END,"
    " api_key = CASE WHEN $3::boolean THEN $4 ELSE api_key END,"
    " nonce_ttl_seconds = CASE WHEN $5::boolean THEN $6::int ELSE nonce_ttl_seconds END,"
    " signed_route_groups = CASE WHEN $7::boolean"
    "   THEN ARRAY(SELECT json_array_elements_text($8::json)) ELSE signed_route_groups END,"
    " updated_at = CASE WHEN $1::boolean OR $3::boolean OR $5::boolean OR $7::boolean"
    "   THEN " NEXT_UPDATED_AT " ELSE updated_at END"
    " WHERE id = 1 RETURNING " COLUMNS;

static const char SQL_ROTATE[] = "UPDATE security_settings SET api_secret_sealed = $1, api_secret_last4 = $2,"
                                 " updated_at = " NEXT_UPDATED_AT " WHERE id = 1 RETURNING " COLUMNS;

static const char *const group_names[] = {"public", "user", "admin"}; /* index = znp_route_group_t */

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static security_snapshot_t cache;

void security__cache_get(security_snapshot_t *out)
{
    pthread_mutex_lock(&cache_lock);
    *out = cache;
    pthread_mutex_unlock(&cache_lock);
}

void security__cache_set(const security_snapshot_t *snapshot)
{
    pthread_mutex_lock(&cache_lock);
    cache = *snapshot;
    pthread_mutex_unlock(&cache_lock);
}

int znp_security_signing_required(int group)
{
    int required;

    pthread_mutex_lock(&cache_lock);
    required = cache.enabled && (cache.groups & ZNP_SIGNED_GROUP_BIT(group)) != 0;
    pthread_mutex_unlock(&cache_lock);
    return required;
}

static int master_key(const znp_config_t *config, uint8_t key[ZNP_CRYPTO_KEY_LEN], const char *request_id)
{
    if (znp_crypto_key_decode(key, config->security.master_key) != 0) {
        ZNP_ERROR(LOG_TAG, request_id, "security.master_key is missing or not 32 bytes of base64");
        return ZNP_E_INTERNAL;
    }
    return 0;
}

/* `len` random characters of base64url into out (NUL-terminated). */
static int random_text(char *out, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint8_t bytes[SECURITY_SECRET_LEN];

    if (len > sizeof bytes || RAND_bytes(bytes, (int)len) != 1)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < len; i++)
        out[i] = alphabet[bytes[i] & 63];
    out[len] = '\0';
    OPENSSL_cleanse(bytes, sizeof bytes);
    return 0;
}

/* A new secret, its sealed base64 form and its last four characters. */
static int new_secret(const znp_config_t *config, const char *request_id, char secret[SECURITY_SECRET_LEN + 1],
                      char sealed_text[SEALED_MAX], char last4[5])
{
    uint8_t key[ZNP_CRYPTO_KEY_LEN];
    uint8_t sealed[SECURITY_SECRET_LEN + ZNP_CRYPTO_OVERHEAD];
    size_t sealed_len = 0;
    int rc;

    rc = master_key(config, key, request_id);
    if (rc == 0)
        rc = random_text(secret, SECURITY_SECRET_LEN);
    if (rc == 0)
        rc = znp_crypto_seal(sealed, sizeof sealed, &sealed_len, key, secret, SECURITY_SECRET_LEN, SECRET_AAD,
                             sizeof SECRET_AAD - 1);
    if (rc == 0) {
        EVP_EncodeBlock((unsigned char *)sealed_text, sealed, (int)sealed_len);
        memcpy(last4, secret + SECURITY_SECRET_LEN - 4, 4);
        last4[4] = '\0';
    }
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

/* Open the sealed secret of a row into out. */
static int open_secret(const znp_config_t *config, const char *sealed_text, char out[SECURITY_SECRET_LEN + 1],
                       const char *request_id)
{
    uint8_t key[ZNP_CRYPTO_KEY_LEN];
    uint8_t sealed[SEALED_MAX];
    size_t len = strlen(sealed_text), plain_len = 0, pad = 0;
    int n, rc;

    rc = master_key(config, key, request_id);
    if (rc != 0)
        return rc;
    if (len == 0 || len % 4 != 0 || len >= sizeof sealed) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    pad = (sealed_text[len - 1] == '=') + (sealed_text[len - 2] == '=');
    n = EVP_DecodeBlock(sealed, (const unsigned char *)sealed_text, (int)len);
    if (n < (int)pad) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    rc = znp_crypto_open((uint8_t *)out, SECURITY_SECRET_LEN, &plain_len, key, sealed, (size_t)n - pad, SECRET_AAD,
                         sizeof SECRET_AAD - 1);
    if (rc == 0 && plain_len != SECURITY_SECRET_LEN)
        rc = ZNP_E_INTERNAL;
    if (rc == 0)
        out[SECURITY_SECRET_LEN] = '\0';
    else
        ZNP_ERROR(LOG_TAG, request_id, "stored api secret does not open (security.master_key changed or row damaged)");

cleanup:
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

static unsigned parse_groups(const char *json_text)
{
    json_t *groups = json_loads(json_text, 0, NULL);
    unsigned bits = 0;
    size_t i;
    json_t *item;

    json_array_foreach (groups, i, item) {
        for (int g = 0; g < ZNP_GROUP_COUNT; g++) {
            if (json_is_string(item) && strcmp(json_string_value(item), group_names[g]) == 0)
                bits |= ZNP_SIGNED_GROUP_BIT(g);
        }
    }
    json_decref(groups);
    return bits;
}

/* The cache entry for a row; a secret that does not open leaves it not loaded, so signed requests fail. */
static void snapshot_of(security_snapshot_t *out, const PGresult *res, const znp_config_t *config,
                        const char *request_id)
{
    memset(out, 0, sizeof(*out));
    out->enabled = znp_sql_bool(res, 0, COL_ENABLED);
    out->groups = parse_groups(PQgetvalue(res, 0, COL_GROUPS));
    out->nonce_ttl = (int)znp_sql_int64(res, 0, COL_TTL);
    snprintf(out->api_key, sizeof out->api_key, "%s", PQgetvalue(res, 0, COL_KEY));
    out->loaded = open_secret(config, PQgetvalue(res, 0, COL_SEALED), out->api_secret, request_id) == 0;
}

int znp_security_cache_refresh(PGconn *db, const znp_config_t *config)
{
    security_snapshot_t loaded;
    PGresult *res = NULL;
    int rc = znp_sql_exec(&res, db, SQL_SELECT, 0, NULL, NULL);

    if (rc != 0) {
        ZNP_WARN(LOG_TAG, NULL, "could not reload the security settings, keeping the cached copy");
        goto cleanup;
    }
    memset(&loaded, 0, sizeof loaded);
    if (PQntuples(res) == 1)
        snapshot_of(&loaded, res, config, NULL);
    else
        loaded.loaded = 1; /* no row yet: signing is off */
    security__cache_set(&loaded);
    OPENSSL_cleanse(&loaded, sizeof loaded);

cleanup:
    PQclear(res);
    return rc;
}

static int fill_setting(znp_ctx_t *ctx, const PGresult *res, znp_security_setting_t *out)
{
    json_t *groups = json_loads(PQgetvalue(res, 0, COL_GROUPS), 0, NULL);
    size_t count = json_array_size(groups);
    char **items = count > 0 ? znp_arena_alloc(ctx->arena, count * sizeof(*items)) : NULL;
    int rc = 0;

    for (size_t i = 0; i < count && items != NULL && rc == 0; i++) {
        items[i] = znp_arena_strdup(ctx->arena, json_string_value(json_array_get(groups, i)));
        if (items[i] == NULL)
            rc = ZNP_E_INTERNAL;
    }
    json_decref(groups);
    if (count > 0 && items == NULL)
        rc = ZNP_E_INTERNAL;
    out->third_party_api_enabled = znp_sql_bool(res, 0, COL_ENABLED);
    out->api_key = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, COL_KEY));
    out->api_secret_last4 = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, COL_LAST4));
    out->encryption_algorithm = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, COL_ALGORITHM));
    out->nonce_ttl_seconds = znp_sql_int64(res, 0, COL_TTL);
    out->signed_route_groups.count = count;
    out->signed_route_groups.items = items;
    out->created_at = znp_sql_int64(res, 0, COL_CREATED);
    out->updated_at = znp_sql_int64(res, 0, COL_UPDATED);
    if (out->api_key == NULL || out->api_secret_last4 == NULL || out->encryption_algorithm == NULL)
        rc = ZNP_E_INTERNAL;
    return rc;
}

/* Refresh this instance's copy from a row just written (others follow through NOTIFY). */
static void cache_row(znp_ctx_t *ctx, const PGresult *res)
{
    security_snapshot_t s;

    snapshot_of(&s, res, ctx->config, ctx->request_id);
    security__cache_set(&s);
    OPENSSL_cleanse(&s, sizeof s);
}

/* Create the row with a generated key and secret. *created_secret is the secret when this call created it. */
static int ensure_row(znp_ctx_t *ctx, const char **created_secret)
{
    char secret[SECURITY_SECRET_LEN + 1], sealed[SEALED_MAX], last4[5], api_key[33];
    const char *params[3] = {api_key, sealed, last4};
    PGresult *res = NULL;
    int rc;

    *created_secret = NULL;
    rc = znp_sql_exec(&res, ctx->db, SQL_SELECT, 0, NULL, ctx->request_id);
    if (rc != 0 || PQntuples(res) == 1)
        goto cleanup;
    PQclear(res);
    res = NULL;
    rc = random_text(api_key, 32);
    if (rc == 0)
        rc = new_secret(ctx->config, ctx->request_id, secret, sealed, last4);
    /* the row and its audit record commit together */
    if (rc == 0)
        rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc == 0)
        rc = znp_sql_exec(&res, ctx->db, SQL_INSERT, 3, params, ctx->request_id);
    if (rc == 0 && PQntuples(res) == 1) {
        /* another request may have created the row meanwhile, and then this one inserts nothing */
        znp_audit_entry_t entry = {
            .action = "admin.security_settings.create",
            .resource_type = "security_settings",
            .resource_id = "1",
        };
        *created_secret = znp_arena_strdup(ctx->arena, secret);
        if (*created_secret == NULL)
            rc = ZNP_E_INTERNAL;
        if (rc == 0)
            rc = znp_audit_record(ctx, ctx->db, &entry);
    }
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0) {
        znp_sql_rollback(ctx->db, ctx->request_id);
        *created_secret = NULL;
    } else if (*created_secret != NULL) {
        cache_row(ctx, res);
    }

cleanup:
    OPENSSL_cleanse(secret, sizeof secret);
    PQclear(res);
    return rc;
}

int znp_op_get_security_settings(znp_ctx_t *ctx, const znp_get_security_settings_request_t *req,
                                 znp_get_security_settings_response_t *resp)
{
    const char *created_secret = NULL;
    PGresult *res = NULL;
    int rc;

    (void)req;
    rc = ensure_row(ctx, &created_secret);
    if (rc == 0)
        rc = znp_sql_exec(&res, ctx->db, SQL_SELECT, 0, NULL, ctx->request_id);
    if (rc == 0 && PQntuples(res) != 1) {
        ZNP_ERROR(LOG_TAG, ctx->request_id, "security_settings row is missing");
        rc = ZNP_E_INTERNAL;
    }
    if (rc == 0)
        rc = fill_setting(ctx, res, &resp->setting);
    if (rc == 0 && created_secret != NULL) {
        resp->api_secret = (char *)created_secret;
        resp->has.api_secret = ZNP_SET;
    }
    PQclear(res);
    return rc;
}

/* Lock the row and compare its updated_at with the caller's copy. *before is the locked row. */
static int lock_current(znp_ctx_t *ctx, int64_t updated_at, PGresult **before)
{
    int rc = znp_sql_exec(before, ctx->db, SQL_LOCK, 0, NULL, ctx->request_id);

    if (rc != 0)
        return rc;
    if (PQntuples(*before) != 1) {
        ZNP_ERROR(LOG_TAG, ctx->request_id, "security_settings row is missing");
        return ZNP_E_INTERNAL;
    }
    if (znp_sql_int64(*before, 0, COL_UPDATED) != updated_at)
        return znp_error_set(ctx->err, ZNP_E_CONFLICT, "$.updated_at",
                             "the settings changed since they were read; read them again and retry");
    return 0;
}

/* {"field": {"from", "to"}} for each audited column that changed */
static json_t *diff_rows(const PGresult *before, const PGresult *after)
{
    static const struct {
        int column;
        const char *name;
    } fields[] = {{COL_ENABLED, "third_party_api_enabled"},
                  {COL_KEY, "api_key"},
                  {COL_TTL, "nonce_ttl_seconds"},
                  {COL_GROUPS, "signed_route_groups"}};
    json_t *diff = json_object();

    for (size_t i = 0; diff != NULL && i < sizeof fields / sizeof fields[0]; i++) {
        const char *old = PQgetvalue(before, 0, fields[i].column);
        const char *now = PQgetvalue(after, 0, fields[i].column);

        if (strcmp(old, now) != 0)
            json_object_set_new(diff, fields[i].name, json_pack("{s:s, s:s}", "from", old, "to", now));
    }
    return diff;
}

/* Check the route group names and build their JSON array (without repeats). */
static int groups_json(znp_ctx_t *ctx, const znp_array_t *groups, const char **out)
{
    json_t *array = json_array();
    unsigned seen = 0;
    char *text;

    for (size_t i = 0; array != NULL && i < groups->count; i++) {
        const char *name = ((char **)groups->items)[i];
        int found = -1;

        for (int g = 0; g < ZNP_GROUP_COUNT; g++) {
            if (strcmp(name, group_names[g]) == 0)
                found = g;
        }
        if (found < 0) {
            json_decref(array);
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.signed_route_groups",
                                 "must name user, admin or public");
        }
        if (!(seen & ZNP_SIGNED_GROUP_BIT(found)))
            json_array_append_new(array, json_string(name));
        seen |= ZNP_SIGNED_GROUP_BIT(found);
    }
    text = array != NULL ? json_dumps(array, JSON_COMPACT) : NULL;
    json_decref(array);
    if (text == NULL)
        return ZNP_E_INTERNAL;
    *out = znp_arena_strdup(ctx->arena, text);
    free(text);
    return *out != NULL ? 0 : ZNP_E_INTERNAL;
}

int znp_op_update_security_settings(znp_ctx_t *ctx, const znp_update_security_settings_request_t *req,
                                    znp_update_security_settings_response_t *resp)
{
    const znp_security_setting_update_t *body = &req->body;
    const char *params[8];
    const char *created_secret = NULL, *groups = "[]";
    char ttl[16];
    PGresult *before = NULL, *after = NULL;
    json_t *diff = NULL;
    int rc;

    if (body->has.api_secret != ZNP_ABSENT)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.api_secret",
                             "the secret is generated by the server; use rotate-secret");
    if (body->has.signed_route_groups == ZNP_SET) {
        rc = groups_json(ctx, &body->signed_route_groups, &groups);
        if (rc != 0)
            return rc;
    }
    snprintf(ttl, sizeof ttl, "%lld", (long long)body->nonce_ttl_seconds);
    params[0] = body->has.third_party_api_enabled == ZNP_SET ? "true" : "false";
    params[1] = body->third_party_api_enabled ? "true" : "false";
    params[2] = body->has.api_key == ZNP_SET ? "true" : "false";
    params[3] = body->has.api_key == ZNP_SET ? body->api_key : "";
    params[4] = body->has.nonce_ttl_seconds == ZNP_SET ? "true" : "false";
    params[5] = ttl;
    params[6] = body->has.signed_route_groups == ZNP_SET ? "true" : "false";
    params[7] = groups;

    rc = ensure_row(ctx, &created_secret);
    if (rc != 0)
        return rc;
    /* the row and its audit record change in one transaction */
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc == 0)
        rc = lock_current(ctx, body->updated_at, &before);
    if (rc == 0)
        rc = znp_sql_exec(&after, ctx->db, SQL_UPDATE, 8, params, ctx->request_id);
    if (rc == 0 && PQntuples(after) != 1)
        rc = ZNP_E_INTERNAL;
    if (rc != 0)
        goto cleanup;
    diff = diff_rows(before, after);
    znp_audit_entry_t entry = {
        .action = "admin.security_settings.update",
        .resource_type = "security_settings",
        .resource_id = "1",
        .diff = diff,
    };
    rc = znp_audit_record(ctx, ctx->db, &entry);
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    cache_row(ctx, after);
    ZNP_INFO(LOG_TAG, ctx->request_id, "security settings updated user=%lld", (long long)ctx->caller.user_id);
    rc = fill_setting(ctx, after, &resp->setting);

cleanup:
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    json_decref(diff);
    PQclear(before);
    PQclear(after);
    return rc;
}

int znp_op_rotate_security_secret(znp_ctx_t *ctx, const znp_rotate_security_secret_request_t *req,
                                  znp_rotate_security_secret_response_t *resp)
{
    char secret[SECURITY_SECRET_LEN + 1], sealed[SEALED_MAX], last4[5];
    const char *params[2] = {sealed, last4};
    const char *created_secret = NULL;
    PGresult *before = NULL, *after = NULL;
    int rc;

    rc = ensure_row(ctx, &created_secret);
    if (rc != 0)
        return rc;
    rc = new_secret(ctx->config, ctx->request_id, secret, sealed, last4);
    if (rc != 0)
        goto cleanup;
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc == 0)
        rc = lock_current(ctx, req->body.updated_at, &before);
    if (rc == 0)
        rc = znp_sql_exec(&after, ctx->db, SQL_ROTATE, 2, params, ctx->request_id);
    if (rc == 0 && PQntuples(after) != 1)
        rc = ZNP_E_INTERNAL;
    if (rc != 0)
        goto cleanup;
    znp_audit_entry_t entry = {
        .action = "admin.security_settings.rotate_secret",
        .resource_type = "security_settings",
        .resource_id = "1",
    };
    rc = znp_audit_record(ctx, ctx->db, &entry);
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    cache_row(ctx, after);
    ZNP_INFO(LOG_TAG, ctx->request_id, "api secret rotated user=%lld", (long long)ctx->caller.user_id);
    rc = fill_setting(ctx, after, &resp->setting);
    if (rc == 0) {
        resp->api_secret = znp_arena_strdup(ctx->arena, secret);
        rc = resp->api_secret != NULL ? 0 : ZNP_E_INTERNAL;
    }

cleanup:
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    OPENSSL_cleanse(secret, sizeof secret);
    PQclear(before);
    PQclear(after);
    return rc;
}
