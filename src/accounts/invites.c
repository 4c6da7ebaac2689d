/*
 * Invite codes: the admin operations under /api/v1/{admin}/invite-codes and
 * the use a registration takes. A code is stored as the SHA-256 of its
 * lower-case form; only its last 4 characters stay readable.
 */
#include "accounts/internal.h"

#include <ctype.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/auth_internal.h"
#include "auth/sql.h"
#include "core/log.h"
#include "operations.gen.h"
#include "core/pagination.h"

#define LOG_TAG "accounts"

#define INVITE_CODE_MAX   64
#define RANDOM_CODE_CHARS 16

#define INVITE_COLUMNS                                                                                                 \
    "id, code_hint, max_uses, used_count, floor(extract(epoch FROM expires_at))::bigint,"                              \
    " floor(extract(epoch FROM disabled_at))::bigint, created_by, floor(extract(epoch FROM created_at))::bigint"

enum { COL_ID, COL_HINT, COL_MAX_USES, COL_USED, COL_EXPIRES, COL_DISABLED, COL_CREATED_BY, COL_CREATED_AT };

/* one use, only while enabled, unexpired and not used up; the row lock orders concurrent takers */
static const char SQL_TAKE[] = "UPDATE invite_codes SET used_count = used_count + 1"
                               " WHERE code_hash = $1 AND used_count < max_uses AND disabled_at IS NULL"
                               " AND (expires_at IS NULL OR expires_at > now()) RETURNING id";

static const char SQL_RECORD_USE[] = "INSERT INTO invite_code_uses (invite_code_id, user_id) VALUES ($1, $2)";

static const char SQL_COUNT[] = "SELECT count(*) FROM invite_codes";
static const char SQL_PAGE[] = "SELECT " INVITE_COLUMNS " FROM invite_codes ORDER BY id DESC LIMIT $1 OFFSET $2";

static const char SQL_CREATE[] = "INSERT INTO invite_codes (code_hash, code_hint, max_uses, expires_at, created_by)"
                                 " VALUES ($1, $2, $3, to_timestamp($4::bigint), NULLIF($5::bigint, 0))"
                                 " ON CONFLICT (code_hash) DO NOTHING RETURNING " INVITE_COLUMNS;

static const char SQL_SET_DISABLED[] =
    "UPDATE invite_codes SET disabled_at = CASE WHEN $2::boolean THEN COALESCE(disabled_at, now()) END"
    " WHERE id = $1 RETURNING " INVITE_COLUMNS;

/* Hex SHA-256 of the lower-case code. Returns 0 or ZNP_E_INTERNAL. */
static int hash_code(char out[65], const char *code)
{
    static const char hex[] = "0123456789abcdef";
    char lower[INVITE_CODE_MAX + 1];
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    size_t len = strlen(code);

    if (len > INVITE_CODE_MAX)
        len = INVITE_CODE_MAX;
    for (size_t i = 0; i < len; i++)
        lower[i] = (char)tolower((unsigned char)code[i]);
    if (EVP_Digest(lower, len, digest, &digest_len, EVP_sha256(), NULL) != 1 || digest_len != 32)
        return ZNP_E_INTERNAL;
    for (unsigned int i = 0; i < digest_len; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[64] = '\0';
    OPENSSL_cleanse(lower, sizeof(lower));
    return 0;
}

/* 16 characters from an alphabet without look-alikes (no 0/O, 1/I/L): about 80 bits. */
static int random_code(char out[RANDOM_CODE_CHARS + 1])
{
    static const char alphabet[] = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"; /* 31 characters */
    unsigned char byte;
    size_t n = 0;

    while (n < RANDOM_CODE_CHARS) {
        if (RAND_bytes(&byte, 1) != 1)
            return ZNP_E_INTERNAL;
        if (byte < 31 * 8) /* keep the draw uniform */
            out[n++] = alphabet[byte % 31];
    }
    out[n] = '\0';
    return 0;
}

static void set_nullable(int64_t *value, znp_presence_t *presence, const PGresult *res, int row, int column)
{
    *value = znp_sql_int64(res, row, column);
    *presence = PQgetisnull(res, row, column) ? ZNP_NULL : ZNP_SET;
}

static int fill_invite(znp_ctx_t *ctx, const PGresult *res, int row, znp_invite_code_t *out)
{
    memset(out, 0, sizeof(*out));
    out->id = znp_sql_int64(res, row, COL_ID);
    out->code_hint = znp_arena_strdup(ctx->arena, PQgetvalue(res, row, COL_HINT));
    out->max_uses = znp_sql_int64(res, row, COL_MAX_USES);
    out->used_count = znp_sql_int64(res, row, COL_USED);
    set_nullable(&out->expires_at, &out->has.expires_at, res, row, COL_EXPIRES);
    set_nullable(&out->disabled_at, &out->has.disabled_at, res, row, COL_DISABLED);
    set_nullable(&out->created_by, &out->has.created_by, res, row, COL_CREATED_BY);
    out->created_at = znp_sql_int64(res, row, COL_CREATED_AT);
    return out->code_hint != NULL ? 0 : ZNP_E_INTERNAL;
}

static int audit_invite(znp_ctx_t *ctx, const char *action, int64_t id, json_t *diff)
{
    char resource_id[24];
    znp_audit_entry_t entry = {0};

    snprintf(resource_id, sizeof(resource_id), "%lld", (long long)id);
    entry.action = action;
    entry.resource_type = "invite_code";
    entry.resource_id = resource_id;
    entry.diff = diff;
    return znp_audit_record(ctx, ctx->db, &entry);
}

int znp_accounts__invite_take(znp_ctx_t *ctx, const char *code, int64_t *invite_id_out)
{
    char hash[65];
    const char *params[1] = {hash};
    PGresult *res = NULL;
    int rc;

    *invite_id_out = 0;
    if (code == NULL || strlen(code) > INVITE_CODE_MAX)
        return ZNP_E_INVITE_CODE_INVALID;
    rc = hash_code(hash, code);
    if (rc == 0)
        rc = znp_sql_exec(&res, ctx->db, SQL_TAKE, 1, params, ctx->request_id);
    if (rc == 0 && PQntuples(res) != 1)
        rc = ZNP_E_INVITE_CODE_INVALID;
    if (rc == 0)
        *invite_id_out = znp_sql_int64(res, 0, 0);
    PQclear(res);
    return rc;
}

int znp_accounts__invite_record_use(znp_ctx_t *ctx, int64_t invite_id, int64_t user_id)
{
    char invite[24], user[24];
    const char *params[2] = {invite, user};

    snprintf(invite, sizeof(invite), "%lld", (long long)invite_id);
    snprintf(user, sizeof(user), "%lld", (long long)user_id);
    return znp_sql_exec(NULL, ctx->db, SQL_RECORD_USE, 2, params, ctx->request_id);
}

int znp_op_list_invite_codes(znp_ctx_t *ctx, const znp_list_invite_codes_request_t *req,
                             znp_list_invite_codes_response_t *resp)
{
    int64_t page = req->page > 0 ? req->page : 1;
    int64_t per_page = req->per_page > 0 && req->per_page <= 100 ? req->per_page : 20;
    znp_sql_list_t list = {SQL_COUNT, SQL_PAGE, NULL, 0, page, per_page};
    PGresult *rows = NULL;
    znp_invite_code_t *items = NULL;
    int rc;

    rc = znp_sql_list(&rows, &resp->pagination, ctx->db, &list, ctx->request_id);
    if (rc != 0)
        goto cleanup;

    if (PQntuples(rows) > 0) {
        items = znp_arena_alloc(ctx->arena, (size_t)PQntuples(rows) * sizeof(*items));
        if (items == NULL) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
    }
    for (int i = 0; i < PQntuples(rows) && rc == 0; i++)
        rc = fill_invite(ctx, rows, i, &items[i]);
    if (rc != 0)
        goto cleanup;
    resp->invite_codes.count = (size_t)PQntuples(rows);
    resp->invite_codes.items = items;

cleanup:
    znp_sql_rollback(ctx->db, ctx->request_id);
    PQclear(rows);
    return rc;
}

int znp_op_create_invite_code(znp_ctx_t *ctx, const znp_create_invite_code_request_t *req,
                              znp_create_invite_code_response_t *resp)
{
    const znp_invite_code_create_t *body = &req->body;
    char code[INVITE_CODE_MAX + 1], hash[65], hint[5], max_uses[24], expires_at[24], created_by[24];
    const char *params[5] = {hash, hint, max_uses, NULL, created_by};
    PGresult *res = NULL;
    json_t *diff = NULL;
    size_t len;
    int rc;

    /* check input */
    if (body->has.expires_at == ZNP_SET && body->expires_at <= znp_auth__now(ctx))
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.expires_at", "must be in the future");
    if (body->has.code == ZNP_SET)
        snprintf(code, sizeof(code), "%s", body->code);
    else if ((rc = random_code(code)) != 0)
        return rc;
    len = strlen(code);
    snprintf(hint, sizeof(hint), "%s", code + (len > 4 ? len - 4 : 0));

    /* persist */
    rc = hash_code(hash, code);
    if (rc != 0)
        goto cleanup;
    snprintf(max_uses, sizeof(max_uses), "%lld", (long long)(body->has.max_uses == ZNP_SET ? body->max_uses : 1));
    snprintf(created_by, sizeof(created_by), "%lld", (long long)ctx->caller.user_id);
    if (body->has.expires_at == ZNP_SET) {
        snprintf(expires_at, sizeof(expires_at), "%lld", (long long)body->expires_at);
        params[3] = expires_at;
    }
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc == 0)
        rc = znp_sql_exec(&res, ctx->db, SQL_CREATE, 5, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = znp_error_set(ctx->err, ZNP_E_CONFLICT, "$.code", "this code exists already");
        goto cleanup;
    }
    diff = json_pack("{s:I, s:b}", "max_uses", (json_int_t)znp_sql_int64(res, 0, COL_MAX_USES), "expires",
                     body->has.expires_at == ZNP_SET);
    rc = diff != NULL ? audit_invite(ctx, "admin.invite_code.create", znp_sql_int64(res, 0, COL_ID), diff)
                      : ZNP_E_INTERNAL;
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;

    /* response: the only time the code is shown */
    rc = fill_invite(ctx, res, 0, &resp->invite_code);
    resp->code = znp_arena_strdup(ctx->arena, code);
    if (rc == 0 && resp->code == NULL)
        rc = ZNP_E_INTERNAL;

cleanup:
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    OPENSSL_cleanse(code, sizeof(code));
    json_decref(diff);
    PQclear(res);
    return rc;
}

int znp_op_update_invite_code(znp_ctx_t *ctx, const znp_update_invite_code_request_t *req,
                              znp_update_invite_code_response_t *resp)
{
    char id[24];
    const char *params[2] = {id, req->body.disabled ? "true" : "false"};
    PGresult *res = NULL;
    json_t *diff = NULL;
    int rc;

    snprintf(id, sizeof(id), "%lld", (long long)req->id);
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc == 0)
        rc = znp_sql_exec(&res, ctx->db, SQL_SET_DISABLED, 2, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = ZNP_E_NOT_FOUND;
        goto cleanup;
    }
    diff = json_pack("{s:b}", "disabled", req->body.disabled);
    rc = diff != NULL ? audit_invite(ctx, "admin.invite_code.update", req->id, diff) : ZNP_E_INTERNAL;
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc == 0)
        rc = fill_invite(ctx, res, 0, &resp->invite_code);

cleanup:
    if (rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    json_decref(diff);
    PQclear(res);
    return rc;
}
