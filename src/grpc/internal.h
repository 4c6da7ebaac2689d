/*
 * Shared between the files of the gRPC module: the server state, the
 * completion-queue tags and the unary reply helper.
 *
 * Threads: the completion-queue thread runs every tag's on_complete. Health
 * listeners (status changes) and pool workers (bridged operations) start
 * batches from their own threads, which the C core allows
 * (grpc_call_start_batch is thread-safe). No code of ours runs inside a
 * grpc_* call, so holding a lock across grpc_call_start_batch is safe.
 */
#ifndef ZNP_GRPC_INTERNAL_H
#define ZNP_GRPC_INTERNAL_H

#include <grpc/grpc.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config/config.h"
#include "core/error.h"
#include "grpc/server.h"
#include "grpc_methods.gen.h"
#include "protect/protect.h"
#include "runtime/pool.h"

#define ZNP_GRPC_LOG_TAG        "grpc"
#define ZNP_GRPC_HEALTH_CHECK   "/grpc.health.v1.Health/Check"
#define ZNP_GRPC_HEALTH_WATCH   "/grpc.health.v1.Health/Watch"
#define ZNP_GRPC_ERROR_METADATA "znp-error-bin"

/* Every tag handed to the C core starts with this; the CQ thread calls on_complete. */
typedef struct znp_grpc__tag znp_grpc__tag_t;
struct znp_grpc__tag {
    void (*on_complete)(znp_grpc__tag_t *tag, int ok);
};

typedef struct znp_grpc__watch znp_grpc__watch_t;

/* a call as it arrives from grpc_server_request_(registered_)call */
typedef struct znp_grpc__incoming {
    grpc_call *call;              /* owned: one reference */
    grpc_metadata_array metadata; /* request headers; owned */
    grpc_byte_buffer *payload;    /* the request message, NULL for unregistered methods; owned */
    const char *method;           /* full method path for metrics and logs; static */
    struct timespec started;      /* CLOCK_MONOTONIC */
} znp_grpc__incoming_t;

struct znp_grpc_server {
    const znp_config_t *config;
    znp_pool_t *pool;
    znp_protect_t *protect; /* borrowed from the HTTP server; NULL applies no limits */
    znp_locale_t default_locale;

    grpc_server *server;
    grpc_completion_queue *cq;
    pthread_t cq_thread;
    int cq_thread_started;
    void *check_method;
    void *watch_method;
    void **bridge_methods; /* registered handle per znp_grpc_methods entry */
    int health_handle;     /* znp_health_subscribe handle, -1 when not subscribed */
    int port;              /* bound TCP port */
    znp_grpc__tag_t shutdown_tag;

    pthread_mutex_t lock;
    pthread_cond_t changed;     /* broadcast when the fields below change */
    int stopping;               /* set by destroy: no more requests are posted, new Watches end at once */
    int shutdown_notified;      /* the shutdown tag completed */
    size_t bridge_calls;        /* bridged calls not yet released; pool workers may hold them */
    znp_grpc__watch_t *watches; /* open Watch streams */
};

/*
 * A unary call finished with one batch: initial metadata, the response
 * message (on OK), the status with optional trailing error metadata, and
 * RECV_CLOSE_ON_SERVER. `release` frees the struct that embeds it.
 */
typedef struct znp_grpc__unary znp_grpc__unary_t;
struct znp_grpc__unary {
    znp_grpc__tag_t tag;
    znp_grpc_server_t *server;
    znp_grpc__incoming_t in;
    void (*release)(znp_grpc__unary_t *unary);

    /* owned by the batch until it completes */
    grpc_metadata initial[1];
    size_t initial_count;
    grpc_metadata trailing[2];
    size_t trailing_count;
    uint32_t retry_after_s; /* set before finishing: sent as trailing "retry-after" when not 0 */
    grpc_byte_buffer *response;
    grpc_slice status_details;
    grpc_status_code status;
    int cancelled;
};

/* monotonic seconds since `started` */
double znp_grpc__elapsed(const struct timespec *started);

/* Value of request metadata `key` (lower case), or NULL. Borrowed from `metadata`. */
const grpc_slice *znp_grpc__metadata_find(const grpc_metadata_array *metadata, const char *key);

/* Copy the bytes of the incoming request message into one slice (grpc_slice_unref it). */
grpc_slice znp_grpc__payload_slice(grpc_byte_buffer *payload);

/* Take over `in` (zeroed afterwards) into `unary`. */
void znp_grpc__unary_init(znp_grpc__unary_t *unary, znp_grpc_server_t *server, znp_grpc__incoming_t *in,
                          void (*release)(znp_grpc__unary_t *unary));

/*
 * Send the response and finish the call. `response` (may be NULL) is the
 * serialized message, sent only with GRPC_STATUS_OK. `error_body` (may be
 * NULL) goes into the trailing metadata key "znp-error-bin", and a
 * non-zero unary->retry_after_s into "retry-after". `request_id`
 * (may be NULL) goes into the initial metadata key "x-request-id". The unary
 * is released when the batch completes, or at once if it cannot start.
 */
void znp_grpc__unary_finish(znp_grpc__unary_t *unary, grpc_status_code status, const char *details,
                            const void *response, size_t response_len, const char *error_body, const char *request_id);

/* grpc.health.v1.Health (health.c) */
void znp_grpc__health_check(znp_grpc_server_t *server, znp_grpc__incoming_t *in);
void znp_grpc__health_watch(znp_grpc_server_t *server, znp_grpc__incoming_t *in);
/* Register the health listener. Returns 0 or ZNP_E_INTERNAL. */
int znp_grpc__health_start(znp_grpc_server_t *server);
/* Unsubscribe, then send UNAVAILABLE to every open Watch; call with server->stopping set and no lock held. */
void znp_grpc__health_stop(znp_grpc_server_t *server);

/* znp's own services (bridge.c): run znp_grpc_methods[index] for `in`. */
void znp_grpc__bridge_call(znp_grpc_server_t *server, size_t index, znp_grpc__incoming_t *in);

#endif
