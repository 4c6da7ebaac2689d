/*
 * POST /api/v1/auth/login. The failed-attempt counter and the lock live in
 * the users row and change only through conditional UPDATEs, so they hold
 * across instances and under concurrent attempts.
 */
#include "auth/auth_internal.h"

#include <stdio.h>
#include <string.h>

#include "auth/sql.h"
#include "config/config.h"
#include "core/log.h"
#include "operations.gen.h"

#define LOG_TAG "auth"

/*
 * Count one failed attempt unless the account is locked. A failure after an
 * expired lock starts a new count. Reaching max_attempts (when not 0) locks
 * for lockout_minutes. Every expression reads the row as it was before this
 * UPDATE. It returns the new count and the seconds left on the lock (0 = none).
 */
static const char SQL_RECORD_FAILURE[] =
    "UPDATE users SET"
    " failed_login_attempts = CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failed_login_attempts + 1 END,"
    " locked_until = CASE WHEN $2::integer > 0"
    "   AND (CASE WHEN locked_until IS NOT NULL THEN 1 ELSE failed_login_attempts + 1 END) >= $2::integer"
    "   THEN now() + make_interval(mins => $3::integer) END"
    " WHERE id = $1 AND (locked_until IS NULL OR locked_until <= now())"
    " RETURNING failed_login_attempts,"
    "  CASE WHEN locked_until > now() THEN ceil(extract(epoch FROM locked_until - now()))::bigint ELSE 0 END";

static const char SQL_LOCK_SECONDS[] =
    "SELECT CASE WHEN locked_until > now() THEN ceil(extract(epoch FROM locked_until - now()))::bigint ELSE 0 END"
    " FROM users WHERE id = $1";

/* success: reset the counter unless a lock or a status change won a race with this attempt */
static const char SQL_RECORD_SUCCESS[] =
    "UPDATE users SET failed_login_attempts = 0, locked_until = NULL, last_login_at = now()"
    " WHERE id = $1 AND status = 1 AND (locked_until IS NULL OR locked_until <= now())";

/* Returns ZNP_E_INVALID_CREDENTIALS, or ZNP_E_ACCOUNT_LOCKED when this failure locked the account. */
static int record_failure(znp_ctx_t *ctx, const znp_auth_user_t *user)
{
    const znp_config_auth_t *auth = &ctx->config->auth;
    char id[24], max_attempts[16], minutes[16];
    const char *params[3] = {id, max_attempts, minutes};
    PGresult *res = NULL;
    int64_t seconds = 0;
    int rc;

    snprintf(id, sizeof(id), "%lld", (long long)user->id);
    snprintf(max_attempts, sizeof(max_attempts), "%u", auth->lockout_max_attempts);
    snprintf(minutes, sizeof(minutes), "%u", auth->lockout_minutes);
    rc = znp_sql_exec(&res, ctx->db, SQL_RECORD_FAILURE, 3, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;

    if (PQntuples(res) == 1) {
        seconds = znp_sql_int64(res, 0, 1);
        if (seconds > 0)
            ZNP_WARN(LOG_TAG, ctx->request_id, "account locked after %lld failed sign-ins user=%lld",
                     (long long)znp_sql_int64(res, 0, 0), (long long)user->id);
    } else {
        /* another attempt locked the account since we read it */
        PQclear(res);
        res = NULL;
        rc = znp_sql_exec(&res, ctx->db, SQL_LOCK_SECONDS, 1, params, ctx->request_id);
        if (rc != 0)
            goto cleanup;
        if (PQntuples(res) == 1)
            seconds = znp_sql_int64(res, 0, 0);
    }
    rc = seconds > 0 ? znp_auth__locked(ctx, seconds) : ZNP_E_INVALID_CREDENTIALS;

cleanup:
    PQclear(res);
    return rc;
}

/* Reset the counter, set last_login_at and issue the token pair in one transaction. */
static int sign_in(znp_ctx_t *ctx, const znp_auth_user_t *user, znp_auth_login_response_t *resp)
{
    char id[24];
    const char *params[1] = {id};
    PGresult *res = NULL;
    int rc;

    snprintf(id, sizeof(id), "%lld", (long long)user->id);
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rc = znp_sql_exec(&res, ctx->db, SQL_RECORD_SUCCESS, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (strcmp(PQcmdTuples(res), "1") != 0) {
        /* locked or disabled between our read and this write */
        PQclear(res);
        res = NULL;
        rc = znp_sql_exec(&res, ctx->db, SQL_LOCK_SECONDS, 1, params, ctx->request_id);
        if (rc == 0) {
            int64_t seconds = PQntuples(res) == 1 ? znp_sql_int64(res, 0, 0) : 0;
            rc = seconds > 0 ? znp_auth__locked(ctx, seconds) : ZNP_E_ACCOUNT_DISABLED;
        }
        goto cleanup;
    }
    rc = znp_auth__tokens_issue(ctx, user, NULL, NULL, resp);
    if (rc != 0)
        goto cleanup;
    rc = znp_sql_commit(ctx->db, ctx->request_id);

cleanup:
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    return rc;
}

int znp_op_auth_login(znp_ctx_t *ctx, const znp_auth_login_request_t *req, znp_auth_login_response_t *resp)
{
    const char *password = req->body.password;
    size_t password_len = strlen(password);
    char email[ZNP_EMAIL_MAX + 1];
    znp_error_t ignored = {0};
    znp_auth_user_t user;
    int found = 0, rc;

    /* find the account, treating a malformed email as an unknown one */
    if (znp_auth_normalize_email(email, sizeof(email), req->body.email, &ignored) == 0) {
        rc = znp_auth__user_find_by_email(&user, &found, ctx->db, email, ctx->request_id);
        if (rc != 0)
            return rc;
    }

    /* verify the password, spending the same time on unknown emails */
    if (!found) {
        (void)znp_password_verify_dummy(ctx->config, password, password_len);
        return ZNP_E_INVALID_CREDENTIALS;
    }
    rc = znp_password_verify(user.password_hash, password, password_len);
    if (rc == ZNP_E_INTERNAL)
        ZNP_ERROR(LOG_TAG, ctx->request_id, "stored password hash is malformed user=%lld", (long long)user.id);

    /* a locked account stays locked whatever the password */
    if (user.lock_seconds > 0)
        return znp_auth__locked(ctx, user.lock_seconds);
    if (rc != 0)
        return record_failure(ctx, &user);

    /* only now, with the right password, reveal the account status */
    if (user.status != ZNP_USER_ACTIVE)
        return ZNP_E_ACCOUNT_DISABLED;
    rc = sign_in(ctx, &user, resp);
    if (rc == 0)
        ZNP_INFO(LOG_TAG, ctx->request_id, "signed in user=%lld", (long long)user.id);
    return rc;
}
