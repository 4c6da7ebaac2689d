#include "http_tests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/metrics.h"

static char *render(void)
{
    char *text = NULL;
    size_t len = 0;

    assert_int_equal(znp_metrics_render(&text, &len, NULL), 0);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_true(len > 0 && text[len - 1] == '\n');
    return text;
}

/* The value of the sample line that starts with `series` (name and labels), or -1 when absent. */
static double sample(const char *text, const char *series)
{
    size_t len = strlen(series);

    for (const char *line = text; line != NULL && *line != '\0';
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, series, len) == 0 && line[len] == ' ')
            return strtod(line + len + 1, NULL);
    }
    return -1;
}

static int reset(void **state)
{
    (void)state;
    znp_metrics_init();
    return 0;
}

static void metrics__request_counted_by_labels(void **state)
{
    char *text;

    (void)state;
    znp_metrics_observe_request("/api/v1/ping", "GET", 200, 0.001);
    znp_metrics_observe_request("/api/v1/ping", "GET", 200, 0.001);
    znp_metrics_observe_request("/api/v1/ping", "HEAD", 200, 0.001);
    znp_metrics_observe_request("unmatched", "GET", 404, 0.001);
    text = render();
    assert_true(sample(text, "znp_http_requests_total{route=\"/api/v1/ping\",method=\"GET\",status=\"200\"}") == 2);
    assert_true(sample(text, "znp_http_requests_total{route=\"/api/v1/ping\",method=\"HEAD\",status=\"200\"}") == 1);
    assert_true(sample(text, "znp_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}") == 1);
    assert_non_null(strstr(text, "# TYPE znp_http_requests_total counter\n"));
    free(text);
}

static void metrics__unknown_method_folds_to_other(void **state)
{
    char *text;

    (void)state;
    znp_metrics_observe_request("/x", "BREW", 405, 0.001);
    znp_metrics_observe_request("/x", "get", 405, 0.001);
    text = render();
    assert_true(sample(text, "znp_http_requests_total{route=\"/x\",method=\"OTHER\",status=\"405\"}") == 2);
    free(text);
}

static void metrics__histogram_buckets_cumulative(void **state)
{
    char *text;

    (void)state;
    znp_metrics_observe_request("/h", "GET", 200, 0.0004);
    znp_metrics_observe_request("/h", "GET", 200, 0.003);
    znp_metrics_observe_request("/h", "GET", 200, 20);
    text = render();
    assert_true(sample(text, "znp_http_request_duration_seconds_bucket{route=\"/h\",le=\"0.0005\"}") == 1);
    assert_true(sample(text, "znp_http_request_duration_seconds_bucket{route=\"/h\",le=\"0.0025\"}") == 1);
    assert_true(sample(text, "znp_http_request_duration_seconds_bucket{route=\"/h\",le=\"0.005\"}") == 2);
    assert_true(sample(text, "znp_http_request_duration_seconds_bucket{route=\"/h\",le=\"10\"}") == 2);
    assert_true(sample(text, "znp_http_request_duration_seconds_bucket{route=\"/h\",le=\"+Inf\"}") == 3);
    assert_true(sample(text, "znp_http_request_duration_seconds_count{route=\"/h\"}") == 3);
    double sum = sample(text, "znp_http_request_duration_seconds_sum{route=\"/h\"}");
    assert_true(sum > 20.0033 && sum < 20.0035);
    free(text);
}

static void metrics__label_value_escaped(void **state)
{
    char *text;

    (void)state;
    znp_metrics_observe_request("/a\"b\\c\nd", "GET", 200, 0.001);
    text = render();
    assert_true(sample(text, "znp_http_requests_total{route=\"/a\\\"b\\\\c\\nd\",method=\"GET\",status=\"200\"}") == 1);
    free(text);
}

static void metrics__full_route_table_uses_other(void **state)
{
    /* routes must keep their address and text (the label is remembered by address), as static strings do */
    static char routes[600][8];
    char *text;

    (void)state;
    for (int i = 0; i < 600; i++) {
        snprintf(routes[i], sizeof routes[i], "/r%d", i);
        znp_metrics_observe_request(routes[i], "GET", 200, 0.001);
    }
    /* the second round takes the remembered labels */
    for (int i = 0; i < 600; i++)
        znp_metrics_observe_request(routes[i], "GET", 200, 0.001);
    text = render();
    /* 512 label slots: the rest share "other" */
    assert_true(sample(text, "znp_http_requests_total{route=\"other\",method=\"GET\",status=\"200\"}") ==
                2 * (600 - 512));
    assert_true(sample(text, "znp_http_request_duration_seconds_count{route=\"other\"}") == 2 * (600 - 512));
    assert_true(sample(text, "znp_http_requests_total{route=\"/r0\",method=\"GET\",status=\"200\"}") == 2);
    free(text);
}

/* A new znp_metrics_init drops the remembered labels, because it empties their table. */
static void metrics__init_forgets_remembered_routes(void **state)
{
    static const char route[] = "/remembered";
    char *text;

    (void)state;
    znp_metrics_observe_request(route, "GET", 200, 0.001);
    znp_metrics_init();
    znp_metrics_observe_request(route, "GET", 200, 0.001);
    text = render();
    assert_true(sample(text, "znp_http_requests_total{route=\"/remembered\",method=\"GET\",status=\"200\"}") == 1);
    free(text);
}

static void metrics__grpc_codes_named(void **state)
{
    char *text;

    (void)state;
    znp_metrics_observe_grpc("/grpc.health.v1.Health/Check", 0, 0.001);
    znp_metrics_observe_grpc("/grpc.health.v1.Health/Check", 14, 0.001);
    znp_metrics_observe_grpc("/grpc.health.v1.Health/Check", 99, 0.001);
    text = render();
    assert_true(sample(text, "znp_grpc_requests_total{method=\"/grpc.health.v1.Health/Check\",code=\"OK\"}") == 1);
    assert_true(sample(text, "znp_grpc_requests_total{method=\"/grpc.health.v1.Health/Check\",code=\"UNAVAILABLE\"}") ==
                1);
    assert_true(sample(text, "znp_grpc_requests_total{method=\"/grpc.health.v1.Health/Check\",code=\"UNKNOWN\"}") == 1);
    assert_true(sample(text, "znp_grpc_request_duration_seconds_count{method=\"/grpc.health.v1.Health/Check\"}") == 3);
    free(text);
}

static void metrics__gauges_rendered(void **state)
{
    char *text;

    (void)state;
    znp_metrics_http_in_flight_add(1);
    znp_metrics_http_in_flight_add(1);
    znp_metrics_http_in_flight_add(-1);
    text = render();
    assert_true(sample(text, "znp_http_requests_in_flight") == 1);
    assert_true(sample(text, "znp_db_pool_workers") == 0);
    assert_true(sample(text, "znp_up") == 1);
    assert_true(sample(text, "znp_serving") == 0);
    assert_non_null(strstr(text, "\nznp_build_info{version=\""));
    assert_true(sample(text, "process_start_time_seconds") > 1.6e9);
    free(text);
}

/* Whether `text` has a HELP line for `name` (its first `len` bytes). */
static int has_help(const char *text, const char *name, size_t len)
{
    char help[160];

    snprintf(help, sizeof help, "# HELP %.*s ", (int)len, name);
    return strstr(text, help) != NULL;
}

static void metrics__every_family_has_help_and_type(void **state)
{
    static const char *const suffixes[] = {"_bucket", "_sum", "_count"};
    char *text;

    (void)state;
    znp_metrics_observe_request("/api/v1/ping", "GET", 200, 0.001);
    znp_metrics_observe_grpc("/znp.v1.X/Y", 0, 0.001);
    text = render();
    for (char *line = text; *line != '\0'; line = strchr(line, '\n') + 1) {
        size_t len = strcspn(line, "{ ");
        int found;

        if (line[0] == '#')
            continue;
        found = has_help(text, line, len);
        /* histogram samples belong to the family named without the suffix */
        for (size_t i = 0; !found && i < sizeof suffixes / sizeof suffixes[0]; i++) {
            size_t suffix_len = strlen(suffixes[i]);

            if (len > suffix_len && strncmp(line + len - suffix_len, suffixes[i], suffix_len) == 0)
                found = has_help(text, line, len - suffix_len);
        }
        if (!found)
            fail_msg("no HELP for sample line: %.*s", (int)strcspn(line, "\n"), line);
    }
    free(text);
}

int run_metrics_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(metrics__request_counted_by_labels, reset),
        cmocka_unit_test_setup(metrics__unknown_method_folds_to_other, reset),
        cmocka_unit_test_setup(metrics__histogram_buckets_cumulative, reset),
        cmocka_unit_test_setup(metrics__label_value_escaped, reset),
        cmocka_unit_test_setup(metrics__full_route_table_uses_other, reset),
        cmocka_unit_test_setup(metrics__init_forgets_remembered_routes, reset),
        cmocka_unit_test_setup(metrics__grpc_codes_named, reset),
        cmocka_unit_test_setup(metrics__gauges_rendered, reset),
        cmocka_unit_test_setup(metrics__every_family_has_help_and_type, reset),
    };

    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
