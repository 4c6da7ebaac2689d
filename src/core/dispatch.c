#include "dispatch.h"

#include <stdatomic.h>
#include <string.h>

#include "stream.h"

const znp_operation_t *znp_operation_find(const char *id)
{
    if (id == NULL)
        return NULL;
    for (size_t i = 0; i < znp_operation_count; i++) {
        if (strcmp(znp_operations[i].id, id) == 0)
            return &znp_operations[i];
    }
    return NULL;
}

static int has_body_field(const znp_schema_t *schema)
{
    if (schema == NULL)
        return 0;
    for (size_t i = 0; i < schema->field_count; i++) {
        if (schema->fields[i].in == ZNP_IN_BODY)
            return 1;
    }
    return 0;
}

/* Make sure a failure carries its code in `err`, for callers that returned without recording detail. */
static int record(znp_error_t *err, int rc)
{
    if (err->code != rc)
        znp_error_set(err, rc, NULL, NULL);
    return rc;
}

int znp_dispatch(znp_ctx_t *ctx, const znp_operation_t *op, const znp_call_t *input, json_t **out)
{
    znp_call_t verified = *input;
    const znp_call_t *call = &verified;
    znp_error_t local;
    znp_error_t *err = ctx->err != NULL ? ctx->err : &local;
    json_t *body = NULL;
    json_t *response = NULL;
    void *request_struct = NULL;
    void *response_struct = NULL;
    int rc;

    *out = NULL;
    znp_error_clear(err);

    if (ctx->verify != NULL) {
        rc = ctx->verify(ctx, op, &verified);
        if (rc != 0) {
            record(err, rc);
            goto cleanup;
        }
    }

    /* authenticate */
    if (op->security != ZNP_SEC_PUBLIC) {
        rc = znp_auth_authenticate(ctx, op->security, call->authorization);
        if (rc != 0) {
            record(err, rc);
            goto cleanup;
        }
    }
    if (ctx->admit != NULL) {
        rc = ctx->admit(ctx, op);
        if (rc != 0) {
            record(err, rc);
            goto cleanup;
        }
    }

    /* decode the request */
    if (op->request != NULL) {
        request_struct = znp_arena_alloc(ctx->arena, op->request->size);
        if (request_struct == NULL) {
            rc = znp_error_set(err, ZNP_E_INTERNAL, NULL, "request arena exhausted");
            goto cleanup;
        }
        /* a body sent to an operation that takes none is ignored, like an unknown key */
        if (call->body != NULL && call->body_len > 0 && has_body_field(op->request)) {
            rc = znp_codec_load(&body, call->body, call->body_len, err);
            if (rc != 0)
                goto cleanup;
        }
        rc = znp_codec_parse_request(op->request, call->path_params, call->path_param_count, call->query,
                                     call->query_len, body, request_struct, ctx->arena, err);
        if (rc != 0)
            goto cleanup;
    }
    if (op->response != NULL) {
        response_struct = znp_arena_alloc(ctx->arena, op->response->size);
        if (response_struct == NULL) {
            rc = znp_error_set(err, ZNP_E_INTERNAL, NULL, "request arena exhausted");
            goto cleanup;
        }
    }

    /* run the operation */
    rc = op->invoke(ctx, request_struct, response_struct);
    if (rc != 0) {
        record(err, rc);
        goto cleanup;
    }

    /* encode the response; it may share ZNP_FT_JSON values with the body, which emit takes references to */
    if (op->response != NULL && !(ctx->stream != NULL && ctx->stream->started)) {
        rc = znp_codec_emit(op->response, response_struct, &response, err);
        if (rc != 0)
            goto cleanup;
    }
    *out = response;
    response = NULL;

cleanup:
    json_decref(response);
    json_decref(body);
    return rc;
}

json_t *znp_dispatch_error_body(int err, const znp_error_t *detail, znp_locale_t locale, const char *request_id)
{
    const znp_error_info_t *info = znp_error_info(err);
    json_t *envelope = NULL;
    json_t *details = NULL;

    details = json_array();
    if (details == NULL)
        goto cleanup;
    /* detail recorded for another error (a stale one) is not shown */
    if (detail != NULL && detail->detail[0] != '\0' && (detail->code == err || detail->code == 0)) {
        /* json_pack fails here only when out of memory or on invalid UTF-8, and then the envelope has no details */
        json_t *item = json_pack("{s:s, s:s}", "field", detail->path, "message", detail->detail);
        if (item != NULL)
            json_array_append_new(details, item);
    }
    if (detail != NULL && detail->more_details != NULL && (detail->code == err || detail->code == 0)) {
        json_t *more = json_loads(detail->more_details, 0, NULL);

        /* an unparsable list is dropped; the first entry above is still shown */
        if (json_is_array(more))
            json_array_extend(details, more);
        json_decref(more);
    }

    envelope = json_pack("{s:I, s:s, s:s, s:O, s:s?}", "code", (json_int_t)info->code, "error", info->key, "message",
                         znp_error_message(err, locale), "details", details, "request_id", request_id);

cleanup:
    json_decref(details);
    return envelope;
}

static atomic_ulong cache_epoch;

void znp_dispatch_cache_invalidate(void)
{
    atomic_fetch_add(&cache_epoch, 1);
}

unsigned long znp_dispatch_cache_epoch(void)
{
    return atomic_load(&cache_epoch);
}
