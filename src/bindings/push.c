/*
 * The push of a binding to its kernel: event callback registrations (once
 * per kernel), the user list from the binding_eligible_users view with each
 * user's identity, POST /v1/protocols, and the outcome on the binding. Works
 * on a plain connection so the status poller and the job runner can use it.
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/sha.h>

#include "auth/sql.h"
#include "bindings/bindings.h"
#include "bindings/internal.h"
#include "core/log.h"
#include "errors.gen.h"
#include "formats/formats.h"
#include "identity/identity.h"
#include "jobs/jobs.h"
#include "kernel/kernel.h"
#include "system/site.h"

#define LOG_TAG "bindings"
#define NODE_DISABLED 4
#define BINDING_DISABLED 2
#define SYNC_STATUS_SYNCED 2
#define SYNC_STATUS_ERROR 3

/* The kernel events a node's kernel reports back to the panel. */
static const struct {
    const char *kind; /* "node" or "service", as in kernel_event_registrations.kind */
    const char *event;
} events[] = {
    {"node", "node_added"},   {"node", "node_removed"},   {"node", "node_healthy"},
    {"node", "node_degraded"}, {"node", "node_unhealthy"}, {"service", "user.traffic.reported"},
};

/* The binding row a push works from. */
typedef struct binding_row {
    int64_t node_id;
    char kernel_id[160];
    char protocol[40];
    char role[16];
    char *listen;
    char *connect;
    int64_t access_port;
    int status;
    json_t *tags;
    char *description;
    json_t *profile;
    int node_status;
} binding_row_t;

static void binding_row_dispose(binding_row_t *row)
{
    free(row->listen);
    free(row->connect);
    free(row->description);
    json_decref(row->tags);
    json_decref(row->profile);
    memset(row, 0, sizeof(*row));
}

static const char *int_text(char *buf, size_t size, int64_t v)
{
    snprintf(buf, size, "%" PRId64, v);
    return buf;
}

static void set_outcome(znp_bindings_outcome_t *out, int status, const char *message)
{
    out->status = status;
    snprintf(out->message, sizeof(out->message), "%s", message);
}

/*
 * Lock binding `id` for this transaction and read it. ZNP_E_NOT_FOUND when it
 * is gone. The row lock makes a concurrent PATCH or DELETE wait for the push,
 * so a deleted binding is never pushed again after its removal from the kernel.
 */
static int load_binding(PGconn *db, int64_t id, binding_row_t *out, const char *request_id)
{
    static const char sql_lock[] = "SELECT pg_advisory_xact_lock(hashtextextended('znp.binding.push:' || $1, 0))";
    static const char sql[] =
        "SELECT b.node_id, b.kernel_id, b.protocol, b.role, b.listen, b.connect, b.access_port, b.status,"
        " array_to_json(b.tags)::text, b.description, b.profile::text, n.status"
        " FROM protocol_bindings b JOIN nodes n ON n.id = b.node_id WHERE b.id = $1 AND n.deleted_at IS NULL"
        " FOR NO KEY UPDATE OF b";
    char text[24];
    const char *params[1] = {int_text(text, sizeof(text), id)};
    PGresult *res = NULL;
    int rc = znp_sql_exec(NULL, db, sql_lock, 1, params, request_id);

    if (rc == 0)
        rc = znp_sql_exec(&res, db, sql, 1, params, request_id);
    if (rc == 0 && PQntuples(res) != 1)
        rc = ZNP_E_NOT_FOUND;
    if (rc == 0) {
        out->node_id = znp_sql_int64(res, 0, 0);
        snprintf(out->kernel_id, sizeof(out->kernel_id), "%s", PQgetvalue(res, 0, 1));
        snprintf(out->protocol, sizeof(out->protocol), "%s", PQgetvalue(res, 0, 2));
        snprintf(out->role, sizeof(out->role), "%s", PQgetvalue(res, 0, 3));
        out->listen = strdup(PQgetvalue(res, 0, 4));
        out->connect = strdup(PQgetvalue(res, 0, 5));
        out->access_port = znp_sql_int64(res, 0, 6);
        out->status = (int)znp_sql_int64(res, 0, 7);
        out->tags = json_loads(PQgetvalue(res, 0, 8), 0, NULL);
        out->description = strdup(PQgetvalue(res, 0, 9));
        out->profile = json_loads(PQgetvalue(res, 0, 10), 0, NULL);
        out->node_status = (int)znp_sql_int64(res, 0, 11);
        if (out->listen == NULL || out->connect == NULL || out->description == NULL || out->tags == NULL ||
            out->profile == NULL)
            rc = ZNP_E_INTERNAL;
    }
    PQclear(res);
    return rc;
}

/* ---- event registrations ---- */

/* The callback base URL without a trailing '/', or "" when neither the config nor the site names one. */
static void callback_base(const znp_config_t *config, char *out, size_t size)
{
    const char *base = config->kernel.callback_base_url;
    znp_site_snapshot_t *site = NULL;
    size_t len;

    out[0] = '\0';
    if (base != NULL && base[0] != '\0') {
        snprintf(out, size, "%s", base);
    } else if ((site = malloc(sizeof(*site))) != NULL) {
        znp_site_cache_get(site);
        if (site->service_domain[0] != '\0')
            snprintf(out, size, "%s%s", strstr(site->service_domain, "://") != NULL ? "" : "https://",
                     site->service_domain);
        free(site);
    }
    len = strlen(out);
    while (len > 0 && out[len - 1] == '/')
        out[--len] = '\0';
}

/* Hex SHA-256 of the secret, "" when there is none. */
static void secret_hash(const char *secret, char out[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];

    out[0] = '\0';
    if (secret == NULL || secret[0] == '\0')
        return;
    SHA256((const unsigned char *)secret, strlen(secret), digest);
    for (size_t i = 0; i < sizeof(digest); i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

/* A registration id the kernel returned, usable in a URL path as it is. */
static int plain_id(const char *id)
{
    if (id[0] == '\0' || strlen(id) > 128)
        return 0;
    for (const char *p = id; *p != '\0'; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
              *p == '_' || *p == '.'))
            return 0;
    return 1;
}

/* Register one event and remember it, replacing a stale registration. Failures are logged only. */
static void register_event(PGconn *db, const znp_kernel_target_t *target, int64_t node_id, size_t index,
                           const char *callback, const char *secret, const char *hash, const char *stale_id,
                           const char *request_id)
{
    static const char sql[] =
        "INSERT INTO kernel_event_registrations (node_id, kind, event, callback, secret_hash, registration_id)"
        " VALUES ($1::bigint, $2, $3, $4, $5, $6) ON CONFLICT (node_id, kind, event) DO UPDATE SET"
        " callback = EXCLUDED.callback, secret_hash = EXCLUDED.secret_hash,"
        " registration_id = EXCLUDED.registration_id, created_at = now()";
    const char *base = strcmp(events[index].kind, "node") == 0 ? "/events/registrations"
                                                                  : "/service-events/registrations";
    char errbuf[512], path[200], node[24];
    json_t *body = json_pack("{s:s, s:s}", "event", events[index].event, "callback", callback), *answer = NULL;
    const char *params[6], *registration_id;
    int rc;

    if (body == NULL)
        return;
    if (secret != NULL && secret[0] != '\0')
        json_object_set_new(body, "secret", json_string(secret));
    rc = znp_kernel_call(target, "POST", base, body, &answer, errbuf, sizeof(errbuf));
    json_decref(body);
    if (rc != 0) {
        ZNP_WARN(LOG_TAG, request_id, "could not register kernel event node_id=%" PRId64 " event=%s: %s", node_id,
                 events[index].event, errbuf);
        return;
    }
    registration_id = json_string_value(json_object_get(answer, "id"));
    params[0] = int_text(node, sizeof(node), node_id);
    params[1] = events[index].kind;
    params[2] = events[index].event;
    params[3] = callback;
    params[4] = hash;
    params[5] = registration_id != NULL ? registration_id : "";
    if (znp_sql_exec(NULL, db, sql, 6, params, request_id) != 0)
        ZNP_WARN(LOG_TAG, request_id, "could not store the kernel event registration node_id=%" PRId64, node_id);
    json_decref(answer);

    /* the kernel would call the old callback too, so the stale registration goes */
    if (stale_id != NULL && plain_id(stale_id)) {
        snprintf(path, sizeof(path), "%s/%s", base, stale_id);
        rc = znp_kernel_call(target, "DELETE", path, NULL, &answer, errbuf, sizeof(errbuf));
        if (rc == 0)
            json_decref(answer);
        else
            ZNP_WARN(LOG_TAG, request_id, "could not delete the stale kernel event registration node_id=%" PRId64
                     " id=%s: %s", node_id, stale_id, errbuf);
    }
}

/*
 * Make sure the node's kernel has each event callback registered with the
 * current URL and secret. Registrations are remembered per node, so a sync
 * registers again only after the URL or the secret changed. Best effort.
 */
static void ensure_registrations(PGconn *db, const znp_config_t *config, const znp_kernel_target_t *target,
                                 int64_t node_id, const char *request_id)
{
    static const char sql_lock[] =
        "SELECT pg_advisory_xact_lock(hashtextextended('znp.kernel.events:' || $1, 0))";
    static const char sql[] = "SELECT kind, event, callback, secret_hash, registration_id"
                              " FROM kernel_event_registrations WHERE node_id = $1";
    const char *secret = config->webhook.shared_token;
    char base[2200], callback[2400], hash[65], node[24];
    const char *params[1] = {int_text(node, sizeof(node), node_id)};
    PGresult *res = NULL;

    callback_base(config, base, sizeof(base));
    if (base[0] == '\0') {
        ZNP_WARN(LOG_TAG, request_id, "no callback base URL (kernel.callback_base_url or the site service_domain);"
                 " kernel events of node_id=%" PRId64 " are not registered", node_id);
        return;
    }
    secret_hash(secret, hash);
    if (znp_sql_exec(NULL, db, sql_lock, 1, params, request_id) != 0 ||
        znp_sql_exec(&res, db, sql, 1, params, request_id) != 0)
        return;
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        const char *stale_id = NULL;
        int current = 0;

        snprintf(callback, sizeof(callback), "%s/api/v1/kernel/%s?node_id=%" PRId64, base,
                 strcmp(events[i].kind, "node") == 0 ? "events" : "service-events", node_id);
        for (int row = 0; row < PQntuples(res); row++) {
            if (strcmp(PQgetvalue(res, row, 0), events[i].kind) != 0 ||
                strcmp(PQgetvalue(res, row, 1), events[i].event) != 0)
                continue;
            current = strcmp(PQgetvalue(res, row, 2), callback) == 0 && strcmp(PQgetvalue(res, row, 3), hash) == 0;
            stale_id = PQgetvalue(res, row, 4);
        }
        if (!current)
            register_event(db, target, node_id, i, callback, secret, hash, stale_id, request_id);
    }
    PQclear(res);
}

/* ---- users ---- */

/* The shadowsocks 2022 method of a binding profile ("cipher", else "method"), or NULL for any other binding. */
static const char *ss2022_method(const binding_row_t *row)
{
    const char *method = json_string_value(json_object_get(row->profile, "cipher"));

    if (method == NULL)
        method = json_string_value(json_object_get(row->profile, "method"));
    if (strcmp(row->protocol, "ss") != 0 && strcmp(row->protocol, "shadowsocks") != 0)
        return NULL;
    return method != NULL && znp_formats_is_ss2022(method) ? method : NULL;
}

/*
 * The kernel users of binding `id`: one per eligible user, with the user's
 * identity. A shadowsocks 2022 binding gets each user's 2022 key as the
 * password, the same key the download puts into the user's links.
 * *out is a new reference.
 */
static int load_users(PGconn *db, const znp_config_t *config, const binding_row_t *binding, int64_t id, json_t **out,
                      const char *request_id)
{
    static const char sql[] =
        "SELECT e.user_id, e.subscription_id, c.version, c.key_id, c.secret_sealed, c.user_id IS NOT NULL"
        " FROM binding_eligible_users e LEFT JOIN user_credentials c ON c.user_id = e.user_id AND c.status = 1"
        " WHERE e.binding_id = $1 ORDER BY e.user_id";
    char text[24], user_text[24], subscription_text[24], ss2022_key[64];
    const char *params[1] = {int_text(text, sizeof(text), id)};
    const char *method = ss2022_method(binding);
    PGresult *res = NULL;
    json_t *users = NULL;
    int rc;

    *out = NULL;
    if ((rc = znp_sql_exec(&res, db, sql, 1, params, request_id)) != 0)
        return rc;
    if ((users = json_array()) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t user_id = znp_sql_int64(res, row, 0);
        znp_identity_t identity;
        json_t *user;

        if (znp_sql_bool(res, row, 5))
            rc = znp_identity_from_row(config, user_id, znp_sql_int64(res, row, 2), PQgetvalue(res, row, 3),
                                       PQgetvalue(res, row, 4), &identity);
        else
            rc = znp_identity_ensure(db, config, user_id, &identity, request_id);
        if (rc != 0 && PQtransactionStatus(db) == PQTRANS_INERROR)
            goto cleanup;
        if (rc != 0) {
            /* one unreadable credential must not keep every other user off the kernel */
            ZNP_ERROR(LOG_TAG, request_id, "skipping user_id=%" PRId64 " of binding_id=%" PRId64
                      ": could not derive the identity", user_id, id);
            rc = 0;
            continue;
        }
        if (method != NULL && znp_formats_ss2022_user_key(ss2022_key, sizeof(ss2022_key), method, identity.password) != 0) {
            ZNP_ERROR(LOG_TAG, request_id, "skipping user_id=%" PRId64 " of binding_id=%" PRId64
                      ": no shadowsocks 2022 key for method %s", user_id, id, method);
            continue;
        }
        user = json_pack("{s:s, s:s, s:s, s:{s:s}}", "id", int_text(user_text, sizeof(user_text), user_id),
                         "username", identity.uuid, "password", method != NULL ? ss2022_key : identity.password,
                         "metadata", "subscription_id",
                         int_text(subscription_text, sizeof(subscription_text), znp_sql_int64(res, row, 1)));
        if (user == NULL || json_array_append_new(users, user) != 0) {
            rc = ZNP_E_INTERNAL;
            goto cleanup;
        }
    }
    *out = users;
    users = NULL;

cleanup:
    json_decref(users);
    PQclear(res);
    return rc;
}

/* ---- the push ---- */

/* The ProtocolUpsertRequest body of POST /v1/protocols. New reference or NULL. */
static json_t *upsert_body(const binding_row_t *row, json_t *users)
{
    char listen[300];
    json_t *body = json_object(), *profile = json_object(), *tags = znp_bindings__kernel_tags(row->tags);
    int bad = body == NULL || profile == NULL || tags == NULL;

    if (!bad && znp_bindings__listen_address(row->listen, row->access_port, listen, sizeof(listen)) != 0)
        bad = 1;
    if (!bad && listen[0] != '\0')
        bad |= json_object_set_new(body, "listen", json_string(listen));
    if (!bad && row->connect[0] != '\0')
        bad |= json_object_set_new(body, "connect", json_string(row->connect));
    if (!bad)
        bad |= json_object_set(body, "users", users);
    if (!bad) {
        bad |= json_object_set_new(profile, "id", json_string(row->kernel_id));
        bad |= json_object_set_new(profile, "role", json_string(row->role));
        bad |= json_object_set_new(profile, "protocol", json_string(row->protocol));
        if (json_array_size(tags) > 0)
            bad |= json_object_set(profile, "tags", tags);
        if (row->description[0] != '\0')
            bad |= json_object_set_new(profile, "description", json_string(row->description));
        bad |= json_object_set(profile, "profile", row->profile);
        bad |= json_object_set(body, "profile", profile);
    }
    json_decref(tags);
    json_decref(profile);
    if (bad) {
        json_decref(body);
        return NULL;
    }
    return body;
}

/* Write the outcome of a kernel call on the binding: synced, or error with its reason. */
static int record_outcome(PGconn *db, int64_t id, int ok, const char *reason, const char *request_id)
{
    static const char sql[] =
        "UPDATE protocol_bindings SET sync_status = $2::smallint, last_sync_error = $3,"
        " last_synced_at = CASE WHEN $2::smallint = 2 THEN now() ELSE last_synced_at END WHERE id = $1";
    char text[24], status[8];
    const char *params[3] = {int_text(text, sizeof(text), id),
                             int_text(status, sizeof(status), ok ? SYNC_STATUS_SYNCED : SYNC_STATUS_ERROR),
                             ok ? "" : reason};

    return znp_sql_exec(NULL, db, sql, 3, params, request_id);
}

/* Call the kernel for a loaded binding: remove it when disabled, else register events and upsert it. */
static int push_loaded(PGconn *db, const znp_config_t *config, int64_t id, const binding_row_t *row,
                       znp_bindings_outcome_t *out, const char *request_id)
{
    znp_kernel_target_t target = {0};
    char errbuf[sizeof(out->message)], path[200];
    json_t *users = NULL, *body = NULL, *answer = NULL;
    int rc;

    if (znp_kernel_target_load(db, config, row->node_id, &target, request_id) != 0) {
        set_outcome(out, SYNC_RESULT_ERROR, "could not load the node's kernel endpoint and credentials");
        return record_outcome(db, id, 0, out->message, request_id);
    }
    if (row->status == BINDING_DISABLED) {
        snprintf(path, sizeof(path), "/protocols/%s", row->kernel_id);
        rc = znp_kernel_call(&target, "DELETE", path, NULL, &answer, errbuf, sizeof(errbuf));
        if (rc == 0 || strncmp(errbuf, "kernel control: 404", 19) == 0)
            set_outcome(out, SYNC_RESULT_SKIPPED, "binding is disabled; removed from the kernel");
        else
            set_outcome(out, SYNC_RESULT_ERROR, errbuf);
        rc = record_outcome(db, id, out->status != SYNC_RESULT_ERROR, out->message, request_id);
        goto cleanup;
    }

    ensure_registrations(db, config, &target, row->node_id, request_id);
    if ((rc = load_users(db, config, row, id, &users, request_id)) != 0)
        goto cleanup;
    if ((body = upsert_body(row, users)) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    if (znp_kernel_call(&target, "POST", "/protocols", body, &answer, errbuf, sizeof(errbuf)) == 0)
        set_outcome(out, SYNC_RESULT_SYNCED, "ok");
    else
        set_outcome(out, SYNC_RESULT_ERROR, errbuf);
    if (out->status == SYNC_RESULT_ERROR)
        ZNP_WARN(LOG_TAG, request_id, "binding sync failed binding_id=%" PRId64 " node_id=%" PRId64 ": %s", id,
                 row->node_id, out->message);
    rc = record_outcome(db, id, out->status == SYNC_RESULT_SYNCED, out->message, request_id);

cleanup:
    json_decref(users);
    json_decref(body);
    json_decref(answer);
    znp_kernel_target_clear(&target);
    return rc;
}

int znp_bindings__push(PGconn *db, const znp_config_t *config, int64_t binding_id, znp_bindings_outcome_t *out,
                       const char *request_id)
{
    binding_row_t row = {0};
    int rc;

    memset(out, 0, sizeof(*out));
    out->synced_at = (int64_t)time(NULL);
    if ((rc = znp_sql_begin(db, request_id)) != 0)
        return rc;
    rc = load_binding(db, binding_id, &row, request_id);
    if (rc == 0 && row.node_status == NODE_DISABLED)
        set_outcome(out, SYNC_RESULT_SKIPPED, "node is disabled");
    else if (rc == 0)
        rc = push_loaded(db, config, binding_id, &row, out, request_id);
    if (rc == 0)
        rc = znp_sql_commit(db, request_id);
    if (rc != 0)
        znp_sql_rollback(db, request_id);
    binding_row_dispose(&row);
    return rc;
}

int znp_bindings__kernel_delete(PGconn *db, const znp_config_t *config, int64_t node_id, const char *kernel_id,
                                const char *request_id)
{
    znp_kernel_target_t target = {0};
    int rc = znp_kernel_target_load(db, config, node_id, &target, request_id);

    if (rc != 0) {
        ZNP_WARN(LOG_TAG, request_id, "could not remove protocol %s from the kernel of node_id=%" PRId64
                 ": node not loaded", kernel_id, node_id);
        return rc;
    }
    rc = znp_bindings_kernel_remove(&target, kernel_id, request_id);
    znp_kernel_target_clear(&target);
    return rc;
}

int znp_bindings_kernel_remove(const znp_kernel_target_t *target, const char *kernel_id, const char *request_id)
{
    char errbuf[512], path[200];
    json_t *answer = NULL;
    int rc;

    snprintf(path, sizeof(path), "/protocols/%s", kernel_id);
    rc = znp_kernel_call(target, "DELETE", path, NULL, &answer, errbuf, sizeof(errbuf));
    json_decref(answer);
    if (rc != 0 && strncmp(errbuf, "kernel control: 404", 19) == 0)
        rc = 0;
    if (rc != 0)
        ZNP_WARN(LOG_TAG, request_id, "could not remove protocol %s from the kernel of node_id=%" PRId64 ": %s",
                 kernel_id, target->node_id, errbuf);
    return rc;
}

/* ---- node recovery and the user job ---- */

int znp_bindings_sync_node(PGconn *db, const znp_config_t *config, int64_t node_id, const char *request_id)
{
    static const char sql[] = "SELECT id FROM protocol_bindings WHERE node_id = $1 ORDER BY id";
    char text[24];
    const char *params[1] = {int_text(text, sizeof(text), node_id)};
    PGresult *res = NULL;
    int pushed = 0, rc = znp_sql_exec(&res, db, sql, 1, params, request_id);

    if (rc != 0)
        return rc;
    for (int row = 0; row < PQntuples(res); row++) {
        znp_bindings_outcome_t outcome;

        rc = znp_bindings__push(db, config, znp_sql_int64(res, row, 0), &outcome, request_id);
        if (rc == ZNP_E_NOT_FOUND)
            continue;
        if (rc != 0)
            break;
        pushed += outcome.status == SYNC_RESULT_SYNCED;
    }
    PQclear(res);
    return rc == 0 || rc == ZNP_E_NOT_FOUND ? pushed : rc;
}

/* Job ZNP_BINDINGS_SYNC_USER_JOB: push every binding the user may use, so the kernels get the new identity. */
static int sync_user(PGconn *db, const znp_config_t *config, json_t *payload, char *message, size_t message_size)
{
    static const char sql[] = "SELECT binding_id FROM binding_eligible_users WHERE user_id = $1 ORDER BY binding_id";
    json_t *user = json_object_get(payload, "user_id");
    char text[24];
    const char *params[1];
    PGresult *res = NULL;
    int failed = 0, rc;

    if (!json_is_integer(user) || json_integer_value(user) <= 0) {
        snprintf(message, message_size, "payload has no positive user_id");
        return 0; /* retrying cannot fix the payload */
    }
    params[0] = int_text(text, sizeof(text), json_integer_value(user));
    if ((rc = znp_sql_exec(&res, db, sql, 1, params, NULL)) != 0)
        return rc;
    for (int row = 0; row < PQntuples(res); row++) {
        znp_bindings_outcome_t outcome;
        int64_t binding_id = znp_sql_int64(res, row, 0);

        rc = znp_bindings__push(db, config, binding_id, &outcome, NULL);
        if (rc == ZNP_E_NOT_FOUND)
            continue;
        if (rc != 0)
            break;
        if (outcome.status == SYNC_RESULT_ERROR) {
            failed++;
            snprintf(message, message_size, "binding_id=%" PRId64 ": %s", binding_id, outcome.message);
        }
    }
    PQclear(res);
    if (rc != 0 && rc != ZNP_E_NOT_FOUND)
        return rc;
    return failed > 0 ? ZNP_E_INTERNAL : 0;
}

int znp_bindings_register(void)
{
    return znp_jobs_register(ZNP_BINDINGS_SYNC_USER_JOB, sync_user);
}
