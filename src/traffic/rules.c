/*
 * The pure rules of traffic accounting: saturating sums, charged bytes,
 * record validation, webhook signature parsing and checking. Nothing here
 * touches the database.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "errors.gen.h"
#include "traffic/internal.h"

int64_t traffic__saturating_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

int64_t traffic__charge(int64_t raw, double multiplier)
{
    double charged;

    if (raw <= 0)
        return 0;
    if (!isfinite(multiplier) || multiplier <= 0 || multiplier == 1.0)
        return raw;
    charged = round((double)raw * multiplier);
    /* 9223372036854775807 is not a double: 2^63 is the first value that does not fit */
    if (charged >= 9223372036854775808.0)
        return INT64_MAX;
    return (int64_t)charged;
}

/* ---- webhook signatures ---- */

static int is_hex64(const char *text, size_t len)
{
    if (len != 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!isxdigit((unsigned char)text[i]))
            return 0;
    }
    return 1;
}

int traffic__signature_parse(const char *header, traffic_signature_t *out)
{
    const char *cursor = header;
    int have_timestamp = 0;

    memset(out, 0, sizeof(*out));
    if (header == NULL)
        return -1;
    while (*cursor != '\0') {
        const char *end = strchr(cursor, ',');
        const char *value;
        size_t len;

        if (end == NULL)
            end = cursor + strlen(cursor);
        while (cursor < end && *cursor == ' ')
            cursor++;
        len = (size_t)(end - cursor);
        while (len > 0 && cursor[len - 1] == ' ')
            len--;
        value = memchr(cursor, '=', len);
        if (value != NULL) {
            size_t key_len = (size_t)(value - cursor);
            size_t value_len = len - key_len - 1;

            value++;
            if (key_len == 1 && cursor[0] == 't' && value_len > 0 && value_len <= 19) {
                char digits[20];
                char *stop;

                memcpy(digits, value, value_len);
                digits[value_len] = '\0';
                errno = 0;
                out->timestamp = strtoll(digits, &stop, 10);
                have_timestamp = errno == 0 && *stop == '\0' && isdigit((unsigned char)digits[0]);
            } else if (key_len == 2 && memcmp(cursor, "v1", 2) == 0 && is_hex64(value, value_len) &&
                       out->count < TRAFFIC_SIGNATURES_MAX) {
                for (size_t i = 0; i < 64; i++)
                    out->v1[out->count][i] = (char)tolower((unsigned char)value[i]);
                out->v1[out->count][64] = '\0';
                out->count++;
            }
        }
        cursor = *end == ',' ? end + 1 : end;
    }
    return have_timestamp && out->count > 0 ? 0 : -1;
}

/* hex HMAC-SHA256(secret, "<timestamp>.<body>") into out[65] */
static int expected_signature(char out[65], const char *secret, int64_t timestamp, const char *body, size_t body_len)
{
    static const char digits[] = "0123456789abcdef";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    char prefix[32];
    int prefix_len = snprintf(prefix, sizeof prefix, "%" PRId64 ".", timestamp);
    unsigned char *signed_text = NULL;
    int rc = -1;

    signed_text = malloc((size_t)prefix_len + body_len + 1);
    if (signed_text == NULL)
        goto cleanup;
    memcpy(signed_text, prefix, (size_t)prefix_len);
    if (body_len > 0)
        memcpy(signed_text + prefix_len, body, body_len);
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), signed_text, (size_t)prefix_len + body_len, mac, &mac_len) ==
            NULL ||
        mac_len != 32)
        goto cleanup;
    for (unsigned int i = 0; i < mac_len; i++) {
        out[2 * i] = digits[mac[i] >> 4];
        out[2 * i + 1] = digits[mac[i] & 0x0f];
    }
    out[64] = '\0';
    rc = 0;

cleanup:
    free(signed_text);
    return rc;
}

/* Constant-time equality of two strings; the time depends only on the lengths. */
static int secret_equal(const char *a, const char *b)
{
    unsigned char da[EVP_MAX_MD_SIZE], db[EVP_MAX_MD_SIZE];
    unsigned int la = 0, lb = 0;

    /* compare digests, so the compare length does not depend on the secret */
    if (EVP_Digest(a, strlen(a), da, &la, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(b, strlen(b), db, &lb, EVP_sha256(), NULL) != 1)
        return 0;
    return la == lb && CRYPTO_memcmp(da, db, la) == 0;
}

int traffic__webhook_check(const traffic_webhook_keys_t *keys, int64_t now, const char *token,
                           const char *signature, const char *body, size_t body_len, const char **reason)
{
    int have_token = keys->shared_token != NULL && keys->shared_token[0] != '\0';
    int have_secret = keys->signing_secret != NULL && keys->signing_secret[0] != '\0';

    if (!have_token && !have_secret) {
        *reason = "kernel callbacks are closed: set webhook.shared_token or webhook.signing_secret";
        return ZNP_E_WEBHOOK_UNAUTHENTICATED;
    }

    if (have_secret && signature != NULL) {
        traffic_signature_t parsed;
        char expected[65];
        int64_t skew;
        int match = 0;

        if (traffic__signature_parse(signature, &parsed) != 0) {
            *reason = "signature header must be t=<unix seconds>,v1=<64 hex digits>";
            return ZNP_E_WEBHOOK_UNAUTHENTICATED;
        }
        skew = parsed.timestamp > now ? parsed.timestamp - now : now - parsed.timestamp;
        if (skew > (int64_t)keys->tolerance_s) {
            *reason = "signature timestamp is outside the accepted window";
            return ZNP_E_WEBHOOK_UNAUTHENTICATED;
        }
        if (expected_signature(expected, keys->signing_secret, parsed.timestamp, body, body_len) != 0) {
            *reason = "could not compute the signature";
            return ZNP_E_WEBHOOK_UNAUTHENTICATED;
        }
        /* every candidate is compared, so the time does not tell which one matched */
        for (size_t i = 0; i < parsed.count; i++)
            match |= CRYPTO_memcmp(expected, parsed.v1[i], 64) == 0;
        if (!match) {
            *reason = "signature does not match the body";
            return ZNP_E_WEBHOOK_UNAUTHENTICATED;
        }
        return 0;
    }

    if (!have_token) {
        *reason = "signature header is missing";
        return ZNP_E_WEBHOOK_UNAUTHENTICATED;
    }
    if (token == NULL || token[0] == '\0') {
        *reason = "X-ZNP-Webhook-Token is missing";
        return ZNP_E_WEBHOOK_UNAUTHENTICATED;
    }
    if (!secret_equal(token, keys->shared_token)) {
        *reason = "X-ZNP-Webhook-Token is wrong";
        return ZNP_E_WEBHOOK_UNAUTHENTICATED;
    }
    return 0;
}

/* ---- records ---- */

/*
 * A non-negative int64 counter or id from `value` (absent counts as 0).
 * Returns 0, or -1 with the reason.
 */
static int read_count(const json_t *item, const char *name, int64_t *out, char *reason, size_t reason_size)
{
    const json_t *value = json_object_get(item, name);
    double real;

    *out = 0;
    if (value == NULL || json_is_null(value))
        return 0;
    if (json_is_integer(value)) {
        if (json_integer_value(value) < 0) {
            snprintf(reason, reason_size, "%s must not be negative", name);
            return -1;
        }
        *out = json_integer_value(value);
        return 0;
    }
    if (json_is_real(value)) {
        real = json_real_value(value);
        if (real < 0) {
            snprintf(reason, reason_size, "%s must not be negative", name);
            return -1;
        }
        if (real >= 9223372036854775808.0) {
            snprintf(reason, reason_size, "%s is out of range (maximum 9223372036854775807)", name);
            return -1;
        }
        snprintf(reason, reason_size, "%s must be an integer", name);
        return -1;
    }
    snprintf(reason, reason_size, "%s must be an integer", name);
    return -1;
}

int traffic__record_from_json(const json_t *item, znp_traffic_record_t *out, char *protocol, char *reason,
                              size_t reason_size)
{
    static const char *const ids[] = {"user_id", "subscription_id", "node_id", "binding_id"};
    int64_t *id_fields[] = {&out->user_id, &out->subscription_id, &out->node_id, &out->binding_id};
    const json_t *value;

    memset(out, 0, sizeof(*out));
    protocol[0] = '\0';
    out->protocol = protocol;
    if (!json_is_object(item)) {
        snprintf(reason, reason_size, "record must be an object");
        return -1;
    }

    /* counters */
    if (read_count(item, "bytes_up", &out->bytes_up, reason, reason_size) != 0 ||
        read_count(item, "bytes_down", &out->bytes_down, reason, reason_size) != 0)
        return -1;

    /* ids */
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        if (read_count(item, ids[i], id_fields[i], reason, reason_size) != 0)
            return -1;
    }
    if (out->subscription_id == 0 && out->user_id == 0) {
        snprintf(reason, reason_size, "subscription_id or user_id is required");
        return -1;
    }

    /* observed_at: any integer, <= 0 means now */
    value = json_object_get(item, "observed_at");
    if (value != NULL && !json_is_null(value)) {
        if (!json_is_integer(value)) {
            snprintf(reason, reason_size, "observed_at must be an integer");
            return -1;
        }
        out->observed_at = json_integer_value(value);
    }

    /* protocol */
    value = json_object_get(item, "protocol");
    if (value != NULL && !json_is_null(value)) {
        const char *text;
        size_t len;

        if (!json_is_string(value)) {
            snprintf(reason, reason_size, "protocol must be a string");
            return -1;
        }
        text = json_string_value(value);
        len = json_string_length(value);
        if (traffic__protocol_normalize(text, len, protocol, reason, reason_size) != 0)
            return -1;
    }
    return 0;
}

int traffic__protocol_normalize(const char *text, size_t len, char *out, char *reason, size_t reason_size)
{
    out[0] = '\0';
    if (len > TRAFFIC_PROTOCOL_MAX) {
        if (reason != NULL)
            snprintf(reason, reason_size, "protocol is longer than %d characters", TRAFFIC_PROTOCOL_MAX);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];

        if (!(isalnum(c) || c == '_' || c == '-')) {
            if (reason != NULL)
                snprintf(reason, reason_size, "protocol must contain only letters, digits, '_' and '-'");
            out[0] = '\0';
            return -1;
        }
        out[i] = (char)tolower(c);
    }
    out[len] = '\0';
    return 0;
}

/* ---- events ---- */

void traffic__event_normalize(const char *event, char *out, size_t out_size)
{
    size_t i = 0;

    if (out_size == 0)
        return;
    for (; event != NULL && event[i] != '\0' && i + 1 < out_size; i++) {
        char c = event[i];

        out[i] = c == '.' || c == '-' ? '_' : (char)tolower((unsigned char)c);
    }
    out[i] = '\0';
}

int traffic__health_of(const char *status, const char *event)
{
    static const struct {
        const char *name;
        int health;
    } names[] = {
        {"healthy", 1},        {"degraded", 2},     {"unhealthy", 3},       {"offline", 4},
        {"node_healthy", 1},   {"node_degraded", 2}, {"node_unhealthy", 3}, {"node_removed", 4},
    };
    char normalized[64];

    traffic__event_normalize(status, normalized, sizeof normalized);
    for (size_t i = 0; i < 4; i++) {
        if (strcmp(normalized, names[i].name) == 0)
            return names[i].health;
    }
    traffic__event_normalize(event, normalized, sizeof normalized);
    for (size_t i = 4; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(normalized, names[i].name) == 0)
            return names[i].health;
    }
    return 0;
}

const char *traffic__time_zone(const znp_config_t *config)
{
    if (config == NULL || config->panel.time_zone == NULL || config->panel.time_zone[0] == '\0')
        return TRAFFIC_DEFAULT_ZONE;
    return config->panel.time_zone;
}
