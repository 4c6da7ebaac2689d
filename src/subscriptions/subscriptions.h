/* Subscriptions: the parts other modules call outside the generated operations. */
#ifndef ZNP_SUBSCRIPTIONS_H
#define ZNP_SUBSCRIPTIONS_H

#include <libpq-fe.h>

#include "config/config.h"

/* Statuses of subscriptions.status. */
enum {
    ZNP_SUBSCRIPTION_ACTIVE = 1,
    ZNP_SUBSCRIPTION_DISABLED = 2,
    ZNP_SUBSCRIPTION_EXPIRED = 3,
    ZNP_SUBSCRIPTION_QUOTA_USED_UP = 4, /* set and cleared only by the subscriptions.expire job */
};

#define ZNP_SUBSCRIPTIONS_EXPIRE_JOB "subscriptions.expire"
#define ZNP_SUBSCRIPTIONS_CHANNEL    "znp_subscriptions"

/*
 * The scheduled job subscriptions.expire, run inside the scheduler's
 * transaction on `db`: active or quota-used-up subscriptions past expires_at
 * become expired; active ones whose used traffic reached a total above 0
 * become quota used up; quota-used-up ones with room again become active,
 * unless the user already has another effective subscription (single-active
 * rule). Each change writes a system audit row and a NOTIFY on
 * znp_subscriptions with the subscription id; both take effect on commit.
 */
int znp_subscriptions_expire(PGconn *db, const znp_config_t *config);

#endif
