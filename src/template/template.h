/*
 * Subscription template engine: a documented subset of Go's text/template.
 *
 * A template is compiled once (when an admin saves or publishes it) and rendered many times
 * against a jansson data context. Compile errors, render errors and strict-check findings carry
 * the line and column of the offending token. Rendering is bounded in output size, steps,
 * nesting depth and intermediate memory; exceeding a bound is an error and no partial output is
 * returned. The supported syntax and functions are listed in docs/templates.md.
 */
#ifndef ZNP_TEMPLATE_H
#define ZNP_TEMPLATE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <jansson.h>

typedef struct znp_template znp_template_t;

typedef enum {
    ZNP_TEMPLATE_ERR_NONE = 0,
    ZNP_TEMPLATE_ERR_SYNTAX,      /* compile time: the text is not a valid template */
    ZNP_TEMPLATE_ERR_EXEC,        /* render time: a function or field access failed */
    ZNP_TEMPLATE_ERR_LIMIT,       /* render time: a limit in znp_template_limits_t was reached */
    ZNP_TEMPLATE_ERR_MISSING_KEY, /* strict check only: a field or index key is absent */
    ZNP_TEMPLATE_ERR_NO_MEMORY,
} znp_template_err_kind_t;

/* Error detail. line and column are 1-based; column counts Unicode characters, not bytes.
 * Both are 0 when the error has no position, for example running out of memory while compiling. */
typedef struct {
    znp_template_err_kind_t kind;
    int line;
    int column;
    char message[256];
} znp_template_error_t;

/* Render bounds. A zero field takes the default named beside it. */
typedef struct {
    size_t max_output_bytes; /* 4 MiB */
    uint64_t max_steps;      /* 1,000,000: actions, text nodes, function calls and loop iterations */
    unsigned max_depth;      /* 100: nested control blocks (each "else if" adds one) and nested values
                                walked by print and toJSON */
    size_t max_memory_bytes; /* 16 MiB: intermediate strings and values built while rendering */
    time_t now;              /* value of the `now` function; 0 means the current time */
} znp_template_limits_t;

/* Maximum nesting of control blocks (each "else if" adds one) and parenthesised pipelines
 * accepted by the compiler. */
#define ZNP_TEMPLATE_MAX_NESTING 100

/*
 * Compile text[0..len) into *out (owned; free with znp_template_destroy). text need not be
 * NUL-terminated and may contain any bytes. Returns 0, ZNP_E_VALIDATION_FAILED with err filled
 * (kind SYNTAX) for an invalid template, or ZNP_E_INTERNAL when out of memory. err may be NULL.
 */
int znp_template_compile(znp_template_t **out, const char *text, size_t len, znp_template_error_t *err);

/*
 * Render tmpl against data (borrowed, not modified; may be NULL for an empty context).
 * On success *out is an owned NUL-terminated buffer (free with free()) and *out_len its length
 * without the NUL. On failure *out is NULL and err describes the first error. limits may be
 * NULL for all defaults. Returns 0, ZNP_E_VALIDATION_FAILED (EXEC or LIMIT) or ZNP_E_INTERNAL.
 *
 * Thread safety: a compiled template is immutable, so any number of threads may render the same
 * template at once as long as each passes its own data or data no thread modifies.
 */
int znp_template_render(const znp_template_t *tmpl, json_t *data, const znp_template_limits_t *limits, char **out,
                        size_t *out_len, znp_template_error_t *err);

/*
 * Render tmpl against sample data in strict mode, discarding the output: a field access or
 * `index` lookup of an absent object key is an error (kind MISSING_KEY) with its position,
 * where a normal render would print "<no value>". Only the branches the sample data reaches are
 * checked. Returns 0 or the same codes as znp_template_render.
 */
int znp_template_check(const znp_template_t *tmpl, json_t *sample, const znp_template_limits_t *limits,
                       znp_template_error_t *err);

void znp_template_destroy(znp_template_t *tmpl);

#endif
