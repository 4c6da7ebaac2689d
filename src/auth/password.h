/*
 * Password hashing internals of the auth module (the public calls are in
 * auth.h) and the password policy.
 */
#ifndef ZNP_AUTH_PASSWORD_H
#define ZNP_AUTH_PASSWORD_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/error.h"

#define ZNP_PASSWORD_HASH_MAX  256 /* room for any PHC string we produce */
#define ZNP_PASSWORD_MIN_CHARS 8
#define ZNP_PASSWORD_MAX_BYTES 1024
#define ZNP_EMAIL_MAX          254

/*
 * Hash `password` with argon2id, the given salt and costs into a PHC string
 * ($argon2id$v=19$m=...,t=...,p=...$salt$hash, 32-byte hash). Deterministic,
 * for known-answer tests; znp_password_hash draws a random 16-byte salt.
 * Returns 0 or ZNP_E_INTERNAL.
 */
int znp_password_hash_with_salt(char *out, size_t out_size, const char *password, size_t password_len, const void *salt,
                                size_t salt_len, uint32_t t_cost, uint32_t m_cost_kib, uint32_t parallelism);

/*
 * Spend the time of one verification against a fixed hash made with the
 * configured costs, so an unknown email costs as much as a wrong password.
 * Returns ZNP_E_INVALID_CREDENTIALS, or ZNP_E_INTERNAL when no dummy hash
 * could be made.
 */
int znp_password_verify_dummy(const znp_config_t *config, const char *password, size_t password_len);

/*
 * Check a new password: at least ZNP_PASSWORD_MIN_CHARS code points, at most
 * ZNP_PASSWORD_MAX_BYTES bytes, not only white space, and not the account's
 * email in any letter case. `email` is the normalized email. Returns 0 or
 * ZNP_E_VALIDATION_FAILED with err->path "password" and the reason in err->detail.
 */
int znp_password_check_policy(const char *password, size_t password_len, const char *email, znp_error_t *err);

/*
 * Normalize an email for storage and lookup: trim Unicode white space and
 * lower-case ASCII letters (the SQL applies lower() as well, which also folds
 * non-ASCII letters). Returns 0, or ZNP_E_VALIDATION_FAILED with err->path
 * "email" when the result is not 3..254 bytes with one '@' inside.
 */
int znp_auth_normalize_email(char *out, size_t out_size, const char *email, znp_error_t *err);

#endif
