/*
 * Internals shared by the files of the accounts module.
 */
#ifndef ZNP_ACCOUNTS_INTERNAL_H
#define ZNP_ACCOUNTS_INTERNAL_H

#include <jansson.h>
#include <stdint.h>

#include "accounts/accounts.h"
#include "accounts/codes.h"
#include "core/context.h"

/*
 * Issue a code for (`purpose`, `email`) and queue its mail in `locale`, in
 * the caller's transaction on ctx->db. When `deliver` is 0 the same limits
 * and work apply but nothing is mailed (the address gets no code). Returns 0,
 * ZNP_E_TOO_MANY_REQUESTS (ctx->err->retry_after set) or another negative
 * znp_err.
 */
int znp_accounts__send_code(znp_ctx_t *ctx, znp_code_purpose_t purpose, const char *email, znp_locale_t locale,
                            int deliver);

/* "en" -> EN, "zh-CN" -> ZH_CN (any letter case); NULL or anything else gives `fallback`. */
znp_locale_t znp_accounts__locale(const char *value, znp_locale_t fallback);

/* Write an audit row for a user, with an optional JSON object `diff` (borrowed). Returns 0 or a negative znp_err. */
int znp_accounts__audit(znp_ctx_t *ctx, const char *action, int64_t user_id, const char *email, json_t *diff);

/*
 * Take one use of the invite code `code` (any letter case) with a
 * conditional UPDATE in the caller's transaction: enabled, not expired, uses
 * left. *invite_id_out is its id. Returns 0, ZNP_E_INVITE_CODE_INVALID or a
 * database error.
 */
int znp_accounts__invite_take(znp_ctx_t *ctx, const char *code, int64_t *invite_id_out);
/* Record that `user_id` registered with invite `invite_id`. */
int znp_accounts__invite_record_use(znp_ctx_t *ctx, int64_t invite_id, int64_t user_id);

#endif
