#include "sched/runq.h"

void ot__runq_init(ot__runq_t *q)
{
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    for (uint32_t i = 0; i < OT__RUNQ_SIZE; i++)
        atomic_init(&q->slots[i], NULL);
}

void *ot__runq_steal(ot__runq_t *victim, ot__runq_t *mine, bool half, uint32_t *moved)
{
    *moved = 0;
    uint32_t mt = atomic_load_explicit(&mine->tail, memory_order_relaxed);
    for (;;) {
        /* Acquire on both: head pairs with other consumers' release CAS,
         * tail with the owner's release store (the slots are written). */
        uint32_t h = atomic_load_explicit(&victim->head, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&victim->tail, memory_order_acquire);
        uint32_t n = t - h;
        if (half)
            n -= n / 2;
        else if (n > 1)
            n = 1;
        if (n == 0) return NULL;
        if (n > OT__RUNQ_SIZE / 2) continue; /* h and t read at different times */
        for (uint32_t i = 0; i < n; i++) {
            void *item = atomic_load_explicit(&victim->slots[(h + i) % OT__RUNQ_SIZE],
                                              memory_order_relaxed);
            atomic_store_explicit(&mine->slots[(mt + i) % OT__RUNQ_SIZE], item,
                                  memory_order_relaxed);
        }
        /* Release: our slot reads complete before the owner may reuse them
         * (it acquires head before writing a slot). */
        if (atomic_compare_exchange_strong_explicit(
                &victim->head, &h, h + n, memory_order_release, memory_order_relaxed)) {
            *moved = n;
            n--;
            void *item = atomic_load_explicit(&mine->slots[(mt + n) % OT__RUNQ_SIZE],
                                              memory_order_relaxed);
            /* Release: publish the copied slots to thieves of our queue. */
            if (n) atomic_store_explicit(&mine->tail, mt + n, memory_order_release);
            return item;
        }
    }
}

uint32_t ot__runq_take(ot__runq_t *q, void **out, uint32_t n)
{
    uint32_t got = 0;
    while (got < n) {
        void *item = ot__runq_pop(q);
        if (!item) break;
        out[got++] = item;
    }
    return got;
}
