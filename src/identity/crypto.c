/*
 * Key derivation, sealing and the identity derivation of identity.h. No
 * database access here, so the unit tests pin these bytes directly.
 */
#include "identity/identity.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "core/crypto.h"
#include "errors.gen.h"

#define NONCE_B64_LEN 16 /* 12 bytes */
#define CIPHER_LEN (ZNP_IDENTITY_SEED_LEN + ZNP_CRYPTO_TAG_LEN)
#define CIPHER_B64_LEN 64 /* 48 bytes */

static void put_le64(uint8_t out[8], int64_t value)
{
    uint64_t v = (uint64_t)value;

    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (8 * i));
}

static void to_hex(char *out, const uint8_t *bytes, size_t len)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

static int hmac_sha256(const uint8_t *key, size_t key_len, const uint8_t *data, size_t len, uint8_t out[32])
{
    unsigned int out_len = 0;

    if (HMAC(EVP_sha256(), key, (int)key_len, data, len, out, &out_len) == NULL || out_len != 32)
        return ZNP_E_INTERNAL;
    return 0;
}

/* HMAC-SHA256(SHA-256(master_key), user id LE64 || purpose); also the key id when key_id is not NULL. */
static int user_key(const char *master_key, int64_t user_id, const char *purpose, uint8_t out[32], char *key_id)
{
    uint8_t root[SHA256_DIGEST_LENGTH], data[8 + 16];
    size_t purpose_len = strlen(purpose);
    int rc;

    if (master_key == NULL || master_key[0] == '\0' || purpose_len > sizeof(data) - 8)
        return ZNP_E_INTERNAL;
    SHA256((const unsigned char *)master_key, strlen(master_key), root);
    if (key_id != NULL)
        to_hex(key_id, root, 4);
    put_le64(data, user_id);
    memcpy(data + 8, purpose, purpose_len);
    rc = hmac_sha256(root, sizeof(root), data, 8 + purpose_len, out);
    OPENSSL_cleanse(root, sizeof(root));
    return rc;
}

/* Unpadded standard base64 of `len` bytes into `out` (size at least 4 * ceil(len / 3) + 1). */
static void encode_raw(char *out, const uint8_t *bytes, size_t len)
{
    int n = EVP_EncodeBlock((unsigned char *)out, bytes, (int)len);

    while (n > 0 && out[n - 1] == '=')
        n--;
    out[n] = '\0';
}

/* Decode `len` characters of base64 (padding optional) into exactly `expected` bytes. */
static int decode_exact(uint8_t *out, size_t expected, const char *text, size_t len)
{
    unsigned char padded[128], decoded[96];
    size_t pad, total;
    int n;

    while (len > 0 && text[len - 1] == '=')
        len--;
    if (len == 0 || len % 4 == 1 || len + 3 > sizeof(padded))
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/'))
            return ZNP_E_INTERNAL;
    }
    pad = (4 - len % 4) % 4;
    memcpy(padded, text, len);
    memset(padded + len, '=', pad);
    total = len + pad;
    n = EVP_DecodeBlock(decoded, padded, (int)total);
    if (n < 0 || (size_t)n < pad || (size_t)n - pad != expected) {
        OPENSSL_cleanse(decoded, sizeof(decoded));
        return ZNP_E_INTERNAL;
    }
    memcpy(out, decoded, expected);
    OPENSSL_cleanse(decoded, sizeof(decoded));
    return 0;
}

int znp_identity_derive(int64_t user_id, int64_t version, const uint8_t seed[ZNP_IDENTITY_SEED_LEN],
                        znp_identity_t *out)
{
    static const char *const labels[] = {"account", "password"};
    uint8_t input[16 + 8], mac[2][32];

    memset(out, 0, sizeof(*out));
    out->user_id = user_id;
    out->version = version;
    put_le64(input, user_id);
    put_le64(input + 8, version);
    for (int i = 0; i < 2; i++) {
        size_t label_len = strlen(labels[i]);
        memcpy(input + 16, labels[i], label_len);
        if (hmac_sha256(seed, ZNP_IDENTITY_SEED_LEN, input, 16 + label_len, mac[i]) != 0) {
            OPENSSL_cleanse(mac, sizeof(mac));
            return ZNP_E_INTERNAL;
        }
    }

    /* RFC 4122 layout: version nibble 4 in byte 6, variant bits 10 in byte 8 */
    mac[0][6] = (uint8_t)((mac[0][6] & 0x0f) | 0x40);
    mac[0][8] = (uint8_t)((mac[0][8] & 0x3f) | 0x80);
    to_hex(out->uuid, mac[0], 4);
    out->uuid[8] = '-';
    to_hex(out->uuid + 9, mac[0] + 4, 2);
    out->uuid[13] = '-';
    to_hex(out->uuid + 14, mac[0] + 6, 2);
    out->uuid[18] = '-';
    to_hex(out->uuid + 19, mac[0] + 8, 2);
    out->uuid[23] = '-';
    to_hex(out->uuid + 24, mac[0] + 10, 6);
    to_hex(out->password, mac[1], 32);
    OPENSSL_cleanse(mac, sizeof(mac));
    return 0;
}

int znp_identity_seal(const char *master_key, int64_t user_id, const uint8_t seed[ZNP_IDENTITY_SEED_LEN],
                      char key_id[9], char sealed[ZNP_IDENTITY_SEALED_MAX], char fingerprint[65])
{
    uint8_t enc_key[32], fp_key[32], aad[8], mac[32];
    uint8_t box[ZNP_IDENTITY_SEED_LEN + ZNP_CRYPTO_OVERHEAD];
    size_t box_len = 0;
    int rc;

    rc = user_key(master_key, user_id, "encryption", enc_key, key_id);
    if (rc == 0)
        rc = user_key(master_key, user_id, "fingerprint", fp_key, NULL);
    if (rc != 0)
        goto cleanup;

    /* core/crypto seals version || nonce || ciphertext || tag; the reference keeps nonce and ciphertext || tag */
    put_le64(aad, user_id);
    rc = znp_crypto_seal(box, sizeof(box), &box_len, enc_key, seed, ZNP_IDENTITY_SEED_LEN, aad, sizeof(aad));
    if (rc != 0 || box_len != sizeof(box)) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    encode_raw(sealed, box + 1, ZNP_CRYPTO_NONCE_LEN);
    sealed[NONCE_B64_LEN] = ':';
    encode_raw(sealed + NONCE_B64_LEN + 1, box + 1 + ZNP_CRYPTO_NONCE_LEN, CIPHER_LEN);

    rc = hmac_sha256(fp_key, sizeof(fp_key), seed, ZNP_IDENTITY_SEED_LEN, mac);
    if (rc == 0)
        to_hex(fingerprint, mac, sizeof(mac));

cleanup:
    OPENSSL_cleanse(enc_key, sizeof(enc_key));
    OPENSSL_cleanse(fp_key, sizeof(fp_key));
    return rc;
}

/* Rows sealed by core/crypto under the decoded master key, before the reference format. */
static int open_legacy(const char *master_key, int64_t user_id, int64_t version, const char *text,
                       uint8_t seed[ZNP_IDENTITY_SEED_LEN])
{
    uint8_t key[ZNP_CRYPTO_KEY_LEN], box[ZNP_IDENTITY_SEED_LEN + ZNP_CRYPTO_OVERHEAD];
    size_t seed_len = 0;
    char aad[64];
    int rc;

    if (znp_crypto_key_decode(key, master_key) != 0)
        return ZNP_E_INTERNAL;
    snprintf(aad, sizeof(aad), "credential:%lld:%lld", (long long)user_id, (long long)version);
    rc = decode_exact(box, sizeof(box), text, strlen(text));
    if (rc == 0)
        rc = znp_crypto_open(seed, ZNP_IDENTITY_SEED_LEN, &seed_len, key, box, sizeof(box), aad, strlen(aad));
    if (rc == 0 && seed_len != ZNP_IDENTITY_SEED_LEN)
        rc = ZNP_E_INTERNAL;
    OPENSSL_cleanse(key, sizeof(key));
    return rc != 0 ? ZNP_E_INTERNAL : 0;
}

int znp_identity_open(const char *master_key, int64_t user_id, int64_t version, const char *secret_sealed,
                      uint8_t seed[ZNP_IDENTITY_SEED_LEN])
{
    uint8_t enc_key[32], aad[8], box[ZNP_IDENTITY_SEED_LEN + ZNP_CRYPTO_OVERHEAD];
    const char *colon;
    size_t seed_len = 0;
    int rc;

    if (secret_sealed == NULL)
        return ZNP_E_INTERNAL;
    colon = strchr(secret_sealed, ':');
    if (colon == NULL)
        return open_legacy(master_key, user_id, version, secret_sealed, seed);

    box[0] = ZNP_CRYPTO_VERSION;
    rc = decode_exact(box + 1, ZNP_CRYPTO_NONCE_LEN, secret_sealed, (size_t)(colon - secret_sealed));
    if (rc == 0)
        rc = decode_exact(box + 1 + ZNP_CRYPTO_NONCE_LEN, CIPHER_LEN, colon + 1, strlen(colon + 1));
    if (rc == 0)
        rc = user_key(master_key, user_id, "encryption", enc_key, NULL);
    if (rc != 0)
        return ZNP_E_INTERNAL;
    put_le64(aad, user_id);
    rc = znp_crypto_open(seed, ZNP_IDENTITY_SEED_LEN, &seed_len, enc_key, box, sizeof(box), aad, sizeof(aad));
    OPENSSL_cleanse(enc_key, sizeof(enc_key));
    if (rc != 0 || seed_len != ZNP_IDENTITY_SEED_LEN)
        return ZNP_E_INTERNAL;
    return 0;
}
