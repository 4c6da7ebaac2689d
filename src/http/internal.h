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
#include "http/server.h"

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

    h2o_linklist_t jobs; /* jobs submitted from this loop whose response is not sent yet */
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
    int docs_available; /* server.docs_dir contains swagger-ui-dist */

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

/* request.c: shared per-request steps used by docs.c */
typedef struct znp_http_request znp_http_request_t;
znp_http_request_t *znp_http__begin_request(h2o_req_t *req, const char *route);
void znp_http__send_error(h2o_req_t *req, znp_http_request_t *state, int err, const char *allow);
void znp_http__send_body(h2o_req_t *req, int status, const char *content_type, h2o_iovec_t body);

/* docs.c */
int znp_http__docs_available(const char *docs_dir);
/* /docs and /docs/... when the Swagger UI files are missing: a page that explains how to install them */
void znp_http__send_docs_missing(h2o_req_t *req);
/* Prelude on the /docs path: serves the index and its initializer, returns -1 for the file handler. */
int znp_http__on_docs_request(h2o_handler_t *self, h2o_req_t *req);

#endif
