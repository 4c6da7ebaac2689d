#include "accounts_tests.h"

int main(void)
{
    int failed = 0;

    failed += run_policy_tests();
    failed += run_codes_tests();
    failed += run_email_tests();
    return failed;
}
