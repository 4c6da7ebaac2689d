/*
 * The pure parts of MFA: base32 (RFC 4648), HOTP (RFC 4226), TOTP
 * (RFC 6238) and recovery-code hashing. No database, no clock.
 */
#include "mfa/mfa.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>

#include "errors.gen.h"

static const char BASE32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/* domain separation: the recovery-code key is never the master key itself */
static const char RECOVERY_KEY_LABEL[] = "znp mfa recovery code v1";

size_t znp_base32_encode(char *out, size_t out_size, const uint8_t *in, size_t len)
{
    size_t text_len = (len * 8 + 4) / 5, n = 0;
    unsigned buffer = 0, bits = 0;

    if (out_size <= text_len)
        return 0;
    for (size_t i = 0; i < len; i++) {
        buffer = (buffer << 8) | in[i];
        bits += 8;
        while (bits >= 5) {
            out[n++] = BASE32[(buffer >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[n++] = BASE32[(buffer << (5 - bits)) & 31];
    out[n] = '\0';
    return n;
}

static int base32_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a';
    if (c >= '2' && c <= '7')
        return c - '2' + 26;
    return -1;
}

long znp_base32_decode(uint8_t *out, size_t out_size, const char *in, size_t len)
{
    unsigned buffer = 0, bits = 0;
    size_t n = 0;

    /* unpadded lengths mod 8 are 0, 2, 4, 5 or 7 */
    if (len % 8 == 1 || len % 8 == 3 || len % 8 == 6)
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = base32_value(in[i]);

        if (v < 0)
            return -1;
        buffer = ((buffer << 5) | (unsigned)v) & 0xfff;
        bits += 5;
        if (bits >= 8) {
            if (n == out_size)
                return -1;
            out[n++] = (uint8_t)(buffer >> (bits - 8));
            bits -= 8;
        }
    }
    /* the bits left over must be the encoder's zero fill */
    if ((buffer & ((1u << bits) - 1)) != 0)
        return -1;
    return (long)n;
}

uint32_t znp_hotp(const uint8_t *key, size_t key_len, uint64_t counter, unsigned digits)
{
    static const uint32_t modulus[] = {1,      10,      100,      1000,      10000,
                                       100000, 1000000, 10000000, 100000000, 1000000000};
    uint8_t message[8], mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0, offset;
    uint32_t binary;

    if (digits == 0 || digits > 9)
        return 0;
    for (int i = 7; i >= 0; i--) {
        message[i] = (uint8_t)(counter & 0xff);
        counter >>= 8;
    }
    if (HMAC(EVP_sha1(), key, (int)key_len, message, sizeof message, mac, &mac_len) == NULL || mac_len != 20)
        return 0;

    /* dynamic truncation, RFC 4226 section 5.3 */
    offset = mac[19] & 0x0f;
    binary = ((uint32_t)(mac[offset] & 0x7f) << 24) | ((uint32_t)mac[offset + 1] << 16) |
             ((uint32_t)mac[offset + 2] << 8) | mac[offset + 3];
    OPENSSL_cleanse(mac, sizeof mac);
    return binary % modulus[digits];
}

int znp_totp_match(int64_t *step_out, const uint8_t *key, size_t key_len, int64_t now, const char *code,
                   int64_t last_used_step)
{
    char expected[ZNP_MFA_DIGITS + 1];
    int64_t step;
    int matched = 0;

    *step_out = 0;
    if (code == NULL || strlen(code) != ZNP_MFA_DIGITS || strspn(code, "0123456789") != ZNP_MFA_DIGITS || now < 0)
        return ZNP_E_MFA_CODE_INVALID;
    step = now / ZNP_MFA_STEP_S;

    /* try every step of the window, so the time taken does not tell which matched */
    for (int64_t s = step - ZNP_MFA_WINDOW; s <= step + ZNP_MFA_WINDOW; s++) {
        if (s < 0)
            continue;
        snprintf(expected, sizeof expected, "%06u", (unsigned)znp_hotp(key, key_len, (uint64_t)s, ZNP_MFA_DIGITS));
        if (CRYPTO_memcmp(expected, code, ZNP_MFA_DIGITS) == 0 && s > last_used_step && !matched) {
            matched = 1;
            *step_out = s;
        }
    }
    OPENSSL_cleanse(expected, sizeof expected);
    return matched ? 0 : ZNP_E_MFA_CODE_INVALID;
}

int znp_mfa_recovery_normalize(char out[9], const char *code)
{
    size_t n = 0;

    for (const char *p = code; *p != '\0'; p++) {
        if (*p == '-' || *p == ' ')
            continue;
        if (base32_value(*p) < 0 || n == 8)
            return ZNP_E_MFA_CODE_INVALID;
        out[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    }
    out[n] = '\0';
    return n == 8 ? 0 : ZNP_E_MFA_CODE_INVALID;
}

int znp_mfa_recovery_hash(char out[65], const uint8_t master_key[32], const char normalized[9])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t key[EVP_MAX_MD_SIZE], mac[EVP_MAX_MD_SIZE];
    unsigned key_len = 0, mac_len = 0;
    int rc = ZNP_E_INTERNAL;

    out[0] = '\0';
    if (HMAC(EVP_sha256(), master_key, 32, (const uint8_t *)RECOVERY_KEY_LABEL, sizeof RECOVERY_KEY_LABEL - 1, key,
             &key_len) == NULL)
        goto cleanup;
    if (HMAC(EVP_sha256(), key, (int)key_len, (const uint8_t *)normalized, strlen(normalized), mac, &mac_len) == NULL ||
        mac_len != 32)
        goto cleanup;
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[64] = '\0';
    rc = 0;

cleanup:
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(mac, sizeof mac);
    return rc;
}
