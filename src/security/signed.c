/*
 * The signed third-party API check: canonical string, HMAC-SHA256, the
 * timestamp window, the nonce record and the optional AES-256-GCM body.
 */
#include "security/internal.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/sql.h"
#include "core/log.h"

#define LOG_TAG "signed"

/* each instance deletes expired nonces at most once per interval, after a request that recorded one */
#define PURGE_INTERVAL_S 60

static size_t base64_len(size_t len)
{
    return (len + 2) / 3 * 4;
}

int znp_signed_canonical(znp_arena_t *arena, const znp_signed_request_t *in, char **out, size_t *out_len)
{
    const char *method = in->method != NULL ? in->method : "";
    const char *timestamp = in->timestamp != NULL ? in->timestamp : "";
    const char *nonce = in->nonce != NULL ? in->nonce : "";
    size_t method_len = strlen(method), ts_len = strlen(timestamp), nonce_len = strlen(nonce);
    size_t body64 = base64_len(in->body_len);
    size_t total = method_len + in->path_len + in->query_len + ts_len + nonce_len + body64 + 5;
    char *text = znp_arena_alloc(arena, total + 1);
    char *p = text;

    if (text == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < method_len; i++)
        *p++ = (method[i] >= 'a' && method[i] <= 'z') ? (char)(method[i] - 'a' + 'A') : method[i];
    *p++ = '\n';
    if (in->path_len > 0)
        memcpy(p, in->path, in->path_len);
    p += in->path_len;
    *p++ = '\n';
    if (in->query_len > 0)
        memcpy(p, in->query, in->query_len);
    p += in->query_len;
    *p++ = '\n';
    memcpy(p, timestamp, ts_len);
    p += ts_len;
    *p++ = '\n';
    memcpy(p, nonce, nonce_len);
    p += nonce_len;
    *p++ = '\n';
    if (in->body_len > 0)
        EVP_EncodeBlock((unsigned char *)p, (const unsigned char *)in->body, (int)in->body_len);
    p += body64;
    *p = '\0';
    *out = text;
    *out_len = (size_t)(p - text);
    return 0;
}

int znp_signed_sign(char out[ZNP_SIGNED_SIGNATURE_LEN + 1], const char *secret, const void *data, size_t len)
{
    uint8_t mac[32];
    unsigned int mac_len = 0;

    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), data, len, mac, &mac_len) == NULL || mac_len != 32)
        return ZNP_E_INTERNAL;
    EVP_EncodeBlock((unsigned char *)out, mac, 32);
    out[ZNP_SIGNED_SIGNATURE_LEN] = '\0';
    return 0;
}

static void body_key(uint8_t key[32], const char *secret)
{
    SHA256((const unsigned char *)secret, strlen(secret), key);
}

int znp_signed_encrypt(uint8_t *out, const char *secret, const uint8_t iv[ZNP_SIGNED_IV_LEN], const void *plain,
                       size_t len)
{
    EVP_CIPHER_CTX *cipher = EVP_CIPHER_CTX_new();
    uint8_t key[32];
    int n = 0, tail = 0, rc = ZNP_E_INTERNAL;

    body_key(key, secret);
    if (cipher == NULL || len > INT32_MAX)
        goto cleanup;
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_gcm(), NULL, key, iv) != 1)
        goto cleanup;
    if (len > 0 && EVP_EncryptUpdate(cipher, out, &n, plain, (int)len) != 1)
        goto cleanup;
    if (EVP_EncryptFinal_ex(cipher, out + n, &tail) != 1)
        goto cleanup;
    if (EVP_CIPHER_CTX_ctrl(cipher, EVP_CTRL_GCM_GET_TAG, ZNP_SIGNED_TAG_LEN, out + len) != 1)
        goto cleanup;
    rc = 0;

cleanup:
    OPENSSL_cleanse(key, sizeof key);
    EVP_CIPHER_CTX_free(cipher);
    return rc;
}

int znp_signed_decrypt(uint8_t *out, const char *secret, const uint8_t iv[ZNP_SIGNED_IV_LEN], const uint8_t *sealed,
                       size_t len)
{
    EVP_CIPHER_CTX *cipher = NULL;
    uint8_t key[32], tag[ZNP_SIGNED_TAG_LEN];
    size_t plain_len;
    int n = 0, tail = 0, rc = ZNP_E_BODY_DECRYPT_FAILED;

    if (len < ZNP_SIGNED_TAG_LEN || len > INT32_MAX)
        return ZNP_E_BODY_DECRYPT_FAILED;
    plain_len = len - ZNP_SIGNED_TAG_LEN;
    memcpy(tag, sealed + plain_len, sizeof tag);
    body_key(key, secret);
    cipher = EVP_CIPHER_CTX_new();
    if (cipher == NULL)
        goto cleanup;
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_gcm(), NULL, key, iv) != 1)
        goto cleanup;
    if (plain_len > 0 && EVP_DecryptUpdate(cipher, out, &n, sealed, (int)plain_len) != 1)
        goto cleanup;
    if (EVP_CIPHER_CTX_ctrl(cipher, EVP_CTRL_GCM_SET_TAG, ZNP_SIGNED_TAG_LEN, tag) != 1)
        goto cleanup;
    if (EVP_DecryptFinal_ex(cipher, out + n, &tail) != 1) {
        OPENSSL_cleanse(out, plain_len);
        goto cleanup;
    }
    rc = 0;

cleanup:
    OPENSSL_cleanse(key, sizeof key);
    EVP_CIPHER_CTX_free(cipher);
    return rc;
}

/* Strict standard base64 with padding into out (out_size bytes). Returns the byte count, or -1. */
static int decode_base64(uint8_t *out, size_t out_size, const char *text)
{
    size_t len = strlen(text), pad = 0;
    uint8_t buffer[96];
    int n;

    if (len == 0 || len % 4 != 0 || len > 128)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';

        if (c == '=' && i >= len - 2) {
            pad++;
            continue;
        }
        if (!ok || pad > 0)
            return -1;
    }
    n = EVP_DecodeBlock(buffer, (const unsigned char *)text, (int)len);
    if (n < 0 || (size_t)n < pad)
        return -1;
    n -= (int)pad;
    if ((size_t)n > out_size)
        return -1;
    memcpy(out, buffer, (size_t)n);
    return n;
}

int znp_signed_decode_iv(uint8_t iv[ZNP_SIGNED_IV_LEN], const char *text)
{
    uint8_t decoded[ZNP_SIGNED_IV_LEN + 3];
    int n = text != NULL ? decode_base64(decoded, sizeof decoded, text) : -1;

    if (n != ZNP_SIGNED_IV_LEN)
        return ZNP_E_ENCRYPTION_IV_INVALID;
    memcpy(iv, decoded, ZNP_SIGNED_IV_LEN);
    return 0;
}

static int valid_nonce(const char *nonce)
{
    size_t len = strlen(nonce);

    if (len < ZNP_SIGNED_NONCE_MIN || len > ZNP_SIGNED_NONCE_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = nonce[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return 0;
    }
    return 1;
}

/* Decimal Unix seconds, at most 12 digits. Returns 0 or -1. */
static int parse_timestamp(const char *text, int64_t *out)
{
    int64_t value = 0;
    size_t len = strlen(text);

    if (len == 0 || len > 12)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        value = value * 10 + (text[i] - '0');
    }
    *out = value;
    return 0;
}

static int equal_text(const char *a, const char *b)
{
    size_t len = strlen(a);

    return len == strlen(b) && CRYPTO_memcmp(a, b, len) == 0;
}

/* Record the nonce. Returns ZNP_E_NONCE_REUSED when this key used it before and that record has not expired. */
static int record_nonce(znp_ctx_t *ctx, const char *api_key, const char *nonce, int ttl)
{
    static const char sql[] = "INSERT INTO api_nonces (api_key, nonce, expires_at)"
                              " VALUES ($1, $2, now() + make_interval(secs => $3::int))"
                              " ON CONFLICT (api_key, nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at"
                              " WHERE api_nonces.expires_at < now()";
    char ttl_text[16];
    const char *params[3] = {api_key, nonce, ttl_text};
    PGresult *res = NULL;
    int rc;

    /* twice the window: a timestamp may lie ttl in the future and still be accepted ttl later */
    snprintf(ttl_text, sizeof ttl_text, "%d", ttl * 2);
    rc = znp_sql_exec(&res, ctx->db, sql, 3, params, ctx->request_id);
    if (rc == 0 && strcmp(PQcmdTuples(res), "1") != 0)
        rc = znp_error_set(ctx->err, ZNP_E_NONCE_REUSED, "X-ZNP-Nonce", "nonce was already used");
    PQclear(res);
    return rc;
}

int znp_security_purge_nonces(PGconn *db, const char *request_id)
{
    static const char sql[] = "DELETE FROM api_nonces WHERE expires_at < now()";
    PGresult *res = NULL;
    int rc = znp_sql_exec(&res, db, sql, 0, NULL, request_id);

    if (rc == 0)
        rc = (int)strtol(PQcmdTuples(res), NULL, 10);
    PQclear(res);
    return rc;
}

static void maybe_purge(znp_ctx_t *ctx, int64_t now)
{
    static _Atomic int64_t last_purge;
    int64_t last = last_purge;

    if (now - last < PURGE_INTERVAL_S || !__atomic_compare_exchange_n(&last_purge, &last, now, 0, __ATOMIC_SEQ_CST,
                                                                       __ATOMIC_SEQ_CST))
        return;
    if (znp_security_purge_nonces(ctx->db, ctx->request_id) < 0)
        ZNP_WARN(LOG_TAG, ctx->request_id, "could not delete expired nonces");
}

static int check_body(znp_ctx_t *ctx, const security_snapshot_t *s, const znp_signed_request_t *in,
                      const char **body, size_t *body_len)
{
    uint8_t iv[ZNP_SIGNED_IV_LEN];
    uint8_t *plain;
    int rc;

    if (in->encrypted == NULL || (strcmp(in->encrypted, "1") != 0 && strcmp(in->encrypted, "true") != 0))
        return 0;
    rc = znp_signed_decode_iv(iv, in->iv);
    if (rc != 0)
        return znp_error_set(ctx->err, rc, "X-ZNP-IV", "must be base64 of exactly 12 bytes");
    if (in->body_len < ZNP_SIGNED_TAG_LEN)
        return znp_error_set(ctx->err, ZNP_E_BODY_DECRYPT_FAILED, NULL, NULL);
    plain = znp_arena_alloc(ctx->arena, in->body_len - ZNP_SIGNED_TAG_LEN + 1);
    if (plain == NULL)
        return znp_error_set(ctx->err, ZNP_E_INTERNAL, NULL, "request arena exhausted");
    rc = znp_signed_decrypt(plain, s->api_secret, iv, (const uint8_t *)in->body, in->body_len);
    if (rc != 0)
        return znp_error_set(ctx->err, rc, NULL, NULL);
    plain[in->body_len - ZNP_SIGNED_TAG_LEN] = '\0';
    *body = (const char *)plain;
    *body_len = in->body_len - ZNP_SIGNED_TAG_LEN;
    return 0;
}

int znp_security_verify(znp_ctx_t *ctx, int group, const znp_signed_request_t *in, const char **body,
                        size_t *body_len)
{
    security_snapshot_t s;
    char expected[ZNP_SIGNED_SIGNATURE_LEN + 1];
    char *canonical = NULL;
    size_t canonical_len = 0;
    int64_t timestamp, now;
    int rc;

    security__cache_get(&s);
    if (!s.enabled || !(s.groups & ZNP_SIGNED_GROUP_BIT(group))) {
        rc = 0;
        goto cleanup;
    }
    if (in->api_key == NULL || in->timestamp == NULL || in->nonce == NULL || in->signature == NULL) {
        rc = znp_error_set(ctx->err, ZNP_E_SIGNATURE_HEADERS_MISSING, NULL, NULL);
        goto cleanup;
    }
    if (!s.loaded || !equal_text(in->api_key, s.api_key)) {
        rc = znp_error_set(ctx->err, ZNP_E_API_KEY_INVALID, "X-ZNP-API-Key", NULL);
        goto cleanup;
    }
    now = ctx->now != NULL ? ctx->now() : (int64_t)time(NULL);
    if (parse_timestamp(in->timestamp, &timestamp) != 0 || timestamp > now + s.nonce_ttl ||
        timestamp < now - s.nonce_ttl) {
        rc = znp_error_set(ctx->err, ZNP_E_TIMESTAMP_OUT_OF_WINDOW, "X-ZNP-Timestamp",
                           "must be Unix seconds within %d seconds of the server clock", s.nonce_ttl);
        goto cleanup;
    }
    if (!valid_nonce(in->nonce)) {
        rc = znp_error_set(ctx->err, ZNP_E_NONCE_INVALID, "X-ZNP-Nonce", NULL);
        goto cleanup;
    }
    rc = znp_signed_canonical(ctx->arena, in, &canonical, &canonical_len);
    if (rc == 0)
        rc = znp_signed_sign(expected, s.api_secret, canonical, canonical_len);
    if (rc != 0) {
        znp_error_set(ctx->err, rc, NULL, NULL);
        goto cleanup;
    }
    if (!equal_text(in->signature, expected)) {
        rc = znp_error_set(ctx->err, ZNP_E_SIGNATURE_INVALID, "X-ZNP-Signature", NULL);
        goto cleanup;
    }
    /* the body is checked before the nonce is spent, so a bad IV does not burn it */
    rc = check_body(ctx, &s, in, body, body_len);
    if (rc != 0)
        goto cleanup;
    rc = record_nonce(ctx, s.api_key, in->nonce, s.nonce_ttl);
    if (rc == 0)
        maybe_purge(ctx, now);

cleanup:
    OPENSSL_cleanse(expected, sizeof expected);
    OPENSSL_cleanse(&s, sizeof s);
    return rc;
}

