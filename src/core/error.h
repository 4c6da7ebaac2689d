/*
 * Errors. Functions return 0 or a negative value of znp_err_t (generated from
 * spec/errors.yaml into generated/errors.gen.h). Detail that the caller may
 * show (the JSON path of a bad field, the offending value) goes into a
 * caller-owned znp_error_t.
 */
#ifndef ZNP_CORE_ERROR_H
#define ZNP_CORE_ERROR_H

#include <stddef.h>

#include "errors.gen.h"

typedef enum znp_locale {
    ZNP_LOCALE_EN = 0,
    ZNP_LOCALE_ZH_CN = 1,
} znp_locale_t;

#define ZNP_ERROR_PATH_MAX 256
#define ZNP_ERROR_DETAIL_MAX 256

typedef struct znp_error {
    int code;                        /* the znp_err_t value, 0 when unset */
    char path[ZNP_ERROR_PATH_MAX];   /* JSON path such as "$.items[2].name", or a parameter name */
    char detail[ZNP_ERROR_DETAIL_MAX]; /* English detail for the details array, e.g. "must be at most 64 characters" */
    int retry_after;                 /* seconds for Retry-After, 0 when not applicable */
    /*
     * Further details entries, as the text of a JSON array of {"field", "message"} objects, appended after
     * path/detail when several values are wrong. Borrowed (usually the request arena), NULL when none;
     * znp_error_set clears it.
     */
    const char *more_details;
} znp_error_t;

/* Record `err` with an optional path and printf detail; returns `err` so callers can `return znp_error_set(...)`. */
int znp_error_set(znp_error_t *e, int err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void znp_error_clear(znp_error_t *e);

/* Catalogue entry for `err`; never NULL (unknown values map to the internal error entry). Borrowed, static. */
const znp_error_info_t *znp_error_info(int err);
/* Localized message for `err`. Borrowed, static. */
const char *znp_error_message(int err, znp_locale_t locale);

/* Pick the locale from an Accept-Language header value (may be NULL); `fallback` when nothing matches. */
znp_locale_t znp_locale_from_header(const char *value, size_t len, znp_locale_t fallback);

#endif
