/*
 * Streamed response bodies for ZNP_OP_STREAM operations (core/stream.h).
 *
 * The operation runs on a worker and writes through a znp_http_writer_t,
 * which collects the body and hands it to the event loop in pieces of about
 * PIECE_BYTES. A body that ends before its first piece is full is sent as one
 * ordinary response by request.c. Otherwise the first piece creates a
 * stream_t shared by the worker and the loop. The loop takes the request over
 * from the job and writes each piece through an h2o generator, one h2o_send
 * at a time, the next one after h2o calls proceed. The worker waits while more than
 * WINDOW_BYTES are on their way, so a slow client holds back the database
 * reads instead of filling memory.
 *
 * Lifetime: stream_t has two references, the worker's (dropped after its end
 * piece is queued) and the loop's (dropped once the end piece has arrived and
 * the response is complete or the request is gone).
 */
#include "http/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/context.h"
#include "core/log.h"

#define LOG_MODULE   "http"
#define PIECE_BYTES  (64 * 1024)
#define WINDOW_BYTES (1024 * 1024)
#define WAIT_STEP_MS 200 /* a waiting worker looks at the mailbox this often */

/* how long a worker waits for a client that reads nothing (server.idle_timeout_ms) */
static atomic_uint stall_timeout_ms = 60000;

void znp_http__stream_set_stall_timeout(unsigned ms)
{
    atomic_store(&stall_timeout_ms, ms > 0 ? ms : 60000);
}

static uint64_t monotonic_ms(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

typedef struct piece piece_t;
typedef struct znp_http_stream stream_t;

struct znp_http_stream {
    atomic_int refs;
    znp_http_mailbox_t *mailbox; /* borrowed from the job, which outlives the worker's use */
    void *job;                   /* the http job, valid until the loop has the first piece */
    char request_id[ZNP_REQUEST_ID_MAX + 1];
    char *content_type;          /* written by the worker before the first piece */
    char *filename;
    char *headers;               /* extra response headers, name NUL value NUL ... */
    size_t headers_len;

    pthread_mutex_t lock;
    pthread_cond_t drained;
    size_t outstanding; /* bytes queued for the loop and not written to the client yet; guarded by lock */
    int cancelled;      /* the client is gone or the loop stopped; guarded by lock */
    int stalled;        /* cancelled because the client read nothing for the stall timeout; guarded by lock */

    /* event-loop thread only */
    h2o_req_t *req; /* NULL before the first piece and once the request is gone */
    struct stream_generator *generator;
    piece_t *pending_head, **pending_tail;
    piece_t *in_flight; /* given to h2o_send, written when h2o calls proceed */
    int started, end_received, end_ok, loop_done;
};

/* lives in the request's pool, so h2o may call it until the request ends */
typedef struct stream_generator {
    h2o_generator_t super;
    stream_t *stream; /* NULL once the stream let go of the request */
} stream_generator_t;

struct piece {
    znp_http_reply_t reply; /* kind ZNP_HTTP_REPLY_PIECE */
    stream_t *stream;
    piece_t *next;
    int end; /* the last piece; `ok` is 1 when the body is complete, 0 to abort the response */
    int ok;
    size_t len;
    char data[];
};

static void stream_release(stream_t *stream)
{
    piece_t *piece;

    if (atomic_fetch_sub(&stream->refs, 1) != 1)
        return;
    while ((piece = stream->pending_head) != NULL) {
        stream->pending_head = piece->next;
        free(piece);
    }
    free(stream->in_flight);
    pthread_cond_destroy(&stream->drained);
    pthread_mutex_destroy(&stream->lock);
    free(stream->content_type);
    free(stream->filename);
    free(stream->headers);
    free(stream);
}

/* worker side */

static int writer_begin(znp_stream_t *base, const char *content_type, const char *filename)
{
    znp_http_writer_t *writer = (znp_http_writer_t *)base;

    writer->content_type = strdup(content_type);
    writer->filename = filename != NULL ? strdup(filename) : NULL;
    if (writer->content_type == NULL || (filename != NULL && writer->filename == NULL))
        return ZNP_E_INTERNAL;
    return 0;
}

/* A header name must be a lowercase token, and a value must contain no control byte except tab. */
static int header_valid(const char *name, const char *value)
{
    if (name[0] == '\0')
        return 0;
    for (const char *p = name; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return 0;
    }
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
            return 0;
    }
    return 1;
}

static int writer_header(znp_stream_t *base, const char *name, const char *value)
{
    znp_http_writer_t *writer = (znp_http_writer_t *)base;
    size_t name_len = strlen(name), value_len = strlen(value);
    char *grown;

    if (base->started || !header_valid(name, value))
        return ZNP_E_INTERNAL;
    grown = realloc(writer->headers, writer->headers_len + name_len + value_len + 2);
    if (grown == NULL)
        return ZNP_E_INTERNAL;
    memcpy(grown + writer->headers_len, name, name_len + 1);
    memcpy(grown + writer->headers_len + name_len + 1, value, value_len + 1);
    writer->headers = grown;
    writer->headers_len += name_len + value_len + 2;
    return 0;
}

static int mailbox_open(znp_http_mailbox_t *mailbox)
{
    int open;

    pthread_mutex_lock(&mailbox->lock);
    open = mailbox->open;
    pthread_mutex_unlock(&mailbox->lock);
    return open;
}

static stream_t *stream_create(znp_http_writer_t *writer)
{
    stream_t *stream = calloc(1, sizeof(*stream));

    if (stream == NULL)
        return NULL;
    atomic_init(&stream->refs, 2);
    stream->mailbox = writer->mailbox;
    stream->job = writer->job;
    snprintf(stream->request_id, sizeof(stream->request_id), "%s", writer->request_id);
    stream->content_type = writer->content_type;
    stream->filename = writer->filename;
    writer->content_type = writer->filename = NULL;
    stream->headers = writer->headers;
    stream->headers_len = writer->headers_len;
    writer->headers = NULL;
    writer->headers_len = 0;
    stream->pending_tail = &stream->pending_head;
    pthread_mutex_init(&stream->lock, NULL);
    pthread_cond_init(&stream->drained, NULL);
    return stream;
}

/* Wait for room in the window, then queue `piece` to the loop. Takes ownership of `piece`. */
static int send_piece(stream_t *stream, piece_t *piece)
{
    uint64_t progress_at = monotonic_ms();
    size_t seen;
    int rc = 0;

    /* the end piece never waits: it is small, and the loop needs it to let go of the stream */
    pthread_mutex_lock(&stream->lock);
    seen = stream->outstanding;
    while (!piece->end && !stream->cancelled && stream->outstanding > 0 &&
           stream->outstanding + piece->len > WINDOW_BYTES) {
        struct timespec until;

        /* a client that reads nothing for the stall timeout loses the response, and the worker is free again */
        if (stream->outstanding < seen) {
            seen = stream->outstanding;
            progress_at = monotonic_ms();
        } else if (monotonic_ms() - progress_at >= atomic_load(&stall_timeout_ms)) {
            stream->cancelled = 1;
            stream->stalled = 1;
            break;
        }

        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += WAIT_STEP_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        if (pthread_cond_timedwait(&stream->drained, &stream->lock, &until) == ETIMEDOUT) {
            pthread_mutex_unlock(&stream->lock);
            int open = mailbox_open(stream->mailbox);
            pthread_mutex_lock(&stream->lock);
            if (!open)
                stream->cancelled = 1;
        }
    }
    if (stream->cancelled && !piece->end)
        rc = ZNP_E_INTERNAL;
    else
        stream->outstanding += piece->len;
    pthread_mutex_unlock(&stream->lock);
    if (rc != 0) {
        free(piece);
        return rc;
    }

    pthread_mutex_lock(&stream->mailbox->lock);
    if (stream->mailbox->open) {
        h2o_multithread_send_message(stream->mailbox->receiver, &piece->reply.super);
        piece = NULL;
    }
    pthread_mutex_unlock(&stream->mailbox->lock);
    if (piece != NULL) {
        /* the loop stopped, so this piece will never be written */
        pthread_mutex_lock(&stream->lock);
        stream->cancelled = 1;
        pthread_mutex_unlock(&stream->lock);
        free(piece);
        return ZNP_E_SHUTTING_DOWN;
    }
    return 0;
}

static piece_t *piece_create(stream_t *stream, const char *data, size_t len)
{
    piece_t *piece = malloc(sizeof(*piece) + len);

    if (piece == NULL)
        return NULL;
    memset(piece, 0, sizeof(*piece));
    piece->reply.kind = ZNP_HTTP_REPLY_PIECE;
    piece->stream = stream;
    piece->len = len;
    if (len > 0)
        memcpy(piece->data, data, len);
    return piece;
}

static int stream_stalled(stream_t *stream)
{
    int stalled;

    pthread_mutex_lock(&stream->lock);
    stalled = stream->stalled;
    pthread_mutex_unlock(&stream->lock);
    return stalled;
}

static int flush(znp_http_writer_t *writer)
{
    piece_t *piece;
    int rc;

    if (writer->stream == NULL) {
        writer->stream = stream_create(writer);
        if (writer->stream == NULL)
            return ZNP_E_INTERNAL;
    }
    piece = piece_create(writer->stream, writer->data, writer->len);
    if (piece == NULL)
        return ZNP_E_INTERNAL;
    writer->len = 0;
    rc = send_piece(writer->stream, piece);
    if (rc != 0 && stream_stalled(writer->stream))
        ZNP_WARN(LOG_MODULE, writer->request_id,
                 "streamed response stopped: the client read nothing for %u ms (server.idle_timeout_ms)",
                 atomic_load(&stall_timeout_ms));
    else if (rc != 0)
        ZNP_INFO(LOG_MODULE, writer->request_id, "streamed response stopped: the client or the loop went away");
    return rc;
}

static int writer_write(znp_stream_t *base, const char *data, size_t len)
{
    znp_http_writer_t *writer = (znp_http_writer_t *)base;

    if (len == 0)
        return 0; /* writer->data may still be NULL, and memcpy must not see it */
    if (writer->len + len > writer->cap) {
        size_t cap = writer->cap > 0 ? writer->cap : PIECE_BYTES;
        char *grown;

        while (writer->len + len > cap)
            cap *= 2;
        grown = realloc(writer->data, cap);
        if (grown == NULL)
            return ZNP_E_INTERNAL;
        writer->data = grown;
        writer->cap = cap;
    }
    memcpy(writer->data + writer->len, data, len);
    writer->len += len;
    return writer->len >= PIECE_BYTES ? flush(writer) : 0;
}

void znp_http__writer_init(znp_http_writer_t *writer, znp_http_mailbox_t *mailbox, void *job, const char *request_id)
{
    memset(writer, 0, sizeof(*writer));
    writer->super.begin = writer_begin;
    writer->super.write = writer_write;
    writer->super.header = writer_header;
    writer->mailbox = mailbox;
    writer->job = job;
    writer->request_id = request_id;
}

int znp_http__writer_finish(znp_http_writer_t *writer, int rc)
{
    stream_t *stream = writer->stream;
    piece_t *piece;

    if (stream == NULL)
        return 0;
    writer->stream = NULL;
    piece = piece_create(stream, rc == 0 ? writer->data : NULL, rc == 0 ? writer->len : 0);
    if (piece != NULL) {
        piece->end = 1;
        piece->ok = rc == 0;
        if (send_piece(stream, piece) != 0)
            stream_release(stream); /* the end piece never reaches the loop, which therefore cannot drop its reference */
    } else {
        /* NOTE: without memory for the end piece the loop keeps its reference and the client waits */
        ZNP_ERROR(LOG_MODULE, writer->request_id, "could not end a streamed response: out of memory");
    }
    stream_release(stream);
    return 1;
}

void znp_http__writer_dispose(znp_http_writer_t *writer)
{
    free(writer->data);
    free(writer->content_type);
    free(writer->filename);
    free(writer->headers);
    writer->data = writer->content_type = writer->filename = writer->headers = NULL;
    writer->headers_len = 0;
}

/* loop side */

static void account_written(stream_t *stream, size_t len)
{
    pthread_mutex_lock(&stream->lock);
    stream->outstanding -= len;
    pthread_cond_signal(&stream->drained);
    pthread_mutex_unlock(&stream->lock);
}

/* The loop's reference goes once the end piece arrived and the request is finished or gone. */
static void maybe_finish(stream_t *stream)
{
    if (stream->loop_done || !stream->end_received || stream->req != NULL)
        return;
    stream->loop_done = 1;
    stream_release(stream);
}

static void drop_pending(stream_t *stream)
{
    piece_t *piece;

    while ((piece = stream->pending_head) != NULL) {
        stream->pending_head = piece->next;
        account_written(stream, piece->len);
        free(piece);
    }
    stream->pending_tail = &stream->pending_head;
    if (stream->in_flight != NULL) {
        account_written(stream, stream->in_flight->len);
        free(stream->in_flight);
        stream->in_flight = NULL;
    }
}

static void cancel(stream_t *stream)
{
    pthread_mutex_lock(&stream->lock);
    stream->cancelled = 1;
    pthread_cond_signal(&stream->drained);
    pthread_mutex_unlock(&stream->lock);
}

/* The request ended before the body did: stop the worker and let go of h2o. */
static void request_gone(stream_t *stream)
{
    if (stream->generator != NULL)
        stream->generator->stream = NULL;
    stream->generator = NULL;
    stream->req = NULL;
    drop_pending(stream);
    cancel(stream);
    maybe_finish(stream);
}

/* Hand the next piece to h2o, or end the response once every piece is written. */
static void pump(stream_t *stream)
{
    h2o_req_t *req = stream->req;
    piece_t *piece = stream->pending_head;

    if (req == NULL || stream->in_flight != NULL)
        return;
    if (piece != NULL && !piece->end) {
        h2o_iovec_t buf = h2o_iovec_init(piece->data, piece->len);

        stream->pending_head = piece->next;
        if (stream->pending_head == NULL)
            stream->pending_tail = &stream->pending_head;
        stream->in_flight = piece;
        h2o_send(req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
        return;
    }
    if (piece == NULL)
        return;

    /* the end piece: its bytes move to the request's pool, since h2o may write them after this returns */
    stream->pending_head = NULL;
    stream->pending_tail = &stream->pending_head;
    stream->generator->stream = NULL;
    stream->generator = NULL;
    stream->req = NULL;
    account_written(stream, piece->len);
    if (piece->ok) {
        h2o_iovec_t buf = h2o_strdup(&req->pool, piece->data, piece->len);

        h2o_send(req, &buf, buf.len > 0 ? 1 : 0, H2O_SEND_STATE_FINAL);
    } else {
        ZNP_WARN(LOG_MODULE, stream->request_id, "streamed response aborted after it had started");
        h2o_send(req, NULL, 0, H2O_SEND_STATE_ERROR);
    }
    free(piece);
    maybe_finish(stream);
}

static void on_generator_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    stream_t *stream = ((stream_generator_t *)self)->stream;
    piece_t *written;

    (void)req;
    if (stream == NULL || stream->in_flight == NULL)
        return;
    written = stream->in_flight;
    stream->in_flight = NULL;
    account_written(stream, written->len);
    free(written);
    pump(stream);
}

static void on_generator_stop(h2o_generator_t *self, h2o_req_t *req)
{
    stream_t *stream = ((stream_generator_t *)self)->stream;

    (void)req;
    if (stream != NULL)
        request_gone(stream);
}

/* First piece: take the request over from its job and send the head with a body of unknown length. */
static void start_response(stream_t *stream)
{
    h2o_req_t *req = znp_http__job_take_request(stream->job);
    stream_generator_t *generator;
    h2o_iovec_t type;

    stream->started = 1;
    stream->job = NULL;
    if (req == NULL)
        return;
    generator = h2o_mem_alloc_pool(&req->pool, sizeof(*generator));
    generator->super.proceed = on_generator_proceed;
    generator->super.stop = on_generator_stop;
    generator->stream = stream;
    stream->generator = generator;
    stream->req = req;

    type = h2o_strdup(&req->pool, stream->content_type, SIZE_MAX);
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = SIZE_MAX;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type.base, type.len);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL,
                          H2O_STRLIT("nosniff"));
    if (stream->filename != NULL) {
        h2o_iovec_t value = znp_http__attachment_header(req, stream->filename);

        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_DISPOSITION, NULL, value.base, value.len);
    }
    znp_http__add_stream_headers(req, stream->headers, stream->headers_len);
    h2o_start_response(req, &generator->super);
}

void znp_http__stream_on_piece(znp_http_reply_t *reply)
{
    piece_t *piece = H2O_STRUCT_FROM_MEMBER(piece_t, reply, reply);
    stream_t *stream = piece->stream;

    if (!stream->started)
        start_response(stream);
    if (piece->end) {
        stream->end_received = 1;
        stream->end_ok = piece->ok;
    }
    if (stream->req == NULL) {
        account_written(stream, piece->len);
        free(piece);
        cancel(stream);
        maybe_finish(stream);
        return;
    }
    piece->next = NULL;
    *stream->pending_tail = piece;
    stream->pending_tail = &piece->next;
    pump(stream);
}

void znp_http__stream_discard_piece(znp_http_reply_t *reply)
{
    piece_t *piece = H2O_STRUCT_FROM_MEMBER(piece_t, reply, reply);
    stream_t *stream = piece->stream;

    /* the loop is gone: the stream only waits for this end piece to be freed */
    if (piece->end) {
        stream->end_received = 1;
        stream->req = NULL;
        if (stream->generator != NULL)
            stream->generator->stream = NULL;
        stream->generator = NULL;
        maybe_finish(stream);
    }
    free(piece);
}

h2o_iovec_t znp_http__attachment_header(h2o_req_t *req, const char *filename)
{
    size_t cap = strlen(filename) + 32, len;
    char *value = h2o_mem_alloc_pool(&req->pool, cap);

    /* the operation passes a fixed ASCII name, but quotes, backslashes and controls are dropped anyway */
    len = (size_t)snprintf(value, cap, "attachment; filename=\"");
    for (const char *p = filename; *p != '\0' && len + 2 < cap; p++) {
        unsigned char c = (unsigned char)*p;

        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            value[len++] = *p;
    }
    value[len++] = '"';
    return h2o_iovec_init(value, len);
}

void znp_http__add_stream_headers(h2o_req_t *req, const char *headers, size_t len)
{
    size_t at = 0;

    while (at < len) {
        const char *name = headers + at;
        size_t name_len = strlen(name);
        const char *value = name + name_len + 1;
        size_t value_len = strlen(value);

        at += name_len + value_len + 2;
        name = h2o_strdup(&req->pool, name, name_len).base;
        value = h2o_strdup(&req->pool, value, value_len).base;
        /* a name in h2o's token table is added as that token, which HPACK sends as a static-table index */
        h2o_add_header_by_str(&req->pool, &req->res.headers, name, name_len, 1, NULL, value, value_len);
    }
}
