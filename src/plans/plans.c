/*
 * Plans under /api/v1/{admin}/plans and the plans on sale at
 * /api/v1/user/plans. Every admin write runs in one transaction with its
 * audit row. Slugs are stored lower-case and unique regardless of case.
 * Money is integer minor units with an ISO 4217 currency. binding_ids must
 * name existing protocol bindings; deleting a binding removes its links.
 */
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "core/log.h"
#include "download/download.h"
#include "operations.gen.h"
#include "plans/internal.h"
#include "core/pagination.h"
#include "uniproxy/uniproxy.h"

#define SLUG_MAX 128
#define MULTIPLIER_MAX 1000.0
#define PROTOCOL_NAME_MAX 32

#define PLAN_COLUMNS                                                                                                   \
    "p.id, p.name, p.slug, p.description, array_to_json(p.tags)::text, array_to_json(p.features)::text,"              \
    " p.traffic_multipliers::text, p.price_cents, p.currency, p.duration_days, p.traffic_limit_bytes,"                 \
    " p.devices_limit, p.traffic_reset_schedule, p.sort_order, p.status, p.visible,"                                   \
    " extract(epoch FROM p.created_at)::bigint, extract(epoch FROM p.updated_at)::bigint,"                             \
    " (SELECT coalesce(json_agg(b.binding_id ORDER BY b.binding_id), '[]')::text"                                       \
    " FROM plan_bindings b WHERE b.plan_id = p.id)"

enum {
    C_ID, C_NAME, C_SLUG, C_DESCRIPTION, C_TAGS, C_FEATURES, C_MULTIPLIERS, C_PRICE, C_CURRENCY, C_DAYS,
    C_TRAFFIC, C_DEVICES, C_RESET, C_SORT, C_STATUS, C_VISIBLE, C_CREATED, C_UPDATED, C_BINDINGS
};

const char *znp_plans__int(char *buf, size_t size, int64_t v)
{
    snprintf(buf, size, "%" PRId64, v);
    return buf;
}

int znp_plans__finish(znp_ctx_t *ctx, int rc)
{
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    /* a plan write can change its binding links, which decide node-backend user lists and subscription files */
    if (rc == 0) {
        znp_uniproxy_invalidate();
        znp_download_cache_clear();
    }
    return rc;
}

int znp_plans__audit(znp_ctx_t *ctx, const char *action, const char *type, int64_t id, json_t *diff)
{
    return znp_audit_record_resource(ctx, action, type, id, diff);
}

static void decref_json(void *data)
{
    json_decref(data);
}

/* Parse `text` as JSON and hand the value to the arena. Returns NULL on failure. */
static json_t *arena_json(znp_ctx_t *ctx, const char *text)
{
    json_t *value = json_loads(text, JSON_DECODE_ANY, NULL);

    if (value == NULL)
        return NULL;
    if (znp_arena_defer(ctx->arena, decref_json, value) != 0) {
        json_decref(value);
        return NULL;
    }
    return value;
}

/* A JSON array of strings (text) as an arena array of char *. */
static int strings_from_json(znp_ctx_t *ctx, const char *text, znp_array_t *out)
{
    json_t *list = arena_json(ctx, text);
    char **items = NULL;
    size_t count;

    if (!json_is_array(list))
        return ZNP_E_INTERNAL;
    count = json_array_size(list);
    if (count > 0 && (items = znp_arena_alloc(ctx->arena, count * sizeof(*items))) == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < count; i++) {
        const char *s = json_string_value(json_array_get(list, i));
        if (s == NULL || (items[i] = znp_arena_strdup(ctx->arena, s)) == NULL)
            return ZNP_E_INTERNAL;
    }
    out->count = count;
    out->items = items;
    return 0;
}

static int ints_from_json(znp_ctx_t *ctx, const char *text, znp_array_t *out)
{
    json_t *list = arena_json(ctx, text);
    int64_t *items = NULL;
    size_t count;

    if (!json_is_array(list))
        return ZNP_E_INTERNAL;
    count = json_array_size(list);
    if (count > 0 && (items = znp_arena_alloc(ctx->arena, count * sizeof(*items))) == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < count; i++)
        items[i] = (int64_t)json_integer_value(json_array_get(list, i));
    out->count = count;
    out->items = items;
    return 0;
}

static int fill_plan(znp_ctx_t *ctx, const PGresult *res, int row, znp_plan_t *out)
{
    int rc;

    memset(out, 0, sizeof(*out));
    out->id = znp_sql_int64(res, row, C_ID);
    out->name = PQgetvalue(res, row, C_NAME);
    out->slug = PQgetvalue(res, row, C_SLUG);
    out->description = PQgetvalue(res, row, C_DESCRIPTION);
    out->price_cents = znp_sql_int64(res, row, C_PRICE);
    out->currency = PQgetvalue(res, row, C_CURRENCY);
    out->duration_days = znp_sql_int64(res, row, C_DAYS);
    out->traffic_limit_bytes = znp_sql_int64(res, row, C_TRAFFIC);
    out->devices_limit = znp_sql_int64(res, row, C_DEVICES);
    out->traffic_reset_schedule = PQgetvalue(res, row, C_RESET);
    out->sort_order = znp_sql_int64(res, row, C_SORT);
    out->status = znp_sql_int64(res, row, C_STATUS);
    out->visible = znp_sql_bool(res, row, C_VISIBLE);
    out->created_at = znp_sql_int64(res, row, C_CREATED);
    out->updated_at = znp_sql_int64(res, row, C_UPDATED);
    /* the result is cleared before the response is encoded: copy the strings */
    out->name = znp_arena_strdup(ctx->arena, out->name);
    out->slug = znp_arena_strdup(ctx->arena, out->slug);
    out->description = znp_arena_strdup(ctx->arena, out->description);
    out->currency = znp_arena_strdup(ctx->arena, out->currency);
    out->traffic_reset_schedule = znp_arena_strdup(ctx->arena, out->traffic_reset_schedule);
    out->traffic_multipliers = arena_json(ctx, PQgetvalue(res, row, C_MULTIPLIERS));
    if (out->name == NULL || out->slug == NULL || out->description == NULL || out->currency == NULL ||
        out->traffic_reset_schedule == NULL || out->traffic_multipliers == NULL)
        return ZNP_E_INTERNAL;
    rc = strings_from_json(ctx, PQgetvalue(res, row, C_TAGS), &out->tags);
    if (rc == 0)
        rc = strings_from_json(ctx, PQgetvalue(res, row, C_FEATURES), &out->features);
    if (rc == 0)
        rc = ints_from_json(ctx, PQgetvalue(res, row, C_BINDINGS), &out->binding_ids);
    return rc;
}

void znp_plans__fill_option(const PGresult *res, int row, znp_plan_billing_option_t *out)
{
    memset(out, 0, sizeof(*out));
    out->id = znp_sql_int64(res, row, 0);
    out->plan_id = znp_sql_int64(res, row, 1);
    out->name = PQgetvalue(res, row, 2);
    out->duration_value = znp_sql_int64(res, row, 3);
    out->duration_unit = PQgetvalue(res, row, 4);
    out->price_cents = znp_sql_int64(res, row, 5);
    out->currency = PQgetvalue(res, row, 6);
    out->sort_order = znp_sql_int64(res, row, 7);
    out->status = znp_sql_int64(res, row, 8);
    out->visible = znp_sql_bool(res, row, 9);
    out->created_at = znp_sql_int64(res, row, 10);
    out->updated_at = znp_sql_int64(res, row, 11);
}

int znp_plans__load_options(znp_ctx_t *ctx, const int64_t *ids, size_t count, int on_sale, PGresult **res)
{
    static const char sql_all[] = "SELECT " ZNP_PLANS_OPTION_COLUMNS " FROM plan_billing_options"
                                  " WHERE plan_id = ANY($1::bigint[]) ORDER BY plan_id, sort_order, duration_value, id";
    static const char sql_on_sale[] = "SELECT " ZNP_PLANS_OPTION_COLUMNS " FROM plan_billing_options"
                                      " WHERE plan_id = ANY($1::bigint[]) AND status = 2 AND visible"
                                      " ORDER BY plan_id, sort_order, duration_value, id";
    size_t size = 3 + count * 21;
    char *list = znp_arena_alloc(ctx->arena, size);
    size_t used = 0;
    const char *params[1];

    if (list == NULL)
        return ZNP_E_INTERNAL;
    list[used++] = '{';
    for (size_t i = 0; i < count; i++)
        used += (size_t)snprintf(list + used, size - used, "%s%" PRId64, i > 0 ? "," : "", ids[i]);
    list[used++] = '}';
    list[used] = '\0';
    params[0] = list;
    return znp_sql_exec(res, ctx->db, on_sale ? sql_on_sale : sql_all, 1, params, ctx->request_id);
}

int znp_plans__pick_options(znp_ctx_t *ctx, const PGresult *res, int64_t plan_id, znp_array_t *out)
{
    int rows = PQntuples(res), first = -1, n = 0;
    znp_plan_billing_option_t *items;

    out->count = 0;
    out->items = NULL;
    for (int i = 0; i < rows; i++) {
        if (znp_sql_int64(res, i, 1) == plan_id) {
            if (first < 0)
                first = i;
            n++;
        }
    }
    if (n == 0)
        return 0;
    if ((items = znp_arena_alloc(ctx->arena, (size_t)n * sizeof(*items))) == NULL)
        return ZNP_E_INTERNAL;
    for (int i = 0; i < n; i++) {
        znp_plans__fill_option(res, first + i, &items[i]);
        items[i].name = znp_arena_strdup(ctx->arena, items[i].name);
        items[i].duration_unit = znp_arena_strdup(ctx->arena, items[i].duration_unit);
        items[i].currency = znp_arena_strdup(ctx->arena, items[i].currency);
        if (items[i].name == NULL || items[i].duration_unit == NULL || items[i].currency == NULL)
            return ZNP_E_INTERNAL;
    }
    out->count = (size_t)n;
    out->items = items;
    return 0;
}

int znp_plans__lock(znp_ctx_t *ctx, int64_t id, PGresult **res)
{
    static const char sql[] = "SELECT id, currency FROM plans WHERE id = $1 FOR UPDATE";
    char text[24];
    const char *params[1] = {znp_plans__int(text, sizeof(text), id)};
    int rc = znp_sql_exec(res, ctx->db, sql, 1, params, ctx->request_id);

    if (rc == 0 && PQntuples(*res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no plan with this id");
    return rc;
}

int znp_plans__reload(znp_ctx_t *ctx, int64_t id, znp_plan_t *out)
{
    static const char sql[] = "SELECT " PLAN_COLUMNS " FROM plans p WHERE p.id = $1";
    char text[24];
    const char *params[1] = {znp_plans__int(text, sizeof(text), id)};
    PGresult *res = NULL, *options = NULL;
    int rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);

    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no plan with this id");
    if (rc == 0)
        rc = fill_plan(ctx, res, 0, out);
    if (rc == 0)
        rc = znp_plans__load_options(ctx, &id, 1, 0, &options);
    if (rc == 0)
        rc = znp_plans__pick_options(ctx, options, id, &out->billing_options);
    PQclear(options);
    PQclear(res);
    return rc;
}

/* ---- input normalisation ---- */

/* Trim ASCII white space; returns an arena copy, "" when blank, NULL when out of memory. */
static char *trimmed(znp_ctx_t *ctx, const char *s)
{
    size_t len = strlen(s), start = 0;

    while (start < len && isspace((unsigned char)s[start]))
        start++;
    while (len > start && isspace((unsigned char)s[len - 1]))
        len--;
    return znp_arena_strndup(ctx->arena, s + start, len - start);
}

char *znp_plans__slugify(znp_arena_t *arena, const char *in)
{
    size_t len = strlen(in), used = 0;
    char *out = znp_arena_alloc(arena, len + 1);
    int gap = 0;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len && used < SLUG_MAX; i++) {
        unsigned char c = (unsigned char)in[i];
        if (isalnum(c) && c < 0x80) {
            if (gap && used > 0)
                out[used++] = '-';
            if (used < SLUG_MAX)
                out[used++] = (char)tolower(c);
            gap = 0;
        } else {
            gap = 1;
        }
    }
    while (used > 0 && out[used - 1] == '-')
        used--;
    out[used] = '\0';
    return out;
}

static char *upper(znp_ctx_t *ctx, const char *in)
{
    char *out = znp_arena_strdup(ctx->arena, in);

    for (char *p = out; p != NULL && *p != '\0'; p++)
        *p = (char)toupper((unsigned char)*p);
    return out;
}

int znp_plans__multipliers(znp_ctx_t *ctx, json_t *in, const char **text)
{
    json_t *out = NULL;
    const char *key;
    json_t *value;
    char *dump = NULL;
    int rc = 0;

    if (!json_is_object(in))
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.traffic_multipliers", "must be an object");
    if ((out = json_object()) == NULL)
        return ZNP_E_INTERNAL;
    json_object_foreach(in, key, value) {
        char name[PROTOCOL_NAME_MAX + 1];
        size_t len = strlen(key);
        double factor;

        if (len == 0 || len > PROTOCOL_NAME_MAX) {
            rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.traffic_multipliers",
                               "a protocol name has 1 to %d characters", PROTOCOL_NAME_MAX);
            goto cleanup;
        }
        for (size_t i = 0; i <= len; i++) {
            unsigned char c = (unsigned char)key[i];
            if (i < len && !(c < 0x80 && (isalnum(c) || c == '_' || c == '-'))) {
                rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.traffic_multipliers",
                                   "a protocol name has only letters, digits, '_' and '-'");
                goto cleanup;
            }
            name[i] = (char)tolower(c);
        }
        if (!json_is_number(value) || (factor = json_number_value(value)) <= 0.0 || factor > MULTIPLIER_MAX) {
            rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.traffic_multipliers",
                               "each factor is a number greater than 0 and at most 1000");
            goto cleanup;
        }
        if (json_object_get(out, name) != NULL) {
            rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.traffic_multipliers",
                               "protocol %s is listed twice", name);
            goto cleanup;
        }
        if (json_object_set_new(out, name, json_real(factor)) != 0) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
    }
    dump = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
    if (dump == NULL || (*text = znp_arena_strdup(ctx->arena, dump)) == NULL)
        rc = ZNP_E_INTERNAL;

cleanup:
    free(dump);
    json_decref(out);
    return rc;
}

/* JSON text of an array of strings (trimmed) or of integers. */
static const char *array_text(znp_ctx_t *ctx, const znp_array_t *in, int strings)
{
    json_t *list = json_array();
    char *dump = NULL;
    const char *text = NULL;

    if (list == NULL)
        return NULL;
    for (size_t i = 0; i < in->count; i++) {
        json_t *item;
        if (strings) {
            char *s = trimmed(ctx, ((char **)in->items)[i]);
            if (s == NULL)
                goto cleanup;
            if (*s == '\0')
                continue;
            item = json_string(s);
        } else {
            item = json_integer(((int64_t *)in->items)[i]);
        }
        if (item == NULL || json_array_append_new(list, item) != 0)
            goto cleanup;
    }
    dump = json_dumps(list, JSON_COMPACT);
    if (dump != NULL)
        text = znp_arena_strdup(ctx->arena, dump);

cleanup:
    free(dump);
    json_decref(list);
    return text;
}

/* A statement that breaks the slug's unique index. */
static const znp_sql_unique_t SLUG_TAKEN = {ZNP_E_PLAN_SLUG_TAKEN, "$.slug", "another plan uses this slug", NULL, 0};

/*
 * Replace the binding set of plan `id` with the ids in `ids_json` (NULL: none).
 * An id that names no protocol binding is a validation error on binding_ids.
 */
static int replace_bindings(znp_ctx_t *ctx, int64_t id, const char *ids_json)
{
    static const char sql_unknown[] = "SELECT x FROM json_array_elements_text($1::json) x"
                                      " WHERE NOT EXISTS (SELECT 1 FROM protocol_bindings b WHERE b.id = x::bigint)"
                                      " LIMIT 1";
    static const char sql_delete[] = "DELETE FROM plan_bindings WHERE plan_id = $1";
    static const char sql_insert[] = "INSERT INTO plan_bindings (plan_id, binding_id)"
                                     " SELECT DISTINCT $1::bigint, x::bigint FROM json_array_elements_text($2::json) x";
    char text[24];
    const char *params[2] = {znp_plans__int(text, sizeof(text), id), ids_json};
    PGresult *res = NULL;
    int rc;

    if (ids_json != NULL) {
        rc = znp_sql_exec(&res, ctx->db, sql_unknown, 1, &ids_json, ctx->request_id);
        if (rc == 0 && PQntuples(res) > 0)
            rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.binding_ids", "no protocol binding with id %s",
                               PQgetvalue(res, 0, 0));
        PQclear(res);
        if (rc != 0)
            return rc;
    }
    rc = znp_sql_exec(NULL, ctx->db, sql_delete, 1, params, ctx->request_id);
    if (rc == 0 && ids_json != NULL)
        rc = znp_sql_exec(NULL, ctx->db, sql_insert, 2, params, ctx->request_id);
    return rc;
}

/* ---- operations ---- */

int znp_op_create_admin_plan(znp_ctx_t *ctx, const znp_create_admin_plan_request_t *req,
                             znp_create_admin_plan_response_t *resp)
{
    static const char sql[] =
        "INSERT INTO plans (id, name, slug, description, tags, features, price_cents, currency, duration_days,"
        " traffic_limit_bytes, traffic_multipliers, devices_limit, traffic_reset_schedule, sort_order, status,"
        " visible) OVERRIDING SYSTEM VALUE"
        " SELECT n.id, $1, coalesce($2, 'plan-' || n.id), $3, ARRAY(SELECT json_array_elements_text($4::json)),"
        " ARRAY(SELECT json_array_elements_text($5::json)), $6::bigint, $7, $8::integer, $9::bigint, $10::jsonb,"
        " $11::integer, $12, $13::integer, $14::smallint, $15::boolean"
        " FROM (SELECT nextval(pg_get_serial_sequence('plans', 'id')) AS id) n"
        " ON CONFLICT DO NOTHING RETURNING id";
    const znp_plan_create_t *body = &req->body;
    static const znp_array_t empty = {0, NULL};
    char price[24], days[24], traffic[24], devices[24], sort[24], status[24];
    const char *params[15], *bindings;
    char *name, *slug = NULL;
    PGresult *res = NULL;
    json_t *diff = NULL;
    int64_t id;
    int rc;

    name = trimmed(ctx, body->name);
    if (name == NULL)
        return ZNP_E_INTERNAL;
    if (*name == '\0')
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.name", "must not be blank");
    if (body->has.slug == ZNP_SET)
        slug = znp_plans__slugify(ctx->arena, body->slug);
    if (slug == NULL || *slug == '\0')
        slug = znp_plans__slugify(ctx->arena, name);
    if (slug == NULL)
        return ZNP_E_INTERNAL;

    params[0] = name;
    params[1] = *slug != '\0' ? slug : NULL;
    params[2] = body->has.description == ZNP_SET ? body->description : "";
    params[3] = array_text(ctx, body->has.tags == ZNP_SET ? &body->tags : &empty, 1);
    params[4] = array_text(ctx, body->has.features == ZNP_SET ? &body->features : &empty, 1);
    params[5] = znp_plans__int(price, sizeof(price), body->price_cents);
    params[6] = body->has.currency == ZNP_SET ? upper(ctx, body->currency) : "CNY";
    params[7] = znp_plans__int(days, sizeof(days), body->duration_days);
    params[8] = znp_plans__int(traffic, sizeof(traffic), body->traffic_limit_bytes);
    params[9] = "{}";
    if (body->has.traffic_multipliers == ZNP_SET && (rc = znp_plans__multipliers(ctx, body->traffic_multipliers,
                                                                           &params[9])) != 0)
        return rc;
    params[10] = znp_plans__int(devices, sizeof(devices), body->devices_limit);
    params[11] = body->traffic_reset_schedule != NULL ? body->traffic_reset_schedule : "none";
    params[12] = znp_plans__int(sort, sizeof(sort), body->sort_order);
    params[13] = znp_plans__int(status, sizeof(status), body->status);
    params[14] = body->visible ? "true" : "false";
    bindings = array_text(ctx, body->has.binding_ids == ZNP_SET ? &body->binding_ids : &empty, 0);
    if (params[3] == NULL || params[4] == NULL || params[6] == NULL || bindings == NULL)
        return ZNP_E_INTERNAL;

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_sql_exec_unique(&res, ctx->err, ctx->db, sql, 15, params, &SLUG_TAKEN, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = znp_error_set(ctx->err, ZNP_E_PLAN_SLUG_TAKEN, "$.slug", "another plan uses this slug");
        goto cleanup;
    }
    id = znp_sql_int64(res, 0, 0);
    rc = replace_bindings(ctx, id, bindings);
    if (rc != 0)
        goto cleanup;
    diff = json_pack("{s:s, s:s?, s:I, s:s}", "name", name, "slug", params[1], "price_cents",
                     (json_int_t)body->price_cents, "currency", params[6]);
    if (diff == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    rc = znp_plans__audit(ctx, "admin.plan.create", "plan", id, diff);
    if (rc == 0)
        rc = znp_plans__reload(ctx, id, &resp->plan);

cleanup:
    json_decref(diff);
    PQclear(res);
    return znp_plans__finish(ctx, rc);
}

int znp_op_get_admin_plan(znp_ctx_t *ctx, const znp_get_admin_plan_request_t *req, znp_get_admin_plan_response_t *resp)
{
    return znp_plans__reload(ctx, req->id, &resp->plan);
}

int znp_op_update_admin_plan(znp_ctx_t *ctx, const znp_update_admin_plan_request_t *req,
                             znp_update_admin_plan_response_t *resp)
{
    static const char sql[] =
        "UPDATE plans SET name = coalesce($2, name), slug = coalesce($3, slug),"
        " description = coalesce($4, description),"
        " tags = CASE WHEN $5::json IS NULL THEN tags ELSE ARRAY(SELECT json_array_elements_text($5::json)) END,"
        " features = CASE WHEN $6::json IS NULL THEN features"
        " ELSE ARRAY(SELECT json_array_elements_text($6::json)) END,"
        " price_cents = coalesce($7::bigint, price_cents), currency = coalesce($8, currency),"
        " duration_days = coalesce($9::integer, duration_days),"
        " traffic_limit_bytes = coalesce($10::bigint, traffic_limit_bytes),"
        " traffic_multipliers = coalesce($11::jsonb, traffic_multipliers),"
        " devices_limit = coalesce($12::integer, devices_limit),"
        " traffic_reset_schedule = coalesce($13, traffic_reset_schedule),"
        " sort_order = coalesce($14::integer, sort_order), status = coalesce($15::smallint, status),"
        " visible = coalesce($16::boolean, visible), updated_at = now() WHERE id = $1";
    static const znp_array_t empty = {0, NULL};
    const znp_plan_update_t *body = &req->body;
    char id_text[24], price[24], days[24], traffic[24], devices[24], sort[24], status[24];
    const char *params[16] = {0}, *bindings = NULL;
    PGresult *res = NULL;
    json_t *diff = NULL, *changed = NULL;
    int rc;

    params[0] = znp_plans__int(id_text, sizeof(id_text), req->id);
    if (body->has.name == ZNP_SET) {
        char *name = trimmed(ctx, body->name);
        if (name == NULL)
            return ZNP_E_INTERNAL;
        if (*name == '\0')
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.name", "must not be blank");
        params[1] = name;
    }
    if (body->has.slug == ZNP_SET) {
        char *slug = znp_plans__slugify(ctx->arena, body->slug);
        if (slug == NULL)
            return ZNP_E_INTERNAL;
        if (*slug == '\0')
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.slug", "needs a letter or a digit");
        params[2] = slug;
    }
    if (body->has.description != ZNP_ABSENT)
        params[3] = body->has.description == ZNP_SET ? body->description : "";
    if (body->has.tags != ZNP_ABSENT &&
        (params[4] = array_text(ctx, body->has.tags == ZNP_SET ? &body->tags : &empty, 1)) == NULL)
        return ZNP_E_INTERNAL;
    if (body->has.features != ZNP_ABSENT &&
        (params[5] = array_text(ctx, body->has.features == ZNP_SET ? &body->features : &empty, 1)) == NULL)
        return ZNP_E_INTERNAL;
    if (body->has.price_cents == ZNP_SET)
        params[6] = znp_plans__int(price, sizeof(price), body->price_cents);
    if (body->has.currency == ZNP_SET && (params[7] = upper(ctx, body->currency)) == NULL)
        return ZNP_E_INTERNAL;
    if (body->has.duration_days == ZNP_SET)
        params[8] = znp_plans__int(days, sizeof(days), body->duration_days);
    if (body->has.traffic_limit_bytes == ZNP_SET)
        params[9] = znp_plans__int(traffic, sizeof(traffic), body->traffic_limit_bytes);
    if (body->has.traffic_multipliers == ZNP_NULL)
        params[10] = "{}";
    else if (body->has.traffic_multipliers == ZNP_SET &&
             (rc = znp_plans__multipliers(ctx, body->traffic_multipliers, &params[10])) != 0)
        return rc;
    if (body->has.devices_limit == ZNP_SET)
        params[11] = znp_plans__int(devices, sizeof(devices), body->devices_limit);
    if (body->has.traffic_reset_schedule == ZNP_SET)
        params[12] = body->traffic_reset_schedule;
    if (body->has.sort_order == ZNP_SET)
        params[13] = znp_plans__int(sort, sizeof(sort), body->sort_order);
    if (body->has.status == ZNP_SET)
        params[14] = znp_plans__int(status, sizeof(status), body->status);
    if (body->has.visible == ZNP_SET)
        params[15] = body->visible ? "true" : "false";
    if (body->has.binding_ids != ZNP_ABSENT &&
        (bindings = array_text(ctx, body->has.binding_ids == ZNP_SET ? &body->binding_ids : &empty, 0)) == NULL)
        return ZNP_E_INTERNAL;

    /* the audit row names the fields the request set, null included */
    static const char *const names[] = {NULL, "name", "slug", "description", "tags", "features", "price_cents",
                                        "currency", "duration_days", "traffic_limit_bytes", "traffic_multipliers",
                                        "devices_limit", "traffic_reset_schedule", "sort_order", "status",
                                        "visible"};
    changed = json_array();
    if (changed == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 1; i < sizeof(names) / sizeof(names[0]); i++)
        if (params[i] != NULL)
            json_array_append_new(changed, json_string(names[i]));
    if (bindings != NULL)
        json_array_append_new(changed, json_string("binding_ids"));
    diff = json_pack("{s:o}", "changed", changed);
    if (diff == NULL)
        return ZNP_E_INTERNAL;

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rc = znp_plans__lock(ctx, req->id, &res);
    if (rc != 0)
        goto done;
    PQclear(res);
    res = NULL;
    rc = znp_sql_exec_unique(&res, ctx->err, ctx->db, sql, 16, params, &SLUG_TAKEN, ctx->request_id);
    if (rc == 0 && bindings != NULL)
        rc = replace_bindings(ctx, req->id, bindings);
    if (rc == 0)
        rc = znp_plans__audit(ctx, "admin.plan.update", "plan", req->id, diff);
    if (rc == 0)
        rc = znp_plans__reload(ctx, req->id, &resp->plan);
done:
    rc = znp_plans__finish(ctx, rc);
cleanup:
    json_decref(diff);
    PQclear(res);
    return rc;
}

/* ORDER BY text of each sort key. The codec already limits `sort` and `direction` to their enums. */
static const znp_sql_order_t ORDERS[] = {
    {"sort_order", "p.sort_order ASC, p.id ASC", "p.sort_order DESC, p.id ASC"},
    {"name", "lower(p.name) ASC, p.id ASC", "lower(p.name) DESC, p.id ASC"},
    {"price", "p.price_cents ASC, p.id ASC", "p.price_cents DESC, p.id ASC"},
    {"updated", "p.updated_at ASC, p.id ASC", "p.updated_at DESC, p.id ASC"},
    {"created", "p.created_at ASC, p.id ASC", "p.created_at DESC, p.id ASC"},
    {"id", "p.id ASC", "p.id DESC"},
};

/*
 * Count and read one page of plans matching `filter` (parameters $1..$4:
 * q, status, visible, on-sale flag) in one snapshot, then attach billing
 * options. Fills `items` (znp_plan_t or znp_user_plan_t) and `page`.
 */
#define PLAN_FILTER                                                                                                    \
    " FROM plans p WHERE ($1::text IS NULL OR strpos(lower(p.name), lower($1)) > 0"                                    \
    " OR strpos(lower(p.description), lower($1)) > 0 OR strpos(p.slug, lower($1)) > 0)"                               \
    " AND ($2::smallint IS NULL OR p.status = $2::smallint) AND ($3::boolean IS NULL OR p.visible = $3::boolean)"       \
    " AND ($4::boolean IS NULL OR (p.status = 2 AND p.visible))"

static int list_plans(znp_ctx_t *ctx, const char *const *filter, int64_t page, int64_t per_page, const char *order,
                      int user_view, znp_array_t *items, znp_pagination_t *meta)
{
    znp_sql_list_t list = {"SELECT count(*)" PLAN_FILTER, NULL, filter, 4, page, per_page};
    PGresult *res = NULL, *options = NULL;
    int64_t *ids = NULL;
    int rows, rc;

    list.page_sql =
        znp_arena_printf(ctx->arena, "SELECT " PLAN_COLUMNS PLAN_FILTER " ORDER BY %s LIMIT $5 OFFSET $6", order);
    if (list.page_sql == NULL)
        return ZNP_E_INTERNAL;

    /* the options come from the same snapshot as the count and the page */
    rc = znp_sql_list(&res, meta, ctx->db, &list, ctx->request_id);
    if (rc != 0)
        goto cleanup;

    rows = PQntuples(res);
    items->count = 0;
    items->items = NULL;
    if (rows > 0) {
        ids = znp_arena_alloc(ctx->arena, (size_t)rows * sizeof(*ids));
        items->items = znp_arena_alloc(ctx->arena, (size_t)rows * (user_view ? sizeof(znp_user_plan_t)
                                                                             : sizeof(znp_plan_t)));
        if (ids == NULL || items->items == NULL) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
        for (int i = 0; i < rows; i++)
            ids[i] = znp_sql_int64(res, i, C_ID);
        rc = znp_plans__load_options(ctx, ids, (size_t)rows, user_view, &options);
    }
    for (int i = 0; i < rows && rc == 0; i++) {
        znp_plan_t plan;
        rc = fill_plan(ctx, res, i, &plan);
        if (rc == 0)
            rc = znp_plans__pick_options(ctx, options, plan.id, &plan.billing_options);
        if (rc != 0)
            break;
        if (user_view) {
            znp_user_plan_t *u = &((znp_user_plan_t *)items->items)[i];
            memset(u, 0, sizeof(*u));
            u->id = plan.id;
            u->name = plan.name;
            u->slug = plan.slug;
            u->description = plan.description;
            u->tags = plan.tags;
            u->features = plan.features;
            u->billing_options = plan.billing_options;
            u->price_cents = plan.price_cents;
            u->currency = plan.currency;
            u->duration_days = plan.duration_days;
            u->traffic_limit_bytes = plan.traffic_limit_bytes;
            u->traffic_multipliers = plan.traffic_multipliers;
            u->devices_limit = plan.devices_limit;
            u->traffic_reset_schedule = plan.traffic_reset_schedule;
        } else {
            ((znp_plan_t *)items->items)[i] = plan;
        }
    }
    if (rc != 0)
        goto cleanup;
    items->count = (size_t)rows;

cleanup:
    znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(options);
    PQclear(res);
    return rc;
}

int znp_op_list_admin_plans(znp_ctx_t *ctx, const znp_list_admin_plans_request_t *req,
                            znp_list_admin_plans_response_t *resp)
{
    char status[24];
    const char *filter[4];

    filter[0] = req->has.q == ZNP_SET && req->q[0] != '\0' ? req->q : NULL;
    filter[1] = req->has.status == ZNP_SET && req->status != 0 ? znp_plans__int(status, sizeof(status), req->status)
                                                                : NULL;
    filter[2] = req->has.visible == ZNP_SET ? (req->visible ? "true" : "false") : NULL;
    filter[3] = NULL;
    return list_plans(ctx, filter, req->page, req->per_page,
                      znp_sql_order(ORDERS, sizeof(ORDERS) / sizeof(ORDERS[0]), req->sort, req->direction, 0), 0,
                      &resp->plans, &resp->pagination);
}

int znp_op_list_user_plans(znp_ctx_t *ctx, const znp_list_user_plans_request_t *req,
                           znp_list_user_plans_response_t *resp)
{
    const char *filter[4];

    filter[0] = req->has.q == ZNP_SET && req->q[0] != '\0' ? req->q : NULL;
    filter[1] = NULL;
    filter[2] = NULL;
    filter[3] = "true";
    return list_plans(ctx, filter, req->page, req->per_page, "p.sort_order ASC, p.id ASC", 1, &resp->plans,
                      &resp->pagination);
}
