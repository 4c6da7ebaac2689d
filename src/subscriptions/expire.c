/*
 * The subscriptions.expire scheduled job. Each pass runs three conditional
 * UPDATEs that return each changed row with its previous status. The audit
 * rows and notifications for those rows join the same transaction.
 */
#include "subscriptions/subscriptions.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "core/log.h"
#include "errors.gen.h"

#define LOG_TAG "subscriptions"

static const char SQL_EXPIRE[] =
    "UPDATE subscriptions s SET status = 3, updated_at = now()"
    " FROM (SELECT id, status FROM subscriptions WHERE status IN (1, 4) AND expires_at IS NOT NULL"
    "  AND expires_at <= now() ORDER BY id FOR UPDATE) c"
    " WHERE s.id = c.id RETURNING s.id, c.status";

static const char SQL_QUOTA[] =
    "UPDATE subscriptions s SET status = 4, updated_at = now()"
    " FROM (SELECT id, status FROM subscriptions WHERE status = 1 AND traffic_total_bytes > 0"
    "  AND traffic_used_bytes >= traffic_total_bytes ORDER BY id FOR UPDATE) c"
    " WHERE s.id = c.id RETURNING s.id, c.status";

static const char SQL_RESTORE[] =
    "UPDATE subscriptions s SET status = 1, updated_at = now()"
    " FROM (SELECT id, status FROM subscriptions q WHERE status = 4"
    "  AND (traffic_total_bytes = 0 OR traffic_used_bytes < traffic_total_bytes)"
    "  AND (expires_at IS NULL OR expires_at > now())"
    "  AND NOT EXISTS (SELECT 1 FROM subscriptions o WHERE o.user_id = q.user_id AND o.id <> q.id AND o.status = 1"
    "   AND (o.expires_at IS NULL OR o.expires_at > now()))"
    "  ORDER BY id FOR UPDATE) c"
    " WHERE s.id = c.id RETURNING s.id, c.status";

static const char SQL_NOTIFY[] = "SELECT pg_notify('" ZNP_SUBSCRIPTIONS_CHANNEL "', $1)";

/* Run one of the UPDATEs above, then audit each changed row as `action` and send its NOTIFY. */
static int apply(PGconn *db, const char *sql, const char *action, int new_status)
{
    PGresult *res = NULL;
    int rc, rows;

    rc = znp_sql_exec(&res, db, sql, 0, NULL, NULL);
    if (rc != 0)
        goto cleanup;
    rows = PQntuples(res);
    for (int row = 0; row < rows && rc == 0; row++) {
        const char *id = PQgetvalue(res, row, 0);
        const char *params[1] = {id};
        json_t *diff = json_pack("{s:I,s:I}", "status", (json_int_t)new_status, "previous_status",
                                 (json_int_t)znp_sql_int64(res, row, 1));
        znp_audit_entry_t entry = {
            .action = action, .resource_type = "subscription", .resource_id = id, .diff = diff};

        rc = znp_audit_record(NULL, db, &entry);
        json_decref(diff);
        if (rc == 0)
            rc = znp_sql_exec(NULL, db, SQL_NOTIFY, 1, params, NULL);
    }
    if (rc == 0 && rows > 0)
        ZNP_INFO(LOG_TAG, NULL, "%s count=%d", action, rows);

cleanup:
    PQclear(res);
    return rc;
}

int znp_subscriptions_expire(PGconn *db, const znp_config_t *config)
{
    int rc;

    (void)config;
    rc = apply(db, SQL_EXPIRE, "subscription.expired", ZNP_SUBSCRIPTION_EXPIRED);
    if (rc == 0)
        rc = apply(db, SQL_QUOTA, "subscription.quota_used_up", ZNP_SUBSCRIPTION_QUOTA_USED_UP);
    if (rc == 0)
        rc = apply(db, SQL_RESTORE, "subscription.quota_restored", ZNP_SUBSCRIPTION_ACTIVE);
    return rc;
}
