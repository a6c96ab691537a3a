/* Per-scheduler fixed-size object pools.
 *
 * A pool belongs to one owner (a scheduler). The owner allocates and frees
 * with plain loads and stores: no lock, no atomic read-modify-write. Any
 * other thread frees onto the pool's remote list, a Treiber stack that only
 * ever grows by CAS-push; the owner takes the whole list with one exchange
 * when its local list runs dry, so there is no pop race and no ABA.
 *
 * Objects are carved from large slabs (mmap, reserved lazily so untouched
 * memory costs nothing) bound to the owner's NUMA node; slabs are returned
 * only when the pool is destroyed. The free-list link lives at `link_off`
 * inside each free object, so a pool can keep its link away from bytes that
 * must stay untouched (a stack's canary). See alloc/POOL.md. */
#ifndef OT_ALLOC_POOL_H
#define OT_ALLOC_POOL_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ot__pool ot__pool_t;
typedef void (*ot__carve_fn)(ot__pool_t *pool, void *obj);

/* A magazine: objects freed by another thread, given back to their pool in
 * one push. It lives inside the first of them (at link_off), so it costs
 * no memory, and the others are not written at all: the owner, taking
 * them back, reads one line per magazine instead of a link per object,
 * and knows every address at once, so it can load them ahead (see
 * ot__pool_free_cached). */
typedef struct ot__mag {
    struct ot__mag *next; /* next magazine in a list */
    size_t n;             /* objects in obj[] (the container not counted) */
    void *obj[];
} ot__mag_t;
#define OT__MAG_MAX 32

struct ot__pool {
    /* Set once, then only read, by any thread: a thread freeing an object
     * reads `owner` to know whether the free is local. Kept off the line
     * the owner writes on every alloc, or each such read by another core
     * would pull that line away from the owner (it did: a third of a
     * send's time in fan_in went to reloading `local`). */
    size_t obj_size, link_off, slab_size;
    const void *owner;     /* identity of the owning thread's scheduler */
    ot__carve_fn on_carve; /* called once per object when first carved */
    void *numa_topo;       /* hwloc_topology_t for placement, or NULL */
    int numa_node;         /* logical index of the NUMA node, -1 = none */
    bool huge;             /* slabs after the first may use huge pages */
    uint32_t mag_cap;      /* objects a magazine holds (ot__pool_free_cached) */
    uint32_t pf_lines;     /* lines ot__pool_prefetch loads: all of an object
                              up to 512 bytes, else 0 (only its link) */
    /* Owner-only fields. */
    alignas(64) void *local; /* free list */
    ot__mag_t *mag;          /* magazine being emptied (then handed out itself) */
    ot__mag_t *mags;         /* magazines taken from `remote_mags`, not yet opened */
    char *bump, *bump_end;   /* uncarved rest of the newest slab */
    void **slabs;            /* every slab, for destroy */
    size_t nslabs, slabs_cap;
    size_t carved; /* objects carved so far */
    /* Written by other threads: its own cache line. */
    alignas(64) _Atomic(void *) remote;
    _Atomic(ot__mag_t *) remote_mags;
    char pad_[64 - 2 * sizeof(void *)];
};

void ot__pool_init(ot__pool_t *p, size_t obj_size, size_t link_off, size_t slab_size,
                   const void *owner, ot__carve_fn on_carve);
/* Let slabs after the first use transparent huge pages. Only for pools
 * whose objects are all touched (PCBs, envelopes), never stacks, where a
 * huge page would make every stack's few touched pages 2 MiB resident. */
void ot__pool_set_huge(ot__pool_t *p);
/* Place slabs carved from now on on NUMA node `node` of `topo`. */
void ot__pool_set_node(ot__pool_t *p, void *topo, int node);
/* Owner only. NULL when memory is exhausted. */
void *ot__pool_alloc_slow(ot__pool_t *p);
/* Where an object's free-list link lives (and a magazine, in the first
 * object of one). */
static inline void **ot__pool_link(const ot__pool_t *p, void *obj)
{
    return (void **)((char *)obj + p->link_off);
}
/* Load an object that will be handed out soon, for writing: every line of
 * a small one (its user fills it), only the link of a big one (a stack's
 * low end is its guard region). */
static inline void ot__pool_prefetch(const ot__pool_t *p, const char *o)
{
    /* Unrolled by the line count: the loop over obj_size cost ~30
     * instructions per control block allocated (callgrind, spawn_exit). */
    switch (p->pf_lines) {
    case 8: __builtin_prefetch(o + 448, 1); /* fall through */
    case 7: __builtin_prefetch(o + 384, 1); /* fall through */
    case 6: __builtin_prefetch(o + 320, 1); /* fall through */
    case 5: __builtin_prefetch(o + 256, 1); /* fall through */
    case 4: __builtin_prefetch(o + 192, 1); /* fall through */
    case 3: __builtin_prefetch(o + 128, 1); /* fall through */
    case 2: __builtin_prefetch(o + 64, 1);  /* fall through */
    case 1: __builtin_prefetch(o, 1); break;
    default: __builtin_prefetch(o + p->link_off, 1); break;
    }
}
static inline void *ot__pool_alloc(ot__pool_t *p)
{
    /* The fast path inline (one pop of the owner's list): it is half of a
     * message send's allocator cost when called (bench/micro). */
    void *o = p->local;
    if (!o) {
        ot__mag_t *g = p->mag;
        if (g && g->n) {
            /* From a magazine: load the object four ahead for writing
             * (its address is known without touching the others). */
            o = g->obj[--g->n];
            if (g->n >= 4) ot__pool_prefetch(p, g->obj[g->n - 4]);
            return o;
        }
        return ot__pool_alloc_slow(p);
    }
    p->local = *ot__pool_link(p, o);
    /* The next alloc reads the new head's link and its user writes the
     * whole object; a long free list is cold and in no order a hardware
     * prefetcher could guess, so load the next object now (up to 4 lines,
     * for writing). */
    if (p->local) ot__pool_prefetch(p, p->local);
    return o;
}
/* Any thread; `me` identifies the calling thread's scheduler (NULL for other
 * threads): equal to the owner, the free is local, else remote. */
void ot__pool_free_remote(ot__pool_t *p, void *obj);
static inline void ot__pool_free(ot__pool_t *p, void *obj, const void *me)
{
    if (me && me == p->owner) {
        *ot__pool_link(p, obj) = p->local;
        p->local = obj;
        return;
    }
    ot__pool_free_remote(p, obj);
}
/* Free a chain of objects already linked through their link words, first
 * to last, with one CAS (a thread that is not the owner). */
void ot__pool_free_chain(ot__pool_t *p, void *first, void *last);
/* A scheduler's cache of remote frees: objects of other schedulers' pools
 * are gathered into one magazine per pool and given back with one CAS per
 * magazine, instead of one contended CAS each. Owned by one thread. */
#define OT__RCACHE_SLOTS 8
typedef struct ot__pool_rcache {
    struct {
        ot__pool_t *pool;
        ot__mag_t *mag; /* being filled; lives in a freed object */
    } slot[OT__RCACHE_SLOTS];
} ot__pool_rcache_t;

/* Free obj (of pool p, not owned by the caller) through cache c. The
 * object's bytes from link_off on may hold a magazine until the owner
 * takes it back (never the bytes before link_off). */
void ot__pool_free_cached(ot__pool_rcache_t *c, ot__pool_t *p, void *obj);
/* Give every cached magazine back to its pool. */
void ot__pool_rcache_flush(ot__pool_rcache_t *c);
/* Free obj of pool p from any thread: locally when `me` (the calling
 * thread's scheduler, or NULL) owns the pool, else through cache c, or
 * with one CAS when the thread has no cache (c NULL). */
static inline void ot__pool_give(ot__pool_t *p, void *obj, const void *me, ot__pool_rcache_t *c)
{
    if (c && me != p->owner)
        ot__pool_free_cached(c, p, obj);
    else
        ot__pool_free(p, obj, me);
}

/* No thread may use the pool any more. Unmaps every slab. */
void ot__pool_destroy(ot__pool_t *p);

/* Best-effort binding of [addr, addr+len) to NUMA node `node`. Returns 0, or
 * a negative code when hwloc could not bind (the memory stays usable). */
int ot__numa_bind(void *topo, int node, void *addr, size_t len);

#endif
