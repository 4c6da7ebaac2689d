/*
 * Traffic reset schedules: the calendar arithmetic and due computation of
 * reset.h (pure functions), and the scheduled job that applies them.
 */
#include "subscriptions/reset.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/sql.h"
#include "core/log.h"
#include "errors.gen.h"
#include "subscriptions/subscriptions.h"

#define LOG_TAG "subscriptions"

static int is_leap(int year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int znp_date_days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (month < 1 || month > 12)
        return 0;
    return month == 2 && is_leap(year) ? 29 : days[month - 1];
}

/* Howard Hinnant's days_from_civil: exact for the proleptic Gregorian calendar */
int64_t znp_date_to_days(znp_date_t date)
{
    int64_t y = date.month <= 2 ? date.year - 1 : date.year;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t mp = (date.month + 9) % 12;
    int64_t doy = (153 * mp + 2) / 5 + date.day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}

znp_date_t znp_date_add_months(znp_date_t date, int months)
{
    int64_t index = (int64_t)date.year * 12 + (date.month - 1) + months;
    int64_t year = index >= 0 ? index / 12 : (index - 11) / 12;
    znp_date_t out = {(int)year, (int)(index - year * 12) + 1, date.day};
    int last = znp_date_days_in_month(out.year, out.month);

    if (out.day > last)
        out.day = last;
    return out;
}

int znp_date_parse(const char *text, znp_date_t *out)
{
    int year, month, day, used = 0;

    if (text == NULL || sscanf(text, "%4d-%2d-%2d%n", &year, &month, &day, &used) != 3 || used != 10 ||
        text[used] != '\0')
        return ZNP_E_VALIDATION_FAILED;
    if (month < 1 || month > 12 || day < 1 || day > znp_date_days_in_month(year, month))
        return ZNP_E_VALIDATION_FAILED;
    out->year = year;
    out->month = month;
    out->day = day;
    return 0;
}

int znp_date_compare(znp_date_t a, znp_date_t b)
{
    if (a.year != b.year)
        return a.year < b.year ? -1 : 1;
    if (a.month != b.month)
        return a.month < b.month ? -1 : 1;
    if (a.day != b.day)
        return a.day < b.day ? -1 : 1;
    return 0;
}

int znp_reset_schedule_parse(const char *text, znp_reset_schedule_t *out)
{
    static const struct {
        const char *name;
        znp_reset_schedule_t schedule;
    } names[] = {
        {"none", ZNP_RESET_NONE},
        {"first_of_month", ZNP_RESET_FIRST_OF_MONTH},
        {"monthly_on_purchase_day", ZNP_RESET_MONTHLY_ON_PURCHASE_DAY},
        {"yearly", ZNP_RESET_YEARLY},
    };

    for (size_t i = 0; text != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(text, names[i].name) == 0) {
            *out = names[i].schedule;
            return 0;
        }
    }
    return ZNP_E_VALIDATION_FAILED;
}

/* The grid of reset dates: candidate(k) = base + k * step months, for k >= 1. */
typedef struct grid {
    znp_date_t base;
    int step;
} grid_t;

static int make_grid(znp_reset_schedule_t schedule, znp_date_t anchor, grid_t *out)
{
    out->base = anchor;
    switch (schedule) {
    case ZNP_RESET_FIRST_OF_MONTH:
        out->base.day = 1;
        out->step = 1;
        return 1;
    case ZNP_RESET_MONTHLY_ON_PURCHASE_DAY:
        out->step = 1;
        return 1;
    case ZNP_RESET_YEARLY:
        out->step = 12;
        return 1;
    case ZNP_RESET_NONE:
    default:
        return 0;
    }
}

static znp_date_t candidate(const grid_t *grid, int64_t k)
{
    return znp_date_add_months(grid->base, (int)(k * grid->step));
}

/* The largest k with candidate(k) <= date; may be below 1. */
static int64_t last_index_until(const grid_t *grid, znp_date_t date)
{
    int64_t months = ((int64_t)date.year * 12 + date.month) - ((int64_t)grid->base.year * 12 + grid->base.month);
    int64_t k = months >= 0 ? months / grid->step : -((-months + grid->step - 1) / grid->step);

    while (znp_date_compare(candidate(grid, k), date) > 0)
        k--;
    return k;
}

static int qualifies(znp_date_t date, znp_date_t anchor, const znp_date_t *last)
{
    if (znp_date_compare(date, anchor) <= 0)
        return 0;
    if (last == NULL)
        return 1;
    return znp_date_compare(date, *last) > 0 &&
           znp_date_to_days(date) - znp_date_to_days(*last) >= ZNP_RESET_MIN_GAP_DAYS;
}

int znp_reset_next(znp_reset_schedule_t schedule, znp_date_t anchor, const znp_date_t *last, znp_date_t *out)
{
    znp_date_t lower = anchor;
    grid_t grid;
    int64_t k;

    if (!make_grid(schedule, anchor, &grid))
        return 0;
    if (last != NULL && znp_date_compare(*last, lower) > 0)
        lower = *last;
    k = last_index_until(&grid, lower);
    if (k < 1)
        k = 1;
    /* grid dates are at least 28 days apart, so at most three candidates from the one on or before `lower` */
    while (!qualifies(candidate(&grid, k), anchor, last))
        k++;
    *out = candidate(&grid, k);
    return 1;
}

int znp_reset_due(znp_reset_schedule_t schedule, znp_date_t anchor, const znp_date_t *last, znp_date_t today,
                  znp_date_t *out)
{
    grid_t grid;
    int64_t k;

    if (!make_grid(schedule, anchor, &grid))
        return 0;
    k = last_index_until(&grid, today);
    if (k < 1 || !qualifies(candidate(&grid, k), anchor, last))
        return 0;
    *out = candidate(&grid, k);
    return 1;
}

int64_t znp_subscriptions_reset_clock(void)
{
    const char *path = getenv("ZNP_TEST_CLOCK_FILE");
    char line[32];
    long long value;
    char *end = NULL;
    FILE *file;

    if (path == NULL || path[0] == '\0')
        return (int64_t)time(NULL);
    file = fopen(path, "r");
    if (file == NULL || fgets(line, sizeof(line), file) == NULL) {
        if (file != NULL)
            fclose(file);
        ZNP_WARN(LOG_TAG, NULL, "ZNP_TEST_CLOCK_FILE %s is unreadable; using the system clock", path);
        return (int64_t)time(NULL);
    }
    fclose(file);
    value = strtoll(line, &end, 10);
    if (end == line || value <= 0) {
        ZNP_WARN(LOG_TAG, NULL, "ZNP_TEST_CLOCK_FILE %s holds no Unix time; using the system clock", path);
        return (int64_t)time(NULL);
    }
    return (int64_t)value;
}

/*
 * Candidates: unexpired active or quota-used-up subscriptions whose live plan
 * has a schedule and whose last reset is at least $3 (the minimum gap) days
 * before today, since no reset can be due sooner.
 */
static const char SQL_CANDIDATES[] =
    "SELECT s.id, p.traffic_reset_schedule, to_char((s.created_at AT TIME ZONE $1)::date, 'YYYY-MM-DD'),"
    " to_char(s.traffic_reset_on, 'YYYY-MM-DD'), to_char((to_timestamp($2::bigint) AT TIME ZONE $1)::date, 'YYYY-MM-DD')"
    " FROM subscriptions s JOIN plans p ON p.id = s.plan_id"
    " WHERE p.traffic_reset_schedule <> 'none' AND s.status IN (1, 4)"
    " AND (s.expires_at IS NULL OR s.expires_at > to_timestamp($2::bigint))"
    " AND (s.traffic_reset_on IS NULL"
    "  OR s.traffic_reset_on <= (to_timestamp($2::bigint) AT TIME ZONE $1)::date - $3::integer) ORDER BY s.id";

/* The log row first: its unique key (subscription_id, reset_on) makes a second pass a no-op. */
static const char SQL_RESET[] =
    "WITH o AS (SELECT id, user_id, plan_id, traffic_used_bytes, status FROM subscriptions"
    "  WHERE id = $1 AND status IN (1, 4) FOR UPDATE),"
    " l AS (INSERT INTO traffic_reset_logs (subscription_id, user_id, plan_id, schedule, reset_on,"
    "  used_bytes_before, status_before)"
    "  SELECT id, user_id, plan_id, $2, $3::date, traffic_used_bytes, status FROM o"
    "  ON CONFLICT (subscription_id, reset_on) DO NOTHING RETURNING subscription_id)"
    " UPDATE subscriptions s SET traffic_used_bytes = 0, traffic_reset_on = $3::date, updated_at = now()"
    " FROM l WHERE s.id = l.subscription_id RETURNING s.id";

static const char SQL_NOTIFY[] = "SELECT pg_notify('" ZNP_SUBSCRIPTIONS_CHANNEL "', $1)";

/* Reset row `row` of `res` when due. Adds 1 to *count on a reset. */
static int reset_row(PGconn *db, const PGresult *res, int row, int *count)
{
    znp_reset_schedule_t schedule;
    znp_date_t anchor, last, today, due;
    const char *last_text = PQgetisnull(res, row, 3) ? NULL : PQgetvalue(res, row, 3);
    const char *id = PQgetvalue(res, row, 0);
    char due_text[16];
    const char *params[3] = {id, PQgetvalue(res, row, 1), due_text};
    PGresult *done = NULL;
    int rc;

    if (znp_reset_schedule_parse(PQgetvalue(res, row, 1), &schedule) != 0 ||
        znp_date_parse(PQgetvalue(res, row, 2), &anchor) != 0 ||
        (last_text != NULL && znp_date_parse(last_text, &last) != 0) ||
        znp_date_parse(PQgetvalue(res, row, 4), &today) != 0) {
        ZNP_ERROR(LOG_TAG, NULL, "subscription %s: unreadable reset schedule or dates", id);
        return ZNP_E_INTERNAL;
    }
    if (!znp_reset_due(schedule, anchor, last_text != NULL ? &last : NULL, today, &due))
        return 0;

    snprintf(due_text, sizeof(due_text), "%04d-%02d-%02d", due.year, due.month, due.day);
    rc = znp_sql_exec(&done, db, SQL_RESET, 3, params, NULL);
    if (rc == 0 && PQntuples(done) == 1) {
        rc = znp_sql_exec(NULL, db, SQL_NOTIFY, 1, params, NULL);
        (*count)++;
    }
    PQclear(done);
    return rc;
}

int znp_subscriptions_reset_traffic(PGconn *db, const znp_config_t *config)
{
    char now_text[24], gap_text[16];
    const char *params[3] = {config->panel.time_zone, now_text, gap_text};
    PGresult *res = NULL;
    int rc, count = 0;

    snprintf(now_text, sizeof(now_text), "%" PRId64, znp_subscriptions_reset_clock());
    snprintf(gap_text, sizeof(gap_text), "%d", ZNP_RESET_MIN_GAP_DAYS);
    rc = znp_sql_exec(&res, db, SQL_CANDIDATES, 3, params, NULL);
    for (int row = 0; rc == 0 && row < PQntuples(res); row++)
        rc = reset_row(db, res, row, &count);
    PQclear(res);
    if (rc != 0)
        return rc;
    if (count > 0)
        ZNP_INFO(LOG_TAG, NULL, "subscription.traffic_reset count=%d", count);

    /* quota-used-up subscriptions with room again go back to active under the single-active rule */
    return znp_subscriptions_expire(db, config);
}
