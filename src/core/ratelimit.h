/*
 * Rate limit types shared by the generated operation table (the spec's
 * x-rate-limit extension) and the protect module, which enforces them.
 */
#ifndef ZNP_CORE_RATELIMIT_H
#define ZNP_CORE_RATELIMIT_H

#include <stdint.h>

/* A token bucket: per_minute tokens are added each minute up to burst; per_minute 0 means no limit. */
typedef struct znp_rate {
    uint32_t per_minute;
    uint32_t burst;
} znp_rate_t;

/* The limits of one operation, each counted separately. */
typedef struct znp_rate_limit {
    znp_rate_t ip;     /* per client IP, on the event loop before authentication */
    znp_rate_t user;   /* per signed-in user, after authentication */
    znp_rate_t global; /* every client of this instance together */
} znp_rate_limit_t;

#endif
