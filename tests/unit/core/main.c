#include "core_tests.h"

int main(void)
{
    int failed = 0;

    failed += run_arena_tests();
    failed += run_hotmem_tests();
    failed += run_error_tests();
    failed += run_log_tests();
    failed += run_codec_load_tests();
    failed += run_codec_parse_tests();
    failed += run_codec_request_tests();
    failed += run_codec_emit_tests();
    failed += run_dispatch_tests();
    return failed;
}
