/*
 * Request parameters: path parameters (already percent-decoded by the
 * router) and the application/x-www-form-urlencoded query string, converted
 * from text with the same constraints as JSON fields.
 */
#include "codec.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec_internal.h"

typedef struct query_pair {
    const char *name;
    const char *value;
} query_pair_t;

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(int c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Percent-decode `len` bytes of form-encoded text ('+' is a space) into
 * arena memory at *out. Returns 0, or a negative error with *out NULL and
 * *problem naming the fault (a bad escape, a NUL byte, invalid UTF-8).
 */
static int form_decode(char **out, const char *s, size_t len, znp_arena_t *arena, const char **problem)
{
    char *dst = znp_arena_alloc(arena, len + 1);
    size_t n = 0;

    *out = NULL;
    *problem = NULL;
    if (dst == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi, lo;
            if (len - i < 3 || (hi = hex_value((unsigned char)s[i + 1])) < 0 ||
                (lo = hex_value((unsigned char)s[i + 2])) < 0) {
                *problem = "contains an invalid percent-encoding";
                return ZNP_E_VALIDATION_FAILED;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        }
        if (c == '\0') {
            *problem = "must not contain NUL characters";
            return ZNP_E_VALIDATION_FAILED;
        }
        dst[n++] = c;
    }
    dst[n] = '\0';
    if (!znp_utf8_valid(dst, n)) {
        *problem = "must be valid UTF-8";
        return ZNP_E_VALIDATION_FAILED;
    }
    *out = dst;
    return 0;
}

static int split_query(query_pair_t **out, size_t *count, const char *query, size_t query_len, znp_arena_t *arena,
                       znp_error_t *err)
{
    size_t capacity = 1, n = 0;
    query_pair_t *pairs;

    *out = NULL;
    *count = 0;
    if (query == NULL || query_len == 0)
        return 0;
    for (size_t i = 0; i < query_len; i++) {
        if (query[i] == '&')
            capacity++;
    }
    pairs = znp_arena_alloc(arena, capacity * sizeof(*pairs));
    if (pairs == NULL)
        return codec__no_memory(err, "");

    for (size_t start = 0; start <= query_len;) {
        const char *piece = query + start;
        const char *amp = memchr(piece, '&', query_len - start);
        size_t piece_len = amp != NULL ? (size_t)(amp - piece) : query_len - start;
        const char *eq = memchr(piece, '=', piece_len);
        size_t name_len = eq != NULL ? (size_t)(eq - piece) : piece_len;
        const char *problem;
        char *name, *value;
        int rc;

        start += piece_len + 1;
        if (piece_len == 0)
            continue;
        rc = form_decode(&name, piece, name_len, arena, &problem);
        if (rc == ZNP_E_INTERNAL)
            return codec__no_memory(err, "");
        if (rc != 0)
            return znp_error_set(err, rc, "", "query parameter name %s", problem);
        if (eq != NULL)
            rc = form_decode(&value, eq + 1, piece_len - name_len - 1, arena, &problem);
        else
            rc = form_decode(&value, "", 0, arena, &problem);
        if (rc == ZNP_E_INTERNAL)
            return codec__no_memory(err, name);
        if (rc != 0)
            return znp_error_set(err, rc, name, "%s", problem);
        pairs[n].name = name;
        pairs[n].value = value;
        n++;
    }
    *out = pairs;
    *count = n;
    return 0;
}

/* strictly -?[0-9]+ within int64 */
static int text_to_int(const char *s, int64_t *out)
{
    const char *p = s;
    uint64_t limit = INT64_MAX, v = 0;
    int negative = 0;

    if (*p == '-') {
        negative = 1;
        limit = (uint64_t)INT64_MAX + 1;
        p++;
    }
    if (*p == '\0')
        return -1;
    for (; *p != '\0'; p++) {
        unsigned digit;
        if (!is_digit(*p))
            return -1;
        digit = (unsigned)(*p - '0');
        if (v > (limit - digit) / 10)
            return -1;
        v = v * 10 + digit;
    }
    if (negative)
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    else
        *out = (int64_t)v;
    return 0;
}

/* JSON number syntax: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int text_to_number(const char *s, double *out)
{
    const char *p = s;
    char *end;

    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (is_digit(*p))
        while (is_digit(*p))
            p++;
    else
        return -1;
    if (*p == '.') {
        p++;
        if (!is_digit(*p))
            return -1;
        while (is_digit(*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!is_digit(*p))
            return -1;
        while (is_digit(*p))
            p++;
    }
    if (*p != '\0')
        return -1;
    /* NOTE: strtod follows LC_NUMERIC, so this expects the C locale (nothing in src/ calls setlocale) */
    errno = 0;
    *out = strtod(s, &end);
    if (errno == ERANGE && isinf(*out))
        return -1;
    return 0;
}

/* Decode a scalar from parameter text into `dst`. */
static int parse_text(const rules_t *r, const char *text, void *dst, znp_arena_t *arena, const char *path,
                      znp_error_t *err)
{
    int rc;

    switch (r->type) {
    case ZNP_FT_STRING: {
        char *copy;
        rc = codec__check_string(r, text, strlen(text), path, err);
        if (rc != 0)
            return rc;
        copy = znp_arena_strdup(arena, text);
        if (copy == NULL)
            return codec__no_memory(err, path);
        *(char **)dst = copy;
        return 0;
    }
    case ZNP_FT_INT64: {
        int64_t v;
        if (text_to_int(text, &v) != 0) {
            if ((r->flags & ZNP_F_HAS_MIN) && (r->flags & ZNP_F_HAS_MAX))
                return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be an integer between %lld and %lld",
                                     (long long)r->min, (long long)r->max);
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be an integer");
        }
        rc = codec__check_int(r, v, path, err);
        if (rc != 0)
            return rc;
        *(int64_t *)dst = v;
        return 0;
    }
    case ZNP_FT_BOOL:
        if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0)
            *(bool *)dst = true;
        else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0)
            *(bool *)dst = false;
        else
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be a boolean (true, false, 1 or 0)");
        return 0;
    case ZNP_FT_NUMBER: {
        double v;
        if (text_to_number(text, &v) != 0)
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be a number");
        rc = codec__check_number(r, v, path, err);
        if (rc != 0)
            return rc;
        *(double *)dst = v;
        return 0;
    }
    case ZNP_FT_OBJECT:
    case ZNP_FT_ARRAY:
    case ZNP_FT_JSON:
        break;
    }
    return znp_error_set(err, ZNP_E_INTERNAL, path, "parameter type %d cannot be read from text", (int)r->type);
}

static int parse_query_field(const znp_field_t *f, const query_pair_t *pairs, size_t pair_count, void *base,
                             znp_arena_t *arena, znp_error_t *err)
{
    const query_pair_t *first = NULL;
    size_t matches = 0;
    rules_t r;
    int rc;

    for (size_t i = 0; i < pair_count; i++) {
        if (strcmp(pairs[i].name, f->name) == 0) {
            if (first == NULL)
                first = &pairs[i];
            matches++;
        }
    }
    if (matches == 0) {
        if (f->flags & ZNP_F_REQUIRED)
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, f->name, "is required");
        return codec__apply_default(f, base, arena, f->name, err);
    }
    codec__rules_of_field(&r, f);

    if (f->type == ZNP_FT_ARRAY) {
        /* form style with explode: ?tag=a&tag=b */
        znp_array_t *array = value_at(base, f);
        rules_t item_rules;
        size_t n = 0;
        char item_path[ZNP_ERROR_PATH_MAX];

        rc = codec__check_item_count(&r, matches, f->name, err);
        if (rc != 0)
            return rc;
        if (f->items == NULL)
            return znp_error_set(err, ZNP_E_INTERNAL, f->name, "array field has no item descriptor");
        codec__rules_of_item(&item_rules, f->items);
        array->items = znp_arena_alloc(arena, matches * f->items->size);
        if (array->items == NULL)
            return codec__no_memory(err, f->name);
        for (size_t i = 0; i < pair_count; i++) {
            if (strcmp(pairs[i].name, f->name) != 0)
                continue;
            codec__path_index(item_path, sizeof(item_path), f->name, n);
            rc = parse_text(&item_rules, pairs[i].value, (char *)array->items + n * f->items->size, arena, item_path,
                            err);
            if (rc != 0)
                return rc;
            n++;
        }
        array->count = n;
        *presence_at(base, f) = ZNP_SET;
        return 0;
    }

    if (matches > 1)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, f->name, "must be given at most once");
    rc = parse_text(&r, first->value, value_at(base, f), arena, f->name, err);
    if (rc != 0)
        return rc;
    *presence_at(base, f) = ZNP_SET;
    return 0;
}

static int parse_path_field(const znp_field_t *f, const znp_param_t *params, size_t param_count, void *base,
                            znp_arena_t *arena, znp_error_t *err)
{
    rules_t r;
    int rc;

    for (size_t i = 0; i < param_count; i++) {
        if (strcmp(params[i].name, f->name) != 0)
            continue;
        if (!znp_utf8_valid(params[i].value, strlen(params[i].value)))
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, f->name, "must be valid UTF-8");
        codec__rules_of_field(&r, f);
        rc = parse_text(&r, params[i].value, value_at(base, f), arena, f->name, err);
        if (rc != 0)
            return rc;
        *presence_at(base, f) = ZNP_SET;
        return 0;
    }
    return znp_error_set(err, ZNP_E_VALIDATION_FAILED, f->name, "is required");
}

static int parse_body_field(const znp_field_t *f, json_t *body, void *base, znp_arena_t *arena, znp_error_t *err)
{
    rules_t r;
    int rc;

    if (body == NULL) {
        if (f->flags & ZNP_F_REQUIRED)
            return znp_error_set(err, ZNP_E_BODY_REQUIRED, "$", NULL);
        return 0;
    }
    if (json_is_null(body)) {
        if (!(f->flags & ZNP_F_NULLABLE))
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, "$", "must be an object");
        *presence_at(base, f) = ZNP_NULL;
        return 0;
    }
    codec__rules_of_field(&r, f);
    if (f->type == ZNP_FT_OBJECT && !json_is_object(body))
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, "$", "must be an object");
    rc = codec__parse_value(&r, body, value_at(base, f), arena, "$", err);
    if (rc != 0)
        return rc;
    *presence_at(base, f) = ZNP_SET;
    return 0;
}

int znp_codec_parse_request(const znp_schema_t *schema, const znp_param_t *path_params, size_t path_param_count,
                            const char *query, size_t query_len, json_t *body, void *out, znp_arena_t *arena,
                            znp_error_t *err)
{
    query_pair_t *pairs = NULL;
    size_t pair_count = 0;
    int rc;

    rc = split_query(&pairs, &pair_count, query, query_len, arena, err);
    if (rc != 0)
        return rc;

    for (size_t i = 0; i < schema->field_count; i++) {
        const znp_field_t *f = &schema->fields[i];

        switch (f->in) {
        case ZNP_IN_PATH:
            rc = parse_path_field(f, path_params, path_param_count, out, arena, err);
            break;
        case ZNP_IN_QUERY:
            rc = parse_query_field(f, pairs, pair_count, out, arena, err);
            break;
        case ZNP_IN_BODY:
            rc = parse_body_field(f, body, out, arena, err);
            break;
        default:
            rc = znp_error_set(err, ZNP_E_INTERNAL, f->name, "unknown parameter location %d", (int)f->in);
            break;
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}
