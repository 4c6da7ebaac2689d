#include "account/account.h"

#include "accounts/accounts.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/password.h"
#include "auth/sql.h"
#include "auth/text.h"
#include "config/config.h"
#include "core/log.h"

#define LOG_TAG "account"

enum {
    COL_ID,
    COL_EMAIL,
    COL_DISPLAY_NAME,
    COL_ROLES,
    COL_STATUS,
    COL_LOCALE,
    COL_VERIFIED_AT,
    COL_FAILED_LOGINS,
    COL_LOCKED_UNTIL,
    COL_LAST_LOGIN_AT,
    COL_CREATED_AT,
    COL_UPDATED_AT,
};

const char *znp_account__int(char *buf, size_t size, int64_t v)
{
    snprintf(buf, size, "%lld", (long long)v);
    return buf;
}

int64_t znp_account__now(const znp_ctx_t *ctx)
{
    if (ctx != NULL && ctx->now != NULL)
        return ctx->now();
    return (int64_t)time(NULL);
}

int znp_account__load(znp_ctx_t *ctx, int64_t user_id, int with_hash, int lock, PGresult **out)
{
    static const char *const sql[2][2] = {
        {"SELECT " ZNP_ACCOUNT_COLUMNS " FROM users WHERE id = $1",
         "SELECT " ZNP_ACCOUNT_COLUMNS " FROM users WHERE id = $1 FOR UPDATE"},
        {"SELECT " ZNP_ACCOUNT_COLUMNS ", password_hash FROM users WHERE id = $1",
         "SELECT " ZNP_ACCOUNT_COLUMNS ", password_hash FROM users WHERE id = $1 FOR UPDATE"},
    };
    char id[24];
    const char *params[1] = {znp_account__int(id, sizeof(id), user_id)};

    return znp_sql_exec(out, ctx->db, sql[with_hash != 0][lock != 0], 1, params, ctx->request_id);
}

static char *arena_column(znp_ctx_t *ctx, const PGresult *res, int row, int col)
{
    return znp_arena_strdup(ctx->arena, PQgetvalue(res, row, col));
}

int znp_account__fill_profile(znp_ctx_t *ctx, const PGresult *res, znp_user_profile_t *out)
{
    memset(out, 0, sizeof(*out));
    out->id = znp_sql_int64(res, 0, COL_ID);
    out->email = arena_column(ctx, res, 0, COL_EMAIL);
    out->display_name = arena_column(ctx, res, 0, COL_DISPLAY_NAME);
    out->locale = arena_column(ctx, res, 0, COL_LOCALE);
    out->status = znp_sql_int64(res, 0, COL_STATUS);
    if (PQgetisnull(res, 0, COL_VERIFIED_AT)) {
        out->has.email_verified_at = ZNP_NULL;
    } else {
        out->email_verified_at = znp_sql_int64(res, 0, COL_VERIFIED_AT);
        out->has.email_verified_at = ZNP_SET;
    }
    out->created_at = znp_sql_int64(res, 0, COL_CREATED_AT);
    out->updated_at = znp_sql_int64(res, 0, COL_UPDATED_AT);
    if (out->email == NULL || out->display_name == NULL || out->locale == NULL)
        return ZNP_E_INTERNAL;
    return 0;
}

/* Copy an optional timestamp column, which stays omitted when it is NULL. */
static void optional_time(const PGresult *res, int row, int col, int64_t *value, znp_presence_t *presence)
{
    if (PQgetisnull(res, row, col))
        return;
    *value = znp_sql_int64(res, row, col);
    *presence = ZNP_SET;
}

int znp_account__fill_summary(znp_ctx_t *ctx, const PGresult *res, int row, znp_admin_user_summary_t *out)
{
    json_t *roles = json_loads(PQgetvalue(res, row, COL_ROLES), 0, NULL);
    size_t count = json_array_size(roles);
    char **items = NULL;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (count > 0) {
        items = znp_arena_alloc(ctx->arena, count * sizeof(*items));
        if (items == NULL)
            rc = ZNP_E_INTERNAL;
    }
    for (size_t i = 0; i < count && rc == 0; i++) {
        const char *role = json_string_value(json_array_get(roles, i));
        items[i] = znp_arena_strdup(ctx->arena, role != NULL ? role : "");
        if (items[i] == NULL)
            rc = ZNP_E_INTERNAL;
    }
    json_decref(roles);
    if (rc != 0)
        return rc;

    out->id = znp_sql_int64(res, row, COL_ID);
    out->email = arena_column(ctx, res, row, COL_EMAIL);
    out->display_name = arena_column(ctx, res, row, COL_DISPLAY_NAME);
    out->roles.count = count;
    out->roles.items = items;
    out->status = znp_sql_int64(res, row, COL_STATUS);
    out->locale = arena_column(ctx, res, row, COL_LOCALE);
    optional_time(res, row, COL_VERIFIED_AT, &out->email_verified_at, &out->has.email_verified_at);
    out->failed_login_attempts = znp_sql_int64(res, row, COL_FAILED_LOGINS);
    optional_time(res, row, COL_LOCKED_UNTIL, &out->locked_until, &out->has.locked_until);
    optional_time(res, row, COL_LAST_LOGIN_AT, &out->last_login_at, &out->has.last_login_at);
    out->created_at = znp_sql_int64(res, row, COL_CREATED_AT);
    out->updated_at = znp_sql_int64(res, row, COL_UPDATED_AT);
    if (out->email == NULL || out->display_name == NULL || out->locale == NULL)
        return ZNP_E_INTERNAL;
    return 0;
}

int znp_account__revoke_tokens(znp_ctx_t *ctx, int64_t user_id)
{
    /*
     * $2 is now in Unix seconds. The cap of now + 20 stays inside the 30 s
     * of iat skew that token verification allows.
     */
    static const char sql_users[] =
        "UPDATE users SET token_invalid_before = to_timestamp(LEAST($2::bigint + 20, GREATEST($2::bigint + 1,"
        " COALESCE(floor(extract(epoch FROM token_invalid_before))::bigint, 0) + 1))), updated_at = now()"
        " WHERE id = $1";
    static const char sql_refresh[] =
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL";
    char id[24], now[24];
    const char *params[2] = {znp_account__int(id, sizeof(id), user_id),
                             znp_account__int(now, sizeof(now), znp_account__now(ctx))};
    int rc = znp_sql_exec(NULL, ctx->db, sql_users, 2, params, ctx->request_id);

    if (rc == 0)
        rc = znp_sql_exec(NULL, ctx->db, sql_refresh, 1, params, ctx->request_id);
    return rc;
}

int znp_account__check_password(znp_ctx_t *ctx, const char *password, const char *email, const char *path)
{
    /* the configurable policy (password.*) that registration and reset use too */
    int rc = znp_accounts_check_password(ctx->config, password, strlen(password), email, ctx->err);

    /* the policy names the field "password", so point at the caller's field */
    if (rc != 0 && ctx->err != NULL)
        snprintf(ctx->err->path, sizeof(ctx->err->path), "%s", path);
    return rc;
}

static int role_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

int znp_account__normalize_roles(znp_ctx_t *ctx, const znp_array_t *roles, const char *path, const char **json_out,
                                 int *has_admin)
{
    char *const *items = roles->items;
    json_t *list = json_array();
    char *text = NULL;
    int rc = 0;

    *has_admin = 0;
    if (list == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < roles->count && rc == 0; i++) {
        size_t start, len = znp_text_trim(items[i], strlen(items[i]), &start);
        char role[32];
        int seen = 0;

        if (len == 0)
            continue;
        if (len >= sizeof(role)) {
            rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "a role is at most 31 characters");
            break;
        }
        for (size_t j = 0; j < len; j++) {
            char c = items[i][start + j];
            role[j] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
            if (!role_char_ok(role[j]))
                rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path,
                                   "roles may contain only letters, digits, '_', '.' and '-'");
        }
        role[len] = '\0';
        for (size_t j = 0; j < json_array_size(list) && rc == 0; j++)
            seen |= strcmp(json_string_value(json_array_get(list, j)), role) == 0;
        if (rc == 0 && !seen) {
            if (json_array_append_new(list, json_string(role)) != 0)
                rc = ZNP_E_INTERNAL;
            *has_admin |= strcmp(role, "admin") == 0;
        }
    }
    if (rc == 0 && json_array_size(list) == 0)
        rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "at least one role is required");
    if (rc == 0) {
        text = json_dumps(list, JSON_COMPACT);
        *json_out = text != NULL ? znp_arena_strdup(ctx->arena, text) : NULL;
        if (*json_out == NULL)
            rc = ZNP_E_INTERNAL;
    }
    free(text);
    json_decref(list);
    return rc;
}
