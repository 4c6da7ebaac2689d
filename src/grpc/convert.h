/*
 * Conversion between protobuf-c messages and jansson values, driven only by
 * the ProtobufCMessageDescriptor, so every message in spec/proto maps onto
 * the JSON the operations already read and write.
 *
 * Mapping: the proto field name is the JSON key. Integers of every width
 * become JSON integers, and uint64 above INT64_MAX is rejected. float and
 * double become reals, bool becomes true/false and string becomes a string.
 * An enum becomes the name of its value, a nested message an object and a
 * repeated field an array. bytes fields are not supported.
 *
 * As in protobuf's canonical JSON mapping, a field without presence tracking
 * (a proto3 field not marked `optional`) that holds its default value (0,
 * "", false, the first enum value, an empty list) is left out of the JSON,
 * so the operation sees it as absent. Fields with presence (proto3
 * `optional`, oneof members, nested messages) are emitted whenever set.
 */
#ifndef ZNP_GRPC_CONVERT_H
#define ZNP_GRPC_CONVERT_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "core/error.h"

/*
 * Build the JSON object for `message`. On success *out is a new reference
 * owned by the caller. Fails with ZNP_E_VALIDATION_FAILED (uint64 out of
 * range, an enum number without a name, a non-finite float, a bytes field)
 * or ZNP_E_INVALID_UTF8, with the JSON path of the field in `err`.
 */
int znp_grpc_message_emit(json_t **out, const ProtobufCMessage *message, znp_error_t *err);

/*
 * Build a message of type `descriptor` from the JSON object `in`. Keys
 * without a matching field and null values are skipped. Enum values are
 * matched by name, exactly first and then ignoring case, or by number. On
 * success *out is owned by the caller and freed with
 * protobuf_c_message_free_unpacked(*out, NULL). Fails with
 * ZNP_E_VALIDATION_FAILED and the JSON path of the bad value in `err` on a
 * wrong JSON type, an integer out of the field's range or an unknown enum
 * name; *out is NULL then.
 */
int znp_grpc_message_parse(ProtobufCMessage **out, const ProtobufCMessageDescriptor *descriptor, json_t *in,
                           znp_error_t *err);

#endif
