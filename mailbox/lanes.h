/* Mailbox lanes: a mailbox whose senders on several cores contend for its
 * one tail splits into several queues, one per group of senders.
 *
 * Every send exchanges the queue's tail, so two senders on two cores pass
 * the tail's cache line (and each other's last envelope, whose link they
 * write) back and forth on every message: 2 senders into one receiver ran
 * at ~35 ns per message on two cores against ~15 with one sender. The
 * BEAM meets the same wall with its outer signal queue lock and answers it
 * the same way (OTP 25's parallel signal sending, Winblad 2021): once the
 * receiver sees contention it installs an array of queues, and a sender
 * pushes into the queue its pid hashes to. One sender always uses one lane,
 * so the only order Erlang promises, per pair of processes, is kept; two
 * senders on different lanes no longer share a line.
 *
 * Installing: the receiver, and only it, allocates the lanes, initialises
 * them and publishes the pointer with a release store into the main
 * queue's tail line (`ot__mpsc_t.lanes`), which senders read anyway. Lanes
 * stay until the process is reclaimed (after the grace period that also
 * keeps its PCB alive for late senders: sched/reclaim.c).
 *
 * A sender that read no lanes may still push into the main queue after
 * they are installed, but a sender never goes back from lanes to the main
 * queue, so each sender's main-queue messages come before its lane
 * messages. The receiver therefore takes the lanes first and the main
 * queue second, and delivers the main queue's messages first: once it has
 * seen a lane message (acquire on its link), every earlier push by that
 * sender, main queue included, is visible to it. See mailbox/MAILBOX.md. */
#ifndef OT_MAILBOX_LANES_H
#define OT_MAILBOX_LANES_H

#include <stdalign.h>
#include <stdint.h>

#include "mailbox/mpsc.h"

typedef struct ot__lanes {
    unsigned mask; /* lanes - 1: a power of two */
    alignas(64) ot__mpsc_t q[];
} ot__lanes_t;

/* The queue a push from `from` goes to: its lane, or the main queue `q`
 * while there are no lanes. Lanes are picked by the pid's index bits, so
 * processes spawned one after another land on different lanes. */
static inline ot__mpsc_t *ot__lanes_pick(ot__mpsc_t *q, uint64_t from)
{
    /* Acquire: pairs with the release store in ot__lanes_install; the
     * lanes' initialised queues are visible before we push into one. */
    ot__lanes_t *l = atomic_load_explicit(&q->lanes, memory_order_acquire);
    return l ? &l->q[(uint32_t)from & l->mask] : q;
}

/* Could a pop find something in any lane? Same contract as
 * ot__mpsc_maybe_nonempty (seq_cst loads: the waiter's half of the wake-up
 * handshake), called with the lanes the waiter installed, or NULL. */
static inline bool ot__lanes_maybe_nonempty(ot__mpsc_t *q, ot__lanes_t *l)
{
    if (ot__mpsc_maybe_nonempty(q)) return true;
    if (l)
        for (unsigned i = 0; i <= l->mask; i++)
            if (ot__mpsc_maybe_nonempty(&l->q[i])) return true;
    return false;
}

/* Lanes for the main queue `q`: `n` (a power of two) initialised queues,
 * published to senders. Owner (receiver) only. NULL when out of memory
 * (the mailbox keeps working with its one queue). */
ot__lanes_t *ot__lanes_install(ot__mpsc_t *q, unsigned n);

#endif
