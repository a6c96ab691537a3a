/* Mailbox lanes: installing them. The protocol is in mailbox/lanes.h. */
#include "mailbox/lanes.h"

#include <stdlib.h>

ot__lanes_t *ot__lanes_install(ot__mpsc_t *q, unsigned n)
{
    ot__lanes_t *l = aligned_alloc(alignof(ot__lanes_t), sizeof *l + n * sizeof l->q[0]);
    if (!l) return NULL;
    l->mask = n - 1;
    for (unsigned i = 0; i < n; i++)
        ot__mpsc_init(&l->q[i]);
    /* Release: the initialised lanes before the pointer (ot__lanes_pick). */
    atomic_store_explicit(&q->lanes, l, memory_order_release);
    return l;
}
