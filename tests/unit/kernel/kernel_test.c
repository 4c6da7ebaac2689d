/* URL building, auth header precedence, health parsing and the poll schedule of the kernel module. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "errors.gen.h"
#include "kernel/internal.h"
#include "kernel/kernel.h"

static void kernel__base_url_table_built(void **state)
{
    static const struct {
        const char *in, *out; /* out NULL: rejected */
    } cases[] = {
        {"http://127.0.0.1:23860", "http://127.0.0.1:23860/v1"},
        {"http://127.0.0.1:23860/", "http://127.0.0.1:23860/v1"},
        {"http://k.example.com/api//", "http://k.example.com/api/v1"},
        {"http://k.example.com/v1", "http://k.example.com/v1"},
        {"http://k.example.com/v1/", "http://k.example.com/v1"},
        {"  https://[2001:db8::1]:8443 ", "https://[2001:db8::1]:8443/v1"},
        {"http://k.example.com/xv1", "http://k.example.com/xv1/v1"},
        {"", NULL},
        {"///", NULL},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        int rc = znp_kernel__base_url(cases[i].in, &out);

        if (cases[i].out == NULL) {
            assert_int_equal(rc, ZNP_E_VALIDATION_FAILED);
            assert_null(out);
        } else {
            assert_int_equal(rc, 0);
            assert_string_equal(out, cases[i].out);
        }
        free(out);
    }
}

static void kernel__auth_header_table_precedence(void **state)
{
    static const struct {
        const char *ak, *sk, *token, *out; /* out NULL: no header */
    } cases[] = {
        {"ak", "sk", "tok", "Authorization: Basic YWs6c2s="},
        {"ak", "sk", NULL, "Authorization: Basic YWs6c2s="},
        {"ak", "", "tok", "Authorization: Bearer tok"},
        {"", "sk", "tok", "Authorization: Bearer tok"},
        {NULL, NULL, "tok", "Authorization: Bearer tok"},
        {NULL, NULL, "Bearer abc", "Authorization: Bearer abc"},
        {NULL, NULL, "bearer abc", "Authorization: bearer abc"},
        {NULL, NULL, "Basic YWs6c2s=", "Authorization: Basic YWs6c2s="},
        {NULL, NULL, "  tok  ", "Authorization: Bearer tok"},
        {NULL, NULL, "   ", NULL},
        {"ak", NULL, NULL, NULL},
        {NULL, NULL, NULL, NULL},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = (char *)"unchanged";

        assert_int_equal(znp_kernel__auth_header(cases[i].ak, cases[i].sk, cases[i].token, &out), 0);
        if (cases[i].out == NULL)
            assert_null(out);
        else
            assert_string_equal(out, cases[i].out);
        free(out);
    }
}

static void kernel__target_init_timeout_defaulted(void **state)
{
    znp_kernel_target_t t;
    (void)state;

    assert_int_equal(znp_kernel_target_init(&t, 7, "http://k/", NULL, NULL, NULL, 0), 0);
    assert_int_equal(t.node_id, 7);
    assert_int_equal(t.timeout_ms, 5000);
    assert_string_equal(t.base_url, "http://k/v1");
    assert_null(t.auth_header);
    znp_kernel_target_clear(&t);
    assert_int_equal(znp_kernel_target_init(&t, 7, "http://k", "a", "b", NULL, 3), 0);
    assert_int_equal(t.timeout_ms, 3000);
    assert_string_equal(t.auth_header, "Authorization: Basic YTpi");
    znp_kernel_target_clear(&t);
    assert_null(t.base_url);
    znp_kernel_target_clear(NULL);
    assert_int_equal(znp_kernel_target_init(&t, 7, "", NULL, NULL, NULL, 0), ZNP_E_VALIDATION_FAILED);
}

static void kernel__health_table_parsed(void **state)
{
    static const struct {
        const char *json;
        int health;
    } cases[] = {
        {"\"healthy\"", 1},
        {"\"Healthy\"", 1},
        {"\"DEGRADED\"", 2},
        {"\"unhealthy\"", 3},
        {"\"offline\"", 4},
        {"\"starting\"", 0},
        {"{\"Degraded\": {\"consecutive_failures\": 2}}", 2},
        {"{\"Unhealthy\": {}}", 3},
        {"{\"Healthy\": null}", 1},
        {"{\"Degraded\": {}, \"Unhealthy\": {}}", 0},
        {"{}", 0},
        {"3", 0},
        {"null", 0},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *value = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);

        assert_non_null(value);
        assert_int_equal(znp_kernel_health_of(value), cases[i].health);
        json_decref(value);
    }
    assert_int_equal(znp_kernel_health_of(NULL), 0);
}

static const znp_kernel_poll_settings_t defaults = {
    .interval_s = 30, .backoff_enabled = 1, .max_interval_s = 300, .multiplier = 2, .jitter = 0.2, .probe_max_s = 0};

#define MID 0x80000000u /* random value without jitter (within rounding) */

static void kernel__backoff_table_computed(void **state)
{
    znp_kernel_poll_settings_t off = defaults, no_jitter = defaults, small_max = defaults, zero_max = defaults;
    static const struct {
        uint32_t failures;
        int64_t ms;
    } grows[] = {{1, 60000}, {2, 120000}, {3, 240000}, {4, 300000}, {5, 300000}, {1000, 300000}, {UINT32_MAX, 300000}};
    (void)state;

    no_jitter.jitter = 0;
    for (size_t i = 0; i < sizeof(grows) / sizeof(grows[0]); i++)
        assert_int_equal(znp_kernel_backoff_ms(&no_jitter, grows[i].failures, 12345), grows[i].ms);

    off.backoff_enabled = 0;
    assert_int_equal(znp_kernel_backoff_ms(&off, 5, 0), 30000);
    small_max.max_interval_s = 10; /* below the interval: the interval caps */
    assert_int_equal(znp_kernel_backoff_ms(&small_max, 3, MID), 30000);
    zero_max.max_interval_s = 0;
    assert_int_equal(znp_kernel_backoff_ms(&zero_max, 3, MID), 30000);

    /* jitter: +/- 20 % around the capped delay, never below the interval */
    assert_int_equal(znp_kernel_backoff_ms(&defaults, 1, 0), 48000);
    assert_int_equal(znp_kernel_backoff_ms(&defaults, 1, UINT32_MAX), 72000);
    assert_int_equal(znp_kernel_backoff_ms(&defaults, 4, UINT32_MAX), 360000);
    assert_int_equal(znp_kernel_backoff_ms(&small_max, 1, 0), 30000);
    for (uint32_t r = 0; r < 4000000000u; r += 97654321u) {
        int64_t ms = znp_kernel_backoff_ms(&defaults, 2, r);

        assert_true(ms >= 96000 && ms <= 144000);
    }
}

static void kernel__probe_table_computed(void **state)
{
    znp_kernel_poll_settings_t capped = defaults;
    (void)state;

    assert_int_equal(znp_kernel_probe_ms(&defaults, 0), 1000);
    assert_int_equal(znp_kernel_probe_ms(&defaults, 1), 3000);
    assert_int_equal(znp_kernel_probe_ms(&defaults, 2), 5000);
    assert_int_equal(znp_kernel_probe_ms(&defaults, 3), 7000);
    assert_int_equal(znp_kernel_probe_ms(&defaults, UINT32_MAX), (1 + 2 * (int64_t)UINT32_MAX) * 1000);
    capped.probe_max_s = 4;
    assert_int_equal(znp_kernel_probe_ms(&capped, 1), 3000);
    assert_int_equal(znp_kernel_probe_ms(&capped, 2), 4000);
    assert_int_equal(znp_kernel_probe_ms(&capped, 100), 4000);
}

/* A fake clock: each step is one poll outcome at `now`, with the due time the schedule must give. */
static void kernel__poll_schedule_fake_clock_followed(void **state)
{
    znp_kernel_poll_settings_t s = defaults;
    znp_kernel_poll_state_t st = {0};
    const int64_t day_end = 86400000; /* day 0 ends at this Unix ms */
    static const struct {
        int ok, probing;
        int64_t now, day, due;
        uint32_t failures, probes;
    } steps[] = {
        {1, 1, 0, 0, 30000, 0, 0},           /* online: one interval */
        {0, 1, 30000, 0, 31000, 1, 1},       /* first failure: probe after 1 s (backoff 60 s) */
        {0, 1, 31000, 0, 34000, 2, 2},       /* 3 s */
        {0, 1, 34000, 0, 39000, 3, 3},       /* 5 s */
        {0, 0, 39000, 0, 339000, 4, 3},      /* maintenance (no probing): backoff 480 s capped at 300 s */
        {0, 1, 86399000, 0, 86400000, 5, 4}, /* 7 s probe cut at midnight */
        {0, 1, 86400000, 1, 86401000, 6, 1}, /* new day: the probe counter restarts */
        {1, 1, 86401000, 1, 86431000, 0, 0}, /* back online: everything resets */
    };
    (void)state;

    s.jitter = 0;
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        int64_t end = steps[i].day == 0 ? day_end : 2 * day_end;

        znp_kernel_poll_advance(&st, &s, steps[i].ok, steps[i].probing, steps[i].now, steps[i].day, end, MID);
        assert_int_equal(st.next_due_ms, steps[i].due);
        assert_int_equal(st.failures, steps[i].failures);
        assert_int_equal(st.probe_attempts, steps[i].probes);
    }
}

static void kernel__poll_schedule_probe_cap_followed(void **state)
{
    znp_kernel_poll_settings_t s = defaults;
    znp_kernel_poll_state_t st = {0};
    int64_t now = 0;
    static const int64_t waits[] = {1000, 3000, 5000, 5000, 5000};
    (void)state;

    s.probe_max_s = 5;
    s.jitter = 0;
    for (size_t i = 0; i < sizeof(waits) / sizeof(waits[0]); i++) {
        znp_kernel_poll_advance(&st, &s, 0, 1, now, 0, 86400000, MID);
        assert_int_equal(st.next_due_ms - now, waits[i]);
        now = st.next_due_ms;
    }
    /* backoff disabled and a long probe: the interval wins */
    s.backoff_enabled = 0;
    s.interval_s = 2;
    s.probe_max_s = 0;
    st.probe_attempts = 10;
    znp_kernel_poll_advance(&st, &s, 0, 1, now, 0, 86400000, MID);
    assert_int_equal(st.next_due_ms - now, 2000);
}

static void kernel__mask_and_fingerprint_table_logged(void **state)
{
    static const struct {
        const char *key, *masked;
    } masks[] = {{"AKIDEXAMPLE", "AK***LE"}, {"abcde", "ab***de"}, {"abcd", "****"}, {"", "****"}, {NULL, "****"}};
    char out[16], fp[9];
    (void)state;

    for (size_t i = 0; i < sizeof(masks) / sizeof(masks[0]); i++) {
        znp_kernel_mask_key(masks[i].key, out, sizeof(out));
        assert_string_equal(out, masks[i].masked);
    }
    znp_kernel_fingerprint("secret", fp); /* sha256("secret") = 2bb80d53... */
    assert_string_equal(fp, "2bb80d53");
    znp_kernel_fingerprint("", fp);
    assert_string_equal(fp, "");
    znp_kernel_fingerprint(NULL, fp);
    assert_string_equal(fp, "");
}

static void kernel__one_line_table_cleaned(void **state)
{
    static const struct {
        const char *in, *out;
        size_t size;
    } cases[] = {
        {"plain", "plain", 64},
        {"two\nlines\r\tend", "two lines  end", 64},
        {"bell\x07", "bell?", 64},
        {"bad \xff utf8", "bad ? utf8", 64},
        {"\xe6\x9c\x8d\xe5\x8a\xa1", "\xe6\x9c\x8d\xe5\x8a\xa1", 64},
        {"cut \xe6\x9c", "cut ??", 64},
        {"abcdef", "abc", 4},
    };
    char out[64];
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_kernel__one_line(out, cases[i].size, cases[i].in, strlen(cases[i].in));
        assert_string_equal(out, cases[i].out);
    }
}

static void kernel__call_unreachable_failed(void **state)
{
    znp_kernel_target_t t;
    json_t *out = (json_t *)1;
    char error[256];
    (void)state;

    /* port 1 on loopback refuses at once: the retries end quickly with an error */
    assert_int_equal(znp_kernel_target_init(&t, 1, "http://127.0.0.1:1", NULL, NULL, NULL, 1), 0);
    assert_int_equal(znp_kernel_call(&t, "GET", "/status", NULL, &out, error, sizeof(error)), ZNP_E_KERNEL_UNAVAILABLE);
    assert_null(out);
    assert_true(strncmp(error, "kernel control: ", 16) == 0);
    znp_kernel_target_clear(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(kernel__base_url_table_built),
        cmocka_unit_test(kernel__auth_header_table_precedence),
        cmocka_unit_test(kernel__target_init_timeout_defaulted),
        cmocka_unit_test(kernel__health_table_parsed),
        cmocka_unit_test(kernel__backoff_table_computed),
        cmocka_unit_test(kernel__probe_table_computed),
        cmocka_unit_test(kernel__poll_schedule_fake_clock_followed),
        cmocka_unit_test(kernel__poll_schedule_probe_cap_followed),
        cmocka_unit_test(kernel__mask_and_fingerprint_table_logged),
        cmocka_unit_test(kernel__one_line_table_cleaned),
        cmocka_unit_test(kernel__call_unreachable_failed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
