#include "config_tests.h"

int main(void)
{
    int failed = 0;

    failed += run_load_tests();
    failed += run_validate_tests();
    failed += run_secrets_tests();
    return failed;
}
