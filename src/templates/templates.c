/*
 * Subscription templates under /api/v1/{admin}/subscription-templates.
 *
 * `content` on subscription_templates is the draft. Publishing compiles the
 * draft and checks it against sample data shaped like the download context.
 * It then copies the draft into subscription_template_versions, whose rows
 * never change. Downloads render only the newest of those rows, so drafts
 * never reach users. Every write runs in one transaction with its audit row. At most one
 * template per client type is the default: a partial unique index enforces
 * it and a transaction-scoped advisory lock per client type orders the
 * writers that move it.
 */
#include <ctype.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "core/log.h"
#include "download/download.h"
#include "formats/formats.h"
#include "operations.gen.h"
#include "template/template.h"
#include "core/pagination.h"

#define LOG_TAG "templates"

#define TEMPLATE_COLUMNS                                                                                               \
    "t.id, t.name, t.description, t.client_type, t.format, t.content, t.variables::text, t.is_default, t.version,"     \
    " coalesce(extract(epoch FROM t.published_at)::bigint, 0), t.last_published_by,"                                   \
    " extract(epoch FROM t.created_at)::bigint, extract(epoch FROM t.updated_at)::bigint"

#define VERSION_COLUMNS                                                                                                \
    "v.version, v.content, v.format, v.changelog, extract(epoch FROM v.published_at)::bigint, v.published_by,"         \
    " v.variables::text"

static const char *int_text(char *buf, size_t size, int64_t v)
{
    snprintf(buf, size, "%" PRId64, v);
    return buf;
}

/* Commit or roll back a template write. A committed one can change which content downloads render. */
static int finish(znp_ctx_t *ctx, int rc)
{
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    else
        znp_download_cache_clear();
    return rc;
}

static void decref_json(void *data)
{
    json_decref(data);
}

/* Parse `text` as JSON and hand the value to the arena. Returns NULL on failure. */
static json_t *arena_json(znp_ctx_t *ctx, const char *text)
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

static char *arena_copy(znp_ctx_t *ctx, const PGresult *res, int row, int column)
{
    return znp_arena_strdup(ctx->arena, PQgetvalue(res, row, column));
}

static int fill_template(znp_ctx_t *ctx, const PGresult *res, int row, znp_subscription_template_t *out)
{
    memset(out, 0, sizeof(*out));
    out->id = znp_sql_int64(res, row, 0);
    out->name = arena_copy(ctx, res, row, 1);
    out->description = arena_copy(ctx, res, row, 2);
    out->client_type = arena_copy(ctx, res, row, 3);
    out->format = arena_copy(ctx, res, row, 4);
    out->content = arena_copy(ctx, res, row, 5);
    out->variables = arena_json(ctx, PQgetvalue(res, row, 6));
    out->is_default = znp_sql_bool(res, row, 7);
    out->version = znp_sql_int64(res, row, 8);
    out->published_at = znp_sql_int64(res, row, 9);
    out->last_published_by = arena_copy(ctx, res, row, 10);
    out->created_at = znp_sql_int64(res, row, 11);
    out->updated_at = znp_sql_int64(res, row, 12);
    if (out->name == NULL || out->description == NULL || out->client_type == NULL || out->format == NULL ||
        out->content == NULL || out->variables == NULL || out->last_published_by == NULL)
        return ZNP_E_INTERNAL;
    return 0;
}

static int fill_version(znp_ctx_t *ctx, const PGresult *res, int row, znp_subscription_template_history_entry_t *out)
{
    memset(out, 0, sizeof(*out));
    out->version = znp_sql_int64(res, row, 0);
    out->content = arena_copy(ctx, res, row, 1);
    out->format = arena_copy(ctx, res, row, 2);
    out->changelog = arena_copy(ctx, res, row, 3);
    out->published_at = znp_sql_int64(res, row, 4);
    out->published_by = arena_copy(ctx, res, row, 5);
    out->variables = arena_json(ctx, PQgetvalue(res, row, 6));
    if (out->content == NULL || out->format == NULL || out->changelog == NULL || out->published_by == NULL ||
        out->variables == NULL)
        return ZNP_E_INTERNAL;
    return 0;
}

/* Read template `id`; with `lock`, FOR UPDATE inside the open transaction. */
static int load_template(znp_ctx_t *ctx, int64_t id, int lock, znp_subscription_template_t *out)
{
    static const char sql[] = "SELECT " TEMPLATE_COLUMNS " FROM subscription_templates t WHERE t.id = $1";
    static const char sql_lock[] = "SELECT " TEMPLATE_COLUMNS " FROM subscription_templates t WHERE t.id = $1"
                                   " FOR UPDATE";
    char text[24];
    const char *params[1] = {int_text(text, sizeof(text), id)};
    PGresult *res = NULL;
    int rc = znp_sql_exec(&res, ctx->db, lock ? sql_lock : sql, 1, params, ctx->request_id);

    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no template with this id");
    if (rc == 0)
        rc = fill_template(ctx, res, 0, out);
    PQclear(res);
    return rc;
}

static int audit(znp_ctx_t *ctx, const char *action, int64_t id, json_t *diff)
{
    return znp_audit_record_resource(ctx, action, "subscription_template", id, diff);
}

/* ---- template checks ---- */

/*
 * Sample data shaped like the download context (one node, one binding), so
 * that publish finds keys the real context does not have. `template` is
 * filled from the template being published.
 */
static const char SAMPLE_CONTEXT[] =
    "{\"subscription\": {\"id\": 1, \"name\": \"Sample subscription\", \"plan\": \"Standard\", \"plan_id\": 1,"
    " \"plan_snapshot\": {}, \"status\": \"active\", \"token\": \"0123456789abcdef0123456789abcdef\","
    " \"expires_at\": \"2027-01-01T00:00:00Z\", \"traffic_total_bytes\": 107374182400,"
    " \"traffic_used_bytes\": 1073741824, \"traffic_remaining_bytes\": 106300440576, \"devices_limit\": 3,"
    " \"available_template_ids\": [1]},"
    " \"nodes\": [{\"id\": 1, \"binding_id\": 1, \"entry_id\": 1, \"name\": \"Sample entry\", \"kernel_id\": 1,"
    " \"protocol\": \"vless\", \"tags\": [],"
    " \"role\": \"entry\", \"hostname\": \"node.example.com\", \"port\": 443, \"listen\": \"0.0.0.0:443\","
    " \"connect\": \"node.example.com:443\", \"access_address\": \"node.example.com\","
    " \"entry_address\": \"node.example.com\", \"access_port\": 443, \"entry_port\": 443, \"node_id\": 1,"
    " \"node_name\": \"Sample node\", \"region\": \"Asia\", \"country\": \"JP\", \"status\": \"active\","
    " \"binding_status\": \"active\", \"health_status\": \"healthy\", \"profile\": {},"
    " \"updated_at\": \"2026-01-01T00:00:00Z\"}],"
    " \"user_identity\": {\"version\": 1, \"status\": \"active\", \"account_id\": 1,"
    " \"account\": \"user@example.com\", \"password\": \"sample-password\", \"id\": 1,"
    " \"uuid\": \"00000000-0000-4000-8000-000000000000\", \"username\": \"user@example.com\","
    " \"secret\": \"sample-secret\"},"
    " \"generated_at\": \"2026-01-01T00:00:00Z\"}";

static json_t *sample_context(const znp_subscription_template_t *tmpl)
{
    json_t *root = json_loads(SAMPLE_CONTEXT, 0, NULL);

    if (root == NULL)
        return NULL;
    /* json_object_set_new takes `template` even when it fails */
    if (json_object_set_new(root, "template",
                            json_pack("{s:I, s:s, s:s, s:I}", "id", (json_int_t)tmpl->id, "name", tmpl->name, "format",
                                      tmpl->format, "version", (json_int_t)(tmpl->version + 1))) != 0 ||
        json_object_set(root, "protocol_bindings", json_object_get(root, "nodes")) != 0) {
        json_decref(root);
        return NULL;
    }
    return root;
}

/*
 * Compile `content`; with `check`, also run it in strict mode against sample
 * data. A failure is ZNP_E_TEMPLATE_INVALID with "line L, column C: ..." at $.content.
 */
static int check_content(znp_ctx_t *ctx, const char *content, const znp_subscription_template_t *meta, int check)
{
    znp_template_t *tmpl = NULL;
    znp_template_error_t err = {0};
    json_t *sample = NULL;
    int rc = znp_template_compile(&tmpl, content, strlen(content), &err);

    if (rc == 0 && check) {
        sample = sample_context(meta);
        if (sample == NULL) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
        rc = znp_template_check(tmpl, sample, NULL, &err);
    }
    if (rc == ZNP_E_VALIDATION_FAILED) {
        const char *kind = err.kind == ZNP_TEMPLATE_ERR_SYNTAX        ? "syntax error"
                           : err.kind == ZNP_TEMPLATE_ERR_MISSING_KEY ? "missing key"
                                                                      : "render error";
        rc = znp_error_set(ctx->err, ZNP_E_TEMPLATE_INVALID, "$.content", "line %d, column %d: %s: %s", err.line,
                           err.column, kind, err.message);
    } else if (rc != 0) {
        rc = ZNP_E_INTERNAL;
    }

cleanup:
    json_decref(sample);
    znp_template_destroy(tmpl);
    return rc;
}

/* ---- input normalisation ---- */

/* Trim ASCII white space; returns an arena copy, "" when blank, NULL when out of memory. */
static char *trimmed(znp_ctx_t *ctx, const char *s)
{
    size_t len = strlen(s), start = 0;

    while (start < len && isspace((unsigned char)s[start]))
        start++;
    while (len > start && isspace((unsigned char)s[len - 1]))
        len--;
    return znp_arena_strndup(ctx->arena, s + start, len - start);
}

static char *lowered(znp_ctx_t *ctx, const char *s)
{
    char *out = trimmed(ctx, s);

    for (char *p = out; p != NULL && *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return out;
}

/* Set *out to the JSON text of the variables object `in`; ZNP_E_VALIDATION_FAILED when it is not an object. */
static int variables_text(znp_ctx_t *ctx, json_t *in, const char **out)
{
    char *dump;

    if (!json_is_object(in))
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.variables", "must be an object");
    dump = json_dumps(in, JSON_COMPACT | JSON_SORT_KEYS);
    if (dump == NULL)
        return ZNP_E_INTERNAL;
    *out = znp_arena_strdup(ctx->arena, dump);
    free(dump);
    return *out != NULL ? 0 : ZNP_E_INTERNAL;
}

/* A statement that breaks the unique index on (client_type, lower(name)), not the one on the default. */
static const znp_sql_unique_t NAME_TAKEN = {ZNP_E_TEMPLATE_NAME_TAKEN, "$.name",
                                            "another template of this client type uses this name",
                                            "subscription_templates_name_key", 0};

/*
 * Make template `id` the only default of `client_type`, inside the open
 * transaction. The advisory lock serialises concurrent moves of the default
 * of one client type, so they neither deadlock nor hit the unique index.
 */
static int make_default(znp_ctx_t *ctx, int64_t id, const char *client_type)
{
    static const char sql_lock[] = "SELECT pg_advisory_xact_lock(hashtext('znp.template.default'),"
                                   " hashtext($1))";
    static const char sql_clear[] = "UPDATE subscription_templates SET is_default = false, updated_at = now()"
                                    " WHERE client_type = $1 AND is_default AND id <> $2::bigint";
    static const char sql_set[] = "UPDATE subscription_templates SET is_default = true"
                                  " WHERE id = $2::bigint AND client_type = $1";
    char text[24];
    const char *params[2] = {client_type, int_text(text, sizeof(text), id)};
    int rc = znp_sql_exec(NULL, ctx->db, sql_lock, 1, params, ctx->request_id);

    if (rc == 0)
        rc = znp_sql_exec(NULL, ctx->db, sql_clear, 2, params, ctx->request_id);
    if (rc == 0)
        rc = znp_sql_exec(NULL, ctx->db, sql_set, 2, params, ctx->request_id);
    return rc;
}

/* Take the default lock of `client_type` before the template row lock, the order make_default uses. */
static int lock_default(znp_ctx_t *ctx, const char *client_type)
{
    static const char sql_lock[] = "SELECT pg_advisory_xact_lock(hashtext('znp.template.default'),"
                                   " hashtext($1))";
    const char *params[1] = {client_type};

    return znp_sql_exec(NULL, ctx->db, sql_lock, 1, params, ctx->request_id);
}

/* ---- operations ---- */

int znp_op_create_admin_subscription_template(znp_ctx_t *ctx,
                                              const znp_create_admin_subscription_template_request_t *req,
                                              znp_create_admin_subscription_template_response_t *resp)
{
    static const char sql[] = "INSERT INTO subscription_templates (name, description, client_type, format, content,"
                              " variables) VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING id";
    const znp_subscription_template_create_t *body = &req->body;
    znp_subscription_template_t meta = {0};
    const char *params[6];
    PGresult *res = NULL;
    json_t *diff = NULL;
    char *name, *client_type, *format;
    int64_t id;
    int rc;

    name = trimmed(ctx, body->name);
    client_type = lowered(ctx, body->client_type);
    format = lowered(ctx, body->has.format == ZNP_SET ? body->format : "");
    if (name == NULL || client_type == NULL || format == NULL)
        return ZNP_E_INTERNAL;
    if (*name == '\0')
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.name", "must not be blank");
    if (*client_type == '\0')
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.client_type", "must not be blank");
    if (*format == '\0')
        format = "text";
    meta.name = name;
    meta.format = format;
    rc = check_content(ctx, body->content, &meta, 0);
    if (rc != 0)
        return rc;
    params[0] = name;
    params[1] = body->has.description == ZNP_SET ? body->description : "";
    params[2] = client_type;
    params[3] = format;
    params[4] = body->content;
    params[5] = "{}";
    if (body->has.variables == ZNP_SET && (rc = variables_text(ctx, body->variables, &params[5])) != 0)
        return rc;

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    if (body->is_default && (rc = lock_default(ctx, client_type)) != 0)
        goto cleanup;
    rc = znp_sql_exec_unique(&res, ctx->err, ctx->db, sql, 6, params, &NAME_TAKEN, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    id = znp_sql_int64(res, 0, 0);
    if (body->is_default && (rc = make_default(ctx, id, client_type)) != 0)
        goto cleanup;
    diff = json_pack("{s:s, s:s, s:s, s:b}", "name", name, "client_type", client_type, "format", format, "is_default",
                     body->is_default ? 1 : 0);
    if (diff == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    rc = audit(ctx, "admin.template.create", id, diff);
    if (rc == 0)
        rc = load_template(ctx, id, 0, &resp->template);

cleanup:
    json_decref(diff);
    PQclear(res);
    return finish(ctx, rc);
}

int znp_op_get_admin_subscription_template(znp_ctx_t *ctx, const znp_get_admin_subscription_template_request_t *req,
                                           znp_get_admin_subscription_template_response_t *resp)
{
    return load_template(ctx, req->id, 0, &resp->template);
}

int znp_op_update_admin_subscription_template(znp_ctx_t *ctx,
                                              const znp_update_admin_subscription_template_request_t *req,
                                              znp_update_admin_subscription_template_response_t *resp)
{
    static const char sql[] = "UPDATE subscription_templates SET name = coalesce($2, name),"
                              " description = coalesce($3, description), format = coalesce($4, format),"
                              " content = coalesce($5, content), variables = coalesce($6::jsonb, variables),"
                              " is_default = CASE WHEN $7::boolean IS FALSE THEN false ELSE is_default END,"
                              " updated_at = now() WHERE id = $1";
    static const char sql_type[] = "SELECT client_type FROM subscription_templates WHERE id = $1";
    const znp_subscription_template_update_t *body = &req->body;
    znp_subscription_template_t current;
    char id_text[24];
    const char *params[7] = {0};
    static const char *const names[] = {NULL, "name", "description", "format", "content", "variables", "is_default"};
    PGresult *res = NULL;
    json_t *diff = NULL, *changed = NULL;
    char *client_type = NULL;
    int rc;

    params[0] = int_text(id_text, sizeof(id_text), req->id);
    if (body->has.name == ZNP_SET) {
        char *name = trimmed(ctx, body->name);
        if (name == NULL)
            return ZNP_E_INTERNAL;
        if (*name == '\0')
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.name", "must not be blank");
        params[1] = name;
    }
    if (body->has.description == ZNP_SET)
        params[2] = body->description;
    if (body->has.format == ZNP_SET) {
        char *format = lowered(ctx, body->format);
        if (format == NULL)
            return ZNP_E_INTERNAL;
        if (*format == '\0')
            return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.format", "must not be blank");
        params[3] = format;
    }
    if (body->has.content == ZNP_SET) {
        znp_subscription_template_t meta = {0};
        meta.name = "";
        meta.format = "";
        if ((rc = check_content(ctx, body->content, &meta, 0)) != 0)
            return rc;
        params[4] = body->content;
    }
    if (body->has.variables == ZNP_SET && (rc = variables_text(ctx, body->variables, &params[5])) != 0)
        return rc;
    if (body->has.is_default == ZNP_SET)
        params[6] = body->is_default ? "true" : "false";

    /* the audit row names the fields the request set */
    changed = json_array();
    if (changed == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 1; i < sizeof(names) / sizeof(names[0]); i++)
        if (params[i] != NULL)
            json_array_append_new(changed, json_string(names[i]));
    diff = json_pack("{s:o}", "changed", changed);
    if (diff == NULL)
        return ZNP_E_INTERNAL;

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (body->has.is_default == ZNP_SET && body->is_default) {
        /* client_type never changes, so reading it before the locks is safe */
        rc = znp_sql_exec(&res, ctx->db, sql_type, 1, params, ctx->request_id);
        if (rc == 0 && PQntuples(res) != 1)
            rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no template with this id");
        if (rc == 0 && (client_type = arena_copy(ctx, res, 0, 0)) == NULL)
            rc = ZNP_E_INTERNAL;
        if (rc == 0)
            rc = lock_default(ctx, client_type);
        if (rc != 0)
            goto done;
    }
    rc = load_template(ctx, req->id, 1, &current);
    if (rc != 0)
        goto done;
    PQclear(res);
    res = NULL;
    rc = znp_sql_exec_unique(&res, ctx->err, ctx->db, sql, 7, params, &NAME_TAKEN, ctx->request_id);
    if (rc == 0 && client_type != NULL)
        rc = make_default(ctx, req->id, client_type);
    if (rc == 0)
        rc = audit(ctx, "admin.template.update", req->id, diff);
    if (rc == 0)
        rc = load_template(ctx, req->id, 0, &resp->template);
done:
    rc = finish(ctx, rc);
cleanup:
    json_decref(diff);
    PQclear(res);
    return rc;
}

int znp_op_delete_admin_subscription_template(znp_ctx_t *ctx,
                                              const znp_delete_admin_subscription_template_request_t *req)
{
    static const char sql[] = "DELETE FROM subscription_templates WHERE id = $1 RETURNING name, client_type";
    char text[24];
    const char *params[1] = {int_text(text, sizeof(text), req->id)};
    PGresult *res = NULL;
    json_t *diff = NULL;
    int rc = znp_sql_begin(ctx->db, ctx->request_id);

    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, sql, 1, params, ctx->request_id);
    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no template with this id");
    if (rc == 0 &&
        (diff = json_pack("{s:s, s:s}", "name", PQgetvalue(res, 0, 0), "client_type", PQgetvalue(res, 0, 1))) == NULL)
        rc = ZNP_E_INTERNAL;
    if (rc == 0)
        rc = audit(ctx, "admin.template.delete", req->id, diff);
    json_decref(diff);
    PQclear(res);
    return finish(ctx, rc);
}

/*
 * Store `content`, `format` and `variables` (JSON text) as the next version
 * of the locked template `tmpl`, make them the draft too, audit the change
 * as `action` and fill `resp`.
 */
static int publish(znp_ctx_t *ctx, const znp_subscription_template_t *tmpl, const char *content, const char *format,
                   const char *variables, const char *changelog, const char *by, const char *action,
                   znp_subscription_template_publish_response_t *resp)
{
    static const char sql_version[] =
        "INSERT INTO subscription_template_versions AS v (template_id, version, content, variables, format, changelog,"
        " published_by) VALUES ($1, $2::integer, $3, $4::jsonb, $5, $6, $7) RETURNING " VERSION_COLUMNS;
    static const char sql_template[] =
        "UPDATE subscription_templates SET version = $2::integer, content = $3, variables = $4::jsonb, format = $5,"
        " published_at = now(), last_published_by = $6, updated_at = now() WHERE id = $1";
    char id_text[24], version_text[24];
    const char *params[7], *update[6];
    PGresult *res = NULL;
    json_t *diff = NULL;
    int rc = check_content(ctx, content, tmpl, 1);

    if (rc != 0)
        return rc;
    params[0] = int_text(id_text, sizeof(id_text), tmpl->id);
    params[1] = int_text(version_text, sizeof(version_text), tmpl->version + 1);
    params[2] = content;
    params[3] = variables;
    params[4] = format;
    params[5] = changelog;
    params[6] = by;
    /* the template row takes the same values; its statement has no changelog */
    for (int i = 0; i < 5; i++)
        update[i] = params[i];
    update[5] = by;
    rc = znp_sql_exec(&res, ctx->db, sql_version, 7, params, ctx->request_id);
    if (rc == 0)
        rc = fill_version(ctx, res, 0, &resp->history);
    if (rc == 0)
        rc = znp_sql_exec(NULL, ctx->db, sql_template, 6, update, ctx->request_id);
    if (rc == 0 &&
        (diff = json_pack("{s:I, s:s}", "version", (json_int_t)(tmpl->version + 1), "changelog", changelog)) == NULL)
        rc = ZNP_E_INTERNAL;
    if (rc == 0)
        rc = audit(ctx, action, tmpl->id, diff);
    if (rc == 0)
        rc = load_template(ctx, tmpl->id, 0, &resp->template);
    json_decref(diff);
    PQclear(res);
    return rc;
}

/* JSON text of a template's variables. */
static const char *dump_variables(znp_ctx_t *ctx, json_t *variables)
{
    char *dump = json_dumps(variables, JSON_COMPACT | JSON_SORT_KEYS);
    const char *text = dump != NULL ? znp_arena_strdup(ctx->arena, dump) : NULL;

    free(dump);
    return text;
}

int znp_op_publish_admin_subscription_template(znp_ctx_t *ctx,
                                               const znp_publish_admin_subscription_template_request_t *req,
                                               znp_publish_admin_subscription_template_response_t *resp)
{
    const znp_subscription_template_publish_t *body = &req->body;
    znp_subscription_template_t tmpl;
    const char *by = NULL, *variables;
    int rc;

    if (body->has.operator== ZNP_SET &&(by = trimmed(ctx, body->operator)) == NULL)
        return ZNP_E_INTERNAL;
    if (by == NULL || *by == '\0')
        by = ctx->caller.email[0] != '\0' ? ctx->caller.email : "system";
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = load_template(ctx, req->id, 1, &tmpl);
    if (rc == 0 && (variables = dump_variables(ctx, tmpl.variables)) == NULL)
        rc = ZNP_E_INTERNAL;
    if (rc == 0)
        rc = publish(ctx, &tmpl, tmpl.content, tmpl.format, variables,
                     body->has.changelog == ZNP_SET ? body->changelog : "", by, "admin.template.publish", resp);
    return finish(ctx, rc);
}

int znp_op_rollback_admin_subscription_template(znp_ctx_t *ctx,
                                                const znp_rollback_admin_subscription_template_request_t *req,
                                                znp_rollback_admin_subscription_template_response_t *resp)
{
    static const char sql[] = "SELECT " VERSION_COLUMNS " FROM subscription_template_versions v"
                              " WHERE v.template_id = $1 AND v.version = $2::integer";
    const znp_subscription_template_rollback_t *body = &req->body;
    znp_subscription_template_history_entry_t old;
    znp_subscription_template_t tmpl;
    char id_text[24], version_text[24];
    const char *params[2], *changelog = NULL, *variables = NULL;
    PGresult *res = NULL;
    int rc;

    params[0] = int_text(id_text, sizeof(id_text), req->id);
    params[1] = int_text(version_text, sizeof(version_text), body->version);
    if (body->has.changelog == ZNP_SET && body->changelog[0] != '\0')
        changelog = body->changelog;
    else
        changelog = znp_arena_printf(ctx->arena, "roll back to version %" PRId64, body->version);
    if (changelog == NULL)
        return ZNP_E_INTERNAL;
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = load_template(ctx, req->id, 1, &tmpl);
    if (rc == 0)
        rc = znp_sql_exec(&res, ctx->db, sql, 2, params, ctx->request_id);
    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "$.version", "this template has no such published version");
    if (rc == 0)
        rc = fill_version(ctx, res, 0, &old);
    if (rc == 0 && (variables = dump_variables(ctx, old.variables)) == NULL)
        rc = ZNP_E_INTERNAL;
    if (rc == 0)
        rc = publish(ctx, &tmpl, old.content, old.format, variables, changelog,
                     ctx->caller.email[0] != '\0' ? ctx->caller.email : "system", "admin.template.rollback", resp);
    PQclear(res);
    return finish(ctx, rc);
}

int znp_op_list_admin_subscription_template_history(znp_ctx_t *ctx,
                                                    const znp_list_admin_subscription_template_history_request_t *req,
                                                    znp_list_admin_subscription_template_history_response_t *resp)
{
    static const char sql_exists[] = "SELECT 1 FROM subscription_templates WHERE id = $1";
    static const char sql[] = "SELECT " VERSION_COLUMNS " FROM subscription_template_versions v"
                              " WHERE v.template_id = $1 ORDER BY v.version DESC";
    char text[24];
    const char *params[1] = {int_text(text, sizeof(text), req->id)};
    znp_subscription_template_history_entry_t *items = NULL;
    PGresult *res = NULL;
    int rows, rc;

    rc = znp_sql_exec(NULL, ctx->db, "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY", 0, NULL, ctx->request_id);
    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, ctx->db, sql_exists, 1, params, ctx->request_id);
    if (rc == 0 && PQntuples(res) != 1)
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no template with this id");
    PQclear(res);
    res = NULL;
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
        rc = fill_version(ctx, res, i, &items[i]);
    if (rc != 0)
        goto cleanup;
    resp->template_id = req->id;
    resp->history.count = (size_t)rows;
    resp->history.items = items;

cleanup:
    znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    return rc;
}

#define TEMPLATE_FILTER                                                                                                \
    " FROM subscription_templates t WHERE ($1::text IS NULL OR strpos(lower(t.name), lower($1)) > 0"                   \
    " OR strpos(lower(t.description), lower($1)) > 0) AND ($2::text IS NULL OR t.client_type = lower($2))"             \
    " AND ($3::boolean OR t.version > 0) AND ($4::text IS NULL OR t.format = lower($4))"

/* ORDER BY text of each sort key. The codec already limits `sort` and `direction` to their enums. */
static const znp_sql_order_t ORDERS[] = {
    {"updated_at", "t.updated_at ASC, t.id ASC", "t.updated_at DESC, t.id DESC"},
    {"created_at", "t.created_at ASC, t.id ASC", "t.created_at DESC, t.id DESC"},
    {"name", "lower(t.name) ASC, t.id ASC", "lower(t.name) DESC, t.id DESC"},
    {"client_type", "t.client_type ASC, t.id ASC", "t.client_type DESC, t.id DESC"},
    {"version", "t.version ASC, t.id ASC", "t.version DESC, t.id DESC"},
};

int znp_op_list_admin_subscription_templates(znp_ctx_t *ctx, const znp_list_admin_subscription_templates_request_t *req,
                                             znp_list_admin_subscription_templates_response_t *resp)
{
    const char *filter[4];
    znp_sql_list_t list = {"SELECT count(*)" TEMPLATE_FILTER, NULL, filter, 4, req->page, req->per_page};
    znp_subscription_template_t *items = NULL;
    PGresult *res = NULL;
    int rows, rc;

    filter[0] = req->has.q == ZNP_SET && req->q[0] != '\0' ? req->q : NULL;
    filter[1] = req->has.client_type == ZNP_SET && req->client_type[0] != '\0' ? req->client_type : NULL;
    filter[2] = req->include_drafts ? "true" : "false";
    filter[3] = req->has.format == ZNP_SET && req->format[0] != '\0' ? req->format : NULL;
    list.page_sql =
        znp_arena_printf(ctx->arena, "SELECT " TEMPLATE_COLUMNS TEMPLATE_FILTER " ORDER BY %s LIMIT $5 OFFSET $6",
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
        rc = fill_template(ctx, res, i, &items[i]);
    if (rc != 0)
        goto cleanup;
    resp->templates.count = (size_t)rows;
    resp->templates.items = items;

cleanup:
    znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(res);
    return rc;
}

int znp_op_list_admin_subscription_template_clients(znp_ctx_t *ctx,
                                                    const znp_list_admin_subscription_template_clients_request_t *req,
                                                    znp_list_admin_subscription_template_clients_response_t *resp)
{
    size_t count = 0;
    const znp_formats_client_rule_t *rules = znp_formats_client_rules(&count);
    znp_subscription_template_client_t *items;

    (void)req;
    resp->clients.count = 0;
    resp->clients.items = NULL;
    if (count == 0)
        return 0;
    if ((items = znp_arena_alloc(ctx->arena, count * sizeof(*items))) == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < count; i++) {
        size_t n = 0;
        char **tokens;

        while (n < ZNP_FORMATS_TOKENS_MAX && rules[i].tokens[n] != NULL)
            n++;
        memset(&items[i], 0, sizeof(items[i]));
        items[i].client_type = (char *)rules[i].id;
        items[i].display_name = (char *)rules[i].display_name;
        items[i].kind = rules[i].kind == ZNP_FORMATS_MATCH_CORE ? "core" : "app";
        items[i].format = (char *)znp_formats_format_name(rules[i].format);
        items[i].source = "znp";
        tokens = n > 0 ? znp_arena_alloc(ctx->arena, n * sizeof(*tokens)) : NULL;
        if (n > 0 && tokens == NULL)
            return ZNP_E_INTERNAL;
        for (size_t j = 0; j < n; j++)
            tokens[j] = (char *)rules[i].tokens[j];
        items[i].user_agent_tokens.count = n;
        items[i].user_agent_tokens.items = tokens;
    }
    resp->clients.count = count;
    resp->clients.items = items;
    return 0;
}
