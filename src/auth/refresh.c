/*
 * POST /api/v1/auth/refresh: refresh-token rotation. Each refresh token is
 * accepted once. The token's row is locked (SELECT ... FOR UPDATE) for the
 * whole exchange, so of concurrent refreshes with one token exactly one
 * succeeds. The others find it used, which counts as reuse and revokes the
 * whole family.
 *
 * NOTE: used, revoked and expired rows stay in refresh_tokens; nothing
 * deletes them yet, so the table grows with every sign-in and refresh.
 */
#include "auth/auth_internal.h"

#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "config/config.h"
#include "core/log.h"
#include "operations.gen.h"

#define LOG_TAG "auth"

static const char SQL_LOCK_TOKEN[] =
    "SELECT family_id::text, user_id, used_at IS NOT NULL, revoked_at IS NOT NULL, expires_at <= now()"
    " FROM refresh_tokens WHERE jti = $1 FOR UPDATE";

static const char SQL_REVOKE_FAMILY[] =
    "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL";

static const char SQL_MARK_USED[] = "UPDATE refresh_tokens SET used_at = now(), replaced_by = $2 WHERE jti = $1";

enum { COL_FAMILY, COL_USER_ID, COL_USED, COL_REVOKED, COL_EXPIRED };

/* The reasons a known user may not refresh, in the order the access check uses. */
static int check_user(znp_ctx_t *ctx, const znp_auth_user_t *user, const znp_jwt_claims_t *claims)
{
    if (user->status != ZNP_USER_ACTIVE)
        return ZNP_E_ACCOUNT_DISABLED;
    if (user->lock_seconds > 0)
        return znp_auth__locked(ctx, user->lock_seconds);
    if (claims->issued_at < user->token_invalid_before)
        return ZNP_E_TOKEN_REVOKED;
    return 0;
}

static int revoke_family(znp_ctx_t *ctx, const char *family, int64_t user_id)
{
    const char *params[1] = {family};
    char id[24];
    json_t *diff = json_pack("{s:s, s:s}", "family_id", family, "reason", "refresh_token_reused");
    znp_audit_entry_t entry = {
        .actor_id = user_id,
        .action = "auth.token.family_revoked",
        .resource_type = "user",
        .resource_id = id,
        .diff = diff,
    };
    int rc;

    snprintf(id, sizeof(id), "%lld", (long long)user_id);
    rc = znp_sql_exec(NULL, ctx->db, SQL_REVOKE_FAMILY, 1, params, ctx->request_id);
    if (rc == 0)
        rc = znp_audit_record(ctx, ctx->db, &entry);
    json_decref(diff);

    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc == 0)
        ZNP_WARN(LOG_TAG, ctx->request_id, "refresh token reused, family revoked user=%lld family=%s",
                 (long long)user_id, family);
    return rc == 0 ? ZNP_E_TOKEN_REVOKED : rc;
}

int znp_op_auth_refresh(znp_ctx_t *ctx, const znp_auth_refresh_request_t *req, znp_auth_refresh_response_t *resp)
{
    const znp_config_auth_t *auth = &ctx->config->auth;
    const char *token = req->body.refresh_token;
    znp_jwt_claims_t claims;
    znp_auth_user_t user;
    char new_jti[ZNP_UUID_LEN + 1];
    const char *params[2];
    PGresult *res = NULL;
    int found = 0, rc;

    /* the token itself */
    rc = znp_jwt_verify(&claims, token, strlen(token), ZNP_TOKEN_REFRESH, auth->issuer, auth->refresh_secret,
                        znp_auth__key_len(auth->refresh_secret), znp_auth__now(ctx));
    if (rc != 0)
        return rc;

    /* its row, locked until commit */
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    params[0] = claims.jti;
    rc = znp_sql_exec(&res, ctx->db, SQL_LOCK_TOKEN, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, COL_FAMILY), claims.family) != 0 ||
        znp_sql_int64(res, 0, COL_USER_ID) != claims.user_id || znp_sql_bool(res, 0, COL_EXPIRED)) {
        rc = ZNP_E_TOKEN_INVALID;
        goto cleanup;
    }
    if (znp_sql_bool(res, 0, COL_REVOKED)) {
        rc = ZNP_E_TOKEN_REVOKED;
        goto cleanup;
    }
    if (znp_sql_bool(res, 0, COL_USED)) {
        rc = revoke_family(ctx, claims.family, claims.user_id);
        goto cleanup;
    }

    /* the account */
    rc = znp_auth__user_find_by_id(&user, &found, ctx->db, claims.user_id, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rc = found ? check_user(ctx, &user, &claims) : ZNP_E_TOKEN_INVALID;
    if (rc != 0)
        goto cleanup;

    /* rotate: a new token in the same family, the old one marked used */
    rc = znp_auth__tokens_issue(ctx, &user, claims.family, new_jti, resp);
    if (rc != 0)
        goto cleanup;
    params[1] = new_jti;
    rc = znp_sql_exec(NULL, ctx->db, SQL_MARK_USED, 2, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rc = znp_sql_commit(ctx->db, ctx->request_id);

cleanup:
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    return rc;
}
