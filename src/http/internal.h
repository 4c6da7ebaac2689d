/*
 * Private structures of the HTTP face, shared by server.c (listeners, event
 * loops, shutdown), request.c (the request pipeline) and docs.c (/docs).
 *
 * Threading: everything in znp_http_loop_t except the mailbox belongs to
 * that loop's thread once znp_http_server_start() has run. Workers reach a
 * loop only through its mailbox.
 */
#ifndef ZNP_HTTP_INTERNAL_H
#define ZNP_HTTP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "core/error.h"
#include "core/stream.h"
#include "http/server.h"
#include "protect/protect.h"

#define ZNP_HTTP_MAX_LISTENERS 2 /* server.listen and server.tls_listen */

/*
 * The reply path from workers to one event loop. Jobs hold a reference, so
 * it outlives the loop: once the loop closes it (open = 0), a worker that
 * finishes late frees its job instead of sending it to a queue that no longer
 * exists.
 */
typedef struct znp_http_mailbox {
    pthread_mutex_t lock;
    int open;                             /* guarded by lock */
    h2o_multithread_receiver_t *receiver; /* valid while open */
    atomic_int refs;
} znp_http_mailbox_t;

/* what a worker sends to a loop: a finished job, or a piece of a streamed body (stream.c) */
enum {
    ZNP_HTTP_REPLY_JOB = 0,
    ZNP_HTTP_REPLY_PIECE = 1,
};

typedef struct znp_http_reply {
    h2o_multithread_message_t super;
    int kind;
} znp_http_reply_t;

/*
 * The ctx->stream of a ZNP_OP_STREAM operation on a worker (stream.c). The
 * body collects in `data`; once it passes one piece it goes to the loop in
 * pieces and `stream` is set.
 */
typedef struct znp_http_writer {
    znp_stream_t super;
    znp_http_mailbox_t *mailbox;
    void *job; /* the http job, for znp_http__job_take_request on the loop */
    const char *request_id;
    char *content_type, *filename; /* from begin; malloc'd */
    char *headers;                 /* extra response headers as name NUL value NUL ...; malloc'd */
    size_t headers_len;
    char *data;                    /* body not handed over yet; malloc'd */
    size_t len, cap;
    struct znp_http_stream *stream;
} znp_http_writer_t;

/* an encoded inline answer this loop may send again (x-znp-cache-seconds) */
typedef struct znp_http_cached_answer {
    char *body; /* malloc'd, NULL when empty */
    size_t len;
    int64_t window;      /* wall-clock seconds / cache_seconds when it was encoded */
    unsigned long epoch; /* znp_dispatch_cache_epoch() when it was encoded */
} znp_http_cached_answer_t;

typedef struct znp_http_loop {
    znp_http_server_t *server;
    size_t index;
    pthread_t thread;
    int thread_started;

    h2o_evloop_t *evloop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept[ZNP_HTTP_MAX_LISTENERS];
    int fds[ZNP_HTTP_MAX_LISTENERS]; /* owned until the loop wraps them in sockets */
    h2o_socket_t *sockets[ZNP_HTTP_MAX_LISTENERS];

    h2o_multithread_receiver_t control; /* control_message_t from any thread */
    h2o_multithread_receiver_t replies; /* finished jobs from workers */
    znp_http_mailbox_t *mailbox;

    h2o_linklist_t jobs;               /* jobs submitted from this loop whose response is not sent yet */
    znp_http_cached_answer_t *answers; /* one per entry of znp_operations, for x-znp-cache-seconds */
    int listening;
    int draining;
    int exit_requested;
} znp_http_loop_t;

typedef struct znp_http_listener {
    char address[300];            /* as configured, for messages */
    struct sockaddr_storage addr; /* with the port actually bound */
    socklen_t addr_len;
    int tls;
} znp_http_listener_t;

struct znp_http_server {
    const znp_config_t *config;
    znp_pool_t *pool;
    znp_locale_t default_locale;
    size_t max_body_bytes;

    h2o_globalconf_t globalconf;
    int globalconf_ready;
    SSL_CTX *ssl_ctx;
    int docs_available;     /* server.docs_dir contains swagger-ui-dist */
    znp_protect_t *protect; /* client IP, CORS, rate limits, admin allow-list */

    znp_http_listener_t listeners[ZNP_HTTP_MAX_LISTENERS];
    size_t listener_count;
    znp_http_loop_t *loops;
    size_t loop_count;

    pthread_mutex_t lock;
    pthread_cond_t changed; /* loops_ready or loops_not_listening changed */
    size_t loops_ready;
    size_t loops_not_listening;
    int closing; /* the CLOSE command was sent */

    atomic_size_t in_flight; /* requests that reached a handler and have not ended */
    atomic_int draining;
};

/* The loop that owns `req`. */
static inline znp_http_loop_t *znp_http__loop_of(h2o_req_t *req)
{
    return H2O_STRUCT_FROM_MEMBER(znp_http_loop_t, ctx, req->conn->ctx);
}

/* request.c: install the handlers, loggers and filters on the host. */
void znp_http__register_handlers(znp_http_server_t *server, h2o_hostconf_t *host);
/* request.c: receiver callback for finished jobs. */
void znp_http__on_replies(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages);
/* request.c: send 503 shutting_down to every request of `loop` still waiting for a worker. */
void znp_http__abandon_jobs(znp_http_loop_t *loop);
/* request.c: free the jobs in `messages` without responding, because the loop is closing. */
void znp_http__discard_replies(h2o_linklist_t *messages);

void znp_http__mailbox_release(znp_http_mailbox_t *mailbox);

/* Worker side of streamed bodies. A worker waits at most `ms` for a client that reads nothing (0: 60 s). */
void znp_http__stream_set_stall_timeout(unsigned ms);
void znp_http__writer_init(znp_http_writer_t *writer, znp_http_mailbox_t *mailbox, void *job, const char *request_id);
/*
 * After the operation returned `rc`: when pieces already went to the loop,
 * queue the rest and the end (an abort when rc != 0) and return 1; the job's
 * own response is then ignored. Return 0 when nothing was handed over, so the
 * body in writer->data (if begin was called) goes out as one response.
 */
int znp_http__writer_finish(znp_http_writer_t *writer, int rc);
void znp_http__writer_dispose(znp_http_writer_t *writer);
/* Loop side: a piece arrived, or the loop is closing and drops it. */
void znp_http__stream_on_piece(znp_http_reply_t *reply);
void znp_http__stream_discard_piece(znp_http_reply_t *reply);
/* Content-Disposition value `attachment; filename="..."` in the request's pool. */
h2o_iovec_t znp_http__attachment_header(h2o_req_t *req, const char *filename);
/* Add the extra headers a writer collected (name NUL value NUL ..., `len` bytes) to the response. */
void znp_http__add_stream_headers(h2o_req_t *req, const char *headers, size_t len);
/* request.c: detach the request from `job` (an http job) so a stream can answer it; NULL when it already ended. */
h2o_req_t *znp_http__job_take_request(void *job);

/* request.c: shared per-request steps used by docs.c */
typedef struct znp_http_request znp_http_request_t;
/* `started_ns`: CLOCK_MONOTONIC when the handler received the request, or 0 for now. */
znp_http_request_t *znp_http__begin_request(h2o_req_t *req, const char *route, uint64_t started_ns);
void znp_http__send_error(h2o_req_t *req, znp_http_request_t *state, int err, const char *allow);
void znp_http__send_body(h2o_req_t *req, int status, const char *content_type, h2o_iovec_t body);

/* guard.c: the protection state of one request, kept in znp_http_request_t */
typedef struct znp_http_guard {
    znp_ip_t client; /* after trusted proxies */
    char client_text[ZNP_IP_TEXT_MAX];
    znp_route_group_t group;
    const znp_cors_policy_t *cors; /* the group's policy when CORS is on for it, else NULL */
    h2o_iovec_t allow_origin;      /* Access-Control-Allow-Origin value, base NULL when not allowed */
    int docs;                      /* a /docs path: the Swagger UI Content-Security-Policy */
    int file;                      /* a stream operation: its files for programs go without Content-Security-Policy */
    znp_rate_verdict_t rate;       /* tightest bucket taken from, for the RateLimit-* headers */
} znp_http_guard_t;

/* Resolve the client IP, the route group of `path` and the request's CORS origin. */
void znp_http__guard_init(znp_http_guard_t *guard, h2o_req_t *req, znp_http_server_t *server, h2o_iovec_t path);
/*
 * Before routing: admin allow-list, CORS preflight, group rate limits.
 * Returns 1 when it sent the response (403, 204 preflight or 429).
 */
int znp_http__guard_request(h2o_req_t *req, znp_http_request_t *state, znp_http_guard_t *guard);
/*
 * After routing to `op` (index `op_index`) whose spec path is `route_path`:
 * the admin checks when only the route shows the admin group, then the
 * operation's x-rate-limit. Returns 1 when it sent the response.
 */
int znp_http__guard_operation(h2o_req_t *req, znp_http_request_t *state, znp_http_guard_t *guard,
                              const char *route_path, size_t op_index, const znp_rate_limit_t *limits);
/* Keep the tighter of the two verdicts in `into`. */
void znp_http__guard_merge_rate(znp_rate_verdict_t *into, const znp_rate_verdict_t *rate);
/* Add the security, CORS and RateLimit-* headers to the response. `guard` NULL: security headers only. */
void znp_http__guard_headers(h2o_req_t *req, znp_http_server_t *server, const znp_http_guard_t *guard);

/* docs.c */
int znp_http__docs_available(const char *docs_dir);
/* /docs and /docs/... when the Swagger UI files are missing: a page that explains how to install them */
void znp_http__send_docs_missing(h2o_req_t *req);
/* Prelude on the /docs path: serves the index and its initializer, returns -1 for the file handler. */
int znp_http__on_docs_request(h2o_handler_t *self, h2o_req_t *req);

#endif
