/*
 * The node-backend API (pull model): the UniProxy-style endpoints that node
 * backends such as XrayR and V2bX poll under /api/v1/server/UniProxy/, the
 * per-node backend tokens they authenticate with, the per-binding user-list
 * cache and the online-IP table. The operations themselves are declared in
 * generated/operations.gen.h; the wire format is in docs/node-api.md.
 */
#ifndef ZNP_UNIPROXY_H
#define ZNP_UNIPROXY_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/* Channel of the eligibility notifications sent by the triggers of migration 0016. */
#define ZNP_UNIPROXY_CHANNEL "znp_eligibility"
/* Channel of the node-token notifications (payload: the node id). */
#define ZNP_UNIPROXY_TOKEN_CHANNEL "znp_node_tokens"

/*
 * The node whose node-backend token is `token` (constant-time compare on a
 * hash), from an in-memory map kept fresh through NOTIFY, so a hit costs no
 * query. `db` is used only to load the map the first time (it may be NULL
 * once the map is loaded). Returns 0 and *node_id, or ZNP_E_UNAUTHENTICATED
 * when `token` is NULL or empty, ZNP_E_TOKEN_INVALID when it matches no node.
 */
int znp_uniproxy_token_node(PGconn *db, const char *token, int64_t *node_id);

/*
 * Bump the in-memory eligibility version, so every cached user list (and
 * every ETag derived from it) is stale from now on. Write paths call it
 * before they respond, and the watcher calls it on every ZNP_UNIPROXY_CHANNEL
 * notification. Safe from any thread, because it is one atomic increment.
 */
void znp_uniproxy_invalidate(void);

/* The current eligibility version (starts at 1). */
uint64_t znp_uniproxy_version(void);

/*
 * Forget the token map so the next lookup reloads it. The watcher calls it
 * on every ZNP_UNIPROXY_TOKEN_CHANNEL notification and after a reconnect.
 */
void znp_uniproxy_tokens_reset(void);

/*
 * Watcher hooks (src/cli/serve.c): on_notify for the two channels above
 * (anything else is ignored), and on_refresh after every (re)connect, since
 * notifications sent while disconnected are lost.
 */
void znp_uniproxy_on_notify(const char *channel, const char *payload);
void znp_uniproxy_on_reconnect(void);

/* Number of cached user lists (for tests and metrics). */
size_t znp_uniproxy_cache_size(void);

#endif
