/*
 * Subscriptions: the admin side under /api/v1/{admin}/subscriptions and the
 * user's own list and token reset under /api/v1/user/subscriptions.
 *
 * Single-active rule: a subscription is effective when it is active (status
 * 1) and not expired. Every write that leaves one effective disables the
 * user's other active subscriptions in the same transaction. Writes lock the
 * user row first, so two writes for one user cannot both keep theirs active.
 * Calendar arithmetic runs in UTC; PostgreSQL clamps a month step to the
 * last day of a shorter month (Jan 31 + 1 month = Feb 28 or 29).
 */
#include <inttypes.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "core/log.h"
#include "download/download.h"
#include "operations.gen.h"
#include "system/site.h"
#include "core/pagination.h"
#include "uniproxy/uniproxy.h"

#define LOG_TAG "subscriptions"
#define TOKEN_BYTES 16
#define TOKEN_CHARS 22 /* base64url of 16 bytes without padding */

#define SUB_COLUMNS                                                                                                    \
    "s.id, s.user_id, u.email, u.display_name, s.name, s.plan_id, s.plan_name, s.plan_snapshot::text, s.status,"     \
    " coalesce(s.template_id, 0), array_to_json(s.available_template_ids)::text, s.token,"                             \
    " coalesce(extract(epoch FROM s.expires_at)::bigint, 0), s.traffic_total_bytes, s.traffic_used_bytes,"             \
    " s.devices_limit, coalesce(extract(epoch FROM s.last_refreshed_at)::bigint, 0),"                                  \
    " extract(epoch FROM s.created_at)::bigint, extract(epoch FROM s.updated_at)::bigint"                              \
    " FROM subscriptions s JOIN users u ON u.id = s.user_id"

enum {
    C_ID, C_USER_ID, C_EMAIL, C_DISPLAY_NAME, C_NAME, C_PLAN_ID, C_PLAN_NAME, C_SNAPSHOT, C_STATUS, C_TEMPLATE,
    C_TEMPLATES, C_TOKEN, C_EXPIRES, C_TOTAL, C_USED, C_DEVICES, C_REFRESHED, C_CREATED, C_UPDATED
};

/* The snapshot of plan row `p` as a jsonb expression. */
#define PLAN_SNAPSHOT                                                                                                  \
    "jsonb_build_object('id', p.id, 'name', p.name, 'slug', p.slug, 'description', p.description,"                     \
    " 'price_cents', p.price_cents, 'currency', p.currency, 'duration_days', p.duration_days,"                          \
    " 'traffic_limit_bytes', p.traffic_limit_bytes, 'traffic_multipliers', p.traffic_multipliers,"                      \
    " 'devices_limit', p.devices_limit, 'traffic_reset_schedule', p.traffic_reset_schedule,"                            \
    " 'features', to_jsonb(p.features), 'tags', to_jsonb(p.tags), 'binding_ids',"                                       \
    " coalesce((SELECT jsonb_agg(b.binding_id ORDER BY b.binding_id) FROM plan_bindings b"                              \
    " WHERE b.plan_id = p.id), '[]'::jsonb))"

static const char *int_text(char *buf, size_t size, int64_t v)
{
    snprintf(buf, size, "%" PRId64, v);
    return buf;
}

static void decref_json(void *data)
{
    json_decref(data);
}

static json_t *arena_json(znp_ctx_t *ctx, const char *text)
{
    json_t *value = json_loads(text, JSON_DECODE_ANY, NULL);

    if (value != NULL && znp_arena_defer(ctx->arena, decref_json, value) != 0) {
        json_decref(value);
        value = NULL;
    }
    return value;
}

static int ids_from_json(znp_ctx_t *ctx, const char *text, znp_array_t *out)
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

static const char *ids_text(znp_ctx_t *ctx, const znp_array_t *in)
{
    json_t *list = json_array();
    char *dump = NULL;
    const char *text = NULL;

    for (size_t i = 0; list != NULL && i < in->count; i++)
        if (json_array_append_new(list, json_integer(((int64_t *)in->items)[i])) != 0)
            goto cleanup;
    if (list != NULL && (dump = json_dumps(list, JSON_COMPACT)) != NULL)
        text = znp_arena_strdup(ctx->arena, dump);

cleanup:
    free(dump);
    json_decref(list);
    return text;
}

static char *copy(znp_ctx_t *ctx, const PGresult *res, int row, int col)
{
    return znp_arena_strdup(ctx->arena, PQgetvalue(res, row, col));
}

static int fill_admin(znp_ctx_t *ctx, const PGresult *res, int row, znp_admin_subscription_t *out)
{
    memset(out, 0, sizeof(*out));
    out->id = znp_sql_int64(res, row, C_ID);
    out->user.id = znp_sql_int64(res, row, C_USER_ID);
    out->user.email = copy(ctx, res, row, C_EMAIL);
    out->user.display_name = copy(ctx, res, row, C_DISPLAY_NAME);
    out->name = copy(ctx, res, row, C_NAME);
    out->plan_id = znp_sql_int64(res, row, C_PLAN_ID);
    out->plan_name = copy(ctx, res, row, C_PLAN_NAME);
    out->plan_snapshot = arena_json(ctx, PQgetvalue(res, row, C_SNAPSHOT));
    out->status = znp_sql_int64(res, row, C_STATUS);
    out->template_id = znp_sql_int64(res, row, C_TEMPLATE);
    out->token = copy(ctx, res, row, C_TOKEN);
    out->expires_at = znp_sql_int64(res, row, C_EXPIRES);
    out->traffic_total_bytes = znp_sql_int64(res, row, C_TOTAL);
    out->traffic_used_bytes = znp_sql_int64(res, row, C_USED);
    out->devices_limit = znp_sql_int64(res, row, C_DEVICES);
    out->last_refreshed_at = znp_sql_int64(res, row, C_REFRESHED);
    out->created_at = znp_sql_int64(res, row, C_CREATED);
    out->updated_at = znp_sql_int64(res, row, C_UPDATED);
    if (out->user.email == NULL || out->user.display_name == NULL || out->name == NULL || out->plan_name == NULL ||
        out->plan_snapshot == NULL || out->token == NULL)
        return ZNP_E_INTERNAL;
    return ids_from_json(ctx, PQgetvalue(res, row, C_TEMPLATES), &out->available_template_ids);
}

/* `<base>/api/v1/subscriptions/<token>` from the site domains, or "" when neither is set. */
static char *subscription_url(znp_ctx_t *ctx, const znp_site_snapshot_t *site, const char *token)
{
    const char *base = site->subscription_domain[0] != '\0' ? site->subscription_domain : site->service_domain;
    size_t len = strlen(base);

    while (len > 0 && base[len - 1] == '/')
        len--;
    if (len == 0)
        return znp_arena_strdup(ctx->arena, "");
    return znp_arena_printf(ctx->arena, "%s%.*s/api/v1/subscriptions/%s", strstr(base, "://") != NULL ? "" : "https://",
                            (int)len, base, token);
}

static int fill_user(znp_ctx_t *ctx, const PGresult *res, int row, const znp_site_snapshot_t *site,
                     znp_user_subscription_t *out)
{
    memset(out, 0, sizeof(*out));
    out->id = znp_sql_int64(res, row, C_ID);
    out->name = copy(ctx, res, row, C_NAME);
    out->plan_id = znp_sql_int64(res, row, C_PLAN_ID);
    out->plan_name = copy(ctx, res, row, C_PLAN_NAME);
    out->status = znp_sql_int64(res, row, C_STATUS);
    out->template_id = znp_sql_int64(res, row, C_TEMPLATE);
    out->token = copy(ctx, res, row, C_TOKEN);
    out->expires_at = znp_sql_int64(res, row, C_EXPIRES);
    out->traffic_total_bytes = znp_sql_int64(res, row, C_TOTAL);
    out->traffic_used_bytes = znp_sql_int64(res, row, C_USED);
    out->devices_limit = znp_sql_int64(res, row, C_DEVICES);
    out->last_refreshed_at = znp_sql_int64(res, row, C_REFRESHED);
    if (out->name == NULL || out->plan_name == NULL || out->token == NULL)
        return ZNP_E_INTERNAL;
    out->subscription_url = subscription_url(ctx, site, out->token);
    if (out->subscription_url == NULL)
        return ZNP_E_INTERNAL;
    return ids_from_json(ctx, PQgetvalue(res, row, C_TEMPLATES), &out->available_template_ids);
}

/* Write a fresh token: 128 random bits in base64url without padding. */
static int new_token(char out[TOKEN_CHARS + 1])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char raw[TOKEN_BYTES + 2] = {0};
    size_t used = 0;

    if (RAND_bytes(raw, TOKEN_BYTES) != 1)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < TOKEN_BYTES; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        for (int k = 0; k < 4 && used < TOKEN_CHARS; k++)
            out[used++] = alphabet[(v >> (18 - 6 * k)) & 63];
    }
    out[used] = '\0';
    return 0;
}

static int finish(znp_ctx_t *ctx, int rc)
{
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    return rc;
}

/*
 * finish() for a write that can change subscription `id`'s download. Its
 * cached responses are dropped after the commit, so no later download reads
 * the old row. `others` is set when the write also disabled other
 * subscriptions of the owner (enforce_single_active), and then every cached
 * response is dropped.
 */
static int finish_changed(znp_ctx_t *ctx, int rc, int64_t id, int others)
{
    rc = finish(ctx, rc);
    if (rc == 0) {
        if (others)
            znp_download_cache_clear();
        else
            znp_download_cache_forget(id);
        znp_uniproxy_invalidate();
    }
    return rc;
}

static int audit(znp_ctx_t *ctx, const char *action, int64_t id, json_t *diff)
{
    return znp_audit_record_resource(ctx, action, "subscription", id, diff);
}

static int load(znp_ctx_t *ctx, int64_t id, znp_admin_subscription_t *out)
{
    static const char sql[] = "SELECT " SUB_COLUMNS " WHERE s.id = $1";
    char text[24];
    const char *params[1] = {int_text(text, sizeof(text), id)};
    PGresult *res = NULL;
    int rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);

    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no subscription with this id");
    if (rc == 0)
        rc = fill_admin(ctx, res, 0, out);
    PQclear(res);
    return rc;
}

/*
 * Begin a transaction and lock the owner of subscription `id`, then the
 * subscription. *owner is the user id.
 */
static int begin_locked(znp_ctx_t *ctx, int64_t id, int64_t *owner)
{
    static const char sql_owner[] = "SELECT user_id FROM subscriptions WHERE id = $1";
    static const char sql_lock[] = "SELECT s.id FROM users u JOIN subscriptions s ON s.user_id = u.id"
                                   " WHERE s.id = $1 AND u.id = $2 FOR UPDATE";
    char text[24], user[24];
    const char *params[2] = {int_text(text, sizeof(text), id), NULL};
    PGresult *res = NULL;
    int rc = znp_sql_begin(ctx->db, ctx->request_id);

    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, sql_owner, 1, params, ctx->request_id);
    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no subscription with this id");
    if (rc == 0) {
        *owner = znp_sql_int64(res, 0, 0);
        params[1] = int_text(user, sizeof(user), *owner);
        PQclear(res);
        res = NULL;
        rc = znp_sql_exec(&res, ctx->db, sql_lock, 2, params, ctx->request_id);
        /* the subscription never changes owner, so the row is still there */
        if (rc == 0 && PQntuples(res) != 1)
            rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no subscription with this id");
    }
    PQclear(res);
    return rc;
}

/*
 * Disable the other active subscriptions of the owner when subscription `id`
 * is effective. Adds their ids to `diff` under "disabled_ids" and sets
 * *disabled when there were any.
 */
static int enforce_single_active(znp_ctx_t *ctx, int64_t id, json_t *diff, int *disabled)
{
    static const char sql[] =
        "UPDATE subscriptions o SET status = 2, updated_at = now() FROM subscriptions s"
        " WHERE s.id = $1 AND s.status = 1 AND (s.expires_at IS NULL OR s.expires_at > now())"
        " AND o.user_id = s.user_id AND o.id <> s.id AND o.status = 1 RETURNING o.id";
    char text[24];
    const char *params[1] = {int_text(text, sizeof(text), id)};
    PGresult *res = NULL;
    json_t *ids;
    int rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);

    if (rc != 0)
        return rc;
    if (PQntuples(res) > 0) {
        *disabled = 1;
        ids = json_array();
        for (int i = 0; ids != NULL && i < PQntuples(res); i++)
            json_array_append_new(ids, json_integer(znp_sql_int64(res, i, 0)));
        if (ids == NULL || json_object_set_new(diff, "disabled_ids", ids) != 0)
            rc = ZNP_E_INTERNAL;
    }
    PQclear(res);
    return rc;
}

static int check_traffic(znp_ctx_t *ctx, int64_t total, int64_t used)
{
    if (total > 0 && used > total)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.traffic_used_bytes",
                             "must not exceed traffic_total_bytes (%" PRId64 ")", total);
    return 0;
}

/* Return an arena copy of `in` without surrounding white space ("" when blank). */
static char *trimmed(znp_ctx_t *ctx, const char *in)
{
    size_t len = strlen(in), start = 0;

    while (start < len && (in[start] == ' ' || in[start] == '\t' || in[start] == '\n' || in[start] == '\r'))
        start++;
    while (len > start && (in[len - 1] == ' ' || in[len - 1] == '\t' || in[len - 1] == '\n' || in[len - 1] == '\r'))
        len--;
    return znp_arena_strndup(ctx->arena, in + start, len - start);
}

int znp_op_create_admin_subscription(znp_ctx_t *ctx, const znp_create_admin_subscription_request_t *req,
                                     znp_create_admin_subscription_response_t *resp)
{
    static const char sql_user[] = "SELECT id FROM users WHERE id = $1 FOR UPDATE";
    static const char sql_plan[] = "SELECT p.name, p.traffic_limit_bytes, p.devices_limit FROM plans p WHERE p.id = $1";
    static const char sql[] =
        "INSERT INTO subscriptions (user_id, name, plan_id, plan_name, plan_snapshot, status, template_id,"
        " available_template_ids, token, expires_at, traffic_total_bytes, traffic_used_bytes, devices_limit)"
        " SELECT $1::bigint, $2, p.id, $3, " PLAN_SNAPSHOT ", $5::smallint, $6::bigint,"
        " ARRAY(SELECT json_array_elements_text($7::json)::bigint), $8, to_timestamp($9::bigint), $10::bigint,"
        " $11::bigint, $12::integer FROM plans p WHERE p.id = $4::bigint RETURNING id";
    const znp_admin_subscription_create_t *body = &req->body;
    static const znp_array_t none = {0, NULL};
    char user[24], plan[24], status[24], template[24], expires[24], total[24], used[24], devices[24];
    char token[TOKEN_CHARS + 1];
    const char *params[12] = {0};
    const char *name = NULL, *plan_name = NULL;
    int64_t total_bytes, id;
    int others = 0;
    PGresult *res = NULL;
    json_t *diff = NULL;
    int rc;

    params[0] = int_text(user, sizeof(user), body->user_id);
    params[3] = int_text(plan, sizeof(plan), body->plan_id);
    if (body->has.name == ZNP_SET && (name = trimmed(ctx, body->name)) == NULL)
        return ZNP_E_INTERNAL;
    if (body->has.plan_name == ZNP_SET && (plan_name = trimmed(ctx, body->plan_name)) == NULL)
        return ZNP_E_INTERNAL;
    if ((rc = new_token(token)) != 0)
        return rc;

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, sql_user, 1, params, ctx->request_id);
    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "$.user_id", "no user with this id");
    PQclear(res);
    res = NULL;
    if (rc != 0)
        goto cleanup;
    rc = znp_sql_exec(&res, ctx->db, sql_plan, 1, &params[3], ctx->request_id);
    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "$.plan_id", "no plan with this id");
    if (rc != 0)
        goto cleanup;

    if (name == NULL || *name == '\0')
        name = copy(ctx, res, 0, 0);
    if (plan_name == NULL || *plan_name == '\0')
        plan_name = copy(ctx, res, 0, 0);
    total_bytes = body->has.traffic_total_bytes == ZNP_SET ? body->traffic_total_bytes : znp_sql_int64(res, 0, 1);
    params[1] = name;
    params[2] = plan_name;
    params[4] = int_text(status, sizeof(status), body->status);
    params[5] = body->has.template_id == ZNP_SET ? int_text(template, sizeof(template), body->template_id) : NULL;
    /* the available templates default to the chosen one */
    if (body->has.available_template_ids == ZNP_SET)
        params[6] = ids_text(ctx, &body->available_template_ids);
    else if (body->has.template_id == ZNP_SET)
        params[6] = ids_text(ctx, &(znp_array_t){1, (void *)&body->template_id});
    else
        params[6] = ids_text(ctx, &none);
    params[7] = token;
    params[8] = body->has.expires_at == ZNP_SET ? int_text(expires, sizeof(expires), body->expires_at) : NULL;
    params[9] = int_text(total, sizeof(total), total_bytes);
    params[10] = int_text(used, sizeof(used), body->traffic_used_bytes);
    params[11] = body->has.devices_limit == ZNP_SET ? int_text(devices, sizeof(devices), body->devices_limit)
                                                    : copy(ctx, res, 0, 2);
    if (name == NULL || plan_name == NULL || params[6] == NULL || params[11] == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    if ((rc = check_traffic(ctx, total_bytes, body->traffic_used_bytes)) != 0)
        goto cleanup;
    PQclear(res);
    rc = znp_sql_exec(&res, ctx->db, sql, 12, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    id = znp_sql_int64(res, 0, 0);
    diff = json_pack("{s:I, s:I, s:I}", "user_id", (json_int_t)body->user_id, "plan_id", (json_int_t)body->plan_id,
                     "status", (json_int_t)body->status);
    if (diff == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    rc = enforce_single_active(ctx, id, diff, &others);
    if (rc == 0)
        rc = audit(ctx, "admin.subscription.create", id, diff);
    if (rc == 0)
        rc = load(ctx, id, &resp->subscription);

cleanup:
    json_decref(diff);
    PQclear(res);
    /* a new subscription can add its user to node-backend user lists */
    rc = finish(ctx, rc);
    if (rc == 0)
        znp_uniproxy_invalidate();
    /* the other subscriptions it disabled may have cached responses */
    if (rc == 0 && others)
        znp_download_cache_clear();
    return rc;
}

int znp_op_get_admin_subscription(znp_ctx_t *ctx, const znp_get_admin_subscription_request_t *req,
                                  znp_get_admin_subscription_response_t *resp)
{
    return load(ctx, req->id, &resp->subscription);
}

int znp_op_update_admin_subscription(znp_ctx_t *ctx, const znp_update_admin_subscription_request_t *req,
                                     znp_update_admin_subscription_response_t *resp)
{
    static const char sql_plan[] = "SELECT 1 FROM plans WHERE id = $1";
    static const char sql[] =
        "UPDATE subscriptions s SET name = coalesce($2, s.name), plan_id = coalesce($3::bigint, s.plan_id),"
        " plan_name = coalesce($4, CASE WHEN $3::bigint IS NULL THEN s.plan_name"
        " ELSE (SELECT p.name FROM plans p WHERE p.id = $3::bigint) END),"
        " plan_snapshot = CASE WHEN $3::bigint IS NULL THEN s.plan_snapshot"
        " ELSE (SELECT " PLAN_SNAPSHOT " FROM plans p WHERE p.id = $3::bigint) END,"
        " status = coalesce($5::smallint, s.status),"
        " template_id = CASE WHEN $6::boolean THEN $7::bigint ELSE s.template_id END,"
        " available_template_ids = CASE WHEN $8::json IS NULL THEN s.available_template_ids"
        " ELSE ARRAY(SELECT json_array_elements_text($8::json)::bigint) END,"
        " expires_at = CASE WHEN $9::boolean THEN to_timestamp($10::bigint) ELSE s.expires_at END,"
        " traffic_total_bytes = coalesce($11::bigint, s.traffic_total_bytes),"
        " traffic_used_bytes = coalesce($12::bigint, s.traffic_used_bytes),"
        " devices_limit = coalesce($13::integer, s.devices_limit), updated_at = now()"
        " WHERE s.id = $1 RETURNING s.traffic_total_bytes, s.traffic_used_bytes";
    static const znp_array_t none = {0, NULL};
    const znp_admin_subscription_update_t *body = &req->body;
    char id[24], plan[24], status[24], template[24], expires[24], total[24], used[24], devices[24];
    const char *params[13] = {0};
    static const char *const names[] = {"name", "plan_id", "plan_name", "status", "template_id",
                                        "available_template_ids", "expires_at", "traffic_total_bytes",
                                        "traffic_used_bytes", "devices_limit"};
    const znp_presence_t presence[] = {body->has.name, body->has.plan_id, body->has.plan_name, body->has.status,
                                       body->has.template_id, body->has.available_template_ids,
                                       body->has.expires_at, body->has.traffic_total_bytes,
                                       body->has.traffic_used_bytes, body->has.devices_limit};
    PGresult *res = NULL;
    json_t *diff = NULL, *changed;
    int64_t owner;
    int others = 0, rc;

    params[0] = int_text(id, sizeof(id), req->id);
    if (body->has.name == ZNP_SET) {
        if ((params[1] = trimmed(ctx, body->name)) == NULL)
            return ZNP_E_INTERNAL;
        if (*params[1] == '\0')
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.name", "must not be blank");
    }
    if (body->has.plan_id == ZNP_SET)
        params[2] = int_text(plan, sizeof(plan), body->plan_id);
    if (body->has.plan_name == ZNP_SET) {
        if ((params[3] = trimmed(ctx, body->plan_name)) == NULL)
            return ZNP_E_INTERNAL;
        if (*params[3] == '\0')
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.plan_name", "must not be blank");
    }
    if (body->has.status == ZNP_SET)
        params[4] = int_text(status, sizeof(status), body->status);
    params[5] = body->has.template_id != ZNP_ABSENT ? "true" : "false";
    if (body->has.template_id == ZNP_SET)
        params[6] = int_text(template, sizeof(template), body->template_id);
    if (body->has.available_template_ids != ZNP_ABSENT &&
        (params[7] = ids_text(ctx, body->has.available_template_ids == ZNP_SET ? &body->available_template_ids
                                                                               : &none)) == NULL)
        return ZNP_E_INTERNAL;
    params[8] = body->has.expires_at != ZNP_ABSENT ? "true" : "false";
    if (body->has.expires_at == ZNP_SET)
        params[9] = int_text(expires, sizeof(expires), body->expires_at);
    if (body->has.traffic_total_bytes == ZNP_SET)
        params[10] = int_text(total, sizeof(total), body->traffic_total_bytes);
    if (body->has.traffic_used_bytes == ZNP_SET)
        params[11] = int_text(used, sizeof(used), body->traffic_used_bytes);
    if (body->has.devices_limit == ZNP_SET)
        params[12] = int_text(devices, sizeof(devices), body->devices_limit);

    changed = json_array();
    for (size_t i = 0; changed != NULL && i < sizeof(names) / sizeof(names[0]); i++)
        if (presence[i] != ZNP_ABSENT)
            json_array_append_new(changed, json_string(names[i]));
    diff = changed != NULL ? json_pack("{s:o}", "changed", changed) : NULL;
    if (diff == NULL)
        return ZNP_E_INTERNAL;

    rc = begin_locked(ctx, req->id, &owner);
    if (rc == 0 && params[2] != NULL) {
        rc = znp_sql_exec(&res, ctx->db, sql_plan, 1, &params[2], ctx->request_id);
        if (rc == 0 && PQntuples(res) != 1)
            rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "$.plan_id", "no plan with this id");
        PQclear(res);
        res = NULL;
    }
    if (rc == 0)
        rc = znp_sql_exec(&res, ctx->db, sql, 13, params, ctx->request_id);
    if (rc == 0 && (params[10] != NULL || params[11] != NULL))
        rc = check_traffic(ctx, znp_sql_int64(res, 0, 0), znp_sql_int64(res, 0, 1));
    if (rc == 0)
        rc = enforce_single_active(ctx, req->id, diff, &others);
    if (rc == 0)
        rc = audit(ctx, "admin.subscription.update", req->id, diff);
    if (rc == 0)
        rc = load(ctx, req->id, &resp->subscription);
    json_decref(diff);
    PQclear(res);
    return finish_changed(ctx, rc, req->id, others);
}

int znp_op_disable_admin_subscription(znp_ctx_t *ctx, const znp_disable_admin_subscription_request_t *req,
                                      znp_disable_admin_subscription_response_t *resp)
{
    static const char sql[] = "UPDATE subscriptions SET status = 2, updated_at = now() WHERE id = $1";
    char id[24];
    const char *params[1] = {int_text(id, sizeof(id), req->id)};
    json_t *diff = json_pack("{s:s?}", "reason", req->body.has.reason == ZNP_SET ? req->body.reason : NULL);
    int64_t owner;
    int rc;

    if (diff == NULL)
        return ZNP_E_INTERNAL;
    rc = begin_locked(ctx, req->id, &owner);
    if (rc == 0)
        rc = znp_sql_exec(NULL, ctx->db, sql, 1, params, ctx->request_id);
    if (rc == 0)
        rc = audit(ctx, "admin.subscription.disable", req->id, diff);
    if (rc == 0)
        rc = load(ctx, req->id, &resp->subscription);
    json_decref(diff);
    return finish_changed(ctx, rc, req->id, 0);
}

int znp_op_extend_admin_subscription(znp_ctx_t *ctx, const znp_extend_admin_subscription_request_t *req,
                                     znp_extend_admin_subscription_response_t *resp)
{
    static const char sql_current[] = "SELECT expires_at IS NULL, coalesce(extract(epoch FROM expires_at)::bigint, 0)"
                                      " FROM subscriptions WHERE id = $1";
    /* a relative step starts at the later of the current expiry and now, in UTC */
    static const char sql[] =
        "UPDATE subscriptions s SET expires_at = n.e,"
        " status = CASE WHEN s.status = 3 AND n.e > now() THEN 1 ELSE s.status END, updated_at = now()"
        " FROM (SELECT CASE WHEN $2::bigint IS NOT NULL THEN to_timestamp($2::bigint)"
        " ELSE ((greatest(expires_at, now()) AT TIME ZONE 'UTC') + make_interval(years => $3::integer,"
        " months => $4::integer, days => $5::integer, hours => $6::integer)) AT TIME ZONE 'UTC' END AS e"
        " FROM subscriptions WHERE id = $1) n"
        " WHERE s.id = $1 RETURNING extract(epoch FROM s.expires_at)::bigint";
    const znp_subscription_extend_t *body = &req->body;
    char id[24], expires[24], years[24], months[24], days[24], hours[24];
    const char *params[6];
    PGresult *res = NULL;
    json_t *diff = NULL;
    int64_t owner, before;
    int others = 0, rc;

    if (body->has.expires_at != ZNP_SET &&
        body->extend_years + body->extend_months + body->extend_days + body->extend_hours == 0)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$", "send expires_at or a positive extension");
    params[0] = int_text(id, sizeof(id), req->id);
    params[1] = body->has.expires_at == ZNP_SET ? int_text(expires, sizeof(expires), body->expires_at) : NULL;
    params[2] = int_text(years, sizeof(years), body->extend_years);
    params[3] = int_text(months, sizeof(months), body->extend_months);
    params[4] = int_text(days, sizeof(days), body->extend_days);
    params[5] = int_text(hours, sizeof(hours), body->extend_hours);

    rc = begin_locked(ctx, req->id, &owner);
    if (rc == 0)
        rc = znp_sql_exec(&res, ctx->db, sql_current, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (params[1] == NULL && znp_sql_bool(res, 0, 0)) {
        rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$",
                           "the subscription never expires; send expires_at to set an expiry");
        goto cleanup;
    }
    before = znp_sql_int64(res, 0, 1);
    PQclear(res);
    rc = znp_sql_exec(&res, ctx->db, sql, 6, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    diff = json_pack("{s:I, s:I}", "expires_at_before", (json_int_t)before, "expires_at",
                     (json_int_t)znp_sql_int64(res, 0, 0));
    if (diff == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    rc = enforce_single_active(ctx, req->id, diff, &others);
    if (rc == 0)
        rc = audit(ctx, "admin.subscription.extend", req->id, diff);
    if (rc == 0)
        rc = load(ctx, req->id, &resp->subscription);

cleanup:
    json_decref(diff);
    PQclear(res);
    return finish_changed(ctx, rc, req->id, others);
}

int znp_op_reset_admin_subscription_token(znp_ctx_t *ctx, const znp_reset_admin_subscription_token_request_t *req,
                                          znp_reset_admin_subscription_token_response_t *resp)
{
    static const char sql[] = "UPDATE subscriptions SET token = $2, updated_at = now() WHERE id = $1";
    char id[24], token[TOKEN_CHARS + 1];
    const char *params[2] = {int_text(id, sizeof(id), req->id), token};
    int64_t owner;
    int rc = new_token(token);

    if (rc != 0)
        return rc;
    rc = begin_locked(ctx, req->id, &owner);
    if (rc == 0)
        rc = znp_sql_exec(NULL, ctx->db, sql, 2, params, ctx->request_id);
    if (rc == 0)
        rc = audit(ctx, "admin.subscription.token_reset", req->id, NULL);
    if (rc == 0)
        rc = load(ctx, req->id, &resp->subscription);
    /* the old token must stop working on this instance before the response is sent */
    return finish_changed(ctx, rc, req->id, 0);
}

/* ---- the signed-in user's side ---- */

/* ORDER BY text of each sort key. The codec already limits `sort` and `direction` to their enums. */
static const znp_sql_order_t USER_ORDERS[] = {
    {"updated_at", "s.updated_at ASC NULLS LAST, s.id ASC", "s.updated_at DESC NULLS LAST, s.id DESC"},
    {"created_at", "s.created_at ASC NULLS LAST, s.id ASC", "s.created_at DESC NULLS LAST, s.id DESC"},
    {"name", "lower(s.name) ASC NULLS LAST, s.id ASC", "lower(s.name) DESC NULLS LAST, s.id DESC"},
    {"plan_name", "lower(s.plan_name) ASC NULLS LAST, s.id ASC", "lower(s.plan_name) DESC NULLS LAST, s.id DESC"},
    {"status", "s.status ASC NULLS LAST, s.id ASC", "s.status DESC NULLS LAST, s.id DESC"},
    {"expires_at", "s.expires_at ASC NULLS LAST, s.id ASC", "s.expires_at DESC NULLS LAST, s.id DESC"},
};

#define USER_FILTER                                                                                                    \
    " WHERE s.user_id = $1 AND s.status <> 2"                                                                          \
    " AND ($2::text IS NULL OR strpos(lower(s.name), lower($2)) > 0 OR strpos(lower(s.plan_name), lower($2)) > 0)"    \
    " AND ($3::smallint IS NULL OR s.status = $3::smallint)"

int znp_op_list_user_subscriptions(znp_ctx_t *ctx, const znp_list_user_subscriptions_request_t *req,
                                   znp_list_user_subscriptions_response_t *resp)
{
    char user[24], status[24];
    const char *filter[3];
    znp_sql_list_t list = {
        "SELECT count(*) FROM subscriptions s" USER_FILTER, NULL, filter, 3, req->page, req->per_page};
    znp_user_subscription_t *items = NULL;
    znp_site_snapshot_t site;
    PGresult *res = NULL;
    int rows, rc;

    filter[0] = int_text(user, sizeof(user), ctx->caller.user_id);
    filter[1] = req->has.q == ZNP_SET && req->q[0] != '\0' ? req->q : NULL;
    filter[2] = req->has.status == ZNP_SET && req->status != 0 ? int_text(status, sizeof(status), req->status) : NULL;
    list.page_sql = znp_arena_printf(
        ctx->arena, "SELECT " SUB_COLUMNS USER_FILTER " ORDER BY %s LIMIT $4 OFFSET $5",
        znp_sql_order(USER_ORDERS, sizeof(USER_ORDERS) / sizeof(USER_ORDERS[0]), req->sort, req->direction, 1));
    if (list.page_sql == NULL)
        return ZNP_E_INTERNAL;
    znp_site_cache_get(&site);

    rc = znp_sql_list(&res, &resp->pagination, ctx->db, &list, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rows = PQntuples(res);
    if (rows > 0 && (items = znp_arena_alloc(ctx->arena, (size_t)rows * sizeof(*items))) == NULL)
        rc = ZNP_E_INTERNAL;
    for (int i = 0; i < rows && rc == 0; i++)
        rc = fill_user(ctx, res, i, &site, &items[i]);
    if (rc != 0)
        goto cleanup;
    resp->subscriptions.count = (size_t)rows;
    resp->subscriptions.items = items;

cleanup:
    znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    return rc;
}

int znp_op_reset_user_subscription_token(znp_ctx_t *ctx, const znp_reset_user_subscription_token_request_t *req,
                                         znp_reset_user_subscription_token_response_t *resp)
{
    static const char sql[] = "UPDATE subscriptions SET token = $3, updated_at = now()"
                              " WHERE id = $1 AND user_id = $2 AND status <> 2 RETURNING id";
    static const char sql_load[] = "SELECT " SUB_COLUMNS " WHERE s.id = $1";
    char id[24], user[24], token[TOKEN_CHARS + 1];
    const char *params[3] = {int_text(id, sizeof(id), req->id), int_text(user, sizeof(user), ctx->caller.user_id),
                             token};
    znp_site_snapshot_t site;
    PGresult *res = NULL;
    int rc = new_token(token);

    if (rc != 0)
        return rc;
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, sql, 3, params, ctx->request_id);
    /* another user's subscription reads as missing, so ids reveal nothing */
    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no subscription with this id");
    PQclear(res);
    res = NULL;
    if (rc == 0)
        rc = audit(ctx, "user.subscription.token_reset", req->id, NULL);
    if (rc == 0)
        rc = znp_sql_exec(&res, ctx->db, sql_load, 1, params, ctx->request_id);
    if (rc == 0) {
        znp_site_cache_get(&site);
        rc = fill_user(ctx, res, 0, &site, &resp->subscription);
    }
    PQclear(res);
    return finish_changed(ctx, rc, req->id, 0);
}

int znp_op_switch_user_subscription_template(znp_ctx_t *ctx, const znp_switch_user_subscription_template_request_t *req,
                                             znp_switch_user_subscription_template_response_t *resp)
{
    /* the row lock keeps an admin edit of available_template_ids from passing between check and write */
    static const char sql_lock[] = "SELECT s.template_id, $3::bigint = ANY (s.available_template_ids),"
                                   " EXISTS (SELECT 1 FROM subscription_templates t WHERE t.id = $3::bigint)"
                                   " FROM subscriptions s WHERE s.id = $1 AND s.user_id = $2 AND s.status <> 2"
                                   " FOR UPDATE";
    static const char sql[] = "UPDATE subscriptions SET template_id = $3, last_refreshed_at = now(), updated_at = now()"
                              " WHERE id = $1 AND user_id = $2";
    static const char sql_load[] = "SELECT " SUB_COLUMNS " WHERE s.id = $1";
    char id[24], user[24], template_id[24];
    const char *params[3] = {int_text(id, sizeof(id), req->id), int_text(user, sizeof(user), ctx->caller.user_id),
                             int_text(template_id, sizeof(template_id), req->body.template_id)};
    znp_site_snapshot_t site;
    PGresult *res = NULL;
    json_t *diff = NULL;
    int rc = znp_sql_begin(ctx->db, ctx->request_id);

    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, sql_lock, 3, params, ctx->request_id);
    /* another user's subscription reads as missing, so ids reveal nothing */
    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no subscription with this id");
    else if (rc == 0 && !znp_sql_bool(res, 0, 2))
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "template_id", "no template with this id");
    else if (rc == 0 && !znp_sql_bool(res, 0, 1))
        rc = znp_error_set(ctx->err, ZNP_E_TEMPLATE_NOT_ALLOWED, "template_id",
                           "the template is not in the subscription's available_template_ids");
    if (rc == 0) {
        diff = json_pack("{s:I, s:I}", "template_id_before", (json_int_t)znp_sql_int64(res, 0, 0), "template_id",
                         (json_int_t)req->body.template_id);
        rc = diff != NULL ? znp_sql_exec(NULL, ctx->db, sql, 3, params, ctx->request_id) : ZNP_E_INTERNAL;
    }
    PQclear(res);
    res = NULL;
    if (rc == 0)
        rc = audit(ctx, "user.subscription.template_switch", req->id, diff);
    if (rc == 0)
        rc = znp_sql_exec(&res, ctx->db, sql_load, 1, params, ctx->request_id);
    if (rc == 0) {
        znp_site_cache_get(&site);
        rc = fill_user(ctx, res, 0, &site, &resp->subscription);
    }
    PQclear(res);
    json_decref(diff);
    return finish_changed(ctx, rc, req->id, 0);
}

int znp_op_list_admin_subscriptions(znp_ctx_t *ctx, const znp_list_admin_subscriptions_request_t *req,
                                    znp_list_admin_subscriptions_response_t *resp)
{
#define ADMIN_FILTER                                                                                                   \
    " WHERE ($1::text IS NULL OR strpos(lower(s.name), lower($1)) > 0 OR strpos(lower(s.plan_name), lower($1)) > 0)"  \
    " AND ($2::smallint IS NULL OR s.status = $2::smallint) AND ($3::bigint IS NULL OR s.user_id = $3::bigint)"         \
    " AND ($4::bigint IS NULL OR s.plan_id = $4::bigint)"
    char status[24], user[24], plan[24];
    const char *filter[4];
    znp_sql_list_t list = {"SELECT count(*) FROM subscriptions s" ADMIN_FILTER,
                           "SELECT " SUB_COLUMNS ADMIN_FILTER
                           " ORDER BY s.updated_at DESC, s.id DESC LIMIT $5 OFFSET $6",
                           filter,
                           4,
                           req->page,
                           req->per_page};
    znp_admin_subscription_t *items = NULL;
    PGresult *res = NULL;
    int rows, rc;

    filter[0] = req->has.q == ZNP_SET && req->q[0] != '\0' ? req->q : NULL;
    filter[1] = req->has.status == ZNP_SET && req->status != 0 ? int_text(status, sizeof(status), req->status) : NULL;
    filter[2] = req->has.user_id == ZNP_SET ? int_text(user, sizeof(user), req->user_id) : NULL;
    filter[3] = req->has.plan_id == ZNP_SET ? int_text(plan, sizeof(plan), req->plan_id) : NULL;

    rc = znp_sql_list(&res, &resp->pagination, ctx->db, &list, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rows = PQntuples(res);
    if (rows > 0 && (items = znp_arena_alloc(ctx->arena, (size_t)rows * sizeof(*items))) == NULL)
        rc = ZNP_E_INTERNAL;
    for (int i = 0; i < rows && rc == 0; i++)
        rc = fill_admin(ctx, res, i, &items[i]);
    if (rc != 0)
        goto cleanup;
    resp->subscriptions.count = (size_t)rows;
    resp->subscriptions.items = items;

cleanup:
    znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    return rc;
#undef ADMIN_FILTER
}
