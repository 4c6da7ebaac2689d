/*
 * The identity lookups of the user lists, apart from the files that include
 * core/context.h (see internal.h).
 */
#include <stdio.h>

#include "identity/identity.h"
#include "uniproxy/internal.h"

int uniproxy_identity_uuid(PGconn *db, const znp_config_t *config, int64_t user_id, int64_t version,
                           const char *key_id, const char *secret_sealed, char uuid[37], const char *request_id)
{
    znp_identity_t identity;
    int rc;

    if (key_id != NULL)
        rc = znp_identity_from_row(config, user_id, version, key_id, secret_sealed, &identity);
    else
        rc = znp_identity_ensure(db, config, user_id, &identity, request_id);
    if (rc != 0)
        return rc;
    snprintf(uuid, 37, "%s", identity.uuid);
    return 0;
}
