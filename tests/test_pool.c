/* alloc/pool.h: per-owner fixed-size object pools with remote frees.
 *
 * Invariants checked:
 * - objects handed out are distinct, lie inside one of the pool's slabs at
 *   a multiple of obj_size from the slab start, never straddle the slab
 *   end; on_carve runs exactly once per object, at its first hand-out;
 * - the free-list link is written at link_off and nowhere else: the other
 *   bytes of a freed object are untouched until it is handed out again;
 * - owner frees (me == owner) go to the local list (LIFO, no atomics);
 *   other frees (me != owner, or NULL) go to the remote list and are reused
 *   by the owner before any new object is carved; so are chains freed with
 *   ot__pool_free_chain, every member of them;
 * - stress: the owner allocates millions of objects and hands them through
 *   three SPSC rings to three threads that free them remotely (one by one,
 *   in chains, and in magazines through a remote-free cache): no object is
 *   ever handed out while live (a tag in each object), the order and
 *   serials survive the trip, memory stays bounded (few slabs), and at the
 *   end every object is on a free list. */
#define _GNU_SOURCE 1 /* pthread_setaffinity_np */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc/pool.h"

#include "tests/stress.h"

/* Spin briefly, then give the CPU away: three threads share two cores, so
 * the thread we wait for may be waiting for our time slice. */
static inline void backoff(unsigned *spins)
{
    if (++*spins < 64) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#endif
    } else {
        *spins = 0;
        sched_yield();
    }
}

static const char OWNER = 'o', OTHER = 'x'; /* scheduler identities */

static int ptr_cmp(const void *a, const void *b)
{
    uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
    return x < y ? -1 : x > y;
}

/* Index of the slab holding [o, o+obj_size), with o at an obj_size multiple
 * from the slab start; -1 otherwise. */
static long slab_of(const ot__pool_t *p, const void *o)
{
    for (size_t s = 0; s < p->nslabs; s++) {
        const char *b = p->slabs[s];
        const char *c = o;
        if (c >= b && c < b + p->slab_size) {
            if ((size_t)(c - b) % p->obj_size != 0) return -1;
            if (c + p->obj_size > b + p->slab_size) return -1;
            return (long)s;
        }
    }
    return -1;
}

static unsigned long carve_calls;
static void count_carve(ot__pool_t *p, void *obj)
{
    (void)p;
    (void)obj;
    carve_calls++;
}

/* Distinct, slab-resident, obj_size-granular; on_carve once each; the
 * number of slabs is what the sizes imply. 48-byte objects in 4 KiB slabs
 * leave a 16-byte tail per slab that must not be used. */
static void objects_distinct_and_placed(void **state)
{
    (void)state;
    enum { N = 2000, OBJ = 48, SLAB = 4096 };
    ot__pool_t p;
    carve_calls = 0;
    ot__pool_init(&p, OBJ, 0, SLAB, &OWNER, count_carve);
    static void *objs[N];
    for (int i = 0; i < N; i++) {
        objs[i] = ot__pool_alloc(&p);
        assert_non_null(objs[i]);
        assert_true(slab_of(&p, objs[i]) >= 0);
        memset(objs[i], 0xA5, OBJ); /* the whole object is ours to write */
    }
    assert_int_equal(carve_calls, N);
    assert_int_equal(p.carved, N);
    const size_t per_slab = SLAB / OBJ; /* 85 */
    assert_int_equal(p.nslabs, (N + per_slab - 1) / per_slab);
    qsort(objs, N, sizeof objs[0], ptr_cmp);
    for (int i = 1; i < N; i++)
        assert_true((uintptr_t)objs[i] >= (uintptr_t)objs[i - 1] + OBJ); /* no overlap */
    ot__pool_destroy(&p);
    assert_int_equal(p.nslabs, 0);
}

/* The link is written at link_off; the rest of a freed object is left as
 * it was, and still is when the object comes back. Reuse does not carve. */
static void link_at_link_off_only(void **state)
{
    (void)state;
    enum { OBJ = 64, LINK = 40 };
    ot__pool_t p;
    carve_calls = 0;
    ot__pool_init(&p, OBJ, LINK, 1 << 16, &OWNER, count_carve);
    unsigned char *a = ot__pool_alloc(&p), *b = ot__pool_alloc(&p);
    assert_non_null(a);
    assert_non_null(b);
    memset(a, 0x11, OBJ);
    memset(b, 0x22, OBJ);
    ot__pool_free(&p, a, &OWNER);
    ot__pool_free(&p, b, &OWNER);
    /* Free list: b -> a -> NULL, links at LINK. */
    void *la, *lb;
    memcpy(&la, a + LINK, sizeof la);
    memcpy(&lb, b + LINK, sizeof lb);
    assert_null(la);
    assert_ptr_equal(lb, a);
    for (int i = 0; i < OBJ; i++) {
        if (i >= LINK && i < LINK + (int)sizeof(void *)) continue;
        assert_int_equal(a[i], 0x11);
        assert_int_equal(b[i], 0x22);
    }
    unsigned long carved = p.carved;
    assert_ptr_equal(ot__pool_alloc(&p), b); /* LIFO */
    assert_ptr_equal(ot__pool_alloc(&p), a);
    assert_int_equal(p.carved, carved);
    assert_int_equal(carve_calls, 2);
    for (int i = 0; i < LINK; i++)
        assert_int_equal(a[i], 0x11);
    for (int i = LINK + 8; i < OBJ; i++)
        assert_int_equal(a[i], 0x11);
    ot__pool_destroy(&p);
}

/* Owner frees are local (no remote list traffic); frees with another or
 * no identity go to the remote list; the owner reuses all of them before
 * carving anything new. */
static void owner_local_and_remote_reuse(void **state)
{
    (void)state;
    enum { N = 100 };
    ot__pool_t p;
    ot__pool_init(&p, 32, 8, 1 << 16, &OWNER, NULL);
    void *o[N];
    for (int i = 0; i < N; i++)
        o[i] = ot__pool_alloc(&p);
    size_t carved = p.carved;

    ot__pool_free(&p, o[0], &OWNER);
    assert_ptr_equal(p.local, o[0]);
    assert_null(atomic_load(&p.remote));

    ot__pool_free(&p, o[1], &OTHER);
    assert_ptr_equal(atomic_load(&p.remote), o[1]);
    assert_ptr_equal(p.local, o[0]);
    ot__pool_free(&p, o[2], NULL);
    assert_ptr_equal(atomic_load(&p.remote), o[2]);

    /* Local first, then the remote list (taken whole), then carving. */
    assert_ptr_equal(ot__pool_alloc(&p), o[0]);
    void *r1 = ot__pool_alloc(&p), *r2 = ot__pool_alloc(&p);
    assert_true((r1 == o[1] && r2 == o[2]) || (r1 == o[2] && r2 == o[1]));
    assert_null(atomic_load(&p.remote));
    assert_int_equal(p.carved, carved);
    void *fresh = ot__pool_alloc(&p);
    assert_int_equal(p.carved, carved + 1);
    for (int i = 0; i < N; i++)
        assert_ptr_not_equal(fresh, o[i]);

    /* Free all remotely; all are reused, none carved. */
    for (int i = 0; i < N; i++)
        ot__pool_free(&p, o[i], NULL);
    uint8_t seen[N] = {0};
    for (int i = 0; i < N; i++) {
        void *x = ot__pool_alloc(&p);
        int k = -1;
        for (int j = 0; j < N; j++)
            if (o[j] == x) k = j;
        assert_true(k >= 0);
        assert_int_equal(seen[k]++, 0);
    }
    assert_int_equal(p.carved, carved + 1);
    ot__pool_destroy(&p);
}

/* A chain linked through ot__pool_link and freed with one CAS: all of it
 * comes back (mixed with single remote frees), nothing is carved. */
static void free_chain_reused(void **state)
{
    (void)state;
    enum { N = 10 };
    ot__pool_t p;
    ot__pool_init(&p, 32, 16, 4096, &OWNER, NULL);
    void *o[N + 2];
    for (int i = 0; i < N + 2; i++)
        o[i] = ot__pool_alloc(&p);
    size_t carved = p.carved;
    assert_ptr_equal(ot__pool_link(&p, o[0]), (void **)((char *)o[0] + 16));
    ot__pool_free(&p, o[N], NULL);
    for (int i = 0; i + 1 < N; i++)
        *ot__pool_link(&p, o[i]) = o[i + 1];
    ot__pool_free_chain(&p, o[0], o[N - 1]);
    assert_ptr_equal(atomic_load(&p.remote), o[0]);
    ot__pool_free(&p, o[N + 1], &OTHER);
    uint8_t seen[N + 2] = {0};
    for (int i = 0; i < N + 2; i++) {
        void *x = ot__pool_alloc(&p);
        int k = -1;
        for (int j = 0; j < N + 2; j++)
            if (o[j] == x) k = j;
        assert_true(k >= 0);
        assert_int_equal(seen[k]++, 0);
    }
    assert_int_equal(p.carved, carved);
    assert_null(p.local);
    assert_null(atomic_load(&p.remote));
    ot__pool_destroy(&p);
}

/* A pool whose owner is NULL: every free is remote, and still reused. */
static void null_owner_all_remote(void **state)
{
    (void)state;
    ot__pool_t p;
    ot__pool_init(&p, 16, 0, 4096, NULL, NULL);
    void *a = ot__pool_alloc(&p);
    ot__pool_free(&p, a, NULL);
    assert_null(p.local);
    assert_ptr_equal(atomic_load(&p.remote), a);
    assert_ptr_equal(ot__pool_alloc(&p), a);
    ot__pool_destroy(&p);
}

/* ---- stress: owner allocates, two threads free remotely ------------------------ */

#define FREERS 3
#define RING 1024u /* per freer; a power of two */
#define OBJ_SIZE 64
#define SLAB_SIZE (64u << 10)           /* 1024 objects per slab */
#define TAG_LIVE 0x4c4956454c495645ull  /* handed out, in flight */
#define TAG_FREED 0x4652454544465245ull /* freed by a freer */

/* Object layout: the link at 8 keeps the tag and the serial intact. */
typedef struct {
    uint64_t tag;
    void *link;
    uint64_t serial; /* per ring, increasing */
    uint64_t freer;
} obj_t;

/* Single-producer single-consumer ring of object pointers. */
typedef struct {
    alignas(64) _Atomic uint64_t head; /* consumer */
    alignas(64) _Atomic uint64_t tail; /* producer */
    _Atomic(obj_t *) slot[RING];
} ring_t;

static ot__pool_t s_pool;
static ring_t s_ring[FREERS];
static atomic_bool s_stop;

typedef struct {
    int id;
    unsigned long freed, bad;
} freer_t;

static void *freer_main(void *arg)
{
    freer_t *f = arg;
    ring_t *r = &s_ring[f->id];
    pin_to_cpu(f->id + 1);
    const char me = (char)('A' + f->id); /* not the owner */
    uint64_t expect = 0;
    unsigned spins = 0;
    /* Freer 1 frees in chains of 1..16, linked through the link words;
     * freer 2 through a remote-free cache (magazines). */
    obj_t *chain_first = NULL, *chain_last = NULL;
    ot__pool_rcache_t rc;
    memset(&rc, 0, sizeof rc);
    unsigned chain_len = 0, chain_want = 1;
    for (;;) {
        uint64_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
        /* Acquire: pairs with the owner's release of tail (slot written). */
        uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (h == t) {
            if (atomic_load_explicit(&s_stop, memory_order_acquire) &&
                atomic_load_explicit(&r->tail, memory_order_acquire) == h) {
                if (chain_first) ot__pool_free_chain(&s_pool, chain_first, chain_last);
                ot__pool_rcache_flush(&rc);
                break;
            }
            backoff(&spins);
            continue;
        }
        obj_t *o = atomic_load_explicit(&r->slot[h % RING], memory_order_relaxed);
        /* Release: our slot read is done before the owner reuses it. */
        atomic_store_explicit(&r->head, h + 1, memory_order_release);
        /* Still the object the owner sent with this serial: nobody else got
         * it in between. */
        if (o->tag != TAG_LIVE || o->serial != expect) f->bad++;
        expect++;
        o->tag = TAG_FREED;
        o->freer = (uint64_t)f->id;
        f->freed++;
        if (f->id == 0) {
            ot__pool_free(&s_pool, o, &me);
            continue;
        }
        if (f->id == 2) {
            ot__pool_free_cached(&rc, &s_pool, o);
            continue;
        }
        if (!chain_first)
            chain_first = o;
        else
            *ot__pool_link(&s_pool, chain_last) = o;
        chain_last = o;
        if (++chain_len == chain_want) {
            ot__pool_free_chain(&s_pool, chain_first, chain_last);
            chain_first = chain_last = NULL;
            chain_len = 0;
            chain_want = 1 + (unsigned)(expect * 7) % 16;
        }
    }
    return NULL;
}

static void stress_remote_frees(void **state)
{
    (void)state;
    ot__pool_init(&s_pool, OBJ_SIZE, offsetof(obj_t, link), SLAB_SIZE, &OWNER, NULL);
    for (int i = 0; i < FREERS; i++) {
        atomic_init(&s_ring[i].head, 0);
        atomic_init(&s_ring[i].tail, 0);
    }
    atomic_store(&s_stop, false);
    freer_t fr[FREERS];
    pthread_t tid[FREERS];
    for (int i = 0; i < FREERS; i++) {
        fr[i] = (freer_t){.id = i};
        assert_int_equal(pthread_create(&tid[i], NULL, freer_main, &fr[i]), 0);
    }
    pin_to_cpu(0);
    /* A few objects the owner keeps for a while and frees itself. */
    enum { KEEP = 64 };
    obj_t *kept[KEEP] = {0};
    uint64_t serial[FREERS] = {0};
    unsigned long n = scaled(4000000), reused_bad = 0, local_frees = 0, max_inflight = 0;
    for (unsigned long i = 0; i < n; i++) {
        obj_t *o = ot__pool_alloc(&s_pool);
        assert_non_null(o);
        /* Fresh (zero) or freed: never live, i.e. not in anyone's hands. */
        if (o->tag == TAG_LIVE) reused_bad++;
        o->tag = TAG_LIVE;
        if (i % 7 == 0) {
            /* Owner keeps it; frees an older one locally. */
            unsigned k = (unsigned)(i / 7) % KEEP;
            if (kept[k]) {
                if (kept[k]->tag != TAG_LIVE) reused_bad++;
                kept[k]->tag = TAG_FREED;
                ot__pool_free(&s_pool, kept[k], &OWNER);
                local_frees++;
            }
            kept[k] = o;
            continue;
        }
        int w = (int)(i % FREERS);
        ring_t *r = &s_ring[w];
        uint64_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
        /* Acquire: pairs with the freer's release of head. */
        unsigned spins = 0;
        while (t - atomic_load_explicit(&r->head, memory_order_acquire) >= RING)
            backoff(&spins);
        unsigned long inflight = t - atomic_load_explicit(&r->head, memory_order_relaxed);
        if (inflight > max_inflight) max_inflight = inflight;
        o->serial = serial[w]++;
        atomic_store_explicit(&r->slot[t % RING], o, memory_order_relaxed);
        /* Release: the object's contents and the slot before the new tail. */
        atomic_store_explicit(&r->tail, t + 1, memory_order_release);
    }
    atomic_store_explicit(&s_stop, true, memory_order_release);
    unsigned long freed = 0;
    for (int i = 0; i < FREERS; i++) {
        assert_int_equal(pthread_join(tid[i], NULL), 0);
        assert_int_equal(fr[i].bad, 0);
        assert_int_equal(fr[i].freed, serial[i]);
        freed += fr[i].freed;
    }
    assert_int_equal(reused_bad, 0);
    assert_true(local_frees > 0);
    /* Bounded memory: at most 2 x RING in the rings, KEEP kept, the
     * remote list in transit: a handful of 1024-object slabs, not n/1024. */
    print_message("%lu objects, %lu freed remotely, %zu slabs, %zu carved\n", n, freed,
                  s_pool.nslabs, s_pool.carved);
    assert_true(s_pool.nslabs <= 8);
    assert_true(s_pool.carved <= 8 * (SLAB_SIZE / OBJ_SIZE));
    /* Everything the freers returned can be taken back: the remote list is
     * intact after millions of pushes (count it by allocating). */
    size_t outstanding = 0;
    for (int k = 0; k < KEEP; k++)
        if (kept[k]) outstanding++;
    size_t carved = s_pool.carved, got = 0;
    for (;;) {
        obj_t *o = ot__pool_alloc(&s_pool);
        if (s_pool.carved != carved) break; /* had to carve: the free lists are dry */
        assert_true(o->tag == TAG_FREED);
        o->tag = TAG_LIVE;
        got++;
    }
    assert_int_equal(got + outstanding, carved);
    ot__pool_destroy(&s_pool);
}

/* The remote-free cache: objects of a foreign pool are given back in
 * magazines, one CAS each; nothing is visible to the owner before a
 * magazine is full or flushed; only a magazine's container is written, and
 * only from link_off; after the flush the owner gets every object back
 * exactly once and carves nothing new. */
static void remote_free_cache(void **state)
{
    (void)state;
    enum { N = 100 };
    ot__pool_t p;
    ot__pool_init(&p, 64, 8, 1 << 16, &OWNER, NULL);
    /* 64-byte objects, link at 8: a magazine holds (64 - 8 - 16) / 8 = 5
     * objects besides itself. */
    assert_int_equal(p.mag_cap, 5);
    const int batch = (int)p.mag_cap + 1;
    void *o[N];
    for (int i = 0; i < N; i++)
        o[i] = ot__pool_alloc(&p);
    size_t carved = p.carved;
    for (int i = 0; i < N; i++)
        memset(o[i], 0xa5, 64);
    ot__pool_rcache_t c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < batch - 1; i++)
        ot__pool_free_cached(&c, &p, o[i]);
    assert_null(atomic_load(&p.remote_mags)); /* still cached */
    ot__pool_free_cached(&c, &p, o[batch - 1]);
    assert_non_null(atomic_load(&p.remote_mags)); /* one full magazine given back */
    for (int i = batch; i < N; i++)
        ot__pool_free_cached(&c, &p, o[i]);
    ot__pool_rcache_flush(&c);
    /* The first object of each magazine is its container, written from
     * link_off on; every other object is untouched. */
    for (int i = 0; i < N; i++) {
        const unsigned char *b = o[i];
        int upto = i % batch == 0 ? 8 : 64;
        for (int k = 0; k < upto; k++)
            assert_int_equal(b[k], 0xa5);
    }
    unsigned char seen[N] = {0};
    for (int k = 0; k < N; k++) {
        void *x = ot__pool_alloc(&p);
        int found = -1;
        for (int i = 0; i < N; i++)
            if (o[i] == x) found = i;
        assert_true(found >= 0);
        assert_int_equal(seen[found], 0);
        seen[found] = 1;
    }
    assert_int_equal(p.carved, carved);
    ot__pool_destroy(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(objects_distinct_and_placed),
        cmocka_unit_test(link_at_link_off_only),
        cmocka_unit_test(owner_local_and_remote_reuse),
        cmocka_unit_test(free_chain_reused),
        cmocka_unit_test(null_owner_all_remote),
        cmocka_unit_test(stress_remote_frees),
        cmocka_unit_test(remote_free_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
