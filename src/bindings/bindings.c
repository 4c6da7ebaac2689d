/*
 * Protocol bindings under /api/v1/{admin}/protocol-bindings and the protocol
 * catalogue. Every write runs in one transaction with its audit row. Kernel
 * calls (removing a protocol from a kernel) happen after the commit, best
 * effort. Pushes live in sync.c and push.c.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "bindings/internal.h"
#include "core/log.h"
#include "core/pagination.h"
#include "nodes/internal.h"
#include "operations.gen.h"

#define LOG_TAG "bindings"

#define BINDING_COLUMNS                                                                                                \
    "b.id, b.name, b.node_id, n.name, b.protocol, b.role, b.kernel_id, b.listen, b.connect, b.access_port,"           \
    " b.status, b.sync_status, b.health_status, coalesce(extract(epoch FROM b.last_synced_at)::bigint, 0),"           \
    " coalesce(extract(epoch FROM b.last_heartbeat_at)::bigint, 0), b.last_sync_error,"                               \
    " array_to_json(b.tags)::text, b.description, b.profile::text, b.metadata::text,"                                 \
    " extract(epoch FROM b.created_at)::bigint, extract(epoch FROM b.updated_at)::bigint"

enum {
    C_ID, C_NAME, C_NODE_ID, C_NODE_NAME, C_PROTOCOL, C_ROLE, C_KERNEL_ID, C_LISTEN, C_CONNECT, C_ACCESS_PORT,
    C_STATUS, C_SYNC_STATUS, C_HEALTH, C_SYNCED, C_HEARTBEAT, C_SYNC_ERROR, C_TAGS, C_DESCRIPTION, C_PROFILE,
    C_METADATA, C_CREATED, C_UPDATED
};

/* Arena copy of a JSON array of strings as a znp_array_t. */
static int string_array(znp_ctx_t *ctx, const char *text, znp_array_t *out)
{
    json_t *list = znp_nodes__json(ctx, text);
    size_t count;
    char **items;

    out->count = 0;
    out->items = NULL;
    if (!json_is_array(list))
        return ZNP_E_INTERNAL;
    count = json_array_size(list);
    if (count == 0)
        return 0;
    if ((items = znp_arena_alloc(ctx->arena, count * sizeof(*items))) == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < count; i++)
        if ((items[i] = znp_arena_strdup(ctx->arena, json_string_value(json_array_get(list, i)))) == NULL)
            return ZNP_E_INTERNAL;
    out->items = items;
    out->count = count;
    return 0;
}

static int fill_binding(znp_ctx_t *ctx, const PGresult *res, int row, znp_protocol_binding_t *out)
{
    memset(out, 0, sizeof(*out));
    out->id = znp_sql_int64(res, row, C_ID);
    out->name = znp_nodes__column(ctx, res, row, C_NAME);
    out->node_id = znp_sql_int64(res, row, C_NODE_ID);
    out->node_name = znp_nodes__column(ctx, res, row, C_NODE_NAME);
    out->protocol = znp_nodes__column(ctx, res, row, C_PROTOCOL);
    out->role = znp_nodes__column(ctx, res, row, C_ROLE);
    out->kernel_id = znp_nodes__column(ctx, res, row, C_KERNEL_ID);
    out->listen = znp_nodes__column(ctx, res, row, C_LISTEN);
    out->connect = znp_nodes__column(ctx, res, row, C_CONNECT);
    out->access_port = znp_sql_int64(res, row, C_ACCESS_PORT);
    out->status = znp_sql_int64(res, row, C_STATUS);
    out->sync_status = znp_sql_int64(res, row, C_SYNC_STATUS);
    out->health_status = znp_sql_int64(res, row, C_HEALTH);
    out->last_synced_at = znp_sql_int64(res, row, C_SYNCED);
    out->last_heartbeat_at = znp_sql_int64(res, row, C_HEARTBEAT);
    out->last_sync_error = znp_nodes__column(ctx, res, row, C_SYNC_ERROR);
    out->description = znp_nodes__column(ctx, res, row, C_DESCRIPTION);
    out->profile = znp_nodes__json(ctx, PQgetvalue(res, row, C_PROFILE));
    out->metadata = znp_nodes__json(ctx, PQgetvalue(res, row, C_METADATA));
    out->created_at = znp_sql_int64(res, row, C_CREATED);
    out->updated_at = znp_sql_int64(res, row, C_UPDATED);
    if (out->name == NULL || out->node_name == NULL || out->protocol == NULL || out->role == NULL ||
        out->kernel_id == NULL || out->listen == NULL || out->connect == NULL || out->last_sync_error == NULL ||
        out->description == NULL || out->profile == NULL || out->metadata == NULL)
        return ZNP_E_INTERNAL;
    return string_array(ctx, PQgetvalue(res, row, C_TAGS), &out->tags);
}

/* Read binding `id` into `out`. An unknown id is ZNP_E_NOT_FOUND. */
static int reload(znp_ctx_t *ctx, int64_t id, znp_protocol_binding_t *out)
{
    static const char sql[] =
        "SELECT " BINDING_COLUMNS " FROM protocol_bindings b JOIN nodes n ON n.id = b.node_id WHERE b.id = $1";
    char text[24];
    const char *params[1] = {znp_nodes__int(text, sizeof(text), id)};
    PGresult *res = NULL;
    int rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);

    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no protocol binding with this id");
    if (rc == 0)
        rc = fill_binding(ctx, res, 0, out);
    PQclear(res);
    return rc;
}

/* A binding write that breaks the unique (node_id, kernel_id) index. */
static const znp_sql_unique_t KERNEL_ID_TAKEN = {ZNP_E_BINDING_KERNEL_ID_TAKEN, "$.kernel_id",
                                                 "another binding of this node uses this kernel id", NULL, 0};

/* Compact JSON text of the object `value` in the arena, or "{}" when `value` is NULL. */
static int object_text(znp_ctx_t *ctx, const char *path, const json_t *value, const char **out)
{
    char *text;

    if (value == NULL) {
        *out = "{}";
        return 0;
    }
    if (!json_is_object(value))
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "must be an object");
    text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text == NULL)
        return ZNP_E_INTERNAL;
    *out = znp_arena_strdup(ctx->arena, text);
    free(text);
    return *out != NULL ? 0 : ZNP_E_INTERNAL;
}

/* Trim `in` and check it with the listen rule. */
static int listen_text(znp_ctx_t *ctx, const char *in, const char **out)
{
    char *t = znp_nodes__trimmed(ctx, in);

    if (t == NULL)
        return ZNP_E_INTERNAL;
    if (znp_bindings__listen_check(t) != 0)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.listen",
                             "must be empty, a port from 1 to 65535, or host:port");
    *out = t;
    return 0;
}

/* Lock node `id` (live) for the transaction, or ZNP_E_NOT_FOUND at `path`. */
static int check_node(znp_ctx_t *ctx, const char *path, int64_t id)
{
    static const char sql[] = "SELECT 1 FROM nodes WHERE id = $1 AND deleted_at IS NULL FOR SHARE";
    char text[24];
    const char *params[1] = {znp_nodes__int(text, sizeof(text), id)};
    PGresult *res = NULL;
    int rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);

    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, path, "no node with this id");
    PQclear(res);
    return rc;
}

static int audit(znp_ctx_t *ctx, const char *action, int64_t id, json_t *diff)
{
    return znp_audit_record_resource(ctx, action, "protocol_binding", id, diff);
}

/* ---- operations ---- */

int znp_op_list_admin_protocols(znp_ctx_t *ctx, const znp_list_admin_protocols_request_t *req,
                                znp_list_admin_protocols_response_t *resp)
{
    static const char sql[] = "SELECT DISTINCT protocol FROM protocol_bindings ORDER BY protocol";
    PGresult *res = NULL;
    char **items = NULL;
    int rows, rc;

    (void)req;
    rc = znp_sql_exec(&res, ctx->db, sql, 0, NULL, ctx->request_id);
    if (rc != 0)
        return rc;
    rows = PQntuples(res);
    if (rows > 0 && (items = znp_arena_alloc(ctx->arena, (size_t)rows * sizeof(*items))) == NULL)
        rc = ZNP_E_INTERNAL;
    for (int i = 0; i < rows && rc == 0; i++)
        if ((items[i] = znp_nodes__column(ctx, res, i, 0)) == NULL)
            rc = ZNP_E_INTERNAL;
    if (rc == 0) {
        resp->protocols.count = (size_t)rows;
        resp->protocols.items = items;
    }
    PQclear(res);
    return rc;
}

int znp_op_create_admin_protocol_binding(znp_ctx_t *ctx, const znp_create_admin_protocol_binding_request_t *req,
                                         znp_create_admin_protocol_binding_response_t *resp)
{
    static const char sql[] =
        "INSERT INTO protocol_bindings (node_id, name, protocol, role, kernel_id, listen, connect, access_port,"
        " status, tags, description, profile, metadata) VALUES ($1::bigint, $2, $3, $4, $5, $6, $7, $8::integer,"
        " $9::smallint, ARRAY(SELECT json_array_elements_text($10::json)), $11, $12::jsonb, $13::jsonb) RETURNING id";
    static const znp_array_t empty = {0, NULL};
    const znp_protocol_binding_create_t *body = &req->body;
    char node[24], port[24], status[24];
    const char *params[13] = {0};
    PGresult *res = NULL;
    json_t *diff = NULL;
    int64_t id = 0;
    int rc;

    params[0] = znp_nodes__int(node, sizeof(node), body->node_id);
    params[1] = znp_nodes__trimmed(ctx, body->has.name == ZNP_SET ? body->name : "");
    params[2] = znp_nodes__lower(ctx, body->protocol);
    params[3] = body->role;
    params[4] = body->kernel_id;
    params[6] = znp_nodes__trimmed(ctx, body->has.connect == ZNP_SET ? body->connect : "");
    params[10] = znp_nodes__trimmed(ctx, body->has.description == ZNP_SET ? body->description : "");
    if (params[1] == NULL || params[2] == NULL || params[6] == NULL || params[10] == NULL)
        return ZNP_E_INTERNAL;
    if ((rc = listen_text(ctx, body->has.listen == ZNP_SET ? body->listen : "", &params[5])) != 0)
        return rc;
    params[7] = znp_nodes__int(port, sizeof(port), body->access_port);
    params[8] = znp_nodes__int(status, sizeof(status), body->has.status == ZNP_SET ? body->status : 1);
    if ((rc = znp_nodes__tags_text(ctx, body->has.tags == ZNP_SET ? &body->tags : &empty, &params[9])) != 0)
        return rc;
    if ((rc = object_text(ctx, "$.profile", body->has.profile == ZNP_SET ? body->profile : NULL, &params[11])) != 0)
        return rc;
    if ((rc = object_text(ctx, "$.metadata", body->has.metadata == ZNP_SET ? body->metadata : NULL, &params[12])) !=
        0)
        return rc;

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    if ((rc = check_node(ctx, "$.node_id", body->node_id)) != 0)
        goto cleanup;
    if ((rc = znp_sql_exec_unique(&res, ctx->err, ctx->db, sql, 13, params, &KERNEL_ID_TAKEN, ctx->request_id)) != 0)
        goto cleanup;
    id = znp_sql_int64(res, 0, 0);
    diff = json_pack("{s:I, s:s, s:s, s:s}", "node_id", (json_int_t)body->node_id, "protocol", params[2],
                     "role", params[3], "kernel_id", params[4]);
    if (diff == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    if ((rc = audit(ctx, "admin.protocol_binding.create", id, diff)) == 0)
        rc = reload(ctx, id, &resp->binding);

cleanup:
    json_decref(diff);
    PQclear(res);
    rc = znp_nodes__finish(ctx, rc);
    if (rc == 0)
        znp_bindings__eligibility_changed();
    return rc;
}

int znp_op_get_admin_protocol_binding(znp_ctx_t *ctx, const znp_get_admin_protocol_binding_request_t *req,
                                      znp_get_admin_protocol_binding_response_t *resp)
{
    return reload(ctx, req->id, &resp->binding);
}

/* Optional text of a PATCH: absent -> NULL (unchanged), null -> "", value -> trimmed. */
static int patch_text(znp_ctx_t *ctx, znp_presence_t has, const char *value, const char **out)
{
    *out = NULL;
    if (has == ZNP_ABSENT)
        return 0;
    *out = znp_nodes__trimmed(ctx, has == ZNP_SET ? value : "");
    return *out != NULL ? 0 : ZNP_E_INTERNAL;
}

/* Where a binding was on the kernel side before a PATCH, to clean up after a move. */
typedef struct placement {
    int64_t node_id;
    char kernel_id[160];
} placement_t;

int znp_op_update_admin_protocol_binding(znp_ctx_t *ctx, const znp_update_admin_protocol_binding_request_t *req,
                                         znp_update_admin_protocol_binding_response_t *resp)
{
    static const char sql_lock[] = "SELECT node_id, kernel_id FROM protocol_bindings WHERE id = $1 FOR UPDATE";
    /*
     * $20 is true when the request changes what the kernel receives, which
     * makes the binding pending again unless $13 sets sync_status itself.
     */
    static const char sql[] =
        "UPDATE protocol_bindings SET node_id = coalesce($2::bigint, node_id), name = coalesce($3, name),"
        " protocol = coalesce($4, protocol), role = coalesce($5, role), kernel_id = coalesce($6, kernel_id),"
        " listen = coalesce($7, listen), connect = coalesce($8, connect),"
        " access_port = coalesce($9::integer, access_port), status = coalesce($10::smallint, status),"
        " tags = CASE WHEN $11::json IS NULL THEN tags ELSE ARRAY(SELECT json_array_elements_text($11::json)) END,"
        " description = coalesce($12, description),"
        " sync_status = coalesce($13::smallint, CASE WHEN $20::boolean THEN 1 ELSE sync_status END),"
        " health_status = coalesce($14::smallint, health_status),"
        " last_synced_at = CASE WHEN $15::bigint IS NULL THEN last_synced_at"
        " WHEN $15::bigint = 0 THEN NULL ELSE to_timestamp($15::bigint) END,"
        " last_heartbeat_at = CASE WHEN $16::bigint IS NULL THEN last_heartbeat_at"
        " WHEN $16::bigint = 0 THEN NULL ELSE to_timestamp($16::bigint) END,"
        " last_sync_error = coalesce($17, last_sync_error), profile = coalesce($18::jsonb, profile),"
        " metadata = coalesce($19::jsonb, metadata), updated_at = now() WHERE id = $1";
    /* entries carry their binding's protocol */
    static const char sql_entries[] =
        "UPDATE protocol_entries SET protocol = $2, updated_at = now() WHERE binding_id = $1 AND protocol <> $2";
    static const char *const names[] = {
        NULL, "node_id", "name", "protocol", "role", "kernel_id", "listen", "connect", "access_port", "status", "tags",
        "description", "sync_status", "health_status", "last_synced_at", "last_heartbeat_at", "last_sync_error",
        "profile", "metadata"};
    static const znp_array_t empty = {0, NULL};
    const znp_protocol_binding_update_t *body = &req->body;
    char id_text[24], node[24], port[24], status[24], sync_status[24], health[24], synced[24], heartbeat[24];
    const char *params[20] = {0};
    placement_t before = {0}, after = {0};
    PGresult *res = NULL;
    json_t *changed = NULL, *diff = NULL;
    int pushed_change = 0, moved = 0, rc;

    params[0] = znp_nodes__int(id_text, sizeof(id_text), req->id);
    if (body->has.node_id == ZNP_SET)
        params[1] = znp_nodes__int(node, sizeof(node), body->node_id);
    if ((rc = patch_text(ctx, body->has.name, body->name, &params[2])) != 0)
        return rc;
    if (body->has.protocol == ZNP_SET && (params[3] = znp_nodes__lower(ctx, body->protocol)) == NULL)
        return ZNP_E_INTERNAL;
    if (body->has.role == ZNP_SET)
        params[4] = body->role;
    if (body->has.kernel_id == ZNP_SET)
        params[5] = body->kernel_id;
    if (body->has.listen != ZNP_ABSENT &&
        (rc = listen_text(ctx, body->has.listen == ZNP_SET ? body->listen : "", &params[6])) != 0)
        return rc;
    if ((rc = patch_text(ctx, body->has.connect, body->connect, &params[7])) != 0)
        return rc;
    if (body->has.access_port == ZNP_SET)
        params[8] = znp_nodes__int(port, sizeof(port), body->access_port);
    if (body->has.status == ZNP_SET)
        params[9] = znp_nodes__int(status, sizeof(status), body->status);
    if (body->has.tags != ZNP_ABSENT &&
        (rc = znp_nodes__tags_text(ctx, body->has.tags == ZNP_SET ? &body->tags : &empty, &params[10])) != 0)
        return rc;
    if ((rc = patch_text(ctx, body->has.description, body->description, &params[11])) != 0)
        return rc;
    if (body->has.sync_status == ZNP_SET)
        params[12] = znp_nodes__int(sync_status, sizeof(sync_status), body->sync_status);
    if (body->has.health_status == ZNP_SET)
        params[13] = znp_nodes__int(health, sizeof(health), body->health_status);
    if (body->has.last_synced_at == ZNP_SET)
        params[14] = znp_nodes__int(synced, sizeof(synced), body->last_synced_at);
    if (body->has.last_heartbeat_at == ZNP_SET)
        params[15] = znp_nodes__int(heartbeat, sizeof(heartbeat), body->last_heartbeat_at);
    if (body->has.last_sync_error != ZNP_ABSENT)
        params[16] = body->has.last_sync_error == ZNP_SET ? body->last_sync_error : "";
    if (body->has.profile != ZNP_ABSENT &&
        (rc = object_text(ctx, "$.profile", body->has.profile == ZNP_SET ? body->profile : NULL, &params[17])) != 0)
        return rc;
    if (body->has.metadata != ZNP_ABSENT &&
        (rc = object_text(ctx, "$.metadata", body->has.metadata == ZNP_SET ? body->metadata : NULL, &params[18])) !=
            0)
        return rc;
    for (int i = 1; i <= 10; i++)
        if (i != 2 && params[i] != NULL)
            pushed_change = 1;
    if (params[11] != NULL || params[17] != NULL)
        pushed_change = 1;
    params[19] = pushed_change ? "true" : "false";
    if ((changed = json_array()) == NULL)
        return ZNP_E_INTERNAL;
    for (int i = 1; i < 19; i++)
        if (params[i] != NULL)
            json_array_append_new(changed, json_string(names[i]));
    if (json_array_size(changed) == 0) {
        json_decref(changed);
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$", "must set at least one field");
    }

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rc = znp_sql_exec(&res, ctx->db, sql_lock, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no protocol binding with this id");
        goto cleanup;
    }
    before.node_id = znp_sql_int64(res, 0, 0);
    snprintf(before.kernel_id, sizeof(before.kernel_id), "%s", PQgetvalue(res, 0, 1));
    PQclear(res);
    res = NULL;
    if (params[1] != NULL && (rc = check_node(ctx, "$.node_id", body->node_id)) != 0)
        goto cleanup;
    if ((rc = znp_sql_exec_unique(&res, ctx->err, ctx->db, sql, 20, params, &KERNEL_ID_TAKEN, ctx->request_id)) != 0)
        goto cleanup;
    PQclear(res);
    res = NULL;
    if (params[3] != NULL) {
        const char *entry_params[2] = {params[0], params[3]};
        if ((rc = znp_sql_exec(NULL, ctx->db, sql_entries, 2, entry_params, ctx->request_id)) != 0)
            goto cleanup;
    }
    if ((diff = json_pack("{s:O}", "changed", changed)) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    if ((rc = audit(ctx, "admin.protocol_binding.update", req->id, diff)) == 0)
        rc = reload(ctx, req->id, &resp->binding);
    if (rc == 0) {
        after.node_id = resp->binding.node_id;
        snprintf(after.kernel_id, sizeof(after.kernel_id), "%s", resp->binding.kernel_id);
        moved = after.node_id != before.node_id || strcmp(after.kernel_id, before.kernel_id) != 0;
    }

cleanup:
    json_decref(changed);
    json_decref(diff);
    PQclear(res);
    rc = znp_nodes__finish(ctx, rc);
    if (rc == 0) {
        znp_bindings__eligibility_changed();
        if (moved)
            znp_bindings__kernel_delete(ctx->db, ctx->config, before.node_id, before.kernel_id, ctx->request_id);
    }
    return rc;
}

int znp_op_delete_admin_protocol_binding(znp_ctx_t *ctx, const znp_delete_admin_protocol_binding_request_t *req)
{
    /* entries and plan links go with the row through ON DELETE CASCADE */
    static const char sql[] = "DELETE FROM protocol_bindings WHERE id = $1 RETURNING node_id, kernel_id,"
                              " (SELECT count(*) FROM protocol_entries WHERE binding_id = $1),"
                              " (SELECT count(*) FROM plan_bindings WHERE binding_id = $1)";
    char text[24];
    const char *params[1] = {znp_nodes__int(text, sizeof(text), req->id)};
    placement_t before = {0};
    PGresult *res = NULL;
    json_t *diff = NULL;
    int rc = znp_sql_begin(ctx->db, ctx->request_id);

    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no protocol binding with this id");
        goto cleanup;
    }
    before.node_id = znp_sql_int64(res, 0, 0);
    snprintf(before.kernel_id, sizeof(before.kernel_id), "%s", PQgetvalue(res, 0, 1));
    diff = json_pack("{s:I, s:s, s:I, s:I}", "node_id", (json_int_t)before.node_id, "kernel_id", before.kernel_id,
                     "entries_deleted", (json_int_t)znp_sql_int64(res, 0, 2), "plan_links_deleted",
                     (json_int_t)znp_sql_int64(res, 0, 3));
    if (diff == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    rc = audit(ctx, "admin.protocol_binding.delete", req->id, diff);

cleanup:
    json_decref(diff);
    PQclear(res);
    rc = znp_nodes__finish(ctx, rc);
    if (rc == 0) {
        znp_bindings__eligibility_changed();
        znp_bindings__kernel_delete(ctx->db, ctx->config, before.node_id, before.kernel_id, ctx->request_id);
    }
    return rc;
}

/* ORDER BY text of each sort key. The codec already limits `sort` and `direction` to their enums. */
static const znp_sql_order_t ORDERS[] = {
    {"updated_at", "b.updated_at ASC, b.id ASC", "b.updated_at DESC, b.id DESC"},
    {"name", "b.name ASC, b.id ASC", "b.name DESC, b.id DESC"},
    {"status", "b.status ASC, b.id ASC", "b.status DESC, b.id DESC"},
    {"last_synced_at", "b.last_synced_at ASC NULLS FIRST, b.id ASC", "b.last_synced_at DESC NULLS LAST, b.id DESC"},
    {"last_heartbeat_at", "b.last_heartbeat_at ASC NULLS FIRST, b.id ASC",
     "b.last_heartbeat_at DESC NULLS LAST, b.id DESC"},
    {"created_at", "b.created_at ASC, b.id ASC", "b.created_at DESC, b.id DESC"},
    {"id", "b.id ASC", "b.id DESC"},
};

#define BINDING_FILTER                                                                                                 \
    " FROM protocol_bindings b JOIN nodes n ON n.id = b.node_id WHERE"                                                 \
    " ($1::text IS NULL OR strpos(lower(b.name), lower($1)) > 0 OR strpos(lower(b.description), lower($1)) > 0)"       \
    " AND ($2::smallint IS NULL OR b.status = $2::smallint) AND ($3::text IS NULL OR b.protocol = lower($3))"          \
    " AND ($4::bigint IS NULL OR b.node_id = $4::bigint)"

int znp_op_list_admin_protocol_bindings(znp_ctx_t *ctx, const znp_list_admin_protocol_bindings_request_t *req,
                                        znp_list_admin_protocol_bindings_response_t *resp)
{
    char status[24], node[24];
    const char *filter[4] = {0};
    znp_sql_list_t list = {"SELECT count(*)" BINDING_FILTER, NULL, filter, 4, req->page, req->per_page};
    znp_protocol_binding_t *items = NULL;
    PGresult *res = NULL;
    int rows, rc;

    filter[0] = req->has.q == ZNP_SET && req->q[0] != '\0' ? req->q : NULL;
    filter[1] =
        req->has.status == ZNP_SET && req->status != 0 ? znp_nodes__int(status, sizeof(status), req->status) : NULL;
    filter[2] = req->has.protocol == ZNP_SET && req->protocol[0] != '\0' ? req->protocol : NULL;
    filter[3] = req->has.node_id == ZNP_SET ? znp_nodes__int(node, sizeof(node), req->node_id) : NULL;
    list.page_sql =
        znp_arena_printf(ctx->arena, "SELECT " BINDING_COLUMNS BINDING_FILTER " ORDER BY %s LIMIT $5 OFFSET $6",
                         znp_sql_order(ORDERS, sizeof(ORDERS) / sizeof(ORDERS[0]), req->sort, req->direction, 1));
    if (list.page_sql == NULL)
        return ZNP_E_INTERNAL;

    rc = znp_sql_list(&res, &resp->pagination, ctx->db, &list, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rows = PQntuples(res);
    if (rows > 0 && (items = znp_arena_alloc(ctx->arena, (size_t)rows * sizeof(*items))) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    for (int i = 0; i < rows && rc == 0; i++)
        rc = fill_binding(ctx, res, i, &items[i]);
    if (rc != 0)
        goto cleanup;
    resp->bindings.count = (size_t)rows;
    resp->bindings.items = items;

cleanup:
    znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    return rc;
}
