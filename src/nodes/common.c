/* Helpers shared by the node operations: SQL text, transactions, audit rows and arena copies. */
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "nodes/internal.h"

const char *znp_nodes__int(char *buf, size_t size, int64_t v)
{
    snprintf(buf, size, "%" PRId64, v);
    return buf;
}


int znp_nodes__finish(znp_ctx_t *ctx, int rc)
{
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    return rc;
}

int znp_nodes__audit(znp_ctx_t *ctx, const char *action, int64_t id, json_t *diff)
{
    znp_audit_entry_t entry = {0};
    char text[24];

    entry.action = action;
    entry.resource_type = "node";
    entry.resource_id = znp_nodes__int(text, sizeof(text), id);
    entry.diff = diff;
    return znp_audit_record(ctx, ctx->db, &entry);
}

static void decref_json(void *data)
{
    json_decref(data);
}

json_t *znp_nodes__json(znp_ctx_t *ctx, const char *text)
{
    json_t *value = json_loads(text, JSON_DECODE_ANY, NULL);

    if (value == NULL)
        return NULL;
    if (znp_arena_defer(ctx->arena, decref_json, value) != 0) {
        json_decref(value);
        return NULL;
    }
    return value;
}

char *znp_nodes__column(znp_ctx_t *ctx, const PGresult *res, int row, int col)
{
    return znp_arena_strdup(ctx->arena, PQgetvalue(res, row, col));
}

char *znp_nodes__lower(znp_ctx_t *ctx, const char *in)
{
    char *out = znp_arena_strdup(ctx->arena, in);

    for (char *p = out; p != NULL && *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return out;
}
