/*
 * The gRPC server driven by a gRPC C core client in the same process, over
 * TCP on 127.0.0.1 with a port the kernel picks.
 */
#include "grpc_tests.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "grpc/health/v1/health.pb-c.h"
#include "grpc/server.h"
#include "runtime/health.h"
#include "runtime/pool.h"

#define STATUS_SERVING         GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define STATUS_NOT_SERVING     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define STATUS_SERVICE_UNKNOWN GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

typedef struct fixture {
    znp_config_t config;
    znp_pool_t *pool;
    znp_grpc_server_t *server;
    char target[64];
    grpc_channel *channel;
} fixture_t;

typedef struct reply {
    grpc_status_code status;
    char details[256];
    int has_message;
    uint8_t message[1024];
    size_t message_len;
    char error_bin[1024]; /* "znp-error-bin" trailing metadata, "" when absent */
} reply_t;

static gpr_timespec seconds_from_now(int seconds)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_REALTIME), gpr_time_from_seconds(seconds, GPR_TIMESPAN));
}

/* Copy a byte buffer's contents into `out` (at most `size` bytes); returns the length. */
static size_t read_buffer(grpc_byte_buffer *buffer, uint8_t *out, size_t size)
{
    grpc_byte_buffer_reader reader;
    grpc_slice slice;
    size_t len;

    assert_true(grpc_byte_buffer_reader_init(&reader, buffer));
    slice = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    len = GRPC_SLICE_LENGTH(slice);
    assert_true(len <= size);
    memcpy(out, GRPC_SLICE_START_PTR(slice), len);
    grpc_slice_unref(slice);
    return len;
}

static grpc_byte_buffer *health_request(const char *service)
{
    Grpc__Health__V1__HealthCheckRequest request = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    uint8_t bytes[256];
    size_t len;
    grpc_slice slice;
    grpc_byte_buffer *buffer;

    request.service = (char *)service;
    len = grpc__health__v1__health_check_request__pack(&request, bytes);
    slice = grpc_slice_from_copied_buffer((const char *)bytes, len);
    buffer = grpc_raw_byte_buffer_create(&slice, 1);
    grpc_slice_unref(slice);
    return buffer;
}

static int health_status_of(const uint8_t *bytes, size_t len)
{
    Grpc__Health__V1__HealthCheckResponse *response;
    int status;

    response = grpc__health__v1__health_check_response__unpack(NULL, len, bytes);
    assert_non_null(response);
    status = response->status;
    grpc__health__v1__health_check_response__free_unpacked(response, NULL);
    return status;
}

/* One unary call with an optional request message (NULL sends an empty one). */
static void call_unary(fixture_t *f, const char *method, grpc_byte_buffer *request, reply_t *out)
{
    grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_slice method_slice = grpc_slice_from_static_string(method);
    grpc_call *call;
    grpc_metadata_array initial, trailing;
    grpc_byte_buffer *response = NULL;
    grpc_slice details;
    grpc_op ops[6];
    grpc_event ev;
    int tag = 0;

    memset(out, 0, sizeof *out);
    memset(ops, 0, sizeof ops);
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    if (request == NULL) {
        grpc_slice empty = grpc_empty_slice();

        request = grpc_raw_byte_buffer_create(&empty, 1);
    }
    call = grpc_channel_create_call(f->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method_slice, NULL,
                                    seconds_from_now(10), NULL);

    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &response;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[5].data.recv_status_on_client.status = &out->status;
    ops[5].data.recv_status_on_client.status_details = &details;
    assert_int_equal(grpc_call_start_batch(call, ops, 6, &tag, NULL), GRPC_CALL_OK);
    ev = grpc_completion_queue_pluck(cq, &tag, seconds_from_now(15), NULL);
    assert_int_equal(ev.type, GRPC_OP_COMPLETE);
    assert_true(ev.success);

    if (response != NULL) {
        out->has_message = 1;
        out->message_len = read_buffer(response, out->message, sizeof out->message);
        grpc_byte_buffer_destroy(response);
    }
    snprintf(out->details, sizeof out->details, "%.*s", (int)GRPC_SLICE_LENGTH(details),
             (const char *)GRPC_SLICE_START_PTR(details));
    for (size_t i = 0; i < trailing.count; i++) {
        if (grpc_slice_str_cmp(trailing.metadata[i].key, "znp-error-bin") == 0)
            snprintf(out->error_bin, sizeof out->error_bin, "%.*s", (int)GRPC_SLICE_LENGTH(trailing.metadata[i].value),
                     (const char *)GRPC_SLICE_START_PTR(trailing.metadata[i].value));
    }

    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_byte_buffer_destroy(request);
    grpc_call_unref(call);
    grpc_completion_queue_shutdown(cq);
    grpc_completion_queue_destroy(cq);
}

static int check(fixture_t *f, const char *service, grpc_status_code *status)
{
    reply_t reply;

    call_unary(f, "/grpc.health.v1.Health/Check", health_request(service), &reply);
    *status = reply.status;
    if (reply.status != GRPC_STATUS_OK)
        return -1;
    assert_true(reply.has_message);
    return health_status_of(reply.message, reply.message_len);
}

static void set_ready(int ready)
{
    znp_health_set_database(ready);
    znp_health_set_migrations_current(ready);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);

    assert_non_null(f);
    f->config.server.grpc_listen = "127.0.0.1:0";
    f->config.server.default_locale = "en";
    f->config.server.max_body_bytes = 1 << 20;
    f->config.server.shutdown_timeout_ms = 5000;
    f->config.database.reconnect_max_ms = 1000;
    f->config.database.connect_timeout_s = 1;

    znp_health_init();
    set_ready(1);
    /* no database listens on port 1, so bridged jobs run without a connection */
    assert_int_equal(znp_pool_create(&f->pool, &f->config, "host=127.0.0.1 port=1 connect_timeout=1", 1), 0);
    assert_int_equal(znp_grpc_server_create(&f->server, &f->config, f->pool, NULL), 0);
    assert_true(znp_grpc_server_port(f->server) > 0);
    snprintf(f->target, sizeof f->target, "127.0.0.1:%d", znp_grpc_server_port(f->server));

    grpc_init();
    {
        grpc_channel_credentials *credentials = grpc_insecure_credentials_create();

        f->channel = grpc_channel_create(f->target, credentials, NULL);
        grpc_channel_credentials_release(credentials);
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    grpc_channel_destroy(f->channel);
    znp_grpc_server_destroy(f->server);
    znp_pool_destroy(f->pool);
    grpc_shutdown_blocking();
    free(f);
    return 0;
}

static void server__check_follows_health(void **state)
{
    fixture_t *f = *state;
    grpc_status_code status;

    assert_int_equal(check(f, "", &status), STATUS_SERVING);
    assert_int_equal(check(f, "znp", &status), STATUS_SERVING);

    znp_health_set_database(0);
    assert_int_equal(check(f, "", &status), STATUS_NOT_SERVING);
    znp_health_set_database(1);
    znp_health_set_migrations_current(0);
    assert_int_equal(check(f, "znp", &status), STATUS_NOT_SERVING);
    znp_health_set_migrations_current(1);
    assert_int_equal(check(f, "", &status), STATUS_SERVING);
}

static void server__check_unknown_service_not_found(void **state)
{
    fixture_t *f = *state;
    grpc_status_code status;

    assert_int_equal(check(f, "grpc.health.v1.Health", &status), -1);
    assert_int_equal(status, GRPC_STATUS_NOT_FOUND);
}

static void server__unknown_method_unimplemented(void **state)
{
    fixture_t *f = *state;
    reply_t reply;

    call_unary(f, "/znp.v1.Nothing/Here", NULL, &reply);
    assert_int_equal(reply.status, GRPC_STATUS_UNIMPLEMENTED);
    call_unary(f, "/grpc.health.v1.Health/List", NULL, &reply);
    assert_int_equal(reply.status, GRPC_STATUS_UNIMPLEMENTED);
}

static void server__bridge_error_has_envelope(void **state)
{
    fixture_t *f = *state;
    json_t *envelope;
    reply_t reply;

    /* a pool job without a database connection fails with database_unavailable */
    call_unary(f, "/znp.v1.Auth/Login", NULL, &reply);
    assert_int_equal(reply.status, GRPC_STATUS_UNAVAILABLE);
    assert_string_equal(reply.details, "database is unavailable, retry later");
    envelope = json_loads(reply.error_bin, 0, NULL);
    assert_non_null(envelope);
    assert_string_equal(json_string_value(json_object_get(envelope, "error")), "database_unavailable");
    assert_int_equal(json_integer_value(json_object_get(envelope, "code")), 503001);
    json_decref(envelope);
}

static void server__bridge_bad_message_invalid_argument(void **state)
{
    fixture_t *f = *state;
    const char garbage[] = "\x0a\xff\xff";
    grpc_slice slice = grpc_slice_from_copied_buffer(garbage, sizeof garbage - 1);
    grpc_byte_buffer *request = grpc_raw_byte_buffer_create(&slice, 1);
    json_t *envelope;
    reply_t reply;

    grpc_slice_unref(slice);
    call_unary(f, "/znp.v1.Auth/Login", request, &reply);
    assert_int_equal(reply.status, GRPC_STATUS_INVALID_ARGUMENT);
    envelope = json_loads(reply.error_bin, 0, NULL);
    assert_non_null(envelope);
    assert_string_equal(json_string_value(json_object_get(envelope, "error")), "validation_failed");
    json_decref(envelope);
}

/* a Watch stream: the request is sent and messages are read one batch at a time */
typedef struct watch {
    grpc_completion_queue *cq;
    grpc_call *call;
    grpc_metadata_array initial;
    grpc_metadata_array trailing;
    grpc_status_code status;
    grpc_slice details;
    int tag_start, tag_message, tag_status;
} watch_t;

static void watch_open(fixture_t *f, watch_t *w, const char *service)
{
    grpc_op ops[4];
    grpc_byte_buffer *request = health_request(service);

    memset(w, 0, sizeof *w);
    memset(ops, 0, sizeof ops);
    w->cq = grpc_completion_queue_create_for_pluck(NULL);
    grpc_metadata_array_init(&w->initial);
    grpc_metadata_array_init(&w->trailing);
    w->call = grpc_channel_create_call(f->channel, NULL, GRPC_PROPAGATE_DEFAULTS, w->cq,
                                       grpc_slice_from_static_string("/grpc.health.v1.Health/Watch"), NULL,
                                       seconds_from_now(60), NULL);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &w->initial;
    assert_int_equal(grpc_call_start_batch(w->call, ops, 4, &w->tag_start, NULL), GRPC_CALL_OK);
    assert_true(grpc_completion_queue_pluck(w->cq, &w->tag_start, seconds_from_now(10), NULL).success);
    grpc_byte_buffer_destroy(request);

    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[0].data.recv_status_on_client.trailing_metadata = &w->trailing;
    ops[0].data.recv_status_on_client.status = &w->status;
    ops[0].data.recv_status_on_client.status_details = &w->details;
    assert_int_equal(grpc_call_start_batch(w->call, ops, 1, &w->tag_status, NULL), GRPC_CALL_OK);
}

/* The next streamed status, or -1 when the stream ended. */
static int watch_next(watch_t *w)
{
    grpc_byte_buffer *message = NULL;
    grpc_op op;
    grpc_event ev;
    uint8_t bytes[64];
    size_t len;

    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &message;
    assert_int_equal(grpc_call_start_batch(w->call, &op, 1, &w->tag_message, NULL), GRPC_CALL_OK);
    ev = grpc_completion_queue_pluck(w->cq, &w->tag_message, seconds_from_now(10), NULL);
    assert_int_equal(ev.type, GRPC_OP_COMPLETE);
    if (message == NULL)
        return -1;
    len = read_buffer(message, bytes, sizeof bytes);
    grpc_byte_buffer_destroy(message);
    return health_status_of(bytes, len);
}

/* Wait for the final status of the stream. */
static grpc_status_code watch_close(watch_t *w)
{
    grpc_event ev = grpc_completion_queue_pluck(w->cq, &w->tag_status, seconds_from_now(10), NULL);
    grpc_status_code status = w->status;

    assert_int_equal(ev.type, GRPC_OP_COMPLETE);
    grpc_slice_unref(w->details);
    grpc_metadata_array_destroy(&w->initial);
    grpc_metadata_array_destroy(&w->trailing);
    grpc_call_unref(w->call);
    grpc_completion_queue_shutdown(w->cq);
    grpc_completion_queue_destroy(w->cq);
    return status;
}

static void server__watch_streams_changes(void **state)
{
    fixture_t *f = *state;
    watch_t w, unknown;

    watch_open(f, &w, "");
    watch_open(f, &unknown, "other");
    assert_int_equal(watch_next(&w), STATUS_SERVING);
    assert_int_equal(watch_next(&unknown), STATUS_SERVICE_UNKNOWN);

    znp_health_set_database(0);
    assert_int_equal(watch_next(&w), STATUS_NOT_SERVING);
    /* a setting that leaves the status as it was sends nothing; the next message is the real change */
    znp_health_set_migrations_current(1);
    znp_health_set_database(1);
    assert_int_equal(watch_next(&w), STATUS_SERVING);

    /* destroying the server ends both streams with UNAVAILABLE */
    znp_grpc_server_destroy(f->server);
    f->server = NULL;
    assert_int_equal(watch_next(&w), -1);
    assert_int_equal(watch_close(&w), GRPC_STATUS_UNAVAILABLE);
    assert_int_equal(watch_next(&unknown), -1);
    assert_int_equal(watch_close(&unknown), GRPC_STATUS_UNAVAILABLE);
}

int run_server_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(server__check_follows_health, setup, teardown),
        cmocka_unit_test_setup_teardown(server__check_unknown_service_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(server__unknown_method_unimplemented, setup, teardown),
        cmocka_unit_test_setup_teardown(server__bridge_error_has_envelope, setup, teardown),
        cmocka_unit_test_setup_teardown(server__bridge_bad_message_invalid_argument, setup, teardown),
        cmocka_unit_test_setup_teardown(server__watch_streams_changes, setup, teardown),
    };

    return cmocka_run_group_tests_name("grpc_server", tests, NULL, NULL);
}
