/*
 * The in-process copy of the site-settings row. Ping reads it on the event
 * loop without a database round trip; it is refreshed at start, after every
 * update on this instance, and when another instance's update arrives through
 * PostgreSQL NOTIFY on channel "znp_site_settings".
 */
#ifndef ZNP_SYSTEM_SITE_H
#define ZNP_SYSTEM_SITE_H

#include <libpq-fe.h>
#include <stdint.h>

#include "config/config.h"

typedef struct znp_site_snapshot {
    char name[129 * 4]; /* up to 128 code points of UTF-8 */
    char logo_url[513 * 4];
    char service_domain[513 * 4];
    char subscription_domain[513 * 4];
    int64_t created_at, updated_at;
    int require_admin_mfa; /* admin routes need MFA (also forced on by security.require_admin_mfa) */
} znp_site_snapshot_t;

/* Set the fallback values (site.name, site.logo_url) used before the first load. */
void znp_site_cache_init(const znp_config_t *config);
/* Ensure the row exists (created from config on first use) and reload the copy. Returns 0 or a negative znp_err. */
int znp_site_cache_refresh(PGconn *db, const znp_config_t *config);
/* Copy the current snapshot. Thread-safe. */
void znp_site_cache_get(znp_site_snapshot_t *out);

#endif
