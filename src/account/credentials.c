/*
 * Proxy-protocol credentials: one versioned identity per user. Rotation
 * deprecates the active version and creates the next one in one transaction.
 * A partial unique index keeps one active version per user, even when two
 * rotations race. The secret seed is sealed with security.master_key and is
 * never part of a response.
 */
#include "account/account.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "config/config.h"
#include "core/crypto.h"
#include "core/log.h"
#include "operations.gen.h"

#define LOG_TAG "account"
#define SEED_LEN 32

static const char SQL_LOCK_ACTIVE[] =
    "SELECT id, version FROM user_credentials WHERE user_id = $1 ORDER BY version DESC LIMIT 1 FOR UPDATE";

static const char SQL_DEPRECATE[] = "UPDATE user_credentials SET status = 2, deprecated_at = now(), updated_at = now()"
                                    " WHERE user_id = $1 AND status = 1";

static const char SQL_INSERT[] =
    "INSERT INTO user_credentials (user_id, version, status, key_id, secret_sealed, fingerprint, rotated_from_id)"
    " VALUES ($1, $2, 1, $3, $4, $5, $6)"
    " RETURNING version, status, floor(extract(epoch FROM issued_at))::bigint";

static void hex(char *out, const unsigned char *bytes, size_t len)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * len] = '\0';
}

/* Seal a fresh seed for (user, version) and fill the key id, the sealed base64 and the fingerprint. */
static int make_secret(const znp_ctx_t *ctx, int64_t user_id, int64_t version, char key_id[9], char *sealed_b64,
                       size_t sealed_b64_size, char fingerprint[65])
{
    uint8_t key[ZNP_CRYPTO_KEY_LEN], seed[SEED_LEN], sealed[SEED_LEN + ZNP_CRYPTO_OVERHEAD];
    unsigned char digest[SHA256_DIGEST_LENGTH], mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    size_t sealed_len = 0;
    char aad[64];
    int rc = ZNP_E_INTERNAL;

    if (znp_crypto_key_decode(key, ctx->config->security.master_key) != 0) {
        ZNP_ERROR(LOG_TAG, ctx->request_id, "security.master_key is missing or malformed");
        return ZNP_E_INTERNAL;
    }
    snprintf(aad, sizeof(aad), "credential:%lld:%lld", (long long)user_id, (long long)version);
    if (RAND_bytes(seed, sizeof(seed)) != 1)
        goto cleanup;
    if (znp_crypto_seal(sealed, sizeof(sealed), &sealed_len, key, seed, sizeof(seed), aad, strlen(aad)) != 0)
        goto cleanup;
    if (sealed_b64_size < 4 * ((sealed_len + 2) / 3) + 1)
        goto cleanup;
    EVP_EncodeBlock((unsigned char *)sealed_b64, sealed, (int)sealed_len);
    SHA256(key, sizeof(key), digest);
    hex(key_id, digest, 4);
    if (HMAC(EVP_sha256(), key, sizeof(key), seed, sizeof(seed), mac, &mac_len) == NULL || mac_len != 32)
        goto cleanup;
    hex(fingerprint, mac, 32);
    rc = 0;

cleanup:
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(seed, sizeof(seed));
    return rc;
}

int znp_account__rotate_credential(znp_ctx_t *ctx, int64_t user_id, znp_credential_summary_t *out)
{
    char id[24], version_text[24], key_id[9], fingerprint[65], sealed_b64[128];
    const char *params[6] = {znp_account__int(id, sizeof(id), user_id)};
    PGresult *res = NULL;
    int64_t version = 1;
    int rc;

    /* the newest version, locked so concurrent rotations queue */
    rc = znp_sql_exec(&res, ctx->db, SQL_LOCK_ACTIVE, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    params[5] = NULL;
    if (PQntuples(res) == 1) {
        version = znp_sql_int64(res, 0, 1) + 1;
        params[5] = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, 0));
        if (params[5] == NULL) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
    }
    PQclear(res);
    res = NULL;
    rc = znp_sql_exec(NULL, ctx->db, SQL_DEPRECATE, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;

    /* the next version */
    rc = make_secret(ctx, user_id, version, key_id, sealed_b64, sizeof(sealed_b64), fingerprint);
    if (rc != 0)
        goto cleanup;
    params[1] = znp_account__int(version_text, sizeof(version_text), version);
    params[2] = key_id;
    params[3] = sealed_b64;
    params[4] = fingerprint;
    rc = znp_sql_exec(&res, ctx->db, SQL_INSERT, 6, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    memset(out, 0, sizeof(*out));
    out->version = znp_sql_int64(res, 0, 0);
    out->status = znp_sql_int64(res, 0, 1);
    out->issued_at = znp_sql_int64(res, 0, 2);

cleanup:
    PQclear(res);
    OPENSSL_cleanse(sealed_b64, sizeof(sealed_b64));
    return rc;
}

/* Rotate in its own transaction with an audit row. */
static int rotate(znp_ctx_t *ctx, int64_t user_id, const char *action, znp_credential_summary_t *out)
{
    char id[24];
    PGresult *res = NULL;
    json_t *diff = NULL;
    int rc = znp_sql_begin(ctx->db, ctx->request_id);

    if (rc != 0)
        return rc;
    rc = znp_account__load(ctx, user_id, 0, 1, &res);
    if (rc == 0 && PQntuples(res) != 1)
        rc = ZNP_E_NOT_FOUND;
    if (rc == 0)
        rc = znp_account__rotate_credential(ctx, user_id, out);
    if (rc == 0) {
        znp_audit_entry_t entry = {0};
        diff = json_pack("{s:I}", "version", (json_int_t)out->version);
        entry.action = action;
        entry.resource_type = "user";
        entry.resource_id = znp_account__int(id, sizeof(id), user_id);
        entry.diff = diff;
        rc = znp_audit_record(ctx, ctx->db, &entry);
    }
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    json_decref(diff);
    PQclear(res);
    return rc;
}

int znp_op_rotate_account_credential(znp_ctx_t *ctx, const znp_rotate_account_credential_request_t *req,
                                     znp_rotate_account_credential_response_t *resp)
{
    (void)req;
    return rotate(ctx, ctx->caller.user_id, "user.credentials.rotate", &resp->credential);
}

int znp_op_rotate_admin_user_credential(znp_ctx_t *ctx, const znp_rotate_admin_user_credential_request_t *req,
                                        znp_rotate_admin_user_credential_response_t *resp)
{
    resp->user_id = req->id;
    return rotate(ctx, req->id, "admin.user.credentials.rotate", &resp->credential);
}
