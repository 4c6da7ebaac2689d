/*
 * Public subscription download (GET /api/v1/subscriptions/{token} and
 * GET /s/{token}). The operations themselves are declared in
 * generated/operations.gen.h; the helpers below are exposed for the unit
 * tests and for the module that adds protocol entries.
 */
#ifndef ZNP_DOWNLOAD_H
#define ZNP_DOWNLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "core/context.h"
#include "formats/formats.h"

/*
 * The nodes subscription `subscription_id` grants, as *nodes (in ctx->arena
 * or static; NULL when *count is 0): its plan's active entries of active,
 * reachable bindings (see DOWNLOAD_ENTRY_SCOPE in download/internal.h),
 * with the user's identity as credential. Entries whose protocol has no
 * client format are left out and logged. Returns 0 or a negative znp_err.
 */
int znp_download_load_nodes(znp_ctx_t *ctx, int64_t subscription_id, znp_formats_node_t **nodes, size_t *count);

/*
 * Whether binding protocol `name` ("vmess", "ss", "hy2"...) has a client
 * format; on 1, *out receives it.
 */
int znp_download_protocol_of(const char *name, znp_formats_protocol_t *out);

/*
 * Whether an If-None-Match value (one tag, a comma-separated list, W/ tags
 * or "*") matches `etag`, a quoted strong tag. Uses weak comparison, which
 * RFC 9110 requires for If-None-Match. `if_none_match` may be NULL.
 */
int znp_download_etag_matches(const char *if_none_match, const char *etag);

/*
 * Whether a response may be sent gzip-compressed to a request with this
 * Accept-Encoding value (RFC 9110 12.5.3; NULL when the header is absent,
 * which gets the body as it is). Yes when gzip (or x-gzip), or else "*",
 * has a weight above 0 and at least that of identity when identity is
 * listed. Malformed elements are ignored.
 */
int znp_download_accepts_gzip(const char *accept_encoding);

/*
 * Write the Content-Disposition value for a file named `name` (UTF-8) into
 * out: `attachment; filename="<ASCII fallback>"`, plus
 * `; filename*=UTF-8''<percent-encoded name>` (RFC 5987) when the name is not
 * ASCII. Returns 0 or ZNP_E_INTERNAL when `size` is too small.
 */
int znp_download_content_disposition(char *out, size_t size, const char *name);

/*
 * The cache of complete responses (config download.cache_entries and
 * download.cache_ttl_s), which lets a repeated download run no query.
 * forget drops the responses of one subscription. clear drops all of them,
 * for writes that can change any file (templates, plans, nodes, site
 * settings). Every write that changes what a file shows calls one of them
 * before it responds. Other instances learn of it through NOTIFY (migration
 * 0019). Both are safe from any thread.
 */
void znp_download_cache_forget(int64_t subscription_id);
void znp_download_cache_clear(void);
size_t znp_download_cache_size(void);

/*
 * Register the warm function of both download operations (core/warm.h), so
 * a cached response is sent from the event loop without the worker pool.
 * Call once before the servers start. Returns 0 or a negative znp_err.
 */
int znp_download_register_warm(void);

#endif
