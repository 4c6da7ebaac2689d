/*
 * The signed-in account: profile, password change and email change. Every
 * change runs in one transaction with its audit row.
 */
#include "account/account.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "accounts/codes.h"
#include "audit/audit.h"
#include "auth/auth_internal.h"
#include "auth/password.h"
#include "auth/sql.h"
#include "auth/text.h"
#include "config/config.h"
#include "core/log.h"
#include "mail/mail.h"
#include "operations.gen.h"

#define LOG_TAG "account"

#define PASSWORD_FAILURE_LIMIT  5
#define PASSWORD_FAILURE_WINDOW "15 minutes"

enum { COL_EMAIL = 1, COL_LOCALE = 5, COL_HASH = 12 };

/* Begin, lock the caller's row (with the hash when asked) and check it still exists. */
static int begin_locked(znp_ctx_t *ctx, int with_hash, PGresult **res)
{
    int rc = znp_sql_begin(ctx->db, ctx->request_id);

    if (rc != 0)
        return rc;
    rc = znp_account__load(ctx, ctx->caller.user_id, with_hash, 1, res);
    if (rc == 0 && PQntuples(*res) != 1)
        rc = ZNP_E_TOKEN_INVALID;
    return rc;
}

static int audit(znp_ctx_t *ctx, const char *action, json_t *diff)
{
    znp_audit_entry_t entry = {0};
    char id[24];

    entry.action = action;
    entry.resource_type = "user";
    entry.resource_id = znp_account__int(id, sizeof(id), ctx->caller.user_id);
    entry.diff = diff;
    return znp_audit_record(ctx, ctx->db, &entry);
}

/* Commit, or roll back when rc is an error. Returns rc or the commit's error. */
static int finish(znp_ctx_t *ctx, int rc)
{
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    return rc;
}

int znp_op_get_account_profile(znp_ctx_t *ctx, const znp_get_account_profile_request_t *req,
                               znp_get_account_profile_response_t *resp)
{
    PGresult *res = NULL;
    int rc;

    (void)req;
    rc = znp_account__load(ctx, ctx->caller.user_id, 0, 0, &res);
    if (rc == 0)
        rc = PQntuples(res) == 1 ? znp_account__fill_profile(ctx, res, &resp->profile) : ZNP_E_TOKEN_INVALID;
    PQclear(res);
    return rc;
}

/* The local part of an email, at most ZNP_ACCOUNT_NAME_MAX_CHARS code points, in the arena. */
static const char *default_name(znp_ctx_t *ctx, const char *email)
{
    const char *at = strchr(email, '@');
    size_t len = at != NULL ? (size_t)(at - email) : strlen(email);

    return znp_arena_strndup(ctx->arena, email, znp_text_prefix(email, len, ZNP_ACCOUNT_NAME_MAX_CHARS));
}

int znp_op_update_account_profile(znp_ctx_t *ctx, const znp_update_account_profile_request_t *req,
                                  znp_update_account_profile_response_t *resp)
{
    static const char sql[] = "UPDATE users SET display_name = COALESCE($2, display_name),"
                              " locale = COALESCE($3, locale), updated_at = now() WHERE id = $1"
                              " RETURNING " ZNP_ACCOUNT_COLUMNS;
    const znp_profile_update_t *body = &req->body;
    const char *name = NULL, *locale = NULL;
    char id[24];
    const char *params[3];
    PGresult *res = NULL, *updated = NULL;
    json_t *diff = NULL;
    int rc;

    /* check input before touching the row */
    if (body->has.display_name == ZNP_SET) {
        size_t start, len = znp_text_trim(body->display_name, strlen(body->display_name), &start);
        if (len == 0)
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.display_name", "must not be blank");
        name = znp_arena_strndup(ctx->arena, body->display_name + start, len);
        if (name == NULL)
            return ZNP_E_INTERNAL;
    }
    if (body->has.locale == ZNP_SET)
        locale = body->locale;
    else if (body->has.locale == ZNP_NULL)
        locale = "en";

    rc = begin_locked(ctx, 0, &res);
    if (rc != 0)
        goto cleanup;
    if (body->has.display_name == ZNP_NULL && (name = default_name(ctx, PQgetvalue(res, 0, COL_EMAIL))) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    if (name == NULL && locale == NULL) {
        /* nothing named: return the row unchanged */
        rc = znp_account__fill_profile(ctx, res, &resp->profile);
        goto cleanup;
    }
    params[0] = znp_account__int(id, sizeof(id), ctx->caller.user_id);
    params[1] = name;
    params[2] = locale;
    rc = znp_sql_exec(&updated, ctx->db, sql, 3, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    diff = json_object();
    if (name != NULL)
        json_object_set_new(diff, "display_name", json_string(name));
    if (locale != NULL)
        json_object_set_new(diff, "locale", json_string(locale));
    rc = audit(ctx, "user.profile.update", diff);
    if (rc == 0)
        rc = znp_account__fill_profile(ctx, updated, &resp->profile);

cleanup:
    rc = finish(ctx, rc);
    json_decref(diff);
    PQclear(updated);
    PQclear(res);
    return rc;
}

/*
 * Seconds until the caller may try the current password again, 0 when under
 * the limit of wrong tries in the window.
 */
static int password_wait(znp_ctx_t *ctx, int64_t *wait)
{
    static const char sql[] =
        "SELECT count(*), COALESCE(ceil(extract(epoch FROM min(failed_at) + interval '" PASSWORD_FAILURE_WINDOW
        "' - now()))::bigint, 0) FROM account_password_failures"
        " WHERE user_id = $1 AND failed_at > now() - interval '" PASSWORD_FAILURE_WINDOW "'";
    char id[24];
    const char *params[1] = {znp_account__int(id, sizeof(id), ctx->caller.user_id)};
    PGresult *res = NULL;
    int rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);

    *wait = 0;
    if (rc == 0 && znp_sql_int64(res, 0, 0) >= PASSWORD_FAILURE_LIMIT) {
        *wait = znp_sql_int64(res, 0, 1);
        if (*wait < 1)
            *wait = 1;
    }
    PQclear(res);
    return rc;
}

/* Record a wrong current password outside any transaction, so the rollback of the request keeps it. */
static void password_failed(znp_ctx_t *ctx)
{
    static const char sql[] = "INSERT INTO account_password_failures (user_id) VALUES ($1)";
    static const char sql_prune[] =
        "DELETE FROM account_password_failures WHERE user_id = $1 AND failed_at < now() - interval '1 day'";
    char id[24];
    const char *params[1] = {znp_account__int(id, sizeof(id), ctx->caller.user_id)};

    if (znp_sql_exec(NULL, ctx->db, sql, 1, params, ctx->request_id) == 0)
        (void)znp_sql_exec(NULL, ctx->db, sql_prune, 1, params, ctx->request_id);
    ZNP_INFO(LOG_TAG, ctx->request_id, "wrong current password user=%lld", (long long)ctx->caller.user_id);
}

static int too_many(znp_ctx_t *ctx, int64_t wait)
{
    int rc = znp_error_set(ctx->err, ZNP_E_TOO_MANY_REQUESTS, NULL, NULL);

    if (ctx->err != NULL)
        ctx->err->retry_after = wait > INT32_MAX ? INT32_MAX : (int)wait;
    return rc;
}

/* Check `password` against the hash in column COL_HASH of `res`; counts a wrong one. */
static int check_current(znp_ctx_t *ctx, const PGresult *res, const char *password)
{
    int rc = znp_password_verify(PQgetvalue(res, 0, COL_HASH), password, strlen(password));

    if (rc == ZNP_E_INVALID_CREDENTIALS) {
        znp_sql_rollback(ctx->db, ctx->request_id);
        password_failed(ctx);
    }
    return rc;
}

int znp_op_change_account_password(znp_ctx_t *ctx, const znp_change_account_password_request_t *req,
                                   znp_change_account_password_response_t *resp)
{
    static const char sql[] = "UPDATE users SET password_hash = $2, failed_login_attempts = 0, locked_until = NULL,"
                              " updated_at = now() WHERE id = $1";
    const znp_password_change_request_t *body = &req->body;
    char hash[ZNP_PASSWORD_HASH_MAX], id[24];
    const char *params[2];
    znp_auth_user_t user;
    PGresult *res = NULL;
    int64_t wait = 0;
    int found = 0, rc;

    rc = password_wait(ctx, &wait);
    if (rc != 0)
        return rc;
    if (wait > 0)
        return too_many(ctx, wait);

    rc = begin_locked(ctx, 1, &res);
    if (rc != 0)
        goto cleanup;
    rc = check_current(ctx, res, body->current_password);
    if (rc != 0)
        goto cleanup;
    rc = znp_account__check_password(ctx, body->new_password, PQgetvalue(res, 0, COL_EMAIL), "$.new_password");
    if (rc != 0)
        goto cleanup;
    rc = znp_password_hash(hash, sizeof(hash), body->new_password, strlen(body->new_password), ctx->config);
    if (rc != 0)
        goto cleanup;
    params[0] = znp_account__int(id, sizeof(id), ctx->caller.user_id);
    params[1] = hash;
    rc = znp_sql_exec(NULL, ctx->db, sql, 2, params, ctx->request_id);
    if (rc == 0)
        rc = znp_account__revoke_tokens(ctx, ctx->caller.user_id);
    if (rc == 0)
        rc = audit(ctx, "user.password.change", NULL);

    /* a new pair for this client, issued after the revocation so it outlives it */
    if (rc == 0)
        rc = znp_auth__user_find_by_id(&user, &found, ctx->db, ctx->caller.user_id, ctx->request_id);
    if (rc == 0 && !found)
        rc = ZNP_E_TOKEN_INVALID;
    if (rc == 0)
        rc = znp_auth__tokens_issue(ctx, &user, NULL, NULL, &resp->tokens);
    resp->message = "password updated";

cleanup:
    rc = finish(ctx, rc);
    PQclear(res);
    return rc;
}

/* Normalize `email` and check it is neither the caller's nor another account's address. */
static int check_new_email(znp_ctx_t *ctx, const char *input, const char *current, char *email, size_t email_size)
{
    static const char sql[] = "SELECT 1 FROM users WHERE lower(email) = lower($1) AND id <> $2";
    char id[24];
    const char *params[2] = {email, znp_account__int(id, sizeof(id), ctx->caller.user_id)};
    PGresult *res = NULL;
    int rc = znp_auth_normalize_email(email, email_size, input, ctx->err);

    if (rc != 0) {
        if (ctx->err != NULL)
            snprintf(ctx->err->path, sizeof(ctx->err->path), "$.email");
        return rc;
    }
    if (strcasecmp(email, current) == 0)
        return ZNP_E_EMAIL_UNCHANGED;
    rc = znp_sql_exec(&res, ctx->db, sql, 2, params, ctx->request_id);
    if (rc == 0 && PQntuples(res) > 0)
        rc = ZNP_E_EMAIL_TAKEN;
    PQclear(res);
    return rc;
}

int znp_op_request_account_email_change(znp_ctx_t *ctx, const znp_request_account_email_change_request_t *req,
                                        znp_request_account_email_change_response_t *resp)
{
    char email[ZNP_EMAIL_MAX + 1], code[ZNP_CODE_SIZE];
    PGresult *res = NULL;
    json_t *vars = NULL, *diff = NULL;
    int rc;

    rc = begin_locked(ctx, 0, &res);
    if (rc == 0)
        rc = check_new_email(ctx, req->body.email, PQgetvalue(res, 0, COL_EMAIL), email, sizeof(email));
    if (rc == 0)
        rc = znp_codes_issue(ctx, ctx->db, ZNP_CODE_EMAIL_CHANGE, email, ctx->client_ip, code);
    if (rc == 0) {
        /* the account's own language, not the request's */
        znp_locale_t locale = strcmp(PQgetvalue(res, 0, COL_LOCALE), "zh-CN") == 0 ? ZNP_LOCALE_ZH_CN : ZNP_LOCALE_EN;
        vars = json_pack("{s:s, s:I}", "code", code, "minutes", (json_int_t)(ctx->config->codes.ttl_s / 60));
        rc = vars != NULL ? znp_mail_enqueue(ctx->db, email, "email_change", locale, vars) : ZNP_E_INTERNAL;
    }
    if (rc == 0) {
        diff = json_pack("{s:s}", "to", email);
        rc = audit(ctx, "user.email.change_request", diff);
    }
    resp->message = "verification code sent";
    rc = finish(ctx, rc);
    memset(code, 0, sizeof(code));
    json_decref(vars);
    json_decref(diff);
    PQclear(res);
    return rc;
}

int znp_op_change_account_email(znp_ctx_t *ctx, const znp_change_account_email_request_t *req,
                                 znp_change_account_email_response_t *resp)
{
    static const char sql[] = "UPDATE users SET email = $2, email_verified_at = now(), updated_at = now()"
                              " WHERE id = $1 RETURNING " ZNP_ACCOUNT_COLUMNS;
    const znp_email_change_request_t *body = &req->body;
    char email[ZNP_EMAIL_MAX + 1], id[24];
    const char *params[2];
    PGresult *res = NULL, *updated = NULL;
    json_t *diff = NULL;
    int rc;

    rc = begin_locked(ctx, 1, &res);
    if (rc != 0)
        goto cleanup;
    rc = check_current(ctx, res, body->password);
    if (rc != 0)
        goto cleanup;
    rc = check_new_email(ctx, body->email, PQgetvalue(res, 0, COL_EMAIL), email, sizeof(email));
    if (rc != 0)
        goto cleanup;
    /* last of the checks: a rollback after it would give the code back */
    rc = znp_codes_consume(ctx, ctx->db, ZNP_CODE_EMAIL_CHANGE, email, body->code);
    if (rc == ZNP_E_INVALID_CODE) {
        /* keep the wrong try counted */
        rc = znp_sql_commit(ctx->db, ctx->request_id);
        rc = rc == 0 ? ZNP_E_INVALID_CODE : rc;
        goto cleanup;
    }
    if (rc != 0)
        goto cleanup;
    params[0] = znp_account__int(id, sizeof(id), ctx->caller.user_id);
    params[1] = email;
    rc = znp_sql_exec(&updated, ctx->db, sql, 2, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    diff = json_pack("{s:s, s:s}", "from", PQgetvalue(res, 0, COL_EMAIL), "to", email);
    rc = audit(ctx, "user.email.change", diff);
    if (rc == 0)
        rc = znp_account__fill_profile(ctx, updated, &resp->profile);

cleanup:
    rc = finish(ctx, rc);
    json_decref(diff);
    PQclear(updated);
    PQclear(res);
    return rc;
}
