/* Shared between the files of the security module. */
#ifndef ZNP_SECURITY_INTERNAL_H
#define ZNP_SECURITY_INTERNAL_H

#include "security/security.h"

#define SECURITY_KEY_MAX    128
#define SECURITY_SECRET_LEN 43 /* base64url of 32 random bytes, unpadded */

/* the cached row, with the secret opened */
typedef struct security_snapshot {
    int loaded;
    int enabled;
    unsigned groups; /* ZNP_SIGNED_GROUP_BIT of each signed route group */
    int nonce_ttl;
    char api_key[SECURITY_KEY_MAX + 1];
    char api_secret[SECURITY_SECRET_LEN + 1];
} security_snapshot_t;

void security__cache_get(security_snapshot_t *out);
void security__cache_set(const security_snapshot_t *snapshot);

#endif
