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
    CYAML_FIELD_END,
};

static const cyaml_schema_field_t site_fields[] = {
    STRING_FIELD("name", znp_config_site_t, name),
    STRING_FIELD("logo_url", znp_config_site_t, logo_url),
    STRING_FIELD("service_name", znp_config_site_t, service_name),
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

static const cyaml_schema_field_t top_fields[] = {
    CYAML_FIELD_MAPPING("server", CYAML_FLAG_OPTIONAL, znp_config_t, server, server_fields),
    CYAML_FIELD_MAPPING("database", CYAML_FLAG_OPTIONAL, znp_config_t, database, database_fields),
    CYAML_FIELD_MAPPING("auth", CYAML_FLAG_OPTIONAL, znp_config_t, auth, auth_fields),
    CYAML_FIELD_MAPPING("site", CYAML_FLAG_OPTIONAL, znp_config_t, site, site_fields),
    CYAML_FIELD_MAPPING("log", CYAML_FLAG_OPTIONAL, znp_config_t, log, log_fields),
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
    {"database.dsn", NULL, CONFIG_NULLABLE | CONFIG_DSN},
    {"database.data_dir", "./data", 0},
    {"database.pg_bin_dir", NULL, CONFIG_NULLABLE},
    {"database.run_as", "postgres", 0},
    {"database.connect_timeout_s", "5", 0},
    {"database.statement_timeout_ms", "15000", 0},
    {"database.reconnect_max_ms", "5000", 0},
    {"database.auto_migrate", "true", 0},
    {"auth.access_secret", NULL, CONFIG_NULLABLE | CONFIG_SECRET},
    {"auth.refresh_secret", NULL, CONFIG_NULLABLE | CONFIG_SECRET},
    {"auth.access_ttl_s", "900", 0},
    {"auth.refresh_ttl_s", "2592000", 0},
    {"auth.issuer", "znp", 0},
    {"auth.argon2_t_cost", "2", 0},
    {"auth.argon2_m_cost_kib", "19456", 0},
    {"auth.argon2_parallelism", "1", 0},
    {"auth.lockout_max_attempts", "5", 0},
    {"auth.lockout_minutes", "15", 0},
    {"site.name", "znp", 0},
    {"site.logo_url", "", 0},
    {"site.service_name", "znp", 0},
    {"log.level", "info", 0},
    {"log.file", NULL, CONFIG_NULLABLE},
    {"log.access_log", "true", 0},
};

static config__key_t keys[CONFIG_KEY_MAX];
static size_t key_count;
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;

static void build_keys(void)
{
    const cyaml_schema_field_t *section;
    const cyaml_schema_field_t *field;

    for (section = top_fields; section->key != NULL; section++) {
        for (field = section->value.mapping.fields; field->key != NULL; field++) {
            config__key_t *key = &keys[key_count];
            size_t i;

            if (key_count == CONFIG_KEY_MAX) {
                fprintf(stderr, "znp: config schema has more than %d keys\n", CONFIG_KEY_MAX);
                abort();
            }
            snprintf(key->path, sizeof key->path, "%s.%s", section->key, field->key);
            key->offset = section->data_offset + field->data_offset;
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
