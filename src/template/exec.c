/* Template evaluator: walks the compiled tree against a jansson data context within limits. */
#include "template/template.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.gen.h"
#include "template/internal.h"

#define DEFAULT_MAX_OUTPUT ((size_t)4 << 20)
#define DEFAULT_MAX_STEPS 1000000u
#define DEFAULT_MAX_DEPTH 100u
#define DEFAULT_MAX_MEMORY ((size_t)16 << 20)

int template__fail(state_t *s, size_t off, znp_template_err_kind_t kind, const char *fmt, ...)
{
    va_list ap;

    if (s->rc != 0)
        return s->rc;
    s->rc = kind == ZNP_TEMPLATE_ERR_NO_MEMORY ? ZNP_E_INTERNAL : ZNP_E_VALIDATION_FAILED;
    s->err->kind = kind;
    if (off != SIZE_MAX)
        template__position(s->tmpl->source, s->tmpl->source_len, off, &s->err->line, &s->err->column);
    va_start(ap, fmt);
    vsnprintf(s->err->message, sizeof(s->err->message), fmt, ap);
    va_end(ap);
    return s->rc;
}

int template__step(state_t *s, size_t off)
{
    if (++s->steps > s->lim.max_steps)
        return template__fail(s, off, ZNP_TEMPLATE_ERR_LIMIT, "template exceeded the limit of %llu steps",
                              (unsigned long long)s->lim.max_steps);
    return 0;
}

static int track(state_t *s, size_t off, void *p, size_t n)
{
    if (s->nallocs == s->cap_allocs) {
        size_t cap = s->cap_allocs ? s->cap_allocs * 2 : 64;
        void **a = realloc(s->allocs, cap * sizeof(*a));

        if (a == NULL) {
            free(p);
            return template__fail(s, off, ZNP_TEMPLATE_ERR_NO_MEMORY, "out of memory while rendering");
        }
        s->allocs = a;
        s->cap_allocs = cap;
    }
    s->allocs[s->nallocs++] = p;
    s->mem_used += n;
    return 0;
}

char *template__alloc(state_t *s, size_t off, size_t n)
{
    char *p;

    if (n > s->lim.max_memory_bytes - s->mem_used || s->mem_used > s->lim.max_memory_bytes) {
        template__fail(s, off, ZNP_TEMPLATE_ERR_LIMIT, "template values exceeded the memory limit of %zu bytes",
                       s->lim.max_memory_bytes);
        return NULL;
    }
    p = malloc(n ? n : 1);
    if (p == NULL) {
        template__fail(s, off, ZNP_TEMPLATE_ERR_NO_MEMORY, "out of memory while rendering");
        return NULL;
    }
    return track(s, off, p, n) == 0 ? p : NULL;
}

int template__keep_json(state_t *s, size_t off, json_t *j)
{
    if (j == NULL)
        return template__fail(s, off, ZNP_TEMPLATE_ERR_NO_MEMORY, "out of memory while rendering");
    if (s->njsons == s->cap_jsons) {
        size_t cap = s->cap_jsons ? s->cap_jsons * 2 : 16;
        json_t **a = realloc(s->jsons, cap * sizeof(*a));

        if (a == NULL) {
            json_decref(j);
            return template__fail(s, off, ZNP_TEMPLATE_ERR_NO_MEMORY, "out of memory while rendering");
        }
        s->jsons = a;
        s->cap_jsons = cap;
    }
    s->jsons[s->njsons++] = j;
    return 0;
}

int template__buf_finish(state_t *s, size_t off, buf_t *b, value_t *out)
{
    if (b->oom) {
        free(b->p);
        return template__fail(s, off, ZNP_TEMPLATE_ERR_NO_MEMORY, "out of memory while rendering");
    }
    if (b->over || b->n > s->lim.max_memory_bytes - s->mem_used) {
        free(b->p);
        return template__fail(s, off, ZNP_TEMPLATE_ERR_LIMIT, "template values exceeded the memory limit of %zu bytes",
                              s->lim.max_memory_bytes);
    }
    if (b->p == NULL) {
        out->kind = V_STRING;
        out->u.s.p = "";
        out->u.s.n = 0;
        return 0;
    }
    if (track(s, off, b->p, b->n) != 0)
        return s->rc;
    out->kind = V_STRING;
    out->u.s.p = b->p;
    out->u.s.n = b->n;
    return 0;
}

/* --- variables --- */

static int var_push(state_t *s, size_t off, const char *name, value_t v)
{
    if (s->nvars == s->cap_vars) {
        size_t cap = s->cap_vars ? s->cap_vars * 2 : 16;
        void *a = realloc(s->vars, cap * sizeof(*s->vars));

        if (a == NULL)
            return template__fail(s, off, ZNP_TEMPLATE_ERR_NO_MEMORY, "out of memory while rendering");
        s->vars = a;
        s->cap_vars = cap;
    }
    s->vars[s->nvars].name = name;
    s->vars[s->nvars].v = v;
    s->nvars++;
    return 0;
}

static value_t *var_find(state_t *s, const char *name)
{
    for (size_t i = s->nvars; i-- > 0;)
        if (strcmp(s->vars[i].name, name) == 0)
            return &s->vars[i].v;
    return NULL;
}

/* --- evaluation --- */

static int eval_pipe(state_t *s, const pipe_t *pp, value_t dot, bool declare, value_t *out);

static int eval_chain(state_t *s, size_t off, value_t v, const char *const *fields, size_t n, value_t *out)
{
    for (size_t i = 0; i < n; i++) {
        switch (v.kind) {
        case V_MISSING:
            if (s->strict)
                return template__fail(s, off, ZNP_TEMPLATE_ERR_MISSING_KEY, "no entry for key \"%s\": its parent is missing",
                                      fields[i]);
            break;
        case V_NIL:
            return template__fail(s, off, ZNP_TEMPLATE_ERR_EXEC, "nil pointer evaluating interface {}.%s", fields[i]);
        case V_OBJECT: {
            json_t *j = json_object_get(v.u.j, fields[i]);

            if (j == NULL && s->strict)
                return template__fail(s, off, ZNP_TEMPLATE_ERR_MISSING_KEY, "map has no entry for key \"%s\"",
                                      fields[i]);
            v = template__from_json(j);
            break;
        }
        default:
            return template__fail(s, off, ZNP_TEMPLATE_ERR_EXEC, "can't evaluate field %s in type %s", fields[i],
                                  template__type_name(&v));
        }
    }
    *out = v;
    return 0;
}

static int call_func(state_t *s, const arg_t *fn, const arg_t *args, size_t nargs, const value_t *final, value_t dot,
                     value_t *out);

static int eval_arg(state_t *s, const arg_t *a, value_t dot, value_t *out)
{
    value_t v;
    value_t *var;

    switch (a->kind) {
    case A_DOT:
        *out = dot;
        return 0;
    case A_FIELD:
        return eval_chain(s, a->off, dot, a->fields, a->nfields, out);
    case A_VAR:
        var = var_find(s, a->name);
        if (var == NULL)
            return template__fail(s, a->off, ZNP_TEMPLATE_ERR_EXEC, "undefined variable: %s", a->name);
        return eval_chain(s, a->off, *var, a->fields, a->nfields, out);
    case A_PIPE:
        if (eval_pipe(s, a->pipe, dot, false, &v) != 0)
            return s->rc;
        return eval_chain(s, a->off, v, a->fields, a->nfields, out);
    case A_FUNC:
        return call_func(s, a, NULL, 0, NULL, dot, out);
    default:
        *out = a->literal;
        return 0;
    }
}

static int call_func(state_t *s, const arg_t *fn, const arg_t *args, size_t nargs, const value_t *final, value_t dot,
                     value_t *out)
{
    size_t total = nargs + (final != NULL ? 1 : 0);
    value_t local[8];
    value_t *argv = local;

    if (template__step(s, fn->off) != 0)
        return s->rc;
    if (fn->func == FUNC_AND || fn->func == FUNC_OR) {
        /* evaluated lazily: stop at the first false (and) or true (or) argument */
        value_t v = {0};

        for (size_t i = 0; i < total; i++) {
            if (i < nargs) {
                if (eval_arg(s, &args[i], dot, &v) != 0)
                    return s->rc;
            } else {
                v = *final;
            }
            if (template__truth(&v) == (fn->func == FUNC_OR))
                break;
        }
        *out = v;
        return 0;
    }
    if (total > sizeof(local) / sizeof(local[0])) {
        argv = (value_t *)template__alloc(s, fn->off, total * sizeof(*argv));
        if (argv == NULL)
            return s->rc;
    }
    for (size_t i = 0; i < nargs; i++)
        if (eval_arg(s, &args[i], dot, &argv[i]) != 0)
            return s->rc;
    if (final != NULL)
        argv[nargs] = *final;
    memset(out, 0, sizeof(*out));
    return template__funcs[fn->func].impl(s, fn->off, argv, total, out);
}

static int eval_cmd(state_t *s, const cmd_t *c, value_t dot, const value_t *final, value_t *out)
{
    const arg_t *first = &c->args[0];

    if (first->kind == A_FUNC)
        return call_func(s, first, c->args + 1, c->nargs - 1, final, dot, out);
    if (c->nargs > 1 || final != NULL)
        return template__fail(s, first->off, ZNP_TEMPLATE_ERR_EXEC,
                              "%s is not a function and cannot take arguments",
                              first->kind == A_DOT     ? "."
                              : first->kind == A_VAR   ? first->name
                              : first->kind == A_FIELD ? first->fields[0]
                                                       : "value");
    return eval_arg(s, first, dot, out);
}

/* Evaluate a pipeline; with declare, bind or assign its declared variables. */
static int eval_pipe(state_t *s, const pipe_t *pp, value_t dot, bool declare, value_t *out)
{
    value_t v = {0};

    for (size_t i = 0; i < pp->ncmds; i++) {
        value_t prev = v;

        if (eval_cmd(s, &pp->cmds[i], dot, i > 0 ? &prev : NULL, &v) != 0)
            return s->rc;
        /* as in Go, a nil interface result becomes "no value" after each command */
        if (v.kind == V_NIL)
            v.kind = V_MISSING;
    }
    if (declare) {
        for (size_t i = 0; i < pp->ndecl; i++) {
            if (pp->is_assign) {
                value_t *var = var_find(s, pp->decl[i]);

                if (var == NULL)
                    return template__fail(s, pp->off, ZNP_TEMPLATE_ERR_EXEC, "undefined variable: %s", pp->decl[i]);
                *var = v;
            } else if (var_push(s, pp->off, pp->decl[i], v) != 0) {
                return s->rc;
            }
        }
    }
    *out = v;
    return 0;
}

static int emit(state_t *s, size_t off, const char *p, size_t n)
{
    buf_add(&s->out, p, n);
    if (s->out.oom)
        return template__fail(s, off, ZNP_TEMPLATE_ERR_NO_MEMORY, "out of memory while rendering");
    if (s->out.over)
        return template__fail(s, off, ZNP_TEMPLATE_ERR_LIMIT, "output exceeded the limit of %zu bytes",
                              s->lim.max_output_bytes);
    return 0;
}

static int walk(state_t *s, const node_t *list, value_t dot);

static int set_range_vars(state_t *s, const pipe_t *pp, size_t base, value_t key, value_t elem)
{
    value_t vals[2] = {pp->ndecl == 2 ? key : elem, elem};

    for (size_t i = 0; i < pp->ndecl; i++) {
        value_t *var = pp->is_assign ? var_find(s, pp->decl[i]) : &s->vars[base + i].v;

        if (var == NULL)
            return template__fail(s, pp->off, ZNP_TEMPLATE_ERR_EXEC, "undefined variable: %s", pp->decl[i]);
        *var = vals[i];
    }
    return 0;
}

/* one loop body run; returns 1 after {{break}} */
static int range_body(state_t *s, const node_t *n, size_t base, value_t key, value_t elem)
{
    size_t mark = s->nvars;

    if (template__step(s, n->off) != 0 || set_range_vars(s, n->pipe, base, key, elem) != 0)
        return s->rc;
    if (walk(s, n->list, elem) != 0)
        return s->rc;
    s->nvars = mark;
    if (s->brk == 1) {
        s->brk = 0;
        return 1;
    }
    s->brk = 0;
    return 0;
}

static int walk_range(state_t *s, const node_t *n, value_t dot)
{
    value_t coll;
    size_t base = s->nvars;
    int rc = 0;

    if (eval_pipe(s, n->pipe, dot, false, &coll) != 0)
        return s->rc;
    if (!n->pipe->is_assign)
        for (size_t i = 0; i < n->pipe->ndecl; i++)
            if (var_push(s, n->off, n->pipe->decl[i], coll) != 0)
                return s->rc;

    if (coll.kind == V_ARRAY && json_array_size(coll.u.j) > 0) {
        for (size_t i = 0; i < json_array_size(coll.u.j); i++) {
            value_t key = {.kind = V_INT, .u.i = (int64_t)i};

            rc = range_body(s, n, base, key, template__from_json(json_array_get(coll.u.j, i)));
            if (rc != 0)
                break;
        }
    } else if (coll.kind == V_OBJECT && json_object_size(coll.u.j) > 0) {
        const char **keys = NULL;
        size_t nkeys = 0;

        if (template__sorted_keys(s, n->off, coll.u.j, &keys, &nkeys) != 0)
            return s->rc;
        for (size_t i = 0; i < nkeys; i++) {
            json_t *elem = json_object_get(coll.u.j, keys[i]);
            value_t key = {.kind = V_STRING, .u.s = {keys[i], strlen(keys[i])}};

            if (elem == NULL)
                continue;
            rc = range_body(s, n, base, key, template__from_json(elem));
            if (rc != 0)
                break;
        }
    } else if (coll.kind == V_ARRAY || coll.kind == V_OBJECT || coll.kind == V_MISSING || coll.kind == V_NIL) {
        rc = walk(s, n->else_list, dot);
    } else {
        return template__fail(s, n->off, ZNP_TEMPLATE_ERR_EXEC, "range can't iterate over a value of type %s",
                              template__type_name(&coll));
    }
    if (rc < 0)
        return rc;
    return 0;
}

static int walk_node(state_t *s, const node_t *n, value_t dot)
{
    value_t v;
    size_t mark = s->nvars;
    int rc = 0;

    if (template__step(s, n->off) != 0)
        return s->rc;
    switch (n->kind) {
    case N_TEXT:
        return emit(s, n->off, n->text, n->len);
    case N_ACTION:
        if (eval_pipe(s, n->pipe, dot, true, &v) != 0)
            return s->rc;
        if (n->pipe->ndecl > 0)
            return 0;
        if (v.kind == V_MISSING || v.kind == V_NIL)
            return emit(s, n->off, "<no value>", 10);
        if (v.kind == V_STRING)
            return emit(s, n->off, v.u.s.p, v.u.s.n);
        {
            buf_t b;

            buf_init(&b, s->lim.max_output_bytes - s->out.n);
            if (template__print(s, n->off, &b, &v, 0) != 0) {
                free(b.p);
                return s->rc;
            }
            rc = b.over ? template__fail(s, n->off, ZNP_TEMPLATE_ERR_LIMIT, "output exceeded the limit of %zu bytes",
                                         s->lim.max_output_bytes)
                        : emit(s, n->off, b.p, b.n);
            free(b.p);
            return rc;
        }
    case N_IF:
    case N_WITH:
        if (++s->depth > s->lim.max_depth) {
            rc = template__fail(s, n->off, ZNP_TEMPLATE_ERR_LIMIT, "blocks nested deeper than %u levels",
                                s->lim.max_depth);
        } else if (eval_pipe(s, n->pipe, dot, true, &v) == 0) {
            if (template__truth(&v))
                rc = walk(s, n->list, n->kind == N_WITH ? v : dot);
            else
                rc = walk(s, n->else_list, dot);
        } else {
            rc = s->rc;
        }
        s->depth--;
        s->nvars = mark;
        return rc;
    case N_RANGE:
        if (++s->depth > s->lim.max_depth)
            rc = template__fail(s, n->off, ZNP_TEMPLATE_ERR_LIMIT, "blocks nested deeper than %u levels",
                                s->lim.max_depth);
        else
            rc = walk_range(s, n, dot);
        s->depth--;
        s->nvars = mark;
        return rc;
    case N_BREAK:
        s->brk = 1;
        return 0;
    case N_CONTINUE:
        s->brk = 2;
        return 0;
    }
    return 0;
}

static int walk(state_t *s, const node_t *list, value_t dot)
{
    for (const node_t *n = list; n != NULL; n = n->next) {
        if (walk_node(s, n, dot) != 0)
            return s->rc;
        if (s->brk != 0)
            break;
    }
    return 0;
}

static int run(const znp_template_t *tmpl, json_t *data, const znp_template_limits_t *limits, bool strict,
               char **out, size_t *out_len, znp_template_error_t *err)
{
    znp_template_error_t local;
    state_t s = {0};
    value_t root;
    int rc;

    if (out != NULL)
        *out = NULL;
    if (out_len != NULL)
        *out_len = 0;
    if (err == NULL)
        err = &local;
    memset(err, 0, sizeof(*err));
    s.err = err;
    s.tmpl = tmpl;
    s.strict = strict;
    if (limits != NULL)
        s.lim = *limits;
    if (s.lim.max_output_bytes == 0)
        s.lim.max_output_bytes = DEFAULT_MAX_OUTPUT;
    if (s.lim.max_steps == 0)
        s.lim.max_steps = DEFAULT_MAX_STEPS;
    if (s.lim.max_depth == 0)
        s.lim.max_depth = DEFAULT_MAX_DEPTH;
    if (s.lim.max_memory_bytes == 0)
        s.lim.max_memory_bytes = DEFAULT_MAX_MEMORY;
    if (s.lim.now == 0)
        s.lim.now = time(NULL);
    buf_init(&s.out, s.lim.max_output_bytes);

    root = data != NULL ? template__from_json(data) : (value_t){.kind = V_MISSING};
    if ((rc = var_push(&s, SIZE_MAX, "$", root)) == 0)
        rc = walk(&s, tmpl->root, root);
    if (rc == 0 && s.out.p == NULL) {
        s.out.p = malloc(1);
        if (s.out.p == NULL)
            rc = template__fail(&s, SIZE_MAX, ZNP_TEMPLATE_ERR_NO_MEMORY, "out of memory while rendering");
    }
    if (rc == 0 && out != NULL) {
        s.out.p[s.out.n] = '\0';
        *out = s.out.p;
        *out_len = s.out.n;
        s.out.p = NULL;
    }

    free(s.out.p);
    for (size_t i = 0; i < s.nallocs; i++)
        free(s.allocs[i]);
    free(s.allocs);
    for (size_t i = 0; i < s.njsons; i++)
        json_decref(s.jsons[i]);
    free(s.jsons);
    free(s.vars);
    return rc;
}

int znp_template_render(const znp_template_t *tmpl, json_t *data, const znp_template_limits_t *limits, char **out,
                        size_t *out_len, znp_template_error_t *err)
{
    return run(tmpl, data, limits, false, out, out_len, err);
}

int znp_template_check(const znp_template_t *tmpl, json_t *sample, const znp_template_limits_t *limits,
                       znp_template_error_t *err)
{
    return run(tmpl, sample, limits, true, NULL, NULL, err);
}
