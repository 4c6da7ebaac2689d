/*
 * Traffic reset schedules and the calendar arithmetic they share with
 * expiry. Dates are proleptic Gregorian civil dates in the panel time zone
 * (panel.time_zone); PostgreSQL converts timestamps to them with
 * (ts AT TIME ZONE tz)::date, so the functions here need no time zone.
 *
 * A month step clamps the day to the last day of the target month, the rule
 * PostgreSQL applies to date + interval, which the expiry extension in
 * subscriptions.c uses: 2025-01-31 + 1 month = 2025-02-28 and
 * 2024-01-31 + 1 month = 2024-02-29.
 */
#ifndef ZNP_SUBSCRIPTIONS_RESET_H
#define ZNP_SUBSCRIPTIONS_RESET_H

#include <libpq-fe.h>
#include <stdint.h>

#include "config/config.h"

#define ZNP_SUBSCRIPTIONS_RESET_JOB "subscriptions.traffic_reset"
/* No reset follows the previous one by fewer days than this. */
#define ZNP_RESET_MIN_GAP_DAYS 28

typedef struct znp_date {
    int year;
    int month; /* 1..12 */
    int day;   /* 1..31 */
} znp_date_t;

typedef enum znp_reset_schedule {
    ZNP_RESET_NONE = 0,
    ZNP_RESET_FIRST_OF_MONTH,          /* the 1st of every month after the purchase month */
    ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, /* the purchase day every month, clamped to the month's last day */
    ZNP_RESET_YEARLY,                  /* the purchase date every year, 29 Feb clamped to 28 Feb */
} znp_reset_schedule_t;

/* Days in `month` of `year`. */
int znp_date_days_in_month(int year, int month);
/* Days since 1970-01-01 (negative before). */
int64_t znp_date_to_days(znp_date_t date);
/* `date` plus `months` (may be negative), the day clamped to the target month's last day. */
znp_date_t znp_date_add_months(znp_date_t date, int months);
/* Parse "YYYY-MM-DD" (a valid date). Returns 0, or ZNP_E_VALIDATION_FAILED. */
int znp_date_parse(const char *text, znp_date_t *out);
/* Compare: negative, 0 or positive as a is before, equal to or after b. */
int znp_date_compare(znp_date_t a, znp_date_t b);

/* Parse a plans.traffic_reset_schedule value. Returns 0, or ZNP_E_VALIDATION_FAILED. */
int znp_reset_schedule_parse(const char *text, znp_reset_schedule_t *out);

/*
 * The reset dates of `schedule` are computed from the anchor (the purchase
 * date) each time, never chained from the previous reset, so a day 31 that
 * was clamped to 30 or 28 returns to 31 when the month has one. A candidate
 * date qualifies when it is after the anchor and after `last` (the date of
 * the last reset, NULL when none happened), and at least
 * ZNP_RESET_MIN_GAP_DAYS after `last`.
 *
 * znp_reset_next: the first qualifying date (the next reset). Returns 1 and
 * *out, or 0 for ZNP_RESET_NONE.
 *
 * znp_reset_due: whether a reset is due on `today`: the latest reset date on
 * or before `today` qualifies. Returns 1 and *out (that date, recorded as the
 * last reset), or 0. A job that missed several periods resets once.
 */
int znp_reset_next(znp_reset_schedule_t schedule, znp_date_t anchor, const znp_date_t *last, znp_date_t *out);
int znp_reset_due(znp_reset_schedule_t schedule, znp_date_t anchor, const znp_date_t *last, znp_date_t today,
                  znp_date_t *out);

/*
 * Clock of the scheduled reset job, Unix seconds. The system clock, unless
 * the environment variable ZNP_TEST_CLOCK_FILE names a file: then its first
 * line (Unix seconds) is read on every call. For integration tests only.
 */
int64_t znp_subscriptions_reset_clock(void);

/*
 * The scheduled job subscriptions.traffic_reset, inside the scheduler's
 * transaction on `db`: every active or quota-used-up, unexpired subscription
 * whose plan has a reset schedule and a reset due today (panel time zone,
 * znp_subscriptions_reset_clock) gets traffic_used_bytes = 0, a
 * traffic_reset_logs row and a NOTIFY on znp_subscriptions. Then the rules of
 * znp_subscriptions_expire run, which move quota-used-up subscriptions with
 * room again back to active.
 */
int znp_subscriptions_reset_traffic(PGconn *db, const znp_config_t *config);

#endif
