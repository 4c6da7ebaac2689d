/*
 * Process metrics in Prometheus text format 0.0.4. Counters and histograms
 * are updated lock-free (atomics) from any thread; znp_metrics_render builds
 * the /metrics body.
 */
#ifndef ZNP_RUNTIME_METRICS_H
#define ZNP_RUNTIME_METRICS_H

#include <stddef.h>

struct znp_pool;

/* Reset every counter and label table. Call before any thread records. */
void znp_metrics_init(void);

/* Add `delta` (+1 when a request reaches the handler, -1 when it ends) to the in-flight gauge. */
void znp_metrics_http_in_flight_add(int delta);

/*
 * Count one finished HTTP request. `route` is the route template (e.g.
 * "/api/v1/{admin}/site-settings") or "unmatched"; label cardinality stays
 * bounded because raw paths are never used as labels. `route` must be a
 * string with static storage duration that never changes: its label is
 * remembered by its address.
 */
void znp_metrics_observe_request(const char *route, const char *method, int status, double seconds);

/* Count one finished gRPC call by full method name and status code. */
void znp_metrics_observe_grpc(const char *method, int code, double seconds);

/* Count one finished job attempt of `kind`; `result` is "done", "retry" or "dead". */
void znp_metrics_job_finished(const char *kind, const char *result);
/* Set the gauge of queued jobs, as last counted by a job runner. */
void znp_metrics_jobs_queue_depth_set(long depth);

/*
 * Count one kernel control call (znp_node_sync_calls_total) and its duration
 * (znp_node_sync_call_duration_seconds). `call` is one of a fixed set of
 * names ("status", "protocols", ...); `result` "ok", "error", "timeout",
 * "unreachable", "malformed" or "unauthorized" (others count as "error").
 */
void znp_metrics_kernel_call(const char *call, const char *result, double seconds);

/* Count one status poll outcome of the poller (znp_node_status_polls_total): "online" or "offline". */
void znp_metrics_node_poll(const char *outcome);

/* Render the exposition into a malloc'd buffer (*out owned by the caller). */
int znp_metrics_render(char **out, size_t *len, struct znp_pool *pool);

#endif
