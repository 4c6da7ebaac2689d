/*
 * The built-in mail templates, in English and Simplified Chinese, and their
 * rendering. Variables are written {{name}}; values are plain text because
 * every message is text/plain.
 */
#include "mail/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.gen.h"

typedef struct mail_template {
    const char *name;
    const char *subject[2]; /* indexed by znp_locale_t */
    const char *body[2];
} mail_template_t;

static const mail_template_t templates[] = {
    {
        "verify_email",
        {"{{site_name}}: your verification code", "{{site_name}}：您的验证码"},
        {"Hello,\n\n"
         "Your verification code for {{site_name}} is:\n\n"
         "    {{code}}\n\n"
         "It expires in {{minutes}} minutes. If you did not request it, you can ignore this message.\n",
         "您好：\n\n"
         "您在 {{site_name}} 的验证码是：\n\n"
         "    {{code}}\n\n"
         "验证码在 {{minutes}} 分钟后失效。如果这不是您本人的操作，请忽略本邮件。\n"},
    },
    {
        "password_reset",
        {"{{site_name}}: password reset code", "{{site_name}}：重置密码验证码"},
        {"Hello,\n\n"
         "Someone asked to reset the password of your {{site_name}} account. Your code is:\n\n"
         "    {{code}}\n\n"
         "It expires in {{minutes}} minutes. If you did not ask for a reset, ignore this message: "
         "your password stays as it is.\n",
         "您好：\n\n"
         "有人请求重置您在 {{site_name}} 的账户密码。验证码是：\n\n"
         "    {{code}}\n\n"
         "验证码在 {{minutes}} 分钟后失效。如果这不是您本人的操作，请忽略本邮件，您的密码不会改变。\n"},
    },
    {
        "email_change",
        {"{{site_name}}: confirm your new email address", "{{site_name}}：确认新的邮箱地址"},
        {"Hello,\n\n"
         "To make this the email address of your {{site_name}} account, enter this code:\n\n"
         "    {{code}}\n\n"
         "It expires in {{minutes}} minutes. If you did not ask for this change, ignore this message.\n",
         "您好：\n\n"
         "如需将此地址设为您在 {{site_name}} 账户的邮箱，请输入以下验证码：\n\n"
         "    {{code}}\n\n"
         "验证码在 {{minutes}} 分钟后失效。如果这不是您本人的操作，请忽略本邮件。\n"},
    },
    {
        "notice",
        {"{{site_name}}: notice", "{{site_name}}：通知"},
        {"Hello,\n\n{{message}}\n\n-- {{site_name}}\n", "您好：\n\n{{message}}\n\n—— {{site_name}}\n"},
    },
};

static const char *const known_variables[] = {"code", "minutes", "site_name", "message"};

static const mail_template_t *find_template(const char *name)
{
    for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
        if (strcmp(templates[i].name, name) == 0)
            return &templates[i];
    }
    return NULL;
}

int znp_mail__template_exists(const char *name)
{
    return name != NULL && find_template(name) != NULL;
}

/* growable output buffer */
typedef struct buffer {
    char *data;
    size_t len, cap;
    int failed;
} buffer_t;

static void append(buffer_t *b, const char *data, size_t len)
{
    if (b->failed)
        return;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : 256;
        char *grown;

        while (b->len + len + 1 > cap)
            cap *= 2;
        grown = realloc(b->data, cap);
        if (grown == NULL) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

/* Text of variable `name` from `vars` into `out`, CR and LF replaced by spaces. */
static int variable_text(char *out, size_t out_size, json_t *vars, const char *name)
{
    json_t *value = json_object_get(vars, name);
    size_t len;

    if (json_is_string(value)) {
        len = json_string_length(value);
        if (len >= out_size || len > ZNP_MAIL_VALUE_MAX)
            return ZNP_E_VALIDATION_FAILED;
        memcpy(out, json_string_value(value), len);
        out[len] = '\0';
    } else if (json_is_integer(value)) {
        snprintf(out, out_size, "%lld", (long long)json_integer_value(value));
        len = strlen(out);
    } else {
        return ZNP_E_VALIDATION_FAILED;
    }
    for (size_t i = 0; i < len; i++) {
        if (out[i] == '\r' || out[i] == '\n' || out[i] == '\0')
            out[i] = ' ';
    }
    return 0;
}

/* Substitute the {{variables}} of `text`. Text that is not a known variable stays as written. */
static int substitute(char **out, const char *text, json_t *vars)
{
    buffer_t b = {0};
    const char *p = text;
    char value[ZNP_MAIL_VALUE_MAX + 1];

    *out = NULL;
    while (*p != '\0') {
        const char *open = strstr(p, "{{");
        const char *close;
        size_t i;

        if (open == NULL) {
            append(&b, p, strlen(p));
            break;
        }
        append(&b, p, (size_t)(open - p));
        close = strstr(open + 2, "}}");
        for (i = 0; close != NULL && i < sizeof(known_variables) / sizeof(known_variables[0]); i++) {
            size_t name_len = strlen(known_variables[i]);

            if ((size_t)(close - open - 2) == name_len && memcmp(open + 2, known_variables[i], name_len) == 0)
                break;
        }
        if (close == NULL || i == sizeof(known_variables) / sizeof(known_variables[0])) {
            append(&b, "{{", 2);
            p = open + 2;
            continue;
        }
        if (variable_text(value, sizeof(value), vars, known_variables[i]) != 0) {
            free(b.data);
            return ZNP_E_VALIDATION_FAILED;
        }
        append(&b, value, strlen(value));
        p = close + 2;
    }
    if (b.data == NULL)
        append(&b, "", 0);
    if (b.failed) {
        free(b.data);
        return ZNP_E_INTERNAL;
    }
    *out = b.data;
    return 0;
}

int znp_mail__render(char **subject, char **body, const char *name, znp_locale_t locale, json_t *vars)
{
    const mail_template_t *template = name != NULL ? find_template(name) : NULL;
    int index = locale == ZNP_LOCALE_ZH_CN ? 1 : 0;
    int rc;

    *subject = NULL;
    *body = NULL;
    if (template == NULL || !json_is_object(vars))
        return ZNP_E_VALIDATION_FAILED;
    rc = substitute(subject, template->subject[index], vars);
    if (rc == 0)
        rc = substitute(body, template->body[index], vars);
    if (rc != 0) {
        free(*subject);
        free(*body);
        *subject = NULL;
        *body = NULL;
    }
    return rc;
}
