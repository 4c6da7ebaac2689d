/*
 * The user_mfa and mfa_recovery_codes rows: loading and sealing seeds,
 * accepting a code once, and replacing recovery codes.
 */
#include "mfa/internal.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/auth_internal.h"
#include "auth/sql.h"
#include "config/config.h"
#include "core/log.h"
#include "errors.gen.h"

#define LOG_TAG "mfa"

#define SEALED_MAX (ZNP_MFA_SECRET_BYTES + ZNP_CRYPTO_OVERHEAD)

static const char SQL_LOAD[] =
    "SELECT enabled, encode(secret, 'hex'), encode(pending_secret, 'hex'),"
    " COALESCE(floor(extract(epoch FROM confirmed_at))::bigint, 0), last_used_step"
    " FROM user_mfa WHERE user_id = $1";

static const char SQL_LOAD_LOCKED[] =
    "SELECT enabled, encode(secret, 'hex'), encode(pending_secret, 'hex'),"
    " COALESCE(floor(extract(epoch FROM confirmed_at))::bigint, 0), last_used_step"
    " FROM user_mfa WHERE user_id = $1 FOR UPDATE";

/* the replay guard: only a step later than the last accepted one moves it */
static const char SQL_USE_STEP[] =
    "UPDATE user_mfa SET last_used_step = $2::bigint, updated_at = now()"
    " WHERE user_id = $1 AND enabled AND last_used_step < $2::bigint";

static const char SQL_USE_RECOVERY[] =
    "UPDATE mfa_recovery_codes SET used_at = now()"
    " WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL";

static const char SQL_DELETE_RECOVERY[] = "DELETE FROM mfa_recovery_codes WHERE user_id = $1";

static const char SQL_INSERT_RECOVERY[] = "INSERT INTO mfa_recovery_codes (user_id, code_hash) VALUES ($1, $2)";

int mfa__master_key(znp_ctx_t *ctx, uint8_t key[ZNP_CRYPTO_KEY_LEN])
{
    if (znp_crypto_key_decode(key, ctx->config->security.master_key) != 0) {
        ZNP_ERROR(LOG_TAG, ctx->request_id, "security.master_key is missing or not 32 bytes of base64");
        return ZNP_E_INTERNAL;
    }
    return 0;
}

static void associated_data(char *out, size_t out_size, int64_t user_id)
{
    snprintf(out, out_size, "znp:mfa:totp:%lld", (long long)user_id);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode the hex text of a sealed seed and open it into out (ZNP_MFA_SECRET_BYTES). */
static int open_seed(uint8_t *out, size_t *out_len, const uint8_t key[ZNP_CRYPTO_KEY_LEN], const char *hex,
                     int64_t user_id)
{
    uint8_t sealed[SEALED_MAX];
    char aad[48];
    size_t len = strlen(hex) / 2;

    if (strlen(hex) != 2 * SEALED_MAX)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < len; i++) {
        int high = hex_value(hex[2 * i]), low = hex_value(hex[2 * i + 1]);

        if (high < 0 || low < 0)
            return ZNP_E_INTERNAL;
        sealed[i] = (uint8_t)(high << 4 | low);
    }
    associated_data(aad, sizeof aad, user_id);
    return znp_crypto_open(out, ZNP_MFA_SECRET_BYTES, out_len, key, sealed, len, aad, strlen(aad));
}

int mfa__seal(char **out, znp_ctx_t *ctx, int64_t user_id, const uint8_t *seed, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t key[ZNP_CRYPTO_KEY_LEN], sealed[SEALED_MAX];
    size_t sealed_len = 0;
    char aad[48];
    char *text;
    int rc;

    *out = NULL;
    rc = mfa__master_key(ctx, key);
    if (rc != 0)
        return rc;
    associated_data(aad, sizeof aad, user_id);
    rc = znp_crypto_seal(sealed, sizeof sealed, &sealed_len, key, seed, len, aad, strlen(aad));
    OPENSSL_cleanse(key, sizeof key);
    if (rc != 0)
        return rc;

    text = znp_arena_alloc(ctx->arena, 2 * sealed_len + 1);
    if (text == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < sealed_len; i++) {
        text[2 * i] = hex[sealed[i] >> 4];
        text[2 * i + 1] = hex[sealed[i] & 15];
    }
    text[2 * sealed_len] = '\0';
    *out = text;
    return 0;
}

int mfa__state_load(mfa_state_t *out, znp_ctx_t *ctx, int64_t user_id, int lock)
{
    uint8_t key[ZNP_CRYPTO_KEY_LEN];
    char id[24];
    const char *params[1] = {id};
    PGresult *res = NULL;
    int rc;

    memset(out, 0, sizeof *out);
    out->last_used_step = -1;
    snprintf(id, sizeof id, "%lld", (long long)user_id);
    rc = znp_sql_exec(&res, ctx->db, lock ? SQL_LOAD_LOCKED : SQL_LOAD, 1, params, ctx->request_id);
    if (rc != 0 || PQntuples(res) != 1)
        goto cleanup;

    out->found = 1;
    out->enabled = znp_sql_bool(res, 0, 0);
    out->confirmed_at = znp_sql_int64(res, 0, 3);
    out->last_used_step = znp_sql_int64(res, 0, 4);
    if (PQgetisnull(res, 0, 1) && PQgetisnull(res, 0, 2))
        goto cleanup;

    /* the seeds */
    rc = mfa__master_key(ctx, key);
    if (rc != 0)
        goto cleanup;
    if (!PQgetisnull(res, 0, 1))
        rc = open_seed(out->secret, &out->secret_len, key, PQgetvalue(res, 0, 1), user_id);
    if (rc == 0 && !PQgetisnull(res, 0, 2))
        rc = open_seed(out->pending, &out->pending_len, key, PQgetvalue(res, 0, 2), user_id);
    OPENSSL_cleanse(key, sizeof key);
    if (rc != 0)
        ZNP_ERROR(LOG_TAG, ctx->request_id,
                  "stored TOTP seed does not decrypt (security.master_key changed or row damaged) user=%lld",
                  (long long)user_id);

cleanup:
    PQclear(res);
    if (rc != 0)
        mfa__state_dispose(out);
    return rc;
}

void mfa__state_dispose(mfa_state_t *state)
{
    if (state == NULL)
        return;
    OPENSSL_cleanse(state->secret, sizeof state->secret);
    OPENSSL_cleanse(state->pending, sizeof state->pending);
    state->secret_len = 0;
    state->pending_len = 0;
}

static int accept_totp(znp_ctx_t *ctx, int64_t user_id, const mfa_state_t *state, const char *code)
{
    char id[24], step_text[24];
    const char *params[2] = {id, step_text};
    PGresult *res = NULL;
    int64_t step = 0;
    int rc;

    rc = znp_totp_match(&step, state->secret, state->secret_len, znp_auth__now(ctx), code, state->last_used_step);
    if (rc != 0)
        return rc;
    snprintf(id, sizeof id, "%lld", (long long)user_id);
    snprintf(step_text, sizeof step_text, "%lld", (long long)step);
    rc = znp_sql_exec(&res, ctx->db, SQL_USE_STEP, 2, params, ctx->request_id);
    if (rc == 0 && strcmp(PQcmdTuples(res), "1") != 0) {
        ZNP_INFO(LOG_TAG, ctx->request_id, "TOTP code of an already used time step rejected user=%lld",
                 (long long)user_id);
        rc = ZNP_E_MFA_CODE_INVALID;
    }
    PQclear(res);
    return rc;
}

static int accept_recovery(znp_ctx_t *ctx, int64_t user_id, const char *code)
{
    uint8_t key[ZNP_CRYPTO_KEY_LEN];
    char normalized[9], hash[65], id[24];
    const char *params[2] = {id, hash};
    PGresult *res = NULL;
    int rc;

    rc = znp_mfa_recovery_normalize(normalized, code);
    if (rc != 0)
        return rc;
    rc = mfa__master_key(ctx, key);
    if (rc != 0)
        return rc;
    rc = znp_mfa_recovery_hash(hash, key, normalized);
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(normalized, sizeof normalized);
    if (rc != 0)
        return rc;

    snprintf(id, sizeof id, "%lld", (long long)user_id);
    rc = znp_sql_exec(&res, ctx->db, SQL_USE_RECOVERY, 2, params, ctx->request_id);
    if (rc == 0 && strcmp(PQcmdTuples(res), "1") != 0)
        rc = ZNP_E_MFA_CODE_INVALID;
    PQclear(res);
    if (rc == 0) {
        ZNP_INFO(LOG_TAG, ctx->request_id, "recovery code used user=%lld", (long long)user_id);
        rc = mfa__audit(ctx, user_id, "mfa.recovery_used");
    }
    return rc;
}

int mfa__code_accept(znp_ctx_t *ctx, int64_t user_id, const mfa_state_t *state, const char *code)
{
    if (!state->enabled || state->secret_len == 0)
        return ZNP_E_MFA_CODE_INVALID;
    if (strlen(code) == ZNP_MFA_DIGITS && strspn(code, "0123456789") == ZNP_MFA_DIGITS)
        return accept_totp(ctx, user_id, state, code);
    return accept_recovery(ctx, user_id, code);
}

/* A random recovery code "xxxx-xxxx" of 8 base32 characters (40 bits). */
static int recovery_code_new(char out[ZNP_MFA_RECOVERY_TEXT + 1])
{
    uint8_t bytes[5];
    char text[9];

    if (RAND_bytes(bytes, sizeof bytes) != 1 || znp_base32_encode(text, sizeof text, bytes, sizeof bytes) != 8)
        return ZNP_E_INTERNAL;
    for (int i = 0; i < 8; i++)
        text[i] = (char)(text[i] >= 'A' && text[i] <= 'Z' ? text[i] - 'A' + 'a' : text[i]);
    memcpy(out, text, 4);
    out[4] = '-';
    memcpy(out + 5, text + 4, 4);
    out[9] = '\0';
    OPENSSL_cleanse(bytes, sizeof bytes);
    OPENSSL_cleanse(text, sizeof text);
    return 0;
}

int mfa__recovery_codes_replace(znp_ctx_t *ctx, int64_t user_id, znp_array_t *out)
{
    uint8_t key[ZNP_CRYPTO_KEY_LEN];
    char id[24], hash[65], normalized[9];
    const char *params[2] = {id, hash};
    char **codes;
    int rc;

    out->count = 0;
    out->items = NULL;
    codes = znp_arena_alloc(ctx->arena, ZNP_MFA_RECOVERY_COUNT * sizeof *codes);
    if (codes == NULL)
        return ZNP_E_INTERNAL;
    rc = mfa__master_key(ctx, key);
    if (rc != 0)
        return rc;

    snprintf(id, sizeof id, "%lld", (long long)user_id);
    rc = znp_sql_exec(NULL, ctx->db, SQL_DELETE_RECOVERY, 1, params, ctx->request_id);
    for (int i = 0; rc == 0 && i < ZNP_MFA_RECOVERY_COUNT; i++) {
        codes[i] = znp_arena_alloc(ctx->arena, ZNP_MFA_RECOVERY_TEXT + 1);
        if (codes[i] == NULL) {
            rc = ZNP_E_INTERNAL;
            break;
        }
        rc = recovery_code_new(codes[i]);
        if (rc == 0)
            rc = znp_mfa_recovery_normalize(normalized, codes[i]) == 0 ? 0 : ZNP_E_INTERNAL;
        if (rc == 0)
            rc = znp_mfa_recovery_hash(hash, key, normalized);
        /* two equal codes out of 2^40 would break the UNIQUE constraint: the caller's transaction then fails */
        if (rc == 0)
            rc = znp_sql_exec(NULL, ctx->db, SQL_INSERT_RECOVERY, 2, params, ctx->request_id);
    }
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(normalized, sizeof normalized);
    if (rc != 0)
        return rc;
    out->count = ZNP_MFA_RECOVERY_COUNT;
    out->items = codes;
    return 0;
}

int mfa__audit(znp_ctx_t *ctx, int64_t user_id, const char *action)
{
    znp_audit_entry_t entry = {0};
    char id[24];

    snprintf(id, sizeof id, "%lld", (long long)user_id);
    entry.actor_id = ctx->caller.user_id != 0 ? ctx->caller.user_id : user_id;
    entry.action = action;
    entry.resource_type = "user";
    entry.resource_id = id;
    return znp_audit_record(ctx, ctx->db, &entry);
}

int znp_mfa_enabled(znp_ctx_t *ctx, int64_t user_id, int *enabled)
{
    static const char sql[] = "SELECT EXISTS (SELECT 1 FROM user_mfa WHERE user_id = $1 AND enabled)";
    char id[24];
    const char *params[1] = {id};
    PGresult *res = NULL;
    int rc;

    *enabled = 0;
    snprintf(id, sizeof id, "%lld", (long long)user_id);
    rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);
    if (rc == 0)
        *enabled = PQntuples(res) == 1 && znp_sql_bool(res, 0, 0);
    PQclear(res);
    return rc;
}
