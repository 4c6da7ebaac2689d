/*
 * Failed attempts per client IP, counted in one ip_failures row per scope
 * and address so a limit applies across instances. A window starts at the
 * first attempt counted in it and lasts the scope's window. Once it has the
 * scope's limit of failures, attempts from the address get 429 until it
 * ends. Sign-ins
 * ("login": auth.ip_failure_limit per auth.ip_failure_window_s) and kernel
 * callbacks ("callback": webhook.ip_failure_limit per
 * webhook.ip_failure_window_s) use it. Each attempt takes a pending slot
 * before its credentials are verified, which becomes a failure when they are
 * wrong and is given back when they are right. So parallel attempts stop
 * exactly at the limit, and a right attempt never counts as a failure.
 */
#include "auth/auth.h"
#include "auth/auth_internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "config/config.h"
#include "core/log.h"

#define LOG_TAG "auth"

#define WAIT_STEP_MS 25   /* between tries while attempts in flight fill the window */
#define WAIT_MAX_MS  3000 /* then the attempt is refused with Retry-After: 1 */

/* the decided failures of (`scope`, `ip`), and the seconds left in its window (0 when it has ended) */
static const char SQL_IP_STATE[] =
    "SELECT failures, CASE WHEN window_start + make_interval(secs => $3::integer) > now()"
    " THEN ceil(extract(epoch FROM window_start + make_interval(secs => $3::integer) - now()))::bigint"
    " ELSE 0 END FROM ip_failures WHERE scope = $1 AND ip = $2";

/*
 * Take a pending slot unless failures and pending attempts already fill the
 * window; an ended window starts over with this attempt alone. It is one
 * statement, so parallel attempts cannot all pass before any is counted. No
 * row comes back when the window is full. The window comes back in
 * microseconds, so that the attempt is settled in the window it counted in.
 */
static const char SQL_IP_RESERVE[] =
    "INSERT INTO ip_failures AS f (scope, ip, window_start, failures, pending) VALUES ($1, $2, now(), 0, 1)"
    " ON CONFLICT (scope, ip) DO UPDATE SET"
    " failures = CASE WHEN f.window_start + make_interval(secs => $3::integer) <= now() THEN 0"
    "   ELSE f.failures END,"
    " pending = CASE WHEN f.window_start + make_interval(secs => $3::integer) <= now() THEN 1"
    "   ELSE f.pending + 1 END,"
    " window_start = CASE WHEN f.window_start + make_interval(secs => $3::integer) <= now() THEN now()"
    "   ELSE f.window_start END"
    " WHERE f.window_start + make_interval(secs => $3::integer) <= now() OR f.failures + f.pending < $4::integer"
    " RETURNING (extract(epoch FROM window_start) * 1000000)::bigint, window_start = now()";

/* a decided attempt: a failure moves its pending slot to failures, a success gives it back */
static const char SQL_IP_FAILED[] =
    "UPDATE ip_failures SET failures = failures + 1, pending = greatest(pending - 1, 0)"
    " WHERE scope = $1 AND ip = $2 AND (extract(epoch FROM window_start) * 1000000)::bigint = $3::bigint"
    " RETURNING failures";
static const char SQL_IP_SUCCEEDED[] =
    "UPDATE ip_failures SET pending = greatest(pending - 1, 0)"
    " WHERE scope = $1 AND ip = $2 AND (extract(epoch FROM window_start) * 1000000)::bigint = $3::bigint";

/*
 * Rows of ended windows, and rows with neither failures nor attempts in
 * flight, count as empty, so each new window of the scope deletes them. A
 * row that an attempt takes a slot in meanwhile is not empty any more and
 * stays.
 */
static const char SQL_IP_PURGE[] = "DELETE FROM ip_failures WHERE scope = $1"
                                   " AND ((failures = 0 AND pending = 0)"
                                   " OR window_start + make_interval(secs => $2::integer) <= now())";

static int limit_on(const znp_ctx_t *ctx, uint32_t limit, uint32_t window_s)
{
    return limit > 0 && window_s > 0 && ctx->client_ip != NULL && ctx->client_ip[0] != '\0';
}

static int too_many(znp_ctx_t *ctx, const char *scope, int64_t seconds)
{
    int rc = znp_error_set(ctx->err, ZNP_E_TOO_MANY_REQUESTS, NULL, NULL);

    if (seconds < 1)
        seconds = 1;
    if (seconds > INT32_MAX)
        seconds = INT32_MAX;
    if (ctx->err != NULL)
        ctx->err->retry_after = (int)seconds;
    ZNP_INFO(LOG_TAG, ctx->request_id, "%s refused, too many failures from ip=%s", scope, ctx->client_ip);
    return rc;
}

/*
 * One try at a pending slot: 0 with *attempt filled, 1 when attempts in
 * flight fill the window (try again), or an error (ZNP_E_TOO_MANY_REQUESTS
 * when the decided failures alone fill it).
 */
static int try_reserve(znp_ctx_t *ctx, const char *scope, const char *params[4], uint32_t limit,
                       znp_ip_attempt_t *attempt)
{
    PGresult *res = NULL;
    int64_t failures = 0, seconds = 0;
    int rc;

    rc = znp_sql_exec(&res, ctx->db, SQL_IP_RESERVE, 4, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) == 1) {
        attempt->window_us = znp_sql_int64(res, 0, 0);
        attempt->counted = 1;
        if (PQgetvalue(res, 0, 1)[0] == 't') {
            const char *purge[2] = {scope, params[2]};

            (void)znp_sql_exec(NULL, ctx->db, SQL_IP_PURGE, 2, purge, ctx->request_id);
        }
        goto cleanup;
    }
    PQclear(res);
    res = NULL;
    rc = znp_sql_exec(&res, ctx->db, SQL_IP_STATE, 3, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) == 1) {
        failures = znp_sql_int64(res, 0, 0);
        seconds = znp_sql_int64(res, 0, 1);
    }
    /* a window that ended between the two statements starts over at the next try */
    rc = failures >= (int64_t)limit && seconds > 0 ? too_many(ctx, scope, seconds) : 1;

cleanup:
    PQclear(res);
    return rc;
}

int znp_ip_failures_reserve(znp_ctx_t *ctx, const char *scope, uint32_t limit, uint32_t window_s,
                            znp_ip_attempt_t *attempt)
{
    char limit_text[16], window_text[16];
    const char *params[4] = {scope, ctx->client_ip, window_text, limit_text};
    struct timespec step = {0, WAIT_STEP_MS * 1000000L};
    int rc;

    memset(attempt, 0, sizeof(*attempt));
    if (!limit_on(ctx, limit, window_s))
        return 0;
    snprintf(limit_text, sizeof limit_text, "%u", limit);
    snprintf(window_text, sizeof window_text, "%u", window_s);
    /*
     * While attempts in flight fill the window but the decided failures do
     * not, wait for them to be decided: a right attempt gives its slot back.
     */
    for (int waited = 0;; waited += WAIT_STEP_MS) {
        rc = try_reserve(ctx, scope, params, limit, attempt);
        if (rc != 1)
            return rc;
        if (waited >= WAIT_MAX_MS)
            return too_many(ctx, scope, 1);
        nanosleep(&step, NULL);
    }
}

int64_t znp_ip_failures_settle(znp_ctx_t *ctx, const char *scope, const znp_ip_attempt_t *attempt, int failed)
{
    char window_text[24];
    const char *params[3] = {scope, ctx->client_ip, window_text};
    PGresult *res = NULL;
    int64_t failures = 0;

    if (!attempt->counted)
        return 0;
    snprintf(window_text, sizeof window_text, "%lld", (long long)attempt->window_us);
    if (!failed) {
        (void)znp_sql_exec(NULL, ctx->db, SQL_IP_SUCCEEDED, 3, params, ctx->request_id);
        return 0;
    }
    if (znp_sql_exec(&res, ctx->db, SQL_IP_FAILED, 3, params, ctx->request_id) == 0 && PQntuples(res) == 1)
        failures = znp_sql_int64(res, 0, 0);
    PQclear(res);
    return failures;
}

int znp_auth__ip_reserve(znp_ctx_t *ctx, znp_ip_attempt_t *attempt)
{
    const znp_config_auth_t *auth = &ctx->config->auth;

    return znp_ip_failures_reserve(ctx, "login", auth->ip_failure_limit, auth->ip_failure_window_s, attempt);
}

void znp_auth__ip_settle(znp_ctx_t *ctx, const znp_ip_attempt_t *attempt, int failed)
{
    const znp_config_auth_t *auth = &ctx->config->auth;
    int64_t failures = znp_ip_failures_settle(ctx, "login", attempt, failed);

    /* each failure adds one, so exactly one failure of a window brings it to the limit: it writes the audit row */
    if (failed && failures > 0 && failures == (int64_t)auth->ip_failure_limit) {
        json_t *diff =
            json_pack("{s:I,s:I}", "failures", (json_int_t)failures, "window_s", (json_int_t)auth->ip_failure_window_s);
        znp_audit_entry_t entry = {.action = "auth.login.ip_limited", .diff = diff};

        ZNP_WARN(LOG_TAG, ctx->request_id, "sign-ins limited after %lld failures from ip=%s", (long long)failures,
                 ctx->client_ip);
        if (znp_audit_record(ctx, ctx->db, &entry) != 0)
            ZNP_ERROR(LOG_TAG, ctx->request_id, "could not write the audit row auth.login.ip_limited");
        json_decref(diff);
    }
}
