/* Shared between the files of the traffic module, and the pure helpers its unit tests call. */
#ifndef ZNP_TRAFFIC_INTERNAL_H
#define ZNP_TRAFFIC_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "traffic/traffic.h"

#define TRAFFIC_LOG_TAG         "traffic"
#define TRAFFIC_RECORDS_MAX     1000 /* records in one report */
#define TRAFFIC_PROTOCOL_MAX    32
#define TRAFFIC_DEFAULT_ZONE    "Asia/Shanghai"
#define TRAFFIC_SIGNATURES_MAX  8    /* v1= values read from one signature header */
#define TRAFFIC_REASON_MAX      96

/* a + b, clamped to [INT64_MIN, INT64_MAX] */
int64_t traffic__saturating_add(int64_t a, int64_t b);

/*
 * round(raw x multiplier), halves away from zero, clamped to
 * [0, INT64_MAX]. A multiplier that is not a finite number above 0 counts
 * as 1; a multiplier of exactly 1 returns `raw` unchanged (no rounding
 * through a double).
 */
int64_t traffic__charge(int64_t raw, double multiplier);

/* The parts of a "t=<unix seconds>,v1=<hex>[,v1=<hex>...]" signature header. */
typedef struct traffic_signature {
    int64_t timestamp;
    size_t count;
    char v1[TRAFFIC_SIGNATURES_MAX][65]; /* 64 lower-case hex digits */
} traffic_signature_t;

/*
 * Parse a signature header of comma-separated elements with optional spaces
 * around them. Elements other than t and v1 are skipped, and so are v1
 * values that are not 64 hex digits, because they could never match.
 * Returns 0, or -1 without a valid t or without any usable v1.
 */
int traffic__signature_parse(const char *header, traffic_signature_t *out);

/* The webhook settings a kernel callback is checked against. */
typedef struct traffic_webhook_keys {
    const char *shared_token;   /* NULL or "" when unset */
    const char *signing_secret; /* NULL or "" when unset */
    uint32_t tolerance_s;
} traffic_webhook_keys_t;

/*
 * Check the credentials of a kernel callback. When a signing secret is set
 * and a signature header is present, the signature alone decides: an
 * HMAC-SHA256 over "<t>.<body>" with t within tolerance_s of `now`.
 * Otherwise the token must equal the shared token. Both compares take
 * constant time. Returns 0, or ZNP_E_WEBHOOK_UNAUTHENTICATED with *reason
 * set to a static text.
 */
int traffic__webhook_check(const traffic_webhook_keys_t *keys, int64_t now, const char *token,
                           const char *signature, const char *body, size_t body_len, const char **reason);

/*
 * Validate record `item` of a JSON report into `out` (strings borrowed from
 * `item`, the protocol lower-cased into `protocol`, which must hold
 * TRAFFIC_PROTOCOL_MAX + 1 bytes). Returns 0, or -1 with the reason in
 * `reason`.
 */
int traffic__record_from_json(const json_t *item, znp_traffic_record_t *out, char *protocol, char *reason,
                              size_t reason_size);

/*
 * Lower-case protocol name `text` (len bytes) into `out` (TRAFFIC_PROTOCOL_MAX
 * + 1 bytes). Returns 0, or -1 with the reason in `reason` (may be NULL)
 * when it is too long or has a character other than letters, digits, '_'
 * and '-'.
 */
int traffic__protocol_normalize(const char *text, size_t len, char *out, char *reason, size_t reason_size);

/* Lower-case `event` with '.' and '-' turned into '_' into `out` (truncated to out_size - 1 bytes). */
void traffic__event_normalize(const char *event, char *out, size_t out_size);

/* Health of a kernel status or node event name: 1 healthy ... 4 offline, 0 when it names none. */
int traffic__health_of(const char *status, const char *event);

/*
 * Run znp_traffic_ingest inside the caller's open transaction. The ids of
 * subscriptions that crossed their quota go to crossed[], at most
 * crossed_max of them, and *crossed_count counts them all. The caller
 * commits and then calls traffic__forget_crossed.
 */
int traffic__ingest_in_transaction(PGconn *db, const znp_config_t *config, int64_t node_id, const char *report_id,
                                   const znp_traffic_record_t *records, size_t count, znp_traffic_result_t *result,
                                   int64_t *crossed, size_t crossed_max, size_t *crossed_count,
                                   const char *request_id);

/* Drop cached user lists and download files of subscriptions that crossed their quota. */
void traffic__forget_crossed(const int64_t *crossed, size_t count);

/* Whether node `node_id` exists and is not deleted. Returns 0 with *exists set, or a negative znp_err. */
int traffic__node_exists(PGconn *db, int64_t node_id, int *exists, const char *request_id);

/* The panel time zone of `config` (TRAFFIC_DEFAULT_ZONE when unset). */
const char *traffic__time_zone(const znp_config_t *config);

#endif
