#include "core_tests.h"

#include <pthread.h>
#include <string.h>

#include "core/hotmem.h"

static void hotmem__blocks_aligned_and_disjoint(void **state)
{
    static const size_t sizes[] = {1, 15, 16, 64, 65, 1000, 1024, 1025, 2033, 4081, 18000, 200000, 5u << 20};
    unsigned char *blocks[13 * 8];
    size_t lengths[13 * 8];
    size_t n = 0;

    (void)state;
    for (int round = 0; round < 8; round++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            unsigned char *p = znp_hotmem_alloc(sizes[i]);

            assert_non_null(p);
            assert_int_equal((uintptr_t)p % 16, 0);
#if !defined(__SANITIZE_ADDRESS__)
            /* a block with its 16-byte header starts on a cache line */
            if (sizes[i] <= ZNP_HOTMEM_MAX_CLASS)
                assert_int_equal(((uintptr_t)p - 16) % 64, 0);
#endif
            assert_true(znp_hotmem_usable(p) >= sizes[i]);
            /* a block holds at most 1/8 of the next power of two more than asked for (64 bytes below 1 KiB) */
            if (sizes[i] < 1024)
                assert_true(znp_hotmem_usable(p) < sizes[i] + 64);
            else if (sizes[i] <= ZNP_HOTMEM_MAX_CLASS)
                assert_true(znp_hotmem_usable(p) <= sizes[i] + sizes[i] / 4);
            memset(p, (int)(n & 0xff), sizes[i]);
            blocks[n] = p;
            lengths[n] = sizes[i];
            n++;
        }
    }
    /* every block still has its own fill: no two blocks overlap */
    for (size_t k = 0; k < n; k++) {
        for (size_t b = 0; b < lengths[k]; b += 61)
            assert_int_equal(blocks[k][b], (unsigned char)(k & 0xff));
        assert_int_equal(blocks[k][lengths[k] - 1], (unsigned char)(k & 0xff));
    }
    for (size_t k = 0; k < n; k++)
        znp_hotmem_free(blocks[k]);
    znp_hotmem_free(NULL);
}

static void hotmem__largest_class_boundary(void **state)
{
    /* the largest class fits a little less than ZNP_HOTMEM_MAX_CLASS, so this size goes to malloc */
    unsigned char *p;

    (void)state;
    p = znp_hotmem_alloc(ZNP_HOTMEM_MAX_CLASS);
    assert_non_null(p);
    assert_true(znp_hotmem_usable(p) >= ZNP_HOTMEM_MAX_CLASS);
    p[0] = 1;
    p[ZNP_HOTMEM_MAX_CLASS - 1] = 2;
    znp_hotmem_free(p);
    p = znp_hotmem_alloc(ZNP_HOTMEM_MAX_CLASS - 16);
    assert_non_null(p);
    p[ZNP_HOTMEM_MAX_CLASS - 17] = 3;
    znp_hotmem_free(p);
}

static void hotmem__freed_block_reused(void **state)
{
    void *first, *second;

    (void)state;
    first = znp_hotmem_alloc(5000);
    assert_non_null(first);
    znp_hotmem_free(first);
    second = znp_hotmem_alloc(4900); /* the same class */
#if defined(__SANITIZE_ADDRESS__)
    assert_non_null(second); /* malloc decides where it goes */
#else
    assert_ptr_equal(second, first);
#endif
    znp_hotmem_free(second);
}

static void hotmem__calloc_zeroes_reused_block(void **state)
{
    unsigned char *p;

    (void)state;
    p = znp_hotmem_alloc(700);
    assert_non_null(p);
    memset(p, 0xee, 700);
    znp_hotmem_free(p);
    p = znp_hotmem_calloc(7, 100);
    assert_non_null(p);
    for (size_t i = 0; i < 700; i++)
        assert_int_equal(p[i], 0);
    znp_hotmem_free(p);
    assert_null(znp_hotmem_calloc(SIZE_MAX / 2, 4)); /* the product overflows */
}

static void hotmem__many_chunks(void **state)
{
    /* 40 blocks of 3 MiB take more than three 32 MiB chunks, and each chunk's rest becomes free blocks */
    void *blocks[40];

    (void)state;
    for (size_t i = 0; i < 40; i++) {
        blocks[i] = znp_hotmem_alloc((size_t)3 << 20);
        assert_non_null(blocks[i]);
        memset(blocks[i], 1, (size_t)3 << 20);
    }
    for (size_t i = 0; i < 40; i++)
        znp_hotmem_free(blocks[i]);
    for (size_t i = 0; i < 2000; i++) {
        void *small = znp_hotmem_alloc(100 + i % 900);

        assert_non_null(small);
        znp_hotmem_free(small);
    }
}

static void *churn(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    unsigned char *held[64] = {0};

    for (int i = 0; i < 20000; i++) {
        size_t slot = (seed = seed * 1103515245u + 12345u) % 64;
        size_t size = 16 + (seed >> 8) % 20000;

        if (held[slot] != NULL) {
            if (held[slot][0] != (unsigned char)slot)
                return (void *)1;
            znp_hotmem_free(held[slot]);
        }
        held[slot] = znp_hotmem_alloc(size);
        if (held[slot] == NULL)
            return (void *)1;
        memset(held[slot], (int)slot, size);
    }
    for (size_t slot = 0; slot < 64; slot++)
        znp_hotmem_free(held[slot]);
    return NULL;
}

static void hotmem__threads_share_classes(void **state)
{
    pthread_t threads[4];
    void *result;

    (void)state;
    for (uintptr_t i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, churn, (void *)(i + 1)), 0);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(threads[i], &result), 0);
        assert_null(result);
    }
}

int run_hotmem_tests(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hotmem__blocks_aligned_and_disjoint),
        cmocka_unit_test(hotmem__largest_class_boundary),
        cmocka_unit_test(hotmem__freed_block_reused),
        cmocka_unit_test(hotmem__calloc_zeroes_reused_block),
        cmocka_unit_test(hotmem__many_chunks),
        cmocka_unit_test(hotmem__threads_share_classes),
    };

    return cmocka_run_group_tests_name("hotmem", tests, NULL, NULL);
}
