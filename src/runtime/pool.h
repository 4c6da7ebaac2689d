/*
 * The worker pool: N threads, each owning one PostgreSQL connection. Jobs
 * come from the HTTP event loops and the gRPC completion-queue thread. A
 * job's `run` callback gets the worker's connection and itself hands the
 * result back to its transport: for HTTP through h2o_multithread_send_message,
 * for gRPC through grpc_call_start_batch.
 *
 * A worker whose connection fails reconnects with exponential backoff
 * (100 ms doubling up to database.reconnect_max_ms). While no worker has a
 * working connection, jobs get db == NULL and fail fast with
 * ZNP_E_DATABASE_UNAVAILABLE. The health state's database flag is set by the
 * watcher (watcher.h), not by the pool.
 */
#ifndef ZNP_RUNTIME_POOL_H
#define ZNP_RUNTIME_POOL_H

#include <libpq-fe.h>
#include <stddef.h>

struct znp_config;

typedef struct znp_pool znp_pool_t;
typedef struct znp_job znp_job_t;

struct znp_job {
    /*
     * Runs on a worker thread. `db` is the worker's connection, or NULL when
     * the database is unavailable (the job then replies 503). The job owns
     * its own memory; the pool never frees it.
     */
    void (*run)(znp_job_t *job, PGconn *db);
    znp_job_t *next; /* pool-internal queue link */
};

/*
 * Start `workers` threads connected with `dsn`. Connections that fail at start
 * are retried in the background, so this succeeds even while the database is
 * down. *out is owned by the caller (znp_pool_destroy).
 */
int znp_pool_create(znp_pool_t **out, const struct znp_config *config, const char *dsn, size_t workers);

/*
 * Queue `job`. Thread-safe. Returns 0, or ZNP_E_OVERLOADED when
 * server.queue_limit jobs are already waiting, or ZNP_E_SHUTTING_DOWN after
 * znp_pool_drain() started; then the caller replies to the request itself.
 */
int znp_pool_submit(znp_pool_t *pool, znp_job_t *job);

/* Number of jobs waiting and running; for /metrics. Thread-safe. */
void znp_pool_stats(znp_pool_t *pool, size_t *queued, size_t *busy, size_t *connected, size_t *workers);

/* Stop accepting jobs and wait up to `timeout_ms` for queued and running jobs to finish. Returns the number left. */
size_t znp_pool_drain(znp_pool_t *pool, unsigned timeout_ms);

/* Join the workers and close their connections. Accepts NULL. */
void znp_pool_destroy(znp_pool_t *pool);

#endif
