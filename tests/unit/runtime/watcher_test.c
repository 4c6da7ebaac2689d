/*
 * The database watcher against databases that are not there or never
 * respond. The test that needs a running PostgreSQL reads its connection
 * string from ZNP_TEST_DSN and is skipped without it.
 */
#include "runtime_tests.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "runtime/health.h"
#include "runtime/watcher.h"

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Poll `condition` every 10 ms for up to `timeout_ms`. Returns 1 when it held. */
static int eventually(int (*condition)(void *data), void *data, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;

    while (now_ms() < deadline) {
        if (condition(data))
            return 1;
        usleep(10000);
    }
    return condition(data);
}

static int database_down(void *data)
{
    (void)data;
    return !znp_health_database_up();
}

/* A TCP socket that listens but never accepts: connects succeed and then hang. Returns the fd, port in *port. */
static int silent_listener(int *port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    assert_int_equal(listen(fd, 8), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

/* A port with nothing listening: bound and closed again, so connects are refused. */
static int closed_port(void)
{
    int port;
    int fd = silent_listener(&port);

    close(fd);
    return port;
}

static void watcher__unreachable_database_reported_down(void **state)
{
    char dsn[128];
    znp_watcher_options_t options = {.dsn = dsn, .interval_ms = 50, .timeout_ms = 500};
    znp_watcher_t *watcher = NULL;
    int64_t started;

    (void)state;
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=none", closed_port());
    znp_health_init();
    znp_health_set_database(1);

    assert_int_equal(znp_watcher_start(&watcher, &options), 0);
    assert_non_null(watcher);
    assert_true(eventually(database_down, NULL, 2000));

    started = now_ms();
    znp_watcher_stop(watcher);
    assert_true(now_ms() - started < 500);
}

static void watcher__stop_prompt_while_connecting(void **state)
{
    char dsn[128];
    znp_watcher_options_t options = {.dsn = dsn, .timeout_ms = 30000};
    znp_watcher_t *watcher = NULL;
    int64_t started;
    int port;
    int fd = silent_listener(&port);

    (void)state;
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=none", port);
    znp_health_init();
    assert_int_equal(znp_watcher_start(&watcher, &options), 0);
    usleep(200000); /* the connect is now waiting for the server's first reply */

    started = now_ms();
    znp_watcher_stop(watcher);
    assert_true(now_ms() - started < 500);
    assert_int_equal(znp_health_database_up(), 0);
    close(fd);
}

static void watcher__connect_timeout_reported_down(void **state)
{
    char dsn[128];
    znp_watcher_options_t options = {.dsn = dsn, .interval_ms = 50, .timeout_ms = 200};
    znp_watcher_t *watcher = NULL;
    int port;
    int fd = silent_listener(&port);

    (void)state;
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=none", port);
    znp_health_init();
    znp_health_set_database(1);
    assert_int_equal(znp_watcher_start(&watcher, &options), 0);
    assert_true(eventually(database_down, NULL, 2000));
    znp_watcher_stop(watcher);
    close(fd);
}

static void watcher__invalid_dsn_reported_down(void **state)
{
    znp_watcher_options_t options = {.dsn = "this is = not a valid connection string", .interval_ms = 50};
    znp_watcher_t *watcher = NULL;

    (void)state;
    znp_health_init();
    znp_health_set_database(1);
    assert_int_equal(znp_watcher_start(&watcher, &options), 0);
    assert_true(eventually(database_down, NULL, 2000));
    znp_watcher_stop(watcher);
    znp_watcher_stop(NULL);
}

/* with PostgreSQL: health goes up, and NOTIFY on the channel runs the callback */

typedef struct refreshes {
    pthread_mutex_t lock;
    int count;
    int had_connection;
} refreshes_t;

static void on_refresh(void *data, PGconn *db)
{
    refreshes_t *r = data;
    PGresult *res = PQexec(db, "SELECT 1");

    pthread_mutex_lock(&r->lock);
    r->count++;
    r->had_connection = PQresultStatus(res) == PGRES_TUPLES_OK;
    pthread_mutex_unlock(&r->lock);
    PQclear(res);
}

static int refreshed_at_least(void *data)
{
    refreshes_t *r = data;
    int count;

    pthread_mutex_lock(&r->lock);
    count = r->count;
    pthread_mutex_unlock(&r->lock);
    return count >= 2;
}

static int database_up(void *data)
{
    (void)data;
    return znp_health_database_up();
}

static void watcher__notify_runs_refresh(void **state)
{
    const char *dsn = getenv("ZNP_TEST_DSN");
    refreshes_t r = {.lock = PTHREAD_MUTEX_INITIALIZER};
    znp_watcher_options_t options = {.dsn = dsn, .interval_ms = 100, .on_refresh = on_refresh, .data = &r};
    znp_watcher_t *watcher = NULL;
    PGconn *conn;
    PGresult *res;

    (void)state;
    if (dsn == NULL || dsn[0] == '\0')
        skip();
    znp_health_init();
    assert_int_equal(znp_watcher_start(&watcher, &options), 0);
    assert_true(eventually(database_up, NULL, 5000));

    conn = PQconnectdb(dsn);
    assert_int_equal(PQstatus(conn), CONNECTION_OK);
    res = PQexec(conn, "NOTIFY " ZNP_WATCHER_CHANNEL);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(conn);

    /* one refresh after connecting, one for the notification */
    assert_true(eventually(refreshed_at_least, &r, 5000));
    assert_true(r.had_connection);
    znp_watcher_stop(watcher);
}

int run_watcher_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(watcher__unreachable_database_reported_down),
        cmocka_unit_test(watcher__stop_prompt_while_connecting),
        cmocka_unit_test(watcher__connect_timeout_reported_down),
        cmocka_unit_test(watcher__invalid_dsn_reported_down),
        cmocka_unit_test(watcher__notify_runs_refresh),
    };

    return cmocka_run_group_tests_name("watcher", tests, NULL, NULL);
}
