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
} znp_config_auth_t;

typedef struct znp_config_site {
    char *name;                 /* initial site name; default "znp" */
    char *logo_url;             /* initial logo URL; default "" */
    char *service_name;         /* "service" in ping; default "znp" */
} znp_config_site_t;

typedef struct znp_config_log {
    znp_log_level_t level;      /* debug, info, warn, error; default info. Env: ZNP_LOG_LEVEL */
    char *file;                 /* NULL = stderr; reopened on SIGHUP. Env: ZNP_LOG_FILE */
    int access_log;             /* one line per request; default true */
} znp_config_log_t;

typedef struct znp_config {
    znp_config_server_t server;
    znp_config_database_t database;
    znp_config_auth_t auth;
    znp_config_site_t site;
    znp_config_log_t log;
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
 * ZNP_AUTH_REFRESH_SECRET, ZNP_LOG_LEVEL, ZNP_LOG_FILE), then validate. On
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
 * Fill auth.access_secret and auth.refresh_secret when they are not set:
 * read them from <database.data_dir>/secrets.yaml, or generate 48 random
 * bytes each (base64url) and write that file with mode 0600, so tokens stay
 * valid across restarts. A configured secret always wins over the file. The
 * file is created atomically, so concurrent callers end up with one pair.
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
