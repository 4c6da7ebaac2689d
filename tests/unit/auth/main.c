#include "auth_tests.h"

int main(void)
{
    int failed = 0;

    failed += run_jwt_tests();
    failed += run_password_tests();
    failed += run_text_tests();
    failed += run_sql_tests();
    return failed;
}
