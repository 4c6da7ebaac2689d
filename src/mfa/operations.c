/*
 * The signed-in user's MFA operations under /api/v1/user/mfa: status,
 * enrollment, confirmation, disabling and new recovery codes. Every state
 * change runs in one transaction that locks the user_mfa row first.
 */
#include "mfa/internal.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth_internal.h"
#include "auth/sql.h"
#include "config/config.h"
#include "core/log.h"
#include "operations.gen.h"
#include "system/site.h"

#define LOG_TAG "mfa"

/* a new enrollment replaces a pending one, never an enabled authenticator */
static const char SQL_ENROLL[] =
    "INSERT INTO user_mfa (user_id, pending_secret, pending_created_at) VALUES ($1, decode($2, 'hex'), now())"
    " ON CONFLICT (user_id) DO UPDATE SET pending_secret = EXCLUDED.pending_secret,"
    "  pending_created_at = now(), updated_at = now()"
    " WHERE NOT user_mfa.enabled";

static const char SQL_CONFIRM[] =
    "UPDATE user_mfa SET enabled = true, secret = pending_secret, pending_secret = NULL, pending_created_at = NULL,"
    " confirmed_at = now(), last_used_step = $2::bigint, updated_at = now()"
    " WHERE user_id = $1 AND NOT enabled AND pending_secret IS NOT NULL";

static const char SQL_DISABLE[] = "DELETE FROM user_mfa WHERE user_id = $1";

static const char SQL_DELETE_RECOVERY[] = "DELETE FROM mfa_recovery_codes WHERE user_id = $1";

static const char SQL_RECOVERY_LEFT[] =
    "SELECT count(*) FROM mfa_recovery_codes WHERE user_id = $1 AND used_at IS NULL";

static const char SQL_PASSWORD_HASH[] = "SELECT password_hash FROM users WHERE id = $1";

/* Percent-encode everything but RFC 3986 unreserved characters, into the arena. */
static char *percent_encode(znp_arena_t *arena, const char *text)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(text), n = 0;
    char *out = znp_arena_alloc(arena, 3 * len + 1);

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            out[n++] = (char)c;
        } else {
            out[n++] = '%';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = '\0';
    return out;
}

/* The issuer shown by authenticator apps: the site name, else the configured one. */
static char *issuer_name(znp_ctx_t *ctx)
{
    znp_site_snapshot_t site;

    znp_site_cache_get(&site);
    return percent_encode(ctx->arena, site.name[0] != '\0' ? site.name : ctx->config->site.name);
}

/* Check the caller's password; a wrong one counts toward the sign-in lockout like a failed sign-in. */
static int check_password(znp_ctx_t *ctx, const char *password)
{
    char id[24];
    const char *params[1] = {id};
    znp_auth_user_t user;
    PGresult *res = NULL;
    int found = 0, rc;

    snprintf(id, sizeof id, "%lld", (long long)ctx->caller.user_id);
    rc = znp_sql_exec(&res, ctx->db, SQL_PASSWORD_HASH, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = ZNP_E_TOKEN_INVALID;
        goto cleanup;
    }
    rc = znp_password_verify(PQgetvalue(res, 0, 0), password, strlen(password));
    if (rc == ZNP_E_INVALID_CREDENTIALS) {
        rc = znp_auth__user_find_by_id(&user, &found, ctx->db, ctx->caller.user_id, ctx->request_id);
        if (rc == 0)
            rc = found ? znp_auth__record_failure(ctx, &user) : ZNP_E_INVALID_CREDENTIALS;
    }

cleanup:
    PQclear(res);
    return rc;
}

int znp_op_get_mfa_status(znp_ctx_t *ctx, const znp_get_mfa_status_request_t *req, znp_get_mfa_status_response_t *resp)
{
    char id[24];
    const char *params[1] = {id};
    mfa_state_t state;
    PGresult *res = NULL;
    int rc;

    (void)req;
    rc = mfa__state_load(&state, ctx, ctx->caller.user_id, 0);
    if (rc != 0)
        return rc;
    snprintf(id, sizeof id, "%lld", (long long)ctx->caller.user_id);
    rc = znp_sql_exec(&res, ctx->db, SQL_RECOVERY_LEFT, 1, params, ctx->request_id);
    if (rc == 0) {
        resp->enabled = state.enabled;
        resp->confirmed_at = state.confirmed_at;
        resp->has.confirmed_at = state.enabled ? ZNP_SET : ZNP_NULL;
        resp->recovery_codes_left = state.enabled ? znp_sql_int64(res, 0, 0) : 0;
    }
    PQclear(res);
    mfa__state_dispose(&state);
    return rc;
}

int znp_op_enroll_mfa_totp(znp_ctx_t *ctx, const znp_enroll_mfa_totp_request_t *req,
                           znp_enroll_mfa_totp_response_t *resp)
{
    uint8_t seed[ZNP_MFA_SECRET_BYTES];
    char secret[ZNP_MFA_SECRET_TEXT + 1], id[24];
    const char *params[2] = {id, NULL};
    char *sealed = NULL, *issuer, *label;
    PGresult *res = NULL;
    int rc;

    /* a fresh seed, sealed for this user */
    (void)req;
    if (RAND_bytes(seed, sizeof seed) != 1 || znp_base32_encode(secret, sizeof secret, seed, sizeof seed) == 0)
        return ZNP_E_INTERNAL;
    rc = mfa__seal(&sealed, ctx, ctx->caller.user_id, seed, sizeof seed);
    OPENSSL_cleanse(seed, sizeof seed);
    if (rc != 0)
        goto cleanup;

    /* store it as pending */
    snprintf(id, sizeof id, "%lld", (long long)ctx->caller.user_id);
    params[1] = sealed;
    rc = znp_sql_exec(&res, ctx->db, SQL_ENROLL, 2, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (strcmp(PQcmdTuples(res), "1") != 0) {
        rc = ZNP_E_MFA_ALREADY_ENABLED;
        goto cleanup;
    }

    /* the secret and its otpauth URI, shown this once */
    issuer = issuer_name(ctx);
    label = percent_encode(ctx->arena, ctx->caller.email);
    resp->secret = znp_arena_strdup(ctx->arena, secret);
    if (issuer == NULL || label == NULL || resp->secret == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    resp->otpauth_uri = znp_arena_printf(ctx->arena,
                                         "otpauth://totp/%s:%s?secret=%s&issuer=%s&algorithm=SHA1&digits=%d&period=%d",
                                         issuer, label, secret, issuer, ZNP_MFA_DIGITS, ZNP_MFA_STEP_S);
    if (resp->otpauth_uri == NULL)
        rc = ZNP_E_INTERNAL;
    else
        ZNP_INFO(LOG_TAG, ctx->request_id, "TOTP enrollment started user=%lld", (long long)ctx->caller.user_id);

cleanup:
    OPENSSL_cleanse(secret, sizeof secret);
    PQclear(res);
    return rc;
}

int znp_op_confirm_mfa_totp(znp_ctx_t *ctx, const znp_confirm_mfa_totp_request_t *req,
                            znp_confirm_mfa_totp_response_t *resp)
{
    int64_t user_id = ctx->caller.user_id, step = 0;
    char id[24], step_text[24];
    const char *params[2] = {id, step_text};
    mfa_state_t state;
    PGresult *res = NULL;
    int rc;

    memset(&state, 0, sizeof state);
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;

    /* the pending seed */
    rc = mfa__state_load(&state, ctx, user_id, 1);
    if (rc != 0)
        goto cleanup;
    if (state.enabled) {
        rc = ZNP_E_MFA_ALREADY_ENABLED;
        goto cleanup;
    }
    if (state.pending_len == 0) {
        rc = ZNP_E_MFA_ENROLLMENT_MISSING;
        goto cleanup;
    }

    /* a matching code proves the authenticator app has the seed */
    rc = znp_totp_match(&step, state.pending, state.pending_len, znp_auth__now(ctx), req->body.code, -1);
    if (rc != 0)
        goto cleanup;

    /* enable, with the step used, and hand out recovery codes */
    snprintf(id, sizeof id, "%lld", (long long)user_id);
    snprintf(step_text, sizeof step_text, "%lld", (long long)step);
    rc = znp_sql_exec(&res, ctx->db, SQL_CONFIRM, 2, params, ctx->request_id);
    if (rc == 0 && strcmp(PQcmdTuples(res), "1") != 0)
        rc = ZNP_E_MFA_ENROLLMENT_MISSING;
    if (rc == 0)
        rc = mfa__recovery_codes_replace(ctx, user_id, &resp->recovery_codes);
    if (rc == 0)
        rc = mfa__audit(ctx, user_id, "mfa.enabled");
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);

cleanup:
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    else
        ZNP_INFO(LOG_TAG, ctx->request_id, "MFA enabled user=%lld", (long long)user_id);
    PQclear(res);
    mfa__state_dispose(&state);
    return rc;
}

/*
 * Open a transaction, check the password and the code of an enabled MFA
 * user. On 0 the transaction stays open for the caller's change. A wrong
 * code is audited as auth.mfa.failed.
 */
static int begin_with_proof(znp_ctx_t *ctx, const char *password, const char *code)
{
    int64_t user_id = ctx->caller.user_id;
    mfa_state_t state;
    int rc;

    memset(&state, 0, sizeof state);
    rc = check_password(ctx, password);
    if (rc != 0)
        return rc;
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = mfa__state_load(&state, ctx, user_id, 1);
    if (rc == 0 && !state.enabled)
        rc = ZNP_E_MFA_NOT_ENABLED;
    if (rc == 0)
        rc = mfa__code_accept(ctx, user_id, &state, code);
    mfa__state_dispose(&state);
    if (rc != 0) {
        znp_sql_rollback(ctx->db, ctx->request_id);
        if (rc == ZNP_E_MFA_CODE_INVALID)
            (void)mfa__audit(ctx, user_id, "auth.mfa.failed");
    }
    return rc;
}

int znp_op_disable_mfa(znp_ctx_t *ctx, const znp_disable_mfa_request_t *req, znp_disable_mfa_response_t *resp)
{
    int64_t user_id = ctx->caller.user_id;
    char id[24];
    const char *params[1] = {id};
    int rc;

    rc = begin_with_proof(ctx, req->body.password, req->body.code);
    if (rc != 0)
        return rc;

    snprintf(id, sizeof id, "%lld", (long long)user_id);
    rc = znp_sql_exec(NULL, ctx->db, SQL_DELETE_RECOVERY, 1, params, ctx->request_id);
    if (rc == 0)
        rc = znp_sql_exec(NULL, ctx->db, SQL_DISABLE, 1, params, ctx->request_id);
    if (rc == 0)
        rc = mfa__audit(ctx, user_id, "mfa.disabled");
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0) {
        znp_sql_rollback(ctx->db, ctx->request_id);
        return rc;
    }
    ZNP_INFO(LOG_TAG, ctx->request_id, "MFA disabled user=%lld", (long long)user_id);
    resp->enabled = false;
    return 0;
}

int znp_op_regenerate_mfa_recovery_codes(znp_ctx_t *ctx, const znp_regenerate_mfa_recovery_codes_request_t *req,
                                         znp_regenerate_mfa_recovery_codes_response_t *resp)
{
    int64_t user_id = ctx->caller.user_id;
    int rc;

    rc = begin_with_proof(ctx, req->body.password, req->body.code);
    if (rc != 0)
        return rc;
    rc = mfa__recovery_codes_replace(ctx, user_id, &resp->recovery_codes);
    if (rc == 0)
        rc = mfa__audit(ctx, user_id, "mfa.recovery_codes.regenerated");
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0) {
        znp_sql_rollback(ctx->db, ctx->request_id);
        return rc;
    }
    ZNP_INFO(LOG_TAG, ctx->request_id, "MFA recovery codes replaced user=%lld", (long long)user_id);
    return 0;
}
