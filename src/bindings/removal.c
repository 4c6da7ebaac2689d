/* Deleting the bindings of a node that is being deleted, and removing them from its kernel afterwards. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/sql.h"
#include "bindings/bindings.h"
#include "bindings/internal.h"
#include "core/log.h"
#include "errors.gen.h"

#define LOG_TAG "bindings"

struct znp_bindings_removal {
    znp_kernel_target_t target;
    int has_target;
    size_t count;
    char **kernel_ids;
};

void znp_bindings_removal_finish(znp_bindings_removal_t *removal, int committed, const char *request_id)
{
    if (removal == NULL)
        return;
    if (committed && removal->count > 0)
        znp_bindings__eligibility_changed();
    for (size_t i = 0; i < removal->count; i++) {
        if (committed && removal->has_target)
            znp_bindings_kernel_remove(&removal->target, removal->kernel_ids[i], request_id);
        free(removal->kernel_ids[i]);
    }
    if (removal->has_target)
        znp_kernel_target_clear(&removal->target);
    free(removal->kernel_ids);
    free(removal);
}

int znp_bindings_delete_node(PGconn *db, const znp_config_t *config, int64_t node_id, json_t *deleted_ids,
                             znp_bindings_removal_t **out, const char *request_id)
{
    static const char sql_lock[] = "SELECT 1 FROM nodes WHERE id = $1 FOR UPDATE";
    static const char sql[] = "DELETE FROM protocol_bindings WHERE node_id = $1 RETURNING id, kernel_id";
    znp_bindings_removal_t *removal = calloc(1, sizeof(*removal));
    char text[24];
    const char *params[1] = {text};
    PGresult *res = NULL;
    int rows, rc;

    *out = NULL;
    if (removal == NULL)
        return ZNP_E_INTERNAL;
    snprintf(text, sizeof(text), "%" PRId64, node_id);
    /* the row lock keeps a concurrent binding create (which takes FOR SHARE on the node) out */
    if ((rc = znp_sql_exec(NULL, db, sql_lock, 1, params, request_id)) != 0) {
        free(removal);
        return rc;
    }
    /* a node without usable credentials still loses its bindings; only the kernel cleanup is lost */
    removal->has_target = znp_kernel_target_load(db, config, node_id, &removal->target, request_id) == 0;
    if (!removal->has_target && PQtransactionStatus(db) == PQTRANS_INERROR) {
        free(removal);
        return ZNP_E_INTERNAL;
    }
    if ((rc = znp_sql_exec(&res, db, sql, 1, params, request_id)) != 0)
        goto cleanup;
    rows = PQntuples(res);
    if (rows > 0 && (removal->kernel_ids = calloc((size_t)rows, sizeof(char *))) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    for (int row = 0; row < rows; row++) {
        if ((removal->kernel_ids[row] = strdup(PQgetvalue(res, row, 1))) == NULL) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
        removal->count++;
        if (deleted_ids != NULL)
            json_array_append_new(deleted_ids, json_integer(znp_sql_int64(res, row, 0)));
    }
    if (removal->count > 0 && !removal->has_target)
        ZNP_WARN(LOG_TAG, request_id, "node_id=%" PRId64 " has no usable kernel credentials; its %zu protocols"
                 " stay on the kernel", node_id, removal->count);

cleanup:
    PQclear(res);
    if (rc != 0) {
        znp_bindings_removal_finish(removal, 0, request_id);
        return rc;
    }
    *out = removal;
    return 0;
}
