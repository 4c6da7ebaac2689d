/*
 * A per-request bump allocator. Everything a request decodes (strings,
 * arrays, nested structs) and everything an operation builds for its response
 * lives here and is released at once by znp_arena_dispose().
 */
#ifndef ZNP_CORE_ARENA_H
#define ZNP_CORE_ARENA_H

#include <stddef.h>

typedef struct znp_arena_chunk znp_arena_chunk_t;
typedef struct znp_arena_cleanup znp_arena_cleanup_t;

typedef struct znp_arena {
    znp_arena_chunk_t *head;
    znp_arena_cleanup_t *cleanups; /* run by znp_arena_dispose, newest first */
    size_t total;  /* bytes handed out, for the per-request memory cap */
    size_t limit;  /* 0 means no limit */
} znp_arena_t;

void znp_arena_init(znp_arena_t *arena, size_t limit);
void znp_arena_dispose(znp_arena_t *arena);

/* Zeroed memory aligned for any type; NULL when the limit is reached or malloc fails. Owned by the arena. */
void *znp_arena_alloc(znp_arena_t *arena, size_t size);
/* Copy of `len` bytes plus a NUL; owned by the arena. */
char *znp_arena_strndup(znp_arena_t *arena, const char *s, size_t len);
char *znp_arena_strdup(znp_arena_t *arena, const char *s);
/*
 * Call fn(data) when the arena is disposed, e.g. json_decref for a JSON value
 * a response points to. Returns 0, or -1 (fn not registered) when out of memory.
 */
int znp_arena_defer(znp_arena_t *arena, void (*fn)(void *data), void *data);
/* printf into arena memory; owned by the arena. */
char *znp_arena_printf(znp_arena_t *arena, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
