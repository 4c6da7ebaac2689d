/* CSV cells of the audit export and the User-Agent cleanup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit/internal.h"

static void audit__csv_field_table_matches(void **state)
{
    static const struct {
        const char *value;
        const char *expected;
    } cases[] = {
        {"plain", "plain"},
        {"", ""},
        {"a,b", "\"a,b\""},
        {"say \"hi\"", "\"say \"\"hi\"\"\""},
        {"line\nbreak", "\"line\nbreak\""},
        {"cr\rhere", "\"cr\rhere\""},
        {"=SUM(A1:A2)", "'=SUM(A1:A2)"},
        {"+1", "'+1"},
        {"-2", "'-2"},
        {"@cmd", "'@cmd"},
        {"=a,\"b\"", "\"'=a,\"\"b\"\"\""},
        {"mid=dle", "mid=dle"},
        {"中文", "中文"},
        {"{\"k\":\"v\"}", "\"{\"\"k\"\":\"\"v\"\"}\""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        size_t len = 0, cap = 0;

        assert_int_equal(znp_audit__csv_field(&out, &len, &cap, cases[i].value), 0);
        assert_non_null(out);
        assert_string_equal(out, cases[i].expected);
        assert_int_equal(len, strlen(cases[i].expected));
        free(out);
    }
}

static void audit__csv_row_appends(void **state)
{
    char *out = NULL;
    size_t len = 0, cap = 0;

    (void)state;
    assert_int_equal(znp_audit__csv_field(&out, &len, &cap, "1"), 0);
    assert_int_equal(znp_audit__csv_append(&out, &len, &cap, ",", 1), 0);
    assert_int_equal(znp_audit__csv_field(&out, &len, &cap, "x,y"), 0);
    assert_int_equal(znp_audit__csv_append(&out, &len, &cap, "\r\n", 2), 0);
    assert_string_equal(out, "1,\"x,y\"\r\n");
    free(out);
}

static void audit__csv_field_grows_buffer(void **state)
{
    char *out = NULL, *value = malloc(5001);
    size_t len = 0, cap = 0;

    (void)state;
    assert_non_null(value);
    memset(value, '"', 5000);
    value[5000] = '\0';
    assert_int_equal(znp_audit__csv_field(&out, &len, &cap, value), 0);
    assert_int_equal(len, 10002);
    assert_int_equal(out[0], '"');
    assert_int_equal(out[len - 1], '"');
    free(out);
    free(value);
}

static void audit__user_agent_cleaned(void **state)
{
    char out[ZNP_AUDIT_USER_AGENT_MAX + 1];
    char long_agent[600];

    (void)state;
    znp_audit__clean_user_agent(out, "curl/7.88.1");
    assert_string_equal(out, "curl/7.88.1");
    znp_audit__clean_user_agent(out, "bad\x01\xff\nagent");
    assert_string_equal(out, "bad???agent");
    znp_audit__clean_user_agent(out, NULL);
    assert_string_equal(out, "");
    memset(long_agent, 'a', sizeof(long_agent) - 1);
    long_agent[sizeof(long_agent) - 1] = '\0';
    znp_audit__clean_user_agent(out, long_agent);
    assert_int_equal(strlen(out), ZNP_AUDIT_USER_AGENT_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(audit__csv_field_table_matches),
        cmocka_unit_test(audit__csv_row_appends),
        cmocka_unit_test(audit__csv_field_grows_buffer),
        cmocka_unit_test(audit__user_agent_cleaned),
    };

    return cmocka_run_group_tests_name("audit", tests, NULL, NULL);
}
