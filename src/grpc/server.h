/*
 * The gRPC face (gRPC C core, its own port): grpc.health.v1.Health Check and
 * Watch for "" and "znp", following runtime/health.h, and znp's own services
 * from spec/proto, bridged onto the same operations as the HTTP routes.
 */
#ifndef ZNP_GRPC_SERVER_H
#define ZNP_GRPC_SERVER_H

#include "config/config.h"
#include "protect/protect.h"
#include "runtime/pool.h"

typedef struct znp_grpc_server znp_grpc_server_t;

/*
 * grpc_init, bind server.grpc_listen and start the completion-queue thread. *out owned by the caller.
 * Block SIGINT and SIGTERM in the calling thread first: gRPC starts threads that inherit the mask.
 * `protect` (may be NULL: no allow-list or rate limits) is the HTTP server's state, borrowed: bridged
 * calls take from the same buckets as HTTP requests. It must outlive the server.
 */
int znp_grpc_server_create(znp_grpc_server_t **out, const znp_config_t *config, znp_pool_t *pool,
                           znp_protect_t *protect);
/* The port server.grpc_listen is bound to: the one the kernel chose when it asked for port 0. Valid after create. */
int znp_grpc_server_port(znp_grpc_server_t *server);
/*
 * Send UNAVAILABLE to open Watch streams, shut down, cancel what is left, join, grpc_shutdown. Accepts NULL.
 * Bridged calls hold pool jobs, so call it after znp_pool_drain() and before znp_pool_destroy(); it waits up
 * to server.shutdown_timeout_ms for calls still on a worker before cancelling them.
 */
void znp_grpc_server_destroy(znp_grpc_server_t *server);

#endif
