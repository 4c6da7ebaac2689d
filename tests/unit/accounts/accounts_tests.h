/* Test groups of test_accounts. */
#ifndef ZNP_TEST_ACCOUNTS_TESTS_H
#define ZNP_TEST_ACCOUNTS_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

int run_policy_tests(void);
int run_codes_tests(void);
int run_email_tests(void);

#endif
