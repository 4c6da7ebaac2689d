/*
 * Token buckets and the bounded, sharded table that stores them.
 *
 * Each shard is a chained hash table plus a list in insertion order, under
 * one mutex. A shard contains at most capacity / ZNP_LIMITER_SHARDS
 * buckets. The hash is keyed with a random seed, so clients cannot choose
 * addresses that all land in one chain.
 *
 * Eviction is second chance, an approximation of least recently used: a
 * take only marks its bucket as referenced, and eviction moves referenced
 * buckets from the old end to the new end (clearing the mark) instead of
 * evicting them. So a take writes to its own bucket only. Relinking the
 * bucket on every take also wrote to its two neighbours, which costs two
 * cache misses per request on a table of many keys.
 */
#include "protect/protect.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "core/hotmem.h"
#include "errors.gen.h"

#define EVICTION_SCAN 8 /* unreferenced buckets looked at from the old end for one that has refilled */

void znp_bucket_init(znp_bucket_t *bucket, znp_rate_t rate, int64_t now_ms)
{
    bucket->tokens = (double)rate.burst;
    bucket->updated_ms = now_ms;
}

static void refill(znp_bucket_t *bucket, znp_rate_t rate, int64_t now_ms)
{
    if (now_ms > bucket->updated_ms) {
        bucket->tokens += (double)(now_ms - bucket->updated_ms) * rate.per_minute / 60000.0;
        if (bucket->tokens > rate.burst)
            bucket->tokens = rate.burst;
        bucket->updated_ms = now_ms;
    }
}

/* Whole seconds, rounded up, that `missing` tokens take to refill. */
static uint32_t seconds_for(double missing, znp_rate_t rate)
{
    double seconds;

    if (missing <= 0)
        return 0;
    seconds = ceil(missing * 60.0 / rate.per_minute - 1e-9);
    if (seconds < 1)
        return 1;
    if (seconds > 86400)
        return 86400;
    return (uint32_t)seconds;
}

void znp_bucket_take(znp_bucket_t *bucket, znp_rate_t rate, int64_t now_ms, znp_rate_verdict_t *out)
{
    memset(out, 0, sizeof(*out));
    out->allowed = 1;
    if (rate.per_minute == 0 || rate.burst == 0)
        return;

    refill(bucket, rate, now_ms);
    out->limited = 1;
    out->limit = rate.burst;
    if (bucket->tokens >= 1.0) {
        bucket->tokens -= 1.0;
    } else {
        out->allowed = 0;
        out->retry_after_s = seconds_for(1.0 - bucket->tokens, rate);
    }
    out->remaining = (uint32_t)floor(bucket->tokens);
    out->reset_s = seconds_for((double)rate.burst - bucket->tokens, rate);
}

typedef struct entry {
    struct entry *chain;         /* next in the hash chain */
    struct entry *newer, *older; /* list in insertion order, newest at shard->newest */
    uint64_t hash;
    znp_rate_t rate; /* of the last take, to tell whether the bucket is full */
    znp_bucket_t bucket;
    uint8_t referenced; /* taken from since it was inserted or given its second chance */
    uint8_t key_len;
    uint8_t key[ZNP_LIMITER_KEY_MAX];
} entry_t;

typedef struct shard {
    pthread_mutex_t lock;
    entry_t **slots;
    size_t slot_mask;
    size_t count;
    size_t capacity;
    entry_t *newest, *oldest;
} shard_t;

struct znp_limiter {
    shard_t shards[ZNP_LIMITER_SHARDS];
    size_t capacity;
    uint64_t seed;
    znp_clock_ms_fn clock;
    void *clock_data;
};

static int64_t monotonic_ms(void *data)
{
    struct timespec now;

    (void)data;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static uint64_t mix(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/*
 * The shard of a hash. It comes from the high bits because the slot inside
 * the shard comes from the low ones: with both from the low bits, a shard
 * used only one slot in ZNP_LIMITER_SHARDS and its chains grew that much
 * longer.
 */
static size_t shard_of(uint64_t hash)
{
    return (size_t)((hash >> 32) % ZNP_LIMITER_SHARDS);
}

static uint64_t hash_key(uint64_t seed, const uint8_t *key, size_t len)
{
    uint64_t h = mix(seed ^ len);

    for (size_t i = 0; i < len; i += 8) {
        uint64_t word = 0;
        size_t n = len - i < 8 ? len - i : 8;

        memcpy(&word, key + i, n);
        h = mix(h ^ word) + 0x9e3779b97f4a7c15ull;
    }
    return h;
}

int znp_limiter_create(znp_limiter_t **out, size_t max_keys, znp_clock_ms_fn clock, void *clock_data)
{
    znp_limiter_t *limiter = calloc(1, sizeof(*limiter));
    size_t per_shard = max_keys / ZNP_LIMITER_SHARDS;

    *out = NULL;
    if (limiter == NULL)
        return ZNP_E_INTERNAL;
    if (per_shard == 0)
        per_shard = 1;
    limiter->capacity = per_shard * ZNP_LIMITER_SHARDS;
    limiter->clock = clock != NULL ? clock : monotonic_ms;
    limiter->clock_data = clock_data;
    if (getrandom(&limiter->seed, sizeof(limiter->seed), 0) != sizeof(limiter->seed))
        limiter->seed = (uint64_t)monotonic_ms(NULL) ^ (uint64_t)(uintptr_t)limiter;

    for (size_t i = 0; i < ZNP_LIMITER_SHARDS; i++) {
        shard_t *shard = &limiter->shards[i];
        size_t slots = 1;

        while (slots < per_shard)
            slots <<= 1;
        pthread_mutex_init(&shard->lock, NULL);
        shard->capacity = per_shard;
        shard->slot_mask = slots - 1;
        shard->slots = znp_hotmem_calloc(slots, sizeof(*shard->slots));
        if (shard->slots == NULL) {
            znp_limiter_destroy(limiter);
            return ZNP_E_INTERNAL;
        }
    }
    *out = limiter;
    return 0;
}

static void order_unlink(shard_t *shard, entry_t *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        shard->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        shard->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void order_push_newest(shard_t *shard, entry_t *e)
{
    e->older = shard->newest;
    e->newer = NULL;
    if (shard->newest != NULL)
        shard->newest->newer = e;
    shard->newest = e;
    if (shard->oldest == NULL)
        shard->oldest = e;
}

static void chain_unlink(shard_t *shard, entry_t *e)
{
    entry_t **link = &shard->slots[e->hash & shard->slot_mask];

    while (*link != e)
        link = &(*link)->chain;
    *link = e->chain;
    e->chain = NULL;
}

/*
 * Take a bucket out of a full shard for reuse. Walking from the old end,
 * each referenced bucket gets its second chance: it moves to the new end
 * and loses its mark. Of the first EVICTION_SCAN unreferenced buckets, the
 * first that has refilled completely is taken, else the oldest of them.
 * The walk is bounded because after shard->count moves no bucket is marked.
 */
static entry_t *evict(shard_t *shard, int64_t now_ms)
{
    entry_t *victim = NULL, *e = shard->oldest;
    size_t moved = 0;
    int seen = 0;

    while (e != NULL && seen < EVICTION_SCAN) {
        entry_t *next = e->newer;

        if (e->referenced && moved < shard->count) {
            e->referenced = 0;
            order_unlink(shard, e);
            order_push_newest(shard, e);
            moved++;
        } else {
            znp_bucket_t copy = e->bucket;

            if (victim == NULL)
                victim = e;
            refill(&copy, e->rate, now_ms);
            if (copy.tokens >= (double)e->rate.burst) {
                victim = e;
                break;
            }
            seen++;
        }
        e = next;
    }
    if (victim == NULL)
        victim = shard->oldest;
    order_unlink(shard, victim);
    chain_unlink(shard, victim);
    shard->count--;
    return victim;
}

uint64_t znp_limiter_hash(const znp_limiter_t *limiter, const void *key, size_t key_len)
{
    return hash_key(limiter->seed, key, key_len > ZNP_LIMITER_KEY_MAX ? ZNP_LIMITER_KEY_MAX : key_len);
}

void znp_limiter_take(znp_limiter_t *limiter, const void *key, size_t key_len, znp_rate_t rate,
                      znp_rate_verdict_t *out)
{
    znp_limiter_take_hashed(limiter, znp_limiter_hash(limiter, key, key_len), key, key_len, rate, out);
}

void znp_limiter_take_hashed(znp_limiter_t *limiter, uint64_t hash, const void *key, size_t key_len, znp_rate_t rate,
                             znp_rate_verdict_t *out)
{
    shard_t *shard;
    entry_t *e;
    int64_t now_ms;

    memset(out, 0, sizeof(*out));
    out->allowed = 1;
    if (rate.per_minute == 0 || rate.burst == 0)
        return;
    if (key_len > ZNP_LIMITER_KEY_MAX)
        key_len = ZNP_LIMITER_KEY_MAX;

    shard = &limiter->shards[shard_of(hash)];
    now_ms = limiter->clock(limiter->clock_data);

    pthread_mutex_lock(&shard->lock);
    for (e = shard->slots[hash & shard->slot_mask]; e != NULL; e = e->chain) {
        if (e->hash == hash && e->key_len == key_len && memcmp(e->key, key, key_len) == 0)
            break;
    }
    if (e != NULL) {
        e->referenced = 1;
    } else {
        e = shard->count >= shard->capacity ? evict(shard, now_ms) : znp_hotmem_alloc(sizeof(*e));
        if (e == NULL) {
            /* out of memory: let the request through rather than fail it */
            pthread_mutex_unlock(&shard->lock);
            return;
        }
        memset(e, 0, sizeof(*e));
        e->hash = hash;
        e->key_len = (uint8_t)key_len;
        memcpy(e->key, key, key_len);
        znp_bucket_init(&e->bucket, rate, now_ms);
        e->chain = shard->slots[hash & shard->slot_mask];
        shard->slots[hash & shard->slot_mask] = e;
        shard->count++;
        order_push_newest(shard, e);
    }
    e->rate = rate;
    znp_bucket_take(&e->bucket, rate, now_ms, out);
    pthread_mutex_unlock(&shard->lock);
}

static entry_t **slot_of(znp_limiter_t *limiter, uint64_t hash)
{
    shard_t *shard = &limiter->shards[shard_of(hash)];

    return &shard->slots[hash & shard->slot_mask];
}

void znp_limiter_prefetch_slot(znp_limiter_t *limiter, uint64_t hash)
{
    __builtin_prefetch(slot_of(limiter, hash));
}

void znp_limiter_prefetch_bucket(znp_limiter_t *limiter, uint64_t hash)
{
    entry_t *e = __atomic_load_n(slot_of(limiter, hash), __ATOMIC_RELAXED);

    if (e != NULL) {
        /* the key the take compares is in the bucket's second cache line */
        __builtin_prefetch(e);
        __builtin_prefetch((const char *)e + 64);
    }
}

void znp_limiter_chains(znp_limiter_t *limiter, size_t *used_slots, size_t *longest)
{
    *used_slots = 0;
    *longest = 0;
    for (size_t i = 0; i < ZNP_LIMITER_SHARDS; i++) {
        shard_t *shard = &limiter->shards[i];

        pthread_mutex_lock(&shard->lock);
        for (size_t slot = 0; slot <= shard->slot_mask; slot++) {
            size_t length = 0;

            for (const entry_t *e = shard->slots[slot]; e != NULL; e = e->chain)
                length++;
            if (length > 0)
                (*used_slots)++;
            if (length > *longest)
                *longest = length;
        }
        pthread_mutex_unlock(&shard->lock);
    }
}

size_t znp_limiter_size(znp_limiter_t *limiter)
{
    size_t total = 0;

    for (size_t i = 0; i < ZNP_LIMITER_SHARDS; i++) {
        pthread_mutex_lock(&limiter->shards[i].lock);
        total += limiter->shards[i].count;
        pthread_mutex_unlock(&limiter->shards[i].lock);
    }
    return total;
}

size_t znp_limiter_capacity(const znp_limiter_t *limiter)
{
    return limiter->capacity;
}

void znp_limiter_destroy(znp_limiter_t *limiter)
{
    if (limiter == NULL)
        return;
    for (size_t i = 0; i < ZNP_LIMITER_SHARDS; i++) {
        shard_t *shard = &limiter->shards[i];
        entry_t *e = shard->newest;

        while (e != NULL) {
            entry_t *next = e->older;

            znp_hotmem_free(e);
            e = next;
        }
        znp_hotmem_free(shard->slots);
        if (shard->capacity > 0)
            pthread_mutex_destroy(&shard->lock);
    }
    free(limiter);
}
