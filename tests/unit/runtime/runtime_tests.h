/* Test groups of test_runtime; each returns the number of failed tests. */
#ifndef ZNP_TEST_RUNTIME_TESTS_H
#define ZNP_TEST_RUNTIME_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

int run_health_tests(void);
int run_watcher_tests(void);

#endif
