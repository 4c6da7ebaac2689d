#include "accounts_tests.h"

#include <string.h>

#include "accounts/codes.h"
#include "core/error.h"

static const char KEY[] = "unit-test-refresh-secret-0123456789abcdef";

static void accounts__code_generate_six_digits(void **state)
{
    char code[ZNP_CODE_SIZE];
    int seen[10] = {0};

    (void)state;
    for (int i = 0; i < 200; i++) {
        assert_int_equal(znp_codes__generate(code), 0);
        assert_int_equal(strlen(code), ZNP_CODE_DIGITS);
        assert_true(znp_codes__well_formed(code));
        seen[code[0] - '0'] = 1;
    }
    /* 200 draws leave a digit out of the first place with odds below 10^-8 */
    for (int d = 0; d < 10; d++)
        assert_true(seen[d]);
}

static void accounts__code_well_formed_table_matches(void **state)
{
    static const struct {
        const char *code;
        int ok;
    } cases[] = {
        {"123456", 1}, {"000000", 1}, {"12345", 0},        {"1234567", 0}, {"12345a", 0},
        {" 12345", 0}, {"", 0},       {"１２３４５６", 0}, {"12 456", 0},
    };

    (void)state;
    assert_false(znp_codes__well_formed(NULL));
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (znp_codes__well_formed(cases[i].code) != cases[i].ok)
            fail_msg("case %zu \"%s\": expected %d", i, cases[i].code, cases[i].ok);
    }
}

static void accounts__code_hash_depends_on_every_input(void **state)
{
    char base[65], other[65];

    (void)state;
    assert_int_equal(znp_codes__hash(base, KEY, strlen(KEY), ZNP_CODE_VERIFY, "a@example.com", "123456"), 0);
    assert_int_equal(strlen(base), 64);
    assert_true(strspn(base, "0123456789abcdef") == 64);
    assert_null(strstr(base, "123456")); /* the code itself never shows */

    /* the same input gives the same hash */
    assert_int_equal(znp_codes__hash(other, KEY, strlen(KEY), ZNP_CODE_VERIFY, "a@example.com", "123456"), 0);
    assert_string_equal(base, other);
    assert_true(znp_codes__equal(base, other));

    /* and each input changes it */
    assert_int_equal(znp_codes__hash(other, KEY, strlen(KEY), ZNP_CODE_VERIFY, "a@example.com", "123457"), 0);
    assert_false(znp_codes__equal(base, other));
    assert_int_equal(znp_codes__hash(other, KEY, strlen(KEY), ZNP_CODE_RESET, "a@example.com", "123456"), 0);
    assert_false(znp_codes__equal(base, other));
    assert_int_equal(znp_codes__hash(other, KEY, strlen(KEY), ZNP_CODE_VERIFY, "b@example.com", "123456"), 0);
    assert_false(znp_codes__equal(base, other));
    assert_int_equal(znp_codes__hash(other, "another-key", 11, ZNP_CODE_VERIFY, "a@example.com", "123456"), 0);
    assert_false(znp_codes__equal(base, other));
    /* the separators keep "a@x" + "1..." apart from "a@x1" + "..." */
    assert_int_equal(znp_codes__hash(other, KEY, strlen(KEY), ZNP_CODE_VERIFY, "a@example.com1", "23456"), 0);
    assert_false(znp_codes__equal(base, other));
}

static void accounts__code_hash_without_key_fails(void **state)
{
    char out[65];

    (void)state;
    assert_int_equal(znp_codes__hash(out, NULL, 0, ZNP_CODE_VERIFY, "a@example.com", "123456"), ZNP_E_INTERNAL);
    assert_int_equal(znp_codes__hash(out, KEY, 0, ZNP_CODE_VERIFY, "a@example.com", "123456"), ZNP_E_INTERNAL);
}

static void accounts__code_equal_compares_whole_digest(void **state)
{
    (void)state;
    assert_true(znp_codes__equal("abcd", "abcd"));
    assert_false(znp_codes__equal("abcd", "abce"));
    assert_false(znp_codes__equal("abcd", "abc"));
    assert_false(znp_codes__equal("", "a"));
}

static void accounts__purpose_names_match_the_table(void **state)
{
    (void)state;
    assert_string_equal(znp_codes_purpose_name(ZNP_CODE_VERIFY), "verify");
    assert_string_equal(znp_codes_purpose_name(ZNP_CODE_RESET), "reset");
    assert_string_equal(znp_codes_purpose_name(ZNP_CODE_EMAIL_CHANGE), "email_change");
}

int run_codes_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accounts__code_generate_six_digits),
        cmocka_unit_test(accounts__code_well_formed_table_matches),
        cmocka_unit_test(accounts__code_hash_depends_on_every_input),
        cmocka_unit_test(accounts__code_hash_without_key_fails),
        cmocka_unit_test(accounts__code_equal_compares_whole_digest),
        cmocka_unit_test(accounts__purpose_names_match_the_table),
    };
    return cmocka_run_group_tests_name("codes", tests, NULL, NULL);
}
