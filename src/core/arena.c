#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ALIGNMENT  16
#define CHUNK_SIZE 8192 /* payload bytes of an ordinary chunk; larger requests get a chunk of their own */

struct znp_arena_chunk {
    znp_arena_chunk_t *next;
    size_t capacity;
    size_t used;
    /* the payload follows, aligned to ALIGNMENT */
    _Alignas(ALIGNMENT) unsigned char data[];
};

struct znp_arena_cleanup {
    znp_arena_cleanup_t *next;
    void (*fn)(void *data);
    void *data;
};

static size_t align_up(size_t n)
{
    return (n + (ALIGNMENT - 1)) & ~(size_t)(ALIGNMENT - 1);
}

static znp_arena_chunk_t *chunk_create(size_t capacity)
{
    znp_arena_chunk_t *chunk = NULL;

    if (capacity > SIZE_MAX - sizeof(*chunk))
        return NULL;
    /* aligned_alloc needs a size that is a multiple of the alignment */
    chunk = aligned_alloc(ALIGNMENT, align_up(sizeof(*chunk) + capacity));
    if (chunk == NULL)
        return NULL;
    chunk->next = NULL;
    chunk->capacity = capacity;
    chunk->used = 0;
    return chunk;
}

void znp_arena_init(znp_arena_t *arena, size_t limit)
{
    arena->head = NULL;
    arena->cleanups = NULL;
    arena->total = 0;
    arena->limit = limit;
}

void znp_arena_dispose(znp_arena_t *arena)
{
    znp_arena_chunk_t *chunk;

    if (arena == NULL)
        return;
    /* the cleanup records live in the chunks, so they run first */
    for (znp_arena_cleanup_t *c = arena->cleanups; c != NULL; c = c->next)
        c->fn(c->data);
    arena->cleanups = NULL;
    chunk = arena->head;
    while (chunk != NULL) {
        znp_arena_chunk_t *next = chunk->next;
        free(chunk);
        chunk = next;
    }
    arena->head = NULL;
    arena->total = 0;
}

void *znp_arena_alloc(znp_arena_t *arena, size_t size)
{
    znp_arena_chunk_t *chunk = arena->head;
    size_t rounded;
    void *p;

    if (size == 0)
        size = 1;
    if (size > SIZE_MAX - ALIGNMENT)
        return NULL;
    rounded = align_up(size);
    if (arena->limit != 0 && (rounded > arena->limit || arena->total > arena->limit - rounded))
        return NULL;

    if (chunk == NULL || chunk->capacity - chunk->used < rounded) {
        znp_arena_chunk_t *fresh = chunk_create(rounded > CHUNK_SIZE ? rounded : CHUNK_SIZE);
        if (fresh == NULL)
            return NULL;
        if (rounded > CHUNK_SIZE && chunk != NULL) {
            /* keep bump-allocating from the current chunk: link the oversized one behind it */
            fresh->next = chunk->next;
            chunk->next = fresh;
            fresh->used = rounded;
            arena->total += rounded;
            memset(fresh->data, 0, rounded);
            return fresh->data;
        }
        fresh->next = chunk;
        arena->head = fresh;
        chunk = fresh;
    }

    p = chunk->data + chunk->used;
    chunk->used += rounded;
    arena->total += rounded;
    memset(p, 0, rounded);
    return p;
}

char *znp_arena_strndup(znp_arena_t *arena, const char *s, size_t len)
{
    char *copy;

    if (len == SIZE_MAX)
        return NULL;
    copy = znp_arena_alloc(arena, len + 1);
    if (copy == NULL)
        return NULL;
    if (len > 0)
        memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

char *znp_arena_strdup(znp_arena_t *arena, const char *s)
{
    return znp_arena_strndup(arena, s, strlen(s));
}

char *znp_arena_printf(znp_arena_t *arena, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *out;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;

    out = znp_arena_alloc(arena, (size_t)n + 1);
    if (out == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(out, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return out;
}

int znp_arena_defer(znp_arena_t *arena, void (*fn)(void *data), void *data)
{
    znp_arena_cleanup_t *cleanup = znp_arena_alloc(arena, sizeof(*cleanup));

    if (cleanup == NULL)
        return -1;
    cleanup->fn = fn;
    cleanup->data = data;
    cleanup->next = arena->cleanups;
    arena->cleanups = cleanup;
    return 0;
}
