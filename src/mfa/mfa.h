/*
 * Multi-factor authentication with TOTP (RFC 6238) and single-use recovery
 * codes. The operations are declared in generated/operations.gen.h; this
 * header is for the auth module (the sign-in step and the admin check) and
 * for the unit tests of the codes themselves.
 */
#ifndef ZNP_MFA_H
#define ZNP_MFA_H

#include <stddef.h>
#include <stdint.h>

#include "core/context.h"

#define ZNP_MFA_SECRET_BYTES   20  /* TOTP seed length, the SHA-1 output size RFC 4226 recommends */
#define ZNP_MFA_SECRET_TEXT    32  /* base32 characters of a 20-byte seed */
#define ZNP_MFA_DIGITS         6
#define ZNP_MFA_STEP_S         30  /* seconds per TOTP time step */
#define ZNP_MFA_WINDOW         1   /* steps accepted before and after the current one */
#define ZNP_MFA_RECOVERY_COUNT 10  /* recovery codes handed out at a time */
#define ZNP_MFA_RECOVERY_TEXT  9   /* "xxxx-xxxx", without the NUL */
#define ZNP_MFA_TOKEN_TTL_S    300 /* lifetime of the sign-in challenge token */

/*
 * Write `len` bytes as RFC 4648 base32 (upper case, no padding) into `out`
 * with a NUL. Returns the text length, or 0 when out_size is too small.
 */
size_t znp_base32_encode(char *out, size_t out_size, const uint8_t *in, size_t len);

/*
 * Decode RFC 4648 base32 without padding (either letter case) into `out`.
 * Returns the number of bytes, or -1 for a character outside the alphabet,
 * a length no encoder produces, non-zero trailing bits or a full `out`.
 */
long znp_base32_decode(uint8_t *out, size_t out_size, const char *in, size_t len);

/* HOTP (RFC 4226) with HMAC-SHA1: the `digits`-digit code (1..9) for `counter`. */
uint32_t znp_hotp(const uint8_t *key, size_t key_len, uint64_t counter, unsigned digits);

/*
 * Check a 6-digit TOTP `code` against `key` at Unix time `now`, accepting
 * the steps now/30 - 1 to now/30 + 1 that are later than `last_used_step`
 * (-1 when none was used). On a match *step_out is the matching time step
 * and 0 is returned; otherwise ZNP_E_MFA_CODE_INVALID (also for a code that
 * is not exactly six ASCII digits). Compares in constant time. The caller
 * stores the step with a conditional UPDATE, which is what makes the replay
 * check hold under concurrent requests.
 */
int znp_totp_match(int64_t *step_out, const uint8_t *key, size_t key_len, int64_t now, const char *code,
                   int64_t last_used_step);

/*
 * Normalize a recovery code as typed: letter case, spaces and hyphens are
 * ignored, and 8 base32 characters must remain. Writes the 8 lower-case
 * characters and a NUL. Returns 0 or ZNP_E_MFA_CODE_INVALID.
 */
int znp_mfa_recovery_normalize(char out[9], const char *code);

/*
 * The stored form of a normalized recovery code: HMAC-SHA256 under a key
 * derived from the master key, as 64 lower-case hex digits and a NUL.
 * Returns 0 or ZNP_E_INTERNAL.
 */
int znp_mfa_recovery_hash(char out[65], const uint8_t master_key[32], const char normalized[9]);

/* Whether user `user_id` has MFA enabled. Returns 0 or a database error. */
int znp_mfa_enabled(znp_ctx_t *ctx, int64_t user_id, int *enabled);

typedef struct znp_mfa_challenge {
    char *token;        /* arena-owned signed token (typ "mfa") */
    int64_t expires_in; /* seconds */
} znp_mfa_challenge_t;

/*
 * Sign a single-use sign-in challenge for `user_id` (the right password was
 * given, the second factor is still due) and store its id. Returns 0 or a
 * negative znp_err.
 */
int znp_mfa_challenge_issue(znp_ctx_t *ctx, int64_t user_id, znp_mfa_challenge_t *out);

#endif
