/*
 * One-line logs: `<time> <LEVEL> <module> req=<id> <message> key=value ...`.
 * The level is checked before formatting. Client-controlled text must go
 * through znp_log_escape() first.
 */
#ifndef ZNP_CORE_LOG_H
#define ZNP_CORE_LOG_H

#include <stddef.h>

typedef enum znp_log_level {
    ZNP_LOG_DEBUG = 0,
    ZNP_LOG_INFO,
    ZNP_LOG_WARN,
    ZNP_LOG_ERROR,
} znp_log_level_t;

extern znp_log_level_t znp_log_min_level;

/* Open (or switch to) a log file; NULL means stderr. Returns 0 or -1 with errno. */
int znp_log_open(const char *path);
/* Reopen the current log file (SIGHUP, after logrotate moved it). Safe from the main thread. */
int znp_log_reopen(void);
void znp_log_close(void);

void znp_log_write(znp_log_level_t level, const char *module, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Escape client data for a log line: control bytes, quotes, backslashes and
 * non-UTF-8 bytes become \xNN, and the output is cut at `max_input` input
 * bytes with "..." appended. Writes a NUL-terminated string into out.
 */
void znp_log_escape(char *out, size_t out_size, const char *in, size_t in_len, size_t max_input);

#define ZNP_LOG(level, module, rid, ...)                                                                               \
    do {                                                                                                               \
        if ((level) >= znp_log_min_level)                                                                              \
            znp_log_write((level), (module), (rid), __VA_ARGS__);                                                      \
    } while (0)
#define ZNP_DEBUG(module, rid, ...) ZNP_LOG(ZNP_LOG_DEBUG, module, rid, __VA_ARGS__)
#define ZNP_INFO(module, rid, ...) ZNP_LOG(ZNP_LOG_INFO, module, rid, __VA_ARGS__)
#define ZNP_WARN(module, rid, ...) ZNP_LOG(ZNP_LOG_WARN, module, rid, __VA_ARGS__)
#define ZNP_ERROR(module, rid, ...) ZNP_LOG(ZNP_LOG_ERROR, module, rid, __VA_ARGS__)

#endif
