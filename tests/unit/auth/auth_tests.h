/* Test groups of test_auth and their shared helpers. */
#ifndef ZNP_TEST_AUTH_TESTS_H
#define ZNP_TEST_AUTH_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

int run_jwt_tests(void);
int run_password_tests(void);
int run_text_tests(void);
int run_sql_tests(void);

#endif
