/*
 * The kernel control client: one node's kernel is
 * reached at its control endpoint through libcurl, with the node's own
 * credentials. Also the status poller (a scheduled job) and the admin
 * operations that probe kernels or pull their config.
 */
#ifndef ZNP_KERNEL_H
#define ZNP_KERNEL_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

typedef struct znp_kernel_target {
    int64_t node_id;
    char *base_url;    /* control endpoint with /v1 appended unless it already ends in /v1 */
    char *auth_header; /* full "Authorization: ..." header line, or NULL */
    long timeout_ms;
} znp_kernel_target_t;

/* Load node `node_id` (not deleted) and unseal its credentials. ZNP_E_NOT_FOUND when missing. */
int znp_kernel_target_load(PGconn *db, const znp_config_t *config, int64_t node_id, znp_kernel_target_t *out,
                           const char *request_id);
void znp_kernel_target_clear(znp_kernel_target_t *t);

/* One call: method, path below /v1 (e.g. "/protocols"), optional JSON body. On HTTP 200, *out is
 * the parsed JSON (new reference; NULL when the body is empty). Any other outcome returns a
 * negative znp_err and writes a one-line reason into errbuf ("kernel control: 500: <first 1 KiB>",
 * "timeout", "malformed JSON", ...). Bounded retries on connect failure only. Thread-safe.
 * (kernel module note: HTTP 404 returns ZNP_E_NOT_FOUND, every other failure ZNP_E_KERNEL_UNAVAILABLE.) */
int znp_kernel_call(const znp_kernel_target_t *t, const char *method, const char *path, json_t *body, json_t **out,
                    char *errbuf, size_t errsize);

/* Health of a kernel NodeStatus.health.status value: string ("healthy", "Healthy", ...) or
 * object form ({"Degraded": {...}}). Returns 1 healthy, 2 degraded, 3 unhealthy, 4 offline,
 * 0 unknown. */
int znp_kernel_health_of(const json_t *status);

/* ---- additions of the kernel module (beyond the fixed interface above) ---- */

/*
 * Fill `out` from plain values: base URL from `endpoint` (trailing '/'
 * removed, "/v1" appended unless present), the auth header by precedence
 * (access key and secret key both set: Basic; else token: kept when it
 * starts with "Basic " or "Bearer " in any case, else "Bearer <token>";
 * else none), `timeout_s` <= 0 meaning 5 s. Any pointer may be NULL or "".
 */
int znp_kernel_target_init(znp_kernel_target_t *out, int64_t node_id, const char *endpoint, const char *access_key,
                           const char *secret_key, const char *token, long timeout_s);

/* Poll settings of one node, as stored in its kernel_* columns. */
typedef struct znp_kernel_poll_settings {
    int64_t interval_s; /* > 0 for a polled node */
    int backoff_enabled;
    int64_t max_interval_s; /* <= 0 or below interval_s: the interval is the cap */
    double multiplier;      /* > 1 */
    double jitter;          /* 0..1, fraction of the delay */
    int64_t probe_max_s;    /* cap of the offline probe delay; 0 = no cap */
} znp_kernel_poll_settings_t;

/* What the poller remembers of one node between polls (stored in node_poll_state). */
typedef struct znp_kernel_poll_state {
    uint32_t failures;       /* consecutive failed polls */
    uint32_t probe_attempts; /* offline probes made on probe_day */
    int64_t probe_day;       /* panel-local day number (days since 1970-01-01) probe_attempts counts */
    int64_t next_due_ms;     /* Unix milliseconds of the next poll */
} znp_kernel_poll_state_t;

/*
 * Backoff delay in milliseconds after `failures` (>= 1) consecutive failed
 * polls: interval x multiplier^failures capped at max_interval (or at the
 * interval when max_interval <= 0 or below it), then moved by up to
 * +/- jitter of itself using `random` (any 32-bit value), never below the
 * interval. With backoff disabled: the interval.
 */
int64_t znp_kernel_backoff_ms(const znp_kernel_poll_settings_t *s, uint32_t failures, uint32_t random);

/*
 * Offline probe delay in milliseconds before probe number `attempt` (0 for
 * the first of the day): 1 + 2 x attempt seconds, capped at probe_max_s
 * when that is > 0.
 */
int64_t znp_kernel_probe_ms(const znp_kernel_poll_settings_t *s, uint32_t attempt);

/*
 * Advance `state` after a poll at `now_ms` that succeeded (`ok` 1) or
 * failed. A pure function of its arguments: `day` is the panel-local day
 * number of now_ms and `day_end_ms` the Unix milliseconds of the next local
 * midnight. Success resets failures and probes, and the next poll is one
 * interval later. Failure adds one failure, and the next poll comes after
 * the backoff delay. With `probing` (the node is offline) it comes at the
 * earlier of that and the offline probe delay. The probe counter restarts
 * on a new day, and a probe never waits past day_end_ms.
 */
void znp_kernel_poll_advance(znp_kernel_poll_state_t *state, const znp_kernel_poll_settings_t *s, int ok, int probing,
                             int64_t now_ms, int64_t day, int64_t day_end_ms, uint32_t random);

/* Scheduled job name of the status poller (1 s tick). */
#define ZNP_KERNEL_POLL_JOB "kernel.status_poll"

/*
 * Register the status poller with znp_jobs_schedule (before the job runner
 * starts). Every tick it polls the due nodes concurrently, each call on its
 * own thread, so one hanging kernel does not delay the others.
 */
int znp_kernel_poller_register(void);

/* Abort the polls in flight and wait for their threads (after the job runner stopped). */
void znp_kernel_poller_stop(void);

/* Job kind of the recovery sync the poller queues when a node comes back online, payload {"node_id": n}. */
#define ZNP_KERNEL_RECOVERY_JOB "kernel.recovery_sync"

/*
 * Run one tick of the poller: apply finished polls, then start a poll of
 * every eligible node that is due by the database clock. The handler of
 * the scheduled job.
 */
int znp_kernel_poll_tick(PGconn *db, const znp_config_t *config);

/* Mask an access key for logs: first 2 + "***" + last 2; 4 characters or fewer: "****". */
void znp_kernel_mask_key(const char *key, char *out, size_t size);

/* First 8 hex digits of SHA-256 of `secret`, for logs; "" for an empty or NULL secret. */
void znp_kernel_fingerprint(const char *secret, char out[9]);

#endif
