/*
 * The sync operations: push one binding, push several, and read binding
 * health from the kernels. Each waits for its kernel calls, which the node's
 * kernel timeout bounds. No other request waits on them.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "bindings/internal.h"
#include "core/log.h"
#include "kernel/kernel.h"
#include "nodes/internal.h"
#include "operations.gen.h"

#define LOG_TAG "bindings"
#define NODE_DISABLED 4
#define HEALTH_OFFLINE 4

/* PostgreSQL array text ("{1,2}") of an int64 array, in the arena. */
static const char *id_array(znp_ctx_t *ctx, const znp_array_t *ids)
{
    size_t size = 3 + ids->count * 21;
    char *out = znp_arena_alloc(ctx->arena, size), *p = out;
    const int64_t *items = ids->items;

    if (out == NULL)
        return NULL;
    *p++ = '{';
    for (size_t i = 0; i < ids->count; i++)
        p += snprintf(p, size - (size_t)(p - out), "%s%" PRId64, i > 0 ? "," : "", items[i]);
    snprintf(p, size - (size_t)(p - out), "}");
    return out;
}

/* Report the first id of `ids` that `sql_missing` returns as ZNP_E_NOT_FOUND at `path`. */
static int check_ids(znp_ctx_t *ctx, const char *sql_missing, const char *ids, const char *path, const char *what)
{
    const char *params[1] = {ids};
    PGresult *res = NULL;
    int rc = znp_sql_exec(&res, ctx->db, sql_missing, 1, params, ctx->request_id);

    if (rc == 0 && PQntuples(res) > 0)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, path, "no %s with id %s", what, PQgetvalue(res, 0, 0));
    PQclear(res);
    return rc;
}

static int fill_result(znp_ctx_t *ctx, int64_t binding_id, const znp_bindings_outcome_t *outcome,
                       znp_protocol_binding_sync_result_t *out)
{
    memset(out, 0, sizeof(*out));
    out->binding_id = binding_id;
    out->status = outcome->status;
    out->synced_at = outcome->synced_at;
    out->message = znp_arena_strdup(ctx->arena, outcome->message);
    return out->message != NULL ? 0 : ZNP_E_INTERNAL;
}

static int audit_sync(znp_ctx_t *ctx, int64_t binding_id, const znp_bindings_outcome_t *outcome)
{
    json_t *diff = json_pack("{s:i, s:s}", "status", outcome->status, "message", outcome->message);
    int rc = diff != NULL ? znp_audit_record_resource(ctx, "admin.protocol_binding.sync", "protocol_binding",
                                                      binding_id, diff)
                          : ZNP_E_INTERNAL;

    json_decref(diff);
    return rc;
}

int znp_op_sync_admin_protocol_binding(znp_ctx_t *ctx, const znp_sync_admin_protocol_binding_request_t *req,
                                       znp_sync_admin_protocol_binding_response_t *resp)
{
    znp_bindings_outcome_t outcome;
    int rc = znp_bindings__push(ctx->db, ctx->config, req->id, &outcome, ctx->request_id);

    if (rc == ZNP_E_NOT_FOUND)
        return znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no protocol binding with this id");
    if (rc == 0)
        rc = audit_sync(ctx, req->id, &outcome);
    if (rc == 0)
        rc = fill_result(ctx, req->id, &outcome, resp);
    return rc;
}

int znp_op_sync_admin_protocol_bindings(znp_ctx_t *ctx, const znp_sync_admin_protocol_bindings_request_t *req,
                                        znp_sync_admin_protocol_bindings_response_t *resp)
{
    static const char sql_missing_bindings[] =
        "SELECT x FROM unnest($1::bigint[]) x WHERE NOT EXISTS (SELECT 1 FROM protocol_bindings WHERE id = x) LIMIT 1";
    static const char sql_missing_nodes[] = "SELECT x FROM unnest($1::bigint[]) x WHERE NOT EXISTS"
                                            " (SELECT 1 FROM nodes WHERE id = x AND deleted_at IS NULL) LIMIT 1";
    static const char sql[] = "SELECT id FROM protocol_bindings WHERE id = ANY($1::bigint[])"
                              " OR node_id = ANY($2::bigint[]) ORDER BY id";
    static const znp_array_t empty = {0, NULL};
    const znp_protocol_binding_sync_request_t *body = &req->body;
    const znp_array_t *binding_ids = body->has.binding_ids == ZNP_SET ? &body->binding_ids : &empty;
    const znp_array_t *node_ids = body->has.node_ids == ZNP_SET ? &body->node_ids : &empty;
    const char *params[2];
    znp_protocol_binding_sync_result_t *results = NULL;
    PGresult *res = NULL;
    size_t count = 0;
    int rows, rc;

    if (binding_ids->count == 0 && node_ids->count == 0)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$", "binding_ids or node_ids must name something");
    params[0] = id_array(ctx, binding_ids);
    params[1] = id_array(ctx, node_ids);
    if (params[0] == NULL || params[1] == NULL)
        return ZNP_E_INTERNAL;
    if ((rc = check_ids(ctx, sql_missing_bindings, params[0], "$.binding_ids", "protocol binding")) != 0 ||
        (rc = check_ids(ctx, sql_missing_nodes, params[1], "$.node_ids", "node")) != 0)
        return rc;
    if ((rc = znp_sql_exec(&res, ctx->db, sql, 2, params, ctx->request_id)) != 0)
        return rc;
    rows = PQntuples(res);
    if (rows > 0 && (results = znp_arena_alloc(ctx->arena, (size_t)rows * sizeof(*results))) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    for (int row = 0; row < rows; row++) {
        int64_t id = znp_sql_int64(res, row, 0);
        znp_bindings_outcome_t outcome;

        rc = znp_bindings__push(ctx->db, ctx->config, id, &outcome, ctx->request_id);
        if (rc == ZNP_E_NOT_FOUND) { /* deleted since the list was read */
            rc = 0;
            continue;
        }
        if (rc == 0)
            rc = audit_sync(ctx, id, &outcome);
        if (rc == 0)
            rc = fill_result(ctx, id, &outcome, &results[count++]);
        if (rc != 0)
            goto cleanup;
    }
    resp->results.count = count;
    resp->results.items = results;

cleanup:
    PQclear(res);
    return rc;
}

/* ---- health ---- */

/* The health value of a snapshot node: health.status, or health itself when it has no status member. */
static const json_t *health_value(const json_t *node)
{
    const json_t *health = json_object_get(node, "health");
    const json_t *status = json_object_get(health, "status");

    return status != NULL ? status : health;
}

/* The snapshot node whose id is `kernel_id`, or NULL. */
static const json_t *find_node(const json_t *nodes, const char *kernel_id)
{
    size_t index;
    const json_t *node;

    json_array_foreach(nodes, index, node) {
        const char *id = json_string_value(json_object_get(node, "id"));
        if (id != NULL && strcmp(id, kernel_id) == 0)
            return node;
    }
    return NULL;
}

/* Write the health of node `node_id`'s active bindings from the kernel's snapshot nodes, in one transaction. */
static int write_health(znp_ctx_t *ctx, const char *node_text, const json_t *nodes, int64_t *updated)
{
    static const char sql_list[] =
        "SELECT id, kernel_id, health_status FROM protocol_bindings WHERE node_id = $1 AND status = 1"
        " ORDER BY id FOR UPDATE";
    static const char sql[] =
        "UPDATE protocol_bindings SET health_status = $2::smallint, last_heartbeat_at = now() WHERE id = $1";
    const char *params[2] = {node_text, NULL};
    PGresult *res = NULL;
    int changed = 0;
    int rc = znp_sql_begin(ctx->db, ctx->request_id);

    *updated = 0;
    if (rc != 0)
        return rc;
    if ((rc = znp_sql_exec(&res, ctx->db, sql_list, 1, params, ctx->request_id)) != 0)
        goto cleanup;
    for (int row = 0; row < PQntuples(res) && rc == 0; row++) {
        const json_t *node = find_node(nodes, PQgetvalue(res, row, 1));
        char health[8];
        const char *update[2] = {PQgetvalue(res, row, 0), health};

        snprintf(health, sizeof(health), "%d", node != NULL ? znp_kernel_health_of(health_value(node)) : HEALTH_OFFLINE);
        rc = znp_sql_exec(NULL, ctx->db, sql, 2, update, ctx->request_id);
        *updated += rc == 0;
        changed |= strcmp(health, PQgetvalue(res, row, 2)) != 0;
    }

cleanup:
    PQclear(res);
    rc = znp_nodes__finish(ctx, rc);
    /* health decides which entries downloads and user lists serve; other instances follow through NOTIFY */
    if (rc == 0 && changed)
        znp_bindings__eligibility_changed();
    return rc;
}

/* Health sync of one node into `out`. Only database failures return an error. */
static int sync_node_health(znp_ctx_t *ctx, int64_t node_id, znp_protocol_binding_status_sync_result_t *out)
{
    static const char sql[] = "SELECT status FROM nodes WHERE id = $1 AND deleted_at IS NULL";
    char text[24], errbuf[1200];
    const char *params[1] = {znp_nodes__int(text, sizeof(text), node_id)}, *message = znp_ctx_text(ctx, "ok", "成功");
    znp_kernel_target_t target = {0};
    const json_t *nodes;
    json_t *answer = NULL;
    PGresult *res = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    out->node_id = node_id;
    out->synced_at = (int64_t)time(NULL);
    out->status = SYNC_RESULT_ERROR;
    if ((rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id)) != 0)
        return rc;
    if (PQntuples(res) != 1) {
        message = znp_ctx_text(ctx, "node not found", "节点不存在");
    } else if (znp_sql_int64(res, 0, 0) == NODE_DISABLED) {
        out->status = SYNC_RESULT_SKIPPED;
        message = znp_ctx_text(ctx, "node is disabled", "节点已停用");
    } else if (znp_kernel_target_load(ctx->db, ctx->config, node_id, &target, ctx->request_id) != 0) {
        message = znp_ctx_text(ctx, "could not load the node's kernel endpoint and credentials",
                               "无法读取节点的内核地址和凭据");
    } else if (znp_kernel_call(&target, "GET", "/status?include=nodes", NULL, &answer, errbuf, sizeof(errbuf)) != 0) {
        message = errbuf;
    } else {
        nodes = json_object_get(json_object_get(answer, "snapshot"), "nodes");
        if (nodes == NULL)
            nodes = json_object_get(answer, "nodes");
        if (!json_is_array(nodes)) {
            message = znp_ctx_text(ctx, "kernel status has no snapshot.nodes list", "内核状态中没有 snapshot.nodes 列表");
        } else if ((rc = write_health(ctx, params[0], nodes, &out->updated)) == 0) {
            out->status = SYNC_RESULT_SYNCED;
        }
    }
    PQclear(res);
    json_decref(answer);
    znp_kernel_target_clear(&target);
    if (out->status == SYNC_RESULT_ERROR)
        ZNP_WARN(LOG_TAG, ctx->request_id, "binding health sync failed node_id=%" PRId64 ": %s", node_id, message);
    out->message = znp_arena_strdup(ctx->arena, message);
    if (rc == 0 && out->message == NULL)
        rc = ZNP_E_INTERNAL;
    return rc;
}

int znp_op_sync_admin_protocol_binding_status(znp_ctx_t *ctx,
                                              const znp_sync_admin_protocol_binding_status_request_t *req,
                                              znp_sync_admin_protocol_binding_status_response_t *resp)
{
    const znp_array_t *ids = &req->body.node_ids;
    const int64_t *items = ids->items;
    znp_protocol_binding_status_sync_result_t *results;
    size_t count = 0;
    int rc = 0;

    if ((results = znp_arena_alloc(ctx->arena, (ids->count > 0 ? ids->count : 1) * sizeof(*results))) == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < ids->count && rc == 0; i++) {
        int seen = 0;

        for (size_t j = 0; j < i; j++)
            seen |= items[j] == items[i];
        if (!seen)
            rc = sync_node_health(ctx, items[i], &results[count++]);
    }
    resp->results.count = count;
    resp->results.items = results;
    return rc;
}
