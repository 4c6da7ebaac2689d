#include "http_tests.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "errors.gen.h"
#include "runtime/health.h"
#include "runtime/pool.h"

/* nothing listens on port 1, so every connect fails at once */
#define UNREACHABLE_DSN "host=127.0.0.1 port=1"

/* a job that records what it saw and can be held until released */
typedef struct test_job {
    znp_job_t super;
    pthread_mutex_t *lock;
    pthread_cond_t *changed;
    int *open_gate; /* the job waits while *open_gate is 0 */
    int started;
    int finished;
    int saw_db;
} test_job_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int gate;

static void run_test_job(znp_job_t *base, PGconn *db)
{
    test_job_t *job = (test_job_t *)base;

    pthread_mutex_lock(job->lock);
    job->started = 1;
    job->saw_db = db != NULL;
    pthread_cond_broadcast(job->changed);
    while (!*job->open_gate)
        pthread_cond_wait(job->changed, job->lock);
    job->finished = 1;
    pthread_cond_broadcast(job->changed);
    pthread_mutex_unlock(job->lock);
}

static void init_job(test_job_t *job)
{
    memset(job, 0, sizeof(*job));
    job->super.run = run_test_job;
    job->lock = &lock;
    job->changed = &changed;
    job->open_gate = &gate;
}

static void set_gate(int open)
{
    pthread_mutex_lock(&lock);
    gate = open;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

/* Wait up to 5 s for *flag to become 1. */
static int wait_flag(const int *flag)
{
    struct timespec deadline;
    int value;

    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 5;
    pthread_mutex_lock(&lock);
    while (!*flag && pthread_cond_timedwait(&changed, &lock, &deadline) == 0)
        ;
    value = *flag;
    pthread_mutex_unlock(&lock);
    return value;
}

static znp_config_t config;

static znp_pool_t *create_pool(size_t workers, uint32_t queue_limit)
{
    znp_pool_t *pool = NULL;

    memset(&config, 0, sizeof(config));
    config.server.queue_limit = queue_limit;
    config.database.connect_timeout_s = 1;
    config.database.statement_timeout_ms = 1000;
    config.database.reconnect_max_ms = 200;
    assert_int_equal(znp_pool_create(&pool, &config, UNREACHABLE_DSN, workers), 0);
    assert_non_null(pool);
    return pool;
}

static int reset(void **state)
{
    (void)state;
    znp_health_init();
    set_gate(1);
    return 0;
}

static void pool__job_runs_without_database(void **state)
{
    znp_pool_t *pool = create_pool(2, 8);
    test_job_t job;

    (void)state;
    init_job(&job);
    assert_int_equal(znp_pool_submit(pool, &job.super), 0);
    assert_true(wait_flag(&job.finished));
    assert_int_equal(job.saw_db, 0);
    assert_int_equal(znp_health_database_up(), 0);
    znp_pool_destroy(pool);
}

static void pool__full_queue_returns_overloaded(void **state)
{
    znp_pool_t *pool = create_pool(1, 2);
    test_job_t running, queued[2], rejected;
    size_t waiting, busy, connected, workers;

    (void)state;
    set_gate(0);
    init_job(&running);
    assert_int_equal(znp_pool_submit(pool, &running.super), 0);
    assert_true(wait_flag(&running.started));
    for (int i = 0; i < 2; i++) {
        init_job(&queued[i]);
        assert_int_equal(znp_pool_submit(pool, &queued[i].super), 0);
    }
    init_job(&rejected);
    assert_int_equal(znp_pool_submit(pool, &rejected.super), ZNP_E_OVERLOADED);

    znp_pool_stats(pool, &waiting, &busy, &connected, &workers);
    assert_int_equal(waiting, 2);
    assert_int_equal(busy, 1);
    assert_int_equal(connected, 0);
    assert_int_equal(workers, 1);

    set_gate(1);
    assert_int_equal(znp_pool_drain(pool, 5000), 0);
    assert_true(queued[0].finished && queued[1].finished);
    assert_int_equal(rejected.started, 0);
    znp_pool_destroy(pool);
}

static void pool__drain_rejects_new_jobs(void **state)
{
    znp_pool_t *pool = create_pool(1, 8);
    test_job_t job;

    (void)state;
    assert_int_equal(znp_pool_drain(pool, 1000), 0);
    init_job(&job);
    assert_int_equal(znp_pool_submit(pool, &job.super), ZNP_E_SHUTTING_DOWN);
    znp_pool_destroy(pool);
    assert_int_equal(job.started, 0);
}

static void pool__drain_timeout_counts_jobs_left(void **state)
{
    znp_pool_t *pool = create_pool(1, 8);
    test_job_t running, queued;

    (void)state;
    set_gate(0);
    init_job(&running);
    init_job(&queued);
    assert_int_equal(znp_pool_submit(pool, &running.super), 0);
    assert_true(wait_flag(&running.started));
    assert_int_equal(znp_pool_submit(pool, &queued.super), 0);
    assert_int_equal(znp_pool_drain(pool, 50), 2);

    /* destroy still runs what is queued, with db = NULL */
    set_gate(1);
    znp_pool_destroy(pool);
    assert_int_equal(running.finished, 1);
    assert_int_equal(queued.finished, 1);
    assert_int_equal(queued.saw_db, 0);
}

static void pool__destroy_accepts_null(void **state)
{
    (void)state;
    znp_pool_destroy(NULL);
    assert_int_equal(znp_pool_drain(NULL, 10), 0);
}

int run_pool_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(pool__job_runs_without_database, reset),
        cmocka_unit_test_setup(pool__full_queue_returns_overloaded, reset),
        cmocka_unit_test_setup(pool__drain_rejects_new_jobs, reset),
        cmocka_unit_test_setup(pool__drain_timeout_counts_jobs_left, reset),
        cmocka_unit_test_setup(pool__destroy_accepts_null, reset),
    };

    return cmocka_run_group_tests_name("pool", tests, NULL, NULL);
}
