#include "mfa_tests.h"

int main(void)
{
    int failed = 0;

    failed += run_codes_tests();
    failed += run_crypto_tests();
    return failed;
}
