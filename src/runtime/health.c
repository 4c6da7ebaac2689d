#include "runtime/health.h"

#include <pthread.h>
#include <stddef.h>

#define LISTENER_MAX 32

typedef struct listener {
    znp_health_listener_fn fn;
    void *data;
} listener_t;

/*
 * One thread at a time delivers status changes (the "notifier"). A thread
 * that changes the state while another one is notifying leaves the delivery
 * to it: the notifier rereads the status after each round, so listeners see
 * changes in order and always end on the current status.
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t idle; /* signalled when a notification round ends */
    int database_up;
    int migrations_current;
    int draining;
    znp_serving_t notified; /* the status listeners last received */
    int notifying;
    pthread_t notifier;
    listener_t listeners[LISTENER_MAX];
} state = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .idle = PTHREAD_COND_INITIALIZER,
    .notified = ZNP_SERVING_NOT_SERVING,
};

static znp_serving_t derive_locked(void)
{
    if (state.database_up && state.migrations_current && !state.draining)
        return ZNP_SERVING_SERVING;
    return ZNP_SERVING_NOT_SERVING;
}

/* Called with state.lock held; returns with it held. */
static void notify_locked(void)
{
    listener_t copy[LISTENER_MAX];
    znp_serving_t status;

    if (state.notifying)
        return;
    state.notifying = 1;
    state.notifier = pthread_self();

    while ((status = derive_locked()) != state.notified) {
        state.notified = status;
        for (size_t i = 0; i < LISTENER_MAX; i++)
            copy[i] = state.listeners[i];

        /* run the listeners with no lock held */
        pthread_mutex_unlock(&state.lock);
        for (size_t i = 0; i < LISTENER_MAX; i++) {
            if (copy[i].fn != NULL)
                copy[i].fn(copy[i].data, status);
        }
        pthread_mutex_lock(&state.lock);
    }

    state.notifying = 0;
    pthread_cond_broadcast(&state.idle);
}

static void set_flag(int *flag, int value)
{
    pthread_mutex_lock(&state.lock);
    *flag = value != 0;
    notify_locked();
    pthread_mutex_unlock(&state.lock);
}

void znp_health_init(void)
{
    pthread_mutex_lock(&state.lock);
    state.database_up = 0;
    state.migrations_current = 0;
    state.draining = 0;
    notify_locked();
    pthread_mutex_unlock(&state.lock);
}

void znp_health_set_database(int up)
{
    set_flag(&state.database_up, up);
}

void znp_health_set_migrations_current(int current)
{
    set_flag(&state.migrations_current, current);
}

void znp_health_set_draining(void)
{
    set_flag(&state.draining, 1);
}

znp_serving_t znp_health_status(void)
{
    znp_serving_t status;

    pthread_mutex_lock(&state.lock);
    status = derive_locked();
    pthread_mutex_unlock(&state.lock);
    return status;
}

int znp_health_database_up(void)
{
    int up;

    pthread_mutex_lock(&state.lock);
    up = state.database_up;
    pthread_mutex_unlock(&state.lock);
    return up;
}

int znp_health_subscribe(znp_health_listener_fn fn, void *data)
{
    int handle = -1;

    pthread_mutex_lock(&state.lock);
    for (size_t i = 0; i < LISTENER_MAX; i++) {
        if (state.listeners[i].fn == NULL) {
            state.listeners[i].fn = fn;
            state.listeners[i].data = data;
            handle = (int)i;
            break;
        }
    }
    pthread_mutex_unlock(&state.lock);
    return handle;
}

void znp_health_unsubscribe(int handle)
{
    if (handle < 0 || handle >= LISTENER_MAX)
        return;

    pthread_mutex_lock(&state.lock);
    state.listeners[handle].fn = NULL;
    state.listeners[handle].data = NULL;
    /*
     * A round in progress on another thread may still hold a copy of this
     * listener, so wait for it to end. A listener that unsubscribes itself
     * runs on the notifier thread and must not wait for its own round.
     */
    while (state.notifying && !pthread_equal(state.notifier, pthread_self()))
        pthread_cond_wait(&state.idle, &state.lock);
    pthread_mutex_unlock(&state.lock);
}
