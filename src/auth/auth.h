/*
 * Accounts and tokens: argon2id password hashes, HS256 JWTs, sign-in and
 * refresh-token rotation. The operations themselves are declared in
 * generated/operations.gen.h; this header is for other modules and the CLI.
 */
#ifndef ZNP_AUTH_H
#define ZNP_AUTH_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/context.h"
#include "core/error.h"

/* Hash `password` with argon2id and the configured costs into `out` (PHC string). */
int znp_password_hash(char *out, size_t out_size, const char *password, size_t password_len,
                      const znp_config_t *config);
/* 0 when `password` matches `encoded`, ZNP_E_INVALID_CREDENTIALS when not, ZNP_E_INTERNAL when `encoded` is malformed. */
int znp_password_verify(const char *encoded, const char *password, size_t password_len);

/*
 * Create an admin account (roles admin and user, active, email verified), or
 * when the email exists, give it the admin role and the new password.
 * `email` is normalized (trimmed, lower-cased). Used by `znp admin create`
 * and the demo seed. *user_id_out may be NULL.
 */
int znp_auth_create_admin(PGconn *db, const znp_config_t *config, const char *email, const char *password,
                          int64_t *user_id_out, znp_error_t *err);

/*
 * Record the site setting require_admin_mfa from the site-settings cache
 * (system/site.c), so authentication need not read the row per request.
 * Admin routes need MFA when this or security.require_admin_mfa is set.
 * Thread-safe.
 */
void znp_auth_set_site_require_admin_mfa(int required);

/*
 * Failed attempts per client IP and scope ("login" or "callback") in a
 * fixed window of `window_s` seconds, counted in PostgreSQL so that the
 * limit applies across instances. Each attempt takes a pending slot first,
 * and the window is full when its failures and pending slots reach `limit`.
 */
typedef struct znp_ip_attempt {
    int counted;       /* 0 when the limit is off or the client IP is unknown */
    int64_t window_us; /* start of the window the slot is in, in microseconds */
} znp_ip_attempt_t;

/*
 * Take a pending slot for the attempt before verifying anything. While
 * attempts in flight fill the window, wait up to 3 s for them to be decided.
 * Returns 0, ZNP_E_TOO_MANY_REQUESTS with ctx->err->retry_after set (the
 * seconds left in the window once its failures reach the limit), or a
 * database error.
 */
int znp_ip_failures_reserve(znp_ctx_t *ctx, const char *scope, uint32_t limit, uint32_t window_s,
                            znp_ip_attempt_t *attempt);
/*
 * Decide the attempt: a failure moves its slot to the failures of the window
 * it was counted in, a success gives it back. Returns the failures after a
 * failure is counted, else 0. Errors are logged, not returned.
 */
int64_t znp_ip_failures_settle(znp_ctx_t *ctx, const char *scope, const znp_ip_attempt_t *attempt, int failed);

#endif
