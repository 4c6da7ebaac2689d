#include "http_tests.h"

#include <signal.h>

#include "core/log.h"

int main(void)
{
    int failed = 0;

    /* the access log and expected connection failures would drown cmocka's output */
    znp_log_min_level = ZNP_LOG_ERROR + 1;
    signal(SIGPIPE, SIG_IGN);

    failed += run_metrics_tests();
    failed += run_pool_tests();
    failed += run_server_tests();
    return failed;
}
