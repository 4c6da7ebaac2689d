/*
 * HS256 JSON Web Tokens (RFC 7519), signed and verified with OpenSSL HMAC.
 *
 * Only our own tokens are accepted: the header must be exactly
 * {"alg":"HS256","typ":"JWT"}, every segment is unpadded base64url decoded
 * strictly, and the payload must carry the claims below with the expected
 * `typ`, so an access token never passes as a refresh token or the reverse.
 * Access and refresh tokens are signed with different keys.
 */
#ifndef ZNP_AUTH_JWT_H
#define ZNP_AUTH_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "core/context.h"

#define ZNP_JWT_MAX    4096 /* longest token accepted or produced, in bytes */
#define ZNP_JWT_SKEW_S 30   /* clock skew allowed for iat and nbf, in seconds */
#define ZNP_UUID_LEN   36   /* canonical text form, without the NUL */

typedef enum znp_token_type {
    ZNP_TOKEN_ACCESS = 1,  /* typ "access", carries roles */
    ZNP_TOKEN_REFRESH = 2, /* typ "refresh", carries the family id in fam */
    ZNP_TOKEN_MFA = 3,     /* typ "mfa", the second sign-in step's challenge; no extra claims */
} znp_token_type_t;

typedef struct znp_jwt_claims {
    znp_token_type_t type;         /* typ */
    int64_t user_id;               /* sub, a decimal string in the token */
    int64_t issued_at;             /* iat, Unix seconds */
    int64_t expires_at;            /* exp, Unix seconds */
    int64_t not_before;            /* nbf, Unix seconds; 0 = absent */
    char jti[ZNP_UUID_LEN + 1];    /* token id, UUID v4 */
    char family[ZNP_UUID_LEN + 1]; /* fam, refresh tokens only */
    size_t role_count;             /* roles, access tokens only */
    char roles[ZNP_ROLES_MAX][32];
} znp_jwt_claims_t;

/* Write a random UUID v4 (RAND_bytes) in canonical lower-case form into out. Returns 0 or ZNP_E_INTERNAL. */
int znp_uuid_v4(char out[ZNP_UUID_LEN + 1]);

/*
 * Sign `claims` with `issuer` as iss and aud into `out` (NUL-terminated).
 * Returns 0, or ZNP_E_INTERNAL when a claim is out of range, the key is empty
 * or the token does not fit in out_size.
 */
int znp_jwt_sign(char *out, size_t out_size, const znp_jwt_claims_t *claims, const char *issuer, const void *key,
                 size_t key_len);

/*
 * Verify `token` (`len` bytes) as a token of type `expected` signed with
 * `key` and issued by `issuer`, at time `now` (Unix seconds). Fills *out on
 * success. Returns 0 or ZNP_E_TOKEN_INVALID for any defect: malformed,
 * another algorithm, bad signature, expired, not yet valid, issued in the
 * future, wrong issuer, audience or type, or a missing or mistyped claim.
 */
int znp_jwt_verify(znp_jwt_claims_t *out, const char *token, size_t len, znp_token_type_t expected, const char *issuer,
                   const void *key, size_t key_len, int64_t now);

#endif
