#include "core_tests.h"

#include <string.h>

#include "core/error.h"

static void error__catalogue_entries_complete(void **state)
{
    (void)state;
    assert_true(znp_error_table_count > 0);
    for (size_t i = 0; i < znp_error_table_count; i++) {
        const znp_error_info_t *e = &znp_error_table[i];

        assert_non_null(e->key);
        assert_true(e->key[0] != '\0');
        assert_non_null(e->message_en);
        assert_true(e->message_en[0] != '\0');
        assert_non_null(e->message_zh);
        assert_true(e->message_zh[0] != '\0');
        assert_true(e->err < 0);
        assert_true(e->code >= 100000 && e->code <= 999999);
        assert_int_equal(e->code / 1000, e->http_status);
        assert_true(e->grpc_status > 0 && e->grpc_status <= 16);
    }
}

static void error__catalogue_keys_and_codes_unique(void **state)
{
    (void)state;
    for (size_t i = 0; i < znp_error_table_count; i++) {
        for (size_t k = i + 1; k < znp_error_table_count; k++) {
            if (strcmp(znp_error_table[i].key, znp_error_table[k].key) == 0)
                fail_msg("duplicate key %s", znp_error_table[i].key);
            if (znp_error_table[i].code == znp_error_table[k].code)
                fail_msg("duplicate code %d (%s, %s)", znp_error_table[i].code, znp_error_table[i].key,
                         znp_error_table[k].key);
            if (znp_error_table[i].err == znp_error_table[k].err)
                fail_msg("duplicate value %d", znp_error_table[i].err);
        }
    }
}

static void error__info_found_by_value(void **state)
{
    (void)state;
    for (size_t i = 0; i < znp_error_table_count; i++)
        assert_ptr_equal(znp_error_info(znp_error_table[i].err), &znp_error_table[i]);
    assert_string_equal(znp_error_info(ZNP_E_VALIDATION_FAILED)->key, "validation_failed");
    assert_int_equal(znp_error_info(ZNP_E_VALIDATION_FAILED)->code, 400002);
    assert_int_equal(znp_error_info(ZNP_E_METHOD_NOT_ALLOWED)->http_status, 405);
}

static void error__unknown_value_internal(void **state)
{
    static const int unknown[] = {0, 1, 42, -100000, -(int)ZNP_ERROR_COUNT - 1, INT32_MIN};

    (void)state;
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        const znp_error_info_t *info = znp_error_info(unknown[i]);
        assert_non_null(info);
        assert_int_equal(info->err, ZNP_E_INTERNAL);
        assert_string_equal(info->key, "internal");
    }
}

static void error__message_localized(void **state)
{
    (void)state;
    assert_string_equal(znp_error_message(ZNP_E_VALIDATION_FAILED, ZNP_LOCALE_EN), "request failed validation");
    assert_string_equal(znp_error_message(ZNP_E_VALIDATION_FAILED, ZNP_LOCALE_ZH_CN), "请求参数校验失败");
    assert_string_equal(znp_error_message(12345, ZNP_LOCALE_EN), "internal server error");
}

static void error__set_records_detail(void **state)
{
    znp_error_t e;
    char long_path[600];

    (void)state;
    memset(&e, 0x5a, sizeof(e));
    assert_int_equal(znp_error_set(&e, ZNP_E_VALIDATION_FAILED, "$.name", "must be at most %d characters", 64),
                     ZNP_E_VALIDATION_FAILED);
    assert_int_equal(e.code, ZNP_E_VALIDATION_FAILED);
    assert_string_equal(e.path, "$.name");
    assert_string_equal(e.detail, "must be at most 64 characters");
    assert_int_equal(e.retry_after, 0);

    znp_error_set(&e, ZNP_E_NOT_FOUND, NULL, NULL);
    assert_int_equal(e.code, ZNP_E_NOT_FOUND);
    assert_string_equal(e.path, "");
    assert_string_equal(e.detail, "");

    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[sizeof(long_path) - 1] = '\0';
    znp_error_set(&e, ZNP_E_VALIDATION_FAILED, long_path, "%s", long_path);
    assert_int_equal(strlen(e.path), ZNP_ERROR_PATH_MAX - 1);
    assert_int_equal(strlen(e.detail), ZNP_ERROR_DETAIL_MAX - 1);

    assert_int_equal(znp_error_set(NULL, ZNP_E_CONFLICT, "x", "y"), ZNP_E_CONFLICT);
    znp_error_clear(&e);
    assert_int_equal(e.code, 0);
    assert_string_equal(e.path, "");
    znp_error_clear(NULL);
}

typedef struct locale_case {
    const char *header;
    znp_locale_t fallback;
    znp_locale_t expected;
} locale_case_t;

static void locale__header_table_matches(void **state)
{
    static const locale_case_t cases[] = {
        {"zh", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"zh-CN", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"zh-cn", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"zh-Hans", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"zh-Hans-CN", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"zh-SG", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"ZH-SG", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"zh-TW", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"zh-Hant", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_ZH_CN},
        {"zh-TW", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_ZH_CN},
        {"en", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_EN},
        {"en-US", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_EN},
        {"en-GB-oxendict", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_EN},
        {"eng", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_ZH_CN},
        {"fr-FR, de", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_ZH_CN},
        {"fr-FR,zh;q=0.8,en;q=0.5", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"en;q=0.5, zh-CN;q=0.9", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"zh-CN;q=0.5, en;q=0.9", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_EN},
        {"zh-CN,zh;q=0.9,en;q=0.8", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"en, zh", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_EN}, /* equal weight: first wins */
        {"zh;q=1.000, en;q=1", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"zh;q=0, en;q=0.1", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_EN}, /* q=0 means not acceptable */
        {"zh;q=0.000", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"zh;q=0.001", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"en;q=0.001, zh;q=0.002", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"zh ; q=0.5", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"zh;Q=0.5", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {" , zh-CN ,, ", ZNP_LOCALE_EN, ZNP_LOCALE_ZH_CN},
        {"*", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_ZH_CN},
        {"*;q=0.9, en;q=0.5", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_ZH_CN},
        {"", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_ZH_CN},
        /* malformed: the fallback */
        {"zh;q=2", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"zh;q=1.5", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"zh;q=0.5555", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"zh;q=", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"zh;q=abc", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"zh;level=1", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"zh;", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"zh CN", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"zh-", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"-zh", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"zh_CN", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"abcdefghi", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"zh-CN;q=0.9, en;q=0.9x", ZNP_LOCALE_EN, ZNP_LOCALE_EN},
        {"\xe4\xb8\xad\xe6\x96\x87", ZNP_LOCALE_ZH_CN, ZNP_LOCALE_ZH_CN},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const locale_case_t *c = &cases[i];
        znp_locale_t got = znp_locale_from_header(c->header, strlen(c->header), c->fallback);
        if (got != c->expected)
            fail_msg("Accept-Language \"%s\" (fallback %d): got %d, expected %d", c->header, c->fallback, got,
                     c->expected);
    }
}

static void locale__length_bounds_respected(void **state)
{
    const char *header = "zh-CN,en";

    (void)state;
    assert_int_equal(znp_locale_from_header(NULL, 10, ZNP_LOCALE_ZH_CN), ZNP_LOCALE_ZH_CN);
    assert_int_equal(znp_locale_from_header(NULL, 0, ZNP_LOCALE_EN), ZNP_LOCALE_EN);
    /* only the first two bytes: "zh" */
    assert_int_equal(znp_locale_from_header(header, 2, ZNP_LOCALE_EN), ZNP_LOCALE_ZH_CN);
    /* only "zh-C": well formed, but no locale znp has */
    assert_int_equal(znp_locale_from_header(header, 4, ZNP_LOCALE_EN), ZNP_LOCALE_EN);
    assert_int_equal(znp_locale_from_header(header + 6, 2, ZNP_LOCALE_ZH_CN), ZNP_LOCALE_EN);
}

int run_error_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(error__catalogue_entries_complete), cmocka_unit_test(error__catalogue_keys_and_codes_unique),
        cmocka_unit_test(error__info_found_by_value),        cmocka_unit_test(error__unknown_value_internal),
        cmocka_unit_test(error__message_localized),          cmocka_unit_test(error__set_records_detail),
        cmocka_unit_test(locale__header_table_matches),      cmocka_unit_test(locale__length_bounds_respected),
    };
    return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
