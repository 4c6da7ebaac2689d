/*
 * POST /api/v1/auth/login. The failed-attempt counter and the lock live in
 * the users row and change only through conditional UPDATEs, so they hold
 * across instances and under concurrent attempts. For an account with MFA
 * enabled the right password only returns a challenge; src/mfa finishes the
 * sign-in with the same counter and the same znp_auth__sign_in.
 */
#include "auth/auth_internal.h"

#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "config/config.h"
#include "core/log.h"
#include "mfa/mfa.h"
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

/*
 * Write the audit row of a sign-in event; `reason` (may be NULL) goes into
 * the diff. A failure to write it is logged and does not change the outcome.
 */
static void audit_login(znp_ctx_t *ctx, const char *action, int64_t user_id, const char *email, const char *reason)
{
    char id[24];
    json_t *diff = reason != NULL ? json_pack("{s:s}", "reason", reason) : NULL;
    znp_audit_entry_t entry = {
        .actor_id = user_id,
        .actor_email = email,
        .action = action,
        .resource_type = user_id != 0 ? "user" : NULL,
        .resource_id = id,
        .diff = diff,
    };

    snprintf(id, sizeof(id), "%lld", (long long)user_id);
    if (user_id == 0)
        entry.resource_id = NULL;
    if (znp_audit_record(ctx, ctx->db, &entry) != 0)
        ZNP_ERROR(LOG_TAG, ctx->request_id, "could not write the audit row %s", action);
    json_decref(diff);
}

int znp_auth__record_failure(znp_ctx_t *ctx, const znp_auth_user_t *user)
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

int znp_auth__sign_in(znp_ctx_t *ctx, const znp_auth_user_t *user, znp_token_pair_t *out)
{
    char id[24];
    const char *params[1] = {id};
    PGresult *res = NULL;
    int rc;

    snprintf(id, sizeof(id), "%lld", (long long)user->id);
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
    rc = znp_auth__tokens_issue(ctx, user, NULL, NULL, out);
    if (rc == 0)
        audit_login(ctx, "auth.login.succeeded", user->id, user->email, NULL);

cleanup:
    PQclear(res);
    return rc;
}

/* Sign in without a second factor: one transaction, and the pair copied into the login response. */
static int sign_in(znp_ctx_t *ctx, const znp_auth_user_t *user, znp_auth_login_response_t *resp)
{
    znp_token_pair_t pair;
    int rc;

    memset(&pair, 0, sizeof(pair));
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_auth__sign_in(ctx, user, &pair);
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0) {
        znp_sql_rollback(ctx->db, ctx->request_id);
        return rc;
    }

    resp->mfa_required = false;
    resp->access_token = pair.access_token;
    resp->refresh_token = pair.refresh_token;
    resp->token_type = pair.token_type;
    resp->expires_in = pair.expires_in;
    resp->refresh_expires_in = pair.refresh_expires_in;
    resp->user = pair.user;
    resp->has.mfa_required = ZNP_SET;
    resp->has.access_token = ZNP_SET;
    resp->has.refresh_token = ZNP_SET;
    resp->has.token_type = ZNP_SET;
    resp->has.expires_in = ZNP_SET;
    resp->has.refresh_expires_in = ZNP_SET;
    resp->has.user = ZNP_SET;
    return 0;
}

/* Return an MFA challenge in place of tokens, after the right password of an account with MFA enabled. */
static int challenge(znp_ctx_t *ctx, const znp_auth_user_t *user, znp_auth_login_response_t *resp)
{
    znp_mfa_challenge_t issued;
    int rc;

    rc = znp_mfa_challenge_issue(ctx, user->id, &issued);
    if (rc != 0)
        return rc;
    resp->mfa_required = true;
    resp->mfa_token = issued.token;
    resp->mfa_expires_in = issued.expires_in;
    resp->has.mfa_required = ZNP_SET;
    resp->has.mfa_token = ZNP_SET;
    resp->has.mfa_expires_in = ZNP_SET;
    ZNP_INFO(LOG_TAG, ctx->request_id, "password accepted, MFA code required user=%lld", (long long)user->id);
    return 0;
}

/* Sign in with email and password; sets *failed when the credentials were wrong. */
static int attempt(znp_ctx_t *ctx, const znp_auth_login_request_t *req, znp_auth_login_response_t *resp, int *failed)
{
    const char *password = req->body.password;
    size_t password_len = strlen(password);
    char email[ZNP_EMAIL_MAX + 1] = "";
    znp_error_t ignored = {0};
    znp_auth_user_t user;
    int found = 0, mfa_enabled = 0, rc;

    /* find the account, treating a malformed email as an unknown one */
    if (znp_auth_normalize_email(email, sizeof(email), req->body.email, &ignored) == 0) {
        rc = znp_auth__user_find_by_email(&user, &found, ctx->db, email, ctx->request_id);
        if (rc != 0)
            return rc;
    }

    /* verify the password, spending the same time on unknown emails */
    if (!found) {
        (void)znp_password_verify_dummy(ctx->config, password, password_len);
        *failed = 1;
        audit_login(ctx, "auth.login.failed", 0, email[0] != '\0' ? email : NULL, "unknown_email");
        return ZNP_E_INVALID_CREDENTIALS;
    }
    rc = znp_password_verify(user.password_hash, password, password_len);
    if (rc == ZNP_E_INTERNAL)
        ZNP_ERROR(LOG_TAG, ctx->request_id, "stored password hash is malformed user=%lld", (long long)user.id);

    /* a locked account stays locked whatever the password */
    if (user.lock_seconds > 0) {
        *failed = rc != 0;
        audit_login(ctx, "auth.login.failed", user.id, user.email, "locked");
        return znp_auth__locked(ctx, user.lock_seconds);
    }
    if (rc != 0) {
        *failed = 1;
        rc = znp_auth__record_failure(ctx, &user);
        audit_login(ctx, "auth.login.failed", user.id, user.email, "invalid_credentials");
        if (rc == ZNP_E_ACCOUNT_LOCKED)
            audit_login(ctx, "auth.login.locked", user.id, user.email, NULL);
        return rc;
    }

    /* only now, with the right password, reveal the account status */
    if (user.status != ZNP_USER_ACTIVE)
        return ZNP_E_ACCOUNT_DISABLED;

    /* the second factor, when the account has one */
    rc = znp_mfa_enabled(ctx, user.id, &mfa_enabled);
    if (rc != 0)
        return rc;
    if (mfa_enabled)
        return challenge(ctx, &user, resp);
    rc = sign_in(ctx, &user, resp);
    if (rc == 0)
        ZNP_INFO(LOG_TAG, ctx->request_id, "signed in user=%lld", (long long)user.id);
    return rc;
}

int znp_op_auth_login(znp_ctx_t *ctx, const znp_auth_login_request_t *req, znp_auth_login_response_t *resp)
{
    znp_ip_attempt_t slot;
    int failed = 0, rc;

    /* an address with too many recent failures is refused before any hashing */
    rc = znp_auth__ip_reserve(ctx, &slot);
    if (rc != 0)
        return rc;
    rc = attempt(ctx, req, resp, &failed);
    znp_auth__ip_settle(ctx, &slot, failed);
    return rc;
}
