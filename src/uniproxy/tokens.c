/*
 * Node-backend tokens and the eligibility version. The token map contains
 * the SHA-256 of every live node's token. It is loaded on first use and after
 * every NOTIFY znp_node_tokens, so authenticating a request costs no query
 * while nothing changes. Lookups compare the hash against every entry with
 * CRYPTO_memcmp and no early exit.
 */
#include "uniproxy/uniproxy.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "core/log.h"
#include "operations.gen.h"
#include "uniproxy/internal.h"

#define LOG_MODULE "uniproxy"
#define TOKEN_PREFIX "znpn_"
#define TOKEN_RANDOM_BYTES 32

typedef struct token_entry {
    int64_t node_id;
    unsigned char hash[SHA256_DIGEST_LENGTH];
} token_entry_t;

static atomic_uint_fast64_t eligibility_version = 1;

static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;
static token_entry_t *map_entries; /* guarded by map_lock */
static size_t map_count;
static int map_loaded;
static uint64_t map_generation; /* bumped by every reset, so a load that raced a reset is not trusted */

void znp_uniproxy_invalidate(void)
{
    atomic_fetch_add(&eligibility_version, 1);
}

uint64_t znp_uniproxy_version(void)
{
    return atomic_load(&eligibility_version);
}

void znp_uniproxy_tokens_reset(void)
{
    pthread_mutex_lock(&map_lock);
    map_loaded = 0;
    map_generation++;
    pthread_mutex_unlock(&map_lock);
}

void znp_uniproxy_on_notify(const char *channel, const char *payload)
{
    (void)payload;
    if (channel == NULL)
        return;
    if (strcmp(channel, ZNP_UNIPROXY_CHANNEL) == 0)
        znp_uniproxy_invalidate();
    else if (strcmp(channel, ZNP_UNIPROXY_TOKEN_CHANNEL) == 0)
        znp_uniproxy_tokens_reset();
}

void znp_uniproxy_on_reconnect(void)
{
    znp_uniproxy_invalidate();
    znp_uniproxy_tokens_reset();
}

static int hex_decode(const char *hex, unsigned char *out, size_t size)
{
    if (strlen(hex) != size * 2)
        return -1;
    for (size_t i = 0; i < size; i++) {
        unsigned v = 0;

        if (sscanf(hex + 2 * i, "%2x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* Load the map of live nodes' token hashes from the database. */
static int load_map(PGconn *db)
{
    static const char sql[] = "SELECT t.node_id, t.token_hash FROM node_backend_tokens t"
                              " JOIN nodes n ON n.id = t.node_id WHERE n.deleted_at IS NULL";
    PGresult *res = NULL;
    token_entry_t *entries = NULL;
    uint64_t generation;
    size_t count = 0;
    int rc;

    pthread_mutex_lock(&map_lock);
    generation = map_generation;
    pthread_mutex_unlock(&map_lock);

    rc = znp_sql_exec(&res, db, sql, 0, NULL, NULL);
    if (rc != 0)
        goto cleanup;
    entries = calloc((size_t)PQntuples(res) + 1, sizeof(*entries));
    if (entries == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        if (hex_decode(PQgetvalue(res, i, 1), entries[count].hash, SHA256_DIGEST_LENGTH) != 0)
            continue;
        entries[count].node_id = znp_sql_int64(res, i, 0);
        count++;
    }

    pthread_mutex_lock(&map_lock);
    free(map_entries);
    map_entries = entries;
    map_count = count;
    map_loaded = generation == map_generation;
    pthread_mutex_unlock(&map_lock);
    entries = NULL;

cleanup:
    free(entries);
    PQclear(res);
    return rc;
}

int znp_uniproxy_token_node(PGconn *db, const char *token, int64_t *node_id)
{
    unsigned char hash[SHA256_DIGEST_LENGTH];
    int64_t found = 0;
    int loaded;
    int rc;

    *node_id = 0;
    if (token == NULL || token[0] == '\0')
        return ZNP_E_UNAUTHENTICATED;
    SHA256((const unsigned char *)token, strlen(token), hash);

    pthread_mutex_lock(&map_lock);
    loaded = map_loaded;
    pthread_mutex_unlock(&map_lock);
    if (!loaded) {
        if (db == NULL)
            return ZNP_E_DATABASE_UNAVAILABLE;
        rc = load_map(db);
        if (rc != 0)
            return rc;
    }

    pthread_mutex_lock(&map_lock);
    for (size_t i = 0; i < map_count; i++) {
        /* every entry is compared, so the time taken does not depend on which one matches */
        if (CRYPTO_memcmp(map_entries[i].hash, hash, sizeof(hash)) == 0)
            found = map_entries[i].node_id;
    }
    pthread_mutex_unlock(&map_lock);
    if (found == 0)
        return ZNP_E_TOKEN_INVALID;
    *node_id = found;
    return 0;
}

/* A new token: the prefix and 32 random bytes in unpadded base64url. */
static int make_token(char *out, size_t size)
{
    unsigned char random[TOKEN_RANDOM_BYTES];
    unsigned char encoded[64];
    int len;

    if (RAND_bytes(random, sizeof(random)) != 1)
        return ZNP_E_INTERNAL;
    len = EVP_EncodeBlock(encoded, random, sizeof(random));
    while (len > 0 && encoded[len - 1] == '=')
        len--;
    for (int i = 0; i < len; i++) {
        if (encoded[i] == '+')
            encoded[i] = '-';
        else if (encoded[i] == '/')
            encoded[i] = '_';
    }
    OPENSSL_cleanse(random, sizeof(random));
    if (snprintf(out, size, TOKEN_PREFIX "%.*s", len, (const char *)encoded) >= (int)size)
        return ZNP_E_INTERNAL;
    return 0;
}

int znp_op_rotate_admin_node_backend_token(znp_ctx_t *ctx, const znp_rotate_admin_node_backend_token_request_t *req,
                                           znp_rotate_admin_node_backend_token_response_t *resp)
{
    static const char lock_sql[] = "SELECT id FROM nodes WHERE id = $1 AND deleted_at IS NULL FOR UPDATE";
    static const char save_sql[] =
        "INSERT INTO node_backend_tokens (node_id, token_hash) VALUES ($1, $2)"
        " ON CONFLICT (node_id) DO UPDATE SET token_hash = excluded.token_hash, rotated_at = now()"
        " RETURNING to_char(rotated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";
    unsigned char hash[SHA256_DIGEST_LENGTH];
    char token[96];
    char hash_hex[SHA256_DIGEST_LENGTH * 2 + 1];
    char id_text[24];
    const char *params[2] = {id_text, hash_hex};
    PGresult *res = NULL;
    json_t *diff = NULL;
    int in_transaction = 0;
    int rc;

    /* make the token */
    rc = make_token(token, sizeof(token));
    if (rc != 0)
        goto cleanup;
    SHA256((const unsigned char *)token, strlen(token), hash);
    for (size_t i = 0; i < sizeof(hash); i++)
        snprintf(hash_hex + 2 * i, 3, "%02x", hash[i]);
    snprintf(id_text, sizeof id_text, "%" PRId64, req->id);

    /* save it with its audit row */
    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    in_transaction = 1;
    rc = znp_sql_exec(&res, ctx->db, lock_sql, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = ZNP_E_NOT_FOUND;
        goto cleanup;
    }
    PQclear(res);
    res = NULL;
    rc = znp_sql_exec(&res, ctx->db, save_sql, 2, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    diff = json_pack("{s:b}", "backend_token_rotated", 1);
    rc = znp_audit_record_resource(ctx, "admin.node.backend_token.rotate", "node", req->id, diff);
    if (rc != 0)
        goto cleanup;
    rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    in_transaction = 0;
    /* this instance drops the old token before it responds, and the trigger's NOTIFY reaches the others */
    znp_uniproxy_tokens_reset();
    ZNP_INFO(LOG_MODULE, ctx->request_id, "node backend token rotated node_id=%" PRId64, req->id);

    /* return the token, the only time it is shown */
    resp->node_id = req->id;
    resp->token = znp_arena_strdup(ctx->arena, token);
    resp->rotated_at = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, 0));
    if (resp->token == NULL || resp->rotated_at == NULL)
        rc = ZNP_E_INTERNAL;

cleanup:
    if (in_transaction)
        znp_sql_rollback(ctx->db, ctx->request_id);
    OPENSSL_cleanse(token, sizeof(token));
    json_decref(diff);
    PQclear(res);
    return rc;
}
