/* Test groups of test_http; each returns the number of failed tests. */
#ifndef ZNP_TEST_HTTP_TESTS_H
#define ZNP_TEST_HTTP_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

int run_metrics_tests(void);
int run_pool_tests(void);
int run_server_tests(void);

#endif
