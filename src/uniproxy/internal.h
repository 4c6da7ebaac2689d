/*
 * Private interfaces of the uniproxy module, shared by its files and its
 * unit tests.
 */
#ifndef ZNP_UNIPROXY_INTERNAL_H
#define ZNP_UNIPROXY_INTERNAL_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* node backends push and pull at these periods unless the binding profile's base_config sets others */
#define UNIPROXY_PUSH_INTERVAL_S 60
#define UNIPROXY_PULL_INTERVAL_S 60
/* an IP from POST .../alive counts as online this long; three push periods, so one lost report drops nothing */
#define UNIPROXY_ALIVE_TTL_S 180
/* user lists kept in memory, one per binding; the least recently used one is dropped beyond this */
#define UNIPROXY_CACHE_ENTRIES 128
/* max details entries in a 422 response, because the first ones are enough to fix a node backend */
#define UNIPROXY_MAX_DETAILS 64
#define UNIPROXY_REPORT_ID_MAX 128
#define UNIPROXY_ETAG_SIZE 68 /* '"', 64 hex digits, '"', NUL */

/* One user's counters of a push report. */
typedef struct uniproxy_usage {
    int64_t user_id;
    int64_t upload;
    int64_t download;
} uniproxy_usage_t;

/* One (user, IP) pair of an alive report. */
typedef struct uniproxy_online {
    int64_t user_id;
    const char *ip; /* points into the parser's copy of the body */
} uniproxy_online_t;

/*
 * The outcome of parsing a report body. On ZNP_E_NODE_REPORT_INVALID,
 * `bad_count` values were wrong (all of them counted, the first
 * UNIPROXY_MAX_DETAILS described): first_field/first_message describe the
 * first one and more_details is the JSON array text of the others (NULL
 * when there is only one).
 */
typedef struct uniproxy_report {
    uniproxy_usage_t *usage; /* push: one per key, in body order */
    uniproxy_online_t *online; /* alive: one per (key, IP) */
    size_t count;
    size_t bad_count;
    char first_field[128];
    char first_message[160];
    char *more_details;
    char *storage; /* owns the strings `online` points to */
} uniproxy_report_t;

/*
 * Parse a push body {"<user id>": [upload, download], ...}. Every value must
 * be an integer from 0 to INT64_MAX and each pair's sum must stay within
 * INT64_MAX. Returns 0, ZNP_E_BODY_REQUIRED for an empty body,
 * ZNP_E_INVALID_JSON when the body is not JSON or not an object, or
 * ZNP_E_NODE_REPORT_INVALID. `out` is filled in every case; release it with
 * uniproxy_report_dispose.
 */
int uniproxy_parse_push(const char *body, size_t len, uniproxy_report_t *out);

/*
 * Parse an alive body {"<user id>": ["ip", ...], ...}. An IP is 1 to 64
 * characters of letters, digits and . : _ - % [ ]. The returns of
 * uniproxy_parse_push.
 */
int uniproxy_parse_alive(const char *body, size_t len, uniproxy_report_t *out);

void uniproxy_report_dispose(uniproxy_report_t *report);

/* The canonical protocol of a node_type or binding protocol ("v2ray" -> "vmess", "ss" -> "shadowsocks"). Static. */
const char *uniproxy_canonical_protocol(const char *name);

/* Quote `body`'s SHA-256 in hex as a strong entity tag. */
void uniproxy_etag(char out[UNIPROXY_ETAG_SIZE], const char *body, size_t len);

/*
 * The identity UUID of a user list row: derived from the stored credential
 * when key_id is not NULL, else made through znp_identity_ensure (which
 * creates version 1). Lives in its own file because src/identity/identity.h
 * and core/context.h both define struct znp_identity.
 */
int uniproxy_identity_uuid(PGconn *db, const znp_config_t *config, int64_t user_id, int64_t version,
                           const char *key_id, const char *secret_sealed, char uuid[37], const char *request_id);

#endif
