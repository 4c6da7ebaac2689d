/*
 * AES-256-GCM sealing of secrets at rest, see crypto.h for the format.
 */
#include "crypto.h"

#include <ctype.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#include "errors.gen.h"

int znp_crypto_key_decode(uint8_t key[ZNP_CRYPTO_KEY_LEN], const char *text)
{
    /* 32 bytes are 44 base64 characters ending in one '=' */
    unsigned char decoded[48];
    const char *start, *end;
    int n;

    if (text == NULL)
        return ZNP_E_VALIDATION_FAILED;
    start = text;
    while (isspace((unsigned char)*start))
        start++;
    end = start + strlen(start);
    while (end > start && isspace((unsigned char)end[-1]))
        end--;
    if (end - start != 44 || end[-1] != '=' || end[-2] == '=')
        return ZNP_E_VALIDATION_FAILED;

    /* EVP_DecodeBlock counts padding as zero bytes: 44 characters always give 33 */
    n = EVP_DecodeBlock(decoded, (const unsigned char *)start, 44);
    if (n != 33) {
        OPENSSL_cleanse(decoded, sizeof decoded);
        return ZNP_E_VALIDATION_FAILED;
    }
    memcpy(key, decoded, ZNP_CRYPTO_KEY_LEN);
    OPENSSL_cleanse(decoded, sizeof decoded);
    return 0;
}

int znp_crypto_seal(uint8_t *out, size_t out_size, size_t *out_len, const uint8_t key[ZNP_CRYPTO_KEY_LEN],
                    const void *plain, size_t len, const void *aad, size_t aad_len)
{
    EVP_CIPHER_CTX *cipher = NULL;
    uint8_t *nonce = out + 1;
    uint8_t *body = out + 1 + ZNP_CRYPTO_NONCE_LEN;
    int n = 0, rc = ZNP_E_INTERNAL;

    *out_len = 0;
    if (len > INT_MAX - ZNP_CRYPTO_OVERHEAD || aad_len > INT_MAX || out_size < len + ZNP_CRYPTO_OVERHEAD)
        return ZNP_E_INTERNAL;

    /* version and nonce */
    out[0] = ZNP_CRYPTO_VERSION;
    if (RAND_bytes(nonce, ZNP_CRYPTO_NONCE_LEN) != 1)
        return ZNP_E_INTERNAL;

    /* encrypt, then append the tag */
    cipher = EVP_CIPHER_CTX_new();
    if (cipher == NULL)
        goto cleanup;
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(cipher, EVP_CTRL_GCM_SET_IVLEN, ZNP_CRYPTO_NONCE_LEN, NULL) != 1 ||
        EVP_EncryptInit_ex(cipher, NULL, NULL, key, nonce) != 1)
        goto cleanup;
    if (aad_len > 0 && EVP_EncryptUpdate(cipher, NULL, &n, aad, (int)aad_len) != 1)
        goto cleanup;
    if (len > 0 && EVP_EncryptUpdate(cipher, body, &n, plain, (int)len) != 1)
        goto cleanup;
    if (EVP_EncryptFinal_ex(cipher, body + len, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(cipher, EVP_CTRL_GCM_GET_TAG, ZNP_CRYPTO_TAG_LEN, body + len) != 1)
        goto cleanup;
    *out_len = len + ZNP_CRYPTO_OVERHEAD;
    rc = 0;

cleanup:
    EVP_CIPHER_CTX_free(cipher);
    if (rc != 0)
        OPENSSL_cleanse(out, out_size < len + ZNP_CRYPTO_OVERHEAD ? out_size : len + ZNP_CRYPTO_OVERHEAD);
    return rc;
}

int znp_crypto_open(uint8_t *out, size_t out_size, size_t *out_len, const uint8_t key[ZNP_CRYPTO_KEY_LEN],
                    const uint8_t *sealed, size_t len, const void *aad, size_t aad_len)
{
    EVP_CIPHER_CTX *cipher = NULL;
    const uint8_t *nonce = sealed + 1;
    const uint8_t *body = sealed + 1 + ZNP_CRYPTO_NONCE_LEN;
    uint8_t tag[ZNP_CRYPTO_TAG_LEN];
    size_t plain_len = 0;
    int n = 0, rc = ZNP_E_INTERNAL;

    *out_len = 0;
    if (len < ZNP_CRYPTO_OVERHEAD || len > INT_MAX || aad_len > INT_MAX || sealed[0] != ZNP_CRYPTO_VERSION)
        return ZNP_E_INTERNAL;
    plain_len = len - ZNP_CRYPTO_OVERHEAD;
    if (out_size < plain_len)
        return ZNP_E_INTERNAL;
    memcpy(tag, body + plain_len, ZNP_CRYPTO_TAG_LEN);

    cipher = EVP_CIPHER_CTX_new();
    if (cipher == NULL)
        goto cleanup;
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
        EVP_CIPHER_CTX_ctrl(cipher, EVP_CTRL_GCM_SET_IVLEN, ZNP_CRYPTO_NONCE_LEN, NULL) != 1 ||
        EVP_DecryptInit_ex(cipher, NULL, NULL, key, nonce) != 1)
        goto cleanup;
    if (aad_len > 0 && EVP_DecryptUpdate(cipher, NULL, &n, aad, (int)aad_len) != 1)
        goto cleanup;
    if (plain_len > 0 && EVP_DecryptUpdate(cipher, out, &n, body, (int)plain_len) != 1)
        goto cleanup;
    if (EVP_CIPHER_CTX_ctrl(cipher, EVP_CTRL_GCM_SET_TAG, ZNP_CRYPTO_TAG_LEN, tag) != 1)
        goto cleanup;
    /* the tag is checked here; until it passes, `out` holds unauthenticated bytes */
    if (EVP_DecryptFinal_ex(cipher, out + plain_len, &n) != 1)
        goto cleanup;
    *out_len = plain_len;
    rc = 0;

cleanup:
    EVP_CIPHER_CTX_free(cipher);
    if (rc != 0 && plain_len > 0 && out_size >= plain_len)
        OPENSSL_cleanse(out, plain_len);
    return rc;
}
