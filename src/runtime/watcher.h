/*
 * The database watcher: one thread with its own PostgreSQL connection that
 * keeps the readiness state (health.h) current and delivers cache
 * invalidations sent through PostgreSQL NOTIFY.
 *
 * Every interval it runs `SELECT 1` and znp_migrate_is_current() and sets
 * znp_health_set_database() and znp_health_set_migrations_current(). A lost
 * connection is noticed at once, because the thread waits on the socket,
 * and the database is reported down. It then reconnects with a backoff that
 * starts at 100 ms and doubles up to the interval. So health follows a
 * database stop or start within about one interval plus the connect time.
 *
 * It LISTENs on channel "znp_site_settings" and calls `on_refresh` on the
 * watcher thread with its own connection after every notification and after
 * every successful connect, including the first one, because notifications
 * sent while it was disconnected are lost. It also LISTENs on
 * "znp_subscriptions" and passes each of those notifications, with its
 * payload, to `on_notify` instead.
 *
 * Call sequence in `znp serve`, with the gRPC server and the pool around it:
 *
 *     static void refresh_site(void *data, PGconn *db)
 *     {
 *         znp_site_cache_refresh(db, data);   // data is the znp_config_t
 *     }
 *
 *     pthread_sigmask(SIG_BLOCK, {SIGINT, SIGTERM});   // before any thread starts
 *     znp_health_init();
 *     ... resolve the DSN, migrate, znp_site_cache_init() and a first znp_site_cache_refresh() ...
 *     znp_watcher_options_t options = {.dsn = dsn, .on_refresh = refresh_site, .data = config};
 *     znp_watcher_start(&watcher, &options);
 *     znp_pool_create(&pool, config, dsn, workers);
 *     znp_grpc_server_create(&grpc, config, pool, znp_http_server_protect(http));
 *     ... start HTTP, sigwait() ...
 *     znp_health_set_draining();          // Watch streams get NOT_SERVING
 *     ... stop HTTP ...
 *     znp_pool_drain(pool, shutdown_timeout_ms);
 *     znp_grpc_server_destroy(grpc);      // Watch streams end with UNAVAILABLE
 *     znp_pool_destroy(pool);
 *     znp_watcher_stop(watcher);
 */
#ifndef ZNP_RUNTIME_WATCHER_H
#define ZNP_RUNTIME_WATCHER_H

#include <libpq-fe.h>

#define ZNP_WATCHER_CHANNEL               "znp_site_settings"
/* Also LISTENed on; its notifications go to on_notify only, not on_refresh. */
#define ZNP_WATCHER_SUBSCRIPTIONS_CHANNEL "znp_subscriptions"
/*
 * Also LISTENed on and passed to on_notify, once per burst of notifications
 * read together and with an empty payload: eligibility changes (the
 * node-backend user lists) and node-backend token changes.
 */
#define ZNP_WATCHER_ELIGIBILITY_CHANNEL   "znp_eligibility"
#define ZNP_WATCHER_NODE_TOKENS_CHANNEL   "znp_node_tokens"
#define ZNP_WATCHER_DEFAULT_INTERVAL_MS   1000
#define ZNP_WATCHER_DEFAULT_TIMEOUT_MS    2000

typedef struct znp_watcher znp_watcher_t;

/*
 * Runs on the watcher thread. `db` is the watcher's connection, idle and
 * borrowed for the duration of the call: the callback may run queries on it
 * but must not close it.
 */
typedef void (*znp_watcher_refresh_fn)(void *data, PGconn *db);

/*
 * Runs on the watcher thread for each notification on ZNP_WATCHER_SUBSCRIPTIONS_CHANNEL, with its payload, and
 * once per burst on the two channels above.
 */
typedef void (*znp_watcher_notify_fn)(void *data, const char *channel, const char *payload);

typedef struct znp_watcher_options {
    const char *dsn;                   /* libpq connection string; copied */
    unsigned interval_ms;              /* probe period; 0 = ZNP_WATCHER_DEFAULT_INTERVAL_MS */
    unsigned timeout_ms;               /* limit for one connect or probe; 0 = ZNP_WATCHER_DEFAULT_TIMEOUT_MS */
    znp_watcher_refresh_fn on_refresh; /* may be NULL */
    znp_watcher_notify_fn on_notify;   /* may be NULL */
    void *data;                        /* passed to on_refresh and on_notify */
} znp_watcher_options_t;

/*
 * Start the watcher thread. It connects in the background, so this succeeds
 * while the database is down. Returns 0, or ZNP_E_INTERNAL when the thread
 * or its wakeup descriptor cannot be created. *out is owned by the caller
 * (znp_watcher_stop); it is NULL on failure.
 */
int znp_watcher_start(znp_watcher_t **out, const znp_watcher_options_t *options);

/*
 * Wake the thread, join it (a connect or query in progress is abandoned, so
 * this returns within milliseconds unless on_refresh is running) and close
 * the connection. The health state keeps the last values set. Accepts NULL.
 */
void znp_watcher_stop(znp_watcher_t *watcher);

#endif
