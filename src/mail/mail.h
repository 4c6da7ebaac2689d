/*
 * Outgoing mail. Requests never talk to the mail server: they queue a
 * "mail.send" job (jobs.h) inside their transaction, and a job runner
 * renders the template in the recipient's locale and sends it over SMTP with
 * libcurl (STARTTLS or implicit TLS, AUTH, timeout).
 */
#ifndef ZNP_MAIL_H
#define ZNP_MAIL_H

#include <jansson.h>
#include <libpq-fe.h>

#include "core/error.h"

struct znp_config;

/*
 * Queue mail `template_name` (e.g. "verify_email", "password_reset",
 * "email_change") to `to` in `locale` with template variables `vars`
 * (borrowed JSON object). Secrets such as codes are part of `vars`, so the
 * job payload is cleared once the mail is sent or the job is dead. Returns 0,
 * ZNP_E_VALIDATION_FAILED for an invalid address, unknown template or
 * non-object `vars`, or the errors of znp_jobs_enqueue.
 */
int znp_mail_enqueue(PGconn *db, const char *to, const char *template_name, znp_locale_t locale, json_t *vars);

/*
 * Register the "mail.send" job handler and initialize libcurl. Call once,
 * before any thread starts and before the job runner; `config` (borrowed)
 * must outlive the runner and gives the attempt limit for znp_mail_enqueue.
 */
int znp_mail_register(const struct znp_config *config);

#endif
