/*
 * The second sign-in step. POST /api/v1/auth/login answers the right
 * password of an MFA account with a challenge token (typ "mfa", signed with
 * the access-token key, valid ZNP_MFA_TOKEN_TTL_S); POST
 * /api/v1/auth/login/mfa trades it and a code for the token pair. The
 * challenge's id is stored so it succeeds once; wrong codes count toward the
 * same lockout as wrong passwords.
 */
#include "mfa/internal.h"

#include <stdio.h>
#include <string.h>

#include "auth/auth_internal.h"
#include "auth/sql.h"
#include "config/config.h"
#include "core/log.h"
#include "operations.gen.h"

#define LOG_TAG "mfa"

static const char SQL_STORE_CHALLENGE[] =
    "INSERT INTO mfa_challenges (jti, user_id, expires_at) VALUES ($1, $2, to_timestamp($3::bigint))";

/* expired challenges are of no use; each new one clears them */
static const char SQL_PURGE_CHALLENGES[] = "DELETE FROM mfa_challenges WHERE expires_at < now() - interval '1 day'";

static const char SQL_LOCK_CHALLENGE[] =
    "SELECT 1 FROM mfa_challenges WHERE jti = $1 AND user_id = $2 AND used_at IS NULL AND expires_at > now()"
    " FOR UPDATE";

static const char SQL_USE_CHALLENGE[] = "UPDATE mfa_challenges SET used_at = now() WHERE jti = $1";

int znp_mfa_challenge_issue(znp_ctx_t *ctx, int64_t user_id, znp_mfa_challenge_t *out)
{
    const znp_config_auth_t *auth = &ctx->config->auth;
    znp_jwt_claims_t claims = {0};
    char token[ZNP_JWT_MAX + 1], id[24], expires_at[24];
    const char *params[3] = {claims.jti, id, expires_at};
    int rc;

    out->token = NULL;
    out->expires_in = ZNP_MFA_TOKEN_TTL_S;
    claims.type = ZNP_TOKEN_MFA;
    claims.user_id = user_id;
    claims.issued_at = znp_auth__now(ctx);
    claims.expires_at = claims.issued_at + ZNP_MFA_TOKEN_TTL_S;
    rc = znp_uuid_v4(claims.jti);
    if (rc == 0)
        rc = znp_jwt_sign(token, sizeof token, &claims, auth->issuer, auth->access_secret,
                          znp_auth__key_len(auth->access_secret));
    if (rc != 0)
        return rc;

    snprintf(id, sizeof id, "%lld", (long long)user_id);
    snprintf(expires_at, sizeof expires_at, "%lld", (long long)claims.expires_at);
    (void)znp_sql_exec(NULL, ctx->db, SQL_PURGE_CHALLENGES, 0, NULL, ctx->request_id);
    rc = znp_sql_exec(NULL, ctx->db, SQL_STORE_CHALLENGE, 3, params, ctx->request_id);
    if (rc != 0)
        return rc;
    out->token = znp_arena_strdup(ctx->arena, token);
    return out->token != NULL ? 0 : ZNP_E_INTERNAL;
}

/* In one transaction: claim the challenge, accept the code, sign in. */
static int finish(znp_ctx_t *ctx, const znp_auth_user_t *user, const char *jti, const char *code,
                  znp_auth_login_mfa_response_t *resp)
{
    char id[24];
    const char *params[2] = {jti, id};
    mfa_state_t state;
    PGresult *res = NULL;
    int rc;

    memset(&state, 0, sizeof state);
    snprintf(id, sizeof id, "%lld", (long long)user->id);
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;

    /* the challenge, unused and unexpired, locked against a concurrent attempt */
    rc = znp_sql_exec(&res, ctx->db, SQL_LOCK_CHALLENGE, 2, params, ctx->request_id);
    if (rc == 0 && PQntuples(res) != 1)
        rc = ZNP_E_TOKEN_INVALID;
    if (rc != 0)
        goto cleanup;

    /* the code, against MFA as it is now */
    rc = mfa__state_load(&state, ctx, user->id, 1);
    if (rc == 0 && !state.enabled)
        rc = ZNP_E_TOKEN_INVALID; /* MFA was turned off since the password step: sign in again */
    if (rc == 0)
        rc = mfa__code_accept(ctx, user->id, &state, code);
    if (rc != 0)
        goto cleanup;

    /* spend the challenge and sign in */
    rc = znp_sql_exec(NULL, ctx->db, SQL_USE_CHALLENGE, 1, params, ctx->request_id);
    if (rc == 0)
        rc = znp_auth__sign_in(ctx, user, resp);
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);

cleanup:
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    mfa__state_dispose(&state);
    return rc;
}

/* Finish a sign-in with the second factor; sets *failed when the code was wrong. */
static int attempt(znp_ctx_t *ctx, const znp_auth_login_mfa_request_t *req, znp_auth_login_mfa_response_t *resp,
                   int *failed)
{
    const znp_config_auth_t *auth = &ctx->config->auth;
    const char *token = req->body.mfa_token;
    znp_jwt_claims_t claims;
    znp_auth_user_t user;
    int found = 0, rc;

    /* the challenge token */
    rc = znp_jwt_verify(&claims, token, strlen(token), ZNP_TOKEN_MFA, auth->issuer, auth->access_secret,
                        znp_auth__key_len(auth->access_secret), znp_auth__now(ctx));
    if (rc != 0)
        return rc;

    /* the account as it is now */
    rc = znp_auth__user_find_by_id(&user, &found, ctx->db, claims.user_id, ctx->request_id);
    if (rc != 0)
        return rc;
    if (!found)
        return ZNP_E_TOKEN_INVALID;
    if (user.lock_seconds > 0)
        return znp_auth__locked(ctx, user.lock_seconds);
    if (user.status != ZNP_USER_ACTIVE)
        return ZNP_E_ACCOUNT_DISABLED;

    /* the code; a wrong one is a failed sign-in */
    rc = finish(ctx, &user, claims.jti, req->body.code, resp);
    if (rc == ZNP_E_MFA_CODE_INVALID) {
        ZNP_INFO(LOG_TAG, ctx->request_id, "MFA code rejected at sign-in user=%lld", (long long)user.id);
        (void)mfa__audit(ctx, user.id, "auth.mfa.failed");
        *failed = 1;
        rc = znp_auth__record_failure(ctx, &user);
        if (rc == ZNP_E_INVALID_CREDENTIALS)
            rc = ZNP_E_MFA_CODE_INVALID;
        return rc;
    }
    if (rc == 0)
        ZNP_INFO(LOG_TAG, ctx->request_id, "signed in with MFA user=%lld", (long long)user.id);
    return rc;
}

int znp_op_auth_login_mfa(znp_ctx_t *ctx, const znp_auth_login_mfa_request_t *req, znp_auth_login_mfa_response_t *resp)
{
    znp_ip_attempt_t slot;
    int failed = 0, rc;

    /* an address with too many recent failures is refused first */
    rc = znp_auth__ip_reserve(ctx, &slot);
    if (rc != 0)
        return rc;
    rc = attempt(ctx, req, resp, &failed);
    znp_auth__ip_settle(ctx, &slot, failed);
    return rc;
}
