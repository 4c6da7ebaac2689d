/*
 * POST /api/v1/auth/forgot and /api/v1/auth/reset. Forgot returns the same
 * body for every address and does the same work (minus the mail) for
 * addresses without an active account. Reset checks the new password before
 * it spends the code, and revokes every token issued before it.
 */
#include "accounts/internal.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth_internal.h"
#include "auth/sql.h"
#include "config/config.h"
#include "core/log.h"
#include "operations.gen.h"

#define LOG_TAG "accounts"

static const char FORGOT_MESSAGE[] = "if the account exists, a reset code has been sent";
static const char RESET_MESSAGE[] = "password reset successful";

static const char SQL_ACTIVE[] = "SELECT id, locale FROM users WHERE lower(email) = lower($1) AND status = 1";

/*
 * New hash, lockout cleared, and every earlier token revoked: access tokens
 * through token_invalid_before, refresh tokens through their rows.
 */
static const char SQL_SET_PASSWORD[] =
    "UPDATE users SET password_hash = $2, failed_login_attempts = 0, locked_until = NULL,"
    " token_invalid_before = " ZNP_SQL_TOKEN_CUTOFF(
        "token_invalid_before") ", updated_at = now()"
                                " WHERE lower(email) = lower($1) AND status = 1 RETURNING id";

static const char SQL_REVOKE_REFRESH[] =
    "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL";

int znp_op_auth_forgot(znp_ctx_t *ctx, const znp_auth_forgot_request_t *req, znp_auth_forgot_response_t *resp)
{
    char email[ZNP_EMAIL_MAX + 1];
    const char *params[1] = {email};
    PGresult *res = NULL;
    json_t *diff = NULL;
    znp_locale_t locale;
    int deliver, rc;

    rc = znp_auth_normalize_email(email, sizeof(email), req->body.email, ctx->err);
    if (rc != 0)
        return rc;

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rc = znp_sql_exec(&res, ctx->db, SQL_ACTIVE, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    deliver = PQntuples(res) == 1;
    locale = deliver ? znp_accounts__locale(PQgetvalue(res, 0, 1), ctx->locale) : ctx->locale;
    rc = znp_accounts__send_code(ctx, ZNP_CODE_RESET, email, locale, deliver);
    if (rc != 0)
        goto cleanup;
    if (deliver) {
        diff = json_object();
        rc = diff != NULL ? znp_accounts__audit(ctx, "auth.forgot", znp_sql_int64(res, 0, 0), email, diff)
                          : ZNP_E_INTERNAL;
        if (rc != 0)
            goto cleanup;
    }
    rc = znp_sql_commit(ctx->db, ctx->request_id);

cleanup:
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    json_decref(diff);
    PQclear(res);
    if (rc == 0)
        resp->message = (char *)FORGOT_MESSAGE;
    return rc;
}

/* Spend the code and store the new hash in one transaction. */
static int apply_reset(znp_ctx_t *ctx, const char *email, const char *code, const char *hash)
{
    const char *params[2] = {email, hash};
    char id[24];
    PGresult *res = NULL;
    json_t *diff = NULL;
    int rc;

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rc = znp_codes_consume(ctx, ctx->db, ZNP_CODE_RESET, email, code);
    if (rc == ZNP_E_INVALID_CODE) {
        /* keep the wrong try counted */
        int commit = znp_sql_commit(ctx->db, ctx->request_id);
        rc = commit != 0 ? commit : rc;
        goto cleanup;
    }
    if (rc != 0)
        goto cleanup;

    rc = znp_sql_exec(&res, ctx->db, SQL_SET_PASSWORD, 2, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        /* disabled (or gone) after the code was sent: the code is spent, the password stays */
        int commit = znp_sql_commit(ctx->db, ctx->request_id);
        rc = commit != 0 ? commit : ZNP_E_INVALID_CODE;
        goto cleanup;
    }
    snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, 0));
    params[0] = id;
    rc = znp_sql_exec(NULL, ctx->db, SQL_REVOKE_REFRESH, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    diff = json_pack("{s:b}", "tokens_revoked", 1);
    rc = diff != NULL ? znp_accounts__audit(ctx, "auth.reset", znp_sql_int64(res, 0, 0), email, diff) : ZNP_E_INTERNAL;
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc == 0)
        ZNP_INFO(LOG_TAG, ctx->request_id, "password reset, tokens revoked user=%s", id);

cleanup:
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    json_decref(diff);
    PQclear(res);
    return rc;
}

int znp_op_auth_reset(znp_ctx_t *ctx, const znp_auth_reset_request_t *req, znp_auth_reset_response_t *resp)
{
    const char *password = req->body.password;
    char email[ZNP_EMAIL_MAX + 1];
    char hash[ZNP_PASSWORD_HASH_MAX];
    znp_error_t ignored = {0};
    int rc;

    /* a malformed email is an unknown one; the policy comes before the code, so a weak password keeps it */
    if (znp_auth_normalize_email(email, sizeof(email), req->body.email, &ignored) != 0)
        return ZNP_E_INVALID_CODE;
    rc = znp_accounts_check_password(ctx->config, password, strlen(password), email, ctx->err);
    if (rc != 0)
        return rc;

    /* hash outside the transaction: argon2 is slow */
    rc = znp_password_hash(hash, sizeof(hash), password, strlen(password), ctx->config);
    if (rc == 0)
        rc = apply_reset(ctx, email, req->body.code, hash);
    OPENSSL_cleanse(hash, sizeof(hash));
    if (rc == 0)
        resp->message = (char *)RESET_MESSAGE;
    return rc;
}
