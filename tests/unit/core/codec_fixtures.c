#include "codec_fixtures.h"

#include <stddef.h>

#define PRESENCE(type, member) offsetof(type, has.member)

static const char *const color_values[] = {"red", "green", "blue", NULL};
static const char *const status_values[] = {"open", "closed", NULL};

static const znp_field_t address_fields[] = {
    {.name = "city",
     .type = ZNP_FT_STRING,
     .flags = ZNP_F_REQUIRED,
     .offset = offsetof(fx_address_t, city),
     .presence_offset = PRESENCE(fx_address_t, city),
     .min_length = 1,
     .max_length = 20},
    {.name = "zip",
     .type = ZNP_FT_INT64,
     .offset = offsetof(fx_address_t, zip),
     .presence_offset = PRESENCE(fx_address_t, zip)},
};

const znp_schema_t fx_address_schema = {
    .name = "Address", .size = sizeof(fx_address_t), .fields = address_fields, .field_count = 2};

static const znp_field_t line_fields[] = {
    {.name = "name",
     .type = ZNP_FT_STRING,
     .flags = ZNP_F_REQUIRED,
     .offset = offsetof(fx_line_t, name),
     .presence_offset = PRESENCE(fx_line_t, name),
     .max_length = 10},
    {.name = "quantity",
     .type = ZNP_FT_INT64,
     .flags = ZNP_F_HAS_MIN | ZNP_F_HAS_MAX | ZNP_F_HAS_DEFAULT,
     .offset = offsetof(fx_line_t, quantity),
     .presence_offset = PRESENCE(fx_line_t, quantity),
     .min = 1,
     .max = 5,
     .default_int = 1},
};

const znp_schema_t fx_line_schema = {
    .name = "Line", .size = sizeof(fx_line_t), .fields = line_fields, .field_count = 2};

static const znp_item_t tag_item = {.type = ZNP_FT_STRING, .size = sizeof(char *), .min_length = 1, .max_length = 5};
static const znp_item_t line_item = {.type = ZNP_FT_OBJECT, .schema = &fx_line_schema, .size = sizeof(fx_line_t)};
static const znp_item_t digit_item = {
    .type = ZNP_FT_INT64, .size = sizeof(int64_t), .flags = ZNP_F_HAS_MIN | ZNP_F_HAS_MAX, .min = 0, .max = 9};
static const znp_item_t color_item = {.type = ZNP_FT_STRING, .size = sizeof(char *), .enum_values = color_values};

#define S(member) .offset = offsetof(fx_sample_t, member), .presence_offset = PRESENCE(fx_sample_t, member)

static const znp_field_t sample_fields[] = {
    {.name = "name", .type = ZNP_FT_STRING, .flags = ZNP_F_REQUIRED, S(name), .min_length = 1, .max_length = 8},
    {.name = "nick", .type = ZNP_FT_STRING, .flags = ZNP_F_NULLABLE, S(nick), .max_length = 4},
    {.name = "color", .type = ZNP_FT_STRING, S(color), .enum_values = color_values},
    {.name = "code", .type = ZNP_FT_STRING, S(code), .pattern = "^[A-Z]{3}$"},
    {.name = "email", .type = ZNP_FT_STRING, S(email), .format = ZNP_FMT_EMAIL},
    {.name = "site", .type = ZNP_FT_STRING, S(site), .format = ZNP_FMT_URI},
    {.name = "uuid", .type = ZNP_FT_STRING, S(uuid), .format = ZNP_FMT_UUID},
    {.name = "at", .type = ZNP_FT_STRING, S(at), .format = ZNP_FMT_DATE_TIME},
    {.name = "host", .type = ZNP_FT_STRING, S(host), .format = ZNP_FMT_HOSTNAME},
    {.name = "count", .type = ZNP_FT_INT64, .flags = ZNP_F_HAS_MIN | ZNP_F_HAS_MAX, S(count), .min = 1, .max = 100},
    {.name = "big", .type = ZNP_FT_INT64, S(big)},
    {.name = "floor", .type = ZNP_FT_INT64, .flags = ZNP_F_HAS_MIN, S(floor), .min = -5},
    {.name = "ceiling", .type = ZNP_FT_INT64, .flags = ZNP_F_HAS_MAX, S(ceiling), .max = 5},
    {.name = "flag", .type = ZNP_FT_BOOL, S(flag)},
    {.name = "ratio",
     .type = ZNP_FT_NUMBER,
     .flags = ZNP_F_HAS_MIN | ZNP_F_HAS_MAX,
     S(ratio),
     .min_number = 0,
     .max_number = 1},
    {.name = "any_number", .type = ZNP_FT_NUMBER, S(any_number)},
    {.name = "tags", .type = ZNP_FT_ARRAY, S(tags), .min_items = 1, .max_items = 3, .items = &tag_item},
    {.name = "lines", .type = ZNP_FT_ARRAY, S(lines), .max_items = 2, .items = &line_item},
    {.name = "digits", .type = ZNP_FT_ARRAY, S(digits), .items = &digit_item},
    {.name = "colors", .type = ZNP_FT_ARRAY, S(colors), .items = &color_item},
    {.name = "address", .type = ZNP_FT_OBJECT, S(address), .schema = &fx_address_schema},
    {.name = "extra", .type = ZNP_FT_JSON, .flags = ZNP_F_NULLABLE, S(extra)},
    {.name = "secret", .type = ZNP_FT_STRING, .flags = ZNP_F_WRITE_ONLY | ZNP_F_SECRET, S(secret)},
    {.name = "created", .type = ZNP_FT_INT64, .flags = ZNP_F_READ_ONLY, S(created)},
    {.name = "limit", .type = ZNP_FT_INT64, .flags = ZNP_F_HAS_DEFAULT, S(limit), .default_int = 20},
    {.name = "mode", .type = ZNP_FT_STRING, .flags = ZNP_F_HAS_DEFAULT, S(mode), .default_string = "fast"},
    {.name = "enabled", .type = ZNP_FT_BOOL, .flags = ZNP_F_HAS_DEFAULT, S(enabled), .default_bool = 1},
    {.name = "maybe", .type = ZNP_FT_INT64, .flags = ZNP_F_NULLABLE, S(maybe)},
};

const znp_schema_t fx_sample_schema = {.name = "Sample",
                                       .size = sizeof(fx_sample_t),
                                       .fields = sample_fields,
                                       .field_count = sizeof(sample_fields) / sizeof(sample_fields[0])};

static const znp_field_t body_fields[] = {
    {.name = "title",
     .type = ZNP_FT_STRING,
     .flags = ZNP_F_REQUIRED,
     .offset = offsetof(fx_body_t, title),
     .presence_offset = PRESENCE(fx_body_t, title),
     .min_length = 1,
     .max_length = 20},
};

const znp_schema_t fx_body_schema = {
    .name = "Body", .size = sizeof(fx_body_t), .fields = body_fields, .field_count = 1};

static const znp_item_t query_tag_item = {.type = ZNP_FT_STRING, .size = sizeof(char *), .max_length = 5};

#define R(member) .offset = offsetof(fx_request_t, member), .presence_offset = PRESENCE(fx_request_t, member)

static const znp_field_t request_fields[] = {
    {.name = "id", .type = ZNP_FT_INT64, .in = ZNP_IN_PATH, .flags = ZNP_F_REQUIRED | ZNP_F_HAS_MIN, R(id), .min = 1},
    {.name = "slug",
     .type = ZNP_FT_STRING,
     .in = ZNP_IN_PATH,
     .flags = ZNP_F_REQUIRED,
     R(slug),
     .pattern = "^[a-z-]+$"},
    {.name = "q", .type = ZNP_FT_STRING, .in = ZNP_IN_QUERY, R(q), .max_length = 10},
    {.name = "page",
     .type = ZNP_FT_INT64,
     .in = ZNP_IN_QUERY,
     .flags = ZNP_F_HAS_MIN | ZNP_F_HAS_MAX | ZNP_F_HAS_DEFAULT,
     R(page),
     .min = 1,
     .max = 1000,
     .default_int = 1},
    {.name = "per_page",
     .type = ZNP_FT_INT64,
     .in = ZNP_IN_QUERY,
     .flags = ZNP_F_HAS_MIN | ZNP_F_HAS_MAX | ZNP_F_HAS_DEFAULT,
     R(per_page),
     .min = 1,
     .max = 100,
     .default_int = 20},
    {.name = "active", .type = ZNP_FT_BOOL, .in = ZNP_IN_QUERY, R(active)},
    {.name = "min_score",
     .type = ZNP_FT_NUMBER,
     .in = ZNP_IN_QUERY,
     .flags = ZNP_F_HAS_MIN | ZNP_F_HAS_MAX,
     R(min_score),
     .min_number = 0,
     .max_number = 10},
    {.name = "tag", .type = ZNP_FT_ARRAY, .in = ZNP_IN_QUERY, R(tag), .max_items = 3, .items = &query_tag_item},
    {.name = "status", .type = ZNP_FT_STRING, .in = ZNP_IN_QUERY, R(status), .enum_values = status_values},
    {.name = "after", .type = ZNP_FT_INT64, .in = ZNP_IN_QUERY, R(after)},
    {.name = "body",
     .type = ZNP_FT_OBJECT,
     .in = ZNP_IN_BODY,
     .flags = ZNP_F_REQUIRED,
     R(body),
     .schema = &fx_body_schema},
};

const znp_schema_t fx_request_schema = {.name = "Request",
                                        .size = sizeof(fx_request_t),
                                        .fields = request_fields,
                                        .field_count = sizeof(request_fields) / sizeof(request_fields[0])};

static const znp_field_t optional_body_fields[] = {
    {.name = "body", .type = ZNP_FT_OBJECT, .in = ZNP_IN_BODY, R(body), .schema = &fx_body_schema},
};

const znp_schema_t fx_optional_body_request_schema = {
    .name = "OptionalBodyRequest", .size = sizeof(fx_request_t), .fields = optional_body_fields, .field_count = 1};
