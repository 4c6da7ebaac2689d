/*
 * Readiness of this instance, shared by gRPC health (Check and Watch), the
 * HTTP 503 path and /metrics. The instance is SERVING only while the database
 * answers, the schema migrations are current and the server is not draining.
 * Every change is pushed to the registered listeners (open Watch streams).
 */
#ifndef ZNP_RUNTIME_HEALTH_H
#define ZNP_RUNTIME_HEALTH_H

typedef enum znp_serving {
    ZNP_SERVING_UNKNOWN = 0,
    ZNP_SERVING_SERVING = 1,
    ZNP_SERVING_NOT_SERVING = 2,
} znp_serving_t;

typedef void (*znp_health_listener_fn)(void *data, znp_serving_t status);

/* Reset to NOT_SERVING: database down, migrations not current, not draining. */
void znp_health_init(void);
void znp_health_set_database(int up);
void znp_health_set_migrations_current(int current);
/* One-way: the instance stays NOT_SERVING from now on. */
void znp_health_set_draining(void);

znp_serving_t znp_health_status(void);
int znp_health_database_up(void);

/*
 * Register `fn` to be called after every change of the status, with the new
 * status, from a thread that changed the state and with no internal lock
 * held. One thread delivers at a time, so listeners get changes in order.
 * Changes made while listeners are still running may be merged into one call
 * with the latest status. A new listener is not called with the status at
 * the time it subscribes: read znp_health_status() for that. Returns a handle
 * for znp_health_unsubscribe, or -1 when the listener table (32) is full.
 */
int znp_health_subscribe(znp_health_listener_fn fn, void *data);
/*
 * Remove a listener. When it returns, `fn` is no longer running on another
 * thread and will not be called again, so its data may be freed. Do not call
 * it while holding a lock that the listener takes.
 */
void znp_health_unsubscribe(int handle);

#endif
