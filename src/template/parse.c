/* Template compiler: lexes actions and builds the node tree, checking names and arity. */
#include "template/template.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.gen.h"
#include "template/internal.h"

typedef enum {
    T_EOF,
    T_ERROR,
    T_RIGHT,
    T_FIELD,
    T_VAR,
    T_IDENT,
    T_STRING,
    T_RAW,
    T_CHAR,
    T_NUMBER,
    T_DECLARE,
    T_ASSIGN,
    T_PIPE,
    T_LPAREN,
    T_RPAREN,
    T_COMMA,
    T_DOT,
} tok_kind_t;

typedef struct {
    tok_kind_t kind;
    size_t off, len;
    bool trim; /* T_RIGHT written as " -}}" */
} tok_t;

typedef enum { END_EOF, END_END, END_ELSE } list_end_t;

typedef struct {
    znp_template_t *t;
    const char *src;
    size_t len, pos;
    znp_template_error_t *err;
    int rc;
    const char **vars; /* variables in scope, innermost last */
    size_t nvars, cap_vars;
    unsigned depth;
    unsigned range_depth;
    bool trim_next;
} parser_t;

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_ident_char(char c)
{
    unsigned char u = (unsigned char)c;

    return (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '_' || u >= 0x80;
}

void template__position(const char *src, size_t len, size_t off, int *line, int *column)
{
    int l = 1, c = 1;

    if (off > len)
        off = len;
    for (size_t i = 0; i < off; i++) {
        if (src[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)src[i] & 0xc0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *column = c;
}

static int pfail(parser_t *p, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int pfail(parser_t *p, size_t off, const char *fmt, ...)
{
    va_list ap;

    if (p->rc != 0)
        return p->rc;
    p->rc = ZNP_E_VALIDATION_FAILED;
    p->err->kind = ZNP_TEMPLATE_ERR_SYNTAX;
    template__position(p->src, p->len, off, &p->err->line, &p->err->column);
    va_start(ap, fmt);
    vsnprintf(p->err->message, sizeof(p->err->message), fmt, ap);
    va_end(ap);
    return p->rc;
}

static int pnomem(parser_t *p)
{
    if (p->rc != 0)
        return p->rc;
    p->rc = ZNP_E_INTERNAL;
    p->err->kind = ZNP_TEMPLATE_ERR_NO_MEMORY;
    snprintf(p->err->message, sizeof(p->err->message), "out of memory while compiling the template");
    return p->rc;
}

/* zeroed arena memory owned by the template; NULL (error set) when out of memory */
static void *palloc(parser_t *p, size_t n)
{
    block_t *b = p->t->blocks;
    size_t need = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);

    if (b == NULL || b->cap - b->used < need) {
        size_t cap = need > 8192 ? need : 8192;

        b = calloc(1, sizeof(*b) + cap);
        if (b == NULL) {
            pnomem(p);
            return NULL;
        }
        b->cap = cap;
        b->next = p->t->blocks;
        p->t->blocks = b;
    }
    void *r = (char *)b->data + b->used;

    b->used += need;
    memset(r, 0, n);
    return r;
}

static char *pstrdup(parser_t *p, const char *s, size_t n)
{
    char *r = palloc(p, n + 1);

    if (r != NULL)
        memcpy(r, s, n);
    return r;
}

/* grow an arena array holding n elements so that one more fits */
static void *pgrow(parser_t *p, void *arr, size_t n, size_t elem)
{
    if (n != 0 && (n & (n - 1)) != 0)
        return arr;
    size_t cap = n == 0 ? 4 : n * 2;
    void *r = palloc(p, cap * elem);

    if (r != NULL && n != 0)
        memcpy(r, arr, n * elem);
    return r;
}

/* --- lexer --- */

static tok_kind_t lex_error(parser_t *p, tok_t *t, size_t off, const char *message)
{
    pfail(p, off, "%s", message);
    t->kind = T_ERROR;
    return T_ERROR;
}

static tok_kind_t lex_quoted(parser_t *p, tok_t *t, char quote, tok_kind_t kind)
{
    size_t i = p->pos + 1;

    while (i < p->len && p->src[i] != quote) {
        if (quote != '`' && p->src[i] == '\\' && i + 1 < p->len)
            i++;
        else if (quote != '`' && p->src[i] == '\n')
            break;
        i++;
    }
    if (i >= p->len || p->src[i] != quote)
        return lex_error(p, t, p->pos, quote == '`' ? "unterminated raw quoted string" : "unterminated quoted string");
    t->kind = kind;
    t->len = i + 1 - p->pos;
    p->pos = i + 1;
    return kind;
}

static tok_kind_t lex(parser_t *p, tok_t *t)
{
    memset(t, 0, sizeof(*t));
    while (p->pos < p->len && is_space(p->src[p->pos])) {
        if (p->pos + 3 < p->len && p->src[p->pos + 1] == '-' && p->src[p->pos + 2] == '}' && p->src[p->pos + 3] == '}') {
            t->kind = T_RIGHT;
            t->off = p->pos;
            t->len = 4;
            t->trim = true;
            p->pos += 4;
            return T_RIGHT;
        }
        p->pos++;
    }
    t->off = p->pos;
    if (p->pos >= p->len) {
        t->kind = T_EOF;
        return T_EOF;
    }

    char c = p->src[p->pos];
    char next = p->pos + 1 < p->len ? p->src[p->pos + 1] : '\0';
    size_t i;

    switch (c) {
    case '}':
        if (next != '}')
            return lex_error(p, t, p->pos, "unexpected \"}\" in action");
        t->kind = T_RIGHT;
        t->len = 2;
        p->pos += 2;
        return T_RIGHT;
    case '|':
        t->kind = T_PIPE;
        break;
    case '(':
        t->kind = T_LPAREN;
        break;
    case ')':
        t->kind = T_RPAREN;
        break;
    case ',':
        t->kind = T_COMMA;
        break;
    case '=':
        t->kind = T_ASSIGN;
        break;
    case ':':
        if (next != '=')
            return lex_error(p, t, p->pos, "expected :=");
        t->kind = T_DECLARE;
        t->len = 2;
        p->pos += 2;
        return T_DECLARE;
    case '"':
        return lex_quoted(p, t, '"', T_STRING);
    case '`':
        return lex_quoted(p, t, '`', T_RAW);
    case '\'':
        return lex_quoted(p, t, '\'', T_CHAR);
    case '$':
        for (i = p->pos + 1; i < p->len && is_ident_char(p->src[i]); i++)
            ;
        t->kind = T_VAR;
        t->len = i - p->pos;
        p->pos = i;
        return T_VAR;
    case '.':
        if (!(next >= '0' && next <= '9')) {
            for (i = p->pos + 1; i < p->len && is_ident_char(p->src[i]); i++)
                ;
            t->kind = i == p->pos + 1 ? T_DOT : T_FIELD;
            t->len = i - p->pos;
            p->pos = i;
            return t->kind;
        }
        /* ".5" is a number */
        /* fall through */
    default:
        if (c == '+' || c == '-' || c == '.' || (c >= '0' && c <= '9')) {
            i = p->pos + 1;
            while (i < p->len) {
                char d = p->src[i];
                char prev = p->src[i - 1];

                if (is_ident_char(d) || d == '.' ||
                    ((d == '+' || d == '-') && (prev == 'e' || prev == 'E' || prev == 'p' || prev == 'P')))
                    i++;
                else
                    break;
            }
            t->kind = T_NUMBER;
            t->len = i - p->pos;
            p->pos = i;
            return T_NUMBER;
        }
        if (is_ident_char(c)) {
            for (i = p->pos; i < p->len && is_ident_char(p->src[i]); i++)
                ;
            t->kind = T_IDENT;
            t->len = i - p->pos;
            p->pos = i;
            return T_IDENT;
        }
        {
            char msg[64];

            if ((unsigned char)c < 0x20 || c == 0x7f)
                snprintf(msg, sizeof(msg), "unexpected character \\x%02x in action", (unsigned char)c);
            else
                snprintf(msg, sizeof(msg), "unexpected character \"%c\" in action", c);
            return lex_error(p, t, p->pos, msg);
        }
    }
    t->len = 1;
    p->pos++;
    return t->kind;
}

static bool tok_is(const parser_t *p, const tok_t *t, const char *word)
{
    size_t n = strlen(word);

    return t->kind == T_IDENT && t->len == n && memcmp(p->src + t->off, word, n) == 0;
}

static const char *tok_desc(const parser_t *p, const tok_t *t, char *buf, size_t size)
{
    switch (t->kind) {
    case T_EOF:
        return "end of input";
    case T_RIGHT:
        return "\"}}\"";
    default:
        snprintf(buf, size, "\"%.*s\"", (int)(t->len > 40 ? 40 : t->len), p->src + t->off);
        return buf;
    }
}

/* --- literals --- */

static void put_utf8(char *out, size_t *n, uint32_t r)
{
    if (r < 0x80) {
        out[(*n)++] = (char)r;
    } else if (r < 0x800) {
        out[(*n)++] = (char)(0xc0 | (r >> 6));
        out[(*n)++] = (char)(0x80 | (r & 0x3f));
    } else if (r < 0x10000) {
        out[(*n)++] = (char)(0xe0 | (r >> 12));
        out[(*n)++] = (char)(0x80 | ((r >> 6) & 0x3f));
        out[(*n)++] = (char)(0x80 | (r & 0x3f));
    } else {
        out[(*n)++] = (char)(0xf0 | (r >> 18));
        out[(*n)++] = (char)(0x80 | ((r >> 12) & 0x3f));
        out[(*n)++] = (char)(0x80 | ((r >> 6) & 0x3f));
        out[(*n)++] = (char)(0x80 | (r & 0x3f));
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode the Go escapes of a quoted literal body into out (capacity >= n); -1 on a bad escape. */
static int unescape(const char *s, size_t n, char quote, char *out, size_t *out_len)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            out[o++] = s[i];
            continue;
        }
        if (++i >= n)
            return -1;
        char e = s[i];
        uint32_t r = 0;
        int digits = 0;

        switch (e) {
        case 'a': out[o++] = '\a'; continue;
        case 'b': out[o++] = '\b'; continue;
        case 'f': out[o++] = '\f'; continue;
        case 'n': out[o++] = '\n'; continue;
        case 'r': out[o++] = '\r'; continue;
        case 't': out[o++] = '\t'; continue;
        case 'v': out[o++] = '\v'; continue;
        case '\\': out[o++] = '\\'; continue;
        case '"':
        case '\'':
            if (e != quote)
                return -1;
            out[o++] = e;
            continue;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (e >= '0' && e <= '7') {
                if (i + 2 >= n)
                    return -1;
                for (int k = 0; k < 3; k++) {
                    if (s[i + k] < '0' || s[i + k] > '7')
                        return -1;
                    r = r * 8 + (uint32_t)(s[i + k] - '0');
                }
                if (r > 255)
                    return -1;
                out[o++] = (char)r;
                i += 2;
                continue;
            }
            return -1;
        }
        if (i + (size_t)digits >= n)
            return -1;
        for (int k = 1; k <= digits; k++) {
            int h = hex_value(s[i + k]);

            if (h < 0)
                return -1;
            r = r * 16 + (uint32_t)h;
        }
        i += (size_t)digits;
        if (e == 'x') {
            out[o++] = (char)r;
        } else {
            if (r > 0x10ffff || (r >= 0xd800 && r <= 0xdfff))
                return -1;
            put_utf8(out, &o, r);
        }
    }
    *out_len = o;
    return 0;
}

static uint32_t decode_utf8(const unsigned char *s, size_t n, size_t *size)
{
    if (n == 0) {
        *size = 0;
        return 0xfffd;
    }
    if (s[0] < 0x80) {
        *size = 1;
        return s[0];
    }
    int extra = (s[0] & 0xe0) == 0xc0 ? 1 : (s[0] & 0xf0) == 0xe0 ? 2 : (s[0] & 0xf8) == 0xf0 ? 3 : -1;

    if (extra < 0 || (size_t)extra >= n) {
        *size = 1;
        return 0xfffd;
    }
    uint32_t r = s[0] & (0x3f >> extra);

    for (int k = 1; k <= extra; k++) {
        if ((s[k] & 0xc0) != 0x80) {
            *size = 1;
            return 0xfffd;
        }
        r = r << 6 | (s[k] & 0x3f);
    }
    *size = (size_t)extra + 1;
    return r;
}

static int parse_number(const char *s, size_t n, value_t *v)
{
    char buf[80];
    size_t o = 0;
    bool neg = false;
    int base = 10;
    char *end = NULL;

    if (n >= sizeof(buf))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] != '_')
            buf[o++] = s[i];
    buf[o] = '\0';

    const char *d = buf;

    if (*d == '+' || *d == '-') {
        neg = *d == '-';
        d++;
    }
    if (*d == '\0')
        return -1;
    if (d[0] == '0' && (d[1] == 'x' || d[1] == 'X'))
        base = 16, d += 2;
    else if (d[0] == '0' && (d[1] == 'o' || d[1] == 'O'))
        base = 8, d += 2;
    else if (d[0] == '0' && (d[1] == 'b' || d[1] == 'B'))
        base = 2, d += 2;

    if (base == 10 && strpbrk(d, ".eE") != NULL) {
        errno = 0;
        double f = strtod(d, &end);

        if (*end != '\0' || end == d || (!(*d >= '0' && *d <= '9') && *d != '.'))
            return -1;
        if (errno == ERANGE && (f > 1 || f < -1))
            return -2;
        v->kind = V_FLOAT;
        v->u.f = neg ? -f : f;
        return 0;
    }
    if (base == 10 && d[0] == '0' && d[1] != '\0')
        base = 8;
    if (*d == '\0' || *d == '+' || *d == '-')
        return -1;
    errno = 0;
    unsigned long long u = strtoull(d, &end, base);

    if (*end != '\0')
        return -1;
    if (errno == ERANGE || u > (unsigned long long)INT64_MAX + (neg ? 1u : 0u))
        return -2;
    v->kind = V_INT;
    v->u.i = neg ? (int64_t)(0 - u) : (int64_t)u;
    return 0;
}

/* --- scope --- */

static bool var_defined(const parser_t *p, const char *name, size_t n)
{
    for (size_t i = p->nvars; i-- > 0;)
        if (strlen(p->vars[i]) == n && memcmp(p->vars[i], name, n) == 0)
            return true;
    return false;
}

static int var_push(parser_t *p, const char *name)
{
    if (p->nvars == p->cap_vars) {
        size_t cap = p->cap_vars ? p->cap_vars * 2 : 16;
        const char **v = realloc(p->vars, cap * sizeof(*v));

        if (v == NULL)
            return pnomem(p);
        p->vars = v;
        p->cap_vars = cap;
    }
    p->vars[p->nvars++] = name;
    return 0;
}

/* --- pipelines --- */

static int parse_pipeline(parser_t *p, pipe_t **out, bool allow_decl, bool in_parens, const char *context,
                          size_t ctx_off);

/* append `.name` fields that follow the operand directly, with no space between */
static int parse_chain(parser_t *p, arg_t *a)
{
    while (p->pos + 1 < p->len && p->src[p->pos] == '.' && is_ident_char(p->src[p->pos + 1]) &&
           !(p->src[p->pos + 1] >= '0' && p->src[p->pos + 1] <= '9')) {
        size_t start = ++p->pos;

        while (p->pos < p->len && is_ident_char(p->src[p->pos]))
            p->pos++;
        a->fields = pgrow(p, a->fields, a->nfields, sizeof(*a->fields));
        if (a->fields == NULL)
            return p->rc;
        a->fields[a->nfields] = pstrdup(p, p->src + start, p->pos - start);
        if (a->fields[a->nfields++] == NULL)
            return p->rc;
    }
    return 0;
}

static int parse_literal(parser_t *p, const tok_t *t, arg_t *a)
{
    const char *body = p->src + t->off + 1;
    size_t n = t->len - 2;
    char *s = palloc(p, n + 1);
    size_t len = 0;

    if (s == NULL)
        return p->rc;
    if (t->kind == T_RAW) {
        memcpy(s, body, n);
        len = n;
    } else if (unescape(body, n, t->kind == T_CHAR ? '\'' : '"', s, &len) != 0) {
        return pfail(p, t->off, "invalid escape in %s %.*s", t->kind == T_CHAR ? "character constant" : "string",
                     (int)(t->len > 40 ? 40 : t->len), p->src + t->off);
    }
    if (t->kind == T_CHAR) {
        size_t size = 0;
        uint32_t r = decode_utf8((const unsigned char *)s, len, &size);

        if (len == 0 || size != len)
            return pfail(p, t->off, "malformed character constant %.*s", (int)(t->len > 40 ? 40 : t->len),
                         p->src + t->off);
        a->kind = A_INT;
        a->literal.kind = V_INT;
        a->literal.u.i = r;
        return 0;
    }
    a->kind = A_STRING;
    a->literal.kind = V_STRING;
    a->literal.u.s.p = s;
    a->literal.u.s.n = len;
    return 0;
}

static int parse_operand(parser_t *p, const tok_t *t, arg_t *a)
{
    char buf[64];
    int rc;

    a->off = t->off;
    switch (t->kind) {
    case T_DOT:
        a->kind = A_DOT;
        return 0;
    case T_FIELD:
        a->kind = A_FIELD;
        p->pos = t->off;
        return parse_chain(p, a);
    case T_VAR:
        if (!var_defined(p, p->src + t->off, t->len))
            return pfail(p, t->off, "undefined variable \"%.*s\"", (int)(t->len > 40 ? 40 : t->len), p->src + t->off);
        a->kind = A_VAR;
        a->name = pstrdup(p, p->src + t->off, t->len);
        if (a->name == NULL)
            return p->rc;
        return parse_chain(p, a);
    case T_STRING:
    case T_RAW:
    case T_CHAR:
        return parse_literal(p, t, a);
    case T_NUMBER:
        rc = parse_number(p->src + t->off, t->len, &a->literal);
        if (rc == -2)
            return pfail(p, t->off, "number %s is out of range", tok_desc(p, t, buf, sizeof(buf)));
        if (rc != 0)
            return pfail(p, t->off, "bad number syntax: %s", tok_desc(p, t, buf, sizeof(buf)));
        a->kind = a->literal.kind == V_INT ? A_INT : A_FLOAT;
        return 0;
    case T_LPAREN:
        if (++p->depth > ZNP_TEMPLATE_MAX_NESTING)
            return pfail(p, t->off, "parentheses nested deeper than %d levels", ZNP_TEMPLATE_MAX_NESTING);
        a->kind = A_PIPE;
        rc = parse_pipeline(p, &a->pipe, false, true, "parenthesized pipeline", t->off);
        p->depth--;
        if (rc != 0)
            return rc;
        {
            tok_t close;

            if (lex(p, &close) != T_RPAREN)
                return pfail(p, close.off, "unclosed left paren");
        }
        return parse_chain(p, a);
    case T_IDENT:
        if (tok_is(p, t, "true") || tok_is(p, t, "false")) {
            a->kind = A_BOOL;
            a->literal.kind = V_BOOL;
            a->literal.u.b = tok_is(p, t, "true");
            return 0;
        }
        if (tok_is(p, t, "nil")) {
            a->kind = A_NIL;
            a->literal.kind = V_NIL;
            return 0;
        }
        static const char *const keywords[] = {"if", "else", "end", "range", "with", "break", "continue",
                                               "define", "template", "block"};

        for (size_t k = 0; k < sizeof(keywords) / sizeof(keywords[0]); k++)
            if (tok_is(p, t, keywords[k]))
                return pfail(p, t->off, "unexpected keyword \"%s\" in command", keywords[k]);
        a->kind = A_FUNC;
        a->func = template__find_func(p->src + t->off, t->len);
        if (a->func < 0)
            return pfail(p, t->off, "function \"%.*s\" not defined", (int)(t->len > 40 ? 40 : t->len), p->src + t->off);
        a->name = template__funcs[a->func].name;
        return 0;
    default:
        return pfail(p, t->off, "unexpected %s in operand", tok_desc(p, t, buf, sizeof(buf)));
    }
}

static int check_arity(parser_t *p, size_t off, int func, size_t nargs)
{
    const func_def_t *f = &template__funcs[func];

    if ((int)nargs < f->min_args && f->max_args == f->min_args)
        return pfail(p, off, "wrong number of args for %s: want %d got %zu", f->name, f->min_args, nargs);
    if ((int)nargs < f->min_args)
        return pfail(p, off, "wrong number of args for %s: want at least %d got %zu", f->name, f->min_args, nargs);
    if (f->max_args >= 0 && (int)nargs > f->max_args)
        return pfail(p, off, "wrong number of args for %s: want %s%d got %zu", f->name,
                     f->max_args == f->min_args ? "" : "at most ", f->max_args, nargs);
    return 0;
}

/* Parse one command up to "|", ")" or "}}", which is left unread. */
static int parse_command(parser_t *p, cmd_t *c, bool in_parens)
{
    char buf[64];
    tok_t t;

    c->off = p->pos;
    for (;;) {
        size_t save = p->pos;

        lex(p, &t);
        if (t.kind == T_ERROR)
            return p->rc;
        if (c->nargs == 0)
            c->off = t.off;
        if (t.kind == T_PIPE || (t.kind == T_RPAREN && in_parens) || (t.kind == T_RIGHT && !in_parens)) {
            p->pos = save;
            break;
        }
        if (t.kind == T_EOF)
            return pfail(p, t.off, "unclosed action");
        if (t.kind == T_RIGHT)
            return pfail(p, t.off, "unclosed left paren");
        if (t.kind == T_RPAREN)
            return pfail(p, t.off, "unexpected right paren");
        if (t.kind == T_DECLARE || t.kind == T_ASSIGN || t.kind == T_COMMA)
            return pfail(p, t.off, "unexpected %s in command", tok_desc(p, &t, buf, sizeof(buf)));

        c->args = pgrow(p, c->args, c->nargs, sizeof(*c->args));
        if (c->args == NULL)
            return p->rc;

        arg_t *a = &c->args[c->nargs++];

        if (parse_operand(p, &t, a) != 0)
            return p->rc;
        if (a->kind == A_FUNC && c->nargs > 1 && check_arity(p, a->off, a->func, 0) != 0)
            return p->rc;
        if (p->pos < p->len && !is_space(p->src[p->pos]) && p->src[p->pos] != '|' && p->src[p->pos] != ')' &&
            p->src[p->pos] != '}')
            return pfail(p, p->pos, "unexpected \"%c\" in operand", p->src[p->pos]);
    }
    if (c->nargs == 0)
        return pfail(p, c->off, "missing value for command");
    return 0;
}

static int parse_decl(parser_t *p, pipe_t *pp, bool allow_two)
{
    size_t save = p->pos;
    tok_t a, b, c, d;

    if (lex(p, &a) != T_VAR) {
        p->pos = save;
        return p->rc;
    }
    lex(p, &b);
    if (b.kind == T_COMMA && allow_two) {
        if (lex(p, &c) != T_VAR || (lex(p, &d) != T_DECLARE && d.kind != T_ASSIGN)) {
            if (p->rc == 0)
                pfail(p, b.off, "expected two variables before := in range");
            return p->rc;
        }
        pp->decl[0] = pstrdup(p, p->src + a.off, a.len);
        pp->decl[1] = pstrdup(p, p->src + c.off, c.len);
        pp->ndecl = 2;
        pp->is_assign = d.kind == T_ASSIGN;
    } else if (b.kind == T_COMMA) {
        return pfail(p, b.off, "too many declarations; only range declares two variables");
    } else if (b.kind == T_DECLARE || b.kind == T_ASSIGN) {
        pp->decl[0] = pstrdup(p, p->src + a.off, a.len);
        pp->ndecl = 1;
        pp->is_assign = b.kind == T_ASSIGN;
    } else {
        p->pos = save;
        return p->rc;
    }
    if (p->rc != 0)
        return p->rc;
    for (size_t i = 0; i < pp->ndecl; i++) {
        if (strcmp(pp->decl[i], "$") == 0)
            return pfail(p, a.off, "cannot assign to \"$\"");
        if (pp->is_assign && !var_defined(p, pp->decl[i], strlen(pp->decl[i])))
            return pfail(p, a.off, "undefined variable \"%s\"", pp->decl[i]);
    }
    return 0;
}

static int parse_pipeline(parser_t *p, pipe_t **out, bool allow_decl, bool in_parens, const char *context, size_t ctx_off)
{
    pipe_t *pp = palloc(p, sizeof(*pp));
    tok_t t;

    if (pp == NULL)
        return p->rc;
    pp->off = ctx_off;
    if (allow_decl && parse_decl(p, pp, strcmp(context, "range") == 0) != 0)
        return p->rc;

    for (;;) {
        pp->cmds = pgrow(p, pp->cmds, pp->ncmds, sizeof(*pp->cmds));
        if (pp->cmds == NULL)
            return p->rc;

        size_t save = p->pos;

        lex(p, &t);
        if (t.kind == T_ERROR)
            return p->rc;
        p->pos = save;
        if (pp->ncmds == 0 && ((t.kind == T_RIGHT && !in_parens) || (t.kind == T_RPAREN && in_parens)))
            return pfail(p, t.off, "missing value for %s", context);
        if (parse_command(p, &pp->cmds[pp->ncmds], in_parens) != 0)
            return p->rc;
        pp->ncmds++;
        save = p->pos;
        lex(p, &t);
        if (t.kind != T_PIPE) {
            p->pos = save;
            break;
        }
    }

    for (size_t i = 0; i < pp->ncmds; i++) {
        const cmd_t *c = &pp->cmds[i];
        const arg_t *first = &c->args[0];

        if (first->kind == A_NIL)
            return pfail(p, first->off, "nil is not a command");
        if (first->kind == A_FUNC) {
            if (check_arity(p, first->off, first->func, c->nargs - 1 + (i > 0 ? 1 : 0)) != 0)
                return p->rc;
            if (strcmp(first->name, "printf") == 0 && c->nargs > 1 && c->args[1].kind == A_STRING) {
                size_t bad = 0;

                if (template__printf_check(c->args[1].literal.u.s.p, c->args[1].literal.u.s.n, &bad) != 0)
                    return pfail(p, c->args[1].off, "unsupported printf verb \"%%%c\"; supported are %%s %%d %%v %%q %%%%",
                                 bad < c->args[1].literal.u.s.n ? c->args[1].literal.u.s.p[bad] : ' ');
            }
        } else if (i > 0 && first->kind != A_FIELD && first->kind != A_VAR && first->kind != A_PIPE) {
            return pfail(p, first->off, "non executable command in pipeline stage %zu", i + 1);
        }
    }
    for (size_t i = 0; i < pp->ndecl && !pp->is_assign; i++)
        if (var_push(p, pp->decl[i]) != 0)
            return p->rc;
    *out = pp;
    return 0;
}

/* --- lists and control structures --- */

static int parse_list(parser_t *p, node_t **out, list_end_t *end, size_t *end_off);

static int expect_right(parser_t *p, const char *context)
{
    char buf[64];
    tok_t t;

    lex(p, &t);
    if (t.kind == T_ERROR)
        return p->rc;
    if (t.kind == T_EOF)
        return pfail(p, t.off, "unclosed action");
    if (t.kind != T_RIGHT)
        return pfail(p, t.off, "unexpected %s in %s", tok_desc(p, &t, buf, sizeof(buf)), context);
    p->trim_next = t.trim;
    return 0;
}

static node_t *new_node(parser_t *p, node_kind_t kind, size_t off)
{
    node_t *n = palloc(p, sizeof(*n));

    if (n != NULL) {
        n->kind = kind;
        n->off = off;
    }
    return n;
}

/* Parse `if`, `range` or `with` after its keyword, through the matching {{end}}. */
static int parse_control(parser_t *p, node_kind_t kind, const char *context, size_t off, node_t **out)
{
    size_t mark = p->nvars;
    node_t *n = new_node(p, kind, off);
    list_end_t end;
    size_t end_off = 0;
    int rc = 0;

    if (n == NULL)
        return p->rc;
    if (++p->depth > ZNP_TEMPLATE_MAX_NESTING) {
        rc = pfail(p, off, "control blocks nested deeper than %d levels", ZNP_TEMPLATE_MAX_NESTING);
        goto cleanup;
    }
    if ((rc = parse_pipeline(p, &n->pipe, true, false, context, off)) != 0)
        goto cleanup;
    if ((rc = expect_right(p, context)) != 0)
        goto cleanup;

    if (kind == N_RANGE)
        p->range_depth++;
    rc = parse_list(p, &n->list, &end, &end_off);
    if (kind == N_RANGE)
        p->range_depth--;
    if (rc != 0)
        goto cleanup;

    if (end == END_ELSE) {
        size_t save = p->pos;
        tok_t t;

        lex(p, &t);
        if (kind != N_RANGE && (tok_is(p, &t, "if") || tok_is(p, &t, "with"))) {
            /* "{{else if x}}" opens a nested block that shares this block's {{end}} */
            rc = parse_control(p, tok_is(p, &t, "if") ? N_IF : N_WITH, tok_is(p, &t, "if") ? "if" : "with", t.off,
                               &n->else_list);
            goto cleanup;
        }
        p->pos = save;
        if ((rc = expect_right(p, "else")) != 0)
            goto cleanup;
        if ((rc = parse_list(p, &n->else_list, &end, &end_off)) != 0)
            goto cleanup;
        if (end == END_ELSE) {
            rc = pfail(p, end_off, "unexpected {{else}} after {{else}} in {{%s}}", context);
            goto cleanup;
        }
    }
    if (end == END_EOF) {
        rc = pfail(p, off, "unclosed {{%s}}: missing {{end}}", context);
        goto cleanup;
    }
    rc = expect_right(p, "end");

cleanup:
    p->depth--;
    p->nvars = mark;
    if (rc == 0)
        *out = n;
    return rc;
}

/* Parse the action whose "{{" (and trim marker) was consumed. Sets *end for {{end}}/{{else}}. */
static int parse_action(parser_t *p, size_t open_off, node_t **out, list_end_t *end, size_t *end_off)
{
    size_t save = p->pos;
    tok_t t;

    *out = NULL;
    lex(p, &t);
    if (t.kind == T_ERROR)
        return p->rc;
    if (t.kind == T_IDENT) {
        if (tok_is(p, &t, "if"))
            return parse_control(p, N_IF, "if", t.off, out);
        if (tok_is(p, &t, "range"))
            return parse_control(p, N_RANGE, "range", t.off, out);
        if (tok_is(p, &t, "with"))
            return parse_control(p, N_WITH, "with", t.off, out);
        if (tok_is(p, &t, "end") || tok_is(p, &t, "else")) {
            *end = tok_is(p, &t, "end") ? END_END : END_ELSE;
            *end_off = t.off;
            return 0;
        }
        if (tok_is(p, &t, "break") || tok_is(p, &t, "continue")) {
            bool brk = tok_is(p, &t, "break");

            if (p->range_depth == 0)
                return pfail(p, t.off, "{{%s}} outside {{range}}", brk ? "break" : "continue");
            *out = new_node(p, brk ? N_BREAK : N_CONTINUE, t.off);
            if (*out == NULL)
                return p->rc;
            return expect_right(p, brk ? "break" : "continue");
        }
        if (tok_is(p, &t, "define") || tok_is(p, &t, "template") || tok_is(p, &t, "block"))
            return pfail(p, t.off, "{{%.*s}} is not supported; nested templates are not available", (int)t.len,
                         p->src + t.off);
    }
    p->pos = save;

    node_t *n = new_node(p, N_ACTION, open_off);

    if (n == NULL)
        return p->rc;
    if (parse_pipeline(p, &n->pipe, true, false, "command", t.off) != 0)
        return p->rc;
    if (expect_right(p, "command") != 0)
        return p->rc;
    *out = n;
    return 0;
}

static int parse_list(parser_t *p, node_t **out, list_end_t *end, size_t *end_off)
{
    node_t *head = NULL, **tail = &head;

    *end = END_EOF;
    while (p->pos < p->len) {
        const char *open = memmem(p->src + p->pos, p->len - p->pos, "{{", 2);
        size_t text_start = p->pos;
        size_t text_end = open != NULL ? (size_t)(open - p->src) : p->len;
        bool trim_left = open != NULL && text_end + 3 < p->len && p->src[text_end + 2] == '-' &&
                         is_space(p->src[text_end + 3]);

        if (p->trim_next)
            while (text_start < text_end && is_space(p->src[text_start]))
                text_start++;
        p->trim_next = false;
        if (trim_left)
            while (text_end > text_start && is_space(p->src[text_end - 1]))
                text_end--;
        if (text_end > text_start) {
            node_t *n = new_node(p, N_TEXT, text_start);

            if (n == NULL)
                return p->rc;
            n->text = p->src + text_start;
            n->len = text_end - text_start;
            *tail = n;
            tail = &n->next;
        }
        if (open == NULL) {
            p->pos = p->len;
            break;
        }

        size_t open_off = (size_t)(open - p->src);

        p->pos = open_off + (trim_left ? 4 : 2);
        if (p->len - p->pos >= 2 && memcmp(p->src + p->pos, "/*", 2) == 0) {
            const char *close = memmem(p->src + p->pos + 2, p->len - p->pos - 2, "*/", 2);

            if (close == NULL)
                return pfail(p, p->pos, "unclosed comment");
            p->pos = (size_t)(close - p->src) + 2;
            if (p->len - p->pos >= 4 && is_space(p->src[p->pos]) && memcmp(p->src + p->pos + 1, "-}}", 3) == 0) {
                p->pos += 4;
                p->trim_next = true;
            } else if (p->len - p->pos >= 2 && memcmp(p->src + p->pos, "}}", 2) == 0) {
                p->pos += 2;
            } else {
                return pfail(p, p->pos, "comment ends before closing delimiter");
            }
            continue;
        }

        node_t *n = NULL;

        if (parse_action(p, open_off, &n, end, end_off) != 0)
            return p->rc;
        if (*end != END_EOF)
            break;
        if (n != NULL) {
            *tail = n;
            tail = &n->next;
        }
    }
    *out = head;
    return 0;
}

int znp_template_compile(znp_template_t **out, const char *text, size_t len, znp_template_error_t *err)
{
    znp_template_error_t local;
    parser_t p = {0};
    list_end_t end;
    size_t end_off = 0;
    int rc = 0;

    *out = NULL;
    if (err == NULL)
        err = &local;
    memset(err, 0, sizeof(*err));
    p.err = err;
    p.t = calloc(1, sizeof(*p.t));
    if (p.t == NULL || (p.t->source = malloc(len + 1)) == NULL) {
        rc = pnomem(&p);
        goto cleanup;
    }
    if (len > 0)
        memcpy(p.t->source, text, len);
    p.t->source[len] = '\0';
    p.t->source_len = len;
    p.src = p.t->source;
    p.len = len;
    if ((rc = var_push(&p, "$")) != 0)
        goto cleanup;

    if ((rc = parse_list(&p, &p.t->root, &end, &end_off)) != 0)
        goto cleanup;
    if (end != END_EOF) {
        rc = pfail(&p, end_off, "unexpected {{%s}} with no open block", end == END_END ? "end" : "else");
        goto cleanup;
    }
    *out = p.t;
    p.t = NULL;

cleanup:
    free(p.vars);
    znp_template_destroy(p.t);
    return rc;
}

void znp_template_destroy(znp_template_t *tmpl)
{
    if (tmpl == NULL)
        return;
    while (tmpl->blocks != NULL) {
        block_t *next = tmpl->blocks->next;

        free(tmpl->blocks);
        tmpl->blocks = next;
    }
    free(tmpl->source);
    free(tmpl);
}
