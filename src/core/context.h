/*
 * The context an operation runs in. Operations under src/<module>/ see only
 * this, their typed request and their typed response: never h2o or gRPC.
 * The same function serves HTTP, gRPC and the tests.
 */
#ifndef ZNP_CORE_CONTEXT_H
#define ZNP_CORE_CONTEXT_H

#include <libpq-fe.h>
#include <stdint.h>
#include <time.h>

#include "arena.h"
#include "error.h"

struct znp_config;
struct znp_operation;
struct znp_call;
struct znp_stream;

#define ZNP_REQUEST_ID_MAX 64
#define ZNP_ROLES_MAX 8

/* the authenticated caller; user_id 0 means anonymous */
typedef struct znp_caller {
    int64_t user_id;
    char email[256];
    size_t role_count;
    char roles[ZNP_ROLES_MAX][32];
    int64_t token_issued_at; /* Unix seconds */
} znp_caller_t;

typedef struct znp_ctx {
    PGconn *db;                        /* borrowed; NULL for inline operations that run on an event loop */
    const struct znp_config *config;   /* borrowed, read-only while serving */
    znp_caller_t caller;
    znp_locale_t locale;
    znp_arena_t *arena;                /* request arena for strings the response points to */
    znp_error_t *err;                  /* where the operation records error detail */
    const char *request_id;
    const char *client_ip;             /* client address after server.trusted_proxies, never NULL ("" when unknown) */
    const char *user_agent;            /* may be NULL */
    int64_t (*now)(void);              /* clock in Unix seconds; tests may substitute it */
    /*
     * Called by znp_dispatch after authentication and before the request is
     * decoded (the HTTP face checks per-user rate limits here); a negative
     * znp_err_t ends the call with that error. NULL when nothing is to check.
     */
    int (*admit)(struct znp_ctx *ctx, const struct znp_operation *op);
    void *admit_data;                  /* for `admit` */
    /*
     * Called by znp_dispatch before authentication. HTTP checks the signed
     * third-party API here, and gRPC rejects calls to signed route groups.
     * It may replace call->body and call->body_len, for example with a
     * decrypted body in ctx->arena. A negative znp_err_t ends the call with
     * that error. NULL when nothing is to check.
     */
    int (*verify)(struct znp_ctx *ctx, const struct znp_operation *op, struct znp_call *call);
    void *verify_data;                 /* for `verify` */
    struct znp_stream *stream;         /* non-JSON body writer for ZNP_OP_STREAM operations over HTTP, else NULL */
} znp_ctx_t;

/* The text of a short result message in the caller's language: `zh` for zh-CN, else `en`. */
static inline const char *znp_ctx_text(const znp_ctx_t *ctx, const char *en, const char *zh)
{
    return ctx->locale == ZNP_LOCALE_ZH_CN ? zh : en;
}

#endif
