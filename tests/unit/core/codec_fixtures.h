/*
 * Hand-written descriptor tables for the codec tests, shaped like the ones
 * the generator writes: one struct per schema with a `has` member holding a
 * znp_presence_t per field.
 */
#ifndef ZNP_TEST_CODEC_FIXTURES_H
#define ZNP_TEST_CODEC_FIXTURES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/codec.h"
#include "core/schema.h"

typedef struct fx_address {
    char *city;
    int64_t zip;
    struct {
        znp_presence_t city, zip;
    } has;
} fx_address_t;

typedef struct fx_line {
    char *name;
    int64_t quantity;
    struct {
        znp_presence_t name, quantity;
    } has;
} fx_line_t;

/* one field for each kind of constraint the codec checks */
typedef struct fx_sample {
    char *name;      /* required, 1..8 code points */
    char *nick;      /* optional, nullable, at most 4 code points */
    char *color;     /* enum red / green / blue */
    char *code;      /* pattern ^[A-Z]{3}$ */
    char *email;     /* format email */
    char *site;      /* format uri */
    char *uuid;      /* format uuid */
    char *at;        /* format date-time */
    char *host;      /* format hostname */
    int64_t count;   /* 1..100 */
    int64_t big;     /* full int64 */
    int64_t floor;   /* at least -5 */
    int64_t ceiling; /* at most 5 */
    bool flag;
    double ratio;       /* 0..1 */
    double any_number;  /* no range */
    znp_array_t tags;   /* strings of at most 5 code points, 1..3 items */
    znp_array_t lines;  /* fx_line_t, at most 2 items */
    znp_array_t digits; /* int64 0..9, the codec's global item limit */
    znp_array_t colors; /* enum strings */
    fx_address_t address;
    json_t *extra;   /* free-form JSON */
    char *secret;    /* write-only */
    int64_t created; /* read-only */
    int64_t limit;   /* default 20 */
    char *mode;      /* default "fast" */
    bool enabled;    /* default true */
    int64_t maybe;   /* optional, nullable integer */
    struct {
        znp_presence_t name, nick, color, code, email, site, uuid, at, host, count, big, floor, ceiling, flag, ratio,
            any_number, tags, lines, digits, colors, address, extra, secret, created, limit, mode, enabled, maybe;
    } has;
} fx_sample_t;

/* a request: path and query parameters and a body */
typedef struct fx_body {
    char *title;
    struct {
        znp_presence_t title;
    } has;
} fx_body_t;

typedef struct fx_request {
    int64_t id;       /* path */
    char *slug;       /* path, pattern ^[a-z-]+$ */
    char *q;          /* query, at most 10 code points */
    int64_t page;     /* query, 1..1000, default 1 */
    int64_t per_page; /* query, 1..100, default 20 */
    bool active;      /* query */
    double min_score; /* query, 0..10 */
    znp_array_t tag;  /* query, repeated: ?tag=a&tag=b, at most 3 */
    char *status;     /* query, enum open / closed */
    int64_t after;    /* query, no range */
    fx_body_t body;   /* body, required */
    struct {
        znp_presence_t id, slug, q, page, per_page, active, min_score, tag, status, after, body;
    } has;
} fx_request_t;

extern const znp_schema_t fx_address_schema;
extern const znp_schema_t fx_line_schema;
extern const znp_schema_t fx_sample_schema;
extern const znp_schema_t fx_body_schema;
extern const znp_schema_t fx_request_schema;
extern const znp_schema_t fx_optional_body_request_schema;

#endif
