/*
 * Route matching over the generated route table. Static segments win over
 * parameters at the same position; a path that matches a route template with
 * another method yields ZNP_E_METHOD_NOT_ALLOWED and the Allow list.
 */
#ifndef ZNP_CORE_ROUTER_H
#define ZNP_CORE_ROUTER_H

#include <stddef.h>

#include "codec.h"
#include "dispatch.h"

typedef enum znp_segment_kind {
    ZNP_SEG_STATIC = 0,
    ZNP_SEG_PARAM,        /* {name} */
    ZNP_SEG_ADMIN_PREFIX, /* {admin}: the configured admin prefix, matched literally */
} znp_segment_kind_t;

typedef struct znp_segment {
    znp_segment_kind_t kind;
    const char *text; /* literal text, or the parameter name */
} znp_segment_t;

typedef struct znp_route {
    const char *method;           /* "GET", "POST", ... */
    const char *path;             /* the spec template, e.g. "/api/v1/{admin}/site-settings" */
    const znp_segment_t *segments;
    size_t segment_count;
    const znp_operation_t *operation;
} znp_route_t;

extern const znp_route_t znp_routes[];
extern const size_t znp_route_count;

#define ZNP_ROUTER_MAX_PARAMS 8

typedef struct znp_route_match {
    const znp_route_t *route;
    size_t param_count;
    znp_param_t params[ZNP_ROUTER_MAX_PARAMS]; /* values are percent-decoded into `buffer` */
    char buffer[1024];
    char allow[128];              /* "GET, PATCH" when the result is ZNP_E_METHOD_NOT_ALLOWED */
} znp_route_match_t;

/*
 * Match `method` and the raw request path against `routes` (normally
 * znp_routes / znp_route_count) (`path`, `path_len`, without the
 * query string, still percent-encoded). Segments are
 * split on '/' before percent-decoding, so "%2F" stays inside one parameter.
 * `admin_prefix` is the configured admin prefix (e.g. "admin").
 * Returns 0, ZNP_E_ROUTE_NOT_FOUND, ZNP_E_METHOD_NOT_ALLOWED, ZNP_E_URI_TOO_LONG
 * when the decoded segments do not fit `buffer`, or ZNP_E_VALIDATION_FAILED
 * for a segment that is not valid percent-encoded UTF-8 or contains %00.
 * HEAD matches GET routes (an explicit HEAD route wins). Among routes whose
 * template matches, the one with a literal at the first position where they
 * differ wins, whatever the table order. The admin prefix counts as a
 * literal and is also reported in `params` under its template name.
 * The values in out->params point into out->buffer, so `out` must not be
 * copied.
 */
int znp_router_match(znp_route_match_t *out, const znp_route_t *routes, size_t route_count, const char *method,
                     const char *path, size_t path_len, const char *admin_prefix);

#define ZNP_ROUTER_MAX_SEGMENTS 32   /* more than any route template has */
#define ZNP_ROUTER_INDEX_MAX    1024 /* routes an index can hold */
#define ZNP_ROUTER_LIST_MAX     4096 /* route positions in all candidate lists of an index */

/* One literal of a group's key segment and the routes that can match a path with it there. */
typedef struct znp_router_key {
    const char *text;
    unsigned short from, count; /* candidates: lists[from .. from + count) */
} znp_router_key_t;

/*
 * The routes with one segment count, and the segment position (`key_at`)
 * whose literals tell them apart best. A lookup finds the path's segment at
 * that position among `keys`, which are sorted by text. The candidates are
 * the routes with that literal there and those with a parameter there, in
 * table order. For a text that no route has there, only the latter remain
 * (`other_from`, `other_count`).
 */
typedef struct znp_router_group {
    unsigned short key_at;
    unsigned short keys_from, key_count; /* keys[keys_from .. keys_from + key_count) */
    unsigned short other_from, other_count;
} znp_router_group_t;

/*
 * A route table grouped by segment count and, within a group, by the
 * literal at its key position, so a lookup compares only the few routes
 * that can match. Candidate lists keep the table order, so the results,
 * including the Allow list of a 405, are the same as znp_router_match's.
 */
typedef struct znp_router_index {
    const znp_route_t *routes;
    size_t route_count;
    znp_router_group_t groups[ZNP_ROUTER_MAX_SEGMENTS + 1]; /* by segment count */
    znp_router_key_t keys[ZNP_ROUTER_INDEX_MAX];
    unsigned short lists[ZNP_ROUTER_LIST_MAX]; /* positions in `routes` */
} znp_router_index_t;

/* Index `routes` (borrowed; must outlive the index). Returns 0, or ZNP_E_INTERNAL for a table over the limits. */
int znp_router_index_init(znp_router_index_t *index, const znp_route_t *routes, size_t route_count);
/* znp_router_match over an index. */
int znp_router_match_indexed(znp_route_match_t *out, const znp_router_index_t *index, const char *method,
                             const char *path, size_t path_len, const char *admin_prefix);

#endif
