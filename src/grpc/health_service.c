/*
 * grpc.health.v1.Health: Check returns the current readiness, and Watch
 * streams it. Services "" and "znp" follow runtime/health.h; any other name is
 * NOT_FOUND for Check and SERVICE_UNKNOWN (stream kept open) for Watch, as
 * the health checking protocol specifies.
 */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/internal.h"
#include "runtime/health.h"
#include "runtime/metrics.h"

#define STATUS_UNKNOWN         GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__UNKNOWN
#define STATUS_SERVING         GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define STATUS_NOT_SERVING     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define STATUS_SERVICE_UNKNOWN GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

/*
 * One open Watch stream. References: one for the RECV_CLOSE_ON_SERVER batch,
 * one per batch in flight that sends a message or the final status. The
 * lock guards everything below it; server->lock guards prev/next and is
 * taken before it.
 */
struct znp_grpc__watch {
    znp_grpc__tag_t close_tag;
    znp_grpc__tag_t send_tag;
    znp_grpc__tag_t finish_tag;
    znp_grpc_server_t *server;
    znp_grpc__incoming_t in;
    int known_service;
    znp_grpc__watch_t *prev;
    znp_grpc__watch_t *next;

    pthread_mutex_t lock;
    int refs;
    int sending; /* a SEND_MESSAGE batch is in flight; at most one is allowed */
    int initial_sent;
    int last_sent;        /* serving status in the last message sent */
    int pending;          /* status to send when the current send completes, -1 for none */
    int closed;           /* the close batch completed: the call is over */
    int finish_requested; /* send UNAVAILABLE once no message is in flight */
    int finishing;        /* the status batch was started */
    int cancelled;        /* from RECV_CLOSE_ON_SERVER */
    grpc_byte_buffer *message;
    grpc_slice finish_details;
};

static int serving_status(znp_serving_t status)
{
    switch (status) {
    case ZNP_SERVING_SERVING:
        return STATUS_SERVING;
    case ZNP_SERVING_NOT_SERVING:
        return STATUS_NOT_SERVING;
    case ZNP_SERVING_UNKNOWN:
        break;
    }
    return STATUS_UNKNOWN;
}

/* the health service names that report this instance's readiness */
static int is_known_service(const char *name)
{
    return name[0] == '\0' || strcmp(name, "znp") == 0;
}

/* Decode the HealthCheckRequest. Returns 0, or -1 when the payload is not one. */
static int read_service(grpc_byte_buffer *payload, int *known)
{
    grpc_slice slice = znp_grpc__payload_slice(payload);
    Grpc__Health__V1__HealthCheckRequest *request;

    request =
        grpc__health__v1__health_check_request__unpack(NULL, GRPC_SLICE_LENGTH(slice), GRPC_SLICE_START_PTR(slice));
    grpc_slice_unref(slice);
    if (request == NULL)
        return -1;
    *known = is_known_service(request->service);
    grpc__health__v1__health_check_request__free_unpacked(request, NULL);
    return 0;
}

/* Serialize a HealthCheckResponse into a new byte buffer (owned by the caller). */
static grpc_byte_buffer *pack_response(int status)
{
    Grpc__Health__V1__HealthCheckResponse response = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    uint8_t bytes[16];
    size_t len;
    grpc_slice slice;
    grpc_byte_buffer *buffer;

    response.status = status;
    len = grpc__health__v1__health_check_response__pack(&response, bytes);
    slice = grpc_slice_from_copied_buffer((const char *)bytes, len);
    buffer = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return buffer;
}

/* ---- Check ---- */

static void release_check(znp_grpc__unary_t *unary)
{
    free(unary);
}

void znp_grpc__health_check(znp_grpc_server_t *server, znp_grpc__incoming_t *in)
{
    znp_grpc__unary_t *unary = calloc(1, sizeof *unary);
    Grpc__Health__V1__HealthCheckResponse response = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    uint8_t bytes[16];
    size_t len;
    int known;

    if (unary == NULL) {
        grpc_call_cancel_with_status(in->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
        grpc_call_unref(in->call);
        grpc_metadata_array_destroy(&in->metadata);
        grpc_byte_buffer_destroy(in->payload);
        return;
    }
    znp_grpc__unary_init(unary, server, in, release_check);

    if (read_service(unary->in.payload, &known) != 0) {
        znp_grpc__unary_finish(unary, GRPC_STATUS_INVALID_ARGUMENT, "invalid HealthCheckRequest", NULL, 0, NULL, NULL);
        return;
    }
    if (!known) {
        znp_grpc__unary_finish(unary, GRPC_STATUS_NOT_FOUND, "unknown service", NULL, 0, NULL, NULL);
        return;
    }

    response.status = serving_status(znp_health_status());
    len = grpc__health__v1__health_check_response__pack(&response, bytes);
    znp_grpc__unary_finish(unary, GRPC_STATUS_OK, NULL, bytes, len, NULL, NULL);
}

/* ---- Watch ---- */

static void watch_unref(znp_grpc__watch_t *watch)
{
    int refs;

    pthread_mutex_lock(&watch->lock);
    refs = --watch->refs;
    pthread_mutex_unlock(&watch->lock);
    if (refs > 0)
        return;

    znp_metrics_observe_grpc(watch->in.method, watch->finishing ? GRPC_STATUS_UNAVAILABLE : GRPC_STATUS_CANCELLED,
                             znp_grpc__elapsed(&watch->in.started));
    grpc_byte_buffer_destroy(watch->message);
    grpc_slice_unref(watch->finish_details);
    grpc_byte_buffer_destroy(watch->in.payload);
    grpc_metadata_array_destroy(&watch->in.metadata);
    grpc_call_unref(watch->in.call);
    pthread_mutex_destroy(&watch->lock);
    free(watch);
}

static void start_finish_locked(znp_grpc__watch_t *watch)
{
    grpc_op ops[2];
    size_t n = 0;

    memset(ops, 0, sizeof ops);
    watch->finishing = 1;
    if (!watch->initial_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
        watch->initial_sent = 1;
    }
    watch->finish_details = grpc_slice_from_static_string("server is shutting down");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = GRPC_STATUS_UNAVAILABLE;
    ops[n].data.send_status_from_server.status_details = &watch->finish_details;
    n++;

    watch->refs++;
    if (grpc_call_start_batch(watch->in.call, ops, n, &watch->finish_tag, NULL) != GRPC_CALL_OK) {
        ZNP_WARN(ZNP_GRPC_LOG_TAG, NULL, "could not send the final Watch status");
        watch->refs--;
    }
}

/* Send `status` unless it was the last one sent; queue it while a send is in flight. */
static void send_locked(znp_grpc__watch_t *watch, int status)
{
    grpc_op ops[2];
    size_t n = 0;

    if (watch->closed || watch->finish_requested)
        return;
    if (watch->sending) {
        watch->pending = status;
        return;
    }
    if (watch->initial_sent && status == watch->last_sent)
        return;

    memset(ops, 0, sizeof ops);
    if (!watch->initial_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        n++;
    }
    watch->message = pack_response(status);
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n].data.send_message.send_message = watch->message;
    n++;

    watch->refs++;
    watch->sending = 1;
    if (grpc_call_start_batch(watch->in.call, ops, n, &watch->send_tag, NULL) != GRPC_CALL_OK) {
        ZNP_WARN(ZNP_GRPC_LOG_TAG, NULL, "could not send a Watch update");
        grpc_byte_buffer_destroy(watch->message);
        watch->message = NULL;
        watch->sending = 0;
        watch->refs--;
        return;
    }
    watch->initial_sent = 1;
    watch->last_sent = status;
}

static void on_send_complete(znp_grpc__tag_t *tag, int ok)
{
    znp_grpc__watch_t *watch = (znp_grpc__watch_t *)((char *)tag - offsetof(znp_grpc__watch_t, send_tag));
    int pending;

    pthread_mutex_lock(&watch->lock);
    grpc_byte_buffer_destroy(watch->message);
    watch->message = NULL;
    watch->sending = 0;
    pending = watch->pending;
    watch->pending = -1;
    if (ok && watch->finish_requested && !watch->finishing && !watch->closed)
        start_finish_locked(watch);
    else if (ok && pending >= 0)
        send_locked(watch, pending);
    pthread_mutex_unlock(&watch->lock);
    watch_unref(watch);
}

static void on_finish_complete(znp_grpc__tag_t *tag, int ok)
{
    znp_grpc__watch_t *watch = (znp_grpc__watch_t *)((char *)tag - offsetof(znp_grpc__watch_t, finish_tag));

    (void)ok;
    watch_unref(watch);
}

static void on_close_complete(znp_grpc__tag_t *tag, int ok)
{
    znp_grpc__watch_t *watch = (znp_grpc__watch_t *)((char *)tag - offsetof(znp_grpc__watch_t, close_tag));
    znp_grpc_server_t *server = watch->server;

    (void)ok;
    pthread_mutex_lock(&server->lock);
    if (watch->prev != NULL)
        watch->prev->next = watch->next;
    else if (server->watches == watch)
        server->watches = watch->next;
    if (watch->next != NULL)
        watch->next->prev = watch->prev;
    watch->prev = watch->next = NULL;
    pthread_mutex_lock(&watch->lock);
    watch->closed = 1;
    pthread_mutex_unlock(&watch->lock);
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
    watch_unref(watch);
}

/* Ask a Watch to end with UNAVAILABLE; called with server->lock held. */
static void request_finish(znp_grpc__watch_t *watch)
{
    pthread_mutex_lock(&watch->lock);
    if (!watch->closed && !watch->finish_requested) {
        watch->finish_requested = 1;
        watch->pending = -1;
        if (!watch->sending)
            start_finish_locked(watch);
    }
    pthread_mutex_unlock(&watch->lock);
}

void znp_grpc__health_watch(znp_grpc_server_t *server, znp_grpc__incoming_t *in)
{
    znp_grpc__watch_t *watch = calloc(1, sizeof *watch);
    grpc_op op;

    if (watch == NULL) {
        grpc_call_cancel_with_status(in->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
        grpc_call_unref(in->call);
        grpc_metadata_array_destroy(&in->metadata);
        grpc_byte_buffer_destroy(in->payload);
        return;
    }
    pthread_mutex_init(&watch->lock, NULL);
    watch->server = server;
    watch->in = *in;
    memset(in, 0, sizeof *in);
    watch->pending = -1;
    watch->finish_details = grpc_empty_slice();
    watch->close_tag.on_complete = on_close_complete;
    watch->send_tag.on_complete = on_send_complete;
    watch->finish_tag.on_complete = on_finish_complete;

    if (read_service(watch->in.payload, &watch->known_service) != 0) {
        grpc_call_cancel_with_status(watch->in.call, GRPC_STATUS_INVALID_ARGUMENT, "invalid HealthCheckRequest", NULL);
        watch->refs = 1;
        watch_unref(watch);
        return;
    }

    /* the close batch completes when the client cancels, the deadline passes or the status was sent */
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &watch->cancelled;
    watch->refs = 1;
    if (grpc_call_start_batch(watch->in.call, &op, 1, &watch->close_tag, NULL) != GRPC_CALL_OK) {
        ZNP_WARN(ZNP_GRPC_LOG_TAG, NULL, "could not start a Watch stream");
        watch_unref(watch);
        return;
    }

    /* the status is read under server->lock, so a change racing with this Watch reaches it afterwards */
    pthread_mutex_lock(&server->lock);
    watch->next = server->watches;
    if (server->watches != NULL)
        server->watches->prev = watch;
    server->watches = watch;
    if (server->stopping) {
        request_finish(watch);
    } else {
        pthread_mutex_lock(&watch->lock);
        send_locked(watch, watch->known_service ? serving_status(znp_health_status()) : STATUS_SERVICE_UNKNOWN);
        pthread_mutex_unlock(&watch->lock);
    }
    pthread_mutex_unlock(&server->lock);
}

static void on_health_change(void *data, znp_serving_t status)
{
    znp_grpc_server_t *server = data;

    pthread_mutex_lock(&server->lock);
    for (znp_grpc__watch_t *watch = server->watches; watch != NULL; watch = watch->next) {
        if (!watch->known_service)
            continue;
        pthread_mutex_lock(&watch->lock);
        send_locked(watch, serving_status(status));
        pthread_mutex_unlock(&watch->lock);
    }
    pthread_mutex_unlock(&server->lock);
}

int znp_grpc__health_start(znp_grpc_server_t *server)
{
    server->health_handle = znp_health_subscribe(on_health_change, server);
    if (server->health_handle < 0) {
        ZNP_ERROR(ZNP_GRPC_LOG_TAG, NULL, "could not subscribe to health changes: listener table full");
        return ZNP_E_INTERNAL;
    }
    return 0;
}

void znp_grpc__health_stop(znp_grpc_server_t *server)
{
    if (server->health_handle >= 0) {
        znp_health_unsubscribe(server->health_handle);
        server->health_handle = -1;
    }

    pthread_mutex_lock(&server->lock);
    for (znp_grpc__watch_t *watch = server->watches; watch != NULL; watch = watch->next)
        request_finish(watch);
    pthread_mutex_unlock(&server->lock);
}
