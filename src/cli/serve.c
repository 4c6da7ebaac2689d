/*
 * znp serve: start everything in a fixed order, wait for signals, then drain
 * and stop in reverse.
 *
 * Start: configuration (file, environment, options, validation), secrets,
 * log, signal mask, database (embedded cluster when no DSN), migrations,
 * demo seed, site cache, health and metrics, watcher, worker pool, gRPC,
 * HTTP. Then one line "znp: listening http=HOST:PORT grpc=HOST:PORT" on
 * stderr, with the real ports when port 0 was asked for.
 *
 * Signals are blocked before the first thread exists (gRPC, h2o, the pool and
 * the watcher start threads that would otherwise receive them) and taken
 * with sigwait: SIGHUP reopens the log file, SIGINT and SIGTERM shut down.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bindings/bindings.h"
#include "core/log.h"
#include "download/download.h"
#include "grpc/server.h"
#include "http/server.h"
#include "identity/identity.h"
#include "jobs/jobs.h"
#include "kernel/kernel.h"
#include "mail/mail.h"
#include "runtime/health.h"
#include "runtime/metrics.h"
#include "runtime/pool.h"
#include "runtime/watcher.h"
#include "uniproxy/uniproxy.h"
#include "security/security.h"
#include "subscriptions/reset.h"
#include "subscriptions/subscriptions.h"
#include "system/site.h"
#include "traffic/traffic.h"
#include "znp_version.h"

#define LOG_TAG "serve"

static const char serve_usage[] =
    "Usage: znp serve [--config FILE] [--listen HOST:PORT] [--grpc-listen HOST:PORT]\n"
    "                 [--data-dir DIR] [--demo]\n"
    "\n"
    "Run the HTTP server (HTTP/1.1, h2c, and TLS with ALPN h2 when server.tls_listen is\n"
    "set) and the gRPC server until SIGINT or SIGTERM, which drain in-flight requests\n"
    "for up to server.shutdown_timeout_ms. SIGHUP reopens log.file.\n"
    "\n"
    "With no database.dsn, a private PostgreSQL cluster is created and started under\n"
    "database.data_dir. Pending migrations are applied when database.auto_migrate is on.\n"
    "When everything is bound, one line is printed on stderr:\n"
    "  znp: listening http=HOST:PORT grpc=HOST:PORT\n"
    "\n"
    "Options (each overrides the configuration file):\n"
    "  --config FILE           configuration file (default: $ZNP_CONFIG, else built-in defaults)\n"
    "  --listen HOST:PORT      HTTP address (server.listen); port 0 picks a free port\n"
    "  --grpc-listen HOST:PORT gRPC address (server.grpc_listen); port 0 picks a free port\n"
    "  --data-dir DIR          state directory (database.data_dir)\n"
    "  --demo                  seed demo content once: an admin admin@example.com with a\n"
    "                          random password printed on stdout, when no admin exists\n"
    "  -h, --help              print this help\n"
    "\n" CLI_EXIT_CODES_HELP;

typedef struct serve_options {
    const char *config_path;
    const char *listen;
    const char *grpc_listen;
    const char *data_dir;
    int demo;
} serve_options_t;

typedef struct server {
    znp_config_t *config;
    znp_embedded_pg_t *embedded;
    char *dsn;
    znp_watcher_t *watcher;
    znp_pool_t *pool;
    znp_jobs_runner_t *jobs;
    znp_grpc_server_t *grpc;
    znp_http_server_t *http;
} server_t;

static int parse_options(serve_options_t *opts, int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"grpc-listen", required_argument, NULL, 'g'},
        {"data-dir", required_argument, NULL, 'd'},
        {"demo", no_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            opts->config_path = optarg;
            break;
        case 'l':
            opts->listen = optarg;
            break;
        case 'g':
            opts->grpc_listen = optarg;
            break;
        case 'd':
            opts->data_dir = optarg;
            break;
        case 'D':
            opts->demo = 1;
            break;
        case 'h':
            fputs(serve_usage, stdout);
            return -1;
        case ':':
            return cli_usage_error("serve", "option %s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("serve", "unknown option \"%s\"", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("serve", "unexpected argument \"%s\"", argv[optind]);
    return 0;
}

/* Load the file, apply the command-line overrides, validate, and fill in missing secrets. */
static int load_config(znp_config_t **out, const serve_options_t *opts)
{
    static const struct {
        const char *key;
        const char *option;
        size_t offset;
    } overrides[] = {
        {"server.listen", "--listen", offsetof(serve_options_t, listen)},
        {"server.grpc_listen", "--grpc-listen", offsetof(serve_options_t, grpc_listen)},
        {"database.data_dir", "--data-dir", offsetof(serve_options_t, data_dir)},
    };
    znp_config_t *config = NULL;
    znp_config_error_t err;
    char message[1024];
    int rc;

    rc = cli_load_config(&config, cli_config_path(opts->config_path), 0);
    if (rc != CLI_EXIT_OK)
        return rc;
    for (size_t i = 0; i < sizeof overrides / sizeof overrides[0]; i++) {
        const char *value = *(const char *const *)((const char *)opts + overrides[i].offset);

        if (value != NULL && znp_config_override(config, overrides[i].key, value, overrides[i].option, &err) != 0)
            goto invalid;
    }
    config->demo = opts->demo;
    if (znp_config_validate(config, &err) != 0 || znp_config_ensure_secrets(config, &err) != 0)
        goto invalid;
    *out = config;
    return CLI_EXIT_OK;

invalid:
    znp_config_error_format(message, sizeof message, &err);
    cli_error("%s", message);
    znp_config_destroy(config);
    return CLI_EXIT_CONFIG;
}

/* every notification on the channel reloads both settings caches; each is one small row */
static void refresh_site(void *data, PGconn *db)
{
    znp_site_cache_refresh(db, data);
    znp_security_cache_refresh(db, data);
    /* site settings appear in every file, and notifications sent while disconnected are lost */
    znp_download_cache_clear();
    znp_uniproxy_on_reconnect();
}

/*
 * NOTIFY znp_subscriptions carries one subscription id; anything else drops every cached file. Eligibility
 * and node-token notifications go to the node-backend caches.
 */
static void subscription_changed(void *data, const char *channel, const char *payload)
{
    char *end = NULL;
    long long id;

    (void)data;
    if (strcmp(channel, ZNP_WATCHER_ELIGIBILITY_CHANNEL) == 0 || strcmp(channel, ZNP_WATCHER_NODE_TOKENS_CHANNEL) == 0) {
        znp_uniproxy_on_notify(channel, payload);
        /* which nodes a subscription file lists depends on the same rows */
        if (strcmp(channel, ZNP_WATCHER_ELIGIBILITY_CHANNEL) == 0)
            znp_download_cache_clear();
        return;
    }
    errno = 0;
    id = strtoll(payload, &end, 10);
    if (errno != 0 || end == payload || *end != '\0' || id <= 0)
        znp_download_cache_clear();
    else
        znp_download_cache_forget((int64_t)id);
}

/* Database work before any thread: migrations, the demo seed and the first site-cache load. */
static int prepare_database(server_t *s)
{
    PGconn *db = NULL;
    int rc;

    if (znp_db_resolve(&s->dsn, &s->embedded, s->config) != 0) {
        cli_error("could not start or find the database (see the messages above)");
        return CLI_EXIT_DATABASE;
    }
    if (s->embedded != NULL && znp_db_embedded_claim(s->embedded) != 0)
        return CLI_EXIT_DATABASE;
    if (znp_db_connect(&db, s->dsn, s->config) != 0) {
        cli_error("could not connect to the database (see the messages above)");
        return CLI_EXIT_DATABASE;
    }

    rc = cli_db_require_schema(db, s->config, NULL);
    if (rc == CLI_EXIT_OK && s->config->demo)
        rc = cli_demo_seed(db, s->config);
    if (rc == CLI_EXIT_OK) {
        znp_site_cache_init(s->config);
        if (znp_site_cache_refresh(db, s->config) != 0) {
            cli_error("could not load the site settings from the database");
            rc = CLI_EXIT_DATABASE;
        }
    }
    /* loaded before serving, so a signed route group is never open while the watcher connects */
    if (rc == CLI_EXIT_OK && znp_security_cache_refresh(db, s->config) != 0) {
        cli_error("could not load the security settings from the database");
        rc = CLI_EXIT_DATABASE;
    }
    PQfinish(db);
    return rc;
}

static void format_address(char *out, size_t out_size, const char *configured, int port)
{
    char host[256];
    unsigned ignored;

    if (znp_config_parse_hostport(configured, host, sizeof host, &ignored) != 0) {
        snprintf(out, out_size, "%s", configured);
        return;
    }
    snprintf(out, out_size, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
}

/* Threads and listeners, after the database is ready. */
static int start_servers(server_t *s)
{
    znp_watcher_options_t watcher_options = {.dsn = s->dsn, .on_refresh = refresh_site,
                                             .on_notify = subscription_changed, .data = s->config};
    char http_address[300], grpc_address[300];

    znp_health_init();
    znp_metrics_init();
    /* before any thread: the HTTP loops read the table without a lock */
    if (znp_download_register_warm() != 0) {
        cli_error("could not register the cached download responses with the HTTP server");
        return CLI_EXIT_RUNTIME;
    }
    /* libcurl's global setup must run before any thread exists */
    if (znp_mail_register(s->config) != 0) {
        cli_error("could not set up outgoing mail");
        return CLI_EXIT_RUNTIME;
    }
    /* prepare_database just proved both; the watcher keeps them current from here on */
    znp_health_set_database(1);
    znp_health_set_migrations_current(1);

    if (znp_watcher_start(&s->watcher, &watcher_options) != 0) {
        cli_error("could not start the database watcher");
        return CLI_EXIT_RUNTIME;
    }
    if (znp_pool_create(&s->pool, s->config, s->dsn, s->config->server.workers) != 0) {
        cli_error("could not start the worker pool");
        return CLI_EXIT_RUNTIME;
    }
    if (znp_jobs_schedule(ZNP_SUBSCRIPTIONS_RESET_JOB, s->config->jobs.traffic_reset_interval_s,
                          znp_subscriptions_reset_traffic) != 0 ||
        znp_jobs_schedule(ZNP_IDENTITY_UPGRADE_JOB, 3600, znp_identity_upgrade) != 0) {
        cli_error("could not schedule %s and %s", ZNP_SUBSCRIPTIONS_RESET_JOB, ZNP_IDENTITY_UPGRADE_JOB);
        return CLI_EXIT_RUNTIME;
    }
    if (znp_jobs_schedule(ZNP_SUBSCRIPTIONS_EXPIRE_JOB, s->config->jobs.expire_interval_s, znp_subscriptions_expire) !=
        0) {
        cli_error("could not schedule %s", ZNP_SUBSCRIPTIONS_EXPIRE_JOB);
        return CLI_EXIT_RUNTIME;
    }
    if (znp_jobs_schedule(ZNP_JOBS_PURGE_JOB, s->config->jobs.purge_interval_s, znp_jobs_purge) != 0) {
        cli_error("could not schedule %s", ZNP_JOBS_PURGE_JOB);
        return CLI_EXIT_RUNTIME;
    }
    if (znp_jobs_schedule(ZNP_TRAFFIC_PURGE_JOB, 3600, znp_traffic_purge_reports) != 0) {
        cli_error("could not schedule %s", ZNP_TRAFFIC_PURGE_JOB);
        return CLI_EXIT_RUNTIME;
    }
    if (znp_kernel_poller_register() != 0) {
        cli_error("could not schedule %s", ZNP_KERNEL_POLL_JOB);
        return CLI_EXIT_RUNTIME;
    }
    if (znp_bindings_register() != 0) {
        cli_error("could not register the %s job", ZNP_BINDINGS_SYNC_USER_JOB);
        return CLI_EXIT_RUNTIME;
    }
    if (znp_jobs_runner_start(&s->jobs, s->config, s->dsn, s->config->jobs.threads) != 0) {
        cli_error("could not start the job runner");
        return CLI_EXIT_RUNTIME;
    }
    if (znp_http_server_create(&s->http, s->config, s->pool) != 0) {
        cli_error("could not start the HTTP server on %s", s->config->server.listen);
        return CLI_EXIT_RUNTIME;
    }
    /* one allow-list and one set of buckets for both faces; the gRPC server is destroyed first */
    if (znp_grpc_server_create(&s->grpc, s->config, s->pool, znp_http_server_protect(s->http)) != 0) {
        cli_error("could not start the gRPC server on %s", s->config->server.grpc_listen);
        return CLI_EXIT_RUNTIME;
    }
    if (znp_http_server_start(s->http) != 0) {
        cli_error("could not start the HTTP event loops");
        return CLI_EXIT_RUNTIME;
    }

    format_address(http_address, sizeof http_address, s->config->server.listen, znp_http_server_port(s->http));
    format_address(grpc_address, sizeof grpc_address, s->config->server.grpc_listen, znp_grpc_server_port(s->grpc));
    ZNP_INFO(LOG_TAG, NULL, "znp serving http=%s grpc=%s%s%s", http_address, grpc_address,
             s->config->server.tls_listen ? " tls=" : "",
             s->config->server.tls_listen ? s->config->server.tls_listen : "");
    fprintf(stderr, "znp: listening http=%s grpc=%s%s%s\n", http_address, grpc_address,
            s->config->server.tls_listen ? " tls=" : "",
            s->config->server.tls_listen ? s->config->server.tls_listen : "");
    fflush(stderr);
    return CLI_EXIT_OK;
}

static unsigned ms_since(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (unsigned)((now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000);
}

/* SIGINT/SIGTERM: stop taking work, let in-flight requests finish within the shutdown budget. */
static void drain(server_t *s)
{
    unsigned budget = s->config->server.shutdown_timeout_ms;
    struct timespec start;
    size_t open_requests, open_jobs;
    unsigned used;

    clock_gettime(CLOCK_MONOTONIC, &start);
    znp_health_set_draining();
    znp_http_server_stop_listening(s->http);
    open_requests = znp_http_server_drain(s->http, budget);
    used = ms_since(&start);
    open_jobs = znp_pool_drain(s->pool, used < budget ? budget - used : 0);
    if (open_requests > 0 || open_jobs > 0)
        ZNP_WARN(LOG_TAG, NULL, "shutdown timeout reached requests_open=%zu jobs_open=%zu", open_requests, open_jobs);
}

/* Reverse of the start order. Every step accepts what was never started. */
static void stop_everything(server_t *s)
{
    znp_grpc_server_destroy(s->grpc);
    znp_http_server_destroy(s->http);
    znp_jobs_runner_stop(s->jobs);
    znp_kernel_poller_stop();
    znp_pool_destroy(s->pool);
    znp_watcher_stop(s->watcher);
    znp_db_embedded_stop(s->embedded);
    free(s->dsn);
    znp_config_destroy(s->config);
}

static void wait_for_shutdown(server_t *s, const sigset_t *signals)
{
    for (;;) {
        int sig = 0;

        if (sigwait(signals, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            if (znp_log_reopen() != 0)
                ZNP_ERROR(LOG_TAG, NULL, "could not reopen the log file: %s", strerror(errno));
            else
                ZNP_INFO(LOG_TAG, NULL, "log file reopened");
            continue;
        }
        ZNP_INFO(LOG_TAG, NULL, "received %s, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
        drain(s);
        return;
    }
}

int cli_serve(int argc, char **argv, const char *config_path)
{
    serve_options_t opts = {.config_path = config_path};
    server_t s = {0};
    sigset_t signals;
    int rc;

    /* configuration */
    rc = parse_options(&opts, argc, argv);
    if (rc != 0)
        return rc < 0 ? CLI_EXIT_OK : rc;
    rc = load_config(&s.config, &opts);
    if (rc != CLI_EXIT_OK)
        return rc;

    /* log and signals, before any thread */
    znp_log_min_level = s.config->log.level;
    if (znp_log_open(s.config->log.file) != 0) {
        cli_error("could not open log.file %s: %s", s.config->log.file, strerror(errno));
        znp_config_destroy(s.config);
        return CLI_EXIT_RUNTIME;
    }
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    ZNP_INFO(LOG_TAG, NULL, "starting znp %s config=%s", ZNP_VERSION,
             s.config->source_path ? s.config->source_path : "(built-in defaults)");

    /* database, then threads and listeners */
    rc = prepare_database(&s);
    if (rc == CLI_EXIT_OK)
        rc = start_servers(&s);
    if (rc == CLI_EXIT_OK) {
        wait_for_shutdown(&s, &signals);
        ZNP_INFO(LOG_TAG, NULL, "stopping");
    }
    stop_everything(&s);
    if (rc == CLI_EXIT_OK)
        ZNP_INFO(LOG_TAG, NULL, "znp stopped");
    znp_log_close();
    return rc;
}
