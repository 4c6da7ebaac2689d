/*
 * Calendar arithmetic and traffic reset due dates, with the month-end replay
 * table of purchases on the 29th, 30th and 31st (expected dates written out
 * by hand from a calendar).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "errors.gen.h"
#include "subscriptions/reset.h"

static znp_date_t date_of(const char *text)
{
    znp_date_t out = {0, 0, 0};

    assert_int_equal(znp_date_parse(text, &out), 0);
    return out;
}

static void format_date(char out[11], znp_date_t date)
{
    snprintf(out, 11, "%04d-%02d-%02d", date.year, date.month, date.day);
}

static znp_date_t next_day(znp_date_t date)
{
    date.day++;
    if (date.day > znp_date_days_in_month(date.year, date.month)) {
        date.day = 1;
        date.month++;
        if (date.month > 12) {
            date.month = 1;
            date.year++;
        }
    }
    return date;
}

/* One replay row: purchase date, the plan period in months, the expiry and every reset up to the expiry. */
typedef struct replay {
    const char *purchase;
    int months;
    const char *expiry;
    const char *resets[13];
} replay_t;

static const replay_t REPLAY[] = {
    {"2025-01-29", 1, "2025-02-28", {"2025-02-28"}},
    {"2025-01-29", 3, "2025-04-29", {"2025-02-28", "2025-03-29", "2025-04-29"}},
    {"2025-01-29", 12, "2026-01-29",
     {"2025-02-28", "2025-03-29", "2025-04-29", "2025-05-29", "2025-06-29", "2025-07-29", "2025-08-29", "2025-09-29",
      "2025-10-29", "2025-11-29", "2025-12-29", "2026-01-29"}},
    {"2025-01-30", 1, "2025-02-28", {"2025-02-28"}},
    {"2025-01-30", 3, "2025-04-30", {"2025-02-28", "2025-03-30", "2025-04-30"}},
    {"2025-01-30", 12, "2026-01-30",
     {"2025-02-28", "2025-03-30", "2025-04-30", "2025-05-30", "2025-06-30", "2025-07-30", "2025-08-30", "2025-09-30",
      "2025-10-30", "2025-11-30", "2025-12-30", "2026-01-30"}},
    {"2025-01-31", 1, "2025-02-28", {"2025-02-28"}},
    {"2025-01-31", 3, "2025-04-30", {"2025-02-28", "2025-03-31", "2025-04-30"}},
    {"2025-01-31", 12, "2026-01-31",
     {"2025-02-28", "2025-03-31", "2025-04-30", "2025-05-31", "2025-06-30", "2025-07-31", "2025-08-31", "2025-09-30",
      "2025-10-31", "2025-11-30", "2025-12-31", "2026-01-31"}},
    {"2024-01-31", 1, "2024-02-29", {"2024-02-29"}},
    {"2024-01-31", 3, "2024-04-30", {"2024-02-29", "2024-03-31", "2024-04-30"}},
    {"2024-01-31", 12, "2025-01-31",
     {"2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31", "2024-06-30", "2024-07-31", "2024-08-31", "2024-09-30",
      "2024-10-31", "2024-11-30", "2024-12-31", "2025-01-31"}},
    {"2025-03-31", 1, "2025-04-30", {"2025-04-30"}},
    {"2025-03-31", 3, "2025-06-30", {"2025-04-30", "2025-05-31", "2025-06-30"}},
    {"2025-03-31", 12, "2026-03-31",
     {"2025-04-30", "2025-05-31", "2025-06-30", "2025-07-31", "2025-08-31", "2025-09-30", "2025-10-31", "2025-11-30",
      "2025-12-31", "2026-01-31", "2026-02-28", "2026-03-31"}},
    {"2025-12-31", 1, "2026-01-31", {"2026-01-31"}},
    {"2025-12-31", 3, "2026-03-31", {"2026-01-31", "2026-02-28", "2026-03-31"}},
    {"2025-12-31", 12, "2026-12-31",
     {"2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30", "2026-05-31", "2026-06-30", "2026-07-31", "2026-08-31",
      "2026-09-30", "2026-10-31", "2026-11-30", "2026-12-31"}},
};

static void subscriptions__expiry_clamps_month_end(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(REPLAY) / sizeof(REPLAY[0]); i++) {
        char got[11];

        format_date(got, znp_date_add_months(date_of(REPLAY[i].purchase), REPLAY[i].months));
        assert_string_equal(got, REPLAY[i].expiry);
    }
}

/* Run the job once a day from the day after the purchase through the expiry day, as the scheduler would. */
static void subscriptions__replay_resets_month_end(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(REPLAY) / sizeof(REPLAY[0]); i++) {
        const replay_t *r = &REPLAY[i];
        znp_date_t anchor = date_of(r->purchase), expiry = date_of(r->expiry), last = anchor, due;
        int has_last = 0;
        size_t count = 0;

        for (znp_date_t today = next_day(anchor); znp_date_compare(today, expiry) <= 0; today = next_day(today)) {
            char got[11];

            if (!znp_reset_due(ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, anchor, has_last ? &last : NULL, today, &due))
                continue;
            format_date(got, due);
            assert_non_null(r->resets[count]);
            assert_string_equal(got, r->resets[count]);
            /* the job runs every day, so a due reset is never late */
            assert_int_equal(znp_date_compare(due, today), 0);
            assert_true(znp_date_to_days(due) - znp_date_to_days(last) >= ZNP_RESET_MIN_GAP_DAYS);
            last = due;
            has_last = 1;
            count++;
        }
        assert_int_equal(count, (size_t)r->months);
        assert_null(count < 13 ? r->resets[count] : NULL);
    }
}

static void subscriptions__next_reset_returns_to_31st(void **state)
{
    static const struct {
        znp_reset_schedule_t schedule;
        const char *anchor;
        const char *last; /* NULL: no reset yet */
        const char *next;
    } cases[] = {
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-31", NULL, "2025-02-28"},
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-31", "2025-02-28", "2025-03-31"},
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-31", "2025-03-31", "2025-04-30"},
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-31", "2025-04-30", "2025-05-31"},
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2024-01-31", NULL, "2024-02-29"},
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-30", NULL, "2025-02-28"},
        /* a last reset off the grid (the plan's schedule changed): 8 days is too soon, so the next is a month on */
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-31", "2025-02-20", "2025-03-31"},
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-15", "2025-02-01", "2025-03-15"},
        {ZNP_RESET_FIRST_OF_MONTH, "2025-01-30", NULL, "2025-02-01"},
        {ZNP_RESET_FIRST_OF_MONTH, "2025-01-30", "2025-02-01", "2025-03-01"},
        {ZNP_RESET_FIRST_OF_MONTH, "2025-12-15", NULL, "2026-01-01"},
        {ZNP_RESET_FIRST_OF_MONTH, "2025-01-01", NULL, "2025-02-01"},
        {ZNP_RESET_FIRST_OF_MONTH, "2025-01-01", "2025-01-20", "2025-03-01"},
        {ZNP_RESET_YEARLY, "2024-02-29", NULL, "2025-02-28"},
        {ZNP_RESET_YEARLY, "2024-02-29", "2027-02-28", "2028-02-29"},
        {ZNP_RESET_YEARLY, "2025-01-31", NULL, "2026-01-31"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_date_t last, out;
        char got[11];

        if (cases[i].last != NULL)
            last = date_of(cases[i].last);
        assert_int_equal(znp_reset_next(cases[i].schedule, date_of(cases[i].anchor),
                                        cases[i].last != NULL ? &last : NULL, &out),
                         1);
        format_date(got, out);
        assert_string_equal(got, cases[i].next);
    }
}

static void subscriptions__reset_due_table_matches(void **state)
{
    static const struct {
        znp_reset_schedule_t schedule;
        const char *anchor;
        const char *last;
        const char *today;
        const char *due; /* NULL: nothing due */
    } cases[] = {
        {ZNP_RESET_NONE, "2025-01-31", NULL, "2026-01-01", NULL},
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-31", NULL, "2025-02-27", NULL},
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-31", NULL, "2025-02-28", "2025-02-28"},
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-31", "2025-02-28", "2025-02-28", NULL},
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-31", "2025-02-28", "2025-03-30", NULL},
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-31", "2025-02-28", "2025-03-31", "2025-03-31"},
        /* the job missed three periods: one reset, for the latest date */
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-31", "2025-02-28", "2025-06-05", "2025-05-31"},
        /* never sooner than 28 days after the last reset */
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-31", "2025-02-20", "2025-02-28", NULL},
        {ZNP_RESET_FIRST_OF_MONTH, "2025-01-30", NULL, "2025-01-31", NULL},
        {ZNP_RESET_FIRST_OF_MONTH, "2025-01-30", NULL, "2025-02-01", "2025-02-01"},
        {ZNP_RESET_FIRST_OF_MONTH, "2025-01-30", "2025-02-01", "2025-02-28", NULL},
        {ZNP_RESET_FIRST_OF_MONTH, "2025-01-30", "2025-02-01", "2025-03-01", "2025-03-01"},
        {ZNP_RESET_YEARLY, "2024-02-29", NULL, "2025-02-27", NULL},
        {ZNP_RESET_YEARLY, "2024-02-29", NULL, "2025-02-28", "2025-02-28"},
        {ZNP_RESET_YEARLY, "2024-02-29", "2025-02-28", "2025-12-31", NULL},
        /* a clock before the purchase */
        {ZNP_RESET_MONTHLY_ON_PURCHASE_DAY, "2025-01-31", NULL, "2024-12-01", NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_date_t last, out;
        char got[11];
        int due;

        if (cases[i].last != NULL)
            last = date_of(cases[i].last);
        due = znp_reset_due(cases[i].schedule, date_of(cases[i].anchor), cases[i].last != NULL ? &last : NULL,
                            date_of(cases[i].today), &out);
        assert_int_equal(due, cases[i].due != NULL);
        if (cases[i].due != NULL) {
            format_date(got, out);
            assert_string_equal(got, cases[i].due);
        }
    }
}

static void subscriptions__date_parse_rejects_invalid(void **state)
{
    static const char *const bad[] = {"2025-02-29", "2025-13-01", "2025-00-10", "2025-1-01", "2025-01-01x", "", "abc"};
    znp_date_t out;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(znp_date_parse(bad[i], &out), ZNP_E_VALIDATION_FAILED);
    assert_int_equal(znp_date_parse("2024-02-29", &out), 0);
    assert_int_equal(znp_date_to_days(out), 19782);
    assert_int_equal(znp_date_to_days(date_of("1970-01-01")), 0);
}

static void subscriptions__schedule_parse_table_matches(void **state)
{
    znp_reset_schedule_t out;

    (void)state;
    assert_int_equal(znp_reset_schedule_parse("none", &out), 0);
    assert_int_equal(out, ZNP_RESET_NONE);
    assert_int_equal(znp_reset_schedule_parse("first_of_month", &out), 0);
    assert_int_equal(out, ZNP_RESET_FIRST_OF_MONTH);
    assert_int_equal(znp_reset_schedule_parse("monthly_on_purchase_day", &out), 0);
    assert_int_equal(out, ZNP_RESET_MONTHLY_ON_PURCHASE_DAY);
    assert_int_equal(znp_reset_schedule_parse("yearly", &out), 0);
    assert_int_equal(out, ZNP_RESET_YEARLY);
    assert_int_equal(znp_reset_schedule_parse("weekly", &out), ZNP_E_VALIDATION_FAILED);
    assert_int_equal(znp_reset_schedule_parse(NULL, &out), ZNP_E_VALIDATION_FAILED);
}

static void subscriptions__reset_clock_reads_test_file(void **state)
{
    char path[] = "/tmp/znp-reset-clock-XXXXXX";
    int fd = mkstemp(path);
    FILE *file;
    int64_t before;

    (void)state;
    assert_true(fd >= 0);
    file = fdopen(fd, "w");
    assert_non_null(file);
    fputs("1740700800\n", file);
    fclose(file);
    assert_int_equal(setenv("ZNP_TEST_CLOCK_FILE", path, 1), 0);
    assert_int_equal(znp_subscriptions_reset_clock(), 1740700800);

    /* a file without a Unix time falls back to the system clock */
    file = fopen(path, "w");
    assert_non_null(file);
    fputs("soon\n", file);
    fclose(file);
    before = (int64_t)time(NULL);
    assert_true(znp_subscriptions_reset_clock() >= before);
    unlink(path);
    assert_true(znp_subscriptions_reset_clock() >= before);
    unsetenv("ZNP_TEST_CLOCK_FILE");
    assert_true(znp_subscriptions_reset_clock() >= before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(subscriptions__expiry_clamps_month_end),
        cmocka_unit_test(subscriptions__replay_resets_month_end),
        cmocka_unit_test(subscriptions__next_reset_returns_to_31st),
        cmocka_unit_test(subscriptions__reset_due_table_matches),
        cmocka_unit_test(subscriptions__date_parse_rejects_invalid),
        cmocka_unit_test(subscriptions__schedule_parse_table_matches),
        cmocka_unit_test(subscriptions__reset_clock_reads_test_file),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
