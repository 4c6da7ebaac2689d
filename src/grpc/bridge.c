/*
 * znp's own gRPC services: each znp_grpc_methods entry runs the same
 * operation as its HTTP route. The request message becomes JSON (convert.h);
 * fields that the operation reads from the path or the query string are
 * passed as path parameters or a query string, and the remaining fields form
 * the JSON body. The call then goes through znp_dispatch on a pool worker
 * (or on the completion-queue thread for inline operations), and the JSON
 * result becomes the response message. A failure is sent as the gRPC status
 * from the error catalogue with the localized message, and the same error
 * envelope as the HTTP body goes into the trailing metadata "znp-error-bin".
 *
 * Protection: a call passes the same checks as an HTTP request to the
 * operation's route, using the HTTP server's znp_protect_t. Before the
 * request message is decoded come the admin allow-list (PERMISSION_DENIED,
 * access_denied) and the group's and the operation's per-IP and global
 * buckets. After authentication come the per-user buckets. An empty bucket
 * gives RESOURCE_EXHAUSTED, too_many_requests, and trailing "retry-after".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <grpc/support/alloc.h>

#include "core/dispatch.h"
#include "core/log.h"
#include "core/router.h"
#include "grpc/convert.h"
#include "grpc/internal.h"
#include "security/security.h"
#include "traffic/traffic.h"

/* limit for one call's request arena */
#define ARENA_LIMIT (16u << 20)

typedef struct bridge {
    znp_grpc__unary_t unary; /* first member: its tag is the reply batch's tag */
    znp_job_t job;
    const znp_grpc_method_t *method;
    json_t *request;     /* the request message as JSON; owned */
    char *authorization; /* may be NULL */
    char *user_agent;    /* may be NULL */
    char request_id[ZNP_REQUEST_ID_MAX];
    char client_ip[64];
    znp_ip_t client; /* parsed client_ip; family 0 when the peer is not an IP address */
    znp_route_group_t group;
    znp_locale_t locale;
    znp_error_t error;
} bridge_t;

static int64_t clock_now(void)
{
    return (int64_t)time(NULL);
}

static void release_bridge(znp_grpc__unary_t *unary)
{
    bridge_t *bridge = (bridge_t *)unary;
    znp_grpc_server_t *server = unary->server;

    json_decref(bridge->request);
    free(bridge->authorization);
    free(bridge->user_agent);
    free(bridge);

    pthread_mutex_lock(&server->lock);
    server->bridge_calls--;
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
}

/* ---- call metadata ---- */

static char *metadata_string(const grpc_metadata_array *metadata, const char *key)
{
    const grpc_slice *value = znp_grpc__metadata_find(metadata, key);
    char *text;

    if (value == NULL)
        return NULL;
    text = malloc(GRPC_SLICE_LENGTH(*value) + 1);
    if (text == NULL)
        return NULL;
    memcpy(text, GRPC_SLICE_START_PTR(*value), GRPC_SLICE_LENGTH(*value));
    text[GRPC_SLICE_LENGTH(*value)] = '\0';
    return text;
}

static int request_id_valid(const char *id)
{
    size_t len = strlen(id);

    if (len == 0 || len >= ZNP_REQUEST_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
              c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

/* The client's x-request-id when it is a plain token, else 16 random hex digits. */
static void set_request_id(bridge_t *bridge)
{
    char *client_id = metadata_string(&bridge->unary.in.metadata, "x-request-id");
    unsigned char random[8] = {0};

    if (client_id != NULL && request_id_valid(client_id)) {
        snprintf(bridge->request_id, sizeof bridge->request_id, "%s", client_id);
        free(client_id);
        return;
    }
    free(client_id);
    if (getrandom(random, sizeof random, 0) != (ssize_t)sizeof random) {
        /* NOTE: ids then repeat less rarely, but they only correlate log lines */
        uint64_t fallback = (uint64_t)clock_now() ^ (uint64_t)(uintptr_t)bridge;

        memcpy(random, &fallback, sizeof random);
    }
    for (size_t i = 0; i < sizeof random; i++)
        snprintf(bridge->request_id + 2 * i, 3, "%02x", random[i]);
}

/* Store the peer address without scheme and port: "ipv4:127.0.0.1:5000" -> "127.0.0.1", "ipv6:[::1]:5000" -> "::1". Other forms are kept whole. */
static void set_client_ip(bridge_t *bridge)
{
    char *peer = grpc_call_get_peer(bridge->unary.in.call);
    const char *start = peer;
    size_t len;

    if (peer == NULL)
        return;
    if (strncmp(peer, "ipv4:", 5) == 0 || strncmp(peer, "ipv6:", 5) == 0) {
        const char *colon = strrchr(peer + 5, ':');

        start = peer + 5;
        len = colon != NULL ? (size_t)(colon - start) : strlen(start);
        if (len >= 2 && start[0] == '[' && start[len - 1] == ']') {
            start++;
            len -= 2;
        }
    } else {
        len = strlen(peer);
    }
    if (len >= sizeof bridge->client_ip)
        len = sizeof bridge->client_ip - 1;
    memcpy(bridge->client_ip, start, len);
    bridge->client_ip[len] = '\0';
    gpr_free(peer);
    /*
     * The socket peer is the client: server.trusted_proxies does not apply,
     * because gRPC calls carry no X-Forwarded-For or Forwarded header to
     * walk. A peer that is not an IP address keeps family 0, which no
     * allow-list contains.
     */
    if (znp_ip_parse(&bridge->client, bridge->client_ip, strlen(bridge->client_ip)) != 0)
        memset(&bridge->client, 0, sizeof bridge->client);
}

/* ---- request message -> znp_call_t ---- */

/* Text form of a scalar JSON value for a path or query parameter (arena memory), or NULL. */
static const char *parameter_text(json_t *value, znp_arena_t *arena)
{
    switch (json_typeof(value)) {
    case JSON_STRING:
        return znp_arena_strdup(arena, json_string_value(value));
    case JSON_INTEGER:
        return znp_arena_printf(arena, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    case JSON_REAL:
        return znp_arena_printf(arena, "%.17g", json_real_value(value));
    case JSON_TRUE:
        return "true";
    case JSON_FALSE:
        return "false";
    default:
        return NULL;
    }
}

/* Append name=value, form-encoded, to the query string being built in `out`. */
static void append_query(FILE *out, const char *name, const char *value)
{
    const char *parts[2] = {name, value};

    if (ftell(out) > 0)
        fputc('&', out);
    for (int part = 0; part < 2; part++) {
        if (part == 1)
            fputc('=', out);
        for (const unsigned char *p = (const unsigned char *)parts[part]; *p != '\0'; p++) {
            if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
                *p == '.' || *p == '_' || *p == '~')
                fputc(*p, out);
            else
                fprintf(out, "%%%02X", *p);
        }
    }
}

/*
 * Move the request fields that `schema` reads from the path or the query
 * string out of `request` into `call`; what is left is the body. Strings
 * live in `arena`, except *query_out, which the caller frees.
 */
static int split_request(znp_call_t *call, char **query_out, json_t *request, const znp_schema_t *schema,
                         znp_arena_t *arena, znp_error_t *err)
{
    znp_param_t *params = NULL;
    size_t param_count = 0;
    char *query = NULL;
    size_t query_len = 0;
    FILE *query_stream = NULL;
    int rc = 0;

    *query_out = NULL;
    if (schema == NULL || schema->field_count == 0)
        return 0;

    params = znp_arena_alloc(arena, schema->field_count * sizeof *params);
    query_stream = open_memstream(&query, &query_len);
    if (params == NULL || query_stream == NULL) {
        rc = znp_error_set(err, ZNP_E_INTERNAL, NULL, "out of memory");
        goto cleanup;
    }

    for (size_t i = 0; i < schema->field_count; i++) {
        const znp_field_t *field = &schema->fields[i];
        json_t *value = json_object_get(request, field->name);
        const char *text;

        if (field->in == ZNP_IN_BODY || value == NULL)
            continue;

        if (field->in == ZNP_IN_QUERY && json_is_array(value)) {
            size_t index;
            json_t *item;

            json_array_foreach(value, index, item)
            {
                text = parameter_text(item, arena);
                if (text == NULL) {
                    rc = znp_error_set(err, ZNP_E_VALIDATION_FAILED, field->name, "must be a list of scalars");
                    goto cleanup;
                }
                append_query(query_stream, field->name, text);
            }
        } else {
            text = parameter_text(value, arena);
            if (text == NULL) {
                rc = znp_error_set(err, ZNP_E_VALIDATION_FAILED, field->name, "must be a scalar");
                goto cleanup;
            }
            if (field->in == ZNP_IN_PATH) {
                params[param_count].name = field->name;
                params[param_count].value = text;
                param_count++;
            } else {
                append_query(query_stream, field->name, text);
            }
        }
        json_object_del(request, field->name);
    }

    if (fclose(query_stream) != 0) {
        query_stream = NULL;
        rc = znp_error_set(err, ZNP_E_INTERNAL, NULL, "out of memory");
        goto cleanup;
    }
    query_stream = NULL;
    call->path_params = params;
    call->path_param_count = param_count;
    if (query_len > 0) {
        call->query = query;
        call->query_len = query_len;
        *query_out = query;
        query = NULL;
    }

cleanup:
    if (query_stream != NULL)
        fclose(query_stream);
    free(query);
    return rc;
}

/* ---- protection ---- */

/* The route group of the operation's HTTP route; the template decides, as in the HTTP guard. */
static znp_route_group_t operation_group(const znp_operation_t *op)
{
    for (size_t i = 0; i < znp_route_count; i++) {
        if (znp_routes[i].operation == op)
            return znp_protect_group_of(znp_routes[i].path, strlen(znp_routes[i].path), "{admin}");
    }
    return op->security == ZNP_SEC_ADMIN ? ZNP_GROUP_ADMIN : ZNP_GROUP_PUBLIC;
}

/*
 * The checks an HTTP request gets before routing and after it, on the CQ
 * thread (in-memory buckets behind short per-shard locks, nothing blocks).
 * Returns 0 or a negative znp_err with bridge->error (and its retry_after) set.
 */
static int admit_call(bridge_t *bridge)
{
    znp_protect_t *protect = bridge->unary.server->protect;
    const znp_operation_t *op = bridge->method->operation;
    znp_rate_verdict_t verdict;
    int rc;

    bridge->group = operation_group(op);
    if (protect == NULL)
        return 0;

    /* checked first, as for HTTP, so no admin operation responds to an address outside the list */
    if (bridge->group == ZNP_GROUP_ADMIN && protect->admin_allow.count > 0 &&
        !znp_cidr_list_contains(&protect->admin_allow, &bridge->client))
        return znp_error_set(&bridge->error, ZNP_E_ACCESS_DENIED, NULL, NULL);

    memset(&verdict, 0, sizeof verdict);
    rc = znp_protect_admit_request(protect, bridge->group, &bridge->client, &verdict);
    if (rc == 0) {
        memset(&verdict, 0, sizeof verdict);
        rc = znp_protect_admit_operation(protect, (size_t)(op - znp_operations), op->rate_limit, &bridge->client,
                                         &verdict);
    }
    if (rc != 0) {
        znp_error_set(&bridge->error, rc, NULL, NULL);
        if (rc == ZNP_E_TOO_MANY_REQUESTS)
            bridge->error.retry_after = (int)verdict.retry_after_s;
    }
    return rc;
}

/* ctx->admit: take from the per-user buckets after znp_dispatch has authenticated the caller. */
static int admit_user(znp_ctx_t *ctx, const znp_operation_t *op)
{
    bridge_t *bridge = ctx->admit_data;
    znp_protect_t *protect = bridge->unary.server->protect;
    znp_rate_verdict_t verdict;
    int rc;

    if (protect == NULL)
        return 0;
    memset(&verdict, 0, sizeof verdict);
    rc = znp_protect_admit_user(protect, bridge->group, (size_t)(op - znp_operations), op->rate_limit,
                                ctx->caller.user_id, &verdict);
    if (rc == ZNP_E_TOO_MANY_REQUESTS) {
        znp_error_set(ctx->err, rc, NULL, NULL);
        ctx->err->retry_after = (int)verdict.retry_after_s;
    }
    return rc;
}

/* ---- running the operation ---- */

static void log_call(const bridge_t *bridge, int code)
{
    if (bridge->unary.server->config->log.access_log)
        ZNP_INFO(ZNP_GRPC_LOG_TAG, bridge->request_id, "grpc call method=%s code=%d client=%s duration_ms=%.1f",
                 bridge->method->path, code, bridge->client_ip, znp_grpc__elapsed(&bridge->unary.in.started) * 1e3);
}

static void respond_error(bridge_t *bridge, int rc, const znp_error_t *detail)
{
    const znp_error_info_t *info = znp_error_info(rc);
    json_t *envelope = znp_dispatch_error_body(rc, detail, bridge->locale, bridge->request_id);
    char *text = envelope != NULL ? json_dumps(envelope, JSON_COMPACT) : NULL;

    if (detail != NULL && detail->retry_after > 0)
        bridge->unary.retry_after_s = (uint32_t)detail->retry_after;
    if (info->http_status >= 500 && rc != ZNP_E_DATABASE_UNAVAILABLE && rc != ZNP_E_SHUTTING_DOWN &&
        rc != ZNP_E_OVERLOADED)
        ZNP_ERROR(ZNP_GRPC_LOG_TAG, bridge->request_id, "call failed: method=%s error=%s detail=\"%s\"",
                  bridge->method->path, info->key, detail != NULL ? detail->detail : "");
    log_call(bridge, info->grpc_status);
    znp_grpc__unary_finish(&bridge->unary, (grpc_status_code)info->grpc_status, znp_error_message(rc, bridge->locale),
                           NULL, 0, text, bridge->request_id);
    free(text);
    json_decref(envelope);
}

/* Convert the operation's JSON result (NULL for no content) into the response message and send it. */
static void respond_ok(bridge_t *bridge, json_t *result)
{
    ProtobufCMessage *message = NULL;
    json_t *empty = NULL;
    uint8_t *bytes = NULL;
    size_t len;
    int rc;

    if (result == NULL)
        result = empty = json_object();
    rc = znp_grpc_message_parse(&message, bridge->method->response, result, &bridge->error);
    if (rc == 0) {
        len = protobuf_c_message_get_packed_size(message);
        bytes = malloc(len > 0 ? len : 1);
        if (bytes == NULL)
            rc = znp_error_set(&bridge->error, ZNP_E_INTERNAL, NULL, "out of memory");
    }
    if (rc != 0) {
        ZNP_ERROR(ZNP_GRPC_LOG_TAG, bridge->request_id, "could not convert the result into %s: path=%s detail=\"%s\"",
                  bridge->method->response->name, bridge->error.path, bridge->error.detail);
        znp_error_clear(&bridge->error);
        respond_error(bridge, ZNP_E_INTERNAL, NULL);
        goto cleanup;
    }

    protobuf_c_message_pack(message, bytes);
    log_call(bridge, GRPC_STATUS_OK);
    znp_grpc__unary_finish(&bridge->unary, GRPC_STATUS_OK, NULL, bytes, len, NULL, bridge->request_id);

cleanup:
    free(bytes);
    protobuf_c_message_free_unpacked(message, NULL);
    json_decref(empty);
}

/* Dispatch the call with `db` (NULL on the CQ thread for inline operations, or when the database is down). */
static void execute(bridge_t *bridge, PGconn *db)
{
    const znp_operation_t *op = bridge->method->operation;
    znp_arena_t arena;
    znp_call_t call;
    znp_ctx_t ctx;
    json_t *result = NULL;
    char *query = NULL;
    char *body = NULL;
    int rc;

    znp_arena_init(&arena, ARENA_LIMIT);
    memset(&call, 0, sizeof call);
    memset(&ctx, 0, sizeof ctx);
    ctx.db = db;
    ctx.config = bridge->unary.server->config;
    ctx.locale = bridge->locale;
    ctx.arena = &arena;
    ctx.err = &bridge->error;
    ctx.request_id = bridge->request_id;
    ctx.client_ip = bridge->client_ip;
    ctx.user_agent = bridge->user_agent;
    ctx.now = clock_now;
    ctx.verify = znp_security_verify_unsigned; /* gRPC carries no signature: signed route groups refuse it */
    if (strcmp(op->tag, ZNP_TRAFFIC_KERNEL_TAG) == 0)
        ctx.verify = znp_traffic_verify_node_token; /* kernels authenticate with their node token */
    ctx.admit = admit_user;
    ctx.admit_data = bridge;

    if (db == NULL && !(op->flags & ZNP_OP_INLINE)) {
        rc = znp_error_set(&bridge->error, ZNP_E_DATABASE_UNAVAILABLE, NULL, NULL);
        goto cleanup;
    }

    rc = split_request(&call, &query, bridge->request, op->request, &arena, &bridge->error);
    if (rc != 0)
        goto cleanup;
    body = json_dumps(bridge->request, JSON_COMPACT);
    if (body == NULL) {
        rc = znp_error_set(&bridge->error, ZNP_E_INTERNAL, NULL, "out of memory");
        goto cleanup;
    }
    call.body = body;
    call.body_len = strlen(body);
    call.authorization = bridge->authorization;

    rc = znp_dispatch(&ctx, op, &call, &result);

cleanup:
    if (rc == 0)
        respond_ok(bridge, result);
    else
        respond_error(bridge, rc, &bridge->error);
    json_decref(result);
    free(body);
    free(query);
    znp_arena_dispose(&arena);
}

static void run_job(znp_job_t *job, PGconn *db)
{
    bridge_t *bridge = (bridge_t *)((char *)job - offsetof(bridge_t, job));

    execute(bridge, db);
}

/* ---- entry point on the completion-queue thread ---- */

/* Decode the request message into bridge->request. Returns 0 or a negative znp_err with bridge->error set. */
static int read_request(bridge_t *bridge)
{
    grpc_slice slice = znp_grpc__payload_slice(bridge->unary.in.payload);
    ProtobufCMessage *message;
    int rc;

    message =
        protobuf_c_message_unpack(bridge->method->request, NULL, GRPC_SLICE_LENGTH(slice), GRPC_SLICE_START_PTR(slice));
    grpc_slice_unref(slice);
    if (message == NULL)
        return znp_error_set(&bridge->error, ZNP_E_VALIDATION_FAILED, "$", "is not a valid %s message",
                             bridge->method->request->name);
    rc = znp_grpc_message_emit(&bridge->request, message, &bridge->error);
    protobuf_c_message_free_unpacked(message, NULL);
    return rc;
}

void znp_grpc__bridge_call(znp_grpc_server_t *server, size_t index, znp_grpc__incoming_t *in)
{
    bridge_t *bridge = calloc(1, sizeof *bridge);
    char *accept_language;
    int rc;

    if (bridge == NULL) {
        grpc_call_cancel_with_status(in->call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL);
        grpc_call_unref(in->call);
        grpc_metadata_array_destroy(&in->metadata);
        grpc_byte_buffer_destroy(in->payload);
        return;
    }
    znp_grpc__unary_init(&bridge->unary, server, in, release_bridge);
    pthread_mutex_lock(&server->lock);
    server->bridge_calls++;
    pthread_mutex_unlock(&server->lock);

    bridge->method = &znp_grpc_methods[index];
    bridge->job.run = run_job;
    set_request_id(bridge);
    set_client_ip(bridge);
    bridge->authorization = metadata_string(&bridge->unary.in.metadata, "authorization");
    bridge->user_agent = metadata_string(&bridge->unary.in.metadata, "user-agent");
    accept_language = metadata_string(&bridge->unary.in.metadata, "accept-language");
    bridge->locale = znp_locale_from_header(accept_language, accept_language != NULL ? strlen(accept_language) : 0,
                                            server->default_locale);
    free(accept_language);

    rc = admit_call(bridge);
    if (rc == 0)
        rc = read_request(bridge);
    if (rc != 0) {
        respond_error(bridge, rc, &bridge->error);
        return;
    }

    if (bridge->method->operation->flags & ZNP_OP_INLINE) {
        execute(bridge, NULL);
        return;
    }
    rc = znp_pool_submit(server->pool, &bridge->job);
    if (rc != 0) {
        znp_error_set(&bridge->error, rc, NULL, NULL);
        respond_error(bridge, rc, &bridge->error);
    }
}
