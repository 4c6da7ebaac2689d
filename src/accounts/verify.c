/*
 * POST /api/v1/auth/verify and /api/v1/auth/verify/resend. An unknown
 * address, a wrong code and an expired one get the same error, and resend
 * returns the same body whether or not a code was mailed.
 */
#include "accounts/internal.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth_internal.h"
#include "auth/sql.h"
#include "config/config.h"
#include "core/log.h"
#include "operations.gen.h"

#define LOG_TAG "accounts"

static const char RESEND_MESSAGE[] = "if the account exists and is not verified yet, a code has been sent";

static const char SQL_PENDING[] =
    "SELECT id, locale FROM users WHERE lower(email) = lower($1) AND status = 2 AND email_verified_at IS NULL"
    " FOR UPDATE";

/* a pending account becomes active; a disabled one stays disabled */
static const char SQL_ACTIVATE[] = "UPDATE users SET status = CASE WHEN status = 2 THEN 1 ELSE status END,"
                                   " email_verified_at = COALESCE(email_verified_at, now()), updated_at = now()"
                                   " WHERE lower(email) = lower($1) RETURNING id, status";

/* Activate the account of `email` after its code matched, and sign in. */
static int activate(znp_ctx_t *ctx, const char *email, znp_auth_verify_response_t *resp)
{
    const char *params[1] = {email};
    PGresult *res = NULL;
    znp_auth_user_t user;
    json_t *diff = NULL;
    int found = 0, rc;

    rc = znp_sql_exec(&res, ctx->db, SQL_ACTIVATE, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = ZNP_E_INVALID_CODE; /* the account went away after its code was issued */
        goto cleanup;
    }
    if (znp_sql_int64(res, 0, 1) != ZNP_USER_ACTIVE) {
        rc = ZNP_E_ACCOUNT_DISABLED;
        goto cleanup;
    }
    rc = znp_auth__user_find_by_id(&user, &found, ctx->db, znp_sql_int64(res, 0, 0), ctx->request_id);
    if (rc == 0 && !found)
        rc = ZNP_E_INTERNAL;
    if (rc == 0)
        rc = znp_auth__tokens_issue(ctx, &user, NULL, NULL, resp);
    if (rc != 0)
        goto cleanup;
    diff = json_pack("{s:s}", "status", "active");
    rc = diff != NULL ? znp_accounts__audit(ctx, "auth.verify", user.id, user.email, diff) : ZNP_E_INTERNAL;
    if (rc == 0)
        ZNP_INFO(LOG_TAG, ctx->request_id, "email verified user=%lld", (long long)user.id);

cleanup:
    json_decref(diff);
    PQclear(res);
    return rc;
}

int znp_op_auth_verify(znp_ctx_t *ctx, const znp_auth_verify_request_t *req, znp_auth_verify_response_t *resp)
{
    char email[ZNP_EMAIL_MAX + 1];
    znp_error_t ignored = {0};
    int rc;

    /* a malformed email is an unknown one */
    if (znp_auth_normalize_email(email, sizeof(email), req->body.email, &ignored) != 0)
        return ZNP_E_INVALID_CODE;

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_codes_consume(ctx, ctx->db, ZNP_CODE_VERIFY, email, req->body.code);
    if (rc == ZNP_E_INVALID_CODE) {
        /* keep the wrong try counted */
        int commit = znp_sql_commit(ctx->db, ctx->request_id);
        if (commit != 0)
            rc = commit;
        goto cleanup;
    }
    if (rc == 0)
        rc = activate(ctx, email, resp);
    if (rc == ZNP_E_ACCOUNT_DISABLED) {
        /* the code is spent either way */
        int commit = znp_sql_commit(ctx->db, ctx->request_id);
        if (commit != 0)
            rc = commit;
        goto cleanup;
    }
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);

cleanup:
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    return rc;
}

int znp_op_auth_verify_resend(znp_ctx_t *ctx, const znp_auth_verify_resend_request_t *req,
                              znp_auth_verify_resend_response_t *resp)
{
    char email[ZNP_EMAIL_MAX + 1];
    const char *params[1] = {email};
    PGresult *res = NULL;
    znp_locale_t locale;
    int pending, rc;

    rc = znp_auth_normalize_email(email, sizeof(email), req->body.email, ctx->err);
    if (rc != 0)
        return rc;

    /* a code only for a pending, unverified account; the same limits and work for any other address */
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rc = znp_sql_exec(&res, ctx->db, SQL_PENDING, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    pending = PQntuples(res) == 1;
    locale = pending ? znp_accounts__locale(PQgetvalue(res, 0, 1), ctx->locale) : ctx->locale;
    rc = znp_accounts__send_code(ctx, ZNP_CODE_VERIFY, email, locale, pending);
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);

cleanup:
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    if (rc == 0)
        resp->message = (char *)RESEND_MESSAGE;
    return rc;
}
