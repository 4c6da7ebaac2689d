/*
 * Shared by the files of src/config: the table of keys derived from the
 * libcyaml schema, the record of where each value came from, and the
 * helpers that parse one scalar.
 */
#ifndef ZNP_CONFIG_INTERNAL_H
#define ZNP_CONFIG_INTERNAL_H

#include <cyaml/cyaml.h>
#include <stdarg.h>

#include "config/config.h"

#define CONFIG_KEY_MAX  256
#define CONFIG_PATH_MAX 64

enum {
    CONFIG_NULLABLE = 1 << 0, /* absent, null or "" means unset (NULL), not the default */
    CONFIG_SECRET = 1 << 1,   /* masked in the summary */
    CONFIG_DSN = 1 << 2,      /* libpq connection string: its password is masked */
    CONFIG_GENERATED = 1 << 3, /* unset: znp serve generates one and keeps it in secrets.yaml */
};

typedef enum config_origin_kind {
    CONFIG_FROM_DEFAULT = 0,
    CONFIG_FROM_FILE,
    CONFIG_FROM_ENV,
    CONFIG_FROM_OVERRIDE, /* command line or secrets file */
} config_origin_kind_t;

typedef struct config__key {
    char path[CONFIG_PATH_MAX];        /* "server.listen" */
    size_t offset;                     /* of the member within znp_config_t */
    const cyaml_schema_value_t *value; /* type, size and enum strings */
    const char *default_value;         /* YAML scalar text; NULL for nullable keys */
    unsigned flags;
} config__key_t;

typedef struct config__origin {
    config_origin_kind_t kind;
    char label[64];        /* environment variable or option name */
    unsigned line, column; /* of the value in the file, 1-based */
} config__origin_t;

struct znp_config_origins {
    config__origin_t items[CONFIG_KEY_MAX];
};

/* the top-level libcyaml schema for znp_config_t */
extern const cyaml_schema_value_t config__schema;

/* Every leaf key of the schema, in schema order. Borrowed, static. */
const config__key_t *config__keys(size_t *count);
/* The key named `path`, or NULL. */
const config__key_t *config__key_find(const char *path);
size_t config__key_index(const config__key_t *key);

/* Pointer to the member of `config` that `key` describes. */
void *config__member(const znp_config_t *config, const config__key_t *key);

/*
 * Parse `text` as the scalar type of `key` and store it in `config`. On a
 * bad value, `expected` gets the description of what is accepted ("an
 * integer") and ZNP_E_VALIDATION_FAILED is returned.
 */
int config__set_scalar(znp_config_t *config, const config__key_t *key, const char *text, const char **expected);
/* Check `text` against the scalar type of `key` without storing it. */
int config__check_scalar(const config__key_t *key, const char *text, const char **expected);

/* Render the member's value as text for the summary (unmasked). */
void config__format_value(char *out, size_t out_size, const znp_config_t *config, const config__key_t *key);

/*
 * Walk the YAML in `data` with libyaml against the schema: unknown keys,
 * duplicate keys, wrong node kinds and bad scalars fail with their position.
 * Records the position of every key found in `origins`, and sets
 * null_keys[i] for keys whose value is null.
 */
int config__check_yaml(const char *data, size_t len, const char *file, struct znp_config_origins *origins,
                       unsigned char *null_keys, znp_config_error_t *err);

/* Fill `err` with a message and the position of `key`'s value when it came from the file. */
int config__fail_key(znp_config_error_t *err, const znp_config_t *config, const config__key_t *key, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));
int config__fail_at(znp_config_error_t *err, const char *file, unsigned line, unsigned column, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

void config__set_origin(znp_config_t *config, const config__key_t *key, config_origin_kind_t kind, const char *label);

#endif
