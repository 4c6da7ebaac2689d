/*
 * The worker pool. One mutex guards the job queue and the counters; each
 * worker owns its PostgreSQL connection and touches it outside the lock.
 *
 * A worker without a connection takes jobs only while no other worker is
 * connected, so a single broken connection does not turn requests into 503s
 * while its siblings can serve them. When every connection is gone, all
 * workers take jobs and hand them db = NULL, so callers fail fast instead of
 * waiting for a reconnect.
 */
#include "runtime/pool.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "core/log.h"
#include "db/db.h"
#include "errors.gen.h"

#define LOG_MODULE               "pool"
#define BACKOFF_INITIAL_MS       100
#define DEFAULT_RECONNECT_MAX_MS 5000
#define DEFAULT_QUEUE_LIMIT      4096

typedef struct worker {
    znp_pool_t *pool;
    size_t index;
    pthread_t thread;
    int started;
    PGconn *db;
    unsigned backoff_ms;          /* delay before the next attempt after a failed one */
    struct timespec next_attempt; /* CLOCK_MONOTONIC; reconnect not before this */
    int reported_down;            /* logged the current outage once */
} worker_t;

struct znp_pool {
    const znp_config_t *config;
    char *dsn;
    unsigned reconnect_max_ms;
    size_t queue_limit;

    pthread_mutex_t lock;
    pthread_cond_t work; /* a job was queued, or the pool is stopping */
    pthread_cond_t idle; /* queued + busy reached 0 */
    znp_job_t *head;
    znp_job_t *tail;
    size_t queued;
    size_t busy;
    size_t connected;
    int draining;
    int stopping;

    size_t worker_count;
    worker_t *workers;
};

static void monotonic_after(struct timespec *out, unsigned ms)
{
    clock_gettime(CLOCK_MONOTONIC, out);
    out->tv_sec += ms / 1000;
    out->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (out->tv_nsec >= 1000000000L) {
        out->tv_sec++;
        out->tv_nsec -= 1000000000L;
    }
}

static int monotonic_reached(const struct timespec *when)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > when->tv_sec || (now.tv_sec == when->tv_sec && now.tv_nsec >= when->tv_nsec);
}

/*
 * Count this worker's connection as up (1) or gone (0). The database flag of
 * the health state is left to the watcher (watcher.h), its only writer, so
 * health and metrics never see two opinions at once.
 */
static void update_connected(worker_t *worker, int up)
{
    znp_pool_t *pool = worker->pool;

    pthread_mutex_lock(&pool->lock);
    if (up) {
        pool->connected++;
    } else if (--pool->connected == 0) {
        /* workers without a connection may now take jobs and fail them fast */
        pthread_cond_broadcast(&pool->work);
    }
    pthread_mutex_unlock(&pool->lock);
}

/* Try to connect once; on failure schedule the next attempt with exponential backoff. Called without the lock. */
static void worker_connect(worker_t *worker)
{
    znp_pool_t *pool = worker->pool;
    PGconn *db = NULL;

    if (znp_db_connect(&db, pool->dsn, pool->config) != 0 || db == NULL || PQstatus(db) != CONNECTION_OK) {
        if (db != NULL)
            PQfinish(db);
        if (!worker->reported_down) {
            ZNP_WARN(LOG_MODULE, NULL, "worker could not connect to the database, retrying worker=%zu", worker->index);
            worker->reported_down = 1;
        }
        monotonic_after(&worker->next_attempt, worker->backoff_ms);
        worker->backoff_ms =
            worker->backoff_ms * 2 > pool->reconnect_max_ms ? pool->reconnect_max_ms : worker->backoff_ms * 2;
        return;
    }

    if (worker->reported_down)
        ZNP_INFO(LOG_MODULE, NULL, "worker reconnected to the database worker=%zu", worker->index);
    worker->reported_down = 0;
    worker->backoff_ms = BACKOFF_INITIAL_MS;
    worker->db = db;
    update_connected(worker, 1);
}

static void worker_disconnect(worker_t *worker, const char *reason)
{
    ZNP_WARN(LOG_MODULE, NULL, "worker lost its database connection worker=%zu reason=\"%s\"", worker->index, reason);
    worker->reported_down = 1;
    PQfinish(worker->db);
    worker->db = NULL;
    clock_gettime(CLOCK_MONOTONIC, &worker->next_attempt); /* first retry at once */
    update_connected(worker, 0);
}

/*
 * Notice a connection the server closed while it sat idle (restart,
 * pg_terminate_backend): the socket is readable and libpq then reports EOF.
 * Without this check the next job would fail on its first query.
 */
static void check_idle_connection(worker_t *worker)
{
    struct pollfd pfd = {.fd = PQsocket(worker->db), .events = POLLIN};
    PGnotify *notify;

    if (pfd.fd < 0) {
        worker_disconnect(worker, "no socket");
        return;
    }
    /*
     * A terminated backend first sends its FATAL message, which one read
     * consumes without noticing the end of stream behind it. So keep
     * reading while the socket stays readable, for a few rounds at most.
     */
    for (int round = 0; round < 4 && poll(&pfd, 1, 0) > 0; round++) {
        if (PQconsumeInput(worker->db) == 0 || PQstatus(worker->db) != CONNECTION_OK) {
            worker_disconnect(worker, "closed by the server");
            return;
        }
        while ((notify = PQnotifies(worker->db)) != NULL)
            PQfreemem(notify);
    }
}

/* Return the connection to a clean idle state after a job, or drop it. */
static void reset_after_job(worker_t *worker)
{
    PGresult *result;

    if (PQstatus(worker->db) != CONNECTION_OK) {
        worker_disconnect(worker, "connection failed during a job");
        return;
    }
    switch (PQtransactionStatus(worker->db)) {
    case PQTRANS_IDLE:
        return;
    case PQTRANS_ACTIVE:
        /* a job left results unread; drain them so the next job starts clean */
        while ((result = PQgetResult(worker->db)) != NULL)
            PQclear(result);
        if (PQtransactionStatus(worker->db) == PQTRANS_IDLE)
            return;
        break;
    case PQTRANS_INTRANS:
    case PQTRANS_INERROR:
        break;
    default:
        worker_disconnect(worker, "unknown transaction state");
        return;
    }

    ZNP_WARN(LOG_MODULE, NULL, "a job left a transaction open, rolling back worker=%zu", worker->index);
    result = PQexec(worker->db, "ROLLBACK");
    PQclear(result);
    if (PQstatus(worker->db) != CONNECTION_OK || PQtransactionStatus(worker->db) != PQTRANS_IDLE)
        worker_disconnect(worker, "rollback failed");
}

/* Whether `worker` may take a job now. Caller holds the lock. */
static int may_take_job(const worker_t *worker)
{
    const znp_pool_t *pool = worker->pool;

    return pool->head != NULL && (worker->db != NULL || pool->connected == 0 || pool->stopping);
}

/* Run one job; `stopping` (read under the lock) skips reconnecting so shutdown stays fast. */
static void run_job(worker_t *worker, znp_job_t *job, int stopping)
{
    PGconn *db = NULL;

    if (!stopping) {
        if (worker->db == NULL && monotonic_reached(&worker->next_attempt))
            worker_connect(worker);
        if (worker->db != NULL)
            check_idle_connection(worker);
        if (worker->db == NULL && monotonic_reached(&worker->next_attempt))
            worker_connect(worker); /* one immediate retry after an idle connection was found closed */
        db = worker->db;
    }

    job->run(job, db);

    if (worker->db != NULL)
        reset_after_job(worker);
}

static void *worker_main(void *arg)
{
    worker_t *worker = arg;
    znp_pool_t *pool = worker->pool;
    sigset_t blocked;

    /* signals belong to the main thread's sigwait */
    sigfillset(&blocked);
    pthread_sigmask(SIG_BLOCK, &blocked, NULL);

    worker_connect(worker);

    pthread_mutex_lock(&pool->lock);
    for (;;) {
        if (may_take_job(worker)) {
            znp_job_t *job = pool->head;
            int stopping = pool->stopping;

            pool->head = job->next;
            if (pool->head == NULL)
                pool->tail = NULL;
            job->next = NULL;
            pool->queued--;
            pool->busy++;
            pthread_mutex_unlock(&pool->lock);

            run_job(worker, job, stopping);

            pthread_mutex_lock(&pool->lock);
            pool->busy--;
            if (pool->busy == 0 && pool->queued == 0)
                pthread_cond_broadcast(&pool->idle);
            continue;
        }
        if (pool->stopping && pool->head == NULL)
            break;
        if (worker->db == NULL && !pool->stopping) {
            if (monotonic_reached(&worker->next_attempt)) {
                pthread_mutex_unlock(&pool->lock);
                worker_connect(worker);
                pthread_mutex_lock(&pool->lock);
                continue;
            }
            pthread_cond_timedwait(&pool->work, &pool->lock, &worker->next_attempt);
            continue;
        }
        pthread_cond_wait(&pool->work, &pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);

    if (worker->db != NULL) {
        PQfinish(worker->db);
        worker->db = NULL;
    }
    return NULL;
}

static size_t default_worker_count(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    return cores > 0 ? (size_t)cores * 2 : 2;
}

int znp_pool_create(znp_pool_t **out, const znp_config_t *config, const char *dsn, size_t workers)
{
    znp_pool_t *pool = NULL;
    pthread_condattr_t cond_attr;
    int result = ZNP_E_INTERNAL;

    *out = NULL;
    if (dsn == NULL)
        return ZNP_E_INTERNAL;
    pool = calloc(1, sizeof(*pool));
    if (pool == NULL)
        return ZNP_E_INTERNAL;

    pool->config = config;
    pool->dsn = strdup(dsn);
    pool->reconnect_max_ms = config != NULL && config->database.reconnect_max_ms > 0 ? config->database.reconnect_max_ms
                                                                                     : DEFAULT_RECONNECT_MAX_MS;
    if (pool->reconnect_max_ms < BACKOFF_INITIAL_MS)
        pool->reconnect_max_ms = BACKOFF_INITIAL_MS;
    pool->queue_limit =
        config != NULL && config->server.queue_limit > 0 ? config->server.queue_limit : DEFAULT_QUEUE_LIMIT;
    pool->worker_count = workers > 0 ? workers : default_worker_count();
    pool->workers = calloc(pool->worker_count, sizeof(*pool->workers));
    pthread_mutex_init(&pool->lock, NULL);
    pthread_condattr_init(&cond_attr);
    pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC); /* worker next_attempt deadlines are monotonic */
    pthread_cond_init(&pool->work, &cond_attr);
    pthread_cond_init(&pool->idle, &cond_attr);
    pthread_condattr_destroy(&cond_attr);
    if (pool->dsn == NULL || pool->workers == NULL)
        goto cleanup;

    for (size_t i = 0; i < pool->worker_count; i++) {
        worker_t *worker = &pool->workers[i];

        worker->pool = pool;
        worker->index = i;
        worker->backoff_ms = BACKOFF_INITIAL_MS;
        int error = pthread_create(&worker->thread, NULL, worker_main, worker);

        if (error != 0) {
            ZNP_ERROR(LOG_MODULE, NULL, "could not start worker thread worker=%zu error=\"%s\"", i, strerror(error));
            goto cleanup;
        }
        worker->started = 1;
    }

    ZNP_INFO(LOG_MODULE, NULL, "worker pool started workers=%zu queue_limit=%zu", pool->worker_count,
             pool->queue_limit);
    *out = pool;
    pool = NULL;
    result = 0;

cleanup:
    znp_pool_destroy(pool);
    return result;
}

int znp_pool_submit(znp_pool_t *pool, znp_job_t *job)
{
    int result = 0;

    job->next = NULL;
    pthread_mutex_lock(&pool->lock);
    if (pool->draining || pool->stopping) {
        result = ZNP_E_SHUTTING_DOWN;
    } else if (pool->queued >= pool->queue_limit) {
        result = ZNP_E_OVERLOADED;
    } else {
        if (pool->tail != NULL)
            pool->tail->next = job;
        else
            pool->head = job;
        pool->tail = job;
        pool->queued++;
        /* a disconnected worker may ignore a signal while others are connected, so wake them all then */
        if (pool->connected < pool->worker_count)
            pthread_cond_broadcast(&pool->work);
        else
            pthread_cond_signal(&pool->work);
    }
    pthread_mutex_unlock(&pool->lock);
    return result;
}

void znp_pool_stats(znp_pool_t *pool, size_t *queued, size_t *busy, size_t *connected, size_t *workers)
{
    pthread_mutex_lock(&pool->lock);
    *queued = pool->queued;
    *busy = pool->busy;
    *connected = pool->connected;
    *workers = pool->worker_count;
    pthread_mutex_unlock(&pool->lock);
}

size_t znp_pool_drain(znp_pool_t *pool, unsigned timeout_ms)
{
    struct timespec deadline;
    size_t left;

    if (pool == NULL)
        return 0;
    monotonic_after(&deadline, timeout_ms);
    pthread_mutex_lock(&pool->lock);
    pool->draining = 1;
    while (pool->queued + pool->busy > 0) {
        if (pthread_cond_timedwait(&pool->idle, &pool->lock, &deadline) == ETIMEDOUT)
            break;
    }
    left = pool->queued + pool->busy;
    pthread_mutex_unlock(&pool->lock);
    if (left > 0)
        ZNP_WARN(LOG_MODULE, NULL, "drain timed out with jobs left jobs=%zu timeout_ms=%u", left, timeout_ms);
    return left;
}

void znp_pool_destroy(znp_pool_t *pool)
{
    if (pool == NULL)
        return;

    /* jobs still queued run with db = NULL, so their callers respond at once */
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pool->draining = 1;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->lock);
    for (size_t i = 0; pool->workers != NULL && i < pool->worker_count; i++) {
        if (pool->workers[i].started)
            pthread_join(pool->workers[i].thread, NULL);
    }

    pthread_cond_destroy(&pool->work);
    pthread_cond_destroy(&pool->idle);
    pthread_mutex_destroy(&pool->lock);
    free(pool->workers);
    free(pool->dsn);
    free(pool);
}
