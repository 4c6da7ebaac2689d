#include "grpc/convert.h"

#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/codec.h"

#define MEMBER(message, offset)       ((void *)((char *)(message) + (offset)))
#define CONST_MEMBER(message, offset) ((const void *)((const char *)(message) + (offset)))

/* the JSON path of the value being converted, e.g. "$.items[2].name" */
typedef struct path {
    char text[ZNP_ERROR_PATH_MAX];
    size_t len;
    unsigned depth;
} path_t;

static size_t path_push_key(path_t *p, const char *key)
{
    size_t saved = p->len;
    int n = snprintf(p->text + p->len, sizeof p->text - p->len, ".%s", key);

    if (n > 0)
        p->len = p->len + (size_t)n < sizeof p->text ? p->len + (size_t)n : sizeof p->text - 1;
    return saved;
}

static size_t path_push_index(path_t *p, size_t index)
{
    size_t saved = p->len;
    int n = snprintf(p->text + p->len, sizeof p->text - p->len, "[%zu]", index);

    if (n > 0)
        p->len = p->len + (size_t)n < sizeof p->text ? p->len + (size_t)n : sizeof p->text - 1;
    return saved;
}

static void path_pop(path_t *p, size_t saved)
{
    p->len = saved;
    p->text[saved] = '\0';
}

static int fail(znp_error_t *err, int code, const path_t *p, const char *detail)
{
    return znp_error_set(err, code, p->text, "%s", detail);
}

/* size of one element in the C array of a repeated field */
static size_t element_size(ProtobufCType type)
{
    switch (type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return sizeof(int32_t);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return sizeof(int64_t);
    case PROTOBUF_C_TYPE_FLOAT:
        return sizeof(float);
    case PROTOBUF_C_TYPE_DOUBLE:
        return sizeof(double);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_ENUM:
        return sizeof(int);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    return 0;
}

/* ---- message -> JSON ---- */

static int emit_message(json_t **out, const ProtobufCMessage *message, path_t *p, znp_error_t *err);

/* Convert one value of `field` stored at `value`; *out is a new reference. */
static int emit_value(json_t **out, const ProtobufCFieldDescriptor *field, const void *value, path_t *p,
                      znp_error_t *err)
{
    const ProtobufCEnumValue *named;
    const char *text;
    uint64_t u64;
    double number;

    *out = NULL;
    switch (field->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        *out = json_integer(*(const int32_t *)value);
        break;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        *out = json_integer(*(const uint32_t *)value);
        break;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        *out = json_integer(*(const int64_t *)value);
        break;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        u64 = *(const uint64_t *)value;
        if (u64 > INT64_MAX)
            return fail(err, ZNP_E_VALIDATION_FAILED, p, "must be at most 9223372036854775807");
        *out = json_integer((json_int_t)u64);
        break;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        number = field->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)value : *(const double *)value;
        if (!isfinite(number))
            return fail(err, ZNP_E_VALIDATION_FAILED, p, "must be a finite number");
        *out = json_real(number);
        break;
    case PROTOBUF_C_TYPE_BOOL:
        *out = json_boolean(*(const protobuf_c_boolean *)value);
        break;
    case PROTOBUF_C_TYPE_ENUM:
        named = protobuf_c_enum_descriptor_get_value(field->descriptor, *(const int *)value);
        if (named == NULL)
            return fail(err, ZNP_E_VALIDATION_FAILED, p, "is not a known enum value");
        *out = json_string(named->name);
        break;
    case PROTOBUF_C_TYPE_STRING:
        text = *(char *const *)value;
        if (text == NULL)
            text = "";
        if (!znp_utf8_valid(text, strlen(text)))
            return fail(err, ZNP_E_INVALID_UTF8, p, "must be valid UTF-8");
        *out = json_string(text);
        break;
    case PROTOBUF_C_TYPE_MESSAGE:
        return emit_message(out, *(ProtobufCMessage *const *)value, p, err);
    case PROTOBUF_C_TYPE_BYTES:
        return fail(err, ZNP_E_VALIDATION_FAILED, p, "bytes fields are not supported");
    }
    if (*out == NULL)
        return znp_error_set(err, ZNP_E_INTERNAL, p->text, "out of memory");
    return 0;
}

/* Whether a singular field without presence tracking is set to its default value. */
static int is_default(const ProtobufCFieldDescriptor *field, const void *value)
{
    const char *text;

    switch (field->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return *(const uint32_t *)value == 0;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return *(const uint64_t *)value == 0;
    case PROTOBUF_C_TYPE_FLOAT:
        return *(const float *)value == 0;
    case PROTOBUF_C_TYPE_DOUBLE:
        return *(const double *)value == 0;
    case PROTOBUF_C_TYPE_BOOL:
        return !*(const protobuf_c_boolean *)value;
    case PROTOBUF_C_TYPE_ENUM:
        return *(const int *)value == 0;
    case PROTOBUF_C_TYPE_STRING:
        text = *(char *const *)value;
        return text == NULL || text[0] == '\0';
    case PROTOBUF_C_TYPE_BYTES:
        return ((const ProtobufCBinaryData *)value)->len == 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        return *(ProtobufCMessage *const *)value == NULL;
    }
    return 1;
}

static int is_present(const ProtobufCMessage *message, const ProtobufCFieldDescriptor *field)
{
    const void *value = CONST_MEMBER(message, field->offset);

    if (field->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
        return *(const uint32_t *)CONST_MEMBER(message, field->quantifier_offset) == field->id;
    if (field->label == PROTOBUF_C_LABEL_NONE)
        return !is_default(field, value);

    /* proto2 optional and required: pointers are NULL when absent, scalars have has_<name> */
    if (field->type == PROTOBUF_C_TYPE_STRING || field->type == PROTOBUF_C_TYPE_MESSAGE)
        return *(void *const *)value != NULL;
    return *(const protobuf_c_boolean *)CONST_MEMBER(message, field->quantifier_offset);
}

static int emit_repeated(json_t **out, const ProtobufCMessage *message, const ProtobufCFieldDescriptor *field,
                         path_t *p, znp_error_t *err)
{
    size_t count = *(const size_t *)CONST_MEMBER(message, field->quantifier_offset);
    const char *items = *(const char *const *)CONST_MEMBER(message, field->offset);
    size_t size = element_size(field->type);
    json_t *array = json_array();
    json_t *item = NULL;
    int rc = 0;

    *out = NULL;
    if (array == NULL)
        return znp_error_set(err, ZNP_E_INTERNAL, p->text, "out of memory");
    for (size_t i = 0; i < count; i++) {
        size_t saved = path_push_index(p, i);

        rc = emit_value(&item, field, items + i * size, p, err);
        if (rc == 0 && json_array_append_new(array, item) != 0)
            rc = znp_error_set(err, ZNP_E_INTERNAL, p->text, "out of memory");
        if (rc != 0)
            goto cleanup;
        path_pop(p, saved);
    }
    *out = array;
    array = NULL;

cleanup:
    json_decref(array);
    return rc;
}

static int emit_message(json_t **out, const ProtobufCMessage *message, path_t *p, znp_error_t *err)
{
    const ProtobufCMessageDescriptor *descriptor = message->descriptor;
    json_t *object = NULL;
    json_t *value = NULL;
    int rc = 0;

    *out = NULL;
    if (p->depth >= ZNP_CODEC_MAX_DEPTH)
        return fail(err, ZNP_E_VALIDATION_FAILED, p, "is nested too deeply");
    p->depth++;

    object = json_object();
    if (object == NULL) {
        rc = znp_error_set(err, ZNP_E_INTERNAL, p->text, "out of memory");
        goto cleanup;
    }

    for (unsigned i = 0; i < descriptor->n_fields; i++) {
        const ProtobufCFieldDescriptor *field = &descriptor->fields[i];
        size_t saved;

        if (field->label == PROTOBUF_C_LABEL_REPEATED) {
            if (*(const size_t *)CONST_MEMBER(message, field->quantifier_offset) == 0)
                continue;
        } else if (!is_present(message, field)) {
            continue;
        }

        saved = path_push_key(p, field->name);
        if (field->label == PROTOBUF_C_LABEL_REPEATED)
            rc = emit_repeated(&value, message, field, p, err);
        else
            rc = emit_value(&value, field, CONST_MEMBER(message, field->offset), p, err);
        if (rc == 0 && json_object_set_new(object, field->name, value) != 0)
            rc = znp_error_set(err, ZNP_E_INTERNAL, p->text, "out of memory");
        if (rc != 0)
            goto cleanup;
        path_pop(p, saved);
    }

    *out = object;
    object = NULL;

cleanup:
    p->depth--;
    json_decref(object);
    return rc;
}

int znp_grpc_message_emit(json_t **out, const ProtobufCMessage *message, znp_error_t *err)
{
    path_t p = {.text = "$", .len = 1};

    return emit_message(out, message, &p, err);
}

/* ---- JSON -> message ---- */

static int parse_message(ProtobufCMessage **out, const ProtobufCMessageDescriptor *descriptor, json_t *in, path_t *p,
                         znp_error_t *err);

static int parse_integer(int64_t *out, json_t *in, int64_t min, int64_t max, path_t *p, znp_error_t *err)
{
    char detail[96];

    if (!json_is_integer(in))
        return fail(err, ZNP_E_VALIDATION_FAILED, p, "must be an integer");
    *out = json_integer_value(in);
    if (*out < min || *out > max) {
        snprintf(detail, sizeof detail, "must be between %" PRId64 " and %" PRId64, min, max);
        return fail(err, ZNP_E_VALIDATION_FAILED, p, detail);
    }
    return 0;
}

static int parse_enum(int *out, const ProtobufCEnumDescriptor *descriptor, json_t *in, path_t *p, znp_error_t *err)
{
    const ProtobufCEnumValue *named = NULL;
    const char *name;

    if (json_is_integer(in)) {
        if (json_integer_value(in) >= INT32_MIN && json_integer_value(in) <= INT32_MAX)
            named = protobuf_c_enum_descriptor_get_value(descriptor, (int)json_integer_value(in));
    } else if (json_is_string(in)) {
        name = json_string_value(in);
        named = protobuf_c_enum_descriptor_get_value_by_name(descriptor, name);
        for (unsigned i = 0; named == NULL && i < descriptor->n_values; i++) {
            if (strcasecmp(descriptor->values[i].name, name) == 0)
                named = &descriptor->values[i];
        }
    } else {
        return fail(err, ZNP_E_VALIDATION_FAILED, p, "must be a string");
    }
    if (named == NULL)
        return fail(err, ZNP_E_VALIDATION_FAILED, p, "is not one of the allowed values");
    *out = named->value;
    return 0;
}

/*
 * Store `in` into the element at `value`. Callers pass an element that is
 * still at its default (strings point to the shared empty string or are NULL,
 * messages are NULL), so overwriting it leaks nothing.
 */
static int parse_value(void *value, const ProtobufCFieldDescriptor *field, json_t *in, path_t *p, znp_error_t *err)
{
    int64_t integer = 0;
    char *copy;
    int rc = 0;

    switch (field->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
        rc = parse_integer(&integer, in, INT32_MIN, INT32_MAX, p, err);
        if (rc == 0)
            *(int32_t *)value = (int32_t)integer;
        return rc;
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        rc = parse_integer(&integer, in, 0, UINT32_MAX, p, err);
        if (rc == 0)
            *(uint32_t *)value = (uint32_t)integer;
        return rc;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        rc = parse_integer(&integer, in, INT64_MIN, INT64_MAX, p, err);
        if (rc == 0)
            *(int64_t *)value = integer;
        return rc;
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        rc = parse_integer(&integer, in, 0, INT64_MAX, p, err);
        if (rc == 0)
            *(uint64_t *)value = (uint64_t)integer;
        return rc;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_DOUBLE:
        if (!json_is_number(in))
            return fail(err, ZNP_E_VALIDATION_FAILED, p, "must be a number");
        if (field->type == PROTOBUF_C_TYPE_FLOAT)
            *(float *)value = (float)json_number_value(in);
        else
            *(double *)value = json_number_value(in);
        return 0;
    case PROTOBUF_C_TYPE_BOOL:
        if (!json_is_boolean(in))
            return fail(err, ZNP_E_VALIDATION_FAILED, p, "must be a boolean");
        *(protobuf_c_boolean *)value = json_is_true(in);
        return 0;
    case PROTOBUF_C_TYPE_ENUM:
        return parse_enum((int *)value, field->descriptor, in, p, err);
    case PROTOBUF_C_TYPE_STRING:
        if (!json_is_string(in))
            return fail(err, ZNP_E_VALIDATION_FAILED, p, "must be a string");
        copy = strdup(json_string_value(in));
        if (copy == NULL)
            return znp_error_set(err, ZNP_E_INTERNAL, p->text, "out of memory");
        *(char **)value = copy;
        return 0;
    case PROTOBUF_C_TYPE_MESSAGE:
        if (!json_is_object(in))
            return fail(err, ZNP_E_VALIDATION_FAILED, p, "must be an object");
        return parse_message((ProtobufCMessage **)value, field->descriptor, in, p, err);
    case PROTOBUF_C_TYPE_BYTES:
        return fail(err, ZNP_E_VALIDATION_FAILED, p, "bytes fields are not supported");
    }
    return fail(err, ZNP_E_INTERNAL, p, "unknown field type");
}

static int parse_repeated(ProtobufCMessage *message, const ProtobufCFieldDescriptor *field, json_t *in, path_t *p,
                          znp_error_t *err)
{
    size_t size = element_size(field->type);
    size_t count;
    char *items;
    int rc;

    if (!json_is_array(in))
        return fail(err, ZNP_E_VALIDATION_FAILED, p, "must be an array");
    count = json_array_size(in);
    if (count == 0)
        return 0;

    /*
     * calloc leaves every element NULL or zero, which
     * protobuf_c_message_free_unpacked accepts if a later element fails.
     */
    items = calloc(count, size);
    if (items == NULL)
        return znp_error_set(err, ZNP_E_INTERNAL, p->text, "out of memory");
    *(void **)MEMBER(message, field->offset) = items;
    *(size_t *)MEMBER(message, field->quantifier_offset) = count;

    for (size_t i = 0; i < count; i++) {
        size_t saved = path_push_index(p, i);

        rc = parse_value(items + i * size, field, json_array_get(in, i), p, err);
        if (rc != 0)
            return rc;
        path_pop(p, saved);
    }
    return 0;
}

static int parse_field(ProtobufCMessage *message, const ProtobufCFieldDescriptor *field, json_t *in, path_t *p,
                       znp_error_t *err)
{
    void *value = MEMBER(message, field->offset);
    int rc;

    if (field->label == PROTOBUF_C_LABEL_REPEATED)
        return parse_repeated(message, field, in, p, err);

    if (field->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
        uint32_t *selected = MEMBER(message, field->quantifier_offset);

        if (*selected != 0)
            return fail(err, ZNP_E_VALIDATION_FAILED, p, "conflicts with another member of the same oneof");
        if (field->type == PROTOBUF_C_TYPE_STRING)
            *(const char **)value = field->default_value;
        rc = parse_value(value, field, in, p, err);
        if (rc == 0)
            *selected = field->id;
        return rc;
    }

    rc = parse_value(value, field, in, p, err);
    if (rc == 0 && field->label != PROTOBUF_C_LABEL_NONE && field->type != PROTOBUF_C_TYPE_STRING &&
        field->type != PROTOBUF_C_TYPE_MESSAGE)
        *(protobuf_c_boolean *)MEMBER(message, field->quantifier_offset) = 1;
    return rc;
}

static int parse_message(ProtobufCMessage **out, const ProtobufCMessageDescriptor *descriptor, json_t *in, path_t *p,
                         znp_error_t *err)
{
    ProtobufCMessage *message = NULL;
    int rc = 0;

    *out = NULL;
    if (p->depth >= ZNP_CODEC_MAX_DEPTH)
        return fail(err, ZNP_E_VALIDATION_FAILED, p, "is nested too deeply");
    p->depth++;

    message = malloc(descriptor->sizeof_message);
    if (message == NULL) {
        rc = znp_error_set(err, ZNP_E_INTERNAL, p->text, "out of memory");
        goto cleanup;
    }
    protobuf_c_message_init(descriptor, message);

    for (unsigned i = 0; i < descriptor->n_fields; i++) {
        const ProtobufCFieldDescriptor *field = &descriptor->fields[i];
        json_t *value = json_object_get(in, field->name);
        size_t saved;

        if (value == NULL || json_is_null(value))
            continue;
        saved = path_push_key(p, field->name);
        rc = parse_field(message, field, value, p, err);
        if (rc != 0)
            goto cleanup;
        path_pop(p, saved);
    }

    *out = message;
    message = NULL;

cleanup:
    p->depth--;
    if (message != NULL)
        protobuf_c_message_free_unpacked(message, NULL);
    return rc;
}

int znp_grpc_message_parse(ProtobufCMessage **out, const ProtobufCMessageDescriptor *descriptor, json_t *in,
                           znp_error_t *err)
{
    path_t p = {.text = "$", .len = 1};

    *out = NULL;
    if (!json_is_object(in))
        return fail(err, ZNP_E_VALIDATION_FAILED, &p, "must be an object");
    return parse_message(out, descriptor, in, &p, err);
}
