#include "runtime/watcher.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "core/log.h"
#include "db/db.h"
#include "runtime/health.h"

#define LOG_TAG          "watcher"
#define BACKOFF_START_MS 100

struct znp_watcher {
    char *dsn;
    unsigned interval_ms;
    unsigned timeout_ms;
    znp_watcher_refresh_fn on_refresh;
    znp_watcher_notify_fn on_notify;
    void *data;

    int wake_fd; /* eventfd written by znp_watcher_stop */
    pthread_t thread;
    PGconn *conn;      /* touched only by the watcher thread */
    unsigned failures; /* connect attempts failed in a row */
};

typedef enum wait_result {
    WAIT_READY = 0,
    WAIT_TIMEOUT,
    WAIT_STOP,
} wait_result_t;

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The eventfd is never read, so once stop is requested every later check finds it too. */
static int stop_requested(znp_watcher_t *w)
{
    struct pollfd pfd = {.fd = w->wake_fd, .events = POLLIN};

    return poll(&pfd, 1, 0) > 0;
}

/*
 * Wait until `fd` (may be -1) is ready for `events`, the deadline (monotonic
 * ms) passes, or stop is requested.
 */
static wait_result_t wait_for(znp_watcher_t *w, int fd, short events, int64_t deadline)
{
    struct pollfd pfds[2] = {
        {.fd = w->wake_fd, .events = POLLIN},
        {.fd = fd, .events = events},
    };

    for (;;) {
        int64_t left = deadline - now_ms();
        int rc;

        if (left < 0)
            left = 0;
        rc = poll(pfds, fd >= 0 ? 2 : 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0) {
            ZNP_ERROR(LOG_TAG, NULL, "poll failed: %s", strerror(errno));
            return WAIT_STOP;
        }
        if (pfds[0].revents != 0)
            return WAIT_STOP;
        if (rc > 0)
            return WAIT_READY;
        return WAIT_TIMEOUT;
    }
}

static void on_notice(void *arg, const char *message)
{
    (void)arg;
    ZNP_DEBUG(LOG_TAG, NULL, "notice from server: %.200s", message);
}

static void disconnect(znp_watcher_t *w)
{
    if (w->conn == NULL)
        return;
    PQfinish(w->conn);
    w->conn = NULL;
}

/* Connect without blocking past the timeout or a stop request. Returns 0, -1 on failure or 1 when stopped. */
static int connect_async(znp_watcher_t *w, char *message, size_t message_size)
{
    /* settings before "dbname" are defaults that the DSN may override */
    const char *keys[] = {"application_name",    "client_encoding",  "keepalives", "keepalives_idle",
                          "keepalives_interval", "keepalives_count", "dbname",     NULL};
    const char *values[] = {"znp-watcher", "UTF8", "1", "5", "2", "2", w->dsn, NULL};
    int64_t deadline = now_ms() + w->timeout_ms;
    PostgresPollingStatusType poll_status = PGRES_POLLING_WRITING;

    w->conn = PQconnectStartParams(keys, values, 1);
    if (w->conn == NULL) {
        snprintf(message, message_size, "out of memory");
        return -1;
    }
    if (PQstatus(w->conn) == CONNECTION_BAD)
        goto failed;

    while (poll_status != PGRES_POLLING_OK) {
        wait_result_t waited;

        if (poll_status == PGRES_POLLING_FAILED)
            goto failed;
        waited = wait_for(w, PQsocket(w->conn), poll_status == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
        if (waited == WAIT_STOP) {
            disconnect(w);
            return 1;
        }
        if (waited == WAIT_TIMEOUT) {
            snprintf(message, message_size, "timed out after %u ms", w->timeout_ms);
            disconnect(w);
            return -1;
        }
        poll_status = PQconnectPoll(w->conn);
    }

    PQsetNoticeProcessor(w->conn, on_notice, NULL);
    return 0;

failed:
    snprintf(message, message_size, "%s", PQerrorMessage(w->conn));
    message[strcspn(message, "\n")] = '\0';
    disconnect(w);
    return -1;
}

/*
 * Send `sql` and wait for its results without blocking past the timeout or a
 * stop request. Returns 0 when every result succeeded, -1 otherwise; on
 * -1 the connection may be unusable (the caller checks PQstatus or drops it).
 */
static int run_async(znp_watcher_t *w, const char *sql)
{
    int64_t deadline = now_ms() + w->timeout_ms;
    PGresult *res;
    int failed = 0;

    if (!PQsendQuery(w->conn, sql))
        return -1;

    for (;;) {
        if (!PQconsumeInput(w->conn))
            return -1;
        while (!PQisBusy(w->conn)) {
            res = PQgetResult(w->conn);
            if (res == NULL)
                return failed ? -1 : 0;
            if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
                ZNP_WARN(LOG_TAG, NULL, "query failed: query=\"%s\" error=\"%.200s\"", sql, PQresultErrorMessage(res));
                failed = 1;
            }
            PQclear(res);
        }
        if (wait_for(w, PQsocket(w->conn), POLLIN, deadline) != WAIT_READY)
            return -1;
    }
}

static void lose_connection(znp_watcher_t *w, const char *why)
{
    char message[256];

    snprintf(message, sizeof message, "%s", PQerrorMessage(w->conn));
    message[strcspn(message, "\n")] = '\0';
    ZNP_WARN(LOG_TAG, NULL, "database connection lost: %s: %s", why, message);
    disconnect(w);
    znp_health_set_database(0);
}

/* Run `SELECT 1` and the migration check. Returns 0, or -1 after dropping the connection. */
static int probe(znp_watcher_t *w)
{
    int current;

    if (run_async(w, "SELECT 1") != 0) {
        lose_connection(w, "probe failed");
        return -1;
    }

    current = znp_migrate_is_current(w->conn);
    if (current < 0 && PQstatus(w->conn) != CONNECTION_OK) {
        lose_connection(w, "migration check failed");
        return -1;
    }
    znp_health_set_migrations_current(current == 1);
    znp_health_set_database(1);
    return 0;
}

static void refresh(znp_watcher_t *w)
{
    if (w->on_refresh != NULL)
        w->on_refresh(w->data, w->conn);
}

/* Read whatever arrived on the idle connection. Returns 0, or -1 after dropping the connection. */
static int read_notifications(znp_watcher_t *w)
{
    PGnotify *notify;
    size_t count = 0;
    size_t eligibility = 0;
    size_t tokens = 0;

    if (!PQconsumeInput(w->conn) || PQstatus(w->conn) != CONNECTION_OK) {
        lose_connection(w, "read failed");
        return -1;
    }
    while ((notify = PQnotifies(w->conn)) != NULL) {
        if (strcmp(notify->relname, ZNP_WATCHER_SUBSCRIPTIONS_CHANNEL) == 0) {
            if (w->on_notify != NULL)
                w->on_notify(w->data, notify->relname, notify->extra);
        } else if (strcmp(notify->relname, ZNP_WATCHER_ELIGIBILITY_CHANNEL) == 0) {
            eligibility++;
        } else if (strcmp(notify->relname, ZNP_WATCHER_NODE_TOKENS_CHANNEL) == 0) {
            tokens++;
        } else {
            count++;
        }
        PQfreemem(notify);
    }
    /* a bulk update sends one notification per row; one call covers them all */
    if (eligibility > 0 && w->on_notify != NULL)
        w->on_notify(w->data, ZNP_WATCHER_ELIGIBILITY_CHANNEL, "");
    if (tokens > 0 && w->on_notify != NULL)
        w->on_notify(w->data, ZNP_WATCHER_NODE_TOKENS_CHANNEL, "");
    /* a burst of notifications needs one refresh, not one per message */
    if (count > 0) {
        ZNP_DEBUG(LOG_TAG, NULL, "notification received: channel=%s count=%zu", ZNP_WATCHER_CHANNEL, count);
        refresh(w);
    }
    return 0;
}

/* Connect, LISTEN and probe once. Returns 0, or -1 with the connection closed. */
static int establish(znp_watcher_t *w)
{
    char message[256];
    char setup[160];
    int rc;

    rc = connect_async(w, message, sizeof message);
    if (rc == 1)
        return -1;
    if (rc != 0) {
        if (w->failures == 0)
            ZNP_WARN(LOG_TAG, NULL, "could not connect to the database: %s", message);
        else
            ZNP_DEBUG(LOG_TAG, NULL, "could not connect to the database: %s", message);
        w->failures++;
        znp_health_set_database(0);
        return -1;
    }

    /* a SET rather than the "options" startup parameter, which connection poolers may reject */
    snprintf(setup, sizeof setup,
             "SET statement_timeout = %u; LISTEN " ZNP_WATCHER_CHANNEL "; LISTEN " ZNP_WATCHER_SUBSCRIPTIONS_CHANNEL
             "; LISTEN " ZNP_WATCHER_ELIGIBILITY_CHANNEL "; LISTEN " ZNP_WATCHER_NODE_TOKENS_CHANNEL,
             w->timeout_ms);
    if (run_async(w, setup) != 0) {
        lose_connection(w, "session setup (SET, LISTEN) failed");
        w->failures++;
        return -1;
    }
    if (probe(w) != 0) {
        w->failures++;
        return -1;
    }

    if (w->failures > 0)
        ZNP_INFO(LOG_TAG, NULL, "database connection restored after %u failed attempts", w->failures);
    else
        ZNP_INFO(LOG_TAG, NULL, "database connection established");
    w->failures = 0;
    refresh(w);
    return 0;
}

static void *run(void *arg)
{
    znp_watcher_t *w = arg;
    unsigned backoff_ms = BACKOFF_START_MS;
    int64_t next_probe = 0;

    while (!stop_requested(w)) {
        if (w->conn == NULL) {
            if (establish(w) != 0) {
                if (wait_for(w, -1, 0, now_ms() + backoff_ms) == WAIT_STOP)
                    break;
                backoff_ms = backoff_ms * 2 > w->interval_ms ? w->interval_ms : backoff_ms * 2;
                continue;
            }
            backoff_ms = BACKOFF_START_MS;
            next_probe = now_ms() + w->interval_ms;
            continue;
        }

        switch (wait_for(w, PQsocket(w->conn), POLLIN, next_probe)) {
        case WAIT_STOP:
            goto cleanup;
        case WAIT_READY:
            read_notifications(w);
            break;
        case WAIT_TIMEOUT:
            if (probe(w) == 0) {
                /* the probe may have buffered notifications along with its result */
                read_notifications(w);
            }
            next_probe = now_ms() + w->interval_ms;
            break;
        }
    }

cleanup:
    disconnect(w);
    return NULL;
}

int znp_watcher_start(znp_watcher_t **out, const znp_watcher_options_t *options)
{
    znp_watcher_t *w = NULL;
    int err = ZNP_E_INTERNAL;

    *out = NULL;
    w = calloc(1, sizeof *w);
    if (w == NULL)
        goto cleanup;
    w->wake_fd = -1;
    w->dsn = strdup(options->dsn != NULL ? options->dsn : "");
    if (w->dsn == NULL)
        goto cleanup;
    w->interval_ms = options->interval_ms != 0 ? options->interval_ms : ZNP_WATCHER_DEFAULT_INTERVAL_MS;
    w->timeout_ms = options->timeout_ms != 0 ? options->timeout_ms : ZNP_WATCHER_DEFAULT_TIMEOUT_MS;
    w->on_refresh = options->on_refresh;
    w->on_notify = options->on_notify;
    w->data = options->data;

    w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (w->wake_fd < 0) {
        ZNP_ERROR(LOG_TAG, NULL, "could not create eventfd: %s", strerror(errno));
        goto cleanup;
    }
    if (pthread_create(&w->thread, NULL, run, w) != 0) {
        ZNP_ERROR(LOG_TAG, NULL, "could not start the watcher thread");
        goto cleanup;
    }

    *out = w;
    w = NULL;
    err = 0;

cleanup:
    if (w != NULL) {
        if (w->wake_fd >= 0)
            close(w->wake_fd);
        free(w->dsn);
        free(w);
    }
    return err;
}

void znp_watcher_stop(znp_watcher_t *watcher)
{
    uint64_t one = 1;

    if (watcher == NULL)
        return;
    if (write(watcher->wake_fd, &one, sizeof one) != (ssize_t)sizeof one)
        ZNP_ERROR(LOG_TAG, NULL, "could not wake the watcher thread: %s", strerror(errno));
    pthread_join(watcher->thread, NULL);
    close(watcher->wake_fd);
    free(watcher->dsn);
    free(watcher);
}
