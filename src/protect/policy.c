/*
 * The request policy built from the configuration: route groups, the CORS
 * settings of each group, the admin allow-list and the rate limits with
 * their bucket keys.
 */
#include "protect/protect.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.gen.h"

#define API_PREFIX "/api/v1/"

static const char *const group_names[ZNP_GROUP_COUNT] = {"public", "user", "admin"};

const char *znp_protect_group_name(znp_route_group_t group)
{
    return group < ZNP_GROUP_COUNT ? group_names[group] : "public";
}

/* Whether `path` is /api/v1/<segment> or starts with /api/v1/<segment>/. */
static int under(const char *path, size_t len, const char *segment)
{
    size_t prefix_len = sizeof(API_PREFIX) - 1;
    size_t segment_len = strlen(segment);

    if (len < prefix_len + segment_len || memcmp(path, API_PREFIX, prefix_len) != 0 ||
        memcmp(path + prefix_len, segment, segment_len) != 0)
        return 0;
    return len == prefix_len + segment_len || path[prefix_len + segment_len] == '/';
}

znp_route_group_t znp_protect_group_of(const char *path, size_t len, const char *admin_prefix)
{
    if (admin_prefix != NULL && admin_prefix[0] != '\0' && under(path, len, admin_prefix))
        return ZNP_GROUP_ADMIN;
    if (under(path, len, "user"))
        return ZNP_GROUP_USER;
    return ZNP_GROUP_PUBLIC;
}

/* bucket keys ----------------------------------------------------------- */

enum { SCOPE_GROUP = 'g', SCOPE_OPERATION = 'o', SCOPE_ADMIN = 'a' };
enum { BY_IP = 'i', BY_USER = 'u', GLOBAL = 'G' };

typedef struct bucket_key {
    uint8_t bytes[ZNP_LIMITER_KEY_MAX];
    size_t len;
} bucket_key_t;

static void key_begin(bucket_key_t *key, int scope, size_t index, int by)
{
    key->bytes[0] = (uint8_t)scope;
    key->bytes[1] = (uint8_t)(index & 0xff);
    key->bytes[2] = (uint8_t)((index >> 8) & 0xff);
    key->bytes[3] = (uint8_t)by;
    key->len = 4;
}

static void key_add_ip(bucket_key_t *key, const znp_ip_t *ip)
{
    key->bytes[key->len++] = ip->family;
    memcpy(key->bytes + key->len, ip->bytes, ip->family == 4 ? 4 : 16);
    key->len += ip->family == 4 ? 4 : 16;
}

static void key_add_user(bucket_key_t *key, int64_t user_id)
{
    memcpy(key->bytes + key->len, &user_id, sizeof(user_id));
    key->len += sizeof(user_id);
}

/*
 * Take from one bucket and fold the verdict into `out`, which keeps the
 * tightest limit seen. Returns ZNP_E_TOO_MANY_REQUESTS when the bucket is empty.
 */
static int take(znp_limiter_t *limiter, const bucket_key_t *key, znp_rate_t rate, znp_rate_verdict_t *out)
{
    znp_rate_verdict_t verdict;

    if (rate.per_minute == 0 || rate.burst == 0)
        return 0;
    znp_limiter_take(limiter, key->bytes, key->len, rate, &verdict);
    if (!verdict.limited)
        return 0;
    if (!verdict.allowed) {
        *out = verdict;
        return ZNP_E_TOO_MANY_REQUESTS;
    }
    if (!out->limited || verdict.remaining < out->remaining)
        *out = verdict;
    return 0;
}

static void verdict_init(znp_rate_verdict_t *out)
{
    memset(out, 0, sizeof(*out));
    out->allowed = 1;
}

int znp_protect_admit_request(znp_protect_t *protect, znp_route_group_t group, const znp_ip_t *client,
                              znp_rate_verdict_t *out)
{
    bucket_key_t key;
    int rc;

    verdict_init(out);
    if (group == ZNP_GROUP_ADMIN) {
        if (protect->admin_allow.count > 0 && !znp_cidr_list_contains(&protect->admin_allow, client))
            return ZNP_E_ACCESS_DENIED;
        key_begin(&key, SCOPE_ADMIN, 0, BY_IP);
        key_add_ip(&key, client);
        if ((rc = take(protect->ip_buckets, &key, protect->admin_rate, out)) != 0)
            return rc;
    }
    if (!protect->rates_enabled)
        return 0;

    key_begin(&key, SCOPE_GROUP, group, BY_IP);
    key_add_ip(&key, client);
    if ((rc = take(protect->ip_buckets, &key, protect->group_rates[group].ip, out)) != 0)
        return rc;
    key_begin(&key, SCOPE_GROUP, group, GLOBAL);
    return take(protect->shared_buckets, &key, protect->group_rates[group].global, out);
}

int znp_protect_admit_operation(znp_protect_t *protect, size_t op_index, const znp_rate_limit_t *limits,
                                const znp_ip_t *client, znp_rate_verdict_t *out)
{
    bucket_key_t key;
    int rc;

    if (!protect->rates_enabled || limits == NULL)
        return 0;
    key_begin(&key, SCOPE_OPERATION, op_index, BY_IP);
    key_add_ip(&key, client);
    if ((rc = take(protect->ip_buckets, &key, limits->ip, out)) != 0)
        return rc;
    key_begin(&key, SCOPE_OPERATION, op_index, GLOBAL);
    return take(protect->shared_buckets, &key, limits->global, out);
}

int znp_protect_admit_user(znp_protect_t *protect, znp_route_group_t group, size_t op_index,
                           const znp_rate_limit_t *limits, int64_t user_id, znp_rate_verdict_t *out)
{
    bucket_key_t key;
    int rc;

    if (!protect->rates_enabled || user_id == 0 || group >= ZNP_GROUP_COUNT)
        return 0;
    key_begin(&key, SCOPE_GROUP, group, BY_USER);
    key_add_user(&key, user_id);
    if ((rc = take(protect->shared_buckets, &key, protect->group_rates[group].user, out)) != 0)
        return rc;
    if (limits == NULL)
        return 0;
    key_begin(&key, SCOPE_OPERATION, op_index, BY_USER);
    key_add_user(&key, user_id);
    return take(protect->shared_buckets, &key, limits->user, out);
}

/* CORS ------------------------------------------------------------------ */

int znp_cors_method_allowed(const znp_cors_policy_t *policy, const char *method, size_t len)
{
    const char *p = policy->allow_methods;

    while (p != NULL && *p != '\0') {
        size_t n = 0;

        while (*p == ',' || *p == ' ')
            p++;
        while (p[n] != '\0' && p[n] != ',' && p[n] != ' ')
            n++;
        if (n > 0 && n == len && memcmp(p, method, len) == 0)
            return 1;
        p += n;
    }
    return 0;
}

static const znp_config_cors_group_t *cors_group(const znp_config_t *config, znp_route_group_t group)
{
    switch (group) {
    case ZNP_GROUP_USER:
        return &config->cors.groups.user;
    case ZNP_GROUP_ADMIN:
        return &config->cors.groups.admin;
    default:
        return &config->cors.groups.public;
    }
}

static const znp_config_rate_group_t *rate_group(const znp_config_t *config, znp_route_group_t group)
{
    switch (group) {
    case ZNP_GROUP_USER:
        return &config->rate_limits.groups.user;
    case ZNP_GROUP_ADMIN:
        return &config->rate_limits.groups.admin;
    default:
        return &config->rate_limits.groups.public;
    }
}

/* "true" or "false" of a group override; `fallback` when the override is not set. */
static int flag_value(const char *text, int fallback)
{
    if (text == NULL)
        return fallback;
    return strcmp(text, "true") == 0;
}

static znp_rate_t rate_of(const znp_config_rate_t *rate)
{
    znp_rate_t out = {.per_minute = rate->rate_per_minute, .burst = rate->burst};

    return out;
}

int znp_protect_create(znp_protect_t **out, const znp_config_t *config, znp_clock_ms_fn clock, void *clock_data)
{
    znp_protect_t *protect = calloc(1, sizeof(*protect));
    size_t max_keys = config->rate_limits.max_keys > 0 ? config->rate_limits.max_keys : 1;
    int rc = ZNP_E_INTERNAL;

    *out = NULL;
    if (protect == NULL)
        return ZNP_E_INTERNAL;
    protect->config = config;

    /* addresses: the configuration was validated, so parse errors are internal */
    if (znp_cidr_list_parse(&protect->trusted_proxies, config->server.trusted_proxies, NULL, 0) != 0 ||
        znp_cidr_list_parse(&protect->admin_allow, config->admin.allow_cidrs, NULL, 0) != 0)
        goto cleanup;
    protect->admin_rate.per_minute = config->admin.rate_per_minute;
    protect->admin_rate.burst = config->admin.burst;

    /* CORS and rate limits per group */
    for (int g = 0; g < ZNP_GROUP_COUNT; g++) {
        const znp_config_cors_group_t *over = cors_group(config, (znp_route_group_t)g);
        const znp_config_rate_group_t *rates = rate_group(config, (znp_route_group_t)g);
        znp_cors_policy_t *policy = &protect->cors[g];
        const char *origins = over->allow_origins != NULL ? over->allow_origins : config->cors.allow_origins;

        policy->enabled = flag_value(over->enabled, config->cors.enabled);
        policy->allow_headers = over->allow_headers != NULL ? over->allow_headers : config->cors.allow_headers;
        policy->allow_methods = over->allow_methods != NULL ? over->allow_methods : config->cors.allow_methods;
        policy->allow_credentials = flag_value(over->allow_credentials, config->cors.allow_credentials);
        policy->max_age_s = config->cors.max_age_s;
        policy->expose_headers = config->cors.expose_headers;
        if (znp_origin_list_parse(&policy->origins, origins, NULL, 0) != 0)
            goto cleanup;

        protect->group_rates[g].ip = rate_of(&rates->ip);
        protect->group_rates[g].user = rate_of(&rates->user);
        protect->group_rates[g].global = rate_of(&rates->global);
    }
    protect->rates_enabled = config->rate_limits.enabled;

    /* bucket tables */
    if (znp_limiter_create(&protect->ip_buckets, max_keys, clock, clock_data) != 0 ||
        znp_limiter_create(&protect->shared_buckets, max_keys, clock, clock_data) != 0)
        goto cleanup;

    *out = protect;
    protect = NULL;
    rc = 0;

cleanup:
    znp_protect_destroy(protect);
    return rc;
}

void znp_protect_destroy(znp_protect_t *protect)
{
    if (protect == NULL)
        return;
    znp_cidr_list_dispose(&protect->trusted_proxies);
    znp_cidr_list_dispose(&protect->admin_allow);
    for (int g = 0; g < ZNP_GROUP_COUNT; g++)
        znp_origin_list_dispose(&protect->cors[g].origins);
    znp_limiter_destroy(protect->ip_buckets);
    znp_limiter_destroy(protect->shared_buckets);
    free(protect);
}

/* configuration check ---------------------------------------------------- */

/* where a check failed: the key path and the message */
typedef struct finding {
    char *key;
    size_t key_size;
    char *message;
    size_t message_size;
} finding_t;

static int fail(finding_t *f, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(finding_t *f, const char *path, const char *fmt, ...)
{
    va_list args;

    snprintf(f->key, f->key_size, "%s", path);
    va_start(args, fmt);
    vsnprintf(f->message, f->message_size, fmt, args);
    va_end(args);
    return ZNP_E_VALIDATION_FAILED;
}

/* Whether `text` is a comma-separated list of HTTP tokens (RFC 9110 tchar). */
static int valid_token_list(const char *text)
{
    static const char tchar_extra[] = "!#$%&'*+-.^_`|~";
    size_t tokens = 0;

    for (const char *p = text; *p != '\0';) {
        size_t n = 0;

        while (*p == ',' || *p == ' ')
            p++;
        while (p[n] != '\0' && p[n] != ',' && p[n] != ' ') {
            char c = p[n];

            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr(tchar_extra, c) != NULL))
                return 0;
            n++;
        }
        tokens += n > 0;
        p += n;
    }
    return tokens > 0;
}

static int check_cidrs(const char *path, const char *value, finding_t *f)
{
    znp_cidr_list_t list;
    char bad[80];
    int rc = znp_cidr_list_parse(&list, value, bad, sizeof(bad));

    znp_cidr_list_dispose(&list);
    if (rc == ZNP_E_VALIDATION_FAILED)
        return fail(f, path,
                    "invalid entry \"%s\" in %s: expected an IPv4 or IPv6 address or CIDR with the host bits zero, "
                    "e.g. 10.0.0.0/8 or fd00::/8",
                    bad, path);
    return rc;
}

static int check_origins(const char *path, const char *value, int credentials, const char *credentials_path,
                         finding_t *f)
{
    znp_origin_list_t list;
    char bad[80];
    int rc = znp_origin_list_parse(&list, value, bad, sizeof(bad));
    int any = list.any;

    znp_origin_list_dispose(&list);
    if (rc == ZNP_E_VALIDATION_FAILED)
        return fail(f, path,
                    "invalid origin \"%s\" in %s: expected *, scheme://host[:port] or scheme://*.domain[:port] with "
                    "scheme http or https and no path",
                    bad, path);
    if (rc != 0)
        return rc;
    if (any && credentials)
        return fail(f, credentials_path,
                    "%s cannot be true while %s contains \"*\": list the allowed origins instead", credentials_path,
                    path);
    return 0;
}

static int check_flag(const char *path, const char *value, finding_t *f)
{
    if (value != NULL && strcmp(value, "true") != 0 && strcmp(value, "false") != 0)
        return fail(f, path, "invalid value \"%.32s\" for %s: expected true or false",
                    value, path);
    return 0;
}

/* A rate without a burst could never admit a request; the error points at the rate, which the file sets. */
static int check_rate(const char *rate_path, const char *burst_path, uint32_t per_minute, uint32_t burst,
                      finding_t *f)
{
    if (per_minute > 0 && burst == 0)
        return fail(f, rate_path, "%s must be at least 1 while %s is set", burst_path, rate_path);
    return 0;
}

int znp_protect_check_config(const znp_config_t *config, char *key, size_t key_size, char *message,
                             size_t message_size)
{
    static const char *const kinds[] = {"ip", "user", "global"};
    finding_t finding = {.key = key, .key_size = key_size, .message = message, .message_size = message_size};
    finding_t *f = &finding;
    int rc;

    snprintf(key, key_size, "%s", "");
    snprintf(message, message_size, "%s", "");

    /* addresses */
    if ((rc = check_cidrs("server.trusted_proxies", config->server.trusted_proxies, f)) !=
        0)
        return rc;
    if ((rc = check_cidrs("admin.allow_cidrs", config->admin.allow_cidrs, f)) != 0)
        return rc;
    if ((rc = check_rate("admin.rate_per_minute", "admin.burst", config->admin.rate_per_minute, config->admin.burst,
                         f)) != 0)
        return rc;

    /* CORS, top level then each group as it resolves */
    if ((rc = check_origins("cors.allow_origins", config->cors.allow_origins, config->cors.allow_credentials,
                            "cors.allow_credentials", f)) != 0)
        return rc;
    if (!valid_token_list(config->cors.allow_headers))
        return fail(f, "cors.allow_headers",
                    "cors.allow_headers must be a comma-separated list of header names");
    if (!valid_token_list(config->cors.allow_methods))
        return fail(f, "cors.allow_methods",
                    "cors.allow_methods must be a comma-separated list of methods");
    if (config->cors.expose_headers[0] != '\0' && !valid_token_list(config->cors.expose_headers))
        return fail(f, "cors.expose_headers",
                    "cors.expose_headers must be a comma-separated list of header names");
    for (int g = 0; g < ZNP_GROUP_COUNT; g++) {
        const znp_config_cors_group_t *over = cors_group(config, (znp_route_group_t)g);
        char path[5][64];
        static const char *const names[] = {"enabled", "allow_origins", "allow_headers", "allow_methods",
                                            "allow_credentials"};

        for (int i = 0; i < 5; i++)
            snprintf(path[i], sizeof(path[i]), "cors.groups.%s.%s", group_names[g], names[i]);
        if ((rc = check_flag(path[0], over->enabled, f)) != 0 ||
            (rc = check_flag(path[4], over->allow_credentials, f)) != 0)
            return rc;
        if (over->allow_headers != NULL && !valid_token_list(over->allow_headers))
            return fail(f, path[2], "%s must be a comma-separated list of header names", path[2]);
        if (over->allow_methods != NULL && !valid_token_list(over->allow_methods))
            return fail(f, path[3], "%s must be a comma-separated list of methods", path[3]);

        int credentials = flag_value(over->allow_credentials, config->cors.allow_credentials);
        const char *origins = over->allow_origins != NULL ? over->allow_origins : config->cors.allow_origins;

        if ((rc = check_origins(over->allow_origins != NULL ? path[1] : "cors.allow_origins", origins, credentials,
                                over->allow_credentials != NULL ? path[4] : "cors.allow_credentials", f)) != 0)
            return rc;
    }

    /* rate limits */
    if (config->rate_limits.enabled && config->rate_limits.max_keys < ZNP_LIMITER_SHARDS)
        return fail(f, "rate_limits.max_keys", "rate_limits.max_keys must be at least %d",
                    ZNP_LIMITER_SHARDS);
    for (int g = 0; g < ZNP_GROUP_COUNT; g++) {
        const znp_config_rate_group_t *rates = rate_group(config, (znp_route_group_t)g);
        const znp_config_rate_t *each[] = {&rates->ip, &rates->user, &rates->global};

        for (int k = 0; k < 3; k++) {
            char rate_path[64], burst_path[64];

            snprintf(rate_path, sizeof(rate_path), "rate_limits.groups.%s.%s.rate_per_minute", group_names[g],
                     kinds[k]);
            snprintf(burst_path, sizeof(burst_path), "rate_limits.groups.%s.%s.burst", group_names[g], kinds[k]);
            if ((rc = check_rate(rate_path, burst_path, each[k]->rate_per_minute, each[k]->burst, f)) != 0)
                return rc;
        }
    }
    return 0;
}
