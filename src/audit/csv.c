/* CSV cells for the audit export, and the User-Agent cleanup of audit rows. */
#include "audit/internal.h"

#include <stdlib.h>
#include <string.h>

static int reserve(char **out, size_t *len, size_t *cap, size_t extra)
{
    size_t need = *len + extra + 1;
    size_t grown_cap = *cap > 0 ? *cap : 1024;
    char *grown;

    if (need <= *cap)
        return 0;
    while (grown_cap < need)
        grown_cap *= 2;
    grown = realloc(*out, grown_cap);
    if (grown == NULL)
        return -1;
    *out = grown;
    *cap = grown_cap;
    return 0;
}

int znp_audit__csv_field(char **out, size_t *len, size_t *cap, const char *value)
{
    size_t value_len = value != NULL ? strlen(value) : 0;
    int formula = value_len > 0 && strchr("=+-@", value[0]) != NULL;
    int quote = value_len > 0 && strpbrk(value, ",\"\r\n") != NULL;
    char *o;

    /* worst case: every byte a doubled quote, plus two quotes and the formula guard */
    if (reserve(out, len, cap, value_len * 2 + 3) != 0)
        return -1;
    o = *out + *len;
    if (quote)
        *o++ = '"';
    if (formula)
        *o++ = '\'';
    for (size_t i = 0; i < value_len; i++) {
        if (value[i] == '"')
            *o++ = '"';
        *o++ = value[i];
    }
    if (quote)
        *o++ = '"';
    *o = '\0';
    *len = (size_t)(o - *out);
    return 0;
}

int znp_audit__csv_append(char **out, size_t *len, size_t *cap, const char *data, size_t n)
{
    if (reserve(out, len, cap, n) != 0)
        return -1;
    memcpy(*out + *len, data, n);
    *len += n;
    (*out)[*len] = '\0';
    return 0;
}

void znp_audit__clean_user_agent(char *out, const char *user_agent)
{
    size_t i = 0;

    if (user_agent != NULL) {
        for (; user_agent[i] != '\0' && i < ZNP_AUDIT_USER_AGENT_MAX; i++) {
            unsigned char c = (unsigned char)user_agent[i];

            out[i] = c >= 0x20 && c < 0x7f ? (char)c : '?';
        }
    }
    out[i] = '\0';
}
