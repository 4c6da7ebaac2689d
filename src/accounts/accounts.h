/*
 * Registration, email verification, password reset and invite codes. The
 * operations are declared in generated/operations.gen.h. This header declares
 * what other modules may share, the configurable password policy. The mailed
 * codes are in accounts/codes.h.
 */
#ifndef ZNP_ACCOUNTS_H
#define ZNP_ACCOUNTS_H

#include <stddef.h>

#include "config/config.h"
#include "core/error.h"

/*
 * Check a new password against config->password: min_length and max_length
 * in code points, not only white space, at least require_classes of the four
 * classes (ASCII lower-case, ASCII upper-case, ASCII digit, anything else
 * that is not white space), and not the normalized `email` (may be NULL) in
 * any letter case. `password` is valid UTF-8. Returns 0 or
 * ZNP_E_VALIDATION_FAILED with err->path "password" and a detail naming the
 * rule.
 */
int znp_accounts_check_password(const znp_config_t *config, const char *password, size_t password_len,
                                const char *email, znp_error_t *err);

/* Number of the four classes above that appear in `password`. */
unsigned znp_accounts__password_classes(const char *password, size_t password_len);

#endif
