/*
 * The maintenance.purge scheduled job: deletes rows that no check reads any
 * more, so tables written on every sign-in, code or job do not grow without
 * bound. Each DELETE selects by age only, and the scheduler's transaction
 * makes one pass all or nothing.
 */
#include "jobs/jobs.h"

#include <stdio.h>
#include <string.h>

#include "auth/sql.h"
#include "core/log.h"
#include "errors.gen.h"

#define LOG_TAG "jobs"

static const struct purge_step {
    const char *table;
    const char *sql;
    int uses_retention; /* 1 when $1 is jobs.retention_days */
} steps[] = {
    /* finished jobs are kept for jobs.retention_days so operators can inspect failures */
    {"jobs", "DELETE FROM jobs WHERE status IN ('done', 'dead') AND updated_at < now() - make_interval(days => $1::integer)",
     1},
    /* an expired refresh token is rejected whatever its row contains, so a day of grace is enough */
    {"refresh_tokens", "DELETE FROM refresh_tokens WHERE expires_at < now() - interval '1 day'", 0},
    /* codes live at most codes.ttl_s and the hourly caps look back one hour */
    {"auth_codes", "DELETE FROM auth_codes WHERE created_at < now() - interval '1 day'", 0},
    {"mfa_challenges", "DELETE FROM mfa_challenges WHERE expires_at < now() - interval '1 day'", 0},
    {"api_nonces", "DELETE FROM api_nonces WHERE expires_at < now()", 0},
};

int znp_jobs_purge(PGconn *db, const znp_config_t *config)
{
    char days[16];
    const char *params[1] = {days};

    snprintf(days, sizeof days, "%u", config->jobs.retention_days);
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        PGresult *res = NULL;
        int rc = znp_sql_exec(&res, db, steps[i].sql, steps[i].uses_retention ? 1 : 0,
                              steps[i].uses_retention ? params : NULL, NULL);

        if (rc != 0) {
            ZNP_ERROR(LOG_TAG, NULL, "purge of %s failed", steps[i].table);
            return rc;
        }
        if (strcmp(PQcmdTuples(res), "0") != 0)
            ZNP_INFO(LOG_TAG, NULL, "purged %s rows from %s", PQcmdTuples(res), steps[i].table);
        PQclear(res);
    }
    return 0;
}
