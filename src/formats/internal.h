/* Helpers shared by the format renderers. */
#ifndef ZNP_FORMATS_INTERNAL_H
#define ZNP_FORMATS_INTERNAL_H

#include <stddef.h>

#include "formats/formats.h"

/* Growable NUL-terminated byte buffer; after a failed append `failed` stays set and later appends do nothing. */
typedef struct formats__buf {
    char *data;
    size_t len;
    size_t cap;
    int failed;
} formats__buf_t;

void formats__buf_append(formats__buf_t *b, const char *s, size_t len);
void formats__buf_puts(formats__buf_t *b, const char *s);
void formats__buf_printf(formats__buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append `len` bytes percent-encoded: everything except RFC 3986 unreserved characters becomes %XX. */
void formats__buf_percent(formats__buf_t *b, const char *s, size_t len);
/* Append base64 of `len` bytes; `url` selects the URL-safe alphabet without padding. */
void formats__buf_base64(formats__buf_t *b, const unsigned char *s, size_t len, int url);
/* Hand the data to the caller (or free it when failed); returns 0 or ZNP_E_INTERNAL. */
int formats__buf_finish(formats__buf_t *b, char **out, size_t *out_len);

/* Whether `s` is non-NULL and not "". */
int formats__set(const char *s);
/* Whether `host` is an IPv6 literal (contains ':'). */
int formats__is_ipv6(const char *host);
/* Protocol name as share links and sing-box spell it ("shadowsocks" for ss). */
const char *formats__protocol_name(znp_formats_protocol_t protocol);

/*
 * Unique display names for the nodes marked in `keep`: duplicates of an
 * earlier name get " 2", " 3"... Returns an owned array of owned strings
 * (entries for unkept nodes are NULL) or NULL when memory runs out.
 */
char **formats__unique_names(const znp_formats_node_t *nodes, const int *keep, size_t count);
void formats__names_free(char **names, size_t count);

/* Decide which nodes a format carries, reporting the others; returns an owned array of flags or NULL. */
int *formats__select(znp_formats_format_t format, const znp_formats_node_t *nodes, size_t count,
                     const znp_formats_options_t *opts);

int formats__render_links(formats__buf_t *b, const znp_formats_node_t *nodes, const int *keep, size_t count);
int formats__render_yaml(formats__buf_t *b, znp_formats_format_t format, const znp_formats_node_t *nodes,
                         const int *keep, size_t count);
int formats__render_singbox(formats__buf_t *b, const znp_formats_node_t *nodes, const int *keep, size_t count);
int formats__render_surge(formats__buf_t *b, const znp_formats_node_t *nodes, const int *keep, size_t count);
int formats__render_quantumultx(formats__buf_t *b, const znp_formats_node_t *nodes, const int *keep, size_t count);
/* Why a Quantumult X line cannot carry `n` (static English text), or NULL when it can. */
const char *formats__quantumultx_limits(const znp_formats_node_t *n);
int formats__render_loon(formats__buf_t *b, const znp_formats_node_t *nodes, const int *keep, size_t count);
/* Why a Loon line cannot carry `n` (static English text), or NULL when it can. */
const char *formats__loon_limits(const znp_formats_node_t *n);
/* Whether a Surge (or Loon) line can carry `name` / `value` unchanged. */
int formats__surge_name_ok(const char *name);
int formats__surge_value_ok(const char *value);
int formats__render_sip008(formats__buf_t *b, const znp_formats_node_t *nodes, const int *keep, size_t count);

#endif
