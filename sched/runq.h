/* A scheduler's local run queue: a bounded FIFO ring with one producer (the
 * owner) and many consumers (the owner, and thieves that take half).
 *
 * This is the layout Go's runtime uses for a P's run queue (runqput,
 * runqget, runqgrab in runtime/proc.go), written here with C11 orderings:
 * - tail is written only by the owner; slots are written only by the owner,
 *   at tail, and only when tail - head < SIZE;
 * - head is advanced by CAS by whoever takes (owner pop or thief grab);
 * - a thief copies the slots [head, head+n) first and then CASes head; if the
 *   CAS fails the copies are discarded. The copied slots cannot have been
 *   overwritten meanwhile without head having moved (the owner only reuses
 *   a slot after observing, with acquire, a head beyond it), and then the CAS
 *   fails. Slots are atomics (relaxed) so that the racing read of a slot the
 *   owner is rewriting is not a data race in C11 terms.
 * The queue stores opaque pointers. Lock-free; push and pop by the owner
 * are wait-free unless a thief's CAS wins. See sched/RUNQ.md. */
#ifndef OT_SCHED_RUNQ_H
#define OT_SCHED_RUNQ_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OT__RUNQ_SIZE 256u

typedef struct ot__runq {
    alignas(64) _Atomic uint32_t head; /* consumers */
    alignas(64) _Atomic uint32_t tail; /* owner */
    _Atomic(void *) slots[OT__RUNQ_SIZE];
} ot__runq_t;

void ot__runq_init(ot__runq_t *q);

/* Owner only. False when full. */
static inline bool ot__runq_push(ot__runq_t *q, void *item)
{
    /* Acquire: pairs with the release CAS of consumers, so their reads of
     * the slots we are about to reuse are done. */
    uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    if (t - h >= OT__RUNQ_SIZE) return false;
    atomic_store_explicit(&q->slots[t % OT__RUNQ_SIZE], item, memory_order_relaxed);
    /* Release: the slot is written before a consumer can see the new tail
     * (pairs with their acquire load of tail). */
    atomic_store_explicit(&q->tail, t + 1, memory_order_release);
    return true;
}

/* Owner only. NULL when empty. */
static inline void *ot__runq_pop(ot__runq_t *q)
{
    uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    for (;;) {
        uint32_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
        if (t == h) return NULL;
        void *item = atomic_load_explicit(&q->slots[h % OT__RUNQ_SIZE], memory_order_relaxed);
        /* Release: our slot read is done before the slot can be reused;
         * on failure h is reloaded (acquire) and we retry. */
        if (atomic_compare_exchange_weak_explicit(&q->head, &h, h + 1, memory_order_release,
                                                  memory_order_acquire))
            return item;
    }
}

/* Owner: start loading the next process to be popped (a hint only: the
 * slot may be stale or empty, and a prefetch of any address is harmless).
 * A run queue of processes spawned or woken long ago is a list of cold
 * control blocks; this overlaps the next one's miss with this one's run. */
static inline void ot__runq_prefetch_next(ot__runq_t *q)
{
    uint32_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    __builtin_prefetch(
        atomic_load_explicit(&q->slots[h % OT__RUNQ_SIZE], memory_order_relaxed));
}

/* Any thread; a snapshot. */
static inline uint32_t ot__runq_len(ot__runq_t *q)
{
    uint32_t h = atomic_load_explicit(&q->head, memory_order_acquire);
    uint32_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
    return t - h > OT__RUNQ_SIZE ? 0 : t - h;
}

/* Thief: move up to half (or one, if !half) of `victim` into `mine` (owned by
 * the caller, and empty) and return one of them; NULL when nothing was taken.
 * *moved receives how many were taken in all. */
void *ot__runq_steal(ot__runq_t *victim, ot__runq_t *mine, bool half, uint32_t *moved);

/* Owner only: take up to n items into out[] (used to spill half of a full
 * queue). Returns the count. */
uint32_t ot__runq_take(ot__runq_t *q, void **out, uint32_t n);

#endif
