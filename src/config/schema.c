/*
 * The libcyaml schema of znp.yaml and the key table derived from it. The
 * schema is the one list of keys: the YAML check, the defaults, the
 * overrides, the summary and znp_config_destroy all walk it.
 */
#include "config/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef ZNP_SHARE_DIR
#define ZNP_SHARE_DIR "/usr/local/share/znp"
#endif

#define STRING_FIELD(key, structure, member)                                                                           \
    CYAML_FIELD_STRING_PTR(key, CYAML_FLAG_POINTER | CYAML_FLAG_OPTIONAL, structure, member, 0, CYAML_UNLIMITED)

static const cyaml_schema_field_t server_fields[] = {
    STRING_FIELD("listen", znp_config_server_t, listen),
    STRING_FIELD("grpc_listen", znp_config_server_t, grpc_listen),
    STRING_FIELD("tls_listen", znp_config_server_t, tls_listen),
    STRING_FIELD("tls_cert", znp_config_server_t, tls_cert),
    STRING_FIELD("tls_key", znp_config_server_t, tls_key),
    CYAML_FIELD_UINT("threads", CYAML_FLAG_OPTIONAL, znp_config_server_t, threads),
    CYAML_FIELD_UINT("workers", CYAML_FLAG_OPTIONAL, znp_config_server_t, workers),
    STRING_FIELD("admin_prefix", znp_config_server_t, admin_prefix),
    CYAML_FIELD_UINT("max_body_bytes", CYAML_FLAG_OPTIONAL, znp_config_server_t, max_body_bytes),
    CYAML_FIELD_UINT("max_header_bytes", CYAML_FLAG_OPTIONAL, znp_config_server_t, max_header_bytes),
    CYAML_FIELD_UINT("max_uri_bytes", CYAML_FLAG_OPTIONAL, znp_config_server_t, max_uri_bytes),
    CYAML_FIELD_UINT("read_timeout_ms", CYAML_FLAG_OPTIONAL, znp_config_server_t, read_timeout_ms),
    CYAML_FIELD_UINT("idle_timeout_ms", CYAML_FLAG_OPTIONAL, znp_config_server_t, idle_timeout_ms),
    CYAML_FIELD_UINT("shutdown_timeout_ms", CYAML_FLAG_OPTIONAL, znp_config_server_t, shutdown_timeout_ms),
    CYAML_FIELD_UINT("queue_limit", CYAML_FLAG_OPTIONAL, znp_config_server_t, queue_limit),
    STRING_FIELD("docs_dir", znp_config_server_t, docs_dir),
    STRING_FIELD("default_locale", znp_config_server_t, default_locale),
    STRING_FIELD("trusted_proxies", znp_config_server_t, trusted_proxies),
    CYAML_FIELD_UINT("hsts_max_age_s", CYAML_FLAG_OPTIONAL, znp_config_server_t, hsts_max_age_s),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t database_fields[] = {
    STRING_FIELD("dsn", znp_config_database_t, dsn),
    STRING_FIELD("data_dir", znp_config_database_t, data_dir),
    STRING_FIELD("pg_bin_dir", znp_config_database_t, pg_bin_dir),
    STRING_FIELD("run_as", znp_config_database_t, run_as),
    CYAML_FIELD_UINT("connect_timeout_s", CYAML_FLAG_OPTIONAL, znp_config_database_t, connect_timeout_s),
    CYAML_FIELD_UINT("statement_timeout_ms", CYAML_FLAG_OPTIONAL, znp_config_database_t, statement_timeout_ms),
    CYAML_FIELD_UINT("reconnect_max_ms", CYAML_FLAG_OPTIONAL, znp_config_database_t, reconnect_max_ms),
    CYAML_FIELD_BOOL("auto_migrate", CYAML_FLAG_OPTIONAL, znp_config_database_t, auto_migrate),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t auth_fields[] = {
    STRING_FIELD("access_secret", znp_config_auth_t, access_secret),
    STRING_FIELD("refresh_secret", znp_config_auth_t, refresh_secret),
    CYAML_FIELD_UINT("access_ttl_s", CYAML_FLAG_OPTIONAL, znp_config_auth_t, access_ttl_s),
    CYAML_FIELD_UINT("refresh_ttl_s", CYAML_FLAG_OPTIONAL, znp_config_auth_t, refresh_ttl_s),
    STRING_FIELD("issuer", znp_config_auth_t, issuer),
    CYAML_FIELD_UINT("argon2_t_cost", CYAML_FLAG_OPTIONAL, znp_config_auth_t, argon2_t_cost),
    CYAML_FIELD_UINT("argon2_m_cost_kib", CYAML_FLAG_OPTIONAL, znp_config_auth_t, argon2_m_cost_kib),
    CYAML_FIELD_UINT("argon2_parallelism", CYAML_FLAG_OPTIONAL, znp_config_auth_t, argon2_parallelism),
    CYAML_FIELD_UINT("lockout_max_attempts", CYAML_FLAG_OPTIONAL, znp_config_auth_t, lockout_max_attempts),
    CYAML_FIELD_UINT("lockout_minutes", CYAML_FLAG_OPTIONAL, znp_config_auth_t, lockout_minutes),
    CYAML_FIELD_UINT("ip_failure_limit", CYAML_FLAG_OPTIONAL, znp_config_auth_t, ip_failure_limit),
    CYAML_FIELD_UINT("ip_failure_window_s", CYAML_FLAG_OPTIONAL, znp_config_auth_t, ip_failure_window_s),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t security_fields[] = {
    STRING_FIELD("master_key", znp_config_security_t, master_key),
    STRING_FIELD("credential_key", znp_config_security_t, credential_key),
    CYAML_FIELD_BOOL("require_admin_mfa", CYAML_FLAG_OPTIONAL, znp_config_security_t, require_admin_mfa),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t registration_fields[] = {
    STRING_FIELD("mode", znp_config_registration_t, mode),
    CYAML_FIELD_BOOL("require_email_verification", CYAML_FLAG_OPTIONAL, znp_config_registration_t,
                     require_email_verification),
    STRING_FIELD("default_roles", znp_config_registration_t, default_roles),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t password_fields[] = {
    CYAML_FIELD_UINT("min_length", CYAML_FLAG_OPTIONAL, znp_config_password_t, min_length),
    CYAML_FIELD_UINT("max_length", CYAML_FLAG_OPTIONAL, znp_config_password_t, max_length),
    CYAML_FIELD_UINT("require_classes", CYAML_FLAG_OPTIONAL, znp_config_password_t, require_classes),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t codes_fields[] = {
    CYAML_FIELD_UINT("ttl_s", CYAML_FLAG_OPTIONAL, znp_config_codes_t, ttl_s),
    CYAML_FIELD_UINT("max_attempts", CYAML_FLAG_OPTIONAL, znp_config_codes_t, max_attempts),
    CYAML_FIELD_UINT("cooldown_s", CYAML_FLAG_OPTIONAL, znp_config_codes_t, cooldown_s),
    CYAML_FIELD_UINT("per_address_per_hour", CYAML_FLAG_OPTIONAL, znp_config_codes_t, per_address_per_hour),
    CYAML_FIELD_UINT("per_ip_per_hour", CYAML_FLAG_OPTIONAL, znp_config_codes_t, per_ip_per_hour),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t site_fields[] = {
    STRING_FIELD("name", znp_config_site_t, name),
    STRING_FIELD("logo_url", znp_config_site_t, logo_url),
    STRING_FIELD("service_name", znp_config_site_t, service_name),
    CYAML_FIELD_UINT("subscription_update_hours", CYAML_FLAG_OPTIONAL, znp_config_site_t, subscription_update_hours),
    CYAML_FIELD_END,
};

static const cyaml_strval_t log_levels[] = {
    {"debug", ZNP_LOG_DEBUG},
    {"info", ZNP_LOG_INFO},
    {"warn", ZNP_LOG_WARN},
    {"error", ZNP_LOG_ERROR},
};

static const cyaml_schema_field_t log_fields[] = {
    CYAML_FIELD_ENUM("level", CYAML_FLAG_OPTIONAL | CYAML_FLAG_CASE_INSENSITIVE, znp_config_log_t, level, log_levels,
                     CYAML_ARRAY_LEN(log_levels)),
    STRING_FIELD("file", znp_config_log_t, file),
    CYAML_FIELD_BOOL("access_log", CYAML_FLAG_OPTIONAL, znp_config_log_t, access_log),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t jobs_fields[] = {
    CYAML_FIELD_UINT("threads", CYAML_FLAG_OPTIONAL, znp_config_jobs_t, threads),
    CYAML_FIELD_UINT("poll_interval_ms", CYAML_FLAG_OPTIONAL, znp_config_jobs_t, poll_interval_ms),
    CYAML_FIELD_UINT("expire_interval_s", CYAML_FLAG_OPTIONAL, znp_config_jobs_t, expire_interval_s),
    CYAML_FIELD_UINT("traffic_reset_interval_s", CYAML_FLAG_OPTIONAL, znp_config_jobs_t, traffic_reset_interval_s),
    CYAML_FIELD_UINT("purge_interval_s", CYAML_FLAG_OPTIONAL, znp_config_jobs_t, purge_interval_s),
    CYAML_FIELD_UINT("retention_days", CYAML_FLAG_OPTIONAL, znp_config_jobs_t, retention_days),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t download_fields[] = {
    CYAML_FIELD_UINT("cache_entries", CYAML_FLAG_OPTIONAL, znp_config_download_t, cache_entries),
    CYAML_FIELD_UINT("cache_ttl_s", CYAML_FLAG_OPTIONAL, znp_config_download_t, cache_ttl_s),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t panel_fields[] = {
    STRING_FIELD("time_zone", znp_config_panel_t, time_zone),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t webhook_fields[] = {
    STRING_FIELD("shared_token", znp_config_webhook_t, shared_token),
    STRING_FIELD("signing_secret", znp_config_webhook_t, signing_secret),
    CYAML_FIELD_UINT("signature_tolerance_s", CYAML_FLAG_OPTIONAL, znp_config_webhook_t, signature_tolerance_s),
    CYAML_FIELD_UINT("ip_failure_limit", CYAML_FLAG_OPTIONAL, znp_config_webhook_t, ip_failure_limit),
    CYAML_FIELD_UINT("ip_failure_window_s", CYAML_FLAG_OPTIONAL, znp_config_webhook_t, ip_failure_window_s),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t kernel_fields[] = {
    STRING_FIELD("callback_base_url", znp_config_kernel_t, callback_base_url),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t mail_fields[] = {
    STRING_FIELD("smtp_url", znp_config_mail_t, smtp_url),
    STRING_FIELD("starttls", znp_config_mail_t, starttls),
    STRING_FIELD("username", znp_config_mail_t, username),
    STRING_FIELD("password", znp_config_mail_t, password),
    STRING_FIELD("from", znp_config_mail_t, from),
    STRING_FIELD("ca_file", znp_config_mail_t, ca_file),
    CYAML_FIELD_UINT("timeout_ms", CYAML_FLAG_OPTIONAL, znp_config_mail_t, timeout_ms),
    CYAML_FIELD_UINT("max_attempts", CYAML_FLAG_OPTIONAL, znp_config_mail_t, max_attempts),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t cors_group_fields[] = {
    STRING_FIELD("enabled", znp_config_cors_group_t, enabled),
    STRING_FIELD("allow_origins", znp_config_cors_group_t, allow_origins),
    STRING_FIELD("allow_headers", znp_config_cors_group_t, allow_headers),
    STRING_FIELD("allow_methods", znp_config_cors_group_t, allow_methods),
    STRING_FIELD("allow_credentials", znp_config_cors_group_t, allow_credentials),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t cors_groups_fields[] = {
    CYAML_FIELD_MAPPING("user", CYAML_FLAG_OPTIONAL, znp_config_cors_groups_t, user, cors_group_fields),
    CYAML_FIELD_MAPPING("admin", CYAML_FLAG_OPTIONAL, znp_config_cors_groups_t, admin, cors_group_fields),
    CYAML_FIELD_MAPPING("public", CYAML_FLAG_OPTIONAL, znp_config_cors_groups_t, public, cors_group_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t cors_fields[] = {
    CYAML_FIELD_BOOL("enabled", CYAML_FLAG_OPTIONAL, znp_config_cors_t, enabled),
    STRING_FIELD("allow_origins", znp_config_cors_t, allow_origins),
    STRING_FIELD("allow_headers", znp_config_cors_t, allow_headers),
    STRING_FIELD("allow_methods", znp_config_cors_t, allow_methods),
    CYAML_FIELD_BOOL("allow_credentials", CYAML_FLAG_OPTIONAL, znp_config_cors_t, allow_credentials),
    CYAML_FIELD_UINT("max_age_s", CYAML_FLAG_OPTIONAL, znp_config_cors_t, max_age_s),
    STRING_FIELD("expose_headers", znp_config_cors_t, expose_headers),
    CYAML_FIELD_MAPPING("groups", CYAML_FLAG_OPTIONAL, znp_config_cors_t, groups, cors_groups_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t rate_fields[] = {
    CYAML_FIELD_UINT("rate_per_minute", CYAML_FLAG_OPTIONAL, znp_config_rate_t, rate_per_minute),
    CYAML_FIELD_UINT("burst", CYAML_FLAG_OPTIONAL, znp_config_rate_t, burst),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t rate_group_fields[] = {
    CYAML_FIELD_MAPPING("ip", CYAML_FLAG_OPTIONAL, znp_config_rate_group_t, ip, rate_fields),
    CYAML_FIELD_MAPPING("user", CYAML_FLAG_OPTIONAL, znp_config_rate_group_t, user, rate_fields),
    CYAML_FIELD_MAPPING("global", CYAML_FLAG_OPTIONAL, znp_config_rate_group_t, global, rate_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t rate_groups_fields[] = {
    CYAML_FIELD_MAPPING("user", CYAML_FLAG_OPTIONAL, znp_config_rate_groups_t, user, rate_group_fields),
    CYAML_FIELD_MAPPING("admin", CYAML_FLAG_OPTIONAL, znp_config_rate_groups_t, admin, rate_group_fields),
    CYAML_FIELD_MAPPING("public", CYAML_FLAG_OPTIONAL, znp_config_rate_groups_t, public, rate_group_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t rate_limits_fields[] = {
    CYAML_FIELD_BOOL("enabled", CYAML_FLAG_OPTIONAL, znp_config_rate_limits_t, enabled),
    CYAML_FIELD_UINT("max_keys", CYAML_FLAG_OPTIONAL, znp_config_rate_limits_t, max_keys),
    CYAML_FIELD_MAPPING("groups", CYAML_FLAG_OPTIONAL, znp_config_rate_limits_t, groups, rate_groups_fields),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t admin_fields[] = {
    STRING_FIELD("allow_cidrs", znp_config_admin_t, allow_cidrs),
    CYAML_FIELD_UINT("rate_per_minute", CYAML_FLAG_OPTIONAL, znp_config_admin_t, rate_per_minute),
    CYAML_FIELD_UINT("burst", CYAML_FLAG_OPTIONAL, znp_config_admin_t, burst),
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t top_fields[] = {
    CYAML_FIELD_MAPPING("server", CYAML_FLAG_OPTIONAL, znp_config_t, server, server_fields),
    CYAML_FIELD_MAPPING("database", CYAML_FLAG_OPTIONAL, znp_config_t, database, database_fields),
    CYAML_FIELD_MAPPING("auth", CYAML_FLAG_OPTIONAL, znp_config_t, auth, auth_fields),
    CYAML_FIELD_MAPPING("registration", CYAML_FLAG_OPTIONAL, znp_config_t, registration, registration_fields),
    CYAML_FIELD_MAPPING("password", CYAML_FLAG_OPTIONAL, znp_config_t, password, password_fields),
    CYAML_FIELD_MAPPING("codes", CYAML_FLAG_OPTIONAL, znp_config_t, codes, codes_fields),
    CYAML_FIELD_MAPPING("security", CYAML_FLAG_OPTIONAL, znp_config_t, security, security_fields),
    CYAML_FIELD_MAPPING("site", CYAML_FLAG_OPTIONAL, znp_config_t, site, site_fields),
    CYAML_FIELD_MAPPING("log", CYAML_FLAG_OPTIONAL, znp_config_t, log, log_fields),
    CYAML_FIELD_MAPPING("cors", CYAML_FLAG_OPTIONAL, znp_config_t, cors, cors_fields),
    CYAML_FIELD_MAPPING("rate_limits", CYAML_FLAG_OPTIONAL, znp_config_t, rate_limits, rate_limits_fields),
    CYAML_FIELD_MAPPING("admin", CYAML_FLAG_OPTIONAL, znp_config_t, admin, admin_fields),
    CYAML_FIELD_MAPPING("jobs", CYAML_FLAG_OPTIONAL, znp_config_t, jobs, jobs_fields),
    CYAML_FIELD_MAPPING("download", CYAML_FLAG_OPTIONAL, znp_config_t, download, download_fields),
    CYAML_FIELD_MAPPING("panel", CYAML_FLAG_OPTIONAL, znp_config_t, panel, panel_fields),
    CYAML_FIELD_MAPPING("webhook", CYAML_FLAG_OPTIONAL, znp_config_t, webhook, webhook_fields),
    CYAML_FIELD_MAPPING("kernel", CYAML_FLAG_OPTIONAL, znp_config_t, kernel, kernel_fields),
    CYAML_FIELD_MAPPING("mail", CYAML_FLAG_OPTIONAL, znp_config_t, mail, mail_fields),
    CYAML_FIELD_END,
};

const cyaml_schema_value_t config__schema = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, znp_config_t, top_fields),
};

/* Defaults as YAML scalar text, parsed like a value from the file. Keep docs/configuration.md in step. */
static const struct key_meta {
    const char *path;
    const char *default_value;
    unsigned flags;
} key_metas[] = {
    {"server.listen", "127.0.0.1:8080", 0},
    {"server.grpc_listen", "127.0.0.1:8090", 0},
    {"server.tls_listen", NULL, CONFIG_NULLABLE},
    {"server.tls_cert", NULL, CONFIG_NULLABLE},
    {"server.tls_key", NULL, CONFIG_NULLABLE},
    {"server.threads", "0", 0},
    {"server.workers", "0", 0},
    {"server.admin_prefix", "admin", 0},
    {"server.max_body_bytes", "1048576", 0},
    {"server.max_header_bytes", "16384", 0},
    {"server.max_uri_bytes", "8192", 0},
    {"server.read_timeout_ms", "10000", 0},
    {"server.idle_timeout_ms", "60000", 0},
    {"server.shutdown_timeout_ms", "10000", 0},
    {"server.queue_limit", "4096", 0},
    {"server.docs_dir", ZNP_SHARE_DIR "/swagger-ui", 0},
    {"server.default_locale", "en", 0},
    {"server.trusted_proxies", NULL, CONFIG_NULLABLE},
    {"server.hsts_max_age_s", "15552000", 0},
    {"database.dsn", NULL, CONFIG_NULLABLE | CONFIG_DSN},
    {"database.data_dir", "./data", 0},
    {"database.pg_bin_dir", NULL, CONFIG_NULLABLE},
    {"database.run_as", "postgres", 0},
    {"database.connect_timeout_s", "5", 0},
    {"database.statement_timeout_ms", "15000", 0},
    {"database.reconnect_max_ms", "5000", 0},
    {"database.auto_migrate", "true", 0},
    {"auth.access_secret", NULL, CONFIG_NULLABLE | CONFIG_SECRET | CONFIG_GENERATED},
    {"auth.refresh_secret", NULL, CONFIG_NULLABLE | CONFIG_SECRET | CONFIG_GENERATED},
    {"auth.access_ttl_s", "900", 0},
    {"auth.refresh_ttl_s", "2592000", 0},
    {"auth.issuer", "znp", 0},
    {"auth.argon2_t_cost", "2", 0},
    {"auth.argon2_m_cost_kib", "19456", 0},
    {"auth.argon2_parallelism", "1", 0},
    {"auth.lockout_max_attempts", "5", 0},
    {"auth.lockout_minutes", "15", 0},
    {"auth.ip_failure_limit", "50", 0},
    {"auth.ip_failure_window_s", "900", 0},
    {"registration.mode", "open", 0},
    {"registration.require_email_verification", "true", 0},
    {"registration.default_roles", "user", 0},
    {"password.min_length", "8", 0},
    {"password.max_length", "128", 0},
    {"password.require_classes", "0", 0},
    {"codes.ttl_s", "900", 0},
    {"codes.max_attempts", "5", 0},
    {"codes.cooldown_s", "60", 0},
    {"codes.per_address_per_hour", "5", 0},
    {"codes.per_ip_per_hour", "20", 0},
    {"security.master_key", NULL, CONFIG_NULLABLE | CONFIG_SECRET | CONFIG_GENERATED},
    {"security.credential_key", NULL, CONFIG_NULLABLE | CONFIG_SECRET},
    {"security.require_admin_mfa", "false", 0},
    {"site.name", "znp", 0},
    {"site.logo_url", "", 0},
    {"site.service_name", "znp", 0},
    {"site.subscription_update_hours", "24", 0},
    {"log.level", "info", 0},
    {"log.file", NULL, CONFIG_NULLABLE},
    {"log.access_log", "true", 0},
    {"cors.enabled", "false", 0},
    {"cors.allow_origins", NULL, CONFIG_NULLABLE},
    {"cors.allow_headers", "Authorization, Content-Type, Accept-Language, X-Request-Id", 0},
    {"cors.allow_methods", "GET, HEAD, POST, PUT, PATCH, DELETE", 0},
    {"cors.allow_credentials", "false", 0},
    {"cors.max_age_s", "600", 0},
    {"cors.expose_headers", "X-Request-Id, Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset", 0},
    {"cors.groups.user.enabled", NULL, CONFIG_NULLABLE},
    {"cors.groups.user.allow_origins", NULL, CONFIG_NULLABLE},
    {"cors.groups.user.allow_headers", NULL, CONFIG_NULLABLE},
    {"cors.groups.user.allow_methods", NULL, CONFIG_NULLABLE},
    {"cors.groups.user.allow_credentials", NULL, CONFIG_NULLABLE},
    {"cors.groups.admin.enabled", NULL, CONFIG_NULLABLE},
    {"cors.groups.admin.allow_origins", NULL, CONFIG_NULLABLE},
    {"cors.groups.admin.allow_headers", NULL, CONFIG_NULLABLE},
    {"cors.groups.admin.allow_methods", NULL, CONFIG_NULLABLE},
    {"cors.groups.admin.allow_credentials", NULL, CONFIG_NULLABLE},
    {"cors.groups.public.enabled", NULL, CONFIG_NULLABLE},
    {"cors.groups.public.allow_origins", NULL, CONFIG_NULLABLE},
    {"cors.groups.public.allow_headers", NULL, CONFIG_NULLABLE},
    {"cors.groups.public.allow_methods", NULL, CONFIG_NULLABLE},
    {"cors.groups.public.allow_credentials", NULL, CONFIG_NULLABLE},
    {"rate_limits.enabled", "true", 0},
    {"rate_limits.max_keys", "100000", 0},
    {"rate_limits.groups.user.ip.rate_per_minute", "0", 0},
    {"rate_limits.groups.user.ip.burst", "0", 0},
    {"rate_limits.groups.user.user.rate_per_minute", "0", 0},
    {"rate_limits.groups.user.user.burst", "0", 0},
    {"rate_limits.groups.user.global.rate_per_minute", "0", 0},
    {"rate_limits.groups.user.global.burst", "0", 0},
    {"rate_limits.groups.admin.ip.rate_per_minute", "0", 0},
    {"rate_limits.groups.admin.ip.burst", "0", 0},
    {"rate_limits.groups.admin.user.rate_per_minute", "0", 0},
    {"rate_limits.groups.admin.user.burst", "0", 0},
    {"rate_limits.groups.admin.global.rate_per_minute", "0", 0},
    {"rate_limits.groups.admin.global.burst", "0", 0},
    {"rate_limits.groups.public.ip.rate_per_minute", "0", 0},
    {"rate_limits.groups.public.ip.burst", "0", 0},
    {"rate_limits.groups.public.user.rate_per_minute", "0", 0},
    {"rate_limits.groups.public.user.burst", "0", 0},
    {"rate_limits.groups.public.global.rate_per_minute", "0", 0},
    {"rate_limits.groups.public.global.burst", "0", 0},
    {"admin.allow_cidrs", NULL, CONFIG_NULLABLE},
    {"admin.rate_per_minute", "0", 0},
    {"admin.burst", "0", 0},
    {"jobs.threads", "1", 0},
    {"jobs.poll_interval_ms", "1000", 0},
    {"jobs.expire_interval_s", "60", 0},
    {"jobs.traffic_reset_interval_s", "300", 0},
    {"jobs.purge_interval_s", "3600", 0},
    {"jobs.retention_days", "14", 0},
    {"download.cache_entries", "10000", 0},
    {"download.cache_ttl_s", "60", 0},
    {"panel.time_zone", "Asia/Shanghai", 0},
    {"webhook.shared_token", NULL, CONFIG_NULLABLE | CONFIG_SECRET},
    {"webhook.signing_secret", NULL, CONFIG_NULLABLE | CONFIG_SECRET},
    {"webhook.signature_tolerance_s", "300", 0},
    {"webhook.ip_failure_limit", "20", 0},
    {"webhook.ip_failure_window_s", "600", 0},
    {"kernel.callback_base_url", NULL, CONFIG_NULLABLE},
    {"mail.smtp_url", NULL, CONFIG_NULLABLE},
    {"mail.starttls", "required", 0},
    {"mail.username", NULL, CONFIG_NULLABLE},
    {"mail.password", NULL, CONFIG_NULLABLE | CONFIG_SECRET},
    {"mail.from", "noreply@localhost", 0},
    {"mail.ca_file", NULL, CONFIG_NULLABLE},
    {"mail.timeout_ms", "10000", 0},
    {"mail.max_attempts", "8", 0},
};

static config__key_t keys[CONFIG_KEY_MAX];
static size_t key_count;
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;

/* Add the leaves under `fields`, recursing into nested mappings such as cors.groups.user. */
static void add_keys(const char *prefix, size_t base_offset, const cyaml_schema_field_t *fields)
{
    for (const cyaml_schema_field_t *field = fields; field->key != NULL; field++) {
        char path[CONFIG_PATH_MAX];
        config__key_t *key;
        size_t i;

        if (snprintf(path, sizeof path, "%s%s%s", prefix, prefix[0] != '\0' ? "." : "", field->key) >=
            (int)sizeof path) {
            fprintf(stderr, "znp: config key %s.%s is longer than %d bytes\n", prefix, field->key,
                    CONFIG_PATH_MAX - 1);
            abort();
        }
        if (field->value.type == CYAML_MAPPING) {
            add_keys(path, base_offset + field->data_offset, field->value.mapping.fields);
            continue;
        }
        if (key_count == CONFIG_KEY_MAX) {
            fprintf(stderr, "znp: config schema has more than %d keys\n", CONFIG_KEY_MAX);
            abort();
        }
        key = &keys[key_count];
        memcpy(key->path, path, sizeof key->path);
        key->offset = base_offset + field->data_offset;
        key->value = &field->value;
        for (i = 0; i < sizeof key_metas / sizeof key_metas[0]; i++) {
            if (strcmp(key_metas[i].path, key->path) == 0) {
                key->default_value = key_metas[i].default_value;
                key->flags = key_metas[i].flags;
                break;
            }
        }
        /* every schema key needs a key_metas entry: without a default it would stay zero-filled */
        if (i == sizeof key_metas / sizeof key_metas[0]) {
            fprintf(stderr, "znp: config key %s has no default\n", key->path);
            abort();
        }
        key_count++;
    }
}

static void build_keys(void)
{
    add_keys("", 0, top_fields);
}

const config__key_t *config__keys(size_t *count)
{
    pthread_once(&keys_once, build_keys);
    *count = key_count;
    return keys;
}

const config__key_t *config__key_find(const char *path)
{
    size_t count;
    const config__key_t *all = config__keys(&count);

    for (size_t i = 0; i < count; i++) {
        if (strcmp(all[i].path, path) == 0)
            return &all[i];
    }
    return NULL;
}

size_t config__key_index(const config__key_t *key)
{
    return (size_t)(key - keys);
}

void *config__member(const znp_config_t *config, const config__key_t *key)
{
    return (char *)config + key->offset;
}

static int is_true_word(const char *text)
{
    return strcasecmp(text, "true") == 0 || strcasecmp(text, "yes") == 0 || strcasecmp(text, "on") == 0;
}

static int is_false_word(const char *text)
{
    return strcasecmp(text, "false") == 0 || strcasecmp(text, "no") == 0 || strcasecmp(text, "off") == 0;
}

/* Decimal digits only: libcyaml would read "010" as octal and "1.5" as 1. */
static int parse_unsigned(const char *text, uint64_t max, uint64_t *out)
{
    uint64_t value = 0;
    const char *p;

    if (text[0] == '\0' || (text[0] == '0' && text[1] != '\0'))
        return -1;
    for (p = text; *p != '\0'; p++) {
        unsigned digit;

        if (*p < '0' || *p > '9')
            return -1;
        digit = (unsigned)(*p - '0');
        if (value > (max - digit) / 10)
            return -1;
        value = value * 10 + digit;
    }
    *out = value;
    return 0;
}

static int parse_scalar(const config__key_t *key, const char *text, uint64_t *number, const char **expected)
{
    const cyaml_schema_value_t *value = key->value;

    switch (value->type) {
    case CYAML_STRING:
        return 0;
    case CYAML_UINT: {
        uint64_t max = value->data_size >= 8 ? UINT64_MAX : (UINT64_C(1) << (value->data_size * 8)) - 1;

        if (parse_unsigned(text, max, number) == 0)
            return 0;
        *expected =
            value->data_size >= 8 ? "an integer from 0 to 18446744073709551615" : "an integer from 0 to 4294967295";
        return ZNP_E_VALIDATION_FAILED;
    }
    case CYAML_BOOL:
        if (is_true_word(text)) {
            *number = 1;
            return 0;
        }
        if (is_false_word(text)) {
            *number = 0;
            return 0;
        }
        *expected = "true or false";
        return ZNP_E_VALIDATION_FAILED;
    case CYAML_ENUM:
        for (uint32_t i = 0; i < value->enumeration.count; i++) {
            if (strcasecmp(value->enumeration.strings[i].str, text) == 0) {
                *number = (uint64_t)value->enumeration.strings[i].val;
                return 0;
            }
        }
        *expected = "one of debug, info, warn, error"; /* log.level is the only enum */
        return ZNP_E_VALIDATION_FAILED;
    default:
        *expected = "a supported value";
        return ZNP_E_INTERNAL;
    }
}

int config__check_scalar(const config__key_t *key, const char *text, const char **expected)
{
    uint64_t number = 0;

    return parse_scalar(key, text, &number, expected);
}

int config__set_scalar(znp_config_t *config, const config__key_t *key, const char *text, const char **expected)
{
    void *member = config__member(config, key);
    uint64_t number = 0;
    int rc;

    rc = parse_scalar(key, text, &number, expected);
    if (rc != 0)
        return rc;

    switch (key->value->type) {
    case CYAML_STRING: {
        /* "" means unset for keys that may be unset, e.g. an empty DSN selects the embedded cluster */
        const char *stored = (key->flags & CONFIG_NULLABLE) && text[0] == '\0' ? NULL : text;

        znp_config_set_string(member, stored);
        return stored != NULL && *(char **)member == NULL ? ZNP_E_INTERNAL : 0;
    }
    case CYAML_UINT:
        if (key->value->data_size == sizeof(uint64_t))
            *(uint64_t *)member = number;
        else
            *(uint32_t *)member = (uint32_t)number;
        return 0;
    case CYAML_BOOL:
    case CYAML_ENUM:
        *(int *)member = (int)number;
        return 0;
    default:
        return ZNP_E_INTERNAL;
    }
}

void config__format_value(char *out, size_t out_size, const znp_config_t *config, const config__key_t *key)
{
    const void *member = config__member(config, key);

    switch (key->value->type) {
    case CYAML_STRING: {
        const char *text = *(char *const *)member;

        snprintf(out, out_size, "%s", text == NULL ? "(not set)" : text);
        return;
    }
    case CYAML_UINT:
        if (key->value->data_size == sizeof(uint64_t))
            snprintf(out, out_size, "%" PRIu64, *(const uint64_t *)member);
        else
            snprintf(out, out_size, "%" PRIu32, *(const uint32_t *)member);
        return;
    case CYAML_BOOL:
        snprintf(out, out_size, "%s", *(const int *)member ? "true" : "false");
        return;
    case CYAML_ENUM:
        for (uint32_t i = 0; i < key->value->enumeration.count; i++) {
            if (key->value->enumeration.strings[i].val == *(const int *)member) {
                snprintf(out, out_size, "%s", key->value->enumeration.strings[i].str);
                return;
            }
        }
        snprintf(out, out_size, "%d", *(const int *)member);
        return;
    default:
        snprintf(out, out_size, "?");
        return;
    }
}
