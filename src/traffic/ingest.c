/*
 * The ingest of traffic reports. One report is one transaction: its key
 * (node_id, report_id) is inserted first, so a concurrent or later copy of
 * the same report waits on the unique key and then finds it and adds
 * nothing. Each report updates subscription rows in ascending id order
 * (the qsort below), so two reports that touch the same subscriptions wait
 * for each other instead of deadlocking.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sql.h"
#include "core/log.h"
#include "download/download.h"
#include "errors.gen.h"
#include "traffic/internal.h"
#include "uniproxy/uniproxy.h"

/* Report keys are kept this long, so a report retransmitted later than this counts again. */
#define REPORT_RETENTION_DAYS "30"
/* seconds: an observed_at further than this in the future is taken as now (a kernel clock that runs ahead) */
#define FUTURE_SKEW_S "300"
#define CROSSED_MAX   64

/* a record resolved to its subscription */
typedef struct resolved {
    const znp_traffic_record_t *record;
    int64_t subscription_id;
    int64_t user_id;
    double multiplier;
    int64_t raw;
    int64_t charged;
} resolved_t;

/*
 * The subscription of each record and the multiplier of its protocol, one
 * row per record that has one (ord is the record's position from 1). The
 * subscription is the one named by id, else the user's effective one
 * (active and not expired, where one that never expires comes first, then
 * the latest expiry). Each case is its own branch so that it can use an
 * index: one CASE in the WHERE clause made every record scan the table.
 * The multiplier is the plan snapshot's
 * traffic_multipliers[protocol] when above 0, else the live plan's, else 1.
 */
static const char RESOLVE_SQL[] =
    "SELECT r.ord, s.id, s.user_id,"
    " CASE WHEN r.protocol = '' THEN 1::float8"
    "  WHEN jsonb_typeof(s.plan_snapshot->'traffic_multipliers'->r.protocol) = 'number'"
    "   AND (s.plan_snapshot->'traffic_multipliers'->>r.protocol)::float8 > 0"
    "  THEN (s.plan_snapshot->'traffic_multipliers'->>r.protocol)::float8"
    "  WHEN jsonb_typeof(p.traffic_multipliers->r.protocol) = 'number'"
    "   AND (p.traffic_multipliers->>r.protocol)::float8 > 0"
    "  THEN (p.traffic_multipliers->>r.protocol)::float8"
    "  ELSE 1::float8 END"
    " FROM unnest($1::bigint[], $2::bigint[], $3::text[]) WITH ORDINALITY AS r(subscription_id, user_id, protocol, ord)"
    " CROSS JOIN LATERAL ("
    "  (SELECT c.id, c.user_id, c.plan_id, c.plan_snapshot FROM subscriptions c"
    "   WHERE r.subscription_id > 0 AND c.id = r.subscription_id AND (r.user_id = 0 OR c.user_id = r.user_id))"
    "  UNION ALL"
    "  (SELECT c.id, c.user_id, c.plan_id, c.plan_snapshot FROM subscriptions c"
    "   WHERE r.subscription_id <= 0 AND c.user_id = r.user_id AND c.status = 1"
    "   AND (c.expires_at IS NULL OR c.expires_at > now())"
    "   ORDER BY c.expires_at DESC NULLS FIRST, c.id DESC LIMIT 1)"
    "  LIMIT 1) s"
    " LEFT JOIN plans p ON p.id = s.plan_id";

/*
 * Add each charge to its subscription in one statement. The rows are locked
 * in id order, so concurrent reports over the same users queue instead of
 * deadlocking, and each row returns its value before and after.
 */
static const char ADD_USED_SQL[] =
    "WITH d AS (SELECT * FROM unnest($1::bigint[], $2::bigint[]) AS d(id, charged)),"
    " old AS (SELECT c.id, c.traffic_used_bytes AS before FROM subscriptions c"
    "  WHERE c.id IN (SELECT id FROM d) ORDER BY c.id FOR UPDATE)"
    " UPDATE subscriptions s SET traffic_used_bytes = traffic_saturating_add(s.traffic_used_bytes, d.charged)"
    " FROM d JOIN old ON old.id = d.id WHERE s.id = d.id"
    " RETURNING s.id, old.before, s.traffic_used_bytes, s.traffic_total_bytes";

/*
 * The records, and their sums per subscription, day and protocol, the day
 * in the panel time zone. Sums of type numeric cannot overflow, and least()
 * keeps each one within bigint before traffic_saturating_add adds it to the day.
 */
static const char RECORDS_SQL[] =
    "WITH rec AS ("
    " INSERT INTO traffic_records (subscription_id, user_id, node_id, binding_id, protocol, report_id, bytes_up,"
    "  bytes_down, raw_bytes, charged_bytes, multiplier, observed_at)"
    " SELECT u.subscription_id, u.user_id, u.node_id, u.binding_id, u.protocol, $13, u.bytes_up, u.bytes_down,"
    "  u.raw_bytes, u.charged_bytes, u.multiplier,"
    "  CASE WHEN u.observed_at <= 0 OR u.observed_at > extract(epoch FROM now())::bigint + " FUTURE_SKEW_S
    "  THEN now() ELSE to_timestamp(u.observed_at) END"
    " FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[],"
    "  $8::bigint[], $9::bigint[], $10::float8[], $11::bigint[])"
    "  AS u(subscription_id, user_id, node_id, binding_id, protocol, bytes_up, bytes_down, raw_bytes, charged_bytes,"
    "  multiplier, observed_at)"
    " RETURNING subscription_id, protocol, raw_bytes, charged_bytes, observed_at),"
    " days AS (SELECT subscription_id, (observed_at AT TIME ZONE $12)::date AS day, protocol,"
    "  least(sum(raw_bytes), 9223372036854775807)::bigint AS raw_bytes,"
    "  least(sum(charged_bytes), 9223372036854775807)::bigint AS charged_bytes"
    "  FROM rec GROUP BY 1, 2, 3)"
    " INSERT INTO traffic_daily AS d (subscription_id, day, protocol, raw_bytes, charged_bytes)"
    " SELECT subscription_id, day, protocol, raw_bytes, charged_bytes FROM days ORDER BY 1, 2, 3"
    " ON CONFLICT (subscription_id, day, protocol) DO UPDATE SET"
    " raw_bytes = traffic_saturating_add(d.raw_bytes, EXCLUDED.raw_bytes),"
    " charged_bytes = traffic_saturating_add(d.charged_bytes, EXCLUDED.charged_bytes)";

static const char *int_text(char *buf, size_t size, int64_t value)
{
    snprintf(buf, size, "%" PRId64, value);
    return buf;
}

static int compare_resolved(const void *a, const void *b)
{
    const resolved_t *x = a, *y = b;

    if (x->subscription_id != y->subscription_id)
        return x->subscription_id < y->subscription_id ? -1 : 1;
    return x->record < y->record ? -1 : (x->record > y->record);
}

/* ---- PostgreSQL array literals ---- */

/* a growing text buffer; `failed` is set once an allocation fails */
typedef struct text_buffer {
    char *data;
    size_t len, size;
    int failed;
} text_buffer_t;

static void buffer_append(text_buffer_t *b, const char *text, size_t len)
{
    if (b->failed)
        return;
    if (b->len + len + 1 > b->size) {
        size_t size = b->size > 0 ? b->size : 256;
        char *grown;

        while (b->len + len + 1 > size)
            size *= 2;
        grown = realloc(b->data, size);
        if (grown == NULL) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->size = size;
    }
    memcpy(b->data + b->len, text, len);
    b->len += len;
    b->data[b->len] = '\0';
}

/* Append the separator before element `index` of an array literal: '{' before the first, ',' before the others. */
static void buffer_separator(text_buffer_t *b, size_t index)
{
    buffer_append(b, index == 0 ? "{" : ",", 1);
}

static void buffer_int(text_buffer_t *b, size_t index, int64_t value)
{
    char text[24];

    buffer_separator(b, index);
    buffer_append(b, text, (size_t)snprintf(text, sizeof text, "%" PRId64, value));
}

static void buffer_double(text_buffer_t *b, size_t index, double value)
{
    char text[32];

    buffer_separator(b, index);
    buffer_append(b, text, (size_t)snprintf(text, sizeof text, "%.17g", value));
}

/* a double-quoted element with '"' and '\' escaped */
static void buffer_text(text_buffer_t *b, size_t index, const char *value)
{
    buffer_separator(b, index);
    buffer_append(b, "\"", 1);
    for (const char *c = value != NULL ? value : ""; *c != '\0'; c++) {
        if (*c == '"' || *c == '\\')
            buffer_append(b, "\\", 1);
        buffer_append(b, c, 1);
    }
    buffer_append(b, "\"", 1);
}

/* Close the array literal (an empty one when nothing was appended); NULL when an allocation failed. */
static const char *buffer_close(text_buffer_t *b, size_t count)
{
    buffer_append(b, count == 0 ? "{}" : "}", count == 0 ? 2 : 1);
    return b->failed ? NULL : b->data;
}

/* ---- steps ---- */

/* Insert the report key. Sets *first to 0 and fills `result` from the stored row when the key exists. */
static int claim_report(PGconn *db, int64_t node_id, const char *report_id, int *first, znp_traffic_result_t *result,
                        const char *request_id)
{
    char node_text[24];
    const char *params[2] = {int_text(node_text, sizeof node_text, node_id), report_id};
    PGresult *res = NULL;
    int rc;

    *first = 0;
    rc = znp_sql_exec(&res, db,
                      "INSERT INTO traffic_reports (node_id, report_id) VALUES ($1, $2)"
                      " ON CONFLICT (node_id, report_id) DO NOTHING RETURNING 1",
                      2, params, request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) == 1) {
        *first = 1;
        goto cleanup;
    }
    PQclear(res);
    res = NULL;
    rc = znp_sql_exec(&res, db, "SELECT accepted, failed FROM traffic_reports WHERE node_id = $1 AND report_id = $2",
                      2, params, request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) == 1) {
        result->accepted = znp_sql_int64(res, 0, 0);
        result->failed = znp_sql_int64(res, 0, 1);
    }
    result->duplicate = 1;

cleanup:
    PQclear(res);
    return rc;
}

/* Resolve every record in one statement. items[] receives the resolved ones, in any order. */
static int resolve_all(PGconn *db, const znp_traffic_record_t *records, size_t count, resolved_t *items,
                       size_t *item_count, const char *request_id)
{
    text_buffer_t lists[3];
    const char *params[3];
    PGresult *res = NULL;
    int rc = 0;

    memset(lists, 0, sizeof lists);
    *item_count = 0;
    for (size_t i = 0; i < count; i++) {
        buffer_int(&lists[0], i, records[i].subscription_id);
        buffer_int(&lists[1], i, records[i].user_id);
        buffer_text(&lists[2], i, records[i].protocol);
    }
    for (size_t i = 0; i < 3; i++) {
        params[i] = buffer_close(&lists[i], count);
        if (params[i] == NULL) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
    }

    rc = znp_sql_exec(&res, db, RESOLVE_SQL, 3, params, request_id);
    if (rc != 0)
        goto cleanup;
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t ord = znp_sql_int64(res, row, 0);
        resolved_t *item = &items[*item_count];

        if (ord < 1 || (size_t)ord > count)
            continue;
        item->record = &records[ord - 1];
        item->subscription_id = znp_sql_int64(res, row, 1);
        item->user_id = znp_sql_int64(res, row, 2);
        item->multiplier = strtod(PQgetvalue(res, row, 3), NULL);
        (*item_count)++;
    }

cleanup:
    PQclear(res);
    for (size_t i = 0; i < 3; i++)
        free(lists[i].data);
    return rc;
}

/*
 * Add the charges of items[] (sorted by subscription) to their subscriptions.
 * The ids of those that this made reach a quota above 0 go to crossed[]
 * (at most crossed_max; *crossed_count counts them all).
 */
static int add_used(PGconn *db, const resolved_t *items, size_t item_count, int64_t *crossed, size_t crossed_max,
                    size_t *crossed_count, const char *request_id)
{
    text_buffer_t lists[2];
    const char *params[2];
    PGresult *res = NULL;
    size_t subscriptions = 0;
    int rc = 0;

    memset(lists, 0, sizeof lists);
    for (size_t i = 0; i < item_count;) {
        int64_t subscription_id = items[i].subscription_id;
        int64_t charged = 0;

        for (; i < item_count && items[i].subscription_id == subscription_id; i++)
            charged = traffic__saturating_add(charged, items[i].charged);
        buffer_int(&lists[0], subscriptions, subscription_id);
        buffer_int(&lists[1], subscriptions, charged);
        subscriptions++;
    }
    for (size_t i = 0; i < 2; i++) {
        params[i] = buffer_close(&lists[i], subscriptions);
        if (params[i] == NULL) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
    }
    rc = znp_sql_exec(&res, db, ADD_USED_SQL, 2, params, request_id);
    if (rc != 0)
        goto cleanup;
    if ((size_t)PQntuples(res) != subscriptions) {
        rc = ZNP_E_INTERNAL;
        ZNP_ERROR(TRAFFIC_LOG_TAG, request_id, "a subscription vanished during a traffic report: %d of %zu updated",
                  PQntuples(res), subscriptions);
        goto cleanup;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t before = znp_sql_int64(res, row, 1), after = znp_sql_int64(res, row, 2);
        int64_t total = znp_sql_int64(res, row, 3);

        if (total > 0 && before < total && after >= total) {
            if (*crossed_count < crossed_max)
                crossed[*crossed_count] = znp_sql_int64(res, row, 0);
            (*crossed_count)++;
        }
    }

cleanup:
    PQclear(res);
    for (size_t i = 0; i < 2; i++)
        free(lists[i].data);
    return rc;
}

/* Insert the records of items[] and add them to their days, in one statement. */
static int store_records(PGconn *db, const znp_config_t *config, int64_t node_id, const char *report_id,
                         const resolved_t *items, size_t count, const char *request_id)
{
    enum { LISTS = 11 };
    text_buffer_t lists[LISTS];
    const char *params[LISTS + 2];
    int rc = 0;

    memset(lists, 0, sizeof lists);
    for (size_t i = 0; i < count; i++) {
        const znp_traffic_record_t *r = items[i].record;

        buffer_int(&lists[0], i, items[i].subscription_id);
        buffer_int(&lists[1], i, items[i].user_id);
        buffer_int(&lists[2], i, r->node_id > 0 ? r->node_id : node_id);
        buffer_int(&lists[3], i, r->binding_id);
        buffer_text(&lists[4], i, r->protocol);
        buffer_int(&lists[5], i, r->bytes_up > 0 ? r->bytes_up : 0);
        buffer_int(&lists[6], i, r->bytes_down > 0 ? r->bytes_down : 0);
        buffer_int(&lists[7], i, items[i].raw);
        buffer_int(&lists[8], i, items[i].charged);
        buffer_double(&lists[9], i, items[i].multiplier > 0 ? items[i].multiplier : 1.0);
        buffer_int(&lists[10], i, r->observed_at);
    }
    for (size_t i = 0; i < LISTS; i++) {
        params[i] = buffer_close(&lists[i], count);
        if (params[i] == NULL) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
    }
    params[LISTS] = traffic__time_zone(config);
    params[LISTS + 1] = report_id != NULL ? report_id : "";
    rc = znp_sql_exec(NULL, db, RECORDS_SQL, LISTS + 2, params, request_id);

cleanup:
    for (size_t i = 0; i < LISTS; i++)
        free(lists[i].data);
    return rc;
}

int traffic__ingest_in_transaction(PGconn *db, const znp_config_t *config, int64_t node_id, const char *report_id,
                                   const znp_traffic_record_t *records, size_t count, znp_traffic_result_t *result,
                                   int64_t *crossed, size_t crossed_max, size_t *crossed_count,
                                   const char *request_id)
{
    int dedup = report_id != NULL && report_id[0] != '\0';
    resolved_t *items = NULL;
    size_t item_count = 0;
    int first = 1;
    int rc = 0;

    memset(result, 0, sizeof(*result));
    *crossed_count = 0;
    if (dedup && node_id <= 0)
        return ZNP_E_VALIDATION_FAILED;

    /* claim the report key */
    if (dedup) {
        rc = claim_report(db, node_id, report_id, &first, result, request_id);
        if (rc != 0 || !first)
            goto cleanup;
    }

    /* resolve every record and work out its charge */
    items = calloc(count > 0 ? count : 1, sizeof(*items));
    if (items == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    if (count > 0) {
        rc = resolve_all(db, records, count, items, &item_count, request_id);
        if (rc != 0)
            goto cleanup;
    }
    result->failed = (int64_t)(count - item_count);
    for (size_t i = 0; i < item_count; i++) {
        const znp_traffic_record_t *r = items[i].record;

        items[i].raw =
            traffic__saturating_add(r->bytes_up > 0 ? r->bytes_up : 0, r->bytes_down > 0 ? r->bytes_down : 0);
        items[i].charged = traffic__charge(items[i].raw, items[i].multiplier);
    }
    qsort(items, item_count, sizeof(*items), compare_resolved);

    /* add to each subscription once */
    if (item_count > 0) {
        rc = add_used(db, items, item_count, crossed, crossed_max, crossed_count, request_id);
        if (rc != 0)
            goto cleanup;
    }

    /* store the records and their days */
    if (item_count > 0) {
        rc = store_records(db, config, node_id, report_id, items, item_count, request_id);
        if (rc != 0)
            goto cleanup;
    }
    result->accepted = (int64_t)item_count;

    /* store the counts, which a retransmission receives in its response */
    if (dedup) {
        char node_text[24], accepted_text[24], failed_text[24];
        const char *params[4] = {int_text(node_text, sizeof node_text, node_id), report_id,
                                 int_text(accepted_text, sizeof accepted_text, result->accepted),
                                 int_text(failed_text, sizeof failed_text, result->failed)};

        rc = znp_sql_exec(NULL, db,
                          "UPDATE traffic_reports SET accepted = $3, failed = $4 WHERE node_id = $1 AND report_id = $2",
                          4, params, request_id);
    }

cleanup:
    free(items);
    return rc;
}

/* Beyond CROSSED_MAX ids only the user lists are dropped, and the download cache entries expire by their TTL. */
void traffic__forget_crossed(const int64_t *crossed, size_t count)
{
    if (count == 0)
        return;
    znp_uniproxy_invalidate();
    for (size_t i = 0; i < count && i < CROSSED_MAX; i++)
        znp_download_cache_forget(crossed[i]);
}

/* Check whether node `node_id` exists and is not deleted. Returns 0 with *exists set, or a negative znp_err. */
static int node_exists(PGconn *db, int64_t node_id, int *exists, const char *request_id)
{
    char node_text[24];
    const char *params[1] = {int_text(node_text, sizeof node_text, node_id)};
    PGresult *res = NULL;
    int rc;

    rc = znp_sql_exec(&res, db, "SELECT 1 FROM nodes WHERE id = $1 AND deleted_at IS NULL", 1, params, request_id);
    *exists = rc == 0 && PQntuples(res) == 1;
    PQclear(res);
    return rc;
}

int traffic__node_exists(PGconn *db, int64_t node_id, int *exists, const char *request_id)
{
    return node_exists(db, node_id, exists, request_id);
}

int znp_traffic_ingest(PGconn *db, const znp_config_t *config, int64_t node_id, const char *report_id,
                       const znp_traffic_record_t *records, size_t count, znp_traffic_result_t *result,
                       const char *request_id)
{
    int64_t crossed[CROSSED_MAX];
    size_t crossed_count = 0;
    int exists = 1;
    int rc;

    memset(result, 0, sizeof(*result));
    if (report_id != NULL && report_id[0] != '\0' && node_id <= 0)
        return ZNP_E_VALIDATION_FAILED;
    if (node_id > 0) {
        rc = node_exists(db, node_id, &exists, request_id);
        if (rc != 0)
            return rc;
        if (!exists)
            return ZNP_E_NOT_FOUND;
    }

    rc = znp_sql_begin(db, request_id);
    if (rc != 0)
        return rc;
    rc = traffic__ingest_in_transaction(db, config, node_id, report_id, records, count, result, crossed, CROSSED_MAX,
                                        &crossed_count, request_id);
    if (rc == 0)
        rc = znp_sql_commit(db, request_id);
    if (rc != 0) {
        znp_sql_rollback(db, request_id);
        memset(result, 0, sizeof(*result));
        return rc;
    }

    /* the quota crossings change who may use the bindings */
    traffic__forget_crossed(crossed, crossed_count);
    return 0;
}

int znp_traffic_purge_reports(PGconn *db, const znp_config_t *config)
{
    PGresult *res = NULL;
    int rc;

    (void)config;
    rc = znp_sql_exec(&res, db,
                      "DELETE FROM traffic_reports WHERE received_at < now() - interval '" REPORT_RETENTION_DAYS
                      " days'",
                      0, NULL, NULL);
    if (rc == 0 && PQcmdTuples(res)[0] != '\0' && strcmp(PQcmdTuples(res), "0") != 0)
        ZNP_INFO(TRAFFIC_LOG_TAG, NULL, "purged old traffic report keys: count=%s", PQcmdTuples(res));
    PQclear(res);
    return rc;
}
