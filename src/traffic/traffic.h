/*
 * Traffic accounting: the ingest of kernel traffic reports, counted once per
 * node and report id through a unique key, the kernel callbacks under
 * /api/v1/kernel/, the znp.kernel.v1 gRPC service and the user traffic
 * view. The operations themselves are declared in generated/operations.gen.h.
 */
#ifndef ZNP_TRAFFIC_H
#define ZNP_TRAFFIC_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/context.h"

struct znp_operation;
struct znp_call;

/* Name of the scheduled job that deletes report keys older than their retention (30 days). */
#define ZNP_TRAFFIC_PURGE_JOB "traffic.purge_reports"
/* Tag of the kernel callback operations, whose HTTP calls znp_traffic_webhook_verify checks. */
#define ZNP_TRAFFIC_KERNEL_TAG "kernel"

typedef struct znp_traffic_record {
    int64_t user_id;         /* used when subscription_id is 0: the user's effective subscription */
    int64_t subscription_id;
    const char *protocol;    /* selects the multiplier; may be "" */
    int64_t node_id;
    int64_t binding_id;
    int64_t bytes_up;        /* >= 0, validated by the transport */
    int64_t bytes_down;      /* >= 0 */
    int64_t observed_at;     /* unix seconds; <= 0 means now */
} znp_traffic_record_t;

typedef struct znp_traffic_result {
    int64_t accepted;
    int64_t failed;
    int duplicate; /* 1 when (node_id, report_id) was already counted: nothing was added */
} znp_traffic_result_t;

/* Count a report once per (node_id, report_id) (report_id NULL or "": no de-duplication).
 * One transaction on `db` (the caller must not have one open). Adds charged bytes
 * (round(raw x multiplier), saturating at INT64_MAX) to each subscription. */
/* Returns 0, ZNP_E_NOT_FOUND when node_id > 0 names no live node, ZNP_E_VALIDATION_FAILED for
 * a report_id with node_id 0, or another negative znp_err (then nothing was counted). */
int znp_traffic_ingest(PGconn *db, const znp_config_t *config, int64_t node_id,
                       const char *report_id, const znp_traffic_record_t *records, size_t count,
                       znp_traffic_result_t *result, const char *request_id);

/*
 * The scheduled job ZNP_TRAFFIC_PURGE_JOB: delete report keys older than
 * 30 days, so a report retransmitted after that would count again.
 * Returns 0 or a negative znp_err.
 */
int znp_traffic_purge_reports(PGconn *db, const znp_config_t *config);

/*
 * Check the webhook credentials of an HTTP kernel callback against
 * config->webhook before its body is decoded: `token` is the
 * X-ZNP-Webhook-Token header, `signature` the X-ZNP-Webhook-Signature or
 * Stripe-Signature header ("t=<unix seconds>,v1=<hex HMAC-SHA256 of
 * "<t>.<raw body>">"), both NULL when absent. With neither a shared token
 * nor a signing secret configured every call is rejected. Returns 0, or
 * ZNP_E_WEBHOOK_UNAUTHENTICATED with the reason in ctx->err.
 */
int znp_traffic_webhook_verify(znp_ctx_t *ctx, const char *token, const char *signature, const char *body,
                               size_t body_len);

/*
 * ctx->verify of gRPC calls to the kernel operations: authenticate the
 * node-backend token of call->authorization ("Bearer <token>") through
 * znp_uniproxy_token_node and put the token's node into the call (the
 * node_id body field of kernel_report_traffic, the node_id query parameter
 * of kernel_node_event). A different non-zero node_id in the message is
 * ZNP_E_FORBIDDEN. Returns 0 or a negative znp_err with detail in ctx->err.
 */
int znp_traffic_verify_node_token(znp_ctx_t *ctx, const struct znp_operation *op, struct znp_call *call);

#endif
