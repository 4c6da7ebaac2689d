/*
 * Admin operations that talk to kernels now:
 *   POST /api/v1/{admin}/nodes/status/sync       probe kernels, set online/offline
 *   POST /api/v1/{admin}/nodes/{id}/kernels/sync pull a node's config and store it
 * Kernel calls run before the transaction opens, so no row lock is held while
 * a kernel is slow. Neither operation moves a disabled or maintenance node.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/sha.h>

#include "audit/audit.h"
#include "auth/sql.h"
#include "core/log.h"
#include "kernel/internal.h"
#include "kernel/kernel.h"
#include "operations.gen.h"

#define LOG_TAG   "kernel"
#define NODES_MAX 100

/* one kernel probe shared by the nodes with the same endpoint, credentials and timeout */
typedef struct probe {
    znp_kernel_target_t target;
    pthread_t thread;
    int started;
    int ok;
    char error[600];
} probe_t;

typedef struct node_row {
    int64_t id;
    int found;
    int status;
    int sync_enabled;
    probe_t *probe; /* NULL when skipped or failed before a probe */
    const char *message;
} node_row_t;

static void *probe_main(void *arg)
{
    probe_t *p = arg;
    json_t *answer = NULL;

    if (znp_kernel_call(&p->target, "GET", "/status?include=nodes", NULL, &answer, p->error, sizeof(p->error)) == 0) {
        if (json_is_object(answer) && json_is_object(json_object_get(answer, "snapshot")))
            p->ok = 1;
        else
            snprintf(p->error, sizeof(p->error), "kernel control: status answer has no snapshot");
    }
    json_decref(answer);
    return NULL;
}

static int same_target(const znp_kernel_target_t *a, const znp_kernel_target_t *b)
{
    if (a->timeout_ms != b->timeout_ms || strcmp(a->base_url, b->base_url) != 0)
        return 0;
    if (a->auth_header == NULL || b->auth_header == NULL)
        return a->auth_header == b->auth_header;
    return strcmp(a->auth_header, b->auth_header) == 0;
}

static void free_secret(char *s)
{
    if (s != NULL) {
        memset(s, 0, strlen(s));
        free(s);
    }
}

int znp_op_sync_admin_node_status(znp_ctx_t *ctx, const znp_sync_admin_node_status_request_t *req,
                                  znp_sync_admin_node_status_response_t *resp)
{
    static const char sql_nodes[] =
        "SELECT id, status, control_endpoint, control_access_key_sealed, control_secret_key_sealed,"
        " control_token_sealed, kernel_http_timeout_seconds, status_sync_enabled"
        " FROM nodes WHERE id = ANY($1::bigint[]) AND deleted_at IS NULL";
    static const char sql_status[] = "SELECT id, status FROM nodes WHERE id = ANY($1::bigint[]) AND deleted_at IS NULL";
    static const char sql_reset[] =
        "UPDATE node_poll_state s SET failures = 0, probe_attempts = 0, last_ok_at = now(), last_error = '',"
        " next_due_at = now() + make_interval(secs => n.kernel_status_poll_interval_seconds)"
        " FROM nodes n WHERE n.id = s.node_id AND s.node_id = $1 AND s.lease_until IS NULL";
    const int64_t *requested = req->body.node_ids.items;
    node_row_t rows[NODES_MAX];
    probe_t probes[NODES_MAX];
    size_t row_count = 0, probe_count = 0;
    znp_node_status_sync_result_t *results = NULL;
    char *array = NULL;
    size_t array_len = 0;
    PGresult *res = NULL;
    int rc = 0, in_tx = 0;

    memset(probes, 0, sizeof(probes));
    for (size_t i = 0; i < req->body.node_ids.count; i++) {
        int seen = 0;

        for (size_t k = 0; k < row_count && !seen; k++)
            seen = rows[k].id == requested[i];
        if (!seen && row_count < NODES_MAX) {
            memset(&rows[row_count], 0, sizeof(rows[row_count]));
            rows[row_count++].id = requested[i];
        }
    }
    if (row_count == 0)
        return znp_error_set(ctx->err, ZNP_E_VALIDATION_FAILED, "$.node_ids", "no node ids");

    /* "{1,2,3}" for the array parameter */
    array = znp_arena_alloc(ctx->arena, row_count * 21 + 3);
    if (array == NULL)
        return ZNP_E_INTERNAL;
    array[array_len++] = '{';
    for (size_t i = 0; i < row_count; i++)
        array_len += (size_t)snprintf(array + array_len, 22, "%s%" PRId64, i > 0 ? "," : "", rows[i].id);
    array[array_len++] = '}';
    array[array_len] = '\0';
    {
        const char *params[1] = {array};

        rc = znp_sql_exec(&res, ctx->db, sql_nodes, 1, params, ctx->request_id);
    }
    if (rc != 0)
        goto cleanup;

    for (int r = 0; r < PQntuples(res) && rc == 0; r++) {
        int64_t id = znp_sql_int64(res, r, 0);
        node_row_t *row = NULL;
        znp_kernel_target_t target;
        char *ak = NULL, *sk = NULL, *token = NULL;

        for (size_t k = 0; k < row_count && row == NULL; k++)
            row = rows[k].id == id ? &rows[k] : NULL;
        if (row == NULL)
            continue;
        row->found = 1;
        row->status = (int)znp_sql_int64(res, r, 1);
        row->sync_enabled = znp_sql_bool(res, r, 7);
        if (row->status == 4) {
            row->message = znp_ctx_text(ctx, "node disabled", "节点已停用");
            continue;
        }
        rc = znp_kernel__open_credentials(ctx->config, id, PQgetisnull(res, r, 3) ? NULL : PQgetvalue(res, r, 3),
                                          PQgetisnull(res, r, 4) ? NULL : PQgetvalue(res, r, 4),
                                          PQgetisnull(res, r, 5) ? NULL : PQgetvalue(res, r, 5), &ak, &sk, &token,
                                          ctx->request_id);
        if (rc == 0 && znp_kernel_target_init(&target, id, PQgetvalue(res, r, 2), ak, sk, token,
                                              strtol(PQgetvalue(res, r, 6), NULL, 10)) != 0)
            row->message = znp_ctx_text(ctx, "node has no control endpoint", "节点没有控制地址");
        free_secret(ak);
        free_secret(sk);
        free_secret(token);
        if (rc != 0 || row->message != NULL)
            continue;
        for (size_t p = 0; p < probe_count && row->probe == NULL; p++) {
            if (same_target(&probes[p].target, &target))
                row->probe = &probes[p];
        }
        if (row->probe == NULL) {
            probes[probe_count].target = target;
            row->probe = &probes[probe_count++];
        } else {
            znp_kernel_target_clear(&target);
        }
    }
    PQclear(res);
    res = NULL;
    if (rc != 0)
        goto cleanup;

    /* one thread per distinct kernel, so the slowest kernel bounds the wait */
    for (size_t p = 0; p < probe_count; p++)
        probes[p].started = pthread_create(&probes[p].thread, NULL, probe_main, &probes[p]) == 0;
    for (size_t p = 0; p < probe_count; p++) {
        if (probes[p].started)
            pthread_join(probes[p].thread, NULL);
        else
            probe_main(&probes[p]);
    }

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    in_tx = 1;
    for (size_t i = 0; i < row_count && rc == 0; i++) {
        char id_text[24];
        const char *params[1] = {id_text};
        int recovered = 0;

        if (rows[i].probe == NULL)
            continue;
        rc = znp_kernel__set_status(ctx->db, ctx->config, rows[i].id, rows[i].probe->ok, &recovered, ctx->request_id);
        snprintf(id_text, sizeof(id_text), "%" PRId64, rows[i].id);
        if (rc == 0 && rows[i].probe->ok)
            rc = znp_sql_exec(NULL, ctx->db, sql_reset, 1, params, ctx->request_id);
    }
    if (rc == 0) {
        const char *params[1] = {array};

        rc = znp_sql_exec(&res, ctx->db, sql_status, 1, params, ctx->request_id);
    }
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    in_tx = 0;

    results = znp_arena_alloc(ctx->arena, row_count * sizeof(*results));
    if (results == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    for (size_t i = 0; i < row_count; i++) {
        znp_node_status_sync_result_t *out = &results[i];

        out->node_id = rows[i].id;
        for (int r = 0; r < PQntuples(res); r++) {
            if (znp_sql_int64(res, r, 0) == rows[i].id)
                out->node_status = znp_sql_int64(res, r, 1);
        }
        if (!rows[i].found) {
            out->status = 2;
            out->message = (char *)znp_ctx_text(ctx, "node not found", "节点不存在");
        } else if (rows[i].status == 4) {
            out->status = 3;
            out->message = (char *)znp_ctx_text(ctx, "node disabled", "节点已停用");
        } else if (rows[i].probe == NULL) {
            out->status = 2;
            out->message = (char *)(rows[i].message != NULL
                                        ? rows[i].message
                                        : znp_ctx_text(ctx, "could not build the kernel call", "无法构造内核请求"));
        } else if (rows[i].probe->ok) {
            out->status = 1;
            out->message = (char *)znp_ctx_text(ctx, "ok", "成功");
        } else {
            out->status = 2;
            out->message = znp_arena_strdup(ctx->arena, rows[i].probe->error);
            if (out->message == NULL)
                rc = ZNP_E_INTERNAL;
        }
    }
    resp->results.items = results;
    resp->results.count = row_count;

cleanup:
    if (in_tx && rc != 0)
        znp_sql_rollback(ctx->db, ctx->request_id);
    for (size_t p = 0; p < probe_count; p++)
        znp_kernel_target_clear(&probes[p].target);
    PQclear(res);
    return rc;
}

/* ---- kernel config sync ---- */

static void release_json(void *value)
{
    json_decref(value);
}

static void hex_sha256(const char *text, char out[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];

    SHA256((const unsigned char *)text, strlen(text), digest);
    for (size_t i = 0; i < sizeof(digest); i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

/* The protocol summary in `list` whose id equals `id`, or NULL. Borrowed. */
static json_t *find_protocol(json_t *list, const char *id)
{
    size_t i;
    json_t *item;

    json_array_foreach(list, i, item)
    {
        const char *item_id = json_string_value(json_object_get(item, "id"));

        if (item_id != NULL && strcmp(item_id, id) == 0)
            return item;
    }
    return NULL;
}

/* GET /protocols once per sync; *list stays owned by the caller. */
static int list_protocols(const znp_kernel_target_t *t, json_t **list, znp_kernel_reply_t *reply, char *error,
                          size_t size)
{
    int rc;

    if (*list != NULL)
        return 0;
    rc = znp_kernel__request(t, "GET", "/protocols", NULL, list, reply, error, size);
    if (rc == 0 && !json_is_array(*list)) {
        json_decref(*list);
        *list = NULL;
        snprintf(error, size, "kernel control: protocol list is not an array");
        return ZNP_E_KERNEL_UNAVAILABLE;
    }
    return rc;
}

/*
 * The node's config by `key` (node name or numeric id): GET /nodes/{key}/config,
 * and on 404 the protocol whose id is `key`. *found NULL when neither exists.
 */
static int fetch_by_key(const znp_kernel_target_t *t, const char *key, json_t **protocols, json_t **found,
                        int *is_config, znp_kernel_reply_t *reply, char *error, size_t size)
{
    char *escaped = curl_easy_escape(NULL, key, 0);
    char *path = NULL;
    json_t *config = NULL;
    int rc;

    *found = NULL;
    if (escaped == NULL)
        return ZNP_E_INTERNAL;
    size_t path_size = strlen(escaped) + 16;
    path = malloc(path_size);
    if (path == NULL) {
        curl_free(escaped);
        return ZNP_E_INTERNAL;
    }
    snprintf(path, path_size, "/nodes/%s/config", escaped);
    rc = znp_kernel__request(t, "GET", path, NULL, &config, reply, error, size);
    curl_free(escaped);
    free(path);
    if (rc == 0 && json_is_object(config)) {
        *found = config;
        *is_config = 1;
        return 0;
    }
    json_decref(config);
    if (rc != 0 && rc != ZNP_E_NOT_FOUND)
        return rc;
    rc = list_protocols(t, protocols, reply, error, size);
    if (rc != 0)
        return rc;
    *found = json_incref(find_protocol(*protocols, key));
    *is_config = 0;
    return 0;
}

/* "sync complete", with a warning when the kernel's Date header is more than a minute off the panel clock. */
static char *sync_message(znp_ctx_t *ctx, int64_t kernel_date)
{
    int zh = ctx->locale == ZNP_LOCALE_ZH_CN;
    int64_t skew = kernel_date > 0 ? kernel_date - (int64_t)time(NULL) : 0;
    char *message;

    if (skew < 0)
        skew = -skew;
    if (skew <= 60)
        return zh ? (char *)"同步完成" : (char *)"sync complete";
    if (zh)
        message = znp_arena_printf(ctx->arena, "同步完成，但内核时钟与面板相差 %" PRId64 " 秒", skew);
    else
        message = znp_arena_printf(ctx->arena,
                                   "sync complete, but the kernel clock is %" PRId64 " s off the panel clock", skew);
    return message != NULL ? message : (char *)"sync complete";
}

int znp_op_sync_admin_node_kernel(znp_ctx_t *ctx, const znp_sync_admin_node_kernel_request_t *req,
                                  znp_sync_admin_node_kernel_response_t *resp)
{
    static const char sql_node[] =
        "SELECT name, kernel_default_protocol FROM nodes WHERE id = $1 AND deleted_at IS NULL";
    static const char sql_bindings[] = "SELECT kernel_id FROM protocol_bindings WHERE node_id = $1 ORDER BY id";
    static const char sql_store[] =
        "INSERT INTO node_kernels (node_id, protocol, endpoint, revision, status, config, last_synced_at)"
        " VALUES ($1::bigint, $2, $3, $4, 2, $5::jsonb, now())"
        " ON CONFLICT (node_id, protocol) DO UPDATE SET endpoint = EXCLUDED.endpoint, revision = EXCLUDED.revision,"
        " status = 2, config = EXCLUDED.config, last_synced_at = EXCLUDED.last_synced_at, updated_at = now()"
        " RETURNING protocol, endpoint, revision, status, config::text,"
        " coalesce(extract(epoch FROM last_synced_at)::bigint, 0), extract(epoch FROM updated_at)::bigint";
    static const char sql_touch[] =
        "UPDATE nodes SET last_synced_at = greatest(coalesce(last_synced_at, now()), now()), updated_at = now()"
        " WHERE id = $1 AND deleted_at IS NULL";
    char id_text[24], error[600] = "", revision[65] = "";
    znp_kernel_reply_t reply = {0};
    const char *params[5] = {id_text};
    znp_kernel_target_t target = {0};
    PGresult *res = NULL;
    json_t *protocols = NULL, *found = NULL, *payload = NULL, *diff = NULL;
    char *name = NULL, *protocol = NULL, *config_text = NULL;
    const char *endpoint = NULL;
    int is_config = 0, recovered = 0, rc;

    snprintf(id_text, sizeof(id_text), "%" PRId64, req->id);
    rc = znp_sql_exec(&res, ctx->db, sql_node, 1, params, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no node with this id");
        goto cleanup;
    }
    name = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, 0));
    protocol = znp_arena_strdup(ctx->arena, req->has.protocol == ZNP_SET && req->protocol[0] != '\0' ? req->protocol
                                            : PQgetvalue(res, 0, 1)[0] != '\0' ? PQgetvalue(res, 0, 1)
                                                                               : "http");
    PQclear(res);
    res = NULL;
    if (name == NULL || protocol == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    for (char *p = protocol; *p != '\0'; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    if (strcmp(protocol, "http") != 0) {
        rc = znp_error_set(ctx->err, ZNP_E_KERNEL_PROVIDER_NOT_FOUND, "protocol", "only http is supported");
        goto cleanup;
    }
    rc = znp_kernel_target_load(ctx->db, ctx->config, req->id, &target, ctx->request_id);
    if (rc != 0) {
        if (rc == ZNP_E_NOT_FOUND)
            rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "no node with this id");
        goto cleanup;
    }

    /* by name, then by numeric id, then a protocol carrying one of the node's binding kernel ids */
    rc = fetch_by_key(&target, name, &protocols, &found, &is_config, &reply, error, sizeof(error));
    if (rc == 0 && found == NULL)
        rc = fetch_by_key(&target, id_text, &protocols, &found, &is_config, &reply, error, sizeof(error));
    if (rc == 0 && found == NULL) {
        rc = znp_sql_exec(&res, ctx->db, sql_bindings, 1, params, ctx->request_id);
        if (rc == 0 && PQntuples(res) > 0)
            rc = list_protocols(&target, &protocols, &reply, error, sizeof(error));
        for (int r = 0; rc == 0 && found == NULL && r < PQntuples(res); r++)
            found = json_incref(find_protocol(protocols, PQgetvalue(res, r, 0)));
        PQclear(res);
        res = NULL;
    }
    if (rc != 0) {
        if (rc == ZNP_E_KERNEL_UNAVAILABLE || rc == ZNP_E_NOT_FOUND)
            rc = znp_error_set(ctx->err, ZNP_E_KERNEL_UNAVAILABLE, NULL, "%s", error);
        goto cleanup;
    }
    if (found == NULL) {
        rc = znp_error_set(ctx->err, ZNP_E_NOT_FOUND, "id", "the kernel has no config for this node");
        goto cleanup;
    }

    /* revision: the kernel's own, else the response ETag, else SHA-256 of the payload, else of the metadata */
    if (is_config) {
        const char *kernel_revision = json_string_value(json_object_get(found, "revision"));
        json_t *metadata = json_object_get(found, "metadata");

        payload = json_incref(json_object_get(found, "payload"));
        endpoint = json_string_value(json_object_get(found, "endpoint"));
        if (kernel_revision != NULL && kernel_revision[0] != '\0') {
            snprintf(revision, sizeof(revision), "%.64s", kernel_revision);
        } else if (reply.etag[0] != '\0') {
            snprintf(revision, sizeof(revision), "%.64s", reply.etag);
        } else {
            json_t *basis = payload != NULL ? payload : metadata;
            char *text = basis != NULL ? json_dumps(basis, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY) : NULL;

            if (text != NULL)
                hex_sha256(text, revision);
            free(text);
        }
    } else {
        char *text = json_dumps(found, JSON_COMPACT | JSON_SORT_KEYS);

        payload = json_incref(found);
        if (text != NULL)
            hex_sha256(text, revision);
        free(text);
    }
    if (!json_is_object(payload)) {
        json_decref(payload);
        payload = json_object();
    }
    config_text = payload != NULL ? json_dumps(payload, JSON_COMPACT) : NULL;
    if (config_text == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    if (endpoint == NULL || endpoint[0] == '\0')
        endpoint = target.base_url;

    rc = znp_sql_begin(ctx->db, ctx->request_id);
    if (rc != 0)
        goto cleanup;
    params[1] = protocol;
    params[2] = endpoint;
    params[3] = revision;
    params[4] = config_text;
    rc = znp_sql_exec(&res, ctx->db, sql_store, 5, params, ctx->request_id);
    if (rc == 0) {
        znp_node_kernel_t *k = &resp->kernel;
        json_t *config = json_loads(PQgetvalue(res, 0, 4), JSON_DECODE_ANY, NULL);

        k->protocol = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, 0));
        k->endpoint = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, 1));
        k->revision = znp_arena_strdup(ctx->arena, PQgetvalue(res, 0, 2));
        k->status = znp_sql_int64(res, 0, 3);
        k->last_synced_at = znp_sql_int64(res, 0, 5);
        k->updated_at = znp_sql_int64(res, 0, 6);
        if (config != NULL && znp_arena_defer(ctx->arena, release_json, config) != 0) {
            json_decref(config);
            config = NULL;
        }
        k->config = config;
        if (k->protocol == NULL || k->endpoint == NULL || k->revision == NULL || k->config == NULL)
            rc = ZNP_E_INTERNAL;
        resp->synced_at = k->last_synced_at;
    }
    if (rc == 0)
        rc = znp_sql_exec(NULL, ctx->db, sql_touch, 1, params, ctx->request_id);
    /* the kernel responded, so an offline node is online; disabled and maintenance nodes keep their status */
    if (rc == 0)
        rc = znp_kernel__set_status(ctx->db, ctx->config, req->id, 1, &recovered, ctx->request_id);
    if (rc == 0) {
        diff = json_pack("{s:s, s:s, s:b}", "protocol", protocol, "revision", revision, "recovered", recovered);
        rc = diff != NULL ? znp_audit_record_resource(ctx, "admin.node.kernel.sync", "node", req->id, diff)
                          : ZNP_E_INTERNAL;
    }
    if (rc == 0)
        rc = znp_sql_commit(ctx->db, ctx->request_id);
    if (rc != 0) {
        znp_sql_rollback(ctx->db, ctx->request_id);
        goto cleanup;
    }
    resp->node_id = req->id;
    resp->protocol = resp->kernel.protocol;
    resp->revision = resp->kernel.revision;
    resp->message = sync_message(ctx, reply.date);

cleanup:
    znp_kernel_target_clear(&target);
    json_decref(protocols);
    json_decref(found);
    json_decref(payload);
    json_decref(diff);
    free(config_text);
    PQclear(res);
    return rc;
}
