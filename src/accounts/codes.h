/*
 * One-time numeric codes mailed to an address: email verification, password
 * reset and email change. A code is 6 random digits (CSPRNG), stored only as
 * an HMAC-SHA-256 under a key derived from auth.refresh_secret, valid for
 * codes.ttl_s, single use, and burnt after codes.max_attempts wrong tries.
 * Issuing is limited by a resend cooldown (codes.cooldown_s) per purpose and
 * address and by hourly caps per purpose and address and per client IP
 * (codes.per_address_per_hour, codes.per_ip_per_hour), all counted in the
 * auth_codes table so they hold across instances.
 *
 * Call both functions inside a transaction (znp_sql_begin): issuing takes
 * transaction-scoped advisory locks so concurrent requests cannot pass a cap
 * together. The caller mails the code (mail.h) in that transaction and never
 * puts it in a response.
 */
#ifndef ZNP_ACCOUNTS_CODES_H
#define ZNP_ACCOUNTS_CODES_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "core/context.h"

#define ZNP_CODE_DIGITS 6
#define ZNP_CODE_SIZE   (ZNP_CODE_DIGITS + 1) /* with the NUL */

typedef enum znp_code_purpose {
    ZNP_CODE_VERIFY = 0,
    ZNP_CODE_RESET = 1,
    ZNP_CODE_EMAIL_CHANGE = 2,
} znp_code_purpose_t;

/* "verify", "reset" or "email_change"; the value stored in auth_codes.purpose. Borrowed, static. */
const char *znp_codes_purpose_name(znp_code_purpose_t purpose);

/*
 * Issue a new code for (`purpose`, `email`) on `db` and write its digits to
 * `code_out` (ZNP_CODE_SIZE bytes). Earlier unconsumed codes for the same
 * purpose and address stop working. `email` is normalized (trimmed,
 * lower-cased; see znp_auth_normalize_email), `ip` the client address
 * (ctx->client_ip; may be "" or NULL). Uses ctx->config, ctx->err,
 * ctx->request_id. Runs in the caller's transaction when one is open.
 *
 * Returns 0, ZNP_E_TOO_MANY_REQUESTS with ctx->err->retry_after set when the
 * cooldown or an hourly cap forbids a new code now, or a database error.
 */
int znp_codes_issue(znp_ctx_t *ctx, PGconn *db, znp_code_purpose_t purpose, const char *email, const char *ip,
                    char code_out[ZNP_CODE_SIZE]);

/*
 * The same work as znp_codes_issue for an address that gets no mail (no
 * account, or not in the right state). The cooldown and caps apply and are
 * counted the same way, so the responses and their timing match. The code made
 * is stored (it counts) but never leaves this function. Returns like
 * znp_codes_issue.
 */
int znp_codes_issue_dummy(znp_ctx_t *ctx, PGconn *db, znp_code_purpose_t purpose, const char *email, const char *ip);

/*
 * Check `code` for (`purpose`, `email`) and mark it used. Returns 0 when it
 * matches the newest code issued for them and that code is live. Returns
 * ZNP_E_INVALID_CODE when there is no live code (expired, used, burnt or
 * replaced) or the code does not match. Each wrong try counts, and the
 * codes.max_attempts-th one burns the code. Other failures return a database
 * error.
 *
 * Runs in the caller's transaction. On ZNP_E_INVALID_CODE the caller must
 * COMMIT, not roll back, or the wrong try is not counted. On 0 a rollback
 * gives the code back, so check what else can fail (the password policy)
 * before consuming.
 */
int znp_codes_consume(znp_ctx_t *ctx, PGconn *db, znp_code_purpose_t purpose, const char *email, const char *code);

/* Internals, exposed for the unit tests. */

/* 1 when `code` is exactly ZNP_CODE_DIGITS ASCII digits. */
int znp_codes__well_formed(const char *code);
/* Write ZNP_CODE_DIGITS uniformly random digits and a NUL. Returns 0 or ZNP_E_INTERNAL. */
int znp_codes__generate(char code_out[ZNP_CODE_SIZE]);
/*
 * Hex HMAC-SHA-256 (65 bytes with the NUL) of "purpose\0email\0code" under
 * `key`. Returns 0 or ZNP_E_INTERNAL.
 */
int znp_codes__hash(char out[65], const char *key, size_t key_len, znp_code_purpose_t purpose, const char *email,
                    const char *code);
/* Constant-time comparison of two NUL-terminated hex digests; 1 when equal. */
int znp_codes__equal(const char *a, const char *b);

#endif
