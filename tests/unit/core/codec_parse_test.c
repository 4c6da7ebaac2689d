#include "core_tests.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec_fixtures.h"

typedef struct parse_case {
    const char *name;
    const char *json;
    int expected;       /* 0 or the error */
    const char *path;   /* expected err.path when failing */
    const char *detail; /* expected err.detail when failing */
} parse_case_t;

/* Load and parse `json` into *out with fx_sample_schema; the document is returned for borrowed JSON fields. */
static int parse_sample(const char *json, fx_sample_t *out, znp_arena_t *arena, json_t **doc, znp_error_t *err)
{
    int rc;

    memset(out, 0, sizeof(*out));
    znp_error_clear(err);
    *doc = NULL;
    rc = znp_codec_load(doc, json, strlen(json), err);
    if (rc != 0)
        return rc;
    return znp_codec_parse(&fx_sample_schema, *doc, out, arena, "$", err);
}

static void run_cases(const parse_case_t *cases, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        const parse_case_t *c = &cases[i];
        znp_arena_t arena;
        znp_error_t err;
        fx_sample_t sample;
        json_t *doc;
        int rc;

        znp_arena_init(&arena, 0);
        rc = parse_sample(c->json, &sample, &arena, &doc, &err);
        json_decref(doc);
        znp_arena_dispose(&arena);

        if (rc != c->expected)
            fail_msg("case \"%s\": rc %d, expected %d (path \"%s\", detail \"%s\")", c->name, rc, c->expected, err.path,
                     err.detail);
        if (rc == 0)
            continue;
        if (err.code != rc)
            fail_msg("case \"%s\": err.code %d differs from rc %d", c->name, err.code, rc);
        if (c->path != NULL && strcmp(err.path, c->path) != 0)
            fail_msg("case \"%s\": path \"%s\", expected \"%s\"", c->name, err.path, c->path);
        if (c->detail != NULL && strcmp(err.detail, c->detail) != 0)
            fail_msg("case \"%s\": detail \"%s\", expected \"%s\"", c->name, err.detail, c->detail);
    }
}

#define RUN(cases) run_cases(cases, sizeof(cases) / sizeof(cases[0]))
#define OK(name, json)                                                                                                 \
    {                                                                                                                  \
        name, json, 0, NULL, NULL                                                                                      \
    }
#define BAD(name, json, path, detail)                                                                                  \
    {                                                                                                                  \
        name, json, ZNP_E_VALIDATION_FAILED, path, detail                                                              \
    }

static void codec__parse_types_checked(void **state)
{
    static const parse_case_t cases[] = {
        OK("minimal", "{\"name\": \"a\"}"),
        BAD("document not an object", "[1]", "$", "must be an object"),
        BAD("document a string", "\"x\"", "$", "must be an object"),
        BAD("string given number", "{\"name\": 5}", "$.name", "must be a string"),
        BAD("string given bool", "{\"name\": true}", "$.name", "must be a string"),
        BAD("string given array", "{\"name\": [\"a\"]}", "$.name", "must be a string"),
        BAD("string given object", "{\"name\": {}}", "$.name", "must be a string"),
        BAD("integer given string", "{\"name\": \"a\", \"count\": \"5\"}", "$.count", "must be an integer"),
        BAD("integer given bool", "{\"name\": \"a\", \"count\": true}", "$.count", "must be an integer"),
        BAD("integer given real 1.0", "{\"name\": \"a\", \"count\": 1.0}", "$.count", "must be an integer"),
        BAD("integer given 1e2", "{\"name\": \"a\", \"count\": 1e2}", "$.count", "must be an integer"),
        BAD("integer given 1.5", "{\"name\": \"a\", \"big\": 1.5}", "$.big", "must be an integer"),
        BAD("integer given array", "{\"name\": \"a\", \"big\": [1]}", "$.big", "must be an integer"),
        BAD("bool given integer", "{\"name\": \"a\", \"flag\": 1}", "$.flag", "must be a boolean"),
        BAD("bool given string", "{\"name\": \"a\", \"flag\": \"true\"}", "$.flag", "must be a boolean"),
        OK("number given integer", "{\"name\": \"a\", \"any_number\": 3}"),
        OK("number given real", "{\"name\": \"a\", \"any_number\": -3.25e10}"),
        BAD("number given string", "{\"name\": \"a\", \"any_number\": \"1\"}", "$.any_number", "must be a number"),
        BAD("number given bool", "{\"name\": \"a\", \"any_number\": false}", "$.any_number", "must be a number"),
        BAD("array given object", "{\"name\": \"a\", \"tags\": {}}", "$.tags", "must be an array"),
        BAD("array given string", "{\"name\": \"a\", \"tags\": \"x\"}", "$.tags", "must be an array"),
        BAD("object given array", "{\"name\": \"a\", \"address\": []}", "$.address", "must be an object"),
        BAD("object given string", "{\"name\": \"a\", \"address\": \"x\"}", "$.address", "must be an object"),
        OK("free-form given anything", "{\"name\": \"a\", \"extra\": [1, {\"x\": null}]}"),
        OK("unknown keys ignored", "{\"name\": \"a\", \"unknown\": {\"deep\": [1, 2]}, \"other\": null}"),
    };

    (void)state;
    RUN(cases);
}

static void codec__parse_required_and_null_checked(void **state)
{
    static const parse_case_t cases[] = {
        BAD("required absent", "{}", "$.name", "is required"),
        BAD("required null", "{\"name\": null}", "$.name", "must not be null"),
        OK("nullable null", "{\"name\": \"a\", \"nick\": null}"),
        BAD("optional non-nullable null", "{\"name\": \"a\", \"color\": null}", "$.color", "must not be null"),
        BAD("optional integer null", "{\"name\": \"a\", \"count\": null}", "$.count", "must not be null"),
        OK("nullable integer null", "{\"name\": \"a\", \"maybe\": null}"),
        BAD("array null", "{\"name\": \"a\", \"tags\": null}", "$.tags", "must not be null"),
        BAD("object null", "{\"name\": \"a\", \"address\": null}", "$.address", "must not be null"),
        BAD("nested required absent", "{\"name\": \"a\", \"address\": {\"zip\": 1}}", "$.address.city", "is required"),
        OK("free-form nullable null", "{\"name\": \"a\", \"extra\": null}"),
        OK("read-only value ignored", "{\"name\": \"a\", \"created\": \"not even an integer\"}"),
        OK("write-only accepted", "{\"name\": \"a\", \"secret\": \"s3cret\"}"),
    };

    (void)state;
    RUN(cases);
}

static void codec__parse_strings_checked(void **state)
{
    static const parse_case_t cases[] = {
        OK("length at max", "{\"name\": \"abcdefgh\"}"),
        BAD("length over max", "{\"name\": \"abcdefghi\"}", "$.name", "must be at most 8 characters"),
        BAD("length under min", "{\"name\": \"\"}", "$.name", "must be at least 1 character"),
        OK("CJK counts one each", "{\"name\": \"a\", \"nick\": \"\xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97\xe7\xac\xa6\"}"),
        BAD("CJK over max", "{\"name\": \"a\", \"nick\": \"\xe4\xb8\xad\xe6\x96\x87\xe5\xad\x97\xe7\xac\xa6x\"}",
            "$.nick", "must be at most 4 characters"),
        OK("emoji counts one each",
           "{\"name\": \"a\", \"nick\": \"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"}"),
        OK("escaped emoji counts one",
           "{\"name\": \"a\", \"nick\": \"\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\\ud83d\\ude00\"}"),
        BAD("five emoji over max",
            "{\"name\": \"a\", \"nick\": "
            "\"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"}",
            "$.nick", "must be at most 4 characters"),
        OK("enum value", "{\"name\": \"a\", \"color\": \"green\"}"),
        BAD("enum unknown value", "{\"name\": \"a\", \"color\": \"purple\"}", "$.color",
            "must be one of: red, green, blue"),
        BAD("enum case differs", "{\"name\": \"a\", \"color\": \"Red\"}", "$.color",
            "must be one of: red, green, blue"),
        BAD("enum empty", "{\"name\": \"a\", \"color\": \"\"}", "$.color", "must be one of: red, green, blue"),
        OK("pattern match", "{\"name\": \"a\", \"code\": \"ABC\"}"),
        BAD("pattern too short", "{\"name\": \"a\", \"code\": \"AB\"}", "$.code",
            "does not match the required pattern"),
        BAD("pattern lowercase", "{\"name\": \"a\", \"code\": \"abc\"}", "$.code",
            "does not match the required pattern"),
        BAD("pattern anchored", "{\"name\": \"a\", \"code\": \"ABCD\"}", "$.code",
            "does not match the required pattern"),
    };

    (void)state;
    RUN(cases);
}

#define EMAIL_OK(v) OK("email " v, "{\"name\": \"a\", \"email\": \"" v "\"}")
#define EMAIL_BAD(v)                                                                                                   \
    BAD("email " v, "{\"name\": \"a\", \"email\": \"" v "\"}", "$.email", "must be a valid email address")
#define URI_OK(v) OK("uri " v, "{\"name\": \"a\", \"site\": \"" v "\"}")
#define URI_BAD(v)                                                                                                     \
    BAD("uri " v, "{\"name\": \"a\", \"site\": \"" v "\"}", "$.site", "must be an absolute http or https URL")
#define UUID_OK(v)  OK("uuid " v, "{\"name\": \"a\", \"uuid\": \"" v "\"}")
#define UUID_BAD(v) BAD("uuid " v, "{\"name\": \"a\", \"uuid\": \"" v "\"}", "$.uuid", "must be a valid UUID")
#define TIME_OK(v)  OK("date-time " v, "{\"name\": \"a\", \"at\": \"" v "\"}")
#define TIME_BAD(v) BAD("date-time " v, "{\"name\": \"a\", \"at\": \"" v "\"}", "$.at", "must be an RFC 3339 date-time")
#define HOST_OK(v)  OK("hostname " v, "{\"name\": \"a\", \"host\": \"" v "\"}")
#define HOST_BAD(v) BAD("hostname " v, "{\"name\": \"a\", \"host\": \"" v "\"}", "$.host", "must be a valid hostname")

static void codec__parse_formats_checked(void **state)
{
    static const parse_case_t cases[] = {
        EMAIL_OK("user@example.com"),
        EMAIL_OK("first.last+tag@mail.example.co.uk"),
        EMAIL_BAD(""),
        EMAIL_BAD("user"),
        EMAIL_BAD("@example.com"),
        EMAIL_BAD("user@"),
        EMAIL_BAD("user@localhost"),
        EMAIL_BAD("a@b@example.com"),
        EMAIL_BAD("us er@example.com"),
        EMAIL_BAD("user@.example.com"),
        EMAIL_BAD("user@example.com."),
        EMAIL_BAD("user@example..com"),
        EMAIL_BAD("user\\t@example.com"),
        BAD("email 255 bytes",
            "{\"name\": \"a\", \"email\": "
            "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com\"}",
            "$.email", "must be a valid email address"),
        URI_OK("https://example.com"),
        URI_OK("http://example.com:8080/path?q=1#frag"),
        URI_OK("HTTPS://user:pw@sub.example.com/a%20b"),
        URI_OK("http://[::1]:8080/"),
        URI_OK("https://127.0.0.1"),
        URI_BAD("ftp://example.com"),
        URI_BAD("example.com"),
        URI_BAD("/relative/path"),
        URI_BAD("https://"),
        URI_BAD("https:///path"),
        URI_BAD("https://:80"),
        URI_BAD("https://example.com:0"),
        URI_BAD("https://example.com:65536"),
        URI_BAD("https://example.com:8o"),
        URI_BAD("https://exa mple.com"),
        URI_BAD("https://example.com/<script>"),
        URI_BAD("http://[::1"),
        UUID_OK("123e4567-e89b-12d3-a456-426614174000"),
        UUID_OK("123E4567-E89B-12D3-A456-426614174000"),
        UUID_BAD("123e4567e89b12d3a456426614174000"),
        UUID_BAD("123e4567-e89b-12d3-a456-42661417400"),
        UUID_BAD("123e4567-e89b-12d3-a456-4266141740000"),
        UUID_BAD("g23e4567-e89b-12d3-a456-426614174000"),
        UUID_BAD("123e4567-e89b-12d3-a456_426614174000"),
        TIME_OK("2026-12-04T20:41:18Z"),
        TIME_OK("2026-12-04t20:41:18z"),
        TIME_OK("2026-12-04T20:41:18.123456Z"),
        TIME_OK("2026-12-04T20:41:18+08:00"),
        TIME_OK("2026-12-04T20:41:18.5-05:30"),
        TIME_OK("2024-02-29T00:00:00Z"),
        TIME_OK("2000-02-29T00:00:00Z"),
        TIME_OK("2016-12-31T23:59:60Z"),
        TIME_BAD("2026-12-04"),
        TIME_BAD("2026-12-04 20:41:18Z"),
        TIME_BAD("2026-12-04T20:41:18"),
        TIME_BAD("2026-13-04T20:41:18Z"),
        TIME_BAD("2026-00-04T20:41:18Z"),
        TIME_BAD("2026-04-31T20:41:18Z"),
        TIME_BAD("2025-02-29T00:00:00Z"),
        TIME_BAD("1900-02-29T00:00:00Z"),
        TIME_BAD("2026-12-04T24:00:00Z"),
        TIME_BAD("2026-12-04T20:60:00Z"),
        TIME_BAD("2026-12-04T20:41:61Z"),
        TIME_BAD("2026-12-04T20:41:18.Z"),
        TIME_BAD("2026-12-04T20:41:18+0800"),
        TIME_BAD("2026-12-04T20:41:18+24:00"),
        TIME_BAD("2026-12-04T20:41:18Zjunk"),
        TIME_BAD("26-12-04T20:41:18Z"),
        HOST_OK("example.com"),
        HOST_OK("a-b.example-1.io"),
        HOST_OK("localhost"),
        HOST_OK("xn--fiqs8s.cn"),
        HOST_BAD(""),
        HOST_BAD("-example.com"),
        HOST_BAD("example-.com"),
        HOST_BAD("exa_mple.com"),
        HOST_BAD("example..com"),
        HOST_BAD(".example.com"),
        HOST_BAD("example.com."),
        HOST_BAD("exa mple.com"),
        HOST_BAD("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com"),
    };

    (void)state;
    RUN(cases);
}

static void codec__parse_integers_checked(void **state)
{
    static const parse_case_t cases[] = {
        OK("int64 max", "{\"name\": \"a\", \"big\": 9223372036854775807}"),
        OK("int64 min", "{\"name\": \"a\", \"big\": -9223372036854775808}"),
        {"int64 max plus one", "{\"name\": \"a\", \"big\": 9223372036854775808}", ZNP_E_INVALID_JSON, "$", NULL},
        {"int64 min minus one", "{\"name\": \"a\", \"big\": -9223372036854775809}", ZNP_E_INVALID_JSON, "$", NULL},
        {"huge integer", "{\"name\": \"a\", \"big\": 123456789012345678901234567890}", ZNP_E_INVALID_JSON, "$", NULL},
        BAD("negative zero real", "{\"name\": \"a\", \"big\": -0.0}", "$.big", "must be an integer"),
        OK("negative zero integer", "{\"name\": \"a\", \"big\": -0}"),
        OK("range min", "{\"name\": \"a\", \"count\": 1}"),
        OK("range max", "{\"name\": \"a\", \"count\": 100}"),
        BAD("range below", "{\"name\": \"a\", \"count\": 0}", "$.count", "must be an integer between 1 and 100"),
        BAD("range above", "{\"name\": \"a\", \"count\": 101}", "$.count", "must be an integer between 1 and 100"),
        BAD("range far below", "{\"name\": \"a\", \"count\": -9223372036854775808}", "$.count",
            "must be an integer between 1 and 100"),
        OK("min only at min", "{\"name\": \"a\", \"floor\": -5}"),
        OK("min only large", "{\"name\": \"a\", \"floor\": 9223372036854775807}"),
        BAD("min only below", "{\"name\": \"a\", \"floor\": -6}", "$.floor", "must be an integer of at least -5"),
        OK("max only at max", "{\"name\": \"a\", \"ceiling\": 5}"),
        OK("max only small", "{\"name\": \"a\", \"ceiling\": -9223372036854775808}"),
        BAD("max only above", "{\"name\": \"a\", \"ceiling\": 6}", "$.ceiling", "must be an integer of at most 5"),
        OK("number range min", "{\"name\": \"a\", \"ratio\": 0}"),
        OK("number range max", "{\"name\": \"a\", \"ratio\": 1.0}"),
        OK("number range inside", "{\"name\": \"a\", \"ratio\": 0.25}"),
        BAD("number below", "{\"name\": \"a\", \"ratio\": -0.001}", "$.ratio", "must be a number between 0 and 1"),
        BAD("number above", "{\"name\": \"a\", \"ratio\": 1.5}", "$.ratio", "must be a number between 0 and 1"),
        BAD("number integer above", "{\"name\": \"a\", \"ratio\": 2}", "$.ratio", "must be a number between 0 and 1"),
    };

    (void)state;
    RUN(cases);
}

static void codec__parse_arrays_checked(void **state)
{
    static const parse_case_t cases[] = {
        OK("array within limits", "{\"name\": \"a\", \"tags\": [\"x\", \"yy\", \"zzz\"]}"),
        BAD("array too short", "{\"name\": \"a\", \"tags\": []}", "$.tags", "must have at least 1 item"),
        BAD("array too long", "{\"name\": \"a\", \"tags\": [\"a\", \"b\", \"c\", \"d\"]}", "$.tags",
            "must have at most 3 items"),
        BAD("array item wrong type", "{\"name\": \"a\", \"tags\": [\"a\", 2]}", "$.tags[1]", "must be a string"),
        BAD("array item null", "{\"name\": \"a\", \"tags\": [null]}", "$.tags[0]", "must not be null"),
        BAD("array item too long", "{\"name\": \"a\", \"tags\": [\"abcdef\"]}", "$.tags[0]",
            "must be at most 5 characters"),
        BAD("array item too short", "{\"name\": \"a\", \"tags\": [\"a\", \"\"]}", "$.tags[1]",
            "must be at least 1 character"),
        OK("integer items", "{\"name\": \"a\", \"digits\": [0, 9, 5]}"),
        OK("empty array without min", "{\"name\": \"a\", \"digits\": []}"),
        BAD("integer item range", "{\"name\": \"a\", \"digits\": [0, 10]}", "$.digits[1]",
            "must be an integer between 0 and 9"),
        BAD("integer item real", "{\"name\": \"a\", \"digits\": [1.0]}", "$.digits[0]", "must be an integer"),
        BAD("enum item", "{\"name\": \"a\", \"colors\": [\"red\", \"pink\"]}", "$.colors[1]",
            "must be one of: red, green, blue"),
        OK("object items", "{\"name\": \"a\", \"lines\": [{\"name\": \"x\", \"quantity\": 2}, {\"name\": \"y\"}]}"),
        BAD("object item required", "{\"name\": \"a\", \"lines\": [{\"name\": \"x\"}, {\"quantity\": 2}]}",
            "$.lines[1].name", "is required"),
        BAD("object item range", "{\"name\": \"a\", \"lines\": [{\"name\": \"x\", \"quantity\": 6}]}",
            "$.lines[0].quantity", "must be an integer between 1 and 5"),
        BAD("object item not object", "{\"name\": \"a\", \"lines\": [{\"name\": \"x\"}, 3]}", "$.lines[1]",
            "must be an object"),
        BAD("object items too many",
            "{\"name\": \"a\", \"lines\": [{\"name\": \"x\"}, {\"name\": \"y\"}, {\"name\": \"z\"}]}", "$.lines",
            "must have at most 2 items"),
        BAD("nested object field", "{\"name\": \"a\", \"address\": {\"city\": \"Paris\", \"zip\": \"75001\"}}",
            "$.address.zip", "must be an integer"),
        BAD("nested object length", "{\"name\": \"a\", \"address\": {\"city\": \"\"}}", "$.address.city",
            "must be at least 1 character"),
    };

    (void)state;
    RUN(cases);
}

/* "[0,0,...]" with `count` items */
static char *digits_document(size_t count)
{
    char *doc = malloc(count * 2 + 64);
    size_t n = (size_t)snprintf(doc, 64, "{\"name\": \"a\", \"digits\": [");

    for (size_t i = 0; i < count; i++) {
        doc[n++] = '0';
        doc[n++] = ',';
    }
    if (count > 0)
        n--;
    memcpy(doc + n, "]}", 3);
    return doc;
}

static void codec__parse_global_item_limit_enforced(void **state)
{
    znp_arena_t arena;
    znp_error_t err;
    fx_sample_t sample;
    json_t *doc;
    char *text;

    (void)state;
    znp_arena_init(&arena, 0);
    text = digits_document(ZNP_CODEC_MAX_ITEMS);
    assert_int_equal(parse_sample(text, &sample, &arena, &doc, &err), 0);
    assert_int_equal(sample.digits.count, ZNP_CODEC_MAX_ITEMS);
    json_decref(doc);
    free(text);

    text = digits_document(ZNP_CODEC_MAX_ITEMS + 1);
    assert_int_equal(parse_sample(text, &sample, &arena, &doc, &err), ZNP_E_VALIDATION_FAILED);
    assert_string_equal(err.path, "$.digits");
    assert_string_equal(err.detail, "must have at most 10000 items");
    json_decref(doc);
    free(text);
    znp_arena_dispose(&arena);
}

static void codec__parse_values_stored(void **state)
{
    static const char *json =
        "{\"name\": \"\xe4\xb8\xad\xe6\x96\x87\", \"nick\": \"bo\", \"color\": \"blue\", \"code\": \"XYZ\","
        " \"email\": \"a@b.co\", \"site\": \"https://x.io/\", \"uuid\": \"123e4567-e89b-12d3-a456-426614174000\","
        " \"at\": \"2026-12-04T20:41:18Z\", \"host\": \"x.io\", \"count\": 7, \"big\": -9223372036854775808,"
        " \"floor\": -5, \"ceiling\": 5, \"flag\": true, \"ratio\": 0.5, \"any_number\": 12,"
        " \"tags\": [\"t1\", \"t2\"], \"lines\": [{\"name\": \"l1\", \"quantity\": 3}, {\"name\": \"l2\"}],"
        " \"digits\": [3, 1, 4], \"colors\": [\"red\"], \"address\": {\"city\": \"Oslo\", \"zip\": 150},"
        " \"extra\": {\"k\": [1]}, \"secret\": \"pw\", \"created\": 99, \"limit\": 0, \"mode\": \"slow\","
        " \"enabled\": false, \"maybe\": 4}";
    znp_arena_t arena;
    znp_error_t err;
    fx_sample_t s;
    json_t *doc;
    fx_line_t *lines;

    (void)state;
    znp_arena_init(&arena, 0);
    assert_int_equal(parse_sample(json, &s, &arena, &doc, &err), 0);
    assert_string_equal(s.name, "\xe4\xb8\xad\xe6\x96\x87");
    assert_string_equal(s.nick, "bo");
    assert_string_equal(s.color, "blue");
    assert_string_equal(s.code, "XYZ");
    assert_string_equal(s.email, "a@b.co");
    assert_string_equal(s.site, "https://x.io/");
    assert_string_equal(s.uuid, "123e4567-e89b-12d3-a456-426614174000");
    assert_string_equal(s.at, "2026-12-04T20:41:18Z");
    assert_string_equal(s.host, "x.io");
    assert_int_equal(s.count, 7);
    assert_true(s.big == INT64_MIN);
    assert_int_equal(s.floor, -5);
    assert_int_equal(s.ceiling, 5);
    assert_true(s.flag);
    assert_true(s.ratio == 0.5);
    assert_true(s.any_number == 12.0);
    assert_int_equal(s.tags.count, 2);
    assert_string_equal(((char **)s.tags.items)[0], "t1");
    assert_string_equal(((char **)s.tags.items)[1], "t2");
    lines = s.lines.items;
    assert_int_equal(s.lines.count, 2);
    assert_string_equal(lines[0].name, "l1");
    assert_int_equal(lines[0].quantity, 3);
    assert_int_equal(lines[0].has.quantity, ZNP_SET);
    assert_string_equal(lines[1].name, "l2");
    assert_int_equal(lines[1].quantity, 1); /* default */
    assert_int_equal(lines[1].has.quantity, ZNP_ABSENT);
    assert_int_equal(s.digits.count, 3);
    assert_int_equal(((int64_t *)s.digits.items)[2], 4);
    assert_string_equal(((char **)s.colors.items)[0], "red");
    assert_string_equal(s.address.city, "Oslo");
    assert_int_equal(s.address.zip, 150);
    assert_int_equal(s.has.address, ZNP_SET);
    assert_int_equal(s.address.has.city, ZNP_SET);
    assert_ptr_equal(s.extra, json_object_get(doc, "extra"));
    assert_string_equal(s.secret, "pw");
    assert_int_equal(s.created, 0); /* read-only: ignored on input */
    assert_int_equal(s.has.created, ZNP_ABSENT);
    assert_int_equal(s.limit, 0);
    assert_int_equal(s.has.limit, ZNP_SET);
    assert_string_equal(s.mode, "slow");
    assert_false(s.enabled);
    assert_int_equal(s.has.enabled, ZNP_SET);
    assert_int_equal(s.maybe, 4);
    assert_int_equal(s.has.maybe, ZNP_SET);

    /* strings are copies in the arena, not views into the document */
    assert_ptr_not_equal(s.name, json_string_value(json_object_get(doc, "name")));
    json_decref(doc);
    assert_string_equal(s.name, "\xe4\xb8\xad\xe6\x96\x87");
    znp_arena_dispose(&arena);
}

static void codec__parse_presence_distinguishes_patch(void **state)
{
    znp_arena_t arena;
    znp_error_t err;
    fx_sample_t s;
    json_t *doc;

    (void)state;
    znp_arena_init(&arena, 0);

    assert_int_equal(parse_sample("{\"name\": \"a\"}", &s, &arena, &doc, &err), 0);
    assert_int_equal(s.has.name, ZNP_SET);
    assert_int_equal(s.has.nick, ZNP_ABSENT);
    assert_null(s.nick);
    assert_int_equal(s.has.maybe, ZNP_ABSENT);
    assert_int_equal(s.has.extra, ZNP_ABSENT);
    json_decref(doc);

    assert_int_equal(
        parse_sample("{\"name\": \"a\", \"nick\": null, \"maybe\": null, \"extra\": null}", &s, &arena, &doc, &err), 0);
    assert_int_equal(s.has.nick, ZNP_NULL);
    assert_null(s.nick);
    assert_int_equal(s.has.maybe, ZNP_NULL);
    assert_int_equal(s.maybe, 0);
    assert_int_equal(s.has.extra, ZNP_NULL);
    assert_null(s.extra);
    json_decref(doc);

    assert_int_equal(parse_sample("{\"name\": \"a\", \"nick\": \"\", \"maybe\": 0}", &s, &arena, &doc, &err), 0);
    assert_int_equal(s.has.nick, ZNP_SET);
    assert_string_equal(s.nick, "");
    assert_int_equal(s.has.maybe, ZNP_SET);
    json_decref(doc);
    znp_arena_dispose(&arena);
}

static void codec__parse_defaults_applied(void **state)
{
    znp_arena_t arena;
    znp_error_t err;
    fx_sample_t s;
    json_t *doc;

    (void)state;
    znp_arena_init(&arena, 0);
    assert_int_equal(parse_sample("{\"name\": \"a\"}", &s, &arena, &doc, &err), 0);
    assert_int_equal(s.limit, 20);
    assert_int_equal(s.has.limit, ZNP_ABSENT);
    assert_string_equal(s.mode, "fast");
    assert_int_equal(s.has.mode, ZNP_ABSENT);
    assert_true(s.enabled);
    assert_int_equal(s.has.enabled, ZNP_ABSENT);
    assert_int_equal(s.count, 0); /* no default */
    json_decref(doc);
    znp_arena_dispose(&arena);
}

static void codec__parse_arena_limit_internal(void **state)
{
    znp_arena_t arena;
    znp_error_t err;
    fx_sample_t s;
    json_t *doc;

    (void)state;
    znp_arena_init(&arena, 32);
    assert_int_equal(
        parse_sample("{\"name\": \"a\", \"tags\": [\"aaaaa\", \"bbbbb\", \"ccccc\"]}", &s, &arena, &doc, &err),
        ZNP_E_INTERNAL);
    json_decref(doc);
    znp_arena_dispose(&arena);
}

static const znp_field_t bad_pattern_field[] = {
    {.name = "v", .type = ZNP_FT_STRING, .offset = 0, .presence_offset = sizeof(char *), .pattern = "([a-z"},
};
static const znp_schema_t bad_pattern_schema = {.name = "BadPattern",
                                                .size = sizeof(char *) + sizeof(znp_presence_t),
                                                .fields = bad_pattern_field,
                                                .field_count = 1};

static void codec__parse_invalid_pattern_internal(void **state)
{
    struct {
        char *v;
        znp_presence_t has;
    } out = {0};
    znp_arena_t arena;
    znp_error_t err = {0};
    json_t *doc = json_pack("{s:s}", "v", "abc");

    (void)state;
    znp_arena_init(&arena, 0);
    assert_int_equal(znp_codec_parse(&bad_pattern_schema, doc, &out, &arena, "$", &err), ZNP_E_INTERNAL);
    assert_string_equal(err.path, "$.v");
    json_decref(doc);
    znp_arena_dispose(&arena);
}

#define PATTERN_THREADS 4

static void *parse_in_thread(void *arg)
{
    intptr_t failures = 0;

    (void)arg;
    for (int i = 0; i < 300; i++) {
        znp_arena_t arena;
        znp_error_t err;
        fx_sample_t s;
        json_t *doc;
        const char *json = i % 2 ? "{\"name\": \"a\", \"code\": \"ABC\"}" : "{\"name\": \"a\", \"code\": \"abc\"}";
        int expected = i % 2 ? 0 : ZNP_E_VALIDATION_FAILED;

        znp_arena_init(&arena, 0);
        if (parse_sample(json, &s, &arena, &doc, &err) != expected)
            failures++;
        json_decref(doc);
        znp_arena_dispose(&arena);
    }
    return (void *)failures;
}

static void codec__parse_patterns_thread_safe(void **state)
{
    pthread_t threads[PATTERN_THREADS];

    (void)state;
    for (int i = 0; i < PATTERN_THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, parse_in_thread, NULL), 0);
    for (int i = 0; i < PATTERN_THREADS; i++) {
        void *failures;
        pthread_join(threads[i], &failures);
        assert_int_equal((intptr_t)failures, 0);
    }
}

int run_codec_parse_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codec__parse_types_checked),
        cmocka_unit_test(codec__parse_required_and_null_checked),
        cmocka_unit_test(codec__parse_strings_checked),
        cmocka_unit_test(codec__parse_formats_checked),
        cmocka_unit_test(codec__parse_integers_checked),
        cmocka_unit_test(codec__parse_arrays_checked),
        cmocka_unit_test(codec__parse_global_item_limit_enforced),
        cmocka_unit_test(codec__parse_values_stored),
        cmocka_unit_test(codec__parse_presence_distinguishes_patch),
        cmocka_unit_test(codec__parse_defaults_applied),
        cmocka_unit_test(codec__parse_arena_limit_internal),
        cmocka_unit_test(codec__parse_invalid_pattern_internal),
        cmocka_unit_test(codec__parse_patterns_thread_safe),
    };
    return cmocka_run_group_tests_name("codec_parse", tests, NULL, NULL);
}
