/*
 * Memory for blocks that the request path reads at random among many, such
 * as download cache entries and rate buckets. It comes from 32 MiB chunks
 * aligned to 2 MiB that the kernel is asked (madvise MADV_HUGEPAGE) to back
 * with transparent huge pages. With 4 KiB pages, a read of one entry among
 * thousands costs a TLB miss and a page walk besides the cache miss, and a
 * page walk can take longer in a virtual machine. Where the kernel has THP
 * off, the chunks are ordinary memory.
 *
 * Blocks are kept in size classes. Class sizes, header included, are 64
 * bytes apart up to 1 KiB and then 1/8 of a power of two apart, so a block
 * holds up to about 1/8 more than asked for. A freed block goes to its
 * class's free list and serves only later blocks of that class: blocks are
 * neither split nor merged, and memory is never returned to the operating
 * system. So each class keeps the most memory it has held at one time.
 *
 * NOTE: a template or a node list that lengthens every file can move all
 * cache entries into the next class. The old class's blocks then stay on
 * its free list, so memory can grow by about one cache's worth on each such
 * step until the sizes come back. Merging free neighbours, or giving idle
 * chunks back, would bound this and is not done yet.
 *
 * Blocks over
 * ZNP_HOTMEM_MAX_CLASS and builds with AddressSanitizer use malloc instead.
 * All calls are thread-safe.
 */
#ifndef ZNP_CORE_HOTMEM_H
#define ZNP_CORE_HOTMEM_H

#include <stddef.h>

#define ZNP_HOTMEM_MAX_CLASS ((size_t)4 << 20)

/* A block of at least `size` bytes, aligned to 16, or NULL when out of memory. */
void *znp_hotmem_alloc(size_t size);

/* The same, zero-filled. */
void *znp_hotmem_calloc(size_t count, size_t size);

/* Free a block of znp_hotmem_alloc or znp_hotmem_calloc; NULL is ignored. */
void znp_hotmem_free(void *block);

/* Bytes that the block can hold (at least the size it was asked for). */
size_t znp_hotmem_usable(const void *block);

#endif
