/*
 * The transport-neutral call path shared by HTTP and gRPC: authenticate,
 * decode the request through the generated schema, run the operation, encode
 * the response. The generated operation table (generated/routes.gen.c) lists
 * one znp_operation_t per operationId.
 */
#ifndef ZNP_CORE_DISPATCH_H
#define ZNP_CORE_DISPATCH_H

#include <jansson.h>
#include <stddef.h>

#include "codec.h"
#include "context.h"
#include "ratelimit.h"
#include "schema.h"

typedef enum znp_security {
    ZNP_SEC_PUBLIC = 0,
    ZNP_SEC_USER,  /* any active signed-in user */
    ZNP_SEC_ADMIN, /* signed-in user with the admin role */
} znp_security_t;

enum {
    ZNP_OP_INLINE = 1u << 0, /* runs on the event-loop thread, ctx->db is NULL */
    ZNP_OP_STREAM = 1u << 1, /* may write a non-JSON body through ctx->stream (core/stream.h) */
};

typedef struct znp_operation {
    const char *id;  /* operationId, e.g. "get_site_settings" */
    const char *tag; /* module */
    znp_security_t security;
    unsigned flags;
    int success_status; /* 200, 201 or 204 */
    /*
     * x-znp-cache-seconds: the encoded response of this public inline GET is
     * reused while the wall-clock window of this many seconds and
     * znp_dispatch_cache_epoch() stay the same. 0 means never cached.
     */
    unsigned cache_seconds;
    const znp_schema_t *request;  /* request struct: path, query and body fields */
    const znp_schema_t *response; /* NULL for 204 */
    /* generated thunk: casts and calls znp_op_<id>(ctx, req, resp) */
    int (*invoke)(znp_ctx_t *ctx, const void *request, void *response);
    const znp_rate_limit_t *rate_limit; /* x-rate-limit of the spec, NULL when it has none */
} znp_operation_t;

extern const znp_operation_t znp_operations[];
extern const size_t znp_operation_count;

/* Operation with operationId `id`, or NULL. Borrowed, static. */
const znp_operation_t *znp_operation_find(const char *id);

/* transport-neutral input of one call */
typedef struct znp_call {
    const znp_param_t *path_params;
    size_t path_param_count;
    const char *query; /* raw query string without '?', may be NULL */
    size_t query_len;
    const char *body; /* raw body bytes, may be NULL */
    size_t body_len;
    const char *authorization; /* Authorization header value (NUL-terminated) or NULL */
} znp_call_t;

/*
 * Authenticate the caller for `op->security` (fills ctx->caller). Implemented
 * by the auth module; it may read the users table through ctx->db.
 */
int znp_auth_authenticate(znp_ctx_t *ctx, znp_security_t security, const char *authorization);

/*
 * Make every cached inline response stale. Called by each write that changes
 * what such a response contains (e.g. the site-settings copy ping reads).
 * Thread-safe.
 */
void znp_dispatch_cache_invalidate(void);
/* The current cache generation; a response cached under another one is stale. Thread-safe. */
unsigned long znp_dispatch_cache_epoch(void);

/*
 * Run `op` for `call`. On success *out is the encoded response (new
 * reference, NULL for 204 and for a body the operation wrote through
 * ctx->stream) and the return value is 0. On failure returns a
 * negative znp_err_t with detail in ctx->err; the transport builds the error
 * envelope with znp_dispatch_error_body().
 */
int znp_dispatch(znp_ctx_t *ctx, const znp_operation_t *op, const znp_call_t *call, json_t **out);

/*
 * Build the error envelope
 * {"code", "error", "message", "details", "request_id"} for `err`
 * (new reference). `detail` may be NULL.
 */
json_t *znp_dispatch_error_body(int err, const znp_error_t *detail, znp_locale_t locale, const char *request_id);

#endif
