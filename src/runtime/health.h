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

void znp_health_init(void);
void znp_health_set_database(int up);
void znp_health_set_migrations_current(int current);
void znp_health_set_draining(void);

znp_serving_t znp_health_status(void);
int znp_health_database_up(void);

/*
 * Register `fn` to be called (from whichever thread changed the state, with no
 * internal lock held) after every status change. Returns a handle for
 * znp_health_unsubscribe, or -1 when the listener table is full.
 */
int znp_health_subscribe(znp_health_listener_fn fn, void *data);
void znp_health_unsubscribe(int handle);

#endif
