/*
 * Audit rows: znp_audit_record, and the admin list and export of
 * GET /api/v1/{admin}/audit-logs[/export]. Both export formats read the
 * rows in single-row mode and stream them, so the whole result is never in
 * memory at once, in the database client or in znp.
 */
#include "audit/audit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/internal.h"
#include "auth/sql.h"
#include "core/codec.h"
#include "core/log.h"
#include "core/stream.h"
#include "operations.gen.h"
#include "core/pagination.h"

#define LOG_TAG                 "audit"
#define CSV_FLUSH               (64 * 1024) /* bytes of CSV collected before each write to the stream */
#define EXPORT_MESSAGE_MAX_ROWS 10000       /* rows of a JSON export over gRPC, which is one message */
#define EXPORT_STATEMENT_TIMEOUT "10min"    /* of the export query, which lasts as long as the transfer */
#define FILTER_COUNT            6

static const char SQL_INSERT[] =
    "INSERT INTO audit_logs (actor_id, actor_email, actor_roles, action, resource_type, resource_id, source_ip,"
    " user_agent, request_id, diff)"
    " VALUES ($1::bigint, $2, COALESCE($3::text[], ARRAY[]::text[]), $4, $5, $6, $7, $8, $9, $10::jsonb)";

/* $1 actor_id, $2 action, $3 resource_type, $4 resource_id, $5 since, $6 until; NULL = no filter */
#define SQL_FILTER                                                                                                     \
    " WHERE ($1::bigint IS NULL OR actor_id = $1::bigint)"                                                            \
    " AND ($2::text IS NULL OR lower(action) = lower($2::text))"                                                      \
    " AND ($3::text IS NULL OR lower(resource_type) = lower($3::text))"                                               \
    " AND ($4::text IS NULL OR resource_id = $4::text)"                                                               \
    " AND ($5::bigint IS NULL OR created_at >= to_timestamp($5::bigint))"                                             \
    " AND ($6::bigint IS NULL OR created_at < to_timestamp($6::bigint + 1))"

#define SQL_COLUMNS                                                                                                    \
    "id, COALESCE(actor_id, 0), COALESCE(actor_email, ''), array_to_json(actor_roles)::text,"                         \
    " array_to_string(actor_roles, '|'), action, COALESCE(resource_type, ''), COALESCE(resource_id, ''), source_ip,"  \
    " COALESCE(user_agent, ''), COALESCE(request_id, ''), COALESCE(diff, '{}'::jsonb)::text,"                         \
    " floor(extract(epoch FROM created_at))::bigint"

enum {
    COL_ID,
    COL_ACTOR_ID,
    COL_ACTOR_EMAIL,
    COL_ROLES_JSON,
    COL_ROLES_TEXT,
    COL_ACTION,
    COL_RESOURCE_TYPE,
    COL_RESOURCE_ID,
    COL_SOURCE_IP,
    COL_USER_AGENT,
    COL_REQUEST_ID,
    COL_DIFF,
    COL_CREATED_AT,
};

static const char SQL_COUNT[] = "SELECT count(*) FROM audit_logs" SQL_FILTER;
static const char SQL_PAGE[] = "SELECT " SQL_COLUMNS " FROM audit_logs" SQL_FILTER
                               " ORDER BY created_at DESC, id DESC LIMIT $7::bigint OFFSET $8::bigint";
static const char SQL_ALL[] = "SELECT " SQL_COLUMNS " FROM audit_logs" SQL_FILTER " ORDER BY created_at DESC, id DESC";

static const char CSV_HEADER[] =
    "id,actor_id,actor_email,actor_roles,action,resource_type,resource_id,source_ip,metadata,created_at\r\n";

/* Postgres array literal {"a","b"} of the caller's roles; `out` must hold ZNP_ROLES_MAX * 66 + 3 bytes. */
static void roles_literal(char *out, size_t out_size, const znp_caller_t *caller)
{
    size_t len = 0;

    out[len++] = '{';
    for (size_t i = 0; i < caller->role_count && i < ZNP_ROLES_MAX; i++) {
        if (i > 0)
            out[len++] = ',';
        out[len++] = '"';
        for (const char *p = caller->roles[i]; *p != '\0' && len + 4 < out_size; p++) {
            if (*p == '"' || *p == '\\')
                out[len++] = '\\';
            out[len++] = *p;
        }
        out[len++] = '"';
    }
    out[len++] = '}';
    out[len] = '\0';
}

int znp_audit_record(znp_ctx_t *ctx, PGconn *db, const znp_audit_entry_t *entry)
{
    const znp_caller_t *caller = ctx != NULL ? &ctx->caller : NULL;
    int use_caller = entry->actor_id == 0 && caller != NULL && caller->user_id != 0;
    char actor_id[24], roles[ZNP_ROLES_MAX * 66 + 3], user_agent[ZNP_AUDIT_USER_AGENT_MAX + 1];
    const char *request_id = ctx != NULL ? ctx->request_id : NULL;
    const char *params[10];
    char *diff = NULL;
    int64_t actor = use_caller ? caller->user_id : entry->actor_id;
    int rc;

    if (entry->action == NULL || entry->action[0] == '\0')
        return ZNP_E_INTERNAL;
    if (entry->diff != NULL) {
        diff = json_dumps(entry->diff, JSON_COMPACT | JSON_ENCODE_ANY);
        if (diff == NULL)
            return ZNP_E_INTERNAL;
    }
    snprintf(actor_id, sizeof(actor_id), "%lld", (long long)actor);
    if (use_caller)
        roles_literal(roles, sizeof(roles), caller);
    znp_audit__clean_user_agent(user_agent, ctx != NULL ? ctx->user_agent : NULL);

    params[0] = actor != 0 ? actor_id : NULL;
    params[1] = entry->actor_email;
    if (params[1] == NULL && use_caller)
        params[1] = caller->email;
    params[2] = use_caller ? roles : NULL;
    params[3] = entry->action;
    params[4] = entry->resource_type;
    params[5] = entry->resource_id;
    params[6] = ctx != NULL && ctx->client_ip != NULL ? ctx->client_ip : "";
    params[7] = ctx != NULL && ctx->user_agent != NULL ? user_agent : NULL;
    params[8] = request_id;
    params[9] = diff;
    rc = znp_sql_exec(NULL, db, SQL_INSERT, 10, params, request_id);
    free(diff);
    return rc;
}

/* filters */

typedef struct filters {
    char actor_id[24], since[24], until[24];
    const char *params[FILTER_COUNT];
} filters_t;

static int load_filters(znp_ctx_t *ctx, filters_t *f, znp_presence_t has_actor, int64_t actor_id, const char *action,
                        const char *resource_type, const char *resource_id, znp_presence_t has_since, int64_t since,
                        znp_presence_t has_until, int64_t until)
{
    memset(f, 0, sizeof(*f));
    if (has_since == ZNP_SET && has_until == ZNP_SET && since > until)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "since", "must not be after until");
    if (has_actor == ZNP_SET) {
        snprintf(f->actor_id, sizeof(f->actor_id), "%lld", (long long)actor_id);
        f->params[0] = f->actor_id;
    }
    f->params[1] = action != NULL && action[0] != '\0' ? action : NULL;
    f->params[2] = resource_type != NULL && resource_type[0] != '\0' ? resource_type : NULL;
    f->params[3] = resource_id != NULL && resource_id[0] != '\0' ? resource_id : NULL;
    if (has_since == ZNP_SET) {
        snprintf(f->since, sizeof(f->since), "%lld", (long long)since);
        f->params[4] = f->since;
    }
    if (has_until == ZNP_SET) {
        snprintf(f->until, sizeof(f->until), "%lld", (long long)until);
        f->params[5] = f->until;
    }
    return 0;
}

/* JSON rows */

static char *arena_column(znp_ctx_t *ctx, const PGresult *res, int row, int column)
{
    return znp_arena_strdup(ctx->arena, PQgetvalue(res, row, column));
}

static void decref_json(void *data)
{
    json_decref(data);
}

/*
 * The metadata of a row as an object. znp writes objects, but a row edited by
 * hand may hold another JSON value, which comes back as {"value": ...}, or
 * one jansson cannot read (an integer over 64 bits, nesting over 2048),
 * which is logged and comes back as {"unreadable": true}, so that one row
 * does not break the list and the export.
 */
static json_t *row_metadata(znp_ctx_t *ctx, const PGresult *res, int row)
{
    json_error_t error;
    json_t *diff = json_loads(PQgetvalue(res, row, COL_DIFF), JSON_DECODE_ANY, &error);

    if (diff == NULL) {
        ZNP_ERROR(LOG_TAG, ctx->request_id, "audit row id=%s has metadata that cannot be read: %s",
                  PQgetvalue(res, row, COL_ID), error.text);
        return json_pack("{s:b}", "unreadable", 1);
    }
    if (!json_is_object(diff))
        return json_pack("{s:o}", "value", diff);
    return diff;
}

static int fill_log(znp_ctx_t *ctx, znp_audit_log_t *out, const PGresult *res, int row)
{
    json_t *roles = json_loads(PQgetvalue(res, row, COL_ROLES_JSON), JSON_DECODE_ANY, NULL);
    json_t *diff = row_metadata(ctx, res, row);
    size_t role_count = json_array_size(roles);
    char **items = NULL;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (diff == NULL || znp_arena_defer(ctx->arena, decref_json, diff) != 0) {
        json_decref(diff);
        json_decref(roles);
        return ZNP_E_INTERNAL;
    }
    if (role_count > 0) {
        items = znp_arena_alloc(ctx->arena, role_count * sizeof(*items));
        if (items == NULL)
            rc = ZNP_E_INTERNAL;
    }
    for (size_t i = 0; i < role_count && rc == 0; i++) {
        const char *role = json_string_value(json_array_get(roles, i));

        items[i] = znp_arena_strdup(ctx->arena, role != NULL ? role : "");
        if (items[i] == NULL)
            rc = ZNP_E_INTERNAL;
    }
    json_decref(roles);
    if (rc != 0)
        return rc;

    out->id = znp_sql_int64(res, row, COL_ID);
    out->actor_id = znp_sql_int64(res, row, COL_ACTOR_ID);
    out->actor_email = arena_column(ctx, res, row, COL_ACTOR_EMAIL);
    out->actor_roles.count = role_count;
    out->actor_roles.items = items;
    out->action = arena_column(ctx, res, row, COL_ACTION);
    out->resource_type = arena_column(ctx, res, row, COL_RESOURCE_TYPE);
    out->resource_id = arena_column(ctx, res, row, COL_RESOURCE_ID);
    out->source_ip = arena_column(ctx, res, row, COL_SOURCE_IP);
    out->user_agent = arena_column(ctx, res, row, COL_USER_AGENT);
    out->request_id = arena_column(ctx, res, row, COL_REQUEST_ID);
    out->metadata = diff;
    out->created_at = znp_sql_int64(res, row, COL_CREATED_AT);
    if (out->actor_email == NULL || out->action == NULL || out->resource_type == NULL || out->resource_id == NULL ||
        out->source_ip == NULL || out->user_agent == NULL || out->request_id == NULL)
        return ZNP_E_INTERNAL;
    return 0;
}

static int fill_logs(znp_ctx_t *ctx, znp_array_t *out, const PGresult *res)
{
    int rows = PQntuples(res);
    znp_audit_log_t *logs = NULL;
    int rc;

    out->count = 0;
    out->items = NULL;
    if (rows == 0)
        return 0;
    logs = znp_arena_alloc(ctx->arena, (size_t)rows * sizeof(*logs));
    if (logs == NULL)
        return znp_error_set(ctx->err, ZNP_E_INTERNAL, NULL, "request arena exhausted");
    for (int row = 0; row < rows; row++) {
        rc = fill_log(ctx, &logs[row], res, row);
        if (rc != 0)
            return rc;
    }
    out->count = (size_t)rows;
    out->items = logs;
    return 0;
}

int znp_op_list_audit_logs(znp_ctx_t *ctx, const znp_list_audit_logs_request_t *req,
                           znp_list_audit_logs_response_t *resp)
{
    znp_sql_list_t list = {SQL_COUNT, SQL_PAGE, NULL, FILTER_COUNT, req->page, req->per_page};
    PGresult *res = NULL;
    filters_t f;
    int rc;

    /* check input */
    rc = load_filters(ctx, &f, req->has.actor_id, req->actor_id, req->action, req->resource_type, req->resource_id,
                      req->has.since, req->since, req->has.until, req->until);
    if (rc != 0)
        return rc;

    /* count, then load the page */
    list.filter = f.params;
    rc = znp_sql_list(&res, &resp->pagination, ctx->db, &list, ctx->request_id);
    if (rc != 0)
        goto cleanup;

    /* build the response */
    rc = fill_logs(ctx, &resp->logs, res);

cleanup:
    znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    return rc;
}

/* CSV export */

static int csv_row(char **out, size_t *len, size_t *cap, const PGresult *res)
{
    static const int columns[] = {COL_ID,          COL_ACTOR_ID,    COL_ACTOR_EMAIL, COL_ROLES_TEXT, COL_ACTION,
                                  COL_RESOURCE_TYPE, COL_RESOURCE_ID, COL_SOURCE_IP, COL_DIFF,       COL_CREATED_AT};

    for (size_t i = 0; i < sizeof(columns) / sizeof(columns[0]); i++) {
        if (i > 0 && znp_audit__csv_append(out, len, cap, ",", 1) != 0)
            return ZNP_E_INTERNAL;
        if (znp_audit__csv_field(out, len, cap, PQgetvalue(res, 0, columns[i])) != 0)
            return ZNP_E_INTERNAL;
    }
    if (znp_audit__csv_append(out, len, cap, "\r\n", 2) != 0)
        return ZNP_E_INTERNAL;
    return 0;
}

/* The AuditLog JSON object of the row in `res` appended to the buffer, built in an arena of its own. */
static int json_row(znp_ctx_t *ctx, char **out, size_t *len, size_t *cap, const PGresult *res)
{
    znp_arena_t row_arena, *request_arena = ctx->arena;
    znp_audit_log_t log;
    json_t *document = NULL;
    char *text = NULL;
    int rc;

    znp_arena_init(&row_arena, 0);
    ctx->arena = &row_arena;
    rc = fill_log(ctx, &log, res, 0);
    if (rc == 0)
        rc = znp_codec_emit(&znp_audit_log_schema, &log, &document, ctx->err);
    if (rc == 0 && (text = json_dumps(document, JSON_COMPACT)) == NULL)
        rc = ZNP_E_INTERNAL;
    if (rc == 0 && znp_audit__csv_append(out, len, cap, text, strlen(text)) != 0)
        rc = ZNP_E_INTERNAL;
    free(text);
    json_decref(document);
    ctx->arena = request_arena;
    znp_arena_dispose(&row_arena);
    return rc;
}

/*
 * Start the export document: the CSV header, or the JSON object up to the
 * first row. The JSON form is {"logs":[...],"total_count":N,"exported_at":T}
 * with the count written after the rows, as the response schema allows.
 */
static int export_begin(znp_ctx_t *ctx, int json)
{
    static const char json_start[] = "{\"logs\":[";
    int rc = znp_stream_begin(ctx->stream, json ? "application/json; charset=utf-8" : "text/csv; charset=utf-8",
                              json ? NULL : "audit-logs.csv");

    if (rc != 0)
        return rc;
    return json ? znp_stream_write(ctx->stream, json_start, sizeof(json_start) - 1)
                : znp_stream_write(ctx->stream, CSV_HEADER, sizeof(CSV_HEADER) - 1);
}

/*
 * Read the rows one at a time (PQsetSingleRowMode) and write them to
 * ctx->stream in batches, as CSV or as the JSON export document. Memory
 * stays bounded by one batch, however many rows match.
 */
static int export_rows(znp_ctx_t *ctx, const filters_t *f, int json)
{
    PGresult *res = NULL;
    char *buffer = NULL;
    size_t len = 0, cap = 0;
    int64_t rows = 0;
    int rc = 0, streaming = 1;

    if (!PQsendQueryParams(ctx->db, SQL_ALL, FILTER_COUNT, NULL, f->params, NULL, NULL, 0) ||
        !PQsetSingleRowMode(ctx->db)) {
        ZNP_ERROR(LOG_TAG, ctx->request_id, "could not start the audit export query: %s", PQerrorMessage(ctx->db));
        rc = PQstatus(ctx->db) == CONNECTION_OK ? ZNP_E_INTERNAL : ZNP_E_DATABASE_UNAVAILABLE;
        /* drain whatever was sent */
        while ((res = PQgetResult(ctx->db)) != NULL)
            PQclear(res);
        return rc;
    }

    /* every result must be read, even after a failure, before the connection is usable again */
    while ((res = PQgetResult(ctx->db)) != NULL) {
        ExecStatusType status = PQresultStatus(res);

        if (rc == 0 && status == PGRES_SINGLE_TUPLE) {
            if (streaming) {
                rc = export_begin(ctx, json);
                streaming = 0;
            }
            if (rc == 0 && json && rows > 0 && znp_audit__csv_append(&buffer, &len, &cap, ",", 1) != 0)
                rc = ZNP_E_INTERNAL;
            if (rc == 0)
                rc = json ? json_row(ctx, &buffer, &len, &cap, res) : csv_row(&buffer, &len, &cap, res);
            rows++;
            if (rc == 0 && len >= CSV_FLUSH) {
                rc = znp_stream_write(ctx->stream, buffer, len);
                len = 0;
            }
        } else if (rc == 0 && status != PGRES_TUPLES_OK) {
            ZNP_ERROR(LOG_TAG, ctx->request_id, "audit export query failed: %s", PQresultErrorMessage(res));
            rc = PQstatus(ctx->db) == CONNECTION_OK ? ZNP_E_INTERNAL : ZNP_E_DATABASE_UNAVAILABLE;
        }
        PQclear(res);
    }

    /* no rows: the start of the document alone */
    if (rc == 0 && streaming)
        rc = export_begin(ctx, json);
    if (rc == 0 && json) {
        char end[96];
        int n = snprintf(end, sizeof(end), "],\"total_count\":%lld,\"exported_at\":%lld}", (long long)rows,
                         (long long)(ctx->now != NULL ? ctx->now() : 0));

        if (znp_audit__csv_append(&buffer, &len, &cap, end, (size_t)n) != 0)
            rc = ZNP_E_INTERNAL;
    }
    if (rc == 0 && len > 0)
        rc = znp_stream_write(ctx->stream, buffer, len);
    free(buffer);
    return rc;
}

/*
 * The export query stays open while its rows go out, at the pace of the
 * client, so it runs in a transaction with its own statement timeout instead
 * of database.statement_timeout_ms, which is meant for short queries. A
 * client that reads nothing is cut off by the stream's stall timeout.
 */
static int export_stream(znp_ctx_t *ctx, const filters_t *f, int json)
{
    static const char SQL_EXPORT_TIMEOUT[] = "SET LOCAL statement_timeout = '" EXPORT_STATEMENT_TIMEOUT "'";
    int rc = znp_sql_begin(ctx->db, ctx->request_id);

    if (rc != 0)
        return rc;
    rc = znp_sql_exec(NULL, ctx->db, SQL_EXPORT_TIMEOUT, 0, NULL, ctx->request_id);
    if (rc == 0)
        rc = export_rows(ctx, f, json);
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    else
        znp_sql_rollback(ctx->db, ctx->request_id);
    return rc;
}

int znp_op_export_audit_logs(znp_ctx_t *ctx, const znp_export_audit_logs_request_t *req,
                             znp_export_audit_logs_response_t *resp)
{
    PGresult *res = NULL;
    filters_t f;
    int rc;

    /* check input */
    rc = load_filters(ctx, &f, req->has.actor_id, req->actor_id, req->action, req->resource_type, req->resource_id,
                      req->has.since, req->since, req->has.until, req->until);
    if (rc != 0)
        return rc;

    if (req->format != NULL && strcmp(req->format, "csv") == 0) {
        if (ctx->stream == NULL)
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "format", "csv is only available over HTTP");
        return export_stream(ctx, &f, 0);
    }

    /* json over HTTP: streamed row by row, so any number of rows fits */
    if (ctx->stream != NULL)
        return export_stream(ctx, &f, 1);

    /*
     * json without a stream (gRPC): one message built in memory, so the rows
     * are capped. NOTE: no gRPC method maps this operation yet, so no test
     * reaches this branch.
     */
    rc = znp_sql_exec(&res, ctx->db, SQL_ALL, FILTER_COUNT, f.params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) > EXPORT_MESSAGE_MAX_ROWS) {
        ZNP_INFO(LOG_TAG, ctx->request_id, "audit export over gRPC refused: %d rows match", PQntuples(res));
        rc = znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "until",
                           "more than 10000 rows match: narrow the filters, or export over HTTP, "
                           "which streams every row");
        goto cleanup;
    }
    rc = fill_logs(ctx, &resp->logs, res);
    if (rc != 0)
        goto cleanup;
    resp->total_count = (int64_t)resp->logs.count;
    resp->exported_at = ctx->now != NULL ? ctx->now() : 0;

cleanup:
    PQclear(res);
    return rc;
}

int znp_audit_record_resource(znp_ctx_t *ctx, const char *action, const char *resource_type, int64_t resource_id,
                              json_t *diff)
{
    char id[24];
    znp_audit_entry_t entry = {
        .action = action,
        .resource_type = resource_type,
        .resource_id = id,
        .diff = diff,
    };

    snprintf(id, sizeof(id), "%lld", (long long)resource_id);
    return znp_audit_record(ctx, ctx->db, &entry);
}
