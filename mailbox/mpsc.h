/* The mailbox queue: Vyukov's intrusive MPSC queue ("Intrusive MPSC node-
 * based queue", 1024cores.net), the same algorithm Pony's mailboxes use.
 *
 * push is wait-free: one exchange on `tail`, then one store linking the old
 * tail to the new node. pop is for the one consumer. Between a producer's
 * exchange and its link store the queue is momentarily inconsistent: pop
 * then returns OT__MPSC_BUSY and the consumer retries (the producer is one
 * store away from finishing). A stub node lets the queue be empty without
 * a NULL tail.
 *
 * Invariant: the nodes from `head` along `next` to `tail` are exactly the
 * queued messages (plus the stub wherever it currently sits); per-producer
 * FIFO order holds because each producer's exchanges are ordered.
 * See mailbox/MAILBOX.md for the wake-up protocol built on it. */
#ifndef OT_MAILBOX_MPSC_H
#define OT_MAILBOX_MPSC_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sched.h>
#include <stddef.h>

typedef struct ot__mpsc_node {
    _Atomic(struct ot__mpsc_node *) next;
} ot__mpsc_node_t;

struct ot__lanes;

typedef struct ot__mpsc {
    /* Producers: their own cache line. `lanes` is read by producers next to
     * the tail they exchange, so it costs a send no other line: a mailbox
     * keeps its lanes there once it has them (mailbox/lanes.h); NULL in
     * every other queue. */
    alignas(64) _Atomic(ot__mpsc_node_t *) tail;
    _Atomic(struct ot__lanes *) lanes;
    /* Consumer only. */
    alignas(64) ot__mpsc_node_t *head;
    ot__mpsc_node_t stub;
} ot__mpsc_t;

#define OT__MPSC_BUSY ((ot__mpsc_node_t *)1)

static inline void ot__mpsc_init(ot__mpsc_t *q)
{
    atomic_init(&q->stub.next, NULL);
    atomic_init(&q->tail, &q->stub);
    atomic_init(&q->lanes, NULL);
    q->head = &q->stub;
}

/* Any thread. Wait-free. */
static inline void ot__mpsc_push(ot__mpsc_t *q, ot__mpsc_node_t *n)
{
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    /* seq_cst: this exchange is the producer's half of the Dekker handshake
     * with a consumer going to sleep (it stores its WAITING state, then
     * reads tail; we exchange tail, then read its state). acq_rel alone
     * would let the state load move before the exchange. Release also
     * publishes the node's contents before it is reachable. */
    ot__mpsc_node_t *prev = atomic_exchange_explicit(&q->tail, n, memory_order_seq_cst);
    /* Release: pairs with the consumer's acquire load of prev->next, so the
     * node's contents are visible once it is linked. */
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

/* Consumer only. A node, NULL when empty, or OT__MPSC_BUSY when a push is
 * half done (retry). */
static inline ot__mpsc_node_t *ot__mpsc_pop(ot__mpsc_t *q)
{
    ot__mpsc_node_t *head = q->head;
    /* Acquire: pairs with the link store in push. */
    ot__mpsc_node_t *next = atomic_load_explicit(&head->next, memory_order_acquire);
    if (head == &q->stub) {
        if (!next) {
            /* Either empty, or a producer swapped tail but has not linked. */
            return atomic_load_explicit(&q->tail, memory_order_acquire) == head ? NULL
                                                                                : OT__MPSC_BUSY;
        }
        q->head = next;
        head = next;
        next = atomic_load_explicit(&next->next, memory_order_acquire);
    }
    if (next) {
        q->head = next;
        /* The next pop reads next's link, a line a producer on another
         * core wrote: start that miss now, while the caller handles head
         * (a backed-up mailbox is a chain of such misses). */
        __builtin_prefetch(next);
        return head;
    }
    /* head looks like the last node: take it by swinging tail from head back
     * to the stub in one CAS (liburcu's wfcqueue does the same; Vyukov's
     * original re-pushes the stub, which costs an exchange and a write into
     * head's line). The stub is not in the queue here (head is past it and
     * only this CAS reinserts it), so nothing links to it until tail names
     * it. The CAS fails iff a producer exchanged tail since: its link to
     * head is on the way, BUSY. bench/micro measured this against wfcqueue. */
    atomic_store_explicit(&q->stub.next, NULL, memory_order_relaxed);
    ot__mpsc_node_t *expected = head;
    /* seq_cst like every other RMW of tail (the wake-up handshake); at least
     * release, so the stub's NULL link is stored before a producer can reach
     * the stub. Nothing to order on failure: we only return BUSY. */
    if (atomic_compare_exchange_strong_explicit(&q->tail, &expected, &q->stub,
                                                memory_order_seq_cst, memory_order_relaxed)) {
        q->head = &q->stub;
        return head;
    }
    return OT__MPSC_BUSY;
}

/* Wait a little for a half-done push, the `spins`-th time in a row: the
 * producer is one store away from finishing; if the OS preempted it there,
 * yield the CPU. */
static inline void ot__mpsc_backoff(unsigned spins)
{
    if (spins >= 64) {
        sched_yield();
        return;
    }
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* Consumer only: pop, waiting through a half-done push. */
static inline ot__mpsc_node_t *ot__mpsc_pop_wait(ot__mpsc_t *q)
{
    for (unsigned spins = 0;; spins++) {
        ot__mpsc_node_t *n = ot__mpsc_pop(q);
        if (n != OT__MPSC_BUSY) return n;
        ot__mpsc_backoff(spins);
    }
}

/* Consumer only: is the queue empty, with no push even half done? (A push
 * moves tail off the stub before it links, and head is at the stub only
 * after everything before it was popped.) Acquire: a push seen here is
 * seen whole by the pops after it. */
static inline bool ot__mpsc_empty(ot__mpsc_t *q)
{
    return q->head == &q->stub &&
           atomic_load_explicit(&q->tail, memory_order_acquire) == &q->stub;
}

/* Could a pop find something? Called by the consumer's scheduler after the
 * consumer last saw the queue empty (so head is the stub), possibly while
 * the consumer already runs elsewhere: it reads only atomics, never head.
 * seq_cst loads: the waiter's half of the Dekker handshake (store WAITING;
 * load tail) against push's exchange-then-load. */
static inline bool ot__mpsc_maybe_nonempty(ot__mpsc_t *q)
{
    if (atomic_load_explicit(&q->tail, memory_order_seq_cst) != &q->stub) return true;
    return atomic_load_explicit(&q->stub.next, memory_order_seq_cst) != NULL;
}

#endif
