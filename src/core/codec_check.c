#include "codec_internal.h"

#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void codec__rules_of_field(rules_t *r, const znp_field_t *f)
{
    memset(r, 0, sizeof(*r));
    r->type = f->type;
    r->flags = f->flags;
    r->min = f->min;
    r->max = f->max;
    r->min_number = f->min_number;
    r->max_number = f->max_number;
    r->min_length = f->min_length;
    r->max_length = f->max_length;
    r->pattern = f->pattern;
    r->format = f->format;
    r->enum_values = f->enum_values;
    r->schema = f->schema;
    r->min_items = f->min_items;
    r->max_items = f->max_items;
    r->items = f->items;
}

void codec__rules_of_item(rules_t *r, const znp_item_t *item)
{
    memset(r, 0, sizeof(*r));
    r->type = item->type;
    r->flags = item->flags;
    r->min = item->min;
    r->max = item->max;
    r->min_length = item->min_length;
    r->max_length = item->max_length;
    r->format = item->format;
    r->enum_values = item->enum_values;
    r->schema = item->schema;
}

/* UTF-8 */

size_t codec__utf8_invalid_offset(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong three-byte form */
            else if (c == 0xED)
                hi = 0x9F; /* UTF-16 surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong four-byte form */
            else if (c == 0xF4)
                hi = 0x8F; /* beyond U+10FFFF */
        } else {
            return i; /* C0, C1 (overlong two-byte forms), F5..FF, stray continuation bytes */
        }
        if (len - i <= need || s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k <= need; k++) {
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return i;
        }
        i += need + 1;
    }
    return len;
}

int znp_utf8_valid(const char *s, size_t len)
{
    return codec__utf8_invalid_offset((const unsigned char *)s, len) == len;
}

size_t codec__utf8_length(const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            n++;
    }
    return n;
}

/* regular expressions */

/*
 * Compiled patterns, keyed by the address of the descriptor's pattern
 * string, so each is compiled once per process and kept until exit. glibc's
 * regexec() (posix/regexec.c) takes a lock inside the compiled pattern, so
 * threads may share one regex_t.
 * NOTE: patterns match bytes under the C locale, so "." matches one byte of
 * a multi-byte character, not a whole code point.
 */
typedef struct pattern_entry {
    struct pattern_entry *next;
    const char *source;
    int status; /* regcomp result */
    regex_t regex;
} pattern_entry_t;

static pattern_entry_t *pattern_cache;
static pthread_mutex_t pattern_lock = PTHREAD_MUTEX_INITIALIZER;

static pattern_entry_t *pattern_get(const char *source)
{
    pattern_entry_t *entry;

    pthread_mutex_lock(&pattern_lock);
    for (entry = pattern_cache; entry != NULL; entry = entry->next) {
        if (entry->source == source)
            goto cleanup;
    }
    entry = calloc(1, sizeof(*entry));
    if (entry == NULL)
        goto cleanup;
    entry->source = source;
    entry->status = regcomp(&entry->regex, source, REG_EXTENDED | REG_NOSUB);
    entry->next = pattern_cache;
    pattern_cache = entry;

cleanup:
    pthread_mutex_unlock(&pattern_lock);
    return entry;
}

/* formats */

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_alnum(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static int prefix_ignore_case(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);

    if (len < n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (lower((unsigned char)s[i]) != prefix[i])
            return 0;
    }
    return 1;
}

/* RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens, 1..63 bytes each, 253 in all */
static int valid_hostname(const char *s, size_t len)
{
    size_t label = 0;

    if (len == 0 || len > 253)
        return 0;
    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return 0;
            label = 0;
            continue;
        }
        if (!is_alnum(c) && c != '-')
            return 0;
        if (c == '-' && label == 0)
            return 0;
        if (++label > 63)
            return 0;
    }
    return label > 0 && s[len - 1] != '-';
}

/*
 * A pragmatic address check, not RFC 5322: one '@', a non-empty local part,
 * a domain with at least one inner dot, no whitespace or control bytes, at
 * most 254 bytes.
 */
static int valid_email(const char *s, size_t len)
{
    const char *at = NULL;
    const char *domain;
    size_t domain_len;

    if (len == 0 || len > 254)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return 0;
        if (c == '@') {
            if (at != NULL)
                return 0;
            at = s + i;
        }
    }
    if (at == NULL || at == s)
        return 0;
    domain = at + 1;
    domain_len = len - (size_t)(domain - s);
    if (domain_len < 3 || memchr(domain, '.', domain_len) == NULL)
        return 0;
    if (domain[0] == '.' || domain[domain_len - 1] == '.')
        return 0;
    for (size_t i = 1; i < domain_len; i++) {
        if (domain[i] == '.' && domain[i - 1] == '.')
            return 0;
    }
    return 1;
}

/* an absolute http or https URL with a non-empty host and an optional port of 1..65535 */
static int valid_uri(const char *s, size_t len)
{
    static const char forbidden[] = "<>\"{}|\\^`";
    size_t i, authority_end, host_start, host_end;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f || strchr(forbidden, c) != NULL)
            return 0;
    }
    if (prefix_ignore_case(s, len, "https://"))
        i = 8;
    else if (prefix_ignore_case(s, len, "http://"))
        i = 7;
    else
        return 0;

    authority_end = i;
    while (authority_end < len && s[authority_end] != '/' && s[authority_end] != '?' && s[authority_end] != '#')
        authority_end++;
    host_start = i;
    for (size_t k = i; k < authority_end; k++) {
        if (s[k] == '@')
            host_start = k + 1;
    }
    if (host_start < authority_end && s[host_start] == '[') {
        const char *close = memchr(s + host_start, ']', authority_end - host_start);
        if (close == NULL || close == s + host_start + 1)
            return 0;
        host_end = (size_t)(close - s) + 1;
    } else {
        host_end = host_start;
        while (host_end < authority_end && s[host_end] != ':')
            host_end++;
        if (host_end == host_start)
            return 0;
    }
    if (host_end < authority_end) {
        unsigned long port = 0;
        size_t digits = 0;
        if (s[host_end] != ':')
            return 0;
        for (size_t k = host_end + 1; k < authority_end; k++) {
            if (!is_digit(s[k]) || ++digits > 5)
                return 0;
            port = port * 10 + (unsigned long)(s[k] - '0');
        }
        if (digits == 0 || port == 0 || port > 65535)
            return 0;
    }
    return 1;
}

static int valid_uuid(const char *s, size_t len)
{
    if (len != 36)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!is_hex((unsigned char)s[i])) {
            return 0;
        }
    }
    return 1;
}

static int read_number(const char *s, size_t digits)
{
    int n = 0;

    for (size_t i = 0; i < digits; i++) {
        if (!is_digit(s[i]))
            return -1;
        n = n * 10 + (s[i] - '0');
    }
    return n;
}

/* RFC 3339 date-time: 2026-12-04T20:41:18(.123)?(Z|+08:00), with real calendar days and leap second 60 */
static int valid_date_time(const char *s, size_t len)
{
    static const int days_in_month[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int year, month, day, hour, minute, second, max_day;
    size_t i;

    if (len < 20)
        return 0;
    if (s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
        return 0;
    year = read_number(s, 4);
    month = read_number(s + 5, 2);
    day = read_number(s + 8, 2);
    hour = read_number(s + 11, 2);
    minute = read_number(s + 14, 2);
    second = read_number(s + 17, 2);
    if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
        second < 0 || second > 60)
        return 0;
    max_day = days_in_month[month - 1];
    if (month == 2 && ((year % 4 == 0 && year % 100 != 0) || year % 400 == 0))
        max_day = 29;
    if (day > max_day)
        return 0;

    i = 19;
    if (s[i] == '.') {
        size_t start = ++i;
        while (i < len && is_digit(s[i]))
            i++;
        if (i == start)
            return 0;
    }
    if (i < len && (s[i] == 'Z' || s[i] == 'z'))
        return i + 1 == len;
    if (i < len && (s[i] == '+' || s[i] == '-')) {
        int offset_hour, offset_minute;
        if (len - i != 6 || s[i + 3] != ':')
            return 0;
        offset_hour = read_number(s + i + 1, 2);
        offset_minute = read_number(s + i + 4, 2);
        return offset_hour >= 0 && offset_hour <= 23 && offset_minute >= 0 && offset_minute <= 59;
    }
    return 0;
}

static const char *format_message(znp_format_t format)
{
    switch (format) {
    case ZNP_FMT_EMAIL:
        return "must be a valid email address";
    case ZNP_FMT_URI:
        return "must be an absolute http or https URL";
    case ZNP_FMT_DATE_TIME:
        return "must be an RFC 3339 date-time";
    case ZNP_FMT_UUID:
        return "must be a valid UUID";
    case ZNP_FMT_HOSTNAME:
        return "must be a valid hostname";
    case ZNP_FMT_NONE:
        break;
    }
    return "has an invalid format";
}

static int format_valid(znp_format_t format, const char *s, size_t len)
{
    switch (format) {
    case ZNP_FMT_NONE:
        return 1;
    case ZNP_FMT_EMAIL:
        return valid_email(s, len);
    case ZNP_FMT_URI:
        return valid_uri(s, len);
    case ZNP_FMT_DATE_TIME:
        return valid_date_time(s, len);
    case ZNP_FMT_UUID:
        return valid_uuid(s, len);
    case ZNP_FMT_HOSTNAME:
        return valid_hostname(s, len);
    }
    return 0;
}

/* value checks shared by JSON and text input */

static const char *plural(size_t n)
{
    return n == 1 ? "" : "s";
}

static int enum_error(const rules_t *r, const char *path, znp_error_t *err)
{
    char list[ZNP_ERROR_DETAIL_MAX];
    size_t used = 0;

    list[0] = '\0';
    for (size_t i = 0; r->enum_values[i] != NULL; i++) {
        int n = snprintf(list + used, sizeof(list) - used, "%s%s", i > 0 ? ", " : "", r->enum_values[i]);
        if (n < 0 || (size_t)n >= sizeof(list) - used)
            break;
        used += (size_t)n;
    }
    return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be one of: %s", list);
}

/* `s` is valid UTF-8 without NUL bytes */
int codec__check_string(const rules_t *r, const char *s, size_t len, const char *path, znp_error_t *err)
{
    size_t chars = codec__utf8_length(s, len);

    if (r->max_length != 0 && chars > r->max_length)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be at most %zu character%s", r->max_length,
                             plural(r->max_length));
    if (chars < r->min_length)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be at least %zu character%s", r->min_length,
                             plural(r->min_length));

    if (r->enum_values != NULL) {
        size_t i;
        for (i = 0; r->enum_values[i] != NULL; i++) {
            if (strcmp(r->enum_values[i], s) == 0)
                break;
        }
        if (r->enum_values[i] == NULL)
            return enum_error(r, path, err);
    }

    if (!format_valid(r->format, s, len))
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "%s", format_message(r->format));

    if (r->pattern != NULL) {
        pattern_entry_t *entry = pattern_get(r->pattern);
        if (entry == NULL)
            return znp_error_set(err, ZNP_E_INTERNAL, path, "out of memory compiling the pattern");
        if (entry->status != 0)
            return znp_error_set(err, ZNP_E_INTERNAL, path,
                                 "the schema pattern is not a valid POSIX regular expression");
        if (regexec(&entry->regex, s, 0, NULL, 0) != 0)
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "does not match the required pattern");
    }
    return 0;
}

int codec__check_int(const rules_t *r, int64_t v, const char *path, znp_error_t *err)
{
    int has_min = (r->flags & ZNP_F_HAS_MIN) != 0, has_max = (r->flags & ZNP_F_HAS_MAX) != 0;

    if ((has_min && v < r->min) || (has_max && v > r->max)) {
        if (has_min && has_max)
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be an integer between %lld and %lld",
                                 (long long)r->min, (long long)r->max);
        if (has_min)
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be an integer of at least %lld",
                                 (long long)r->min);
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be an integer of at most %lld",
                             (long long)r->max);
    }
    return 0;
}

int codec__check_number(const rules_t *r, double v, const char *path, znp_error_t *err)
{
    int has_min = (r->flags & ZNP_F_HAS_MIN) != 0, has_max = (r->flags & ZNP_F_HAS_MAX) != 0;

    if (!isfinite(v))
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be a finite number");
    if ((has_min && v < r->min_number) || (has_max && v > r->max_number)) {
        if (has_min && has_max)
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be a number between %g and %g",
                                 r->min_number, r->max_number);
        if (has_min)
            return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be a number of at least %g", r->min_number);
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must be a number of at most %g", r->max_number);
    }
    return 0;
}

int codec__check_item_count(const rules_t *r, size_t count, const char *path, znp_error_t *err)
{
    size_t max = r->max_items != 0 ? r->max_items : ZNP_CODEC_MAX_ITEMS;

    if (max > ZNP_CODEC_MAX_ITEMS)
        max = ZNP_CODEC_MAX_ITEMS;
    if (count > max)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must have at most %zu item%s", max, plural(max));
    if (count < r->min_items)
        return znp_error_set(err, ZNP_E_VALIDATION_FAILED, path, "must have at least %zu item%s", r->min_items,
                             plural(r->min_items));
    return 0;
}

void codec__path_join(char *out, size_t size, const char *base, const char *name)
{
    snprintf(out, size, "%s.%s", base, name);
}

void codec__path_index(char *out, size_t size, const char *base, size_t index)
{
    snprintf(out, size, "%s[%zu]", base, index);
}

int codec__no_memory(znp_error_t *err, const char *path)
{
    return znp_error_set(err, ZNP_E_INTERNAL, path, "request arena exhausted");
}
