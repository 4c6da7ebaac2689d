/*
 * Internals shared by the files of the auth module: the users row as the
 * operations read it, and token-pair issuing.
 */
#ifndef ZNP_AUTH_INTERNAL_H
#define ZNP_AUTH_INTERNAL_H

#include <libpq-fe.h>
#include <stdint.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/jwt.h"
#include "auth/password.h"
#include "core/context.h"
#include "schemas.gen.h"

enum {
    ZNP_USER_ACTIVE = 1,
    ZNP_USER_PENDING = 2,
    ZNP_USER_DISABLED = 3,
};

typedef struct znp_auth_user {
    int64_t id;
    char email[1024];                          /* up to 254 code points of UTF-8 */
    char display_name[129 * 4];                /* up to 128 code points of UTF-8 */
    char password_hash[ZNP_PASSWORD_HASH_MAX]; /* "" when not selected */
    size_t role_count;
    char roles[ZNP_ROLES_MAX][32];  /* roles that fit; is_admin looks at all of them */
    int is_admin;                   /* a role equal to "admin" in any letter case */
    int status;                     /* ZNP_USER_* */
    int64_t lock_seconds;           /* seconds until locked_until, 0 when not locked */
    int64_t token_invalid_before;   /* Unix seconds, rounded down; 0 when unset */
    int64_t created_at, updated_at; /* Unix seconds */
} znp_auth_user_t;

/*
 * Load the user with this normalized email (with password_hash) or id
 * (without). *found is 0 when no row matched. Returns 0 or the error of
 * znp_sql_exec.
 */
int znp_auth__user_find_by_email(znp_auth_user_t *out, int *found, PGconn *db, const char *email,
                                 const char *request_id);
int znp_auth__user_find_by_id(znp_auth_user_t *out, int *found, PGconn *db, int64_t id, const char *request_id);

/*
 * Record ZNP_E_ACCOUNT_LOCKED in ctx->err with retry_after = `seconds` (the
 * time left on the lock) and return it.
 */
int znp_auth__locked(znp_ctx_t *ctx, int64_t seconds);

/* Length of a configured signing key; 0 for NULL, which every signature check then rejects. */
static inline size_t znp_auth__key_len(const char *key)
{
    return key != NULL ? strlen(key) : 0;
}

/* ctx->now() when set, else the system clock, in Unix seconds */
int64_t znp_auth__now(const znp_ctx_t *ctx);

/*
 * Sign a new access and refresh token for `user`, store the refresh token's
 * row (in the caller's transaction) and fill *out with strings from
 * ctx->arena. `family` continues a refresh-token family; NULL starts one.
 * The new refresh token's id is copied to refresh_jti_out (may be NULL).
 * Returns 0 or a negative znp_err.
 */
int znp_auth__tokens_issue(znp_ctx_t *ctx, const znp_auth_user_t *user, const char *family, char *refresh_jti_out,
                           znp_token_pair_t *out);

/*
 * Count one failed sign-in of `user` toward the lockout (its own statement,
 * outside any transaction the caller should roll back). Returns
 * ZNP_E_INVALID_CREDENTIALS, ZNP_E_ACCOUNT_LOCKED when the account is or
 * became locked, or a database error.
 */
int znp_auth__record_failure(znp_ctx_t *ctx, const znp_auth_user_t *user);

/*
 * The per-client-IP sign-in limit (auth.ip_failure_limit per
 * auth.ip_failure_window_s, in PostgreSQL; see znp_ip_failures_reserve).
 * znp_auth__ip_reserve takes the attempt's slot before anything is verified.
 * Once the attempt is decided, znp_auth__ip_settle counts it as a failure
 * when `failed` or gives the slot back, and audits auth.login.ip_limited when
 * a failure brings the window to the limit.
 */
int znp_auth__ip_reserve(znp_ctx_t *ctx, znp_ip_attempt_t *attempt);
void znp_auth__ip_settle(znp_ctx_t *ctx, const znp_ip_attempt_t *attempt, int failed);

/*
 * Finish a sign-in inside the caller's open transaction: reset the failure
 * counter, set last_login_at and issue the token pair into *out. Returns
 * ZNP_E_ACCOUNT_LOCKED or ZNP_E_ACCOUNT_DISABLED when a lock or a status
 * change won a race with this sign-in; the caller then rolls back.
 */
int znp_auth__sign_in(znp_ctx_t *ctx, const znp_auth_user_t *user, znp_token_pair_t *out);

/*
 * SQL for the new users.token_invalid_before when every earlier token must
 * die: the next whole second after now (and after the old value), so a token
 * signed in the current second is refused, while tokens issued afterwards
 * carry iat = token_invalid_before (see znp_auth__tokens_issue) and pass.
 * The cap of now + 20 stays inside the 30 s iat skew that verification allows.
 * `column` names the old value, e.g. "users.token_invalid_before" where an
 * unqualified name would be ambiguous (INSERT ... ON CONFLICT DO UPDATE).
 */
#define ZNP_SQL_TOKEN_CUTOFF(column)                                                                                   \
    "to_timestamp(LEAST(floor(extract(epoch FROM now()))::bigint + 20,"                                                \
    " GREATEST(floor(extract(epoch FROM now()))::bigint + 1,"                                                          \
    " COALESCE(floor(extract(epoch FROM " column "))::bigint, 0) + 1)))"

#endif
