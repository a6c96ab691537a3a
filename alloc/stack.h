/* Process stacks.
 *
 * A stack is an object of a per-scheduler pool whose slabs are large
 * lazily-committed mappings, so the number of mappings does not grow with
 * the number of processes. Each slot is [lo, lo+size); its descriptor sits at
 * the very top (the page the process touches first anyway) and the stack
 * grows down from below it.
 *
 * Overflow detection, two layers:
 * - a guard page at the bottom of the slot: on Linux 6.13 and later a guard
 *   region (madvise MADV_GUARD_INSTALL: a page-table marker, no new mapping)
 *   for every stack; on older kernels PROT_NONE (mprotect) for as many
 *   stacks as the process's mapping budget (vm.max_map_count) allows, since
 *   each such guard splits the mapping, costing two map entries;
 * - a zero canary: the lowest 64 usable bytes are reserved and must stay
 *   zero; they are checked, with the saved stack pointer, every time the
 *   process switches out. The canary is never written, so on a stack that
 *   never came near its end that page is at most the shared zero page:
 *   it costs no resident memory.
 * Either way the overflow is reported with the process named. */
#ifndef OT_ALLOC_STACK_H
#define OT_ALLOC_STACK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc/pool.h"

#define OT__STACK_MIN_SHIFT 14 /* 16 KiB */
#define OT__STACK_MAX_SHIFT 23 /* 8 MiB */
#define OT__STACK_CLASSES (OT__STACK_MAX_SHIFT - OT__STACK_MIN_SHIFT + 1)
#define OT__STACK_CANARY 64   /* bytes of zero canary */
#define OT__STACK_RESERVE 256 /* canary + red zone kept below any valid sp */

typedef struct ot__stack {
    void *link;       /* pool free-list link (when free) */
    char *lo;         /* lowest byte of the slot */
    size_t size;      /* slot size */
    uint32_t guarded; /* the lowest page is PROT_NONE */
    uint32_t vg_id;   /* valgrind stack id */
} ot__stack_t;

/* The descriptor is in the top 64 bytes of the slot. */
#define OT__STACK_DESC_SIZE 64

/* Stack pools: one per size class. */
typedef struct ot__stack_pools {
    ot__pool_t cls[OT__STACK_CLASSES];
} ot__stack_pools_t;

enum { OT__GUARD_MADVISE = 1, OT__GUARD_MPROTECT = 2 };
/* How guard pages are made here (probed once). */
int ot__stack_guard_mechanism(void);
/* Force a mechanism (tests of the mprotect path on new kernels). */
void ot__stack_set_guard_mechanism(int m);

/* Set the number of guard pages allowed process-wide (-1 = as many as the
 * mechanism allows: every stack with guard regions, else derived from
 * vm.max_map_count). Call before any stack is carved. */
void ot__stack_set_guard_budget(long budget);
long ot__stack_guards_left(void);

void ot__stack_pools_init(ot__stack_pools_t *sp, const void *owner, void *topo, int node);
void ot__stack_pools_destroy(ot__stack_pools_t *sp);

/* Class of a requested size (rounded up to a power of two, at least 16 KiB);
 * -1 when over 8 MiB. */
int ot__stack_class(size_t size);
size_t ot__stack_class_size(int cls);

/* A stack of class `cls` from `sp` (owner only). NULL on exhaustion. */
ot__stack_t *ot__stack_get(ot__stack_pools_t *sp, int cls);
/* Return a stack to the pool it came from (any thread; `me` as in
 * ot__pool_free). `home` is the pool set it was taken from. */
void ot__stack_put(ot__stack_pools_t *home, ot__stack_t *st, const void *me);

/* The initial top of the usable stack (16-byte aligned). */
static inline void *ot__stack_top(const ot__stack_t *st)
{
    return (char *)st->lo + st->size - OT__STACK_DESC_SIZE;
}
/* Lowest address a stack pointer may reach. */
static inline char *ot__stack_floor(const ot__stack_t *st)
{
    return st->lo + (st->guarded ? 4096 : 0) + OT__STACK_RESERVE;
}
/* Lowest usable byte, i.e. the canary. */
static inline const uint64_t *ot__stack_canary(const ot__stack_t *st)
{
    return (const uint64_t *)(st->lo + (st->guarded ? 4096 : 0));
}

/* True when the stack looks intact: sp above the floor and the canary zero. */
static inline bool ot__stack_ok(const ot__stack_t *st, const void *sp)
{
    if ((const char *)sp < ot__stack_floor(st)) return false;
    if (st->guarded) return true;
    const volatile uint64_t *c = ot__stack_canary(st);
    uint64_t acc = 0;
    for (int i = 0; i < OT__STACK_CANARY / 8; i++)
        acc |= c[i];
    return acc == 0;
}

/* True when `addr` is in the guard page or canary of `st`. */
static inline bool ot__stack_in_guard(const ot__stack_t *st, const void *addr)
{
    const char *a = addr;
    return a >= st->lo && a < ot__stack_floor(st);
}

#endif
