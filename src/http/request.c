/*
 * The request pipeline, on the event-loop thread. It assigns the request id
 * and locale, checks the size limits and serves the special paths
 * (/openapi.json, /metrics, /docs). Then it routes the request and either
 * runs an inline operation right here or hands a job to the worker pool,
 * whose response comes back through the loop's mailbox.
 *
 * Every request that reaches a handler gets a znp_http_request_t, installed
 * as an h2o prefilter: h2o calls it when the response starts (it adds
 * x-request-id to every response, also those of the file handler) and the
 * access logger finds it again when the request ends.
 */
#include "http/internal.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "core/arena.h"
#include "core/dispatch.h"
#include "core/log.h"
#include "core/router.h"
#include "core/stream.h"
#include "core/warm.h"
#include "openapi.gen.h"
#include "runtime/health.h"
#include "runtime/metrics.h"
#include "runtime/pool.h"
#include "security/security.h"
#include "traffic/traffic.h"

#define LOG_MODULE               "http"
#define LOG_PATH_MAX             128 /* input bytes of a path written to the access log */
#define DATABASE_RETRY_AFTER_S   5   /* Retry-After on 503 database_unavailable */
#define OVERLOADED_RETRY_AFTER_S 1   /* Retry-After on 503 overloaded */
#define ARENA_FLOOR_BYTES        (16u << 20)

static const char json_content_type[] = "application/json; charset=utf-8";
static const char metrics_content_type[] = "text/plain; version=0.0.4; charset=utf-8";

struct znp_http_request {
    h2o_req_prefilter_t super;
    znp_http_loop_t *loop;
    const char *route; /* metrics label: a route template, a special path or "unmatched"; static */
    znp_locale_t locale;
    uint64_t started_ns; /* CLOCK_MONOTONIC when the handler received the complete request */
    char request_id[ZNP_REQUEST_ID_MAX + 1];
    znp_http_guard_t guard; /* client IP, CORS and rate limit state (guard.c) */
};

struct http_job;

/* the request headers of the signed third-party API (security/security.h) */
/* the signed third-party API headers, then the webhook headers of kernel callbacks */
enum { SIGNED_HEADER_COUNT = 9 };
static const char *const signed_header_names[SIGNED_HEADER_COUNT] = {
    "x-znp-api-key", "x-znp-timestamp", "x-znp-nonce", "x-znp-signature", "x-znp-encrypted", "x-znp-iv",
    "x-znp-webhook-token", "x-znp-webhook-signature", "stripe-signature",
};

/* lives in the request's pool and marks the job when its request ends */
typedef struct job_guard {
    struct http_job *job;
} job_guard_t;

/* A request handed to the pool: a copy of everything the operation needs, so the request may end meanwhile. */
typedef struct http_job {
    znp_job_t super;
    znp_http_reply_t message;    /* kind ZNP_HTTP_REPLY_JOB */
    znp_http_mailbox_t *mailbox; /* one reference, dropped by the worker */
    const znp_config_t *config;

    /* event-loop thread only */
    h2o_linklist_t link; /* in loop->jobs until the response is sent */
    h2o_req_t *req;      /* NULL once the request ended or got its response */
    job_guard_t *guard;

    /* input */
    const znp_operation_t *op;
    znp_locale_t locale;
    size_t param_count;
    znp_param_t params[ZNP_ROUTER_MAX_PARAMS];
    const char *query;
    size_t query_len;
    const char *body;
    size_t body_len;
    const char *authorization;
    const char *user_agent;
    const char *accept;        /* Accept, If-None-Match and Accept-Encoding, for ZNP_OP_STREAM operations */
    const char *if_none_match;
    const char *accept_encoding;
    const char *report_id;     /* X-Report-Id, for ZNP_OP_STREAM operations */
    char client_ip[INET6_ADDRSTRLEN];
    char request_id[ZNP_REQUEST_ID_MAX + 1];
    znp_protect_t *protect; /* per-user rate limits after authentication */
    znp_route_group_t group;
    const char *method; /* for the signed third-party API check */
    const char *path;
    size_t path_len;
    const char *signed_headers[SIGNED_HEADER_COUNT]; /* in the order of signed_header_names, NULL when absent */

    /* output, written by the worker */
    int status;
    int retry_after;
    znp_rate_verdict_t rate; /* per-user bucket taken from, for the RateLimit-* headers */
    char *response;          /* malloc'd; NULL for 204 */
    size_t response_len;
    char *content_type; /* malloc'd; NULL = JSON */
    char *filename;     /* malloc'd attachment name, or NULL */
    char *headers;      /* malloc'd extra headers of a non-JSON body (name NUL value NUL ...), or NULL */
    size_t headers_len;

    char storage[]; /* parameter values, query, body and header copies */
} http_job_t;

/* a response ready to send */
typedef struct outcome {
    int status;
    int retry_after; /* seconds, 0 for none */
    char *body;      /* malloc'd, NULL when there is no body */
    size_t len;
} outcome_t;

static uint64_t monotonic_ns(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/*
 * The wall-clock second. Not time(NULL): Linux serves that from the coarse
 * clock, which runs up to one scheduler tick behind, so a response made early
 * in a second would still carry the one before.
 */
static int64_t clock_seconds(void)
{
    struct timespec now;

    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec;
}

/* splitmix64 seeded per thread from getrandom(); request ids need uniqueness, not secrecy */
static uint64_t next_random(void)
{
    static __thread uint64_t state;
    uint64_t z;

    if (state == 0) {
        if (getrandom(&state, sizeof(state), 0) != sizeof(state))
            state = monotonic_ns() ^ (uint64_t)(uintptr_t)&state;
        state |= 1;
    }
    z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int valid_request_id(const char *s, size_t len)
{
    if (len == 0 || len > ZNP_REQUEST_ID_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

/* The client's X-Request-Id when it is 1..64 characters of [A-Za-z0-9._-], else 16 random hex digits. */
static void assign_request_id(char out[ZNP_REQUEST_ID_MAX + 1], h2o_req_t *req)
{
    static const char hex[] = "0123456789abcdef";
    ssize_t index = h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-request-id"), -1);
    uint64_t bits;

    if (index != -1) {
        h2o_iovec_t value = req->headers.entries[index].value;

        if (valid_request_id(value.base, value.len)) {
            memcpy(out, value.base, value.len);
            out[value.len] = '\0';
            return;
        }
    }
    bits = next_random();
    for (int i = 0; i < 16; i++)
        out[i] = hex[(bits >> (60 - 4 * i)) & 0xf];
    out[16] = '\0';
}

static znp_locale_t request_locale(h2o_req_t *req, znp_locale_t fallback)
{
    ssize_t index = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT_LANGUAGE, -1);

    if (index == -1)
        return fallback;
    return znp_locale_from_header(req->headers.entries[index].value.base, req->headers.entries[index].value.len,
                                  fallback);
}

static const struct {
    int status;
    const char *reason;
} reason_phrases[] = {
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {301, "Moved Permanently"},
    {304, "Not Modified"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {402, "Payment Required"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {409, "Conflict"},
    {410, "Gone"},
    {413, "Content Too Large"},
    {414, "URI Too Long"},
    {415, "Unsupported Media Type"},
    {422, "Unprocessable Content"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
};

/* HTTP/1.1 reason phrase; HTTP/2 sends none */
static const char *reason_phrase(int status)
{
    for (size_t i = 0; i < sizeof(reason_phrases) / sizeof(reason_phrases[0]); i++) {
        if (reason_phrases[i].status == status)
            return reason_phrases[i].reason;
    }
    return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
}

static int is_head(h2o_req_t *req)
{
    return h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
}

static int is_get_or_head(h2o_req_t *req)
{
    return h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) || is_head(req);
}

/* metrics label for the method; the metrics module folds anything else into OTHER */
static const char *method_label(h2o_iovec_t method)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (h2o_memis(method.base, method.len, known[i], strlen(known[i])))
            return known[i];
    }
    return "OTHER";
}

static void free_holder(void *holder)
{
    free(*(char **)holder);
}

/* Hand a malloc'd buffer to the request's pool, which frees it when the request ends. */
static void attach_buffer(h2o_req_t *req, char *buffer)
{
    char **holder = h2o_mem_alloc_shared(&req->pool, sizeof(*holder), free_holder);

    *holder = buffer;
}

/* `name` is lowercase. A name in h2o's token table is added as that token, which HPACK sends as a static-table index. */
static void add_header(h2o_req_t *req, const char *name, size_t name_len, const char *value, size_t value_len)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, name_len, 1, NULL, value, value_len);
}

/* Send `body` (static, or owned by the request's pool) with the given status and content type. */
void znp_http__send_body(h2o_req_t *req, int status, const char *content_type, h2o_iovec_t body)
{
    static h2o_generator_t generator = {NULL, NULL};

    req->res.status = status;
    req->res.reason = reason_phrase(status);
    if (status == 204 || status == 304) {
        req->res.content_length = SIZE_MAX; /* 204 and 304 carry neither a body nor Content-Length */
    } else {
        req->res.content_length = body.len;
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    }
    h2o_start_response(req, &generator);
    if (status == 204 || status == 304 || is_head(req) || body.len == 0)
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
}

/* Send a JSON response, taking ownership of outcome->body. */
static void send_outcome(h2o_req_t *req, outcome_t *outcome, const char *allow)
{
    h2o_iovec_t body = h2o_iovec_init(outcome->body, outcome->len);

    if (outcome->body != NULL) {
        attach_buffer(req, outcome->body);
        outcome->body = NULL;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    if (outcome->retry_after > 0) {
        char *value = h2o_mem_alloc_pool(&req->pool, 16);
        int len = snprintf(value, 16, "%d", outcome->retry_after);

        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, value, (size_t)len);
    }
    if (allow != NULL && allow[0] != '\0') {
        h2o_iovec_t value = h2o_strdup(&req->pool, allow, SIZE_MAX);

        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, value.base, value.len);
    }
    znp_http__send_body(req, outcome->status, json_content_type, body);
}

/* Send a body an operation wrote through ctx->stream, taking ownership of outcome->body. */
static void send_stream_outcome(h2o_req_t *req, outcome_t *outcome, const char *content_type, const char *filename,
                                const char *headers, size_t headers_len)
{
    h2o_iovec_t body = h2o_iovec_init(outcome->body, outcome->len);
    h2o_iovec_t type = h2o_strdup(&req->pool, content_type, SIZE_MAX);

    if (outcome->body != NULL) {
        attach_buffer(req, outcome->body);
        outcome->body = NULL;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    if (filename != NULL) {
        h2o_iovec_t value = znp_http__attachment_header(req, filename);

        add_header(req, H2O_STRLIT("content-disposition"), value.base, value.len);
    }
    znp_http__add_stream_headers(req, headers, headers_len);
    znp_http__send_body(req, outcome->status, type.base, body);
}

/*
 * Render a dispatch result: the operation's JSON (`response`, may be NULL for
 * 204) when rc is 0, else the error envelope for rc. Runs on any thread.
 */
static void render_outcome(outcome_t *out, int rc, json_t *response, int success_status, const znp_error_t *err,
                           znp_locale_t locale, const char *request_id)
{
    static const char fallback[] = "{\"code\":500000,\"error\":\"internal\",\"message\":\"internal server error\"}";
    json_t *envelope = NULL;
    json_t *document = response;
    size_t len;

    memset(out, 0, sizeof(*out));
    if (rc == 0) {
        out->status = success_status;
    } else {
        envelope = znp_dispatch_error_body(rc, err, locale, request_id);
        document = envelope;
        out->status = znp_error_info(rc)->http_status;
        out->retry_after = err != NULL ? err->retry_after : 0;
        if (rc == ZNP_E_DATABASE_UNAVAILABLE && out->retry_after <= 0)
            out->retry_after = DATABASE_RETRY_AFTER_S;
        else if (rc == ZNP_E_OVERLOADED && out->retry_after <= 0)
            out->retry_after = OVERLOADED_RETRY_AFTER_S;
    }
    if (out->status == 204 || (rc == 0 && document == NULL))
        goto cleanup;

    len = document != NULL ? json_dumpb(document, NULL, 0, JSON_COMPACT) : 0;
    out->body = len > 0 ? malloc(len) : NULL;
    if (out->body != NULL && json_dumpb(document, out->body, len, JSON_COMPACT) == len) {
        out->len = len;
        goto cleanup;
    }

    /* out of memory, or a document jansson cannot encode */
    free(out->body);
    out->status = 500;
    out->retry_after = 0;
    out->len = sizeof(fallback) - 1;
    out->body = malloc(out->len);
    if (out->body != NULL)
        memcpy(out->body, fallback, out->len);
    else
        out->len = 0;

cleanup:
    json_decref(envelope);
}

/* Send the error envelope for `err` (a negative znp_err_t) with its catalogue status. */
static void send_error_detail(h2o_req_t *req, znp_http_request_t *state, int err, const znp_error_t *detail,
                              const char *allow)
{
    outcome_t outcome;

    render_outcome(&outcome, err, NULL, 0, detail, state->locale, state->request_id);
    send_outcome(req, &outcome, allow);
}

void znp_http__send_error(h2o_req_t *req, znp_http_request_t *state, int err, const char *allow)
{
    send_error_detail(req, state, err, NULL, allow);
}

static void on_request_setup_ostream(h2o_req_prefilter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    znp_http_request_t *state = (znp_http_request_t *)self;

    /* not in h2o's token table, so no lookup */
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, state->request_id,
                          strlen(state->request_id));
    znp_http__guard_headers(req, state->loop->server, &state->guard);
    h2o_setup_next_prefilter(self, req, slot);
}

static znp_http_request_t *find_request_state(h2o_req_t *req)
{
    for (h2o_req_prefilter_t *p = req->prefilters; p != NULL; p = p->next) {
        if (p->on_setup_ostream == on_request_setup_ostream)
            return (znp_http_request_t *)p;
    }
    return NULL;
}

static h2o_iovec_t target_path(h2o_req_t *req);

znp_http_request_t *znp_http__begin_request(h2o_req_t *req, const char *route, uint64_t started_ns)
{
    znp_http_loop_t *loop = znp_http__loop_of(req);
    znp_http_server_t *server = loop->server;
    znp_http_request_t *state = (znp_http_request_t *)h2o_add_prefilter(req, sizeof(*state));

    state->super.on_setup_ostream = on_request_setup_ostream;
    /* room for the usual response headers: on the way to 16, h2o would allocate the list three times and copy it twice */
    h2o_vector_reserve(&req->pool, &req->res.headers, 16);
    state->loop = loop;
    state->route = route;
    state->locale = request_locale(req, server->default_locale);
    state->started_ns = started_ns != 0 ? started_ns : monotonic_ns();
    assign_request_id(state->request_id, req);
    znp_http__guard_init(&state->guard, req, server, target_path(req));

    atomic_fetch_add(&server->in_flight, 1);
    znp_metrics_http_in_flight_add(1);
    /* while draining, HTTP/1 connections close after their current response */
    if (atomic_load_explicit(&server->draining, memory_order_relaxed))
        req->http1_is_persistent = 0;
    return state;
}

/*
 * 414 and 431 for what h2o let through, and 413 for bodies over ours. h2o
 * 2.2.5 rejects larger heads itself before any handler runs: an HTTP/1 head
 * over H2O_MAX_REQLEN (8 KiB + 100 x 4 KiB) or with more than 100 header
 * fields gets a plain-text 400 and the connection is closed. An HTTP/2
 * header block over H2O_MAX_REQLEN gets RST_STREAM (REFUSED_STREAM).
 */
static int check_limits(const znp_http_server_t *server, h2o_req_t *req)
{
    const znp_config_server_t *limits = &server->config->server;

    if (limits->max_uri_bytes > 0 && req->input.path.len > limits->max_uri_bytes)
        return ZNP_E_URI_TOO_LONG;
    if (limits->max_header_bytes > 0) {
        size_t total = req->input.authority.len;

        for (size_t i = 0; i < req->headers.size; i++)
            total += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4; /* ": " and CRLF */
        if (total > limits->max_header_bytes)
            return ZNP_E_HEADER_TOO_LARGE;
    }
    if (req->entity.base != NULL && req->entity.len > server->max_body_bytes)
        return ZNP_E_BODY_TOO_LARGE;
    return 0;
}

/* Whether Content-Type is application/json, parameters (charset) allowed. */
static int is_json_content_type(h2o_req_t *req)
{
    static const char json[] = "application/json";
    ssize_t index = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    const char *value;
    size_t len;

    if (index == -1)
        return 0;
    value = req->headers.entries[index].value.base;
    len = req->headers.entries[index].value.len;
    while (len > 0 && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    if (len < sizeof(json) - 1 || strncasecmp(value, json, sizeof(json) - 1) != 0)
        return 0;
    return len == sizeof(json) - 1 || value[sizeof(json) - 1] == ';' || value[sizeof(json) - 1] == ' ' ||
           value[sizeof(json) - 1] == '\t';
}

/* NUL-terminated copy of header `token` in the request pool, or NULL when absent. */
static const char *header_string(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t index = h2o_find_header(&req->headers, token, -1);

    if (index == -1)
        return NULL;
    return h2o_strdup(&req->pool, req->headers.entries[index].value.base, req->headers.entries[index].value.len).base;
}

static size_t arena_limit(const znp_http_server_t *server)
{
    return server->max_body_bytes * 4 + ARENA_FLOOR_BYTES;
}

static h2o_iovec_t query_of(h2o_req_t *req)
{
    if (req->query_at == SIZE_MAX)
        return h2o_iovec_init(NULL, 0);
    return h2o_iovec_init(req->path.base + req->query_at + 1, req->path.len - req->query_at - 1);
}

/* The cache slot of `op` on this loop when its answer may be reused, else NULL. */
static znp_http_cached_answer_t *cached_answer_slot(znp_http_loop_t *loop, const znp_operation_t *op)
{
    if (op->cache_seconds == 0 || loop->answers == NULL)
        return NULL;
    return &loop->answers[op - znp_operations];
}

/* Send the cached answer of `slot` if it belongs to the current window and epoch; 1 when sent. */
static int send_cached_answer(h2o_req_t *req, const znp_operation_t *op, znp_http_cached_answer_t *slot)
{
    int64_t window = clock_seconds() / (int64_t)op->cache_seconds;
    char *copy;

    if (slot->body == NULL || slot->window != window || slot->epoch != znp_dispatch_cache_epoch())
        return 0;
    /* a copy, because h2o may still be writing this response when the slot is replaced */
    copy = h2o_mem_alloc_pool(&req->pool, slot->len);
    memcpy(copy, slot->body, slot->len);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    znp_http__send_body(req, op->success_status, json_content_type, h2o_iovec_init(copy, slot->len));
    return 1;
}

/* Keep a successful answer for later requests in the same window. */
static void store_cached_answer(znp_http_cached_answer_t *slot, unsigned long epoch, int64_t window,
                                const outcome_t *outcome)
{
    char *body = malloc(outcome->len);

    if (body == NULL)
        return;
    memcpy(body, outcome->body, outcome->len);
    free(slot->body);
    slot->body = body;
    slot->len = outcome->len;
    slot->window = window;
    slot->epoch = epoch;
}

/* Run an operation marked x-znp-inline on this loop thread, without a database connection. */
static void run_inline(h2o_req_t *req, znp_http_request_t *state, const znp_route_match_t *match)
{
    znp_http_server_t *server = state->loop->server;
    const znp_operation_t *op = match->route->operation;
    h2o_iovec_t query = query_of(req);
    znp_arena_t arena;
    znp_error_t err;
    json_t *response = NULL;
    outcome_t outcome;
    znp_http_cached_answer_t *slot = cached_answer_slot(state->loop, op);
    /* read before running, so an invalidation during the run makes the stored answer stale */
    unsigned long epoch = znp_dispatch_cache_epoch();
    int64_t window = op->cache_seconds != 0 ? clock_seconds() / (int64_t)op->cache_seconds : 0;
    int rc;

    if (slot != NULL && send_cached_answer(req, op, slot))
        return;
    memset(&err, 0, sizeof(err));
    znp_arena_init(&arena, arena_limit(server));

    znp_ctx_t ctx = {
        .db = NULL,
        .config = server->config,
        .locale = state->locale,
        .arena = &arena,
        .err = &err,
        .request_id = state->request_id,
        .client_ip = state->guard.client_text,
        .user_agent = header_string(req, H2O_TOKEN_USER_AGENT),
        .now = clock_seconds,
    };
    znp_call_t call = {
        .path_params = match->params,
        .path_param_count = match->param_count,
        .query = query.base,
        .query_len = query.len,
        .body = req->entity.base,
        .body_len = req->entity.base != NULL ? req->entity.len : 0,
        .authorization = header_string(req, H2O_TOKEN_AUTHORIZATION),
    };
    rc = znp_dispatch(&ctx, op, &call, &response);
    render_outcome(&outcome, rc, response, op->success_status, &err, state->locale, state->request_id);
    json_decref(response);
    znp_arena_dispose(&arena);
    if (slot != NULL && rc == 0 && outcome.body != NULL)
        store_cached_answer(slot, epoch, window, &outcome);
    send_outcome(req, &outcome, NULL);
}

static void free_job(http_job_t *job)
{
    free(job->response);
    free(job->content_type);
    free(job->filename);
    free(job->headers);
    free(job);
}

h2o_req_t *znp_http__job_take_request(void *data)
{
    http_job_t *job = data;
    h2o_req_t *req = job->req;

    if (req == NULL)
        return NULL;
    job->guard->job = NULL;
    job->guard = NULL;
    job->req = NULL;
    if (h2o_linklist_is_linked(&job->link))
        h2o_linklist_unlink(&job->link);
    return req;
}

void znp_http__mailbox_release(znp_http_mailbox_t *mailbox)
{
    if (atomic_fetch_sub(&mailbox->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&mailbox->lock);
    free(mailbox);
}

/* ctx->admit of worker jobs: the per-user buckets, once znp_dispatch knows the caller. */
static int admit_user(znp_ctx_t *ctx, const znp_operation_t *op)
{
    http_job_t *job = ctx->admit_data;
    znp_rate_verdict_t verdict;
    int rc;

    if (job->protect == NULL)
        return 0;
    memset(&verdict, 0, sizeof(verdict));
    rc = znp_protect_admit_user(job->protect, job->group, (size_t)(op - znp_operations), op->rate_limit,
                                ctx->caller.user_id, &verdict);
    znp_http__guard_merge_rate(&job->rate, &verdict);
    if (rc == ZNP_E_TOO_MANY_REQUESTS) {
        znp_error_set(ctx->err, rc, NULL, NULL);
        ctx->err->retry_after = (int)verdict.retry_after_s;
    }
    return rc;
}

/* ctx->verify of worker jobs: the signed third-party API, before authentication (it records the nonce). */
static int verify_signed(znp_ctx_t *ctx, const znp_operation_t *op, znp_call_t *call)
{
    http_job_t *job = ctx->verify_data;
    znp_signed_request_t in = {
        .method = job->method,
        .path = job->path,
        .path_len = job->path_len,
        .query = job->query,
        .query_len = job->query_len,
        .api_key = job->signed_headers[0],
        .timestamp = job->signed_headers[1],
        .nonce = job->signed_headers[2],
        .signature = job->signed_headers[3],
        .encrypted = job->signed_headers[4],
        .iv = job->signed_headers[5],
        .body = call->body,
        .body_len = call->body_len,
    };

    /* kernel callbacks carry webhook credentials over the raw body */
    if (strcmp(op->tag, ZNP_TRAFFIC_KERNEL_TAG) == 0) {
        const char *signature = job->signed_headers[7] != NULL ? job->signed_headers[7] : job->signed_headers[8];
        int rc = znp_traffic_webhook_verify(ctx, job->signed_headers[6], signature, call->body, call->body_len);

        if (rc != 0)
            return rc;
    }
    return znp_security_verify(ctx, (int)job->group, &in, &call->body, &call->body_len);
}

/* Runs on a worker thread. */
static void run_job(znp_job_t *base, PGconn *db)
{
    http_job_t *job = H2O_STRUCT_FROM_MEMBER(http_job_t, super, base);
    znp_http_mailbox_t *mailbox = job->mailbox;
    znp_error_t err;
    znp_arena_t arena;
    json_t *response = NULL;
    outcome_t outcome;
    znp_http_writer_t writer;
    int rc;

    memset(&err, 0, sizeof(err));
    znp_http__writer_init(&writer, mailbox, job, job->request_id);
    writer.super.accept = job->accept;
    writer.super.if_none_match = job->if_none_match;
    writer.super.accept_encoding = job->accept_encoding;
    writer.super.report_id = job->report_id;
    writer.super.body = job->body;
    writer.super.body_len = job->body_len;
    znp_arena_init(&arena, 0);
    if (db == NULL || !znp_health_database_up()) {
        rc = ZNP_E_DATABASE_UNAVAILABLE;
        err.code = rc;
        err.retry_after = DATABASE_RETRY_AFTER_S;
    } else {
        znp_ctx_t ctx = {
            .db = db,
            .config = job->config,
            .locale = job->locale,
            .arena = &arena,
            .err = &err,
            .request_id = job->request_id,
            .client_ip = job->client_ip,
            .user_agent = job->user_agent,
            .now = clock_seconds,
            .stream = (job->op->flags & ZNP_OP_STREAM) ? &writer.super : NULL,
            .admit = admit_user,
            .admit_data = job,
            .verify = verify_signed,
            .verify_data = job,
        };
        znp_call_t call = {
            .path_params = job->params,
            .path_param_count = job->param_count,
            .query = job->query,
            .query_len = job->query_len,
            .body = job->body,
            .body_len = job->body_len,
            .authorization = job->authorization,
        };
        arena.limit = job->body_len * 4 + ARENA_FLOOR_BYTES;
        rc = znp_dispatch(&ctx, job->op, &call, &response);
    }
    if (znp_http__writer_finish(&writer, rc)) {
        /* the body went to the loop in pieces, and the loop took the request over */
        memset(&outcome, 0, sizeof(outcome));
    } else if (rc == 0 && writer.super.started) {
        memset(&outcome, 0, sizeof(outcome));
        outcome.status = writer.super.status == 304 ? 304 : 200;
        outcome.body = writer.data;
        outcome.len = writer.len;
        job->content_type = writer.content_type;
        job->filename = writer.filename;
        job->headers = writer.headers;
        job->headers_len = writer.headers_len;
        writer.data = writer.content_type = writer.filename = writer.headers = NULL;
        writer.headers_len = 0;
    } else {
        render_outcome(&outcome, rc, response, job->op->success_status, &err, job->locale, job->request_id);
    }
    znp_http__writer_dispose(&writer);
    json_decref(response);
    znp_arena_dispose(&arena);
    job->status = outcome.status;
    job->retry_after = outcome.retry_after;
    job->response = outcome.body;
    job->response_len = outcome.len;

    /* from here on the loop thread may free the job at any time */
    pthread_mutex_lock(&mailbox->lock);
    if (mailbox->open) {
        h2o_multithread_send_message(mailbox->receiver, &job->message.super);
        job = NULL;
    }
    pthread_mutex_unlock(&mailbox->lock);
    if (job != NULL)
        free_job(job);
    znp_http__mailbox_release(mailbox);
}

static void on_guard_dispose(void *data)
{
    job_guard_t *guard = data;

    if (guard->job != NULL) {
        guard->job->req = NULL;
        guard->job->guard = NULL;
    }
}

/* Copy `len` bytes into the job's storage as a NUL-terminated string. */
static const char *store(char **cursor, const char *data, size_t len)
{
    char *out = *cursor;

    if (len > 0)
        memcpy(out, data, len);
    out[len] = '\0';
    *cursor += len + 1;
    return out;
}

static http_job_t *create_job(h2o_req_t *req, znp_http_request_t *state, const znp_route_match_t *match)
{
    znp_http_loop_t *loop = state->loop;
    h2o_iovec_t query = query_of(req);
    h2o_iovec_t body = req->entity.base != NULL ? req->entity : h2o_iovec_init(NULL, 0);
    ssize_t auth_index = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    ssize_t agent_index = h2o_find_header(&req->headers, H2O_TOKEN_USER_AGENT, -1);
    h2o_iovec_t auth = auth_index != -1 ? req->headers.entries[auth_index].value : h2o_iovec_init(NULL, 0);
    h2o_iovec_t agent = agent_index != -1 ? req->headers.entries[agent_index].value : h2o_iovec_init(NULL, 0);
    ssize_t accept_index = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT, -1);
    ssize_t match_index = h2o_find_header(&req->headers, H2O_TOKEN_IF_NONE_MATCH, -1);
    ssize_t encoding_index = h2o_find_header(&req->headers, H2O_TOKEN_ACCEPT_ENCODING, -1);
    int negotiates = (match->route->operation->flags & ZNP_OP_STREAM) != 0;
    h2o_iovec_t accept =
        negotiates && accept_index != -1 ? req->headers.entries[accept_index].value : h2o_iovec_init(NULL, 0);
    h2o_iovec_t if_none_match =
        negotiates && match_index != -1 ? req->headers.entries[match_index].value : h2o_iovec_init(NULL, 0);
    h2o_iovec_t accept_encoding =
        negotiates && encoding_index != -1 ? req->headers.entries[encoding_index].value : h2o_iovec_init(NULL, 0);
    ssize_t report_index = negotiates ? h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-report-id"), -1) : -1;
    h2o_iovec_t report_id = report_index != -1 ? req->headers.entries[report_index].value : h2o_iovec_init(NULL, 0);
    h2o_iovec_t path = target_path(req);
    h2o_iovec_t signed_values[SIGNED_HEADER_COUNT];
    size_t size = query.len + 1 + body.len + 1 + auth.len + 1 + agent.len + 1 + req->method.len + 1 + path.len + 1 +
                  accept.len + 1 + if_none_match.len + 1 + accept_encoding.len + 1 + report_id.len + 1;
    http_job_t *job;
    char *cursor;

    for (size_t i = 0; i < SIGNED_HEADER_COUNT; i++) {
        ssize_t index =
            h2o_find_header_by_str(&req->headers, signed_header_names[i], strlen(signed_header_names[i]), -1);

        signed_values[i] = index != -1 ? req->headers.entries[index].value : h2o_iovec_init(NULL, 0);
        size += signed_values[i].len + 1;
    }

    for (size_t i = 0; i < match->param_count; i++)
        size += strlen(match->params[i].value) + 1;
    job = calloc(1, sizeof(*job) + size);
    if (job == NULL)
        return NULL;

    job->super.run = run_job;
    job->mailbox = loop->mailbox;
    job->config = loop->server->config;
    job->op = match->route->operation;
    job->locale = state->locale;
    memcpy(job->request_id, state->request_id, sizeof(job->request_id));
    memcpy(job->client_ip, state->guard.client_text, sizeof(job->client_ip));
    job->protect = loop->server->protect;
    job->group = state->guard.group;

    cursor = job->storage;
    job->param_count = match->param_count;
    for (size_t i = 0; i < match->param_count; i++) {
        job->params[i].name = match->params[i].name; /* static: a route segment name */
        job->params[i].value = store(&cursor, match->params[i].value, strlen(match->params[i].value));
    }
    job->query = query.base != NULL ? store(&cursor, query.base, query.len) : NULL;
    job->query_len = query.len;
    job->body = body.base != NULL ? store(&cursor, body.base, body.len) : NULL;
    job->body_len = body.len;
    job->authorization = auth.base != NULL ? store(&cursor, auth.base, auth.len) : NULL;
    job->user_agent = agent.base != NULL ? store(&cursor, agent.base, agent.len) : NULL;
    job->accept = accept.base != NULL ? store(&cursor, accept.base, accept.len) : NULL;
    job->if_none_match = if_none_match.base != NULL ? store(&cursor, if_none_match.base, if_none_match.len) : NULL;
    job->accept_encoding =
        accept_encoding.base != NULL ? store(&cursor, accept_encoding.base, accept_encoding.len) : NULL;
    job->report_id = report_id.base != NULL ? store(&cursor, report_id.base, report_id.len) : NULL;
    job->method = store(&cursor, req->method.base, req->method.len);
    job->path = store(&cursor, path.base, path.len);
    job->path_len = path.len;
    for (size_t i = 0; i < SIGNED_HEADER_COUNT; i++)
        job->signed_headers[i] =
            signed_values[i].base != NULL ? store(&cursor, signed_values[i].base, signed_values[i].len) : NULL;
    return job;
}

typedef struct warm_hold {
    void (*release)(void *ref);
    void *ref;
} warm_hold_t;

static void release_warm(void *data)
{
    warm_hold_t *hold = data;

    hold->release(hold->ref);
}

/*
 * Add the headers of a warm response, copied into the request's pool when
 * `copy` is set (else they must stay valid until the request ends). The list
 * is added in one step, as h2o_add_header_by_str would add each: a name in
 * h2o's token table goes in as that token, which HPACK sends as a
 * static-table index.
 */
static void add_warm_headers(h2o_req_t *req, const znp_warm_header_t *headers, size_t count, int copy)
{
    h2o_vector_reserve(&req->pool, &req->res.headers, req->res.headers.size + count);
    for (size_t i = 0; i < count; i++) {
        const h2o_token_t *token = h2o_lookup_token(headers[i].name, headers[i].name_len);
        h2o_header_t *header = req->res.headers.entries + req->res.headers.size++;
        h2o_iovec_t *name;

        if (token != NULL) {
            name = (h2o_iovec_t *)&token->buf;
        } else {
            name = h2o_mem_alloc_pool(&req->pool, sizeof(*name));
            *name = copy ? h2o_strdup(&req->pool, headers[i].name, headers[i].name_len)
                         : h2o_iovec_init(headers[i].name, headers[i].name_len);
        }
        header->name = name;
        header->orig_name = NULL;
        header->value = copy ? h2o_strdup(&req->pool, headers[i].value, headers[i].value_len)
                             : h2o_iovec_init(headers[i].value, headers[i].value_len);
    }
}

/* Send what the operation's warm function (core/warm.h) returns, unless it has none or declines. 1 when sent. */
static int try_warm(h2o_req_t *req, znp_http_request_t *state, const znp_route_match_t *match,
                    const znp_warm_hint_t *hint)
{
    znp_warm_fn fn = znp_warm_find(match->route->operation);
    h2o_iovec_t query = query_of(req);
    znp_warm_response_t response;
    int rc;

    /* a signed group needs the worker's signature check */
    if (fn == NULL || znp_security_signing_required((int)state->guard.group))
        return 0;
    znp_warm_request_t in = {
        .config = state->loop->server->config,
        .hint = hint,
        .path_params = match->params,
        .path_param_count = match->param_count,
        .query = query.base,
        .query_len = query.len,
        .user_agent = header_string(req, H2O_TOKEN_USER_AGENT),
        .accept = header_string(req, H2O_TOKEN_ACCEPT),
        .if_none_match = header_string(req, H2O_TOKEN_IF_NONE_MATCH),
        .accept_encoding = header_string(req, H2O_TOKEN_ACCEPT_ENCODING),
        .locale = state->locale,
        .request_id = state->request_id,
    };
    memset(&response, 0, sizeof(response));
    rc = fn(&in, &response);
    if (rc == 0)
        return 0;
    if (rc < 0) {
        znp_error_t err;

        memset(&err, 0, sizeof(err));
        err.code = rc;
        err.retry_after = response.retry_after;
        send_error_detail(req, state, rc, &err, NULL);
        return 1;
    }
    if (response.release != NULL) {
        /* the body belongs to the warm function's cache, which keeps it until the request ends */
        warm_hold_t *hold = h2o_mem_alloc_shared(&req->pool, sizeof(*hold), release_warm);

        hold->release = response.release;
        hold->ref = response.ref;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    add_warm_headers(req, response.headers, response.header_count, response.release == NULL);
    znp_http__send_body(req, response.status == 304 ? 304 : 200, response.content_type,
                        h2o_iovec_init(response.body, response.len));
    return 1;
}

/* Hand the operation to the worker pool; the response arrives in znp_http__on_replies(). */
static void submit_job(h2o_req_t *req, znp_http_request_t *state, const znp_route_match_t *match)
{
    znp_http_loop_t *loop = state->loop;
    znp_pool_t *pool = loop->server->pool;
    http_job_t *job;
    int rc;

    if (pool == NULL) {
        znp_http__send_error(req, state, ZNP_E_DATABASE_UNAVAILABLE, NULL);
        return;
    }
    job = create_job(req, state, match);
    if (job == NULL) {
        znp_http__send_error(req, state, ZNP_E_INTERNAL, NULL);
        return;
    }

    atomic_fetch_add(&loop->mailbox->refs, 1);
    rc = znp_pool_submit(pool, &job->super);
    if (rc != 0) {
        znp_http__mailbox_release(job->mailbox);
        free_job(job);
        znp_http__send_error(req, state, rc, NULL);
        return;
    }

    /* the worker never touches req, guard or link; only this thread does */
    job->req = req;
    job->guard = h2o_mem_alloc_shared(&req->pool, sizeof(*job->guard), on_guard_dispose);
    job->guard->job = job;
    h2o_linklist_insert(&loop->jobs, &job->link);
}

static void send_job_outcome(http_job_t *job)
{
    h2o_req_t *req = job->req;
    outcome_t outcome = {
        .status = job->status,
        .retry_after = job->retry_after,
        .body = job->response,
        .len = job->response_len,
    };

    job->guard->job = NULL;
    job->guard = NULL;
    job->req = NULL;
    job->response = NULL; /* owned by the request now */
    znp_http_request_t *state = find_request_state(req);

    if (state != NULL)
        znp_http__guard_merge_rate(&state->guard.rate, &job->rate);
    if (job->content_type != NULL)
        send_stream_outcome(req, &outcome, job->content_type, job->filename, job->headers, job->headers_len);
    else
        send_outcome(req, &outcome, NULL);
}

void znp_http__on_replies(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    (void)receiver;
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *message = H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        znp_http_reply_t *reply = H2O_STRUCT_FROM_MEMBER(znp_http_reply_t, super, message);
        http_job_t *job;

        h2o_linklist_unlink(&message->link);
        if (reply->kind == ZNP_HTTP_REPLY_PIECE) {
            znp_http__stream_on_piece(reply);
            continue;
        }
        job = H2O_STRUCT_FROM_MEMBER(http_job_t, message, reply);
        if (h2o_linklist_is_linked(&job->link))
            h2o_linklist_unlink(&job->link);
        if (job->req != NULL)
            send_job_outcome(job);
        free_job(job);
    }
}

void znp_http__discard_replies(h2o_linklist_t *messages)
{
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *message = H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        znp_http_reply_t *reply = H2O_STRUCT_FROM_MEMBER(znp_http_reply_t, super, message);
        http_job_t *job;

        h2o_linklist_unlink(&message->link);
        if (reply->kind == ZNP_HTTP_REPLY_PIECE) {
            znp_http__stream_discard_piece(reply);
            continue;
        }
        job = H2O_STRUCT_FROM_MEMBER(http_job_t, message, reply);
        if (h2o_linklist_is_linked(&job->link))
            h2o_linklist_unlink(&job->link);
        if (job->guard != NULL)
            job->guard->job = NULL;
        free_job(job);
    }
}

void znp_http__abandon_jobs(znp_http_loop_t *loop)
{
    while (!h2o_linklist_is_empty(&loop->jobs)) {
        http_job_t *job = H2O_STRUCT_FROM_MEMBER(http_job_t, link, loop->jobs.next);
        h2o_req_t *req = job->req;

        h2o_linklist_unlink(&job->link);
        if (req == NULL)
            continue;
        job->guard->job = NULL;
        job->guard = NULL;
        job->req = NULL;

        znp_http_request_t *state = find_request_state(req);

        if (state != NULL)
            znp_http__send_error(req, state, ZNP_E_SHUTTING_DOWN, NULL);
        /* the worker's late result is freed by znp_http__on_replies or znp_http__discard_replies */
    }
}

static void send_openapi(h2o_req_t *req)
{
    znp_http__send_body(req, 200, json_content_type, h2o_iovec_init(znp_openapi_json, znp_openapi_json_len));
}

static void send_metrics(h2o_req_t *req, znp_http_request_t *state)
{
    char *text = NULL;
    size_t len = 0;

    if (znp_metrics_render(&text, &len, state->loop->server->pool) != 0) {
        znp_http__send_error(req, state, ZNP_E_INTERNAL, NULL);
        return;
    }
    attach_buffer(req, text);
    znp_http__send_body(req, 200, metrics_content_type, h2o_iovec_init(text, len));
}

/* /openapi.json, /metrics and (when the Swagger UI is not installed) /docs. Returns 1 when it responded. */
static int serve_special(h2o_req_t *req, znp_http_request_t *state, h2o_iovec_t path)
{
    enum { NONE, OPENAPI, METRICS, DOCS } which = NONE;

    if (h2o_memis(path.base, path.len, H2O_STRLIT("/openapi.json"))) {
        which = OPENAPI;
        state->route = "/openapi.json";
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/metrics"))) {
        which = METRICS;
        state->route = "/metrics";
    } else if (h2o_memis(path.base, path.len, H2O_STRLIT("/docs")) ||
               (path.len > 5 && memcmp(path.base, "/docs/", 6) == 0)) {
        which = DOCS;
        state->route = "/docs";
    }
    if (which == NONE)
        return 0;

    if (!is_get_or_head(req)) {
        znp_http__send_error(req, state, ZNP_E_METHOD_NOT_ALLOWED, "GET, HEAD");
        return 1;
    }
    switch (which) {
    case OPENAPI:
        send_openapi(req);
        break;
    case METRICS:
        send_metrics(req, state);
        break;
    default:
        znp_http__send_docs_missing(req);
        break;
    }
    return 1;
}

static znp_router_index_t route_index;
static pthread_once_t route_index_once = PTHREAD_ONCE_INIT;
static int route_index_ready;

static void build_route_index(void)
{
    route_index_ready = znp_router_index_init(&route_index, znp_routes, znp_route_count) == 0;
}

static int match_route(znp_route_match_t *match, const char *method, h2o_iovec_t path, const char *admin_prefix)
{
    pthread_once(&route_index_once, build_route_index);
    if (route_index_ready)
        return znp_router_match_indexed(match, &route_index, method, path.base, path.len, admin_prefix);
    return znp_router_match(match, znp_routes, znp_route_count, method, path.base, path.len, admin_prefix);
}

/* The route of a request, matched before the transport's own checks (see on_request). */
typedef struct routed {
    int rc;
    char method[32];
    znp_route_match_t match;
    znp_warm_hint_t hint;
} routed_t;

/* Match the route of `req` and run the warm hint of its operation (core/warm.h), if it has one. */
static void route_early(routed_t *routed, const znp_http_server_t *server, h2o_req_t *req, h2o_iovec_t path)
{
    znp_warm_hint_fn hint;

    /* an over-long method cannot name a route; the router then returns 404 or 405 */
    if (req->method.len < sizeof(routed->method)) {
        memcpy(routed->method, req->method.base, req->method.len);
        routed->method[req->method.len] = '\0';
    } else {
        routed->method[0] = '\0';
    }
    routed->hint.set = 0;
    routed->rc = match_route(&routed->match, routed->method, path, server->config->server.admin_prefix);
    if (routed->rc == 0 && (hint = znp_warm_find_hint(routed->match.route->operation)) != NULL)
        hint(routed->match.params, routed->match.param_count, &routed->hint);
}

static void route_request(h2o_req_t *req, znp_http_request_t *state, routed_t *routed)
{
    znp_route_match_t *match = &routed->match;
    const char *method = routed->method;
    int rc = routed->rc;

    if (rc == ZNP_E_METHOD_NOT_ALLOWED && strcmp(method, "OPTIONS") == 0) {
        /* no operation takes OPTIONS: list the methods the path has (CORS preflights were answered before) */
        char allow[sizeof(match->allow) + 16];

        snprintf(allow, sizeof(allow), "%s, OPTIONS", match->allow);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL,
                       h2o_strdup(&req->pool, allow, SIZE_MAX).base, strlen(allow));
        znp_http__send_body(req, 204, "", h2o_iovec_init(NULL, 0));
        return;
    }
    if (rc == ZNP_E_METHOD_NOT_ALLOWED) {
        znp_http__send_error(req, state, rc, match->allow);
        return;
    }
    if (rc != 0) {
        znp_http__send_error(req, state, rc, NULL);
        return;
    }
    state->route = match->route->path;
    state->guard.file = (match->route->operation->flags & ZNP_OP_STREAM) != 0;
    if (znp_http__guard_operation(req, state, &state->guard, match->route->path,
                                  (size_t)(match->route->operation - znp_operations),
                                  match->route->operation->rate_limit))
        return;

    /* an encrypted body of the signed API is not JSON until the worker has opened it */
    if (req->entity.base != NULL && req->entity.len > 0 && !is_json_content_type(req) &&
        h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-znp-encrypted"), -1) == -1) {
        znp_http__send_error(req, state, ZNP_E_UNSUPPORTED_MEDIA_TYPE, NULL);
        return;
    }
    /* the signature check needs the database (the nonce record), so a signed group runs even inline operations on a worker */
    if ((match->route->operation->flags & ZNP_OP_INLINE) &&
        !(state->loop->server->pool != NULL && znp_security_signing_required((int)state->guard.group)))
        run_inline(req, state, match);
    else if (!try_warm(req, state, match, &routed->hint))
        submit_job(req, state, match);
}

/* The path of the request target without the query; h2o 2.2.5 leaves an absolute-form target as it came. */
static h2o_iovec_t target_path(h2o_req_t *req)
{
    h2o_iovec_t path = h2o_iovec_init(req->path.base, req->query_at != SIZE_MAX ? req->query_at : req->path.len);
    size_t scheme_end;

    if (path.len == 0 || path.base[0] == '/')
        return path;
    scheme_end = h2o_strstr(path.base, path.len, H2O_STRLIT("://"));
    if (scheme_end == SIZE_MAX)
        return path;
    for (size_t i = scheme_end + 3; i < path.len; i++) {
        if (path.base[i] == '/')
            return h2o_iovec_init(path.base + i, path.len - i);
    }
    return h2o_iovec_init(H2O_STRLIT("/"));
}

/* The catch-all handler on "/" and on the fallback path. */
static int on_request(h2o_handler_t *self, h2o_req_t *req)
{
    uint64_t started_ns = monotonic_ns();
    h2o_iovec_t path = target_path(req);
    znp_http_request_t *state;
    routed_t routed;
    int rc;

    (void)self;
    /* the route is matched first, so that a warm hint's memory loads overlap the setup and checks below */
    route_early(&routed, znp_http__loop_of(req)->server, req, path);
    state = znp_http__begin_request(req, "unmatched", started_ns);
    rc = check_limits(state->loop->server, req);
    if (rc != 0) {
        znp_http__send_error(req, state, rc, NULL);
        return 0;
    }
    if (znp_http__guard_request(req, state, &state->guard))
        return 0;
    if (serve_special(req, state, path))
        return 0;
    route_request(req, state, &routed);
    return 0;
}

/* Seconds since the request began, for requests h2o rejected before any handler ran. */
static double seconds_since(const struct timeval *begin)
{
    struct timeval now;

    if (begin->tv_sec == 0)
        return 0;
    gettimeofday(&now, NULL);
    return (double)(now.tv_sec - begin->tv_sec) + (double)(now.tv_usec - begin->tv_usec) / 1e6;
}

static const char *protocol_name(int version)
{
    switch (version) {
    case 0x200:
        return "HTTP/2";
    case 0x101:
        return "HTTP/1.1";
    case 0x100:
        return "HTTP/1.0";
    default:
        return "HTTP/?";
    }
}

typedef struct access_logger {
    h2o_logger_t super;
    znp_http_server_t *server;
} access_logger_t;

/* Runs on the loop thread when a request ends: metrics, the in-flight count and the access log line. */
static void log_access(h2o_logger_t *self, h2o_req_t *req)
{
    znp_http_server_t *server = ((access_logger_t *)self)->server;
    znp_http_request_t *state = find_request_state(req);
    const char *route = state != NULL ? state->route : "unmatched";
    const char *request_id = state != NULL ? state->request_id : NULL;
    char fallback_id[ZNP_REQUEST_ID_MAX + 1];
    double seconds;

    if (state != NULL) {
        seconds = (double)(monotonic_ns() - state->started_ns) / 1e9;
    } else {
        ssize_t index = h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("x-request-id"), -1);

        seconds = seconds_since(&req->timestamps.request_begin_at);
        if (index != -1 && req->res.headers.entries[index].value.len <= ZNP_REQUEST_ID_MAX) {
            memcpy(fallback_id, req->res.headers.entries[index].value.base, req->res.headers.entries[index].value.len);
            fallback_id[req->res.headers.entries[index].value.len] = '\0';
            request_id = fallback_id;
        }
    }
    znp_metrics_observe_request(route, method_label(req->input.method), req->res.status, seconds);
    if (state != NULL) {
        atomic_fetch_sub(&server->in_flight, 1);
        znp_metrics_http_in_flight_add(-1);
    }

    if (server->config->log.access_log && ZNP_LOG_INFO >= znp_log_min_level) {
        /* the query string is left out: it may carry tokens */
        h2o_iovec_t path = req->input.path;
        char method[16 * 4 + 8];
        char escaped_path[LOG_PATH_MAX * 4 + 8];

        if (req->input.query_at != SIZE_MAX && req->input.query_at < path.len)
            path.len = req->input.query_at;
        znp_log_escape(method, sizeof(method), req->input.method.base, req->input.method.len, 16);
        znp_log_escape(escaped_path, sizeof(escaped_path), path.base, path.len, LOG_PATH_MAX);
        ZNP_INFO(LOG_MODULE, request_id,
                 "request method=%s path=\"%s\" status=%d bytes=%zu duration_ms=%.3f protocol=%s scheme=%s "
                 "client=%s",
                 method, escaped_path, req->res.status, req->bytes_sent, seconds * 1000.0, protocol_name(req->version),
                 req->scheme != NULL && req->scheme == &H2O_URL_SCHEME_HTTPS ? "https" : "http",
                 state != NULL && state->guard.client_text[0] != '\0' ? state->guard.client_text : "-");
    }
}

/* replaces the body h2o generated for an error with our envelope */
typedef struct replacement_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body;
} replacement_ostream_t;

static void send_replacement(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt,
                             h2o_send_state_t state)
{
    replacement_ostream_t *replacement = (replacement_ostream_t *)self;
    h2o_iovec_t body = replacement->body;

    (void)bufs;
    replacement->body.len = 0; /* h2o's error path sends once, but never repeat the envelope */
    if (bufcnt > 0 && body.len > 0)
        h2o_ostream_send_next(self, req, &body, 1, state);
    else
        h2o_ostream_send_next(self, req, NULL, 0, state);
}

/*
 * Filter on the host's fallback path, which h2o uses for the errors it sends
 * before any handler runs. For an HTTP/1.1 body over h2o's own limit, h2o
 * sends a plain-text 413: this filter replaces its body with our envelope.
 * It adds x-request-id to every such response.
 */
static void on_error_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    char request_id[ZNP_REQUEST_ID_MAX + 1];
    h2o_iovec_t id;

    (void)self;
    if (find_request_state(req) != NULL) {
        /* on_request ran on this path (a path h2o could not match): its response is complete */
        h2o_setup_next_ostream(req, slot);
        return;
    }
    assign_request_id(request_id, req);
    id = h2o_strdup(&req->pool, request_id, SIZE_MAX);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-request-id"), 0, NULL, id.base, id.len);
    znp_http__guard_headers(req, znp_http__loop_of(req)->server, NULL);

    if (req->res.status == 413) {
        znp_http_server_t *server = znp_http__loop_of(req)->server;
        json_t *envelope = znp_dispatch_error_body(ZNP_E_BODY_TOO_LARGE, NULL,
                                                   request_locale(req, server->default_locale), request_id);
        size_t len = envelope != NULL ? json_dumpb(envelope, NULL, 0, JSON_COMPACT) : 0;
        char *body = len > 0 ? h2o_mem_alloc_pool(&req->pool, len) : NULL;

        if (body != NULL && json_dumpb(envelope, body, len, JSON_COMPACT) == len) {
            replacement_ostream_t *replacement =
                (replacement_ostream_t *)h2o_add_ostream(req, sizeof(*replacement), slot);
            ssize_t index = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);

            if (index != -1)
                h2o_delete_header(&req->res.headers, index);
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, json_content_type,
                           sizeof(json_content_type) - 1);
            req->res.content_length = len;
            req->res.reason = reason_phrase(413);
            replacement->super.do_send = send_replacement;
            replacement->body = h2o_iovec_init(body, len);
            slot = &replacement->super.next;
        }
        json_decref(envelope);
    }
    h2o_setup_next_ostream(req, slot);
}

static void add_logger(znp_http_server_t *server, h2o_pathconf_t *pathconf)
{
    access_logger_t *logger = (access_logger_t *)h2o_create_logger(pathconf, sizeof(*logger));

    logger->super.log_access = log_access;
    logger->server = server;
}

void znp_http__register_handlers(znp_http_server_t *server, h2o_hostconf_t *host)
{
    static const char *index_files[] = {"index.html", NULL};
    h2o_pathconf_t *pathconf;
    h2o_handler_t *handler;
    h2o_filter_t *filter;

    /* h2o picks the first registered path that matches, so /docs goes before / */
    if (server->docs_available) {
        pathconf = h2o_config_register_path(host, "/docs", 0);
        handler = h2o_create_handler(pathconf, sizeof(*handler));
        handler->on_req = znp_http__on_docs_request;
        h2o_file_register(pathconf, server->config->server.docs_dir, index_files, NULL, 0);
        add_logger(server, pathconf);
    }

    pathconf = h2o_config_register_path(host, "/", 0);
    handler = h2o_create_handler(pathconf, sizeof(*handler));
    handler->on_req = on_request;
    add_logger(server, pathconf);

    /* requests whose path h2o matches to no registered path, e.g. "OPTIONS *" */
    handler = h2o_create_handler(&host->fallback_path, sizeof(*handler));
    handler->on_req = on_request;
    filter = h2o_create_filter(&host->fallback_path, sizeof(*filter));
    filter->on_setup_ostream = on_error_setup_ostream;
    add_logger(server, &host->fallback_path);
}
