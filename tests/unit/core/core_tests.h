/* Test groups of test_core; each returns the number of failed tests. */
#ifndef ZNP_TEST_CORE_TESTS_H
#define ZNP_TEST_CORE_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

int run_arena_tests(void);
int run_hotmem_tests(void);
int run_error_tests(void);
int run_log_tests(void);
int run_codec_load_tests(void);
int run_codec_parse_tests(void);
int run_codec_request_tests(void);
int run_codec_emit_tests(void);
int run_dispatch_tests(void);

#endif
