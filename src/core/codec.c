#include "codec.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "codec_internal.h"

/* loading */

/*
 * Find the first byte where arrays and objects nest deeper than
 * ZNP_CODEC_MAX_DEPTH, before jansson builds (and recurses over) the tree.
 * Returns the offset, or `len` when the depth is within the limit.
 */
static size_t depth_violation(const char *data, size_t len)
{
    size_t depth = 0;
    int in_string = 0, escaped = 0;

    for (size_t i = 0; i < len; i++) {
        char c = data[i];

        if (in_string) {
            if (escaped)
                escaped = 0;
            else if (c == '\\')
                escaped = 1;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > ZNP_CODEC_MAX_DEPTH)
                return i;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return len;
}

int znp_codec_load(json_t **out, const char *data, size_t len, znp_error_t *err)
{
    json_error_t jerr;
    json_t *doc;
    size_t offset;
    const char *reason;

    *out = NULL;
    if (data == NULL)
        len = 0;

    offset = codec__utf8_invalid_offset((const unsigned char *)data, len);
    if (offset != len)
        return znp_error_set(err, ZNP_E_INVALID_UTF8, "$", "invalid UTF-8 sequence at byte offset %zu", offset);

    offset = depth_violation(data, len);
    if (offset != len)
        return znp_error_set(err, ZNP_E_INVALID_JSON, "$", "nesting deeper than %d levels at byte offset %zu",
                             ZNP_CODEC_MAX_DEPTH, offset);

    /* without JSON_ALLOW_NUL jansson rejects \u0000 in strings */
    doc = json_loadb(data != NULL ? data : "", len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (doc == NULL) {
        reason = jerr.text;
        if (strstr(jerr.text, "\\u0000") != NULL)
            reason = "\\u0000 is not allowed in strings";
        return znp_error_set(err, ZNP_E_INVALID_JSON, "$", "%s at byte offset %d", reason, jerr.position);
    }
    *out = doc;
    return 0;
}

/* JSON decoding */

static int parse_array(const rules_t *r, json_t *in, znp_array_t *dst, znp_arena_t *arena, const char *path,
                       znp_error_t *err)
{
    size_t count = json_array_size(in);
    char item_path[ZNP_ERROR_PATH_MAX];
    rules_t item_rules;
    int rc;

    rc = codec__check_item_count(r, count, path, err);
    if (rc != 0)
        return rc;
    if (r->items == NULL)
        return znp_error_set(err, ZNP_E_INTERNAL, path, "array field has no item descriptor");
    codec__rules_of_item(&item_rules, r->items);

    dst->count = 0;
    dst->items = NULL;
    if (count == 0)
        return 0;
    dst->items = znp_arena_alloc(arena, count * r->items->size);
    if (dst->items == NULL)
        return codec__no_memory(err, path);

    for (size_t i = 0; i < count; i++) {
        json_t *element = json_array_get(in, i);
        void *slot = (char *)dst->items + i * r->items->size;

        codec__path_index(item_path, sizeof(item_path), path, i);
        if (json_is_null(element)) {
            /* a null item can only be represented by a NULL pointer */
            if ((item_rules.flags & ZNP_F_NULLABLE) &&
                (item_rules.type == ZNP_FT_STRING || item_rules.type == ZNP_FT_JSON))
                continue;
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, item_path, "must not be null");
        }
        rc = codec__parse_value(&item_rules, element, slot, arena, item_path, err);
        if (rc != 0)
            return rc;
    }
    dst->count = count;
    return 0;
}

int codec__parse_value(const rules_t *r, json_t *in, void *dst, znp_arena_t *arena, const char *path, znp_error_t *err)
{
    int rc;

    switch (r->type) {
    case ZNP_FT_STRING: {
        const char *s;
        size_t len;
        char *copy;

        if (!json_is_string(in))
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be a string");
        s = json_string_value(in);
        len = json_string_length(in);
        if (memchr(s, '\0', len) != NULL)
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must not contain NUL characters");
        rc = codec__check_string(r, s, len, path, err);
        if (rc != 0)
            return rc;
        copy = znp_arena_strndup(arena, s, len);
        if (copy == NULL)
            return codec__no_memory(err, path);
        *(char **)dst = copy;
        return 0;
    }
    case ZNP_FT_INT64: {
        /* jansson stores JSON integers as json_int_t (long long) and rejects those outside its range */
        json_int_t v;

        if (!json_is_integer(in))
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be an integer");
        v = json_integer_value(in);
        rc = codec__check_int(r, (int64_t)v, path, err);
        if (rc != 0)
            return rc;
        *(int64_t *)dst = (int64_t)v;
        return 0;
    }
    case ZNP_FT_BOOL:
        if (!json_is_boolean(in))
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be a boolean");
        *(bool *)dst = json_is_true(in);
        return 0;
    case ZNP_FT_NUMBER: {
        double v;

        if (!json_is_number(in))
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be a number");
        v = json_number_value(in);
        rc = codec__check_number(r, v, path, err);
        if (rc != 0)
            return rc;
        *(double *)dst = v;
        return 0;
    }
    case ZNP_FT_OBJECT:
        if (r->schema == NULL)
            return znp_error_set(err, ZNP_E_INTERNAL, path, "object field has no schema");
        return znp_codec_parse(r->schema, in, dst, arena, path, err);
    case ZNP_FT_ARRAY:
        if (!json_is_array(in))
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be an array");
        return parse_array(r, in, dst, arena, path, err);
    case ZNP_FT_JSON:
        *(json_t **)dst = in;
        return 0;
    }
    return znp_error_set(err, ZNP_E_INTERNAL, path, "unknown field type %d", (int)r->type);
}

int codec__apply_default(const znp_field_t *f, void *base, znp_arena_t *arena, const char *path, znp_error_t *err)
{
    void *dst = value_at(base, f);

    if (!(f->flags & ZNP_F_HAS_DEFAULT))
        return 0;
    switch (f->type) {
    case ZNP_FT_STRING:
        if (f->default_string != NULL) {
            char *copy = znp_arena_strdup(arena, f->default_string);
            if (copy == NULL)
                return codec__no_memory(err, path);
            *(char **)dst = copy;
        }
        break;
    case ZNP_FT_INT64:
        *(int64_t *)dst = f->default_int;
        break;
    case ZNP_FT_BOOL:
        *(bool *)dst = f->default_bool != 0;
        break;
    case ZNP_FT_NUMBER:
        *(double *)dst = (double)f->default_int;
        break;
    case ZNP_FT_OBJECT:
    case ZNP_FT_ARRAY:
    case ZNP_FT_JSON:
        break;
    }
    return 0;
}

/* Decode one field of an object from `value` (NULL when the key is absent). */
static int parse_field(const znp_field_t *f, json_t *value, void *base, znp_arena_t *arena, const char *path,
                       znp_error_t *err)
{
    rules_t r;
    int rc;

    if (value == NULL) {
        if (f->flags & ZNP_F_REQUIRED)
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "is required");
        return codec__apply_default(f, base, arena, path, err);
    }
    if (json_is_null(value)) {
        if (!(f->flags & ZNP_F_NULLABLE))
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must not be null");
        *presence_at(base, f) = ZNP_NULL;
        return 0;
    }
    codec__rules_of_field(&r, f);
    rc = codec__parse_value(&r, value, value_at(base, f), arena, path, err);
    if (rc != 0)
        return rc;
    *presence_at(base, f) = ZNP_SET;
    return 0;
}

int znp_codec_parse(const znp_schema_t *schema, json_t *in, void *out, znp_arena_t *arena, const char *path,
                    znp_error_t *err)
{
    char field_path[ZNP_ERROR_PATH_MAX];

    if (path == NULL)
        path = "$";
    if (!json_is_object(in))
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be an object");

    for (size_t i = 0; i < schema->field_count; i++) {
        const znp_field_t *f = &schema->fields[i];
        int rc;

        /* path and query fields come from znp_codec_parse_request, and read-only fields are output only */
        if (f->in != ZNP_IN_BODY || (f->flags & ZNP_F_READ_ONLY))
            continue;
        codec__path_join(field_path, sizeof(field_path), path, f->name);
        rc = parse_field(f, json_object_get(in, f->name), out, arena, field_path, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* encoding */

static int emit_value(const rules_t *r, const void *src, json_t **out, const char *path, znp_error_t *err);
static int emit_object(const znp_schema_t *schema, const void *in, json_t **out, const char *path, znp_error_t *err);

static json_t *emit_string(const rules_t *r, const char *s)
{
    if (s == NULL)
        return (r->flags & ZNP_F_NULLABLE) ? json_null() : json_string("");
    return json_string(s);
}

static int emit_array(const rules_t *r, const znp_array_t *array, json_t **out, const char *path, znp_error_t *err)
{
    json_t *list = json_array();
    char item_path[ZNP_ERROR_PATH_MAX];
    rules_t item_rules;
    int rc = 0;

    *out = NULL;
    if (list == NULL)
        return znp_error_set(err, ZNP_E_INTERNAL, path, "out of memory");
    if (array->count > 0 && (r->items == NULL || array->items == NULL)) {
        rc = znp_error_set(err, ZNP_E_INTERNAL, path, "array has items but no item storage or descriptor");
        goto cleanup;
    }
    if (r->items != NULL)
        codec__rules_of_item(&item_rules, r->items);
    for (size_t i = 0; i < array->count; i++) {
        json_t *element = NULL;

        codec__path_index(item_path, sizeof(item_path), path, i);
        rc = emit_value(&item_rules, (const char *)array->items + i * r->items->size, &element, item_path, err);
        if (rc != 0)
            goto cleanup;
        if (json_array_append_new(list, element) != 0) {
            rc = znp_error_set(err, ZNP_E_INTERNAL, item_path, "out of memory");
            goto cleanup;
        }
    }
    *out = list;
    list = NULL;

cleanup:
    json_decref(list);
    return rc;
}

/* Encode the value at `src` (C storage for `r->type`) into a new reference *out. */
static int emit_value(const rules_t *r, const void *src, json_t **out, const char *path, znp_error_t *err)
{
    json_t *value = NULL;

    *out = NULL;
    switch (r->type) {
    case ZNP_FT_STRING:
        value = emit_string(r, *(char *const *)src);
        if (value == NULL)
            return znp_error_set(err, ZNP_E_INTERNAL, path, "response string is not valid UTF-8");
        break;
    case ZNP_FT_INT64:
        value = json_integer((json_int_t) * (const int64_t *)src);
        break;
    case ZNP_FT_BOOL:
        value = json_boolean(*(const bool *)src);
        break;
    case ZNP_FT_NUMBER:
        value = json_real(*(const double *)src);
        if (value == NULL)
            return znp_error_set(err, ZNP_E_INTERNAL, path, "response number is not finite");
        break;
    case ZNP_FT_OBJECT:
        if (r->schema == NULL)
            return znp_error_set(err, ZNP_E_INTERNAL, path, "object field has no schema");
        return emit_object(r->schema, src, out, path, err);
    case ZNP_FT_ARRAY:
        return emit_array(r, src, out, path, err);
    case ZNP_FT_JSON: {
        json_t *v = *(json_t *const *)src;
        value = v != NULL ? json_incref(v) : json_null();
        break;
    }
    }
    if (value == NULL)
        return znp_error_set(err, ZNP_E_INTERNAL, path, "out of memory");
    *out = value;
    return 0;
}

static int emit_object(const znp_schema_t *schema, const void *in, json_t **out, const char *path, znp_error_t *err)
{
    json_t *object = json_object();
    char field_path[ZNP_ERROR_PATH_MAX];
    int rc = 0;

    *out = NULL;
    if (object == NULL)
        return znp_error_set(err, ZNP_E_INTERNAL, path, "out of memory");

    for (size_t i = 0; i < schema->field_count; i++) {
        const znp_field_t *f = &schema->fields[i];
        znp_presence_t presence = *presence_at((void *)in, f);
        json_t *value = NULL;
        rules_t r;

        if (f->flags & ZNP_F_WRITE_ONLY)
            continue;
        codec__path_join(field_path, sizeof(field_path), path, f->name);
        if (presence == ZNP_NULL && (f->flags & ZNP_F_NULLABLE)) {
            value = json_null();
        } else if (presence != ZNP_SET && !(f->flags & ZNP_F_REQUIRED)) {
            continue; /* absent, or null on a field that cannot be null */
        } else {
            codec__rules_of_field(&r, f);
            rc = emit_value(&r, (const char *)in + f->offset, &value, field_path, err);
            if (rc != 0)
                goto cleanup;
        }
        if (value == NULL || json_object_set_new(object, f->name, value) != 0) {
            rc = znp_error_set(err, ZNP_E_INTERNAL, field_path, "out of memory");
            goto cleanup;
        }
    }
    *out = object;
    object = NULL;

cleanup:
    json_decref(object);
    return rc;
}

int znp_codec_emit(const znp_schema_t *schema, const void *in, json_t **out, znp_error_t *err)
{
    return emit_object(schema, in, out, "$", err);
}
