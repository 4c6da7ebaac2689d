#include "grpc/server.h"

#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "grpc/internal.h"
#include "runtime/metrics.h"

/* requests kept posted per method; more arrivals wait inside the C core until one is re-posted */
#define SLOTS_PER_METHOD 4
/* how long destroy waits for open Watch streams to take their UNAVAILABLE status */
#define WATCH_FINISH_WAIT_MS 2000

typedef enum slot_kind {
    SLOT_CHECK,
    SLOT_WATCH,
    SLOT_BRIDGE,
    SLOT_UNREGISTERED,
} slot_kind_t;

/* one posted request; it is re-posted after each arrival until the server stops */
typedef struct slot {
    znp_grpc__tag_t tag;
    znp_grpc_server_t *server;
    slot_kind_t kind;
    size_t index; /* znp_grpc_methods index for SLOT_BRIDGE */
    void *method; /* registered method handle, NULL for SLOT_UNREGISTERED */
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array metadata;
    grpc_byte_buffer *payload;
    grpc_call_details details; /* SLOT_UNREGISTERED only */
} slot_t;

/* ---- helpers shared by the module ---- */

double znp_grpc__elapsed(const struct timespec *started)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - started->tv_sec) + (double)(now.tv_nsec - started->tv_nsec) / 1e9;
}

const grpc_slice *znp_grpc__metadata_find(const grpc_metadata_array *metadata, const char *key)
{
    for (size_t i = 0; i < metadata->count; i++) {
        if (grpc_slice_str_cmp(metadata->metadata[i].key, key) == 0)
            return &metadata->metadata[i].value;
    }
    return NULL;
}

grpc_slice znp_grpc__payload_slice(grpc_byte_buffer *payload)
{
    grpc_byte_buffer_reader reader;
    grpc_slice slice;

    if (payload == NULL || !grpc_byte_buffer_reader_init(&reader, payload))
        return grpc_empty_slice();
    slice = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    return slice;
}

void znp_grpc__unary_init(znp_grpc__unary_t *unary, znp_grpc_server_t *server, znp_grpc__incoming_t *in,
                          void (*release)(znp_grpc__unary_t *unary))
{
    unary->server = server;
    unary->in = *in;
    unary->release = release;
    unary->status_details = grpc_empty_slice();
    memset(in, 0, sizeof *in);
}

static void unary_release(znp_grpc__unary_t *unary)
{
    znp_metrics_observe_grpc(unary->in.method, unary->cancelled ? GRPC_STATUS_CANCELLED : (int)unary->status,
                             znp_grpc__elapsed(&unary->in.started));

    for (size_t i = 0; i < unary->initial_count; i++)
        grpc_slice_unref(unary->initial[i].value);
    for (size_t i = 0; i < unary->trailing_count; i++)
        grpc_slice_unref(unary->trailing[i].value);
    grpc_slice_unref(unary->status_details);
    grpc_byte_buffer_destroy(unary->response);
    grpc_byte_buffer_destroy(unary->in.payload);
    grpc_metadata_array_destroy(&unary->in.metadata);
    if (unary->in.call != NULL)
        grpc_call_unref(unary->in.call);
    unary->release(unary);
}

static void on_unary_complete(znp_grpc__tag_t *tag, int ok)
{
    znp_grpc__unary_t *unary = (znp_grpc__unary_t *)tag;

    if (!ok)
        ZNP_DEBUG(ZNP_GRPC_LOG_TAG, NULL, "reply batch failed: method=%s", unary->in.method);
    unary_release(unary);
}

void znp_grpc__unary_finish(znp_grpc__unary_t *unary, grpc_status_code status, const char *details,
                            const void *response, size_t response_len, const char *error_body, const char *request_id)
{
    grpc_op ops[4];
    size_t n = 0;
    grpc_call_error rc;

    memset(ops, 0, sizeof ops);
    unary->tag.on_complete = on_unary_complete;
    unary->status = status;

    if (request_id != NULL) {
        unary->initial[0].key = grpc_slice_from_static_string("x-request-id");
        unary->initial[0].value = grpc_slice_from_copied_string(request_id);
        unary->initial_count = 1;
    }
    ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[n].data.send_initial_metadata.count = unary->initial_count;
    ops[n].data.send_initial_metadata.metadata = unary->initial;
    n++;

    if (status == GRPC_STATUS_OK && response != NULL) {
        grpc_slice slice = grpc_slice_from_copied_buffer(response, response_len);

        unary->response = grpc_raw_byte_buffer_create(&slice, 1);
        grpc_slice_unref(slice);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n].data.send_message.send_message = unary->response;
        n++;
    }

    if (error_body != NULL) {
        unary->trailing[0].key = grpc_slice_from_static_string(ZNP_GRPC_ERROR_METADATA);
        unary->trailing[0].value = grpc_slice_from_copied_string(error_body);
        unary->trailing_count = 1;
    }
    if (unary->retry_after_s > 0) {
        char seconds[12];

        snprintf(seconds, sizeof seconds, "%u", unary->retry_after_s);
        unary->trailing[unary->trailing_count].key = grpc_slice_from_static_string("retry-after");
        unary->trailing[unary->trailing_count].value = grpc_slice_from_copied_string(seconds);
        unary->trailing_count++;
    }
    if (details != NULL) {
        grpc_slice_unref(unary->status_details);
        unary->status_details = grpc_slice_from_copied_string(details);
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = status;
    ops[n].data.send_status_from_server.status_details = details != NULL ? &unary->status_details : NULL;
    ops[n].data.send_status_from_server.trailing_metadata_count = unary->trailing_count;
    ops[n].data.send_status_from_server.trailing_metadata = unary->trailing;
    n++;

    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n].data.recv_close_on_server.cancelled = &unary->cancelled;
    n++;

    rc = grpc_call_start_batch(unary->in.call, ops, n, &unary->tag, NULL);
    if (rc != GRPC_CALL_OK) {
        ZNP_ERROR(ZNP_GRPC_LOG_TAG, NULL, "could not start the reply batch: method=%s error=%d", unary->in.method,
                  (int)rc);
        unary_release(unary);
    }
}

/* ---- unregistered methods ---- */

static void release_plain(znp_grpc__unary_t *unary)
{
    free(unary);
}

static void reply_unimplemented(znp_grpc_server_t *server, znp_grpc__incoming_t *in, const grpc_call_details *details)
{
    znp_grpc__unary_t *unary = calloc(1, sizeof *unary);
    char method[128];

    if (unary == NULL) {
        grpc_call_cancel_with_status(in->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
        grpc_call_unref(in->call);
        grpc_metadata_array_destroy(&in->metadata);
        return;
    }
    /* method names come from the client: escaped and cut for the log, never used as a metric label */
    {
        char *raw = grpc_slice_to_c_string(details->method);

        znp_log_escape(method, sizeof method, raw, strlen(raw), 64);
        gpr_free(raw);
    }
    ZNP_DEBUG(ZNP_GRPC_LOG_TAG, NULL, "unimplemented method: method=\"%s\"", method);
    in->method = "unimplemented";
    znp_grpc__unary_init(unary, server, in, release_plain);
    znp_grpc__unary_finish(unary, GRPC_STATUS_UNIMPLEMENTED, "method not implemented", NULL, 0, NULL, NULL);
}

/* ---- request slots ---- */

static void on_slot_complete(znp_grpc__tag_t *tag, int ok);

/* Post `slot` again. Its metadata array (and details) must be empty; slot_free releases them on failure. */
static int slot_post(slot_t *slot)
{
    znp_grpc_server_t *server = slot->server;
    grpc_call_error rc;

    slot->tag.on_complete = on_slot_complete;
    slot->call = NULL;
    slot->payload = NULL;
    if (slot->kind == SLOT_UNREGISTERED) {
        rc = grpc_server_request_call(server->server, &slot->call, &slot->details, &slot->metadata, server->cq,
                                      server->cq, &slot->tag);
    } else {
        rc = grpc_server_request_registered_call(server->server, slot->method, &slot->call, &slot->deadline,
                                                 &slot->metadata, &slot->payload, server->cq, server->cq, &slot->tag);
    }
    if (rc != GRPC_CALL_OK) {
        ZNP_ERROR(ZNP_GRPC_LOG_TAG, NULL, "could not post a request: error=%d", (int)rc);
        return -1;
    }
    return 0;
}

static void slot_free(slot_t *slot)
{
    grpc_metadata_array_destroy(&slot->metadata);
    grpc_byte_buffer_destroy(slot->payload);
    grpc_call_details_destroy(&slot->details);
    free(slot);
}

static void on_slot_complete(znp_grpc__tag_t *tag, int ok)
{
    slot_t *slot = (slot_t *)tag;
    znp_grpc_server_t *server = slot->server;
    znp_grpc__incoming_t in;
    int stopping;

    /* the C core fails posted requests with ok = 0 when the server shuts down */
    if (!ok || slot->call == NULL) {
        slot_free(slot);
        return;
    }

    /* hand the call over, leaving the slot empty for the next request */
    memset(&in, 0, sizeof in);
    clock_gettime(CLOCK_MONOTONIC, &in.started);
    in.call = slot->call;
    in.metadata = slot->metadata;
    in.payload = slot->payload;
    slot->call = NULL;
    slot->payload = NULL;
    grpc_metadata_array_init(&slot->metadata);

    switch (slot->kind) {
    case SLOT_CHECK:
        in.method = ZNP_GRPC_HEALTH_CHECK;
        znp_grpc__health_check(server, &in);
        break;
    case SLOT_WATCH:
        in.method = ZNP_GRPC_HEALTH_WATCH;
        znp_grpc__health_watch(server, &in);
        break;
    case SLOT_BRIDGE:
        in.method = znp_grpc_methods[slot->index].path;
        znp_grpc__bridge_call(server, slot->index, &in);
        break;
    case SLOT_UNREGISTERED:
        reply_unimplemented(server, &in, &slot->details);
        grpc_call_details_destroy(&slot->details);
        grpc_call_details_init(&slot->details);
        break;
    }

    /* post again unless destroy started; the CQ thread is the only one posting after start */
    pthread_mutex_lock(&server->lock);
    stopping = server->stopping;
    pthread_mutex_unlock(&server->lock);
    if (stopping || slot_post(slot) != 0)
        slot_free(slot);
}

static int post_slots(znp_grpc_server_t *server, slot_kind_t kind, void *method, size_t index)
{
    for (int i = 0; i < SLOTS_PER_METHOD; i++) {
        slot_t *slot = calloc(1, sizeof *slot);

        if (slot == NULL)
            return -1;
        slot->server = server;
        slot->kind = kind;
        slot->method = method;
        slot->index = index;
        grpc_metadata_array_init(&slot->metadata);
        grpc_call_details_init(&slot->details);
        if (slot_post(slot) != 0) {
            slot_free(slot);
            return -1;
        }
    }
    return 0;
}

/* ---- completion-queue thread and lifecycle ---- */

static void *run_cq(void *arg)
{
    znp_grpc_server_t *server = arg;

    for (;;) {
        grpc_event ev = grpc_completion_queue_next(server->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE) {
            znp_grpc__tag_t *tag = ev.tag;

            tag->on_complete(tag, ev.success);
        }
    }
    return NULL;
}

static void on_shutdown_complete(znp_grpc__tag_t *tag, int ok)
{
    znp_grpc_server_t *server = (znp_grpc_server_t *)((char *)tag - offsetof(znp_grpc_server_t, shutdown_tag));

    (void)ok;
    pthread_mutex_lock(&server->lock);
    server->shutdown_notified = 1;
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
}

/* Wait on server->changed until `done` returns true or `timeout_ms` passes. Returns 1 when done. */
static int wait_until(znp_grpc_server_t *server, int (*done)(znp_grpc_server_t *server), unsigned timeout_ms)
{
    struct timespec deadline;
    int rc = 0;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }

    pthread_mutex_lock(&server->lock);
    while (!done(server) && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&server->changed, &server->lock, &deadline);
    rc = done(server);
    pthread_mutex_unlock(&server->lock);
    return rc;
}

static int watches_closed(znp_grpc_server_t *server)
{
    return server->watches == NULL;
}

static int shutdown_notified(znp_grpc_server_t *server)
{
    return server->shutdown_notified;
}

static int bridge_calls_released(znp_grpc_server_t *server)
{
    return server->bridge_calls == 0;
}

static int register_methods(znp_grpc_server_t *server)
{
    const grpc_server_register_method_payload_handling read = GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER;

    server->check_method = grpc_server_register_method(server->server, ZNP_GRPC_HEALTH_CHECK, NULL, read, 0);
    server->watch_method = grpc_server_register_method(server->server, ZNP_GRPC_HEALTH_WATCH, NULL, read, 0);
    if (server->check_method == NULL || server->watch_method == NULL)
        return -1;

    server->bridge_methods = calloc(znp_grpc_method_count + 1, sizeof *server->bridge_methods);
    if (server->bridge_methods == NULL)
        return -1;
    for (size_t i = 0; i < znp_grpc_method_count; i++) {
        server->bridge_methods[i] =
            grpc_server_register_method(server->server, znp_grpc_methods[i].path, NULL, read, 0);
        if (server->bridge_methods[i] == NULL) {
            ZNP_ERROR(ZNP_GRPC_LOG_TAG, NULL, "could not register method: method=%s", znp_grpc_methods[i].path);
            return -1;
        }
    }
    return 0;
}

static int post_all(znp_grpc_server_t *server)
{
    if (post_slots(server, SLOT_CHECK, server->check_method, 0) != 0 ||
        post_slots(server, SLOT_WATCH, server->watch_method, 0) != 0 ||
        post_slots(server, SLOT_UNREGISTERED, NULL, 0) != 0)
        return -1;
    for (size_t i = 0; i < znp_grpc_method_count; i++) {
        if (post_slots(server, SLOT_BRIDGE, server->bridge_methods[i], i) != 0)
            return -1;
    }
    return 0;
}

int znp_grpc_server_create(znp_grpc_server_t **out, const znp_config_t *config, znp_pool_t *pool,
                           znp_protect_t *protect)
{
    znp_grpc_server_t *server = NULL;
    grpc_server_credentials *credentials = NULL;
    grpc_arg args[1];
    grpc_channel_args channel_args = {.num_args = 1, .args = args};
    const char *listen = config->server.grpc_listen != NULL ? config->server.grpc_listen : "127.0.0.1:8090";
    uint64_t max_message = config->server.max_body_bytes != 0 ? config->server.max_body_bytes : 1u << 20;
    int port;

    *out = NULL;
    server = calloc(1, sizeof *server);
    if (server == NULL)
        return ZNP_E_INTERNAL;
    pthread_mutex_init(&server->lock, NULL);
    pthread_cond_init(&server->changed, NULL);
    server->config = config;
    server->pool = pool;
    server->protect = protect;
    server->health_handle = -1;
    server->default_locale = znp_locale_from_header(
        config->server.default_locale,
        config->server.default_locale != NULL ? strlen(config->server.default_locale) : 0, ZNP_LOCALE_EN);
    grpc_init();

    /* same limit as an HTTP body */
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = max_message > INT32_MAX ? INT32_MAX : (int)max_message;
    server->server = grpc_server_create(&channel_args, NULL);
    server->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(server->server, server->cq, NULL);
    if (register_methods(server) != 0)
        goto failed;

    credentials = grpc_insecure_server_credentials_create();
    port = grpc_server_add_http2_port(server->server, listen, credentials);
    grpc_server_credentials_release(credentials);
    if (port == 0) {
        ZNP_ERROR(ZNP_GRPC_LOG_TAG, NULL, "could not listen for gRPC: address=%s", listen);
        goto failed;
    }

    server->port = port;
    grpc_server_start(server->server);
    if (znp_grpc__health_start(server) != 0 || post_all(server) != 0)
        goto failed_started;
    if (pthread_create(&server->cq_thread, NULL, run_cq, server) != 0) {
        ZNP_ERROR(ZNP_GRPC_LOG_TAG, NULL, "could not start the completion-queue thread");
        goto failed_started;
    }
    server->cq_thread_started = 1;

    ZNP_INFO(ZNP_GRPC_LOG_TAG, NULL, "gRPC listening: address=%s port=%d", listen, port);
    *out = server;
    return 0;

failed:
    /* never started: nothing was posted, so the server can go directly */
    grpc_server_destroy(server->server);
    grpc_completion_queue_shutdown(server->cq);
    while (grpc_completion_queue_next(server->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN)
        ;
    grpc_completion_queue_destroy(server->cq);
    grpc_shutdown_blocking();
    free(server->bridge_methods);
    pthread_cond_destroy(&server->changed);
    pthread_mutex_destroy(&server->lock);
    free(server);
    return ZNP_E_INTERNAL;

failed_started:
    /* posted slots complete with ok = 0 during shutdown; run the queue here since no thread does */
    znp_grpc_server_destroy(server);
    return ZNP_E_INTERNAL;
}

int znp_grpc_server_port(znp_grpc_server_t *server)
{
    return server->port;
}

void znp_grpc_server_destroy(znp_grpc_server_t *server)
{
    unsigned drain_ms;

    if (server == NULL)
        return;
    drain_ms = server->config->server.shutdown_timeout_ms != 0 ? server->config->server.shutdown_timeout_ms : 10000;

    /* stop posting, then end open Watch streams with UNAVAILABLE */
    pthread_mutex_lock(&server->lock);
    server->stopping = 1;
    pthread_mutex_unlock(&server->lock);
    znp_grpc__health_stop(server);
    if (server->cq_thread_started && !wait_until(server, watches_closed, WATCH_FINISH_WAIT_MS))
        ZNP_WARN(ZNP_GRPC_LOG_TAG, NULL, "Watch streams still open after %d ms; cancelling them", WATCH_FINISH_WAIT_MS);

    /*
     * Refuse new calls but let bridged calls on pool workers finish, then
     * cancel what is left. cancel_all_calls is valid only between
     * shutdown_and_notify and destroy.
     */
    server->shutdown_tag.on_complete = on_shutdown_complete;
    grpc_server_shutdown_and_notify(server->server, server->cq, &server->shutdown_tag);
    if (!server->cq_thread_started) {
        /* create failed after start: nothing runs the queue yet */
        if (pthread_create(&server->cq_thread, NULL, run_cq, server) != 0) {
            ZNP_ERROR(ZNP_GRPC_LOG_TAG, NULL,
                      "could not start the completion-queue thread; leaving the gRPC server allocated");
            return;
        }
        server->cq_thread_started = 1;
    }
    if (!wait_until(server, bridge_calls_released, drain_ms))
        ZNP_WARN(ZNP_GRPC_LOG_TAG, NULL, "bridged calls still running after %u ms; cancelling them", drain_ms);
    grpc_server_cancel_all_calls(server->server);
    wait_until(server, shutdown_notified, UINT32_MAX / 2);

    /*
     * A bridged call still on a pool worker will start its reply batch on
     * this completion queue, so the queue must outlive it. If one never
     * comes back, leak the server rather than free what it will touch.
     */
    if (!wait_until(server, bridge_calls_released, drain_ms)) {
        ZNP_ERROR(ZNP_GRPC_LOG_TAG, NULL,
                  "bridged calls still running after %u ms more; leaving the gRPC server allocated", drain_ms);
        return;
    }

    grpc_server_destroy(server->server);
    grpc_completion_queue_shutdown(server->cq);
    pthread_join(server->cq_thread, NULL);
    grpc_completion_queue_destroy(server->cq);
    grpc_shutdown_blocking();

    free(server->bridge_methods);
    pthread_cond_destroy(&server->changed);
    pthread_mutex_destroy(&server->lock);
    free(server);
    ZNP_INFO(ZNP_GRPC_LOG_TAG, NULL, "gRPC server stopped");
}
