#include "core_tests.h"

#include <string.h>

#include "codec_fixtures.h"

typedef struct request_case {
    const char *name;
    const char *id; /* path parameter values */
    const char *slug;
    const char *query; /* raw query string, NULL for none */
    const char *body;  /* JSON text, NULL for no body */
    int expected;
    const char *path;   /* expected err.path when failing */
    const char *detail; /* expected err.detail when failing */
} request_case_t;

static int parse_request(const request_case_t *c, fx_request_t *out, znp_arena_t *arena, znp_error_t *err)
{
    znp_param_t params[2] = {{"id", c->id}, {"slug", c->slug}};
    size_t param_count = c->id != NULL ? 2 : 0;
    json_t *body = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    znp_error_clear(err);
    if (c->body != NULL) {
        rc = znp_codec_load(&body, c->body, strlen(c->body), err);
        if (rc != 0)
            return rc;
    }
    rc = znp_codec_parse_request(&fx_request_schema, params, param_count, c->query,
                                 c->query != NULL ? strlen(c->query) : 0, body, out, arena, err);
    json_decref(body);
    return rc;
}

#define BODY "{\"title\": \"t\"}"
#define Q_OK(name, query)                                                                                              \
    {                                                                                                                  \
        name, "7", "a-b", query, BODY, 0, NULL, NULL                                                                   \
    }
#define Q_BAD(name, query, path, detail)                                                                               \
    {                                                                                                                  \
        name, "7", "a-b", query, BODY, ZNP_E_VALIDATION_FAILED, path, detail                                           \
    }

static void codec__request_table_matches(void **state)
{
    static const request_case_t cases[] = {
        Q_OK("no query", NULL),
        Q_OK("empty query", ""),
        Q_OK("stray separators", "&&q=x&&"),
        Q_OK("unknown keys ignored", "unknown=1&other"),
        Q_OK("all parameters", "q=abc&page=2&per_page=100&active=true&min_score=2.5&tag=a&tag=b&status=open&after=-3"),
        Q_OK("boolean 1", "active=1"),
        Q_OK("boolean 0", "active=0"),
        Q_OK("boolean false", "active=false"),
        Q_BAD("boolean yes", "active=yes", "active", "must be a boolean (true, false, 1 or 0)"),
        Q_BAD("boolean TRUE", "active=TRUE", "active", "must be a boolean (true, false, 1 or 0)"),
        Q_BAD("boolean empty", "active=", "active", "must be a boolean (true, false, 1 or 0)"),
        Q_BAD("boolean without value", "active", "active", "must be a boolean (true, false, 1 or 0)"),
        Q_OK("integer leading zeros", "page=007"),
        Q_OK("negative integer", "after=-9223372036854775808"),
        Q_OK("int64 max", "after=9223372036854775807"),
        Q_BAD("int64 max plus one", "after=9223372036854775808", "after", "must be an integer"),
        Q_BAD("int64 min minus one", "after=-9223372036854775809", "after", "must be an integer"),
        Q_BAD("integer real", "page=1.0", "page", "must be an integer between 1 and 1000"),
        Q_BAD("integer exponent", "page=1e2", "page", "must be an integer between 1 and 1000"),
        Q_BAD("integer plus sign", "page=%2B1", "page", "must be an integer between 1 and 1000"),
        Q_BAD("integer plus as space", "page=+1", "page", "must be an integer between 1 and 1000"),
        Q_BAD("integer hex", "page=0x10", "page", "must be an integer between 1 and 1000"),
        Q_BAD("integer trailing text", "page=12abc", "page", "must be an integer between 1 and 1000"),
        Q_BAD("integer empty", "page=", "page", "must be an integer between 1 and 1000"),
        Q_BAD("integer minus only", "after=-", "after", "must be an integer"),
        Q_BAD("integer below range", "page=0", "page", "must be an integer between 1 and 1000"),
        Q_BAD("integer above range", "per_page=101", "per_page", "must be an integer between 1 and 100"),
        Q_BAD("repeated scalar", "page=1&page=2", "page", "must be given at most once"),
        Q_BAD("repeated identical scalar", "q=a&q=a", "q", "must be given at most once"),
        Q_OK("number integer form", "min_score=10"),
        Q_BAD("number above range", "min_score=10.5", "min_score", "must be a number between 0 and 10"),
        Q_BAD("number text", "min_score=abc", "min_score", "must be a number"),
        Q_BAD("number inf", "min_score=inf", "min_score", "must be a number"),
        Q_BAD("number nan", "min_score=nan", "min_score", "must be a number"),
        Q_BAD("number hex", "min_score=0x1", "min_score", "must be a number"),
        Q_BAD("number leading dot", "min_score=.5", "min_score", "must be a number"),
        Q_OK("string plus is space", "q=a+b"),
        Q_OK("string percent", "q=%E4%B8%AD%e6%96%87"),
        Q_BAD("string length in code points",
              "q=%E4%B8%AD%E4%B8%AD%E4%B8%AD%E4%B8%AD%E4%B8%AD%E4%B8%AD%E4%B8%AD"
              "%E4%B8%AD%E4%B8%AD%E4%B8%AD%E4%B8%AD",
              "q", "must be at most 10 characters"),
        Q_BAD("invalid escape", "q=%zz", "q", "contains an invalid percent-encoding"),
        Q_BAD("truncated escape", "q=abc%4", "q", "contains an invalid percent-encoding"),
        Q_BAD("bare percent", "q=100%", "q", "contains an invalid percent-encoding"),
        Q_BAD("invalid UTF-8", "q=%C3", "q", "must be valid UTF-8"),
        Q_BAD("overlong UTF-8", "q=%C0%AF", "q", "must be valid UTF-8"),
        Q_BAD("surrogate UTF-8", "q=%ED%A0%80", "q", "must be valid UTF-8"),
        Q_BAD("NUL byte", "q=a%00b", "q", "must not contain NUL characters"),
        Q_BAD("invalid escape in name", "%zz=1", "", "query parameter name contains an invalid percent-encoding"),
        Q_OK("encoded name", "per%5Fpage=5"),
        Q_OK("enum", "status=closed"),
        Q_BAD("enum unknown", "status=pending", "status", "must be one of: open, closed"),
        Q_OK("repeated array items", "tag=a&tag=b&tag=c"),
        Q_BAD("array too many", "tag=a&tag=b&tag=c&tag=d", "tag", "must have at most 3 items"),
        Q_BAD("array item too long", "tag=a&tag=abcdef", "tag[1]", "must be at most 5 characters"),
        /* path parameters */
        {"path integer text", "x7", "a-b", NULL, BODY, ZNP_E_VALIDATION_FAILED, "id", "must be an integer"},
        {"path integer range", "0", "a-b", NULL, BODY, ZNP_E_VALIDATION_FAILED, "id",
         "must be an integer of at least 1"},
        {"path pattern", "7", "A_B", NULL, BODY, ZNP_E_VALIDATION_FAILED, "slug",
         "does not match the required pattern"},
        {"path invalid UTF-8", "7", "\xc3", NULL, BODY, ZNP_E_VALIDATION_FAILED, "slug", "must be valid UTF-8"},
        {"path missing", NULL, NULL, NULL, BODY, ZNP_E_VALIDATION_FAILED, "id", "is required"},
        /* body */
        {"body missing", "7", "a-b", NULL, NULL, ZNP_E_BODY_REQUIRED, "$", ""},
        {"body not an object", "7", "a-b", NULL, "[1]", ZNP_E_VALIDATION_FAILED, "$", "must be an object"},
        {"body null", "7", "a-b", NULL, "null", ZNP_E_VALIDATION_FAILED, "$", "must be an object"},
        {"body field", "7", "a-b", NULL, "{\"title\": 5}", ZNP_E_VALIDATION_FAILED, "$.title", "must be a string"},
        {"body required field", "7", "a-b", NULL, "{}", ZNP_E_VALIDATION_FAILED, "$.title", "is required"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const request_case_t *c = &cases[i];
        znp_arena_t arena;
        znp_error_t err;
        fx_request_t req;
        int rc;

        znp_arena_init(&arena, 0);
        rc = parse_request(c, &req, &arena, &err);
        znp_arena_dispose(&arena);
        if (rc != c->expected)
            fail_msg("case \"%s\": rc %d, expected %d (path \"%s\", detail \"%s\")", c->name, rc, c->expected, err.path,
                     err.detail);
        if (rc == 0)
            continue;
        if (c->path != NULL && strcmp(err.path, c->path) != 0)
            fail_msg("case \"%s\": path \"%s\", expected \"%s\"", c->name, err.path, c->path);
        if (c->detail != NULL && strcmp(err.detail, c->detail) != 0)
            fail_msg("case \"%s\": detail \"%s\", expected \"%s\"", c->name, err.detail, c->detail);
    }
}

static void codec__request_values_decoded(void **state)
{
    static const request_case_t c = {
        "values",
        "42",
        "my-post",
        "q=a+b%20c%2B&page=3&active=1&min_score=1e0&tag=x&tag=%E4%B8%AD&status=open&after=-1&ignored=%zz%zz",
        "{\"title\": \"hello\", \"unknown\": 1}",
        0,
        NULL,
        NULL};
    znp_arena_t arena;
    znp_error_t err;
    fx_request_t req;

    (void)state;
    znp_arena_init(&arena, 0);
    /* an invalid escape in an unknown parameter still fails: the whole query string must be well formed */
    assert_int_equal(parse_request(&c, &req, &arena, &err), ZNP_E_VALIDATION_FAILED);
    assert_string_equal(err.path, "ignored");

    {
        request_case_t good = c;
        good.query = "q=a+b%20c%2B&page=3&active=1&min_score=1e0&tag=x&tag=%E4%B8%AD&status=open&after=-1&ignored=1";
        assert_int_equal(parse_request(&good, &req, &arena, &err), 0);
    }
    assert_int_equal(req.id, 42);
    assert_int_equal(req.has.id, ZNP_SET);
    assert_string_equal(req.slug, "my-post");
    assert_string_equal(req.q, "a b c+");
    assert_int_equal(req.page, 3);
    assert_int_equal(req.has.page, ZNP_SET);
    assert_int_equal(req.per_page, 20); /* default */
    assert_int_equal(req.has.per_page, ZNP_ABSENT);
    assert_true(req.active);
    assert_true(req.min_score == 1.0);
    assert_int_equal(req.tag.count, 2);
    assert_string_equal(((char **)req.tag.items)[0], "x");
    assert_string_equal(((char **)req.tag.items)[1], "\xe4\xb8\xad");
    assert_string_equal(req.status, "open");
    assert_int_equal(req.after, -1);
    assert_string_equal(req.body.title, "hello");
    assert_int_equal(req.has.body, ZNP_SET);
    znp_arena_dispose(&arena);
}

static void codec__request_absent_query_defaults(void **state)
{
    static const request_case_t c = {"defaults", "1", "a", NULL, BODY, 0, NULL, NULL};
    znp_arena_t arena;
    znp_error_t err;
    fx_request_t req;

    (void)state;
    znp_arena_init(&arena, 0);
    assert_int_equal(parse_request(&c, &req, &arena, &err), 0);
    assert_int_equal(req.page, 1);
    assert_int_equal(req.per_page, 20);
    assert_int_equal(req.has.page, ZNP_ABSENT);
    assert_int_equal(req.has.q, ZNP_ABSENT);
    assert_null(req.q);
    assert_int_equal(req.has.tag, ZNP_ABSENT);
    assert_int_equal(req.tag.count, 0);
    assert_int_equal(req.has.active, ZNP_ABSENT);
    znp_arena_dispose(&arena);
}

static void codec__request_optional_body_absent(void **state)
{
    znp_arena_t arena;
    znp_error_t err = {0};
    fx_request_t req = {0};
    json_t *body = json_pack("{s:s}", "title", "x");

    (void)state;
    znp_arena_init(&arena, 0);
    assert_int_equal(
        znp_codec_parse_request(&fx_optional_body_request_schema, NULL, 0, NULL, 0, NULL, &req, &arena, &err), 0);
    assert_int_equal(req.has.body, ZNP_ABSENT);
    assert_int_equal(
        znp_codec_parse_request(&fx_optional_body_request_schema, NULL, 0, NULL, 0, body, &req, &arena, &err), 0);
    assert_int_equal(req.has.body, ZNP_SET);
    assert_string_equal(req.body.title, "x");
    json_decref(body);
    znp_arena_dispose(&arena);
}

static void codec__request_query_length_respected(void **state)
{
    const char *query = "page=5&page=6";
    znp_param_t params[2] = {{"id", "1"}, {"slug", "a"}};
    znp_arena_t arena;
    znp_error_t err = {0};
    fx_request_t req = {0};
    json_t *body = json_pack("{s:s}", "title", "x");

    (void)state;
    znp_arena_init(&arena, 0);
    /* only "page=5" is inside the given length */
    assert_int_equal(znp_codec_parse_request(&fx_request_schema, params, 2, query, 6, body, &req, &arena, &err), 0);
    assert_int_equal(req.page, 5);
    json_decref(body);
    znp_arena_dispose(&arena);
}

int run_codec_request_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codec__request_table_matches),          cmocka_unit_test(codec__request_values_decoded),
        cmocka_unit_test(codec__request_absent_query_defaults),  cmocka_unit_test(codec__request_optional_body_absent),
        cmocka_unit_test(codec__request_query_length_respected),
    };
    return cmocka_run_group_tests_name("codec_request", tests, NULL, NULL);
}
