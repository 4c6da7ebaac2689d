/*
 * Failed attempts per client IP, counted in one ip_failures row per scope
 * and address so a limit applies across instances. A window starts at the
 * first attempt counted in it and lasts the scope's window. Once it has the
 * scope's limit of failures, attempts from the address get 429 until it
 * ends. Sign-ins
 * ("login": auth.ip_failure_limit per auth.ip_failure_window_s) and kernel
 * callbacks ("callback": webhook.ip_failure_limit per
 * webhook.ip_failure_window_s) use it. Each attempt is counted before its
 * credentials are verified and given back when they are right, so parallel
 * attempts stop exactly at the limit.
 */
#include "auth/auth.h"
#include "auth/auth_internal.h"

#include <stdio.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "config/config.h"
#include "core/log.h"

#define LOG_TAG "auth"

/* seconds left in a full window of (`scope`, `ip`); 0 when it is not full or has ended */
static const char SQL_IP_BLOCKED[] =
    "SELECT CASE WHEN failures >= $3::integer AND window_start + make_interval(secs => $4::integer) > now()"
    " THEN ceil(extract(epoch FROM window_start + make_interval(secs => $4::integer) - now()))::bigint"
    " ELSE 0 END FROM ip_failures WHERE scope = $1 AND ip = $2";

/*
 * Rows of ended windows, and rows whose attempts were all given back, count
 * as empty, so each new window of the scope deletes them. A row that an
 * attempt counts in meanwhile has failures > 0 again and stays.
 */
static const char SQL_IP_PURGE[] = "DELETE FROM ip_failures WHERE scope = $1"
                                   " AND (failures = 0 OR window_start + make_interval(secs => $2::integer) <= now())";

/*
 * Count one attempt unless the window already has `limit` failures. It is
 * one statement, so parallel attempts from an address cannot all pass the
 * check before any is counted. No row comes back when the address is limited.
 */
static const char SQL_IP_RESERVE[] =
    "INSERT INTO ip_failures AS f (scope, ip, window_start, failures) VALUES ($1, $2, now(), 1)"
    " ON CONFLICT (scope, ip) DO UPDATE SET"
    " failures = CASE WHEN f.window_start + make_interval(secs => $3::integer) <= now() THEN 1"
    "   ELSE f.failures + 1 END,"
    " window_start = CASE WHEN f.window_start + make_interval(secs => $3::integer) <= now() THEN now()"
    "   ELSE f.window_start END"
    " WHERE f.window_start + make_interval(secs => $3::integer) <= now() OR f.failures < $4::integer"
    " RETURNING failures";

/* give back an attempt that turned out well, in the window it was counted in */
static const char SQL_IP_RELEASE[] =
    "UPDATE ip_failures SET failures = failures - 1 WHERE scope = $1 AND ip = $2 AND failures > 0"
    " AND window_start + make_interval(secs => $3::integer) > now()";

static int limit_on(const znp_ctx_t *ctx, uint32_t limit, uint32_t window_s)
{
    return limit > 0 && window_s > 0 && ctx->client_ip != NULL && ctx->client_ip[0] != '\0';
}

/* 0, or ZNP_E_TOO_MANY_REQUESTS with the seconds left when the window of (`scope`, client IP) is full */
static int blocked(znp_ctx_t *ctx, const char *scope, uint32_t limit, uint32_t window_s)
{
    char limit_text[16], window_text[16];
    const char *params[4] = {scope, ctx->client_ip, limit_text, window_text};
    PGresult *res = NULL;
    int64_t seconds = 0;
    int rc;

    if (!limit_on(ctx, limit, window_s))
        return 0;
    snprintf(limit_text, sizeof limit_text, "%u", limit);
    snprintf(window_text, sizeof window_text, "%u", window_s);
    rc = znp_sql_exec(&res, ctx->db, SQL_IP_BLOCKED, 4, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) == 1)
        seconds = znp_sql_int64(res, 0, 0);
    if (seconds > 0) {
        rc = znp_error_set(ctx->err, ZNP_E_TOO_MANY_REQUESTS, NULL, NULL);
        if (ctx->err != NULL)
            ctx->err->retry_after = seconds > INT32_MAX ? INT32_MAX : (int)seconds;
        ZNP_INFO(LOG_TAG, ctx->request_id, "%s refused, too many failures from ip=%s", scope, ctx->client_ip);
    }

cleanup:
    PQclear(res);
    return rc;
}

int znp_ip_failures_reserve(znp_ctx_t *ctx, const char *scope, uint32_t limit, uint32_t window_s, int64_t *count)
{
    char limit_text[16], window_text[16];
    const char *params[4] = {scope, ctx->client_ip, window_text, limit_text};
    PGresult *res = NULL;
    int rc;

    *count = 0;
    if (!limit_on(ctx, limit, window_s))
        return 0;
    snprintf(limit_text, sizeof limit_text, "%u", limit);
    snprintf(window_text, sizeof window_text, "%u", window_s);
    rc = znp_sql_exec(&res, ctx->db, SQL_IP_RESERVE, 4, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) == 1) {
        *count = znp_sql_int64(res, 0, 0);
        if (*count == 1) {
            const char *purge[2] = {scope, window_text};

            (void)znp_sql_exec(NULL, ctx->db, SQL_IP_PURGE, 2, purge, ctx->request_id);
        }
        goto cleanup;
    }
    /* limited: the check gives the seconds left and sets the error */
    rc = blocked(ctx, scope, limit, window_s);
    if (rc == 0) {
        /* the window ended between the two statements: the next attempt starts a new one */
        rc = znp_error_set(ctx->err, ZNP_E_TOO_MANY_REQUESTS, NULL, NULL);
        if (ctx->err != NULL)
            ctx->err->retry_after = 1;
    }

cleanup:
    PQclear(res);
    return rc;
}

void znp_ip_failures_release(znp_ctx_t *ctx, const char *scope, uint32_t limit, uint32_t window_s)
{
    char window_text[16];
    const char *params[3] = {scope, ctx->client_ip, window_text};

    if (!limit_on(ctx, limit, window_s))
        return;
    snprintf(window_text, sizeof window_text, "%u", window_s);
    (void)znp_sql_exec(NULL, ctx->db, SQL_IP_RELEASE, 3, params, ctx->request_id);
}

int znp_auth__ip_reserve(znp_ctx_t *ctx, int64_t *count)
{
    const znp_config_auth_t *auth = &ctx->config->auth;

    return znp_ip_failures_reserve(ctx, "login", auth->ip_failure_limit, auth->ip_failure_window_s, count);
}

void znp_auth__ip_settle(znp_ctx_t *ctx, int64_t count, int failed)
{
    const znp_config_auth_t *auth = &ctx->config->auth;

    if (!failed) {
        znp_ip_failures_release(ctx, "login", auth->ip_failure_limit, auth->ip_failure_window_s);
        return;
    }
    /* only the failure that brings the count to the limit writes the audit row: once a window */
    if (count > 0 && count == (int64_t)auth->ip_failure_limit) {
        json_t *diff =
            json_pack("{s:I,s:I}", "failures", (json_int_t)count, "window_s", (json_int_t)auth->ip_failure_window_s);
        znp_audit_entry_t entry = {.action = "auth.login.ip_limited", .diff = diff};

        ZNP_WARN(LOG_TAG, ctx->request_id, "sign-ins limited after %lld failures from ip=%s", (long long)count,
                 ctx->client_ip);
        if (znp_audit_record(ctx, ctx->db, &entry) != 0)
            ZNP_ERROR(LOG_TAG, ctx->request_id, "could not write the audit row auth.login.ip_limited");
        json_decref(diff);
    }
}
