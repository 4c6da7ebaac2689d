#include "auth/auth_internal.h"

#include <stdio.h>
#include <string.h>

#include "auth/sql.h"
#include "config/config.h"
#include "core/log.h"

#define LOG_TAG "auth"

static int store_refresh_token(znp_ctx_t *ctx, const znp_jwt_claims_t *claims)
{
    static const char sql[] = "INSERT INTO refresh_tokens (jti, family_id, user_id, issued_at, expires_at) "
                              "VALUES ($1, $2, $3, to_timestamp($4::bigint), to_timestamp($5::bigint))";
    char user_id[24], issued_at[24], expires_at[24];
    const char *params[5] = {claims->jti, claims->family, user_id, issued_at, expires_at};

    snprintf(user_id, sizeof(user_id), "%lld", (long long)claims->user_id);
    snprintf(issued_at, sizeof(issued_at), "%lld", (long long)claims->issued_at);
    snprintf(expires_at, sizeof(expires_at), "%lld", (long long)claims->expires_at);
    return znp_sql_exec(NULL, ctx->db, sql, 5, params, ctx->request_id);
}

static int fill_user(znp_ctx_t *ctx, const znp_auth_user_t *user, znp_authenticated_user_t *out)
{
    char **roles = NULL;

    if (user->role_count > 0) {
        roles = znp_arena_alloc(ctx->arena, user->role_count * sizeof(*roles));
        if (roles == NULL)
            return ZNP_E_INTERNAL;
    }
    for (size_t i = 0; i < user->role_count; i++) {
        roles[i] = znp_arena_strdup(ctx->arena, user->roles[i]);
        if (roles[i] == NULL)
            return ZNP_E_INTERNAL;
    }

    out->id = user->id;
    out->email = znp_arena_strdup(ctx->arena, user->email);
    out->display_name = znp_arena_strdup(ctx->arena, user->display_name);
    out->roles.count = user->role_count;
    out->roles.items = roles;
    out->created_at = user->created_at;
    out->updated_at = user->updated_at;
    if (out->email == NULL || out->display_name == NULL)
        return ZNP_E_INTERNAL;
    return 0;
}

int znp_auth__tokens_issue(znp_ctx_t *ctx, const znp_auth_user_t *user, const char *family, char *refresh_jti_out,
                           znp_token_pair_t *out)
{
    const znp_config_auth_t *auth = &ctx->config->auth;
    znp_jwt_claims_t access = {0}, refresh = {0};
    char access_token[ZNP_JWT_MAX + 1], refresh_token[ZNP_JWT_MAX + 1];
    int64_t now = znp_auth__now(ctx);
    int rc;

    /*
     * Revocation stores token_invalid_before as the next whole second and
     * the check is iat < token_invalid_before, so a token signed in the same
     * second as a revocation takes that second as iat and stays valid.
     */
    if (user->token_invalid_before > now)
        now = user->token_invalid_before;

    /* claims */
    access.type = ZNP_TOKEN_ACCESS;
    access.user_id = user->id;
    access.issued_at = now;
    access.expires_at = now + auth->access_ttl_s;
    access.role_count = user->role_count;
    memcpy(access.roles, user->roles, sizeof(access.roles));
    refresh.type = ZNP_TOKEN_REFRESH;
    refresh.user_id = user->id;
    refresh.issued_at = now;
    refresh.expires_at = now + auth->refresh_ttl_s;
    if (family != NULL)
        snprintf(refresh.family, sizeof(refresh.family), "%s", family);
    else if ((rc = znp_uuid_v4(refresh.family)) != 0)
        return rc;
    if ((rc = znp_uuid_v4(access.jti)) != 0 || (rc = znp_uuid_v4(refresh.jti)) != 0)
        return rc;

    /* sign and store */
    rc = znp_jwt_sign(access_token, sizeof(access_token), &access, auth->issuer, auth->access_secret,
                      znp_auth__key_len(auth->access_secret));
    if (rc == 0)
        rc = znp_jwt_sign(refresh_token, sizeof(refresh_token), &refresh, auth->issuer, auth->refresh_secret,
                          znp_auth__key_len(auth->refresh_secret));
    if (rc != 0) {
        ZNP_ERROR(LOG_TAG, ctx->request_id, "could not sign tokens user=%lld", (long long)user->id);
        return rc;
    }
    rc = store_refresh_token(ctx, &refresh);
    if (rc != 0)
        return rc;
    if (refresh_jti_out != NULL)
        memcpy(refresh_jti_out, refresh.jti, sizeof(refresh.jti));

    /* response */
    out->access_token = znp_arena_strdup(ctx->arena, access_token);
    out->refresh_token = znp_arena_strdup(ctx->arena, refresh_token);
    out->token_type = "Bearer";
    out->expires_in = auth->access_ttl_s;
    out->refresh_expires_in = auth->refresh_ttl_s;
    if (out->access_token == NULL || out->refresh_token == NULL)
        return ZNP_E_INTERNAL;
    return fill_user(ctx, user, &out->user);
}
