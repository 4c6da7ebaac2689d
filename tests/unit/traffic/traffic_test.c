/* The pure rules of the traffic module: saturation, charged bytes, signature headers, webhook checks, records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/hmac.h>

#include "errors.gen.h"
#include "traffic/internal.h"

#define SECRET "unit-signing-secret"
#define TOKEN  "unit-shared-token"
#define NOW    1764806400

static void traffic__saturating_add_table_matches(void **state)
{
    static const struct {
        int64_t a, b, sum;
    } cases[] = {
        {1, 2, 3},
        {0, 0, 0},
        {INT64_MAX, 1, INT64_MAX},
        {INT64_MAX - 10, 10, INT64_MAX},
        {INT64_MAX - 10, 11, INT64_MAX},
        {INT64_MAX, INT64_MAX, INT64_MAX},
        {INT64_MIN, -1, INT64_MIN},
        {-5, 3, -2},
        {INT64_MAX, INT64_MIN, -1},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(traffic__saturating_add(cases[i].a, cases[i].b), cases[i].sum);
}

static void traffic__charge_table_matches(void **state)
{
    static const struct {
        int64_t raw;
        double multiplier;
        int64_t charged;
    } cases[] = {
        {1000, 1.0, 1000},
        {INT64_MAX, 1.0, INT64_MAX}, /* no trip through a double */
        {INT64_MAX - 1, 1.0, INT64_MAX - 1},
        {3, 1.5, 5},                 /* 4.5 rounds away from zero */
        {5, 0.5, 3},                 /* 2.5 rounds away from zero */
        {10, 0.3, 3},
        {10, 0.34, 3},
        {10, 0.36, 4},
        {1000, 2.0, 2000},
        {INT64_MAX / 2 + 1, 2.0, INT64_MAX},
        {INT64_MAX, 3.0, INT64_MAX},
        {1000, 0.0, 1000},           /* not above 0: counts as 1 */
        {1000, -2.0, 1000},
        {0, 2.0, 0},
        {-7, 2.0, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(traffic__charge(cases[i].raw, cases[i].multiplier), cases[i].charged);
}

static void traffic__charge_non_finite_counts_as_one(void **state)
{
    (void)state;
    assert_int_equal(traffic__charge(77, 1.0 / 0.0), 77);
    assert_int_equal(traffic__charge(77, 0.0 / 0.0), 77);
}

#define HEX64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void traffic__signature_parse_table_matches(void **state)
{
    static const struct {
        const char *header;
        int rc;
        int64_t timestamp;
        size_t count;
    } cases[] = {
        {"t=123,v1=" HEX64, 0, 123, 1},
        {" t=123 , v1=" HEX64 " ", 0, 123, 1},
        {"v1=" HEX64 ",t=99", 0, 99, 1},
        {"t=1,v1=" HEX64 ",v1=" HEX64, 0, 1, 2},
        {"t=1,v0=" HEX64 ",v1=" HEX64, 0, 1, 1},       /* other schemes are skipped */
        {"t=1,v1=abc,v1=" HEX64, 0, 1, 1},             /* a short v1 is skipped */
        {"t=1,v1=abc", -1, 1, 0},
        {"v1=" HEX64, -1, 0, 1},
        {"t=,v1=" HEX64, -1, 0, 1},
        {"t=12x,v1=" HEX64, -1, 0, 1},
        {"t=-5,v1=" HEX64, -1, 0, 1},
        {"t=99999999999999999999,v1=" HEX64, -1, 0, 1},
        {"", -1, 0, 0},
        {",,,", -1, 0, 0},
        {"t=1,v1=" HEX64 "00", -1, 1, 0},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        traffic_signature_t parsed;

        assert_int_equal(traffic__signature_parse(cases[i].header, &parsed), cases[i].rc);
        assert_int_equal(parsed.count, cases[i].count);
        if (cases[i].rc == 0)
            assert_int_equal(parsed.timestamp, cases[i].timestamp);
    }
}

static void traffic__signature_parse_null_fails(void **state)
{
    traffic_signature_t parsed;

    (void)state;
    assert_int_equal(traffic__signature_parse(NULL, &parsed), -1);
}

/* "t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>">" */
static void sign(char *out, size_t size, const char *secret, int64_t timestamp, const char *body)
{
    char text[512];
    unsigned char mac[32];
    unsigned int mac_len = 0;
    int len = snprintf(text, sizeof text, "%" PRId64 ".%s", timestamp, body);
    size_t used;

    HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)text, (size_t)len, mac, &mac_len);
    used = (size_t)snprintf(out, size, "t=%" PRId64 ",v1=", timestamp);
    for (unsigned int i = 0; i < mac_len; i++)
        used += (size_t)snprintf(out + used, size - used, "%02x", mac[i]);
}

static void traffic__webhook_check_table_matches(void **state)
{
    static const char body[] = "{\"node_id\":1,\"records\":[]}";
    char valid[160], expired[160], future[160], wrong_secret[160], edge[160];
    const traffic_webhook_keys_t both = {TOKEN, SECRET, 300};
    const traffic_webhook_keys_t token_only = {TOKEN, NULL, 300};
    const traffic_webhook_keys_t secret_only = {"", SECRET, 300};
    const traffic_webhook_keys_t none = {NULL, "", 300};
    const struct {
        const char *name;
        const traffic_webhook_keys_t *keys;
        const char *token, *signature;
        int rc;
    } cases[] = {
        {"nothing configured", &none, TOKEN, NULL, ZNP_E_WEBHOOK_UNAUTHENTICATED},
        {"nothing configured, signed", &none, NULL, valid, ZNP_E_WEBHOOK_UNAUTHENTICATED},
        {"right token", &both, TOKEN, NULL, 0},
        {"no credentials", &both, NULL, NULL, ZNP_E_WEBHOOK_UNAUTHENTICATED},
        {"empty token", &both, "", NULL, ZNP_E_WEBHOOK_UNAUTHENTICATED},
        {"wrong token", &both, "unit-shared-tokeX", NULL, ZNP_E_WEBHOOK_UNAUTHENTICATED},
        {"token prefix", &both, "unit-shared", NULL, ZNP_E_WEBHOOK_UNAUTHENTICATED},
        {"longer token", &both, TOKEN "x", NULL, ZNP_E_WEBHOOK_UNAUTHENTICATED},
        {"valid signature", &both, NULL, valid, 0},
        {"valid signature at the window edge", &both, NULL, edge, 0},
        {"expired signature", &both, NULL, expired, ZNP_E_WEBHOOK_UNAUTHENTICATED},
        {"future signature", &both, NULL, future, ZNP_E_WEBHOOK_UNAUTHENTICATED},
        {"wrong secret", &both, NULL, wrong_secret, ZNP_E_WEBHOOK_UNAUTHENTICATED},
        {"wrong signature, right token", &both, TOKEN, wrong_secret, ZNP_E_WEBHOOK_UNAUTHENTICATED},
        {"malformed signature", &both, NULL, "t=1", ZNP_E_WEBHOOK_UNAUTHENTICATED},
        {"signature without a secret falls to the token", &token_only, TOKEN, wrong_secret, 0},
        {"secret only, no signature", &secret_only, TOKEN, NULL, ZNP_E_WEBHOOK_UNAUTHENTICATED},
        {"secret only, valid signature", &secret_only, NULL, valid, 0},
    };

    (void)state;
    sign(valid, sizeof valid, SECRET, NOW - 5, body);
    sign(edge, sizeof edge, SECRET, NOW - 300, body);
    sign(expired, sizeof expired, SECRET, NOW - 301, body);
    sign(future, sizeof future, SECRET, NOW + 301, body);
    sign(wrong_secret, sizeof wrong_secret, "other-secret", NOW, body);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *reason = NULL;
        int rc = traffic__webhook_check(cases[i].keys, NOW, cases[i].token, cases[i].signature, body,
                                        strlen(body), &reason);

        if (rc != cases[i].rc)
            fail_msg("case \"%s\": expected %d, got %d", cases[i].name, cases[i].rc, rc);
        if (rc != 0)
            assert_non_null(reason);
    }
}

static void traffic__webhook_check_tampered_body_fails(void **state)
{
    char header[160];
    const traffic_webhook_keys_t keys = {NULL, SECRET, 300};
    const char *reason = NULL;

    (void)state;
    sign(header, sizeof header, SECRET, NOW, "{\"a\":1}");
    assert_int_equal(traffic__webhook_check(&keys, NOW, NULL, header, "{\"a\":1}", 7, &reason), 0);
    assert_int_equal(traffic__webhook_check(&keys, NOW, NULL, header, "{\"a\":2}", 7, &reason),
                     ZNP_E_WEBHOOK_UNAUTHENTICATED);
    assert_int_equal(traffic__webhook_check(&keys, NOW, NULL, header, "{\"a\":1} ", 8, &reason),
                     ZNP_E_WEBHOOK_UNAUTHENTICATED);
}

static void traffic__record_from_json_table_matches(void **state)
{
    static const struct {
        const char *json;
        int rc;
        const char *reason_part;
        int64_t up, down;
        const char *protocol;
    } cases[] = {
        {"{\"subscription_id\":1,\"bytes_up\":10,\"bytes_down\":20}", 0, NULL, 10, 20, ""},
        {"{\"user_id\":3,\"bytes_up\":9223372036854775807,\"protocol\":\"VLess\"}", 0, NULL, INT64_MAX, 0, "vless"},
        {"{\"subscription_id\":1,\"bytes_up\":null,\"protocol\":null}", 0, NULL, 0, 0, ""},
        {"{\"subscription_id\":1,\"bytes_up\":-5,\"bytes_down\":10}", -1, "bytes_up must not be negative", 0, 0, NULL},
        {"{\"subscription_id\":1,\"bytes_down\":-1}", -1, "bytes_down must not be negative", 0, 0, NULL},
        {"{\"subscription_id\":1,\"bytes_up\":1e30}", -1, "out of range", 0, 0, NULL},
        {"{\"subscription_id\":1,\"bytes_up\":9.3e18}", -1, "out of range", 0, 0, NULL},
        {"{\"subscription_id\":1,\"bytes_up\":1.5}", -1, "must be an integer", 0, 0, NULL},
        {"{\"subscription_id\":1,\"bytes_up\":10.0}", -1, "must be an integer", 0, 0, NULL},
        {"{\"subscription_id\":1,\"bytes_up\":\"12abc\"}", -1, "must be an integer", 0, 0, NULL},
        {"{\"subscription_id\":1,\"bytes_up\":true}", -1, "must be an integer", 0, 0, NULL},
        {"{\"subscription_id\":-1,\"bytes_up\":1}", -1, "subscription_id must not be negative", 0, 0, NULL},
        {"{\"bytes_up\":1}", -1, "subscription_id or user_id is required", 0, 0, NULL},
        {"{\"user_id\":1,\"observed_at\":\"now\"}", -1, "observed_at must be an integer", 0, 0, NULL},
        {"{\"user_id\":1,\"protocol\":7}", -1, "protocol must be a string", 0, 0, NULL},
        {"{\"user_id\":1,\"protocol\":\"v less\"}", -1, "protocol must contain", 0, 0, NULL},
        {"{\"user_id\":1,\"protocol\":\"abcdefghijklmnopqrstuvwxyz0123456\"}", -1, "longer than", 0, 0, NULL},
        {"[1,2]", -1, "record must be an object", 0, 0, NULL},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *item = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
        char protocol[TRAFFIC_PROTOCOL_MAX + 1];
        char reason[TRAFFIC_REASON_MAX] = "";
        znp_traffic_record_t record;
        int rc;

        assert_non_null(item);
        rc = traffic__record_from_json(item, &record, protocol, reason, sizeof reason);
        if (rc != cases[i].rc)
            fail_msg("case %zu (%s): expected %d, got %d (%s)", i, cases[i].json, cases[i].rc, rc, reason);
        if (rc == 0) {
            assert_int_equal(record.bytes_up, cases[i].up);
            assert_int_equal(record.bytes_down, cases[i].down);
            assert_string_equal(record.protocol, cases[i].protocol);
        } else if (strstr(reason, cases[i].reason_part) == NULL) {
            fail_msg("case %zu (%s): reason \"%s\" lacks \"%s\"", i, cases[i].json, reason, cases[i].reason_part);
        }
        json_decref(item);
    }
}

static void traffic__event_names_table_matches(void **state)
{
    static const struct {
        const char *status, *event;
        int health;
    } cases[] = {
        {"healthy", "node_degraded", 1},  /* the status wins */
        {"Healthy", NULL, 1},
        {"DEGRADED", NULL, 2},
        {"unhealthy", NULL, 3},
        {"offline", NULL, 4},
        {NULL, "node_healthy", 1},
        {"", "node.degraded", 2},
        {"weird", "Node-Unhealthy", 3},
        {NULL, "node_removed", 4},
        {NULL, "node_added", 0},
        {NULL, NULL, 0},
    };
    char normalized[32];

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(traffic__health_of(cases[i].status, cases[i].event), cases[i].health);
    traffic__event_normalize("User.Traffic-Reported", normalized, sizeof normalized);
    assert_string_equal(normalized, "user_traffic_reported");
    traffic__event_normalize("abcdef", normalized, 4);
    assert_string_equal(normalized, "abc");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(traffic__saturating_add_table_matches),
        cmocka_unit_test(traffic__charge_table_matches),
        cmocka_unit_test(traffic__charge_non_finite_counts_as_one),
        cmocka_unit_test(traffic__signature_parse_table_matches),
        cmocka_unit_test(traffic__signature_parse_null_fails),
        cmocka_unit_test(traffic__webhook_check_table_matches),
        cmocka_unit_test(traffic__webhook_check_tampered_body_fails),
        cmocka_unit_test(traffic__record_from_json_table_matches),
        cmocka_unit_test(traffic__event_names_table_matches),
    };

    return cmocka_run_group_tests_name("traffic", tests, NULL, NULL);
}
