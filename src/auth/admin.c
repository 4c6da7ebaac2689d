#include "auth/auth.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth_internal.h"
#include "auth/password.h"
#include "auth/sql.h"
#include "core/log.h"

#define LOG_TAG "auth"

/*
 * A new account gets the roles admin and user, status active and a verified
 * email. An existing one keeps its status and other roles, gains admin, and
 * its old tokens stop working because the password changed.
 */
static const char SQL_UPSERT_ADMIN[] =
    "INSERT INTO users (email, display_name, password_hash, roles, status, email_verified_at)"
    " VALUES (lower($1), left(split_part(lower($1), '@', 1), 128), $2, ARRAY['admin', 'user']::text[], 1, now())"
    " ON CONFLICT (lower(email)) DO UPDATE SET"
    "  password_hash = EXCLUDED.password_hash,"
    "  roles = CASE WHEN EXISTS (SELECT 1 FROM unnest(users.roles) AS r WHERE lower(r) = 'admin')"
    "   THEN users.roles ELSE array_append(users.roles, 'admin') END,"
    "  failed_login_attempts = 0, locked_until = NULL, token_invalid_before = " ZNP_SQL_TOKEN_CUTOFF(
        "users.token_invalid_before") ", updated_at = now()"
                                      " RETURNING id, xmax = 0";

int znp_auth_create_admin(PGconn *db, const znp_config_t *config, const char *email, const char *password,
                          int64_t *user_id_out, znp_error_t *err)
{
    char normalized[ZNP_EMAIL_MAX + 1];
    char hash[ZNP_PASSWORD_HASH_MAX];
    const char *params[2] = {normalized, hash};
    PGresult *res = NULL;
    int64_t id = 0;
    int rc;

    /* check input */
    rc = znp_auth_normalize_email(normalized, sizeof(normalized), email, err);
    if (rc != 0)
        goto cleanup;
    rc = znp_password_check_policy(password, strlen(password), normalized, err);
    if (rc != 0)
        goto cleanup;

    /* persist */
    rc = znp_password_hash(hash, sizeof(hash), password, strlen(password), config);
    if (rc != 0)
        goto cleanup;
    rc = znp_sql_exec(&res, db, SQL_UPSERT_ADMIN, 2, params, NULL);
    if (rc != 0 || PQntuples(res) != 1) {
        rc = rc != 0 ? rc : ZNP_E_INTERNAL;
        znp_error_set(err, rc, "email", "could not save the admin account");
        goto cleanup;
    }
    id = znp_sql_int64(res, 0, 0);
    ZNP_INFO(LOG_TAG, NULL, "%s admin account user=%lld", znp_sql_bool(res, 0, 1) ? "created" : "updated",
             (long long)id);

cleanup:
    if (user_id_out != NULL)
        *user_id_out = rc == 0 ? id : 0;
    OPENSSL_cleanse(hash, sizeof(hash));
    PQclear(res);
    return rc;
}
