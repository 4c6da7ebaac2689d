/*
 * GET /api/v1/user/account/balance: the wallet and one page of its ledger,
 * newest first. This file only reads; orders and refunds write the ledger.
 *
 * NOTE: the ledger's metadata column is not in the response yet, because the
 * codec cannot release a JSON value that an operation builds for a response.
 */
#include "account/account.h"

#include <stdio.h>
#include <string.h>

#include "auth/sql.h"
#include "operations.gen.h"
#include "core/pagination.h"

static const char SQL_BALANCE[] =
    "SELECT balance_cents, currency, floor(extract(epoch FROM updated_at))::bigint FROM user_balances WHERE user_id = $1";

/* $2 is the entry type (NULL for all), $3 the limit and $4 the offset. */
static const char SQL_COUNT[] =
    "SELECT count(*) FROM balance_transactions WHERE user_id = $1 AND ($2::text IS NULL OR lower(entry_type) = lower($2))";
static const char SQL_PAGE[] =
    "SELECT id, entry_type, amount_cents, currency, balance_after_cents, reference, description,"
    " floor(extract(epoch FROM created_at))::bigint FROM balance_transactions"
    " WHERE user_id = $1 AND ($2::text IS NULL OR lower(entry_type) = lower($2))"
    " ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4";

static int fill_transactions(znp_ctx_t *ctx, const PGresult *res, znp_array_t *out)
{
    int rows = PQntuples(res);
    znp_balance_transaction_t *items = NULL;

    if (rows > 0 && (items = znp_arena_alloc(ctx->arena, (size_t)rows * sizeof(*items))) == NULL)
        return ZNP_E_INTERNAL;
    for (int i = 0; i < rows; i++) {
        znp_balance_transaction_t *t = &items[i];
        t->id = znp_sql_int64(res, i, 0);
        t->entry_type = znp_arena_strdup(ctx->arena, PQgetvalue(res, i, 1));
        t->amount_cents = znp_sql_int64(res, i, 2);
        t->currency = znp_arena_strdup(ctx->arena, PQgetvalue(res, i, 3));
        t->balance_after_cents = znp_sql_int64(res, i, 4);
        t->reference = znp_arena_strdup(ctx->arena, PQgetvalue(res, i, 5));
        t->description = znp_arena_strdup(ctx->arena, PQgetvalue(res, i, 6));
        t->created_at = znp_sql_int64(res, i, 7);
        if (t->entry_type == NULL || t->currency == NULL || t->reference == NULL || t->description == NULL)
            return ZNP_E_INTERNAL;
    }
    out->count = (size_t)rows;
    out->items = items;
    return 0;
}

int znp_op_get_account_balance(znp_ctx_t *ctx, const znp_get_account_balance_request_t *req,
                               znp_get_account_balance_response_t *resp)
{
    char id[24];
    const char *filter[2];
    znp_sql_list_t list = {SQL_COUNT, SQL_PAGE, filter, 2, req->page, req->per_page};
    PGresult *res = NULL;
    int rc;

    filter[0] = znp_account__int(id, sizeof(id), ctx->caller.user_id);
    filter[1] = req->has.entry_type == ZNP_SET && req->entry_type[0] != '\0' ? req->entry_type : NULL;

    /* the ledger page and the count it belongs to */
    rc = znp_sql_list(&res, &resp->pagination, ctx->db, &list, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rc = fill_transactions(ctx, res, &resp->transactions);
    PQclear(res);
    res = NULL;
    if (rc != 0)
        goto cleanup;

    /* the wallet from the same snapshot, where a missing row means 0 CNY */
    resp->user_id = ctx->caller.user_id;
    resp->currency = "CNY";
    rc = znp_sql_exec(&res, ctx->db, SQL_BALANCE, 1, filter, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) == 1) {
        resp->balance_cents = znp_sql_int64(res, 0, 0);
        resp->currency = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, 1));
        resp->updated_at = znp_sql_int64(res, 0, 2);
        if (resp->currency == NULL)
            rc = ZNP_E_INTERNAL;
    }

cleanup:
    /* read-only: the rollback only ends the snapshot */
    znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    return rc;
}
