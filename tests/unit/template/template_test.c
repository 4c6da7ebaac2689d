/* Template engine: syntax, functions, trimming, errors with positions, limits and robustness. */
#include <pthread.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "errors.gen.h"
#include "template/internal.h"
#include "template/template.h"

static const char DATA[] =
    "{\"name\":\"Alice\",\"n\":3,\"f\":1.5,\"t\":true,\"z\":0,\"empty\":\"\",\"list\":[\"a\",\"b\",\"c\"],"
    "\"nums\":[1,2,3],\"obj\":{\"b\":2,\"a\":1,\"c\":3},\"nested\":{\"x\":{\"y\":\"deep\"}},\"nil\":null,"
    "\"emptylist\":[],\"emptyobj\":{},\"cjk\":\"日本語\",\"emoji\":\"🚀 Fast\",\"lt\":\"<&>\"}";

typedef struct {
    const char *text;
    const char *expected;
} render_case_t;

static const render_case_t render_cases[] = {
    /* text, fields, missing values */
    {"hello", "hello"},
    {"", ""},
    {"{{.name}}", "Alice"},
    {"{{.nested.x.y}}", "deep"},
    {"{{.missing}}", "<no value>"},
    {"{{.missing.deeper}}", "<no value>"},
    {"{{.nil}}", "<no value>"},
    {"{{print .nil .missing}}", "<nil> <nil>"},
    {"{{$.name}}", "Alice"},
    {"{{.list}} {{.obj}} {{.emptyobj}}", "[a b c] map[a:1 b:2 c:3] map[]"},
    /* variables */
    {"{{$x := .name}}{{$x}}", "Alice"},
    {"{{$x := 1}}{{$x = 2}}{{$x}}", "2"},
    {"{{$x := 1}}{{if true}}{{$x = 2}}{{$y := 3}}{{$y}}{{end}}{{$x}}", "32"},
    {"{{$n := .nested}}{{$n.x.y}}", "deep"},
    /* range */
    {"{{range .list}}{{.}},{{end}}", "a,b,c,"},
    {"{{range $i, $v := .list}}{{$i}}={{$v}} {{end}}", "0=a 1=b 2=c "},
    {"{{range $k, $v := .obj}}{{$k}}:{{$v}} {{end}}", "a:1 b:2 c:3 "},
    {"{{range .obj}}{{.}}{{end}}", "123"},
    {"{{range $v := .nums}}{{$v}}{{end}}", "123"},
    {"{{range .emptylist}}x{{else}}none{{end}}", "none"},
    {"{{range .missing}}x{{else}}none{{end}}", "none"},
    {"{{range .emptyobj}}x{{else}}none{{end}}", "none"},
    {"{{range .list}}{{$.name}}{{end}}", "AliceAliceAlice"},
    {"{{range .nums}}{{if eq . 2}}{{continue}}{{end}}{{.}}{{end}}", "13"},
    {"{{range .nums}}{{if eq . 2}}{{break}}{{end}}{{.}}{{end}}", "1"},
    {"{{range .list}}{{range $.nums}}{{.}}{{end}}{{end}}", "123123123"},
    {"{{$i := 9}}{{range $i, $v := .list}}{{end}}{{$i}}", "9"},
    /* if, else if, with */
    {"{{if .t}}yes{{else}}no{{end}}", "yes"},
    {"{{if eq .n 1}}one{{else if eq .n 3}}three{{else}}other{{end}}", "three"},
    {"{{if eq .n 1}}one{{else if eq .n 2}}two{{else}}other{{end}}", "other"},
    {"{{with .nested.x}}{{.y}}{{end}}", "deep"},
    {"{{with .missing}}x{{else}}no{{end}}", "no"},
    {"{{with $v := .name}}{{$v}}{{end}}", "Alice"},
    {"{{with .missing}}a{{else with .name}}{{.}}{{end}}", "Alice"},
    {"{{if .empty}}1{{end}}{{if .z}}2{{end}}{{if .emptylist}}3{{end}}{{if .emptyobj}}4{{end}}{{if .nil}}5{{end}}"
     "{{if .missing}}6{{end}}{{if .list}}7{{end}}{{if 0.0}}8{{end}}{{if .f}}9{{end}}",
     "79"},
    /* pipelines and literals */
    {"{{.name | printf \"%s!\"}}", "Alice!"},
    {"{{.name | upper | lower}}", "alice"},
    {"{{.n | eq 3}}", "true"},
    {"{{(index .nested \"x\").y}}", "deep"},
    {"{{\"s\"}} {{`raw\\n`}} {{42}} {{-7}} {{+7}} {{1.5}} {{true}} {{0x10}} {{'a'}} {{1e3}} {{1_000}} {{010}}",
     "s raw\\n 42 -7 7 1.5 true 16 97 1000 1000 8"},
    {"{{\"tab\\there \\u4e2d \\x41\"}}", "tab\there 中 A"},
    {"{{1234567.0}} {{0.00001}} {{100000.0}} {{.f}}", "1.234567e+06 1e-05 100000 1.5"},
    {"{{toJSON 1e21}} {{toJSON 1e20}} {{toJSON 0.0000001}} {{toJSON 0.000001}} {{toJSON -0.0}} {{-0.0}}",
     "1e+21 100000000000000000000 1e-7 0.000001 -0 -0"},
    {"{{ if\n .t }}y{{ end }}", "y"},
    {"{{/* comment */}}", ""},
    {"a{{/* c */}}b", "ab"},
    /* comparison and logic */
    {"{{eq .name \"Bob\" \"Alice\"}} {{eq .name \"Bob\"}} {{eq .missing .nil}} {{eq .missing 1}}",
     "true false true false"},
    {"{{ne 1 2}} {{lt 1 2}} {{le 2 2}} {{gt \"b\" \"a\"}} {{ge 1 2}} {{lt 1 1.5}}", "true true true true false true"},
    {"{{and 1 0}} {{and 1 2}} [{{or 0 \"\"}}] {{or 0 \"x\"}} {{not .t}} {{not .missing}}", "0 2 [] x false true"},
    {"{{and .missing (index .missing \"x\")}}", "<no value>"},
    {"{{or .name (index .missing \"x\")}}", "Alice"},
    {"{{if and .t (eq .n 3)}}ok{{end}}", "ok"},
    /* collections */
    {"{{len .list}} {{len .obj}} {{len .cjk}} {{len \"\"}}", "3 3 9 0"},
    {"{{index .list 1}} {{index .obj \"c\"}} {{index .nested \"x\" \"y\"}} {{index .obj \"zz\"}} {{index .name 0}}",
     "b 3 deep <no value> 65"},
    {"{{index .list}}", "[a b c]"},
    {"{{slice .list 1}} {{slice .list 1 2}} {{slice .name 0 3}} {{slice .name}} {{len (slice .nums 3)}}", "[b c] [b] Ali Alice 0"},
    /* printing */
    {"{{print 1 2 \"a\" \"b\" 3}}", "1 2ab3"},
    {"{{println 1 \"a\"}}", "1 a\n"},
    {"{{printf \"%d|%s|%v|%q|%%\" 5 \"x\" .list \"q\\\"\"}}", "5|x|[a b c]|\"q\\\"\"|%"},
    {"{{printf \"%d %s\" \"x\"}}", "%!d(string=x) %!s(MISSING)"},
    {"{{printf \"a\" 1 \"b\"}}", "a%!(EXTRA int=1, string=b)"},
    {"{{printf \"%v\" .f}}", "1.5"},
    {"{{printf \"%q\" .emoji}}", "\"🚀 Fast\""},
    {"{{printf \"%q\" \"a\\nb\\x01\"}}", "\"a\\nb\\x01\""},
    /* escaping */
    {"{{html \"<a href='x'>&\\\"\"}}", "&lt;a href=&#39;x&#39;&gt;&amp;&#34;"},
    {"{{js \"it's <b> \\\"q\\\" a=b\\n\"}}", "it\\'s \\u003Cb\\u003E \\\"q\\\" a\\u003Db\\u000A"},
    {"{{urlquery \"a b&c=d/é~\"}}", "a+b%26c%3Dd%2F%C3%A9~"},
    {"{{.lt | urlquery}}", "%3C%26%3E"},
    {"{{html 1 2}}", "1 2"},
    /* extra functions */
    {"{{upper \"héllo wörld\"}} {{lower \"ÀBC\"}} {{upper .cjk}}", "HÉLLO WÖRLD àbc 日本語"},
    {"{{title \"hello wORLD o'neil\"}}", "Hello World O'neil"},
    {"[{{trim \"  \\t x y \\n\"}}] [{{trim \"\\u3000中\\u3000\"}}] [{{trim \"\"}}]", "[x y] [中] []"},
    {"{{join .list \", \"}} {{join (split \"a-b-c\" \"-\") \"+\"}} {{len (split \"\" \",\")}}", "a, b, c a+b+c 1"},
    {"{{join .nums \"-\"}} {{join (split \"中文\" \"\") \"|\"}}", "1-2-3 中|文"},
    {"{{replace \"aaa\" \"a\" \"b\"}} {{replace \"ab\" \"\" \"-\"}} {{replace .name \"x\" \"y\"}}", "bbb -a-b- Alice"},
    {"{{trimPrefix \"prefix-x\" \"prefix-\"}}{{trimSuffix \"x.yaml\" \".yaml\"}}{{trimPrefix \"ab\" \"abc\"}}", "xxab"},
    {"{{b64enc \"hello\"}} {{b64dec \"aGVsbG8=\"}} {{b64enc \"\"}} {{b64enc \"ab\"}}", "aGVsbG8= hello  YWI="},
    {"{{b64dec (b64enc .emoji)}}{{b64dec (b64enc .cjk)}}", "🚀 Fast日本語"},
    {"{{toJSON .obj}}", "{\n  \"a\": 1,\n  \"b\": 2,\n  \"c\": 3\n}"},
    {"{{toJSON .lt}} {{toJSON .emptylist}} {{toJSON .emptyobj}} {{toJSON .f}} {{toJSON .missing}} {{toJSON .cjk}}",
     "\"\\u003c\\u0026\\u003e\" [] {} 1.5 null \"日本語\""},
    {"{{toJSON .nested}}", "{\n  \"x\": {\n    \"y\": \"deep\"\n  }\n}"},
    {"{{toJSON .list}}", "[\n  \"a\",\n  \"b\",\n  \"c\"\n]"},
    {"{{now}}", "2023-11-14T22:13:20Z"},
    /* unicode passes byte for byte */
    {"{{.emoji}} {{.cjk}} ✓ 中文 {{\"👍🏽\"}}", "🚀 Fast 日本語 ✓ 中文 👍🏽"},
    {"中文{{/* 注释 */}}🚀", "中文🚀"},
};

/* trimming cases follow Go: "{{- " trims all preceding space, tab, CR and LF; " -}}" the following */
static const render_case_t trim_cases[] = {
    {"a  {{- .name}}", "aAlice"},
    {"{{.name -}}  \n b", "Aliceb"},
    {"a \n{{- .name -}}\n b", "aAliceb"},
    {"{{- .name}}", "Alice"},
    {"x {{-3}}", "x -3"},
    {"x {{ -3 }} y", "x -3 y"},
    {"a\n{{- if .t -}}\n  yes\n{{- end -}}\nb", "ayesb"},
    {"line1\n{{- /* comment */}}\nline2", "line1\nline2"},
    {"a {{- /* c */ -}} b", "ab"},
    {"a\xc2\xa0" "{{- .name}}", "a\xc2\xa0" "Alice"},
    {"{{.name}}\t\r\n {{- \"x\"}}", "Alicex"},
    {"{{range .list -}}\n  {{.}}\n{{end}}", "a\nb\nc\n"},
    {"{{range .list}}\n  {{- .}}\n{{- end}}", "abc"},
    {"  {{- if .t}} x {{else -}}  y  {{- end -}}  ", " x "},
};

typedef struct {
    const char *text;
    znp_template_err_kind_t kind;
    int line;
    int column;
    const char *message;
} error_case_t;

static const error_case_t error_cases[] = {
    {"{{.name", ZNP_TEMPLATE_ERR_SYNTAX, 1, 8, "unclosed action"},
    {"{{if .t}}x", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "unclosed {{if}}"},
    {"x{{range .list}}\n{{if .t}}y{{end}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 4, "unclosed {{range}}"},
    {"{{end}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "unexpected {{end}}"},
    {"{{else}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "unexpected {{else}}"},
    {"{{if .t}}{{else}}{{else}}{{end}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 20, "after {{else}}"},
    {"{{foo 1}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "function \"foo\" not defined"},
    {"line1\nline2 {{ .a | nosuch }}", ZNP_TEMPLATE_ERR_SYNTAX, 2, 15, "function \"nosuch\" not defined"},
    {"中文{{ nosuch }}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 6, "not defined"},
    {"{{.a | 1}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 8, "non executable command in pipeline stage 2"},
    {"{{ | .a }}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 4, "missing value for command"},
    {"{{.a |}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 7, "missing value for command"},
    {"{{}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "missing value for command"},
    {"{{len}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "wrong number of args for len: want 1 got 0"},
    {"{{len 1 2}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "wrong number of args for len: want 1 got 2"},
    {"{{eq 1}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "want at least 2 got 1"},
    {"{{.list | len 1}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 11, "want 1 got 2"},
    {"{{print len}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 9, "wrong number of args for len"},
    {"{{$x}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "undefined variable \"$x\""},
    {"{{$x = 1}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "undefined variable \"$x\""},
    {"{{if true}}{{$y := 1}}{{end}}{{$y}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 32, "undefined variable \"$y\""},
    {"{{$ := 1}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "cannot assign"},
    {"{{$a, $b := .list}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 5, "too many declarations"},
    {"{{\"abc}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "unterminated quoted string"},
    {"{{`abc}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "unterminated raw quoted string"},
    {"{{\"\\q\"}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "invalid escape"},
    {"{{/* x }}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "unclosed comment"},
    {"{{/* x */ .a}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 10, "comment ends before closing delimiter"},
    {"{{break}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "{{break}} outside {{range}}"},
    {"{{if .t}}{{continue}}{{end}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 12, "{{continue}} outside {{range}}"},
    {"{{template \"x\"}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "not supported"},
    {"{{define \"x\"}}{{end}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "not supported"},
    {"{{nil}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "nil is not a command"},
    {"{{(1}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 5, "unclosed left paren"},
    {"{{1)}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 4, "unexpected right paren"},
    {"{{print 1)}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 10, "unexpected"},
    {"{{1x}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "bad number syntax"},
    {"{{99999999999999999999}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "out of range"},
    {"{{.a\"b\"}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 5, "unexpected \"\"\" in operand"},
    {"{{if}}{{end}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 5, "missing value for if"},
    {"{{range $a, $b, $c := .list}}{{end}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 11, "expected two variables"},
    {"{{print if}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 9, "unexpected keyword \"if\""},
    {"{{printf \"%x\" 1}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 10, "unsupported printf verb \"%x\""},
    {"{{ # }}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 4, "unexpected character \"#\""},
    {"{{.a}\n}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 5, "unexpected \"}\""},
    {"{{if .t}}{{end x}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 16, "unexpected \"x\" in end"},
    /* render-time errors */
    {"{{range .name}}{{end}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "range can't iterate over a value of type string"},
    {"{{range 5}}{{end}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "type int"},
    {"\n  {{.name.x}}", ZNP_TEMPLATE_ERR_EXEC, 2, 5, "can't evaluate field x in type string"},
    {"{{.nil.x}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "nil pointer evaluating interface {}.x"},
    {"{{index .list 5}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "index out of range: 5"},
    {"{{index .list \"a\"}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "cannot index slice with type string"},
    {"{{index .obj 1}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "should be string"},
    {"{{index .missing \"x\"}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "index of untyped nil"},
    {"{{index .n 1}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "can't index item of type int"},
    {"{{lt .list 1}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "invalid type for comparison"},
    {"{{lt .missing 1}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "invalid type for comparison"},
    {"{{eq .name 1}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "incompatible types for comparison"},
    {"{{eq .list .list}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "non-comparable type"},
    {"{{len .n}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "len of type int"},
    {"{{slice .list 2 1}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "invalid slice index: 2 > 1"},
    {"{{slice .list 0 4}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "index out of range: 4"},
    {"{{slice .n 0}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "can't slice item of type int"},
    {"{{slice .list 0 1 2}}", ZNP_TEMPLATE_ERR_SYNTAX, 1, 3, "want at most 3 got 4"},
    {"{{len .missing}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "len of nil pointer"},
    {"{{b64dec \"!!\"}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "illegal base64 data at input byte 0"},
    {"{{b64dec \"YWJ\"}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "illegal base64 data"},
    {"{{upper 1}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "upper: expected a string argument, got int"},
    {"{{b64enc .list}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "expected a string"},
    {"{{join .name \",\"}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "join: expected an array"},
    {"{{.name 1}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "is not a function"},
    {"{{1 | .name}}", ZNP_TEMPLATE_ERR_EXEC, 1, 7, "is not a function"},
    {"{{$f := \"%x\"}}{{printf $f 1}}", ZNP_TEMPLATE_ERR_EXEC, 1, 17, "unsupported printf verb"},
    {"{{printf 1}}", ZNP_TEMPLATE_ERR_EXEC, 1, 3, "format must be a string"},
    {"{{if .z}}{{$v := 1}}{{else}}{{$v}}{{end}}", ZNP_TEMPLATE_ERR_NONE, 0, 0, NULL},
};

static json_t *load(const char *text)
{
    json_error_t jerr;
    json_t *j = json_loads(text, 0, &jerr);

    assert_non_null(j);
    return j;
}

static znp_template_limits_t test_limits(void)
{
    znp_template_limits_t lim = {0};

    lim.now = 1700000000;
    return lim;
}

static void render_table(const render_case_t *cases, size_t n)
{
    json_t *data = load(DATA);
    znp_template_limits_t lim = test_limits();

    for (size_t i = 0; i < n; i++) {
        znp_template_t *t = NULL;
        znp_template_error_t err;
        char *out = NULL;
        size_t len = 0;
        int rc = znp_template_compile(&t, cases[i].text, strlen(cases[i].text), &err);

        if (rc != 0)
            fail_msg("case %zu %s: compile failed at %d:%d: %s", i, cases[i].text, err.line, err.column, err.message);
        rc = znp_template_render(t, data, &lim, &out, &len, &err);
        if (rc != 0)
            fail_msg("case %zu %s: render failed at %d:%d: %s", i, cases[i].text, err.line, err.column, err.message);
        if (strcmp(out, cases[i].expected) != 0)
            fail_msg("case %zu %s:\nwant [%s]\ngot  [%s]", i, cases[i].text, cases[i].expected, out);
        assert_int_equal(len, strlen(cases[i].expected));
        free(out);
        znp_template_destroy(t);
    }
    json_decref(data);
}

static void template__render_table_matches(void **state)
{
    (void)state;
    render_table(render_cases, sizeof(render_cases) / sizeof(render_cases[0]));
}

static void template__trim_markers_match_go(void **state)
{
    (void)state;
    render_table(trim_cases, sizeof(trim_cases) / sizeof(trim_cases[0]));
}

static void template__errors_report_position(void **state)
{
    json_t *data = load(DATA);

    (void)state;
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
        const error_case_t *c = &error_cases[i];
        znp_template_t *t = NULL;
        znp_template_error_t err;
        char *out = (char *)1;
        size_t len = 0;
        int rc = znp_template_compile(&t, c->text, strlen(c->text), &err);

        if (rc == 0) {
            rc = znp_template_render(t, data, NULL, &out, &len, &err);
            if (rc == 0)
                free(out);
            else
                assert_null(out);
        }
        if (c->kind == ZNP_TEMPLATE_ERR_NONE) {
            /* a variable declared in the if branch is undefined in else at render time, as in Go */
            assert_int_not_equal(rc, 0);
            assert_non_null(strstr(err.message, "undefined variable: $v"));
            znp_template_destroy(t);
            continue;
        }
        if (rc != ZNP_E_VALIDATION_FAILED)
            fail_msg("case %zu %s: want an error, got rc %d", i, c->text, rc);
        if (err.kind != c->kind || err.line != c->line || err.column != c->column ||
            strstr(err.message, c->message) == NULL)
            fail_msg("case %zu %s: want kind %d at %d:%d \"%s\", got kind %d at %d:%d \"%s\"", i, c->text, c->kind,
                     c->line, c->column, c->message, err.kind, err.line, err.column, err.message);
        znp_template_destroy(t);
    }
    json_decref(data);
}

static void template__nesting_beyond_max_rejected(void **state)
{
    char text[2048];
    size_t n = 0;
    znp_template_t *t = NULL;
    znp_template_error_t err;

    (void)state;
    for (int i = 0; i < ZNP_TEMPLATE_MAX_NESTING + 1; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "{{if true}}");
    assert_int_equal(znp_template_compile(&t, text, n, &err), ZNP_E_VALIDATION_FAILED);
    assert_non_null(strstr(err.message, "nested deeper"));
    assert_null(t);

    memcpy(text, "{{", 2);
    n = 2;
    for (int i = 0; i < ZNP_TEMPLATE_MAX_NESTING + 1; i++)
        text[n++] = '(';
    assert_int_equal(znp_template_compile(&t, text, n, &err), ZNP_E_VALIDATION_FAILED);
    assert_non_null(strstr(err.message, "nested deeper"));
}

typedef struct {
    const char *text;
    znp_template_limits_t lim;
    const char *message;
} limit_case_t;

static void template__limits_fail_without_output(void **state)
{
    json_t *data = load("{\"nums\":[1,2,3],\"big\":[0,1,2,3,4,5,6,7,8,9,0,1,2,3,4,5,6,7,8,9,0,1,2,3,4,5,6,7,8,9],"
                        "\"s\":\"abcdef\"}");
    const limit_case_t cases[] = {
        {"{{range .nums}}{{range $.nums}}x{{end}}{{end}}", {.max_steps = 5}, "limit of 5 steps"},
        {"{{range .big}}{{range $.big}}{{range $.big}}{{end}}{{end}}{{end}}", {.max_steps = 10000}, "steps"},
        {"{{range .nums}}abcdef{{end}}", {.max_output_bytes = 10}, "output exceeded the limit of 10 bytes"},
        {"{{.big}}", {.max_output_bytes = 8}, "output exceeded"},
        {"{{if 1}}{{if 1}}{{if 1}}x{{end}}{{end}}{{end}}", {.max_depth = 2}, "nested deeper than 2"},
        {"{{$s := \"ab\"}}{{range .big}}{{$s = print $s $s}}{{end}}{{len $s}}", {.max_memory_bytes = 1 << 20},
         "memory limit"},
        {"{{$s := \"ab\"}}{{range .big}}{{$s = replace $s \"a\" \"aa\"}}{{end}}{{len $s}}", {.max_memory_bytes = 1 << 20},
         "memory limit"},
        {"{{range .big}}{{$x := split (printf \"%v\" $.big) \" \"}}{{end}}", {.max_memory_bytes = 4096},
         "memory limit"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_template_t *t = NULL;
        znp_template_error_t err;
        char *out = (char *)1;
        size_t len = 7;

        if (znp_template_compile(&t, cases[i].text, strlen(cases[i].text), &err) != 0)
            fail_msg("case %zu: %s", i, err.message);
        assert_int_equal(znp_template_render(t, data, &cases[i].lim, &out, &len, &err), ZNP_E_VALIDATION_FAILED);
        assert_null(out);
        assert_int_equal(len, 0);
        assert_int_equal(err.kind, ZNP_TEMPLATE_ERR_LIMIT);
        if (strstr(err.message, cases[i].message) == NULL)
            fail_msg("case %zu: want \"%s\", got \"%s\"", i, cases[i].message, err.message);
        znp_template_destroy(t);
    }
    json_decref(data);
}

static void template__deep_value_hits_depth_limit(void **state)
{
    json_t *data = json_object();
    json_t *cur = data;
    znp_template_t *t = NULL;
    znp_template_error_t err;
    char *out = NULL;
    size_t len = 0;

    (void)state;
    for (int i = 0; i < 200; i++) {
        json_t *child = json_object();

        json_object_set_new(cur, "a", child);
        cur = child;
    }
    assert_int_equal(znp_template_compile(&t, "{{toJSON .}}", 12, &err), 0);
    assert_int_equal(znp_template_render(t, data, NULL, &out, &len, &err), ZNP_E_VALIDATION_FAILED);
    assert_int_equal(err.kind, ZNP_TEMPLATE_ERR_LIMIT);
    znp_template_destroy(t);
    assert_int_equal(znp_template_compile(&t, "{{.}}", 5, &err), 0);
    assert_int_equal(znp_template_render(t, data, NULL, &out, &len, &err), ZNP_E_VALIDATION_FAILED);
    assert_int_equal(err.kind, ZNP_TEMPLATE_ERR_LIMIT);
    znp_template_destroy(t);
    json_decref(data);
}

static void template__check_reports_missing_keys(void **state)
{
    json_t *data = load("{\"subscription\":{\"name\":\"Pro\"},\"nodes\":[{\"protocol\":\"ss\"}]}");
    const struct {
        const char *text;
        int rc, line, column;
        const char *message;
    } cases[] = {
        {"{{.subscription.name}}", 0, 0, 0, NULL},
        {"{{.subscription.name}}\n  {{.subscription.nmae}}", ZNP_E_VALIDATION_FAILED, 2, 5, "no entry for key \"nmae\""},
        {"{{range .nodes}}{{index . \"protocl\"}}{{end}}", ZNP_E_VALIDATION_FAILED, 1, 19, "\"protocl\""},
        {"{{.missing.x}}", ZNP_E_VALIDATION_FAILED, 1, 3, "\"missing\""},
        {"{{if .t}}{{.never}}{{end}}", ZNP_E_VALIDATION_FAILED, 1, 6, "\"t\""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        znp_template_t *t = NULL;
        znp_template_error_t err;
        char *out = NULL;
        size_t len = 0;

        assert_int_equal(znp_template_compile(&t, cases[i].text, strlen(cases[i].text), &err), 0);
        int rc = znp_template_check(t, data, NULL, &err);

        if (rc != cases[i].rc)
            fail_msg("case %zu: want rc %d, got %d (%s)", i, cases[i].rc, rc, err.message);
        if (rc != 0) {
            assert_int_equal(err.kind, ZNP_TEMPLATE_ERR_MISSING_KEY);
            assert_int_equal(err.line, cases[i].line);
            assert_int_equal(err.column, cases[i].column);
            assert_non_null(strstr(err.message, cases[i].message));
            /* a normal render of the same template succeeds and prints "<no value>" */
            assert_int_equal(znp_template_render(t, data, NULL, &out, &len, &err), 0);
            free(out);
        }
        znp_template_destroy(t);
    }
    json_decref(data);
}

static const char CLASH_TEMPLATE[] =
    "{{- /* Clash / Mihomo profile */ -}}\n"
    "mixed-port: 7890\n"
    "allow-lan: false\n"
    "mode: rule\n"
    "proxies:\n"
    "{{- range $i, $node := .nodes }}\n"
    "{{- if eq (index $node \"protocol\") \"trojan\" }}\n"
    "  - name: {{ printf \"%q\" $node.node_name }}\n"
    "    type: trojan\n"
    "    server: {{ $node.hostname }}\n"
    "    port: {{ $node.port }}\n"
    "    password: {{ printf \"%q\" $.user_identity.password }}\n"
    "    sni: {{ index $node.profile \"sni\" }}\n"
    "{{- else if eq $node.protocol \"ss\" }}\n"
    "  - name: {{ printf \"%q\" $node.node_name }}\n"
    "    type: ss\n"
    "    server: {{ $node.hostname }}\n"
    "    port: {{ $node.port }}\n"
    "    cipher: aes-128-gcm\n"
    "    password: {{ printf \"%q\" $.user_identity.password }}\n"
    "{{- else if eq $node.protocol \"vless\" }}\n"
    "  - name: {{ printf \"%q\" $node.node_name }}\n"
    "    type: vless\n"
    "    server: {{ $node.hostname }}\n"
    "    port: {{ $node.port }}\n"
    "    uuid: {{ $.user_identity.uuid }}\n"
    "{{- end }}\n"
    "{{- end }}\n"
    "proxy-groups:\n"
    "  - name: {{ .subscription.name | printf \"%q\" }}\n"
    "    type: select\n"
    "    proxies:\n"
    "{{- range .nodes }}\n"
    "      - {{ printf \"%q\" .node_name }}\n"
    "{{- end }}\n"
    "rules:\n"
    "  - MATCH,{{ .subscription.name }}\n";

static const char CLASH_DATA[] =
    "{\"subscription\":{\"name\":\"Pro 套餐\",\"token\":\"t\"},"
    "\"user_identity\":{\"password\":\"p@ss\",\"uuid\":\"0f8e2d3c-1b4a-4c5d-9e6f-7a8b9c0d1e2f\"},"
    "\"nodes\":["
    "{\"protocol\":\"trojan\",\"node_name\":\"🇯🇵 東京 01\",\"hostname\":\"jp.example.com\",\"port\":443,"
    "\"profile\":{\"sni\":\"jp.example.com\"}},"
    "{\"protocol\":\"ss\",\"node_name\":\"香港 HK\",\"hostname\":\"2001:db8::1\",\"port\":8388,\"profile\":{}},"
    "{\"protocol\":\"vless\",\"node_name\":\"US \\\"West\\\"\",\"hostname\":\"us.example.com\",\"port\":443,"
    "\"profile\":{}}]}";

static const char CLASH_EXPECTED[] = "mixed-port: 7890\n"
                                     "allow-lan: false\n"
                                     "mode: rule\n"
                                     "proxies:\n"
                                     "  - name: \"🇯🇵 東京 01\"\n"
                                     "    type: trojan\n"
                                     "    server: jp.example.com\n"
                                     "    port: 443\n"
                                     "    password: \"p@ss\"\n"
                                     "    sni: jp.example.com\n"
                                     "  - name: \"香港 HK\"\n"
                                     "    type: ss\n"
                                     "    server: 2001:db8::1\n"
                                     "    port: 8388\n"
                                     "    cipher: aes-128-gcm\n"
                                     "    password: \"p@ss\"\n"
                                     "  - name: \"US \\\"West\\\"\"\n"
                                     "    type: vless\n"
                                     "    server: us.example.com\n"
                                     "    port: 443\n"
                                     "    uuid: 0f8e2d3c-1b4a-4c5d-9e6f-7a8b9c0d1e2f\n"
                                     "proxy-groups:\n"
                                     "  - name: \"Pro 套餐\"\n"
                                     "    type: select\n"
                                     "    proxies:\n"
                                     "      - \"🇯🇵 東京 01\"\n"
                                     "      - \"香港 HK\"\n"
                                     "      - \"US \\\"West\\\"\"\n"
                                     "rules:\n"
                                     "  - MATCH,Pro 套餐\n";

static void template__clash_yaml_renders(void **state)
{
    json_t *data = load(CLASH_DATA);
    znp_template_t *t = NULL;
    znp_template_error_t err;
    char *out = NULL;
    size_t len = 0;

    (void)state;
    if (znp_template_compile(&t, CLASH_TEMPLATE, strlen(CLASH_TEMPLATE), &err) != 0)
        fail_msg("compile: %d:%d %s", err.line, err.column, err.message);
    if (znp_template_render(t, data, NULL, &out, &len, &err) != 0)
        fail_msg("render: %d:%d %s", err.line, err.column, err.message);
    if (strcmp(out, CLASH_EXPECTED) != 0)
        fail_msg("want:\n%s\ngot:\n%s", CLASH_EXPECTED, out);
    assert_int_equal(znp_template_check(t, data, NULL, &err), 0);
    free(out);
    znp_template_destroy(t);
    json_decref(data);
}

/* the shape of the reference panel's seeded zero-core template: JSON built from ranges */
static const char OUTBOUNDS_TEMPLATE[] =
    "{\"outbounds\": [\n"
    "{{- range $i, $node := .nodes }}{{ if $i }},{{ end }}\n"
    "  {{- if eq (index $node \"protocol\") \"ss\" }}\n"
    "  {\"type\": \"shadowsocks\", \"tag\": {{ toJSON $node.node_name }}, \"method\": \"aes-128-gcm\", "
    "\"password\": {{ toJSON $.user_identity.password }}}\n"
    "  {{- else }}\n"
    "  {{ toJSON (index $node \"profile\") }}\n"
    "  {{- end }}\n"
    "{{- end }},\n"
    "  {\"type\": \"direct\"}\n"
    "]}\n";

static const char OUTBOUNDS_EXPECTED[] =
    "{\"outbounds\": [\n"
    "  {\n"
    "  \"sni\": \"jp.example.com\"\n"
    "},\n"
    "  {\"type\": \"shadowsocks\", \"tag\": \"香港 HK\", \"method\": \"aes-128-gcm\", \"password\": \"p@ss\"},\n"
    "  {},\n"
    "  {\"type\": \"direct\"}\n"
    "]}\n";

static void template__json_outbounds_render(void **state)
{
    json_t *data = load(CLASH_DATA);
    znp_template_t *t = NULL;
    znp_template_error_t err;
    char *out = NULL;
    size_t len = 0;
    json_error_t jerr;
    json_t *parsed;

    (void)state;
    if (znp_template_compile(&t, OUTBOUNDS_TEMPLATE, strlen(OUTBOUNDS_TEMPLATE), &err) != 0)
        fail_msg("compile: %d:%d %s", err.line, err.column, err.message);
    if (znp_template_render(t, data, NULL, &out, &len, &err) != 0)
        fail_msg("render: %d:%d %s", err.line, err.column, err.message);
    if (strcmp(out, OUTBOUNDS_EXPECTED) != 0)
        fail_msg("want:\n%s\ngot:\n%s", OUTBOUNDS_EXPECTED, out);
    parsed = json_loadb(out, len, 0, &jerr);
    assert_non_null(parsed);
    assert_int_equal(json_array_size(json_object_get(parsed, "outbounds")), 4);
    json_decref(parsed);
    free(out);
    znp_template_destroy(t);
    json_decref(data);
}

typedef struct {
    const znp_template_t *tmpl;
    json_t *data;
    int failures;
} thread_arg_t;

static void *render_loop(void *p)
{
    thread_arg_t *a = p;

    for (int i = 0; i < 200; i++) {
        char *out = NULL;
        size_t len = 0;

        if (znp_template_render(a->tmpl, a->data, NULL, &out, &len, NULL) != 0 || strcmp(out, CLASH_EXPECTED) != 0)
            a->failures++;
        free(out);
    }
    return NULL;
}

static void template__concurrent_renders_agree(void **state)
{
    json_t *data = load(CLASH_DATA);
    znp_template_t *t = NULL;
    pthread_t threads[4];
    thread_arg_t args[4];

    (void)state;
    assert_int_equal(znp_template_compile(&t, CLASH_TEMPLATE, strlen(CLASH_TEMPLATE), NULL), 0);
    for (int i = 0; i < 4; i++) {
        args[i] = (thread_arg_t){t, data, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, render_loop, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    znp_template_destroy(t);
    json_decref(data);
}

/* Compile and render text; a failure must carry a message and a sane position. */
static void exercise(const char *text, size_t n, json_t *data)
{
    znp_template_t *t = NULL;
    znp_template_error_t err;
    znp_template_limits_t lim = {.max_steps = 20000, .max_output_bytes = 1 << 16, .now = 1};
    char *out = NULL;
    size_t len = 0;
    int rc = znp_template_compile(&t, text, n, &err);

    if (rc != 0) {
        assert_int_equal(rc, ZNP_E_VALIDATION_FAILED);
        assert_null(t);
        assert_true(err.line >= 1 && err.column >= 1);
        assert_true(err.message[0] != '\0');
        return;
    }
    rc = znp_template_render(t, data, &lim, &out, &len, &err);
    if (rc == 0) {
        assert_non_null(out);
        free(out);
    } else {
        assert_null(out);
        assert_true(err.message[0] != '\0');
    }
    (void)znp_template_check(t, data, &lim, &err);
    znp_template_destroy(t);
}

/* true when text[0..n) stops inside an action: after "{{" with no "}}" following it */
static bool cut_inside_action(const char *text, size_t n)
{
    size_t open = SIZE_MAX, close = SIZE_MAX;

    for (size_t i = 0; i + 1 < n; i++) {
        if (text[i] == '{' && text[i + 1] == '{')
            open = i;
        if (text[i] == '}' && text[i + 1] == '}' && open != SIZE_MAX && i >= open + 2)
            close = i;
    }
    return open != SIZE_MAX && (close == SIZE_MAX || close < open);
}

static void fuzz_text(const char *text, json_t *data)
{
    static const char mutations[] = "{}()|\"'`$.-= \n\\\x00\xff";
    size_t n = strlen(text);
    char *copy = malloc(n + 1);

    assert_non_null(copy);
    for (size_t cut = 0; cut <= n; cut++) {
        znp_template_t *t = NULL;

        memcpy(copy, text, cut);
        exercise(copy, cut, data);
        if (cut_inside_action(copy, cut)) {
            if (znp_template_compile(&t, copy, cut, NULL) == 0)
                fail_msg("prefix %zu of %s compiled", cut, text);
        }
    }
    for (size_t pos = 0; pos < n; pos++) {
        memcpy(copy, text, n);
        for (size_t m = 0; m < sizeof(mutations) - 1; m++) {
            copy[pos] = mutations[m];
            exercise(copy, n, data);
        }
    }
    free(copy);
}

static void template__truncated_and_mutated_never_crash(void **state)
{
    json_t *data = load(DATA);
    json_t *clash = load(CLASH_DATA);

    (void)state;
    for (size_t i = 0; i < sizeof(render_cases) / sizeof(render_cases[0]); i++)
        fuzz_text(render_cases[i].text, data);
    for (size_t i = 0; i < sizeof(trim_cases) / sizeof(trim_cases[0]); i++)
        fuzz_text(trim_cases[i].text, data);
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++)
        fuzz_text(error_cases[i].text, data);
    fuzz_text(CLASH_TEMPLATE, clash);
    fuzz_text(OUTBOUNDS_TEMPLATE, clash);
    json_decref(clash);
    json_decref(data);
}

static void template__null_data_and_destroy_null(void **state)
{
    znp_template_t *t = NULL;
    char *out = NULL;
    size_t len = 0;

    (void)state;
    znp_template_destroy(NULL);
    assert_int_equal(znp_template_compile(&t, "a{{.x}}b{{if .}}c{{end}}", 24, NULL), 0);
    assert_int_equal(znp_template_render(t, NULL, NULL, &out, &len, NULL), 0);
    assert_string_equal(out, "a<no value>b");
    free(out);
    znp_template_destroy(t);

    /* text with NUL bytes and no actions passes through unchanged */
    assert_int_equal(znp_template_compile(&t, "a\0b", 3, NULL), 0);
    assert_int_equal(znp_template_render(t, NULL, NULL, &out, &len, NULL), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(out, "a\0b", 3);
    free(out);
    znp_template_destroy(t);
}

static char *read_doc(const char *relative)
{
    const char *root = getenv("ZNP_SOURCE_DIR");
    char path[1024];
    FILE *f;
    char *text;
    long size;

    snprintf(path, sizeof(path), "%s/%s", root != NULL ? root : ".", relative);
    f = fopen(path, "rb");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    text = calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    return text;
}

static void template__every_function_documented(void **state)
{
    const char *docs[] = {"docs/templates.md", "docs/zh-CN/templates.md"};

    (void)state;
    for (size_t d = 0; d < 2; d++) {
        char *text = read_doc(docs[d]);

        /* each function appears in code spans as `name` alone or as `name args` */
        for (size_t i = 0; template__funcs[i].name != NULL; i++) {
            char alone[64], with_args[64];

            snprintf(alone, sizeof(alone), "`%s`", template__funcs[i].name);
            snprintf(with_args, sizeof(with_args), "`%s ", template__funcs[i].name);
            if (strstr(text, alone) == NULL && strstr(text, with_args) == NULL)
                fail_msg("%s does not document function %s", docs[d], template__funcs[i].name);
        }
        free(text);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(template__render_table_matches),
        cmocka_unit_test(template__trim_markers_match_go),
        cmocka_unit_test(template__errors_report_position),
        cmocka_unit_test(template__nesting_beyond_max_rejected),
        cmocka_unit_test(template__limits_fail_without_output),
        cmocka_unit_test(template__deep_value_hits_depth_limit),
        cmocka_unit_test(template__check_reports_missing_keys),
        cmocka_unit_test(template__clash_yaml_renders),
        cmocka_unit_test(template__json_outbounds_render),
        cmocka_unit_test(template__concurrent_renders_agree),
        cmocka_unit_test(template__null_data_and_destroy_null),
        cmocka_unit_test(template__every_function_documented),
        cmocka_unit_test(template__truncated_and_mutated_never_crash),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
