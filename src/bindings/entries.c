/*
 * Protocol entries under /api/v1/{admin}/protocol-entries: the public
 * addresses clients connect to. An entry's protocol always equals its
 * binding's, and hosts are stored normalised (IPv6 without brackets, zone
 * ids rejected). Every write runs in one transaction with its audit row.
 */
#include <jansson.h>
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

#define ENTRY_COLUMNS                                                                                                  \
    "e.id, e.name, e.binding_id, b.name, b.node_id, n.name, e.protocol, e.status, b.status, b.health_status,"         \
    " e.entry_address, e.entry_port, array_to_json(e.tags)::text, e.description, e.profile::text, e.sort_order,"      \
    " extract(epoch FROM e.created_at)::bigint, extract(epoch FROM e.updated_at)::bigint"
#define ENTRY_FROM                                                                                                     \
    " FROM protocol_entries e JOIN protocol_bindings b ON b.id = e.binding_id JOIN nodes n ON n.id = b.node_id"

enum {
    C_ID, C_NAME, C_BINDING_ID, C_BINDING_NAME, C_NODE_ID, C_NODE_NAME, C_PROTOCOL, C_STATUS, C_BINDING_STATUS,
    C_HEALTH, C_ADDRESS, C_PORT, C_TAGS, C_DESCRIPTION, C_PROFILE, C_SORT, C_CREATED, C_UPDATED
};

static int fill_entry(znp_ctx_t *ctx, const PGresult *res, int row, znp_protocol_entry_t *out)
{
    json_t *tags;
    size_t count;

    memset(out, 0, sizeof(*out));
    out->id = znp_sql_int64(res, row, C_ID);
    out->name = znp_nodes__column(ctx, res, row, C_NAME);
    out->binding_id = znp_sql_int64(res, row, C_BINDING_ID);
    out->binding_name = znp_nodes__column(ctx, res, row, C_BINDING_NAME);
    out->node_id = znp_sql_int64(res, row, C_NODE_ID);
    out->node_name = znp_nodes__column(ctx, res, row, C_NODE_NAME);
    out->protocol = znp_nodes__column(ctx, res, row, C_PROTOCOL);
    out->status = znp_sql_int64(res, row, C_STATUS);
    out->binding_status = znp_sql_int64(res, row, C_BINDING_STATUS);
    out->health_status = znp_sql_int64(res, row, C_HEALTH);
    out->entry_address = znp_nodes__column(ctx, res, row, C_ADDRESS);
    out->entry_port = znp_sql_int64(res, row, C_PORT);
    out->description = znp_nodes__column(ctx, res, row, C_DESCRIPTION);
    out->profile = znp_nodes__json(ctx, PQgetvalue(res, row, C_PROFILE));
    out->sort_order = znp_sql_int64(res, row, C_SORT);
    out->created_at = znp_sql_int64(res, row, C_CREATED);
    out->updated_at = znp_sql_int64(res, row, C_UPDATED);
    if (out->name == NULL || out->binding_name == NULL || out->node_name == NULL || out->protocol == NULL ||
        out->entry_address == NULL || out->description == NULL || out->profile == NULL)
        return ZNP_E_INTERNAL;
    tags = znp_nodes__json(ctx, PQgetvalue(res, row, C_TAGS));
    if (!json_is_array(tags))
        return ZNP_E_INTERNAL;
    count = json_array_size(tags);
    if (count > 0) {
        char **items = znp_arena_alloc(ctx->arena, count * sizeof(*items));
        if (items == NULL)
            return ZNP_E_INTERNAL;
        for (size_t i = 0; i < count; i++)
            if ((items[i] = znp_arena_strdup(ctx->arena, json_string_value(json_array_get(tags, i)))) == NULL)
                return ZNP_E_INTERNAL;
        out->tags.items = items;
        out->tags.count = count;
    }
    return 0;
}

static int reload(znp_ctx_t *ctx, int64_t id, znp_protocol_entry_t *out)
{
    static const char sql[] = "SELECT " ENTRY_COLUMNS ENTRY_FROM " WHERE e.id = $1";
    char text[24];
    const char *params[1] = {znp_nodes__int(text, sizeof(text), id)};
    PGresult *res = NULL;
    int rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);

    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no protocol entry with this id");
    if (rc == 0)
        rc = fill_entry(ctx, res, 0, out);
    PQclear(res);
    return rc;
}

/* The binding an entry points to, read under a share lock. */
typedef struct binding_ref {
    char *name;
    char *protocol;
} binding_ref_t;

static int load_binding(znp_ctx_t *ctx, int64_t id, binding_ref_t *out)
{
    static const char sql[] = "SELECT name, protocol FROM protocol_bindings WHERE id = $1 FOR SHARE";
    char text[24];
    const char *params[1] = {znp_nodes__int(text, sizeof(text), id)};
    PGresult *res = NULL;
    int rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);

    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "$.binding_id", "no protocol binding with this id");
    if (rc == 0) {
        out->name = znp_nodes__column(ctx, res, 0, 0);
        out->protocol = znp_nodes__column(ctx, res, 0, 1);
        if (out->name == NULL || out->protocol == NULL)
            rc = ZNP_E_INTERNAL;
    }
    PQclear(res);
    return rc;
}

/* Reject a requested protocol (may be NULL) that differs from the binding's. */
static int check_protocol(znp_ctx_t *ctx, const char *requested, const char *binding_protocol)
{
    const char *lower;

    if (requested == NULL)
        return 0;
    if ((lower = znp_nodes__lower(ctx, requested)) == NULL)
        return ZNP_E_INTERNAL;
    if (strcmp(lower, binding_protocol) != 0)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.protocol",
                             "must equal the binding's protocol \"%s\"", binding_protocol);
    return 0;
}

static int object_text(znp_ctx_t *ctx, const json_t *value, const char **out)
{
    char *text;

    if (value == NULL) {
        *out = "{}";
        return 0;
    }
    if (!json_is_object(value))
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.profile", "must be an object");
    if ((text = json_dumps(value, JSON_COMPACT)) == NULL)
        return ZNP_E_INTERNAL;
    *out = znp_arena_strdup(ctx->arena, text);
    free(text);
    return *out != NULL ? 0 : ZNP_E_INTERNAL;
}

static int audit(znp_ctx_t *ctx, const char *action, int64_t id, json_t *diff)
{
    return znp_audit_record_resource(ctx, action, "protocol_entry", id, diff);
}

/* Commit or roll back; after a commit the cached user lists and downloads are dropped. */
static int finish_write(znp_ctx_t *ctx, int rc)
{
    rc = znp_nodes__finish(ctx, rc);
    if (rc == 0)
        znp_bindings__eligibility_changed();
    return rc;
}

/* ---- operations ---- */

int znp_op_create_admin_protocol_entry(znp_ctx_t *ctx, const znp_create_admin_protocol_entry_request_t *req,
                                       znp_create_admin_protocol_entry_response_t *resp)
{
    static const char sql[] =
        "INSERT INTO protocol_entries (binding_id, name, protocol, status, entry_address, entry_port, tags,"
        " description, profile, sort_order) VALUES ($1::bigint, $2, $3, $4::smallint, $5, $6::integer,"
        " ARRAY(SELECT json_array_elements_text($7::json)), $8, $9::jsonb, $10::integer) RETURNING id";
    static const znp_array_t empty = {0, NULL};
    const znp_protocol_entry_create_t *body = &req->body;
    char binding[24], status[24], port[24], sort[24];
    const char *params[10] = {0};
    binding_ref_t ref = {0};
    PGresult *res = NULL;
    json_t *diff = NULL;
    int64_t id;
    int rc;

    params[0] = znp_nodes__int(binding, sizeof(binding), body->binding_id);
    params[3] = znp_nodes__int(status, sizeof(status), body->has.status == ZNP_SET ? body->status : 1);
    if ((rc = znp_nodes__normalize_address(ctx, "$.entry_address", body->entry_address, &params[4])) != 0)
        return rc;
    if (*params[4] == '\0')
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.entry_address", "must not be blank");
    params[5] = znp_nodes__int(port, sizeof(port), body->entry_port);
    if ((rc = znp_nodes__tags_text(ctx, body->has.tags == ZNP_SET ? &body->tags : &empty, &params[6])) != 0)
        return rc;
    params[7] = znp_nodes__trimmed(ctx, body->has.description == ZNP_SET ? body->description : "");
    if (params[7] == NULL)
        return ZNP_E_INTERNAL;
    if ((rc = object_text(ctx, body->has.profile == ZNP_SET ? body->profile : NULL, &params[8])) != 0)
        return rc;
    params[9] = znp_nodes__int(sort, sizeof(sort), body->sort_order);

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    if ((rc = load_binding(ctx, body->binding_id, &ref)) != 0)
        goto cleanup;
    if ((rc = check_protocol(ctx, body->has.protocol == ZNP_SET ? body->protocol : NULL, ref.protocol)) != 0)
        goto cleanup;
    params[2] = ref.protocol;
    params[1] = znp_nodes__trimmed(ctx, body->has.name == ZNP_SET && body->name[0] != '\0' ? body->name : ref.name);
    if (params[1] == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    if (*params[1] == '\0') {
        rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.name",
                           "must not be blank (the binding has no name to use)");
        goto cleanup;
    }
    if ((rc = znp_sql_exec(&res, ctx->db, sql, 10, params, ctx->request_id)) != 0)
        goto cleanup;
    id = znp_sql_int64(res, 0, 0);
    diff = json_pack("{s:I, s:s, s:s, s:I}", "binding_id", (json_int_t)body->binding_id, "name", params[1],
                     "entry_address", params[4], "entry_port", (json_int_t)body->entry_port);
    if (diff == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    if ((rc = audit(ctx, "admin.protocol_entry.create", id, diff)) == 0)
        rc = reload(ctx, id, &resp->entry);

cleanup:
    json_decref(diff);
    PQclear(res);
    return finish_write(ctx, rc);
}

int znp_op_get_admin_protocol_entry(znp_ctx_t *ctx, const znp_get_admin_protocol_entry_request_t *req,
                                    znp_get_admin_protocol_entry_response_t *resp)
{
    return reload(ctx, req->id, &resp->entry);
}

int znp_op_update_admin_protocol_entry(znp_ctx_t *ctx, const znp_update_admin_protocol_entry_request_t *req,
                                       znp_update_admin_protocol_entry_response_t *resp)
{
    static const char sql_lock[] = "SELECT binding_id FROM protocol_entries WHERE id = $1 FOR UPDATE";
    static const char sql[] =
        "UPDATE protocol_entries SET binding_id = coalesce($2::bigint, binding_id), name = coalesce($3, name),"
        " protocol = coalesce($4, protocol), status = coalesce($5::smallint, status),"
        " entry_address = coalesce($6, entry_address), entry_port = coalesce($7::integer, entry_port),"
        " tags = CASE WHEN $8::json IS NULL THEN tags ELSE ARRAY(SELECT json_array_elements_text($8::json)) END,"
        " description = coalesce($9, description), profile = coalesce($10::jsonb, profile),"
        " sort_order = coalesce($11::integer, sort_order), updated_at = now() WHERE id = $1";
    static const char *const names[] = {NULL, "binding_id", "name", "protocol", "status", "entry_address",
                                        "entry_port", "tags", "description", "profile", "sort_order"};
    static const znp_array_t empty = {0, NULL};
    const znp_protocol_entry_update_t *body = &req->body;
    char id_text[24], binding[24], status[24], port[24], sort[24];
    const char *params[11] = {0};
    binding_ref_t ref = {0};
    PGresult *res = NULL;
    json_t *changed = NULL, *diff = NULL;
    int64_t binding_id;
    int rc;

    params[0] = znp_nodes__int(id_text, sizeof(id_text), req->id);
    if (body->has.binding_id == ZNP_SET)
        params[1] = znp_nodes__int(binding, sizeof(binding), body->binding_id);
    if (body->has.name == ZNP_SET) {
        if ((params[2] = znp_nodes__trimmed(ctx, body->name)) == NULL)
            return ZNP_E_INTERNAL;
        if (*params[2] == '\0')
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.name", "must not be blank");
    }
    if (body->has.status == ZNP_SET)
        params[4] = znp_nodes__int(status, sizeof(status), body->status);
    if (body->has.entry_address == ZNP_SET) {
        if ((rc = znp_nodes__normalize_address(ctx, "$.entry_address", body->entry_address, &params[5])) != 0)
            return rc;
        if (*params[5] == '\0')
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.entry_address", "must not be blank");
    }
    if (body->has.entry_port == ZNP_SET)
        params[6] = znp_nodes__int(port, sizeof(port), body->entry_port);
    if (body->has.tags != ZNP_ABSENT &&
        (rc = znp_nodes__tags_text(ctx, body->has.tags == ZNP_SET ? &body->tags : &empty, &params[7])) != 0)
        return rc;
    if (body->has.description != ZNP_ABSENT &&
        (params[8] = znp_nodes__trimmed(ctx, body->has.description == ZNP_SET ? body->description : "")) == NULL)
        return ZNP_E_INTERNAL;
    if (body->has.profile != ZNP_ABSENT &&
        (rc = object_text(ctx, body->has.profile == ZNP_SET ? body->profile : NULL, &params[9])) != 0)
        return rc;
    if (body->has.sort_order == ZNP_SET)
        params[10] = znp_nodes__int(sort, sizeof(sort), body->sort_order);
    if ((changed = json_array()) == NULL)
        return ZNP_E_INTERNAL;
    for (int i = 1; i < 11; i++)
        if (params[i] != NULL || (i == 3 && body->has.protocol == ZNP_SET))
            json_array_append_new(changed, json_string(names[i]));
    if (json_array_size(changed) == 0) {
        json_decref(changed);
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$", "must set at least one field");
    }

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if ((rc = znp_sql_exec(&res, ctx->db, sql_lock, 1, params, ctx->request_id)) != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no protocol entry with this id");
        goto cleanup;
    }
    binding_id = body->has.binding_id == ZNP_SET ? body->binding_id : znp_sql_int64(res, 0, 0);
    PQclear(res);
    res = NULL;
    /* the protocol follows the (new) binding; a requested one must match it */
    if ((rc = load_binding(ctx, binding_id, &ref)) != 0)
        goto cleanup;
    if ((rc = check_protocol(ctx, body->has.protocol == ZNP_SET ? body->protocol : NULL, ref.protocol)) != 0)
        goto cleanup;
    params[3] = ref.protocol;
    if ((rc = znp_sql_exec(NULL, ctx->db, sql, 11, params, ctx->request_id)) != 0)
        goto cleanup;
    if ((diff = json_pack("{s:O}", "changed", changed)) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    if ((rc = audit(ctx, "admin.protocol_entry.update", req->id, diff)) == 0)
        rc = reload(ctx, req->id, &resp->entry);

cleanup:
    json_decref(changed);
    json_decref(diff);
    PQclear(res);
    return finish_write(ctx, rc);
}

int znp_op_delete_admin_protocol_entry(znp_ctx_t *ctx, const znp_delete_admin_protocol_entry_request_t *req)
{
    static const char sql[] = "DELETE FROM protocol_entries WHERE id = $1 RETURNING binding_id";
    char text[24];
    const char *params[1] = {znp_nodes__int(text, sizeof(text), req->id)};
    PGresult *res = NULL;
    json_t *diff = NULL;
    int rc = znp_sql_begin(ctx->db, ctx->request_id);

    if (rc != 0)
        return rc;
    if ((rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id)) != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no protocol entry with this id");
        goto cleanup;
    }
    if ((diff = json_pack("{s:I}", "binding_id", (json_int_t)znp_sql_int64(res, 0, 0))) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    rc = audit(ctx, "admin.protocol_entry.delete", req->id, diff);

cleanup:
    json_decref(diff);
    PQclear(res);
    return finish_write(ctx, rc);
}

/* ORDER BY text of each sort key. The codec already limits `sort` and `direction` to their enums. */
static const znp_sql_order_t ORDERS[] = {
    {"updated_at", "e.updated_at ASC, e.id ASC", "e.updated_at DESC, e.id DESC"},
    {"name", "e.name ASC, e.id ASC", "e.name DESC, e.id DESC"},
    {"status", "e.status ASC, e.id ASC", "e.status DESC, e.id DESC"},
    {"created_at", "e.created_at ASC, e.id ASC", "e.created_at DESC, e.id DESC"},
    {"sort_order", "e.sort_order ASC, e.id ASC", "e.sort_order DESC, e.id DESC"},
    {"id", "e.id ASC", "e.id DESC"},
};

#define ENTRY_FILTER                                                                                                   \
    ENTRY_FROM " WHERE"                                                                                                \
    " ($1::text IS NULL OR strpos(lower(e.name), lower($1)) > 0 OR strpos(lower(e.description), lower($1)) > 0)"       \
    " AND ($2::smallint IS NULL OR e.status = $2::smallint) AND ($3::text IS NULL OR e.protocol = lower($3))"          \
    " AND ($4::bigint IS NULL OR e.binding_id = $4::bigint) AND ($5::bigint IS NULL OR b.node_id = $5::bigint)"

int znp_op_list_admin_protocol_entries(znp_ctx_t *ctx, const znp_list_admin_protocol_entries_request_t *req,
                                       znp_list_admin_protocol_entries_response_t *resp)
{
    char status[24], binding[24], node[24];
    const char *filter[5] = {0};
    znp_sql_list_t list = {"SELECT count(*)" ENTRY_FILTER, NULL, filter, 5, req->page, req->per_page};
    znp_protocol_entry_t *items = NULL;
    PGresult *res = NULL;
    int rows, rc;

    filter[0] = req->has.q == ZNP_SET && req->q[0] != '\0' ? req->q : NULL;
    filter[1] =
        req->has.status == ZNP_SET && req->status != 0 ? znp_nodes__int(status, sizeof(status), req->status) : NULL;
    filter[2] = req->has.protocol == ZNP_SET && req->protocol[0] != '\0' ? req->protocol : NULL;
    filter[3] = req->has.binding_id == ZNP_SET ? znp_nodes__int(binding, sizeof(binding), req->binding_id) : NULL;
    filter[4] = req->has.node_id == ZNP_SET ? znp_nodes__int(node, sizeof(node), req->node_id) : NULL;
    list.page_sql =
        znp_arena_printf(ctx->arena, "SELECT " ENTRY_COLUMNS ENTRY_FILTER " ORDER BY %s LIMIT $6 OFFSET $7",
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
        rc = fill_entry(ctx, res, i, &items[i]);
    if (rc != 0)
        goto cleanup;
    resp->entries.count = (size_t)rows;
    resp->entries.items = items;

cleanup:
    znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    return rc;
}
