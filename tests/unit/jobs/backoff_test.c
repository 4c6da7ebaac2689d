/* The retry delay of failed jobs, and the registration and lock keys of scheduled jobs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "jobs/jobs.h"

/* random % 401 picks the jitter: 0 -> x0.8, 200 -> x1.0, 400 -> x1.2 */
static void jobs__backoff_table_matches(void **state)
{
    static const struct {
        unsigned attempts;
        uint32_t random;
        int64_t expected_ms;
    } cases[] = {
        {1, 200, 2000},       {2, 200, 4000},          {3, 200, 8000},         {1, 0, 1600},
        {1, 400, 2400},       {10, 200, 1024000},      {11, 200, 2048000},     {12, 200, 3600000},
        {12, 400, 4320000},   {40, 0, 2880000},        {1000, 200, 3600000},   {0, 200, 1000},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(znp_jobs_backoff_ms(cases[i].attempts, cases[i].random), cases[i].expected_ms);
}

static void jobs__backoff_jitter_stays_in_range(void **state)
{
    (void)state;
    for (uint32_t r = 0; r < 5000; r += 7) {
        int64_t delay = znp_jobs_backoff_ms(5, r * 2654435761u);

        assert_true(delay >= 32000 * 8 / 10);
        assert_true(delay <= 32000 * 12 / 10);
    }
}

/* the key must never change between releases, or two versions would run one job at once */
static void jobs__schedule_key_is_stable(void **state)
{
    static const struct {
        const char *name;
        int64_t key;
    } cases[] = {
        {"", INT64_C(-3750763034362895579)},
        {"a", INT64_C(-5808556873153909620)},
        {"subscriptions.expire", INT64_C(3586093691172634750)},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(znp_jobs_schedule_key(cases[i].name), cases[i].key);
}

static int noop_schedule(PGconn *db, const znp_config_t *config)
{
    (void)db;
    (void)config;
    return 0;
}

static void jobs__schedule_rejects_bad_registrations(void **state)
{
    (void)state;
    assert_int_equal(znp_jobs_schedule("unit.first", 1, noop_schedule), 0);
    assert_int_not_equal(znp_jobs_schedule("unit.first", 5, noop_schedule), 0);
    assert_int_not_equal(znp_jobs_schedule("", 5, noop_schedule), 0);
    assert_int_not_equal(znp_jobs_schedule("unit.zero", 0, noop_schedule), 0);
    assert_int_not_equal(znp_jobs_schedule("unit.none", 5, NULL), 0);
    assert_int_not_equal(znp_jobs_schedule("unit.long.name.that.does.not.fit.in.sixty.four.bytes.of.storage.x", 5,
                                           noop_schedule),
                         0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(jobs__backoff_table_matches),
        cmocka_unit_test(jobs__backoff_jitter_stays_in_range),
        cmocka_unit_test(jobs__schedule_key_is_stable),
        cmocka_unit_test(jobs__schedule_rejects_bad_registrations),
    };

    return cmocka_run_group_tests_name("jobs", tests, NULL, NULL);
}
