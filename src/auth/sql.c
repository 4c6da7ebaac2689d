#include "auth/sql.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"

#define LOG_TAG "sql"

/*
 * Run PQexecParams with the error mapping of znp_sql_exec. A unique violation
 * that `unique` (may be NULL) names becomes unique->code, recorded in `err`.
 */
static int run(PGresult **out, znp_error_t *err, PGconn *db, const char *sql, int count, const char *const *params,
               const znp_sql_unique_t *unique, const char *request_id)
{
    PGresult *res = NULL;
    ExecStatusType status;
    const char *state, *constraint;
    int rc = 0;

    if (out != NULL)
        *out = NULL;
    if (db == NULL)
        return ZNP_E_DATABASE_UNAVAILABLE;

    res = PQexecParams(db, sql, count, NULL, params, NULL, NULL, 0);
    status = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK) {
        if (out != NULL) {
            *out = res;
            res = NULL;
        }
        goto cleanup;
    }

    state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    constraint = res != NULL ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
    if (unique != NULL && state != NULL && strcmp(state, "23505") == 0 &&
        (unique->constraint == NULL || (constraint != NULL && strcmp(constraint, unique->constraint) == 0))) {
        rc = znp_error_set(err, unique->code, unique->path, "%s", unique->message);
    } else if (PQstatus(db) != CONNECTION_OK) {
        ZNP_ERROR(LOG_TAG, request_id, "database connection lost: %s", PQerrorMessage(db));
        rc = ZNP_E_DATABASE_UNAVAILABLE;
    } else if (unique != NULL && unique->secret_params) {
        ZNP_ERROR(LOG_TAG, request_id, "statement failed: sqlstate=%s", state != NULL ? state : "none");
        rc = ZNP_E_INTERNAL;
    } else {
        ZNP_ERROR(LOG_TAG, request_id, "statement failed: sqlstate=%s %s", state != NULL ? state : "none",
                  res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(db));
        rc = ZNP_E_INTERNAL;
    }

cleanup:
    PQclear(res);
    return rc;
}

int znp_sql_exec(PGresult **out, PGconn *db, const char *sql, int count, const char *const *params,
                 const char *request_id)
{
    return run(out, NULL, db, sql, count, params, NULL, request_id);
}

int znp_sql_exec_unique(PGresult **out, znp_error_t *err, PGconn *db, const char *sql, int count,
                        const char *const *params, const znp_sql_unique_t *unique, const char *request_id)
{
    return run(out, err, db, sql, count, params, unique, request_id);
}

int znp_sql_begin(PGconn *db, const char *request_id)
{
    return znp_sql_exec(NULL, db, "BEGIN", 0, NULL, request_id);
}

int znp_sql_commit(PGconn *db, const char *request_id)
{
    return znp_sql_exec(NULL, db, "COMMIT", 0, NULL, request_id);
}

void znp_sql_rollback(PGconn *db, const char *request_id)
{
    PGTransactionStatusType state = db != NULL ? PQtransactionStatus(db) : PQTRANS_UNKNOWN;

    if (state == PQTRANS_INTRANS || state == PQTRANS_INERROR)
        (void)znp_sql_exec(NULL, db, "ROLLBACK", 0, NULL, request_id);
}

int64_t znp_sql_int64(const PGresult *res, int row, int column)
{
    if (PQgetisnull(res, row, column))
        return 0;
    return strtoll(PQgetvalue(res, row, column), NULL, 10);
}

int znp_sql_bool(const PGresult *res, int row, int column)
{
    return strcmp(PQgetvalue(res, row, column), "t") == 0;
}

const char *znp_sql_order(const znp_sql_order_t *orders, size_t count, const char *sort, const char *direction,
                          int desc_default)
{
    int desc = direction != NULL ? strcmp(direction, "desc") == 0 : desc_default;
    size_t i = 0;

    while (i < count && (sort == NULL || strcmp(sort, orders[i].key) != 0))
        i++;
    if (i == count)
        i = 0;
    return desc ? orders[i].desc : orders[i].asc;
}

int64_t znp_sql_offset(int64_t page, int64_t per_page)
{
    if (page < 1 || per_page < 1)
        return 0;
    if (page - 1 > INT64_MAX / per_page)
        return INT64_MAX;
    return (page - 1) * per_page;
}

int znp_sql_list(PGresult **out, znp_pagination_t *pagination, PGconn *db, const znp_sql_list_t *list,
                 const char *request_id)
{
    const char *params[ZNP_SQL_LIST_FILTER_MAX + 2];
    char limit[24], offset[24];
    PGresult *res = NULL;
    int64_t total;
    int n = list->filter_count, rc;

    *out = NULL;
    if (n < 0 || n > ZNP_SQL_LIST_FILTER_MAX)
        return ZNP_E_INTERNAL;
    for (int i = 0; i < n; i++)
        params[i] = list->filter[i];
    snprintf(limit, sizeof(limit), "%" PRId64, list->per_page);
    snprintf(offset, sizeof(offset), "%" PRId64, znp_sql_offset(list->page, list->per_page));
    params[n] = limit;
    params[n + 1] = offset;

    /* count and page from one snapshot, so they agree */
    rc = znp_sql_exec(NULL, db, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0, NULL, request_id);
    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, db, list->count_sql, n, params, request_id);
    if (rc != 0)
        return rc;
    total = znp_sql_int64(res, 0, 0);
    PQclear(res);
    rc = znp_sql_exec(out, db, list->page_sql, n + 2, params, request_id);
    if (rc != 0)
        return rc;
    znp_pagination_fill(pagination, list->page, list->per_page, total);
    return 0;
}
