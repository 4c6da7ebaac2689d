#include "http_tests.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "config/config.h"
#include "http/server.h"
#include "runtime/health.h"
#include "runtime/metrics.h"

/* one HTTP/1.1 exchange over a fresh connection */
typedef struct response {
    int status;
    char headers[8192]; /* raw header block, lines end with \r\n */
    char *body;         /* malloc'd, NUL-terminated */
    size_t body_len;
} response_t;

typedef struct fixture {
    znp_config_t config;
    znp_http_server_t *server;
    int port;
} fixture_t;

static void response_dispose(response_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* Value of header `name` (case-insensitive) copied into out, or NULL. */
static const char *header(const response_t *r, const char *name, char *out, size_t out_size)
{
    size_t name_len = strlen(name);

    for (const char *line = strstr(r->headers, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n")) {
        const char *start = line + 2;

        if (strncasecmp(start, name, name_len) == 0 && start[name_len] == ':') {
            const char *value = start + name_len + 1;
            size_t len;

            while (*value == ' ')
                value++;
            len = strcspn(value, "\r");
            if (len >= out_size)
                len = out_size - 1;
            memcpy(out, value, len);
            out[len] = '\0';
            return out;
        }
    }
    return NULL;
}

static int connect_to(int port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Send `head` (request line and headers, without the final CRLF) plus `body`, read the whole response. */
static void exchange(int port, const char *head, const char *body, size_t body_len, response_t *out)
{
    size_t cap = 1 << 16, len = 0;
    char *data = malloc(cap);
    char request[16384];
    int fd = connect_to(port);
    int n;
    char *end;

    memset(out, 0, sizeof(*out));
    assert_non_null(data);
    assert_true(fd >= 0);
    n = snprintf(request, sizeof request, "%s\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", head);
    assert_true(n > 0 && (size_t)n < sizeof request);
    assert_int_equal(send(fd, request, (size_t)n, MSG_NOSIGNAL), n);
    for (size_t sent = 0; body != NULL && sent < body_len;) {
        ssize_t w = send(fd, body + sent, body_len - sent, MSG_NOSIGNAL);

        if (w <= 0)
            break; /* the server may respond and close before reading everything */
        sent += (size_t)w;
    }
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t r;

        assert_true(poll(&pfd, 1, 5000) == 1);
        if (len + 4096 > cap) {
            cap *= 2;
            data = realloc(data, cap);
            assert_non_null(data);
        }
        r = recv(fd, data + len, cap - len - 1, 0);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    data[len] = '\0';

    end = strstr(data, "\r\n\r\n");
    assert_non_null(end);
    assert_true((size_t)(end - data) < sizeof(out->headers));
    memcpy(out->headers, data, (size_t)(end - data) + 2);
    out->headers[end - data + 2] = '\0';
    assert_int_equal(sscanf(data, "HTTP/1.1 %d", &out->status), 1);
    out->body_len = len - (size_t)(end + 4 - data);
    out->body = malloc(out->body_len + 1);
    memcpy(out->body, end + 4, out->body_len);
    out->body[out->body_len] = '\0';
    free(data);
}

static void get(int port, const char *head, response_t *out)
{
    exchange(port, head, NULL, 0, out);
}

/* Check the error envelope: status, key, and request_id equal to the x-request-id header. */
static void assert_envelope(const response_t *r, int status, const char *key)
{
    char value[128];
    json_t *doc = json_loads(r->body, 0, NULL);

    assert_int_equal(r->status, status);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "error")), key);
    assert_int_equal(json_integer_value(json_object_get(doc, "code")) / 1000, status);
    assert_non_null(header(r, "x-request-id", value, sizeof value));
    assert_string_equal(json_string_value(json_object_get(doc, "request_id")), value);
    assert_non_null(header(r, "content-type", value, sizeof value));
    assert_string_equal(value, "application/json; charset=utf-8");
    json_decref(doc);
}

static void init_config(znp_config_t *config)
{
    memset(config, 0, sizeof(*config));
    config->server.listen = "127.0.0.1:0";
    config->server.threads = 1;
    config->server.admin_prefix = "admin";
    config->server.max_body_bytes = 1024;
    config->server.max_header_bytes = 4096;
    config->server.max_uri_bytes = 512;
    config->server.read_timeout_ms = 2000;
    config->server.idle_timeout_ms = 2000;
    config->server.docs_dir = "/nonexistent";
    config->server.default_locale = "en";
    config->site.service_name = "znp";
    config->log.access_log = 1;
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    znp_health_init();
    znp_metrics_init();
    init_config(&f->config);
    if (znp_http_server_create(&f->server, &f->config, NULL) != 0 || znp_http_server_start(f->server) != 0)
        return -1;
    f->port = znp_http_server_port(f->server);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    znp_http_server_stop_listening(f->server);
    znp_http_server_drain(f->server, 1000);
    znp_http_server_destroy(f->server);
    free(f);
    return 0;
}

static void http__inline_ping_returns_200(void **state)
{
    fixture_t *f = *state;
    response_t r;
    char value[128];
    json_t *doc;

    get(f->port, "GET /api/v1/ping HTTP/1.1", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(header(&r, "content-length", value, sizeof value));
    assert_int_equal(strtoul(value, NULL, 10), r.body_len);
    assert_non_null(header(&r, "x-request-id", value, sizeof value));
    assert_int_equal(strlen(value), 16);
    assert_int_equal(strspn(value, "0123456789abcdef"), 16);
    doc = json_loads(r.body, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "status")), "ok");
    json_decref(doc);
    response_dispose(&r);
}

static void http__request_id_checked(void **state)
{
    static const struct {
        const char *sent;
        int echoed;
    } cases[] = {
        {"abc.DEF_1-2", 1},
        {"a", 1},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 1},  /* 64 */
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0}, /* 65 */
        {"a/b", 0},
        {"a b", 0},
        {"", 0},
    };
    fixture_t *f = *state;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char head[256], value[128];
        response_t r;

        snprintf(head, sizeof head, "GET /nope HTTP/1.1\r\nX-Request-Id: %s", cases[i].sent);
        get(f->port, head, &r);
        assert_non_null(header(&r, "x-request-id", value, sizeof value));
        if (cases[i].echoed) {
            assert_string_equal(value, cases[i].sent);
        } else {
            assert_int_equal(strlen(value), 16);
            assert_int_equal(strspn(value, "0123456789abcdef"), 16);
        }
        response_dispose(&r);
    }
}

static void http__unknown_route_returns_404(void **state)
{
    fixture_t *f = *state;
    response_t r;

    get(f->port, "GET /api/v1/nothing-here HTTP/1.1", &r);
    assert_envelope(&r, 404, "route_not_found");
    response_dispose(&r);
}

static void http__wrong_method_returns_405_with_allow(void **state)
{
    fixture_t *f = *state;
    response_t r;
    char value[64];

    get(f->port, "DELETE /api/v1/ping HTTP/1.1", &r);
    assert_envelope(&r, 405, "method_not_allowed");
    assert_non_null(header(&r, "allow", value, sizeof value));
    assert_string_equal(value, "GET, HEAD");
    response_dispose(&r);

    get(f->port, "POST /metrics HTTP/1.1\r\nContent-Length: 0", &r);
    assert_envelope(&r, 405, "method_not_allowed");
    response_dispose(&r);
}

static void http__body_over_limit_returns_413(void **state)
{
    fixture_t *f = *state;
    char body[4096];
    response_t r;

    memset(body, 'a', sizeof body);
    /* over our limit, under h2o's: the handler responds */
    exchange(f->port, "POST /api/v1/auth/login HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 4096",
             body, sizeof body, &r);
    assert_envelope(&r, 413, "body_too_large");
    response_dispose(&r);

    /* over h2o's own limit: h2o responds before any handler, and the error filter rewrites it */
    get(f->port, "POST /api/v1/auth/login HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 104857600", &r);
    assert_envelope(&r, 413, "body_too_large");
    response_dispose(&r);
}

static void http__non_json_body_returns_415(void **state)
{
    fixture_t *f = *state;
    response_t r;

    exchange(f->port, "POST /api/v1/auth/login HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2", "{}", 2, &r);
    assert_envelope(&r, 415, "unsupported_media_type");
    response_dispose(&r);
}

static void http__without_pool_returns_503(void **state)
{
    fixture_t *f = *state;
    response_t r;
    char value[16];

    get(f->port, "GET /api/v1/admin/site-settings HTTP/1.1", &r);
    assert_envelope(&r, 503, "database_unavailable");
    assert_non_null(header(&r, "retry-after", value, sizeof value));
    assert_string_equal(value, "5");
    response_dispose(&r);
}

static void http__long_uri_and_headers_rejected(void **state)
{
    fixture_t *f = *state;
    char head[8192];
    char padding[5000];
    response_t r;

    memset(padding, 'a', sizeof padding - 1);
    padding[sizeof padding - 1] = '\0';
    snprintf(head, sizeof head, "GET /api/v1/%.600s HTTP/1.1", padding);
    get(f->port, head, &r);
    assert_envelope(&r, 414, "uri_too_long");
    response_dispose(&r);

    snprintf(head, sizeof head, "GET /api/v1/ping HTTP/1.1\r\nX-Padding: %s", padding);
    get(f->port, head, &r);
    assert_envelope(&r, 431, "header_too_large");
    response_dispose(&r);
}

static void http__head_has_length_without_body(void **state)
{
    fixture_t *f = *state;
    response_t r;
    char value[32];

    get(f->port, "HEAD /api/v1/ping HTTP/1.1", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(header(&r, "content-length", value, sizeof value));
    assert_true(strtoul(value, NULL, 10) > 0);
    assert_int_equal(r.body_len, 0);
    response_dispose(&r);
}

static void http__special_paths_served(void **state)
{
    fixture_t *f = *state;
    response_t r;
    char value[128];
    json_t *doc;

    get(f->port, "GET /openapi.json HTTP/1.1", &r);
    assert_int_equal(r.status, 200);
    doc = json_loads(r.body, 0, NULL);
    assert_non_null(json_object_get(doc, "openapi"));
    json_decref(doc);
    response_dispose(&r);

    get(f->port, "GET /metrics HTTP/1.1", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(header(&r, "content-type", value, sizeof value));
    assert_string_equal(value, "text/plain; version=0.0.4; charset=utf-8");
    /* the /openapi.json request above has been counted */
    assert_non_null(
        strstr(r.body, "znp_http_requests_total{route=\"/openapi.json\",method=\"GET\",status=\"200\"} 1\n"));
    response_dispose(&r);

    /* docs_dir has no Swagger UI: a page that explains how to install it */
    get(f->port, "GET /docs HTTP/1.1", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "scripts/setup.sh"));
    response_dispose(&r);
}

static void http__taken_port_fails_create(void **state)
{
    znp_config_t config;
    znp_http_server_t *server = NULL;
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof(addr);
    char listen_address[64];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    (void)state;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(fd, 1), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);

    init_config(&config);
    snprintf(listen_address, sizeof listen_address, "127.0.0.1:%u", (unsigned)ntohs(addr.sin_port));
    config.server.listen = listen_address;
    assert_int_not_equal(znp_http_server_create(&server, &config, NULL), 0);
    assert_null(server);
    close(fd);
}

static void http__stop_listening_closes_port(void **state)
{
    znp_config_t config;
    znp_http_server_t *server = NULL;
    int fd;

    (void)state;
    init_config(&config);
    config.server.threads = 2;
    assert_int_equal(znp_http_server_create(&server, &config, NULL), 0);
    assert_int_equal(znp_http_server_start(server), 0);
    fd = connect_to(znp_http_server_port(server));
    assert_true(fd >= 0);
    close(fd);

    znp_http_server_stop_listening(server);
    assert_int_equal(connect_to(znp_http_server_port(server)), -1);
    assert_int_equal(znp_http_server_drain(server, 1000), 0);
    znp_http_server_destroy(server);
    znp_http_server_destroy(NULL);
}

int run_server_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(http__inline_ping_returns_200),
        cmocka_unit_test(http__request_id_checked),
        cmocka_unit_test(http__unknown_route_returns_404),
        cmocka_unit_test(http__wrong_method_returns_405_with_allow),
        cmocka_unit_test(http__body_over_limit_returns_413),
        cmocka_unit_test(http__non_json_body_returns_415),
        cmocka_unit_test(http__without_pool_returns_503),
        cmocka_unit_test(http__long_uri_and_headers_rejected),
        cmocka_unit_test(http__head_has_length_without_body),
        cmocka_unit_test(http__special_paths_served),
    };
    const struct CMUnitTest lifecycle[] = {
        cmocka_unit_test(http__taken_port_fails_create),
        cmocka_unit_test(http__stop_listening_closes_port),
    };
    int failed = cmocka_run_group_tests_name("http", tests, setup, teardown);

    return failed + cmocka_run_group_tests_name("http_lifecycle", lifecycle, NULL, NULL);
}
