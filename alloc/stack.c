#include "alloc/stack.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <sys/mman.h>

#ifdef OT_HAVE_VALGRIND
#include <valgrind/valgrind.h>
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13: guard regions without new VMAs */
#endif

/* Remaining guard pages, process-wide. Relaxed: it is a budget, not a
 * synchronisation point; the mprotect that follows is what matters. */
static _Atomic long guards_left = -2; /* -2: not set yet */
/* OT__GUARD_MADVISE when the kernel installs guard regions in page tables
 * (no mapping split, so every stack can have one), else OT__GUARD_MPROTECT.
 * 0: not probed yet. */
static _Atomic int mechanism;

static int probe_mechanism(void)
{
    int m = OT__GUARD_MPROTECT;
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page != MAP_FAILED) {
        if (madvise(page, 4096, MADV_GUARD_INSTALL) == 0) m = OT__GUARD_MADVISE;
        munmap(page, 4096);
    }
    return m;
}

int ot__stack_guard_mechanism(void)
{
    int m = atomic_load_explicit(&mechanism, memory_order_relaxed);
    if (!m) {
        m = probe_mechanism();
        atomic_store_explicit(&mechanism, m, memory_order_relaxed);
    }
    return m;
}

void ot__stack_set_guard_mechanism(int m)
{
    atomic_store_explicit(&mechanism, m, memory_order_relaxed);
}

static long default_budget(void)
{
    /* Guard regions cost no map entries: every stack gets one. */
    if (ot__stack_guard_mechanism() == OT__GUARD_MADVISE) return LONG_MAX / 2;
    long max = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        if (fscanf(f, "%ld", &max) != 1) max = 65530;
        fclose(f);
    }
    /* Each guarded stack costs two map entries; leave half of the budget to
     * the program, libraries, the heap and thread stacks. */
    long b = (max / 2) / 2;
    return b > 0 ? b : 0;
}

void ot__stack_set_guard_budget(long budget)
{
    atomic_store_explicit(&guards_left, budget < 0 ? default_budget() : budget,
                          memory_order_relaxed);
}

long ot__stack_guards_left(void)
{
    return atomic_load_explicit(&guards_left, memory_order_relaxed);
}

static bool take_guard(void)
{
    long n = atomic_load_explicit(&guards_left, memory_order_relaxed);
    if (n == -2) {
        ot__stack_set_guard_budget(-1);
        n = atomic_load_explicit(&guards_left, memory_order_relaxed);
    }
    while (n > 0) {
        if (atomic_compare_exchange_weak_explicit(&guards_left, &n, n - 1, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    }
    return false;
}

static void carve(ot__pool_t *p, void *obj)
{
    char *lo = obj;
    ot__stack_t *st = (ot__stack_t *)(lo + p->obj_size - OT__STACK_DESC_SIZE);
    st->lo = lo;
    st->size = p->obj_size;
    st->guarded = 0;
    if (take_guard()) {
        if (ot__stack_guard_mechanism() == OT__GUARD_MADVISE
                ? madvise(lo, 4096, MADV_GUARD_INSTALL) == 0
                : mprotect(lo, 4096, PROT_NONE) == 0)
            st->guarded = 1;
        else /* the map budget ran out after all: give the guard back */
            atomic_fetch_add_explicit(&guards_left, 1, memory_order_relaxed);
    }
#ifdef OT_HAVE_VALGRIND
    st->vg_id = VALGRIND_STACK_REGISTER(lo, lo + p->obj_size);
#else
    st->vg_id = 0;
#endif
}

int ot__stack_class(size_t size)
{
    if (size > ((size_t)1 << OT__STACK_MAX_SHIFT)) return -1;
    if (size <= ((size_t)1 << OT__STACK_MIN_SHIFT)) return 0;
    /* Bits of size - 1 = log2 of the power of two that holds size. */
    return (64 - __builtin_clzll(size - 1)) - OT__STACK_MIN_SHIFT;
}

size_t ot__stack_class_size(int cls)
{
    return (size_t)1 << (OT__STACK_MIN_SHIFT + cls);
}

void ot__stack_pools_init(ot__stack_pools_t *sp, const void *owner, void *topo, int node)
{
    for (int c = 0; c < OT__STACK_CLASSES; c++) {
        size_t sz = ot__stack_class_size(c);
        /* 256 MiB of address space per slab (at least 8 stacks): one mapping
         * holds 16384 stacks of 16 KiB. Reserved, not committed. */
        size_t slab = sz * 8 > ((size_t)256 << 20) ? sz * 8 : ((size_t)256 << 20);
        ot__pool_init(&sp->cls[c], sz, sz - OT__STACK_DESC_SIZE, slab, owner, carve);
        /* A free stack keeps its descriptor past the link: no magazines
         * in it (stacks are freed one by one, never through a cache). */
        sp->cls[c].mag_cap = 0;
        ot__pool_set_node(&sp->cls[c], topo, node);
    }
}

void ot__stack_pools_destroy(ot__stack_pools_t *sp)
{
    for (int c = 0; c < OT__STACK_CLASSES; c++)
        ot__pool_destroy(&sp->cls[c]);
}

ot__stack_t *ot__stack_get(ot__stack_pools_t *sp, int cls)
{
    ot__pool_t *p = &sp->cls[cls];
    char *lo = ot__pool_alloc(p);
    if (!lo) return NULL;
    return (ot__stack_t *)(lo + p->obj_size - OT__STACK_DESC_SIZE);
}

void ot__stack_put(ot__stack_pools_t *home, ot__stack_t *st, const void *me)
{
    /* A slot's size is its class's, a power of two. */
    assert((st->size & (st->size - 1)) == 0 && st->size >= ((size_t)1 << OT__STACK_MIN_SHIFT));
    int cls = __builtin_ctzll(st->size) - OT__STACK_MIN_SHIFT;
    ot__pool_free(&home->cls[cls], st->lo, me);
}
