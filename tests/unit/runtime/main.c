#include "runtime_tests.h"

int main(void)
{
    int failed = 0;

    failed += run_health_tests();
    failed += run_watcher_tests();
    return failed;
}
