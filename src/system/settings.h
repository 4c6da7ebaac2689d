/*
 * The site_settings row (a singleton, id 1) as the system module reads and
 * writes it. The cache in site.h contains the last loaded copy.
 */
#ifndef ZNP_SYSTEM_SETTINGS_H
#define ZNP_SYSTEM_SETTINGS_H

#include <libpq-fe.h>

#include "config/config.h"
#include "system/site.h"

#define ZNP_SITE_NAME_MAX 128 /* code points, as the table's CHECK */
#define ZNP_SITE_URL_MAX  512 /* code points, for logo_url and both domains */

/* The columns every statement returns, in the order znp_site_settings_read expects. */
#define ZNP_SITE_COLUMNS                                                                                               \
    "id, name, logo_url, service_domain, subscription_domain, "                                                        \
    "floor(extract(epoch FROM created_at))::bigint, floor(extract(epoch FROM updated_at))::bigint, "                   \
    "require_admin_mfa"

/* Write config site.name cut to ZNP_SITE_NAME_MAX code points into out. */
void znp_site_settings_default_name(char *out, size_t out_size, const znp_config_t *config);

/* Insert the row from config site.name and site.logo_url unless it exists. Returns 0 or a negative znp_err. */
int znp_site_settings_ensure(PGconn *db, const znp_config_t *config, const char *request_id);

/* Ensure the row, then read it into *out. Returns 0 or a negative znp_err. */
int znp_site_settings_load(znp_site_snapshot_t *out, PGconn *db, const znp_config_t *config, const char *request_id);

/* Copy row `row` of a result with ZNP_SITE_COLUMNS into *out. */
void znp_site_settings_read(znp_site_snapshot_t *out, const PGresult *res, int row);

/* Replace the cached copy. Thread-safe. */
void znp_site_cache_set(const znp_site_snapshot_t *snapshot);

#endif
