/*
 * User identity credentials: one versioned identity per user, pushed to
 * kernels and exposed to subscription templates. The bytes match the
 * reference panel, so rows imported from it derive the same passwords:
 *
 *   root key          = SHA-256(master key text exactly as configured: security.credential_key,
 *                       else security.master_key)
 *   key id            = hex of the first 4 bytes of the root key
 *   per-user key      = HMAC-SHA256(root, user id LE64 || purpose),
 *                       purpose "encryption" or "fingerprint"
 *   seed              = 32 random bytes, sealed with AES-256-GCM under the
 *                       per-user encryption key, random 12-byte nonce,
 *                       associated data = user id LE64
 *   fingerprint       = hex HMAC-SHA256(fingerprint key, seed)
 *   derivation        = HMAC-SHA256(seed, user id LE64 || version LE64 || label)
 *                       "account": first 16 bytes as a v4-shaped UUID,
 *                       "password": all 32 bytes as lower-case hex
 *
 * user_credentials.secret_sealed stores "<nonce>:<ciphertext>", each in the
 * unpadded standard base64 the reference stores. The ciphertext ends with the
 * 16-byte GCM tag, as Go's cipher.AEAD.Seal writes it. Rows written before this format
 * have no ':'. Their seed is sealed by src/core/crypto.h under the decoded
 * security.master_key with associated data "credential:<user id>:<version>".
 * They still open, and the scheduled job identity.upgrade and the master-key
 * rotation rewrite them in the current format.
 */
#ifndef ZNP_IDENTITY_H
#define ZNP_IDENTITY_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

#define ZNP_IDENTITY_SEED_LEN 32
/* "<16 base64 chars>:<64 base64 chars>" and the terminating NUL */
#define ZNP_IDENTITY_SEALED_MAX 96

typedef struct znp_identity {
    int64_t user_id;
    int64_t version;
    char uuid[37];     /* RFC 4122 v4-shaped, lower-case: account, username, id of the reference */
    char password[65]; /* 64 lower-case hex chars: secret of the reference */
} znp_identity_t;

/* Derive the identity of the user's stored credential row (columns c.version, c.key_id,
 * c.secret_sealed of user_credentials). 0 or a negative znp_err. */
int znp_identity_from_row(const znp_config_t *config, int64_t user_id, int64_t version,
                          const char *key_id, const char *secret_sealed, znp_identity_t *out);

/* The active identity of `user_id`, creating version 1 when the user has none (no duplicates
 * under concurrency). Runs its statements on `db` (inside the caller's transaction if any). */
int znp_identity_ensure(PGconn *db, const znp_config_t *config, int64_t user_id,
                        znp_identity_t *out, const char *request_id);

/* Lower-level steps, for rotation and the master-key rotation tool. */

/* The key text credentials are sealed under: security.credential_key, else security.master_key. May be NULL. */
const char *znp_identity_key(const znp_config_t *config);

/* Fill `out` from a seed with the derivation above, without database access. Returns 0 or ZNP_E_INTERNAL. */
int znp_identity_derive(int64_t user_id, int64_t version, const uint8_t seed[ZNP_IDENTITY_SEED_LEN],
                         znp_identity_t *out);

/*
 * Seal `seed` for `user_id` under `master_key` (the configured text). Writes
 * the key id (8 hex chars), the secret_sealed text and the fingerprint
 * (64 hex chars). Returns 0, ZNP_E_INTERNAL when OpenSSL fails.
 */
int znp_identity_seal(const char *master_key, int64_t user_id, const uint8_t seed[ZNP_IDENTITY_SEED_LEN],
                      char key_id[9], char sealed[ZNP_IDENTITY_SEALED_MAX], char fingerprint[65]);

/*
 * Open a secret_sealed value of (user_id, version) with `master_key`, in
 * either stored format. Returns 0, or ZNP_E_INTERNAL when the text is
 * malformed or does not open with that key.
 */
int znp_identity_open(const char *master_key, int64_t user_id, int64_t version, const char *secret_sealed,
                      uint8_t seed[ZNP_IDENTITY_SEED_LEN]);

/*
 * Deprecate the active credential of `user_id` (if any) and insert the next
 * version with a fresh seed and rotated_from_id. Must run inside the caller's
 * transaction; concurrent rotations of one user queue on a row lock. Fills
 * `out` with the new identity and *issued_at (Unix seconds, may be NULL).
 */
int znp_identity_rotate(PGconn *db, const znp_config_t *config, int64_t user_id, znp_identity_t *out,
                        int64_t *issued_at, const char *request_id);

/*
 * Re-encrypt stored credentials from `old_key` to `new_key` (key texts),
 * keeping each seed, so derived identities do not change. Rows in the format
 * before this module open with `legacy_key` (security.master_key, which
 * sealed them) instead of `old_key`. With `legacy_only` only those rows are
 * rewritten, and a row that does not open is logged and skipped. Without it
 * every row is rewritten, and any row that does not open fails the whole
 * call with ZNP_E_INTERNAL. Runs in the caller's
 * transaction and locks the rows. *count (may be NULL) is the number of rows
 * rewritten.
 */
int znp_identity_rekey(PGconn *db, const char *old_key, const char *legacy_key, const char *new_key, int legacy_only,
                       int64_t *count, const char *request_id);

/*
 * The scheduled job identity.upgrade: rewrite rows in the old format under
 * the configured key (znp_identity_rekey with legacy_only), at most 1000 per
 * run.
 */
#define ZNP_IDENTITY_UPGRADE_JOB "identity.upgrade"
int znp_identity_upgrade(PGconn *db, const znp_config_t *config);

#endif
