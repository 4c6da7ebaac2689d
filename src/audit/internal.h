/* Pure helpers of the audit module, apart for unit tests. */
#ifndef ZNP_AUDIT_INTERNAL_H
#define ZNP_AUDIT_INTERNAL_H

#include <stddef.h>

#define ZNP_AUDIT_USER_AGENT_MAX 256

/*
 * Append one CSV field for `value` (NUL-terminated) to out[*len], growing
 * *out (malloc'd, *cap bytes) as needed. The field is quoted when it contains
 * a comma, quote, CR or LF, with quotes doubled (RFC 4180); a value starting
 * with = + - or @ gets a leading single quote so spreadsheets do not run it
 * as a formula. Returns 0, or -1 when out of memory.
 */
int znp_audit__csv_field(char **out, size_t *len, size_t *cap, const char *value);

/* Append `n` raw bytes (a separator or line end) like znp_audit__csv_field. Returns 0 or -1. */
int znp_audit__csv_append(char **out, size_t *len, size_t *cap, const char *data, size_t n);

/*
 * Copy a User-Agent into `out` (at least ZNP_AUDIT_USER_AGENT_MAX + 1 bytes):
 * at most ZNP_AUDIT_USER_AGENT_MAX bytes of printable ASCII, anything else
 * replaced by '?', so the text is valid UTF-8 for the database.
 */
void znp_audit__clean_user_agent(char *out, const char *user_agent);

#endif
