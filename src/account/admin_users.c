/*
 * User management under /api/v1/{admin}/users. Every write runs in one
 * transaction with its audit row. An admin can neither disable themselves
 * nor remove their own admin role, so an installation cannot lose its last
 * way in by accident. Role changes, disabling, password resets and forced
 * logouts end every token the user holds.
 */
#include "account/account.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/auth_internal.h"
#include "auth/password.h"
#include "auth/sql.h"
#include "auth/text.h"
#include "config/config.h"
#include "core/log.h"
#include "operations.gen.h"
#include "core/pagination.h"
#include "download/download.h"
#include "uniproxy/uniproxy.h"

#define LOG_TAG "account"

enum { COL_EMAIL = 1, COL_STATUS = 4 };

/* Begin a transaction and lock user `id`. Returns ZNP_E_NOT_FOUND when there is no such user. */
static int begin_locked(znp_ctx_t *ctx, int64_t id, PGresult **res)
{
    int rc = znp_sql_begin(ctx->db, ctx->request_id);

    if (rc != 0)
        return rc;
    rc = znp_account__load(ctx, id, 0, 1, res);
    if (rc == 0 && PQntuples(*res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no user with this id");
    return rc;
}

static int audit(znp_ctx_t *ctx, const char *action, int64_t id, json_t *diff)
{
    return znp_audit_record_resource(ctx, action, "user", id, diff);
}

static int finish(znp_ctx_t *ctx, int rc)
{
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    return rc;
}

/* Re-read user `id` inside the transaction and fill the summary. */
static int reload(znp_ctx_t *ctx, int64_t id, znp_admin_user_summary_t *out)
{
    PGresult *res = NULL;
    int rc = znp_account__load(ctx, id, 0, 0, &res);

    if (rc == 0)
        rc = PQntuples(res) == 1 ? znp_account__fill_summary(ctx, res, 0, out) : ZNP_E_NOT_FOUND;
    PQclear(res);
    return rc;
}

/* ORDER BY text of each sort key. The codec already limits `sort` and `direction` to their enums. */
static const znp_sql_order_t ORDERS[] = {
    {"updated_at", "updated_at ASC, id ASC", "updated_at DESC, id DESC"},
    {"created_at", "created_at ASC, id ASC", "created_at DESC, id DESC"},
    {"email", "lower(email) ASC, id ASC", "lower(email) DESC, id DESC"},
    {"id", "id ASC", "id DESC"},
    {"last_login_at", "last_login_at ASC NULLS LAST, id ASC", "last_login_at DESC NULLS LAST, id DESC"},
};

#define LIST_FILTER                                                                                                    \
    " FROM users WHERE ($1::text IS NULL OR strpos(lower(email), lower($1)) > 0"                                       \
    " OR strpos(lower(display_name), lower($1)) > 0)"                                                                  \
    " AND ($2::smallint IS NULL OR status = $2::smallint)"                                                             \
    " AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM unnest(roles) AS r WHERE lower(r) = lower($3)))"

int znp_op_list_admin_users(znp_ctx_t *ctx, const znp_list_admin_users_request_t *req,
                            znp_list_admin_users_response_t *resp)
{
    char status[24];
    const char *filter[3];
    znp_sql_list_t list = {"SELECT count(*)" LIST_FILTER, NULL, filter, 3, req->page, req->per_page};
    PGresult *res = NULL;
    znp_admin_user_summary_t *items = NULL;
    int rows, rc;

    filter[0] = req->has.q == ZNP_SET && req->q[0] != '\0' ? req->q : NULL;
    filter[1] =
        req->has.status == ZNP_SET && req->status != 0 ? znp_account__int(status, sizeof(status), req->status) : NULL;
    filter[2] = req->has.role == ZNP_SET && req->role[0] != '\0' ? req->role : NULL;
    list.page_sql =
        znp_arena_printf(ctx->arena, "SELECT " ZNP_ACCOUNT_COLUMNS LIST_FILTER " ORDER BY %s LIMIT $4 OFFSET $5",
                         znp_sql_order(ORDERS, sizeof(ORDERS) / sizeof(ORDERS[0]), req->sort, req->direction, 1));
    if (list.page_sql == NULL)
        return ZNP_E_INTERNAL;

    rc = znp_sql_list(&res, &resp->pagination, ctx->db, &list, ctx->request_id);
    if (rc != 0)
        goto cleanup;

    rows = PQntuples(res);
    if (rows > 0 && (items = znp_arena_alloc(ctx->arena, (size_t)rows * sizeof(*items))) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    for (int i = 0; i < rows && rc == 0; i++)
        rc = znp_account__fill_summary(ctx, res, i, &items[i]);
    resp->users.count = (size_t)rows;
    resp->users.items = items;

cleanup:
    znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    return rc;
}

int znp_op_get_admin_user(znp_ctx_t *ctx, const znp_get_admin_user_request_t *req, znp_get_admin_user_response_t *resp)
{
    int rc = reload(ctx, req->id, &resp->user);

    if (rc == ZNP_E_NOT_FOUND)
        return znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no user with this id");
    return rc;
}

/* The display name to store: the trimmed input, or the email's local part when absent or blank. */
static const char *creation_name(znp_ctx_t *ctx, const znp_admin_user_create_t *body, const char *email)
{
    const char *at = strchr(email, '@');
    size_t start = 0, len = 0;

    if (body->has.display_name == ZNP_SET)
        len = znp_text_trim(body->display_name, strlen(body->display_name), &start);
    if (len > 0)
        return znp_arena_strndup(ctx->arena, body->display_name + start, len);
    len = at != NULL ? (size_t)(at - email) : strlen(email);
    return znp_arena_strndup(ctx->arena, email, znp_text_prefix(email, len, ZNP_ACCOUNT_NAME_MAX_CHARS));
}

int znp_op_create_admin_user(znp_ctx_t *ctx, const znp_create_admin_user_request_t *req,
                             znp_create_admin_user_response_t *resp)
{
    static const char sql[] =
        "INSERT INTO users (email, display_name, password_hash, roles, status, email_verified_at)"
        " VALUES ($1, $2, $3, ARRAY(SELECT json_array_elements_text($4::json)), $5::smallint,"
        " CASE WHEN $6::boolean THEN now() END)"
        " ON CONFLICT DO NOTHING RETURNING id";
    static const char *const default_roles[] = {"user"};
    const znp_admin_user_create_t *body = &req->body;
    znp_array_t roles = {1, (void *)default_roles};
    char email[ZNP_EMAIL_MAX + 1], hash[ZNP_PASSWORD_HASH_MAX], status[24];
    const char *params[6], *roles_json = NULL, *name;
    int has_admin = 0, verified, rc;
    PGresult *res = NULL;
    json_t *diff = NULL;
    int64_t id = 0;

    /* input */
    rc = znp_auth_normalize_email(email, sizeof(email), body->email, ctx->err);
    if (rc != 0) {
        if (ctx->err != NULL)
            snprintf(ctx->err->path, sizeof(ctx->err->path), "$.email");
        return rc;
    }
    rc = znp_account__check_password(ctx, body->password, email, "$.password");
    if (rc != 0)
        return rc;
    if (body->has.roles == ZNP_SET)
        roles = body->roles;
    rc = znp_account__normalize_roles(ctx, &roles, "$.roles", &roles_json, &has_admin);
    if (rc != 0)
        return rc;
    name = creation_name(ctx, body, email);
    if (name == NULL)
        return ZNP_E_INTERNAL;
    verified = body->has.email_verified == ZNP_SET ? body->email_verified : body->status == 1;
    rc = znp_password_hash(hash, sizeof(hash), body->password, strlen(body->password), ctx->config);
    if (rc != 0)
        return rc;

    /* the row and its audit entry */
    params[0] = email;
    params[1] = name;
    params[2] = hash;
    params[3] = roles_json;
    params[4] = znp_account__int(status, sizeof(status), body->status);
    params[5] = verified ? "true" : "false";
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, sql, 6, params, ctx->request_id);
    if (rc == 0 && PQntuples(res) != 1)
        rc = ZNP_E_EMAIL_TAKEN;
    if (rc == 0) {
        id = znp_sql_int64(res, 0, 0);
        diff = json_pack("{s:s, s:o, s:I}", "email", email, "roles", json_loads(roles_json, 0, NULL), "status",
                         (json_int_t)body->status);
        rc = audit(ctx, "admin.user.create", id, diff);
    }
    if (rc == 0)
        rc = reload(ctx, id, &resp->user);
    rc = finish(ctx, rc);
    memset(hash, 0, sizeof(hash));
    json_decref(diff);
    PQclear(res);
    return rc;
}

static int self_lockout(znp_ctx_t *ctx, const char *path, const char *detail)
{
    return znp_error_set(ctx->err, ZNP_E_ADMIN_SELF_LOCKOUT, path, "%s", detail);
}

int znp_op_update_admin_user_status(znp_ctx_t *ctx, const znp_update_admin_user_status_request_t *req,
                                    znp_update_admin_user_status_response_t *resp)
{
    static const char sql[] = "UPDATE users SET status = $2::smallint, updated_at = now() WHERE id = $1";
    int64_t status = req->body.status;
    char id[24], status_text[24];
    const char *params[2] = {znp_account__int(id, sizeof(id), req->id),
                             znp_account__int(status_text, sizeof(status_text), status)};
    PGresult *res = NULL;
    json_t *diff = NULL;
    int rc;

    if (req->id == ctx->caller.user_id && status != 1)
        return self_lockout(ctx, "$.status", "you cannot disable your own account");
    rc = begin_locked(ctx, req->id, &res);
    if (rc == 0)
        rc = znp_sql_exec(NULL, ctx->db, sql, 2, params, ctx->request_id);
    /* pending and disabled accounts cannot use tokens; end them so re-activation does not revive them */
    if (rc == 0 && status != 1)
        rc = znp_account__revoke_tokens(ctx, req->id);
    if (rc == 0) {
        diff = json_pack("{s:I, s:I}", "from", (json_int_t)znp_sql_int64(res, 0, COL_STATUS), "to",
                         (json_int_t)status);
        rc = audit(ctx, "admin.user.status", req->id, diff);
    }
    if (rc == 0)
        rc = reload(ctx, req->id, &resp->user);
    rc = finish(ctx, rc);
    /* only active users appear in node-backend user lists and get entries in their subscription files */
    if (rc == 0) {
        znp_uniproxy_invalidate();
        znp_download_cache_clear();
    }
    json_decref(diff);
    PQclear(res);
    return rc;
}

int znp_op_update_admin_user_roles(znp_ctx_t *ctx, const znp_update_admin_user_roles_request_t *req,
                                   znp_update_admin_user_roles_response_t *resp)
{
    static const char sql[] = "UPDATE users SET roles = ARRAY(SELECT json_array_elements_text($2::json)),"
                              " updated_at = now() WHERE id = $1 RETURNING array_to_json(roles)::text";
    char id[24];
    const char *params[2] = {znp_account__int(id, sizeof(id), req->id), NULL};
    PGresult *res = NULL, *updated = NULL;
    json_t *diff = NULL;
    int has_admin = 0, rc;

    rc = znp_account__normalize_roles(ctx, &req->body.roles, "$.roles", &params[1], &has_admin);
    if (rc != 0)
        return rc;
    if (req->id == ctx->caller.user_id && !has_admin)
        return self_lockout(ctx, "$.roles", "you cannot remove your own admin role");
    rc = begin_locked(ctx, req->id, &res);
    if (rc == 0)
        rc = znp_sql_exec(&updated, ctx->db, sql, 2, params, ctx->request_id);
    if (rc == 0)
        rc = znp_account__revoke_tokens(ctx, req->id);
    if (rc == 0) {
        diff = json_pack("{s:o, s:o}", "from", json_loads(PQgetvalue(res, 0, 3), 0, NULL), "to",
                         json_loads(PQgetvalue(updated, 0, 0), 0, NULL));
        rc = audit(ctx, "admin.user.roles", req->id, diff);
    }
    if (rc == 0)
        rc = reload(ctx, req->id, &resp->user);
    rc = finish(ctx, rc);
    json_decref(diff);
    PQclear(updated);
    PQclear(res);
    return rc;
}

int znp_op_reset_admin_user_password(znp_ctx_t *ctx, const znp_reset_admin_user_password_request_t *req,
                                     znp_reset_admin_user_password_response_t *resp)
{
    static const char sql[] = "UPDATE users SET password_hash = $2, failed_login_attempts = 0, locked_until = NULL,"
                              " updated_at = now() WHERE id = $1";
    char id[24], hash[ZNP_PASSWORD_HASH_MAX];
    const char *params[2] = {znp_account__int(id, sizeof(id), req->id), hash};
    PGresult *res = NULL;
    int rc;

    rc = begin_locked(ctx, req->id, &res);
    if (rc == 0)
        rc = znp_account__check_password(ctx, req->body.password, PQgetvalue(res, 0, COL_EMAIL), "$.password");
    if (rc == 0)
        rc = znp_password_hash(hash, sizeof(hash), req->body.password, strlen(req->body.password), ctx->config);
    if (rc == 0)
        rc = znp_sql_exec(NULL, ctx->db, sql, 2, params, ctx->request_id);
    if (rc == 0)
        rc = znp_account__revoke_tokens(ctx, req->id);
    if (rc == 0)
        rc = audit(ctx, "admin.user.reset_password", req->id, NULL);
    resp->message = "password reset";
    rc = finish(ctx, rc);
    memset(hash, 0, sizeof(hash));
    PQclear(res);
    return rc;
}

int znp_op_force_admin_user_logout(znp_ctx_t *ctx, const znp_force_admin_user_logout_request_t *req,
                                   znp_force_admin_user_logout_response_t *resp)
{
    PGresult *res = NULL;
    int rc = begin_locked(ctx, req->id, &res);

    if (rc == 0)
        rc = znp_account__revoke_tokens(ctx, req->id);
    if (rc == 0)
        rc = audit(ctx, "admin.user.force_logout", req->id, NULL);
    resp->message = "logout forced";
    rc = finish(ctx, rc);
    PQclear(res);
    return rc;
}
