/*
 * The kernel control client: one libcurl easy handle per call, so calls from
 * any thread share nothing. Success is HTTP 200 exactly; every other outcome
 * becomes an error with a one-line reason. Credentials live only in the
 * target's auth header and are never logged: an auth failure logs the auth
 * type, the masked access key and 8-hex-digit fingerprints.
 */
#include "kernel/kernel.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "auth/sql.h"
#include "core/crypto.h"
#include "core/log.h"
#include "errors.gen.h"
#include "kernel/internal.h"
#include "runtime/metrics.h"

#define LOG_TAG            "kernel"
#define BODY_MAX           (16u << 20) /* a larger response body is an error */
#define ERROR_BODY_MAX     1024        /* bytes of a non-200 body quoted in the reason */
#define CONNECT_RETRIES    2           /* extra tries after a refused connection */
#define SECRET_MAX         2048
#define DEFAULT_TIMEOUT_MS 5000L

typedef struct buffer {
    char *data;
    size_t len;
    int too_large;
} buffer_t;

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    buffer_t *buf = userdata;
    size_t n = size * nmemb;
    char *grown;

    if (buf->len + n > BODY_MAX) {
        buf->too_large = 1;
        return 0; /* aborts the transfer */
    }
    grown = realloc(buf->data, buf->len + n + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + buf->len, ptr, n);
    buf->data = grown;
    buf->len += n;
    buf->data[buf->len] = '\0';
    return n;
}

static char *dup_range(const char *s, size_t len)
{
    char *out = malloc(len + 1);

    if (out != NULL) {
        memcpy(out, s, len);
        out[len] = '\0';
    }
    return out;
}

int znp_kernel__base_url(const char *endpoint, char **out)
{
    size_t len;

    *out = NULL;
    if (endpoint == NULL)
        return ZNP_E_VALIDATION_FAILED;
    while (isspace((unsigned char)*endpoint))
        endpoint++;
    len = strlen(endpoint);
    while (len > 0 && (endpoint[len - 1] == '/' || isspace((unsigned char)endpoint[len - 1])))
        len--;
    if (len == 0)
        return ZNP_E_VALIDATION_FAILED;
    if (len >= 3 && strncmp(endpoint + len - 3, "/v1", 3) == 0) {
        *out = dup_range(endpoint, len);
    } else {
        *out = malloc(len + 4);
        if (*out != NULL) {
            memcpy(*out, endpoint, len);
            memcpy(*out + len, "/v1", 4);
        }
    }
    return *out != NULL ? 0 : ZNP_E_INTERNAL;
}

static int has_prefix_nocase(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

int znp_kernel__auth_header(const char *access_key, const char *secret_key, const char *token, char **out)
{
    static const char prefix[] = "Authorization: ";

    *out = NULL;
    if (access_key != NULL && *access_key != '\0' && secret_key != NULL && *secret_key != '\0') {
        size_t plain_len = strlen(access_key) + 1 + strlen(secret_key);
        size_t b64_len = 4 * ((plain_len + 2) / 3);
        char *plain = malloc(plain_len + 1);
        char *line = malloc(sizeof(prefix) - 1 + 6 + b64_len + 1);

        if (plain == NULL || line == NULL) {
            free(plain);
            free(line);
            return ZNP_E_INTERNAL;
        }
        snprintf(plain, plain_len + 1, "%s:%s", access_key, secret_key);
        memcpy(line, prefix, sizeof(prefix) - 1);
        memcpy(line + sizeof(prefix) - 1, "Basic ", 6);
        EVP_EncodeBlock((unsigned char *)line + sizeof(prefix) - 1 + 6, (const unsigned char *)plain, (int)plain_len);
        OPENSSL_cleanse(plain, plain_len);
        free(plain);
        *out = line;
        return 0;
    }
    if (token != NULL) {
        size_t len;

        while (isspace((unsigned char)*token))
            token++;
        len = strlen(token);
        while (len > 0 && isspace((unsigned char)token[len - 1]))
            len--;
        if (len > 0) {
            int keep = has_prefix_nocase(token, "Bearer ") || has_prefix_nocase(token, "Basic ");
            size_t size = sizeof(prefix) - 1 + (keep ? 0 : 7) + len + 1;
            char *line = malloc(size);

            if (line == NULL)
                return ZNP_E_INTERNAL;
            snprintf(line, size, "%s%s%.*s", prefix, keep ? "" : "Bearer ", (int)len, token);
            *out = line;
        }
    }
    return 0;
}

int znp_kernel_target_init(znp_kernel_target_t *out, int64_t node_id, const char *endpoint, const char *access_key,
                           const char *secret_key, const char *token, long timeout_s)
{
    int rc;

    memset(out, 0, sizeof(*out));
    out->node_id = node_id;
    out->timeout_ms = timeout_s > 0 ? timeout_s * 1000 : DEFAULT_TIMEOUT_MS;
    rc = znp_kernel__base_url(endpoint, &out->base_url);
    if (rc == 0)
        rc = znp_kernel__auth_header(access_key, secret_key, token, &out->auth_header);
    if (rc != 0)
        znp_kernel_target_clear(out);
    return rc;
}

void znp_kernel_target_clear(znp_kernel_target_t *t)
{
    if (t == NULL)
        return;
    free(t->base_url);
    if (t->auth_header != NULL) {
        OPENSSL_cleanse(t->auth_header, strlen(t->auth_header));
        free(t->auth_header);
    }
    memset(t, 0, sizeof(*t));
}

/* Unseal one base64 credential of node `id` into a malloc'd string; NULL or "" sealed gives NULL. */
static int unseal(const uint8_t key[ZNP_CRYPTO_KEY_LEN], int64_t id, const char *field, const char *b64, char **out)
{
    size_t b64_len = b64 != NULL ? strlen(b64) : 0;
    uint8_t *sealed = NULL;
    char aad[64];
    size_t plain_len = 0;
    int decoded, rc = ZNP_E_INTERNAL;

    *out = NULL;
    if (b64_len == 0)
        return 0;
    if (b64_len % 4 != 0 || b64_len > 4 * ((SECRET_MAX + ZNP_CRYPTO_OVERHEAD + 2) / 3))
        return ZNP_E_INTERNAL;
    sealed = malloc(b64_len / 4 * 3 + 1);
    *out = malloc(b64_len / 4 * 3 + 1);
    if (sealed == NULL || *out == NULL)
        goto cleanup;
    decoded = EVP_DecodeBlock(sealed, (const unsigned char *)b64, (int)b64_len);
    if (decoded < 0)
        goto cleanup;
    for (size_t i = b64_len; i > 0 && b64[i - 1] == '='; i--)
        decoded--;
    snprintf(aad, sizeof(aad), "node:%" PRId64 ":%s", id, field);
    if (znp_crypto_open((uint8_t *)*out, b64_len / 4 * 3, &plain_len, key, sealed, (size_t)decoded, aad, strlen(aad)) !=
        0)
        goto cleanup;
    (*out)[plain_len] = '\0';
    rc = 0;

cleanup:
    free(sealed);
    if (rc != 0) {
        free(*out);
        *out = NULL;
    }
    return rc;
}

static void free_secret(char *s)
{
    if (s != NULL) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

int znp_kernel_target_load(PGconn *db, const znp_config_t *config, int64_t node_id, znp_kernel_target_t *out,
                           const char *request_id)
{
    static const char sql[] = "SELECT control_endpoint, control_access_key_sealed, control_secret_key_sealed,"
                              " control_token_sealed, kernel_http_timeout_seconds"
                              " FROM nodes WHERE id = $1 AND deleted_at IS NULL";
    char id_text[24];
    const char *params[1] = {id_text};
    PGresult *res = NULL;
    char *ak = NULL, *sk = NULL, *token = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    snprintf(id_text, sizeof(id_text), "%" PRId64, node_id);
    rc = znp_sql_exec(&res, db, sql, 1, params, request_id);
    if (rc != 0)
        goto cleanup;
    if (PQntuples(res) != 1) {
        rc = ZNP_E_NOT_FOUND;
        goto cleanup;
    }
    rc = znp_kernel__open_credentials(config, node_id, PQgetisnull(res, 0, 1) ? NULL : PQgetvalue(res, 0, 1),
                                      PQgetisnull(res, 0, 2) ? NULL : PQgetvalue(res, 0, 2),
                                      PQgetisnull(res, 0, 3) ? NULL : PQgetvalue(res, 0, 3), &ak, &sk, &token,
                                      request_id);
    if (rc == 0)
        rc = znp_kernel_target_init(out, node_id, PQgetvalue(res, 0, 0), ak, sk, token,
                                    strtol(PQgetvalue(res, 0, 4), NULL, 10));

cleanup:
    free_secret(ak);
    free_secret(sk);
    free_secret(token);
    PQclear(res);
    return rc;
}

int znp_kernel__open_credentials(const znp_config_t *config, int64_t node_id, const char *ak_sealed,
                                 const char *sk_sealed, const char *token_sealed, char **ak, char **sk, char **token,
                                 const char *request_id)
{
    uint8_t key[ZNP_CRYPTO_KEY_LEN];
    int rc = 0;

    *ak = *sk = *token = NULL;
    if ((ak_sealed == NULL || *ak_sealed == '\0') && (sk_sealed == NULL || *sk_sealed == '\0') &&
        (token_sealed == NULL || *token_sealed == '\0'))
        return 0;
    if (config == NULL || znp_crypto_key_decode(key, config->security.master_key) != 0) {
        ZNP_ERROR(LOG_TAG, request_id, "security.master_key is missing or malformed");
        return ZNP_E_INTERNAL;
    }
    if (unseal(key, node_id, "control_access_key", ak_sealed, ak) != 0 ||
        unseal(key, node_id, "control_secret_key", sk_sealed, sk) != 0 ||
        unseal(key, node_id, "control_token", token_sealed, token) != 0) {
        ZNP_ERROR(LOG_TAG, request_id, "could not unseal the control credentials of node_id=%" PRId64, node_id);
        free_secret(*ak);
        free_secret(*sk);
        free_secret(*token);
        *ak = *sk = *token = NULL;
        rc = ZNP_E_INTERNAL;
    }
    OPENSSL_cleanse(key, sizeof(key));
    return rc;
}

void znp_kernel_mask_key(const char *key, char *out, size_t size)
{
    size_t len = key != NULL ? strlen(key) : 0;

    if (size == 0)
        return;
    if (len <= 4)
        snprintf(out, size, "****");
    else
        snprintf(out, size, "%.2s***%.2s", key, key + len - 2);
}

void znp_kernel_fingerprint(const char *secret, char out[9])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];

    out[0] = '\0';
    if (secret == NULL || *secret == '\0')
        return;
    SHA256((const unsigned char *)secret, strlen(secret), digest);
    snprintf(out, 9, "%02x%02x%02x%02x", digest[0], digest[1], digest[2], digest[3]);
}

/* Log an auth failure with what identifies the credentials, never the credentials. */
static void log_auth_failure(const znp_kernel_target_t *t, long status)
{
    const char *value = t->auth_header != NULL ? t->auth_header + strlen("Authorization: ") : NULL;
    char masked[16] = "", fp[9] = "";

    if (value == NULL) {
        ZNP_WARN(LOG_TAG, NULL, "kernel rejected the call node_id=%" PRId64 " status=%ld auth=none", t->node_id,
                 status);
        return;
    }
    if (has_prefix_nocase(value, "Basic ")) {
        const char *b64 = value + 6;
        size_t len = strlen(b64);
        unsigned char *plain = malloc(len / 4 * 3 + 1);
        int n = plain != NULL && len % 4 == 0 ? EVP_DecodeBlock(plain, (const unsigned char *)b64, (int)len) : -1;

        if (n >= 0) {
            char *colon;

            for (size_t i = len; i > 0 && b64[i - 1] == '='; i--)
                n--;
            plain[n] = '\0';
            colon = strchr((char *)plain, ':');
            if (colon != NULL) {
                *colon = '\0';
                znp_kernel_mask_key((char *)plain, masked, sizeof(masked));
                znp_kernel_fingerprint(colon + 1, fp);
            }
            OPENSSL_cleanse(plain, (size_t)n);
        }
        free(plain);
        ZNP_WARN(LOG_TAG, NULL,
                 "kernel rejected the credentials node_id=%" PRId64 " status=%ld auth=basic access_key=%s"
                 " secret_fingerprint=%s",
                 t->node_id, status, masked, fp);
        return;
    }
    znp_kernel_fingerprint(has_prefix_nocase(value, "Bearer ") ? value + 7 : value, fp);
    ZNP_WARN(LOG_TAG, NULL,
             "kernel rejected the credentials node_id=%" PRId64 " status=%ld auth=%s token_fingerprint=%s", t->node_id,
             status, has_prefix_nocase(value, "Bearer ") ? "bearer" : "token", fp);
}

/* Copy up to `max` bytes of `in` as one printable line: control bytes and broken UTF-8 become '?'. */
void znp_kernel__one_line(char *out, size_t size, const char *in, size_t len)
{
    size_t o = 0, i = 0;

    if (size == 0)
        return;
    while (i < len && o + 1 < size) {
        unsigned char c = (unsigned char)in[i];
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        int valid = n > 0 && i + n <= len && (n == 1 || c >= 0xc2);

        for (size_t k = 1; valid && k < n; k++)
            valid = ((unsigned char)in[i + k] & 0xc0) == 0x80;
        if (!valid || (n == 1 && (c < 0x20 || c == 0x7f))) {
            out[o++] = c == '\n' || c == '\r' || c == '\t' ? ' ' : '?';
            i++;
            continue;
        }
        if (o + n >= size)
            break;
        memcpy(out + o, in + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
}

/* The metric label of a call path: a fixed name, so raw ids never become labels. */
static const char *call_label(const char *path)
{
    if (strncmp(path, "/status", 7) == 0)
        return "status";
    if (strncmp(path, "/protocols", 10) == 0)
        return "protocols";
    if (strncmp(path, "/events/registrations", 21) == 0)
        return "event_registrations";
    if (strncmp(path, "/service-events/registrations", 29) == 0)
        return "service_event_registrations";
    if (strncmp(path, "/nodes/", 7) == 0)
        return "node_config";
    return "other";
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* abort a transfer when the process stops */
static int progress(void *data, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    (void)data;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return znp_kernel__stopping();
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Keep the ETag and Date headers of the final response. */
static size_t collect_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    znp_kernel_reply_t *reply = userdata;
    size_t n = size * nmemb, len = n;

    while (len > 0 && (ptr[len - 1] == '\r' || ptr[len - 1] == '\n'))
        len--;
    if (len >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
        reply->etag[0] = '\0'; /* a new response (after a redirect or 100 Continue) starts */
        reply->date = 0;
    } else if (len > 5 && strncasecmp(ptr, "ETag:", 5) == 0) {
        size_t start = 5;

        while (start < len && (ptr[start] == ' ' || ptr[start] == '\t'))
            start++;
        znp_kernel__one_line(reply->etag, sizeof(reply->etag), ptr + start, len - start);
    } else if (len > 5 && strncasecmp(ptr, "Date:", 5) == 0) {
        char text[64];

        znp_kernel__one_line(text, sizeof(text), ptr + 5, len - 5);
        reply->date = (int64_t)curl_getdate(text, NULL);
        if (reply->date < 0)
            reply->date = 0;
    }
    return n;
}

int znp_kernel_call(const znp_kernel_target_t *t, const char *method, const char *path, json_t *body, json_t **out,
                    char *errbuf, size_t errsize)
{
    return znp_kernel__request(t, method, path, body, out, NULL, errbuf, errsize);
}

int znp_kernel__request(const znp_kernel_target_t *t, const char *method, const char *path, json_t *body, json_t **out,
                        znp_kernel_reply_t *reply, char *errbuf, size_t errsize)
{
    CURL *curl = NULL;
    struct curl_slist *headers = NULL;
    char *url = NULL, *payload = NULL;
    buffer_t buf = {0};
    const char *result = "error";
    struct timespec start;
    long status = 0;
    CURLcode cc = CURLE_OK;
    char dummy[8];
    int rc = ZNP_E_KERNEL_UNAVAILABLE;

    if (out != NULL)
        *out = NULL;
    if (errbuf == NULL || errsize == 0) {
        errbuf = dummy;
        errsize = sizeof(dummy);
    }
    errbuf[0] = '\0';
    clock_gettime(CLOCK_MONOTONIC, &start);
    if (t == NULL || t->base_url == NULL || method == NULL || path == NULL) {
        snprintf(errbuf, errsize, "kernel control: no endpoint");
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    size_t url_size = strlen(t->base_url) + strlen(path) + 2;
    url = malloc(url_size);
    if (url == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    snprintf(url, url_size, "%s%s%s", t->base_url, path[0] == '/' ? "" : "/", path);
    if (body != NULL && (payload = json_dumps(body, JSON_COMPACT)) == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    curl = curl_easy_init();
    if (curl == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    headers = curl_slist_append(headers, "Accept: application/json");
    if (payload != NULL)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    if (t->auth_header != NULL)
        headers = curl_slist_append(headers, t->auth_header);
    headers = curl_slist_append(headers, "Expect:");
    if (headers == NULL) {
        rc = ZNP_E_INTERNAL;
        goto cleanup;
    }
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L); /* worker threads must not get SIGALRM */
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, t->timeout_ms > 0 ? t->timeout_ms : DEFAULT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, t->timeout_ms > 0 ? t->timeout_ms : DEFAULT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &buf);
    if (reply != NULL) {
        memset(reply, 0, sizeof(*reply));
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, collect_header);
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, reply);
    }
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    if (strcmp(method, "GET") != 0)
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (payload != NULL) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    }

    for (int attempt = 0;; attempt++) {
        buf.len = 0;
        buf.too_large = 0;
        cc = curl_easy_perform(curl);
        /* only a refused or failed connect is retried: the kernel saw nothing of the request */
        if (cc != CURLE_COULDNT_CONNECT || attempt >= CONNECT_RETRIES)
            break;
        if (seconds_since(&start) * 1000 + 100L * (attempt + 1) >= (double)t->timeout_ms)
            break;
        sleep_ms(100L * (attempt + 1));
    }
    if (cc != CURLE_OK) {
        if (cc == CURLE_OPERATION_TIMEDOUT) {
            result = "timeout";
            snprintf(errbuf, errsize, "kernel control: timeout after %ld ms", t->timeout_ms);
        } else if (buf.too_large) {
            snprintf(errbuf, errsize, "kernel control: answer larger than %u bytes", BODY_MAX);
        } else {
            result = "unreachable";
            snprintf(errbuf, errsize, "kernel control: %s", curl_easy_strerror(cc));
        }
        goto cleanup;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        char quoted[ERROR_BODY_MAX * 4 + 1];

        znp_kernel__one_line(quoted, sizeof(quoted), buf.data != NULL ? buf.data : "",
                             buf.len < ERROR_BODY_MAX ? buf.len : ERROR_BODY_MAX);
        snprintf(errbuf, errsize, "kernel control: %ld: %s", status, quoted);
        if (status == 401 || status == 403) {
            result = "unauthorized";
            log_auth_failure(t, status);
        }
        rc = status == 404 ? ZNP_E_NOT_FOUND : ZNP_E_KERNEL_UNAVAILABLE;
        goto cleanup;
    }
    if (buf.len > 0) {
        size_t i = 0;

        while (i < buf.len && isspace((unsigned char)buf.data[i]))
            i++;
        if (i < buf.len) {
            json_t *value = json_loadb(buf.data, buf.len, JSON_DECODE_ANY, NULL);

            if (value == NULL) {
                result = "malformed";
                snprintf(errbuf, errsize, "kernel control: malformed JSON");
                goto cleanup;
            }
            if (out != NULL)
                *out = value;
            else
                json_decref(value);
        }
    }
    result = "ok";
    rc = 0;

cleanup:
    znp_metrics_kernel_call(path != NULL ? call_label(path) : "other", result, seconds_since(&start));
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    free(url);
    free(payload);
    free(buf.data);
    return rc;
}

static int health_name(const char *s)
{
    static const struct {
        const char *name;
        int value;
    } names[] = {{"healthy", 1}, {"degraded", 2}, {"unhealthy", 3}, {"offline", 4}};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(s, names[i].name) == 0)
            return names[i].value;
    }
    return 0;
}

int znp_kernel_health_of(const json_t *status)
{
    if (json_is_string(status))
        return health_name(json_string_value(status));
    if (json_is_object(status) && json_object_size(status) == 1) {
        const char *key = json_object_iter_key(json_object_iter((json_t *)status));

        return key != NULL ? health_name(key) : 0;
    }
    return 0;
}
