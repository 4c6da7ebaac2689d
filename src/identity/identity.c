/*
 * Stored identity credentials: lazy creation of version 1 and rotation. At
 * most one active (status 1) row per user is enforced by the partial unique
 * index user_credentials_active_key.
 */
#include "identity/identity.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "auth/sql.h"
#include "core/log.h"
#include "errors.gen.h"

#define LOG_TAG "identity"

static const char SQL_ACTIVE[] =
    "SELECT version, key_id, secret_sealed FROM user_credentials WHERE user_id = $1 AND status = 1";

/* ON CONFLICT without a target also covers (user_id, version) when an older non-active row has that version */
static const char SQL_CREATE[] =
    "INSERT INTO user_credentials (user_id, version, status, key_id, secret_sealed, fingerprint)"
    " SELECT $1, COALESCE(max(version), 0) + 1, 1, $2, $3, $4 FROM user_credentials WHERE user_id = $1"
    " ON CONFLICT DO NOTHING RETURNING version";

static const char SQL_LOCK_NEWEST[] =
    "SELECT id, version FROM user_credentials WHERE user_id = $1 ORDER BY version DESC LIMIT 1 FOR UPDATE";

static const char SQL_DEPRECATE[] = "UPDATE user_credentials SET status = 2, deprecated_at = now(), updated_at = now()"
                                    " WHERE user_id = $1 AND status = 1";

static const char SQL_INSERT_NEXT[] =
    "INSERT INTO user_credentials (user_id, version, status, key_id, secret_sealed, fingerprint, rotated_from_id)"
    " VALUES ($1, $2, 1, $3, $4, $5, $6) RETURNING floor(extract(epoch FROM issued_at))::bigint";

const char *znp_identity_key(const znp_config_t *config)
{
    if (config == NULL)
        return NULL;
    return config->security.credential_key != NULL ? config->security.credential_key : config->security.master_key;
}

int znp_identity_from_row(const znp_config_t *config, int64_t user_id, int64_t version, const char *key_id,
                          const char *secret_sealed, znp_identity_t *out)
{
    uint8_t seed[ZNP_IDENTITY_SEED_LEN];
    int rc;

    if (znp_identity_key(config) == NULL) {
        ZNP_ERROR(LOG_TAG, NULL, "security.credential_key and security.master_key are missing, so credentials cannot be opened");
        return ZNP_E_INTERNAL;
    }
    /* rows in the format before the reference one were sealed under security.master_key */
    rc = znp_identity_open(secret_sealed != NULL && strchr(secret_sealed, ':') == NULL && config->security.master_key != NULL
                               ? config->security.master_key
                               : znp_identity_key(config),
                           user_id, version, secret_sealed, seed);
    if (rc != 0) {
        ZNP_ERROR(LOG_TAG, NULL, "credential of user %lld version %lld (key id %s) does not open with the configured credential key",
                  (long long)user_id, (long long)version, key_id != NULL ? key_id : "none");
        return rc;
    }
    rc = znp_identity_derive(user_id, version, seed, out);
    OPENSSL_cleanse(seed, sizeof(seed));
    return rc;
}

/* A fresh seed sealed for `user_id` under the configured master key. */
static int fresh_secret(const znp_config_t *config, int64_t user_id, uint8_t seed[ZNP_IDENTITY_SEED_LEN],
                        char key_id[9], char sealed[ZNP_IDENTITY_SEALED_MAX], char fingerprint[65])
{
    if (znp_identity_key(config) == NULL)
        return ZNP_E_INTERNAL;
    if (RAND_bytes(seed, ZNP_IDENTITY_SEED_LEN) != 1)
        return ZNP_E_INTERNAL;
    return znp_identity_seal(znp_identity_key(config), user_id, seed, key_id, sealed, fingerprint);
}

int znp_identity_ensure(PGconn *db, const znp_config_t *config, int64_t user_id, znp_identity_t *out,
                        const char *request_id)
{
    uint8_t seed[ZNP_IDENTITY_SEED_LEN];
    char id[24], key_id[9], sealed[ZNP_IDENTITY_SEALED_MAX], fingerprint[65];
    const char *params[4] = {id, key_id, sealed, fingerprint};
    PGresult *res = NULL;
    int rc = 0;

    snprintf(id, sizeof(id), "%lld", (long long)user_id);

    /* a concurrent first use or rotation may win the insert; the next round then reads its row */
    for (int attempt = 0; attempt < 3; attempt++) {
        rc = znp_sql_exec(&res, db, SQL_ACTIVE, 1, params, request_id);
        if (rc != 0)
            goto cleanup;
        if (PQntuples(res) == 1) {
            rc = znp_identity_from_row(config, user_id, znp_sql_int64(res, 0, 0), PQgetvalue(res, 0, 1),
                                       PQgetvalue(res, 0, 2), out);
            goto cleanup;
        }
        PQclear(res);
        res = NULL;

        rc = fresh_secret(config, user_id, seed, key_id, sealed, fingerprint);
        if (rc != 0) {
            ZNP_ERROR(LOG_TAG, request_id, "sealing a new credential for user %lld failed", (long long)user_id);
            goto cleanup;
        }
        rc = znp_sql_exec(&res, db, SQL_CREATE, 4, params, request_id);
        if (rc != 0)
            goto cleanup;
        if (PQntuples(res) == 1) {
            rc = znp_identity_derive(user_id, znp_sql_int64(res, 0, 0), seed, out);
            goto cleanup;
        }
        PQclear(res);
        res = NULL;
    }
    ZNP_ERROR(LOG_TAG, request_id, "no active credential for user %lld after 3 attempts", (long long)user_id);
    rc = ZNP_E_INTERNAL;

cleanup:
    PQclear(res);
    OPENSSL_cleanse(seed, sizeof(seed));
    OPENSSL_cleanse(sealed, sizeof(sealed));
    return rc;
}

int znp_identity_rotate(PGconn *db, const znp_config_t *config, int64_t user_id, znp_identity_t *out,
                        int64_t *issued_at, const char *request_id)
{
    uint8_t seed[ZNP_IDENTITY_SEED_LEN];
    char id[24], version_text[24], from_id[24], key_id[9], sealed[ZNP_IDENTITY_SEALED_MAX], fingerprint[65];
    const char *params[6] = {id, version_text, key_id, sealed, fingerprint, NULL};
    PGresult *res = NULL;
    int64_t version = 1;
    int rc;

    snprintf(id, sizeof(id), "%lld", (long long)user_id);

    /* the newest version, locked so concurrent rotations queue */
    rc = znp_sql_exec(&res, db, SQL_LOCK_NEWEST, 1, params, request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) == 1) {
        version = znp_sql_int64(res, 0, 1) + 1;
        snprintf(from_id, sizeof(from_id), "%s", PQgetvalue(res, 0, 0));
        params[5] = from_id;
    }
    PQclear(res);
    res = NULL;
    rc = znp_sql_exec(NULL, db, SQL_DEPRECATE, 1, params, request_id);
    if (rc != 0)
        goto cleanup;

    rc = fresh_secret(config, user_id, seed, key_id, sealed, fingerprint);
    if (rc != 0) {
        ZNP_ERROR(LOG_TAG, request_id, "sealing a new credential for user %lld failed", (long long)user_id);
        goto cleanup;
    }
    snprintf(version_text, sizeof(version_text), "%lld", (long long)version);
    rc = znp_sql_exec(&res, db, SQL_INSERT_NEXT, 6, params, request_id);
    if (rc != 0)
        goto cleanup;
    rc = znp_identity_derive(user_id, version, seed, out);
    if (rc == 0 && issued_at != NULL)
        *issued_at = znp_sql_int64(res, 0, 0);

cleanup:
    PQclear(res);
    OPENSSL_cleanse(seed, sizeof(seed));
    OPENSSL_cleanse(sealed, sizeof(sealed));
    return rc;
}
