/*
 * Responses from memory on the event-loop thread. An operation that runs on
 * the worker pool (a ZNP_OP_STREAM download, for example) may register a
 * warm function. The HTTP transport calls it on the loop thread after the
 * route, the per-IP limits and CORS were checked, and before it would hand
 * the request to the pool. The function either fills a response from memory,
 * with no database and no blocking call, or declines, and the request then
 * runs as usual. The access log and the request metrics cover both.
 */
#ifndef ZNP_CORE_WARM_H
#define ZNP_CORE_WARM_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "context.h"
#include "dispatch.h"

/*
 * Values that a warm operation's hint function computed ahead for its warm
 * function, such as the hashes of a path parameter. `set` is 0 when the hint
 * did not run or found nothing to compute.
 */
typedef struct znp_warm_hint {
    int set;
    uint64_t values[2];
} znp_warm_hint_t;

typedef struct znp_warm_request {
    const struct znp_config *config;
    const znp_warm_hint_t *hint; /* never NULL */
    const znp_param_t *path_params;
    size_t path_param_count;
    const char *query; /* raw query string without '?', not NUL-terminated; may be NULL */
    size_t query_len;
    /* request headers, NUL-terminated; NULL when absent */
    const char *user_agent;
    const char *accept;
    const char *if_none_match;
    const char *accept_encoding;
    znp_locale_t locale;
    const char *request_id;
} znp_warm_request_t;

/* One extra response header; both strings stay valid until release. */
typedef struct znp_warm_header {
    const char *name; /* lowercase */
    size_t name_len;
    const char *value;
    size_t value_len;
} znp_warm_header_t;

typedef struct znp_warm_response {
    int status;                       /* 200 or 304 */
    const char *content_type;         /* valid until release */
    const znp_warm_header_t *headers; /* extra response headers, valid until release */
    size_t header_count;
    const char *body; /* valid until release; not sent with 304 */
    size_t len;
    int retry_after;            /* seconds, with ZNP_E_TOO_MANY_REQUESTS */
    void (*release)(void *ref); /* called once when the response no longer needs the bytes; may be NULL */
    void *ref;
} znp_warm_response_t;

/*
 * Returns 1 when *response is filled, 0 to decline (the request then runs on
 * the pool), or a negative znp_err to send that error (response->retry_after
 * may be set). On 0 and on an error, nothing needs releasing.
 */
typedef int (*znp_warm_fn)(const znp_warm_request_t *request, znp_warm_response_t *response);

/*
 * A hint function runs on the loop thread as soon as the route is known,
 * before the transport's own checks, with the path parameters only. It may
 * start loading memory that the warm function will read (prefetch), so the
 * loads overlap the checks, and keep what it computed in *hint. It must not
 * block, write shared state or fail.
 */
typedef void (*znp_warm_hint_fn)(const znp_param_t *path_params, size_t path_param_count, znp_warm_hint_t *hint);

/*
 * Register `fn`, and `hint` (may be NULL), for the operation with
 * operationId `operation_id`. Call before any server thread starts. Returns
 * 0, ZNP_E_NOT_FOUND for an unknown operation, or ZNP_E_INTERNAL when the
 * table is full.
 */
int znp_warm_register(const char *operation_id, znp_warm_fn fn, znp_warm_hint_fn hint);

/* The warm function of `op`, or NULL. Safe from any thread once the servers run. */
znp_warm_fn znp_warm_find(const znp_operation_t *op);

/* The hint function of `op`, or NULL. Safe from any thread once the servers run. */
znp_warm_hint_fn znp_warm_find_hint(const znp_operation_t *op);

#endif
