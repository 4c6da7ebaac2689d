#include "auth/jwt.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#define SIGNATURE_LEN 32 /* HMAC-SHA256 output */

/* the only header we issue or accept, byte for byte */
static const char HEADER_JSON[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Encode without padding. Returns the encoded length, or 0 when out is too small. */
static size_t b64url_encode(char *out, size_t out_size, const unsigned char *in, size_t len)
{
    size_t need = (len / 3) * 4 + (len % 3 ? len % 3 + 1 : 0);
    size_t o = 0, i = 0;

    if (need + 1 > out_size)
        return 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
        out[o++] = B64URL[v >> 6 & 63];
        out[o++] = B64URL[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
        out[o++] = B64URL[v >> 6 & 63];
    }
    out[o] = '\0';
    return o;
}

static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/*
 * Decode unpadded base64url. Rejects padding, characters outside the URL-safe
 * alphabet, an impossible length and non-zero trailing bits, so every byte
 * string has exactly one accepted encoding. Returns the decoded length or -1.
 */
static long b64url_decode(unsigned char *out, size_t out_size, const char *in, size_t len)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;

    if (len % 4 == 1 || (len * 3) / 4 > out_size)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (acc != 0) /* leftover bits of the last character must be zero */
        return -1;
    return (long)o;
}

static int hmac_sha256(unsigned char out[SIGNATURE_LEN], const void *key, size_t key_len, const char *data, size_t len)
{
    unsigned int out_len = 0;

    if (key == NULL || key_len == 0 || key_len > INT32_MAX)
        return ZNP_E_INTERNAL;
    if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, len, out, &out_len) == NULL ||
        out_len != SIGNATURE_LEN)
        return ZNP_E_INTERNAL;
    return 0;
}

int znp_uuid_v4(char out[ZNP_UUID_LEN + 1])
{
    unsigned char b[16];
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (RAND_bytes(b, sizeof(b)) != 1)
        return ZNP_E_INTERNAL;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
    return 0;
}

static int is_uuid(const char *s)
{
    if (strlen(s) != ZNP_UUID_LEN)
        return 0;
    for (size_t i = 0; i < ZNP_UUID_LEN; i++) {
        int dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return 1;
}

static const char *type_name(znp_token_type_t type)
{
    switch (type) {
    case ZNP_TOKEN_ACCESS:
        return "access";
    case ZNP_TOKEN_REFRESH:
        return "refresh";
    case ZNP_TOKEN_MFA:
        return "mfa";
    }
    return "";
}

static json_t *claims_to_json(const znp_jwt_claims_t *claims, const char *issuer)
{
    json_t *payload = json_object();
    char sub[24];
    int failed = 0;

    if (payload == NULL)
        return NULL;
    snprintf(sub, sizeof(sub), "%lld", (long long)claims->user_id);
    failed |= json_object_set_new(payload, "iss", json_string(issuer));
    failed |= json_object_set_new(payload, "aud", json_string(issuer));
    failed |= json_object_set_new(payload, "sub", json_string(sub));
    failed |= json_object_set_new(payload, "iat", json_integer(claims->issued_at));
    if (claims->not_before != 0)
        failed |= json_object_set_new(payload, "nbf", json_integer(claims->not_before));
    failed |= json_object_set_new(payload, "exp", json_integer(claims->expires_at));
    failed |= json_object_set_new(payload, "jti", json_string(claims->jti));
    failed |= json_object_set_new(payload, "typ", json_string(type_name(claims->type)));

    if (claims->type == ZNP_TOKEN_ACCESS) {
        json_t *roles = json_array();
        failed |= json_object_set_new(payload, "roles", roles);
        for (size_t i = 0; roles != NULL && i < claims->role_count; i++)
            failed |= json_array_append_new(roles, json_string(claims->roles[i]));
    } else if (claims->type == ZNP_TOKEN_REFRESH) {
        failed |= json_object_set_new(payload, "fam", json_string(claims->family));
    }

    if (failed) {
        json_decref(payload);
        return NULL;
    }
    return payload;
}

int znp_jwt_sign(char *out, size_t out_size, const znp_jwt_claims_t *claims, const char *issuer, const void *key,
                 size_t key_len)
{
    json_t *payload = NULL;
    char *payload_json = NULL;
    unsigned char signature[SIGNATURE_LEN];
    size_t used, n;
    int rc = ZNP_E_INTERNAL;

    /* check the claims we are asked to sign */
    if (claims->type != ZNP_TOKEN_ACCESS && claims->type != ZNP_TOKEN_REFRESH && claims->type != ZNP_TOKEN_MFA)
        goto cleanup;
    if (claims->user_id <= 0 || claims->expires_at <= claims->issued_at || !is_uuid(claims->jti))
        goto cleanup;
    if (claims->type == ZNP_TOKEN_REFRESH && !is_uuid(claims->family))
        goto cleanup;
    if (claims->role_count > ZNP_ROLES_MAX || issuer == NULL)
        goto cleanup;

    /* header.payload */
    payload = claims_to_json(claims, issuer);
    if (payload == NULL)
        goto cleanup;
    payload_json = json_dumps(payload, JSON_COMPACT);
    if (payload_json == NULL)
        goto cleanup;
    used = b64url_encode(out, out_size, (const unsigned char *)HEADER_JSON, sizeof(HEADER_JSON) - 1);
    if (used == 0 || used + 1 >= out_size)
        goto cleanup;
    out[used++] = '.';
    n = b64url_encode(out + used, out_size - used, (const unsigned char *)payload_json, strlen(payload_json));
    if (n == 0)
        goto cleanup;
    used += n;

    /* .signature */
    if (hmac_sha256(signature, key, key_len, out, used) != 0 || used + 1 >= out_size)
        goto cleanup;
    out[used++] = '.';
    n = b64url_encode(out + used, out_size - used, signature, sizeof(signature));
    if (n == 0 || used + n > ZNP_JWT_MAX)
        goto cleanup;
    rc = 0;

cleanup:
    if (rc != 0 && out_size > 0)
        out[0] = '\0';
    OPENSSL_cleanse(signature, sizeof(signature));
    free(payload_json);
    json_decref(payload);
    return rc;
}

/* Read a required positive integer claim. Returns 0 or -1. */
static int claim_integer(json_t *payload, const char *name, int64_t *out)
{
    json_t *v = json_object_get(payload, name);

    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return -1;
    *out = json_integer_value(v);
    return 0;
}

/* Copy a required string claim that must be a canonical UUID. */
static int claim_uuid(json_t *payload, const char *name, char out[ZNP_UUID_LEN + 1])
{
    const char *s = json_string_value(json_object_get(payload, name));

    if (s == NULL || !is_uuid(s))
        return -1;
    memcpy(out, s, ZNP_UUID_LEN + 1);
    return 0;
}

/* sub: a positive decimal int64 without sign or leading zeros */
static int claim_subject(json_t *payload, int64_t *out)
{
    json_t *v = json_object_get(payload, "sub");
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    int64_t value = 0;

    if (s == NULL || len == 0 || len > 19 || s[0] == '0')
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        if (value > (INT64_MAX - (s[i] - '0')) / 10)
            return -1;
        value = value * 10 + (s[i] - '0');
    }
    *out = value;
    return 0;
}

/* aud may be one string or an array of strings (RFC 7519 section 4.1.3) */
static int audience_matches(json_t *aud, const char *issuer)
{
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), issuer) == 0;
    if (!json_is_array(aud))
        return 0;
    for (size_t i = 0; i < json_array_size(aud); i++) {
        json_t *item = json_array_get(aud, i);
        if (json_is_string(item) && strcmp(json_string_value(item), issuer) == 0)
            return 1;
    }
    return 0;
}

static int claim_roles(json_t *payload, znp_jwt_claims_t *out)
{
    json_t *roles = json_object_get(payload, "roles");

    if (!json_is_array(roles) || json_array_size(roles) > ZNP_ROLES_MAX)
        return -1;
    for (size_t i = 0; i < json_array_size(roles); i++) {
        json_t *item = json_array_get(roles, i);
        size_t len = json_string_length(item);
        if (!json_is_string(item) || len == 0 || len >= sizeof(out->roles[0]))
            return -1;
        memcpy(out->roles[i], json_string_value(item), len + 1);
    }
    out->role_count = json_array_size(roles);
    return 0;
}

static int parse_claims(znp_jwt_claims_t *out, json_t *payload, znp_token_type_t expected, const char *issuer,
                        int64_t now)
{
    const char *typ = json_string_value(json_object_get(payload, "typ"));
    const char *iss = json_string_value(json_object_get(payload, "iss"));
    json_t *nbf = json_object_get(payload, "nbf");

    /* who issued it and for what */
    if (typ == NULL || strcmp(typ, type_name(expected)) != 0)
        return -1;
    out->type = expected;
    if (iss == NULL || strcmp(iss, issuer) != 0 || !audience_matches(json_object_get(payload, "aud"), issuer))
        return -1;
    if (claim_subject(payload, &out->user_id) != 0 || claim_uuid(payload, "jti", out->jti) != 0)
        return -1;

    /* when it is valid */
    if (claim_integer(payload, "iat", &out->issued_at) != 0 || claim_integer(payload, "exp", &out->expires_at) != 0)
        return -1;
    if (nbf != NULL && claim_integer(payload, "nbf", &out->not_before) != 0)
        return -1;
    if (now >= out->expires_at || out->issued_at > now + ZNP_JWT_SKEW_S)
        return -1;
    if (out->not_before != 0 && out->not_before > now + ZNP_JWT_SKEW_S)
        return -1;

    /* what it carries */
    if (expected == ZNP_TOKEN_ACCESS)
        return claim_roles(payload, out);
    if (expected == ZNP_TOKEN_MFA)
        return 0;
    return claim_uuid(payload, "fam", out->family);
}

int znp_jwt_verify(znp_jwt_claims_t *out, const char *token, size_t len, znp_token_type_t expected, const char *issuer,
                   const void *key, size_t key_len, int64_t now)
{
    unsigned char header[sizeof(HEADER_JSON)];
    unsigned char signature[SIGNATURE_LEN + 3];
    unsigned char expected_signature[SIGNATURE_LEN];
    unsigned char *payload_raw = NULL;
    json_t *payload = NULL;
    const char *dot1, *dot2;
    long n;
    int rc = ZNP_E_TOKEN_INVALID;

    memset(out, 0, sizeof(*out));
    if (token == NULL || len == 0 || len > ZNP_JWT_MAX || issuer == NULL || memchr(token, '\0', len) != NULL)
        goto cleanup;

    /* split into exactly three segments */
    dot1 = memchr(token, '.', len);
    if (dot1 == NULL)
        goto cleanup;
    dot2 = memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token));
    if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL)
        goto cleanup;

    /* the header must be ours exactly: this rejects alg none, RS256, HS512 and the rest */
    n = b64url_decode(header, sizeof(header), token, (size_t)(dot1 - token));
    if (n != (long)sizeof(HEADER_JSON) - 1 || memcmp(header, HEADER_JSON, (size_t)n) != 0)
        goto cleanup;

    /* signature over header.payload, compared in constant time */
    n = b64url_decode(signature, sizeof(signature), dot2 + 1, len - (size_t)(dot2 + 1 - token));
    if (n != SIGNATURE_LEN)
        goto cleanup;
    if (hmac_sha256(expected_signature, key, key_len, token, (size_t)(dot2 - token)) != 0)
        goto cleanup;
    if (CRYPTO_memcmp(signature, expected_signature, SIGNATURE_LEN) != 0)
        goto cleanup;

    /* payload claims */
    payload_raw = malloc((size_t)(dot2 - dot1));
    if (payload_raw == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    n = b64url_decode(payload_raw, (size_t)(dot2 - dot1), dot1 + 1, (size_t)(dot2 - dot1 - 1));
    if (n <= 0)
        goto cleanup;
    payload = json_loadb((const char *)payload_raw, (size_t)n, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(payload))
        goto cleanup;
    if (parse_claims(out, payload, expected, issuer, now) != 0)
        goto cleanup;
    rc = 0;

cleanup:
    if (rc != 0)
        memset(out, 0, sizeof(*out));
    OPENSSL_cleanse(expected_signature, sizeof(expected_signature));
    json_decref(payload);
    free(payload_raw);
    return rc;
}
