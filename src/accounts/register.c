/*
 * POST /api/v1/auth/register. Every change (the invite use, the users row,
 * the code and its mail, the audit row) commits in one transaction, so a
 * failure anywhere leaves nothing behind. The row lock of the invite UPDATE
 * makes concurrent registrations with one code take turns.
 */
#include "accounts/internal.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth_internal.h"
#include "auth/sql.h"
#include "auth/text.h"
#include "config/config.h"
#include "core/log.h"
#include "operations.gen.h"

#define LOG_TAG "accounts"

/* the existing account of an address, locked so a resend and a verify do not cross */
static const char SQL_EXISTING[] =
    "SELECT id, status, email_verified_at IS NOT NULL FROM users WHERE lower(email) = lower($1) FOR UPDATE";

/*
 * A concurrent registration of the same address makes this return no row.
 * The locale column comes from the user-account migration, and later mails
 * to the account use it.
 */
static const char SQL_INSERT_USER[] =
    "INSERT INTO users (email, display_name, password_hash, roles, status, email_verified_at, locale)"
    " VALUES ($1, COALESCE(NULLIF($2, ''), left(split_part($1, '@', 1), 128)), $3, string_to_array($4, ','),"
    "  CASE WHEN $5::boolean THEN 2 ELSE 1 END, CASE WHEN $5::boolean THEN NULL ELSE now() END, $6)"
    " ON CONFLICT (lower(email)) DO NOTHING RETURNING id";

typedef struct registration {
    char email[ZNP_EMAIL_MAX + 1];
    char display_name[129 * 4];
    char hash[ZNP_PASSWORD_HASH_MAX];
    znp_locale_t locale;
    int verify; /* registration.require_email_verification */
} registration_t;

static int fill_user(znp_ctx_t *ctx, const znp_auth_user_t *user, znp_authenticated_user_t *out)
{
    char **roles = NULL;

    if (user->role_count > 0) {
        roles = znp_arena_alloc(ctx->arena, user->role_count * sizeof(*roles));
        if (roles == NULL)
            return ZNP_E_INTERNAL;
    }
    for (size_t i = 0; i < user->role_count; i++) {
        roles[i] = znp_arena_strdup(ctx->arena, user->roles[i]);
        if (roles[i] == NULL)
            return ZNP_E_INTERNAL;
    }
    out->id = user->id;
    out->email = znp_arena_strdup(ctx->arena, user->email);
    out->display_name = znp_arena_strdup(ctx->arena, user->display_name);
    out->roles.count = user->role_count;
    out->roles.items = roles;
    out->created_at = user->created_at;
    out->updated_at = user->updated_at;
    return out->email != NULL && out->display_name != NULL ? 0 : ZNP_E_INTERNAL;
}

/* Mode, invite presence, email, display name and password, before any database work. */
static int check_input(znp_ctx_t *ctx, const znp_register_request_t *body, registration_t *reg)
{
    const char *mode = ctx->config->registration.mode;
    size_t start, len;
    int rc;

    if (strcmp(mode, "closed") == 0)
        return ZNP_E_REGISTRATION_CLOSED;
    if (strcmp(mode, "invite_only") == 0 && (body->has.invite_code != ZNP_SET || body->invite_code[0] == '\0'))
        return znp_error_set(ctx->err, ZNP_E_INVITE_CODE_REQUIRED, "$.invite_code",
                             "is required while registration is invite-only");

    rc = znp_auth_normalize_email(reg->email, sizeof(reg->email), body->email, ctx->err);
    if (rc != 0)
        return rc;
    reg->display_name[0] = '\0';
    if (body->has.display_name == ZNP_SET) {
        len = znp_text_trim(body->display_name, strlen(body->display_name), &start);
        znp_text_copy(reg->display_name, sizeof(reg->display_name), body->display_name + start, len);
    }
    rc = znp_accounts_check_password(ctx->config, body->password, strlen(body->password), reg->email, ctx->err);
    if (rc != 0)
        return rc;

    reg->locale = znp_accounts__locale(body->has.locale == ZNP_SET ? body->locale : NULL, ctx->locale);
    reg->verify = ctx->config->registration.require_email_verification;
    return 0;
}

/*
 * Handle an address that has an account. A pending, never verified account
 * gets a new code and the same response as a new registration. Any other
 * account makes the address taken.
 */
static int existing_account(znp_ctx_t *ctx, const registration_t *reg, const PGresult *row,
                            znp_auth_register_response_t *resp)
{
    znp_auth_user_t user;
    int found = 0, rc;

    if (znp_sql_int64(row, 0, 1) != ZNP_USER_PENDING || znp_sql_bool(row, 0, 2))
        return ZNP_E_EMAIL_TAKEN;
    rc = znp_accounts__send_code(ctx, ZNP_CODE_VERIFY, reg->email, reg->locale, 1);
    if (rc != 0)
        return rc;
    rc = znp_auth__user_find_by_id(&user, &found, ctx->db, znp_sql_int64(row, 0, 0), ctx->request_id);
    if (rc != 0 || !found)
        return rc != 0 ? rc : ZNP_E_INTERNAL;
    resp->requires_verification = true;
    ZNP_INFO(LOG_TAG, ctx->request_id, "verification code sent again user=%lld", (long long)user.id);
    return fill_user(ctx, &user, &resp->user);
}

/* Issue tokens for an account that needs no verification and copy them into the response. */
static int sign_in(znp_ctx_t *ctx, const znp_auth_user_t *user, znp_auth_register_response_t *resp)
{
    znp_token_pair_t pair;
    int rc;

    memset(&pair, 0, sizeof(pair));
    rc = znp_auth__tokens_issue(ctx, user, NULL, NULL, &pair);
    if (rc != 0)
        return rc;
    resp->requires_verification = false;
    resp->access_token = pair.access_token;
    resp->refresh_token = pair.refresh_token;
    resp->token_type = pair.token_type;
    resp->expires_in = pair.expires_in;
    resp->refresh_expires_in = pair.refresh_expires_in;
    resp->user = pair.user;
    resp->has.access_token = ZNP_SET;
    resp->has.refresh_token = ZNP_SET;
    resp->has.token_type = ZNP_SET;
    resp->has.expires_in = ZNP_SET;
    resp->has.refresh_expires_in = ZNP_SET;
    return 0;
}

/* Insert the account (and its invite use), then mail the code or sign in. */
static int create_account(znp_ctx_t *ctx, const registration_t *reg, int64_t invite_id,
                          znp_auth_register_response_t *resp)
{
    const char *params[6] = {reg->email,
                             reg->display_name,
                             reg->hash,
                             ctx->config->registration.default_roles,
                             reg->verify ? "true" : "false",
                             reg->locale == ZNP_LOCALE_ZH_CN ? "zh-CN" : "en"};
    PGresult *res = NULL;
    znp_auth_user_t user;
    json_t *diff = NULL;
    int found = 0, rc;

    rc = znp_sql_exec(&res, ctx->db, SQL_INSERT_USER, 6, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = ZNP_E_EMAIL_TAKEN;
        goto cleanup;
    }
    rc = znp_auth__user_find_by_id(&user, &found, ctx->db, znp_sql_int64(res, 0, 0), ctx->request_id);
    if (rc == 0 && !found)
        rc = ZNP_E_INTERNAL;
    if (rc == 0 && invite_id != 0)
        rc = znp_accounts__invite_record_use(ctx, invite_id, user.id);
    if (rc != 0)
        goto cleanup;

    if (reg->verify) {
        resp->requires_verification = true;
        rc = znp_accounts__send_code(ctx, ZNP_CODE_VERIFY, reg->email, reg->locale, 1);
        if (rc == 0)
            rc = fill_user(ctx, &user, &resp->user);
    } else {
        rc = sign_in(ctx, &user, resp);
    }
    if (rc != 0)
        goto cleanup;

    diff = json_pack("{s:s, s:b, s:I}", "status", reg->verify ? "pending" : "active", "invited", invite_id != 0,
                     "invite_code_id", (json_int_t)invite_id);
    rc = diff != NULL ? znp_accounts__audit(ctx, "auth.register", user.id, user.email, diff) : ZNP_E_INTERNAL;
    if (rc == 0)
        ZNP_INFO(LOG_TAG, ctx->request_id, "registered user=%lld status=%s", (long long)user.id,
                 reg->verify ? "pending" : "active");

cleanup:
    json_decref(diff);
    PQclear(res);
    return rc;
}

int znp_op_auth_register(znp_ctx_t *ctx, const znp_auth_register_request_t *req, znp_auth_register_response_t *resp)
{
    const znp_register_request_t *body = &req->body;
    registration_t reg;
    const char *params[1] = {reg.email};
    PGresult *res = NULL;
    int64_t invite_id = 0;
    int open = 0, rc;

    /* check input, and hash outside the transaction: argon2 is slow */
    memset(&reg, 0, sizeof(reg));
    rc = check_input(ctx, body, &reg);
    if (rc != 0)
        goto cleanup;
    rc = znp_password_hash(reg.hash, sizeof(reg.hash), body->password, strlen(body->password), ctx->config);
    if (rc != 0)
        goto cleanup;

    /* an existing account */
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    open = 1;
    rc = znp_sql_exec(&res, ctx->db, SQL_EXISTING, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) == 1) {
        rc = existing_account(ctx, &reg, res, resp);
        if (rc == 0)
            rc = znp_sql_commit(ctx->db, ctx->request_id);
        goto cleanup;
    }

    /* a new one */
    if (strcmp(ctx->config->registration.mode, "invite_only") == 0) {
        rc = znp_accounts__invite_take(ctx, body->invite_code, &invite_id);
        if (rc != 0)
            goto cleanup;
    }
    rc = create_account(ctx, &reg, invite_id, resp);
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);

cleanup:
    if (rc != 0 && open)
        znp_sql_rollback(ctx->db, ctx->request_id);
    OPENSSL_cleanse(reg.hash, sizeof(reg.hash));
    PQclear(res);
    return rc;
}
