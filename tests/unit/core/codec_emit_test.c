#include "core_tests.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "codec_fixtures.h"

/* Compare `value` with the JSON text `expected`; fail with both texts when they differ. */
static void assert_json(json_t *value, const char *expected)
{
    json_error_t jerr;
    json_t *want = json_loads(expected, JSON_DECODE_ANY, &jerr);
    char *got_text;

    if (want == NULL)
        fail_msg("bad expected JSON in test: %s", jerr.text);
    if (!json_equal(value, want)) {
        got_text = json_dumps(value, JSON_SORT_KEYS | JSON_COMPACT);
        fail_msg("got %s\nexpected %s", got_text, expected);
    }
    json_decref(want);
}

static void codec__emit_minimal_object(void **state)
{
    fx_sample_t s = {0};
    znp_error_t err = {0};
    json_t *out = NULL;

    (void)state;
    /* only the required field; its NULL string becomes "" */
    assert_int_equal(znp_codec_emit(&fx_sample_schema, &s, &out, &err), 0);
    assert_json(out, "{\"name\": \"\"}");
    json_decref(out);

    s.name = "x";
    s.count = 5; /* not marked present: omitted */
    assert_int_equal(znp_codec_emit(&fx_sample_schema, &s, &out, &err), 0);
    assert_json(out, "{\"name\": \"x\"}");
    json_decref(out);
}

static void codec__emit_presence_respected(void **state)
{
    fx_sample_t s = {0};
    znp_error_t err = {0};
    json_t *out = NULL;

    (void)state;
    s.name = "x";
    s.has.nick = ZNP_NULL;  /* nullable: null */
    s.has.maybe = ZNP_NULL; /* nullable: null */
    s.has.color = ZNP_NULL; /* not nullable: treated as absent */
    s.has.count = ZNP_SET;  /* zero value emitted */
    s.has.extra = ZNP_NULL;
    s.has.flag = ZNP_SET;
    s.has.tags = ZNP_SET; /* empty array */
    assert_int_equal(znp_codec_emit(&fx_sample_schema, &s, &out, &err), 0);
    assert_json(out, "{\"name\": \"x\", \"nick\": null, \"maybe\": null, \"count\": 0, \"extra\": null,"
                     " \"flag\": false, \"tags\": []}");
    json_decref(out);
}

static void codec__emit_write_only_omitted(void **state)
{
    fx_sample_t s = {0};
    znp_error_t err = {0};
    json_t *out = NULL;

    (void)state;
    s.name = "x";
    s.secret = "hunter2";
    s.has.secret = ZNP_SET;
    s.created = 1764806400;
    s.has.created = ZNP_SET; /* read-only fields are output */
    assert_int_equal(znp_codec_emit(&fx_sample_schema, &s, &out, &err), 0);
    assert_json(out, "{\"name\": \"x\", \"created\": 1764806400}");
    assert_null(json_object_get(out, "secret"));
    json_decref(out);
}

static void codec__emit_nested_values(void **state)
{
    fx_sample_t s = {0};
    znp_error_t err = {0};
    json_t *out = NULL;
    char *tags[] = {"a", "\xe4\xb8\xad"};
    int64_t digits[] = {INT64_MIN, 0, INT64_MAX};
    fx_line_t lines[2] = {{.name = "l1", .quantity = 2, .has = {ZNP_SET, ZNP_SET}}, {.name = NULL}};
    json_t *extra = json_pack("{s:[i,s]}", "k", 1, "v");

    (void)state;
    s.name = "x";
    s.tags = (znp_array_t){2, tags};
    s.has.tags = ZNP_SET;
    s.digits = (znp_array_t){3, digits};
    s.has.digits = ZNP_SET;
    s.lines = (znp_array_t){2, lines};
    s.has.lines = ZNP_SET;
    s.address.city = "Oslo";
    s.address.zip = 150;
    s.address.has.zip = ZNP_SET;
    s.has.address = ZNP_SET;
    s.extra = extra;
    s.has.extra = ZNP_SET;
    s.ratio = 0.25;
    s.has.ratio = ZNP_SET;
    s.flag = true;
    s.has.flag = ZNP_SET;
    assert_int_equal(znp_codec_emit(&fx_sample_schema, &s, &out, &err), 0);
    assert_json(out, "{\"name\": \"x\", \"tags\": [\"a\", \"\xe4\xb8\xad\"],"
                     " \"digits\": [-9223372036854775808, 0, 9223372036854775807],"
                     " \"lines\": [{\"name\": \"l1\", \"quantity\": 2}, {\"name\": \"\"}],"
                     " \"address\": {\"city\": \"Oslo\", \"zip\": 150}, \"extra\": {\"k\": [1, \"v\"]},"
                     " \"ratio\": 0.25, \"flag\": true}");
    /* the free-form value is shared, not copied */
    assert_ptr_equal(json_object_get(out, "extra"), extra);
    json_decref(out);
    json_decref(extra);
}

static void codec__emit_invalid_values_internal(void **state)
{
    fx_sample_t s = {0};
    znp_error_t err = {0};
    json_t *out = (json_t *)&s;
    fx_line_t lines[1] = {{.name = "ok\xff"}};

    (void)state;
    s.name = "bad \xc0\xaf";
    assert_int_equal(znp_codec_emit(&fx_sample_schema, &s, &out, &err), ZNP_E_INTERNAL);
    assert_null(out);
    assert_string_equal(err.path, "$.name");

    s.name = "x";
    s.lines = (znp_array_t){1, lines};
    s.has.lines = ZNP_SET;
    assert_int_equal(znp_codec_emit(&fx_sample_schema, &s, &out, &err), ZNP_E_INTERNAL);
    assert_string_equal(err.path, "$.lines[0].name");

    s.has.lines = ZNP_ABSENT;
    s.any_number = NAN;
    s.has.any_number = ZNP_SET;
    assert_int_equal(znp_codec_emit(&fx_sample_schema, &s, &out, &err), ZNP_E_INTERNAL);
    assert_string_equal(err.path, "$.any_number");
}

/* parse -> emit -> compare, for documents that contain only emitted fields */
static void codec__emit_round_trip_identical(void **state)
{
    static const char *const documents[] = {
        "{\"name\": \"a\", \"limit\": 20, \"mode\": \"fast\", \"enabled\": true}",
        "{\"name\": \"\xe4\xb8\xad\xf0\x9f\x98\x80\", \"nick\": null, \"color\": \"red\", \"code\": \"ABC\","
        " \"email\": \"a@b.co\", \"site\": \"https://x.io\", \"uuid\": \"123e4567-e89b-12d3-a456-426614174000\","
        " \"at\": \"2026-12-04T20:41:18Z\", \"host\": \"x.io\", \"count\": 100, \"big\": 9223372036854775807,"
        " \"floor\": -5, \"ceiling\": 5, \"flag\": false, \"ratio\": 0.5, \"any_number\": -1.5e300,"
        " \"tags\": [\"t\"], \"lines\": [{\"name\": \"l\", \"quantity\": 5}], \"digits\": [], \"colors\": [\"blue\"],"
        " \"address\": {\"city\": \"c\", \"zip\": -1}, \"extra\": [true, null, {\"x\": \"y\"}], \"limit\": -7,"
        " \"mode\": \"\", \"enabled\": false, \"maybe\": null}",
        "{\"name\": \"q\", \"mode\": \"quote \\\" backslash \\\\ newline \\n tab \\t u0001 \\u0001\", \"maybe\": 0}",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(documents) / sizeof(documents[0]); i++) {
        znp_arena_t arena;
        znp_error_t err = {0};
        fx_sample_t s = {0};
        json_t *in = NULL, *out = NULL;
        char *text;

        znp_arena_init(&arena, 0);
        assert_int_equal(znp_codec_load(&in, documents[i], strlen(documents[i]), &err), 0);
        if (znp_codec_parse(&fx_sample_schema, in, &s, &arena, "$", &err) != 0)
            fail_msg("document %zu: %s %s", i, err.path, err.detail);
        assert_int_equal(znp_codec_emit(&fx_sample_schema, &s, &out, &err), 0);
        if (!json_equal(in, out)) {
            text = json_dumps(out, JSON_SORT_KEYS);
            fail_msg("document %zu changed in the round trip: %s", i, text);
        }
        json_decref(out);
        json_decref(in);
        znp_arena_dispose(&arena);
    }
}

/* defaults are not echoed back: they were not in the input */
static void codec__emit_round_trip_omits_defaults(void **state)
{
    znp_arena_t arena;
    znp_error_t err = {0};
    fx_sample_t s = {0};
    json_t *in = NULL, *out = NULL;
    const char *doc = "{\"name\": \"a\", \"secret\": \"pw\", \"created\": 5}";

    (void)state;
    znp_arena_init(&arena, 0);
    assert_int_equal(znp_codec_load(&in, doc, strlen(doc), &err), 0);
    assert_int_equal(znp_codec_parse(&fx_sample_schema, in, &s, &arena, "$", &err), 0);
    assert_int_equal(znp_codec_emit(&fx_sample_schema, &s, &out, &err), 0);
    assert_json(out, "{\"name\": \"a\"}");
    json_decref(out);
    json_decref(in);
    znp_arena_dispose(&arena);
}

int run_codec_emit_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codec__emit_minimal_object),
        cmocka_unit_test(codec__emit_presence_respected),
        cmocka_unit_test(codec__emit_write_only_omitted),
        cmocka_unit_test(codec__emit_nested_values),
        cmocka_unit_test(codec__emit_invalid_values_internal),
        cmocka_unit_test(codec__emit_round_trip_identical),
        cmocka_unit_test(codec__emit_round_trip_omits_defaults),
    };
    return cmocka_run_group_tests_name("codec_emit", tests, NULL, NULL);
}
