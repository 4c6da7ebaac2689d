/* Queue functions for the modules that build on the job queue. */
#ifndef ZNP_JOBS_INTERNAL_H
#define ZNP_JOBS_INTERNAL_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>

/* znp_jobs_enqueue with an attempt limit; `max_attempts` 0 keeps the column default (8). */
int znp_jobs__enqueue_limited(PGconn *db, const char *kind, json_t *payload, int64_t run_at, unsigned max_attempts,
                              int64_t *id_out);

#endif
