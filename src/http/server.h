/*
 * The HTTP face: h2o event loops serving HTTP/1.1, h2c and TLS with ALPN h2.
 * Requests are routed on the loop thread; inline operations answer there,
 * others run on the worker pool and come back through
 * h2o_multithread_send_message.
 */
#ifndef ZNP_HTTP_SERVER_H
#define ZNP_HTTP_SERVER_H

#include <stddef.h>

#include "config/config.h"
#include "protect/protect.h"
#include "runtime/pool.h"

typedef struct znp_http_server znp_http_server_t;

/* Bind every configured listener (fails with a message on stderr/log if a port is taken). *out owned by the caller. */
int znp_http_server_create(znp_http_server_t **out, const znp_config_t *config, znp_pool_t *pool);
/* The port server.listen is bound to: the one the kernel chose when it asked for port 0. Valid after create. */
int znp_http_server_port(znp_http_server_t *server);
/* The port server.tls_listen is bound to, or -1 without a TLS listener. Valid after create. */
int znp_http_server_tls_port(znp_http_server_t *server);
/* The request protection (allow-list, buckets) the server created, for the gRPC face to share. Valid after create. */
znp_protect_t *znp_http_server_protect(znp_http_server_t *server);
/* Start the event-loop threads. */
int znp_http_server_start(znp_http_server_t *server);
/* Close the listeners; connections already open keep being served. Thread-safe. */
void znp_http_server_stop_listening(znp_http_server_t *server);
/* Wait up to `timeout_ms` for in-flight requests, then close every connection. Returns requests still open. */
size_t znp_http_server_drain(znp_http_server_t *server, unsigned timeout_ms);
/* Stop the threads and free everything. Accepts NULL. */
void znp_http_server_destroy(znp_http_server_t *server);

#endif
