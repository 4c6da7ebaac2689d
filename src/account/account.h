/*
 * Internals shared by the files of the account module: the users row as the
 * account and admin-user operations show it, token revocation, the password
 * policy and credential rotation. The operations themselves are declared in
 * generated/operations.gen.h.
 */
#ifndef ZNP_ACCOUNT_H
#define ZNP_ACCOUNT_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "core/context.h"
#include "schemas.gen.h"

#define ZNP_ACCOUNT_PASSWORD_MAX_CHARS 128
#define ZNP_ACCOUNT_NAME_MAX_CHARS     128

/*
 * Columns of a users row, in the order znp_account__fill_profile and
 * znp_account__fill_summary read them. Use as "SELECT " ZNP_ACCOUNT_COLUMNS
 * " FROM users ...".
 */
#define ZNP_ACCOUNT_COLUMNS                                                                                            \
    "id, email, display_name, array_to_json(roles)::text, status, locale, "                                            \
    "floor(extract(epoch FROM email_verified_at))::bigint, failed_login_attempts, "                                    \
    "CASE WHEN locked_until > now() THEN floor(extract(epoch FROM locked_until))::bigint END, "                        \
    "floor(extract(epoch FROM last_login_at))::bigint, "                                                               \
    "floor(extract(epoch FROM created_at))::bigint, floor(extract(epoch FROM updated_at))::bigint"

/*
 * Select the users row `user_id` (ZNP_ACCOUNT_COLUMNS, plus password_hash
 * when `with_hash`) into *out, with FOR UPDATE when `lock`. Returns 0 or a
 * database error. *out has 0 or 1 rows and the caller PQclears it.
 */
int znp_account__load(znp_ctx_t *ctx, int64_t user_id, int with_hash, int lock, PGresult **out);

/* Fill a response struct from row 0 of a ZNP_ACCOUNT_COLUMNS result; strings go to ctx->arena. */
int znp_account__fill_profile(znp_ctx_t *ctx, const PGresult *res, znp_user_profile_t *out);
int znp_account__fill_summary(znp_ctx_t *ctx, const PGresult *res, int row, znp_admin_user_summary_t *out);

/*
 * End every access and refresh token of `user_id` issued so far, in the
 * caller's transaction: token_invalid_before moves to the next whole second
 * (and at least one second past its old value, so two revocations in one
 * second both count), and every live refresh token is marked revoked.
 * Tokens issued afterwards carry iat = token_invalid_before (see
 * src/auth/tokens.c), so they stay valid.
 */
int znp_account__revoke_tokens(znp_ctx_t *ctx, int64_t user_id);

/*
 * Check a new password against the configured policy (password.*, the same
 * rules registration and reset apply). `path` is the JSON path for the
 * error. Returns 0 or ZNP_E_VALIDATION_FAILED.
 */
int znp_account__check_password(znp_ctx_t *ctx, const char *password, const char *email, const char *path);

/*
 * Normalize a role list: trim, lower-case ASCII, drop duplicates and empty
 * entries. Writes a JSON array text (arena) to *json_out and whether "admin"
 * is in it to *has_admin. Returns 0, ZNP_E_VALIDATION_FAILED when nothing is
 * left or a role has characters other than [a-z0-9_.-], or ZNP_E_INTERNAL.
 */
int znp_account__normalize_roles(znp_ctx_t *ctx, const znp_array_t *roles, const char *path, const char **json_out,
                                 int *has_admin);

/*
 * Deprecate the user's active credential (if any) and create the next
 * version with a fresh random secret (znp_identity_rotate), and queue the job
 * ZNP_BINDINGS_SYNC_USER_JOB that pushes the new password to the kernels, in
 * the caller's transaction. Fills *out with the new version's summary.
 * Returns 0 or a negative znp_err.
 */
int znp_account__rotate_credential(znp_ctx_t *ctx, int64_t user_id, znp_credential_summary_t *out);

/* Decimal text of `v` into `buf` (24 bytes is enough); returns buf. */
const char *znp_account__int(char *buf, size_t size, int64_t v);

/* ctx->now() or the system clock */
int64_t znp_account__now(const znp_ctx_t *ctx);

#endif
