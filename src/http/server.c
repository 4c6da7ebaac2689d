/*
 * Listeners, event-loop threads and shutdown of the HTTP face.
 *
 * Each loop thread has its own h2o context and its own SO_REUSEPORT socket
 * per configured address, so the kernel spreads connections over the loops.
 * Other threads talk to a loop only through h2o_multithread messages on its
 * context queue: control commands here, finished jobs in request.c.
 *
 * Shutdown: stop_listening closes every loop's listeners. drain sends GOAWAY
 * (HTTP/2), makes HTTP/1 connections close after their current response,
 * closes idle HTTP/1 connections and waits for in-flight requests. The close
 * command then sends 503 shutting_down to requests still waiting for a
 * worker and expires every idle and handshake timeout early. It shuts down
 * the read side of every remaining connection, so h2o closes them.
 */
#include "http/internal.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/dispatch.h"
#include "core/log.h"

#define LOG_MODULE             "http"
#define DEFAULT_MAX_BODY_BYTES (1u << 20)
/*
 * h2o 2.2.5 resets the stream (RST_STREAM) of an HTTP/2 body over its own limit
 * instead of responding, and calls no handler before the body is complete.
 * Its limit is therefore ours plus this margin: bodies up to the margin over
 * our limit reach the handler, which responds 413 with the error envelope.
 * Larger HTTP/2 bodies are still reset, and each stream may buffer up to
 * max_body_bytes + margin.
 */
#define H2O_BODY_MARGIN_BYTES (4u << 20)
#define ACCEPTS_PER_EVENT     32   /* bound the accept loop so one busy listener does not starve the rest */
#define CLOSE_GRACE_MS        1000 /* after the close command, time for connections to finish closing */
#define CLOSE_FORCE_AFTER_MS  200  /* then connections still open have their read side shut down */
#define WAIT_STEP_MS          10

enum control_command {
    CONTROL_STOP_LISTENING,
    CONTROL_DRAIN,
    CONTROL_CLOSE,
};

typedef struct control_message {
    h2o_multithread_message_t super;
    enum control_command command;
} control_message_t;

static uint64_t monotonic_ms(void)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec delay = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&delay, &delay) != 0 && errno == EINTR)
        ;
}

static void log_ssl_error(const char *what, const char *path)
{
    char detail[256] = "unknown error";
    unsigned long code = ERR_get_error();

    if (code != 0)
        ERR_error_string_n(code, detail, sizeof(detail));
    ZNP_ERROR(LOG_MODULE, NULL, "%s path=\"%s\" error=\"%s\"", what, path != NULL ? path : "", detail);
    ERR_clear_error();
}

static SSL_CTX *create_ssl_context(const znp_config_server_t *config)
{
    SSL_CTX *ssl_ctx = NULL;

    if (config->tls_cert == NULL || config->tls_key == NULL) {
        ZNP_ERROR(LOG_MODULE, NULL, "server.tls_listen is set but server.tls_cert or server.tls_key is missing");
        return NULL;
    }
    ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (ssl_ctx == NULL) {
        log_ssl_error("could not create the TLS context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ssl_ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* TLS 1.2 suites restricted to forward-secret AEAD ones, which HTTP/2 requires (RFC 9113 section 9.2.2) */
    if (SSL_CTX_set_cipher_list(ssl_ctx, "ECDHE+AESGCM:ECDHE+CHACHA20") != 1) {
        log_ssl_error("could not set the TLS 1.2 cipher list", NULL);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ssl_ctx, config->tls_cert) != 1) {
        log_ssl_error("could not load the TLS certificate chain (server.tls_cert)", config->tls_cert);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ssl_ctx, config->tls_key, SSL_FILETYPE_PEM) != 1) {
        log_ssl_error("could not load the TLS private key (server.tls_key)", config->tls_key);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ssl_ctx) != 1) {
        log_ssl_error("the TLS private key does not match the certificate", config->tls_key);
        goto fail;
    }
    h2o_ssl_register_alpn_protocols(ssl_ctx, h2o_http2_alpn_protocols);
    return ssl_ctx;

fail:
    SSL_CTX_free(ssl_ctx);
    return NULL;
}

/* Parse "HOST:PORT", "[IPv6]:PORT", ":PORT" or "*:PORT" (the last two mean every IPv4 address). */
static int resolve_listener(znp_http_listener_t *out, const char *address, int tls)
{
    char host[256];
    const char *colon = strrchr(address, ':');
    const char *host_start = address;
    size_t host_len;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *found = NULL;
    int rc;

    snprintf(out->address, sizeof(out->address), "%s", address);
    out->tls = tls;
    if (colon == NULL || colon[1] == '\0') {
        ZNP_ERROR(LOG_MODULE, NULL, "invalid listen address, expected HOST:PORT address=\"%s\"", address);
        return ZNP_E_INTERNAL;
    }
    host_len = (size_t)(colon - address);
    if (host_len >= 2 && address[0] == '[' && address[host_len - 1] == ']') {
        host_start++;
        host_len -= 2;
    }
    if (host_len >= sizeof(host)) {
        ZNP_ERROR(LOG_MODULE, NULL, "listen host name is too long address=\"%s\"", address);
        return ZNP_E_INTERNAL;
    }
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    if (host_len == 0 || strcmp(host, "*") == 0) {
        snprintf(host, sizeof(host), "0.0.0.0");
        hints.ai_family = AF_INET;
    }

    rc = getaddrinfo(host, colon + 1, &hints, &found);
    if (rc != 0 || found == NULL) {
        ZNP_ERROR(LOG_MODULE, NULL, "could not resolve listen address address=\"%s\" error=\"%s\"", address,
                  gai_strerror(rc));
        if (found != NULL)
            freeaddrinfo(found);
        return ZNP_E_INTERNAL;
    }
    memcpy(&out->addr, found->ai_addr, found->ai_addrlen);
    out->addr_len = found->ai_addrlen;
    freeaddrinfo(found);
    return 0;
}

static uint16_t listener_port(const znp_http_listener_t *listener)
{
    if (listener->addr.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&listener->addr)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&listener->addr)->sin_port);
}

static void set_listener_port(znp_http_listener_t *listener, uint16_t port)
{
    if (listener->addr.ss_family == AF_INET6)
        ((struct sockaddr_in6 *)&listener->addr)->sin6_port = htons(port);
    else
        ((struct sockaddr_in *)&listener->addr)->sin_port = htons(port);
}

/*
 * SO_REUSEPORT lets another process of the same user bind the same port and
 * silently share our connections. So first bind a probe socket without it:
 * that fails while anyone listens there. Port 0 takes the kernel's pick from
 * the probe, so that all loops bind the same port.
 */
static int probe_listener(znp_http_listener_t *listener)
{
    int one = 1;
    int fd = socket(listener->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (struct sockaddr *)&listener->addr, listener->addr_len) != 0) {
        ZNP_ERROR(LOG_MODULE, NULL, "could not listen address=\"%s\" error=\"%s\"", listener->address, strerror(errno));
        if (fd >= 0)
            close(fd);
        return ZNP_E_INTERNAL;
    }
    if (listener_port(listener) == 0) {
        struct sockaddr_storage bound;
        socklen_t len = sizeof(bound);

        if (getsockname(fd, (struct sockaddr *)&bound, &len) != 0) {
            close(fd);
            return ZNP_E_INTERNAL;
        }
        set_listener_port(listener, bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                                                : ntohs(((struct sockaddr_in *)&bound)->sin_port));
    }
    close(fd);
    return 0;
}

static int open_listener_socket(const znp_http_listener_t *listener)
{
    int one = 1;
    int fd = socket(listener->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

    if (fd < 0)
        goto fail;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
        goto fail;
    if (bind(fd, (struct sockaddr *)&listener->addr, listener->addr_len) != 0 || listen(fd, SOMAXCONN) != 0)
        goto fail;
    return fd;

fail:
    ZNP_ERROR(LOG_MODULE, NULL, "could not listen address=\"%s\" port=%u error=\"%s\"", listener->address,
              (unsigned)listener_port(listener), strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}

static size_t default_loop_count(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    return cores > 0 ? (size_t)cores : 1;
}

static znp_locale_t parse_locale(const char *name)
{
    if (name != NULL && (strcasecmp(name, "zh-CN") == 0 || strcasecmp(name, "zh") == 0))
        return ZNP_LOCALE_ZH_CN;
    return ZNP_LOCALE_EN;
}

static void configure_h2o(znp_http_server_t *server)
{
    const znp_config_server_t *config = &server->config->server;
    h2o_hostconf_t *host;

    h2o_config_init(&server->globalconf);
    server->globalconf_ready = 1;
    /* no Server header: it names the software to scanners and costs HPACK work on each response */
    server->globalconf.server_name = h2o_iovec_init(H2O_STRLIT(""));
    server->globalconf.max_request_entity_size = server->max_body_bytes + H2O_BODY_MARGIN_BYTES;
    if (config->read_timeout_ms > 0) {
        /* HTTP/1: headers and body of a request, and the keep-alive wait for the next one */
        server->globalconf.http1.req_timeout = config->read_timeout_ms;
        server->globalconf.handshake_timeout = config->read_timeout_ms;
    }
    if (config->idle_timeout_ms > 0)
        server->globalconf.http2.idle_timeout = config->idle_timeout_ms;
    znp_http__stream_set_stall_timeout(config->idle_timeout_ms);

    host = h2o_config_register_host(&server->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    znp_http__register_handlers(server, host);
}

int znp_http_server_create(znp_http_server_t **out, const znp_config_t *config, znp_pool_t *pool)
{
    znp_http_server_t *server = NULL;
    const znp_config_server_t *sc = &config->server;
    int rc = ZNP_E_INTERNAL;

    *out = NULL;
    server = calloc(1, sizeof(*server));
    if (server == NULL)
        return ZNP_E_INTERNAL;
    server->config = config;
    server->pool = pool;
    server->default_locale = parse_locale(sc->default_locale);
    server->max_body_bytes = sc->max_body_bytes > 0 ? (size_t)sc->max_body_bytes : DEFAULT_MAX_BODY_BYTES;
    pthread_mutex_init(&server->lock, NULL);
    pthread_cond_init(&server->changed, NULL);
    atomic_init(&server->in_flight, 0);
    atomic_init(&server->draining, 0);

    /* addresses */
    if (resolve_listener(&server->listeners[server->listener_count], sc->listen != NULL ? sc->listen : "127.0.0.1:8080",
                         0) != 0)
        goto cleanup;
    server->listener_count++;
    if (sc->tls_listen != NULL && sc->tls_listen[0] != '\0') {
        if (resolve_listener(&server->listeners[server->listener_count], sc->tls_listen, 1) != 0)
            goto cleanup;
        server->listener_count++;
        server->ssl_ctx = create_ssl_context(sc);
        if (server->ssl_ctx == NULL)
            goto cleanup;
    }

    /* client IP, CORS, rate limits and the admin allow-list, shared by every loop */
    if (znp_protect_create(&server->protect, config, NULL, NULL) != 0) {
        ZNP_ERROR(LOG_MODULE, NULL, "could not set up the request protection (out of memory)");
        goto cleanup;
    }

    /* h2o configuration, shared read-only by every loop */
    server->docs_available = znp_http__docs_available(sc->docs_dir);
    if (!server->docs_available)
        ZNP_WARN(LOG_MODULE, NULL, "Swagger UI files not found, /docs shows how to install them docs_dir=\"%s\"",
                 sc->docs_dir != NULL ? sc->docs_dir : "");
    configure_h2o(server);

    /* one socket per loop and address */
    server->loop_count = sc->threads > 0 ? sc->threads : default_loop_count();
    server->loops = calloc(server->loop_count, sizeof(*server->loops));
    if (server->loops == NULL)
        goto cleanup;
    for (size_t i = 0; i < server->loop_count; i++) {
        for (size_t j = 0; j < ZNP_HTTP_MAX_LISTENERS; j++)
            server->loops[i].fds[j] = -1;
    }
    for (size_t j = 0; j < server->listener_count; j++) {
        if (probe_listener(&server->listeners[j]) != 0)
            goto cleanup;
        for (size_t i = 0; i < server->loop_count; i++) {
            server->loops[i].fds[j] = open_listener_socket(&server->listeners[j]);
            if (server->loops[i].fds[j] < 0)
                goto cleanup;
        }
        ZNP_INFO(LOG_MODULE, NULL, "listening address=\"%s\" port=%u protocols=\"%s\" loops=%zu",
                 server->listeners[j].address, (unsigned)listener_port(&server->listeners[j]),
                 server->listeners[j].tls ? "TLS (ALPN h2, http/1.1)" : "HTTP/1.1, h2c", server->loop_count);
    }

    *out = server;
    server = NULL;
    rc = 0;

cleanup:
    znp_http_server_destroy(server);
    return rc;
}

int znp_http_server_port(znp_http_server_t *server)
{
    if (server == NULL || server->listener_count == 0)
        return -1;
    return listener_port(&server->listeners[0]);
}

znp_protect_t *znp_http_server_protect(znp_http_server_t *server)
{
    return server->protect;
}

int znp_http_server_tls_port(znp_http_server_t *server)
{
    if (server == NULL)
        return -1;
    for (size_t j = 0; j < server->listener_count; j++) {
        if (server->listeners[j].tls)
            return listener_port(&server->listeners[j]);
    }
    return -1;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    h2o_accept_ctx_t *accept_ctx = listener->data;
    h2o_socket_t *sock;

    if (err != NULL)
        return;
    for (int i = 0; i < ACCEPTS_PER_EVENT && (sock = h2o_evloop_socket_accept(listener)) != NULL; i++)
        h2o_accept(accept_ctx, sock);
}

static void close_listeners(znp_http_loop_t *loop)
{
    for (size_t j = 0; j < ZNP_HTTP_MAX_LISTENERS; j++) {
        if (loop->sockets[j] != NULL) {
            h2o_socket_read_stop(loop->sockets[j]);
            h2o_socket_close(loop->sockets[j]);
            loop->sockets[j] = NULL;
        }
    }
    if (loop->listening) {
        loop->listening = 0;
        pthread_mutex_lock(&loop->server->lock);
        loop->server->loops_not_listening++;
        pthread_cond_broadcast(&loop->server->changed);
        pthread_mutex_unlock(&loop->server->lock);
    }
}

/* foreach_request callback: shut down the read side of idle HTTP/1 connections (no request bytes yet). */
static int shutdown_if_idle(h2o_req_t *req, void *data)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    char byte;

    (void)data;
    if (sock == NULL || req->timestamps.request_begin_at.tv_sec != 0)
        return 0;
    /* bytes already waiting are a request h2o has not read yet; let it be served */
    if (recv(h2o_socket_get_fd(sock), &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
        return 0;
    shutdown(h2o_socket_get_fd(sock), SHUT_RD);
    return 0;
}

/* foreach_request callback: shut down the read side of the request's connection, whatever it is doing. */
static int shutdown_connection(h2o_req_t *req, void *data)
{
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);

    (void)data;
    if (sock != NULL)
        shutdown(h2o_socket_get_fd(sock), SHUT_RD);
    return 0;
}

static void begin_drain(znp_http_loop_t *loop)
{
    if (loop->draining)
        return;
    loop->draining = 1;
    close_listeners(loop);
    /* GOAWAY on HTTP/2; HTTP/1 connections stop keep-alive after the current response */
    h2o_context_request_shutdown(&loop->ctx);
    loop->ctx.globalconf->http1.callbacks.foreach_request(&loop->ctx, shutdown_if_idle, NULL);
}

/* Fire the entries of `timeout` now, as if they had expired: h2o then closes those connections itself. */
static void expire_timeouts(znp_http_loop_t *loop, h2o_timeout_t *timeout)
{
    h2o_timeout_run(loop->evloop, timeout, h2o_now(loop->evloop) + timeout->timeout);
}

static int connections_left(znp_http_loop_t *loop)
{
    return !h2o_linklist_is_empty(&loop->ctx.http1._conns) || !h2o_linklist_is_empty(&loop->ctx.http2._conns) ||
           !h2o_linklist_is_empty(&loop->ctx.handshake_timeout._entries);
}

/*
 * Close what is left: expire idle and handshake timeouts (h2o closes those
 * connections itself) and, when `force` is set, shut down the read side of
 * every connection that still carries a request, so h2o reads end of stream.
 */
static void close_connections(znp_http_loop_t *loop, int force)
{
    h2o_globalconf_t *globalconf = loop->ctx.globalconf;

    expire_timeouts(loop, &loop->ctx.handshake_timeout);
    expire_timeouts(loop, &loop->ctx.http1.req_timeout);
    expire_timeouts(loop, &loop->ctx.http2.idle_timeout);
    if (force) {
        globalconf->http1.callbacks.foreach_request(&loop->ctx, shutdown_connection, NULL);
        globalconf->http2.callbacks.foreach_request(&loop->ctx, shutdown_connection, NULL);
    }
}

static void on_control(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages)
{
    znp_http_loop_t *loop = H2O_STRUCT_FROM_MEMBER(znp_http_loop_t, control, receiver);

    while (!h2o_linklist_is_empty(messages)) {
        control_message_t *message = H2O_STRUCT_FROM_MEMBER(control_message_t, super.link, messages->next);

        h2o_linklist_unlink(&message->super.link);
        switch (message->command) {
        case CONTROL_STOP_LISTENING:
            close_listeners(loop);
            break;
        case CONTROL_DRAIN:
            begin_drain(loop);
            break;
        case CONTROL_CLOSE:
            loop->exit_requested = 1;
            break;
        }
        free(message);
    }
}

static int send_control(znp_http_loop_t *loop, enum control_command command)
{
    control_message_t *message = calloc(1, sizeof(*message));

    if (message == NULL)
        return -1;
    message->command = command;
    h2o_multithread_send_message(&loop->control, &message->super);
    return 0;
}

static void mark_ready(znp_http_server_t *server)
{
    pthread_mutex_lock(&server->lock);
    server->loops_ready++;
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
}

/* After the close command: respond, close and free everything the loop owns. Returns 0 when all was freed. */
static int shut_down_loop(znp_http_loop_t *loop)
{
    znp_http_mailbox_t *mailbox = loop->mailbox;
    uint64_t started = monotonic_ms();
    h2o_linklist_t late;

    close_listeners(loop);
    if (!loop->ctx.shutdown_requested)
        h2o_context_request_shutdown(&loop->ctx);
    znp_http__abandon_jobs(loop);
    close_connections(loop, 0);
    while (connections_left(loop) && monotonic_ms() - started < CLOSE_GRACE_MS) {
        h2o_evloop_run(loop->evloop, WAIT_STEP_MS);
        /* the first moments let the responses just queued be written */
        close_connections(loop, monotonic_ms() - started >= CLOSE_FORCE_AFTER_MS);
    }

    /* no worker sends to this loop after this; free what already arrived */
    pthread_mutex_lock(&mailbox->lock);
    mailbox->open = 0;
    pthread_mutex_unlock(&mailbox->lock);
    h2o_linklist_init_anchor(&late);
    h2o_linklist_insert_list(&late, &loop->replies._messages);
    znp_http__discard_replies(&late);

    if (connections_left(loop)) {
        /* h2o_context_dispose() would abort on the connections' linked timeouts */
        ZNP_WARN(LOG_MODULE, NULL, "connections still open after shutdown, leaving the loop allocated loop=%zu",
                 loop->index);
        return -1;
    }

    /* h2o_context_request_shutdown() links a 1 s HTTP/2 timer even without connections */
    if (h2o_timeout_is_linked(&loop->ctx.http2._graceful_shutdown_timeout))
        h2o_timeout_unlink(&loop->ctx.http2._graceful_shutdown_timeout);
    h2o_multithread_unregister_receiver(loop->ctx.queue, &loop->control);
    h2o_multithread_unregister_receiver(loop->ctx.queue, &loop->replies);
    h2o_context_dispose(&loop->ctx);
    h2o_evloop_destroy(loop->evloop);
    loop->evloop = NULL;
    for (size_t i = 0; loop->answers != NULL && i < znp_operation_count; i++)
        free(loop->answers[i].body);
    free(loop->answers);
    loop->answers = NULL;
    return 0;
}

static void *loop_main(void *arg)
{
    znp_http_loop_t *loop = arg;
    znp_http_server_t *server = loop->server;
    sigset_t blocked;

    /* signals belong to the main thread's sigwait; SIGPIPE on a closed peer becomes EPIPE */
    sigfillset(&blocked);
    pthread_sigmask(SIG_BLOCK, &blocked, NULL);

    loop->evloop = h2o_evloop_create();
    h2o_context_init(&loop->ctx, loop->evloop, &server->globalconf);
    h2o_multithread_register_receiver(loop->ctx.queue, &loop->control, on_control);
    h2o_multithread_register_receiver(loop->ctx.queue, &loop->replies, znp_http__on_replies);
    h2o_linklist_init_anchor(&loop->jobs);
    /* NULL when out of memory: inline answers are then encoded every time */
    loop->answers = calloc(znp_operation_count, sizeof(*loop->answers));
    loop->mailbox->receiver = &loop->replies;
    loop->mailbox->open = 1;

    for (size_t j = 0; j < server->listener_count; j++) {
        loop->accept[j].ctx = &loop->ctx;
        loop->accept[j].hosts = server->globalconf.hosts;
        loop->accept[j].ssl_ctx = server->listeners[j].tls ? server->ssl_ctx : NULL;
        loop->sockets[j] = h2o_evloop_socket_create(loop->evloop, loop->fds[j], H2O_SOCKET_FLAG_DONT_READ);
        loop->fds[j] = -1; /* owned by the socket now */
        loop->sockets[j]->data = &loop->accept[j];
        h2o_socket_read_start(loop->sockets[j], on_accept);
    }
    loop->listening = 1;
    mark_ready(server);

    while (!loop->exit_requested)
        h2o_evloop_run(loop->evloop, INT32_MAX);

    shut_down_loop(loop);
    return NULL;
}

int znp_http_server_start(znp_http_server_t *server)
{
    int rc = 0;

    for (size_t i = 0; i < server->loop_count; i++) {
        znp_http_loop_t *loop = &server->loops[i];

        loop->server = server;
        loop->index = i;
        loop->mailbox = calloc(1, sizeof(*loop->mailbox));
        if (loop->mailbox == NULL) {
            rc = ZNP_E_INTERNAL;
            break;
        }
        pthread_mutex_init(&loop->mailbox->lock, NULL);
        atomic_init(&loop->mailbox->refs, 1); /* the loop's own reference */
        int error = pthread_create(&loop->thread, NULL, loop_main, loop);

        if (error != 0) {
            ZNP_ERROR(LOG_MODULE, NULL, "could not start event-loop thread loop=%zu error=\"%s\"", i, strerror(error));
            rc = ZNP_E_INTERNAL;
            break;
        }
        loop->thread_started = 1;
    }

    /* receivers must exist before anyone sends a control message */
    pthread_mutex_lock(&server->lock);
    for (;;) {
        size_t started = 0;

        for (size_t i = 0; i < server->loop_count; i++)
            started += server->loops[i].thread_started;
        if (server->loops_ready >= started)
            break;
        pthread_cond_wait(&server->changed, &server->lock);
    }
    pthread_mutex_unlock(&server->lock);
    if (rc == 0)
        ZNP_INFO(LOG_MODULE, NULL, "HTTP server started loops=%zu", server->loop_count);
    return rc;
}

void znp_http_server_stop_listening(znp_http_server_t *server)
{
    size_t running = 0;

    if (server == NULL)
        return;
    pthread_mutex_lock(&server->lock);
    if (server->closing) {
        pthread_mutex_unlock(&server->lock);
        return;
    }
    for (size_t i = 0; i < server->loop_count; i++) {
        if (server->loops[i].thread_started && send_control(&server->loops[i], CONTROL_STOP_LISTENING) == 0)
            running++;
    }
    while (server->loops_not_listening < running)
        pthread_cond_wait(&server->changed, &server->lock);
    pthread_mutex_unlock(&server->lock);

    /* sockets of loops that never started */
    for (size_t i = 0; i < server->loop_count; i++) {
        for (size_t j = 0; j < ZNP_HTTP_MAX_LISTENERS; j++) {
            if (!server->loops[i].thread_started && server->loops[i].fds[j] >= 0) {
                close(server->loops[i].fds[j]);
                server->loops[i].fds[j] = -1;
            }
        }
    }
    ZNP_INFO(LOG_MODULE, NULL, "stopped listening");
}

static void send_close(znp_http_server_t *server)
{
    pthread_mutex_lock(&server->lock);
    if (!server->closing) {
        server->closing = 1;
        for (size_t i = 0; i < server->loop_count; i++) {
            if (server->loops[i].thread_started)
                send_control(&server->loops[i], CONTROL_CLOSE);
        }
    }
    pthread_mutex_unlock(&server->lock);
}

size_t znp_http_server_drain(znp_http_server_t *server, unsigned timeout_ms)
{
    uint64_t deadline = monotonic_ms() + timeout_ms;
    size_t left;

    if (server == NULL)
        return 0;
    atomic_store(&server->draining, 1);
    pthread_mutex_lock(&server->lock);
    for (size_t i = 0; i < server->loop_count && !server->closing; i++) {
        if (server->loops[i].thread_started)
            send_control(&server->loops[i], CONTROL_DRAIN);
    }
    pthread_mutex_unlock(&server->lock);

    while ((left = atomic_load(&server->in_flight)) > 0 && monotonic_ms() < deadline)
        sleep_ms(WAIT_STEP_MS);
    if (left > 0)
        ZNP_WARN(LOG_MODULE, NULL,
                 "drain timed out, closing connections with requests in flight requests=%zu "
                 "timeout_ms=%u",
                 left, timeout_ms);
    else
        ZNP_INFO(LOG_MODULE, NULL, "drained, closing connections");
    send_close(server);
    return left;
}

void znp_http_server_destroy(znp_http_server_t *server)
{
    if (server == NULL)
        return;

    send_close(server);
    for (size_t i = 0; server->loops != NULL && i < server->loop_count; i++) {
        znp_http_loop_t *loop = &server->loops[i];

        if (loop->thread_started)
            pthread_join(loop->thread, NULL);
        for (size_t j = 0; j < ZNP_HTTP_MAX_LISTENERS; j++) {
            if (loop->fds[j] >= 0)
                close(loop->fds[j]);
        }
        if (loop->mailbox != NULL)
            znp_http__mailbox_release(loop->mailbox);
    }
    /*
     * A loop that could not close its connections kept its context, which
     * points into globalconf; keep that too rather than free memory in use.
     */
    int all_freed = 1;

    for (size_t i = 0; server->loops != NULL && i < server->loop_count; i++) {
        if (server->loops[i].evloop != NULL)
            all_freed = 0;
    }
    if (!all_freed)
        return;

    free(server->loops);
    if (server->globalconf_ready)
        h2o_config_dispose(&server->globalconf);
    if (server->ssl_ctx != NULL)
        SSL_CTX_free(server->ssl_ctx);
    znp_protect_destroy(server->protect);
    pthread_cond_destroy(&server->changed);
    pthread_mutex_destroy(&server->lock);
    free(server);
}
