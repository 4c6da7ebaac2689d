#include "auth_tests.h"

#include <string.h>

#include "auth/auth.h"
#include "auth/password.h"
#include "core/error.h"

/* small costs where speed matters: t=1, 64 KiB */
static znp_config_t small_costs(void)
{
    znp_config_t config;

    memset(&config, 0, sizeof(config));
    config.auth.argon2_t_cost = 1;
    config.auth.argon2_m_cost_kib = 64;
    config.auth.argon2_parallelism = 1;
    return config;
}

/*
 * Known answer from the reference implementation's command-line tool:
 * echo -n "correct horse battery staple" | argon2 somesalt16bytes! -id -t 2 -k 19456 -p 1 -l 32
 */
static void password__argon2id_known_answer_matches(void **state)
{
    static const char expected[] = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQxNmJ5dGVzIQ$"
                                   "W2/hNMtQKxyFQI3cOFyMdL9hfH0kK/3DKouGLtcZUyw";
    static const char password[] = "correct horse battery staple";
    char out[ZNP_PASSWORD_HASH_MAX];

    (void)state;
    assert_int_equal(
        znp_password_hash_with_salt(out, sizeof(out), password, strlen(password), "somesalt16bytes!", 16, 2, 19456, 1),
        0);
    assert_string_equal(out, expected);
    assert_int_equal(znp_password_verify(expected, password, strlen(password)), 0);
}

static void password__hash_verify_round_trip_succeeds(void **state)
{
    znp_config_t config = small_costs();
    char a[ZNP_PASSWORD_HASH_MAX], b[ZNP_PASSWORD_HASH_MAX];

    (void)state;
    assert_int_equal(znp_password_hash(a, sizeof(a), "s3cret-passw0rd", 15, &config), 0);
    assert_int_equal(znp_password_hash(b, sizeof(b), "s3cret-passw0rd", 15, &config), 0);
    assert_memory_equal(a, "$argon2id$v=19$m=64,t=1,p=1$", 28);
    assert_string_not_equal(a, b); /* random salts */
    assert_int_equal(znp_password_verify(a, "s3cret-passw0rd", 15), 0);
    assert_int_equal(znp_password_verify(b, "s3cret-passw0rd", 15), 0);
}

static void password__wrong_password_rejected(void **state)
{
    znp_config_t config = small_costs();
    char hash[ZNP_PASSWORD_HASH_MAX];
    static const char *const wrong[] = {"s3cret-passw0rD", "s3cret-passw0r", "s3cret-passw0rd ", ""};

    (void)state;
    assert_int_equal(znp_password_hash(hash, sizeof(hash), "s3cret-passw0rd", 15, &config), 0);
    for (size_t i = 0; i < sizeof(wrong) / sizeof(wrong[0]); i++) {
        print_message("password \"%s\"\n", wrong[i]);
        assert_int_equal(znp_password_verify(hash, wrong[i], strlen(wrong[i])), ZNP_E_INVALID_CREDENTIALS);
    }
}

static void password__malformed_hash_rejected(void **state)
{
    static const char *const malformed[] = {
        "",
        "plain-text",
        "$argon2i$v=19$m=64,t=1,p=1$c29tZXNhbHQxNmJ5dGVzIQ$W2/hNMtQKxyFQI3cOFyMdL9hfH0kK/3DKouGLtcZUyw",
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQxNmJ5dGVzIQ",
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQxNmJ5dGVzIQ$***",
        "$argon2id$v=19$m=x,t=2,p=1$c29tZXNhbHQxNmJ5dGVzIQ$W2/hNMtQKxyFQI3cOFyMdL9hfH0kK/3DKouGLtcZUyw",
        "$2b$12$abcdefghijklmnopqrstuuSomeBcryptHashThatIsNotArgon",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        print_message("hash \"%s\"\n", malformed[i]);
        assert_int_equal(znp_password_verify(malformed[i], "correct horse battery staple", 28), ZNP_E_INTERNAL);
    }
    assert_int_equal(znp_password_verify(NULL, "x", 1), ZNP_E_INTERNAL);
}

static void password__dummy_verify_never_matches(void **state)
{
    znp_config_t config = small_costs();

    (void)state;
    /* twice with the cached dummy hash, then once more after it is rebuilt for new costs */
    assert_int_equal(znp_password_verify_dummy(&config, "whatever", 8), ZNP_E_INVALID_CREDENTIALS);
    assert_int_equal(znp_password_verify_dummy(&config, "", 0), ZNP_E_INVALID_CREDENTIALS);
    config.auth.argon2_m_cost_kib = 128;
    assert_int_equal(znp_password_verify_dummy(&config, "whatever", 8), ZNP_E_INVALID_CREDENTIALS);

    /* costs argon2 rejects: no dummy hash can be made */
    config.auth.argon2_t_cost = 0;
    assert_int_equal(znp_password_verify_dummy(&config, "whatever", 8), ZNP_E_INTERNAL);
}

static void password__policy_checked(void **state)
{
    static const struct {
        const char *password;
        const char *email;
        int expected;
        const char *detail;
    } cases[] = {
        {"12345678", "a@example.com", 0, ""},
        {"1234567", "a@example.com", ZNP_E_VALIDATION_FAILED, "must be at least 8 characters"},
        {"", "a@example.com", ZNP_E_VALIDATION_FAILED, "must be at least 8 characters"},
        {"密码密码密码密码", "a@example.com", 0, ""}, /* 8 code points, 24 bytes */
        {"密码密码", "a@example.com", ZNP_E_VALIDATION_FAILED, "must be at least 8 characters"}, /* 12 bytes */
        {"        ", "a@example.com", ZNP_E_VALIDATION_FAILED, "must not be blank"},
        {"\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80\xe3\x80\x80",
         "a@example.com", ZNP_E_VALIDATION_FAILED, "must not be blank"},
        {"admin@example.com", "admin@example.com", ZNP_E_VALIDATION_FAILED, "must not be the email address"},
        {"Admin@Example.COM", "admin@example.com", ZNP_E_VALIDATION_FAILED, "must not be the email address"},
        {"admin@example.co", "admin@example.com", 0, ""},
    };
    znp_error_t err;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_error_clear(&err);
        print_message("password \"%s\"\n", cases[i].password);
        assert_int_equal(znp_password_check_policy(cases[i].password, strlen(cases[i].password), cases[i].email, &err),
                         cases[i].expected);
        if (cases[i].expected != 0) {
            assert_string_equal(err.path, "password");
            assert_string_equal(err.detail, cases[i].detail);
        }
    }
}

static void password__policy_max_bytes_checked(void **state)
{
    char long_password[ZNP_PASSWORD_MAX_BYTES + 2];
    znp_error_t err;

    (void)state;
    memset(long_password, 'p', sizeof(long_password) - 1);
    long_password[sizeof(long_password) - 1] = '\0';
    assert_int_equal(znp_password_check_policy(long_password, ZNP_PASSWORD_MAX_BYTES, NULL, &err), 0);
    assert_int_equal(znp_password_check_policy(long_password, ZNP_PASSWORD_MAX_BYTES + 1, NULL, &err),
                     ZNP_E_VALIDATION_FAILED);
}

static void auth__email_normalized(void **state)
{
    static const struct {
        const char *in;
        int expected;
        const char *out;
    } cases[] = {
        {"Admin@Example.COM", 0, "admin@example.com"},
        {"  admin@example.com\t\n", 0, "admin@example.com"},
        {"\xe3\x80\x80"
         "admin@example.com"
         "\xc2\xa0",
         0, "admin@example.com"},                      /* U+3000 and U+00A0 */
        {"ÄDMIN@example.com", 0, "Ädmin@example.com"}, /* only ASCII here; SQL lower() folds the rest */
        {"a@b", 0, "a@b"},
        {"ab", ZNP_E_VALIDATION_FAILED, NULL},
        {"   ", ZNP_E_VALIDATION_FAILED, NULL},
        {"no-at-sign", ZNP_E_VALIDATION_FAILED, NULL},
        {"@example.com", ZNP_E_VALIDATION_FAILED, NULL},
        {"admin@", ZNP_E_VALIDATION_FAILED, NULL},
        {"a@b@c", ZNP_E_VALIDATION_FAILED, NULL},
    };
    char out[ZNP_EMAIL_MAX + 1];
    znp_error_t err;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_error_clear(&err);
        print_message("email \"%s\"\n", cases[i].in);
        assert_int_equal(znp_auth_normalize_email(out, sizeof(out), cases[i].in, &err), cases[i].expected);
        if (cases[i].expected == 0)
            assert_string_equal(out, cases[i].out);
        else
            assert_string_equal(err.path, "email");
    }
}

static void auth__email_length_limit_checked(void **state)
{
    char email[ZNP_EMAIL_MAX + 8], out[ZNP_EMAIL_MAX + 1];
    znp_error_t err;

    (void)state;
    memset(email, 'a', ZNP_EMAIL_MAX);
    memcpy(email + ZNP_EMAIL_MAX - 12, "@example.com", 12);
    email[ZNP_EMAIL_MAX] = '\0';
    assert_int_equal(znp_auth_normalize_email(out, sizeof(out), email, &err), 0);
    memmove(email + 1, email, ZNP_EMAIL_MAX + 1);
    assert_int_equal(znp_auth_normalize_email(out, sizeof(out), email, &err), ZNP_E_VALIDATION_FAILED);
}

int run_password_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(password__argon2id_known_answer_matches),
        cmocka_unit_test(password__hash_verify_round_trip_succeeds),
        cmocka_unit_test(password__wrong_password_rejected),
        cmocka_unit_test(password__malformed_hash_rejected),
        cmocka_unit_test(password__dummy_verify_never_matches),
        cmocka_unit_test(password__policy_checked),
        cmocka_unit_test(password__policy_max_bytes_checked),
        cmocka_unit_test(auth__email_normalized),
        cmocka_unit_test(auth__email_length_limit_checked),
    };

    return cmocka_run_group_tests_name("password", tests, NULL, NULL);
}
