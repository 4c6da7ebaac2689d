/*
 * znp_dispatch against an operation table defined here. test_core links only
 * znp_core, so this file also supplies znp_operations and the
 * authentication hook that the auth module provides in the real binary.
 */
#include "core_tests.h"

#include <string.h>

#include "codec_fixtures.h"
#include "core/dispatch.h"

typedef struct echo_response {
    char *title;
    int64_t id;
    char *q;
    int64_t user_id;
    struct {
        znp_presence_t title, id, q, user_id;
    } has;
} echo_response_t;

static const znp_field_t echo_fields[] = {
    {.name = "title",
     .type = ZNP_FT_STRING,
     .flags = ZNP_F_REQUIRED,
     .offset = offsetof(echo_response_t, title),
     .presence_offset = offsetof(echo_response_t, has.title)},
    {.name = "id",
     .type = ZNP_FT_INT64,
     .flags = ZNP_F_REQUIRED,
     .offset = offsetof(echo_response_t, id),
     .presence_offset = offsetof(echo_response_t, has.id)},
    {.name = "q",
     .type = ZNP_FT_STRING,
     .offset = offsetof(echo_response_t, q),
     .presence_offset = offsetof(echo_response_t, has.q)},
    {.name = "user_id",
     .type = ZNP_FT_INT64,
     .flags = ZNP_F_REQUIRED,
     .offset = offsetof(echo_response_t, user_id),
     .presence_offset = offsetof(echo_response_t, has.user_id)},
};

static const znp_schema_t echo_schema = {
    .name = "Echo", .size = sizeof(echo_response_t), .fields = echo_fields, .field_count = 4};

static int invoke_count;

static int invoke_echo(znp_ctx_t *ctx, const void *request, void *response)
{
    const fx_request_t *req = request;
    echo_response_t *resp = response;

    invoke_count++;
    resp->title = req->body.title;
    resp->id = req->id;
    if (req->has.q == ZNP_SET) {
        resp->q = req->q;
        resp->has.q = ZNP_SET;
    }
    resp->user_id = ctx->caller.user_id;
    return 0;
}

static int invoke_conflict(znp_ctx_t *ctx, const void *request, void *response)
{
    (void)request;
    (void)response;
    invoke_count++;
    return znp_error_set(ctx->err, ZNP_E_CONFLICT, "$.title", "title already taken");
}

static int invoke_no_detail(znp_ctx_t *ctx, const void *request, void *response)
{
    (void)ctx;
    (void)request;
    (void)response;
    invoke_count++;
    return ZNP_E_NOT_FOUND;
}

static int invoke_empty(znp_ctx_t *ctx, const void *request, void *response)
{
    (void)ctx;
    (void)request;
    assert_null(response);
    invoke_count++;
    return 0;
}

const znp_operation_t znp_operations[] = {
    {.id = "echo",
     .tag = "test",
     .security = ZNP_SEC_USER,
     .success_status = 200,
     .request = &fx_request_schema,
     .response = &echo_schema,
     .invoke = invoke_echo},
    {.id = "conflict",
     .tag = "test",
     .security = ZNP_SEC_PUBLIC,
     .success_status = 200,
     .request = NULL,
     .response = &echo_schema,
     .invoke = invoke_conflict},
    {.id = "missing",
     .tag = "test",
     .security = ZNP_SEC_ADMIN,
     .success_status = 200,
     .request = NULL,
     .response = &echo_schema,
     .invoke = invoke_no_detail},
    {.id = "empty",
     .tag = "test",
     .security = ZNP_SEC_PUBLIC,
     .success_status = 204,
     .request = &fx_optional_body_request_schema,
     .response = NULL,
     .invoke = invoke_empty},
};
const size_t znp_operation_count = sizeof(znp_operations) / sizeof(znp_operations[0]);

/* accepts "Bearer user" for users and "Bearer admin" for both levels */
int znp_auth_authenticate(znp_ctx_t *ctx, znp_security_t security, const char *authorization)
{
    if (authorization == NULL)
        return znp_error_set(ctx->err, ZNP_E_UNAUTHENTICATED, NULL, NULL);
    if (strcmp(authorization, "Bearer admin") == 0) {
        ctx->caller.user_id = 1;
        return 0;
    }
    if (strcmp(authorization, "Bearer user") == 0) {
        if (security == ZNP_SEC_ADMIN)
            return ZNP_E_FORBIDDEN; /* deliberately without recording detail */
        ctx->caller.user_id = 2;
        return 0;
    }
    return znp_error_set(ctx->err, ZNP_E_TOKEN_INVALID, NULL, NULL);
}

typedef struct fixture {
    znp_arena_t arena;
    znp_error_t err;
    znp_ctx_t ctx;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = test_calloc(1, sizeof(*f));

    znp_arena_init(&f->arena, 1 << 20);
    f->ctx.arena = &f->arena;
    f->ctx.err = &f->err;
    f->ctx.request_id = "req-1";
    f->ctx.client_ip = "";
    invoke_count = 0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    znp_arena_dispose(&f->arena);
    test_free(f);
    return 0;
}

static int dispatch(fixture_t *f, const char *op_id, const char *authorization, const char *query, const char *body,
                    json_t **out)
{
    static const znp_param_t params[] = {{"id", "9"}, {"slug", "s"}};
    znp_call_t call = {
        .path_params = params,
        .path_param_count = 2,
        .query = query,
        .query_len = query != NULL ? strlen(query) : 0,
        .body = body,
        .body_len = body != NULL ? strlen(body) : 0,
        .authorization = authorization,
    };
    const znp_operation_t *op = znp_operation_find(op_id);

    assert_non_null(op);
    return znp_dispatch(&f->ctx, op, &call, out);
}

static void dispatch__operation_find_by_id(void **state)
{
    (void)state;
    assert_ptr_equal(znp_operation_find("echo"), &znp_operations[0]);
    assert_ptr_equal(znp_operation_find("empty"), &znp_operations[3]);
    assert_null(znp_operation_find("ech"));
    assert_null(znp_operation_find(""));
    assert_null(znp_operation_find(NULL));
}

static void dispatch__echo_succeeds(void **state)
{
    fixture_t *f = *state;
    json_t *out = NULL;
    json_t *want = json_pack("{s:s, s:i, s:s, s:i}", "title", "hi", "id", 9, "q", "a b", "user_id", 2);

    assert_int_equal(dispatch(f, "echo", "Bearer user", "q=a+b", "{\"title\": \"hi\"}", &out), 0);
    assert_non_null(out);
    assert_true(json_equal(out, want));
    assert_int_equal(f->err.code, 0);
    assert_int_equal(invoke_count, 1);
    json_decref(out);
    json_decref(want);
}

static void dispatch__authentication_checked(void **state)
{
    fixture_t *f = *state;
    json_t *out = NULL;

    assert_int_equal(dispatch(f, "echo", NULL, NULL, "{\"title\": \"hi\"}", &out), ZNP_E_UNAUTHENTICATED);
    assert_int_equal(dispatch(f, "echo", "Bearer nope", NULL, "{\"title\": \"hi\"}", &out), ZNP_E_TOKEN_INVALID);
    assert_int_equal(f->err.code, ZNP_E_TOKEN_INVALID);
    assert_int_equal(dispatch(f, "missing", "Bearer user", NULL, NULL, &out), ZNP_E_FORBIDDEN);
    assert_int_equal(f->err.code, ZNP_E_FORBIDDEN); /* filled in by dispatch */
    assert_null(out);
    assert_int_equal(invoke_count, 0);
    assert_int_equal(dispatch(f, "missing", "Bearer admin", NULL, NULL, &out), ZNP_E_NOT_FOUND);
    assert_int_equal(f->err.code, ZNP_E_NOT_FOUND);
    assert_int_equal(invoke_count, 1);
}

static void dispatch__bad_input_rejected(void **state)
{
    fixture_t *f = *state;
    json_t *out = NULL;

    assert_int_equal(dispatch(f, "echo", "Bearer user", NULL, NULL, &out), ZNP_E_BODY_REQUIRED);
    assert_int_equal(dispatch(f, "echo", "Bearer user", NULL, "", &out), ZNP_E_BODY_REQUIRED);
    assert_int_equal(dispatch(f, "echo", "Bearer user", NULL, "{\"title\": ", &out), ZNP_E_INVALID_JSON);
    assert_int_equal(dispatch(f, "echo", "Bearer user", NULL, "{\"title\": \"\xc0\xaf\"}", &out), ZNP_E_INVALID_UTF8);
    assert_int_equal(dispatch(f, "echo", "Bearer user", NULL, "{\"title\": 1}", &out), ZNP_E_VALIDATION_FAILED);
    assert_string_equal(f->err.path, "$.title");
    assert_int_equal(dispatch(f, "echo", "Bearer user", "q=%zz", "{\"title\": \"x\"}", &out), ZNP_E_VALIDATION_FAILED);
    assert_string_equal(f->err.path, "q");
    assert_null(out);
    assert_int_equal(invoke_count, 0);
}

static void dispatch__operation_error_returned(void **state)
{
    fixture_t *f = *state;
    json_t *out = NULL;

    assert_int_equal(dispatch(f, "conflict", NULL, NULL, NULL, &out), ZNP_E_CONFLICT);
    assert_null(out);
    assert_string_equal(f->err.detail, "title already taken");
}

static void dispatch__no_content_without_body(void **state)
{
    fixture_t *f = *state;
    json_t *out = (json_t *)f;

    assert_int_equal(dispatch(f, "empty", NULL, NULL, NULL, &out), 0);
    assert_null(out);
    /* an optional body that is sent must still be valid */
    assert_int_equal(dispatch(f, "empty", NULL, NULL, "{\"title\": 3}", &out), ZNP_E_VALIDATION_FAILED);
    /* a body sent to an operation that takes none is not parsed */
    assert_int_equal(dispatch(f, "conflict", NULL, NULL, "not json", &out), ZNP_E_CONFLICT);
}

static void dispatch__error_body_shaped(void **state)
{
    znp_error_t detail = {0};
    json_t *body, *want;

    (void)state;
    znp_error_set(&detail, ZNP_E_VALIDATION_FAILED, "$.name", "must be at most %d characters", 64);
    body = znp_dispatch_error_body(ZNP_E_VALIDATION_FAILED, &detail, ZNP_LOCALE_EN, "abc");
    want = json_pack("{s:i, s:s, s:s, s:[{s:s, s:s}], s:s}", "code", 400002, "error", "validation_failed", "message",
                     "request failed validation", "details", "field", "$.name", "message",
                     "must be at most 64 characters", "request_id", "abc");
    assert_true(json_equal(body, want));
    json_decref(body);
    json_decref(want);

    /* localized message, English detail */
    body = znp_dispatch_error_body(ZNP_E_VALIDATION_FAILED, &detail, ZNP_LOCALE_ZH_CN, "abc");
    assert_string_equal(json_string_value(json_object_get(body, "message")), "请求参数校验失败");
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(body, "details"), 0), "message")),
        "must be at most 64 characters");
    json_decref(body);

    /* no detail: empty array; no request id: null */
    body = znp_dispatch_error_body(ZNP_E_NOT_FOUND, NULL, ZNP_LOCALE_EN, NULL);
    want = json_pack("{s:i, s:s, s:s, s:[], s:n}", "code", 404002, "error", "not_found", "message",
                     "resource not found", "details", "request_id");
    assert_true(json_equal(body, want));
    json_decref(body);
    json_decref(want);

    /* detail recorded for another error is not shown */
    body = znp_dispatch_error_body(ZNP_E_INTERNAL, &detail, ZNP_LOCALE_EN, "r");
    assert_int_equal(json_array_size(json_object_get(body, "details")), 0);
    json_decref(body);

    /* unknown error values become the internal error */
    body = znp_dispatch_error_body(-9999, NULL, ZNP_LOCALE_EN, "r");
    assert_int_equal(json_integer_value(json_object_get(body, "code")), 500000);
    assert_string_equal(json_string_value(json_object_get(body, "error")), "internal");
    json_decref(body);
}

int run_dispatch_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dispatch__operation_find_by_id),
        cmocka_unit_test_setup_teardown(dispatch__echo_succeeds, setup, teardown),
        cmocka_unit_test_setup_teardown(dispatch__authentication_checked, setup, teardown),
        cmocka_unit_test_setup_teardown(dispatch__bad_input_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(dispatch__operation_error_returned, setup, teardown),
        cmocka_unit_test_setup_teardown(dispatch__no_content_without_body, setup, teardown),
        cmocka_unit_test(dispatch__error_body_shaped),
    };
    return cmocka_run_group_tests_name("dispatch", tests, NULL, NULL);
}
