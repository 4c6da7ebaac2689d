/* Parsing of UniProxy push and alive bodies, protocol aliases and the eligibility version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "errors.gen.h"
#include "uniproxy/internal.h"
#include "uniproxy/uniproxy.h"

static void uniproxy__push_bad_pairs_rejected(void **state)
{
    static const struct {
        const char *body;
        const char *message_part;
    } cases[] = {
        {"{\"1\": [-5, 10]}", "negative"},
        {"{\"1\": [1e30, 0]}", "not an integer"},
        {"{\"1\": [\"12abc\", 0]}", "not a string"},
        {"{\"1\": [9223372036854775807, 1]}", "upload plus download"},
        {"{\"1\": [1, 99999999999999999999]}", "larger than"},
        {"{\"1\": [1.5, 0]}", "not an integer"},
        {"{\"1\": [1, 2, 3]}", "[upload, download]"},
        {"{\"1\": null}", "[upload, download]"},
        {"{\"0\": [1, 2]}", "user id"},
        {"{\"01\": [1, 2]}", "user id"},
        {"{\"abc\": [1, 2]}", "user id"},
        {"{\"1\": [true, 2]}", "not a boolean"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uniproxy_report_t report;
        int rc = uniproxy_parse_push(cases[i].body, strlen(cases[i].body), &report);

        assert_int_equal(rc, ZNP_E_NODE_REPORT_INVALID);
        assert_int_equal(report.bad_count, 1);
        assert_int_equal(report.count, 0);
        assert_null(report.more_details);
        assert_non_null(strstr(report.first_message, cases[i].message_part));
        uniproxy_report_dispose(&report);
    }
}

static void uniproxy__push_valid_body_parsed(void **state)
{
    static const char body[] = "{\"7\": [1000, 2000], \"9223372036854775807\": [0, 9223372036854775807]}";
    uniproxy_report_t report;

    (void)state;
    assert_int_equal(uniproxy_parse_push(body, strlen(body), &report), 0);
    assert_int_equal(report.count, 2);
    assert_int_equal(report.usage[0].user_id, 7);
    assert_int_equal(report.usage[0].upload, 1000);
    assert_int_equal(report.usage[0].download, 2000);
    assert_true(report.usage[1].user_id == INT64_MAX);
    assert_true(report.usage[1].download == INT64_MAX);
    uniproxy_report_dispose(&report);
}

static void uniproxy__push_every_bad_key_listed(void **state)
{
    static const char body[] = "{\"1\": [-5, 10], \"2\": [3, 4], \"3\": [\"x\", 0], \"4\": [1e30, 0]}";
    uniproxy_report_t report;

    (void)state;
    assert_int_equal(uniproxy_parse_push(body, strlen(body), &report), ZNP_E_NODE_REPORT_INVALID);
    assert_int_equal(report.bad_count, 3);
    assert_string_equal(report.first_field, "$.1");
    assert_non_null(report.more_details);
    assert_non_null(strstr(report.more_details, "\"$.3\""));
    assert_non_null(strstr(report.more_details, "\"$.4\""));
    assert_null(strstr(report.more_details, "\"$.2\""));
    uniproxy_report_dispose(&report);
}

static void uniproxy__push_not_object_is_invalid_json(void **state)
{
    static const char *const bodies[] = {"[1, 2]", "{\"1\": [1, 2]", "{\"1\": [1,2], \"1\": [1,2]}", "7"};
    uniproxy_report_t report;

    (void)state;
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        assert_int_equal(uniproxy_parse_push(bodies[i], strlen(bodies[i]), &report), ZNP_E_INVALID_JSON);
        uniproxy_report_dispose(&report);
    }
    assert_int_equal(uniproxy_parse_push(NULL, 0, &report), ZNP_E_BODY_REQUIRED);
    uniproxy_report_dispose(&report);
}

static void uniproxy__alive_pairs_parsed(void **state)
{
    static const char body[] = "{\"3\": [\"10.0.0.1\", \"2001:db8::1\"], \"4\": []}";
    static const char bad[] = "{\"3\": [\"10.0.0.1\", \"a b\", 7], \"x\": [\"10.0.0.1\"]}";
    uniproxy_report_t report;

    (void)state;
    assert_int_equal(uniproxy_parse_alive(body, strlen(body), &report), 0);
    assert_int_equal(report.count, 2);
    assert_int_equal(report.online[1].user_id, 3);
    assert_string_equal(report.online[1].ip, "2001:db8::1");
    uniproxy_report_dispose(&report);

    assert_int_equal(uniproxy_parse_alive(bad, strlen(bad), &report), ZNP_E_NODE_REPORT_INVALID);
    assert_int_equal(report.bad_count, 3);
    uniproxy_report_dispose(&report);
}

static void uniproxy__protocol_aliases_match(void **state)
{
    (void)state;
    assert_string_equal(uniproxy_canonical_protocol("v2ray"), "vmess");
    assert_string_equal(uniproxy_canonical_protocol("V2RAY"), "vmess");
    assert_string_equal(uniproxy_canonical_protocol("ss"), "shadowsocks");
    assert_string_equal(uniproxy_canonical_protocol("hy2"), "hysteria2");
    assert_string_equal(uniproxy_canonical_protocol("tuic-v5"), "tuic");
    assert_string_equal(uniproxy_canonical_protocol("trojan"), "trojan");
    assert_string_equal(uniproxy_canonical_protocol(NULL), "");
}

static void uniproxy__invalidate_bumps_version(void **state)
{
    uint64_t before = znp_uniproxy_version();

    (void)state;
    znp_uniproxy_invalidate();
    assert_true(znp_uniproxy_version() == before + 1);
    znp_uniproxy_on_notify(ZNP_UNIPROXY_CHANNEL, "subscriptions:1");
    assert_true(znp_uniproxy_version() == before + 2);
    znp_uniproxy_on_notify("znp_other", "");
    assert_true(znp_uniproxy_version() == before + 2);
}

static void uniproxy__token_missing_unauthenticated(void **state)
{
    int64_t node_id = 5;

    (void)state;
    assert_int_equal(znp_uniproxy_token_node(NULL, NULL, &node_id), ZNP_E_UNAUTHENTICATED);
    assert_int_equal(node_id, 0);
    assert_int_equal(znp_uniproxy_token_node(NULL, "", &node_id), ZNP_E_UNAUTHENTICATED);
    /* the map is not loaded and there is no connection to load it with */
    assert_int_equal(znp_uniproxy_token_node(NULL, "znpn_abc", &node_id), ZNP_E_DATABASE_UNAVAILABLE);
}

static void uniproxy__etag_is_quoted_sha256(void **state)
{
    char etag[UNIPROXY_ETAG_SIZE];

    (void)state;
    uniproxy_etag(etag, "abc", 3);
    assert_string_equal(etag, "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uniproxy__push_bad_pairs_rejected),
        cmocka_unit_test(uniproxy__push_valid_body_parsed),
        cmocka_unit_test(uniproxy__push_every_bad_key_listed),
        cmocka_unit_test(uniproxy__push_not_object_is_invalid_json),
        cmocka_unit_test(uniproxy__alive_pairs_parsed),
        cmocka_unit_test(uniproxy__protocol_aliases_match),
        cmocka_unit_test(uniproxy__invalidate_bumps_version),
        cmocka_unit_test(uniproxy__token_missing_unauthenticated),
        cmocka_unit_test(uniproxy__etag_is_quoted_sha256),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
