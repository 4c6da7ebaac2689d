#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <regex.h>
#include <stdio.h>
#include <string.h>

#include "core/router.h"
#include "schemas.gen.h"

/* a table written for the tests: overlapping templates, listed in an order that must not matter */

static const znp_segment_t seg_ping[] = {{ZNP_SEG_STATIC, "api"}, {ZNP_SEG_STATIC, "v1"}, {ZNP_SEG_STATIC, "ping"}};
static const znp_segment_t seg_user[] = {
    {ZNP_SEG_STATIC, "api"}, {ZNP_SEG_STATIC, "v1"}, {ZNP_SEG_STATIC, "users"}, {ZNP_SEG_PARAM, "id"}};
static const znp_segment_t seg_me[] = {
    {ZNP_SEG_STATIC, "api"}, {ZNP_SEG_STATIC, "v1"}, {ZNP_SEG_STATIC, "users"}, {ZNP_SEG_STATIC, "me"}};
static const znp_segment_t seg_order[] = {{ZNP_SEG_STATIC, "api"},    {ZNP_SEG_STATIC, "v1"},
                                          {ZNP_SEG_STATIC, "users"},  {ZNP_SEG_PARAM, "id"},
                                          {ZNP_SEG_STATIC, "orders"}, {ZNP_SEG_PARAM, "order_id"}};
static const znp_segment_t seg_any_static[] = {
    {ZNP_SEG_STATIC, "api"}, {ZNP_SEG_STATIC, "v1"}, {ZNP_SEG_PARAM, "kind"}, {ZNP_SEG_STATIC, "static"}};
static const znp_segment_t seg_admin_users[] = {
    {ZNP_SEG_STATIC, "api"}, {ZNP_SEG_STATIC, "v1"}, {ZNP_SEG_ADMIN_PREFIX, "admin"}, {ZNP_SEG_STATIC, "users"}};
static const znp_segment_t seg_admin_user[] = {{ZNP_SEG_STATIC, "api"},
                                               {ZNP_SEG_STATIC, "v1"},
                                               {ZNP_SEG_ADMIN_PREFIX, "admin"},
                                               {ZNP_SEG_STATIC, "users"},
                                               {ZNP_SEG_PARAM, "id"}};
static const znp_segment_t seg_file[] = {{ZNP_SEG_STATIC, "files"}, {ZNP_SEG_PARAM, "name"}};

#define ROUTE(m, p, segs)                                                                                              \
    {                                                                                                                  \
        .method = m, .path = p, .segments = segs, .segment_count = sizeof(segs) / sizeof(segs[0])                      \
    }

static const znp_route_t test_routes[] = {
    {.method = "GET", .path = "/", .segments = NULL, .segment_count = 0},
    ROUTE("GET", "/api/v1/ping", seg_ping),
    ROUTE("GET", "/api/v1/users/{id}", seg_user),
    ROUTE("PATCH", "/api/v1/users/{id}", seg_user),
    ROUTE("DELETE", "/api/v1/users/{id}", seg_user),
    ROUTE("GET", "/api/v1/{kind}/static", seg_any_static),
    ROUTE("GET", "/api/v1/users/me", seg_me),
    ROUTE("GET", "/api/v1/users/{id}/orders/{order_id}", seg_order),
    ROUTE("GET", "/api/v1/{admin}/users/{id}", seg_admin_user),
    ROUTE("GET", "/api/v1/{admin}/users", seg_admin_users),
    ROUTE("POST", "/api/v1/{admin}/users", seg_admin_users),
    ROUTE("GET", "/files/{name}", seg_file),
    ROUTE("HEAD", "/files/{name}", seg_file),
};
static const size_t test_route_count = sizeof(test_routes) / sizeof(test_routes[0]);

typedef struct route_case {
    const char *method;
    const char *path;
    const char *prefix;
    int expected;
    const char *template_path; /* matched route, or NULL */
    const char *route_method;  /* method of the matched route, or NULL for `method` */
    const char *params;        /* "name=value;name=value" of the match, or the Allow list for 405 */
} route_case_t;

static void format_params(char *out, size_t size, const znp_route_match_t *m)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < m->param_count; i++) {
        int n = snprintf(out + used, size - used, "%s%s=%s", i > 0 ? ";" : "", m->params[i].name, m->params[i].value);
        if (n < 0 || (size_t)n >= size - used)
            return;
        used += (size_t)n;
    }
}

static void run_cases(const znp_route_t *routes, size_t route_count, const route_case_t *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const route_case_t *c = &cases[i];
        znp_route_match_t m;
        char params[512];
        int rc;

        memset(&m, 0x5a, sizeof(m));
        rc = znp_router_match(&m, routes, route_count, c->method, c->path, strlen(c->path), c->prefix);
        if (rc != c->expected)
            fail_msg("%s %s (prefix %s): rc %d, expected %d", c->method, c->path, c->prefix, rc, c->expected);
        if (rc == ZNP_E_METHOD_NOT_ALLOWED) {
            if (strcmp(m.allow, c->params) != 0)
                fail_msg("%s %s: Allow \"%s\", expected \"%s\"", c->method, c->path, m.allow, c->params);
            continue;
        }
        if (rc != 0) {
            if (m.route != NULL)
                fail_msg("%s %s: route set on failure", c->method, c->path);
            continue;
        }
        if (strcmp(m.route->path, c->template_path) != 0)
            fail_msg("%s %s: matched %s, expected %s", c->method, c->path, m.route->path, c->template_path);
        if (strcmp(m.route->method, c->route_method != NULL ? c->route_method : c->method) != 0)
            fail_msg("%s %s: matched method %s", c->method, c->path, m.route->method);
        format_params(params, sizeof(params), &m);
        if (c->params != NULL && strcmp(params, c->params) != 0)
            fail_msg("%s %s: params \"%s\", expected \"%s\"", c->method, c->path, params, c->params);
    }
}

#define RUN(routes, count, cases) run_cases(routes, count, cases, sizeof(cases) / sizeof(cases[0]))
#define NOT_FOUND(method, path)                                                                                        \
    {                                                                                                                  \
        method, path, "admin", ZNP_E_ROUTE_NOT_FOUND, NULL, NULL, NULL                                                 \
    }
#define INVALID(method, path)                                                                                          \
    {                                                                                                                  \
        method, path, "admin", ZNP_E_VALIDATION_FAILED, NULL, NULL, NULL                                               \
    }
#define NOT_ALLOWED(method, path, allow)                                                                               \
    {                                                                                                                  \
        method, path, "admin", ZNP_E_METHOD_NOT_ALLOWED, NULL, NULL, allow                                             \
    }

static void router__test_table_matches(void **state)
{
    static const route_case_t cases[] = {
        {"GET", "/", "admin", 0, "/", NULL, ""},
        {"GET", "/api/v1/ping", "admin", 0, "/api/v1/ping", NULL, ""},
        {"HEAD", "/api/v1/ping", "admin", 0, "/api/v1/ping", "GET", ""},
        {"GET", "/api/v1/p%69ng", "admin", 0, "/api/v1/ping", NULL, ""},
        NOT_FOUND("GET", "/api/v1/ping/"),
        NOT_FOUND("GET", "//api/v1/ping"),
        NOT_FOUND("GET", "/api//v1/ping"),
        NOT_FOUND("GET", "/api/v1/PING"),
        NOT_FOUND("GET", "/api/v1/ping/x"),
        NOT_FOUND("GET", "/api/v1"),
        NOT_FOUND("GET", ""),
        NOT_FOUND("GET", "api/v1/ping"),
        NOT_FOUND("GET", "*"),
        NOT_ALLOWED("get", "/api/v1/ping", "GET, HEAD"), /* methods are case-sensitive */
        NOT_ALLOWED("POST", "/api/v1/ping", "GET, HEAD"),
        NOT_ALLOWED("POST", "/", "GET, HEAD"),
        /* static beats parameter although {id} is listed first */
        {"GET", "/api/v1/users/me", "admin", 0, "/api/v1/users/me", NULL, ""},
        {"GET", "/api/v1/users/42", "admin", 0, "/api/v1/users/{id}", NULL, "id=42"},
        {"PATCH", "/api/v1/users/42", "admin", 0, "/api/v1/users/{id}", NULL, "id=42"},
        /* "me" has no DELETE of its own, so the parameter route takes it */
        {"DELETE", "/api/v1/users/me", "admin", 0, "/api/v1/users/{id}", NULL, "id=me"},
        NOT_ALLOWED("PUT", "/api/v1/users/42", "DELETE, GET, HEAD, PATCH"),
        NOT_ALLOWED("PUT", "/api/v1/users/me", "DELETE, GET, HEAD, PATCH"),
        NOT_ALLOWED("POST", "/api/v1/users/static", "DELETE, GET, HEAD, PATCH"),
        /* position by position: "users" (static) at position 3 beats {kind} */
        {"GET", "/api/v1/users/static", "admin", 0, "/api/v1/users/{id}", NULL, "id=static"},
        {"GET", "/api/v1/things/static", "admin", 0, "/api/v1/{kind}/static", NULL, "kind=things"},
        {"GET", "/api/v1/users/7/orders/9", "admin", 0, "/api/v1/users/{id}/orders/{order_id}", NULL,
         "id=7;order_id=9"},
        NOT_FOUND("GET", "/api/v1/users/7/orders/"),
        NOT_FOUND("GET", "/api/v1/users/"),
        NOT_FOUND("GET", "/api/v1/users//orders/9"),
        /* parameters are decoded after splitting */
        {"GET", "/api/v1/users/a%2Fb", "admin", 0, "/api/v1/users/{id}", NULL, "id=a/b"},
        {"GET", "/api/v1/users/%E4%B8%AD%e6%96%87", "admin", 0, "/api/v1/users/{id}", NULL,
         "id=\xe4\xb8\xad\xe6\x96\x87"},
        {"GET", "/api/v1/users/a+b%20c", "admin", 0, "/api/v1/users/{id}", NULL, "id=a+b c"},
        {"GET", "/api/v1/users/%2e%2e", "admin", 0, "/api/v1/users/{id}", NULL, "id=.."},
        INVALID("GET", "/api/v1/users/%zz"),
        INVALID("GET", "/api/v1/users/%4"),
        INVALID("GET", "/api/v1/users/100%"),
        INVALID("GET", "/api/v1/users/%C3"),
        INVALID("GET", "/api/v1/users/%C0%AF"),
        INVALID("GET", "/api/v1/users/%ED%A0%80"),
        INVALID("GET", "/api/v1/users/\xff"),
        INVALID("GET", "/api/v1/users/a%00b"),
        /* admin prefix */
        {"GET", "/api/v1/admin/users", "admin", 0, "/api/v1/{admin}/users", NULL, "admin=admin"},
        {"POST", "/api/v1/admin/users", "admin", 0, "/api/v1/{admin}/users", NULL, "admin=admin"},
        {"GET", "/api/v1/admin/users/5", "admin", 0, "/api/v1/{admin}/users/{id}", NULL, "admin=admin;id=5"},
        NOT_ALLOWED("DELETE", "/api/v1/admin/users", "GET, HEAD, POST"),
        {"GET", "/api/v1/console-7f3a/users", "console-7f3a", 0, "/api/v1/{admin}/users", NULL, "admin=console-7f3a"},
        {"GET", "/api/v1/admin/users", "console-7f3a", ZNP_E_ROUTE_NOT_FOUND, NULL, NULL, NULL},
        {"GET", "/api/v1/Admin/users", "admin", ZNP_E_ROUTE_NOT_FOUND, NULL, NULL, NULL},
        {"GET", "/api/v1/admin/users", NULL, ZNP_E_ROUTE_NOT_FOUND, NULL, NULL, NULL},
        {"GET", "/api/v1/admin/users", "", ZNP_E_ROUTE_NOT_FOUND, NULL, NULL, NULL},
        {"GET", "/api/v1/a/b/users", "a/b", ZNP_E_ROUTE_NOT_FOUND, NULL, NULL, NULL},
        /* the prefix counts as a literal: with prefix "users", {admin}/users beats users/{id} at the last segment */
        {"GET", "/api/v1/users/users", "users", 0, "/api/v1/{admin}/users", NULL, "admin=users"},
        /* an explicit HEAD route wins over GET for HEAD; Allow lists HEAD once */
        {"HEAD", "/files/a.txt", "admin", 0, "/files/{name}", "HEAD", "name=a.txt"},
        {"GET", "/files/a.txt", "admin", 0, "/files/{name}", "GET", "name=a.txt"},
        NOT_ALLOWED("PUT", "/files/a.txt", "GET, HEAD"),
    };

    (void)state;
    RUN(test_routes, test_route_count, cases);
}

static void router__path_length_respected(void **state)
{
    const char *raw = "/api/v1/ping?x=1";
    znp_route_match_t m;

    (void)state;
    assert_int_equal(znp_router_match(&m, test_routes, test_route_count, "GET", raw, 12, "admin"), 0);
    assert_string_equal(m.route->path, "/api/v1/ping");
    assert_int_equal(znp_router_match(&m, test_routes, test_route_count, "GET", raw, 11, "admin"),
                     ZNP_E_ROUTE_NOT_FOUND);
}

static void router__long_paths_rejected(void **state)
{
    char path[4096];
    znp_route_match_t m;
    size_t n;

    (void)state;
    /* one parameter longer than the decode buffer */
    n = (size_t)snprintf(path, sizeof(path), "/api/v1/users/");
    memset(path + n, 'x', 1100);
    path[n + 1100] = '\0';
    assert_int_equal(znp_router_match(&m, test_routes, test_route_count, "GET", path, strlen(path), "admin"),
                     ZNP_E_URI_TOO_LONG);

    /* a parameter that fits exactly */
    n = (size_t)snprintf(path, sizeof(path), "/api/v1/users/");
    memset(path + n, 'y', 1000);
    path[n + 1000] = '\0';
    assert_int_equal(znp_router_match(&m, test_routes, test_route_count, "GET", path, strlen(path), "admin"), 0);
    assert_int_equal(strlen(m.params[0].value), 1000);

    /* more segments than any route */
    for (int i = 0; i < 40; i++)
        memcpy(path + i * 2, "/a", 2);
    path[80] = '\0';
    assert_int_equal(znp_router_match(&m, test_routes, test_route_count, "GET", path, strlen(path), "admin"),
                     ZNP_E_ROUTE_NOT_FOUND);
}

static void router__empty_table_not_found(void **state)
{
    znp_route_match_t m;

    (void)state;
    assert_int_equal(znp_router_match(&m, NULL, 0, "GET", "/", 1, "admin"), ZNP_E_ROUTE_NOT_FOUND);
    assert_null(m.route);
}

/* the generated table */

static void router__generated_table_matches(void **state)
{
    static const route_case_t cases[] = {
        {"GET", "/", "admin", 0, "/", NULL, ""},
        {"HEAD", "/", "admin", 0, "/", "GET", ""},
        {"GET", "/api/v1/ping", "admin", 0, "/api/v1/ping", NULL, ""},
        {"HEAD", "/api/v1/ping", "admin", 0, "/api/v1/ping", "GET", ""},
        NOT_FOUND("GET", "/api/v1/ping/"),
        NOT_FOUND("GET", "/api/v1/nope"),
        NOT_ALLOWED("DELETE", "/api/v1/ping", "GET, HEAD"),
        {"POST", "/api/v1/auth/login", "admin", 0, "/api/v1/auth/login", NULL, ""},
        NOT_ALLOWED("GET", "/api/v1/auth/login", "POST"),
        {"GET", "/api/v1/admin/site-settings", "admin", 0, "/api/v1/{admin}/site-settings", NULL, NULL},
        {"PATCH", "/api/v1/admin/site-settings", "admin", 0, "/api/v1/{admin}/site-settings", NULL, NULL},
        NOT_ALLOWED("PUT", "/api/v1/admin/site-settings", "GET, HEAD, PATCH"),
        {"GET", "/api/v1/ops-7f3a/site-settings", "ops-7f3a", 0, "/api/v1/{admin}/site-settings", NULL, NULL},
        {"GET", "/api/v1/admin/site-settings", "ops-7f3a", ZNP_E_ROUTE_NOT_FOUND, NULL, NULL, NULL},
        {"GET", "/api/v1/site-settings", "admin", ZNP_E_ROUTE_NOT_FOUND, NULL, NULL, NULL},
    };

    (void)state;
    RUN(znp_routes, znp_route_count, cases);
}

/* Every generated route is reachable through a path built from its own template. */
static void router__generated_routes_reachable(void **state)
{
    (void)state;
    assert_true(znp_route_count > 0);
    for (size_t i = 0; i < znp_route_count; i++) {
        const znp_route_t *r = &znp_routes[i];
        char path[512] = "";
        size_t used = 0;
        znp_route_match_t m;
        int rc;

        for (size_t k = 0; k < r->segment_count; k++) {
            const znp_segment_t *s = &r->segments[k];
            const char *text = s->text;

            if (s->kind == ZNP_SEG_ADMIN_PREFIX)
                text = "panel";
            else if (s->kind == ZNP_SEG_PARAM)
                text = "p1";
            used += (size_t)snprintf(path + used, sizeof(path) - used, "/%s", text);
        }
        if (r->segment_count == 0)
            snprintf(path, sizeof(path), "/");

        rc = znp_router_match(&m, znp_routes, znp_route_count, r->method, path, strlen(path), "panel");
        if (rc != 0)
            fail_msg("%s %s (from %s): rc %d", r->method, path, r->path, rc);
        if (strcmp(m.route->method, r->method) != 0)
            fail_msg("%s %s: matched method %s", r->method, path, m.route->method);
        assert_non_null(m.route->operation);
        assert_non_null(m.route->operation->invoke);
        if (strchr(r->path, '{') == NULL && m.route != r)
            fail_msg("%s %s: matched %s", r->method, path, m.route->path);
    }
}

/* The index gives the same result as the plain table for every route path, method and a few wrong paths. */
static void router__index_matches_plain_table(void **state)
{
    static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    static const char *const extra[] = {"/", "/api", "/api/v1", "/api/v1/nope", "/api/v1/ping/", "//", "/api/v1/%zz"};
    znp_router_index_t *index = malloc(sizeof(*index));
    size_t checked = 0;

    (void)state;
    assert_non_null(index);
    assert_int_equal(znp_router_index_init(index, znp_routes, znp_route_count), 0);
    for (size_t i = 0; i < znp_route_count + sizeof(extra) / sizeof(extra[0]); i++) {
        char path[512] = "";
        size_t used = 0;

        if (i < znp_route_count) {
            const znp_route_t *r = &znp_routes[i];

            for (size_t k = 0; k < r->segment_count; k++) {
                const znp_segment_t *seg = &r->segments[k];
                const char *text = seg->text;

                if (seg->kind == ZNP_SEG_ADMIN_PREFIX)
                    text = "panel";
                else if (seg->kind == ZNP_SEG_PARAM)
                    text = "p1";

                used += (size_t)snprintf(path + used, sizeof(path) - used, "/%s", text);
            }
            if (r->segment_count == 0)
                snprintf(path, sizeof(path), "/");
        } else {
            snprintf(path, sizeof(path), "%s", extra[i - znp_route_count]);
        }
        for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++) {
            znp_route_match_t plain, indexed;
            int rc_plain = znp_router_match(&plain, znp_routes, znp_route_count, methods[k], path, strlen(path), "panel");
            int rc_indexed = znp_router_match_indexed(&indexed, index, methods[k], path, strlen(path), "panel");

            if (rc_plain != rc_indexed || plain.route != indexed.route || strcmp(plain.allow, indexed.allow) != 0 ||
                plain.param_count != indexed.param_count)
                fail_msg("%s %s: plain rc %d route %p allow \"%s\", indexed rc %d route %p allow \"%s\"", methods[k],
                         path, rc_plain, (const void *)plain.route, plain.allow, rc_indexed,
                         (const void *)indexed.route, indexed.allow);
            checked++;
        }
    }
    assert_true(checked > znp_route_count * 7);
    free(index);
}

/* The same with each segment of each route replaced by every literal of the table and by the admin prefix. */
static void router__index_matches_swapped_literals(void **state)
{
    static const char *const methods[] = {"GET", "DELETE"};
    const char *literals[512];
    size_t literal_count = 0, checked = 0;
    znp_router_index_t *index = malloc(sizeof(*index));

    (void)state;
    assert_non_null(index);
    assert_int_equal(znp_router_index_init(index, znp_routes, znp_route_count), 0);
    literals[literal_count++] = "panel";
    for (size_t i = 0; i < znp_route_count; i++) {
        for (size_t k = 0; k < znp_routes[i].segment_count; k++) {
            if (znp_routes[i].segments[k].kind == ZNP_SEG_STATIC && literal_count < 512)
                literals[literal_count++] = znp_routes[i].segments[k].text;
        }
    }
    for (size_t i = 0; i < znp_route_count; i++) {
        const znp_route_t *r = &znp_routes[i];

        for (size_t swap = 0; swap < r->segment_count; swap++) {
            for (size_t l = 0; l < literal_count; l++) {
                char path[512] = "";
                size_t used = 0;

                for (size_t k = 0; k < r->segment_count; k++) {
                    const znp_segment_t *seg = &r->segments[k];
                    const char *text = seg->kind == ZNP_SEG_ADMIN_PREFIX ? "panel"
                                       : seg->kind == ZNP_SEG_PARAM      ? "p1"
                                                                         : seg->text;

                    used += (size_t)snprintf(path + used, sizeof(path) - used, "/%s", k == swap ? literals[l] : text);
                }
                for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++) {
                    znp_route_match_t plain, indexed;
                    int rc_plain =
                        znp_router_match(&plain, znp_routes, znp_route_count, methods[k], path, strlen(path), "panel");
                    int rc_indexed = znp_router_match_indexed(&indexed, index, methods[k], path, strlen(path), "panel");

                    if (rc_plain != rc_indexed || plain.route != indexed.route ||
                        strcmp(plain.allow, indexed.allow) != 0)
                        fail_msg("%s %s: plain rc %d allow \"%s\", indexed rc %d allow \"%s\"", methods[k], path,
                                 rc_plain, plain.allow, rc_indexed, indexed.allow);
                    checked += rc_plain == 0;
                }
            }
        }
    }
    /* every route's own path comes back among the swaps, so some of them match */
    assert_true(checked >= znp_route_count);
    free(index);
}

static void router__index_rejects_oversized_tables(void **state)
{
    znp_router_index_t *index = malloc(sizeof(*index));

    (void)state;
    assert_non_null(index);
    assert_int_equal(znp_router_index_init(index, znp_routes, ZNP_ROUTER_INDEX_MAX + 1), ZNP_E_INTERNAL);
    free(index);
}

static void router__generated_operations_consistent(void **state)
{
    (void)state;
    for (size_t i = 0; i < znp_operation_count; i++) {
        const znp_operation_t *op = &znp_operations[i];
        assert_ptr_equal(znp_operation_find(op->id), op);
        assert_true(op->success_status == 200 || op->success_status == 201 || op->success_status == 204);
        assert_true((op->response == NULL) == (op->success_status == 204));
        if (i > 0 && strcmp(znp_operations[i - 1].id, op->id) >= 0)
            fail_msg("operations not sorted or duplicated at %s", op->id);
    }
    for (size_t i = 0; i < znp_route_count; i++) {
        const znp_operation_t *op = znp_routes[i].operation;
        assert_true(op >= znp_operations && op < znp_operations + znp_operation_count);
    }
    assert_null(znp_operation_find("no_such_operation"));
}

/* Check every pattern reachable from `schema` with regcomp, as the codec compiles them. Returns the count. */
static size_t check_patterns(const znp_schema_t *schema, int depth)
{
    size_t count = 0;

    if (schema == NULL || depth > 16)
        return 0;
    for (size_t i = 0; i < schema->field_count; i++) {
        const znp_field_t *f = &schema->fields[i];
        if (f->pattern != NULL) {
            regex_t re;
            if (regcomp(&re, f->pattern, REG_EXTENDED | REG_NOSUB) != 0)
                fail_msg("%s.%s: pattern %s is not a POSIX extended regular expression", schema->name, f->name,
                         f->pattern);
            regfree(&re);
            count++;
        }
        count += check_patterns(f->schema, depth + 1);
        if (f->items != NULL)
            count += check_patterns(f->items->schema, depth + 1);
    }
    return count;
}

static void router__generated_patterns_compile(void **state)
{
    size_t count = 0;

    (void)state;
    for (size_t i = 0; i < znp_operation_count; i++) {
        count += check_patterns(znp_operations[i].request, 0);
        count += check_patterns(znp_operations[i].response, 0);
    }
    assert_true(count > 0);
}

typedef struct settings_case {
    const char *body;
    int expected;
    const char *path;
} settings_case_t;

/* the codec against a generated request schema: PATCH semantics and the spec's POSIX patterns */
static void router__generated_schema_decodes(void **state)
{
    static const settings_case_t cases[] = {
        {"{}", 0, NULL},
        {"{\"name\": null, \"logo_url\": \"https://cdn.example.com/logo.png\"}", 0, NULL},
        {"{\"logo_url\": \"\"}", 0, NULL},
        {"{\"service_domain\": \"panel.example.com:8443/base\"}", 0, NULL},
        {"{\"subscription_domain\": \"https://sub.example.com\"}", 0, NULL},
        {"{\"logo_url\": \"ftp://example.com/logo.png\"}", ZNP_E_VALIDATION_FAILED, "$.logo_url"},
        {"{\"logo_url\": \"https://example.com/a b.png\"}", ZNP_E_VALIDATION_FAILED, "$.logo_url"},
        {"{\"service_domain\": \"panel example.com\"}", ZNP_E_VALIDATION_FAILED, "$.service_domain"},
        {"{\"name\": 5}", ZNP_E_VALIDATION_FAILED, "$.name"},
        {"[]", ZNP_E_VALIDATION_FAILED, "$"},
    };
    const znp_operation_t *op = znp_operation_find("update_site_settings");

    (void)state;
    assert_non_null(op);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_update_site_settings_request_t req;
        znp_arena_t arena;
        znp_error_t err = {0};
        json_t *body = NULL;
        int rc;

        memset(&req, 0, sizeof(req));
        znp_arena_init(&arena, 0);
        assert_int_equal(znp_codec_load(&body, cases[i].body, strlen(cases[i].body), &err), 0);
        rc = znp_codec_parse_request(op->request, NULL, 0, NULL, 0, body, &req, &arena, &err);
        if (rc != cases[i].expected)
            fail_msg("%s: rc %d (%s %s)", cases[i].body, rc, err.path, err.detail);
        if (rc != 0 && strcmp(err.path, cases[i].path) != 0)
            fail_msg("%s: path %s", cases[i].body, err.path);
        if (i == 1) {
            assert_int_equal(req.body.has.name, ZNP_NULL);
            assert_int_equal(req.body.has.logo_url, ZNP_SET);
            assert_int_equal(req.body.has.service_domain, ZNP_ABSENT);
            assert_string_equal(req.body.logo_url, "https://cdn.example.com/logo.png");
        }
        json_decref(body);
        znp_arena_dispose(&arena);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(router__test_table_matches),
        cmocka_unit_test(router__path_length_respected),
        cmocka_unit_test(router__long_paths_rejected),
        cmocka_unit_test(router__empty_table_not_found),
        cmocka_unit_test(router__generated_table_matches),
        cmocka_unit_test(router__generated_routes_reachable),
        cmocka_unit_test(router__index_matches_plain_table),
        cmocka_unit_test(router__index_matches_swapped_literals),
        cmocka_unit_test(router__index_rejects_oversized_tables),
        cmocka_unit_test(router__generated_operations_consistent),
        cmocka_unit_test(router__generated_patterns_compile),
        cmocka_unit_test(router__generated_schema_decodes),
    };
    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
