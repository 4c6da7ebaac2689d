/*
 * Descriptor types for the schema tables that the generator writes into
 * generated/schemas.gen.c. One hand-written codec (codec.c) reads these
 * tables; the generator never emits parsing or encoding algorithms.
 */
#ifndef ZNP_CORE_SCHEMA_H
#define ZNP_CORE_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

/*
 * Presence of an optional field after decoding. Every generated struct has a
 * member `has` with one znp_presence_t per field, so a PATCH handler can tell
 * "absent" from "null" from a value. For encoding, a field whose presence is
 * ZNP_ABSENT is omitted and ZNP_NULL is emitted as JSON null; required fields
 * are always emitted.
 */
typedef enum znp_presence {
    ZNP_ABSENT = 0,
    ZNP_NULL = 1,
    ZNP_SET = 2,
} znp_presence_t;

typedef enum znp_field_type {
    ZNP_FT_STRING,  /* char * (NUL-terminated UTF-8, arena-owned) */
    ZNP_FT_INT64,   /* int64_t; also used for int32 with min/max limits */
    ZNP_FT_BOOL,    /* bool */
    ZNP_FT_NUMBER,  /* double; accepts JSON integers and reals */
    ZNP_FT_OBJECT,  /* nested struct described by `schema`, stored inline */
    ZNP_FT_ARRAY,   /* znp_array_t of `items` */
    ZNP_FT_JSON,    /* json_t * free-form value (borrowed from the request document) */
} znp_field_type_t;

/* string formats checked by the codec */
typedef enum znp_format {
    ZNP_FMT_NONE = 0,
    ZNP_FMT_EMAIL,
    ZNP_FMT_URI,
    ZNP_FMT_DATE_TIME,
    ZNP_FMT_UUID,
    ZNP_FMT_HOSTNAME,
} znp_format_t;

/* where a request field comes from; responses and bodies use ZNP_IN_BODY */
typedef enum znp_location {
    ZNP_IN_BODY = 0,
    ZNP_IN_PATH,
    ZNP_IN_QUERY,
} znp_location_t;

enum {
    ZNP_F_REQUIRED = 1u << 0,
    ZNP_F_NULLABLE = 1u << 1,
    ZNP_F_WRITE_ONLY = 1u << 2, /* accepted on input, never emitted */
    ZNP_F_READ_ONLY = 1u << 3,  /* emitted, ignored on input */
    ZNP_F_HAS_MIN = 1u << 4,
    ZNP_F_HAS_MAX = 1u << 5,
    ZNP_F_HAS_DEFAULT = 1u << 6, /* default_int / default_string / default_bool applies when absent */
    ZNP_F_SECRET = 1u << 7,      /* never logged */
};

/* a decoded JSON array: `items` points to `count` elements of the item's C type */
typedef struct znp_array {
    size_t count;
    void *items;
} znp_array_t;

typedef struct znp_schema znp_schema_t;

/*
 * The item type of an array field. For ZNP_FT_STRING items are char *, for
 * ZNP_FT_INT64 int64_t, for ZNP_FT_OBJECT the struct of `schema`.
 */
typedef struct znp_item {
    znp_field_type_t type;
    const znp_schema_t *schema; /* ZNP_FT_OBJECT only */
    size_t size;                /* sizeof one item */
    /* constraints that apply to each item (strings: length; integers: range) */
    unsigned flags;
    int64_t min, max;
    size_t min_length, max_length;
    const char *const *enum_values; /* NULL-terminated, or NULL */
    znp_format_t format;
} znp_item_t;

typedef struct znp_field {
    const char *name;          /* JSON key or parameter name */
    znp_field_type_t type;
    znp_location_t in;
    unsigned flags;
    size_t offset;             /* offsetof the value in the struct */
    size_t presence_offset;    /* offsetof the znp_presence_t in `has` */

    /* integers: inclusive range; ZNP_F_HAS_MIN / ZNP_F_HAS_MAX say which apply */
    int64_t min, max;
    /* numbers: inclusive range, same flags */
    double min_number, max_number;
    /* strings: length in Unicode code points; max_length 0 means no limit */
    size_t min_length, max_length;
    const char *pattern;       /* POSIX extended regular expression, or NULL */
    znp_format_t format;
    const char *const *enum_values; /* NULL-terminated list of allowed strings, or NULL */

    /* arrays */
    size_t min_items, max_items; /* max_items 0 means the codec's global limit */
    const znp_item_t *items;

    const znp_schema_t *schema; /* ZNP_FT_OBJECT */

    /* default applied when the field is absent (ZNP_F_HAS_DEFAULT) */
    int64_t default_int;
    const char *default_string;
    int default_bool;
} znp_field_t;

struct znp_schema {
    const char *name;          /* schema name as in the spec, e.g. "SiteSetting" */
    size_t size;               /* sizeof the C struct */
    const znp_field_t *fields;
    size_t field_count;
};

#endif
