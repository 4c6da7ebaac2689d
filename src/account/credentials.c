/*
 * Proxy-protocol credentials: one versioned identity per user (derivation and
 * storage in src/identity). Rotation deprecates the active version and
 * creates the next one in one transaction, with an audit row and a job that
 * pushes the new password to every kernel serving the user. The secret is
 * never part of a response.
 */
#include "account/account.h"

#include <string.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "bindings/bindings.h"
#include "config/config.h"
#include "core/log.h"
#include "download/download.h"
#include "identity/identity.h"
#include "jobs/jobs.h"
#include "operations.gen.h"
#include "uniproxy/uniproxy.h"

int znp_account__rotate_credential(znp_ctx_t *ctx, int64_t user_id, znp_credential_summary_t *out)
{
    znp_identity_t identity;
    int64_t issued_at = 0;
    json_t *payload = NULL;
    int rc;

    rc = znp_identity_rotate(ctx->db, ctx->config, user_id, &identity, &issued_at, ctx->request_id);
    if (rc != 0)
        return rc;

    /* kernels keep the old password until their bindings are pushed again */
    payload = json_pack("{s:I}", "user_id", (json_int_t)user_id);
    rc = payload != NULL ? znp_jobs_enqueue(ctx->db, ZNP_BINDINGS_SYNC_USER_JOB, payload, 0, NULL) : ZNP_E_INTERNAL;
    json_decref(payload);
    if (rc != 0)
        return rc;
    memset(out, 0, sizeof(*out));
    out->version = identity.version;
    out->status = 1;
    out->issued_at = issued_at;
    return 0;
}

/* Rotate in its own transaction with an audit row. */
static int rotate(znp_ctx_t *ctx, int64_t user_id, const char *action, znp_credential_summary_t *out)
{
    static const char sql_subscriptions[] = "SELECT id FROM subscriptions WHERE user_id = $1";
    char id[24];
    const char *params[1] = {znp_account__int(id, sizeof(id), user_id)};
    PGresult *res = NULL, *subscriptions = NULL;
    json_t *diff = NULL;
    int rc = znp_sql_begin(ctx->db, ctx->request_id);

    if (rc != 0)
        return rc;
    rc = znp_account__load(ctx, user_id, 0, 1, &res);
    if (rc == 0 && PQntuples(res) != 1)
        rc = ZNP_E_NOT_FOUND;
    if (rc == 0)
        rc = znp_account__rotate_credential(ctx, user_id, out);
    if (rc == 0) {
        znp_audit_entry_t entry = {0};
        diff = json_pack("{s:I}", "version", (json_int_t)out->version);
        entry.action = action;
        entry.resource_type = "user";
        entry.resource_id = znp_account__int(id, sizeof(id), user_id);
        entry.diff = diff;
        rc = znp_audit_record(ctx, ctx->db, &entry);
    }
    if (rc == 0)
        rc = znp_sql_exec(&subscriptions, ctx->db, sql_subscriptions, 1, params, ctx->request_id);
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0) {
        znp_sql_rollback(ctx->db, ctx->request_id);
    } else {
        /* the NOTIFY of the credential write reaches other instances, so only this one's caches are cleared here */
        znp_uniproxy_invalidate();
        for (int row = 0; row < PQntuples(subscriptions); row++)
            znp_download_cache_forget(znp_sql_int64(subscriptions, row, 0));
    }
    json_decref(diff);
    PQclear(res);
    PQclear(subscriptions);
    return rc;
}

int znp_op_rotate_account_credential(znp_ctx_t *ctx, const znp_rotate_account_credential_request_t *req,
                                     znp_rotate_account_credential_response_t *resp)
{
    (void)req;
    return rotate(ctx, ctx->caller.user_id, "user.credentials.rotate", &resp->credential);
}

int znp_op_rotate_admin_user_credential(znp_ctx_t *ctx, const znp_rotate_admin_user_credential_request_t *req,
                                        znp_rotate_admin_user_credential_response_t *resp)
{
    resp->user_id = req->id;
    return rotate(ctx, req->id, "admin.user.credentials.rotate", &resp->credential);
}
