/*
 * Small libpq helpers for the operations of every module: parameterized
 * statements with the error mapping every operation needs, and the count and
 * page queries of the list operations.
 */
#ifndef ZNP_AUTH_SQL_H
#define ZNP_AUTH_SQL_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/pagination.h"

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

/* What a unique violation (SQLSTATE 23505) of one statement means to the client. */
typedef struct znp_sql_unique {
    int code;               /* a ZNP_E_*_TAKEN */
    const char *path;       /* JSON path of the field, such as "$.name" */
    const char *message;    /* detail for the client */
    const char *constraint; /* the unique index that maps, or NULL for any unique violation */
    int secret_params;      /* nonzero when the parameters contain secrets, so failures log the SQLSTATE only */
} znp_sql_unique_t;

/*
 * Run a statement that may break a unique index, as znp_sql_exec does. A
 * violation that `unique` names returns unique->code and records its path and
 * message in `err`, without a log line. Connection loss returns
 * ZNP_E_DATABASE_UNAVAILABLE and any other failure ZNP_E_INTERNAL, each logged
 * once.
 */
int znp_sql_exec_unique(PGresult **out, znp_error_t *err, PGconn *db, const char *sql, int count,
                        const char *const *params, const znp_sql_unique_t *unique, const char *request_id);

/* Run BEGIN or COMMIT, with the returns of znp_sql_exec. */
int znp_sql_begin(PGconn *db, const char *request_id);
int znp_sql_commit(PGconn *db, const char *request_id);
/* Roll back the open transaction, if any. A failure is only logged. */
void znp_sql_rollback(PGconn *db, const char *request_id);

/* Value of a bigint column, 0 for NULL. */
int64_t znp_sql_int64(const PGresult *res, int row, int column);
/* Value of a boolean column ("t"). */
int znp_sql_bool(const PGresult *res, int row, int column);

/* The ORDER BY text of one whitelisted sort key, in both directions. */
typedef struct znp_sql_order {
    const char *key;
    const char *asc;
    const char *desc;
} znp_sql_order_t;

/*
 * Look up the ORDER BY text (borrowed from `orders`) for `sort` and
 * `direction`. A NULL sort key, or one missing from the `count` entries, falls
 * back to orders[0]. Only "desc" sorts descending, and a NULL direction sorts
 * descending when `desc_default` is nonzero. So only whitelisted text reaches
 * the SQL.
 */
const char *znp_sql_order(const znp_sql_order_t *orders, size_t count, const char *sort, const char *direction,
                          int desc_default);

/*
 * Compute the OFFSET of page `page` (from 1) of `per_page` rows. A page or
 * per_page below 1 gives 0. An offset past INT64_MAX gives INT64_MAX (an empty
 * page) instead of overflowing. The spec bounds page at 1,000,000 and
 * per_page at 1,000.
 */
int64_t znp_sql_offset(int64_t page, int64_t per_page);

/* Maximum number of filter parameters of a list query. */
#define ZNP_SQL_LIST_FILTER_MAX 14

/*
 * Query of one page of a filtered list. `count_sql` counts the rows that match
 * the filter parameters $1..$n, where n is `filter_count` (at most
 * ZNP_SQL_LIST_FILTER_MAX). `page_sql` selects those rows in order and ends in
 * "LIMIT $<n + 1> OFFSET $<n + 2>". NULL filter entries are SQL NULL.
 */
typedef struct znp_sql_list {
    const char *count_sql;
    const char *page_sql;
    const char *const *filter;
    int filter_count;
    int64_t page;
    int64_t per_page;
} znp_sql_list_t;

/*
 * Open a read-only REPEATABLE READ transaction and run the count and then the
 * page in it, so the two agree. On success *out contains the page's rows (owned:
 * PQclear) and `pagination` is filled; on failure *out is NULL. Returns as
 * znp_sql_exec. The transaction stays open, so the caller can read more from
 * the same snapshot; the caller ends it with znp_sql_rollback in every case.
 */
int znp_sql_list(PGresult **out, znp_pagination_t *pagination, PGconn *db, const znp_sql_list_t *list,
                 const char *request_id);

#endif
