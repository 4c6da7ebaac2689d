/* Template values: conversion from jansson, truth, and Go-compatible printing and JSON. */
#include "template/template.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/internal.h"

void buf_init(buf_t *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void buf_add(buf_t *b, const char *p, size_t n)
{
    if (b->over || b->oom)
        return;
    if (n > b->max - b->n) {
        b->over = true;
        return;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;

        while (cap < b->n + n + 1)
            cap *= 2;
        char *q = realloc(b->p, cap);

        if (q == NULL) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->p + b->n, p, n);
    b->n += n;
}

void buf_addc(buf_t *b, char c)
{
    buf_add(b, &c, 1);
}

void buf_addf(buf_t *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

value_t template__from_json(json_t *j)
{
    value_t v = {.kind = V_MISSING};

    if (j == NULL)
        return v;
    switch (json_typeof(j)) {
    case JSON_NULL:
        v.kind = V_NIL;
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        v.kind = V_BOOL;
        v.u.b = json_is_true(j);
        break;
    case JSON_INTEGER:
        v.kind = V_INT;
        v.u.i = (int64_t)json_integer_value(j);
        break;
    case JSON_REAL:
        v.kind = V_FLOAT;
        v.u.f = json_real_value(j);
        break;
    case JSON_STRING:
        v.kind = V_STRING;
        v.u.s.p = json_string_value(j);
        v.u.s.n = json_string_length(j);
        break;
    case JSON_ARRAY:
        v.kind = V_ARRAY;
        v.u.j = j;
        break;
    case JSON_OBJECT:
        v.kind = V_OBJECT;
        v.u.j = j;
        break;
    }
    return v;
}

/* Go's truth rules: false, 0, "", empty array or object, nil and missing are false. */
bool template__truth(const value_t *v)
{
    switch (v->kind) {
    case V_BOOL:
        return v->u.b;
    case V_INT:
        return v->u.i != 0;
    case V_FLOAT:
        return v->u.f != 0;
    case V_STRING:
        return v->u.s.n > 0;
    case V_ARRAY:
        return json_array_size(v->u.j) > 0;
    case V_OBJECT:
        return json_object_size(v->u.j) > 0;
    default:
        return false;
    }
}

/* the Go type name a reference-panel template would see in its messages */
const char *template__type_name(const value_t *v)
{
    switch (v->kind) {
    case V_BOOL:
        return "bool";
    case V_INT:
        return "int";
    case V_FLOAT:
        return "float64";
    case V_STRING:
        return "string";
    case V_ARRAY:
        return "[]interface {}";
    case V_OBJECT:
        return "map[string]interface {}";
    default:
        return "<nil>";
    }
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* keys of obj in byte order, as Go sorts map keys; the array is pool memory */
int template__sorted_keys(state_t *s, size_t off, json_t *obj, const char ***out, size_t *n)
{
    size_t count = json_object_size(obj);
    const char **keys = (const char **)template__alloc(s, off, (count ? count : 1) * sizeof(*keys));
    const char *key;
    json_t *val;
    size_t i = 0;

    if (keys == NULL)
        return s->rc;
    json_object_foreach(obj, key, val)
    {
        (void)val;
        if (i < count)
            keys[i++] = key;
    }
    qsort(keys, i, sizeof(*keys), cmp_keys);
    *out = keys;
    *n = i;
    return 0;
}

/* Shortest decimal digits that round-trip f (f finite, nonzero): digits and decimal exponent. */
static void shortest(double f, char *digits, int *nd, int *exp10)
{
    char tmp[40];

    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f)
            break;
    }
    /* tmp is "d.ddde[+-]xx" */
    int n = 0;
    const char *p = tmp;

    if (*p == '-')
        p++;
    for (; *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[n++] = *p;
    while (n > 1 && digits[n - 1] == '0')
        n--;
    digits[n] = '\0';
    *nd = n;
    *exp10 = (int)strtol(p + 1, NULL, 10);
}

static void put_exp_form(buf_t *b, const char *digits, int nd, int exp10, bool go_json)
{
    buf_addc(b, digits[0]);
    if (nd > 1) {
        buf_addc(b, '.');
        buf_add(b, digits + 1, (size_t)nd - 1);
    }
    if (go_json && exp10 < 0 && exp10 > -10)
        buf_addf(b, "e-%d", -exp10);
    else
        buf_addf(b, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
}

static void put_fixed_form(buf_t *b, const char *digits, int nd, int exp10)
{
    if (exp10 < 0) {
        buf_add(b, "0.", 2);
        for (int i = 0; i < -exp10 - 1; i++)
            buf_addc(b, '0');
        buf_add(b, digits, (size_t)nd);
        return;
    }
    for (int i = 0; i <= exp10; i++)
        buf_addc(b, i < nd ? digits[i] : '0');
    if (nd > exp10 + 1) {
        buf_addc(b, '.');
        buf_add(b, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
    }
}

/* Go's %v for float64 (fmt uses %g with the shortest digits, which switches to the exponent form
 * when the exponent is < -4 or >= 6); with go_json, encoding/json's form (exponent when
 * |f| < 1e-6 or >= 1e21, and "e-7" rather than "e-07"). */
static void format_float(buf_t *b, double f, bool go_json)
{
    char digits[40];
    int nd = 0, exp10 = 0;

    if (isnan(f)) {
        buf_add(b, "NaN", 3);
        return;
    }
    if (isinf(f)) {
        buf_add(b, f > 0 ? "+Inf" : "-Inf", 4);
        return;
    }
    if (f == 0) {
        buf_add(b, signbit(f) ? "-0" : "0", signbit(f) ? 2 : 1);
        return;
    }
    if (f < 0)
        buf_addc(b, '-');
    shortest(fabs(f), digits, &nd, &exp10);
    if (go_json ? (fabs(f) < 1e-6 || fabs(f) >= 1e21) : (exp10 < -4 || exp10 >= 6))
        put_exp_form(b, digits, nd, exp10, go_json);
    else
        put_fixed_form(b, digits, nd, exp10);
}

void template__format_float(buf_t *b, double f)
{
    format_float(b, f, false);
}

int template__print(state_t *s, size_t off, buf_t *b, const value_t *v, unsigned depth)
{
    if (depth > s->lim.max_depth)
        return template__fail(s, off, ZNP_TEMPLATE_ERR_LIMIT, "value nested deeper than %u levels", s->lim.max_depth);
    switch (v->kind) {
    case V_MISSING:
    case V_NIL:
        buf_add(b, "<nil>", 5);
        break;
    case V_BOOL:
        buf_add(b, v->u.b ? "true" : "false", v->u.b ? 4 : 5);
        break;
    case V_INT:
        buf_addf(b, "%lld", (long long)v->u.i);
        break;
    case V_FLOAT:
        format_float(b, v->u.f, false);
        break;
    case V_STRING:
        buf_add(b, v->u.s.p, v->u.s.n);
        break;
    case V_ARRAY:
        buf_addc(b, '[');
        for (size_t i = 0; i < json_array_size(v->u.j); i++) {
            value_t e = template__from_json(json_array_get(v->u.j, i));

            if (i > 0)
                buf_addc(b, ' ');
            if (template__print(s, off, b, &e, depth + 1) != 0)
                return s->rc;
        }
        buf_addc(b, ']');
        break;
    case V_OBJECT: {
        const char **keys = NULL;
        size_t n = 0;

        if (template__sorted_keys(s, off, v->u.j, &keys, &n) != 0)
            return s->rc;
        buf_add(b, "map[", 4);
        for (size_t i = 0; i < n; i++) {
            value_t e = template__from_json(json_object_get(v->u.j, keys[i]));

            if (i > 0)
                buf_addc(b, ' ');
            buf_add(b, keys[i], strlen(keys[i]));
            buf_addc(b, ':');
            if (template__print(s, off, b, &e, depth + 1) != 0)
                return s->rc;
        }
        buf_addc(b, ']');
        break;
    }
    }
    return 0;
}

static size_t utf8_len(const unsigned char *p, size_t n, uint32_t *r)
{
    if (p[0] < 0x80) {
        *r = p[0];
        return 1;
    }
    size_t len = (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3 : (p[0] & 0xf8) == 0xf0 ? 4 : 0;

    if (len == 0 || len > n)
        return 0;
    uint32_t c = p[0] & (0x7f >> len);

    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (p[i] & 0x3f);
    }
    if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) || (len == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *r = c;
    return len;
}

/* JSON string as Go's encoding/json writes it: <, >, & and U+2028/9 escaped, bad UTF-8 as U+FFFD */
static void put_json_string(buf_t *b, const char *str, size_t n)
{
    const unsigned char *p = (const unsigned char *)str;

    buf_addc(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];

        if (c >= 0x80) {
            uint32_t r = 0;
            size_t len = utf8_len(p + i, n - i, &r);

            if (len == 0) {
                buf_add(b, "\\ufffd", 6);
                i++;
            } else if (r == 0x2028 || r == 0x2029) {
                buf_addf(b, "\\u%04x", r);
                i += len;
            } else {
                buf_add(b, str + i, len);
                i += len;
            }
            continue;
        }
        switch (c) {
        case '"': buf_add(b, "\\\"", 2); break;
        case '\\': buf_add(b, "\\\\", 2); break;
        case '\n': buf_add(b, "\\n", 2); break;
        case '\r': buf_add(b, "\\r", 2); break;
        case '\t': buf_add(b, "\\t", 2); break;
        case '<':
        case '>':
        case '&': buf_addf(b, "\\u%04x", c); break;
        default:
            if (c < 0x20)
                buf_addf(b, "\\u%04x", c);
            else
                buf_addc(b, (char)c);
        }
        i++;
    }
    buf_addc(b, '"');
}

static void newline_indent(buf_t *b, unsigned indent)
{
    buf_addc(b, '\n');
    for (unsigned i = 0; i < indent; i++)
        buf_add(b, "  ", 2);
}

/* json.MarshalIndent(v, "", "  ") */
int template__to_json(state_t *s, size_t off, buf_t *b, const value_t *v, unsigned depth, unsigned indent)
{
    if (depth > s->lim.max_depth)
        return template__fail(s, off, ZNP_TEMPLATE_ERR_LIMIT, "value nested deeper than %u levels", s->lim.max_depth);
    switch (v->kind) {
    case V_MISSING:
    case V_NIL:
        buf_add(b, "null", 4);
        break;
    case V_BOOL:
        buf_add(b, v->u.b ? "true" : "false", v->u.b ? 4 : 5);
        break;
    case V_INT:
        buf_addf(b, "%lld", (long long)v->u.i);
        break;
    case V_FLOAT:
        if (!isfinite(v->u.f))
            return template__fail(s, off, ZNP_TEMPLATE_ERR_EXEC, "json: unsupported value: %s",
                                  isnan(v->u.f) ? "NaN" : v->u.f > 0 ? "+Inf" : "-Inf");
        format_float(b, v->u.f, true);
        break;
    case V_STRING:
        put_json_string(b, v->u.s.p, v->u.s.n);
        break;
    case V_ARRAY:
        if (json_array_size(v->u.j) == 0) {
            buf_add(b, "[]", 2);
            break;
        }
        buf_addc(b, '[');
        for (size_t i = 0; i < json_array_size(v->u.j); i++) {
            value_t e = template__from_json(json_array_get(v->u.j, i));

            if (i > 0)
                buf_addc(b, ',');
            newline_indent(b, indent + 1);
            if (template__to_json(s, off, b, &e, depth + 1, indent + 1) != 0)
                return s->rc;
        }
        newline_indent(b, indent);
        buf_addc(b, ']');
        break;
    case V_OBJECT: {
        const char **keys = NULL;
        size_t n = 0;

        if (json_object_size(v->u.j) == 0) {
            buf_add(b, "{}", 2);
            break;
        }
        if (template__sorted_keys(s, off, v->u.j, &keys, &n) != 0)
            return s->rc;
        buf_addc(b, '{');
        for (size_t i = 0; i < n; i++) {
            value_t e = template__from_json(json_object_get(v->u.j, keys[i]));

            if (i > 0)
                buf_addc(b, ',');
            newline_indent(b, indent + 1);
            put_json_string(b, keys[i], strlen(keys[i]));
            buf_add(b, ": ", 2);
            if (template__to_json(s, off, b, &e, depth + 1, indent + 1) != 0)
                return s->rc;
        }
        newline_indent(b, indent);
        buf_addc(b, '}');
        break;
    }
    }
    return 0;
}

/* strconv.Quote: printable UTF-8 kept, control characters and bad bytes escaped */
void template__quote(buf_t *b, const char *str, size_t n)
{
    const unsigned char *p = (const unsigned char *)str;

    buf_addc(b, '"');
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];

        if (c >= 0x80) {
            uint32_t r = 0;
            size_t len = utf8_len(p + i, n - i, &r);

            if (len == 0) {
                buf_addf(b, "\\x%02x", c);
                i++;
            } else if (r < 0xa0 || r == 0xad || r == 0x2028 || r == 0x2029 || r == 0xfeff) {
                buf_addf(b, r > 0xffff ? "\\U%08x" : "\\u%04x", r);
                i += len;
            } else {
                buf_add(b, str + i, len);
                i += len;
            }
            continue;
        }
        switch (c) {
        case '"': buf_add(b, "\\\"", 2); break;
        case '\\': buf_add(b, "\\\\", 2); break;
        case '\a': buf_add(b, "\\a", 2); break;
        case '\b': buf_add(b, "\\b", 2); break;
        case '\f': buf_add(b, "\\f", 2); break;
        case '\n': buf_add(b, "\\n", 2); break;
        case '\r': buf_add(b, "\\r", 2); break;
        case '\t': buf_add(b, "\\t", 2); break;
        case '\v': buf_add(b, "\\v", 2); break;
        default:
            if (c < 0x20 || c == 0x7f)
                buf_addf(b, "\\x%02x", c);
            else
                buf_addc(b, (char)c);
        }
        i++;
    }
    buf_addc(b, '"');
}
