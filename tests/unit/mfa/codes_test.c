/* base32, HOTP and TOTP against the RFC test vectors, the ±1 window, replay and recovery codes. */
#include "mfa_tests.h"

#include <stdio.h>
#include <string.h>

#include "errors.gen.h"
#include "mfa/mfa.h"

/* the RFC 6238 Appendix B (and RFC 4226 Appendix D) SHA-1 key, ASCII "12345678901234567890" */
static const uint8_t RFC_KEY[] = "12345678901234567890";
#define RFC_KEY_LEN 20

static void mfa__base32_rfc4648_vectors_match(void **state)
{
    static const struct {
        const char *plain, *encoded;
    } cases[] = {
        {"", ""},           {"f", "MY"},           {"fo", "MZXQ"},          {"foo", "MZXW6"},
        {"foob", "MZXW6YQ"}, {"fooba", "MZXW6YTB"}, {"foobar", "MZXW6YTBOI"},
    };
    char text[32];
    uint8_t bytes[16];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].plain);

        assert_int_equal(znp_base32_encode(text, sizeof text, (const uint8_t *)cases[i].plain, len),
                         strlen(cases[i].encoded));
        assert_string_equal(text, cases[i].encoded);
        assert_int_equal(znp_base32_decode(bytes, sizeof bytes, cases[i].encoded, strlen(cases[i].encoded)),
                         (long)len);
        assert_memory_equal(bytes, cases[i].plain, len);
    }
}

static void mfa__base32_decode_lower_case_accepted(void **state)
{
    uint8_t bytes[16];

    (void)state;
    assert_int_equal(znp_base32_decode(bytes, sizeof bytes, "mzxw6ytboi", 10), 6);
    assert_memory_equal(bytes, "foobar", 6);
}

static void mfa__base32_malformed_rejected(void **state)
{
    static const char *cases[] = {
        "MZXW6YTBOI=", /* padding */
        "M",           /* a length no encoder produces */
        "MZX",
        "MZXW6Y",
        "MZ1W",        /* '1' is not in the alphabet */
        "MZ",          /* "MY" is 'f'; 'Z' leaves non-zero fill bits */
    };
    uint8_t bytes[16];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(znp_base32_decode(bytes, sizeof bytes, cases[i], strlen(cases[i])), -1);
    /* output too small */
    assert_int_equal(znp_base32_decode(bytes, 5, "MZXW6YTBOI", 10), -1);
}

static void mfa__base32_encode_small_buffer_rejected(void **state)
{
    char text[4];

    (void)state;
    assert_int_equal(znp_base32_encode(text, sizeof text, (const uint8_t *)"foo", 3), 0);
}

static void mfa__hotp_rfc4226_vectors_match(void **state)
{
    static const uint32_t expected[10] = {755224, 287082, 359152, 969429, 338314,
                                          254676, 287922, 162583, 399871, 520489};

    (void)state;
    for (uint64_t counter = 0; counter < 10; counter++)
        assert_int_equal(znp_hotp(RFC_KEY, RFC_KEY_LEN, counter, 6), expected[counter]);
}

static void mfa__totp_rfc6238_sha1_vectors_match(void **state)
{
    static const struct {
        int64_t time;
        uint32_t eight, six;
    } cases[] = {
        {59, 94287082, 287082},
        {1111111109, 7081804, 81804},
        {1111111111, 14050471, 50471},
        {1234567890, 89005924, 5924},
        {2000000000, 69279037, 279037},
        {20000000000, 65353130, 353130},
    };
    char code[8];
    int64_t step = 0;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t counter = (uint64_t)(cases[i].time / 30);

        assert_int_equal(znp_hotp(RFC_KEY, RFC_KEY_LEN, counter, 8), cases[i].eight);
        assert_int_equal(znp_hotp(RFC_KEY, RFC_KEY_LEN, counter, 6), cases[i].six);
        /* the 6-digit code keeps its leading zeros and matches at that time */
        snprintf(code, sizeof code, "%06u", (unsigned)cases[i].six);
        assert_int_equal(znp_totp_match(&step, RFC_KEY, RFC_KEY_LEN, cases[i].time, code, -1), 0);
        assert_int_equal(step, (int64_t)counter);
    }
}

static void mfa__totp_window_one_step(void **state)
{
    /* at 1111111111 the step is 37037037; codes of steps 37037036 and 37037038 are accepted */
    const int64_t now = 1111111111, step = now / 30;
    char code[8];
    int64_t matched = 0;

    (void)state;
    for (int64_t offset = -3; offset <= 3; offset++) {
        snprintf(code, sizeof code, "%06u", (unsigned)znp_hotp(RFC_KEY, RFC_KEY_LEN, (uint64_t)(step + offset), 6));
        if (offset >= -1 && offset <= 1) {
            assert_int_equal(znp_totp_match(&matched, RFC_KEY, RFC_KEY_LEN, now, code, -1), 0);
            assert_int_equal(matched, step + offset);
        } else {
            assert_int_equal(znp_totp_match(&matched, RFC_KEY, RFC_KEY_LEN, now, code, -1), ZNP_E_MFA_CODE_INVALID);
        }
    }
}

static void mfa__totp_used_step_rejected(void **state)
{
    const int64_t now = 1234567890, step = now / 30;
    char current[8], previous[8], next[8];
    int64_t matched = 0;

    (void)state;
    snprintf(current, sizeof current, "%06u", (unsigned)znp_hotp(RFC_KEY, RFC_KEY_LEN, (uint64_t)step, 6));
    snprintf(previous, sizeof previous, "%06u", (unsigned)znp_hotp(RFC_KEY, RFC_KEY_LEN, (uint64_t)step - 1, 6));
    snprintf(next, sizeof next, "%06u", (unsigned)znp_hotp(RFC_KEY, RFC_KEY_LEN, (uint64_t)step + 1, 6));

    /* once the current step is used, its code and the previous step's are replays */
    assert_int_equal(znp_totp_match(&matched, RFC_KEY, RFC_KEY_LEN, now, current, step - 1), 0);
    assert_int_equal(znp_totp_match(&matched, RFC_KEY, RFC_KEY_LEN, now, current, step), ZNP_E_MFA_CODE_INVALID);
    assert_int_equal(znp_totp_match(&matched, RFC_KEY, RFC_KEY_LEN, now, previous, step), ZNP_E_MFA_CODE_INVALID);
    /* the next step's code is still new */
    assert_int_equal(znp_totp_match(&matched, RFC_KEY, RFC_KEY_LEN, now, next, step), 0);
    assert_int_equal(matched, step + 1);
}

static void mfa__totp_malformed_code_rejected(void **state)
{
    static const char *cases[] = {"", "28708", "2870822", "28708a", " 87082", "287-82", "94287082"};
    int64_t matched = 0;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(znp_totp_match(&matched, RFC_KEY, RFC_KEY_LEN, 59, cases[i], -1), ZNP_E_MFA_CODE_INVALID);
    assert_int_equal(znp_totp_match(&matched, RFC_KEY, RFC_KEY_LEN, 59, NULL, -1), ZNP_E_MFA_CODE_INVALID);
    /* a right code under another key */
    assert_int_equal(znp_totp_match(&matched, (const uint8_t *)"12345678901234567891", RFC_KEY_LEN, 59, "287082", -1),
                     ZNP_E_MFA_CODE_INVALID);
}

static void mfa__recovery_normalize_cases(void **state)
{
    static const struct {
        const char *input, *normalized;
    } accepted[] = {
        {"k7qm-2xwd", "k7qm2xwd"},
        {"K7QM-2XWD", "k7qm2xwd"},
        {"k7qm2xwd", "k7qm2xwd"},
        {" k7qm 2xwd ", "k7qm2xwd"},
    };
    static const char *rejected[] = {"k7qm-2xw", "k7qm-2xwdd", "k7qm-2xw1", "k7qm_2xwd", ""};
    char out[9];

    (void)state;
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        assert_int_equal(znp_mfa_recovery_normalize(out, accepted[i].input), 0);
        assert_string_equal(out, accepted[i].normalized);
    }
    for (size_t i = 0; i < sizeof rejected / sizeof rejected[0]; i++)
        assert_int_equal(znp_mfa_recovery_normalize(out, rejected[i]), ZNP_E_MFA_CODE_INVALID);
}

static void mfa__recovery_hash_keyed(void **state)
{
    uint8_t key_a[32] = {1}, key_b[32] = {2};
    char first[65], again[65], other_code[65], other_key[65];

    (void)state;
    assert_int_equal(znp_mfa_recovery_hash(first, key_a, "k7qm2xwd"), 0);
    assert_int_equal(znp_mfa_recovery_hash(again, key_a, "k7qm2xwd"), 0);
    assert_int_equal(znp_mfa_recovery_hash(other_code, key_a, "k7qm2xwe"), 0);
    assert_int_equal(znp_mfa_recovery_hash(other_key, key_b, "k7qm2xwd"), 0);
    assert_int_equal(strlen(first), 64);
    assert_int_equal(strspn(first, "0123456789abcdef"), 64);
    assert_string_equal(first, again);
    assert_string_not_equal(first, other_code);
    assert_string_not_equal(first, other_key);
}

int run_codes_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mfa__base32_rfc4648_vectors_match),
        cmocka_unit_test(mfa__base32_decode_lower_case_accepted),
        cmocka_unit_test(mfa__base32_malformed_rejected),
        cmocka_unit_test(mfa__base32_encode_small_buffer_rejected),
        cmocka_unit_test(mfa__hotp_rfc4226_vectors_match),
        cmocka_unit_test(mfa__totp_rfc6238_sha1_vectors_match),
        cmocka_unit_test(mfa__totp_window_one_step),
        cmocka_unit_test(mfa__totp_used_step_rejected),
        cmocka_unit_test(mfa__totp_malformed_code_rejected),
        cmocka_unit_test(mfa__recovery_normalize_cases),
        cmocka_unit_test(mfa__recovery_hash_keyed),
    };

    return cmocka_run_group_tests_name("mfa_codes", tests, NULL, NULL);
}
