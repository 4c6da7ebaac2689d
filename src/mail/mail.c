/*
 * Outgoing mail: znp_mail_enqueue queues a "mail.send" job, and the job
 * handler renders the template and sends it over SMTP with libcurl. Logs
 * and audit rows show the recipient masked and never the variables, which
 * may hold codes.
 */
#include "mail/mail.h"

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "audit/audit.h"
#include "config/config.h"
#include "core/log.h"
#include "jobs/internal.h"
#include "jobs/jobs.h"
#include "mail/internal.h"
#include "system/site.h"

#define LOG_TAG   "mail"
#define JOB_KIND  "mail.send"
#define MASK_SIZE 224

static atomic_uint max_attempts_setting;

/* the message being uploaded by libcurl's read callback */
typedef struct upload {
    const char *data;
    size_t len, offset;
} upload_t;

static size_t read_message(char *buffer, size_t size, size_t count, void *data)
{
    upload_t *upload = data;
    size_t room = size * count, left = upload->len - upload->offset;
    size_t n = left < room ? left : room;

    memcpy(buffer, upload->data + upload->offset, n);
    upload->offset += n;
    return n;
}

int znp_mail_enqueue(PGconn *db, const char *to, const char *template_name, znp_locale_t locale, json_t *vars)
{
    json_t *payload = NULL;
    int rc;

    if (!znp_mail__address_valid(to) || !znp_mail__template_exists(template_name) ||
        (vars != NULL && !json_is_object(vars)))
        return ZNP_E_VALIDATION_FAILED;
    payload = json_pack("{s:s, s:s, s:s, s:o}", "to", to, "template", template_name, "locale",
                        locale == ZNP_LOCALE_ZH_CN ? "zh-CN" : "en", "vars",
                        vars != NULL ? json_incref(vars) : json_object());
    if (payload == NULL)
        return ZNP_E_INTERNAL;
    rc = znp_jobs__enqueue_limited(db, JOB_KIND, payload, 0, atomic_load(&max_attempts_setting), NULL);
    json_decref(payload);
    return rc;
}

/* "<hex>@<domain of from>" in angle brackets */
static void make_message_id(char *out, size_t out_size, const char *from)
{
    const char *at = strrchr(from, '@');
    uint64_t bits[2] = {0, 0};

    if (getrandom(bits, sizeof(bits), 0) != sizeof(bits))
        bits[0] = (uint64_t)time(NULL);
    snprintf(out, out_size, "<%016llx%016llx@%.200s>", (unsigned long long)bits[0], (unsigned long long)bits[1],
             at != NULL ? at + 1 : "localhost");
}

static long use_ssl_level(const znp_config_mail_t *mail)
{
    if (strncmp(mail->smtp_url, "smtps://", 8) == 0)
        return (long)CURLUSESSL_ALL;
    if (strcmp(mail->starttls, "off") == 0)
        return (long)CURLUSESSL_NONE;
    if (strcmp(mail->starttls, "opportunistic") == 0)
        return (long)CURLUSESSL_TRY;
    return (long)CURLUSESSL_ALL;
}

/* One SMTP transaction. The error text names neither the recipient nor the content. */
static int send_message(const znp_config_mail_t *mail, const char *to, const char *message, size_t len,
                        char *error, size_t error_size)
{
    char from_path[ZNP_MAIL_ADDRESS_MAX + 3], to_path[ZNP_MAIL_ADDRESS_MAX + 3];
    struct curl_slist *recipients = NULL;
    upload_t upload = {message, len, 0};
    CURL *curl = NULL;
    CURLcode result;
    long smtp_code = 0;
    int rc = ZNP_E_INTERNAL;

    snprintf(from_path, sizeof(from_path), "<%s>", mail->from);
    snprintf(to_path, sizeof(to_path), "<%s>", to);
    curl = curl_easy_init();
    recipients = curl_slist_append(NULL, to_path);
    if (curl == NULL || recipients == NULL) {
        snprintf(error, error_size, "could not set up libcurl");
        goto cleanup;
    }
    curl_easy_setopt(curl, CURLOPT_URL, mail->smtp_url);
    curl_easy_setopt(curl, CURLOPT_USE_SSL, use_ssl_level(mail));
    if (mail->ca_file != NULL)
        curl_easy_setopt(curl, CURLOPT_CAINFO, mail->ca_file);
    if (mail->username != NULL) {
        curl_easy_setopt(curl, CURLOPT_USERNAME, mail->username);
        curl_easy_setopt(curl, CURLOPT_PASSWORD, mail->password != NULL ? mail->password : "");
    }
    curl_easy_setopt(curl, CURLOPT_MAIL_FROM, from_path);
    curl_easy_setopt(curl, CURLOPT_MAIL_RCPT, recipients);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_message);
    curl_easy_setopt(curl, CURLOPT_READDATA, &upload);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)mail->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)mail->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L); /* runner threads must not get SIGALRM */

    result = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &smtp_code);
    if (result != CURLE_OK) {
        snprintf(error, error_size, "smtp send failed: %s (curl %d, smtp %ld)", curl_easy_strerror(result),
                 (int)result, smtp_code);
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    rc = 0;

cleanup:
    curl_slist_free_all(recipients);
    curl_easy_cleanup(curl);
    return rc;
}

/* the job handler of "mail.send" */
static int handle_send(PGconn *db, const znp_config_t *config, json_t *payload, char *message, size_t message_size)
{
    const char *to = json_string_value(json_object_get(payload, "to"));
    const char *template_name = json_string_value(json_object_get(payload, "template"));
    const char *locale_text = json_string_value(json_object_get(payload, "locale"));
    json_t *vars = json_object_get(payload, "vars");
    znp_locale_t locale = locale_text != NULL && strcmp(locale_text, "zh-CN") == 0 ? ZNP_LOCALE_ZH_CN : ZNP_LOCALE_EN;
    char masked[MASK_SIZE], message_id[256];
    char *subject = NULL, *body = NULL, *text = NULL;
    json_t *merged = NULL;
    size_t text_len = 0;
    int rc;

    (void)db;
    znp_mail__mask_address(masked, sizeof(masked), to);
    if (!znp_mail__address_valid(to)) {
        snprintf(message, message_size, "invalid recipient in job payload");
        return ZNP_E_VALIDATION_FAILED;
    }
    if (config->mail.smtp_url == NULL) {
        ZNP_INFO(LOG_TAG, NULL, "mail disabled (mail.smtp_url is not set), dropping template=%s to=%s",
                 template_name != NULL ? template_name : "?", masked);
        return 0;
    }

    /* render, with the current site name unless the caller gave one */
    merged = json_is_object(vars) ? json_copy(vars) : json_object();
    if (merged == NULL)
        return ZNP_E_INTERNAL;
    if (json_object_get(merged, "site_name") == NULL) {
        znp_site_snapshot_t site;

        znp_site_cache_get(&site);
        json_object_set_new(merged, "site_name", json_string(site.name));
    }
    rc = znp_mail__render(&subject, &body, template_name, locale, merged);
    if (rc != 0) {
        snprintf(message, message_size, "could not render template \"%.64s\": unknown template or missing variable",
                 template_name != NULL ? template_name : "");
        goto cleanup;
    }
    make_message_id(message_id, sizeof(message_id), config->mail.from);
    text = znp_mail__build_message(&text_len, config->mail.from, to, subject, body, (int64_t)time(NULL), message_id);
    if (text == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }

    /* send */
    rc = send_message(&config->mail, to, text, text_len, message, message_size);
    if (rc == 0)
        ZNP_INFO(LOG_TAG, NULL, "mail sent template=%s to=%s", template_name, masked);
    else
        ZNP_WARN(LOG_TAG, NULL, "mail not sent template=%s to=%s: %s", template_name, masked, message);

cleanup:
    free(subject);
    free(body);
    free(text);
    json_decref(merged);
    return rc;
}

/* A dead mail job leaves an audit row naming the masked recipient. */
static void on_send_dead(PGconn *db, const znp_config_t *config, json_t *payload, const char *last_error)
{
    const char *to = json_string_value(json_object_get(payload, "to"));
    const char *template_name = json_string_value(json_object_get(payload, "template"));
    char masked[MASK_SIZE];
    json_t *diff;

    (void)config;
    znp_mail__mask_address(masked, sizeof(masked), to);
    diff = json_pack("{s:s, s:s?, s:s}", "recipient", masked, "template", template_name, "error",
                     last_error != NULL ? last_error : "");
    znp_audit_entry_t entry = {
        .action = "mail.failed",
        .resource_type = "mail",
        .diff = diff,
    };
    if (znp_audit_record(NULL, db, &entry) != 0)
        ZNP_ERROR(LOG_TAG, NULL, "could not write the audit row for a failed mail to=%s", masked);
    json_decref(diff);
}

int znp_mail_register(const znp_config_t *config)
{
    static int curl_ready;
    int rc;

    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return ZNP_E_INTERNAL;
        curl_ready = 1;
    }
    atomic_store(&max_attempts_setting, config != NULL ? config->mail.max_attempts : 0);
    rc = znp_jobs_register(JOB_KIND, handle_send);
    if (rc == 0)
        rc = znp_jobs_register_dead(JOB_KIND, on_send_dead);
    return rc;
}
