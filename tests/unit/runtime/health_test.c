#include "runtime_tests.h"

#include <pthread.h>
#include <string.h>

#include "runtime/health.h"

#define RECORD_MAX 64

/* what a listener saw */
typedef struct record {
    int calls;
    znp_serving_t seen[RECORD_MAX];
    znp_serving_t status_inside; /* znp_health_status() read from inside the listener */
    int handle;
    int unsubscribe_inside;
} record_t;

static void on_change(void *data, znp_serving_t status)
{
    record_t *r = data;

    if (r->calls < RECORD_MAX)
        r->seen[r->calls] = status;
    r->calls++;
    /* would deadlock if the listener ran with the state lock held */
    r->status_inside = znp_health_status();
    if (r->unsubscribe_inside)
        znp_health_unsubscribe(r->handle);
}

static int reset(void **state)
{
    (void)state;
    znp_health_init();
    return 0;
}

static void health__starts_not_serving(void **state)
{
    (void)state;
    assert_int_equal(znp_health_status(), ZNP_SERVING_NOT_SERVING);
    assert_int_equal(znp_health_database_up(), 0);
}

static void health__serving_needs_every_condition(void **state)
{
    static const struct {
        int database, migrations, draining;
        znp_serving_t expected;
    } cases[] = {
        {0, 0, 0, ZNP_SERVING_NOT_SERVING}, {1, 0, 0, ZNP_SERVING_NOT_SERVING}, {0, 1, 0, ZNP_SERVING_NOT_SERVING},
        {1, 1, 0, ZNP_SERVING_SERVING},     {1, 1, 1, ZNP_SERVING_NOT_SERVING}, {0, 0, 1, ZNP_SERVING_NOT_SERVING},
    };

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        znp_health_init();
        znp_health_set_database(cases[i].database);
        znp_health_set_migrations_current(cases[i].migrations);
        if (cases[i].draining)
            znp_health_set_draining();
        if (znp_health_status() != cases[i].expected)
            fail_msg("case %zu (database %d, migrations %d, draining %d): status %d, expected %d", i, cases[i].database,
                     cases[i].migrations, cases[i].draining, znp_health_status(), cases[i].expected);
        assert_int_equal(znp_health_database_up(), cases[i].database);
    }
}

static void health__draining_is_one_way(void **state)
{
    (void)state;
    znp_health_set_database(1);
    znp_health_set_migrations_current(1);
    znp_health_set_draining();
    znp_health_set_database(1);
    znp_health_set_migrations_current(1);
    assert_int_equal(znp_health_status(), ZNP_SERVING_NOT_SERVING);
}

static void health__listener_called_once_per_change(void **state)
{
    record_t r;

    (void)state;
    memset(&r, 0, sizeof r);
    r.handle = znp_health_subscribe(on_change, &r);
    assert_true(r.handle >= 0);

    znp_health_set_database(1); /* still NOT_SERVING: no call */
    assert_int_equal(r.calls, 0);
    znp_health_set_migrations_current(1);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.seen[0], ZNP_SERVING_SERVING);
    assert_int_equal(r.status_inside, ZNP_SERVING_SERVING);
    znp_health_set_migrations_current(1); /* no change */
    znp_health_set_database(1);
    assert_int_equal(r.calls, 1);
    znp_health_set_database(0);
    assert_int_equal(r.calls, 2);
    assert_int_equal(r.seen[1], ZNP_SERVING_NOT_SERVING);

    znp_health_unsubscribe(r.handle);
    znp_health_set_database(1);
    assert_int_equal(r.calls, 2);
}

static void health__listener_may_unsubscribe_itself(void **state)
{
    record_t r;

    (void)state;
    memset(&r, 0, sizeof r);
    r.unsubscribe_inside = 1;
    r.handle = znp_health_subscribe(on_change, &r);
    assert_true(r.handle >= 0);

    znp_health_set_database(1);
    znp_health_set_migrations_current(1);
    znp_health_set_database(0);
    assert_int_equal(r.calls, 1);
}

static void health__listener_table_full_fails(void **state)
{
    record_t r;
    int handles[64];
    int count = 0;

    (void)state;
    memset(&r, 0, sizeof r);
    while (count < 64 && (handles[count] = znp_health_subscribe(on_change, &r)) >= 0)
        count++;
    assert_int_equal(count, 32);
    assert_int_equal(handles[32], -1);

    /* a freed slot is reused */
    znp_health_unsubscribe(handles[5]);
    handles[5] = znp_health_subscribe(on_change, &r);
    assert_int_equal(handles[5], 5);
    for (int i = 0; i < count; i++)
        znp_health_unsubscribe(handles[i]);
    znp_health_unsubscribe(-1); /* ignored */
    znp_health_unsubscribe(1000);
}

/* Two threads flip the database flag. The last status a listener receives must be the final one. */
typedef struct flipper {
    int rounds;
} flipper_t;

static void *flip(void *arg)
{
    flipper_t *f = arg;

    for (int i = 0; i < f->rounds; i++)
        znp_health_set_database(i % 2 == 0);
    return NULL;
}

typedef struct last_seen {
    pthread_mutex_t lock;
    znp_serving_t last;
    int calls;
    int out_of_order; /* two calls in a row with the same status */
} last_seen_t;

static void on_change_last(void *data, znp_serving_t status)
{
    last_seen_t *l = data;

    pthread_mutex_lock(&l->lock);
    if (l->calls > 0 && l->last == status)
        l->out_of_order++;
    l->last = status;
    l->calls++;
    pthread_mutex_unlock(&l->lock);
}

static void health__concurrent_changes_end_on_final_status(void **state)
{
    last_seen_t l = {.lock = PTHREAD_MUTEX_INITIALIZER};
    flipper_t f = {.rounds = 20000};
    pthread_t threads[2];
    int handle;

    (void)state;
    znp_health_set_migrations_current(1);
    handle = znp_health_subscribe(on_change_last, &l);
    assert_true(handle >= 0);

    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, flip, &f), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    znp_health_set_database(1);

    assert_true(l.calls > 0);
    assert_int_equal(l.last, ZNP_SERVING_SERVING);
    assert_int_equal(znp_health_status(), ZNP_SERVING_SERVING);
    assert_int_equal(l.out_of_order, 0);
    znp_health_unsubscribe(handle);
}

int run_health_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(health__starts_not_serving, reset),
        cmocka_unit_test_setup(health__serving_needs_every_condition, reset),
        cmocka_unit_test_setup(health__draining_is_one_way, reset),
        cmocka_unit_test_setup(health__listener_called_once_per_change, reset),
        cmocka_unit_test_setup(health__listener_may_unsubscribe_itself, reset),
        cmocka_unit_test_setup(health__listener_table_full_fails, reset),
        cmocka_unit_test_setup(health__concurrent_changes_end_on_final_status, reset),
    };

    return cmocka_run_group_tests_name("health", tests, NULL, NULL);
}
