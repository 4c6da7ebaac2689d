/*
 * The message text: RFC 2047 encoded headers, RFC 5322 headers and a base64
 * text/plain body, every line ending in CRLF.
 */
#include "mail/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ENCODED_WORD_MAX 75 /* RFC 2047 section 2 */
#define BODY_LINE_CHARS  76 /* RFC 2045 section 6.8 */

static const char base64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 of `len` bytes into `out` (room for 4 * ceil(len / 3) + 1). */
static size_t base64_encode(char *out, const unsigned char *in, size_t len)
{
    size_t o = 0;

    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;

        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = base64_chars[(v >> 18) & 63];
        out[o++] = base64_chars[(v >> 12) & 63];
        out[o++] = i + 1 < len ? base64_chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? base64_chars[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

static int printable_ascii(const char *s)
{
    for (; *s != '\0'; s++) {
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return 0;
    }
    return 1;
}

/* Length of the UTF-8 sequence starting with `lead` (1 for a stray byte). */
static size_t utf8_sequence_length(unsigned char lead)
{
    if (lead >= 0xf0)
        return 4;
    if (lead >= 0xe0)
        return 3;
    if (lead >= 0xc0)
        return 2;
    return 1;
}

char *znp_mail__encode_header(const char *value)
{
    /* "=?UTF-8?B?" + "?=" is 12 characters, so 63 base64 characters fit: 45 input bytes */
    const size_t chunk_max = (ENCODED_WORD_MAX - 12) / 4 * 3;
    size_t len = strlen(value), words = len / 3 + 2;
    char *out, *o;
    const char *p = value;

    if (printable_ascii(value))
        return strdup(value);
    out = malloc(words * (ENCODED_WORD_MAX + 3) + 1);
    if (out == NULL)
        return NULL;
    o = out;
    while (*p != '\0') {
        size_t take = 0;

        /* whole UTF-8 characters only, so each encoded-word decodes on its own */
        while (p[take] != '\0') {
            size_t step = utf8_sequence_length((unsigned char)p[take]);

            if (take + step > chunk_max)
                break;
            for (size_t k = 1; k < step; k++) {
                if (p[take + k] == '\0')
                    step = k;
            }
            take += step;
        }
        if (take == 0)
            take = 1;
        if (o != out) {
            memcpy(o, "\r\n ", 3);
            o += 3;
        }
        memcpy(o, "=?UTF-8?B?", 10);
        o += 10;
        o += base64_encode(o, (const unsigned char *)p, take);
        memcpy(o, "?=", 2);
        o += 2;
        p += take;
    }
    *o = '\0';
    return out;
}

/* RFC 5322 date in UTC, independent of the process locale. */
static void format_date(char *out, size_t out_size, int64_t seconds)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)seconds;
    struct tm tm;

    gmtime_r(&t, &tm);
    snprintf(out, out_size, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

char *znp_mail__build_message(size_t *len, const char *from, const char *to, const char *subject, const char *body,
                              int64_t date, const char *message_id)
{
    char date_text[64];
    char *encoded_subject = NULL, *crlf_body = NULL, *b64 = NULL, *out = NULL;
    size_t body_len = 0, b64_len, head_len, cap;
    int written;

    *len = 0;
    encoded_subject = znp_mail__encode_header(subject);
    crlf_body = malloc(strlen(body) * 2 + 1);
    if (encoded_subject == NULL || crlf_body == NULL)
        goto cleanup;

    /* the body is encoded with CRLF line ends, as RFC 2045 wants for text */
    for (const char *p = body; *p != '\0'; p++) {
        if (*p == '\n' && (p == body || p[-1] != '\r'))
            crlf_body[body_len++] = '\r';
        crlf_body[body_len++] = *p;
    }
    b64 = malloc(body_len / 3 * 4 + 8);
    if (b64 == NULL)
        goto cleanup;
    b64_len = base64_encode(b64, (const unsigned char *)crlf_body, body_len);

    format_date(date_text, sizeof(date_text), date);
    cap = strlen(from) + strlen(to) + strlen(encoded_subject) + strlen(message_id) + 512 + b64_len +
          (b64_len / BODY_LINE_CHARS + 1) * 2;
    out = malloc(cap);
    if (out == NULL)
        goto cleanup;
    written = snprintf(out, cap,
                       "From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: %s\r\nMIME-Version: 1.0\r\n"
                       "Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n",
                       from, to, encoded_subject, date_text, message_id);
    if (written < 0 || (size_t)written >= cap) {
        free(out);
        out = NULL;
        goto cleanup;
    }
    head_len = (size_t)written;
    for (size_t i = 0; i < b64_len; i += BODY_LINE_CHARS) {
        size_t n = b64_len - i < BODY_LINE_CHARS ? b64_len - i : BODY_LINE_CHARS;

        memcpy(out + head_len, b64 + i, n);
        head_len += n;
        memcpy(out + head_len, "\r\n", 2);
        head_len += 2;
    }
    out[head_len] = '\0';
    *len = head_len;

cleanup:
    free(encoded_subject);
    free(crlf_body);
    free(b64);
    return out;
}

void znp_mail__mask_address(char *out, size_t out_size, const char *address)
{
    const char *at = address != NULL ? strrchr(address, '@') : NULL;

    if (out_size == 0)
        return;
    if (at == NULL || at == address) {
        snprintf(out, out_size, "***");
        return;
    }
    /* a non-ASCII first byte would be half a character */
    snprintf(out, out_size, "%c***%.200s", (unsigned char)address[0] < 0x80 ? address[0] : '*', at);
}

int znp_mail__address_valid(const char *address)
{
    const char *at;
    size_t len;

    if (address == NULL)
        return 0;
    len = strlen(address);
    at = strrchr(address, '@');
    if (len < 3 || len > ZNP_MAIL_ADDRESS_MAX || at == NULL || at == address || at[1] == '\0')
        return 0;
    for (const char *p = address; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;

        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == ',' || c == '"' || c == '(' || c == ')')
            return 0;
    }
    return 1;
}
