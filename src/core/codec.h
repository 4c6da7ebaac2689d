/*
 * The JSON codec: one implementation that reads the generated descriptor
 * tables (schema.h) to turn jansson values into C structs and back.
 *
 * Decoding is strict. It rejects wrong JSON types, integers given as reals
 * (1.0), integers outside int64 or the field's range, unknown enum strings,
 * strings outside their length limits, pattern or format mismatches, arrays
 * outside their item limits, and nesting deeper than ZNP_CODEC_MAX_DEPTH.
 * Unknown object keys are ignored. Every rejection sets err->code to
 * ZNP_E_VALIDATION_FAILED (or a more specific error) and err->path to the
 * JSON path of the bad value, e.g. "$.items[2].name".
 */
#ifndef ZNP_CORE_CODEC_H
#define ZNP_CORE_CODEC_H

#include <jansson.h>
#include <stddef.h>

#include "arena.h"
#include "error.h"
#include "schema.h"

#define ZNP_CODEC_MAX_DEPTH 32
#define ZNP_CODEC_MAX_ITEMS 10000 /* arrays without maxItems in the spec */

/*
 * Parse raw request bytes into a jansson document. Rejects invalid UTF-8,
 * \u0000, duplicate keys, nesting deeper than ZNP_CODEC_MAX_DEPTH and
 * anything that is not a single JSON value (ZNP_E_INVALID_JSON).
 * On success *out is a new reference owned by the caller.
 */
int znp_codec_load(json_t **out, const char *data, size_t len, znp_error_t *err);

/*
 * Decode `in` (must be an object) into the zero-initialised struct `out` of
 * `schema`. Strings and arrays are allocated from `arena`; ZNP_FT_JSON fields
 * borrow from `in`, which must outlive `out`. `path` is the JSON path prefix
 * used in errors ("$" for a request body).
 *
 * Each field's presence in `has` is ZNP_SET for a value, ZNP_NULL for null
 * (nullable fields only) and ZNP_ABSENT when the key is missing. A field with
 * a default gets the default value but keeps ZNP_ABSENT, so a PATCH handler
 * can tell that the client did not send it. Only fields with
 * in = ZNP_IN_BODY are read, and read-only fields are skipped.
 */
int znp_codec_parse(const znp_schema_t *schema, json_t *in, void *out, znp_arena_t *arena, const char *path,
                    znp_error_t *err);

/*
 * Decode request parameters: fields of `schema` with in = ZNP_IN_PATH take
 * their value from `path_params` (name/value pairs, already percent-decoded),
 * fields with in = ZNP_IN_QUERY from the raw query string `query`
 * (application/x-www-form-urlencoded, may be NULL). Values are converted from
 * text with the same constraints as JSON fields (integers must match
 * -?[0-9]+, booleans are true/false/1/0). A scalar query parameter given
 * twice is rejected, and an array parameter collects repeated keys
 * (?tag=a&tag=b). Unknown query keys are ignored, but every key and value
 * must be valid percent-encoded UTF-8 without NUL. Errors name the
 * parameter in err->path ("page", "tag[1]").
 *
 * A field with in = ZNP_IN_BODY and type ZNP_FT_OBJECT receives `body` (may
 * be NULL when the request had no body; then it fails with
 * ZNP_E_BODY_REQUIRED only if the field is required). Body errors have paths
 * below "$".
 */
typedef struct znp_param {
    const char *name;
    const char *value;
} znp_param_t;

int znp_codec_parse_request(const znp_schema_t *schema, const znp_param_t *path_params, size_t path_param_count,
                            const char *query, size_t query_len, json_t *body, void *out, znp_arena_t *arena,
                            znp_error_t *err);

/*
 * Encode the struct `in` of `schema` into a new JSON object (*out, new
 * reference owned by the caller). Absent optional fields are omitted, ZNP_NULL
 * becomes null, write-only fields are never emitted.
 */
int znp_codec_emit(const znp_schema_t *schema, const void *in, json_t **out, znp_error_t *err);

/* Check that `s` (`len` bytes) is valid UTF-8 without overlong forms or surrogates. Returns 1 if valid. */
int znp_utf8_valid(const char *s, size_t len);

#endif
