#include "util/idx.h"

#include <errno.h>
#include <stdlib.h>

int ot__idx_init(ot__idx_global_t *g, uint32_t limit)
{
    pthread_mutex_init(&g->lock, NULL);
    g->free = NULL;
    g->nfree = g->cap = 0;
    g->next_fresh = 1;
    g->limit = limit;
    return 0;
}

void ot__idx_destroy(ot__idx_global_t *g)
{
    free(g->free);
    g->free = NULL;
    pthread_mutex_destroy(&g->lock);
}

/* Caller holds g->lock. Moves up to `want` indices into out[]. */
static uint32_t take_locked(ot__idx_global_t *g, uint32_t *out, uint32_t want)
{
    uint32_t n = 0;
    while (n < want && g->nfree > 0)
        out[n++] = g->free[--g->nfree];
    while (n < want && g->next_fresh < g->limit)
        out[n++] = g->next_fresh++;
    return n;
}

static int push_locked(ot__idx_global_t *g, const uint32_t *in, uint32_t n)
{
    if (g->nfree + n > g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 1024;
        while (cap < g->nfree + n)
            cap *= 2;
        uint32_t *f = realloc(g->free, cap * sizeof *f);
        if (!f) return -ENOMEM;
        g->free = f;
        g->cap = cap;
    }
    for (uint32_t i = 0; i < n; i++)
        g->free[g->nfree++] = in[i];
    return 0;
}

int64_t ot__idx_get_slow(ot__idx_global_t *g, ot__idx_cache_t *c)
{
    uint32_t one;
    pthread_mutex_lock(&g->lock);
    uint32_t got = c ? take_locked(g, c->items, OT__IDX_BATCH) : take_locked(g, &one, 1);
    pthread_mutex_unlock(&g->lock);
    if (got == 0) return -EAGAIN;
    if (!c) return one;
    c->n = got;
    return c->items[--c->n];
}

void ot__idx_put_slow(ot__idx_global_t *g, ot__idx_cache_t *c, uint32_t idx)
{
    pthread_mutex_lock(&g->lock);
    if (c) {
        /* Cache full: give back a batch, keep the rest warm. */
        c->n -= OT__IDX_BATCH;
        if (push_locked(g, c->items + c->n, OT__IDX_BATCH) == 0)
            c->items[c->n++] = idx;
        else
            c->n += OT__IDX_BATCH; /* no memory: idx leaks (see below) */
    } else {
        /* Out of memory for the free stack leaks the index: the table only
         * shrinks, an index is never handed out twice. */
        (void)push_locked(g, &idx, 1);
    }
    pthread_mutex_unlock(&g->lock);
}

void ot__idx_flush(ot__idx_global_t *g, ot__idx_cache_t *c)
{
    pthread_mutex_lock(&g->lock);
    if (push_locked(g, c->items, c->n) == 0) c->n = 0;
    pthread_mutex_unlock(&g->lock);
}
