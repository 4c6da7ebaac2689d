#include "accounts/internal.h"

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <strings.h>

#include "audit/audit.h"
#include "config/config.h"
#include "core/log.h"
#include "mail/mail.h"
#include "system/site.h"

#define LOG_TAG "accounts"

static const char *template_for(znp_code_purpose_t purpose)
{
    switch (purpose) {
    case ZNP_CODE_VERIFY:
        return "verify_email";
    case ZNP_CODE_RESET:
        return "password_reset";
    case ZNP_CODE_EMAIL_CHANGE:
        return "email_change";
    }
    return "verify_email";
}

static int queue_mail(znp_ctx_t *ctx, znp_code_purpose_t purpose, const char *email, znp_locale_t locale,
                      const char *code)
{
    znp_site_snapshot_t site;
    json_t *vars = NULL;
    int rc;

    znp_site_cache_get(&site);
    vars = json_pack("{s:s, s:I, s:s}", "code", code, "minutes", (json_int_t)(ctx->config->codes.ttl_s / 60),
                     "site_name", site.name);
    if (vars == NULL)
        return ZNP_E_INTERNAL;
    rc = znp_mail_enqueue(ctx->db, email, template_for(purpose), locale, vars);
    if (rc != 0)
        ZNP_ERROR(LOG_TAG, ctx->request_id, "could not queue the %s mail", template_for(purpose));
    json_decref(vars);
    return rc;
}

int znp_accounts__send_code(znp_ctx_t *ctx, znp_code_purpose_t purpose, const char *email, znp_locale_t locale,
                            int deliver)
{
    char code[ZNP_CODE_SIZE];
    int rc;

    if (!deliver)
        return znp_codes_issue_dummy(ctx, ctx->db, purpose, email, ctx->client_ip);
    rc = znp_codes_issue(ctx, ctx->db, purpose, email, ctx->client_ip, code);
    if (rc == 0)
        rc = queue_mail(ctx, purpose, email, locale, code);
    OPENSSL_cleanse(code, sizeof(code));
    return rc;
}

znp_locale_t znp_accounts__locale(const char *value, znp_locale_t fallback)
{
    if (value == NULL)
        return fallback;
    if (strcasecmp(value, "en") == 0)
        return ZNP_LOCALE_EN;
    if (strcasecmp(value, "zh-CN") == 0)
        return ZNP_LOCALE_ZH_CN;
    return fallback;
}

int znp_accounts__audit(znp_ctx_t *ctx, const char *action, int64_t user_id, const char *email, json_t *diff)
{
    char id[24];
    znp_audit_entry_t entry = {0};

    snprintf(id, sizeof(id), "%lld", (long long)user_id);
    entry.actor_id = ctx->caller.user_id != 0 ? ctx->caller.user_id : user_id;
    entry.actor_email = ctx->caller.user_id != 0 ? ctx->caller.email : email;
    entry.action = action;
    entry.resource_type = "user";
    entry.resource_id = id;
    entry.diff = diff;
    return znp_audit_record(ctx, ctx->db, &entry);
}
