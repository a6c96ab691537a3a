#include "alloc/pool.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <hwloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void ot__pool_init(ot__pool_t *p, size_t obj_size, size_t link_off, size_t slab_size,
                   const void *owner, ot__carve_fn on_carve)
{
    memset(p, 0, sizeof *p);
    p->obj_size = obj_size;
    p->link_off = link_off;
    p->slab_size = slab_size;
    p->owner = owner;
    p->on_carve = on_carve;
    p->numa_node = -1;
    /* A magazine holds as many pointers as fit from link_off to the end
     * of an object (at most OT__MAG_MAX): 5 in a 64-byte envelope, 32 in
     * a control block; 0 (frees one by one) when not even one fits. */
    size_t room = obj_size > link_off ? obj_size - link_off : 0;
    size_t cap = room >= sizeof(ot__mag_t) + sizeof(void *)
                     ? (room - sizeof(ot__mag_t)) / sizeof(void *)
                     : 0;
    p->mag_cap = cap > OT__MAG_MAX ? OT__MAG_MAX : (uint32_t)cap;
    p->pf_lines = obj_size <= 512 ? (uint32_t)((obj_size + 63) / 64) : 0;
    atomic_init(&p->remote, NULL);
    atomic_init(&p->remote_mags, NULL);
}

void ot__pool_set_huge(ot__pool_t *p)
{
    p->huge = true;
}

void ot__pool_set_node(ot__pool_t *p, void *topo, int node)
{
    p->numa_topo = topo;
    p->numa_node = node;
}

int ot__numa_bind(void *topo, int node, void *addr, size_t len)
{
    hwloc_topology_t t = topo;
    if (!t || node < 0) return 0;
    /* One node: nothing to choose. */
    if (hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE) <= 1) return 0;
    hwloc_obj_t n = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, (unsigned)node);
    if (!n) return -EINVAL;
    if (hwloc_set_area_membind(t, addr, len, n->nodeset, HWLOC_MEMBIND_BIND,
                               HWLOC_MEMBIND_BYNODESET) != 0)
        return -errno;
    return 0;
}

#define HUGE_PAGE ((size_t)2 << 20)

/* A slab. The first slab of a pool uses small pages, so a pool that stays
 * small stays cheap. In a pool of dense objects (ot__pool_set_huge) that
 * grows past it, the further slabs
 * are 2 MiB aligned and advised for transparent huge pages, which turns 512
 * page faults per slab into one (spawn_exit spent about a quarter of its
 * time faulting envelope pages in before this). */
static void *map_slab(size_t size, bool huge)
{
    huge = huge && size % HUGE_PAGE == 0;
    size_t len = huge ? size + HUGE_PAGE : size;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) return NULL;
    if (!huge) return m;
    char *a = (char *)(((uintptr_t)m + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1));
    if (a > m) munmap(m, (size_t)(a - m));
    if (a + size < m + len) munmap(a + size, (size_t)(m + len - (a + size)));
#ifdef MADV_HUGEPAGE
    (void)madvise(a, size, MADV_HUGEPAGE); /* advice: failure only costs speed */
#endif
    return a;
}

static int new_slab(ot__pool_t *p)
{
    if (p->nslabs == p->slabs_cap) {
        size_t cap = p->slabs_cap ? p->slabs_cap * 2 : 16;
        void **s = realloc(p->slabs, cap * sizeof *s);
        if (!s) return -ENOMEM;
        p->slabs = s;
        p->slabs_cap = cap;
    }
    void *m = map_slab(p->slab_size, p->huge && p->nslabs > 0);
    if (!m) return -ENOMEM;
    (void)ot__numa_bind(p->numa_topo, p->numa_node, m, p->slab_size);
    p->slabs[p->nslabs++] = m;
    p->bump = m;
    p->bump_end = (char *)m + p->slab_size;
    return 0;
}

static void *mag_obj(ot__pool_t *p, ot__mag_t *g)
{
    return (char *)g - p->link_off;
}

/* Start emptying magazine g: load the next magazine's line and the first
 * objects g hands out (for writing: their user fills them). */
static void mag_open(ot__pool_t *p, ot__mag_t *g)
{
    p->mag = g;
    p->mags = g->next;
    if (g->next) __builtin_prefetch(g->next);
    for (size_t i = 0; i < 4 && i < g->n; i++)
        ot__pool_prefetch(p, g->obj[g->n - 1 - i]);
}

/* The next object of the newest slab, which has room for it. */
static inline void *bump(ot__pool_t *p)
{
    void *o = p->bump;
    p->bump += p->obj_size;
    p->carved++;
    return o;
}

/* Carve the next object, from a new slab if need be. */
static __attribute__((noinline)) void *carve(ot__pool_t *p)
{
    if ((size_t)(p->bump_end - p->bump) < p->obj_size && new_slab(p) != 0) return NULL;
    void *o = bump(p);
    if (p->on_carve) p->on_carve(p, o);
    return o;
}

void *ot__pool_alloc_slow(ot__pool_t *p)
{
    void *o;
    /* The open magazine is empty: hand out its container, open the next. */
    ot__mag_t *g = p->mag;
    if (g) {
        p->mag = NULL;
        if (p->mags) mag_open(p, p->mags);
        return mag_obj(p, g);
    }
    /* Relaxed peeks first: an exchange is only worth it when there is
     * something to take. */
    if (atomic_load_explicit(&p->remote_mags, memory_order_relaxed)) {
        /* Acquire pairs with the release CAS in mag_push: the freeing
         * thread's magazine contents (and its last use of every object in
         * it) happen before we read and reuse them. */
        g = atomic_exchange_explicit(&p->remote_mags, NULL, memory_order_acquire);
        mag_open(p, g);
        return ot__pool_alloc(p);
    }
    if (atomic_load_explicit(&p->remote, memory_order_relaxed)) {
        /* Acquire pairs with the release CAS in ot__pool_free: the remote
         * thread's writes (the link, and its last use of the object) happen
         * before we reuse the objects. */
        o = atomic_exchange_explicit(&p->remote, NULL, memory_order_acquire);
        p->local = *ot__pool_link(p, o);
        return o;
    }
    /* No call on the way to a plain carve: the compiler then saves no
     * registers for it (18 of its 41 instructions, callgrind). */
    if (__builtin_expect((size_t)(p->bump_end - p->bump) >= p->obj_size && !p->on_carve, 1))
        return bump(p);
    return carve(p);
}

void ot__pool_free_remote(ot__pool_t *p, void *obj)
{
    void *head = atomic_load_explicit(&p->remote, memory_order_relaxed);
    do {
        *ot__pool_link(p, obj) = head;
        /* Release: the link store and everything this thread did with the
         * object are visible to the owner's acquire exchange. */
    } while (!atomic_compare_exchange_weak_explicit(
        &p->remote, &head, obj, memory_order_release, memory_order_relaxed));
}

void ot__pool_free_chain(ot__pool_t *p, void *first, void *last)
{
    void *head = atomic_load_explicit(&p->remote, memory_order_relaxed);
    do {
        *ot__pool_link(p, last) = head;
        /* Release: as in ot__pool_free, for the whole chain. */
    } while (!atomic_compare_exchange_weak_explicit(
        &p->remote, &head, first, memory_order_release, memory_order_relaxed));
}

static void mag_push(ot__pool_t *p, ot__mag_t *g)
{
    ot__mag_t *head = atomic_load_explicit(&p->remote_mags, memory_order_relaxed);
    do {
        g->next = head;
        /* Release: the magazine's contents, and everything this thread did
         * with its objects, are visible to the owner's acquire exchange. */
    } while (!atomic_compare_exchange_weak_explicit(
        &p->remote_mags, &head, g, memory_order_release, memory_order_relaxed));
}

static void rcache_give(ot__pool_rcache_t *c, unsigned i)
{
    if (c->slot[i].mag) mag_push(c->slot[i].pool, c->slot[i].mag);
    c->slot[i].pool = NULL;
    c->slot[i].mag = NULL;
}

/* The first object freed for a pool becomes the magazine; the next ones
 * are recorded in it, untouched, and it goes back full with one CAS.
 * Writing a link into each object instead made the owner, reusing them,
 * follow a chain of lines last written on this core: a miss per object,
 * each waiting for the one before (a third of a send's time in fan_in). */
void ot__pool_free_cached(ot__pool_rcache_t *c, ot__pool_t *p, void *obj)
{
    if (!p->mag_cap) {
        ot__pool_free_remote(p, obj);
        return;
    }
    /* Direct-mapped by pool address: a handful of foreign pools at most. */
    unsigned i = (unsigned)(((uintptr_t)p >> 6) % OT__RCACHE_SLOTS);
    if (c->slot[i].pool != p) {
        rcache_give(c, i);
        c->slot[i].pool = p;
    }
    ot__mag_t *g = c->slot[i].mag;
    if (!g) {
        g = (ot__mag_t *)ot__pool_link(p, obj);
        g->n = 0;
        c->slot[i].mag = g;
        return;
    }
    g->obj[g->n++] = obj;
    if (g->n == p->mag_cap) rcache_give(c, i);
}

void ot__pool_rcache_flush(ot__pool_rcache_t *c)
{
    for (unsigned i = 0; i < OT__RCACHE_SLOTS; i++)
        rcache_give(c, i);
}

void ot__pool_destroy(ot__pool_t *p)
{
    for (size_t i = 0; i < p->nslabs; i++)
        munmap(p->slabs[i], p->slab_size);
    free(p->slabs);
    p->slabs = NULL;
    p->nslabs = p->slabs_cap = 0;
    p->local = NULL;
    p->bump = p->bump_end = NULL;
    atomic_store_explicit(&p->remote, NULL, memory_order_relaxed);
}
