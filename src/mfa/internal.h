/*
 * Internals shared by the files of the mfa module: the user_mfa row with its
 * seeds decrypted, and the steps the operations have in common.
 */
#ifndef ZNP_MFA_INTERNAL_H
#define ZNP_MFA_INTERNAL_H

#include <stdint.h>

#include "core/context.h"
#include "core/crypto.h"
#include "mfa/mfa.h"
#include "schemas.gen.h"

typedef struct mfa_state {
    int found;          /* a user_mfa row exists */
    int enabled;
    size_t secret_len;  /* 0 when there is no enabled seed */
    uint8_t secret[ZNP_MFA_SECRET_BYTES];
    size_t pending_len; /* 0 when no enrollment is pending */
    uint8_t pending[ZNP_MFA_SECRET_BYTES];
    int64_t confirmed_at;   /* Unix seconds, 0 when not enabled */
    int64_t last_used_step; /* -1 before the first accepted code */
} mfa_state_t;

/* Decode security.master_key. Returns 0 or ZNP_E_INTERNAL (logged) when it is missing or malformed. */
int mfa__master_key(znp_ctx_t *ctx, uint8_t key[ZNP_CRYPTO_KEY_LEN]);

/*
 * Load and decrypt the user_mfa row of `user_id`, with FOR UPDATE when
 * `lock` is set (inside the caller's transaction). out->found is 0 when
 * there is no row. A seed that does not decrypt is ZNP_E_INTERNAL (logged):
 * a changed master key or a damaged row.
 */
int mfa__state_load(mfa_state_t *out, znp_ctx_t *ctx, int64_t user_id, int lock);

/* Wipe the seeds. */
void mfa__state_dispose(mfa_state_t *state);

/*
 * Seal `seed` for `user_id` as the hex text of the bytea value, in the
 * arena. The associated data binds it to the user's row.
 */
int mfa__seal(char **out, znp_ctx_t *ctx, int64_t user_id, const uint8_t *seed, size_t len);

/*
 * Accept `code` as the second factor of an enabled `state`, inside the
 * caller's transaction that locked the row: a 6-digit code must match the
 * TOTP window at a step later than the last one used (the step is then
 * stored), anything else must be an unused recovery code (it is then marked
 * used and mfa.recovery_used audited). Returns 0, ZNP_E_MFA_CODE_INVALID or
 * a database error.
 */
int mfa__code_accept(znp_ctx_t *ctx, int64_t user_id, const mfa_state_t *state, const char *code);

/*
 * Delete the recovery codes of `user_id` and store ZNP_MFA_RECOVERY_COUNT
 * new ones (hashed), inside the caller's transaction. *out gets the codes
 * in plain text, arena-owned, to show once.
 */
int mfa__recovery_codes_replace(znp_ctx_t *ctx, int64_t user_id, znp_array_t *out);

/* Append an audit row about `user_id` (no codes or seeds in it), in the caller's transaction if one is open. */
int mfa__audit(znp_ctx_t *ctx, int64_t user_id, const char *action);

#endif
