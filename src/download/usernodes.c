/*
 * GET /api/v1/user/nodes: the nodes the signed-in user may use now, with
 * the bindings and entries that make them usable. The scope is the one of
 * the subscription file (download/internal.h) applied to every plan the
 * view binding_eligible_users gives the user, so the list shows what the
 * user's subscription file carries. Nothing a client could connect or
 * authenticate with is returned: no control endpoint, kernel configuration,
 * profile, address, port or credential.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "auth/sql.h"
#include "core/pagination.h"
#include "operations.gen.h"

/* $1 user id, $2 binding protocol or NULL, $3 node status or NULL */
#define USER_SCOPE                                                                                              \
    "WITH scope AS (SELECT n.id AS node_id, b.id AS binding_id, e.id AS entry_id"                              \
    " FROM binding_eligible_users v"                                                                           \
    " JOIN protocol_bindings b ON b.id = v.binding_id"                                                         \
    " JOIN nodes n ON n.id = b.node_id"                                                                        \
    " JOIN protocol_entries e ON e.binding_id = b.id"                                                          \
    " WHERE v.user_id = $1 AND b.status = 1 AND b.health_status IN (0, 1, 2) AND e.status = 1"                 \
    " AND n.deleted_at IS NULL AND n.status NOT IN (3, 4)"                                                     \
    " AND ($2::text IS NULL OR b.protocol = $2::text) AND ($3::int IS NULL OR n.status = $3::int))"

static const char COUNT_SQL[] = USER_SCOPE " SELECT count(DISTINCT node_id) FROM scope";

static const char PAGE_SQL[] =
    USER_SCOPE ", page AS (SELECT * FROM nodes WHERE id IN (SELECT node_id FROM scope)"
               " ORDER BY updated_at DESC, id DESC LIMIT $4 OFFSET $5)"
               " SELECT p.id, p.name, p.region, p.country, p.isp, p.status, to_json(p.tags)::text, p.capacity_mbps,"
               " p.description, coalesce(extract(epoch FROM p.last_synced_at)::bigint, 0),"
               " extract(epoch FROM p.updated_at)::bigint,"
               " (SELECT coalesce(json_agg(json_build_object('protocol', k.protocol, 'status', k.status,"
               "   'last_synced_at', coalesce(extract(epoch FROM k.last_synced_at)::bigint, 0)) ORDER BY k.protocol),"
               "   '[]') FROM node_kernels k WHERE k.node_id = p.id)::text,"
               " (SELECT coalesce(json_agg(json_build_object('binding_id', b.id, 'protocol', b.protocol,"
               "   'role', b.role, 'status', b.status, 'health_status', b.health_status,"
               "   'last_heartbeat_at', coalesce(extract(epoch FROM b.last_heartbeat_at)::bigint, 0))"
               "   ORDER BY b.protocol, b.id), '[]') FROM protocol_bindings b"
               "   WHERE b.id IN (SELECT binding_id FROM scope WHERE node_id = p.id))::text,"
               " (SELECT coalesce(json_agg(json_build_object('id', e.id, 'name', e.name, 'binding_id', b.id,"
               "   'protocol', b.protocol, 'health_status', b.health_status) ORDER BY e.sort_order, b.id, e.id), '[]')"
               "   FROM protocol_entries e JOIN protocol_bindings b ON b.id = e.binding_id"
               "   WHERE e.id IN (SELECT entry_id FROM scope WHERE node_id = p.id))::text"
               " FROM page p ORDER BY p.updated_at DESC, p.id DESC";

enum {
    C_ID,
    C_NAME,
    C_REGION,
    C_COUNTRY,
    C_ISP,
    C_STATUS,
    C_TAGS,
    C_CAPACITY,
    C_DESCRIPTION,
    C_SYNCED,
    C_UPDATED,
    C_KERNELS,
    C_BINDINGS,
    C_ENTRIES,
};

static const char *arena_text(znp_ctx_t *ctx, const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return znp_arena_strdup(ctx->arena, s != NULL ? s : "");
}

static int64_t int_of(const json_t *obj, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(obj, key));
}

/* Allocate `count` items of `size` bytes for `out`. Returns the items or NULL (out of memory). */
static void *array_alloc(znp_ctx_t *ctx, znp_array_t *out, size_t count, size_t size)
{
    out->count = count;
    out->items = NULL;
    if (count == 0)
        return out;
    out->items = znp_arena_alloc(ctx->arena, count * size);
    if (out->items != NULL)
        memset(out->items, 0, count * size);
    return out->items;
}

static int fill_node(znp_ctx_t *ctx, const PGresult *res, int row, znp_user_node_t *node)
{
    json_t *tags = json_loads(PQgetvalue(res, row, C_TAGS), 0, NULL);
    json_t *kernels = json_loads(PQgetvalue(res, row, C_KERNELS), 0, NULL);
    json_t *bindings = json_loads(PQgetvalue(res, row, C_BINDINGS), 0, NULL);
    json_t *entries = json_loads(PQgetvalue(res, row, C_ENTRIES), 0, NULL);
    int rc = ZNP_E_INTERNAL;

    memset(node, 0, sizeof(*node));
    if (!json_is_array(tags) || !json_is_array(kernels) || !json_is_array(bindings) || !json_is_array(entries))
        goto cleanup;
    node->id = znp_sql_int64(res, row, C_ID);
    node->name = znp_arena_strdup(ctx->arena, PQgetvalue(res, row, C_NAME));
    node->region = znp_arena_strdup(ctx->arena, PQgetvalue(res, row, C_REGION));
    node->country = znp_arena_strdup(ctx->arena, PQgetvalue(res, row, C_COUNTRY));
    node->isp = znp_arena_strdup(ctx->arena, PQgetvalue(res, row, C_ISP));
    node->status = znp_sql_int64(res, row, C_STATUS);
    node->capacity_mbps = znp_sql_int64(res, row, C_CAPACITY);
    node->description = znp_arena_strdup(ctx->arena, PQgetvalue(res, row, C_DESCRIPTION));
    node->last_synced_at = znp_sql_int64(res, row, C_SYNCED);
    node->updated_at = znp_sql_int64(res, row, C_UPDATED);
    if (node->name == NULL || node->region == NULL || node->country == NULL || node->isp == NULL ||
        node->description == NULL)
        goto cleanup;

    {
        char **items = array_alloc(ctx, &node->tags, json_array_size(tags), sizeof(char *));

        if (items == NULL)
            goto cleanup;
        for (size_t i = 0; i < node->tags.count; i++) {
            const char *s = json_string_value(json_array_get(tags, i));

            if ((items[i] = znp_arena_strdup(ctx->arena, s != NULL ? s : "")) == NULL)
                goto cleanup;
        }
    }
    {
        znp_user_node_kernel_status_t *items =
            array_alloc(ctx, &node->kernel_statuses, json_array_size(kernels), sizeof(*items));

        if (items == NULL)
            goto cleanup;
        for (size_t i = 0; i < node->kernel_statuses.count; i++) {
            json_t *k = json_array_get(kernels, i);

            items[i].protocol = (char *)arena_text(ctx, k, "protocol");
            items[i].status = int_of(k, "status");
            items[i].last_synced_at = int_of(k, "last_synced_at");
            if (items[i].protocol == NULL)
                goto cleanup;
        }
    }
    {
        znp_user_node_protocol_status_t *items =
            array_alloc(ctx, &node->protocol_statuses, json_array_size(bindings), sizeof(*items));

        if (items == NULL)
            goto cleanup;
        for (size_t i = 0; i < node->protocol_statuses.count; i++) {
            json_t *b = json_array_get(bindings, i);

            items[i].binding_id = int_of(b, "binding_id");
            items[i].protocol = (char *)arena_text(ctx, b, "protocol");
            items[i].role = (char *)arena_text(ctx, b, "role");
            items[i].status = int_of(b, "status");
            items[i].health_status = int_of(b, "health_status");
            items[i].last_heartbeat_at = int_of(b, "last_heartbeat_at");
            if (items[i].protocol == NULL || items[i].role == NULL)
                goto cleanup;
        }
    }
    {
        znp_user_node_entry_t *items = array_alloc(ctx, &node->entries, json_array_size(entries), sizeof(*items));

        if (items == NULL)
            goto cleanup;
        for (size_t i = 0; i < node->entries.count; i++) {
            json_t *e = json_array_get(entries, i);

            items[i].id = int_of(e, "id");
            items[i].name = (char *)arena_text(ctx, e, "name");
            items[i].binding_id = int_of(e, "binding_id");
            items[i].protocol = (char *)arena_text(ctx, e, "protocol");
            items[i].health_status = int_of(e, "health_status");
            if (items[i].name == NULL || items[i].protocol == NULL)
                goto cleanup;
        }
    }
    rc = 0;

cleanup:
    json_decref(tags);
    json_decref(kernels);
    json_decref(bindings);
    json_decref(entries);
    return rc;
}

int znp_op_list_user_nodes(znp_ctx_t *ctx, const znp_list_user_nodes_request_t *req,
                           znp_list_user_nodes_response_t *resp)
{
    char user[24], status[24], limit[24], offset[24];
    const char *params[5];
    PGresult *res = NULL;
    znp_user_node_t *items;
    int64_t total;
    int rows, rc;

    snprintf(user, sizeof(user), "%" PRId64, ctx->caller.user_id);
    snprintf(status, sizeof(status), "%" PRId64, req->status);
    snprintf(limit, sizeof(limit), "%" PRId64, req->per_page);
    snprintf(offset, sizeof(offset), "%" PRId64, (req->page - 1) * req->per_page);
    params[0] = user;
    params[1] = req->has.protocol == ZNP_SET && req->protocol[0] != '\0' ? req->protocol : NULL;
    params[2] = req->has.status == ZNP_SET && req->status != 0 ? status : NULL;
    params[3] = limit;
    params[4] = offset;

    /* count and page from one snapshot, so they agree */
    rc = znp_sql_exec(NULL, ctx->db, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0, NULL, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, COUNT_SQL, 3, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    total = znp_sql_int64(res, 0, 0);
    PQclear(res);
    rc = znp_sql_exec(&res, ctx->db, PAGE_SQL, 5, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    rows = PQntuples(res);
    items = array_alloc(ctx, &resp->nodes, (size_t)rows, sizeof(*items));
    if (items == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    for (int i = 0; i < rows && rc == 0; i++)
        rc = fill_node(ctx, res, i, &items[i]);
    if (rc != 0)
        goto cleanup;
    znp_pagination_fill(&resp->pagination, req->page, req->per_page, total);

cleanup:
    znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    return rc;
}
