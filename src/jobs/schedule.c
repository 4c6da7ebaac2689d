/*
 * Scheduled jobs: one thread with its own connection checks each job once a
 * second against its local due time. A due job runs in one transaction that
 * first takes pg_try_advisory_xact_lock on the job's key. When another
 * instance holds the lock, that instance is running the job, so this one
 * skips it. Next the scheduled_runs row tells, by the database clock, whether
 * an interval has passed since the last run. If so, the row moves to now()
 * and the handler runs. Commit releases the lock.
 */
#include "jobs/internal.h"
#include "jobs/jobs.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/sql.h"
#include "core/log.h"
#include "errors.gen.h"

#define LOG_TAG          "jobs"
#define SCHEDULES_MAX    16
#define NAME_MAX_LEN     64
#define TICK_MS          1000
#define RECONNECT_MAX_MS 5000

typedef struct schedule_entry {
    char name[NAME_MAX_LEN];
    char key_text[24];
    char interval_text[16];
    unsigned interval_seconds;
    znp_schedule_fn handler;
    int64_t due_ms; /* monotonic milliseconds, so 0 means check at the next tick */
} schedule_entry_t;

static schedule_entry_t schedules[SCHEDULES_MAX];
static size_t schedule_count;

struct znp_jobs_scheduler {
    const znp_config_t *config;
    char *dsn;
    pthread_t thread;
    int started;
    atomic_bool stopping;
    int wake_pipe[2];
};

static const char SQL_LOCK[] = "SELECT pg_try_advisory_xact_lock($1::bigint)";

/* Seconds left until the job is due. Zero or less means run it now. */
static const char SQL_REMAINING[] =
    "SELECT coalesce(extract(epoch FROM (SELECT last_run_at FROM scheduled_runs WHERE name = $1)"
    " + make_interval(secs => $2::integer) - now()), 0)::double precision";

static const char SQL_MARK_RUN[] = "INSERT INTO scheduled_runs (name, last_run_at) VALUES ($1, now())"
                                   " ON CONFLICT (name) DO UPDATE SET last_run_at = now()";

int64_t znp_jobs_schedule_key(const char *name)
{
    uint64_t hash = 14695981039346656037ULL;

    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        hash ^= *p;
        hash *= 1099511628211ULL;
    }
    return (int64_t)hash;
}

int znp_jobs_schedule(const char *name, unsigned interval_seconds, znp_schedule_fn handler)
{
    schedule_entry_t *entry;

    if (name == NULL || name[0] == '\0' || strlen(name) >= NAME_MAX_LEN || interval_seconds == 0 || handler == NULL)
        return ZNP_E_INTERNAL;
    for (size_t i = 0; i < schedule_count; i++) {
        if (strcmp(schedules[i].name, name) == 0)
            return ZNP_E_INTERNAL;
    }
    if (schedule_count == SCHEDULES_MAX)
        return ZNP_E_INTERNAL;
    entry = &schedules[schedule_count++];
    memset(entry, 0, sizeof(*entry));
    snprintf(entry->name, sizeof(entry->name), "%s", name);
    snprintf(entry->key_text, sizeof(entry->key_text), "%lld", (long long)znp_jobs_schedule_key(name));
    snprintf(entry->interval_text, sizeof(entry->interval_text), "%u", interval_seconds);
    entry->interval_seconds = interval_seconds;
    entry->handler = handler;
    return 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Try to run `entry` once. Returns milliseconds until the next check, or a negative znp_err on a database failure. */
static int64_t run_due(znp_jobs_scheduler_t *scheduler, PGconn *db, schedule_entry_t *entry)
{
    const char *lock_params[1] = {entry->key_text};
    const char *remaining_params[2] = {entry->name, entry->interval_text};
    const char *mark_params[1] = {entry->name};
    int64_t next_ms = (int64_t)entry->interval_seconds * 1000;
    PGresult *res = NULL;
    double remaining;
    int rc;

    rc = znp_sql_begin(db, NULL);
    if (rc != 0)
        return rc;
    rc = znp_sql_exec(&res, db, SQL_LOCK, 1, lock_params, NULL);
    if (rc != 0)
        goto cleanup;
    if (!znp_sql_bool(res, 0, 0)) {
        /* Another instance is running the job and moves last_run_at, so check again after one tick. */
        next_ms = TICK_MS;
        goto cleanup;
    }
    PQclear(res);
    res = NULL;
    rc = znp_sql_exec(&res, db, SQL_REMAINING, 2, remaining_params, NULL);
    if (rc != 0)
        goto cleanup;
    remaining = strtod(PQgetvalue(res, 0, 0), NULL);
    if (remaining > 0) {
        next_ms = (int64_t)(remaining * 1000) + 1;
        goto cleanup;
    }
    rc = znp_sql_exec(NULL, db, SQL_MARK_RUN, 1, mark_params, NULL);
    if (rc != 0)
        goto cleanup;
    rc = entry->handler(db, scheduler->config);
    if (rc != 0) {
        ZNP_WARN(LOG_TAG, NULL, "scheduled job failed, next try in %u s name=%s error=%s", entry->interval_seconds,
                 entry->name, znp_error_info(rc)->key);
        rc = 0;
        goto cleanup;
    }
    rc = znp_sql_commit(db, NULL);
    if (rc == 0)
        ZNP_DEBUG(LOG_TAG, NULL, "scheduled job done name=%s", entry->name);

cleanup:
    PQclear(res);
    if (PQtransactionStatus(db) != PQTRANS_IDLE)
        znp_sql_rollback(db, NULL);
    return rc < 0 ? rc : next_ms;
}

static void sleep_ms(znp_jobs_scheduler_t *scheduler, int timeout_ms)
{
    struct pollfd fd = {.fd = scheduler->wake_pipe[0], .events = POLLIN};

    if (poll(&fd, 1, timeout_ms) < 0 && errno != EINTR)
        ZNP_WARN(LOG_TAG, NULL, "scheduler poll failed: %s", strerror(errno));
}

static void *scheduler_main(void *arg)
{
    znp_jobs_scheduler_t *scheduler = arg;
    unsigned reconnect_ms = 100;
    PGconn *db = NULL;

    while (!atomic_load(&scheduler->stopping)) {
        int64_t now;

        if (db == NULL || PQstatus(db) != CONNECTION_OK) {
            PQfinish(db);
            db = PQconnectdb(scheduler->dsn);
            if (PQstatus(db) != CONNECTION_OK) {
                ZNP_WARN(LOG_TAG, NULL, "scheduler could not connect to the database: %s", PQerrorMessage(db));
                PQfinish(db);
                db = NULL;
                sleep_ms(scheduler, (int)reconnect_ms);
                reconnect_ms = reconnect_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : reconnect_ms * 2;
                continue;
            }
            reconnect_ms = 100;
        }
        now = now_ms();
        for (size_t i = 0; i < schedule_count && !atomic_load(&scheduler->stopping); i++) {
            schedule_entry_t *entry = &schedules[i];
            int64_t next;

            if (entry->due_ms > now)
                continue;
            next = run_due(scheduler, db, entry);
            entry->due_ms = now_ms() + (next > 0 ? next : TICK_MS);
        }
        sleep_ms(scheduler, TICK_MS);
    }
    PQfinish(db);
    return NULL;
}

int znp_jobs__scheduler_start(znp_jobs_scheduler_t **out, const znp_config_t *config, const char *dsn)
{
    znp_jobs_scheduler_t *scheduler;

    *out = NULL;
    if (schedule_count == 0)
        return 0;
    scheduler = calloc(1, sizeof(*scheduler));
    if (scheduler == NULL)
        return ZNP_E_INTERNAL;
    scheduler->wake_pipe[0] = scheduler->wake_pipe[1] = -1;
    scheduler->config = config;
    scheduler->dsn = strdup(dsn);
    atomic_init(&scheduler->stopping, false);
    if (scheduler->dsn == NULL || pipe(scheduler->wake_pipe) != 0 ||
        pthread_create(&scheduler->thread, NULL, scheduler_main, scheduler) != 0) {
        znp_jobs__scheduler_stop(scheduler);
        return ZNP_E_INTERNAL;
    }
    scheduler->started = 1;
    ZNP_INFO(LOG_TAG, NULL, "scheduler started jobs=%zu", schedule_count);
    *out = scheduler;
    return 0;
}

void znp_jobs__scheduler_stop(znp_jobs_scheduler_t *scheduler)
{
    if (scheduler == NULL)
        return;
    atomic_store(&scheduler->stopping, true);
    if (scheduler->wake_pipe[1] >= 0 && write(scheduler->wake_pipe[1], "x", 1) < 0)
        ZNP_WARN(LOG_TAG, NULL, "could not wake the scheduler: %s", strerror(errno));
    if (scheduler->started)
        pthread_join(scheduler->thread, NULL);
    if (scheduler->wake_pipe[0] >= 0)
        close(scheduler->wake_pipe[0]);
    if (scheduler->wake_pipe[1] >= 0)
        close(scheduler->wake_pipe[1]);
    free(scheduler->dsn);
    free(scheduler);
}
