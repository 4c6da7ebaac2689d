/*
 * Helpers shared by the files of the bindings module. The push engine
 * (push.c) works on a plain connection, without an operation context, so the
 * poller and the job runner can call it.
 */
#ifndef ZNP_BINDINGS_INTERNAL_H
#define ZNP_BINDINGS_INTERNAL_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* result statuses of a binding sync and of a health sync */
enum { SYNC_RESULT_SYNCED = 1, SYNC_RESULT_ERROR = 2, SYNC_RESULT_SKIPPED = 3 };

/* The outcome of pushing one binding. */
typedef struct znp_bindings_outcome {
    int status;          /* SYNC_RESULT_* */
    char message[1200];  /* "ok", or the reason of the error or the skip */
    int64_t synced_at;   /* Unix seconds of the attempt */
} znp_bindings_outcome_t;

/*
 * Write the listen address the kernel receives into `out`. That is `listen`
 * as given when it contains ':', and "0.0.0.0:<listen>" for a bare port.
 * An empty `listen` gives "0.0.0.0:<access_port>" when the port is above 0,
 * else "". Returns 0, or -1 when `out` is too small.
 */
int znp_bindings__listen_address(const char *listen, int64_t access_port, char *out, size_t size);

/* Check a stored listen value: "", a port 1..65535, or "<host>:<port>" with a port 1..65535. 0 or -1. */
int znp_bindings__listen_check(const char *listen);

/*
 * The tags the kernel receives: the strings of `in` trimmed of ASCII white
 * space, blanks dropped, duplicates removed keeping the first. Returns a new
 * reference, or NULL when out of memory. Non-string items are dropped.
 */
json_t *znp_bindings__kernel_tags(const json_t *in);

/*
 * Push binding `binding_id` to its kernel, or remove it there when the
 * binding is disabled, and record the outcome on the binding. Concurrent
 * pushes of one binding queue on an advisory lock, so the kernel never gets
 * an older user list after a newer one. The caller must not have a
 * transaction open on `db`. Returns 0 with `out` filled (a kernel failure is
 * an outcome, not an error), ZNP_E_NOT_FOUND, or a database error.
 */
int znp_bindings__push(PGconn *db, const znp_config_t *config, int64_t binding_id, znp_bindings_outcome_t *out,
                       const char *request_id);

/*
 * Remove protocol `kernel_id` from the kernel of node `node_id`, best effort.
 * Failures are logged, and a 404 from the kernel counts as done. Returns 0
 * when the kernel no longer has it, else a negative znp_err.
 */
int znp_bindings__kernel_delete(PGconn *db, const znp_config_t *config, int64_t node_id, const char *kernel_id,
                                const char *request_id);

/* Drop the cached user lists and downloads after a change of who may use what. */
void znp_bindings__eligibility_changed(void);

#endif
