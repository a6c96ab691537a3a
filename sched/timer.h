/* Per-scheduler timers: a 4-ary min-heap keyed by deadline (what Go keeps
 * per P). It gives the next deadline in O(1), which parking needs, and
 * O(log n) insertion. Cancellation is lazy: a wake-up timer carries the
 * process's wait sequence and is ignored if the process has moved on; an
 * ot_send_after timer has an entry whose state word is CASed by whichever
 * of "fire" and "cancel" comes first. */
#ifndef OT_SCHED_TIMER_H
#define OT_SCHED_TIMER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum { OT__T_WAKE = 1, OT__T_SEND = 2 };

typedef struct ot__tnode {
    uint64_t deadline; /* ns, CLOCK_MONOTONIC */
    uint64_t a;        /* WAKE: pid;  SEND: entry index */
    uint64_t b;        /* WAKE: wait seq; SEND: entry generation */
    uint32_t kind;
} ot__tnode_t;

typedef struct ot__timer_heap {
    ot__tnode_t *v;
    size_t n, cap;
} ot__timer_heap_t;

/* A timer armed by a thread that is not a scheduler, queued for one. */
typedef struct ot__timer_req {
    struct ot__timer_req *next;
    ot__tnode_t node;
} ot__timer_req_t;

/* ot_send_after entries: type-stable, in a table indexed by handle. */
enum { OT__TE_FREE = 0, OT__TE_PENDING = 1, OT__TE_FIRED = 2, OT__TE_CANCELLED = 3 };
typedef struct ot__timer_entry {
    _Atomic uint64_t word; /* generation << 2 | OT__TE_* */
    /* Atomic: a canceller reads it racing with a later reuse of the entry;
     * its CAS on `word` then fails and it discards what it read. */
    _Atomic(struct ot_msg *) msg;
    uint64_t to;
} ot__timer_entry_t;

int ot__heap_push(ot__timer_heap_t *h, ot__tnode_t n);
void ot__heap_pop(ot__timer_heap_t *h);
static inline const ot__tnode_t *ot__heap_top(const ot__timer_heap_t *h)
{
    return h->n ? &h->v[0] : NULL;
}
void ot__heap_free(ot__timer_heap_t *h);

#endif
