/* util/idx.h: the index allocator (process-table and timer slots).
 *
 * Invariants checked:
 * - every index handed out is in [1, limit) and unique while held;
 * - -EAGAIN exactly when all limit-1 indices are held (no cache involved);
 * - a returned index is handed out again (nothing leaks through the cache
 *   overflow path or ot__idx_flush);
 * - concurrently, with one cache per thread, no index is ever held by two
 *   threads at once (a shared array of owners, claimed by CAS), and once
 *   every cache is flushed exactly limit-1 indices can be taken again. */
#define _GNU_SOURCE 1 /* pthread_setaffinity_np */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/idx.h"

#include "tests/stress.h"

/* Take everything available with the global lock (no cache); mark[] counts
 * how often each index came out. Returns the count. */
static uint32_t drain_global(ot__idx_global_t *g, uint32_t limit, uint8_t *mark)
{
    uint32_t n = 0;
    for (;;) {
        int64_t r = ot__idx_get(g, NULL);
        if (r == -EAGAIN) break;
        assert_true(r >= 1 && r < (int64_t)limit);
        mark[r]++;
        n++;
    }
    return n;
}

/* Without a cache: 1..limit-1 each once, then -EAGAIN; a put index is the
 * next one handed out (LIFO free stack), and -EAGAIN again after it. */
static void uncached_exhaust_and_reuse(void **state)
{
    (void)state;
    enum { LIMIT = 10 };
    ot__idx_global_t g;
    assert_int_equal(ot__idx_init(&g, LIMIT), 0);
    uint8_t seen[LIMIT] = {0};
    for (int i = 1; i < LIMIT; i++) {
        int64_t r = ot__idx_get(&g, NULL);
        assert_true(r >= 1 && r < LIMIT);
        assert_int_equal(seen[r], 0);
        seen[r] = 1;
    }
    assert_int_equal(ot__idx_get(&g, NULL), -EAGAIN);
    assert_int_equal(ot__idx_get(&g, NULL), -EAGAIN); /* stays exhausted */
    ot__idx_put(&g, NULL, 7);
    assert_int_equal(ot__idx_get(&g, NULL), 7);
    assert_int_equal(ot__idx_get(&g, NULL), -EAGAIN);
    ot__idx_put(&g, NULL, 3);
    ot__idx_put(&g, NULL, 5);
    int64_t a = ot__idx_get(&g, NULL), b = ot__idx_get(&g, NULL);
    assert_true((a == 3 && b == 5) || (a == 5 && b == 3));
    assert_int_equal(ot__idx_get(&g, NULL), -EAGAIN);
    ot__idx_destroy(&g);
}

/* Degenerate limits: nothing can be handed out. */
static void empty_limits(void **state)
{
    (void)state;
    ot__idx_global_t g;
    ot__idx_cache_t c = {0};
    assert_int_equal(ot__idx_init(&g, 1), 0);
    assert_int_equal(ot__idx_get(&g, NULL), -EAGAIN);
    assert_int_equal(ot__idx_get(&g, &c), -EAGAIN);
    assert_int_equal(c.n, 0);
    ot__idx_destroy(&g);
    assert_int_equal(ot__idx_init(&g, 0), 0);
    assert_int_equal(ot__idx_get(&g, &c), -EAGAIN);
    ot__idx_destroy(&g);
}

/* With a cache: all limit-1 indices come out once; putting them all back
 * through the cache (which overflows and spills batches to the global
 * stack) and flushing returns every one of them. */
static void cached_roundtrip_loses_nothing(void **state)
{
    (void)state;
    enum { LIMIT = 1000 };
    ot__idx_global_t g;
    ot__idx_cache_t c = {0};
    assert_int_equal(ot__idx_init(&g, LIMIT), 0);
    uint32_t held[LIMIT];
    uint8_t seen[LIMIT] = {0};
    for (int i = 0; i < LIMIT - 1; i++) {
        int64_t r = ot__idx_get(&g, &c);
        assert_true(r >= 1 && r < LIMIT);
        assert_int_equal(seen[r], 0);
        seen[r] = 1;
        held[i] = (uint32_t)r;
        assert_true(c.n <= OT__IDX_CACHE);
    }
    assert_int_equal(ot__idx_get(&g, &c), -EAGAIN);
    for (int i = 0; i < LIMIT - 1; i++) {
        ot__idx_put(&g, &c, held[i]);
        assert_true(c.n >= 1 && c.n <= OT__IDX_CACHE);
    }
    /* The cache holds something, the rest went to the global stack. */
    assert_true(c.n > 0);
    assert_int_equal(g.nfree + c.n, LIMIT - 1);
    ot__idx_flush(&g, &c);
    assert_int_equal(c.n, 0);
    memset(seen, 0, sizeof seen);
    assert_int_equal(drain_global(&g, LIMIT, seen), LIMIT - 1);
    for (int i = 1; i < LIMIT; i++)
        assert_int_equal(seen[i], 1);
    ot__idx_destroy(&g);
}

/* An index put into a cache is the next one that cache hands out, without
 * touching the global stack. */
static void cache_is_local_lifo(void **state)
{
    (void)state;
    ot__idx_global_t g;
    ot__idx_cache_t c = {0};
    assert_int_equal(ot__idx_init(&g, 10000), 0);
    int64_t a = ot__idx_get(&g, &c);
    assert_true(a >= 1);
    /* One refill took a batch from the global allocator. */
    assert_int_equal(c.n, OT__IDX_BATCH - 1);
    assert_int_equal(g.next_fresh, 1 + OT__IDX_BATCH);
    ot__idx_put(&g, &c, (uint32_t)a);
    assert_int_equal(g.nfree, 0);
    assert_int_equal(ot__idx_get(&g, &c), a);
    ot__idx_put(&g, &c, (uint32_t)a);
    ot__idx_flush(&g, &c);
    assert_int_equal(g.nfree, OT__IDX_BATCH);
    ot__idx_destroy(&g);
}

/* Indices stranded in another thread's cache are not available: -EAGAIN
 * until that cache is flushed, then they are handed out again. */
static void stranded_in_other_cache(void **state)
{
    (void)state;
    enum { LIMIT = 40 };
    ot__idx_global_t g;
    ot__idx_cache_t a = {0}, b = {0};
    assert_int_equal(ot__idx_init(&g, LIMIT), 0);
    int64_t x = ot__idx_get(&g, &a); /* a takes all 39 in one batch */
    assert_true(x >= 1 && x < LIMIT);
    assert_int_equal(a.n, LIMIT - 2);
    assert_int_equal(ot__idx_get(&g, &b), -EAGAIN);
    ot__idx_put(&g, &a, (uint32_t)x);
    ot__idx_flush(&g, &a);
    uint8_t seen[LIMIT] = {0};
    for (int i = 1; i < LIMIT; i++) {
        int64_t r = ot__idx_get(&g, &b);
        assert_true(r >= 1 && r < LIMIT);
        assert_int_equal(seen[r]++, 0);
    }
    assert_int_equal(ot__idx_get(&g, &b), -EAGAIN);
    ot__idx_flush(&g, &b); /* b holds nothing in its cache: all are out */
    assert_int_equal(g.nfree, 0);
    ot__idx_destroy(&g);
}

/* ---- concurrent ----------------------------------------------------------- */

#define C_THREADS 4
#define C_LIMIT 1024u
#define C_HOLD 300 /* per thread: 4 x 300 > 1023, so -EAGAIN does happen */

static pthread_barrier_t c_filled;

typedef struct {
    ot__idx_global_t *g;
    _Atomic uint32_t *owner; /* owner[i]: 0 free, else thread id + 1 */
    int id;
    unsigned long ops;
    unsigned long eagain;
    unsigned long errors; /* index out of range or already owned */
} idx_worker_t;

static void *idx_worker(void *arg)
{
    idx_worker_t *w = arg;
    pin_to_cpu(w->id);
    /* Even threads use a cache, odd ones the global lock on every call:
     * both paths, and the lock taken often enough to be contended. */
    ot__idx_cache_t cache = {0}, *c = (w->id & 1) ? NULL : &cache;
    uint32_t held[C_HOLD];
    int nheld = 0;
    uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1);
    /* Fill phase: every thread takes C_HOLD before anyone puts anything
     * back. 4 x 300 > 1023, so some thread must see -EAGAIN, however the
     * threads happen to be scheduled. */
    unsigned long fill_ops = 0;
    while (nheld < C_HOLD && fill_ops < 10 * C_HOLD) { /* bounded if broken */
        int64_t r = ot__idx_get(w->g, c);
        fill_ops++;
        if (r == -EAGAIN) {
            w->eagain++;
            break;
        }
        uint32_t expect = 0;
        if (r < 1 || r >= (int64_t)C_LIMIT ||
            !atomic_compare_exchange_strong_explicit(&w->owner[r], &expect, (uint32_t)w->id + 1,
                                                     memory_order_relaxed,
                                                     memory_order_relaxed)) {
            w->errors++;
            continue;
        }
        held[nheld++] = (uint32_t)r;
    }
    pthread_barrier_wait(&c_filled);
    for (unsigned long op = fill_ops; op < w->ops; op++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        bool get = nheld == 0 || (nheld < C_HOLD && (rng & 3) != 0);
        if (get) {
            int64_t r = ot__idx_get(w->g, c);
            if (r == -EAGAIN) {
                /* Everything is held somewhere: give half of ours back and
                 * flush so others (and we) can make progress. */
                w->eagain++;
                while (nheld > C_HOLD / 2) {
                    uint32_t x = held[--nheld];
                    atomic_store_explicit(&w->owner[x], 0, memory_order_relaxed);
                    ot__idx_put(w->g, c, x);
                }
                if (c) ot__idx_flush(w->g, c);
                continue;
            }
            if (r < 1 || r >= (int64_t)C_LIMIT) {
                w->errors++;
                continue;
            }
            uint32_t expect = 0;
            /* Relaxed suffices: the allocator's lock orders a put before the
             * next get of the same index; a double hand-out shows as a
             * non-zero owner. */
            if (!atomic_compare_exchange_strong_explicit(
                    &w->owner[r], &expect, (uint32_t)w->id + 1, memory_order_relaxed,
                    memory_order_relaxed)) {
                w->errors++;
                continue;
            }
            held[nheld++] = (uint32_t)r;
        } else {
            /* Put back a pseudo-random one of ours. */
            int k = (int)((rng >> 20) % (uint64_t)nheld);
            uint32_t x = held[k];
            held[k] = held[--nheld];
            if (atomic_load_explicit(&w->owner[x], memory_order_relaxed) != (uint32_t)w->id + 1)
                w->errors++;
            atomic_store_explicit(&w->owner[x], 0, memory_order_relaxed);
            ot__idx_put(w->g, c, x);
        }
    }
    while (nheld > 0) {
        uint32_t x = held[--nheld];
        atomic_store_explicit(&w->owner[x], 0, memory_order_relaxed);
        ot__idx_put(w->g, c, x);
    }
    if (c) ot__idx_flush(w->g, c);
    return NULL;
}

static void concurrent_no_double_handout(void **state)
{
    (void)state;
    ot__idx_global_t g;
    assert_int_equal(ot__idx_init(&g, C_LIMIT), 0);
    static _Atomic uint32_t owner[C_LIMIT];
    for (unsigned i = 0; i < C_LIMIT; i++)
        atomic_init(&owner[i], 0);
    idx_worker_t w[C_THREADS];
    pthread_t th[C_THREADS];
    unsigned long ops = scaled(5000000);
    assert_int_equal(pthread_barrier_init(&c_filled, NULL, C_THREADS), 0);
    for (int i = 0; i < C_THREADS; i++) {
        w[i] = (idx_worker_t){.g = &g, .owner = owner, .id = i, .ops = ops};
        assert_int_equal(pthread_create(&th[i], NULL, idx_worker, &w[i]), 0);
    }
    unsigned long eagain = 0;
    for (int i = 0; i < C_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].errors, 0);
        eagain += w[i].eagain;
    }
    pthread_barrier_destroy(&c_filled);
    /* The fill phase guarantees the exhaustion path was exercised. */
    assert_true(eagain > 0);
    /* Every cache was flushed: all limit-1 indices are free, once each. */
    uint8_t seen[C_LIMIT] = {0};
    assert_int_equal(drain_global(&g, C_LIMIT, seen), C_LIMIT - 1);
    for (unsigned i = 1; i < C_LIMIT; i++)
        assert_int_equal(seen[i], 1);
    ot__idx_destroy(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uncached_exhaust_and_reuse),
        cmocka_unit_test(empty_limits),
        cmocka_unit_test(cached_roundtrip_loses_nothing),
        cmocka_unit_test(cache_is_local_lifo),
        cmocka_unit_test(stranded_in_other_cache),
        cmocka_unit_test(concurrent_no_double_handout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
