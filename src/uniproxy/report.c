/*
 * Parsing of the push and alive bodies. Their keys are user ids, so they do
 * not fit a fixed schema. They are read here with jansson and checked value
 * by value, and one wrong value rejects the whole report.
 */
#include "uniproxy/internal.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#include "errors.gen.h"

#define IP_MAX 64
#define IPS_PER_USER_MAX 256

typedef struct checker {
    uniproxy_report_t *report;
    json_t *more; /* details after the first */
} checker_t;

/* Record a bad value at `key` (may be NULL for the body itself). */
static void reject(checker_t *c, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void reject(checker_t *c, const char *key, const char *fmt, ...)
{
    uniproxy_report_t *r = c->report;
    char field[128];
    char message[160];
    va_list ap;

    r->bad_count++;
    if (r->bad_count > UNIPROXY_MAX_DETAILS)
        return;
    /* keys can be anything a client sends, so the path shows at most 48 bytes of one */
    if (key != NULL)
        snprintf(field, sizeof field, "$.%.48s", key);
    else
        snprintf(field, sizeof field, "$");
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    if (r->bad_count == 1) {
        memcpy(r->first_field, field, sizeof field);
        memcpy(r->first_message, message, sizeof message);
        return;
    }
    if (c->more == NULL)
        c->more = json_array();
    if (c->more != NULL)
        json_array_append_new(c->more, json_pack("{s:s, s:s}", "field", field, "message", message));
}

/* A user id key: a decimal integer from 1 to INT64_MAX without sign or leading zeros. */
static int parse_user_id(const char *key, int64_t *out)
{
    char *end = NULL;
    long long v;

    if (key[0] < '1' || key[0] > '9' || strlen(key) > 19)
        return -1;
    for (const char *p = key; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return -1;
    }
    errno = 0;
    v = strtoll(key, &end, 10);
    if (errno != 0 || *end != '\0' || v <= 0)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/*
 * One counter. With ints_as_reals the body was read with
 * JSON_DECODE_INT_AS_REAL because some integer did not fit jansson's
 * integer, and then integral reals are judged by their magnitude.
 */
static int check_counter(checker_t *c, const char *key, const char *name, json_t *v, int ints_as_reals, int64_t *out)
{
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0) {
            reject(c, key, "%s %lld is negative; counters are byte counts from 0 to 9223372036854775807", name,
                   (long long)json_integer_value(v));
            return -1;
        }
        *out = (int64_t)json_integer_value(v);
        return 0;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);

        if (ints_as_reals && d == floor(d)) {
            if (d < 0) {
                reject(c, key, "%s is negative; counters are byte counts from 0 to 9223372036854775807", name);
                return -1;
            }
            if (d >= 9223372036854775808.0) {
                reject(c, key, "%s is larger than 9223372036854775807", name);
                return -1;
            }
            /* in range, but possibly rounded: the report is rejected for its too-large integer anyway */
            *out = (int64_t)d;
            return 0;
        }
        reject(c, key, "%s %g is not an integer; send whole bytes from 0 to 9223372036854775807", name, d);
        return -1;
    }
    reject(c, key, "%s must be a number of bytes, not a %s", name,
           json_is_string(v) ? "string" : json_is_null(v) ? "null" : json_is_boolean(v) ? "boolean" : "structure");
    return -1;
}

/* Load the body as a JSON object. Returns 0, ZNP_E_BODY_REQUIRED or ZNP_E_INVALID_JSON. */
static int load_object(const char *body, size_t len, json_t **out, int *ints_as_reals)
{
    json_error_t jerr;
    json_t *doc;

    *out = NULL;
    *ints_as_reals = 0;
    if (body == NULL || len == 0)
        return ZNP_E_BODY_REQUIRED;
    doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL && strstr(jerr.text, "too big") != NULL) {
        /* an integer beyond jansson's range is an out-of-range counter, reported per key below */
        doc = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr);
        *ints_as_reals = 1;
    }
    if (doc == NULL)
        return ZNP_E_INVALID_JSON;
    if (!json_is_object(doc)) {
        json_decref(doc);
        return ZNP_E_INVALID_JSON;
    }
    *out = doc;
    return 0;
}

static int finish(checker_t *c)
{
    uniproxy_report_t *r = c->report;

    if (c->more != NULL) {
        r->more_details = json_dumps(c->more, JSON_COMPACT);
        json_decref(c->more);
        c->more = NULL;
    }
    if (r->bad_count > 0) {
        free(r->usage);
        free(r->online);
        r->usage = NULL;
        r->online = NULL;
        r->count = 0;
        return ZNP_E_NODE_REPORT_INVALID;
    }
    return 0;
}

int uniproxy_parse_push(const char *body, size_t len, uniproxy_report_t *out)
{
    checker_t c = {.report = out};
    json_t *doc = NULL;
    const char *key;
    json_t *value;
    int ints_as_reals;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = load_object(body, len, &doc, &ints_as_reals);
    if (rc != 0)
        return rc;
    out->usage = calloc(json_object_size(doc) + 1, sizeof(*out->usage));
    if (out->usage == NULL) {
        json_decref(doc);
        return ZNP_E_INTERNAL;
    }

    json_object_foreach(doc, key, value) {
        uniproxy_usage_t u = {0};
        int bad = 0;

        if (parse_user_id(key, &u.user_id) != 0) {
            reject(&c, key, "key must be a user id, a positive integer");
            bad = 1;
        }
        if (!json_is_array(value) || json_array_size(value) != 2) {
            reject(&c, key, "value must be [upload, download], two byte counts");
            continue;
        }
        if (check_counter(&c, key, "upload", json_array_get(value, 0), ints_as_reals, &u.upload) != 0 ||
            check_counter(&c, key, "download", json_array_get(value, 1), ints_as_reals, &u.download) != 0 || bad)
            continue;
        if (u.upload > INT64_MAX - u.download) {
            reject(&c, key, "upload plus download is larger than 9223372036854775807");
            continue;
        }
        out->usage[out->count++] = u;
    }

    /* the too-large integer sat somewhere no check above looks, such as a third array item */
    if (ints_as_reals && out->bad_count == 0)
        reject(&c, NULL, "an integer is larger than 9223372036854775807");
    json_decref(doc);
    return finish(&c);
}

static int ip_well_formed(const char *ip)
{
    size_t len = strlen(ip);

    if (len == 0 || len > IP_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = ip[i];

        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == ':' || ch == '_' || ch == '-' || ch == '%' || ch == '[' || ch == ']'))
            return 0;
    }
    return 1;
}

int uniproxy_parse_alive(const char *body, size_t len, uniproxy_report_t *out)
{
    checker_t c = {.report = out};
    json_t *doc = NULL;
    const char *key;
    json_t *value;
    size_t pairs = 0;
    size_t bytes = 0;
    char *cursor;
    int ints_as_reals;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = load_object(body, len, &doc, &ints_as_reals);
    if (rc != 0)
        return rc;
    json_object_foreach(doc, key, value) {
        if (!json_is_array(value))
            continue;
        pairs += json_array_size(value);
        for (size_t i = 0; i < json_array_size(value); i++) {
            if (json_is_string(json_array_get(value, i)))
                bytes += strlen(json_string_value(json_array_get(value, i))) + 1;
        }
    }
    out->online = calloc(pairs + 1, sizeof(*out->online));
    out->storage = malloc(bytes + 1);
    if (out->online == NULL || out->storage == NULL) {
        json_decref(doc);
        return ZNP_E_INTERNAL;
    }
    cursor = out->storage;

    json_object_foreach(doc, key, value) {
        int64_t user_id = 0;
        size_t n;

        if (parse_user_id(key, &user_id) != 0) {
            reject(&c, key, "key must be a user id, a positive integer");
            continue;
        }
        if (!json_is_array(value)) {
            reject(&c, key, "value must be an array of IP addresses");
            continue;
        }
        n = json_array_size(value);
        if (n > IPS_PER_USER_MAX) {
            reject(&c, key, "%zu addresses for one user, at most %d are accepted", n, IPS_PER_USER_MAX);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *item = json_array_get(value, i);
            size_t item_len;

            if (!json_is_string(item) || !ip_well_formed(json_string_value(item))) {
                reject(&c, key, "item %zu must be an IP address of 1 to 64 characters", i);
                continue;
            }
            item_len = strlen(json_string_value(item));
            memcpy(cursor, json_string_value(item), item_len + 1);
            out->online[out->count].user_id = user_id;
            out->online[out->count].ip = cursor;
            out->count++;
            cursor += item_len + 1;
        }
    }

    json_decref(doc);
    return finish(&c);
}

void uniproxy_report_dispose(uniproxy_report_t *report)
{
    if (report == NULL)
        return;
    free(report->usage);
    free(report->online);
    free(report->more_details);
    free(report->storage);
    memset(report, 0, sizeof(*report));
}

const char *uniproxy_canonical_protocol(const char *name)
{
    static const struct {
        const char *alias;
        const char *canonical;
    } aliases[] = {
        {"v2ray", "vmess"},       {"ss", "shadowsocks"}, {"shadowsocks2022", "shadowsocks"},
        {"hy2", "hysteria2"},     {"tuic-v5", "tuic"},   {"tuicv5", "tuic"},
    };

    if (name == NULL)
        return "";
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
        if (strcasecmp(name, aliases[i].alias) == 0)
            return aliases[i].canonical;
    }
    return name;
}
