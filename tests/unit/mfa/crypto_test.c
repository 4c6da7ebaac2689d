/* AES-256-GCM sealing in src/core/crypto.c: round trip, tampering, wrong key, associated data, lengths. */
#include "mfa_tests.h"

#include <string.h>

#include "core/crypto.h"
#include "errors.gen.h"

static const uint8_t KEY[ZNP_CRYPTO_KEY_LEN] = {0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15,
                                                16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};
/* the same 32 bytes in base64 */
static const char KEY_BASE64[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
static const char PLAIN[] = "12345678901234567890";
static const char AAD[] = "znp:mfa:totp:42";

typedef struct sealed {
    uint8_t bytes[64];
    size_t len;
} sealed_t;

static sealed_t seal_plain(void)
{
    sealed_t s = {{0}, 0};

    assert_int_equal(znp_crypto_seal(s.bytes, sizeof s.bytes, &s.len, KEY, PLAIN, 20, AAD, strlen(AAD)), 0);
    return s;
}

static void crypto__round_trip_restores_plaintext(void **state)
{
    sealed_t s = seal_plain();
    uint8_t out[32];
    size_t out_len = 0;

    (void)state;
    assert_int_equal(s.len, 20 + ZNP_CRYPTO_OVERHEAD);
    assert_int_equal(s.bytes[0], ZNP_CRYPTO_VERSION);
    assert_memory_not_equal(s.bytes + 1 + ZNP_CRYPTO_NONCE_LEN, PLAIN, 20);
    assert_int_equal(znp_crypto_open(out, sizeof out, &out_len, KEY, s.bytes, s.len, AAD, strlen(AAD)), 0);
    assert_int_equal(out_len, 20);
    assert_memory_equal(out, PLAIN, 20);
}

static void crypto__nonce_differs_per_seal(void **state)
{
    sealed_t a = seal_plain(), b = seal_plain();

    (void)state;
    assert_memory_not_equal(a.bytes + 1, b.bytes + 1, ZNP_CRYPTO_NONCE_LEN);
    assert_memory_not_equal(a.bytes, b.bytes, a.len);
}

static void crypto__tampered_byte_rejected(void **state)
{
    sealed_t s = seal_plain();
    uint8_t out[32];
    size_t out_len = 99;

    (void)state;
    /* every byte, from the version through the nonce, the ciphertext and the tag */
    for (size_t i = 0; i < s.len; i++) {
        s.bytes[i] ^= 0x01;
        assert_int_equal(znp_crypto_open(out, sizeof out, &out_len, KEY, s.bytes, s.len, AAD, strlen(AAD)),
                         ZNP_E_INTERNAL);
        assert_int_equal(out_len, 0);
        s.bytes[i] ^= 0x01;
    }
    assert_int_equal(znp_crypto_open(out, sizeof out, &out_len, KEY, s.bytes, s.len, AAD, strlen(AAD)), 0);
}

static void crypto__wrong_key_rejected(void **state)
{
    sealed_t s = seal_plain();
    uint8_t other[ZNP_CRYPTO_KEY_LEN], out[32];
    size_t out_len = 0;

    (void)state;
    memcpy(other, KEY, sizeof other);
    other[31] ^= 0x80;
    assert_int_equal(znp_crypto_open(out, sizeof out, &out_len, other, s.bytes, s.len, AAD, strlen(AAD)),
                     ZNP_E_INTERNAL);
}

static void crypto__wrong_associated_data_rejected(void **state)
{
    sealed_t s = seal_plain();
    uint8_t out[32];
    size_t out_len = 0;

    (void)state;
    assert_int_equal(znp_crypto_open(out, sizeof out, &out_len, KEY, s.bytes, s.len, "znp:mfa:totp:43", 15),
                     ZNP_E_INTERNAL);
    assert_int_equal(znp_crypto_open(out, sizeof out, &out_len, KEY, s.bytes, s.len, NULL, 0), ZNP_E_INTERNAL);
}

static void crypto__wrong_length_rejected(void **state)
{
    sealed_t s = seal_plain();
    uint8_t out[32];
    size_t out_len = 0;

    (void)state;
    /* truncated by one byte, cut below the overhead, and extended by one byte */
    assert_int_equal(znp_crypto_open(out, sizeof out, &out_len, KEY, s.bytes, s.len - 1, AAD, strlen(AAD)),
                     ZNP_E_INTERNAL);
    assert_int_equal(
        znp_crypto_open(out, sizeof out, &out_len, KEY, s.bytes, ZNP_CRYPTO_OVERHEAD - 1, AAD, strlen(AAD)),
        ZNP_E_INTERNAL);
    assert_int_equal(znp_crypto_open(out, sizeof out, &out_len, KEY, s.bytes, s.len + 1, AAD, strlen(AAD)),
                     ZNP_E_INTERNAL);
    /* output buffers too small for the result */
    assert_int_equal(znp_crypto_open(out, 19, &out_len, KEY, s.bytes, s.len, AAD, strlen(AAD)), ZNP_E_INTERNAL);
    assert_int_equal(znp_crypto_seal(out, 20 + ZNP_CRYPTO_OVERHEAD - 1, &out_len, KEY, PLAIN, 20, NULL, 0),
                     ZNP_E_INTERNAL);
}

static void crypto__empty_plaintext_round_trip(void **state)
{
    uint8_t sealed[ZNP_CRYPTO_OVERHEAD], out[1];
    size_t sealed_len = 0, out_len = 7;

    (void)state;
    assert_int_equal(znp_crypto_seal(sealed, sizeof sealed, &sealed_len, KEY, "", 0, NULL, 0), 0);
    assert_int_equal(sealed_len, ZNP_CRYPTO_OVERHEAD);
    assert_int_equal(znp_crypto_open(out, sizeof out, &out_len, KEY, sealed, sealed_len, NULL, 0), 0);
    assert_int_equal(out_len, 0);
}

static void crypto__key_decode_cases(void **state)
{
    static const char *rejected[] = {
        "",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",   /* 31 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==", /* 34 bytes */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",    /* missing padding */
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd*h8=",   /* not base64 */
    };
    uint8_t key[ZNP_CRYPTO_KEY_LEN];

    (void)state;
    assert_int_equal(znp_crypto_key_decode(key, KEY_BASE64), 0);
    assert_memory_equal(key, KEY, sizeof key);
    assert_int_equal(znp_crypto_key_decode(key, "  AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"), 0);
    assert_memory_equal(key, KEY, sizeof key);
    for (size_t i = 0; i < sizeof rejected / sizeof rejected[0]; i++)
        assert_int_equal(znp_crypto_key_decode(key, rejected[i]), ZNP_E_VALIDATION_FAILED);
    assert_int_equal(znp_crypto_key_decode(key, NULL), ZNP_E_VALIDATION_FAILED);
}

int run_crypto_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crypto__round_trip_restores_plaintext),
        cmocka_unit_test(crypto__nonce_differs_per_seal),
        cmocka_unit_test(crypto__tampered_byte_rejected),
        cmocka_unit_test(crypto__wrong_key_rejected),
        cmocka_unit_test(crypto__wrong_associated_data_rejected),
        cmocka_unit_test(crypto__wrong_length_rejected),
        cmocka_unit_test(crypto__empty_plaintext_round_trip),
        cmocka_unit_test(crypto__key_decode_cases),
    };

    return cmocka_run_group_tests_name("mfa_crypto", tests, NULL, NULL);
}
