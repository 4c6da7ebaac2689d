#include "accounts_tests.h"

#include <string.h>

#include "accounts/accounts.h"
#include "core/error.h"

static znp_config_t policy(uint32_t min_length, uint32_t max_length, uint32_t classes)
{
    znp_config_t config;

    memset(&config, 0, sizeof(config));
    config.password.min_length = min_length;
    config.password.max_length = max_length;
    config.password.require_classes = classes;
    return config;
}

struct policy_case {
    uint32_t min_length, max_length, classes;
    const char *password;
    const char *email;
    const char *detail; /* NULL when the password passes */
};

static const struct policy_case cases[] = {
    {8, 128, 0, "abcdefgh", NULL, NULL},
    {8, 128, 0, "abcdefg", NULL, "must be at least 8 characters"},
    /* length is in code points: 8 CJK characters are 24 bytes and pass, 7 do not */
    {8, 128, 0, "\xe5\xaf\x86\xe7\xa0\x81\xe5\xaf\x86\xe7\xa0\x81\xe5\xaf\x86\xe7\xa0\x81\xe5\xaf\x86\xe7\xa0\x81",
     NULL, NULL},
    {8, 128, 0, "\xe5\xaf\x86\xe7\xa0\x81\xe5\xaf\x86\xe7\xa0\x81\xe5\xaf\x86\xe7\xa0\x81\xe5\xaf\x86", NULL,
     "must be at least 8 characters"},
    {8, 10, 0, "abcdefghijk", NULL, "must be at most 10 characters"},
    {8, 10, 0, "abcdefghij", NULL, NULL},
    {1, 128, 0, "          ", NULL, "must not be blank"},
    {8, 128, 0, "\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80",
     NULL, "must not be blank"}, /* U+3000 ideographic space */
    {8, 128, 2, "abcdefgh", NULL,
     "must mix at least 2 of lower-case letters, upper-case letters, digits and other characters"},
    {8, 128, 2, "abcdefg1", NULL, NULL},
    {8, 128, 3, "abcdefg1", NULL,
     "must mix at least 3 of lower-case letters, upper-case letters, digits and other characters"},
    {8, 128, 3, "abcdefG1", NULL, NULL},
    {8, 128, 4, "abcdefG1", NULL,
     "must mix at least 4 of lower-case letters, upper-case letters, digits and other characters"},
    {8, 128, 4, "abcdeG1!", NULL, NULL},
    {8, 128, 4, "abcdeG1\xc3\xa9", NULL, NULL}, /* a non-ASCII letter counts as "other" */
    {8, 128, 0, "Alice@Example.com", "alice@example.com", "must not be the email address"},
    {8, 128, 0, "alice@example.co", "alice@example.com", NULL},
};

static void accounts__policy_table_matches(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct policy_case *c = &cases[i];
        znp_config_t config = policy(c->min_length, c->max_length, c->classes);
        znp_error_t err = {0};
        int rc = znp_accounts_check_password(&config, c->password, strlen(c->password), c->email, &err);

        if (c->detail == NULL) {
            if (rc != 0)
                fail_msg("case %zu: expected a pass, got %d (%s)", i, rc, err.detail);
            continue;
        }
        if (rc != ZNP_E_VALIDATION_FAILED)
            fail_msg("case %zu: expected validation_failed, got %d", i, rc);
        assert_string_equal(err.path, "password");
        if (strcmp(err.detail, c->detail) != 0)
            fail_msg("case %zu: detail \"%s\", expected \"%s\"", i, err.detail, c->detail);
    }
}

static void accounts__password_classes_counted(void **state)
{
    (void)state;
    assert_int_equal(znp_accounts__password_classes("", 0), 0);
    assert_int_equal(znp_accounts__password_classes("aaaa", 4), 1);
    assert_int_equal(znp_accounts__password_classes("aA", 2), 2);
    assert_int_equal(znp_accounts__password_classes("aA1", 3), 3);
    assert_int_equal(znp_accounts__password_classes("aA1-", 4), 4);
    assert_int_equal(znp_accounts__password_classes("a a", 3), 1); /* white space is no class */
}

int run_policy_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accounts__policy_table_matches),
        cmocka_unit_test(accounts__password_classes_counted),
    };
    return cmocka_run_group_tests_name("policy", tests, NULL, NULL);
}
