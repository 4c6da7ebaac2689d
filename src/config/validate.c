/*
 * Checks that need more than the type of one value: addresses, limits,
 * secrets, the TLS files and the admin prefix. Each failure points at the
 * value that caused it (file position, environment variable or option).
 */
#include "config/config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/internal.h"
#include "protect/protect.h"
#include "core/crypto.h"

#define SECRET_MIN_BYTES 32
#define THREADS_MAX      256
#define WORKERS_MAX      512

static int fail(znp_config_error_t *err, const znp_config_t *config, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(znp_config_error_t *err, const znp_config_t *config, const char *path, const char *fmt, ...)
{
    const config__key_t *key = config__key_find(path);
    char message[sizeof err->message];
    va_list args;

    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    return config__fail_key(err, config, key, "%s", message);
}

int znp_config_parse_hostport(const char *value, char *host, size_t host_size, unsigned *port)
{
    const char *colon;
    const char *host_start = value;
    size_t host_len;
    unsigned long number = 0;

    if (value == NULL || value[0] == '\0')
        return ZNP_E_VALIDATION_FAILED;
    if (value[0] == '[') {
        const char *close = strchr(value, ']');

        if (close == NULL || close[1] != ':')
            return ZNP_E_VALIDATION_FAILED;
        host_start = value + 1;
        host_len = (size_t)(close - host_start);
        colon = close + 1;
    } else {
        colon = strrchr(value, ':');
        if (colon == NULL || memchr(value, ':', (size_t)(colon - value)) != NULL)
            return ZNP_E_VALIDATION_FAILED; /* a bare IPv6 address needs brackets */
        host_len = (size_t)(colon - value);
    }
    if (host_len == 0 || host_len >= host_size)
        return ZNP_E_VALIDATION_FAILED;
    for (size_t i = 0; i < host_len; i++) {
        unsigned char ch = (unsigned char)host_start[i];

        if (!isalnum(ch) && ch != '.' && ch != '-' && ch != ':' && ch != '_')
            return ZNP_E_VALIDATION_FAILED;
    }

    if (colon[1] == '\0' || strlen(colon + 1) > 5)
        return ZNP_E_VALIDATION_FAILED;
    for (const char *p = colon + 1; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return ZNP_E_VALIDATION_FAILED;
        number = number * 10 + (unsigned long)(*p - '0');
    }
    if (number > 65535)
        return ZNP_E_VALIDATION_FAILED;

    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    *port = (unsigned)number;
    return 0;
}

static int check_address(znp_config_error_t *err, const znp_config_t *config, const char *path, const char *value)
{
    char host[256];
    unsigned port;

    if (znp_config_parse_hostport(value, host, sizeof host, &port) != 0)
        return fail(err, config, path,
                    "invalid address \"%.64s\" for %s: expected HOST:PORT with a port from 0 to 65535 "
                    "(e.g. 127.0.0.1:8080 or [::1]:8080)",
                    value, path);
    return 0;
}

static int same_address(const char *a, const char *b)
{
    char host_a[256], host_b[256];
    unsigned port_a, port_b;

    if (a == NULL || b == NULL)
        return 0;
    if (znp_config_parse_hostport(a, host_a, sizeof host_a, &port_a) != 0 ||
        znp_config_parse_hostport(b, host_b, sizeof host_b, &port_b) != 0)
        return 0;
    return port_a != 0 && port_a == port_b && strcmp(host_a, host_b) == 0;
}

static int check_readable_file(znp_config_error_t *err, const znp_config_t *config, const char *path, const char *file)
{
    struct stat st;
    int fd;

    fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, config, path, "cannot read %s \"%.200s\": %s", path, file, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, config, path, "%s \"%.200s\" is not a regular file", path, file);
    }
    close(fd);
    return 0;
}

static int check_server(const znp_config_t *config, znp_config_error_t *err)
{
    const znp_config_server_t *s = &config->server;
    int rc;

    /* listeners */
    if ((rc = check_address(err, config, "server.listen", s->listen)) != 0)
        return rc;
    if ((rc = check_address(err, config, "server.grpc_listen", s->grpc_listen)) != 0)
        return rc;
    if (same_address(s->listen, s->grpc_listen))
        return fail(err, config, "server.grpc_listen", "server.grpc_listen must differ from server.listen (%s)",
                    s->listen);

    /* tls */
    if (s->tls_listen != NULL) {
        if ((rc = check_address(err, config, "server.tls_listen", s->tls_listen)) != 0)
            return rc;
        if (same_address(s->tls_listen, s->listen) || same_address(s->tls_listen, s->grpc_listen))
            return fail(err, config, "server.tls_listen",
                        "server.tls_listen must differ from server.listen and server.grpc_listen");
        if (s->tls_cert == NULL)
            return fail(err, config, "server.tls_listen", "server.tls_listen is set but server.tls_cert is missing");
        if (s->tls_key == NULL)
            return fail(err, config, "server.tls_listen", "server.tls_listen is set but server.tls_key is missing");
        if ((rc = check_readable_file(err, config, "server.tls_cert", s->tls_cert)) != 0)
            return rc;
        if ((rc = check_readable_file(err, config, "server.tls_key", s->tls_key)) != 0)
            return rc;
    } else if (s->tls_cert != NULL || s->tls_key != NULL) {
        return fail(err, config, s->tls_cert ? "server.tls_cert" : "server.tls_key",
                    "%s is set but server.tls_listen is not", s->tls_cert ? "server.tls_cert" : "server.tls_key");
    }

    /* threads and limits */
    if (s->threads > THREADS_MAX)
        return fail(err, config, "server.threads", "server.threads must be at most %d (0 = number of cores)",
                    THREADS_MAX);
    if (s->workers > WORKERS_MAX)
        return fail(err, config, "server.workers", "server.workers must be at most %d (0 = 2 x cores)", WORKERS_MAX);
    static const struct {
        const char *path;
        size_t offset;
    } positive[] = {
        {"server.max_header_bytes", offsetof(znp_config_server_t, max_header_bytes)},
        {"server.max_uri_bytes", offsetof(znp_config_server_t, max_uri_bytes)},
        {"server.read_timeout_ms", offsetof(znp_config_server_t, read_timeout_ms)},
        {"server.idle_timeout_ms", offsetof(znp_config_server_t, idle_timeout_ms)},
        {"server.shutdown_timeout_ms", offsetof(znp_config_server_t, shutdown_timeout_ms)},
        {"server.queue_limit", offsetof(znp_config_server_t, queue_limit)},
    };
    for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++) {
        if (*(const uint32_t *)((const char *)s + positive[i].offset) == 0)
            return fail(err, config, positive[i].path, "%s must be greater than 0", positive[i].path);
    }
    if (s->max_body_bytes == 0)
        return fail(err, config, "server.max_body_bytes", "server.max_body_bytes must be greater than 0");

    /* routes and locale */
    size_t prefix_len = strlen(s->admin_prefix);
    if (prefix_len == 0 || prefix_len > 32 ||
        strspn(s->admin_prefix, "abcdefghijklmnopqrstuvwxyz0123456789-") != prefix_len)
        return fail(err, config, "server.admin_prefix",
                    "invalid value \"%.64s\" for server.admin_prefix: expected 1 to 32 characters from a-z, 0-9 and -",
                    s->admin_prefix);
    static const char *const reserved[] = {"user", "auth", "kernel", "subscriptions"};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        if (strcmp(s->admin_prefix, reserved[i]) == 0)
            return fail(err, config, "server.admin_prefix",
                        "server.admin_prefix cannot be \"%s\": /api/v1/%s is used by other routes", reserved[i],
                        reserved[i]);
    }
    if (s->docs_dir[0] == '\0')
        return fail(err, config, "server.docs_dir", "server.docs_dir must not be empty");
    if (strcmp(s->default_locale, "en") != 0 && strcmp(s->default_locale, "zh-CN") != 0)
        return fail(err, config, "server.default_locale",
                    "invalid value \"%.32s\" for server.default_locale: expected en or zh-CN", s->default_locale);
    return 0;
}

static int check_database(const znp_config_t *config, znp_config_error_t *err)
{
    const znp_config_database_t *d = &config->database;

    if (d->dsn != NULL) {
        char *parse_error = NULL;
        PQconninfoOption *options = PQconninfoParse(d->dsn, &parse_error);

        PQconninfoFree(options);
        if (options == NULL) {
            /* libpq's message may quote parts of the string, which can include the password */
            PQfreemem(parse_error);
            return fail(err, config, "database.dsn",
                        "invalid value for database.dsn: expected a libpq connection string "
                        "(\"host=... dbname=... user=...\" or a postgresql:// URI)");
        }
    }
    if (d->data_dir[0] == '\0')
        return fail(err, config, "database.data_dir", "database.data_dir must not be empty");
    if (d->pg_bin_dir != NULL && d->pg_bin_dir[0] == '\0')
        return fail(err, config, "database.pg_bin_dir", "database.pg_bin_dir must not be empty");
    size_t run_as_len = strlen(d->run_as);
    if (run_as_len == 0 || run_as_len > 32 ||
        strspn(d->run_as, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != run_as_len)
        return fail(err, config, "database.run_as", "invalid value \"%.64s\" for database.run_as: expected a user name",
                    d->run_as);
    if (d->connect_timeout_s == 0)
        return fail(err, config, "database.connect_timeout_s", "database.connect_timeout_s must be greater than 0");
    if (d->statement_timeout_ms == 0)
        return fail(err, config, "database.statement_timeout_ms",
                    "database.statement_timeout_ms must be greater than 0");
    if (d->reconnect_max_ms < 100)
        return fail(err, config, "database.reconnect_max_ms",
                    "database.reconnect_max_ms must be at least 100 (the first retry waits 100 ms)");
    return 0;
}

static int check_secret(const znp_config_t *config, znp_config_error_t *err, const char *path, const char *secret)
{
    if (secret != NULL && strlen(secret) < SECRET_MIN_BYTES)
        return fail(err, config, path, "%s is too short: %zu bytes, at least %d are required", path, strlen(secret),
                    SECRET_MIN_BYTES);
    return 0;
}

static int check_auth(const znp_config_t *config, znp_config_error_t *err)
{
    const znp_config_auth_t *a = &config->auth;
    int rc;

    if ((rc = check_secret(config, err, "auth.access_secret", a->access_secret)) != 0)
        return rc;
    if ((rc = check_secret(config, err, "auth.refresh_secret", a->refresh_secret)) != 0)
        return rc;
    if (a->access_secret != NULL && a->refresh_secret != NULL && strcmp(a->access_secret, a->refresh_secret) == 0)
        return fail(err, config, "auth.refresh_secret", "auth.refresh_secret must differ from auth.access_secret");
    if (a->access_ttl_s == 0)
        return fail(err, config, "auth.access_ttl_s", "auth.access_ttl_s must be greater than 0");
    if (a->refresh_ttl_s == 0)
        return fail(err, config, "auth.refresh_ttl_s", "auth.refresh_ttl_s must be greater than 0");
    if (a->issuer[0] == '\0')
        return fail(err, config, "auth.issuer", "auth.issuer must not be empty");
    if (a->argon2_t_cost == 0)
        return fail(err, config, "auth.argon2_t_cost", "auth.argon2_t_cost must be greater than 0");
    if (a->argon2_parallelism == 0 || a->argon2_parallelism > 64)
        return fail(err, config, "auth.argon2_parallelism", "auth.argon2_parallelism must be from 1 to 64");
    if (a->argon2_m_cost_kib < 8 * a->argon2_parallelism)
        return fail(err, config, "auth.argon2_m_cost_kib",
                    "auth.argon2_m_cost_kib must be at least 8 x auth.argon2_parallelism (%u)",
                    8 * a->argon2_parallelism);
    if (a->lockout_max_attempts > 0 && a->lockout_minutes == 0)
        return fail(err, config, "auth.lockout_minutes",
                    "auth.lockout_minutes must be greater than 0 while auth.lockout_max_attempts is set");
    if (a->ip_failure_limit > 0 && a->ip_failure_window_s == 0)
        return fail(err, config, "auth.ip_failure_window_s",
                    "auth.ip_failure_window_s must be greater than 0 while auth.ip_failure_limit is set");
    return 0;
}

/* Code points in valid UTF-8, or -1. */
static long utf8_length(const char *text)
{
    const unsigned char *p = (const unsigned char *)text;
    long count = 0;

    while (*p != '\0') {
        int extra;

        if (*p < 0x80)
            extra = 0;
        else if ((*p & 0xe0) == 0xc0 && *p >= 0xc2)
            extra = 1;
        else if ((*p & 0xf0) == 0xe0)
            extra = 2;
        else if ((*p & 0xf8) == 0xf0 && *p <= 0xf4)
            extra = 3;
        else
            return -1;
        p++;
        for (int i = 0; i < extra; i++, p++) {
            if ((*p & 0xc0) != 0x80)
                return -1;
        }
        count++;
    }
    return count;
}

static int check_security(const znp_config_t *config, znp_config_error_t *err)
{
    uint8_t key[ZNP_CRYPTO_KEY_LEN];
    int rc;

    if (config->security.credential_key != NULL && (strlen(config->security.credential_key) < 32 ||
                                                     strlen(config->security.credential_key) > 1024))
        return fail(err, config, "security.credential_key",
                    "security.credential_key must be 32 to 1024 bytes long "
                    "(generate one with: openssl rand -base64 32)");
    if (config->security.master_key == NULL)
        return 0;
    rc = znp_crypto_key_decode(key, config->security.master_key);
    explicit_bzero(key, sizeof key);
    if (rc != 0)
        return fail(err, config, "security.master_key",
                    "security.master_key must be the base64 encoding of exactly 32 bytes "
                    "(generate one with: openssl rand -base64 32)");
    return 0;
}

static int check_site_and_log(const znp_config_t *config, znp_config_error_t *err)
{
    const znp_config_site_t *site = &config->site;
    long name_len = utf8_length(site->name);
    long logo_len = utf8_length(site->logo_url);

    /* the limits of the site_settings columns */
    if (name_len < 0 || name_len > 128)
        return fail(err, config, "site.name", "site.name must be valid UTF-8 of at most 128 characters");
    if (logo_len < 0 || logo_len > 512)
        return fail(err, config, "site.logo_url", "site.logo_url must be valid UTF-8 of at most 512 characters");
    if (site->service_name[0] == '\0')
        return fail(err, config, "site.service_name", "site.service_name must not be empty");
    if (site->subscription_update_hours < 1 || site->subscription_update_hours > 720)
        return fail(err, config, "site.subscription_update_hours", "site.subscription_update_hours must be 1 to 720");
    if (config->log.file != NULL && config->log.file[0] == '\0')
        return fail(err, config, "log.file", "log.file must not be empty");
    return 0;
}

static int check_jobs_and_mail(const znp_config_t *config, znp_config_error_t *err)
{
    const znp_config_mail_t *m = &config->mail;

    if (config->jobs.threads > THREADS_MAX)
        return fail(err, config, "jobs.threads", "jobs.threads must be at most %d (0 = no job runner)", THREADS_MAX);
    if (config->jobs.poll_interval_ms < 10)
        return fail(err, config, "jobs.poll_interval_ms", "jobs.poll_interval_ms must be at least 10");
    if (config->download.cache_entries > 10000000)
        return fail(err, config, "download.cache_entries", "download.cache_entries must be at most 10000000");
    if (config->download.cache_ttl_s > 3600)
        return fail(err, config, "download.cache_ttl_s", "download.cache_ttl_s must be at most 3600");
    if (config->jobs.expire_interval_s < 1 || config->jobs.expire_interval_s > 86400)
        return fail(err, config, "jobs.expire_interval_s", "jobs.expire_interval_s must be from 1 to 86400");
    if (config->jobs.traffic_reset_interval_s < 1 || config->jobs.traffic_reset_interval_s > 86400)
        return fail(err, config, "jobs.traffic_reset_interval_s",
                    "jobs.traffic_reset_interval_s must be from 1 to 86400");
    if (config->jobs.purge_interval_s < 1 || config->jobs.purge_interval_s > 86400)
        return fail(err, config, "jobs.purge_interval_s", "jobs.purge_interval_s must be from 1 to 86400");
    if (config->jobs.retention_days < 1 || config->jobs.retention_days > 3650)
        return fail(err, config, "jobs.retention_days", "jobs.retention_days must be from 1 to 3650");
    if (m->smtp_url != NULL && strncmp(m->smtp_url, "smtp://", 7) != 0 && strncmp(m->smtp_url, "smtps://", 8) != 0)
        return fail(err, config, "mail.smtp_url",
                    "invalid value for mail.smtp_url: expected smtp://HOST:PORT (STARTTLS) or smtps://HOST:PORT");
    if (strcmp(m->starttls, "required") != 0 && strcmp(m->starttls, "opportunistic") != 0 &&
        strcmp(m->starttls, "off") != 0)
        return fail(err, config, "mail.starttls",
                    "invalid value \"%.32s\" for mail.starttls: expected required, opportunistic or off", m->starttls);
    if (m->from[0] == '\0' || strchr(m->from, '@') == NULL || strpbrk(m->from, "<>\r\n") != NULL)
        return fail(err, config, "mail.from", "invalid value \"%.64s\" for mail.from: expected an address such as "
                    "noreply@example.com", m->from);
    if (m->ca_file != NULL && check_readable_file(err, config, "mail.ca_file", m->ca_file) != 0)
        return ZNP_E_VALIDATION_FAILED;
    if (m->timeout_ms < 100)
        return fail(err, config, "mail.timeout_ms", "mail.timeout_ms must be at least 100");
    if (m->max_attempts == 0 || m->max_attempts > 100)
        return fail(err, config, "mail.max_attempts", "mail.max_attempts must be from 1 to 100");
    return 0;
}

/* registration, password and codes: the rules the accounts module relies on */
static int check_accounts(const znp_config_t *config, znp_config_error_t *err)
{
    const znp_config_registration_t *r = &config->registration;
    const znp_config_password_t *p = &config->password;
    const znp_config_codes_t *c = &config->codes;
    const char *roles = r->default_roles != NULL ? r->default_roles : "";

    if (r->mode == NULL ||
        (strcmp(r->mode, "open") != 0 && strcmp(r->mode, "invite_only") != 0 && strcmp(r->mode, "closed") != 0))
        return fail(err, config, "registration.mode", "registration.mode must be open, invite_only or closed");
    if (strspn(roles, "abcdefghijklmnopqrstuvwxyz0123456789_-,") != strlen(roles) || roles[0] == '\0' ||
        roles[0] == ',' || roles[strlen(roles) - 1] == ',' || strstr(roles, ",,") != NULL)
        return fail(err, config, "registration.default_roles",
                    "registration.default_roles must be comma-separated lower-case role names");
    if (p->min_length < 1 || p->min_length > 1024)
        return fail(err, config, "password.min_length", "password.min_length must be from 1 to 1024");
    if (p->max_length < p->min_length || p->max_length > 1024)
        return fail(err, config, "password.max_length", "password.max_length must be from min_length to 1024");
    if (p->require_classes > 4)
        return fail(err, config, "password.require_classes", "password.require_classes must be from 0 to 4");
    if (c->ttl_s < 60 || c->ttl_s > 86400)
        return fail(err, config, "codes.ttl_s", "codes.ttl_s must be from 60 to 86400");
    if (c->max_attempts < 1 || c->max_attempts > 100)
        return fail(err, config, "codes.max_attempts", "codes.max_attempts must be from 1 to 100");
    if (c->cooldown_s > 3600)
        return fail(err, config, "codes.cooldown_s", "codes.cooldown_s must be at most 3600");
    if (c->per_address_per_hour < 1)
        return fail(err, config, "codes.per_address_per_hour", "codes.per_address_per_hour must be at least 1");
    if (c->per_ip_per_hour < 1)
        return fail(err, config, "codes.per_ip_per_hour", "codes.per_ip_per_hour must be at least 1");
    return 0;
}

/* trusted proxies, CORS, rate limits and the admin allow-list: the checks live with their parsers */
static int check_protection(const znp_config_t *config, znp_config_error_t *err)
{
    char path[CONFIG_PATH_MAX];
    char message[sizeof err->message];
    int rc = znp_protect_check_config(config, path, sizeof path, message, sizeof message);

    if (rc == ZNP_E_VALIDATION_FAILED)
        return fail(err, config, path, "%s", message);
    return rc;
}

/* Check that the panel time zone names a file of the system zone database, which Debian's PostgreSQL also reads. */
static int check_panel_and_kernel(const znp_config_t *config, znp_config_error_t *err)
{
    const char *tz = config->panel.time_zone;
    const char *base = config->kernel.callback_base_url;
    char file[512];
    struct stat st;

    if (tz == NULL || tz[0] == '\0' || tz[0] == '/' || strstr(tz, "..") != NULL || strlen(tz) > 64)
        return fail(err, config, "panel.time_zone", "panel.time_zone must be an IANA zone name such as Asia/Shanghai");
    snprintf(file, sizeof file, "/usr/share/zoneinfo/%s", tz);
    if (stat(file, &st) != 0 || !S_ISREG(st.st_mode))
        return fail(err, config, "panel.time_zone", "unknown time zone \"%.64s\" for panel.time_zone", tz);
    if (config->webhook.signature_tolerance_s < 1 || config->webhook.signature_tolerance_s > 86400)
        return fail(err, config, "webhook.signature_tolerance_s", "webhook.signature_tolerance_s must be from 1 to 86400");
    if (config->webhook.ip_failure_limit > 0 && config->webhook.ip_failure_window_s == 0)
        return fail(err, config, "webhook.ip_failure_window_s",
                    "webhook.ip_failure_window_s must be greater than 0 while webhook.ip_failure_limit is set");
    if (base != NULL && strncmp(base, "http://", 7) != 0 && strncmp(base, "https://", 8) != 0)
        return fail(err, config, "kernel.callback_base_url",
                    "invalid value for kernel.callback_base_url: expected http://HOST[:PORT] or https://HOST[:PORT]");
    return 0;
}

int znp_config_validate(const znp_config_t *config, znp_config_error_t *err)
{
    int rc;

    memset(err, 0, sizeof *err);
    if ((rc = check_server(config, err)) != 0)
        return rc;
    if ((rc = check_database(config, err)) != 0)
        return rc;
    if ((rc = check_auth(config, err)) != 0)
        return rc;
    if ((rc = check_accounts(config, err)) != 0)
        return rc;
    if ((rc = check_security(config, err)) != 0)
        return rc;
    if ((rc = check_jobs_and_mail(config, err)) != 0)
        return rc;
    if ((rc = check_protection(config, err)) != 0)
        return rc;
    if ((rc = check_panel_and_kernel(config, err)) != 0)
        return rc;
    return check_site_and_log(config, err);
}
