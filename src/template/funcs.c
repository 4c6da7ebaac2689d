/* Template functions: Go's text/template built-ins and the reference panel's extra functions. */
#include "template/template.h"

#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <wctype.h>

#include "template/internal.h"

#define FAIL(...) template__fail(s, off, ZNP_TEMPLATE_ERR_EXEC, __VA_ARGS__)

static buf_t new_buf(const state_t *s)
{
    buf_t b;

    buf_init(&b, s->lim.max_memory_bytes - (s->mem_used < s->lim.max_memory_bytes ? s->mem_used : s->lim.max_memory_bytes));
    return b;
}

static int need_string(state_t *s, size_t off, const char *fn, const value_t *v)
{
    if (v->kind != V_STRING)
        return FAIL("%s: expected a string argument, got %s", fn, template__type_name(v));
    return 0;
}

/* fmt.Sprint: a space goes between two operands when neither is a string */
static int sprint(state_t *s, size_t off, buf_t *b, const value_t *args, size_t n, bool line)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && (line || (args[i - 1].kind != V_STRING && args[i].kind != V_STRING)))
            buf_addc(b, ' ');
        if (template__print(s, off, b, &args[i], 0) != 0)
            return s->rc;
    }
    if (line)
        buf_addc(b, '\n');
    return 0;
}

/* the argument text of html, js and urlquery: one string as is, otherwise fmt.Sprint */
static int arg_text(state_t *s, size_t off, const value_t *args, size_t n, value_t *out)
{
    buf_t b = new_buf(s);

    if (n == 1 && args[0].kind == V_STRING) {
        *out = args[0];
        return 0;
    }
    if (sprint(s, off, &b, args, n, false) != 0) {
        free(b.p);
        return s->rc;
    }
    return template__buf_finish(s, off, &b, out);
}

/* --- logic and comparison --- */

static int fn_not(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    (void)s, (void)off, (void)n;
    out->kind = V_BOOL;
    out->u.b = !template__truth(&args[0]);
    return 0;
}

static int fn_and_or(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    (void)s, (void)off, (void)args, (void)n, (void)out;
    return 0; /* evaluated lazily by the evaluator */
}

static bool is_number(const value_t *v)
{
    return v->kind == V_INT || v->kind == V_FLOAT;
}

static double as_double(const value_t *v)
{
    return v->kind == V_INT ? (double)v->u.i : v->u.f;
}

/* Compare ordered basic values: -1, 0 or 1, or 2 when the kinds cannot be compared. Unlike Go,
 * an integer and a float compare by value, because JSON does not preserve Go's number types. */
static int compare(const value_t *a, const value_t *b)
{
    if (a->kind == V_INT && b->kind == V_INT)
        return a->u.i < b->u.i ? -1 : a->u.i > b->u.i;
    if (is_number(a) && is_number(b)) {
        double x = as_double(a), y = as_double(b);

        return x < y ? -1 : x > y;
    }
    if (a->kind == V_STRING && b->kind == V_STRING) {
        size_t n = a->u.s.n < b->u.s.n ? a->u.s.n : b->u.s.n;
        int c = memcmp(a->u.s.p, b->u.s.p, n);

        if (c != 0)
            return c < 0 ? -1 : 1;
        return a->u.s.n < b->u.s.n ? -1 : a->u.s.n > b->u.s.n;
    }
    return 2;
}

static bool nilish(const value_t *v)
{
    return v->kind == V_MISSING || v->kind == V_NIL;
}

static int equal(state_t *s, size_t off, const value_t *a, const value_t *b, bool *out)
{
    if (nilish(a) || nilish(b)) {
        *out = nilish(a) && nilish(b);
        return 0;
    }
    if (a->kind == V_ARRAY || a->kind == V_OBJECT || b->kind == V_ARRAY || b->kind == V_OBJECT)
        return FAIL("non-comparable type %s", template__type_name(a->kind == V_ARRAY || a->kind == V_OBJECT ? a : b));
    if (a->kind == V_BOOL && b->kind == V_BOOL) {
        *out = a->u.b == b->u.b;
        return 0;
    }
    int c = compare(a, b);

    if (c == 2)
        return FAIL("incompatible types for comparison: %s and %s", template__type_name(a), template__type_name(b));
    *out = c == 0;
    return 0;
}

static int fn_eq(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    out->kind = V_BOOL;
    out->u.b = false;
    for (size_t i = 1; i < n; i++) {
        bool eq = false;

        if (equal(s, off, &args[0], &args[i], &eq) != 0)
            return s->rc;
        if (eq) {
            out->u.b = true;
            break;
        }
    }
    return 0;
}

static int fn_ne(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    bool eq = false;

    (void)n;
    if (equal(s, off, &args[0], &args[1], &eq) != 0)
        return s->rc;
    out->kind = V_BOOL;
    out->u.b = !eq;
    return 0;
}

static int order(state_t *s, size_t off, value_t *args, int *c)
{
    *c = compare(&args[0], &args[1]);
    if (*c != 2)
        return 0;
    if (args[0].kind == args[1].kind || nilish(&args[0]) || nilish(&args[1]) ||
        !(is_number(&args[0]) || args[0].kind == V_STRING) || !(is_number(&args[1]) || args[1].kind == V_STRING))
        return FAIL("invalid type for comparison: %s and %s", template__type_name(&args[0]),
                    template__type_name(&args[1]));
    return FAIL("incompatible types for comparison: %s and %s", template__type_name(&args[0]),
                template__type_name(&args[1]));
}

#define ORDER_FN(name, test)                                                                                           \
    static int name(state_t *s, size_t off, value_t *args, size_t n, value_t *out)                                     \
    {                                                                                                                  \
        int c = 0;                                                                                                     \
        (void)n;                                                                                                       \
        if (order(s, off, args, &c) != 0)                                                                              \
            return s->rc;                                                                                              \
        out->kind = V_BOOL;                                                                                            \
        out->u.b = (test);                                                                                             \
        return 0;                                                                                                      \
    }
ORDER_FN(fn_lt, c < 0)
ORDER_FN(fn_le, c <= 0)
ORDER_FN(fn_gt, c > 0)
ORDER_FN(fn_ge, c >= 0)

/* --- collections --- */

static int fn_len(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    (void)n;
    out->kind = V_INT;
    switch (args[0].kind) {
    case V_STRING:
        out->u.i = (int64_t)args[0].u.s.n;
        return 0;
    case V_ARRAY:
        out->u.i = (int64_t)json_array_size(args[0].u.j);
        return 0;
    case V_OBJECT:
        out->u.i = (int64_t)json_object_size(args[0].u.j);
        return 0;
    case V_MISSING:
    case V_NIL:
        return FAIL("len of nil pointer");
    default:
        return FAIL("len of type %s", template__type_name(&args[0]));
    }
}

static int fn_index(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    value_t item = args[0];

    for (size_t i = 1; i < n; i++) {
        const value_t *k = &args[i];

        switch (item.kind) {
        case V_ARRAY:
        case V_STRING: {
            size_t size = item.kind == V_ARRAY ? json_array_size(item.u.j) : item.u.s.n;

            if (k->kind != V_INT)
                return FAIL("cannot index %s with type %s", item.kind == V_ARRAY ? "slice" : "string",
                            template__type_name(k));
            if (k->u.i < 0 || (uint64_t)k->u.i >= size)
                return FAIL("index out of range: %lld", (long long)k->u.i);
            if (item.kind == V_ARRAY) {
                item = template__from_json(json_array_get(item.u.j, (size_t)k->u.i));
            } else {
                item.kind = V_INT;
                item.u.i = (unsigned char)item.u.s.p[k->u.i];
            }
            break;
        }
        case V_OBJECT: {
            if (k->kind != V_STRING)
                return FAIL("value has type %s; should be string", template__type_name(k));

            json_t *j = NULL;
            char *key = NULL;

            if (memchr(k->u.s.p, '\0', k->u.s.n) == NULL) {
                key = template__alloc(s, off, k->u.s.n + 1);
                if (key == NULL)
                    return s->rc;
                memcpy(key, k->u.s.p, k->u.s.n);
                key[k->u.s.n] = '\0';
                j = json_object_get(item.u.j, key);
            }
            if (j == NULL && s->strict)
                return template__fail(s, off, ZNP_TEMPLATE_ERR_MISSING_KEY, "map has no entry for key \"%.*s\"",
                                      (int)(k->u.s.n > 64 ? 64 : k->u.s.n), k->u.s.p);
            item = template__from_json(j);
            break;
        }
        case V_MISSING:
        case V_NIL:
            return FAIL("index of untyped nil");
        default:
            return FAIL("can't index item of type %s", template__type_name(&item));
        }
    }
    *out = item;
    return 0;
}

/* slice x i j: x[i:j] of a string (bytes) or an array, as Go's slice with one or two indexes */
static int fn_slice(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    size_t size;
    int64_t bounds[2];

    if (args[0].kind == V_STRING)
        size = args[0].u.s.n;
    else if (args[0].kind == V_ARRAY)
        size = json_array_size(args[0].u.j);
    else if (nilish(&args[0]))
        return FAIL("slice of untyped nil");
    else
        return FAIL("can't slice item of type %s", template__type_name(&args[0]));
    bounds[0] = 0;
    bounds[1] = (int64_t)size;
    for (size_t i = 1; i < n; i++) {
        if (args[i].kind != V_INT)
            return FAIL("cannot index slice/array with type %s", template__type_name(&args[i]));
        if (args[i].u.i < 0 || (uint64_t)args[i].u.i > size)
            return FAIL("index out of range: %lld", (long long)args[i].u.i);
        bounds[i - 1] = args[i].u.i;
    }
    if (bounds[0] > bounds[1])
        return FAIL("invalid slice index: %lld > %lld", (long long)bounds[0], (long long)bounds[1]);

    if (args[0].kind == V_STRING) {
        out->kind = V_STRING;
        out->u.s.p = args[0].u.s.p + bounds[0];
        out->u.s.n = (size_t)(bounds[1] - bounds[0]);
        return 0;
    }

    json_t *arr = json_array();

    if (template__keep_json(s, off, arr) != 0)
        return s->rc;
    for (int64_t i = bounds[0]; i < bounds[1]; i++)
        if (json_array_append(arr, json_array_get(args[0].u.j, (size_t)i)) != 0)
            return template__fail(s, off, ZNP_TEMPLATE_ERR_NO_MEMORY, "out of memory while rendering");
    s->mem_used += (size_t)(bounds[1] - bounds[0]) * sizeof(json_t *);
    out->kind = V_ARRAY;
    out->u.j = arr;
    return 0;
}

/* --- printing --- */

static int fn_print(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    buf_t b = new_buf(s);

    if (sprint(s, off, &b, args, n, false) != 0) {
        free(b.p);
        return s->rc;
    }
    return template__buf_finish(s, off, &b, out);
}

static int fn_println(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    buf_t b = new_buf(s);

    if (sprint(s, off, &b, args, n, true) != 0) {
        free(b.p);
        return s->rc;
    }
    return template__buf_finish(s, off, &b, out);
}

int template__printf_check(const char *fmt, size_t n, size_t *bad_at)
{
    for (size_t i = 0; i < n; i++) {
        if (fmt[i] != '%')
            continue;
        if (i + 1 >= n || strchr("sdvq%", fmt[i + 1]) == NULL || fmt[i + 1] == '\0') {
            *bad_at = i + 1;
            return -1;
        }
        i++;
    }
    return 0;
}

/* the "%!verb(type=value)" text Go's fmt writes for a verb that does not fit its argument */
static int bad_verb(state_t *s, size_t off, buf_t *b, char verb, const value_t *v)
{
    buf_addf(b, "%%!%c(", verb);
    if (nilish(v)) {
        buf_add(b, "<nil>", 5);
    } else {
        buf_add(b, template__type_name(v), strlen(template__type_name(v)));
        buf_addc(b, '=');
        if (template__print(s, off, b, v, 0) != 0)
            return s->rc;
    }
    buf_addc(b, ')');
    return 0;
}

static int printf_verb(state_t *s, size_t off, buf_t *b, char verb, const value_t *v)
{
    switch (verb) {
    case 'v':
        return template__print(s, off, b, v, 0);
    case 's':
        if (v->kind == V_STRING || v->kind == V_ARRAY || v->kind == V_OBJECT)
            return template__print(s, off, b, v, 0);
        return bad_verb(s, off, b, verb, v);
    case 'd':
        if (v->kind == V_INT)
            return template__print(s, off, b, v, 0);
        return bad_verb(s, off, b, verb, v);
    case 'q':
        if (v->kind == V_STRING) {
            template__quote(b, v->u.s.p, v->u.s.n);
            return 0;
        }
        return bad_verb(s, off, b, verb, v);
    default:
        return FAIL("unsupported printf verb \"%%%c\"; supported are %%s %%d %%v %%q %%%%", verb);
    }
}

static int fn_printf(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    buf_t b = new_buf(s);
    size_t next = 1;

    if (args[0].kind != V_STRING)
        return FAIL("printf: the format must be a string, got %s", template__type_name(&args[0]));

    const char *f = args[0].u.s.p;
    size_t fn = args[0].u.s.n;

    for (size_t i = 0; i < fn; i++) {
        if (f[i] != '%') {
            buf_addc(&b, f[i]);
            continue;
        }
        if (i + 1 >= fn) {
            buf_add(&b, "%!(NOVERB)", 10);
            break;
        }
        char verb = f[++i];

        if (verb == '%') {
            buf_addc(&b, '%');
        } else if (next >= n) {
            if (strchr("sdvq", verb) == NULL) {
                free(b.p);
                return FAIL("unsupported printf verb \"%%%c\"; supported are %%s %%d %%v %%q %%%%", verb);
            }
            buf_addf(&b, "%%!%c(MISSING)", verb);
        } else if (printf_verb(s, off, &b, verb, &args[next++]) != 0) {
            free(b.p);
            return s->rc;
        }
    }
    if (next < n) {
        buf_add(&b, "%!(EXTRA ", 9);
        for (size_t i = next; i < n; i++) {
            if (i > next)
                buf_add(&b, ", ", 2);
            buf_add(&b, template__type_name(&args[i]), strlen(template__type_name(&args[i])));
            if (!nilish(&args[i])) {
                buf_addc(&b, '=');
                if (template__print(s, off, &b, &args[i], 0) != 0) {
                    free(b.p);
                    return s->rc;
                }
            }
        }
        buf_addc(&b, ')');
    }
    return template__buf_finish(s, off, &b, out);
}

/* --- escaping --- */

static int fn_html(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    value_t t;
    buf_t b = new_buf(s);

    if (arg_text(s, off, args, n, &t) != 0)
        return s->rc;
    for (size_t i = 0; i < t.u.s.n; i++) {
        switch (t.u.s.p[i]) {
        case '"': buf_add(&b, "&#34;", 5); break;
        case '\'': buf_add(&b, "&#39;", 5); break;
        case '&': buf_add(&b, "&amp;", 5); break;
        case '<': buf_add(&b, "&lt;", 4); break;
        case '>': buf_add(&b, "&gt;", 4); break;
        case '\0': buf_add(&b, "\xef\xbf\xbd", 3); break;
        default: buf_addc(&b, t.u.s.p[i]);
        }
    }
    return template__buf_finish(s, off, &b, out);
}

static int fn_js(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    value_t t;
    buf_t b = new_buf(s);

    if (arg_text(s, off, args, n, &t) != 0)
        return s->rc;
    for (size_t i = 0; i < t.u.s.n; i++) {
        unsigned char c = (unsigned char)t.u.s.p[i];

        switch (c) {
        case '\\': buf_add(&b, "\\\\", 2); break;
        case '\'': buf_add(&b, "\\'", 2); break;
        case '"': buf_add(&b, "\\\"", 2); break;
        case '<': buf_add(&b, "\\u003C", 6); break;
        case '>': buf_add(&b, "\\u003E", 6); break;
        case '&': buf_add(&b, "\\u0026", 6); break;
        case '=': buf_add(&b, "\\u003D", 6); break;
        default:
            if (c < 0x20)
                buf_addf(&b, "\\u00%02X", c);
            else
                buf_addc(&b, (char)c);
        }
    }
    return template__buf_finish(s, off, &b, out);
}

static int fn_urlquery(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    static const char hex[] = "0123456789ABCDEF";
    value_t t;
    buf_t b = new_buf(s);

    if (arg_text(s, off, args, n, &t) != 0)
        return s->rc;
    for (size_t i = 0; i < t.u.s.n; i++) {
        unsigned char c = (unsigned char)t.u.s.p[i];

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~') {
            buf_addc(&b, (char)c);
        } else if (c == ' ') {
            buf_addc(&b, '+');
        } else {
            char esc[3] = {'%', hex[c >> 4], hex[c & 15]};

            buf_add(&b, esc, 3);
        }
    }
    return template__buf_finish(s, off, &b, out);
}

/* --- strings --- */

static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;
static locale_t utf8_locale = (locale_t)0;

static void load_utf8_locale(void)
{
    utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static size_t decode(const unsigned char *p, size_t n, uint32_t *r)
{
    if (p[0] < 0x80) {
        *r = p[0];
        return 1;
    }
    size_t len = (p[0] & 0xe0) == 0xc0 ? 2 : (p[0] & 0xf0) == 0xe0 ? 3 : (p[0] & 0xf8) == 0xf0 ? 4 : 0;

    if (len == 0 || len > n) {
        *r = 0xfffd;
        return 1;
    }
    uint32_t c = p[0] & (0x7f >> len);

    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            *r = 0xfffd;
            return 1;
        }
        c = c << 6 | (p[i] & 0x3f);
    }
    *r = c;
    return len;
}

static void encode(buf_t *b, uint32_t r)
{
    char tmp[4];
    size_t n = 0;

    if (r < 0x80) {
        tmp[n++] = (char)r;
    } else if (r < 0x800) {
        tmp[n++] = (char)(0xc0 | (r >> 6));
        tmp[n++] = (char)(0x80 | (r & 0x3f));
    } else if (r < 0x10000) {
        tmp[n++] = (char)(0xe0 | (r >> 12));
        tmp[n++] = (char)(0x80 | ((r >> 6) & 0x3f));
        tmp[n++] = (char)(0x80 | (r & 0x3f));
    } else {
        tmp[n++] = (char)(0xf0 | (r >> 18));
        tmp[n++] = (char)(0x80 | ((r >> 12) & 0x3f));
        tmp[n++] = (char)(0x80 | ((r >> 6) & 0x3f));
        tmp[n++] = (char)(0x80 | (r & 0x3f));
    }
    buf_add(b, tmp, n);
}

typedef enum { CASE_UPPER, CASE_LOWER, CASE_TITLE } case_mode_t;

static uint32_t map_case(uint32_t r, bool upper)
{
    if (utf8_locale == (locale_t)0) {
        if (upper)
            return r >= 'a' && r <= 'z' ? r - 32 : r;
        return r >= 'A' && r <= 'Z' ? r + 32 : r;
    }
    return (uint32_t)(upper ? towupper_l((wint_t)r, utf8_locale) : towlower_l((wint_t)r, utf8_locale));
}

/* NOTE: title uppercases the first letter of each word and lowercases the rest, as
 * golang.org/x/text/cases.Title does for plain text; its word-break rules are approximated by
 * letters, digits and apostrophes forming words. */
static bool is_word_char(uint32_t r)
{
    if (r < 0x80)
        return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') || r == '\'';
    return utf8_locale == (locale_t)0 || iswalnum_l((wint_t)r, utf8_locale);
}

static int change_case(state_t *s, size_t off, const value_t *v, case_mode_t mode, value_t *out)
{
    const unsigned char *p = (const unsigned char *)v->u.s.p;
    buf_t b = new_buf(s);
    bool in_word = false;

    pthread_once(&utf8_once, load_utf8_locale);
    for (size_t i = 0; i < v->u.s.n;) {
        uint32_t r = 0;

        i += decode(p + i, v->u.s.n - i, &r);
        if (mode == CASE_TITLE) {
            encode(&b, map_case(r, !in_word));
            in_word = is_word_char(r);
        } else {
            encode(&b, map_case(r, mode == CASE_UPPER));
        }
    }
    return template__buf_finish(s, off, &b, out);
}

static int fn_upper(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    (void)n;
    if (need_string(s, off, "upper", &args[0]) != 0)
        return s->rc;
    return change_case(s, off, &args[0], CASE_UPPER, out);
}

static int fn_lower(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    (void)n;
    if (need_string(s, off, "lower", &args[0]) != 0)
        return s->rc;
    return change_case(s, off, &args[0], CASE_LOWER, out);
}

static int fn_title(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    (void)n;
    if (need_string(s, off, "title", &args[0]) != 0)
        return s->rc;
    return change_case(s, off, &args[0], CASE_TITLE, out);
}

/* unicode.IsSpace */
static bool is_unicode_space(uint32_t r)
{
    switch (r) {
    case '\t': case '\n': case '\v': case '\f': case '\r': case ' ': case 0x85: case 0xa0: case 0x1680:
    case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000:
        return true;
    default:
        return r >= 0x2000 && r <= 0x200a;
    }
}

static int fn_trim(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    const unsigned char *p = (const unsigned char *)args[0].u.s.p;
    size_t start = 0, end;
    uint32_t r = 0;

    (void)n;
    if (need_string(s, off, "trim", &args[0]) != 0)
        return s->rc;
    end = args[0].u.s.n;
    while (start < end) {
        size_t len = decode(p + start, end - start, &r);

        if (!is_unicode_space(r))
            break;
        start += len;
    }
    while (end > start) {
        size_t k = end - 1;

        while (k > start && (p[k] & 0xc0) == 0x80)
            k--;
        decode(p + k, end - k, &r);
        if (!is_unicode_space(r))
            break;
        end = k;
    }
    out->kind = V_STRING;
    out->u.s.p = args[0].u.s.p + start;
    out->u.s.n = end - start;
    return 0;
}

static int fn_trim_prefix(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    (void)n;
    if (need_string(s, off, "trimPrefix", &args[0]) != 0 || need_string(s, off, "trimPrefix", &args[1]) != 0)
        return s->rc;
    *out = args[0];
    if (args[1].u.s.n <= args[0].u.s.n && memcmp(args[0].u.s.p, args[1].u.s.p, args[1].u.s.n) == 0) {
        out->u.s.p += args[1].u.s.n;
        out->u.s.n -= args[1].u.s.n;
    }
    return 0;
}

static int fn_trim_suffix(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    (void)n;
    if (need_string(s, off, "trimSuffix", &args[0]) != 0 || need_string(s, off, "trimSuffix", &args[1]) != 0)
        return s->rc;
    *out = args[0];
    if (args[1].u.s.n <= args[0].u.s.n &&
        memcmp(args[0].u.s.p + args[0].u.s.n - args[1].u.s.n, args[1].u.s.p, args[1].u.s.n) == 0)
        out->u.s.n -= args[1].u.s.n;
    return 0;
}

static const char *find(const char *hay, size_t n, const char *needle, size_t m)
{
    return m == 0 ? hay : memmem(hay, n, needle, m);
}

/* NOTE: the argument order of replace, split, join, trimPrefix and trimSuffix follows Go's strings
 * package (the subject string first, join's array first), which is how the reference panel is
 * assumed to register them; its function map was not available to confirm. */
static int fn_replace(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    buf_t b = new_buf(s);

    (void)n;
    for (int i = 0; i < 3; i++)
        if (need_string(s, off, "replace", &args[i]) != 0)
            return s->rc;

    const char *p = args[0].u.s.p, *end = p + args[0].u.s.n;
    size_t m = args[1].u.s.n;

    if (m == 0) {
        /* strings.ReplaceAll with an empty old string inserts new around every character */
        buf_add(&b, args[2].u.s.p, args[2].u.s.n);
        while (p < end) {
            uint32_t r = 0;
            size_t len = decode((const unsigned char *)p, (size_t)(end - p), &r);

            buf_add(&b, p, len);
            buf_add(&b, args[2].u.s.p, args[2].u.s.n);
            p += len;
        }
        return template__buf_finish(s, off, &b, out);
    }
    for (;;) {
        const char *hit = find(p, (size_t)(end - p), args[1].u.s.p, m);

        if (hit == NULL)
            break;
        buf_add(&b, p, (size_t)(hit - p));
        buf_add(&b, args[2].u.s.p, args[2].u.s.n);
        p = hit + m;
    }
    buf_add(&b, p, (size_t)(end - p));
    return template__buf_finish(s, off, &b, out);
}

static int fn_split(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    json_t *arr = json_array();
    const char *p = args[0].u.s.p, *end;
    size_t m = args[1].u.s.n;

    (void)n;
    if (template__keep_json(s, off, arr) != 0)
        return s->rc;
    if (need_string(s, off, "split", &args[0]) != 0 || need_string(s, off, "split", &args[1]) != 0)
        return s->rc;
    end = p + args[0].u.s.n;
    for (;;) {
        const char *hit;
        size_t len;

        if (m == 0) {
            uint32_t r = 0;

            if (p >= end)
                break;
            len = decode((const unsigned char *)p, (size_t)(end - p), &r);
            hit = p + len;
        } else {
            hit = find(p, (size_t)(end - p), args[1].u.s.p, m);
            len = hit != NULL ? (size_t)(hit - p) : (size_t)(end - p);
        }
        if (template__step(s, off) != 0)
            return s->rc;
        if (json_array_append_new(arr, json_stringn_nocheck(p, len)) != 0)
            return template__fail(s, off, ZNP_TEMPLATE_ERR_NO_MEMORY, "out of memory while rendering");
        s->mem_used += len + 64;
        if (s->mem_used > s->lim.max_memory_bytes)
            return template__fail(s, off, ZNP_TEMPLATE_ERR_LIMIT,
                                  "template values exceeded the memory limit of %zu bytes", s->lim.max_memory_bytes);
        if (m == 0) {
            p = hit;
        } else if (hit == NULL) {
            break;
        } else {
            p = hit + m;
        }
    }
    out->kind = V_ARRAY;
    out->u.j = arr;
    return 0;
}

static int fn_join(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    buf_t b = new_buf(s);

    (void)n;
    if (args[0].kind != V_ARRAY)
        return FAIL("join: expected an array as the first argument, got %s", template__type_name(&args[0]));
    if (need_string(s, off, "join", &args[1]) != 0)
        return s->rc;
    for (size_t i = 0; i < json_array_size(args[0].u.j); i++) {
        value_t e = template__from_json(json_array_get(args[0].u.j, i));

        if (i > 0)
            buf_add(&b, args[1].u.s.p, args[1].u.s.n);
        if (template__print(s, off, &b, &e, 0) != 0) {
            free(b.p);
            return s->rc;
        }
    }
    return template__buf_finish(s, off, &b, out);
}

/* NOTE: Go's `now` returns a time.Time, which prints as "2006-01-02 15:04:05.999 +0000 UTC m=+0.1";
 * this returns the RFC 3339 UTC text instead, so output that prints `now` directly differs. */
static int fn_now(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    struct tm tm;
    char *p = template__alloc(s, off, 32);

    (void)args, (void)n;
    if (p == NULL)
        return s->rc;
    gmtime_r(&s->lim.now, &tm);
    out->kind = V_STRING;
    out->u.s.p = p;
    out->u.s.n = strftime(p, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return 0;
}

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int fn_b64enc(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    const unsigned char *p = (const unsigned char *)args[0].u.s.p;
    buf_t b = new_buf(s);

    (void)n;
    if (need_string(s, off, "b64enc", &args[0]) != 0)
        return s->rc;
    for (size_t i = 0; i < args[0].u.s.n; i += 3) {
        size_t left = args[0].u.s.n - i;
        uint32_t v = (uint32_t)p[i] << 16 | (left > 1 ? (uint32_t)p[i + 1] << 8 : 0) | (left > 2 ? p[i + 2] : 0);
        char q[4] = {b64_chars[v >> 18], b64_chars[(v >> 12) & 63], left > 1 ? b64_chars[(v >> 6) & 63] : '=',
                     left > 2 ? b64_chars[v & 63] : '='};

        buf_add(&b, q, 4);
    }
    return template__buf_finish(s, off, &b, out);
}

static int fn_b64dec(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    buf_t b = new_buf(s);
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    size_t pos = 0;

    (void)n;
    if (need_string(s, off, "b64dec", &args[0]) != 0)
        return s->rc;
    for (size_t i = 0; i < args[0].u.s.n; i++) {
        char c = args[0].u.s.p[i];
        const char *k = c != '\0' ? strchr(b64_chars, c) : NULL;

        if (c == '\r' || c == '\n')
            continue;
        if (c == '=' && pos % 4 >= 2) {
            pad++;
            pos++;
            continue;
        }
        if (k == NULL || pad > 0) {
            free(b.p);
            return FAIL("b64dec: illegal base64 data at input byte %zu", i);
        }
        acc = acc << 6 | (uint32_t)(k - b64_chars);
        bits += 6;
        pos++;
        if (bits >= 8) {
            bits -= 8;
            buf_addc(&b, (char)((acc >> bits) & 0xff));
        }
    }
    if (pos % 4 != 0) {
        free(b.p);
        return FAIL("b64dec: illegal base64 data at input byte %zu", args[0].u.s.n);
    }
    return template__buf_finish(s, off, &b, out);
}

static int fn_to_json(state_t *s, size_t off, value_t *args, size_t n, value_t *out)
{
    buf_t b = new_buf(s);

    (void)n;
    if (template__to_json(s, off, &b, &args[0], 0, 0) != 0) {
        free(b.p);
        return s->rc;
    }
    return template__buf_finish(s, off, &b, out);
}

/* FUNC_AND and FUNC_OR must stay the first two entries */
const func_def_t template__funcs[] = {
    {"and", 1, -1, fn_and_or},
    {"or", 1, -1, fn_and_or},
    {"not", 1, 1, fn_not},
    {"eq", 2, -1, fn_eq},
    {"ne", 2, 2, fn_ne},
    {"lt", 2, 2, fn_lt},
    {"le", 2, 2, fn_le},
    {"gt", 2, 2, fn_gt},
    {"ge", 2, 2, fn_ge},
    {"len", 1, 1, fn_len},
    {"index", 1, -1, fn_index},
    {"slice", 1, 3, fn_slice},
    {"print", 0, -1, fn_print},
    {"println", 0, -1, fn_println},
    {"printf", 1, -1, fn_printf},
    {"html", 0, -1, fn_html},
    {"js", 0, -1, fn_js},
    {"urlquery", 0, -1, fn_urlquery},
    {"upper", 1, 1, fn_upper},
    {"lower", 1, 1, fn_lower},
    {"title", 1, 1, fn_title},
    {"trim", 1, 1, fn_trim},
    {"trimPrefix", 2, 2, fn_trim_prefix},
    {"trimSuffix", 2, 2, fn_trim_suffix},
    {"replace", 3, 3, fn_replace},
    {"split", 2, 2, fn_split},
    {"join", 2, 2, fn_join},
    {"now", 0, 0, fn_now},
    {"b64enc", 1, 1, fn_b64enc},
    {"b64dec", 1, 1, fn_b64dec},
    {"toJSON", 1, 1, fn_to_json},
    {NULL, 0, 0, NULL},
};

int template__find_func(const char *name, size_t len)
{
    for (int i = 0; template__funcs[i].name != NULL; i++)
        if (strlen(template__funcs[i].name) == len && memcmp(template__funcs[i].name, name, len) == 0)
            return i;
    return -1;
}
