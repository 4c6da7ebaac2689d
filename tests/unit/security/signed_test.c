/*
 * Unit tests of the signed third-party API helpers: the canonical string,
 * the HMAC signature (the worked example of docs/signed-api.md), the IV
 * check and AES-256-GCM with tampered input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/arena.h"
#include "errors.gen.h"
#include "security/security.h"

/* the secret of the worked example in docs/signed-api.md */
static const char example_secret[] = "hV3q9ZkP1mX7cR2tL8wN4yB6sF0dG5jA3eU9iO7pK1z";

static znp_signed_request_t request(const char *method, const char *path, const char *query, const char *body)
{
    znp_signed_request_t in = {
        .method = method,
        .path = path,
        .path_len = strlen(path),
        .query = query,
        .query_len = query != NULL ? strlen(query) : 0,
        .timestamp = "1764806400",
        .nonce = "n0nce-2f8d1c7a9b3e4d5f",
        .body = body,
        .body_len = body != NULL ? strlen(body) : 0,
    };
    return in;
}

static void security__canonical_table_matches(void **state)
{
    static const struct {
        const char *method, *path, *query, *body, *canonical;
    } cases[] = {
        {"PATCH", "/api/v1/user/account/profile", NULL, "{\"display_name\":\"Ada\"}",
         "PATCH\n/api/v1/user/account/profile\n\n1764806400\nn0nce-2f8d1c7a9b3e4d5f\n"
         "eyJkaXNwbGF5X25hbWUiOiJBZGEifQ=="},
        {"get", "/api/v1/user/plans", "page=2&per_page=10", NULL,
         "GET\n/api/v1/user/plans\npage=2&per_page=10\n1764806400\nn0nce-2f8d1c7a9b3e4d5f\n"},
        {"POST", "/p", "", "a", "POST\n/p\n\n1764806400\nn0nce-2f8d1c7a9b3e4d5f\nYQ=="},
    };
    znp_arena_t arena;

    (void)state;
    znp_arena_init(&arena, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        znp_signed_request_t in = request(cases[i].method, cases[i].path, cases[i].query, cases[i].body);
        char *text = NULL;
        size_t len = 0;

        assert_int_equal(znp_signed_canonical(&arena, &in, &text, &len), 0);
        assert_string_equal(text, cases[i].canonical);
        assert_int_equal(len, strlen(cases[i].canonical));
    }
    znp_arena_dispose(&arena);
}

static void security__sign_table_matches(void **state)
{
    static const struct {
        const char *method, *path, *query, *body, *signature;
    } cases[] = {
        /* the worked example of docs/signed-api.md, computed independently with Python's hmac module */
        {"PATCH", "/api/v1/user/account/profile", NULL, "{\"display_name\":\"Ada\"}",
         "VO5Mrx135MdQ53NuEs8CerrUYA5D0nF45eaDD3b6JZQ="},
        {"GET", "/api/v1/user/plans", "page=2&per_page=10", NULL, "zbFlytbnLyPvyF4903ikkQj9al4li8ddWPO5aLuvhyE="},
    };
    znp_arena_t arena;

    (void)state;
    znp_arena_init(&arena, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        znp_signed_request_t in = request(cases[i].method, cases[i].path, cases[i].query, cases[i].body);
        char signature[ZNP_SIGNED_SIGNATURE_LEN + 1];
        char *text = NULL;
        size_t len = 0;

        assert_int_equal(znp_signed_canonical(&arena, &in, &text, &len), 0);
        assert_int_equal(znp_signed_sign(signature, example_secret, text, len), 0);
        assert_string_equal(signature, cases[i].signature);
        /* another secret gives another signature */
        assert_int_equal(znp_signed_sign(signature, "another-secret", text, len), 0);
        assert_string_not_equal(signature, cases[i].signature);
    }
    znp_arena_dispose(&arena);
}

static void security__decode_iv_table_checks_length(void **state)
{
    static const struct {
        const char *text;
        int rc;
    } cases[] = {
        {"AAECAwQFBgcICQoL", 0},                              /* 12 bytes */
        {"AAECAwQFBgcICQo=", ZNP_E_ENCRYPTION_IV_INVALID},    /* 11 bytes */
        {"AAECAwQFBgcICQoLDA==", ZNP_E_ENCRYPTION_IV_INVALID}, /* 13 bytes */
        {"AAECAwQFBgcICQoLDA0ODw==", ZNP_E_ENCRYPTION_IV_INVALID}, /* 16 bytes */
        {"AAECAwQFBgcICQo*", ZNP_E_ENCRYPTION_IV_INVALID},    /* not base64 */
        {"", ZNP_E_ENCRYPTION_IV_INVALID},
        {NULL, ZNP_E_ENCRYPTION_IV_INVALID},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t iv[ZNP_SIGNED_IV_LEN];

        assert_int_equal(znp_signed_decode_iv(iv, cases[i].text), cases[i].rc);
        if (cases[i].rc == 0) {
            for (int b = 0; b < ZNP_SIGNED_IV_LEN; b++)
                assert_int_equal(iv[b], b);
        }
    }
}

static void security__gcm_round_trip_succeeds(void **state)
{
    static const uint8_t iv[ZNP_SIGNED_IV_LEN] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    static const char plain[] = "{\"display_name\":\"Ada\"}";
    uint8_t sealed[sizeof plain - 1 + ZNP_SIGNED_TAG_LEN];
    uint8_t opened[sizeof plain];

    (void)state;
    assert_int_equal(znp_signed_encrypt(sealed, example_secret, iv, plain, sizeof plain - 1), 0);
    assert_memory_not_equal(sealed, plain, sizeof plain - 1);
    assert_int_equal(znp_signed_decrypt(opened, example_secret, iv, sealed, sizeof sealed), 0);
    assert_memory_equal(opened, plain, sizeof plain - 1);
}

/* the encrypted worked example of docs/signed-api.md, computed independently with Python's cryptography package */
static void security__gcm_known_answer_matches(void **state)
{
    static const uint8_t iv[ZNP_SIGNED_IV_LEN] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    static const char plain[] = "{\"display_name\":\"Ada\"}";
    static const uint8_t expected[] = {
        0x3a, 0x85, 0x82, 0x61, 0x1d, 0x78, 0xd4, 0xd7, 0xc6, 0xb5, 0x62, 0x51, 0xee, 0xd7, 0x0f, 0xbf, 0xac, 0x2f, 0xa1,
        0x53, 0xd4, 0x3e, 0x64, 0x4a, 0xb9, 0x60, 0x58, 0xe4, 0x9b, 0xe2, 0x84, 0x2f, 0xf8, 0x5a, 0xd6, 0x73, 0x40, 0x64,
    };
    uint8_t sealed[sizeof plain - 1 + ZNP_SIGNED_TAG_LEN];
    znp_signed_request_t in = request("PATCH", "/api/v1/user/account/profile", NULL, NULL);
    char signature[ZNP_SIGNED_SIGNATURE_LEN + 1];
    znp_arena_t arena;
    char *text = NULL;
    size_t len = 0;

    (void)state;
    assert_int_equal(sizeof sealed, sizeof expected);
    assert_int_equal(znp_signed_encrypt(sealed, example_secret, iv, plain, sizeof plain - 1), 0);
    assert_memory_equal(sealed, expected, sizeof expected);

    /* the signature covers the ciphertext */
    znp_arena_init(&arena, 0);
    in.nonce = "n0nce-7c41e09b5a2d3f68";
    in.body = (const char *)expected;
    in.body_len = sizeof expected;
    assert_int_equal(znp_signed_canonical(&arena, &in, &text, &len), 0);
    assert_int_equal(znp_signed_sign(signature, example_secret, text, len), 0);
    assert_string_equal(signature, "TUQIR1hAUcjmZz2Wy8ynX+SnGyaBl8xFi2XALIIdUVs=");
    znp_arena_dispose(&arena);
}

static void security__gcm_tampered_fails(void **state)
{
    static const uint8_t iv[ZNP_SIGNED_IV_LEN] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    static const char plain[] = "{\"display_name\":\"Ada\"}";
    enum { SEALED_LEN = sizeof plain - 1 + ZNP_SIGNED_TAG_LEN };
    uint8_t sealed[SEALED_LEN], changed[SEALED_LEN], other_iv[ZNP_SIGNED_IV_LEN];
    uint8_t opened[sizeof plain];

    (void)state;
    assert_int_equal(znp_signed_encrypt(sealed, example_secret, iv, plain, sizeof plain - 1), 0);
    /* one flipped bit anywhere: ciphertext and tag */
    for (size_t i = 0; i < SEALED_LEN; i++) {
        memcpy(changed, sealed, SEALED_LEN);
        changed[i] ^= 0x01;
        assert_int_equal(znp_signed_decrypt(opened, example_secret, iv, changed, SEALED_LEN),
                         ZNP_E_BODY_DECRYPT_FAILED);
    }
    /* another IV, another secret, a cut tag, less than a tag */
    memcpy(other_iv, iv, sizeof other_iv);
    other_iv[0] ^= 0x80;
    assert_int_equal(znp_signed_decrypt(opened, example_secret, other_iv, sealed, SEALED_LEN),
                     ZNP_E_BODY_DECRYPT_FAILED);
    assert_int_equal(znp_signed_decrypt(opened, "another-secret", iv, sealed, SEALED_LEN), ZNP_E_BODY_DECRYPT_FAILED);
    assert_int_equal(znp_signed_decrypt(opened, example_secret, iv, sealed, SEALED_LEN - 1),
                     ZNP_E_BODY_DECRYPT_FAILED);
    assert_int_equal(znp_signed_decrypt(opened, example_secret, iv, sealed, ZNP_SIGNED_TAG_LEN - 1),
                     ZNP_E_BODY_DECRYPT_FAILED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(security__canonical_table_matches),
        cmocka_unit_test(security__sign_table_matches),
        cmocka_unit_test(security__decode_iv_table_checks_length),
        cmocka_unit_test(security__gcm_round_trip_succeeds),
        cmocka_unit_test(security__gcm_known_answer_matches),
        cmocka_unit_test(security__gcm_tampered_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
