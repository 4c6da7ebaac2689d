#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int znp_error_set(znp_error_t *e, int err, const char *path, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL)
        return err;
    e->code = err;
    e->retry_after = 0;
    e->more_details = NULL;
    snprintf(e->path, sizeof(e->path), "%s", path != NULL ? path : "");
    e->detail[0] = '\0';
    if (fmt != NULL) {
        va_start(ap, fmt);
        vsnprintf(e->detail, sizeof(e->detail), fmt, ap);
        va_end(ap);
    }
    return err;
}

void znp_error_clear(znp_error_t *e)
{
    if (e == NULL)
        return;
    memset(e, 0, sizeof(*e));
}

const znp_error_info_t *znp_error_info(int err)
{
    const znp_error_info_t *internal = NULL;

    /* the generator orders rows so that row i describes -(i + 1); the scan below covers any other order */
    if (err < 0 && (size_t) - (long)err <= znp_error_table_count && znp_error_table[-(long)err - 1].err == err)
        return &znp_error_table[-(long)err - 1];
    for (size_t i = 0; i < znp_error_table_count; i++) {
        if (znp_error_table[i].err == err)
            return &znp_error_table[i];
        if (znp_error_table[i].err == ZNP_E_INTERNAL)
            internal = &znp_error_table[i];
    }
    return internal;
}

const char *znp_error_message(int err, znp_locale_t locale)
{
    const znp_error_info_t *info = znp_error_info(err);

    return locale == ZNP_LOCALE_ZH_CN ? info->message_zh : info->message_en;
}

/* locale parsing */

typedef struct cursor {
    const char *p;
    const char *end;
} cursor_t;

static int is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static void skip_ows(cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t'))
        c->p++;
}

static int equals_ignore_case(const char *s, size_t len, const char *literal)
{
    size_t n = strlen(literal);

    if (len != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        int a = (unsigned char)s[i], b = (unsigned char)literal[i];
        if (a >= 'A' && a <= 'Z')
            a += 'a' - 'A';
        if (a != b)
            return 0;
    }
    return 1;
}

/*
 * Parse a language range (RFC 4647: "*" or 1*8ALPHA *("-" 1*8alphanum)).
 * Returns 0 and sets *start / *len, or -1 when malformed.
 */
static int parse_range(cursor_t *c, const char **start, size_t *len)
{
    const char *begin = c->p;
    size_t sub = 0;
    int first = 1;

    if (c->p < c->end && *c->p == '*') {
        c->p++;
        *start = begin;
        *len = 1;
        return 0;
    }
    for (;;) {
        sub = 0;
        while (c->p < c->end && (is_alpha(*c->p) || (!first && is_digit(*c->p)))) {
            c->p++;
            sub++;
        }
        if (sub == 0 || sub > 8)
            return -1;
        first = 0;
        if (c->p < c->end && *c->p == '-') {
            c->p++;
            continue;
        }
        break;
    }
    *start = begin;
    *len = (size_t)(c->p - begin);
    return 0;
}

/* Parse a qvalue (RFC 9110: "0" ["." 0*3DIGIT] / "1" ["." 0*3("0")]) into thousandths, or return -1 when malformed. */
static int parse_qvalue(cursor_t *c)
{
    int whole, value, digits = 0;

    if (c->p >= c->end || (*c->p != '0' && *c->p != '1'))
        return -1;
    whole = *c->p - '0';
    value = whole * 1000;
    c->p++;
    if (c->p < c->end && *c->p == '.') {
        int scale = 100;
        c->p++;
        while (c->p < c->end && is_digit(*c->p)) {
            if (++digits > 3)
                return -1;
            value += (*c->p - '0') * scale;
            scale /= 10;
            c->p++;
        }
    }
    if (value > 1000)
        return -1;
    return value;
}

static int locale_of_range(const char *range, size_t len, znp_locale_t fallback, znp_locale_t *out)
{
    static const char *const chinese[] = {"zh", "zh-cn", "zh-hans", "zh-sg", "zh-hans-cn", "zh-hans-sg"};

    for (size_t i = 0; i < sizeof(chinese) / sizeof(chinese[0]); i++) {
        if (equals_ignore_case(range, len, chinese[i])) {
            *out = ZNP_LOCALE_ZH_CN;
            return 1;
        }
    }
    if (len >= 2 && equals_ignore_case(range, 2, "en") && (len == 2 || range[2] == '-')) {
        *out = ZNP_LOCALE_EN;
        return 1;
    }
    if (len == 1 && range[0] == '*') {
        *out = fallback;
        return 1;
    }
    return 0;
}

/*
 * Accept-Language = #( language-range [ OWS ";" OWS "q=" qvalue ] ). Among
 * the ranges znp has messages for, the first one with the highest non-zero
 * weight decides. Other Chinese variants (zh-TW, zh-Hant) do not match,
 * because the catalogue has Simplified Chinese only. A header that does not
 * follow the grammar yields `fallback` as a whole.
 */
znp_locale_t znp_locale_from_header(const char *value, size_t len, znp_locale_t fallback)
{
    cursor_t c = {value, value != NULL ? value + len : NULL};
    znp_locale_t best = fallback;
    int best_q = 0;

    if (value == NULL)
        return fallback;

    while (c.p < c.end) {
        const char *range = NULL;
        size_t range_len = 0;
        int q = 1000;
        znp_locale_t locale;

        skip_ows(&c);
        if (c.p < c.end && *c.p == ',') { /* empty list element */
            c.p++;
            continue;
        }
        if (c.p >= c.end)
            break;
        if (parse_range(&c, &range, &range_len) != 0)
            return fallback;
        skip_ows(&c);
        if (c.p < c.end && *c.p == ';') {
            c.p++;
            skip_ows(&c);
            if (c.end - c.p < 2 || (c.p[0] != 'q' && c.p[0] != 'Q') || c.p[1] != '=')
                return fallback;
            c.p += 2;
            q = parse_qvalue(&c);
            if (q < 0)
                return fallback;
            skip_ows(&c);
        }
        if (c.p < c.end) {
            if (*c.p != ',')
                return fallback;
            c.p++;
        }
        if (q > best_q && locale_of_range(range, range_len, fallback, &locale)) {
            best = locale;
            best_q = q;
        }
    }
    return best;
}
