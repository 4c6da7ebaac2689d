/*
 * The pure parts of outgoing mail, kept apart from libcurl so they can be
 * unit-tested: templates, variable substitution, header encoding and the
 * message text.
 */
#ifndef ZNP_MAIL_INTERNAL_H
#define ZNP_MAIL_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define ZNP_MAIL_ADDRESS_MAX 254
#define ZNP_MAIL_VALUE_MAX   1024 /* bytes of one substituted variable */

/*
 * Render template `name` in `locale` with `vars` (borrowed JSON object whose
 * values are strings or integers). Recognized variables are {{code}},
 * {{minutes}}, {{site_name}} and {{message}}; a variable the template uses
 * but `vars` lacks fails with ZNP_E_VALIDATION_FAILED, as do an unknown
 * template and a value longer than ZNP_MAIL_VALUE_MAX. CR and LF in values
 * become spaces. On success *subject and *body are malloc'd UTF-8 text
 * (owned by the caller, body lines end in "\n").
 */
int znp_mail__render(char **subject, char **body, const char *name, znp_locale_t locale, json_t *vars);

/* Whether `name` names a built-in template. */
int znp_mail__template_exists(const char *name);

/*
 * Encode a header value: unchanged when it is printable ASCII, else RFC 2047
 * encoded-words ("=?UTF-8?B?...?=") of at most 75 characters each, split
 * between UTF-8 characters and joined by CRLF SP. malloc'd, NULL when out of
 * memory.
 */
char *znp_mail__encode_header(const char *value);

/*
 * Build the whole message (headers, blank line, base64 body in 76-column
 * lines), every line ending in CRLF. `date` is Unix seconds; `message_id`
 * includes the angle brackets. malloc'd with *len set, NULL when out of memory.
 */
char *znp_mail__build_message(size_t *len, const char *from, const char *to, const char *subject, const char *body,
                              int64_t date, const char *message_id);

/* Mask an address for logs and audit rows: "alice@example.com" -> "a***@example.com". */
void znp_mail__mask_address(char *out, size_t out_size, const char *address);

/* Whether `address` is a plausible single mailbox (local@domain, no spaces, brackets or control characters). */
int znp_mail__address_valid(const char *address);

#endif
