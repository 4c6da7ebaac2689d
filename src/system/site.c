#include "system/site.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/sql.h"
#include "core/dispatch.h"
#include "auth/text.h"
#include "core/error.h"
#include "core/log.h"
#include "system/settings.h"

#define LOG_TAG "site"

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static znp_site_snapshot_t cache;

/* Copy at most `max_chars` code points of `value` (NULL = "") into out. */
static void copy_text(char *out, size_t out_size, const char *value, size_t max_chars)
{
    if (value == NULL)
        value = "";
    znp_text_copy(out, out_size, value, znp_text_prefix(value, strlen(value), max_chars));
}

void znp_site_settings_default_name(char *out, size_t out_size, const znp_config_t *config)
{
    copy_text(out, out_size, config->site.name, ZNP_SITE_NAME_MAX);
}

int znp_site_settings_ensure(PGconn *db, const znp_config_t *config, const char *request_id)
{
    static const char sql[] = "INSERT INTO site_settings (id, name, logo_url) VALUES (1, $1, $2)"
                              " ON CONFLICT (id) DO NOTHING";
    char name[sizeof(cache.name)], logo_url[sizeof(cache.logo_url)];
    const char *params[2] = {name, logo_url};

    znp_site_settings_default_name(name, sizeof(name), config);
    copy_text(logo_url, sizeof(logo_url), config->site.logo_url, ZNP_SITE_URL_MAX);
    return znp_sql_exec(NULL, db, sql, 2, params, request_id);
}

void znp_site_settings_read(znp_site_snapshot_t *out, const PGresult *res, int row)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "%s", PQgetvalue(res, row, 1));
    snprintf(out->logo_url, sizeof(out->logo_url), "%s", PQgetvalue(res, row, 2));
    snprintf(out->service_domain, sizeof(out->service_domain), "%s", PQgetvalue(res, row, 3));
    snprintf(out->subscription_domain, sizeof(out->subscription_domain), "%s", PQgetvalue(res, row, 4));
    out->created_at = znp_sql_int64(res, row, 5);
    out->updated_at = znp_sql_int64(res, row, 6);
    out->require_admin_mfa = strcmp(PQgetvalue(res, row, 7), "t") == 0;
}

int znp_site_settings_load(znp_site_snapshot_t *out, PGconn *db, const znp_config_t *config, const char *request_id)
{
    static const char sql[] = "SELECT " ZNP_SITE_COLUMNS " FROM site_settings WHERE id = 1";
    PGresult *res = NULL;
    int rc;

    rc = znp_site_settings_ensure(db, config, request_id);
    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, db, sql, 0, NULL, request_id);
    if (rc == 0 && PQntuples(res) != 1) {
        /* deleted between the INSERT and this SELECT */
        ZNP_ERROR(LOG_TAG, request_id, "site_settings row is missing");
        rc = ZNP_E_INTERNAL;
    }
    if (rc == 0)
        znp_site_settings_read(out, res, 0);
    PQclear(res);
    return rc;
}

void znp_site_cache_set(const znp_site_snapshot_t *snapshot)
{
    pthread_mutex_lock(&cache_lock);
    cache = *snapshot;
    pthread_mutex_unlock(&cache_lock);
    znp_auth_set_site_require_admin_mfa(snapshot->require_admin_mfa);
    znp_dispatch_cache_invalidate(); /* ping's cached answer shows the site name */
}

void znp_site_cache_init(const znp_config_t *config)
{
    znp_site_snapshot_t initial;

    memset(&initial, 0, sizeof(initial));
    znp_site_settings_default_name(initial.name, sizeof(initial.name), config);
    copy_text(initial.logo_url, sizeof(initial.logo_url), config->site.logo_url, ZNP_SITE_URL_MAX);
    znp_site_cache_set(&initial);
}

int znp_site_cache_refresh(PGconn *db, const znp_config_t *config)
{
    znp_site_snapshot_t loaded;
    int rc = znp_site_settings_load(&loaded, db, config, NULL);

    if (rc != 0) {
        ZNP_WARN(LOG_TAG, NULL, "could not reload the site settings, keeping the cached copy");
        return rc;
    }
    znp_site_cache_set(&loaded);
    return 0;
}

void znp_site_cache_get(znp_site_snapshot_t *out)
{
    pthread_mutex_lock(&cache_lock);
    *out = cache;
    pthread_mutex_unlock(&cache_lock);
}
