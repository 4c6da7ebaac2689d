/* Test groups of test_mfa. */
#ifndef ZNP_TEST_MFA_TESTS_H
#define ZNP_TEST_MFA_TESTS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

int run_codes_tests(void);
int run_crypto_tests(void);

#endif
