/* Index allocator: hands out small integers (process-table slots, timer
 * slots) from a global free stack, with a per-scheduler cache so that the
 * common case takes no lock. Indices start at 1 (0 means "none"). */
#ifndef OT_UTIL_IDX_H
#define OT_UTIL_IDX_H

#include <pthread.h>
#include <stdint.h>

#define OT__IDX_BATCH 64
#define OT__IDX_CACHE (2 * OT__IDX_BATCH)

typedef struct ot__idx_global {
    pthread_mutex_t lock;
    uint32_t *free; /* stack of returned indices */
    size_t nfree, cap;
    uint32_t next_fresh; /* never handed out at or above this */
    uint32_t limit;      /* indices are < limit */
} ot__idx_global_t;

typedef struct ot__idx_cache {
    uint32_t n;
    uint32_t items[OT__IDX_CACHE];
} ot__idx_cache_t;

int ot__idx_init(ot__idx_global_t *g, uint32_t limit);
void ot__idx_destroy(ot__idx_global_t *g);
/* An index in [1, limit), or -EAGAIN when all are in use. `c` may be NULL
 * (then the global lock is taken). `c` is owned by the calling thread. */
int64_t ot__idx_get_slow(ot__idx_global_t *g, ot__idx_cache_t *c);
static inline int64_t ot__idx_get(ot__idx_global_t *g, ot__idx_cache_t *c)
{
    /* The common case inline: a call saving registers cost more than the
     * pop itself (callgrind, on every spawn). */
    if (c && c->n > 0) return c->items[--c->n];
    return ot__idx_get_slow(g, c);
}
void ot__idx_put_slow(ot__idx_global_t *g, ot__idx_cache_t *c, uint32_t idx);
static inline void ot__idx_put(ot__idx_global_t *g, ot__idx_cache_t *c, uint32_t idx)
{
    if (c && c->n < OT__IDX_CACHE) {
        c->items[c->n++] = idx;
        return;
    }
    ot__idx_put_slow(g, c, idx);
}
/* Return everything in `c` to the global stack. */
void ot__idx_flush(ot__idx_global_t *g, ot__idx_cache_t *c);

#endif
