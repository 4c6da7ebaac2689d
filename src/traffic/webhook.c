/*
 * Authentication of kernel callbacks: webhook credentials on HTTP, the
 * per-node backend token on gRPC.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/auth.h"
#include "core/dispatch.h"
#include "core/log.h"
#include "errors.gen.h"
#include "traffic/internal.h"
#include "uniproxy/uniproxy.h"

int znp_traffic_webhook_verify(znp_ctx_t *ctx, const char *token, const char *signature, const char *body,
                               size_t body_len)
{
    const znp_config_t *config = ctx->config;
    traffic_webhook_keys_t keys = {
        .shared_token = config != NULL ? config->webhook.shared_token : NULL,
        .signing_secret = config != NULL ? config->webhook.signing_secret : NULL,
        .tolerance_s = config != NULL ? config->webhook.signature_tolerance_s : 0,
    };
    int64_t now = ctx->now != NULL ? ctx->now() : (int64_t)time(NULL);
    uint32_t limit = config != NULL ? config->webhook.ip_failure_limit : 0;
    uint32_t window_s = config != NULL ? config->webhook.ip_failure_window_s : 0;
    const char *reason = "";
    znp_ip_attempt_t attempt;
    int64_t failures;
    int rc;

    /*
     * Each callback takes a slot in the statement that checks the limit,
     * before its credentials are checked, and the slot becomes a failure or
     * is given back. So an address that sent too many bad callbacks is
     * refused on every instance, and parallel ones cannot overshoot the limit.
     */
    rc = znp_ip_failures_reserve(ctx, "callback", limit, window_s, &attempt);
    if (rc != 0)
        return rc;
    rc = traffic__webhook_check(&keys, now, token, signature, body, body_len, &reason);
    failures = znp_ip_failures_settle(ctx, "callback", &attempt, rc != 0);
    if (rc != 0) {
        ZNP_WARN(TRAFFIC_LOG_TAG, ctx->request_id,
                 "kernel callback rejected: client=%s reason=\"%s\" failures_in_window=%lld",
                 ctx->client_ip != NULL ? ctx->client_ip : "", reason, (long long)failures);
        return znp_error_set(ctx->err, rc, NULL, "%s", reason);
    }
    return 0;
}

/* The token of a "Bearer <token>" header value, or NULL. */
static const char *bearer_token(const char *authorization)
{
    if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
        return NULL;
    authorization += 7;
    while (*authorization == ' ')
        authorization++;
    return *authorization != '\0' ? authorization : NULL;
}

/* Replace the body's node_id with `node_id`; a different non-zero one is refused. */
static int put_node_in_body(znp_ctx_t *ctx, znp_call_t *call, int64_t node_id)
{
    json_error_t jerr;
    json_t *body = NULL;
    json_t *claimed;
    char *text = NULL;
    int rc = 0;

    body = call->body != NULL && call->body_len > 0 ? json_loadb(call->body, call->body_len, 0, &jerr) : json_object();
    if (!json_is_object(body)) {
        rc = znp_error_set(ctx->err, ZNP_E_INVALID_JSON, NULL, "request must be a JSON object");
        goto cleanup;
    }
    claimed = json_object_get(body, "node_id");
    if (json_is_integer(claimed) && json_integer_value(claimed) != 0 && json_integer_value(claimed) != node_id) {
        rc = znp_error_set(ctx->err, ZNP_E_FORBIDDEN, "node_id", "the token belongs to node %" PRId64, node_id);
        goto cleanup;
    }
    if (json_object_set_new(body, "node_id", json_integer(node_id)) != 0) {
        rc = znp_error_set(ctx->err, ZNP_E_INTERNAL, NULL, "out of memory");
        goto cleanup;
    }
    text = json_dumps(body, JSON_COMPACT);
    call->body = text != NULL ? znp_arena_strdup(ctx->arena, text) : NULL;
    if (call->body == NULL) {
        rc = znp_error_set(ctx->err, ZNP_E_INTERNAL, NULL, "out of memory");
        goto cleanup;
    }
    call->body_len = strlen(call->body);

cleanup:
    free(text);
    json_decref(body);
    return rc;
}

int znp_traffic_verify_node_token(znp_ctx_t *ctx, const znp_operation_t *op, znp_call_t *call)
{
    const char *token = bearer_token(call->authorization);
    int64_t node_id = 0;
    int rc;

    rc = znp_uniproxy_token_node(ctx->db, token, &node_id);
    if (rc != 0) {
        ZNP_WARN(TRAFFIC_LOG_TAG, ctx->request_id, "kernel report over gRPC rejected: client=%s operation=%s",
                 ctx->client_ip != NULL ? ctx->client_ip : "", op->id);
        return znp_error_set(ctx->err, rc, NULL, "%s", token == NULL ? "authorization must be Bearer <node token>"
                                                                      : "the node token matches no node");
    }

    if (strcmp(op->id, "kernel_report_traffic") == 0)
        return put_node_in_body(ctx, call, node_id);
    /* the other kernel operations take the node as the node_id query parameter */
    call->query = znp_arena_printf(ctx->arena, "node_id=%" PRId64, node_id);
    if (call->query == NULL)
        return znp_error_set(ctx->err, ZNP_E_INTERNAL, NULL, "out of memory");
    call->query_len = strlen(call->query);
    return 0;
}
