#include "auth_tests.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/jwt.h"
#include "core/error.h"

#define NOW       1764806400
#define ISSUER    "znp"
#define KEY       "access-secret-of-at-least-32-bytes!!"
#define OTHER_KEY "refresh-secret-of-at-least-32-bytes!"
#define JTI       "0b7e8f62-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
#define FAMILY    "5f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
#define HEADER    "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

/* helpers: an independent encoder and signer, so forged tokens do not depend on the code under test */

static void b64url(char *out, size_t out_size, const unsigned char *in, size_t len)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;

    for (size_t i = 0; i < len; i++) {
        acc = (acc << 8) | in[i];
        bits += 8;
        while (bits >= 6) {
            bits -= 6;
            assert_true(o + 1 < out_size);
            out[o++] = alphabet[(acc >> bits) & 63];
        }
    }
    if (bits > 0) {
        assert_true(o + 1 < out_size);
        out[o++] = alphabet[(acc << (6 - bits)) & 63];
    }
    out[o] = '\0';
}

/* Sign the given segment texts as they are: "<header_seg>.<payload_seg>.<HS256 signature>". */
static void sign_segments(char *out, size_t out_size, const char *header_seg, const char *payload_seg, const char *key)
{
    unsigned char mac[32];
    unsigned int mac_len = 0;
    char input[ZNP_JWT_MAX * 2];
    char signature[64];

    snprintf(input, sizeof(input), "%s.%s", header_seg, payload_seg);
    assert_non_null(
        HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)input, strlen(input), mac, &mac_len));
    b64url(signature, sizeof(signature), mac, mac_len);
    assert_true(strlen(input) + 1 + strlen(signature) < out_size);
    memcpy(out, input, strlen(input));
    out[strlen(input)] = '.';
    memcpy(out + strlen(input) + 1, signature, strlen(signature) + 1);
}

static void forge(char *out, size_t out_size, const char *header_json, const char *payload_json, const char *key)
{
    char header_seg[256], payload_seg[ZNP_JWT_MAX * 2];

    b64url(header_seg, sizeof(header_seg), (const unsigned char *)header_json, strlen(header_json));
    b64url(payload_seg, sizeof(payload_seg), (const unsigned char *)payload_json, strlen(payload_json));
    sign_segments(out, out_size, header_seg, payload_seg, key);
}

/* A valid payload of `type`, with `key` replaced by `value_json` (NULL removes it; key NULL changes nothing). */
static char *payload_json(znp_token_type_t type, const char *key, const char *value_json)
{
    json_t *payload = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "iss", ISSUER, "aud", ISSUER, "sub", "42", "iat",
                                (json_int_t)NOW, "exp", (json_int_t)(NOW + 900), "jti", JTI, "typ",
                                type == ZNP_TOKEN_ACCESS ? "access" : "refresh");
    char *text;

    assert_non_null(payload);
    if (type == ZNP_TOKEN_ACCESS)
        json_object_set_new(payload, "roles", json_pack("[s, s]", "admin", "user"));
    else
        json_object_set_new(payload, "fam", json_string(FAMILY));
    if (key != NULL && value_json == NULL) {
        json_object_del(payload, key);
    } else if (key != NULL) {
        json_t *value = json_loads(value_json, JSON_DECODE_ANY, NULL);
        assert_non_null(value);
        json_object_set_new(payload, key, value);
    }
    text = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    assert_non_null(text);
    return text;
}

static void forge_claim(char *out, size_t out_size, znp_token_type_t type, const char *key, const char *value_json)
{
    char *payload = payload_json(type, key, value_json);

    forge(out, out_size, HEADER, payload, KEY);
    free(payload);
}

static int verify(const char *token, znp_token_type_t type, int64_t now)
{
    znp_jwt_claims_t claims;

    return znp_jwt_verify(&claims, token, strlen(token), type, ISSUER, KEY, strlen(KEY), now);
}

static znp_jwt_claims_t access_claims(void)
{
    znp_jwt_claims_t claims = {0};

    claims.type = ZNP_TOKEN_ACCESS;
    claims.user_id = 42;
    claims.issued_at = NOW;
    claims.expires_at = NOW + 900;
    memcpy(claims.jti, JTI, sizeof(JTI));
    claims.role_count = 2;
    memcpy(claims.roles[0], "admin", 6);
    memcpy(claims.roles[1], "user", 5);
    return claims;
}

static void sign_claims(char *out, size_t out_size, const znp_jwt_claims_t *claims, const char *key)
{
    assert_int_equal(znp_jwt_sign(out, out_size, claims, ISSUER, key, strlen(key)), 0);
}

/* round trips */

static void jwt__access_round_trip_succeeds(void **state)
{
    znp_jwt_claims_t in = access_claims(), out;
    char token[ZNP_JWT_MAX + 1];

    (void)state;
    in.not_before = NOW - 5;
    sign_claims(token, sizeof(token), &in, KEY);
    assert_int_equal(znp_jwt_verify(&out, token, strlen(token), ZNP_TOKEN_ACCESS, ISSUER, KEY, strlen(KEY), NOW), 0);
    assert_int_equal(out.type, ZNP_TOKEN_ACCESS);
    assert_int_equal(out.user_id, 42);
    assert_int_equal(out.issued_at, NOW);
    assert_int_equal(out.expires_at, NOW + 900);
    assert_int_equal(out.not_before, NOW - 5);
    assert_string_equal(out.jti, JTI);
    assert_int_equal(out.role_count, 2);
    assert_string_equal(out.roles[0], "admin");
    assert_string_equal(out.roles[1], "user");
}

static void jwt__header_is_exact_succeeds(void **state)
{
    znp_jwt_claims_t in = access_claims();
    char token[ZNP_JWT_MAX + 1];

    (void)state;
    sign_claims(token, sizeof(token), &in, KEY);
    /* base64url of {"alg":"HS256","typ":"JWT"} */
    assert_memory_equal(token, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.", 37);
    assert_null(strchr(token, '='));
}

static void jwt__refresh_round_trip_succeeds(void **state)
{
    znp_jwt_claims_t in = {0}, out;
    char token[ZNP_JWT_MAX + 1];

    (void)state;
    in.type = ZNP_TOKEN_REFRESH;
    in.user_id = 9007199254740993; /* above 2^53: sub is a string, so no precision is lost */
    in.issued_at = NOW;
    in.expires_at = NOW + 2592000;
    memcpy(in.jti, JTI, sizeof(JTI));
    memcpy(in.family, FAMILY, sizeof(FAMILY));
    sign_claims(token, sizeof(token), &in, OTHER_KEY);
    assert_int_equal(
        znp_jwt_verify(&out, token, strlen(token), ZNP_TOKEN_REFRESH, ISSUER, OTHER_KEY, strlen(OTHER_KEY), NOW), 0);
    assert_int_equal(out.user_id, 9007199254740993);
    assert_string_equal(out.family, FAMILY);
    assert_string_equal(out.jti, JTI);
    assert_int_equal(out.role_count, 0);
}

/* time */

static void jwt__expiry_boundaries_checked(void **state)
{
    static const struct {
        int64_t now;
        int expected;
    } cases[] = {
        {NOW + 899, 0},
        {NOW + 900, ZNP_E_TOKEN_INVALID}, /* exp is the first second it is no longer valid */
        {NOW + 901, ZNP_E_TOKEN_INVALID},
        {NOW + 86400, ZNP_E_TOKEN_INVALID},
    };
    znp_jwt_claims_t in = access_claims();
    char token[ZNP_JWT_MAX + 1];

    (void)state;
    sign_claims(token, sizeof(token), &in, KEY);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("now = exp %+lld\n", (long long)(cases[i].now - in.expires_at));
        assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, cases[i].now), cases[i].expected);
    }
}

static void jwt__not_yet_valid_rejected(void **state)
{
    static const struct {
        const char *claim;
        int64_t value;
        int expected;
    } cases[] = {
        {"nbf", NOW + 30, 0}, {"nbf", NOW + 31, ZNP_E_TOKEN_INVALID}, {"nbf", NOW + 3600, ZNP_E_TOKEN_INVALID},
        {"iat", NOW + 30, 0}, {"iat", NOW + 31, ZNP_E_TOKEN_INVALID},
    };
    char token[ZNP_JWT_MAX + 1], value[32];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(value, sizeof(value), "%lld", (long long)cases[i].value);
        forge_claim(token, sizeof(token), ZNP_TOKEN_ACCESS, cases[i].claim, value);
        print_message("%s = now + %lld\n", cases[i].claim, (long long)(cases[i].value - NOW));
        assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), cases[i].expected);
    }
}

/* keys and signatures */

static void jwt__wrong_key_rejected(void **state)
{
    znp_jwt_claims_t in = access_claims();
    char token[ZNP_JWT_MAX + 1];

    (void)state;
    sign_claims(token, sizeof(token), &in, OTHER_KEY);
    assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
}

static void jwt__tampered_payload_rejected(void **state)
{
    znp_jwt_claims_t in = access_claims();
    char token[ZNP_JWT_MAX + 1], other[ZNP_JWT_MAX + 1], spliced[ZNP_JWT_MAX * 2];
    const char *dot1, *dot2, *other_dot1, *other_dot2;

    (void)state;
    sign_claims(token, sizeof(token), &in, KEY);
    in.user_id = 1; /* someone else's id, same key */
    sign_claims(other, sizeof(other), &in, KEY);

    /* the other token's payload with this token's signature */
    dot1 = strchr(token, '.');
    dot2 = strchr(dot1 + 1, '.');
    other_dot1 = strchr(other, '.');
    other_dot2 = strchr(other_dot1 + 1, '.');
    snprintf(spliced, sizeof(spliced), "%.*s%.*s%s", (int)(dot1 - token), token, (int)(other_dot2 - other_dot1),
             other_dot1, dot2);
    assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), 0);
    assert_int_equal(verify(spliced, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
}

static void jwt__tampered_signature_rejected(void **state)
{
    znp_jwt_claims_t in = access_claims();
    char token[ZNP_JWT_MAX + 1], bad[ZNP_JWT_MAX + 1];
    char *signature;

    (void)state;
    sign_claims(token, sizeof(token), &in, KEY);
    signature = strrchr(token, '.') + 1;
    assert_int_equal(strlen(signature), 43);

    /* one character in the middle */
    memcpy(bad, token, sizeof(bad));
    bad[signature - token + 10] = bad[signature - token + 10] == 'A' ? 'B' : 'A';
    assert_int_equal(verify(bad, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);

    /* cut short */
    memcpy(bad, token, sizeof(bad));
    bad[strlen(bad) - 4] = '\0';
    assert_int_equal(verify(bad, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);

    /* removed */
    memcpy(bad, token, sizeof(bad));
    bad[signature - token] = '\0';
    assert_int_equal(verify(bad, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
}

/* Every header but ours is rejected even with a correct HMAC-SHA256 under the right key. */
static void jwt__foreign_headers_rejected(void **state)
{
    static const char *const headers[] = {
        "{\"alg\":\"none\",\"typ\":\"JWT\"}",
        "{\"alg\":\"None\",\"typ\":\"JWT\"}",
        "{\"alg\":\"RS256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS384\",\"typ\":\"JWT\"}",
        "{\"alg\":\"hs256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS256\"}",
        "{\"typ\":\"JWT\",\"alg\":\"HS256\"}",
        "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"1\"}",
        "{\"alg\": \"HS256\",\"typ\":\"JWT\"}",
        "{\"alg\":\"HS256\",\"typ\":\"JWT\"} ",
        "{\"alg\":\"HS256\",\"alg\":\"none\",\"typ\":\"JWT\"}",
    };
    char token[ZNP_JWT_MAX + 1];
    char *payload = payload_json(ZNP_TOKEN_ACCESS, NULL, NULL);

    (void)state;
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++) {
        print_message("header %s\n", headers[i]);
        forge(token, sizeof(token), headers[i], payload, KEY);
        assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
    }
    free(payload);
}

static void jwt__alg_none_unsigned_rejected(void **state)
{
    char header_seg[128], payload_seg[ZNP_JWT_MAX], token[ZNP_JWT_MAX * 2];
    const char *none = "{\"alg\":\"none\",\"typ\":\"JWT\"}";
    char *payload = payload_json(ZNP_TOKEN_ACCESS, NULL, NULL);

    (void)state;
    b64url(header_seg, sizeof(header_seg), (const unsigned char *)none, strlen(none));
    b64url(payload_seg, sizeof(payload_seg), (const unsigned char *)payload, strlen(payload));
    snprintf(token, sizeof(token), "%s.%s.", header_seg, payload_seg);
    assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
    snprintf(token, sizeof(token), "%s.%s", header_seg, payload_seg);
    assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
    free(payload);
}

/* types */

static void jwt__type_swap_rejected(void **state)
{
    char access[ZNP_JWT_MAX + 1], refresh[ZNP_JWT_MAX + 1];

    (void)state;
    /* same key on purpose, so only typ distinguishes them */
    forge_claim(access, sizeof(access), ZNP_TOKEN_ACCESS, NULL, NULL);
    forge_claim(refresh, sizeof(refresh), ZNP_TOKEN_REFRESH, NULL, NULL);
    assert_int_equal(verify(access, ZNP_TOKEN_ACCESS, NOW), 0);
    assert_int_equal(verify(refresh, ZNP_TOKEN_REFRESH, NOW), 0);
    assert_int_equal(verify(access, ZNP_TOKEN_REFRESH, NOW), ZNP_E_TOKEN_INVALID);
    assert_int_equal(verify(refresh, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);

    /* an access token in every way but typ */
    forge_claim(access, sizeof(access), ZNP_TOKEN_ACCESS, "typ", "\"refresh\"");
    assert_int_equal(verify(access, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
}

/* encoding */

/* A valid access payload whose length modulo 3 is `remainder`, made so by a padding claim. */
static char *payload_with_length_remainder(size_t remainder)
{
    for (int pad = 1; pad <= 3; pad++) {
        char value[16];
        snprintf(value, sizeof(value), "\"%.*s\"", pad, "xyz");
        char *payload = payload_json(ZNP_TOKEN_ACCESS, "pad", value);
        if (strlen(payload) % 3 == remainder)
            return payload;
        free(payload);
    }
    fail_msg("no padding gives remainder %zu", remainder);
    return NULL;
}

static void jwt__bad_base64url_rejected(void **state)
{
    char header_seg[128], payload_seg[ZNP_JWT_MAX], bad[ZNP_JWT_MAX], token[ZNP_JWT_MAX * 2];
    /* whole 3-byte groups, so an appended "A" adds only zero bits and must fail on length alone */
    char *payload = payload_with_length_remainder(0);
    size_t len;

    (void)state;
    b64url(header_seg, sizeof(header_seg), (const unsigned char *)HEADER, strlen(HEADER));
    b64url(payload_seg, sizeof(payload_seg), (const unsigned char *)payload, strlen(payload));
    len = strlen(payload_seg);
    sign_segments(token, sizeof(token), header_seg, payload_seg, KEY);
    assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), 0);

    /* each variant is signed as it is, so only the decoder can reject it */
    const char *suffixes[] = {"=", "==", "A", "AA=", " "};
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        snprintf(bad, sizeof(bad), "%s%s", payload_seg, suffixes[i]);
        sign_segments(token, sizeof(token), header_seg, bad, KEY);
        print_message("payload + \"%s\"\n", suffixes[i]);
        assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
    }
    const char replacements[] = {'+', '/', '=', '.', '*', '\x80'};
    for (size_t i = 0; i < sizeof(replacements); i++) {
        memcpy(bad, payload_seg, len + 1);
        bad[len / 2] = replacements[i];
        sign_segments(token, sizeof(token), header_seg, bad, KEY);
        print_message("payload with 0x%02x inside\n", (unsigned char)replacements[i]);
        assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
    }

    /* a padded header */
    snprintf(bad, sizeof(bad), "%s=", header_seg);
    sign_segments(token, sizeof(token), bad, payload_seg, KEY);
    assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
    free(payload);
}

/* Non-zero bits after the last full byte: a second spelling of the same bytes. */
static void jwt__noncanonical_base64url_rejected(void **state)
{
    char header_seg[128], payload_seg[ZNP_JWT_MAX], token[ZNP_JWT_MAX * 2];
    char *payload = payload_with_length_remainder(1);
    size_t len = strlen(payload);
    char *last;

    (void)state;
    b64url(header_seg, sizeof(header_seg), (const unsigned char *)HEADER, strlen(HEADER));
    b64url(payload_seg, sizeof(payload_seg), (const unsigned char *)payload, len);
    sign_segments(token, sizeof(token), header_seg, payload_seg, KEY);
    assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), 0);

    /* the last character carries 4 unused bits (it is one of A, Q, g, w); setting the lowest keeps the bytes */
    last = payload_seg + strlen(payload_seg) - 1;
    assert_non_null(strchr("AQgw", *last));
    *last = (char)(*last + 1);
    sign_segments(token, sizeof(token), header_seg, payload_seg, KEY);
    assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
    free(payload);
}

static void jwt__segment_count_checked(void **state)
{
    char token[ZNP_JWT_MAX + 1], longer[ZNP_JWT_MAX + 8];
    static const char *const malformed[] = {"", ".", "..", "...", "abc", "a.b", "a.b.c.d"};

    (void)state;
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        assert_int_equal(verify(malformed[i], ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);

    forge_claim(token, sizeof(token), ZNP_TOKEN_ACCESS, NULL, NULL);
    snprintf(longer, sizeof(longer), "%s.", token);
    assert_int_equal(verify(longer, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
    snprintf(longer, sizeof(longer), ".%s", token);
    assert_int_equal(verify(longer, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
}

static void jwt__oversized_or_nul_token_rejected(void **state)
{
    char token[ZNP_JWT_MAX + 1];
    char *big = malloc(ZNP_JWT_MAX * 2);
    znp_jwt_claims_t claims;
    size_t len;

    (void)state;
    assert_non_null(big);
    /* a long but otherwise valid token: a 4 KiB claim */
    memset(big, 'x', ZNP_JWT_MAX);
    big[0] = '"';
    big[ZNP_JWT_MAX - 1] = '"';
    big[ZNP_JWT_MAX] = '\0';
    char *payload = payload_json(ZNP_TOKEN_ACCESS, "pad", big);
    forge(big, ZNP_JWT_MAX * 2, HEADER, payload, KEY);
    assert_true(strlen(big) > ZNP_JWT_MAX);
    assert_int_equal(znp_jwt_verify(&claims, big, strlen(big), ZNP_TOKEN_ACCESS, ISSUER, KEY, strlen(KEY), NOW),
                     ZNP_E_TOKEN_INVALID);

    /* the length passed includes a NUL */
    forge_claim(token, sizeof(token), ZNP_TOKEN_ACCESS, NULL, NULL);
    len = strlen(token);
    assert_int_equal(znp_jwt_verify(&claims, token, len + 1, ZNP_TOKEN_ACCESS, ISSUER, KEY, strlen(KEY), NOW),
                     ZNP_E_TOKEN_INVALID);
    assert_int_equal(znp_jwt_verify(&claims, token, len, ZNP_TOKEN_ACCESS, ISSUER, KEY, strlen(KEY), NOW), 0);
    free(payload);
    free(big);
}

/* claims */

static void jwt__missing_claims_rejected(void **state)
{
    static const struct {
        znp_token_type_t type;
        const char *claim;
    } cases[] = {
        {ZNP_TOKEN_ACCESS, "sub"},  {ZNP_TOKEN_ACCESS, "iat"},  {ZNP_TOKEN_ACCESS, "exp"},  {ZNP_TOKEN_ACCESS, "iss"},
        {ZNP_TOKEN_ACCESS, "aud"},  {ZNP_TOKEN_ACCESS, "jti"},  {ZNP_TOKEN_ACCESS, "typ"},  {ZNP_TOKEN_ACCESS, "roles"},
        {ZNP_TOKEN_REFRESH, "fam"}, {ZNP_TOKEN_REFRESH, "sub"}, {ZNP_TOKEN_REFRESH, "jti"}, {ZNP_TOKEN_REFRESH, "exp"},
    };
    char token[ZNP_JWT_MAX + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        forge_claim(token, sizeof(token), cases[i].type, cases[i].claim, NULL);
        print_message("without %s\n", cases[i].claim);
        assert_int_equal(verify(token, cases[i].type, NOW), ZNP_E_TOKEN_INVALID);
    }
}

static void jwt__malformed_claims_rejected(void **state)
{
    static const struct {
        znp_token_type_t type;
        const char *claim;
        const char *value;
    } cases[] = {
        {ZNP_TOKEN_ACCESS, "sub", "\"0\""},
        {ZNP_TOKEN_ACCESS, "sub", "\"042\""},
        {ZNP_TOKEN_ACCESS, "sub", "\"-1\""},
        {ZNP_TOKEN_ACCESS, "sub", "\"+1\""},
        {ZNP_TOKEN_ACCESS, "sub", "\"4x\""},
        {ZNP_TOKEN_ACCESS, "sub", "\"\""},
        {ZNP_TOKEN_ACCESS, "sub", "\"9223372036854775808\""},
        {ZNP_TOKEN_ACCESS, "sub", "42"},
        {ZNP_TOKEN_ACCESS, "iat", "\"1764806400\""},
        {ZNP_TOKEN_ACCESS, "iat", "1764806400.0"},
        {ZNP_TOKEN_ACCESS, "exp", "1764807300.5"},
        {ZNP_TOKEN_ACCESS, "exp", "null"},
        {ZNP_TOKEN_ACCESS, "nbf", "\"0\""},
        {ZNP_TOKEN_ACCESS, "jti", "\"not-a-uuid\""},
        {ZNP_TOKEN_ACCESS, "jti", "\"0B7E8F62-1C2D-4E5F-8A9B-0C1D2E3F4A5B\""},
        {ZNP_TOKEN_ACCESS, "jti", "7"},
        {ZNP_TOKEN_ACCESS, "typ", "\"ACCESS\""},
        {ZNP_TOKEN_ACCESS, "typ", "\"id\""},
        {ZNP_TOKEN_ACCESS, "roles", "\"admin\""},
        {ZNP_TOKEN_ACCESS, "roles", "[1]"},
        {ZNP_TOKEN_ACCESS, "roles", "[\"\"]"},
        {ZNP_TOKEN_ACCESS, "roles", "[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]"},
        {ZNP_TOKEN_ACCESS, "roles", "[\"a-role-name-that-is-32-bytes-xxx\"]"},
        {ZNP_TOKEN_ACCESS, "iss", "\"other\""},
        {ZNP_TOKEN_ACCESS, "iss", "null"},
        {ZNP_TOKEN_ACCESS, "aud", "\"other\""},
        {ZNP_TOKEN_ACCESS, "aud", "[\"other\"]"},
        {ZNP_TOKEN_ACCESS, "aud", "5"},
        {ZNP_TOKEN_REFRESH, "fam", "\"family\""},
        {ZNP_TOKEN_REFRESH, "fam", "null"},
    };
    char token[ZNP_JWT_MAX + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        forge_claim(token, sizeof(token), cases[i].type, cases[i].claim, cases[i].value);
        print_message("%s = %s\n", cases[i].claim, cases[i].value);
        assert_int_equal(verify(token, cases[i].type, NOW), ZNP_E_TOKEN_INVALID);
    }
}

static void jwt__audience_array_accepted(void **state)
{
    char token[ZNP_JWT_MAX + 1];

    (void)state;
    forge_claim(token, sizeof(token), ZNP_TOKEN_ACCESS, "aud", "[\"other\",\"znp\"]");
    assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), 0);
}

static void jwt__wrong_issuer_rejected(void **state)
{
    znp_jwt_claims_t in = access_claims(), out;
    char token[ZNP_JWT_MAX + 1];

    (void)state;
    assert_int_equal(znp_jwt_sign(token, sizeof(token), &in, "another-panel", KEY, strlen(KEY)), 0);
    assert_int_equal(znp_jwt_verify(&out, token, strlen(token), ZNP_TOKEN_ACCESS, ISSUER, KEY, strlen(KEY), NOW),
                     ZNP_E_TOKEN_INVALID);
    assert_int_equal(
        znp_jwt_verify(&out, token, strlen(token), ZNP_TOKEN_ACCESS, "another-panel", KEY, strlen(KEY), NOW), 0);
}

static void jwt__payload_shape_checked(void **state)
{
    static const char *const payloads[] = {
        "[]",
        "null",
        "\"sub\"",
        "{",
        "{\"iss\":\"znp\",\"aud\":\"znp\",\"sub\":\"42\",\"sub\":\"1\",\"iat\":1764806400,\"exp\":1764807300,"
        "\"jti\":\"" JTI "\",\"typ\":\"access\",\"roles\":[]}",
    };
    char token[ZNP_JWT_MAX + 1];

    (void)state;
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        forge(token, sizeof(token), HEADER, payloads[i], KEY);
        print_message("payload %s\n", payloads[i]);
        assert_int_equal(verify(token, ZNP_TOKEN_ACCESS, NOW), ZNP_E_TOKEN_INVALID);
    }
}

static void jwt__sign_rejects_bad_input(void **state)
{
    znp_jwt_claims_t claims;
    char token[ZNP_JWT_MAX + 1];

    (void)state;
    claims = access_claims();
    claims.user_id = 0;
    assert_int_equal(znp_jwt_sign(token, sizeof(token), &claims, ISSUER, KEY, strlen(KEY)), ZNP_E_INTERNAL);

    claims = access_claims();
    claims.expires_at = claims.issued_at;
    assert_int_equal(znp_jwt_sign(token, sizeof(token), &claims, ISSUER, KEY, strlen(KEY)), ZNP_E_INTERNAL);

    claims = access_claims();
    memcpy(claims.jti, "x", 2);
    assert_int_equal(znp_jwt_sign(token, sizeof(token), &claims, ISSUER, KEY, strlen(KEY)), ZNP_E_INTERNAL);

    claims = access_claims();
    claims.type = ZNP_TOKEN_REFRESH; /* without a family */
    assert_int_equal(znp_jwt_sign(token, sizeof(token), &claims, ISSUER, KEY, strlen(KEY)), ZNP_E_INTERNAL);

    claims = access_claims();
    assert_int_equal(znp_jwt_sign(token, sizeof(token), &claims, ISSUER, KEY, 0), ZNP_E_INTERNAL);
    assert_int_equal(znp_jwt_sign(token, 64, &claims, ISSUER, KEY, strlen(KEY)), ZNP_E_INTERNAL);
    assert_string_equal(token, "");
}

static void uuid__v4_format_valid(void **state)
{
    char a[ZNP_UUID_LEN + 1], b[ZNP_UUID_LEN + 1];

    (void)state;
    assert_int_equal(znp_uuid_v4(a), 0);
    assert_int_equal(znp_uuid_v4(b), 0);
    assert_int_equal(strlen(a), ZNP_UUID_LEN);
    assert_int_equal(a[8], '-');
    assert_int_equal(a[13], '-');
    assert_int_equal(a[18], '-');
    assert_int_equal(a[23], '-');
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
    assert_string_not_equal(a, b);
    for (size_t i = 0; i < ZNP_UUID_LEN; i++) {
        if (a[i] != '-')
            assert_non_null(strchr("0123456789abcdef", a[i]));
    }
}

int run_jwt_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(jwt__access_round_trip_succeeds),
        cmocka_unit_test(jwt__header_is_exact_succeeds),
        cmocka_unit_test(jwt__refresh_round_trip_succeeds),
        cmocka_unit_test(jwt__expiry_boundaries_checked),
        cmocka_unit_test(jwt__not_yet_valid_rejected),
        cmocka_unit_test(jwt__wrong_key_rejected),
        cmocka_unit_test(jwt__tampered_payload_rejected),
        cmocka_unit_test(jwt__tampered_signature_rejected),
        cmocka_unit_test(jwt__foreign_headers_rejected),
        cmocka_unit_test(jwt__alg_none_unsigned_rejected),
        cmocka_unit_test(jwt__type_swap_rejected),
        cmocka_unit_test(jwt__bad_base64url_rejected),
        cmocka_unit_test(jwt__noncanonical_base64url_rejected),
        cmocka_unit_test(jwt__segment_count_checked),
        cmocka_unit_test(jwt__oversized_or_nul_token_rejected),
        cmocka_unit_test(jwt__missing_claims_rejected),
        cmocka_unit_test(jwt__malformed_claims_rejected),
        cmocka_unit_test(jwt__audience_array_accepted),
        cmocka_unit_test(jwt__wrong_issuer_rejected),
        cmocka_unit_test(jwt__payload_shape_checked),
        cmocka_unit_test(jwt__sign_rejects_bad_input),
        cmocka_unit_test(uuid__v4_format_valid),
    };

    return cmocka_run_group_tests_name("jwt", tests, NULL, NULL);
}
