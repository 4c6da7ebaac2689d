/*
 * Small libpq helpers for the operations of the auth and system modules:
 * parameterized statements with the error mapping every operation needs.
 */
#ifndef ZNP_AUTH_SQL_H
#define ZNP_AUTH_SQL_H

#include <libpq-fe.h>
#include <stdint.h>

/*
 * Run `sql` with `count` text parameters (NULL entries are SQL NULL) through
 * PQexecParams. On success *out is the result, owned by the caller (PQclear).
 * `out` may be NULL for statements whose rows are not needed. Returns 0,
 * ZNP_E_DATABASE_UNAVAILABLE when the connection is gone or `db` is NULL, or
 * ZNP_E_INTERNAL for any other failure. Failures are logged here, with
 * `request_id` (may be NULL).
 */
int znp_sql_exec(PGresult **out, PGconn *db, const char *sql, int count, const char *const *params,
                 const char *request_id);

/* Run BEGIN or COMMIT, with the returns of znp_sql_exec. */
int znp_sql_begin(PGconn *db, const char *request_id);
int znp_sql_commit(PGconn *db, const char *request_id);
/* Roll back the open transaction, if any. A failure is only logged. */
void znp_sql_rollback(PGconn *db, const char *request_id);

/* Value of a bigint column, 0 for NULL. */
int64_t znp_sql_int64(const PGresult *res, int row, int column);
/* Value of a boolean column ("t"). */
int znp_sql_bool(const PGresult *res, int row, int column);

#endif
