/*
 * GET / and GET /api/v1/ping. Both run on the event loop with no database
 * connection. Ping reads the site name and logo from the in-process cache.
 */
#include "operations.gen.h"

#include <time.h>

#include "config/config.h"
#include "system/site.h"
#include "znp_version.h"

/* The wall-clock second from the precise clock, as request.c caches responses by it (not time(NULL)). */
static int64_t now_of(const znp_ctx_t *ctx)
{
    struct timespec now;

    if (ctx->now != NULL)
        return ctx->now();
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec;
}

int znp_op_get_banner(znp_ctx_t *ctx, const znp_get_banner_request_t *req, znp_get_banner_response_t *resp)
{
    (void)ctx;
    (void)req;
    resp->message = "Hello, Network. by znp";
    return 0;
}

int znp_op_ping(znp_ctx_t *ctx, const znp_ping_request_t *req, znp_ping_response_t *resp)
{
    znp_site_snapshot_t site;

    (void)req;
    znp_site_cache_get(&site);
    resp->status = "ok";
    resp->service = ctx->config->site.service_name != NULL ? ctx->config->site.service_name : "znp";
    resp->version = ZNP_VERSION;
    resp->site_name = znp_arena_strdup(ctx->arena, site.name);
    resp->logo_url = znp_arena_strdup(ctx->arena, site.logo_url);
    resp->timestamp = now_of(ctx);
    if (resp->site_name == NULL || resp->logo_url == NULL)
        return ZNP_E_INTERNAL;
    return 0;
}
