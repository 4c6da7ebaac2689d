#include "auth/auth_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/sql.h"
#include "core/log.h"

#define LOG_TAG "auth"

/* columns shared by both lookups, in this order */
#define USER_COLUMNS                                                                                                   \
    "id, email, display_name, array_to_json(roles)::text, "                                                            \
    "EXISTS (SELECT 1 FROM unnest(roles) AS r WHERE lower(r) = 'admin'), status, "                                     \
    "CASE WHEN locked_until > now() THEN ceil(extract(epoch FROM locked_until - now()))::bigint ELSE 0 END, "          \
    "COALESCE(floor(extract(epoch FROM token_invalid_before))::bigint, 0), "                                           \
    "floor(extract(epoch FROM created_at))::bigint, floor(extract(epoch FROM updated_at))::bigint"

enum {
    COL_ID,
    COL_EMAIL,
    COL_DISPLAY_NAME,
    COL_ROLES,
    COL_IS_ADMIN,
    COL_STATUS,
    COL_LOCK_SECONDS,
    COL_TOKEN_INVALID_BEFORE,
    COL_CREATED_AT,
    COL_UPDATED_AT,
    COL_PASSWORD_HASH, /* by-email lookup only */
};

/* Keep the roles that fit in the identity; the admin check uses the SQL column instead. */
static void parse_roles(znp_auth_user_t *out, const char *text, const char *request_id)
{
    json_t *roles = json_loads(text, 0, NULL);

    out->role_count = 0;
    for (size_t i = 0; i < json_array_size(roles); i++) {
        json_t *item = json_array_get(roles, i);
        size_t len = json_string_length(item);
        if (!json_is_string(item) || len == 0 || len >= sizeof(out->roles[0]) || out->role_count == ZNP_ROLES_MAX) {
            ZNP_WARN(LOG_TAG, request_id, "role left out of the identity user=%lld", (long long)out->id);
            continue;
        }
        memcpy(out->roles[out->role_count++], json_string_value(item), len + 1);
    }
    json_decref(roles);
}

static void fill_user(znp_auth_user_t *out, const PGresult *res, int with_password, const char *request_id)
{
    memset(out, 0, sizeof(*out));
    out->id = znp_sql_int64(res, 0, COL_ID);
    snprintf(out->email, sizeof(out->email), "%s", PQgetvalue(res, 0, COL_EMAIL));
    snprintf(out->display_name, sizeof(out->display_name), "%s", PQgetvalue(res, 0, COL_DISPLAY_NAME));
    parse_roles(out, PQgetvalue(res, 0, COL_ROLES), request_id);
    out->is_admin = znp_sql_bool(res, 0, COL_IS_ADMIN);
    out->status = (int)znp_sql_int64(res, 0, COL_STATUS);
    out->lock_seconds = znp_sql_int64(res, 0, COL_LOCK_SECONDS);
    out->token_invalid_before = znp_sql_int64(res, 0, COL_TOKEN_INVALID_BEFORE);
    out->created_at = znp_sql_int64(res, 0, COL_CREATED_AT);
    out->updated_at = znp_sql_int64(res, 0, COL_UPDATED_AT);
    if (with_password)
        snprintf(out->password_hash, sizeof(out->password_hash), "%s", PQgetvalue(res, 0, COL_PASSWORD_HASH));
}

int znp_auth__user_find_by_email(znp_auth_user_t *out, int *found, PGconn *db, const char *email,
                                 const char *request_id)
{
    static const char sql[] = "SELECT " USER_COLUMNS ", password_hash FROM users WHERE lower(email) = lower($1)";
    const char *params[1] = {email};
    PGresult *res = NULL;
    int rc;

    *found = 0;
    rc = znp_sql_exec(&res, db, sql, 1, params, request_id);
    if (rc == 0 && PQntuples(res) == 1) {
        fill_user(out, res, 1, request_id);
        *found = 1;
    }
    PQclear(res);
    return rc;
}

int znp_auth__user_find_by_id(znp_auth_user_t *out, int *found, PGconn *db, int64_t id, const char *request_id)
{
    static const char sql[] = "SELECT " USER_COLUMNS " FROM users WHERE id = $1";
    char id_text[24];
    const char *params[1] = {id_text};
    PGresult *res = NULL;
    int rc;

    *found = 0;
    snprintf(id_text, sizeof(id_text), "%lld", (long long)id);
    rc = znp_sql_exec(&res, db, sql, 1, params, request_id);
    if (rc == 0 && PQntuples(res) == 1) {
        fill_user(out, res, 0, request_id);
        *found = 1;
    }
    PQclear(res);
    return rc;
}

int64_t znp_auth__now(const znp_ctx_t *ctx)
{
    if (ctx != NULL && ctx->now != NULL)
        return ctx->now();
    return (int64_t)time(NULL);
}

int znp_auth__locked(znp_ctx_t *ctx, int64_t seconds)
{
    /* the time left goes out as Retry-After, so there is no detail text */
    int rc = znp_error_set(ctx->err, ZNP_E_ACCOUNT_LOCKED, NULL, NULL);

    if (ctx->err != NULL)
        ctx->err->retry_after = seconds > INT32_MAX ? INT32_MAX : (int)seconds;
    return rc;
}
