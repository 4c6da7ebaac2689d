/*
 * Loading znp.yaml: the strict libyaml pass (yaml_check.c), libcyaml into
 * znp_config_t, defaults, then the environment overrides.
 */
#include "config/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/internal.h"

#define CONFIG_FILE_MAX (1024 * 1024)

static const struct env_override {
    const char *name;
    const char *key;
} env_overrides[] = {
    {"ZNP_DATABASE_DSN", "database.dsn"},
    {"ZNP_AUTH_ACCESS_SECRET", "auth.access_secret"},
    {"ZNP_AUTH_REFRESH_SECRET", "auth.refresh_secret"},
    {"ZNP_MASTER_KEY", "security.master_key"},
    {"ZNP_CREDENTIAL_KEY", "security.credential_key"},
    {"ZNP_LOG_LEVEL", "log.level"},
    {"ZNP_LOG_FILE", "log.file"},
    {"ZNP_MAIL_PASSWORD", "mail.password"},
    {"ZNP_WEBHOOK_SHARED_TOKEN", "webhook.shared_token"},
    {"ZNP_WEBHOOK_SIGNING_SECRET", "webhook.signing_secret"},
};

/* The first error libcyaml logs and the innermost position of its backtrace. */
typedef struct cyaml_capture {
    char message[256];
    unsigned line, column;
} cyaml_capture_t;

static void capture_cyaml_log(cyaml_log_t level, void *ctx, const char *fmt, va_list args)
{
    cyaml_capture_t *capture = ctx;
    char line[256];
    const char *at;
    size_t len;

    if (level < CYAML_LOG_ERROR)
        return;
    vsnprintf(line, sizeof line, fmt, args);
    len = strlen(line);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == ' '))
        line[--len] = '\0';

    at = strstr(line, "(line: ");
    if (at != NULL) {
        if (capture->line == 0 && sscanf(at, "(line: %u, column: %u)", &capture->line, &capture->column) != 2)
            capture->line = 0;
        return;
    }
    if (capture->message[0] == '\0' && strstr(line, "Backtrace") == NULL)
        snprintf(capture->message, sizeof capture->message, "%s", strncmp(line, "Load: ", 6) == 0 ? line + 6 : line);
}

int config__fail_at(znp_config_error_t *err, const char *file, unsigned line, unsigned column, const char *fmt, ...)
{
    va_list args;

    snprintf(err->file, sizeof err->file, "%s", file ? file : "");
    err->line = line;
    err->column = column;
    va_start(args, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, args);
    va_end(args);
    return ZNP_E_VALIDATION_FAILED;
}

int config__fail_key(znp_config_error_t *err, const znp_config_t *config, const config__key_t *key, const char *fmt,
                     ...)
{
    const config__origin_t *origin = config->origins ? &config->origins->items[config__key_index(key)] : NULL;
    va_list args;

    memset(err, 0, sizeof *err);
    if (origin != NULL && origin->kind == CONFIG_FROM_FILE) {
        snprintf(err->file, sizeof err->file, "%s", config->source_path ? config->source_path : "");
        err->line = origin->line;
        err->column = origin->column;
    } else if (origin != NULL && origin->kind != CONFIG_FROM_DEFAULT) {
        snprintf(err->file, sizeof err->file, "%s", origin->label);
    }
    va_start(args, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, args);
    va_end(args);
    return ZNP_E_VALIDATION_FAILED;
}

void config__set_origin(znp_config_t *config, const config__key_t *key, config_origin_kind_t kind, const char *label)
{
    config__origin_t *origin = &config->origins->items[config__key_index(key)];

    origin->kind = kind;
    origin->line = 0;
    origin->column = 0;
    snprintf(origin->label, sizeof origin->label, "%s", label ? label : "");
}

void znp_config_set_string(char **member, const char *value)
{
    free(*member);
    *member = value ? strdup(value) : NULL;
}

void znp_config_error_format(char *out, size_t out_size, const znp_config_error_t *err)
{
    if (err->file[0] != '\0' && err->line > 0 && err->column > 0)
        snprintf(out, out_size, "%s:%u:%u: %s", err->file, err->line, err->column, err->message);
    else if (err->file[0] != '\0' && err->line > 0)
        snprintf(out, out_size, "%s:%u: %s", err->file, err->line, err->message);
    else if (err->file[0] != '\0')
        snprintf(out, out_size, "%s: %s", err->file, err->message);
    else
        snprintf(out, out_size, "%s", err->message);
}

static int read_file(char **out, size_t *len, const char *path, znp_config_error_t *err)
{
    FILE *f = NULL;
    char *data = NULL;
    struct stat st;
    size_t got;
    int rc = 0;

    *out = NULL;
    f = fopen(path, "rb");
    if (f == NULL) {
        config__fail_at(err, path, 0, 0, "could not open the configuration file: %s", strerror(errno));
        return errno == ENOMEM ? ZNP_E_INTERNAL : ZNP_E_VALIDATION_FAILED;
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = config__fail_at(err, path, 0, 0, "not a regular file");
        goto cleanup;
    }
    if (st.st_size > CONFIG_FILE_MAX) {
        rc = config__fail_at(err, path, 0, 0, "the configuration file is larger than %d bytes", CONFIG_FILE_MAX);
        goto cleanup;
    }
    data = malloc((size_t)st.st_size + 1);
    if (data == NULL) {
        config__fail_at(err, path, 0, 0, "out of memory");
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    got = fread(data, 1, (size_t)st.st_size, f);
    if (ferror(f)) {
        rc = config__fail_at(err, path, 0, 0, "could not read the configuration file: %s", strerror(errno));
        goto cleanup;
    }
    data[got] = '\0';
    *len = got;
    *out = data;
    data = NULL;

cleanup:
    free(data);
    fclose(f);
    return rc;
}

/* libcyaml into a fresh znp_config_t; the file already passed config__check_yaml. */
static int load_cyaml(znp_config_t **out, const char *data, size_t len, const char *path, znp_config_error_t *err)
{
    cyaml_capture_t capture = {0};
    cyaml_config_t cyaml = {
        .log_fn = capture_cyaml_log,
        .log_ctx = &capture,
        .mem_fn = cyaml_mem,
        .log_level = CYAML_LOG_ERROR,
        .flags = CYAML_CFG_DEFAULT,
    };
    znp_config_t *config = NULL;
    cyaml_err_t rc;

    *out = NULL;
    rc = cyaml_load_data((const uint8_t *)data, len, &cyaml, &config__schema, (cyaml_data_t **)&config, NULL);
    if (rc != CYAML_OK) {
        /* only reached for a problem the libyaml pass did not catch */
        return config__fail_at(err, path, capture.line, capture.column, "%s",
                               capture.message[0] ? capture.message : cyaml_strerror(rc));
    }
    if (config == NULL) {
        config = calloc(1, sizeof *config);
        if (config == NULL) {
            config__fail_at(err, path, 0, 0, "out of memory");
            return ZNP_E_INTERNAL;
        }
    }
    *out = config;
    return 0;
}

static int apply_defaults(znp_config_t *config, const unsigned char *null_keys, znp_config_error_t *err)
{
    size_t count;
    const config__key_t *keys = config__keys(&count);

    for (size_t i = 0; i < count; i++) {
        const config__key_t *key = &keys[i];
        const char *expected = NULL;
        int from_file = config->origins->items[i].kind == CONFIG_FROM_FILE;

        if (key->value->type == CYAML_STRING && (null_keys[i] || (key->flags & CONFIG_NULLABLE))) {
            char **member = config__member(config, key);

            /* libcyaml stores a null scalar as "" or "~"; for these keys both mean unset */
            if (null_keys[i] || (*member != NULL && (*member)[0] == '\0'))
                znp_config_set_string(member, NULL);
        }
        if (from_file && !null_keys[i])
            continue;
        if (key->default_value == NULL)
            continue;
        if (config__set_scalar(config, key, key->default_value, &expected) != 0) {
            config__fail_at(err, NULL, 0, 0, "invalid built-in default for %s", key->path);
            return ZNP_E_INTERNAL;
        }
        config__set_origin(config, key, CONFIG_FROM_DEFAULT, NULL);
    }
    return 0;
}

static int apply_environment(znp_config_t *config, znp_config_error_t *err)
{
    for (size_t i = 0; i < sizeof env_overrides / sizeof env_overrides[0]; i++) {
        const char *value = getenv(env_overrides[i].name);
        const config__key_t *key = config__key_find(env_overrides[i].key);
        const char *expected = NULL;
        int rc;

        if (value == NULL || value[0] == '\0')
            continue;
        rc = config__set_scalar(config, key, value, &expected);
        if (rc == ZNP_E_VALIDATION_FAILED)
            return config__fail_at(err, env_overrides[i].name, 0, 0, "invalid value \"%.64s\" for %s: expected %s",
                                   value, key->path, expected);
        if (rc != 0)
            return config__fail_at(err, env_overrides[i].name, 0, 0, "out of memory");
        config__set_origin(config, key, CONFIG_FROM_ENV, env_overrides[i].name);
    }
    return 0;
}

int znp_config_override(znp_config_t *config, const char *key_path, const char *value, const char *origin,
                        znp_config_error_t *err)
{
    const config__key_t *key = config__key_find(key_path);
    const char *expected = NULL;
    int rc;

    memset(err, 0, sizeof *err);
    if (key == NULL)
        return config__fail_at(err, origin, 0, 0, "unknown configuration key \"%s\"", key_path);
    rc = config__set_scalar(config, key, value, &expected);
    if (rc == ZNP_E_VALIDATION_FAILED)
        return config__fail_at(err, origin, 0, 0, "invalid value \"%.64s\" for %s: expected %s",
                               (key->flags & CONFIG_SECRET) ? "****" : value, key->path, expected);
    if (rc != 0)
        return rc;
    config__set_origin(config, key, CONFIG_FROM_OVERRIDE, origin);
    return 0;
}

int znp_config_parse(znp_config_t **out, const char *path, znp_config_error_t *err)
{
    znp_config_t *config = NULL;
    struct znp_config_origins *origins = NULL;
    unsigned char null_keys[CONFIG_KEY_MAX] = {0};
    char *data = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    memset(err, 0, sizeof *err);

    origins = calloc(1, sizeof *origins);
    if (origins == NULL) {
        rc = ZNP_E_INTERNAL;
        config__fail_at(err, path, 0, 0, "out of memory");
        goto cleanup;
    }

    /* parse the file */
    if (path != NULL) {
        rc = read_file(&data, &len, path, err);
        if (rc != 0)
            goto cleanup;
        rc = config__check_yaml(data, len, path, origins, null_keys, err);
        if (rc != 0)
            goto cleanup;
        rc = load_cyaml(&config, data, len, path, err);
    } else {
        config = calloc(1, sizeof *config);
        rc = config ? 0 : ZNP_E_INTERNAL;
    }
    if (rc != 0)
        goto cleanup;
    config->origins = origins;
    origins = NULL;
    if (path != NULL) {
        config->source_path = strdup(path);
        if (config->source_path == NULL) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
    }

    /* fill in the rest */
    rc = apply_defaults(config, null_keys, err);
    if (rc != 0)
        goto cleanup;
    rc = apply_environment(config, err);
    if (rc != 0)
        goto cleanup;

    *out = config;
    config = NULL;

cleanup:
    znp_config_destroy(config);
    free(origins);
    free(data);
    return rc;
}

int znp_config_load(znp_config_t **out, const char *path, znp_config_error_t *err)
{
    znp_config_t *config = NULL;
    int rc;

    *out = NULL;
    rc = znp_config_parse(&config, path, err);
    if (rc != 0)
        return rc;
    rc = znp_config_validate(config, err);
    if (rc != 0) {
        znp_config_destroy(config);
        return rc;
    }
    *out = config;
    return 0;
}

void znp_config_destroy(znp_config_t *config)
{
    size_t count;
    const config__key_t *keys;

    if (config == NULL)
        return;
    keys = config__keys(&count);
    for (size_t i = 0; i < count; i++) {
        if (keys[i].value->type == CYAML_STRING)
            znp_config_set_string(config__member(config, &keys[i]), NULL);
    }
    free(config->source_path);
    free(config->origins);
    free(config);
}
