/*
 * The signed third-party API and its settings (the security_settings row).
 *
 * While third_party_api_enabled is on, every request to a route group named
 * in signed_route_groups carries X-ZNP-API-Key, X-ZNP-Timestamp,
 * X-ZNP-Nonce and X-ZNP-Signature. The signature is
 *
 *     base64(HMAC-SHA256(api_secret, METHOD "\n" path "\n" raw query "\n"
 *                        timestamp "\n" nonce "\n" base64(body)))
 *
 * over the body as sent. With X-ZNP-Encrypted: 1 the body is AES-256-GCM
 * ciphertext with its 16-byte tag appended, under key SHA-256(api_secret)
 * and the 12-byte IV of X-ZNP-IV (base64), and the operation receives the
 * plaintext.
 * A timestamp further than nonce_ttl_seconds from now is refused, and a
 * nonce is accepted once per API key within that time on every instance
 * (table api_nonces).
 *
 * The settings are cached in-process; the cache is reloaded at start, after
 * a change on this instance and on NOTIFY from another (channel of
 * runtime/watcher.h).
 */
#ifndef ZNP_SECURITY_H
#define ZNP_SECURITY_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/context.h"

#define ZNP_SIGNED_IV_LEN        12
#define ZNP_SIGNED_TAG_LEN       16
#define ZNP_SIGNED_SIGNATURE_LEN 44 /* base64 of 32 bytes */
#define ZNP_SIGNED_NONCE_MIN     16
#define ZNP_SIGNED_NONCE_MAX     128

/* bit of a route group (znp_route_group_t of protect/protect.h) in a set of signed groups */
#define ZNP_SIGNED_GROUP_BIT(group) (1u << (unsigned)(group))

/* The parts of one HTTP request that the check reads. Header values are NULL when absent. */
typedef struct znp_signed_request {
    const char *method;
    const char *path; /* request target without the query, as sent */
    size_t path_len;
    const char *query; /* raw query without '?', may be NULL */
    size_t query_len;
    const char *api_key, *timestamp, *nonce, *signature, *encrypted, *iv;
    const char *body; /* may be NULL */
    size_t body_len;
} znp_signed_request_t;

/*
 * The canonical string of `in` into the arena (NUL-terminated, *out_len
 * without the NUL). Returns 0 or ZNP_E_INTERNAL when the arena is full.
 */
int znp_signed_canonical(znp_arena_t *arena, const znp_signed_request_t *in, char **out, size_t *out_len);

/* out = base64(HMAC-SHA256(secret, data)), NUL-terminated. Returns 0 or ZNP_E_INTERNAL. */
int znp_signed_sign(char out[ZNP_SIGNED_SIGNATURE_LEN + 1], const char *secret, const void *data, size_t len);

/*
 * AES-256-GCM under SHA-256(secret): `out` receives len + ZNP_SIGNED_TAG_LEN
 * bytes (ciphertext || tag). Returns 0 or ZNP_E_INTERNAL.
 */
int znp_signed_encrypt(uint8_t *out, const char *secret, const uint8_t iv[ZNP_SIGNED_IV_LEN], const void *plain,
                       size_t len);

/*
 * Reverse of znp_signed_encrypt: `out` receives len - ZNP_SIGNED_TAG_LEN
 * bytes. Returns 0, or ZNP_E_BODY_DECRYPT_FAILED when the value is shorter
 * than the tag or fails the tag check (nothing is left in `out` then).
 */
int znp_signed_decrypt(uint8_t *out, const char *secret, const uint8_t iv[ZNP_SIGNED_IV_LEN], const uint8_t *sealed,
                       size_t len);

/* Decode X-ZNP-IV. Returns 0 or ZNP_E_ENCRYPTION_IV_INVALID unless it is base64 of exactly 12 bytes. */
int znp_signed_decode_iv(uint8_t iv[ZNP_SIGNED_IV_LEN], const char *text);

/*
 * Whether a request to route group `group` must be signed under the cached
 * settings. Thread-safe and non-blocking (a mutex around a copy): callable
 * on the event loop.
 */
int znp_security_signing_required(int group);

/*
 * Check the signature of `in` for route group `group` (no-op returning 0
 * when signing is not required), record its nonce through ctx->db and,
 * for an encrypted body, point *body and *body_len at the plaintext (in
 * ctx->arena). Returns 0 or one of the 401 errors of the signed API, with
 * detail in ctx->err.
 */
int znp_security_verify(znp_ctx_t *ctx, int group, const znp_signed_request_t *in, const char **body,
                        size_t *body_len);

/*
 * ctx->verify for transports that carry no signature headers (gRPC): ends a
 * call to an operation whose route group must be signed with
 * ZNP_E_SIGNATURE_HEADERS_MISSING, so the signed API has no unsigned side
 * door. Never touches the database.
 */
int znp_security_verify_unsigned(znp_ctx_t *ctx, const struct znp_operation *op, struct znp_call *call);

/* Reload the cached copy of the row (signing is off while there is none). Returns 0 or a negative znp_err. */
int znp_security_cache_refresh(PGconn *db, const znp_config_t *config);

/* Delete expired nonces. Returns the number deleted, or a negative znp_err. */
int znp_security_purge_nonces(PGconn *db, const char *request_id);

#endif
