/*
 * znp configuration, loaded from YAML with libcyaml, then defaults applied,
 * then environment overrides, then command-line overrides (in that order).
 * Every key is documented in docs/configuration.md.
 *
 * The functions here are not thread-safe. A loaded configuration is
 * read-only afterwards and may then be shared by every thread.
 */
#ifndef ZNP_CONFIG_H
#define ZNP_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "core/error.h"
#include "core/log.h"

typedef struct znp_config_server {
    char *listen;               /* "HOST:PORT" for HTTP (HTTP/1.1 + h2c); default "127.0.0.1:8080" */
    char *grpc_listen;          /* "HOST:PORT" for gRPC; default "127.0.0.1:8090" */
    char *tls_listen;           /* "HOST:PORT" for TLS (ALPN h2 + http/1.1); NULL = no TLS listener */
    char *tls_cert;             /* PEM certificate chain file, required with tls_listen */
    char *tls_key;              /* PEM private key file, required with tls_listen */
    uint32_t threads;           /* event-loop threads; 0 = number of cores */
    uint32_t workers;           /* worker threads, each owning one PostgreSQL connection; 0 = 2 x cores */
    char *admin_prefix;         /* admin route prefix; default "admin" */
    uint64_t max_body_bytes;    /* default 1 MiB */
    uint32_t max_header_bytes;  /* total request header bytes; default 16 KiB */
    uint32_t max_uri_bytes;     /* default 8 KiB */
    uint32_t read_timeout_ms;   /* slow-client timeout for headers and body; default 10000 */
    uint32_t idle_timeout_ms;   /* keep-alive idle timeout; default 60000 */
    uint32_t shutdown_timeout_ms; /* SIGTERM drain limit; default 10000 */
    uint32_t queue_limit;       /* requests waiting for a worker before 503 overloaded; default 4096 */
    char *docs_dir;             /* Swagger UI files (swagger-ui-dist); default "<share>/swagger-ui" */
    char *default_locale;       /* "en" or "zh-CN"; default "en" */
    char *trusted_proxies;      /* comma-separated CIDRs whose X-Forwarded-For/Forwarded is believed; NULL = none */
    uint32_t hsts_max_age_s;    /* Strict-Transport-Security max-age on TLS responses; default 15552000, 0 = off */
} znp_config_server_t;

typedef struct znp_config_database {
    char *dsn;                  /* libpq connection string; NULL = embedded cluster. Env: ZNP_DATABASE_DSN */
    char *data_dir;             /* embedded cluster and other state; default "./data" */
    char *pg_bin_dir;           /* PostgreSQL binaries; default: newest /usr/lib/postgresql/<N>/bin */
    char *run_as;               /* account the embedded cluster runs as when znp runs as root; default "postgres" */
    uint32_t connect_timeout_s; /* default 5 */
    uint32_t statement_timeout_ms; /* default 15000 */
    uint32_t reconnect_max_ms;  /* backoff ceiling; default 5000 */
    int auto_migrate;           /* serve and admin create apply pending migrations; default true */
} znp_config_database_t;

typedef struct znp_config_auth {
    char *access_secret;        /* HS256 key for access tokens, >= 32 bytes. Env: ZNP_AUTH_ACCESS_SECRET */
    char *refresh_secret;       /* HS256 key for refresh tokens, >= 32 bytes. Env: ZNP_AUTH_REFRESH_SECRET */
    uint32_t access_ttl_s;      /* default 900 (15 minutes) */
    uint32_t refresh_ttl_s;     /* default 2592000 (30 days) */
    char *issuer;               /* JWT iss and aud; default "znp" */
    uint32_t argon2_t_cost;     /* default 2 */
    uint32_t argon2_m_cost_kib; /* default 19456 */
    uint32_t argon2_parallelism; /* default 1 */
    uint32_t lockout_max_attempts; /* default 5; 0 disables lockout */
    uint32_t lockout_minutes;   /* default 15 */
    uint32_t ip_failure_limit;  /* failed sign-ins per client IP per window, all instances; default 50; 0 = off */
    uint32_t ip_failure_window_s; /* default 900 */
} znp_config_auth_t;

typedef struct znp_config_security {
    char *master_key;           /* base64 of 32 bytes: AES-256-GCM key for secrets at rest. Env: ZNP_MASTER_KEY */
    char *credential_key;       /* key text of the user identity credentials; NULL = master_key. Env: ZNP_CREDENTIAL_KEY */
    int require_admin_mfa;      /* admin routes return 403 mfa_required until the admin enables MFA; default false */
} znp_config_security_t;

typedef struct znp_config_site {
    char *name;                 /* initial site name; default "znp" */
    char *logo_url;             /* initial logo URL; default "" */
    char *service_name;         /* "service" in ping; default "znp" */
    uint32_t subscription_update_hours; /* profile-update-interval of subscription downloads; default 24, 1..720 */
} znp_config_site_t;

typedef struct znp_config_log {
    znp_log_level_t level;      /* debug, info, warn, error; default info. Env: ZNP_LOG_LEVEL */
    char *file;                 /* NULL = stderr; reopened on SIGHUP. Env: ZNP_LOG_FILE */
    int access_log;             /* one line per request; default true */
} znp_config_log_t;

typedef struct znp_config_jobs {
    uint32_t threads;           /* job runner threads, each with its own connection; default 1, 0 = no runner */
    uint32_t poll_interval_ms;  /* queue poll when no notification arrives; default 1000 */
    uint32_t expire_interval_s; /* seconds between runs of the subscriptions.expire scheduled job; default 60 */
    uint32_t traffic_reset_interval_s; /* seconds between runs of subscriptions.traffic_reset; default 300 */
    uint32_t purge_interval_s;  /* seconds between runs of the maintenance.purge scheduled job; default 3600 */
    uint32_t retention_days;    /* days finished (done or dead) jobs are kept; default 14 */
} znp_config_jobs_t;

typedef struct znp_config_download {
    uint32_t cache_entries; /* rendered subscription files kept in memory; default 10000, 0 = no cache */
    uint32_t cache_ttl_s;   /* maximum age of a cached file in seconds; default 60, 0 = no cache */
} znp_config_download_t;

typedef struct znp_config_panel {
    char *time_zone;            /* IANA name of the one panel time zone (traffic days, resets); default "Asia/Shanghai" */
} znp_config_panel_t;

typedef struct znp_config_webhook {
    char *shared_token;         /* X-ZNP-Webhook-Token of kernel callbacks; NULL = unset. Env: ZNP_WEBHOOK_SHARED_TOKEN */
    char *signing_secret;       /* HMAC-SHA256 key of signed kernel callbacks; NULL = unset. Env: ZNP_WEBHOOK_SIGNING_SECRET */
    uint32_t signature_tolerance_s; /* accepted clock skew of a signature timestamp; default 300 */
    uint32_t ip_failure_limit;    /* callbacks with wrong credentials per client IP per window, all instances; default 20; 0 = off */
    uint32_t ip_failure_window_s; /* default 600 */
} znp_config_webhook_t;

typedef struct znp_config_kernel {
    char *callback_base_url;    /* base of callback URLs registered on kernels; NULL = site service_domain */
} znp_config_kernel_t;

typedef struct znp_config_mail {
    char *smtp_url;             /* smtp://HOST:PORT or smtps://HOST:PORT; NULL = mail disabled */
    char *starttls;             /* smtp:// only: "required", "opportunistic" or "off"; default "required" */
    char *username;             /* SMTP AUTH user; NULL = no AUTH */
    char *password;             /* SMTP AUTH password. Env: ZNP_MAIL_PASSWORD */
    char *from;                 /* sender address; default "noreply@localhost" */
    char *ca_file;              /* PEM CA bundle for the server certificate; NULL = system store */
    uint32_t timeout_ms;        /* whole SMTP transaction; default 10000 */
    uint32_t max_attempts;      /* tries per message before it is dead; default 8 */
} znp_config_mail_t;

typedef struct znp_config_registration {
    char *mode;                 /* "open", "invite_only" or "closed"; default "open" */
    int require_email_verification; /* new accounts stay pending until the mailed code is entered; default true */
    char *default_roles;        /* comma-separated roles of new accounts; default "user" */
} znp_config_registration_t;

typedef struct znp_config_password {
    uint32_t min_length;        /* code points; default 8 */
    uint32_t max_length;        /* code points; default 128 */
    uint32_t require_classes;   /* 0..4 of lower, upper, digit, other that must appear; default 0 */
} znp_config_password_t;

typedef struct znp_config_codes {
    uint32_t ttl_s;             /* lifetime of a mailed code; default 900 */
    uint32_t max_attempts;      /* wrong tries that burn a code; default 5 */
    uint32_t cooldown_s;        /* between two codes for one purpose and address; default 60 */
    uint32_t per_address_per_hour; /* codes per purpose and address in any hour; default 5 */
    uint32_t per_ip_per_hour;   /* codes requested from one client IP in any hour; default 20 */
} znp_config_codes_t;

/* CORS settings of one route group; NULL inherits the cors.* value */
typedef struct znp_config_cors_group {
    char *enabled;              /* "true" or "false" */
    char *allow_origins;
    char *allow_headers;
    char *allow_methods;
    char *allow_credentials;    /* "true" or "false" */
} znp_config_cors_group_t;

typedef struct znp_config_cors_groups {
    znp_config_cors_group_t user;   /* /api/v1/user/... */
    znp_config_cors_group_t admin;  /* /api/v1/<admin_prefix>/... */
    znp_config_cors_group_t public; /* every other path */
} znp_config_cors_groups_t;

typedef struct znp_config_cors {
    int enabled;                /* default false */
    char *allow_origins;        /* comma-separated origins, subdomain wildcards or "*"; NULL = none */
    char *allow_headers;        /* comma-separated request headers a preflight allows */
    char *allow_methods;        /* comma-separated methods a preflight allows */
    int allow_credentials;      /* Access-Control-Allow-Credentials: true; default false */
    uint32_t max_age_s;         /* preflight cache lifetime; default 600 */
    char *expose_headers;       /* comma-separated response headers scripts may read */
    znp_config_cors_groups_t groups;
} znp_config_cors_t;

/* a token bucket: refills rate_per_minute tokens per minute up to burst; rate 0 = no limit */
typedef struct znp_config_rate {
    uint32_t rate_per_minute;
    uint32_t burst;
} znp_config_rate_t;

typedef struct znp_config_rate_group {
    znp_config_rate_t ip;       /* per client IP, checked on the event loop */
    znp_config_rate_t user;     /* per signed-in user, checked after authentication */
    znp_config_rate_t global;   /* all clients of this instance together */
} znp_config_rate_group_t;

typedef struct znp_config_rate_groups {
    znp_config_rate_group_t user;
    znp_config_rate_group_t admin;
    znp_config_rate_group_t public;
} znp_config_rate_groups_t;

typedef struct znp_config_rate_limits {
    int enabled;                /* group and x-rate-limit operation limits; default true */
    uint32_t max_keys;          /* buckets kept per table before the least recently used is evicted; default 100000 */
    znp_config_rate_groups_t groups;
} znp_config_rate_limits_t;

typedef struct znp_config_admin {
    char *allow_cidrs;          /* comma-separated CIDRs allowed to reach admin routes; NULL = every address */
    uint32_t rate_per_minute;   /* per client IP on admin routes; default 0 = no limit */
    uint32_t burst;
} znp_config_admin_t;

typedef struct znp_config {
    znp_config_server_t server;
    znp_config_database_t database;
    znp_config_auth_t auth;
    znp_config_registration_t registration;
    znp_config_password_t password;
    znp_config_codes_t codes;
    znp_config_security_t security;
    znp_config_site_t site;
    znp_config_log_t log;
    znp_config_jobs_t jobs;
    znp_config_download_t download;
    znp_config_panel_t panel;
    znp_config_webhook_t webhook;
    znp_config_kernel_t kernel;
    znp_config_mail_t mail;
    znp_config_cors_t cors;
    znp_config_rate_limits_t rate_limits;
    znp_config_admin_t admin;
    char *source_path;          /* file the config came from, NULL for built-in defaults */
    int demo;                   /* --demo: seed demo content once */
    struct znp_config_origins *origins; /* where each key's value came from; internal to src/config */
} znp_config_t;

/* where a config problem was found, for "file:line:column: message" */
typedef struct znp_config_error {
    char message[512];
    char file[256];
    unsigned line;              /* 1-based, 0 when unknown */
    unsigned column;
} znp_config_error_t;

/*
 * Load `path` (NULL = built-in defaults only), apply defaults and the
 * environment overrides (ZNP_DATABASE_DSN, ZNP_AUTH_ACCESS_SECRET,
 * ZNP_AUTH_REFRESH_SECRET, ZNP_MASTER_KEY, ZNP_LOG_LEVEL, ZNP_LOG_FILE), then
 * validate. On
 * success *out is owned by the caller (znp_config_destroy). Unknown keys,
 * wrong types and invalid values fail with file, line and a message in
 * `err`, and ZNP_E_VALIDATION_FAILED (ZNP_E_INTERNAL when memory runs out);
 * *out is then NULL.
 */
int znp_config_load(znp_config_t **out, const char *path, znp_config_error_t *err);

/*
 * znp_config_load without the final validation, for callers that apply
 * command-line overrides (znp_config_override) and then call
 * znp_config_validate themselves.
 */
int znp_config_parse(znp_config_t **out, const char *path, znp_config_error_t *err);

/* Validate after command-line overrides were applied; same error reporting. */
int znp_config_validate(const znp_config_t *config, znp_config_error_t *err);

/*
 * Set the key `key` ("server.listen") from its YAML scalar text, as an
 * environment variable or a command-line option does. `origin` names the
 * source in later error messages and in the summary ("--listen"). An unknown
 * key or a value of the wrong type fails with ZNP_E_VALIDATION_FAILED.
 */
int znp_config_override(znp_config_t *config, const char *key, const char *value, const char *origin,
                        znp_config_error_t *err);

/* Replace a string member (frees the old value, copies `value`, NULL allowed). */
void znp_config_set_string(char **member, const char *value);

/*
 * Fill auth.access_secret, auth.refresh_secret and security.master_key when
 * they are not set: read them from <database.data_dir>/secrets.yaml, or
 * generate them (48 random bytes base64url for each JWT key, 32 random bytes
 * base64 for the master key) and write that file with mode 0600, so tokens
 * and encrypted data stay valid across restarts. A configured secret always
 * wins over the file. The file is created atomically, so concurrent callers
 * end up with one set; a file from before the master key existed gets one
 * added under an exclusive lock.
 */
int znp_config_ensure_secrets(znp_config_t *config, znp_config_error_t *err);

/* Split "HOST:PORT" or "[IPV6]:PORT". Port 0 is allowed. Returns 0 or ZNP_E_VALIDATION_FAILED. */
int znp_config_parse_hostport(const char *value, char *host, size_t host_size, unsigned *port);

/*
 * Print every key with its value and where it came from (check-config).
 * Secrets show as `**** (N bytes)` and the DSN password as `****`.
 */
void znp_config_print_summary(const znp_config_t *config, FILE *out);

/* Write `err` as "file:line:column: message" (parts that are unknown are left out). */
void znp_config_error_format(char *out, size_t out_size, const znp_config_error_t *err);

/* Accepts NULL. */
void znp_config_destroy(znp_config_t *config);

#endif
