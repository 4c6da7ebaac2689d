/*
 * The strict first pass over znp.yaml. libcyaml 1.3.1 reports problems only
 * as a backtrace through its log callback, and it accepts some values
 * loosely ("010" as octal, "1.5" as 1, any word as true). So the document is
 * first walked with libyaml against the same schema, which gives each
 * problem its line, column and a plain message.
 */
#include "config/internal.h"

#include <stdio.h>
#include <string.h>
#include <yaml.h>

typedef struct check {
    yaml_document_t *doc;
    const char *file;
    struct znp_config_origins *origins;
    unsigned char *null_keys;
    znp_config_error_t *err;
} check_t;

static unsigned line_of(const yaml_node_t *node)
{
    return (unsigned)node->start_mark.line + 1;
}

static unsigned column_of(const yaml_node_t *node)
{
    return (unsigned)node->start_mark.column + 1;
}

static const char *scalar_text(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

/* A plain empty, "~" or "null" scalar, as YAML 1.1 reads it. */
static int is_null_scalar(const yaml_node_t *node)
{
    const char *text = scalar_text(node);

    if (node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    return text[0] == '\0' || strcmp(text, "~") == 0 || strcmp(text, "null") == 0 || strcmp(text, "Null") == 0 ||
           strcmp(text, "NULL") == 0;
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[CONFIG_PATH_MAX + 1];

    if (la > CONFIG_PATH_MAX || lb > CONFIG_PATH_MAX)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diagonal = row[0];

        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t above = row[j];
            size_t best = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);

            if (above + 1 < best)
                best = above + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[lb];
}

/* A hint for an unknown key: a close spelling in the same mapping, or the section that has this key. */
static void suggest(char *out, size_t out_size, const char *name, const cyaml_schema_field_t *fields, int top_level)
{
    const cyaml_schema_field_t *best = NULL;
    size_t best_distance = 3;
    const cyaml_schema_field_t *section;

    out[0] = '\0';
    for (const cyaml_schema_field_t *field = fields; field->key != NULL; field++) {
        size_t distance = edit_distance(name, field->key);

        if (distance < best_distance) {
            best = field;
            best_distance = distance;
        }
    }
    if (best != NULL) {
        snprintf(out, out_size, "; did you mean \"%s\"?", best->key);
        return;
    }
    for (section = config__schema.mapping.fields; section->key != NULL; section++) {
        for (const cyaml_schema_field_t *field = section->value.mapping.fields; field->key != NULL; field++) {
            if (strcmp(field->key, name) == 0) {
                snprintf(out, out_size, top_level ? "; it belongs in section \"%s\"" : "; it belongs in \"%s\"",
                         section->key);
                return;
            }
        }
    }
}

static const cyaml_schema_field_t *find_field(const cyaml_schema_field_t *fields, const char *name, size_t *index)
{
    for (size_t i = 0; fields[i].key != NULL; i++) {
        if (strcmp(fields[i].key, name) == 0) {
            *index = i;
            return &fields[i];
        }
    }
    return NULL;
}

static const char *describe_type(const cyaml_schema_value_t *value)
{
    switch (value->type) {
    case CYAML_UINT:
        return "an integer";
    case CYAML_BOOL:
        return "true or false";
    case CYAML_ENUM:
        return "one of debug, info, warn, error";
    default:
        return "a string";
    }
}

static int check_value(check_t *c, const config__key_t *key, yaml_node_t *value)
{
    const char *expected = NULL;
    config__origin_t *origin = &c->origins->items[config__key_index(key)];

    origin->kind = CONFIG_FROM_FILE;
    origin->line = line_of(value);
    origin->column = column_of(value);

    if (value->type != YAML_SCALAR_NODE)
        return config__fail_at(c->err, c->file, line_of(value), column_of(value),
                               "invalid value for %s: expected %s, not a %s", key->path, describe_type(key->value),
                               value->type == YAML_MAPPING_NODE ? "mapping" : "list");
    if (is_null_scalar(value)) {
        if (key->value->type == CYAML_STRING) {
            c->null_keys[config__key_index(key)] = 1;
            return 0;
        }
        return config__fail_at(c->err, c->file, line_of(value), column_of(value),
                               "missing value for %s: expected %s (remove the key to use the default)", key->path,
                               describe_type(key->value));
    }
    if (strlen(scalar_text(value)) != value->data.scalar.length)
        return config__fail_at(c->err, c->file, line_of(value), column_of(value),
                               "invalid value for %s: contains a NUL character", key->path);
    if (config__check_scalar(key, scalar_text(value), &expected) != 0)
        return config__fail_at(c->err, c->file, line_of(value), column_of(value),
                               "invalid value \"%.64s\" for %s: expected %s", scalar_text(value), key->path, expected);
    return 0;
}

/*
 * Walk the pairs of one mapping node. `prefix` is the dotted path of the
 * mapping ("cors.groups"), NULL at the top level, where every value must
 * itself be a mapping of keys. Nested mappings of the schema recurse.
 */
static int check_mapping(check_t *c, yaml_node_t *mapping, const cyaml_schema_field_t *fields, const char *prefix)
{
    unsigned char seen[CONFIG_KEY_MAX] = {0};

    for (yaml_node_pair_t *pair = mapping->data.mapping.pairs.start; pair < mapping->data.mapping.pairs.top; pair++) {
        yaml_node_t *key_node = yaml_document_get_node(c->doc, pair->key);
        yaml_node_t *value = yaml_document_get_node(c->doc, pair->value);
        const cyaml_schema_field_t *field;
        const char *name;
        size_t index = 0;
        char hint[96];
        char path[CONFIG_PATH_MAX];
        int rc;

        if (key_node->type != YAML_SCALAR_NODE)
            return config__fail_at(c->err, c->file, line_of(key_node), column_of(key_node),
                                   "invalid key: expected a name, not a %s",
                                   key_node->type == YAML_MAPPING_NODE ? "mapping" : "list");
        name = scalar_text(key_node);
        field = find_field(fields, name, &index);
        if (field == NULL) {
            suggest(hint, sizeof hint, name, fields, prefix == NULL);
            if (prefix == NULL)
                return config__fail_at(c->err, c->file, line_of(key_node), column_of(key_node),
                                       "unknown section \"%.64s\"%s", name, hint);
            return config__fail_at(c->err, c->file, line_of(key_node), column_of(key_node),
                                   "unknown key \"%.64s\" in \"%s\"%s", name, prefix, hint);
        }
        if (index < CONFIG_KEY_MAX && seen[index])
            return config__fail_at(c->err, c->file, line_of(key_node), column_of(key_node),
                                   "duplicate key \"%s\"%s%s%s", name, prefix ? " in \"" : "", prefix ? prefix : "",
                                   prefix ? "\"" : "");
        if (index < CONFIG_KEY_MAX)
            seen[index] = 1;
        snprintf(path, sizeof path, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", field->key);

        if (field->value.type == CYAML_MAPPING) {
            if (value->type != YAML_MAPPING_NODE && prefix == NULL)
                return config__fail_at(c->err, c->file, line_of(value), column_of(value),
                                       "invalid value for section \"%s\": expected a mapping of keys "
                                       "(write `%s: {}` for an empty section)",
                                       name, name);
            if (value->type != YAML_MAPPING_NODE)
                return config__fail_at(c->err, c->file, line_of(value), column_of(value),
                                       "invalid value for %s: expected a mapping of keys (write `%s: {}` for an "
                                       "empty one)",
                                       path, name);
            rc = check_mapping(c, value, field->value.mapping.fields, path);
        } else {
            const config__key_t *key = config__key_find(path);

            if (key == NULL)
                return config__fail_at(c->err, c->file, line_of(key_node), column_of(key_node),
                                       "internal error: key %s is missing from the key table", path);
            rc = check_value(c, key, value);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

int config__check_yaml(const char *data, size_t len, const char *file, struct znp_config_origins *origins,
                       unsigned char *null_keys, znp_config_error_t *err)
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    int have_doc = 0, have_extra = 0;
    yaml_node_t *root;
    check_t c = {.doc = &doc, .file = file, .origins = origins, .null_keys = null_keys, .err = err};
    int rc = 0;

    if (!yaml_parser_initialize(&parser))
        return config__fail_at(err, file, 0, 0, "out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);

    if (!yaml_parser_load(&parser, &doc)) {
        rc =
            config__fail_at(err, file, (unsigned)parser.problem_mark.line + 1, (unsigned)parser.problem_mark.column + 1,
                            "invalid YAML: %s%s%s", parser.problem ? parser.problem : "syntax error",
                            parser.context ? " " : "", parser.context ? parser.context : "");
        goto cleanup;
    }
    have_doc = 1;

    root = yaml_document_get_root_node(&doc);
    if (root == NULL)
        goto cleanup; /* empty file: defaults only */
    if (root->type == YAML_SCALAR_NODE && is_null_scalar(root))
        goto cleanup;
    if (root->type != YAML_MAPPING_NODE) {
        rc = config__fail_at(err, file, line_of(root), column_of(root),
                             "expected a mapping of sections (server, database, auth, site, log) at the top level");
        goto cleanup;
    }
    rc = check_mapping(&c, root, config__schema.mapping.fields, NULL);
    if (rc != 0)
        goto cleanup;

    if (!yaml_parser_load(&parser, &extra)) {
        rc =
            config__fail_at(err, file, (unsigned)parser.problem_mark.line + 1, (unsigned)parser.problem_mark.column + 1,
                            "invalid YAML: %s", parser.problem ? parser.problem : "syntax error");
        goto cleanup;
    }
    have_extra = 1;
    root = yaml_document_get_root_node(&extra);
    if (root != NULL)
        rc = config__fail_at(err, file, line_of(root), column_of(root), "a second YAML document is not allowed");

cleanup:
    if (have_extra)
        yaml_document_delete(&extra);
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}
