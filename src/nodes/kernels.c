/*
 * Kernel records of a node under /api/v1/{admin}/nodes/{id}/kernels: one
 * row per protocol with the kernel endpoint, revision, status and config.
 * Only the admin records live here; pulling config from a kernel does not.
 */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sql.h"
#include "nodes/internal.h"
#include "operations.gen.h"

#define KERNEL_COLUMNS                                                                                                 \
    "protocol, endpoint, revision, status, config::text, coalesce(extract(epoch FROM last_synced_at)::bigint, 0),"    \
    " extract(epoch FROM updated_at)::bigint"

static int fill_kernel(znp_ctx_t *ctx, const PGresult *res, int row, znp_node_kernel_t *out)
{
    memset(out, 0, sizeof(*out));
    out->protocol = znp_nodes__column(ctx, res, row, 0);
    out->endpoint = znp_nodes__column(ctx, res, row, 1);
    out->revision = znp_nodes__column(ctx, res, row, 2);
    out->status = znp_sql_int64(res, row, 3);
    out->config = znp_nodes__json(ctx, PQgetvalue(res, row, 4));
    out->last_synced_at = znp_sql_int64(res, row, 5);
    out->updated_at = znp_sql_int64(res, row, 6);
    if (out->protocol == NULL || out->endpoint == NULL || out->revision == NULL || out->config == NULL)
        return ZNP_E_INTERNAL;
    return 0;
}

int znp_nodes__check(znp_ctx_t *ctx, const char *id_text, int lock)
{
    static const char sql[] = "SELECT id FROM nodes WHERE id = $1 AND deleted_at IS NULL";
    static const char sql_lock[] = "SELECT id FROM nodes WHERE id = $1 AND deleted_at IS NULL FOR UPDATE";
    const char *params[1] = {id_text};
    PGresult *res = NULL;
    int rc = znp_sql_exec(&res, ctx->db, lock ? sql_lock : sql, 1, params, ctx->request_id);

    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no node with this id");
    PQclear(res);
    return rc;
}

int znp_op_list_admin_node_kernels(znp_ctx_t *ctx, const znp_list_admin_node_kernels_request_t *req,
                                   znp_list_admin_node_kernels_response_t *resp)
{
    static const char sql[] = "SELECT " KERNEL_COLUMNS " FROM node_kernels WHERE node_id = $1 ORDER BY protocol";
    char text[24];
    const char *params[1] = {znp_nodes__int(text, sizeof(text), req->id)};
    PGresult *res = NULL;
    znp_node_kernel_t *items = NULL;
    int rows, rc = znp_nodes__check(ctx, params[0], 0);

    if (rc == 0)
        rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rows = PQntuples(res);
    if (rows > 0 && (items = znp_arena_alloc(ctx->arena, (size_t)rows * sizeof(*items))) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    for (int i = 0; i < rows && rc == 0; i++)
        rc = fill_kernel(ctx, res, i, &items[i]);
    resp->node_id = req->id;
    resp->kernels.count = rc == 0 ? (size_t)rows : 0;
    resp->kernels.items = items;

cleanup:
    PQclear(res);
    return rc;
}

int znp_op_upsert_admin_node_kernel(znp_ctx_t *ctx, const znp_upsert_admin_node_kernel_request_t *req,
                                    znp_upsert_admin_node_kernel_response_t *resp)
{
    static const char sql[] =
        "INSERT INTO node_kernels (node_id, protocol, endpoint, revision, status, config, last_synced_at)"
        " VALUES ($1::bigint, $2, $3, coalesce($4, ''), coalesce($5::smallint, 1), coalesce($6::jsonb, '{}'),"
        " to_timestamp($7::bigint))"
        " ON CONFLICT (node_id, protocol) DO UPDATE SET endpoint = EXCLUDED.endpoint,"
        " revision = coalesce($4, node_kernels.revision), status = coalesce($5::smallint, node_kernels.status),"
        " config = coalesce($6::jsonb, node_kernels.config),"
        " last_synced_at = coalesce(to_timestamp($7::bigint), node_kernels.last_synced_at), updated_at = now()"
        " RETURNING " KERNEL_COLUMNS;
    static const char sql_touch[] = "UPDATE nodes SET updated_at = now() WHERE id = $1";
    const znp_node_kernel_upsert_t *body = &req->body;
    char id_text[24], status[24], synced[24], *config = NULL;
    const char *params[7] = {0};
    PGresult *res = NULL;
    json_t *diff = NULL;
    int rc;

    params[0] = znp_nodes__int(id_text, sizeof(id_text), req->id);
    if ((params[1] = znp_nodes__lower(ctx, body->protocol)) == NULL)
        return ZNP_E_INTERNAL;
    if ((rc = znp_nodes__normalize_url(ctx, "$.endpoint", body->endpoint, &params[2])) != 0)
        return rc;
    if (body->has.revision == ZNP_SET) {
        char *revision = znp_nodes__trimmed(ctx, body->revision);
        if (revision == NULL)
            return ZNP_E_INTERNAL;
        params[3] = *revision != '\0' ? revision : NULL;
    }
    if (body->has.status == ZNP_SET)
        params[4] = znp_nodes__int(status, sizeof(status), body->status);
    if (body->has.config == ZNP_SET) {
        if (!json_is_object(body->config))
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.config", "must be an object");
        config = json_dumps(body->config, JSON_COMPACT);
        if (config == NULL || (params[5] = znp_arena_strdup(ctx->arena, config)) == NULL) {
            free(config);
            return ZNP_E_INTERNAL;
        }
        free(config);
    }
    if (body->has.last_synced_at == ZNP_SET)
        params[6] = znp_nodes__int(synced, sizeof(synced), body->last_synced_at);

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_nodes__check(ctx, params[0], 1);
    if (rc == 0)
        rc = znp_sql_exec(&res, ctx->db, sql, 7, params, ctx->request_id);
    if (rc == 0)
        rc = fill_kernel(ctx, res, 0, &resp->kernel);
    if (rc == 0)
        rc = znp_sql_exec(NULL, ctx->db, sql_touch, 1, params, ctx->request_id);
    if (rc == 0) {
        diff = json_pack("{s:s, s:s, s:s?}", "protocol", params[1], "endpoint", params[2], "revision", params[3]);
        rc = diff != NULL ? znp_nodes__audit(ctx, "admin.node.kernel.upsert", req->id, diff) : ZNP_E_INTERNAL;
    }
    resp->node_id = req->id;
    json_decref(diff);
    PQclear(res);
    return znp_nodes__finish(ctx, rc);
}
