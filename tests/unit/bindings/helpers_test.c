/* The listen rule and the kernel tag list of the bindings module. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <string.h>

#include "bindings/internal.h"

static void bindings__listen_address_table_matches(void **state)
{
    static const struct {
        const char *listen;
        int64_t access_port;
        const char *expected;
    } cases[] = {
        {"", 443, "0.0.0.0:443"},
        {"", 0, ""},
        {"8443", 443, "0.0.0.0:8443"},
        {"127.0.0.1:9000", 443, "127.0.0.1:9000"},
        {"[::]:443", 0, "[::]:443"},
        {NULL, 80, "0.0.0.0:80"},
    };
    char out[64];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(znp_bindings__listen_address(cases[i].listen, cases[i].access_port, out, sizeof(out)), 0);
        assert_string_equal(out, cases[i].expected);
    }
}

static void bindings__listen_address_small_buffer_fails(void **state)
{
    char out[8];

    (void)state;
    assert_int_equal(znp_bindings__listen_address("127.0.0.1:9000", 0, out, sizeof(out)), -1);
}

static void bindings__listen_check_table_matches(void **state)
{
    static const struct {
        const char *listen;
        int expected;
    } cases[] = {
        {"", 0},           {"443", 0},         {"65535", 0},       {"0.0.0.0:443", 0}, {"[::1]:8080", 0},
        {"0", -1},         {"65536", -1},      {"http", -1},       {":443", -1},       {"host:", -1},
        {"host:0", -1},    {"host:99999", -1}, {"a b:80", -1},     {"host:8o", -1},    {"123456", -1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(znp_bindings__listen_check(cases[i].listen), cases[i].expected);
}

static void bindings__kernel_tags_trimmed_deduplicated(void **state)
{
    json_t *in = json_loads("[\" premium \", \"asia\", \"premium\", \"  \", 7, \"\\tasia\\n\", \"hk\"]", 0, NULL);
    json_t *out;

    (void)state;
    assert_non_null(in);
    out = znp_bindings__kernel_tags(in);
    assert_non_null(out);
    assert_int_equal(json_array_size(out), 3);
    assert_string_equal(json_string_value(json_array_get(out, 0)), "premium");
    assert_string_equal(json_string_value(json_array_get(out, 1)), "asia");
    assert_string_equal(json_string_value(json_array_get(out, 2)), "hk");
    json_decref(out);
    json_decref(in);
}

static void bindings__kernel_tags_empty_input_gives_empty(void **state)
{
    json_t *in = json_array(), *out;

    (void)state;
    out = znp_bindings__kernel_tags(in);
    assert_non_null(out);
    assert_int_equal(json_array_size(out), 0);
    json_decref(out);
    json_decref(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bindings__listen_address_table_matches),
        cmocka_unit_test(bindings__listen_address_small_buffer_fails),
        cmocka_unit_test(bindings__listen_check_table_matches),
        cmocka_unit_test(bindings__kernel_tags_trimmed_deduplicated),
        cmocka_unit_test(bindings__kernel_tags_empty_input_gives_empty),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
