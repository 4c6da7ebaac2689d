/*
 * Internals shared by the codec's files: codec.c (load, parse, emit),
 * codec_check.c (UTF-8, formats, patterns, value checks) and codec_params.c
 * (path and query parameters). Not for use outside src/core.
 */
#ifndef ZNP_CORE_CODEC_INTERNAL_H
#define ZNP_CORE_CODEC_INTERNAL_H

#include <stdint.h>

#include "codec.h"

/*
 * The constraints of one value, taken from a znp_field_t or a znp_item_t so
 * that fields and array items go through the same checks.
 */
typedef struct rules {
    znp_field_type_t type;
    unsigned flags;
    int64_t min, max;
    double min_number, max_number;
    size_t min_length, max_length;
    const char *pattern;
    znp_format_t format;
    const char *const *enum_values;
    const znp_schema_t *schema;
    size_t min_items, max_items;
    const znp_item_t *items;
} rules_t;

void codec__rules_of_field(rules_t *r, const znp_field_t *f);
void codec__rules_of_item(rules_t *r, const znp_item_t *item);

/* Offset of the first byte that does not start a valid UTF-8 sequence, or `len` when all is valid. */
size_t codec__utf8_invalid_offset(const unsigned char *s, size_t len);
/* Length in code points of valid UTF-8. */
size_t codec__utf8_length(const char *s, size_t len);

/*
 * Check a decoded value against `r`. Each returns 0, or records
 * ZNP_E_VALIDATION_FAILED (ZNP_E_INTERNAL for a broken descriptor) with
 * `path` and an English detail in `err` and returns it. `s` passed to
 * codec__check_string is valid UTF-8 without NUL bytes.
 */
int codec__check_string(const rules_t *r, const char *s, size_t len, const char *path, znp_error_t *err);
int codec__check_int(const rules_t *r, int64_t v, const char *path, znp_error_t *err);
int codec__check_number(const rules_t *r, double v, const char *path, znp_error_t *err);
int codec__check_item_count(const rules_t *r, size_t count, const char *path, znp_error_t *err);

/* "$.a" + "b" -> "$.a.b" and "$.a" + 2 -> "$.a[2]", cut at `size` */
void codec__path_join(char *out, size_t size, const char *base, const char *name);
void codec__path_index(char *out, size_t size, const char *base, size_t index);

/* Record an exhausted request arena (ZNP_E_INTERNAL) and return it. */
int codec__no_memory(znp_error_t *err, const char *path);

/* Decode the non-null JSON value `in` into `dst`, the C storage for `r->type`. */
int codec__parse_value(const rules_t *r, json_t *in, void *dst, znp_arena_t *arena, const char *path, znp_error_t *err);
/* Store the field's default when it has one; the presence stays ZNP_ABSENT. */
int codec__apply_default(const znp_field_t *f, void *base, znp_arena_t *arena, const char *path, znp_error_t *err);

static inline znp_presence_t *presence_at(void *base, const znp_field_t *f)
{
    return (znp_presence_t *)((char *)base + f->presence_offset);
}

static inline void *value_at(void *base, const znp_field_t *f)
{
    return (char *)base + f->offset;
}

#endif
