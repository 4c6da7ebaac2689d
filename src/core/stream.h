/*
 * A response body that is not JSON, for operations marked x-znp-stream in
 * the spec (ZNP_OP_STREAM). Over HTTP the transport puts a znp_stream_t in
 * ctx->stream, and over gRPC ctx->stream is NULL. The operation either fills
 * its typed JSON response as usual, or calls znp_stream_begin, then
 * znp_stream_write any number of times, and returns 0. In that case the
 * typed response is ignored. A write may block while the client is slow.
 *
 * Before begin, an operation may read the negotiation headers below, add
 * response headers with znp_stream_header and set `status` (for example 304
 * with an empty body). Headers and status reach the client whether the body
 * is sent in one piece or streamed.
 */
#ifndef ZNP_CORE_STREAM_H
#define ZNP_CORE_STREAM_H

#include <stddef.h>

typedef struct znp_stream znp_stream_t;

struct znp_stream {
    int (*begin)(znp_stream_t *stream, const char *content_type, const char *filename);
    int (*write)(znp_stream_t *stream, const char *data, size_t len);
    int (*header)(znp_stream_t *stream, const char *name, const char *value);
    int started; /* set once begin succeeded */
    int status;  /* response status, 0 means 200; only 200 and 304 are meaningful */
    /* request headers for content negotiation, set by the transport; NULL when absent */
    const char *accept;
    const char *if_none_match;
    const char *accept_encoding;
    const char *report_id; /* X-Report-Id request header */
    /* the raw request body, for operations whose body is not a fixed JSON schema; NULL when empty */
    const char *body;
    size_t body_len;
};

/*
 * Start the response (status `status`, 200 when unset) with `content_type` and, when `filename` is not NULL,
 * Content-Disposition: attachment. Returns 0 or a negative znp_err.
 */
static inline int znp_stream_begin(znp_stream_t *stream, const char *content_type, const char *filename)
{
    int rc = stream->begin(stream, content_type, filename);

    if (rc == 0)
        stream->started = 1;
    return rc;
}

/*
 * Add the response header `name: value` (lowercase name; the value must not
 * contain CR, LF or NUL). Call before znp_stream_begin. Returns 0 or a
 * negative znp_err.
 */
static inline int znp_stream_header(znp_stream_t *stream, const char *name, const char *value)
{
    return stream->header(stream, name, value);
}

/* Append `len` bytes to the body. Returns 0 or a negative znp_err (then stop writing). */
static inline int znp_stream_write(znp_stream_t *stream, const char *data, size_t len)
{
    return stream->write(stream, data, len);
}

#endif
