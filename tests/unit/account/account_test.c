/* Unit tests of the account module's pure helpers: role normalization and the password rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "account/account.h"
#include "config/config.h"
#include "errors.gen.h"

typedef struct fixture {
    znp_arena_t arena;
    znp_error_t err;
    znp_ctx_t ctx;
    znp_config_t *config; /* built-in defaults: password.min_length 8, max_length 128 */
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = test_calloc(1, sizeof(*f));

    znp_config_error_t config_err;

    if (znp_config_load(&f->config, NULL, &config_err) != 0)
        return -1;
    znp_arena_init(&f->arena, 0);
    f->ctx.config = f->config;
    f->ctx.arena = &f->arena;
    f->ctx.err = &f->err;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    znp_arena_dispose(&f->arena);
    znp_config_destroy(f->config);
    test_free(f);
    return 0;
}

static const struct {
    const char *input[4];
    size_t count;
    int rc;
    const char *json;
    int has_admin;
} ROLE_CASES[] = {
    {{"user"}, 1, 0, "[\"user\"]", 0},
    {{"Admin", " admin ", "USER"}, 3, 0, "[\"admin\",\"user\"]", 1},
    {{"ops", "", "  "}, 3, 0, "[\"ops\"]", 0},
    {{"", " "}, 2, ZNP_E_VALIDATION_FAILED, NULL, 0},
    {{"bad role"}, 1, ZNP_E_VALIDATION_FAILED, NULL, 0},
    {{"administrator"}, 1, 0, "[\"administrator\"]", 0},
    {{"a234567890123456789012345678901234"}, 1, ZNP_E_VALIDATION_FAILED, NULL, 0},
};

static void account__normalize_roles_table(void **state)
{
    fixture_t *f = *state;

    for (size_t i = 0; i < sizeof(ROLE_CASES) / sizeof(ROLE_CASES[0]); i++) {
        znp_array_t roles = {ROLE_CASES[i].count, (void *)ROLE_CASES[i].input};
        const char *json = NULL;
        int has_admin = -1;
        int rc = znp_account__normalize_roles(&f->ctx, &roles, "$.roles", &json, &has_admin);

        assert_int_equal(rc, ROLE_CASES[i].rc);
        if (rc == 0) {
            assert_string_equal(json, ROLE_CASES[i].json);
            assert_int_equal(has_admin, ROLE_CASES[i].has_admin);
        } else {
            assert_string_equal(f->err.path, "$.roles");
        }
    }
}

static const struct {
    const char *password;
    int rc;
} PASSWORD_CASES[] = {
    {"long-enough-1", 0},
    {"short", ZNP_E_VALIDATION_FAILED},
    {"        ", ZNP_E_VALIDATION_FAILED},
    {"member@example.com", ZNP_E_VALIDATION_FAILED},
    {"MEMBER@EXAMPLE.COM", ZNP_E_VALIDATION_FAILED},
    {"\xe5\xaf\x86\xe7\xa0\x81\xe5\xaf\x86\xe7\xa0\x81\xe5\xaf\x86\xe7\xa0\x81\xe5\xaf\x86\xe7\xa0\x81", 0}, /* 8 CJK */
};

static void account__check_password_table(void **state)
{
    fixture_t *f = *state;

    for (size_t i = 0; i < sizeof(PASSWORD_CASES) / sizeof(PASSWORD_CASES[0]); i++) {
        int rc =
            znp_account__check_password(&f->ctx, PASSWORD_CASES[i].password, "member@example.com", "$.new_password");
        assert_int_equal(rc, PASSWORD_CASES[i].rc);
        if (rc != 0)
            assert_string_equal(f->err.path, "$.new_password");
    }
}

static void account__check_password_129_chars_rejected(void **state)
{
    fixture_t *f = *state;
    char password[130];

    memset(password, 'x', 128);
    password[128] = '\0';
    assert_int_equal(znp_account__check_password(&f->ctx, password, "member@example.com", "$.p"), 0);
    password[128] = 'x';
    password[129] = '\0';
    assert_int_equal(znp_account__check_password(&f->ctx, password, "member@example.com", "$.p"),
                     ZNP_E_VALIDATION_FAILED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(account__normalize_roles_table, setup, teardown),
        cmocka_unit_test_setup_teardown(account__check_password_table, setup, teardown),
        cmocka_unit_test_setup_teardown(account__check_password_129_chars_rejected, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
