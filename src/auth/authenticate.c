/*
 * Bearer-token authentication for the dispatcher (declared in
 * core/dispatch.h). The token is checked first, then the users row, so that
 * disabling, locking or revoking takes effect before the token expires.
 */
#include "core/dispatch.h"

#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#include "auth/auth_internal.h"
#include "auth/text.h"
#include "config/config.h"
#include "core/log.h"
#include "mfa/mfa.h"

#define LOG_TAG "auth"

/* the site setting require_admin_mfa, mirrored from the site-settings cache */
static atomic_int site_require_admin_mfa;

void znp_auth_set_site_require_admin_mfa(int required)
{
    atomic_store(&site_require_admin_mfa, required != 0);
}

/* Find the token after a case-insensitive "Bearer" and at least one space. Returns NULL when malformed. */
static const char *bearer_token(const char *authorization, size_t *len)
{
    const char *p = authorization;
    const char *end;

    if (p == NULL || strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return NULL;
    p += 6;
    while (*p == ' ' || *p == '\t')
        p++;
    end = p + strlen(p);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if (end == p || memchr(p, ' ', (size_t)(end - p)) != NULL || memchr(p, '\t', (size_t)(end - p)) != NULL)
        return NULL;
    *len = (size_t)(end - p);
    return p;
}

static void fill_identity(znp_caller_t *out, const znp_auth_user_t *user, const znp_jwt_claims_t *claims)
{
    memset(out, 0, sizeof(*out));
    out->user_id = user->id;
    znp_text_copy(out->email, sizeof(out->email), user->email, strlen(user->email));
    out->role_count = user->role_count;
    for (size_t i = 0; i < user->role_count; i++)
        memcpy(out->roles[i], user->roles[i], sizeof(out->roles[i]));
    out->token_issued_at = claims->issued_at;
}

int znp_auth_authenticate(znp_ctx_t *ctx, znp_security_t security, const char *authorization)
{
    const znp_config_auth_t *auth = &ctx->config->auth;
    znp_jwt_claims_t claims;
    znp_auth_user_t user;
    const char *token;
    size_t token_len = 0;
    int found = 0, rc;

    memset(&ctx->caller, 0, sizeof(ctx->caller));
    if (security == ZNP_SEC_PUBLIC)
        return 0;

    /* the token */
    token = bearer_token(authorization, &token_len);
    if (token == NULL)
        return ZNP_E_UNAUTHENTICATED;
    rc = znp_jwt_verify(&claims, token, token_len, ZNP_TOKEN_ACCESS, auth->issuer, auth->access_secret,
                        znp_auth__key_len(auth->access_secret), znp_auth__now(ctx));
    if (rc != 0)
        return rc;

    /* the account as it is now */
    rc = znp_auth__user_find_by_id(&user, &found, ctx->db, claims.user_id, ctx->request_id);
    if (rc != 0)
        return rc;
    if (!found)
        return ZNP_E_TOKEN_INVALID;
    if (user.status != ZNP_USER_ACTIVE)
        return ZNP_E_ACCOUNT_DISABLED;
    if (user.lock_seconds > 0)
        return znp_auth__locked(ctx, user.lock_seconds);
    if (claims.issued_at < user.token_invalid_before)
        return ZNP_E_TOKEN_REVOKED;

    /* the role, from the row rather than the token, so a removed role counts at once */
    if (security == ZNP_SEC_ADMIN && !user.is_admin) {
        ZNP_INFO(LOG_TAG, ctx->request_id, "admin route refused user=%lld", (long long)user.id);
        return ZNP_E_FORBIDDEN;
    }

    /* admin routes wait until the admin enables MFA (user routes, enrolment included, do not) */
    if (security == ZNP_SEC_ADMIN &&
        (ctx->config->security.require_admin_mfa || atomic_load(&site_require_admin_mfa))) {
        int mfa_enabled = 0;

        rc = znp_mfa_enabled(ctx, user.id, &mfa_enabled);
        if (rc != 0)
            return rc;
        if (!mfa_enabled) {
            ZNP_INFO(LOG_TAG, ctx->request_id, "admin route refused until MFA is enabled user=%lld",
                     (long long)user.id);
            return ZNP_E_MFA_REQUIRED;
        }
    }
    fill_identity(&ctx->caller, &user, &claims);
    return 0;
}
