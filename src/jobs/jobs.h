/*
 * The job queue, stored in PostgreSQL so any instance can run any job and a
 * restart loses nothing. Workers claim jobs with SELECT ... FOR UPDATE SKIP
 * LOCKED; failed jobs are retried with exponential backoff up to
 * max_attempts, then marked dead (visible in metrics and the audit log).
 */
#ifndef ZNP_JOBS_H
#define ZNP_JOBS_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "config/config.h"

/*
 * Queue a job of `kind` (e.g. "mail.send") with a JSON `payload` (borrowed),
 * to run at `run_at` (Unix seconds, 0 = now). Runs inside the caller's
 * transaction when one is open, so a job is queued only if the change that
 * caused it commits. *id_out may be NULL.
 */
int znp_jobs_enqueue(PGconn *db, const char *kind, json_t *payload, int64_t run_at, int64_t *id_out);

/*
 * A handler runs one job. Return 0 on success, or a negative znp_err to
 * retry later; `message` (may stay empty) is stored as last_error.
 */
typedef int (*znp_job_handler_fn)(PGconn *db, const znp_config_t *config, json_t *payload, char *message,
                                  size_t message_size);

/*
 * Called after a job of its kind was marked dead (max_attempts used up), with
 * the payload it had; `last_error` may be empty. It runs outside any
 * transaction, so a failure in it does not keep the job alive.
 */
typedef void (*znp_job_dead_fn)(PGconn *db, const znp_config_t *config, json_t *payload, const char *last_error);

/* Register the handler for `kind` before znp_jobs_runner_start. `on_dead` may be NULL. Not thread-safe. */
int znp_jobs_register(const char *kind, znp_job_handler_fn handler);
int znp_jobs_register_dead(const char *kind, znp_job_dead_fn on_dead);

/*
 * Delay in milliseconds before the next try after `attempts` failed tries:
 * 2^attempts seconds capped at one hour, scaled by a jitter factor from 0.8
 * to 1.2 taken from `random` (any 32-bit value).
 */
int64_t znp_jobs_backoff_ms(unsigned attempts, uint32_t random);

/*
 * A scheduled job runs `handler` every `interval_seconds` on one extra runner
 * thread, inside a transaction that holds pg_try_advisory_xact_lock on a
 * stable hash of `name` and that moves scheduled_runs.last_run_at to now(),
 * so across a restart and across instances on one database each job runs
 * once per interval. Return 0 to commit, or a negative znp_err to roll the
 * handler's writes back (the next try is one interval later).
 */
typedef int (*znp_schedule_fn)(PGconn *db, const znp_config_t *config);

/* Register before znp_jobs_runner_start; no scheduler thread runs when `threads` is 0. Not thread-safe. */
int znp_jobs_schedule(const char *name, unsigned interval_seconds, znp_schedule_fn handler);

#define ZNP_JOBS_PURGE_JOB "maintenance.purge"

/*
 * The scheduled job maintenance.purge: deletes finished jobs older than
 * jobs.retention_days, refresh tokens and codes a day past their use, and
 * expired signed-API nonces.
 */
int znp_jobs_purge(PGconn *db, const znp_config_t *config);

/* The advisory lock key of scheduled job `name`: 64-bit FNV-1a of its bytes. */
int64_t znp_jobs_schedule_key(const char *name);

typedef struct znp_jobs_runner znp_jobs_runner_t;

/* Start `threads` runner threads on their own connections to `dsn`. *out owned by the caller. */
int znp_jobs_runner_start(znp_jobs_runner_t **out, const znp_config_t *config, const char *dsn, unsigned threads);
/* Stop claiming, wait for running jobs (bounded by the config's shutdown timeout), join. Accepts NULL. */
void znp_jobs_runner_stop(znp_jobs_runner_t *runner);

#endif
