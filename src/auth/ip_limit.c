/*
 * Failed sign-ins per client IP, counted in one login_ip_failures row per
 * address so the limit applies across instances. A window starts at the
 * first failure and lasts auth.ip_failure_window_s. Once it has
 * auth.ip_failure_limit failures, sign-ins from the address get 429 until it
 * ends. The check runs before any password is verified.
 */
#include "auth/auth_internal.h"

#include <stdio.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "config/config.h"
#include "core/log.h"

#define LOG_TAG "auth"

/* seconds left in a full window of `ip`; 0 when it is not full or has ended */
static const char SQL_IP_BLOCKED[] =
    "SELECT CASE WHEN failures >= $2::integer AND window_start + make_interval(secs => $3::integer) > now()"
    " THEN ceil(extract(epoch FROM window_start + make_interval(secs => $3::integer) - now()))::bigint"
    " ELSE 0 END FROM login_ip_failures WHERE ip = $1";

/* one failure; an ended window restarts at 1. SET reads the row as it was before. */
static const char SQL_IP_FAILURE[] =
    "INSERT INTO login_ip_failures AS f (ip, window_start, failures) VALUES ($1, now(), 1)"
    " ON CONFLICT (ip) DO UPDATE SET"
    " failures = CASE WHEN f.window_start + make_interval(secs => $2::integer) <= now() THEN 1"
    "   ELSE f.failures + 1 END,"
    " window_start = CASE WHEN f.window_start + make_interval(secs => $2::integer) <= now() THEN now()"
    "   ELSE f.window_start END"
    " RETURNING failures";

/* rows of ended windows count as empty; each new window clears them */
static const char SQL_IP_PURGE[] =
    "DELETE FROM login_ip_failures WHERE window_start + make_interval(secs => $1::integer) <= now()";

static int limit_on(const znp_ctx_t *ctx)
{
    const znp_config_auth_t *auth = &ctx->config->auth;

    return auth->ip_failure_limit > 0 && auth->ip_failure_window_s > 0 && ctx->client_ip != NULL &&
           ctx->client_ip[0] != '\0';
}

int znp_auth__ip_check(znp_ctx_t *ctx)
{
    const znp_config_auth_t *auth = &ctx->config->auth;
    char limit[16], window[16];
    const char *params[3] = {ctx->client_ip, limit, window};
    PGresult *res = NULL;
    int64_t seconds = 0;
    int rc;

    if (!limit_on(ctx))
        return 0;
    snprintf(limit, sizeof limit, "%u", auth->ip_failure_limit);
    snprintf(window, sizeof window, "%u", auth->ip_failure_window_s);
    rc = znp_sql_exec(&res, ctx->db, SQL_IP_BLOCKED, 3, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) == 1)
        seconds = znp_sql_int64(res, 0, 0);
    if (seconds > 0) {
        rc = znp_error_set(ctx->err, ZNP_E_TOO_MANY_REQUESTS, NULL, NULL);
        if (ctx->err != NULL)
            ctx->err->retry_after = seconds > INT32_MAX ? INT32_MAX : (int)seconds;
        ZNP_INFO(LOG_TAG, ctx->request_id, "sign-in refused, too many failures from ip=%s", ctx->client_ip);
    }

cleanup:
    PQclear(res);
    return rc;
}

void znp_auth__ip_record_failure(znp_ctx_t *ctx)
{
    const znp_config_auth_t *auth = &ctx->config->auth;
    char window[16];
    const char *params[2] = {ctx->client_ip, window};
    PGresult *res = NULL;
    int64_t failures;

    if (!limit_on(ctx))
        return;
    snprintf(window, sizeof window, "%u", auth->ip_failure_window_s);
    if (znp_sql_exec(&res, ctx->db, SQL_IP_FAILURE, 2, params, ctx->request_id) != 0 || PQntuples(res) != 1)
        goto cleanup;
    failures = znp_sql_int64(res, 0, 0);
    if (failures == 1)
        (void)znp_sql_exec(NULL, ctx->db, SQL_IP_PURGE, 1, params + 1, ctx->request_id);

    /* only the failure that brings the count to the limit writes the audit row: once a window */
    if (failures == (int64_t)auth->ip_failure_limit) {
        json_t *diff = json_pack("{s:I,s:I}", "failures", (json_int_t)failures, "window_s",
                                 (json_int_t)auth->ip_failure_window_s);
        znp_audit_entry_t entry = {.action = "auth.login.ip_limited", .diff = diff};

        ZNP_WARN(LOG_TAG, ctx->request_id, "sign-ins limited after %lld failures from ip=%s", (long long)failures,
                 ctx->client_ip);
        if (znp_audit_record(ctx, ctx->db, &entry) != 0)
            ZNP_ERROR(LOG_TAG, ctx->request_id, "could not write the audit row auth.login.ip_limited");
        json_decref(diff);
    }

cleanup:
    PQclear(res);
}
