#include "core_tests.h"

#include <string.h>

#include "core/arena.h"

static void arena__alloc_aligned_and_zeroed(void **state)
{
    static const size_t sizes[] = {1, 3, 7, 15, 16, 17, 31, 100, 4095, 8191, 8192, 8193, 20000};
    znp_arena_t arena;

    (void)state;
    znp_arena_init(&arena, 0);
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            unsigned char *p = znp_arena_alloc(&arena, sizes[i]);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % 16, 0);
            for (size_t k = 0; k < sizes[i]; k++)
                assert_int_equal(p[k], 0);
            memset(p, 0xAB, sizes[i]); /* a later allocation must not overlap this one */
        }
    }
    znp_arena_dispose(&arena);
}

static void arena__allocations_do_not_overlap(void **state)
{
    znp_arena_t arena;
    unsigned char *blocks[300];
    size_t lengths[300];

    (void)state;
    znp_arena_init(&arena, 0);
    for (size_t i = 0; i < 300; i++) {
        lengths[i] = 1 + (i * 37) % 500;
        if (i % 50 == 0)
            lengths[i] = 10000; /* oversized, gets its own chunk */
        blocks[i] = znp_arena_alloc(&arena, lengths[i]);
        assert_non_null(blocks[i]);
        memset(blocks[i], (int)(i & 0xff), lengths[i]);
    }
    for (size_t i = 0; i < 300; i++) {
        for (size_t k = 0; k < lengths[i]; k++)
            assert_int_equal(blocks[i][k], i & 0xff);
    }
    znp_arena_dispose(&arena);
}

static void arena__limit_rejected(void **state)
{
    znp_arena_t arena;

    (void)state;
    znp_arena_init(&arena, 100);
    assert_non_null(znp_arena_alloc(&arena, 64)); /* 64 counted */
    assert_non_null(znp_arena_alloc(&arena, 20)); /* rounded to 32: 96 in all */
    assert_null(znp_arena_alloc(&arena, 5));      /* 16 more would make 112 */
    assert_int_equal(arena.total, 96);
    assert_null(znp_arena_alloc(&arena, SIZE_MAX));
    assert_null(znp_arena_strndup(&arena, "abc", SIZE_MAX));
    znp_arena_dispose(&arena);

    znp_arena_init(&arena, 0);
    assert_null(znp_arena_alloc(&arena, SIZE_MAX - 4));
    znp_arena_dispose(&arena);
}

static void arena__strings_copied(void **state)
{
    znp_arena_t arena;
    char source[] = "hello world";
    char *copy, *part, *formatted;

    (void)state;
    znp_arena_init(&arena, 0);
    copy = znp_arena_strdup(&arena, source);
    part = znp_arena_strndup(&arena, source, 5);
    formatted = znp_arena_printf(&arena, "%s-%d-%lld", "x", 42, (long long)INT64_MIN);
    source[0] = 'J';
    assert_string_equal(copy, "hello world");
    assert_string_equal(part, "hello");
    assert_string_equal(formatted, "x-42--9223372036854775808");
    assert_string_equal(znp_arena_strndup(&arena, NULL, 0), "");
    znp_arena_dispose(&arena);
}

static void arena__printf_long_output_complete(void **state)
{
    znp_arena_t arena;
    char *out;

    (void)state;
    znp_arena_init(&arena, 0);
    out = znp_arena_printf(&arena, "%20000d|", 7);
    assert_non_null(out);
    assert_int_equal(strlen(out), 20001);
    assert_int_equal(out[19999], '7');
    assert_int_equal(out[20000], '|');
    znp_arena_dispose(&arena);
}

static void arena__dispose_resets_and_accepts_null(void **state)
{
    znp_arena_t arena;

    (void)state;
    znp_arena_dispose(NULL);
    znp_arena_init(&arena, 64);
    assert_non_null(znp_arena_alloc(&arena, 64));
    assert_null(znp_arena_alloc(&arena, 1));
    znp_arena_dispose(&arena);
    assert_null(arena.head);
    assert_int_equal(arena.total, 0);
    assert_non_null(znp_arena_alloc(&arena, 64)); /* usable again after dispose */
    znp_arena_dispose(&arena);
    znp_arena_dispose(&arena);
}

int run_arena_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(arena__alloc_aligned_and_zeroed),
        cmocka_unit_test(arena__allocations_do_not_overlap),
        cmocka_unit_test(arena__limit_rejected),
        cmocka_unit_test(arena__strings_copied),
        cmocka_unit_test(arena__printf_long_output_complete),
        cmocka_unit_test(arena__dispose_resets_and_accepts_null),
    };
    return cmocka_run_group_tests_name("arena", tests, NULL, NULL);
}
