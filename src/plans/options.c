/*
 * Billing options under /api/v1/{admin}/plans/{id}/billing-options. An
 * option always belongs to the plan in the path: an option of another plan
 * is reported as not_found, like a missing one. Plural units are stored
 * singular, and a blank name becomes a label such as "1 month" or "3 months".
 */
#include <ctype.h>
#include <jansson.h>
#include <string.h>

#include "auth/sql.h"
#include "operations.gen.h"
#include "plans/internal.h"

#define OPTION_NAME_MAX 128

/* the singular form of a unit the codec accepted */
static const char *unit_singular(const char *unit)
{
    static const char *const units[] = {"hour", "day", "month", "year"};

    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (strncmp(unit, units[i], strlen(units[i])) == 0)
            return units[i];
    return NULL;
}

/* Trimmed `name`, or the generated label when blank or absent (NULL). Arena string. */
static const char *option_name(znp_ctx_t *ctx, const char *name, int64_t value, const char *unit)
{
    if (name != NULL) {
        size_t len = strlen(name), start = 0;
        while (start < len && isspace((unsigned char)name[start]))
            start++;
        while (len > start && isspace((unsigned char)name[len - 1]))
            len--;
        if (len > start)
            return znp_arena_strndup(ctx->arena, name + start, len - start);
    }
    return znp_arena_printf(ctx->arena, "%lld %s%s", (long long)value, unit, value == 1 ? "" : "s");
}

static char *upper(znp_ctx_t *ctx, const char *in)
{
    char *out = znp_arena_strdup(ctx->arena, in);

    for (char *p = out; p != NULL && *p != '\0'; p++)
        *p = (char)toupper((unsigned char)*p);
    return out;
}

/* Copy one option row to the arena-backed response. */
static int fill(znp_ctx_t *ctx, const PGresult *res, int row, znp_plan_billing_option_t *out)
{
    znp_plans__fill_option(res, row, out);
    out->name = znp_arena_strdup(ctx->arena, out->name);
    out->duration_unit = znp_arena_strdup(ctx->arena, out->duration_unit);
    out->currency = znp_arena_strdup(ctx->arena, out->currency);
    return out->name != NULL && out->duration_unit != NULL && out->currency != NULL ? 0 : ZNP_E_INTERNAL;
}

int znp_op_list_admin_plan_billing_options(znp_ctx_t *ctx, const znp_list_admin_plan_billing_options_request_t *req,
                                           znp_list_admin_plan_billing_options_response_t *resp)
{
    static const char sql_plan[] = "SELECT 1 FROM plans WHERE id = $1";
    static const char sql[] = "SELECT " ZNP_PLANS_OPTION_COLUMNS " FROM plan_billing_options WHERE plan_id = $1"
                              " AND ($2::smallint IS NULL OR status = $2::smallint)"
                              " AND ($3::boolean IS NULL OR visible = $3::boolean)"
                              " ORDER BY sort_order, duration_value, id";
    char id[24], status[24];
    const char *params[3];
    PGresult *res = NULL;
    znp_plan_billing_option_t *items = NULL;
    int rows, rc;

    params[0] = znp_plans__int(id, sizeof(id), req->id);
    params[1] = req->has.status == ZNP_SET && req->status != 0 ? znp_plans__int(status, sizeof(status), req->status)
                                                                : NULL;
    params[2] = req->has.visible == ZNP_SET ? (req->visible ? "true" : "false") : NULL;
    rc = znp_sql_exec(&res, ctx->db, sql_plan, 1, params, ctx->request_id);
    if (rc != 0)
        return rc;
    rows = PQntuples(res);
    PQclear(res);
    res = NULL;
    if (rows != 1)
        return znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no plan with this id");
    rc = znp_sql_exec(&res, ctx->db, sql, 3, params, ctx->request_id);
    if (rc != 0)
        return rc;
    rows = PQntuples(res);
    if (rows > 0 && (items = znp_arena_alloc(ctx->arena, (size_t)rows * sizeof(*items))) == NULL)
        rc = ZNP_E_INTERNAL;
    for (int i = 0; i < rows && rc == 0; i++)
        rc = fill(ctx, res, i, &items[i]);
    resp->options.count = rc == 0 ? (size_t)rows : 0;
    resp->options.items = items;
    PQclear(res);
    return rc;
}

int znp_op_create_admin_plan_billing_option(znp_ctx_t *ctx, const znp_create_admin_plan_billing_option_request_t *req,
                                            znp_create_admin_plan_billing_option_response_t *resp)
{
    static const char sql[] =
        "INSERT INTO plan_billing_options (plan_id, name, duration_value, duration_unit, price_cents, currency,"
        " sort_order, status, visible) VALUES ($1, $2, $3::integer, $4, $5::bigint, $6, $7::integer, $8::smallint,"
        " $9::boolean) RETURNING " ZNP_PLANS_OPTION_COLUMNS;
    const znp_billing_option_create_t *body = &req->body;
    char id[24], value[24], price[24], sort[24], status[24];
    const char *params[9], *unit = unit_singular(body->duration_unit);
    PGresult *res = NULL;
    json_t *diff = NULL;
    int rc;

    if (unit == NULL)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.duration_unit", "unknown unit");
    params[0] = znp_plans__int(id, sizeof(id), req->id);
    params[1] = option_name(ctx, body->has.name == ZNP_SET ? body->name : NULL, body->duration_value, unit);
    params[2] = znp_plans__int(value, sizeof(value), body->duration_value);
    params[3] = unit;
    params[4] = znp_plans__int(price, sizeof(price), body->price_cents);
    params[5] = body->has.currency == ZNP_SET ? upper(ctx, body->currency) : NULL;
    params[6] = znp_plans__int(sort, sizeof(sort), body->sort_order);
    params[7] = znp_plans__int(status, sizeof(status), body->status);
    params[8] = body->visible ? "true" : "false";
    if (params[1] == NULL || (body->has.currency == ZNP_SET && params[5] == NULL))
        return ZNP_E_INTERNAL;

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_plans__lock(ctx, req->id, &res);
    if (rc != 0)
        goto cleanup;
    if (params[5] == NULL && (params[5] = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, 1))) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    PQclear(res);
    rc = znp_sql_exec(&res, ctx->db, sql, 9, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rc = fill(ctx, res, 0, &resp->option);
    if (rc != 0)
        goto cleanup;
    diff = json_pack("{s:I, s:s, s:I, s:s, s:I, s:s}", "plan_id", (json_int_t)req->id, "name", params[1],
                     "duration_value", (json_int_t)body->duration_value, "duration_unit", unit, "price_cents",
                     (json_int_t)body->price_cents, "currency", params[5]);
    rc = diff != NULL ? znp_plans__audit(ctx, "admin.plan_billing_option.create", "plan_billing_option",
                                         resp->option.id, diff)
                      : ZNP_E_INTERNAL;

cleanup:
    json_decref(diff);
    PQclear(res);
    return znp_plans__finish(ctx, rc);
}

int znp_op_update_admin_plan_billing_option(znp_ctx_t *ctx, const znp_update_admin_plan_billing_option_request_t *req,
                                            znp_update_admin_plan_billing_option_response_t *resp)
{
    static const char sql_lock[] = "SELECT o.name, o.duration_value, o.duration_unit FROM plan_billing_options o"
                                   " WHERE o.id = $2 AND o.plan_id = $1 FOR UPDATE";
    static const char sql[] =
        "UPDATE plan_billing_options SET name = $3, duration_value = $4::integer, duration_unit = $5,"
        " price_cents = coalesce($6::bigint, price_cents), currency = coalesce($7, currency),"
        " sort_order = coalesce($8::integer, sort_order), status = coalesce($9::smallint, status),"
        " visible = coalesce($10::boolean, visible), updated_at = now()"
        " WHERE id = $2 AND plan_id = $1 RETURNING " ZNP_PLANS_OPTION_COLUMNS;
    const znp_billing_option_update_t *body = &req->body;
    char plan_id[24], id[24], value[24], price[24], sort[24], status[24];
    const char *params[10] = {0};
    const char *old_name, *old_unit, *unit;
    int64_t duration;
    PGresult *res = NULL;
    json_t *diff = NULL, *changed = NULL;
    int rc;

    params[0] = znp_plans__int(plan_id, sizeof(plan_id), req->id);
    params[1] = znp_plans__int(id, sizeof(id), req->option_id);
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, sql_lock, 2, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "option_id", "this plan has no billing option with this id");
        goto cleanup;
    }
    old_name = PQgetvalue(res, 0, 0);
    duration = body->has.duration_value == ZNP_SET ? body->duration_value : znp_sql_int64(res, 0, 1);
    old_unit = PQgetvalue(res, 0, 2);
    unit = body->has.duration_unit == ZNP_SET ? unit_singular(body->duration_unit) : unit_singular(old_unit);
    if (unit == NULL) {
        rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.duration_unit", "unknown unit");
        goto cleanup;
    }
    if (body->has.name == ZNP_SET)
        params[2] = option_name(ctx, body->name, duration, unit);
    else if (body->has.name == ZNP_NULL)
        params[2] = option_name(ctx, NULL, duration, unit);
    else
        params[2] = znp_arena_strdup(ctx->arena, old_name);
    params[3] = znp_plans__int(value, sizeof(value), duration);
    params[4] = unit;
    if (body->has.price_cents == ZNP_SET)
        params[5] = znp_plans__int(price, sizeof(price), body->price_cents);
    if (body->has.currency == ZNP_SET)
        params[6] = upper(ctx, body->currency);
    if (body->has.sort_order == ZNP_SET)
        params[7] = znp_plans__int(sort, sizeof(sort), body->sort_order);
    if (body->has.status == ZNP_SET)
        params[8] = znp_plans__int(status, sizeof(status), body->status);
    if (body->has.visible == ZNP_SET)
        params[9] = body->visible ? "true" : "false";
    if (params[2] == NULL || (body->has.currency == ZNP_SET && params[6] == NULL)) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }

    static const char *const names[] = {"name", "duration_value", "duration_unit", "price_cents", "currency",
                                        "sort_order", "status", "visible"};
    const znp_presence_t presence[] = {body->has.name, body->has.duration_value, body->has.duration_unit,
                                       body->has.price_cents, body->has.currency, body->has.sort_order,
                                       body->has.status, body->has.visible};
    changed = json_array();
    for (size_t i = 0; changed != NULL && i < sizeof(names) / sizeof(names[0]); i++)
        if (presence[i] != ZNP_ABSENT)
            json_array_append_new(changed, json_string(names[i]));
    diff = changed != NULL ? json_pack("{s:I, s:O}", "plan_id", (json_int_t)req->id, "changed", changed) : NULL;
    if (diff == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }

    PQclear(res);
    rc = znp_sql_exec(&res, ctx->db, sql, 10, params, ctx->request_id);
    if (rc == 0)
        rc = fill(ctx, res, 0, &resp->option);
    if (rc == 0)
        rc = znp_plans__audit(ctx, "admin.plan_billing_option.update", "plan_billing_option", req->option_id, diff);

cleanup:
    json_decref(changed);
    json_decref(diff);
    PQclear(res);
    return znp_plans__finish(ctx, rc);
}

int znp_op_delete_admin_plan_billing_option(znp_ctx_t *ctx, const znp_delete_admin_plan_billing_option_request_t *req)
{
    static const char sql[] = "DELETE FROM plan_billing_options WHERE id = $2 AND plan_id = $1"
                              " RETURNING name, price_cents, currency";
    char plan_id[24], id[24];
    const char *params[2];
    PGresult *res = NULL;
    json_t *diff = NULL;
    int rc;

    params[0] = znp_plans__int(plan_id, sizeof(plan_id), req->id);
    params[1] = znp_plans__int(id, sizeof(id), req->option_id);
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, sql, 2, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "option_id", "this plan has no billing option with this id");
        goto cleanup;
    }
    diff = json_pack("{s:I, s:s, s:I, s:s}", "plan_id", (json_int_t)req->id, "name", PQgetvalue(res, 0, 0),
                     "price_cents", (json_int_t)znp_sql_int64(res, 0, 1), "currency", PQgetvalue(res, 0, 2));
    rc = diff != NULL ? znp_plans__audit(ctx, "admin.plan_billing_option.delete", "plan_billing_option",
                                         req->option_id, diff)
                      : ZNP_E_INTERNAL;

cleanup:
    json_decref(diff);
    PQclear(res);
    return znp_plans__finish(ctx, rc);
}
