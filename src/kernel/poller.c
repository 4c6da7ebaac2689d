/*
 * The status poller. A scheduled job ticks every second on the
 * scheduler thread of whichever instance holds its advisory lock. A tick
 * never waits for a kernel: it
 *   1. applies the responses of polls that finished since the last tick
 *      (node online or offline, next due time from znp_kernel_poll_advance,
 *      a recovery sync job when a node came back online),
 *   2. brings node_poll_state in line with the eligible nodes (new rows for
 *      new nodes, a reset when a node's endpoint, credentials, timeout or
 *      poll settings changed, removal when a node stopped being eligible),
 *   3. claims the due nodes with a lease and starts one thread per poll.
 * So a hanging kernel costs one thread until its timeout and delays nothing
 * else, and no request worker ever waits for a kernel. Disabled and
 * maintenance nodes, and nodes with status sync off, are never flipped.
 */
#include "kernel/kernel.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>

#include "auth/sql.h"
#include "bindings/bindings.h"
#include "core/log.h"
#include "errors.gen.h"
#include "jobs/jobs.h"
#include "kernel/internal.h"
#include "runtime/metrics.h"

#define LOG_TAG       "kernel"
#define IN_FLIGHT_MAX 32
#define STOP_WAIT_MS  5000

/* eligible for polling: status sync on, not disabled, endpoint set, interval > 0 */
#define ELIGIBLE                                                                                                       \
    "n.deleted_at IS NULL AND n.status <> 4 AND n.status_sync_enabled AND n.control_endpoint <> ''"                    \
    " AND n.kernel_status_poll_interval_seconds > 0"

/* what the poll state was computed under; a change resets the state */
#define SETTINGS_HASH                                                                                                  \
    "md5(concat_ws('|', n.control_endpoint, coalesce(n.control_access_key_sealed, ''),"                                \
    " coalesce(n.control_secret_key_sealed, ''), coalesce(n.control_token_sealed, ''),"                                \
    " n.kernel_http_timeout_seconds, n.kernel_status_poll_interval_seconds, n.kernel_status_poll_backoff_enabled,"     \
    " n.kernel_status_poll_backoff_max_interval_seconds, n.kernel_status_poll_backoff_multiplier,"                     \
    " n.kernel_status_poll_backoff_jitter, n.kernel_offline_probe_max_interval_seconds))"

typedef struct poll_task {
    int64_t node_id;
    char hash[40];
    znp_kernel_target_t target;
    int ok;
    char error[600];
    struct poll_task *next;
} poll_task_t;

static pthread_mutex_t tasks_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t tasks_idle = PTHREAD_COND_INITIALIZER;
static poll_task_t *finished; /* responses not applied yet */
static size_t in_flight;
static atomic_int stopping;

static int recovery_job(PGconn *db, const znp_config_t *config, json_t *payload, char *message, size_t size)
{
    json_int_t node_id = json_integer_value(json_object_get(payload, "node_id"));
    int rc;

    if (node_id <= 0) {
        snprintf(message, size, "payload has no node_id");
        return 0; /* nothing to retry */
    }
    rc = znp_bindings_sync_node(db, config, (int64_t)node_id, NULL);
    if (rc < 0) {
        snprintf(message, size, "recovery sync of node %lld failed: %s", (long long)node_id, znp_error_info(rc)->key);
        return rc;
    }
    ZNP_INFO(LOG_TAG, NULL, "recovery sync done node_id=%lld bindings=%d", (long long)node_id, rc);
    return 0;
}

int znp_kernel_poller_register(void)
{
    int rc;

    /* serve runs libcurl's global setup (mail) before any thread starts, so this call only counts up */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ZNP_E_INTERNAL;
    atomic_store(&stopping, 0);
    rc = znp_jobs_register(ZNP_KERNEL_RECOVERY_JOB, recovery_job);
    if (rc == 0)
        rc = znp_jobs_schedule(ZNP_KERNEL_POLL_JOB, 1, znp_kernel_poll_tick);
    return rc;
}

int znp_kernel__stopping(void)
{
    return atomic_load(&stopping);
}

void znp_kernel_poller_stop(void)
{
    struct timespec deadline;

    atomic_store(&stopping, 1);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += STOP_WAIT_MS / 1000;
    pthread_mutex_lock(&tasks_lock);
    while (in_flight > 0) {
        if (pthread_cond_timedwait(&tasks_idle, &tasks_lock, &deadline) != 0)
            break;
    }
    while (finished != NULL) {
        poll_task_t *task = finished;

        finished = task->next;
        znp_kernel_target_clear(&task->target);
        free(task);
    }
    pthread_mutex_unlock(&tasks_lock);
}

static void *poll_main(void *arg)
{
    poll_task_t *task = arg;
    json_t *answer = NULL;

    if (znp_kernel_call(&task->target, "GET", "/status", NULL, &answer, task->error, sizeof(task->error)) == 0) {
        if (json_is_object(answer) && json_is_object(json_object_get(answer, "snapshot")))
            task->ok = 1;
        else
            snprintf(task->error, sizeof(task->error), "kernel control: status answer has no snapshot");
    }
    json_decref(answer);
    znp_kernel_target_clear(&task->target);
    pthread_mutex_lock(&tasks_lock);
    task->next = finished;
    finished = task;
    in_flight--;
    pthread_cond_broadcast(&tasks_idle);
    pthread_mutex_unlock(&tasks_lock);
    return NULL;
}

static uint32_t random_u32(void)
{
    uint32_t value = 0;

    if (getrandom(&value, sizeof(value), 0) != (ssize_t)sizeof(value))
        value = (uint32_t)time(NULL) * 2654435761u;
    return value;
}

/* The panel time zone for day boundaries; config validation keeps it a real zone name. */
static const char *time_zone(const znp_config_t *config)
{
    return config != NULL && config->panel.time_zone != NULL && config->panel.time_zone[0] != '\0'
               ? config->panel.time_zone
               : "UTC";
}

int znp_kernel__set_status(PGconn *db, const znp_config_t *config, int64_t node_id, int online, int *recovered,
                           const char *request_id)
{
    /* only online <-> offline moves: maintenance (3) and disabled (4) keep their status */
    static const char sql[] = "UPDATE nodes SET status = $2::smallint, updated_at = now()"
                              " WHERE id = $1 AND deleted_at IS NULL AND status_sync_enabled"
                              " AND status IN (1, 2) AND status <> $2::smallint RETURNING id";
    char id_text[24];
    const char *params[2] = {id_text, online ? "1" : "2"};
    PGresult *res = NULL;
    int rc;

    (void)config;
    *recovered = 0;
    snprintf(id_text, sizeof(id_text), "%" PRId64, node_id);
    rc = znp_sql_exec(&res, db, sql, 2, params, request_id);
    if (rc == 0 && PQntuples(res) == 1) {
        ZNP_INFO(LOG_TAG, request_id, "node status changed node_id=%" PRId64 " status=%s", node_id,
                 online ? "online" : "offline");
        if (online) {
            json_t *payload = json_pack("{s:I}", "node_id", (json_int_t)node_id);

            *recovered = 1;
            rc = payload != NULL ? znp_jobs_enqueue(db, ZNP_KERNEL_RECOVERY_JOB, payload, 0, NULL) : ZNP_E_INTERNAL;
            json_decref(payload);
        }
    }
    PQclear(res);
    return rc;
}

static int apply(PGconn *db, const znp_config_t *config, poll_task_t *task)
{
    static const char sql_state[] =
        "SELECT s.failures, s.probe_attempts, s.probe_day, n.status, n.kernel_status_poll_interval_seconds,"
        " n.kernel_status_poll_backoff_enabled, n.kernel_status_poll_backoff_max_interval_seconds,"
        " n.kernel_status_poll_backoff_multiplier, n.kernel_status_poll_backoff_jitter,"
        " n.kernel_offline_probe_max_interval_seconds, (extract(epoch FROM now()) * 1000)::bigint,"
        " (now() AT TIME ZONE $3)::date - date '1970-01-01',"
        " (extract(epoch FROM (((now() AT TIME ZONE $3)::date + 1)::timestamp AT TIME ZONE $3)) * 1000)::bigint"
        " FROM node_poll_state s JOIN nodes n ON n.id = s.node_id"
        " WHERE s.node_id = $1 AND s.settings_hash = $2 FOR UPDATE OF s";
    static const char sql_save[] =
        "UPDATE node_poll_state SET failures = $2, probe_attempts = $3, probe_day = $4,"
        " next_due_at = to_timestamp($5::bigint / 1000.0), lease_until = NULL, last_polled_at = now(),"
        " last_ok_at = CASE WHEN $6 THEN now() ELSE last_ok_at END, last_error = $7 WHERE node_id = $1";
    char id_text[24], f_text[16], p_text[16], d_text[24], due_text[24];
    const char *params[7] = {id_text, task->hash, time_zone(config)};
    znp_kernel_poll_settings_t settings;
    znp_kernel_poll_state_t state;
    PGresult *res = NULL;
    int64_t now_ms, day, day_end;
    int status, recovered = 0, rc;

    snprintf(id_text, sizeof(id_text), "%" PRId64, task->node_id);
    rc = znp_sql_exec(&res, db, sql_state, 3, params, NULL);
    if (rc != 0 || PQntuples(res) != 1)
        goto cleanup; /* the node changed or went away while the poll ran: its state was reset */
    state.failures = (uint32_t)znp_sql_int64(res, 0, 0);
    state.probe_attempts = (uint32_t)znp_sql_int64(res, 0, 1);
    state.probe_day = znp_sql_int64(res, 0, 2);
    status = (int)znp_sql_int64(res, 0, 3);
    settings.interval_s = znp_sql_int64(res, 0, 4);
    settings.backoff_enabled = znp_sql_bool(res, 0, 5);
    settings.max_interval_s = znp_sql_int64(res, 0, 6);
    settings.multiplier = strtod(PQgetvalue(res, 0, 7), NULL);
    settings.jitter = strtod(PQgetvalue(res, 0, 8), NULL);
    settings.probe_max_s = znp_sql_int64(res, 0, 9);
    now_ms = znp_sql_int64(res, 0, 10);
    day = znp_sql_int64(res, 0, 11);
    day_end = znp_sql_int64(res, 0, 12);
    /* offline probing for nodes that are (or are about to be) offline; not for maintenance */
    znp_kernel_poll_advance(&state, &settings, task->ok, status == 1 || status == 2, now_ms, day, day_end,
                            random_u32());
    PQclear(res);
    res = NULL;

    snprintf(f_text, sizeof(f_text), "%" PRIu32, state.failures);
    snprintf(p_text, sizeof(p_text), "%" PRIu32, state.probe_attempts);
    snprintf(d_text, sizeof(d_text), "%" PRId64, state.probe_day);
    snprintf(due_text, sizeof(due_text), "%" PRId64, state.next_due_ms);
    {
        const char *save[7] = {
            id_text, f_text, p_text, d_text, due_text, task->ok ? "true" : "false", task->ok ? "" : task->error};

        rc = znp_sql_exec(NULL, db, sql_save, 7, save, NULL);
    }
    if (rc == 0)
        rc = znp_kernel__set_status(db, config, task->node_id, task->ok, &recovered, NULL);
    znp_metrics_node_poll(task->ok ? "online" : "offline");
    if (!task->ok)
        ZNP_DEBUG(LOG_TAG, NULL,
                  "status poll failed node_id=%" PRId64 " failures=%" PRIu32 " next_in_ms=%" PRId64 " error=%s",
                  task->node_id, state.failures, state.next_due_ms - now_ms, task->error);

cleanup:
    PQclear(res);
    return rc;
}

static int refresh_states(PGconn *db)
{
    static const char sql_upsert[] =
        "INSERT INTO node_poll_state (node_id, settings_hash, next_due_at)"
        " SELECT n.id, " SETTINGS_HASH ", now() FROM nodes n WHERE " ELIGIBLE
        " ON CONFLICT (node_id) DO UPDATE SET settings_hash = EXCLUDED.settings_hash, failures = 0,"
        " probe_attempts = 0, probe_day = 0, next_due_at = now(), lease_until = NULL, last_error = ''"
        " WHERE node_poll_state.settings_hash <> EXCLUDED.settings_hash";
    static const char sql_drop[] = "DELETE FROM node_poll_state s WHERE NOT EXISTS"
                                   " (SELECT 1 FROM nodes n WHERE n.id = s.node_id AND " ELIGIBLE ")";
    int rc = znp_sql_exec(NULL, db, sql_upsert, 0, NULL, NULL);

    if (rc == 0)
        rc = znp_sql_exec(NULL, db, sql_drop, 0, NULL, NULL);
    return rc;
}

static int start_poll(const znp_config_t *config, const PGresult *res, int row)
{
    poll_task_t *task = calloc(1, sizeof(*task));
    char *ak = NULL, *sk = NULL, *token = NULL;
    pthread_attr_t attr;
    pthread_t thread;
    int rc;

    if (task == NULL)
        return ZNP_E_INTERNAL;
    task->node_id = znp_sql_int64(res, row, 0);
    snprintf(task->hash, sizeof(task->hash), "%s", PQgetvalue(res, row, 1));
    rc =
        znp_kernel__open_credentials(config, task->node_id, PQgetisnull(res, row, 3) ? NULL : PQgetvalue(res, row, 3),
                                     PQgetisnull(res, row, 4) ? NULL : PQgetvalue(res, row, 4),
                                     PQgetisnull(res, row, 5) ? NULL : PQgetvalue(res, row, 5), &ak, &sk, &token, NULL);
    if (rc == 0)
        rc = znp_kernel_target_init(&task->target, task->node_id, PQgetvalue(res, row, 2), ak, sk, token,
                                    strtol(PQgetvalue(res, row, 6), NULL, 10));
    free(ak);
    free(sk);
    free(token);
    pthread_mutex_lock(&tasks_lock);
    if (rc == 0) {
        in_flight++;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&thread, &attr, poll_main, task) != 0) {
            in_flight--;
            rc = ZNP_E_INTERNAL;
        }
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        /* applied as a failed poll at the next tick */
        znp_kernel_target_clear(&task->target);
        snprintf(task->error, sizeof(task->error), "could not start the poll: %s", znp_error_info(rc)->key);
        task->next = finished;
        finished = task;
    }
    pthread_mutex_unlock(&tasks_lock);
    return 0;
}

int znp_kernel_poll_tick(PGconn *db, const znp_config_t *config)
{
    /* the lease outlives the longest poll: the timeout for each try plus the retry pauses */
    static const char sql_claim[] =
        "UPDATE node_poll_state s SET lease_until = now() + make_interval(secs => 3 * n.kernel_http_timeout_seconds + "
        "5)"
        " FROM nodes n WHERE n.id = s.node_id AND s.node_id IN (SELECT s2.node_id FROM node_poll_state s2"
        " WHERE s2.next_due_at <= now() AND (s2.lease_until IS NULL OR s2.lease_until < now())"
        " ORDER BY s2.next_due_at LIMIT $1 FOR UPDATE SKIP LOCKED)"
        " RETURNING s.node_id, s.settings_hash, n.control_endpoint, n.control_access_key_sealed,"
        " n.control_secret_key_sealed, n.control_token_sealed, n.kernel_http_timeout_seconds";
    poll_task_t *done;
    PGresult *res = NULL;
    char limit[24];
    const char *params[1] = {limit};
    size_t slots;
    int rc = 0;

    if (atomic_load(&stopping))
        return 0;
    pthread_mutex_lock(&tasks_lock);
    done = finished;
    finished = NULL;
    pthread_mutex_unlock(&tasks_lock);
    while (done != NULL) {
        poll_task_t *task = done;

        done = task->next;
        if (rc == 0)
            rc = apply(db, config, task);
        free(task);
    }
    if (rc == 0)
        rc = refresh_states(db);
    if (rc != 0)
        return rc;

    pthread_mutex_lock(&tasks_lock);
    slots = in_flight < IN_FLIGHT_MAX ? IN_FLIGHT_MAX - in_flight : 0;
    pthread_mutex_unlock(&tasks_lock);
    if (slots == 0)
        return 0;
    snprintf(limit, sizeof(limit), "%zu", slots);
    rc = znp_sql_exec(&res, db, sql_claim, 1, params, NULL);
    for (int i = 0; rc == 0 && i < PQntuples(res); i++)
        rc = start_poll(config, res, i);
    PQclear(res);
    return rc;
}
