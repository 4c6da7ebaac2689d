/*
 * Request protection on the event loop: the client IP behind trusted
 * proxies, CORS (preflights and response headers), the admin allow-list,
 * rate limits keyed by IP and globally, and the security headers every
 * response carries. The decisions live in src/protect; this file reads the
 * request and writes the response. Nothing here blocks: the buckets are
 * in memory behind short per-shard locks.
 */
#include "http/internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

#define LOG_MODULE "http"

/* Swagger UI loads its bundle, its stylesheet and /openapi.json from this server and needs nothing else. */
static const char docs_csp[] = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "font-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'";
/* JSON and errors are never rendered as a page */
static const char api_csp[] = "default-src 'none'; frame-ancestors 'none'";

/* `name` is lowercase. A name in h2o's token table is added as that token, which HPACK sends as a static-table index. */
static void add_header(h2o_req_t *req, const char *name, size_t name_len, const char *value, size_t value_len)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, name_len, 1, NULL, value, value_len);
}

/* Add a header whose name is not in h2o's token table, without the lookup (these go on every response). */
static void add_plain_header(h2o_req_t *req, const char *name, size_t name_len, const char *value, size_t value_len)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, name_len, 0, NULL, value, value_len);
}

static void add_number_header(h2o_req_t *req, const char *name, size_t name_len, uint32_t value)
{
    char *text = h2o_mem_alloc_pool(&req->pool, 12);
    int len = snprintf(text, 12, "%u", value);

    add_header(req, name, name_len, text, (size_t)len);
}

/* Every field named `name` joined with ", " (RFC 9110 section 5.3), in the request pool; base NULL when absent. */
static h2o_iovec_t joined_header(h2o_req_t *req, const char *name, size_t name_len)
{
    h2o_iovec_t out = h2o_iovec_init(NULL, 0);
    ssize_t index = -1;

    while ((index = h2o_find_header_by_str(&req->headers, name, name_len, index)) != -1) {
        h2o_iovec_t value = req->headers.entries[index].value;

        if (out.base == NULL) {
            out = value;
        } else {
            h2o_iovec_t parts[3] = {out, h2o_iovec_init(H2O_STRLIT(", ")), value};

            out = h2o_concat_list(&req->pool, parts, 3);
        }
    }
    return out;
}

static void client_address(znp_http_guard_t *guard, h2o_req_t *req, const znp_protect_t *protect)
{
    struct sockaddr_storage addr;
    socklen_t len = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&addr);
    znp_ip_t peer;

    memset(&peer, 0, sizeof(peer));
    if (len > 0)
        znp_ip_from_sockaddr(&peer, (struct sockaddr *)&addr);
    if (protect->trusted_proxies.count > 0 && znp_cidr_list_contains(&protect->trusted_proxies, &peer)) {
        h2o_iovec_t xff = joined_header(req, H2O_STRLIT("x-forwarded-for"));
        h2o_iovec_t forwarded = joined_header(req, H2O_STRLIT("forwarded"));

        znp_client_ip_resolve(&guard->client, &peer, &protect->trusted_proxies, xff.base, xff.len, forwarded.base,
                              forwarded.len);
    } else {
        guard->client = peer;
    }
    znp_ip_format(guard->client_text, sizeof(guard->client_text), &guard->client);
}

void znp_http__guard_init(znp_http_guard_t *guard, h2o_req_t *req, znp_http_server_t *server, h2o_iovec_t path)
{
    znp_protect_t *protect = server->protect;
    ssize_t index;

    memset(guard, 0, sizeof(*guard));
    guard->docs = h2o_memis(path.base, path.len, H2O_STRLIT("/docs")) ||
                  (path.len > 5 && memcmp(path.base, "/docs/", 6) == 0);
    if (protect == NULL)
        return;
    client_address(guard, req, protect);
    guard->group = znp_protect_group_of(path.base, path.len, server->config->server.admin_prefix);

    /* CORS: remember the origin to echo when it is allowed */
    if (!protect->cors[guard->group].enabled)
        return;
    guard->cors = &protect->cors[guard->group];
    index = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
    if (index == -1)
        return;
    h2o_iovec_t origin = req->headers.entries[index].value;

    if (znp_origin_list_match(&guard->cors->origins, origin.base, origin.len)) {
        /* "*" is only sent without credentials; with them the origin is echoed, as the Fetch standard requires */
        if (guard->cors->origins.any && !guard->cors->allow_credentials)
            guard->allow_origin = h2o_iovec_init(H2O_STRLIT("*"));
        else
            guard->allow_origin = origin;
    }
}

/* Whether every name in the Access-Control-Request-Headers list is in `allowed` (case-insensitive). */
static int headers_allowed(const char *allowed, h2o_iovec_t requested)
{
    size_t i = 0;

    while (i < requested.len) {
        size_t n = 0;
        int found = 0;

        while (i < requested.len && (requested.base[i] == ',' || requested.base[i] == ' '))
            i++;
        while (i + n < requested.len && requested.base[i + n] != ',' && requested.base[i + n] != ' ')
            n++;
        if (n == 0)
            break;
        for (const char *p = allowed; *p != '\0' && !found;) {
            size_t m = 0;

            while (*p == ',' || *p == ' ')
                p++;
            while (p[m] != '\0' && p[m] != ',' && p[m] != ' ')
                m++;
            found = m == n && strncasecmp(p, requested.base + i, n) == 0;
            p += m;
        }
        if (!found)
            return 0;
        i += n;
    }
    return 1;
}

/* Respond to a CORS preflight: 204 with the allowed methods and headers, or 403 without any CORS header. */
static void answer_preflight(h2o_req_t *req, znp_http_request_t *state, znp_http_guard_t *guard,
                             h2o_iovec_t method)
{
    const znp_cors_policy_t *cors = guard->cors;
    ssize_t index = h2o_find_header_by_str(&req->headers, H2O_STRLIT("access-control-request-headers"), -1);
    h2o_iovec_t requested = index != -1 ? req->headers.entries[index].value : h2o_iovec_init(NULL, 0);

    if (guard->allow_origin.base == NULL || !znp_cors_method_allowed(cors, method.base, method.len) ||
        !headers_allowed(cors->allow_headers, requested)) {
        guard->allow_origin = h2o_iovec_init(NULL, 0);
        znp_http__send_error(req, state, ZNP_E_FORBIDDEN, NULL);
        return;
    }
    add_header(req, H2O_STRLIT("access-control-allow-methods"), cors->allow_methods, strlen(cors->allow_methods));
    add_header(req, H2O_STRLIT("access-control-allow-headers"), cors->allow_headers, strlen(cors->allow_headers));
    add_number_header(req, H2O_STRLIT("access-control-max-age"), cors->max_age_s);
    znp_http__send_body(req, 204, "", h2o_iovec_init(NULL, 0));
}

static void send_too_many(h2o_req_t *req, znp_http_request_t *state, const znp_http_guard_t *guard)
{
    add_number_header(req, H2O_STRLIT("retry-after"), guard->rate.retry_after_s);
    znp_http__send_error(req, state, ZNP_E_TOO_MANY_REQUESTS, NULL);
}

/* Apply the group's allow-list and buckets; returns 1 when it responded. */
static int admit_group(h2o_req_t *req, znp_http_request_t *state, znp_http_guard_t *guard)
{
    znp_rate_verdict_t verdict;
    int rc = znp_protect_admit_request(znp_http__loop_of(req)->server->protect, guard->group, &guard->client,
                                       &verdict);

    znp_http__guard_merge_rate(&guard->rate, &verdict);
    if (rc == ZNP_E_TOO_MANY_REQUESTS) {
        guard->rate = verdict;
        send_too_many(req, state, guard);
        return 1;
    }
    if (rc != 0) {
        znp_http__send_error(req, state, rc, NULL);
        return 1;
    }
    return 0;
}

int znp_http__guard_request(h2o_req_t *req, znp_http_request_t *state, znp_http_guard_t *guard)
{
    znp_protect_t *protect = znp_http__loop_of(req)->server->protect;

    if (protect == NULL)
        return 0;

    /* the admin allow-list comes first, so nothing under the prefix responds to an address outside it */
    if (guard->group == ZNP_GROUP_ADMIN && protect->admin_allow.count > 0 &&
        !znp_cidr_list_contains(&protect->admin_allow, &guard->client)) {
        znp_http__send_error(req, state, ZNP_E_ACCESS_DENIED, NULL);
        return 1;
    }

    /* a preflight carries Origin and Access-Control-Request-Method; other OPTIONS requests are routed */
    if (guard->cors != NULL && h2o_memis(req->method.base, req->method.len, H2O_STRLIT("OPTIONS")) &&
        h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1) != -1) {
        ssize_t index = h2o_find_header_by_str(&req->headers, H2O_STRLIT("access-control-request-method"), -1);

        if (index != -1) {
            answer_preflight(req, state, guard, req->headers.entries[index].value);
            return 1;
        }
    }
    return admit_group(req, state, guard);
}

int znp_http__guard_operation(h2o_req_t *req, znp_http_request_t *state, znp_http_guard_t *guard,
                              const char *route_path, size_t op_index, const znp_rate_limit_t *limits)
{
    znp_protect_t *protect = znp_http__loop_of(req)->server->protect;
    znp_route_group_t group;
    znp_rate_verdict_t verdict;
    int rc;

    if (protect == NULL)
        return 0;

    /*
     * The router decodes each segment, so a path such as /api/v1/%61dmin/...
     * reaches an admin route although the raw path did not look like one.
     * The route template decides the group.
     */
    group = znp_protect_group_of(route_path, strlen(route_path), "{admin}");
    if (group != guard->group) {
        guard->group = group;
        if (znp_http__guard_request(req, state, guard))
            return 1;
    }

    memset(&verdict, 0, sizeof(verdict));
    rc = znp_protect_admit_operation(protect, op_index, limits, &guard->client, &verdict);
    if (rc == ZNP_E_TOO_MANY_REQUESTS) {
        guard->rate = verdict;
        send_too_many(req, state, guard);
        return 1;
    }
    znp_http__guard_merge_rate(&guard->rate, &verdict);
    return 0;
}

void znp_http__guard_merge_rate(znp_rate_verdict_t *into, const znp_rate_verdict_t *rate)
{
    if (!rate->limited)
        return;
    if (!into->limited || !rate->allowed || (into->allowed && rate->remaining < into->remaining))
        *into = *rate;
}

/*
 * Whether the response is a file for a program: a 304, which has no body, or
 * a 2xx that is neither HTML nor JSON, such as a subscription file in YAML
 * or text or a CSV export. Content-Security-Policy only governs documents
 * that a browser renders, and nosniff keeps a browser from rendering these,
 * so they go without it and save the header on the busiest route. JSON
 * responses, errors included, keep it like every other API response.
 */
static int program_file(h2o_req_t *req)
{
    h2o_iovec_t type;
    ssize_t index;

    if (req->res.status == 304)
        return 1;
    if (req->res.status < 200 || req->res.status > 299)
        return 0;
    index = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (index == -1)
        return 1;
    type = req->res.headers.entries[index].value;
    if (type.len >= 9 && h2o_lcstris(type.base, 9, H2O_STRLIT("text/html")))
        return 0;
    return !(type.len >= 16 && h2o_lcstris(type.base, 16, H2O_STRLIT("application/json")));
}

void znp_http__guard_headers(h2o_req_t *req, znp_http_server_t *server, const znp_http_guard_t *guard)
{
    int docs = guard != NULL && guard->docs;
    uint32_t hsts = server->config->server.hsts_max_age_s;

    /*
     * hardening. No X-Frame-Options: frame-ancestors 'none' in the CSP below
     * replaces it in current browsers, and every header costs HPACK work on
     * each response.
     */
    add_plain_header(req, H2O_STRLIT("x-content-type-options"), H2O_STRLIT("nosniff"));
    add_plain_header(req, H2O_STRLIT("referrer-policy"), H2O_STRLIT("no-referrer"));
    if (docs)
        add_plain_header(req, H2O_STRLIT("content-security-policy"), docs_csp, sizeof(docs_csp) - 1);
    else if (!(guard != NULL && guard->file && program_file(req)))
        add_plain_header(req, H2O_STRLIT("content-security-policy"), api_csp, sizeof(api_csp) - 1);
    if (hsts > 0 && req->scheme == &H2O_URL_SCHEME_HTTPS) {
        char *value = h2o_mem_alloc_pool(&req->pool, 32);
        int len = snprintf(value, 32, "max-age=%u", hsts);

        add_header(req, H2O_STRLIT("strict-transport-security"), value, (size_t)len);
    }
    if (guard == NULL)
        return;

    /* CORS */
    if (guard->cors != NULL) {
        add_header(req, H2O_STRLIT("vary"), H2O_STRLIT("Origin"));
        if (guard->allow_origin.base != NULL) {
            add_header(req, H2O_STRLIT("access-control-allow-origin"), guard->allow_origin.base,
                       guard->allow_origin.len);
            if (guard->cors->allow_credentials)
                add_header(req, H2O_STRLIT("access-control-allow-credentials"), H2O_STRLIT("true"));
            if (guard->cors->expose_headers[0] != '\0')
                add_header(req, H2O_STRLIT("access-control-expose-headers"), guard->cors->expose_headers,
                           strlen(guard->cors->expose_headers));
        }
    }

    /* rate limits (draft-ietf-httpapi-ratelimit-headers field names) */
    if (guard->rate.limited) {
        add_number_header(req, H2O_STRLIT("ratelimit-limit"), guard->rate.limit);
        add_number_header(req, H2O_STRLIT("ratelimit-remaining"), guard->rate.remaining);
        add_number_header(req, H2O_STRLIT("ratelimit-reset"), guard->rate.reset_s);
    }
}
