#include "auth/sql.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/log.h"

#define LOG_TAG "sql"

int znp_sql_exec(PGresult **out, PGconn *db, const char *sql, int count, const char *const *params,
                 const char *request_id)
{
    PGresult *res = NULL;
    ExecStatusType status;
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

    if (PQstatus(db) != CONNECTION_OK) {
        ZNP_ERROR(LOG_TAG, request_id, "database connection lost: %s", PQerrorMessage(db));
        rc = ZNP_E_DATABASE_UNAVAILABLE;
    } else {
        const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        ZNP_ERROR(LOG_TAG, request_id, "statement failed: sqlstate=%s %s", state != NULL ? state : "none",
                  res != NULL ? PQresultErrorMessage(res) : PQerrorMessage(db));
        rc = ZNP_E_INTERNAL;
    }

cleanup:
    PQclear(res);
    return rc;
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
