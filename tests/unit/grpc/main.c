#include "grpc_tests.h"

int main(void)
{
    int failed = 0;

    failed += run_convert_tests();
    failed += run_server_tests();
    return failed;
}
