/*
 * Identity credential bytes, pinned by vectors that tests/unit/identity/vectors.py
 * computes with Python's hashlib, hmac and python3-cryptography (AES-GCM),
 * independently of the C code.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "errors.gen.h"
#include "identity/identity.h"

#define MASTER_KEY "q2Zb6v2mC1VwZ0d3Yk8rT1lZbWJ5cVd2eE5uQ2x0dUk="
#define OTHER_KEY "bm90IHRoZSBzYW1lIGtleSBhdCBhbGwgMDEyMzQ1Njc="
#define USER_ID 42
#define VERSION 3
#define KEY_ID "12c252c7"
#define SEALED "ZGVmZ2hpamtsbW5v:j9a14KxAvcsKaPGbFM3+MOXYlq6LehKVV/wJxUrpt4KAql7Tn5idDwrDcn9ILBRW"
#define FINGERPRINT "eaf75b6175bce1e4b01e8fc9752556aa65dafa6ebe5193b0e4f074fb185f675a"
#define UUID "4ea974eb-e7c8-4e77-b00e-2c6aa6571135"
#define PASSWORD "417f534e4f84aec532ad8814ddfcfd8da0c38c114be08fef2c01b20f7d78bfb1"
#define LEGACY "AWRlZmdoaWprbG1ub/YVF2BSyIUh8FBZKWHQb6uALVUlyCEahBJBsXxaRr2w42nS5wUPfheNSLlAYvD3Rg=="

static void fixed_seed(uint8_t seed[ZNP_IDENTITY_SEED_LEN])
{
    for (int i = 0; i < ZNP_IDENTITY_SEED_LEN; i++)
        seed[i] = (uint8_t)i;
}

static void identity__derive_vector_matches(void **state)
{
    uint8_t seed[ZNP_IDENTITY_SEED_LEN];
    znp_identity_t out;

    (void)state;
    fixed_seed(seed);
    assert_int_equal(znp_identity_derive(USER_ID, VERSION, seed, &out), 0);
    assert_int_equal(out.user_id, USER_ID);
    assert_int_equal(out.version, VERSION);
    assert_string_equal(out.uuid, UUID);
    assert_string_equal(out.password, PASSWORD);
}

static void identity__derive_version_changes_both(void **state)
{
    uint8_t seed[ZNP_IDENTITY_SEED_LEN];
    znp_identity_t a, b;

    (void)state;
    fixed_seed(seed);
    assert_int_equal(znp_identity_derive(USER_ID, 1, seed, &a), 0);
    assert_int_equal(znp_identity_derive(USER_ID, 2, seed, &b), 0);
    assert_string_not_equal(a.uuid, b.uuid);
    assert_string_not_equal(a.password, b.password);
    assert_int_equal(a.uuid[14], '4');
    assert_true(strchr("89ab", a.uuid[19]) != NULL);
}

static void identity__open_reference_row_succeeds(void **state)
{
    uint8_t seed[ZNP_IDENTITY_SEED_LEN], expected[ZNP_IDENTITY_SEED_LEN];

    (void)state;
    fixed_seed(expected);
    assert_int_equal(znp_identity_open(MASTER_KEY, USER_ID, VERSION, SEALED, seed), 0);
    assert_memory_equal(seed, expected, sizeof(seed));
}

static void identity__open_legacy_row_succeeds(void **state)
{
    uint8_t seed[ZNP_IDENTITY_SEED_LEN], expected[ZNP_IDENTITY_SEED_LEN];

    (void)state;
    fixed_seed(expected);
    assert_int_equal(znp_identity_open(MASTER_KEY, USER_ID, VERSION, LEGACY, seed), 0);
    assert_memory_equal(seed, expected, sizeof(seed));
}

static void identity__open_bad_input_fails(void **state)
{
    static const struct {
        const char *key;
        int64_t user_id;
        int64_t version;
        const char *sealed;
    } cases[] = {
        {OTHER_KEY, USER_ID, VERSION, SEALED},       /* another master key */
        {MASTER_KEY, USER_ID + 1, VERSION, SEALED},  /* copied to another user */
        {MASTER_KEY, USER_ID, VERSION, "ZGVmZ2hpamtsbW5v:j9a14KxAvcsKaPGbFM3+MOXYlq6LehKVV/wJxUrpt4KAql7Tn5idDwrDcn9ILBRX"},
        {MASTER_KEY, USER_ID, VERSION, "ZGVmZ2hpamtsbW5v:"},
        {MASTER_KEY, USER_ID, VERSION, ":j9a14KxAvcsKaPGbFM3+MOXYlq6LehKVV/wJxUrpt4KAql7Tn5idDwrDcn9ILBRW"},
        {MASTER_KEY, USER_ID, VERSION, "ZGVmZ2hp*mtsbW5v:j9a14KxAvcsKaPGbFM3+MOXYlq6LehKVV/wJxUrpt4KAql7Tn5idDwrDcn9ILBRW"},
        {MASTER_KEY, USER_ID, VERSION, ""},
        {OTHER_KEY, USER_ID, VERSION, LEGACY},
        {MASTER_KEY, USER_ID, VERSION + 1, LEGACY}, /* legacy rows bind the version too */
        {NULL, USER_ID, VERSION, SEALED},
    };
    uint8_t seed[ZNP_IDENTITY_SEED_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(znp_identity_open(cases[i].key, cases[i].user_id, cases[i].version, cases[i].sealed, seed),
                         ZNP_E_INTERNAL);
}

static void identity__seal_round_trip_matches(void **state)
{
    uint8_t seed[ZNP_IDENTITY_SEED_LEN], opened[ZNP_IDENTITY_SEED_LEN];
    char key_id[9], sealed[ZNP_IDENTITY_SEALED_MAX], fingerprint[65], again[ZNP_IDENTITY_SEALED_MAX];

    (void)state;
    fixed_seed(seed);
    assert_int_equal(znp_identity_seal(MASTER_KEY, USER_ID, seed, key_id, sealed, fingerprint), 0);
    assert_string_equal(key_id, KEY_ID);
    assert_string_equal(fingerprint, FINGERPRINT);
    assert_int_equal(strlen(sealed), 16 + 1 + 64);
    assert_int_equal(sealed[16], ':');
    assert_int_equal(znp_identity_open(MASTER_KEY, USER_ID, 1, sealed, opened), 0);
    assert_memory_equal(opened, seed, sizeof(seed));

    /* a fresh nonce each time */
    assert_int_equal(znp_identity_seal(MASTER_KEY, USER_ID, seed, key_id, again, fingerprint), 0);
    assert_string_not_equal(sealed, again);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(identity__derive_vector_matches),
        cmocka_unit_test(identity__derive_version_changes_both),
        cmocka_unit_test(identity__open_reference_row_succeeds),
        cmocka_unit_test(identity__open_legacy_row_succeeds),
        cmocka_unit_test(identity__open_bad_input_fails),
        cmocka_unit_test(identity__seal_round_trip_matches),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
