/*
 * GET /api/v1/user/subscriptions/{id}/traffic: a user's traffic by day and
 * protocol. Days are calendar days in the panel time zone (panel.time_zone),
 * the same zone the ingest files each record under, so a day's total never
 * depends on the caller's own zone.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "auth/sql.h"
#include "core/log.h"
#include "errors.gen.h"
#include "operations.gen.h"
#include "traffic/internal.h"

/* the default range is the 30 days up to `to` (to - 29 .. to) */
#define RANGE_MAX_DAYS 366

static int is_leap(int year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

/* Whether `text` is a real calendar date YYYY-MM-DD (the spec pattern has checked the shape). */
static int valid_date(const char *text)
{
    static const int month_days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int year, month, day;

    if (text == NULL || strlen(text) != 10 || sscanf(text, "%4d-%2d-%2d", &year, &month, &day) != 3)
        return 0;
    if (year < 1 || month < 1 || month > 12 || day < 1)
        return 0;
    return day <= month_days[month - 1] + (month == 2 && is_leap(year));
}

int znp_op_get_user_subscription_traffic(znp_ctx_t *ctx, const znp_get_user_subscription_traffic_request_t *req,
                                         znp_get_user_subscription_traffic_response_t *resp)
{
    const char *from = req->has.from == ZNP_SET ? req->from : NULL;
    const char *to = req->has.to == ZNP_SET ? req->to : NULL;
    const char *zone = traffic__time_zone(ctx->config);
    char id_text[24], user_text[24];
    znp_user_traffic_day_t *items = NULL;
    PGresult *res = NULL;
    int64_t span;
    int rc;

    /* check input */
    if (from != NULL && !valid_date(from))
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "from", "is not a calendar date");
    if (to != NULL && !valid_date(to))
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "to", "is not a calendar date");
    snprintf(id_text, sizeof id_text, "%" PRId64, req->id);
    snprintf(user_text, sizeof user_text, "%" PRId64, ctx->caller.user_id);

    /* load the subscription and settle the range */
    {
        const char *params[5] = {id_text, user_text, from, to, zone};

        rc = znp_sql_exec(&res, ctx->db,
                          "SELECT to_char(coalesce($3::date, r.t - 29), 'YYYY-MM-DD'), to_char(r.t, 'YYYY-MM-DD'),"
                          " r.t - coalesce($3::date, r.t - 29)"
                          " FROM subscriptions s,"
                          " (SELECT coalesce($4::date, (now() AT TIME ZONE $5)::date) AS t) r"
                          " WHERE s.id = $1 AND s.user_id = $2 AND s.status <> 2",
                          5, params, ctx->request_id);
    }
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "subscription %" PRId64 " not found", req->id);
        goto cleanup;
    }
    resp->from = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, 0));
    resp->to = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, 1));
    span = znp_sql_int64(res, 0, 2);
    PQclear(res);
    res = NULL;
    if (resp->from == NULL || resp->to == NULL) {
        rc = znp_error_set(ctx->err, ZNP_E_INTERNAL, NULL, "out of memory");
        goto cleanup;
    }
    if (span < 0) {
        rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "from", "must not be after to (%s)", resp->to);
        goto cleanup;
    }
    if (span >= RANGE_MAX_DAYS) {
        rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "from", "the range may span at most %d days",
                           RANGE_MAX_DAYS);
        goto cleanup;
    }

    /* load the days */
    {
        const char *params[3] = {id_text, resp->from, resp->to};

        rc = znp_sql_exec(&res, ctx->db,
                          "SELECT to_char(day, 'YYYY-MM-DD'), protocol, raw_bytes, charged_bytes FROM traffic_daily"
                          " WHERE subscription_id = $1 AND day BETWEEN $2::date AND $3::date ORDER BY day, protocol",
                          3, params, ctx->request_id);
    }
    if (rc != 0)
        goto cleanup;

    /* build response */
    items = znp_arena_alloc(ctx->arena, (size_t)(PQntuples(res) > 0 ? PQntuples(res) : 1) * sizeof(*items));
    if (items == NULL) {
        rc = znp_error_set(ctx->err, ZNP_E_INTERNAL, NULL, "out of memory");
        goto cleanup;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        znp_user_traffic_day_t *item = &items[row];

        memset(item, 0, sizeof(*item));
        item->day = znp_arena_strdup(ctx->arena, PQgetvalue(res, row, 0));
        item->protocol = znp_arena_strdup(ctx->arena, PQgetvalue(res, row, 1));
        if (item->day == NULL || item->protocol == NULL) {
            rc = znp_error_set(ctx->err, ZNP_E_INTERNAL, NULL, "out of memory");
            goto cleanup;
        }
        item->raw_bytes = znp_sql_int64(res, row, 2);
        item->charged_bytes = znp_sql_int64(res, row, 3);
        resp->total_raw_bytes = traffic__saturating_add(resp->total_raw_bytes, item->raw_bytes);
        resp->total_charged_bytes = traffic__saturating_add(resp->total_charged_bytes, item->charged_bytes);
    }
    resp->items.items = items;
    resp->items.count = (size_t)PQntuples(res);
    resp->subscription_id = req->id;
    resp->time_zone = (char *)zone;

cleanup:
    PQclear(res);
    return rc;
}
