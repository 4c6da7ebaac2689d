/*
 * Re-encryption of stored credentials: the master-key rotation and the
 * upgrade of rows written before the reference format.
 */
#include "identity/identity.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "auth/sql.h"
#include "core/log.h"
#include "errors.gen.h"

#define LOG_TAG "identity"

static const char SQL_ALL[] =
    "SELECT id, user_id, version, secret_sealed FROM user_credentials ORDER BY id FOR UPDATE";

/* rows without ':' are in the format of core/crypto; 1000 a pass keeps one transaction short */
static const char SQL_LEGACY[] = "SELECT id, user_id, version, secret_sealed FROM user_credentials"
                                 " WHERE strpos(secret_sealed, ':') = 0 ORDER BY id LIMIT 1000 FOR UPDATE";

static const char SQL_UPDATE[] = "UPDATE user_credentials SET key_id = $2, secret_sealed = $3, fingerprint = $4,"
                                 " updated_at = now() WHERE id = $1";

int znp_identity_rekey(PGconn *db, const char *old_key, const char *legacy_key, const char *new_key, int legacy_only,
                       int64_t *count, const char *request_id)
{
    uint8_t seed[ZNP_IDENTITY_SEED_LEN];
    char key_id[9], sealed[ZNP_IDENTITY_SEALED_MAX], fingerprint[65];
    const char *params[4] = {NULL, key_id, sealed, fingerprint};
    PGresult *res = NULL;
    int64_t done = 0;
    int rc;

    if (count != NULL)
        *count = 0;
    if (old_key == NULL || new_key == NULL || legacy_key == NULL)
        return ZNP_E_INTERNAL;
    rc = znp_sql_exec(&res, db, legacy_only ? SQL_LEGACY : SQL_ALL, 0, NULL, request_id);
    for (int row = 0; rc == 0 && row < PQntuples(res); row++) {
        int64_t user_id = znp_sql_int64(res, row, 1), version = znp_sql_int64(res, row, 2);
        const char *text = PQgetvalue(res, row, 3);

        params[0] = PQgetvalue(res, row, 0);
        if (znp_identity_open(strchr(text, ':') != NULL ? old_key : legacy_key, user_id, version, text, seed) != 0) {
            ZNP_ERROR(LOG_TAG, request_id, "credential %s of user %lld version %lld does not open with the old key",
                      params[0], (long long)user_id, (long long)version);
            if (legacy_only)
                continue;
            rc = ZNP_E_INTERNAL;
            break;
        }
        rc = znp_identity_seal(new_key, user_id, seed, key_id, sealed, fingerprint);
        if (rc == 0)
            rc = znp_sql_exec(NULL, db, SQL_UPDATE, 4, params, request_id);
        if (rc == 0)
            done++;
    }
    PQclear(res);
    OPENSSL_cleanse(seed, sizeof(seed));
    OPENSSL_cleanse(sealed, sizeof(sealed));
    if (rc == 0 && count != NULL)
        *count = done;
    return rc;
}

int znp_identity_upgrade(PGconn *db, const znp_config_t *config)
{
    const char *key = znp_identity_key(config);
    int64_t count = 0;
    int rc;

    if (key == NULL || config->security.master_key == NULL)
        return 0;
    rc = znp_identity_rekey(db, key, config->security.master_key, key, 1, &count, NULL);
    if (rc == 0 && count > 0)
        ZNP_INFO(LOG_TAG, NULL, "identity.upgrade rewrote %lld credentials in the reference format", (long long)count);
    return rc;
}
