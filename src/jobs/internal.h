/* Queue functions for the modules that build on the job queue. */
#ifndef ZNP_JOBS_INTERNAL_H
#define ZNP_JOBS_INTERNAL_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "config/config.h"

/* znp_jobs_enqueue with an attempt limit; `max_attempts` 0 keeps the column default (8). */
int znp_jobs__enqueue_limited(PGconn *db, const char *kind, json_t *payload, int64_t run_at, unsigned max_attempts,
                              int64_t *id_out);

/* The scheduler thread of the runner; NULL (no thread) when nothing is scheduled. */
typedef struct znp_jobs_scheduler znp_jobs_scheduler_t;
int znp_jobs__scheduler_start(znp_jobs_scheduler_t **out, const znp_config_t *config, const char *dsn);
/* Wake, stop and join the thread. Accepts NULL. */
void znp_jobs__scheduler_stop(znp_jobs_scheduler_t *scheduler);

#endif
