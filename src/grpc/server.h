/*
 * The gRPC face (gRPC C core, its own port): grpc.health.v1.Health Check and
 * Watch for "" and "znp", following runtime/health.h, and znp's own services
 * from spec/proto, bridged onto the same operations as the HTTP routes.
 */
#ifndef ZNP_GRPC_SERVER_H
#define ZNP_GRPC_SERVER_H

#include "config/config.h"
#include "runtime/pool.h"

typedef struct znp_grpc_server znp_grpc_server_t;

/* grpc_init, bind server.grpc_listen and start the completion-queue thread. *out owned by the caller. */
int znp_grpc_server_create(znp_grpc_server_t **out, const znp_config_t *config, znp_pool_t *pool);
/* Send UNAVAILABLE to open Watch streams, shut down, cancel what is left, join, grpc_shutdown. Accepts NULL. */
void znp_grpc_server_destroy(znp_grpc_server_t *server);

#endif
