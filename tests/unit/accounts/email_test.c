#include "accounts_tests.h"

#include <string.h>

#include "auth/password.h"
#include "core/error.h"

/* registration, verify, forgot and reset all key accounts by this normalized form */
static void accounts__email_normalization_table_matches(void **state)
{
    static const struct {
        const char *input;
        const char *expected; /* NULL when rejected */
    } cases[] = {
        {"alice@example.com", "alice@example.com"},
        {"ALICE@Example.COM", "alice@example.com"},
        {"  Alice@Example.Com\t\n", "alice@example.com"},
        {"\xe3\x80\x80"
         "bob@example.com"
         "\xc2\xa0",
         "bob@example.com"}, /* U+3000 and U+00A0 trimmed */
        {"no-at-sign", NULL},
        {"@example.com", NULL},
        {"alice@", NULL},
        {"a@b@c", NULL},
        {"   ", NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[ZNP_EMAIL_MAX + 1];
        znp_error_t err = {0};
        int rc = znp_auth_normalize_email(out, sizeof(out), cases[i].input, &err);

        if (cases[i].expected == NULL) {
            if (rc != ZNP_E_VALIDATION_FAILED)
                fail_msg("case %zu: expected a rejection, got %d", i, rc);
            assert_string_equal(err.path, "email");
            continue;
        }
        if (rc != 0)
            fail_msg("case %zu: rejected (%s)", i, err.detail);
        assert_string_equal(out, cases[i].expected);
    }
}

static void accounts__email_case_variants_meet(void **state)
{
    char a[ZNP_EMAIL_MAX + 1], b[ZNP_EMAIL_MAX + 1];
    znp_error_t err = {0};

    (void)state;
    assert_int_equal(znp_auth_normalize_email(a, sizeof(a), "alice@example.test", &err), 0);
    assert_int_equal(znp_auth_normalize_email(b, sizeof(b), "ALICE@Example.TEST", &err), 0);
    assert_string_equal(a, b);
}

int run_email_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(accounts__email_normalization_table_matches),
        cmocka_unit_test(accounts__email_case_variants_meet),
    };
    return cmocka_run_group_tests_name("email", tests, NULL, NULL);
}
