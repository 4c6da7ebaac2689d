#include "core/hotmem.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CHUNK_BYTES  ((size_t)32 << 20)
#define HUGE_PAGE    ((size_t)2 << 20)
#define HEADER_BYTES 16
#define SMALL_STEP   64 /* classes below 1 KiB are multiples of this */
#define CLASS_MAX    128
#define MALLOCED     UINT32_MAX /* class of a block that malloc allocated */
#define HEADER_CHECK 0x7a6e7068u /* a block in use */
#define FREE_CHECK   0x7a6e7066u /* a block on a free list */

/* AddressSanitizer detects overflows only in blocks of its own malloc */
#if defined(__SANITIZE_ADDRESS__)
#define USE_CHUNKS 0
#else
#define USE_CHUNKS 1
#endif

/* The 16 bytes before each block. */
typedef struct header {
    uint32_t size_class; /* index in class_sizes, or MALLOCED */
    uint32_t check;      /* HEADER_CHECK or FREE_CHECK, so that a foreign pointer or a second free is caught */
    uint64_t capacity;   /* bytes the block can hold */
} header_t;

/* A free block, linked through its first bytes. */
typedef struct free_block {
    struct free_block *next;
} free_block_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t classes_once = PTHREAD_ONCE_INIT;
static size_t class_sizes[CLASS_MAX];
static size_t class_count;
static free_block_t *free_lists[CLASS_MAX];
static char *cursor, *chunk_end; /* the unused rest of the newest chunk */

_Static_assert(sizeof(header_t) == HEADER_BYTES, "blocks must stay aligned to 16");

/*
 * Fill class_sizes. A block, header included, is a multiple of 64 bytes up
 * to 1 KiB and then one of 8 steps per power of two up to
 * ZNP_HOTMEM_MAX_CLASS. So each block starts on a cache line, and a block
 * of up to 112 bytes spans at most two lines.
 */
static void build_classes(void)
{
    for (size_t size = SMALL_STEP; size <= 1024; size += SMALL_STEP)
        class_sizes[class_count++] = size - HEADER_BYTES;
    for (size_t power = 1024; power < ZNP_HOTMEM_MAX_CLASS; power *= 2) {
        for (size_t step = 1; step <= 8 && class_count < CLASS_MAX; step++)
            class_sizes[class_count++] = power + step * (power / 8) - HEADER_BYTES;
    }
}

/* The smallest class that fits `size` bytes; class_count when none does. */
static size_t class_of(size_t size)
{
    size_t low = 0, high = class_count;

    while (low < high) {
        size_t mid = low + (high - low) / 2;

        if (class_sizes[mid] < size)
            low = mid + 1;
        else
            high = mid;
    }
    return low;
}

/* A new chunk aligned to HUGE_PAGE, or NULL. */
static char *map_chunk(void)
{
    size_t mapped = CHUNK_BYTES + HUGE_PAGE;
    char *raw = mmap(NULL, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *start;
    size_t head, tail;

    if (raw == MAP_FAILED)
        return NULL;
    start = (char *)(((uintptr_t)raw + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    head = (size_t)(start - raw);
    tail = mapped - head - CHUNK_BYTES;
    if (head > 0)
        munmap(raw, head);
    if (tail > 0)
        munmap(start + CHUNK_BYTES, tail);
    /* only advice: where THP is off or the call fails, the chunk is ordinary memory */
    (void)madvise(start, CHUNK_BYTES, MADV_HUGEPAGE);
    return start;
}

/* Put `block` (capacity of class `size_class`) on its free list; the caller has the lock. */
static void push_free(char *block, size_t size_class)
{
    header_t *header = (header_t *)(void *)(block - HEADER_BYTES);
    free_block_t *node = (free_block_t *)(void *)block;

    header->size_class = (uint32_t)size_class;
    header->check = FREE_CHECK;
    header->capacity = class_sizes[size_class];
    node->next = free_lists[size_class];
    free_lists[size_class] = node;
}

/* Cut the rest of the current chunk into free blocks, largest classes first; the caller has the lock. */
static void retire_chunk_rest(void)
{
    while (cursor != NULL && (size_t)(chunk_end - cursor) >= HEADER_BYTES + class_sizes[0]) {
        size_t room = (size_t)(chunk_end - cursor) - HEADER_BYTES;
        size_t size_class = class_of(room);

        if (size_class == class_count || class_sizes[size_class] > room)
            size_class--;
        push_free(cursor + HEADER_BYTES, size_class);
        cursor += HEADER_BYTES + class_sizes[size_class];
    }
    cursor = chunk_end = NULL;
}

/* A block of class `size_class` from its free list or the current chunk; the caller has the lock. */
static char *take_block(size_t size_class)
{
    size_t need = HEADER_BYTES + class_sizes[size_class];
    header_t *header;
    char *block;

    if (free_lists[size_class] != NULL) {
        block = (char *)free_lists[size_class];
        free_lists[size_class] = free_lists[size_class]->next;
        ((header_t *)(void *)(block - HEADER_BYTES))->check = HEADER_CHECK;
        return block;
    }
    if (cursor == NULL || (size_t)(chunk_end - cursor) < need) {
        char *chunk = map_chunk();

        if (chunk == NULL)
            return NULL;
        retire_chunk_rest();
        cursor = chunk;
        chunk_end = chunk + CHUNK_BYTES;
    }
    block = cursor + HEADER_BYTES;
    cursor += need;
    header = (header_t *)(void *)(block - HEADER_BYTES);
    header->size_class = (uint32_t)size_class;
    header->check = HEADER_CHECK;
    header->capacity = class_sizes[size_class];
    return block;
}

/* A malloc'd block with a header in front, for sizes that no class fits and for AddressSanitizer builds. */
static void *malloc_block(size_t size)
{
    header_t *header;

    if (size > SIZE_MAX - HEADER_BYTES)
        return NULL;
    header = malloc(HEADER_BYTES + size);
    if (header == NULL)
        return NULL;
    header->size_class = MALLOCED;
    header->check = HEADER_CHECK;
    header->capacity = size;
    return (char *)header + HEADER_BYTES;
}

void *znp_hotmem_alloc(size_t size)
{
    size_t size_class;
    char *block;

    if (size == 0)
        size = 1;
    if (!USE_CHUNKS || size > ZNP_HOTMEM_MAX_CLASS)
        return malloc_block(size);
    pthread_once(&classes_once, build_classes);
    size_class = class_of(size);
    if (size_class == class_count)
        return malloc_block(size);
    pthread_mutex_lock(&lock);
    block = take_block(size_class);
    pthread_mutex_unlock(&lock);
    return block;
}

void *znp_hotmem_calloc(size_t count, size_t size)
{
    void *block;

    if (size != 0 && count > SIZE_MAX / size)
        return NULL;
    block = znp_hotmem_alloc(count * size);
    if (block != NULL)
        memset(block, 0, count * size);
    return block;
}

void znp_hotmem_free(void *block)
{
    header_t *header;

    if (block == NULL)
        return;
    header = (header_t *)(void *)((char *)block - HEADER_BYTES);
    if (header->check != HEADER_CHECK)
        abort(); /* not a block of this allocator, or freed twice */
    if (header->size_class == MALLOCED) {
        header->check = 0;
        free(header);
        return;
    }
    pthread_mutex_lock(&lock);
    push_free(block, header->size_class);
    pthread_mutex_unlock(&lock);
}

size_t znp_hotmem_usable(const void *block)
{
    return (size_t)((const header_t *)(const void *)((const char *)block - HEADER_BYTES))->capacity;
}
