/*
 * GET and PATCH /api/v1/{admin}/site-settings. The row is created from the
 * configuration on first use. PATCH changes only the fields it names.
 */
#include "operations.gen.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "auth/text.h"
#include "config/config.h"
#include "core/log.h"
#include "download/download.h"
#include "system/settings.h"
#include "system/site.h"

#define LOG_TAG "site"

/*
 * One statement for any combination of fields: $1, $3, $5, $7 and $9 are
 * true when name, logo_url, service_domain, subscription_domain and
 * require_admin_mfa change. updated_at moves only when the request names a
 * field.
 */
static const char SQL_UPDATE[] =
    "UPDATE site_settings SET"
    " name = CASE WHEN $1::boolean THEN $2 ELSE name END,"
    " logo_url = CASE WHEN $3::boolean THEN $4 ELSE logo_url END,"
    " service_domain = CASE WHEN $5::boolean THEN $6 ELSE service_domain END,"
    " subscription_domain = CASE WHEN $7::boolean THEN $8 ELSE subscription_domain END,"
    " require_admin_mfa = CASE WHEN $9::boolean THEN $10::boolean ELSE require_admin_mfa END,"
    " updated_at = CASE WHEN $1::boolean OR $3::boolean OR $5::boolean OR $7::boolean OR $9::boolean"
    "  THEN now() ELSE updated_at END"
    " WHERE id = 1"
    " RETURNING " ZNP_SITE_COLUMNS;

static const char SQL_LOCK_ROW[] = "SELECT name, logo_url, service_domain, subscription_domain, require_admin_mfa"
                                   " FROM site_settings WHERE id = 1 FOR UPDATE";

/* one settable column of the PATCH body */
typedef struct change {
    const char *field; /* JSON name, also the column */
    znp_presence_t presence;
    const char *input; /* as decoded, when presence is ZNP_SET */
    size_t max_chars;
    bool named;
    const char *value; /* trimmed, "" to clear */
} change_t;

/* Trim the value and check its length again, since the codec saw it untrimmed. */
static int prepare_change(znp_ctx_t *ctx, change_t *c)
{
    size_t start, len;

    c->named = c->presence != ZNP_ABSENT;
    c->value = "";
    if (c->presence != ZNP_SET || c->input == NULL)
        return 0;

    len = znp_text_trim(c->input, strlen(c->input), &start);
    if (znp_text_length(c->input + start, len) > c->max_chars) {
        char path[64];
        snprintf(path, sizeof(path), "$.%s", c->field);
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, path, "must be at most %zu characters", c->max_chars);
    }
    c->value = znp_arena_strndup(ctx->arena, c->input + start, len);
    return c->value != NULL ? 0 : ZNP_E_INTERNAL;
}

/*
 * Audit the update: {"field": {"from": old, "to": new}} for each field whose
 * value changed. `before` holds the row as locked before the UPDATE, in the
 * column order of SQL_LOCK_ROW and of `changes`.
 */
static int audit_update(znp_ctx_t *ctx, const PGresult *before, const znp_site_snapshot_t *after)
{
    const char *now[4] = {after->name, after->logo_url, after->service_domain, after->subscription_domain};
    static const char *const fields[4] = {"name", "logo_url", "service_domain", "subscription_domain"};
    json_t *diff = json_object();
    int rc;

    if (diff == NULL)
        return ZNP_E_INTERNAL;
    for (int i = 0; i < 4; i++) {
        const char *old = PQgetvalue(before, 0, i);

        if (strcmp(old, now[i]) != 0)
            json_object_set_new(diff, fields[i], json_pack("{s:s, s:s}", "from", old, "to", now[i]));
    }
    if ((strcmp(PQgetvalue(before, 0, 4), "t") == 0) != (after->require_admin_mfa != 0))
        json_object_set_new(diff, "require_admin_mfa",
                            json_pack("{s:b, s:b}", "from", !after->require_admin_mfa, "to", after->require_admin_mfa));
    znp_audit_entry_t entry = {
        .action = "admin.site_settings.update",
        .resource_type = "site_settings",
        .resource_id = "1",
        .diff = diff,
    };
    rc = znp_audit_record(ctx, ctx->db, &entry);
    json_decref(diff);
    return rc;
}

static int fill_response(znp_ctx_t *ctx, const znp_site_snapshot_t *site, znp_site_setting_response_t *resp)
{
    znp_site_setting_t *out = &resp->setting;

    out->id = 1;
    out->name = znp_arena_strdup(ctx->arena, site->name);
    out->logo_url = znp_arena_strdup(ctx->arena, site->logo_url);
    out->service_domain = znp_arena_strdup(ctx->arena, site->service_domain);
    out->subscription_domain = znp_arena_strdup(ctx->arena, site->subscription_domain);
    out->created_at = site->created_at;
    out->updated_at = site->updated_at;
    out->require_admin_mfa = site->require_admin_mfa != 0;
    if (out->name == NULL || out->logo_url == NULL || out->service_domain == NULL || out->subscription_domain == NULL)
        return ZNP_E_INTERNAL;
    return 0;
}

int znp_op_get_site_settings(znp_ctx_t *ctx, const znp_get_site_settings_request_t *req,
                             znp_get_site_settings_response_t *resp)
{
    znp_site_snapshot_t site;
    int rc;

    (void)req;
    rc = znp_site_settings_load(&site, ctx->db, ctx->config, ctx->request_id);
    if (rc != 0)
        return rc;
    znp_site_cache_set(&site);
    return fill_response(ctx, &site, resp);
}

int znp_op_update_site_settings(znp_ctx_t *ctx, const znp_update_site_settings_request_t *req,
                                znp_update_site_settings_response_t *resp)
{
    const znp_site_setting_update_t *body = &req->body;
    change_t changes[4] = {
        {"name", body->has.name, body->name, ZNP_SITE_NAME_MAX, false, ""},
        {"logo_url", body->has.logo_url, body->logo_url, ZNP_SITE_URL_MAX, false, ""},
        {"service_domain", body->has.service_domain, body->service_domain, ZNP_SITE_URL_MAX, false, ""},
        {"subscription_domain", body->has.subscription_domain, body->subscription_domain, ZNP_SITE_URL_MAX, false, ""},
    };
    char default_name[sizeof(((znp_site_snapshot_t *)0)->name)];
    const char *params[10];
    znp_site_snapshot_t site;
    PGresult *res = NULL, *before = NULL;
    int rc = 0;

    /* check input */
    for (size_t i = 0; i < 4 && rc == 0; i++)
        rc = prepare_change(ctx, &changes[i]);
    if (rc != 0)
        return rc;
    if (changes[0].named && changes[0].value[0] == '\0') {
        /* a cleared name falls back to the configured one */
        znp_site_settings_default_name(default_name, sizeof(default_name), ctx->config);
        changes[0].value = default_name;
    }

    /* persist */
    rc = znp_site_settings_ensure(ctx->db, ctx->config, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    /* the row and its audit record change in one transaction */
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc == 0)
        rc = znp_sql_exec(&before, ctx->db, SQL_LOCK_ROW, 0, NULL, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    for (size_t i = 0; i < 4; i++) {
        params[2 * i] = changes[i].named ? "true" : "false";
        params[2 * i + 1] = changes[i].value;
    }
    params[8] = body->has.require_admin_mfa == ZNP_SET ? "true" : "false";
    params[9] = body->require_admin_mfa ? "true" : "false";
    rc = znp_sql_exec(&res, ctx->db, SQL_UPDATE, 10, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1 || PQntuples(before) != 1) {
        ZNP_ERROR(LOG_TAG, ctx->request_id, "site_settings row is missing");
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    znp_site_settings_read(&site, res, 0);
    rc = audit_update(ctx, before, &site);
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;

    /* refresh this instance's copy (others follow through NOTIFY) and build the response */
    znp_site_cache_set(&site);
    /* the site name is in every subscription file's headers and the browser page */
    znp_download_cache_clear();
    ZNP_INFO(LOG_TAG, ctx->request_id, "site settings updated user=%lld", (long long)ctx->caller.user_id);
    rc = fill_response(ctx, &site, resp);

cleanup:
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(before);
    PQclear(res);
    return rc;
}
