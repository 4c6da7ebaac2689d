/*
 * Mailed one-time codes, stored as keyed hashes in auth_codes. Only the
 * newest row for a (purpose, email) can be consumed, so issuing a new code
 * retires the older ones without touching them.
 *
 * NOTE: rows are deleted only when the same address gets a new code a day
 * later; addresses that never come back leave their rows behind.
 */
#include "accounts/codes.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "auth/sql.h"
#include "config/config.h"
#include "core/log.h"

#define LOG_TAG "codes"

static const char KEY_LABEL[] = "znp auth codes v1";

/* one lock class for addresses, one for IPs; always taken in this order */
static const char SQL_LOCK[] = "SELECT pg_advisory_xact_lock(7999745, hashtext($1::text || ':' || $2::text)),"
                               " pg_advisory_xact_lock(7999746, hashtext($3::text))";

/*
 * Seconds to wait before the next code may be issued, one column per limit.
 * The columns are the cooldown, the per-address hour cap and the per-IP hour
 * cap (never for the IP ""). A column is 0 when its limit allows a code now.
 */
static const char SQL_LIMITS[] =
    "WITH a AS (SELECT created_at FROM auth_codes"
    "   WHERE purpose = $1 AND email = $2 AND created_at > now() - interval '1 hour'),"
    " i AS (SELECT created_at FROM auth_codes"
    "   WHERE $3::text <> '' AND created_ip = $3::text AND created_at > now() - interval '1 hour')"
    " SELECT"
    "  COALESCE((SELECT ceil(extract(epoch FROM max(created_at) + make_interval(secs => $4::integer) - now()))"
    "   FROM a), 0)::bigint,"
    "  CASE WHEN (SELECT count(*) FROM a) >= $5::integer"
    "   THEN (SELECT ceil(extract(epoch FROM min(created_at) + interval '1 hour' - now())) FROM a) ELSE 0 END::bigint,"
    "  CASE WHEN (SELECT count(*) FROM i) >= $6::integer"
    "   THEN (SELECT ceil(extract(epoch FROM min(created_at) + interval '1 hour' - now())) FROM i) ELSE 0 END::bigint";

static const char SQL_INSERT[] = "INSERT INTO auth_codes (purpose, email, code_hash, created_ip, expires_at)"
                                 " VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5::integer))";

static const char SQL_PRUNE[] =
    "DELETE FROM auth_codes WHERE purpose = $1 AND email = $2 AND created_at < now() - interval '1 day'";

static const char SQL_NEWEST[] =
    "SELECT id, code_hash, attempts, expires_at > now(), consumed_at IS NULL FROM auth_codes"
    " WHERE purpose = $1 AND email = $2 ORDER BY id DESC LIMIT 1 FOR UPDATE";

static const char SQL_CONSUME[] = "UPDATE auth_codes SET consumed_at = now() WHERE id = $1";

/* a wrong try; the max_attempts-th burns the code */
static const char SQL_WRONG_TRY[] = "UPDATE auth_codes SET attempts = attempts + 1,"
                                    " consumed_at = CASE WHEN attempts + 1 >= $2::integer THEN now() END WHERE id = $1";

enum { COL_ID, COL_HASH, COL_ATTEMPTS, COL_LIVE, COL_UNUSED };

const char *znp_codes_purpose_name(znp_code_purpose_t purpose)
{
    switch (purpose) {
    case ZNP_CODE_VERIFY:
        return "verify";
    case ZNP_CODE_RESET:
        return "reset";
    case ZNP_CODE_EMAIL_CHANGE:
        return "email_change";
    }
    return "verify";
}

int znp_codes__well_formed(const char *code)
{
    size_t i;

    if (code == NULL)
        return 0;
    for (i = 0; code[i] != '\0'; i++) {
        if (i == ZNP_CODE_DIGITS || code[i] < '0' || code[i] > '9')
            return 0;
    }
    return i == ZNP_CODE_DIGITS;
}

int znp_codes__generate(char code_out[ZNP_CODE_SIZE])
{
    /* the largest multiple of 10^6 that fits in 32 bits: below it every residue is equally likely */
    const uint32_t limit = 4294000000u;
    uint32_t value;

    do {
        if (RAND_bytes((unsigned char *)&value, sizeof(value)) != 1)
            return ZNP_E_INTERNAL;
    } while (value >= limit);
    snprintf(code_out, ZNP_CODE_SIZE, "%06u", (unsigned)(value % 1000000u));
    return 0;
}

int znp_codes__hash(char out[65], const char *key, size_t key_len, znp_code_purpose_t purpose, const char *email,
                    const char *code)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char derived[EVP_MAX_MD_SIZE], mac[EVP_MAX_MD_SIZE];
    unsigned int derived_len = 0, mac_len = 0;
    const char *name = znp_codes_purpose_name(purpose);
    size_t name_len = strlen(name), email_len = strlen(email), code_len = strlen(code);
    unsigned char message[32 + 1 + 1024 + 1 + 32];
    size_t n = 0;
    int rc = ZNP_E_INTERNAL;

    out[0] = '\0';
    if (key == NULL || key_len == 0 || email_len > 1024 || code_len > 32)
        goto cleanup;

    /* a derived key, so a code hash reveals nothing about the refresh-token key */
    if (HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)KEY_LABEL, sizeof(KEY_LABEL) - 1, derived,
             &derived_len) == NULL)
        goto cleanup;

    /* purpose \0 email \0 code: no two inputs share a message */
    memcpy(message + n, name, name_len + 1);
    n += name_len + 1;
    memcpy(message + n, email, email_len + 1);
    n += email_len + 1;
    memcpy(message + n, code, code_len);
    n += code_len;
    if (HMAC(EVP_sha256(), derived, (int)derived_len, message, n, mac, &mac_len) == NULL || mac_len != 32)
        goto cleanup;
    for (unsigned int i = 0; i < mac_len; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[64] = '\0';
    rc = 0;

cleanup:
    OPENSSL_cleanse(derived, sizeof(derived));
    OPENSSL_cleanse(message, sizeof(message));
    return rc;
}

int znp_codes__equal(const char *a, const char *b)
{
    size_t len = strlen(a);

    if (len != strlen(b))
        return 0;
    return CRYPTO_memcmp(a, b, len) == 0;
}

static int hash_for(znp_ctx_t *ctx, char out[65], znp_code_purpose_t purpose, const char *email, const char *code)
{
    const char *key = ctx->config->auth.refresh_secret;

    return znp_codes__hash(out, key, key != NULL ? strlen(key) : 0, purpose, email, code);
}

static int too_many(znp_ctx_t *ctx, int64_t seconds)
{
    int rc = znp_error_set(ctx->err, ZNP_E_TOO_MANY_REQUESTS, NULL, NULL);

    if (seconds < 1)
        seconds = 1;
    if (seconds > 3600)
        seconds = 3600;
    if (ctx->err != NULL)
        ctx->err->retry_after = (int)seconds;
    return rc;
}

/* Returns 0 when a code may be issued now, ZNP_E_TOO_MANY_REQUESTS or a database error. */
static int check_limits(znp_ctx_t *ctx, PGconn *db, const char *purpose, const char *email, const char *ip)
{
    const znp_config_codes_t *limits = &ctx->config->codes;
    char cooldown[16], per_address[16], per_ip[16];
    const char *params[6] = {purpose, email, ip, cooldown, per_address, per_ip};
    PGresult *res = NULL;
    int64_t wait = 0;
    int rc;

    rc = znp_sql_exec(NULL, db, SQL_LOCK, 3, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    snprintf(cooldown, sizeof(cooldown), "%u", limits->cooldown_s);
    snprintf(per_address, sizeof(per_address), "%u", limits->per_address_per_hour);
    snprintf(per_ip, sizeof(per_ip), "%u", limits->per_ip_per_hour);
    rc = znp_sql_exec(&res, db, SQL_LIMITS, 6, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    for (int column = 0; column < 3; column++) {
        int64_t seconds = znp_sql_int64(res, 0, column);
        if (seconds > wait)
            wait = seconds;
    }
    if (wait > 0) {
        ZNP_INFO(LOG_TAG, ctx->request_id, "code refused by the send limits purpose=%s retry_after=%lld", purpose,
                 (long long)wait);
        rc = too_many(ctx, wait);
    }

cleanup:
    PQclear(res);
    return rc;
}

int znp_codes_issue(znp_ctx_t *ctx, PGconn *db, znp_code_purpose_t purpose, const char *email, const char *ip,
                    char code_out[ZNP_CODE_SIZE])
{
    const char *name = znp_codes_purpose_name(purpose);
    char hash[65], ttl[16];
    const char *params[5] = {name, email, hash, ip != NULL ? ip : "", ttl};
    int rc;

    code_out[0] = '\0';
    rc = check_limits(ctx, db, name, email, params[3]);
    if (rc != 0)
        goto cleanup;

    rc = znp_codes__generate(code_out);
    if (rc == 0)
        rc = hash_for(ctx, hash, purpose, email, code_out);
    if (rc != 0) {
        ZNP_ERROR(LOG_TAG, ctx->request_id, "could not make a code purpose=%s", name);
        goto cleanup;
    }
    snprintf(ttl, sizeof(ttl), "%u", ctx->config->codes.ttl_s);
    rc = znp_sql_exec(NULL, db, SQL_PRUNE, 2, params, ctx->request_id);
    if (rc == 0)
        rc = znp_sql_exec(NULL, db, SQL_INSERT, 5, params, ctx->request_id);

cleanup:
    if (rc != 0)
        OPENSSL_cleanse(code_out, ZNP_CODE_SIZE);
    return rc;
}

int znp_codes_issue_dummy(znp_ctx_t *ctx, PGconn *db, znp_code_purpose_t purpose, const char *email, const char *ip)
{
    char code[ZNP_CODE_SIZE];
    int rc = znp_codes_issue(ctx, db, purpose, email, ip, code);

    OPENSSL_cleanse(code, sizeof(code));
    return rc;
}

int znp_codes_consume(znp_ctx_t *ctx, PGconn *db, znp_code_purpose_t purpose, const char *email, const char *code)
{
    const char *name = znp_codes_purpose_name(purpose);
    char hash[65], id[24], max_attempts[16];
    const char *params[2] = {name, email};
    PGresult *res = NULL;
    int live, rc;

    /* hash first, so every path spends the same time */
    rc = hash_for(ctx, hash, purpose, email, znp_codes__well_formed(code) ? code : "");
    if (rc != 0)
        goto cleanup;
    rc = znp_sql_exec(&res, db, SQL_NEWEST, 2, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = ZNP_E_INVALID_CODE;
        goto cleanup;
    }
    live = znp_sql_bool(res, 0, COL_LIVE) && znp_sql_bool(res, 0, COL_UNUSED) &&
           znp_sql_int64(res, 0, COL_ATTEMPTS) < (int64_t)ctx->config->codes.max_attempts;
    if (!live) {
        rc = ZNP_E_INVALID_CODE;
        goto cleanup;
    }

    snprintf(id, sizeof(id), "%s", PQgetvalue(res, 0, COL_ID));
    snprintf(max_attempts, sizeof(max_attempts), "%u", ctx->config->codes.max_attempts);
    params[0] = id;
    params[1] = max_attempts;
    if (znp_codes__well_formed(code) && znp_codes__equal(hash, PQgetvalue(res, 0, COL_HASH))) {
        rc = znp_sql_exec(NULL, db, SQL_CONSUME, 1, params, ctx->request_id);
        goto cleanup;
    }
    rc = znp_sql_exec(NULL, db, SQL_WRONG_TRY, 2, params, ctx->request_id);
    if (rc == 0) {
        ZNP_INFO(LOG_TAG, ctx->request_id, "wrong code purpose=%s tries=%lld", name,
                 (long long)znp_sql_int64(res, 0, COL_ATTEMPTS) + 1);
        rc = ZNP_E_INVALID_CODE;
    }

cleanup:
    OPENSSL_cleanse(hash, sizeof(hash));
    PQclear(res);
    return rc;
}
