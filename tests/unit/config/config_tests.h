/* Test groups of test_config and their shared helpers. */
#ifndef ZNP_TEST_CONFIG_TESTS_H
#define ZNP_TEST_CONFIG_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config/config.h"

int run_load_tests(void);
int run_validate_tests(void);
int run_secrets_tests(void);

/* A fresh directory under $TMPDIR (or /tmp); malloc'd path. */
char *test_make_dir(void);
/* Remove `dir` and everything in it, then free the path. */
void test_remove_dir(char *dir);
/* Write `text` to <dir>/<name>; returns the malloc'd path. */
char *test_write_file(const char *dir, const char *name, const char *text);
/* Unset every ZNP_* variable that the loader reads. */
void test_clear_env(void);
/* Load `yaml` from a file named znp.yaml in a fresh directory; the error is formatted into `message`. */
int test_load_text(znp_config_t **out, const char *yaml, char *message, size_t message_size);

#endif
