#include "core_tests.h"

#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

typedef struct escape_case {
    const char *name;
    const char *in;
    size_t in_len;
    size_t max_input;
    size_t out_size;
    const char *expected;
} escape_case_t;

#define IN(s) s, sizeof(s) - 1

static void log__escape_table_matches(void **state)
{
    static const escape_case_t cases[] = {
        {"plain", IN("GET /api/v1/ping"), 0, 64, "GET /api/v1/ping"},
        {"empty", IN(""), 0, 64, ""},
        {"newline", IN("a\nb"), 0, 64, "a\\x0ab"},
        {"carriage return and tab", IN("\r\t"), 0, 64, "\\x0d\\x09"},
        {"escape byte", IN("\x1b[31mred"), 0, 64, "\\x1b[31mred"},
        {"delete", IN("\x7f"), 0, 64, "\\x7f"},
        {"nul", IN("a\0b"), 0, 64, "a\\x00b"},
        {"quote", IN("say \"hi\""), 0, 64, "say \\x22hi\\x22"},
        {"backslash", IN("C:\\dir"), 0, 64, "C:\\x5cdir"},
        {"utf-8 kept", IN("caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80"), 0, 64,
         "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80"},
        {"overlong slash", IN("\xc0\xaf"), 0, 64, "\\xc0\\xaf"},
        {"surrogate", IN("\xed\xa0\x80"), 0, 64, "\\xed\\xa0\\x80"},
        {"truncated sequence", IN("a\xe4\xb8"), 0, 64, "a\\xe4\\xb8"},
        {"lone continuation", IN("\x80x"), 0, 64, "\\x80x"},
        {"latin-1 byte", IN("\xff"), 0, 64, "\\xff"},
        {"cut at max input", IN("abcdefghij"), 4, 64, "abcd..."},
        {"exactly max input", IN("abcd"), 4, 64, "abcd"},
        {"cut keeps whole characters", IN("ab\xe4\xb8\xad"), 3, 64, "ab..."},
        {"cut after escapes", IN("\n\n\n\n"), 2, 64, "\\x0a\\x0a..."},
        {"small output cut", IN("abcdefghij"), 0, 8, "abcd..."},
        {"small output exact fit", IN("abcdefg"), 0, 8, "abcdefg"},
        {"small output never splits an escape", IN("ab\n\n"), 0, 9, "ab..."},
        {"small output never splits a character", IN("\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad"), 0, 7, "\xe4\xb8\xad..."},
        {"tiny output", IN("abcdef"), 0, 3, ""},
        {"one byte output", IN("abc"), 0, 1, ""},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const escape_case_t *c = &cases[i];
        char out[128];

        memset(out, 'Z', sizeof(out));
        znp_log_escape(out, c->out_size, c->in, c->in_len, c->max_input);
        if (strcmp(out, c->expected) != 0)
            fail_msg("case %s: got \"%s\", expected \"%s\"", c->name, out, c->expected);
        if (strlen(out) >= c->out_size)
            fail_msg("case %s: output overruns its buffer", c->name);
    }
}

static void log__escape_zero_size_untouched(void **state)
{
    char out[4] = "xyz";

    (void)state;
    znp_log_escape(out, 0, "abc", 3, 0);
    assert_string_equal(out, "xyz");
    znp_log_escape(out, sizeof(out), NULL, 0, 0);
    assert_string_equal(out, "");
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *data;
    long size;

    if (f == NULL)
        return NULL;
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    data = calloc(1, (size_t)size + 1);
    if (data != NULL && fread(data, 1, (size_t)size, f) != (size_t)size) {
        free(data);
        data = NULL;
    }
    fclose(f);
    return data;
}

static void temp_path(char *out, size_t size, const char *name)
{
    const char *dir = getenv("TMPDIR");
    snprintf(out, size, "%s/core-log-%ld-%s", dir != NULL ? dir : "/tmp", (long)getpid(), name);
}

static void log__line_format_matches(void **state)
{
    char path[256];
    char *text;
    regex_t re;

    (void)state;
    temp_path(path, sizeof(path), "format.log");
    unlink(path);
    assert_int_equal(znp_log_open(path), 0);
    znp_log_write(ZNP_LOG_INFO, "http", "abc", "request finished status=%d path=%s", 200, "/ping");
    znp_log_write(ZNP_LOG_ERROR, "db", NULL, "multi\nline");
    ZNP_DEBUG("db", "x", "below the minimum level");
    znp_log_close();

    text = read_file(path);
    assert_non_null(text);
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z INFO http req=abc "
                             "request finished status=200 path=/ping\n"
                             "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z ERROR db req=- "
                             "multi line\n$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    if (regexec(&re, text, 0, NULL, 0) != 0)
        fail_msg("unexpected log text:\n%s", text);
    regfree(&re);
    free(text);
    unlink(path);
}

static void log__long_line_cut(void **state)
{
    char path[256];
    char *text, *message;
    size_t len;

    (void)state;
    temp_path(path, sizeof(path), "long.log");
    unlink(path);
    message = malloc(10001);
    assert_non_null(message);
    memset(message, 'm', 10000);
    message[10000] = '\0';
    assert_int_equal(znp_log_open(path), 0);
    znp_log_write(ZNP_LOG_WARN, "core", "r", "%s", message);
    znp_log_close();

    text = read_file(path);
    assert_non_null(text);
    len = strlen(text);
    assert_int_equal(len, 4096);
    assert_memory_equal(text + len - 4, "...\n", 4);
    assert_non_null(strstr(text, " WARN core req=r mmmm"));
    free(text);
    free(message);
    unlink(path);
}

static void log__reopen_follows_rotation(void **state)
{
    char path[256], rotated[256];
    char *first, *second;

    (void)state;
    temp_path(path, sizeof(path), "rotate.log");
    temp_path(rotated, sizeof(rotated), "rotate.log.1");
    unlink(path);
    unlink(rotated);
    assert_int_equal(znp_log_open(path), 0);
    znp_log_write(ZNP_LOG_INFO, "core", NULL, "before rotation");
    assert_int_equal(rename(path, rotated), 0);
    znp_log_write(ZNP_LOG_INFO, "core", NULL, "still the old file");
    assert_int_equal(znp_log_reopen(), 0);
    znp_log_write(ZNP_LOG_INFO, "core", NULL, "after rotation");
    znp_log_close();

    first = read_file(rotated);
    second = read_file(path);
    assert_non_null(first);
    assert_non_null(second);
    assert_non_null(strstr(first, "before rotation"));
    assert_non_null(strstr(first, "still the old file"));
    assert_null(strstr(first, "after rotation"));
    assert_non_null(strstr(second, "after rotation"));
    assert_null(strstr(second, "before rotation"));
    free(first);
    free(second);
    unlink(path);
    unlink(rotated);

    assert_int_equal(znp_log_reopen(), 0); /* on stderr: nothing to do */
    assert_int_equal(znp_log_open("/nonexistent-dir/x/y.log"), -1);
}

#define WRITER_THREADS   4
#define LINES_PER_WRITER 500

static void *write_lines(void *arg)
{
    char payload[300];

    memset(payload, 'a' + (int)(intptr_t)arg, sizeof(payload) - 1);
    payload[sizeof(payload) - 1] = '\0';
    for (int i = 0; i < LINES_PER_WRITER; i++) {
        znp_log_write(ZNP_LOG_INFO, "core", NULL, "writer=%d seq=%d %s", (int)(intptr_t)arg, i, payload);
        if (i == LINES_PER_WRITER / 2 && arg == 0)
            znp_log_reopen();
    }
    return NULL;
}

static void log__concurrent_lines_intact(void **state)
{
    char path[256];
    pthread_t threads[WRITER_THREADS];
    char *text, *line, *next;
    int count = 0;

    (void)state;
    temp_path(path, sizeof(path), "threads.log");
    unlink(path);
    assert_int_equal(znp_log_open(path), 0);
    for (intptr_t i = 0; i < WRITER_THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, write_lines, (void *)i), 0);
    for (int i = 0; i < WRITER_THREADS; i++)
        pthread_join(threads[i], NULL);
    znp_log_close();

    text = read_file(path);
    assert_non_null(text);
    for (line = text; *line != '\0'; line = next + 1) {
        int writer, seq;
        char letter;
        next = strchr(line, '\n');
        assert_non_null(next);
        *next = '\0';
        if (sscanf(strstr(line, "writer="), "writer=%d seq=%d %c", &writer, &seq, &letter) != 3)
            fail_msg("garbled line: %s", line);
        assert_int_equal(letter, 'a' + writer);
        assert_int_equal(strlen(strrchr(line, ' ') + 1), 299);
        count++;
    }
    assert_int_equal(count, WRITER_THREADS * LINES_PER_WRITER);
    free(text);
    unlink(path);
}

int run_log_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(log__escape_table_matches),    cmocka_unit_test(log__escape_zero_size_untouched),
        cmocka_unit_test(log__line_format_matches),     cmocka_unit_test(log__long_line_cut),
        cmocka_unit_test(log__reopen_follows_rotation), cmocka_unit_test(log__concurrent_lines_intact),
    };
    return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
