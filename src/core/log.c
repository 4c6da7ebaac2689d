#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096 /* a longer line is cut and ends in "..." */

znp_log_level_t znp_log_min_level = ZNP_LOG_INFO;

/*
 * Writers read log_fd without a lock. A reopen keeps the descriptor number
 * stable by dup2()-ing the new file onto it, so a line written during a
 * reopen lands in either the old or the new file, never on a closed fd.
 */
static int log_fd = STDERR_FILENO;
static char *log_path;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *level_name(znp_log_level_t level)
{
    switch (level) {
    case ZNP_LOG_DEBUG:
        return "DEBUG";
    case ZNP_LOG_INFO:
        return "INFO";
    case ZNP_LOG_WARN:
        return "WARN";
    case ZNP_LOG_ERROR:
        return "ERROR";
    }
    return "INFO";
}

static int open_file(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

/* Point the shared descriptor at `fd` (taking ownership of it). Caller holds log_lock. */
static int install_fd(int fd)
{
    int current = __atomic_load_n(&log_fd, __ATOMIC_ACQUIRE);

    if (current == STDERR_FILENO) {
        __atomic_store_n(&log_fd, fd, __ATOMIC_RELEASE);
        return 0;
    }
    if (dup2(fd, current) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    close(fd);
    return 0;
}

int znp_log_open(const char *path)
{
    int fd, rc = -1, saved;
    char *copy = NULL;

    if (path == NULL) {
        znp_log_close();
        return 0;
    }

    pthread_mutex_lock(&log_lock);
    copy = strdup(path);
    if (copy == NULL)
        goto cleanup;
    fd = open_file(path);
    if (fd < 0)
        goto cleanup;
    if (install_fd(fd) != 0)
        goto cleanup;
    free(log_path);
    log_path = copy;
    copy = NULL;
    rc = 0;

cleanup:
    saved = errno;
    free(copy);
    pthread_mutex_unlock(&log_lock);
    errno = saved;
    return rc;
}

int znp_log_reopen(void)
{
    int fd, rc = -1, saved;

    pthread_mutex_lock(&log_lock);
    if (log_path == NULL) {
        rc = 0; /* logging to stderr: nothing to reopen */
        goto cleanup;
    }
    fd = open_file(log_path);
    if (fd < 0)
        goto cleanup;
    rc = install_fd(fd);

cleanup:
    saved = errno;
    pthread_mutex_unlock(&log_lock);
    errno = saved;
    return rc;
}

/* NOTE: a thread still logging while this runs may write to a closed descriptor, so call it after the workers stopped. */
void znp_log_close(void)
{
    int old;

    pthread_mutex_lock(&log_lock);
    old = __atomic_exchange_n(&log_fd, STDERR_FILENO, __ATOMIC_ACQ_REL);
    if (old != STDERR_FILENO)
        close(old);
    free(log_path);
    log_path = NULL;
    pthread_mutex_unlock(&log_lock);
}

static size_t format_time(char *out, size_t size)
{
    struct timespec now;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(out + n, size - n, ".%03ldZ", now.tv_nsec / 1000000);
    return n;
}

void znp_log_write(znp_log_level_t level, const char *module, const char *request_id, const char *fmt, ...)
{
    char line[LINE_MAX_BYTES];
    size_t len;
    int n;
    va_list ap;
    const char *p;
    int fd;

    len = format_time(line, sizeof(line));
    n = snprintf(line + len, sizeof(line) - len, " %s %s req=%s ", level_name(level), module != NULL ? module : "-",
                 request_id != NULL && request_id[0] != '\0' ? request_id : "-");
    len += (size_t)n;

    /* leave room for the newline */
    va_start(ap, fmt);
    n = vsnprintf(line + len, sizeof(line) - len - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(line) - len - 1) {
        len = sizeof(line) - 1 - 3;
        memcpy(line + len, "...", 3);
        len += 3;
    } else {
        len += (size_t)n;
    }
    /* one event is one line, whatever the message contains */
    for (char *c = line; c < line + len; c++) {
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    }
    line[len++] = '\n';

    fd = __atomic_load_n(&log_fd, __ATOMIC_ACQUIRE);
    p = line;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        len -= (size_t)w;
    }
}

/* Length of the valid UTF-8 sequence at s[0..len), or 0 when it is not one. */
static size_t utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (len < need + 1)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i <= need; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    }
    return need + 1;
}

/*
 * The escaped form of the input unit at s[i]: a whole UTF-8 character, or
 * one byte as \xNN. Returns the number of input bytes it covers, or 0 when a
 * character would reach past `limit`.
 */
static size_t escape_unit(const unsigned char *s, size_t i, size_t limit, size_t in_len, char unit[4], size_t *unit_len)
{
    static const char hex[] = "0123456789abcdef";
    size_t seq = utf8_sequence(s + i, in_len - i);

    if (seq > 1 && i + seq > limit)
        return 0;
    if (seq == 0 || s[i] < 0x20 || s[i] == 0x7f || s[i] == '"' || s[i] == '\\') {
        unit[0] = '\\';
        unit[1] = 'x';
        unit[2] = hex[s[i] >> 4];
        unit[3] = hex[s[i] & 0xf];
        *unit_len = 4;
        return 1;
    }
    memcpy(unit, s + i, seq);
    *unit_len = seq;
    return seq;
}

void znp_log_escape(char *out, size_t out_size, const char *in, size_t in_len, size_t max_input)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t limit = in_len, pos = 0, i = 0, total = 0;
    int cut = 0, fits;
    char unit[4];
    size_t unit_len, seq;

    if (out_size == 0)
        return;
    if (max_input != 0 && in_len > max_input) {
        limit = max_input;
        cut = 1;
    }

    /* measure first, so the "..." reserve applies only when the output does not fit */
    for (i = 0; i < limit; i += seq) {
        seq = escape_unit(s, i, limit, in_len, unit, &unit_len);
        if (seq == 0) {
            cut = 1; /* do not split a character at the cut */
            break;
        }
        total += unit_len;
    }
    fits = total + (cut ? 3 : 0) + 1 <= out_size;
    if (!fits)
        cut = 1;

    for (i = 0; i < limit; i += seq) {
        seq = escape_unit(s, i, limit, in_len, unit, &unit_len);
        if (seq == 0)
            break;
        if (!fits && pos + unit_len + 4 > out_size)
            break;
        memcpy(out + pos, unit, unit_len);
        pos += unit_len;
    }

    if (cut && pos + 4 <= out_size) {
        memcpy(out + pos, "...", 3);
        pos += 3;
    }
    out[pos] = '\0';
}
