/*
 * Request protection for the HTTP and gRPC faces: the client IP behind trusted
 * proxies, CORS origin matching, token-bucket rate limits with a bounded
 * key table, and the admin allow-list. The parsers and the limiter are pure
 * logic with an injectable clock, so the unit tests drive time.
 *
 * Threading: a znp_protect_t is read-only after create except its limiters,
 * which lock per shard, so every function may be called from any thread.
 *
 * One znp_protect_t serves both faces: the HTTP server creates it and the
 * gRPC bridge borrows it, so a client address takes from the same buckets
 * over either. gRPC calls use the socket peer as the client (no forwarding
 * headers, so trusted_proxies does not apply) and get the allow-list and the
 * rate limits of their operation's route group.
 */
#ifndef ZNP_PROTECT_H
#define ZNP_PROTECT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"
#include "core/ratelimit.h"

/* addresses ------------------------------------------------------------- */

#define ZNP_IP_TEXT_MAX 46 /* INET6_ADDRSTRLEN */

typedef struct znp_ip {
    uint8_t family; /* 4 or 6; 0 when unknown */
    uint8_t bytes[16];
} znp_ip_t;

/* Parse an IPv4 or IPv6 literal of `len` bytes. IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4. */
int znp_ip_parse(znp_ip_t *out, const char *text, size_t len);
/* The address of an AF_INET or AF_INET6 socket address; family 0 for anything else. */
void znp_ip_from_sockaddr(znp_ip_t *out, const struct sockaddr *addr);
/* Text form ("" for an unknown address). */
void znp_ip_format(char *out, size_t out_size, const znp_ip_t *ip);

typedef struct znp_cidr {
    znp_ip_t base;
    uint8_t prefix; /* bits, up to 32 for IPv4 and 128 for IPv6 */
} znp_cidr_t;

/* Parse "ADDRESS/BITS" or a bare address (a single host). Host bits beyond the prefix must be zero. */
int znp_cidr_parse(znp_cidr_t *out, const char *text, size_t len);
int znp_cidr_contains(const znp_cidr_t *cidr, const znp_ip_t *ip);

typedef struct znp_cidr_list {
    size_t count;
    znp_cidr_t *items; /* owned */
} znp_cidr_list_t;

/*
 * Parse a list of CIDRs separated by commas or whitespace (NULL or "" is the
 * empty list). On an invalid entry returns ZNP_E_VALIDATION_FAILED and
 * copies the entry into `bad` (truncated to bad_size); `out` is then empty.
 */
int znp_cidr_list_parse(znp_cidr_list_t *out, const char *text, char *bad, size_t bad_size);
int znp_cidr_list_contains(const znp_cidr_list_t *list, const znp_ip_t *ip);
/* Accepts a zeroed or disposed list. */
void znp_cidr_list_dispose(znp_cidr_list_t *list);

/*
 * The client address of a request that came from `peer`. When the peer is
 * in `trusted`, the forwarding chain is walked from the right, skipping
 * trusted hops, and the first untrusted address is the client. The chain is
 * `x_forwarded_for` (every X-Forwarded-For field joined with ", ") when it
 * is not NULL, else the for= parameters of `forwarded` (RFC 7239). An entry
 * that is not an address ends the walk at the last trusted hop; a chain of
 * trusted hops only yields its leftmost address.
 */
void znp_client_ip_resolve(znp_ip_t *out, const znp_ip_t *peer, const znp_cidr_list_t *trusted,
                           const char *x_forwarded_for, size_t xff_len, const char *forwarded, size_t forwarded_len);

/* CORS origins -------------------------------------------------------- */

typedef struct znp_origin_pattern {
    char scheme[8];  /* "http" or "https" */
    char host[254];  /* lowercase; for a wildcard, the suffix after "*." */
    int wildcard;    /* "*.host": one or more labels in front of host */
    uint16_t port;   /* 0 = the scheme's default port */
} znp_origin_pattern_t;

typedef struct znp_origin_list {
    int any; /* "*" was listed */
    size_t count;
    znp_origin_pattern_t *items; /* owned */
} znp_origin_list_t;

/* Parse a comma- or space-separated list of origins; errors as znp_cidr_list_parse. */
int znp_origin_list_parse(znp_origin_list_t *out, const char *text, char *bad, size_t bad_size);
/* Whether the Origin header value `origin` matches an entry ("*" matches every origin). */
int znp_origin_list_match(const znp_origin_list_t *list, const char *origin, size_t len);
void znp_origin_list_dispose(znp_origin_list_t *list);

/* token buckets ------------------------------------------------------- */

/* the outcome of taking one token */
typedef struct znp_rate_verdict {
    int limited;            /* 1 when a limit applied at all */
    int allowed;
    uint32_t limit;         /* RateLimit-Limit: the burst */
    uint32_t remaining;     /* RateLimit-Remaining: whole tokens left */
    uint32_t reset_s;       /* RateLimit-Reset: seconds until the bucket is full again */
    uint32_t retry_after_s; /* Retry-After when not allowed: seconds until one token is back */
} znp_rate_verdict_t;

typedef struct znp_bucket {
    double tokens;
    int64_t updated_ms;
} znp_bucket_t;

/* Start a full bucket at `now_ms`. */
void znp_bucket_init(znp_bucket_t *bucket, znp_rate_t rate, int64_t now_ms);
/* Refill for the time since the last call, then take one token if there is one. */
void znp_bucket_take(znp_bucket_t *bucket, znp_rate_t rate, int64_t now_ms, znp_rate_verdict_t *out);

/* milliseconds on a monotonic clock; `data` is the pointer given at create */
typedef int64_t (*znp_clock_ms_fn)(void *data);

#define ZNP_LIMITER_KEY_MAX 32
#define ZNP_LIMITER_SHARDS  16

typedef struct znp_limiter znp_limiter_t;

/*
 * A table of token buckets keyed by up to ZNP_LIMITER_KEY_MAX bytes, split
 * into ZNP_LIMITER_SHARDS shards with one mutex each. It never contains
 * more than `max_keys` buckets (at least one per shard). Inserting into a
 * full shard evicts, among the 8 oldest buckets not taken from since their
 * insertion or last second chance, one that has refilled completely, else
 * the oldest of them (second chance: close to least recently used).
 * `clock` NULL means CLOCK_MONOTONIC. *out owned.
 */
int znp_limiter_create(znp_limiter_t **out, size_t max_keys, znp_clock_ms_fn clock, void *clock_data);
/* Take one token from the bucket of `key` (created full when absent). A rate of 0 per minute always allows. */
void znp_limiter_take(znp_limiter_t *limiter, const void *key, size_t key_len, znp_rate_t rate,
                      znp_rate_verdict_t *out);
/* The hash of `key` in this table, for the calls below, so a caller that hints first hashes the key once. */
uint64_t znp_limiter_hash(const znp_limiter_t *limiter, const void *key, size_t key_len);
/* znp_limiter_take with `hash` from znp_limiter_hash(limiter, key, key_len). */
void znp_limiter_take_hashed(znp_limiter_t *limiter, uint64_t hash, const void *key, size_t key_len, znp_rate_t rate,
                             znp_rate_verdict_t *out);
/*
 * Memory hints for a take of the key with `hash` soon, on a table too large
 * for the CPU caches. _slot starts loading the key's hash slot. _bucket,
 * called later, starts loading the bucket that slot names. It reads the slot
 * without the lock, because a stale pointer only wastes the hint: buckets
 * are freed by destroy only.
 */
void znp_limiter_prefetch_slot(znp_limiter_t *limiter, uint64_t hash);
void znp_limiter_prefetch_bucket(znp_limiter_t *limiter, uint64_t hash);
/* Hash slots in use and the longest chain, over all shards: for tests and diagnostics (walks every slot). */
void znp_limiter_chains(znp_limiter_t *limiter, size_t *used_slots, size_t *longest);
/* Buckets held now. */
size_t znp_limiter_size(znp_limiter_t *limiter);
/* Maximum number of buckets in the table. */
size_t znp_limiter_capacity(const znp_limiter_t *limiter);
/* Accepts NULL. */
void znp_limiter_destroy(znp_limiter_t *limiter);

/* request policy ------------------------------------------------------ */

typedef enum znp_route_group {
    ZNP_GROUP_PUBLIC = 0,
    ZNP_GROUP_USER,  /* /api/v1/user and below */
    ZNP_GROUP_ADMIN, /* /api/v1/<admin_prefix> and below */
    ZNP_GROUP_COUNT,
} znp_route_group_t;

/* The route group of a request path (without the query). */
znp_route_group_t znp_protect_group_of(const char *path, size_t len, const char *admin_prefix);
const char *znp_protect_group_name(znp_route_group_t group);

/* the CORS settings of one route group after the group overrides are applied */
typedef struct znp_cors_policy {
    int enabled;
    znp_origin_list_t origins;
    const char *allow_headers; /* borrowed from the configuration */
    const char *allow_methods;
    int allow_credentials;
    uint32_t max_age_s;
    const char *expose_headers;
} znp_cors_policy_t;

typedef struct znp_protect {
    const znp_config_t *config; /* borrowed */
    znp_cidr_list_t trusted_proxies;
    znp_cidr_list_t admin_allow; /* empty = every address */
    znp_rate_t admin_rate;
    znp_cors_policy_t cors[ZNP_GROUP_COUNT];
    int rates_enabled;
    znp_rate_limit_t group_rates[ZNP_GROUP_COUNT];
    znp_limiter_t *ip_buckets;     /* keyed by scope and client IP */
    znp_limiter_t *shared_buckets; /* keyed by scope and user id, and the global buckets */
} znp_protect_t;

/*
 * Build the policy from a validated configuration (`config` must outlive
 * it). `clock` NULL means CLOCK_MONOTONIC. *out owned by the caller.
 */
int znp_protect_create(znp_protect_t **out, const znp_config_t *config, znp_clock_ms_fn clock, void *clock_data);
/* Accepts NULL. */
void znp_protect_destroy(znp_protect_t *protect);

/* Whether `method` (e.g. "PUT") is in the policy's allow_methods list, compared case-sensitively. */
int znp_cors_method_allowed(const znp_cors_policy_t *policy, const char *method, size_t len);

/*
 * Checks before routing, on the event loop: for the admin group the
 * allow-list (ZNP_E_ACCESS_DENIED) and admin.rate_per_minute, then the
 * group's per-IP and global buckets. Returns 0 or ZNP_E_TOO_MANY_REQUESTS;
 * `out` describes the tightest bucket taken from (limited 0 when none).
 */
int znp_protect_admit_request(znp_protect_t *protect, znp_route_group_t group, const znp_ip_t *client,
                              znp_rate_verdict_t *out);

/* The per-IP and global limits of one operation (index in the operation table). Same results. */
int znp_protect_admit_operation(znp_protect_t *protect, size_t op_index, const znp_rate_limit_t *limits,
                                const znp_ip_t *client, znp_rate_verdict_t *out);

/* The per-user limits of the group and of the operation (`limits` may be NULL), after authentication. */
int znp_protect_admit_user(znp_protect_t *protect, znp_route_group_t group, size_t op_index,
                           const znp_rate_limit_t *limits, int64_t user_id, znp_rate_verdict_t *out);

/*
 * Check the protection keys of `config` (CIDR lists, origins, CORS flags,
 * bucket sizes). On failure returns ZNP_E_VALIDATION_FAILED with the key
 * path ("admin.allow_cidrs") in `key` and a message in `message`.
 */
int znp_protect_check_config(const znp_config_t *config, char *key, size_t key_size, char *message,
                             size_t message_size);

#endif
