#include "core_tests.h"

#include <stdlib.h>
#include <string.h>

#include "core/codec.h"

typedef struct load_case {
    const char *name;
    const char *data;
    size_t len;
    int expected;       /* 0 or the error */
    const char *detail; /* substring of err.detail, or NULL */
} load_case_t;

#define DOC(s) s, sizeof(s) - 1

static void codec__load_table_matches(void **state)
{
    static const load_case_t cases[] = {
        {"object", DOC("{\"a\": 1}"), 0, NULL},
        {"empty object", DOC("{}"), 0, NULL},
        {"array", DOC("[1, 2]"), 0, NULL},
        {"scalar document", DOC("\"text\""), 0, NULL},
        {"utf-8 text", DOC("{\"a\": \"\xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80\"}"), 0, NULL},
        {"escaped non-BMP", DOC("{\"a\": \"\\ud83d\\ude00\"}"), 0, NULL},
        {"whitespace around", DOC(" \n {\"a\": true} \t"), 0, NULL},
        {"int64 max", DOC("{\"a\": 9223372036854775807}"), 0, NULL},
        {"int64 min", DOC("{\"a\": -9223372036854775808}"), 0, NULL},
        /* invalid UTF-8 */
        {"overlong slash", DOC("{\"a\": \"\xc0\xaf\"}"), ZNP_E_INVALID_UTF8, "byte offset 7"},
        {"encoded surrogate", DOC("{\"a\": \"\xed\xa0\x80\"}"), ZNP_E_INVALID_UTF8, "byte offset 7"},
        {"truncated three-byte", DOC("{\"a\": \"\xe4\xb8\"}"), ZNP_E_INVALID_UTF8, "byte offset 7"},
        {"truncated at end", DOC("{\"a\": 1}\xf0\x9f\x98"), ZNP_E_INVALID_UTF8, "byte offset 8"},
        {"lone continuation", DOC("{\"a\": \"\x80\"}"), ZNP_E_INVALID_UTF8, "byte offset 7"},
        {"beyond U+10FFFF", DOC("{\"a\": \"\xf4\x90\x80\x80\"}"), ZNP_E_INVALID_UTF8, "byte offset 7"},
        {"byte FF", DOC("{\"\xff\": 1}"), ZNP_E_INVALID_UTF8, "byte offset 2"},
        {"invalid UTF-8 in key", DOC("{\"k\xc3\": 1}"), ZNP_E_INVALID_UTF8, "byte offset 3"},
        /* invalid JSON */
        {"empty input", DOC(""), ZNP_E_INVALID_JSON, "byte offset"},
        {"syntax error", DOC("{\"a\": }"), ZNP_E_INVALID_JSON, "byte offset"},
        {"trailing garbage", DOC("{} {}"), ZNP_E_INVALID_JSON, "byte offset"},
        {"single quotes", DOC("{'a': 1}"), ZNP_E_INVALID_JSON, NULL},
        {"nul escape", DOC("{\"a\": \"x\\u0000y\"}"), ZNP_E_INVALID_JSON, "\\u0000 is not allowed"},
        {"lone surrogate escape", DOC("{\"a\": \"\\ud800\"}"), ZNP_E_INVALID_JSON, NULL},
        {"raw nul byte", "{\"a\": \"x\0\"}", 10, ZNP_E_INVALID_JSON, NULL},
        {"duplicate key", DOC("{\"a\": 1, \"a\": 2}"), ZNP_E_INVALID_JSON, "duplicate"},
        {"nested duplicate key", DOC("{\"o\": {\"b\": 1, \"b\": 1}}"), ZNP_E_INVALID_JSON, "duplicate"},
        {"int64 max plus one", DOC("{\"a\": 9223372036854775808}"), ZNP_E_INVALID_JSON, "too big"},
        {"int64 min minus one", DOC("{\"a\": -9223372036854775809}"), ZNP_E_INVALID_JSON, "too big"},
        {"real overflow", DOC("{\"a\": 1e400}"), ZNP_E_INVALID_JSON, NULL},
        {"NaN literal", DOC("{\"a\": NaN}"), ZNP_E_INVALID_JSON, NULL},
        {"leading plus", DOC("{\"a\": +1}"), ZNP_E_INVALID_JSON, NULL},
        {"leading zero", DOC("{\"a\": 01}"), ZNP_E_INVALID_JSON, NULL},
        {"control byte in string", DOC("{\"a\": \"x\ny\"}"), ZNP_E_INVALID_JSON, NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const load_case_t *c = &cases[i];
        znp_error_t err = {0};
        json_t *doc = (json_t *)&err; /* must be reset to NULL on failure */
        int rc = znp_codec_load(&doc, c->data, c->len, &err);

        if (rc != c->expected)
            fail_msg("case %s: rc %d, expected %d (detail \"%s\")", c->name, rc, c->expected, err.detail);
        if (rc == 0) {
            if (doc == NULL)
                fail_msg("case %s: no document", c->name);
            json_decref(doc);
            continue;
        }
        if (doc != NULL)
            fail_msg("case %s: *out not NULL on failure", c->name);
        if (err.code != c->expected)
            fail_msg("case %s: err.code %d", c->name, err.code);
        if (c->detail != NULL && strstr(err.detail, c->detail) == NULL)
            fail_msg("case %s: detail \"%s\" lacks \"%s\"", c->name, err.detail, c->detail);
        if (strcmp(err.path, "$") != 0)
            fail_msg("case %s: path \"%s\"", c->name, err.path);
    }
}

/* a document of `depth` nested arrays, optionally with a bracket inside a string that must not count */
static char *nested(size_t depth, const char *inner)
{
    size_t inner_len = strlen(inner);
    char *doc = malloc(depth * 6 + inner_len + 1);
    char *p = doc;

    /* even levels are objects with key "k", odd levels arrays */
    for (size_t i = 0; i < depth; i++) {
        if (i % 2 == 0) {
            memcpy(p, "{\"k\":", 5);
            p += 5;
        } else {
            *p++ = '[';
        }
    }
    memcpy(p, inner, inner_len);
    p += inner_len;
    for (size_t i = depth; i-- > 0;)
        *p++ = i % 2 == 0 ? '}' : ']';
    *p = '\0';
    return doc;
}

static void codec__load_depth_limit_enforced(void **state)
{
    znp_error_t err = {0};
    json_t *doc = NULL;
    char *text;

    (void)state;
    text = nested(ZNP_CODEC_MAX_DEPTH, "1");
    assert_int_equal(znp_codec_load(&doc, text, strlen(text), &err), 0);
    json_decref(doc);
    free(text);

    text = nested(ZNP_CODEC_MAX_DEPTH - 1, "\"[[[[{{{{\\\"[[[[\"");
    assert_int_equal(znp_codec_load(&doc, text, strlen(text), &err), 0);
    json_decref(doc);
    free(text);

    text = nested(ZNP_CODEC_MAX_DEPTH + 1, "1");
    assert_int_equal(znp_codec_load(&doc, text, strlen(text), &err), ZNP_E_INVALID_JSON);
    assert_null(doc);
    assert_non_null(strstr(err.detail, "nesting deeper than 32 levels"));
    free(text);

    text = nested(5000, "1");
    assert_int_equal(znp_codec_load(&doc, text, strlen(text), &err), ZNP_E_INVALID_JSON);
    free(text);
}

static void codec__utf8_validator_table_matches(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
        int valid;
    } cases[] = {
        {DOC(""), 1},
        {DOC("ascii"), 1},
        {DOC("\xc2\x80"), 1},         /* U+0080 */
        {DOC("\xdf\xbf"), 1},         /* U+07FF */
        {DOC("\xe0\xa0\x80"), 1},     /* U+0800 */
        {DOC("\xed\x9f\xbf"), 1},     /* U+D7FF */
        {DOC("\xee\x80\x80"), 1},     /* U+E000 */
        {DOC("\xef\xbf\xbf"), 1},     /* U+FFFF */
        {DOC("\xf0\x90\x80\x80"), 1}, /* U+10000 */
        {DOC("\xf4\x8f\xbf\xbf"), 1}, /* U+10FFFF */
        {DOC("\xc0\xaf"), 0},
        {DOC("\xc1\xbf"), 0},
        {DOC("\xe0\x9f\xbf"), 0},     /* overlong */
        {DOC("\xed\xa0\x80"), 0},     /* U+D800 */
        {DOC("\xed\xbf\xbf"), 0},     /* U+DFFF */
        {DOC("\xf0\x8f\xbf\xbf"), 0}, /* overlong */
        {DOC("\xf4\x90\x80\x80"), 0}, /* U+110000 */
        {DOC("\xf5\x80\x80\x80"), 0},
        {DOC("\xc2"), 0},
        {DOC("\xe4\xb8"), 0},
        {DOC("\xf0\x9f\x98"), 0},
        {DOC("\xc2\x41"), 0},
        {DOC("\x80"), 0},
        {DOC("\xfe"), 0},
        {"a\0b", 3, 1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (znp_utf8_valid(cases[i].bytes, cases[i].len) != cases[i].valid)
            fail_msg("case %zu: expected valid=%d", i, cases[i].valid);
    }
}

int run_codec_load_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(codec__load_table_matches),
        cmocka_unit_test(codec__load_depth_limit_enforced),
        cmocka_unit_test(codec__utf8_validator_table_matches),
    };
    return cmocka_run_group_tests_name("codec_load", tests, NULL, NULL);
}
