/*
 * The job queue: enqueue, the kind table, and the runner threads. Each
 * runner owns one connection, LISTENs on znp_jobs for prompt pickup and
 * polls every jobs.poll_interval_ms otherwise. A job moves
 * queued -> running -> done, or back to queued with a later run_at, or to
 * dead after max_attempts. Every state change is one conditional UPDATE.
 */
#include "jobs/jobs.h"
#include "jobs/internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "auth/sql.h"
#include "core/log.h"
#include "errors.gen.h"
#include "runtime/metrics.h"

#define LOG_TAG          "jobs"
#define KINDS_MAX        16
#define KIND_MAX         64
#define BACKOFF_CAP_S    3600
#define LEASE_SECONDS    300 /* a running job older than this belongs to a crashed instance */
#define RECONNECT_MAX_MS 5000
#define ERROR_TEXT_MAX   512

typedef struct kind_entry {
    char name[KIND_MAX];
    znp_job_handler_fn handler;
    znp_job_dead_fn on_dead;
} kind_entry_t;

static kind_entry_t kinds[KINDS_MAX];
static size_t kind_count;

struct znp_jobs_runner {
    const znp_config_t *config;
    char *dsn;
    unsigned thread_count;
    pthread_t *threads;
    atomic_bool stopping;
    int wake_pipe[2]; /* written once by stop to wake every runner out of poll() */
    znp_jobs_scheduler_t *scheduler;
};

static const char SQL_ENQUEUE[] =
    "INSERT INTO jobs (kind, payload, max_attempts, run_at)"
    " VALUES ($1, $2::jsonb, COALESCE($3::integer, 8),"
    "  CASE WHEN $4::bigint > 0 THEN to_timestamp($4::bigint) ELSE now() END)"
    " RETURNING id";

static const char SQL_CLAIM[] =
    "UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = $1, locked_at = now(),"
    " updated_at = now()"
    " WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND run_at <= now()"
    "  ORDER BY run_at FOR UPDATE SKIP LOCKED LIMIT 1)"
    " RETURNING id, kind, payload::text, attempts, max_attempts";

/* the payload is cleared because it may hold secrets such as mailed codes */
static const char SQL_DONE[] =
    "UPDATE jobs SET status = 'done', payload = '{}'::jsonb, last_error = NULL, locked_by = NULL,"
    " locked_at = NULL, updated_at = now()"
    " WHERE id = $1 AND status = 'running' AND locked_by = $2";

static const char SQL_RETRY[] =
    "UPDATE jobs SET status = 'queued', run_at = now() + make_interval(secs => $3::double precision / 1000),"
    " last_error = $4, locked_by = NULL, locked_at = NULL, updated_at = now()"
    " WHERE id = $1 AND status = 'running' AND locked_by = $2";

static const char SQL_DEAD[] =
    "UPDATE jobs SET status = 'dead', payload = '{}'::jsonb, last_error = $3, locked_by = NULL, locked_at = NULL,"
    " updated_at = now()"
    " WHERE id = $1 AND status = 'running' AND locked_by = $2";

/* jobs whose instance stopped mid-run go back to the queue; the attempt they used still counts */
static const char SQL_REQUEUE_STALE[] =
    "UPDATE jobs SET status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END,"
    " payload = CASE WHEN attempts >= max_attempts THEN '{}'::jsonb ELSE payload END,"
    " last_error = 'lease expired', locked_by = NULL, locked_at = NULL, updated_at = now()"
    " WHERE status = 'running' AND locked_at < now() - make_interval(secs => $1::integer)";

static const char SQL_QUEUE_DEPTH[] = "SELECT count(*) FROM jobs WHERE status = 'queued'";

int64_t znp_jobs_backoff_ms(unsigned attempts, uint32_t random)
{
    int64_t base_ms = attempts >= 12 ? (int64_t)BACKOFF_CAP_S * 1000 : ((int64_t)1 << attempts) * 1000;
    int64_t permille;

    if (base_ms > (int64_t)BACKOFF_CAP_S * 1000)
        base_ms = (int64_t)BACKOFF_CAP_S * 1000;
    permille = 800 + (int64_t)(random % 401); /* 0.8 .. 1.2 */
    return base_ms * permille / 1000;
}

static kind_entry_t *find_kind(const char *kind)
{
    for (size_t i = 0; i < kind_count; i++) {
        if (strcmp(kinds[i].name, kind) == 0)
            return &kinds[i];
    }
    return NULL;
}

static kind_entry_t *add_kind(const char *kind)
{
    kind_entry_t *entry = find_kind(kind);

    if (entry != NULL)
        return entry;
    if (kind_count == KINDS_MAX || strlen(kind) >= KIND_MAX)
        return NULL;
    entry = &kinds[kind_count++];
    snprintf(entry->name, sizeof(entry->name), "%s", kind);
    return entry;
}

int znp_jobs_register(const char *kind, znp_job_handler_fn handler)
{
    kind_entry_t *entry = add_kind(kind);

    if (entry == NULL || handler == NULL)
        return ZNP_E_INTERNAL;
    entry->handler = handler;
    return 0;
}

int znp_jobs_register_dead(const char *kind, znp_job_dead_fn on_dead)
{
    kind_entry_t *entry = add_kind(kind);

    if (entry == NULL)
        return ZNP_E_INTERNAL;
    entry->on_dead = on_dead;
    return 0;
}

int znp_jobs__enqueue_limited(PGconn *db, const char *kind, json_t *payload, int64_t run_at, unsigned max_attempts,
                              int64_t *id_out)
{
    char attempts_text[16], run_at_text[24];
    const char *params[4];
    char *payload_text = NULL;
    PGresult *res = NULL;
    int rc;

    payload_text = payload != NULL ? json_dumps(payload, JSON_COMPACT) : strdup("{}");
    if (payload_text == NULL)
        return ZNP_E_INTERNAL;
    snprintf(attempts_text, sizeof(attempts_text), "%u", max_attempts);
    snprintf(run_at_text, sizeof(run_at_text), "%lld", (long long)run_at);
    params[0] = kind;
    params[1] = payload_text;
    params[2] = max_attempts > 0 ? attempts_text : NULL;
    params[3] = run_at_text;
    rc = znp_sql_exec(&res, db, SQL_ENQUEUE, 4, params, NULL);
    if (rc == 0 && id_out != NULL)
        *id_out = PQntuples(res) == 1 ? znp_sql_int64(res, 0, 0) : 0;
    PQclear(res);
    free(payload_text);
    return rc;
}

int znp_jobs_enqueue(PGconn *db, const char *kind, json_t *payload, int64_t run_at, int64_t *id_out)
{
    return znp_jobs__enqueue_limited(db, kind, payload, run_at, 0, id_out);
}

/* runner */

typedef struct claimed {
    int64_t id;
    char id_text[24];
    char kind[KIND_MAX];
    json_t *payload;
    int attempts;
    int max_attempts;
} claimed_t;

static uint32_t random_u32(void)
{
    uint32_t value = 0;

    if (getrandom(&value, sizeof(value), 0) != sizeof(value))
        value = (uint32_t)time(NULL);
    return value;
}

static PGconn *connect_runner(znp_jobs_runner_t *runner)
{
    PGconn *db = PQconnectdb(runner->dsn);
    PGresult *res;

    if (PQstatus(db) != CONNECTION_OK) {
        ZNP_WARN(LOG_TAG, NULL, "job runner could not connect to the database: %s", PQerrorMessage(db));
        PQfinish(db);
        return NULL;
    }
    res = PQexec(db, "LISTEN znp_jobs");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        ZNP_WARN(LOG_TAG, NULL, "job runner could not LISTEN: %s", PQerrorMessage(db));
        PQclear(res);
        PQfinish(db);
        return NULL;
    }
    PQclear(res);
    return db;
}

/* Returns 1 when a job was claimed into *job, 0 when none is due, or a negative znp_err. */
static int claim(claimed_t *job, PGconn *db, const char *worker_id)
{
    const char *params[1] = {worker_id};
    PGresult *res = NULL;
    json_error_t json_err;
    int rc;

    memset(job, 0, sizeof(*job));
    rc = znp_sql_exec(&res, db, SQL_CLAIM, 1, params, NULL);
    if (rc != 0)
        return rc;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return 0;
    }
    job->id = znp_sql_int64(res, 0, 0);
    snprintf(job->id_text, sizeof(job->id_text), "%lld", (long long)job->id);
    snprintf(job->kind, sizeof(job->kind), "%s", PQgetvalue(res, 0, 1));
    job->payload = json_loads(PQgetvalue(res, 0, 2), 0, &json_err);
    job->attempts = (int)znp_sql_int64(res, 0, 3);
    job->max_attempts = (int)znp_sql_int64(res, 0, 4);
    PQclear(res);
    if (job->payload == NULL)
        job->payload = json_object();
    return 1;
}

static void mark_dead(znp_jobs_runner_t *runner, PGconn *db, claimed_t *job, const kind_entry_t *entry,
                      const char *worker_id, const char *message)
{
    const char *params[3] = {job->id_text, worker_id, message};

    if (znp_sql_exec(NULL, db, SQL_DEAD, 3, params, NULL) != 0)
        return;
    ZNP_ERROR(LOG_TAG, NULL, "job is dead after %d attempts id=%lld kind=%s error=\"%s\"", job->attempts,
              (long long)job->id, job->kind, message);
    znp_metrics_job_finished(job->kind, "dead");
    /* the hook sees the payload from memory, since the row's copy is already cleared */
    if (entry != NULL && entry->on_dead != NULL)
        entry->on_dead(db, runner->config, job->payload, message);
}

static void run_claimed(znp_jobs_runner_t *runner, PGconn *db, claimed_t *job, const char *worker_id)
{
    const kind_entry_t *entry = find_kind(job->kind);
    char message[ERROR_TEXT_MAX] = "";
    int rc;

    if (entry == NULL || entry->handler == NULL) {
        snprintf(message, sizeof(message), "no handler for job kind \"%s\"", job->kind);
        rc = ZNP_E_INTERNAL;
    } else {
        rc = entry->handler(db, runner->config, job->payload, message, sizeof(message));
    }
    /* a handler may leave a transaction open when it fails */
    if (PQtransactionStatus(db) != PQTRANS_IDLE)
        znp_sql_rollback(db, NULL);

    if (rc == 0) {
        const char *params[2] = {job->id_text, worker_id};

        if (znp_sql_exec(NULL, db, SQL_DONE, 2, params, NULL) == 0) {
            ZNP_DEBUG(LOG_TAG, NULL, "job done id=%lld kind=%s", (long long)job->id, job->kind);
            znp_metrics_job_finished(job->kind, "done");
        }
        return;
    }
    if (message[0] == '\0')
        snprintf(message, sizeof(message), "%s", znp_error_info(rc)->key);
    if (job->attempts >= job->max_attempts) {
        mark_dead(runner, db, job, entry, worker_id, message);
        return;
    }

    char delay_text[24];
    int64_t delay_ms = znp_jobs_backoff_ms((unsigned)job->attempts, random_u32());
    const char *params[4] = {job->id_text, worker_id, delay_text, message};

    snprintf(delay_text, sizeof(delay_text), "%lld", (long long)delay_ms);
    if (znp_sql_exec(NULL, db, SQL_RETRY, 4, params, NULL) == 0) {
        ZNP_WARN(LOG_TAG, NULL, "job failed, retry in %lld ms id=%lld kind=%s attempt=%d/%d error=\"%s\"",
                 (long long)delay_ms, (long long)job->id, job->kind, job->attempts, job->max_attempts, message);
        znp_metrics_job_finished(job->kind, "retry");
    }
}

static void housekeeping(PGconn *db)
{
    char lease[16];
    const char *params[1] = {lease};
    PGresult *res = NULL;

    snprintf(lease, sizeof(lease), "%d", LEASE_SECONDS);
    if (znp_sql_exec(&res, db, SQL_REQUEUE_STALE, 1, params, NULL) == 0 && strcmp(PQcmdTuples(res), "0") != 0)
        ZNP_WARN(LOG_TAG, NULL, "requeued %s jobs whose lease expired", PQcmdTuples(res));
    PQclear(res);
    res = NULL;
    if (znp_sql_exec(&res, db, SQL_QUEUE_DEPTH, 0, NULL, NULL) == 0 && PQntuples(res) == 1)
        znp_metrics_jobs_queue_depth_set((long)znp_sql_int64(res, 0, 0));
    PQclear(res);
}

/* Sleep until a notification, the stop pipe or `timeout_ms`; drains pending notifications. */
static void wait_for_work(znp_jobs_runner_t *runner, PGconn *db, int timeout_ms)
{
    struct pollfd fds[2] = {
        {.fd = runner->wake_pipe[0], .events = POLLIN},
        {.fd = db != NULL ? PQsocket(db) : -1, .events = POLLIN},
    };
    PGnotify *notify;
    int pending = 0;

    /* a notification that arrived with a query result is already buffered, and poll() would not see it */
    while (db != NULL && (notify = PQnotifies(db)) != NULL) {
        PQfreemem(notify);
        pending = 1;
    }
    if (pending)
        return;
    if (poll(fds, db != NULL ? 2 : 1, timeout_ms) < 0 && errno != EINTR)
        return;
    if (db != NULL && PQconsumeInput(db) == 1) {
        while ((notify = PQnotifies(db)) != NULL)
            PQfreemem(notify);
    }
}

static void *runner_main(void *arg)
{
    znp_jobs_runner_t *runner = arg;
    char worker_id[96], host[64] = "";
    unsigned reconnect_ms = 100;
    unsigned idle_rounds = 0;
    PGconn *db = NULL;

    gethostname(host, sizeof(host) - 1);
    snprintf(worker_id, sizeof(worker_id), "%s:%ld:%lx", host, (long)getpid(), (unsigned long)pthread_self());

    while (!atomic_load(&runner->stopping)) {
        claimed_t job;
        int rc;

        if (db == NULL || PQstatus(db) != CONNECTION_OK) {
            PQfinish(db);
            db = connect_runner(runner);
            if (db == NULL) {
                wait_for_work(runner, NULL, (int)reconnect_ms);
                reconnect_ms = reconnect_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : reconnect_ms * 2;
                continue;
            }
            reconnect_ms = 100;
            housekeeping(db);
        }

        rc = claim(&job, db, worker_id);
        if (rc == 1) {
            run_claimed(runner, db, &job, worker_id);
            json_decref(job.payload);
            continue;
        }
        if (rc < 0) {
            wait_for_work(runner, NULL, (int)reconnect_ms);
            continue;
        }
        /* every 30 idle polls, look for expired leases and refresh the depth gauge */
        if (++idle_rounds % 30 == 1)
            housekeeping(db);
        wait_for_work(runner, db, (int)runner->config->jobs.poll_interval_ms);
    }
    PQfinish(db);
    return NULL;
}

int znp_jobs_runner_start(znp_jobs_runner_t **out, const znp_config_t *config, const char *dsn, unsigned threads)
{
    znp_jobs_runner_t *runner = NULL;
    int rc = ZNP_E_INTERNAL;

    *out = NULL;
    runner = calloc(1, sizeof(*runner));
    if (runner == NULL)
        return ZNP_E_INTERNAL;
    runner->wake_pipe[0] = runner->wake_pipe[1] = -1;
    runner->config = config;
    runner->dsn = strdup(dsn);
    runner->threads = calloc(threads > 0 ? threads : 1, sizeof(pthread_t));
    if (runner->dsn == NULL || runner->threads == NULL || pipe(runner->wake_pipe) != 0)
        goto cleanup;
    atomic_init(&runner->stopping, false);

    for (unsigned i = 0; i < threads; i++) {
        if (pthread_create(&runner->threads[i], NULL, runner_main, runner) != 0) {
            ZNP_ERROR(LOG_TAG, NULL, "could not start job runner thread %u", i);
            goto cleanup;
        }
        runner->thread_count++;
    }
    if (threads > 0 && znp_jobs__scheduler_start(&runner->scheduler, config, dsn) != 0) {
        ZNP_ERROR(LOG_TAG, NULL, "could not start the scheduler thread");
        goto cleanup;
    }
    ZNP_INFO(LOG_TAG, NULL, "job runner started threads=%u poll_interval_ms=%u", threads,
             config->jobs.poll_interval_ms);
    *out = runner;
    runner = NULL;
    rc = 0;

cleanup:
    znp_jobs_runner_stop(runner);
    return rc;
}

void znp_jobs_runner_stop(znp_jobs_runner_t *runner)
{
    if (runner == NULL)
        return;
    atomic_store(&runner->stopping, true);
    if (runner->wake_pipe[1] >= 0 && write(runner->wake_pipe[1], "x", 1) < 0)
        ZNP_WARN(LOG_TAG, NULL, "could not wake the job runners: %s", strerror(errno));
    znp_jobs__scheduler_stop(runner->scheduler);
    /* NOTE: a job in progress finishes first, so a stop can take up to mail.timeout_ms */
    for (unsigned i = 0; i < runner->thread_count; i++)
        pthread_join(runner->threads[i], NULL);
    if (runner->thread_count > 0)
        ZNP_INFO(LOG_TAG, NULL, "job runner stopped");
    if (runner->wake_pipe[0] >= 0)
        close(runner->wake_pipe[0]);
    if (runner->wake_pipe[1] >= 0)
        close(runner->wake_pipe[1]);
    free(runner->threads);
    free(runner->dsn);
    free(runner);
}
