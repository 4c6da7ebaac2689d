/*
 * The kernel callbacks under /api/v1/kernel/ (and the same operations over
 * gRPC): node health events, traffic reports and service events. The
 * transport has authenticated the caller before these run.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sql.h"
#include "core/log.h"
#include "download/download.h"
#include "errors.gen.h"
#include "operations.gen.h"
#include "traffic/internal.h"
#include "uniproxy/uniproxy.h"

#define CROSSED_MAX 64

static const char *int_text(char *buf, size_t size, int64_t value)
{
    snprintf(buf, size, "%" PRId64, value);
    return buf;
}

/* ---- POST /api/v1/kernel/traffic ---- */

int znp_op_kernel_report_traffic(znp_ctx_t *ctx, const znp_kernel_report_traffic_request_t *req,
                                 znp_kernel_report_traffic_response_t *resp)
{
    const znp_kernel_traffic_report_t *report = &req->body;
    znp_kernel_traffic_rejection_t *rejected = NULL;
    znp_traffic_record_t *records = NULL;
    char (*protocols)[TRAFFIC_PROTOCOL_MAX + 1] = NULL;
    znp_traffic_result_t result;
    size_t total, valid = 0, rejected_count = 0;
    int rc = 0;

    /*
     * check input
     * NOTE: an integer literal beyond the int64 range fails the JSON parser
     * before this runs, so it rejects the whole report with invalid_json
     * instead of one record. A fractional or exponent form (1e30) is
     * rejected per record.
     */
    if (!json_is_array(report->records))
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "records", "must be an array");
    total = json_array_size(report->records);
    if (total > TRAFFIC_RECORDS_MAX)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "records", "must have at most %d items",
                             TRAFFIC_RECORDS_MAX);
    records = calloc(total > 0 ? total : 1, sizeof(*records));
    protocols = calloc(total > 0 ? total : 1, sizeof(*protocols));
    rejected = znp_arena_alloc(ctx->arena, (total > 0 ? total : 1) * sizeof(*rejected));
    if (records == NULL || protocols == NULL || rejected == NULL) {
        rc = znp_error_set(ctx->err, ZNP_E_INTERNAL, NULL, "out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < total; i++) {
        char reason[TRAFFIC_REASON_MAX];

        if (traffic__record_from_json(json_array_get(report->records, i), &records[valid], protocols[valid], reason,
                                      sizeof reason) == 0) {
            valid++;
            continue;
        }
        memset(&rejected[rejected_count], 0, sizeof(rejected[0]));
        rejected[rejected_count].index = (int64_t)i;
        rejected[rejected_count].reason = znp_arena_strdup(ctx->arena, reason);
        if (rejected[rejected_count].reason == NULL) {
            rc = znp_error_set(ctx->err, ZNP_E_INTERNAL, NULL, "out of memory");
            goto cleanup;
        }
        rejected_count++;
    }
    /* records were filled from the front, so protocol pointers must follow their moved records */
    for (size_t i = 0; i < valid; i++)
        records[i].protocol = protocols[i];

    /* count */
    rc = znp_traffic_ingest(ctx->db, ctx->config, report->node_id,
                            report->has.report_id == ZNP_SET ? report->report_id : NULL, records, valid, &result,
                            ctx->request_id);
    if (rc == ZNP_E_NOT_FOUND) {
        znp_error_set(ctx->err, rc, "node_id", "node %" PRId64 " does not exist", report->node_id);
        goto cleanup;
    }
    if (rc != 0)
        goto cleanup;

    /* build response */
    /* a retransmission has the same body, so it gets the same rejections with the stored counts */
    resp->accepted = result.accepted;
    resp->failed = result.failed + (int64_t)rejected_count;
    resp->duplicate = result.duplicate != 0;
    resp->rejected.items = rejected;
    resp->rejected.count = rejected_count;
    if (rejected_count > 0 && !result.duplicate)
        ZNP_INFO(TRAFFIC_LOG_TAG, ctx->request_id, "traffic records rejected: node_id=%" PRId64 " count=%zu first=\"%s\"",
                 report->node_id, rejected_count, rejected[0].reason);

cleanup:
    free(records);
    free(protocols);
    return rc;
}

/* ---- POST /api/v1/kernel/events ---- */

static const char EVENT_SQL[] =
    "WITH ts AS (SELECT CASE WHEN $4::bigint <= 0 THEN now() ELSE to_timestamp($4::bigint) END AS at),"
    " old AS (SELECT id, health_status FROM protocol_bindings WHERE node_id = $1 AND kernel_id = $2 FOR UPDATE)"
    " UPDATE protocol_bindings b SET"
    " health_status = CASE WHEN $3::int > 0 THEN $3::int ELSE b.health_status END,"
    " last_heartbeat_at = CASE WHEN $3::int = 4 THEN b.last_heartbeat_at"
    "  ELSE greatest(coalesce(b.last_heartbeat_at, ts.at), ts.at) END"
    " FROM old, ts WHERE b.id = old.id"
    " RETURNING b.id, old.health_status, b.health_status";

int znp_op_kernel_node_event(znp_ctx_t *ctx, const znp_kernel_node_event_request_t *req,
                             znp_kernel_node_event_response_t *resp)
{
    const znp_kernel_node_event_t *event = &req->body;
    const char *kernel_id = event->has.id == ZNP_SET && event->id[0] != '\0' ? event->id : NULL;
    int health = traffic__health_of(event->has.status == ZNP_SET ? event->status : NULL, event->event);
    char node_text[24], health_text[24], observed_text[24];
    int64_t observed_at = event->has.observed_at == ZNP_SET ? event->observed_at : 0;
    PGresult *res = NULL;
    int exists;
    int rc;

    /* check input */
    if (kernel_id == NULL && event->has.node_id == ZNP_SET && event->node_id[0] != '\0')
        kernel_id = event->node_id;
    /* a kernel clock ahead of ours (or an absurd value) counts as now */
    if (ctx->now != NULL && observed_at > ctx->now())
        observed_at = 0;
    resp->status = "ignored";
    if (kernel_id == NULL)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "id", "id or node_id (the kernel protocol id) is required");
    rc = traffic__node_exists(ctx->db, req->node_id, &exists, ctx->request_id);
    if (rc != 0)
        return rc;
    if (!exists)
        return znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "node_id", "node %" PRId64 " does not exist", req->node_id);

    /* apply to the binding */
    {
        const char *params[4] = {int_text(node_text, sizeof node_text, req->node_id), kernel_id,
                                 int_text(health_text, sizeof health_text, health),
                                 int_text(observed_text, sizeof observed_text, observed_at)};

        rc = znp_sql_exec(&res, ctx->db, EVENT_SQL, 4, params, ctx->request_id);
    }
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        char kernel_text[160], event_text[160];

        znp_log_escape(kernel_text, sizeof kernel_text, kernel_id, strlen(kernel_id), 32);
        znp_log_escape(event_text, sizeof event_text, event->event, strlen(event->event), 32);
        ZNP_INFO(TRAFFIC_LOG_TAG, ctx->request_id,
                 "node event for an unknown binding ignored: node_id=%" PRId64 " kernel_id=\"%s\" event=\"%s\"",
                 req->node_id, kernel_text, event_text);
        goto cleanup;
    }

    /* build response */
    resp->status = "accepted";
    resp->binding_id = znp_sql_int64(res, 0, 0);
    resp->health_status = znp_sql_int64(res, 0, 2);
    if (znp_sql_int64(res, 0, 1) != resp->health_status) {
        ZNP_INFO(TRAFFIC_LOG_TAG, ctx->request_id, "binding health changed: binding_id=%" PRId64 " from=%" PRId64
                 " to=%" PRId64, resp->binding_id, znp_sql_int64(res, 0, 1), resp->health_status);
        /* the user node view, node user lists and subscription files show only healthy or degraded bindings */
        znp_uniproxy_invalidate();
        znp_download_cache_clear();
    }

cleanup:
    PQclear(res);
    return rc;
}

/* ---- POST /api/v1/kernel/service-events ---- */

/* An id or byte count from a number or a string of digits; -1 when absent, -2 when invalid. */
static int64_t json_count(const json_t *value)
{
    if (value == NULL || json_is_null(value))
        return -1;
    if (json_is_integer(value))
        return json_integer_value(value) >= 0 ? json_integer_value(value) : -2;
    if (json_is_string(value)) {
        const char *text = json_string_value(value);
        char *end;
        long long parsed;

        if (text[0] < '0' || text[0] > '9')
            return -2;
        errno = 0;
        parsed = strtoll(text, &end, 10);
        return errno == 0 && *end == '\0' ? (int64_t)parsed : -2;
    }
    return -2;
}

/* The absolute used bytes of a payload: current.used, else traffic.used, else used. */
static const json_t *used_value(const json_t *payload)
{
    const json_t *value = json_object_get(json_object_get(payload, "current"), "used");

    if (value == NULL)
        value = json_object_get(json_object_get(payload, "traffic"), "used");
    if (value == NULL)
        value = json_object_get(payload, "used");
    return value;
}

/* The user a service event is about (by subscription, else by user id); 0 when none exists. */
static int event_user(PGconn *db, int64_t subscription_id, int64_t user_id, int64_t *out, const char *request_id)
{
    char sub_text[24], user_text[24];
    const char *params[2] = {int_text(sub_text, sizeof sub_text, subscription_id),
                             int_text(user_text, sizeof user_text, user_id)};
    PGresult *res = NULL;
    int rc;

    *out = 0;
    rc = znp_sql_exec(&res, db,
                      "SELECT CASE WHEN $1::bigint > 0"
                      " THEN (SELECT user_id FROM subscriptions WHERE id = $1::bigint"
                      "  AND ($2::bigint = 0 OR user_id = $2::bigint))"
                      " ELSE (SELECT id FROM users WHERE id = $2::bigint) END",
                      2, params, request_id);
    if (rc == 0 && PQntuples(res) == 1)
        *out = znp_sql_int64(res, 0, 0);
    PQclear(res);
    return rc;
}

/*
 * Lock the node's last absolute value for the user (0 when it sent none
 * yet) and turn `used` into an increment: used - last, or all of `used`
 * when it is lower (the kernel counter restarted).
 */
static int absolute_increment(PGconn *db, int64_t node_id, int64_t user_id, int64_t used, int64_t *delta,
                              const char *request_id)
{
    char node_text[24], user_text[24];
    const char *params[2] = {int_text(node_text, sizeof node_text, node_id),
                             int_text(user_text, sizeof user_text, user_id)};
    PGresult *res = NULL;
    int64_t last;
    int rc;

    rc = znp_sql_exec(NULL, db,
                      "INSERT INTO traffic_absolute_marks (node_id, user_id, used_bytes) VALUES ($1, $2, 0)"
                      " ON CONFLICT (node_id, user_id) DO NOTHING",
                      2, params, request_id);
    if (rc != 0)
        goto cleanup;
    rc = znp_sql_exec(&res, db,
                      "SELECT used_bytes FROM traffic_absolute_marks WHERE node_id = $1 AND user_id = $2 FOR UPDATE", 2,
                      params, request_id);
    if (rc != 0)
        goto cleanup;
    last = PQntuples(res) == 1 ? znp_sql_int64(res, 0, 0) : 0;
    *delta = used >= last ? used - last : used;

cleanup:
    PQclear(res);
    return rc;
}

static int save_absolute(PGconn *db, int64_t node_id, int64_t user_id, int64_t used, const char *request_id)
{
    char node_text[24], user_text[24], used_text[24];
    const char *params[3] = {int_text(node_text, sizeof node_text, node_id),
                             int_text(user_text, sizeof user_text, user_id),
                             int_text(used_text, sizeof used_text, used)};

    return znp_sql_exec(NULL, db,
                        "UPDATE traffic_absolute_marks SET used_bytes = $3, updated_at = now()"
                        " WHERE node_id = $1 AND user_id = $2",
                        3, params, request_id);
}

int znp_op_kernel_service_event(znp_ctx_t *ctx, const znp_kernel_service_event_request_t *req,
                                znp_kernel_service_event_response_t *resp)
{
    const znp_kernel_service_event_t *event = &req->body;
    const json_t *payload = event->payload;
    const char *report_id = event->has.event_id == ZNP_SET && event->event_id[0] != '\0' ? event->event_id : NULL;
    char name[64], protocol[TRAFFIC_PROTOCOL_MAX + 1];
    int64_t subscription_id, user_id, used, delta = 0, target_user;
    int64_t crossed[CROSSED_MAX];
    size_t crossed_count = 0;
    znp_traffic_record_t record;
    znp_traffic_result_t result;
    const json_t *value;
    int exists, in_transaction = 0;
    int rc;

    resp->status = "ignored";
    resp->accepted = 0;
    resp->duplicate = false;

    /* check input */
    traffic__event_normalize(event->event, name, sizeof name);
    if (strcmp(name, "user_traffic_reported") != 0)
        return 0;
    if (!json_is_object(payload))
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "payload", "must be an object");
    subscription_id = json_count(json_object_get(payload, "subscription_id"));
    user_id = json_count(json_object_get(payload, "user_id"));
    if (subscription_id == -2 || user_id == -2)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "payload",
                             "subscription_id and user_id must be non-negative integers");
    subscription_id = subscription_id > 0 ? subscription_id : 0;
    user_id = user_id > 0 ? user_id : 0;
    used = json_count(used_value(payload));
    if (used == -1)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "payload.used",
                             "used bytes are required in current.used, traffic.used or used");
    if (used < 0)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "payload.used",
                             "must be an integer from 0 to 9223372036854775807");
    protocol[0] = '\0';
    value = json_object_get(payload, "protocol");
    if (json_is_string(value) && traffic__protocol_normalize(json_string_value(value), json_string_length(value),
                                                             protocol, NULL, 0) != 0)
        protocol[0] = '\0';
    if (subscription_id == 0 && user_id == 0)
        return 0;

    /* load */
    rc = traffic__node_exists(ctx->db, req->node_id, &exists, ctx->request_id);
    if (rc != 0)
        return rc;
    if (!exists)
        return znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "node_id", "node %" PRId64 " does not exist", req->node_id);
    rc = event_user(ctx->db, subscription_id, user_id, &target_user, ctx->request_id);
    if (rc != 0)
        return rc;
    if (target_user == 0) {
        ZNP_INFO(TRAFFIC_LOG_TAG, ctx->request_id, "service event for an unknown user ignored: node_id=%" PRId64
                 " subscription_id=%" PRId64 " user_id=%" PRId64, req->node_id, subscription_id, user_id);
        return 0;
    }

    /* count the increment, with the node's last absolute value locked */
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    in_transaction = 1;
    rc = absolute_increment(ctx->db, req->node_id, target_user, used, &delta, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    memset(&record, 0, sizeof record);
    record.user_id = target_user;
    record.subscription_id = subscription_id;
    record.protocol = protocol;
    record.node_id = req->node_id;
    record.bytes_up = delta;
    record.observed_at = event->has.occurred_at_ms == ZNP_SET ? event->occurred_at_ms / 1000 : 0;
    rc = traffic__ingest_in_transaction(ctx->db, ctx->config, req->node_id, report_id, &record, delta > 0 ? 1 : 0,
                                        &result, crossed, CROSSED_MAX, &crossed_count, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (!result.duplicate) {
        rc = save_absolute(ctx->db, req->node_id, target_user, used, ctx->request_id);
        if (rc != 0)
            goto cleanup;
    }
    rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    in_transaction = 0;
    traffic__forget_crossed(crossed, crossed_count);

    /* build response */
    resp->status = "accepted";
    resp->accepted = result.duplicate ? 0 : result.accepted;
    resp->duplicate = result.duplicate != 0;
    resp->raw_delta = result.duplicate ? 0 : delta;
    resp->has.raw_delta = ZNP_SET;

cleanup:
    if (in_transaction)
        znp_sql_rollback(ctx->db, ctx->request_id);
    return rc;
}
