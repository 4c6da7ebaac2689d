/*
 * Protocol bindings (one protocol instance on a node's kernel), their public
 * entries, and the push of a binding with its eligible users to the kernel.
 */
#ifndef ZNP_BINDINGS_H
#define ZNP_BINDINGS_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stdint.h>

#include "config/config.h"
#include "kernel/kernel.h"

/* Job kind the identity module enqueues after a credential rotation, with payload {"user_id": n}.
 * The handler re-syncs every binding the user may use. */
#define ZNP_BINDINGS_SYNC_USER_JOB "bindings.sync_user"

/*
 * Push every binding of node `node_id` to its kernel (recovery sync after the
 * node comes back, and the job above). Disabled bindings are removed from the
 * kernel instead. Runs its own short transactions on `db`, so the caller must
 * not have one open. Returns the number of bindings pushed or a negative znp_err.
 */
int znp_bindings_sync_node(PGconn *db, const znp_config_t *config, int64_t node_id, const char *request_id);

/* Register the handler of ZNP_BINDINGS_SYNC_USER_JOB; call before znp_jobs_runner_start. Not thread-safe. */
int znp_bindings_register(void);

/*
 * Remove protocol `kernel_id` from the kernel behind `target` with
 * DELETE /v1/protocols/{kernel_id}. A 404 from the kernel counts as done.
 * Failures are logged here. Returns 0 or a negative znp_err.
 */
int znp_bindings_kernel_remove(const znp_kernel_target_t *target, const char *kernel_id, const char *request_id);

/* The kernel protocols of a deleted node that are still to be removed from its kernel. */
typedef struct znp_bindings_removal znp_bindings_removal_t;

/*
 * Delete every binding of node `node_id` on `db`, inside the caller's
 * transaction and before the node is marked deleted (the node row is locked
 * and its kernel credentials are read first). Entries and plan links go through the
 * foreign keys. The ids of the deleted bindings are appended to
 * `deleted_ids` (may be NULL). *out (owned, may be NULL on failure) is what
 * znp_bindings_removal_finish needs after the commit.
 */
int znp_bindings_delete_node(PGconn *db, const znp_config_t *config, int64_t node_id, json_t *deleted_ids,
                             znp_bindings_removal_t **out, const char *request_id);

/*
 * After the caller's transaction: when `committed`, drop the cached user
 * lists and remove each protocol from the kernel (best effort, logged).
 * Then free `removal`. Accepts NULL.
 */
void znp_bindings_removal_finish(znp_bindings_removal_t *removal, int committed, const char *request_id);

#endif
