#include "grpc_tests.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "grpc/convert.h"
#include "grpc/health/v1/health.pb-c.h"
#include "znp/v1/znp.pb-c.h"

/*
 * A message with one field of each kind the converter handles, described by
 * hand because spec/proto has no message that covers them all. Field ids are
 * 1..12 in order; the layout mirrors what protoc-c emits.
 */
typedef struct sample {
    ProtobufCMessage base;
    int32_t i32;
    uint32_t u32;
    uint64_t u64;
    double number;
    protobuf_c_boolean flag;
    int color;
    char *text;
    size_t n_ids;
    int64_t *ids;
    size_t n_users;
    Znp__V1__AuthenticatedUser **users;
    uint32_t choice_case;
    union {
        char *choice_text;
        int32_t choice_number;
    };
    protobuf_c_boolean has_opt;
    int64_t opt;
} sample_t;

static const ProtobufCMessageDescriptor sample_descriptor;

static void sample_init(ProtobufCMessage *message)
{
    sample_t *sample = (sample_t *)message;

    memset(sample, 0, sizeof *sample);
    sample->base.descriptor = &sample_descriptor;
    sample->text = (char *)protobuf_c_empty_string;
}

#define FIELD(name_, id_, label_, type_, quantifier_, member_, descriptor_, default_, flags_)                          \
    {                                                                                                                  \
        name_, id_, label_, type_, quantifier_, offsetof(sample_t, member_), descriptor_, default_, flags_, 0, NULL,   \
            NULL                                                                                                       \
    }

static const ProtobufCFieldDescriptor sample_fields[] = {
    FIELD("i32", 1, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_INT32, 0, i32, NULL, NULL, 0),
    FIELD("u32", 2, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_UINT32, 0, u32, NULL, NULL, 0),
    FIELD("u64", 3, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_UINT64, 0, u64, NULL, NULL, 0),
    FIELD("number", 4, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_DOUBLE, 0, number, NULL, NULL, 0),
    FIELD("flag", 5, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_BOOL, 0, flag, NULL, NULL, 0),
    FIELD("color", 6, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_ENUM, 0, color,
          &grpc__health__v1__health_check_response__serving_status__descriptor, NULL, 0),
    FIELD("text", 7, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, 0, text, NULL, &protobuf_c_empty_string, 0),
    FIELD("ids", 8, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_INT64, offsetof(sample_t, n_ids), ids, NULL, NULL,
          PROTOBUF_C_FIELD_FLAG_PACKED),
    FIELD("users", 9, PROTOBUF_C_LABEL_REPEATED, PROTOBUF_C_TYPE_MESSAGE, offsetof(sample_t, n_users), users,
          &znp__v1__authenticated_user__descriptor, NULL, 0),
    FIELD("choice_text", 10, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_STRING, offsetof(sample_t, choice_case),
          choice_text, NULL, &protobuf_c_empty_string, PROTOBUF_C_FIELD_FLAG_ONEOF),
    FIELD("choice_number", 11, PROTOBUF_C_LABEL_NONE, PROTOBUF_C_TYPE_INT32, offsetof(sample_t, choice_case),
          choice_number, NULL, NULL, PROTOBUF_C_FIELD_FLAG_ONEOF),
    FIELD("opt", 12, PROTOBUF_C_LABEL_OPTIONAL, PROTOBUF_C_TYPE_INT64, offsetof(sample_t, has_opt), opt, NULL, NULL, 0),
};

/* indices of sample_fields in strcmp order of their names */
static const unsigned sample_fields_by_name[] = {10, 9, 5, 4, 0, 7, 3, 11, 6, 1, 2, 8};
static const ProtobufCIntRange sample_ranges[] = {{1, 0}, {0, 12}};

static const ProtobufCMessageDescriptor sample_descriptor = {
    PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC,
    "test.Sample",
    "Sample",
    "Sample",
    "test",
    sizeof(sample_t),
    12,
    sample_fields,
    sample_fields_by_name,
    1,
    sample_ranges,
    sample_init,
    NULL,
    NULL,
    NULL,
};

/* helpers */

static json_t *load(const char *text)
{
    json_error_t error;
    json_t *value = json_loads(text, JSON_REJECT_DUPLICATES, &error);

    if (value == NULL)
        fail_msg("bad test JSON %s: %s", text, error.text);
    return value;
}

static void assert_json_equal(json_t *actual, const char *expected_text)
{
    json_t *expected = load(expected_text);
    char *actual_text = json_dumps(actual, JSON_COMPACT | JSON_SORT_KEYS);

    if (!json_equal(actual, expected))
        fail_msg("JSON differs:\n  actual   %s\n  expected %s", actual_text, expected_text);
    free(actual_text);
    json_decref(expected);
}

static sample_t *new_sample(void)
{
    sample_t *sample = malloc(sizeof *sample);

    assert_non_null(sample);
    sample_init(&sample->base);
    return sample;
}

static Znp__V1__AuthenticatedUser *new_user(int64_t id, const char *email)
{
    Znp__V1__AuthenticatedUser *user = malloc(sizeof *user);

    assert_non_null(user);
    znp__v1__authenticated_user__init(user);
    user->id = id;
    user->email = strdup(email);
    return user;
}

/* message -> JSON */

static void convert__emit_defaults_omitted(void **state)
{
    sample_t *sample = new_sample();
    znp_error_t err = {0};
    json_t *out = NULL;

    (void)state;
    assert_int_equal(znp_grpc_message_emit(&out, &sample->base, &err), 0);
    assert_json_equal(out, "{}");

    json_decref(out);
    protobuf_c_message_free_unpacked(&sample->base, NULL);
}

static void convert__emit_every_kind_ok(void **state)
{
    sample_t *sample = new_sample();
    znp_error_t err = {0};
    json_t *out = NULL;

    (void)state;
    sample->i32 = -7;
    sample->u32 = 4000000000u;
    sample->u64 = 9007199254740993ull;
    sample->number = 2.5;
    sample->flag = 1;
    sample->color = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    sample->text = strdup("café");
    sample->n_ids = 3;
    sample->ids = calloc(3, sizeof(int64_t));
    sample->ids[0] = 1;
    sample->ids[1] = -2;
    sample->ids[2] = 9223372036854775807;
    sample->n_users = 1;
    sample->users = calloc(1, sizeof *sample->users);
    sample->users[0] = new_user(42, "a@example.com");
    sample->choice_case = 11;
    sample->choice_number = 0;
    sample->has_opt = 1;
    sample->opt = 0;

    assert_int_equal(znp_grpc_message_emit(&out, &sample->base, &err), 0);
    assert_json_equal(out, "{\"i32\": -7, \"u32\": 4000000000, \"u64\": 9007199254740993, \"number\": 2.5,"
                           " \"flag\": true, \"color\": \"NOT_SERVING\", \"text\": \"café\","
                           " \"ids\": [1, -2, 9223372036854775807],"
                           " \"users\": [{\"id\": 42, \"email\": \"a@example.com\"}],"
                           " \"choice_number\": 0, \"opt\": 0}");

    json_decref(out);
    protobuf_c_message_free_unpacked(&sample->base, NULL);
}

static void convert__emit_generated_message_ok(void **state)
{
    Znp__V1__TokenPair pair = ZNP__V1__TOKEN_PAIR__INIT;
    Znp__V1__AuthenticatedUser user = ZNP__V1__AUTHENTICATED_USER__INIT;
    char *roles[] = {"admin", "user"};
    znp_error_t err = {0};
    json_t *out = NULL;

    (void)state;
    pair.access_token = "a";
    pair.expires_in = 900;
    pair.user = &user;
    user.id = 7;
    user.n_roles = 2;
    user.roles = roles;

    assert_int_equal(znp_grpc_message_emit(&out, &pair.base, &err), 0);
    assert_json_equal(out, "{\"access_token\": \"a\", \"expires_in\": 900,"
                           " \"user\": {\"id\": 7, \"roles\": [\"admin\", \"user\"]}}");
    json_decref(out);
}

typedef struct emit_case {
    const char *name;
    void (*prepare)(sample_t *sample);
    int code;
    const char *path;
} emit_case_t;

static void prepare_large_uint64(sample_t *sample)
{
    sample->u64 = 9223372036854775808ull;
}

static void prepare_bad_utf8(sample_t *sample)
{
    sample->text = strdup("ab\xff");
}

static void prepare_unknown_enum(sample_t *sample)
{
    sample->color = 9;
}

static void prepare_bad_nested_utf8(sample_t *sample)
{
    sample->n_users = 2;
    sample->users = calloc(2, sizeof *sample->users);
    sample->users[0] = new_user(1, "ok@example.com");
    sample->users[1] = new_user(2, "\xc3\x28");
}

static void prepare_infinite_number(sample_t *sample)
{
    sample->number = 1.0 / 0.0;
}

static const emit_case_t emit_cases[] = {
    {"uint64 above int64", prepare_large_uint64, ZNP_E_VALIDATION_FAILED, "$.u64"},
    {"invalid UTF-8", prepare_bad_utf8, ZNP_E_INVALID_UTF8, "$.text"},
    {"enum number without name", prepare_unknown_enum, ZNP_E_VALIDATION_FAILED, "$.color"},
    {"nested invalid UTF-8", prepare_bad_nested_utf8, ZNP_E_INVALID_UTF8, "$.users[1].email"},
    {"infinite double", prepare_infinite_number, ZNP_E_VALIDATION_FAILED, "$.number"},
};

static void convert__emit_rejections_fail(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof emit_cases / sizeof emit_cases[0]; i++) {
        const emit_case_t *c = &emit_cases[i];
        sample_t *sample = new_sample();
        znp_error_t err = {0};
        json_t *out = NULL;
        int rc;

        c->prepare(sample);
        rc = znp_grpc_message_emit(&out, &sample->base, &err);
        if (rc != c->code || strcmp(err.path, c->path) != 0)
            fail_msg("case %s: rc %d path %s, expected rc %d path %s", c->name, rc, err.path, c->code, c->path);
        assert_null(out);
        protobuf_c_message_free_unpacked(&sample->base, NULL);
    }
}

/* JSON -> message */

static ProtobufCMessage *parse_ok(const char *text)
{
    json_t *in = load(text);
    ProtobufCMessage *message = NULL;
    znp_error_t err = {0};
    int rc = znp_grpc_message_parse(&message, &sample_descriptor, in, &err);

    if (rc != 0)
        fail_msg("parse %s: rc %d at %s: %s", text, rc, err.path, err.detail);
    json_decref(in);
    return message;
}

static void convert__parse_every_kind_ok(void **state)
{
    ProtobufCMessage *message;
    sample_t *sample;

    (void)state;
    message = parse_ok("{\"i32\": -2147483648, \"u32\": 4294967295, \"u64\": 9223372036854775807,"
                       " \"number\": 3, \"flag\": true, \"color\": \"SERVING\", \"text\": \"héllo\","
                       " \"ids\": [5, 6], \"users\": [{\"id\": 1, \"roles\": [\"a\"]}, {}],"
                       " \"choice_text\": \"x\", \"opt\": 0}");
    sample = (sample_t *)message;

    assert_int_equal(sample->i32, INT32_MIN);
    assert_int_equal(sample->u32, UINT32_MAX);
    assert_true(sample->u64 == (uint64_t)INT64_MAX);
    assert_true(sample->number == 3.0);
    assert_true(sample->flag);
    assert_int_equal(sample->color, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    assert_string_equal(sample->text, "héllo");
    assert_int_equal(sample->n_ids, 2);
    assert_int_equal(sample->ids[1], 6);
    assert_int_equal(sample->n_users, 2);
    assert_int_equal(sample->users[0]->id, 1);
    assert_int_equal(sample->users[0]->n_roles, 1);
    assert_string_equal(sample->users[0]->roles[0], "a");
    assert_string_equal(sample->users[1]->email, "");
    assert_int_equal(sample->choice_case, 10);
    assert_string_equal(sample->choice_text, "x");
    assert_true(sample->has_opt);
    assert_int_equal(sample->opt, 0);

    protobuf_c_message_free_unpacked(message, NULL);
}

static void convert__parse_enum_forms_ok(void **state)
{
    static const struct {
        const char *json;
        int value;
    } cases[] = {
        {"{\"color\": \"NOT_SERVING\"}", 2},
        {"{\"color\": \"not_serving\"}", 2},
        {"{\"color\": 3}", 3},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ProtobufCMessage *message = parse_ok(cases[i].json);

        if (((sample_t *)message)->color != cases[i].value)
            fail_msg("%s gave %d, expected %d", cases[i].json, ((sample_t *)message)->color, cases[i].value);
        protobuf_c_message_free_unpacked(message, NULL);
    }
}

static void convert__parse_skips_unknown_and_null_ok(void **state)
{
    ProtobufCMessage *message;
    sample_t *sample;

    (void)state;
    message = parse_ok("{\"nope\": [1, {}], \"text\": null, \"users\": null, \"i32\": 4}");
    sample = (sample_t *)message;
    assert_string_equal(sample->text, "");
    assert_int_equal(sample->n_users, 0);
    assert_int_equal(sample->i32, 4);
    protobuf_c_message_free_unpacked(message, NULL);
}

static const struct {
    const char *json;
    const char *path;
} parse_rejections[] = {
    {"{\"i32\": 2147483648}", "$.i32"},
    {"{\"i32\": 1.5}", "$.i32"},
    {"{\"u32\": -1}", "$.u32"},
    {"{\"u64\": -1}", "$.u64"},
    {"{\"number\": \"1\"}", "$.number"},
    {"{\"flag\": 1}", "$.flag"},
    {"{\"text\": 5}", "$.text"},
    {"{\"color\": \"PURPLE\"}", "$.color"},
    {"{\"color\": 17}", "$.color"},
    {"{\"color\": true}", "$.color"},
    {"{\"ids\": {}}", "$.ids"},
    {"{\"ids\": [1, \"2\"]}", "$.ids[1]"},
    {"{\"users\": [5]}", "$.users[0]"},
    {"{\"users\": [{}, {\"id\": \"x\"}]}", "$.users[1].id"},
    {"{\"users\": [{\"roles\": [\"a\", null]}]}", "$.users[0].roles[1]"},
    {"{\"choice_text\": \"a\", \"choice_number\": 1}", "$.choice_number"},
};

static void convert__parse_rejections_fail(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof parse_rejections / sizeof parse_rejections[0]; i++) {
        json_t *in = load(parse_rejections[i].json);
        ProtobufCMessage *message = NULL;
        znp_error_t err = {0};
        int rc = znp_grpc_message_parse(&message, &sample_descriptor, in, &err);

        if (rc != ZNP_E_VALIDATION_FAILED || strcmp(err.path, parse_rejections[i].path) != 0)
            fail_msg("%s: rc %d path %s, expected a validation failure at %s", parse_rejections[i].json, rc, err.path,
                     parse_rejections[i].path);
        assert_null(message);
        json_decref(in);
    }
}

static void convert__parse_non_object_fails(void **state)
{
    json_t *in = json_array();
    ProtobufCMessage *message = NULL;
    znp_error_t err = {0};

    (void)state;
    assert_int_equal(znp_grpc_message_parse(&message, &sample_descriptor, in, &err), ZNP_E_VALIDATION_FAILED);
    assert_string_equal(err.path, "$");
    assert_null(message);
    json_decref(in);
}

/* JSON -> message -> wire -> message -> JSON gives the JSON back */
static void convert__wire_round_trip_ok(void **state)
{
    static const char *const texts[] = {
        "{\"access_token\": \"t\", \"refresh_token\": \"r\", \"token_type\": \"Bearer\", \"expires_in\": 900,"
        " \"refresh_expires_in\": 2592000, \"user\": {\"id\": 42, \"email\": \"a@example.com\","
        " \"display_name\": \"Ann\", \"roles\": [\"admin\", \"user\"], \"created_at\": 1, \"updated_at\": 2}}",
        "{\"user\": {}}",
        "{}",
    };

    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        json_t *in = load(texts[i]);
        ProtobufCMessage *message = NULL;
        ProtobufCMessage *copy = NULL;
        json_t *out = NULL;
        znp_error_t err = {0};
        uint8_t buffer[1024];
        size_t len;

        assert_int_equal(znp_grpc_message_parse(&message, &znp__v1__token_pair__descriptor, in, &err), 0);
        len = protobuf_c_message_get_packed_size(message);
        assert_true(len <= sizeof buffer);
        protobuf_c_message_pack(message, buffer);
        copy = protobuf_c_message_unpack(&znp__v1__token_pair__descriptor, NULL, len, buffer);
        assert_non_null(copy);
        assert_int_equal(znp_grpc_message_emit(&out, copy, &err), 0);
        assert_json_equal(out, texts[i]);

        json_decref(out);
        protobuf_c_message_free_unpacked(copy, NULL);
        protobuf_c_message_free_unpacked(message, NULL);
        json_decref(in);
    }
}

int run_convert_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(convert__emit_defaults_omitted),
        cmocka_unit_test(convert__emit_every_kind_ok),
        cmocka_unit_test(convert__emit_generated_message_ok),
        cmocka_unit_test(convert__emit_rejections_fail),
        cmocka_unit_test(convert__parse_every_kind_ok),
        cmocka_unit_test(convert__parse_enum_forms_ok),
        cmocka_unit_test(convert__parse_skips_unknown_and_null_ok),
        cmocka_unit_test(convert__parse_rejections_fail),
        cmocka_unit_test(convert__parse_non_object_fails),
        cmocka_unit_test(convert__wire_round_trip_ok),
    };

    return cmocka_run_group_tests_name("grpc_convert", tests, NULL, NULL);
}
