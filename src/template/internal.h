/* Internals shared by the template compiler, evaluator and function library. */
#ifndef ZNP_TEMPLATE_INTERNAL_H
#define ZNP_TEMPLATE_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "template/template.h"

typedef enum { V_MISSING, V_NIL, V_BOOL, V_INT, V_FLOAT, V_STRING, V_ARRAY, V_OBJECT } vkind_t;

/* A runtime value. Strings and containers are borrowed from the data context or from the
 * render's pool, so a value never owns anything and copies freely. */
typedef struct {
    vkind_t kind;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *p;
            size_t n;
        } s;
        json_t *j;
    } u;
} value_t;

typedef enum { A_DOT, A_FIELD, A_VAR, A_PIPE, A_FUNC, A_STRING, A_INT, A_FLOAT, A_BOOL, A_NIL } arg_kind_t;

struct pipe;

typedef struct {
    arg_kind_t kind;
    size_t off; /* byte offset in the source, for error positions */
    const char *name; /* variable name with '$', or function name */
    int func;         /* index into the function table for A_FUNC */
    struct pipe *pipe;
    const char **fields; /* field chain applied after the operand */
    size_t nfields;
    value_t literal;
} arg_t;

typedef struct {
    size_t off;
    arg_t *args;
    size_t nargs;
} cmd_t;

typedef struct pipe {
    size_t off;
    bool is_assign; /* `=` rather than `:=` */
    const char *decl[2];
    size_t ndecl;
    cmd_t *cmds;
    size_t ncmds;
} pipe_t;

typedef enum { N_TEXT, N_ACTION, N_IF, N_RANGE, N_WITH, N_BREAK, N_CONTINUE } node_kind_t;

typedef struct node {
    node_kind_t kind;
    size_t off;
    struct node *next;
    const char *text;
    size_t len;
    pipe_t *pipe;
    struct node *list;
    struct node *else_list;
} node_t;

typedef struct block {
    struct block *next;
    size_t used, cap;
    max_align_t data[];
} block_t;

struct znp_template {
    char *source;
    size_t source_len;
    block_t *blocks;
    node_t *root;
};

/* growable byte buffer bounded by a cap; used for the output and for function results */
typedef struct {
    char *p;
    size_t n, cap;
    size_t max;
    bool over; /* a write would have passed max */
    bool oom;
} buf_t;

/* Render state; one per render call, never shared between threads. */
typedef struct {
    const znp_template_t *tmpl;
    znp_template_limits_t lim;
    bool strict;
    buf_t out;
    uint64_t steps;
    unsigned depth;
    size_t mem_used;
    void **allocs; /* pool: malloc'd strings */
    size_t nallocs, cap_allocs;
    json_t **jsons; /* pool: containers built by functions (owned references) */
    size_t njsons, cap_jsons;
    struct {
        const char *name;
        value_t v;
    } *vars;
    size_t nvars, cap_vars;
    int brk; /* 1 = break, 2 = continue pending */
    znp_template_error_t *err;
    int rc;
} state_t;

typedef int (*func_impl_t)(state_t *s, size_t off, value_t *args, size_t nargs, value_t *out);

typedef struct {
    const char *name;
    int min_args;
    int max_args; /* -1 = variadic */
    func_impl_t impl;
} func_def_t;

extern const func_def_t template__funcs[];
int template__find_func(const char *name, size_t len);
#define FUNC_AND 0
#define FUNC_OR 1

/* errors: record the first error at a source offset and return its code */
int template__fail(state_t *s, size_t off, znp_template_err_kind_t kind, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void template__position(const char *src, size_t len, size_t off, int *line, int *column);

/* pool */
char *template__alloc(state_t *s, size_t off, size_t n);
int template__keep_json(state_t *s, size_t off, json_t *j);
int template__step(state_t *s, size_t off);

/* buffers */
void buf_init(buf_t *b, size_t max);
void buf_add(buf_t *b, const char *p, size_t n);
void buf_addc(buf_t *b, char c);
void buf_addf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int template__buf_finish(state_t *s, size_t off, buf_t *b, value_t *out);

/* values */
value_t template__from_json(json_t *j);
bool template__truth(const value_t *v);
const char *template__type_name(const value_t *v);
int template__print(state_t *s, size_t off, buf_t *b, const value_t *v, unsigned depth);
int template__to_json(state_t *s, size_t off, buf_t *b, const value_t *v, unsigned depth, unsigned indent);
void template__format_float(buf_t *b, double f);
void template__quote(buf_t *b, const char *p, size_t n);
int template__sorted_keys(state_t *s, size_t off, json_t *obj, const char ***out, size_t *n);

/* Validate a printf format: 0, or -1 with *bad_at the offset of an unsupported verb. */
int template__printf_check(const char *fmt, size_t n, size_t *bad_at);

#endif
