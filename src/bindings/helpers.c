/* Pure helpers of the bindings module: the listen rule and the kernel tag list. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings/internal.h"
#include "download/download.h"
#include "uniproxy/uniproxy.h"

/* The value of `s` as a port 1..65535 when it is only decimal digits, else 0. */
static long port_of(const char *s)
{
    long port = 0;

    if (*s == '\0' || strlen(s) > 5)
        return 0;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        port = port * 10 + (*p - '0');
    }
    return port >= 1 && port <= 65535 ? port : 0;
}

int znp_bindings__listen_check(const char *listen)
{
    const char *colon;

    if (*listen == '\0')
        return 0;
    colon = strrchr(listen, ':');
    if (colon == NULL)
        return port_of(listen) > 0 ? 0 : -1;
    if (colon == listen)
        return -1;
    if (strchr(listen, ' ') != NULL || strchr(listen, '/') != NULL)
        return -1;
    return port_of(colon + 1) > 0 ? 0 : -1;
}

int znp_bindings__listen_address(const char *listen, int64_t access_port, char *out, size_t size)
{
    int n;

    if (listen != NULL && strchr(listen, ':') != NULL)
        n = snprintf(out, size, "%s", listen);
    else if (listen != NULL && *listen != '\0')
        n = snprintf(out, size, "0.0.0.0:%s", listen);
    else if (access_port > 0)
        n = snprintf(out, size, "0.0.0.0:%" PRId64, access_port);
    else
        n = snprintf(out, size, "%s", "");
    return n >= 0 && (size_t)n < size ? 0 : -1;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

json_t *znp_bindings__kernel_tags(const json_t *in)
{
    json_t *out = json_array(), *item;
    size_t index;

    if (out == NULL)
        return NULL;
    json_array_foreach(in, index, item) {
        const char *s = json_string_value(item);
        size_t len, seen = 0;
        json_t *text;

        if (s == NULL)
            continue;
        while (is_space(*s))
            s++;
        len = strlen(s);
        while (len > 0 && is_space(s[len - 1]))
            len--;
        if (len == 0)
            continue;
        for (; seen < json_array_size(out); seen++) {
            const char *prior = json_string_value(json_array_get(out, seen));
            if (strlen(prior) == len && memcmp(prior, s, len) == 0)
                break;
        }
        if (seen < json_array_size(out))
            continue;
        text = json_stringn(s, len);
        if (text == NULL || json_array_append_new(out, text) != 0) {
            json_decref(out);
            return NULL;
        }
    }
    return out;
}

void znp_bindings__eligibility_changed(void)
{
    znp_download_cache_clear();
    znp_uniproxy_invalidate();
}
