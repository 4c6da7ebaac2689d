/*
 * When the status poller polls a node next: pure functions of the poll
 * settings, the remembered state, the time and a random value, so the unit
 * tests drive them with any clock.
 */
#include "kernel/kernel.h"

#include <math.h>

int64_t znp_kernel_backoff_ms(const znp_kernel_poll_settings_t *s, uint32_t failures, uint32_t random)
{
    double base = (double)(s->interval_s > 0 ? s->interval_s : 1) * 1000.0;
    double cap = (double)s->max_interval_s * 1000.0;
    double delay = base;
    double jitter = s->jitter;
    double unit;

    if (jitter < 0)
        jitter = 0;
    if (jitter > 1)
        jitter = 1;

    if (!s->backoff_enabled)
        return (int64_t)base;
    if (cap <= 0 || cap < base)
        cap = base;
    for (uint32_t i = 0; i < failures && delay < cap; i++)
        delay *= s->multiplier > 1 ? s->multiplier : 1;
    if (delay > cap)
        delay = cap;
    unit = (double)random / 4294967295.0; /* 0..1 */
    delay *= 1.0 + jitter * (2.0 * unit - 1.0);
    if (delay < base)
        delay = base;
    return (int64_t)llround(delay);
}

int64_t znp_kernel_probe_ms(const znp_kernel_poll_settings_t *s, uint32_t attempt)
{
    int64_t seconds = 1 + 2 * (int64_t)attempt;

    if (s->probe_max_s > 0 && seconds > s->probe_max_s)
        seconds = s->probe_max_s;
    return seconds * 1000;
}

void znp_kernel_poll_advance(znp_kernel_poll_state_t *state, const znp_kernel_poll_settings_t *s, int ok, int probing,
                             int64_t now_ms, int64_t day, int64_t day_end_ms, uint32_t random)
{
    int64_t next;

    if (ok) {
        state->failures = 0;
        state->probe_attempts = 0;
        state->probe_day = day;
        state->next_due_ms = now_ms + (s->interval_s > 0 ? s->interval_s : 1) * 1000;
        return;
    }
    if (state->failures < UINT32_MAX)
        state->failures++;
    next = now_ms + znp_kernel_backoff_ms(s, state->failures, random);
    if (probing) {
        int64_t probe_at;

        if (state->probe_day != day) {
            state->probe_day = day;
            state->probe_attempts = 0;
        }
        probe_at = now_ms + znp_kernel_probe_ms(s, state->probe_attempts);
        if (state->probe_attempts < UINT32_MAX)
            state->probe_attempts++;
        if (day_end_ms > now_ms && probe_at > day_end_ms)
            probe_at = day_end_ms;
        if (probe_at < next)
            next = probe_at;
    }
    state->next_due_ms = next;
}
