/* Selective receive.
 *
 * A process's messages live in two places: the lock-free mailbox queue
 * (arrived, not yet looked at) and the save queue (looked at by an earlier
 * receive and not taken), which is older. A receive scans the save queue,
 * then pulls from the mailbox queue, appending what does not match; so the
 * order of arrival is kept for later receives.
 *
 * The reference trick (BEAM's receive mark): ot_make_ref moves everything
 * already arrived into the save queue and marks its end. A reply carrying
 * that reference can only arrive later, so ot_receive_ref on it starts after
 * the mark and never rescans the older messages.
 *
 * A mailbox whose senders on different cores contend splits into lanes
 * (mailbox/lanes.h); the contention check is here, where the receiver takes
 * messages. */
#include <errno.h>

#include "sched/internal.h"

/* Append m to a list of messages linked through snext. */
static inline void msg_append(ot_msg_t **head, ot_msg_t **tail, ot_msg_t *m)
{
    m->snext = NULL;
    if (*tail)
        (*tail)->snext = m;
    else
        *head = m;
    *tail = m;
}

static void append_saved(ot__proc_t *p, ot_msg_t *m)
{
    msg_append(&p->save_head, &p->save_tail, m);
    p->save_len++;
    ot__sysmon_check_mbox(p, p->save_len);
}

/* The contention check, for a message m just taken from the main queue:
 * taken right after another with the queue not empty between them, from
 * another scheduler, it was pushed while a sender on another core was
 * pushing too. It counts only if its sender also sent one of the two
 * messages before: lanes are picked by sender, so they help senders that
 * keep sending, not a crowd of processes that send once each (spawn_exit
 * was ~4% slower with lanes its million children could not use). A queue
 * found empty forgives one such change, so a receiver that keeps up never
 * splits. */
static inline void note_taken(ot__proc_t *p, const ot_msg_t *m)
{
    ot_pid_t from = m->from; /* with its generation: pids are reused */
    bool again = from == p->from1 || from == p->from2;
    p->from2 = p->from1;
    p->from1 = from;
    uint16_t src = (uint16_t)(m->src + 1); /* 0: the queue was empty */
    if (src == p->last_src) return;
    /* Once: the loop that installed them may still be taking from the main
     * queue (a second install would orphan the first lanes' messages). */
    if (p->last_src && again && ++p->contended >= ot__rt->lane_threshold && !p->lanes) {
        /* No memory: go on with the one queue, and count again. */
        p->lanes = ot__lanes_install(&p->mbox, ot__rt->nlanes);
        p->contended = 0;
    }
    p->last_src = src;
}

static inline void note_empty(ot__proc_t *p)
{
    p->last_src = 0;
    if (p->contended) p->contended--;
}

/* Handle a signal in its place (it may become a message, or end p), and
 * append what is a message to the save queue. */
static void take_in(ot__proc_t *p, ot_msg_t *m)
{
    if (m->kind != OT__SIG_MSG && !(m = ot__sig_handle(p, m))) return;
    append_saved(p, m);
}

/* Messages taken from one lane before the next lane's turn. */
#define LANE_RUN 64

/* The next envelope of a mailbox with lanes, in an order that keeps each
 * sender's: NULL when there is none, with *busy set when a lane or the
 * main queue had a push half done.
 *
 * A sender's main-queue messages precede its lane messages (it pushed
 * there before it saw the lanes; mailbox/lanes.h). Having taken a lane
 * message (the acquire load of its link) we see every earlier push of its
 * sender, so an empty main queue at that point means none of them waits
 * there. Otherwise the main queue's messages, then this one, go to the
 * arrival list, which is served first. */
static ot_msg_t *lanes_next(ot__proc_t *p, bool *busy)
{
    ot_msg_t *m = p->arr_head;
    if (m) {
        p->arr_head = m->snext;
        if (!p->arr_head) p->arr_tail = NULL;
        return m;
    }
    ot__lanes_t *l = p->lanes;
    ot__mpsc_node_t *n;
    for (unsigned k = 0; k <= l->mask; k++) {
        ot__mpsc_t *q = &l->q[p->lane_next & l->mask];
        n = ot__mpsc_pop(q);
        if (n && n != OT__MPSC_BUSY) {
            if (++p->lane_run >= LANE_RUN) {
                p->lane_run = 0;
                p->lane_next++;
            }
            /* Loaded after the pop's acquire: sees a straggler's push. */
            if (ot__mpsc_empty(&p->mbox)) return (ot_msg_t *)n;
            ot__mpsc_node_t *o;
            while ((o = ot__mpsc_pop_wait(&p->mbox)))
                msg_append(&p->arr_head, &p->arr_tail, (ot_msg_t *)o);
            msg_append(&p->arr_head, &p->arr_tail, (ot_msg_t *)n);
            return lanes_next(p, busy);
        }
        if (n == OT__MPSC_BUSY) *busy = true;
        p->lane_run = 0;
        p->lane_next++;
    }
    n = ot__mpsc_pop(&p->mbox);
    if (n == OT__MPSC_BUSY) {
        *busy = true;
        return NULL;
    }
    return (ot_msg_t *)n;
}

/* Pull everything the mailbox holds into the save queue, stopping at a
 * push that is half done (that message arrived "now" anyway). Signals are
 * handled in their place; an EXIT or DOWN they become is kept like any
 * message. */
void ot__mailbox_pull(ot__proc_t *p)
{
    ot__mpsc_node_t *n;
    if (p->lanes) {
        bool busy = false;
        ot_msg_t *m;
        while ((m = lanes_next(p, &busy)))
            take_in(p, m);
        return;
    }
    while ((n = ot__mpsc_pop(&p->mbox)) && n != OT__MPSC_BUSY) {
        note_taken(p, (ot_msg_t *)n);
        take_in(p, (ot_msg_t *)n);
    }
    if (!n) note_empty(p);
}

ot_ref_t ot_make_ref(void)
{
    ot__sched_t *s = ot__tls_sched();
    ot_ref_t ref;
    if (s) {
        /* Scheduler index in the top 16 bits, a per-scheduler count below. */
        ref = ((uint64_t)(s->idx + 1) << 48) | ++s->next_ref;
    } else {
        struct ot_runtime *rt = ot__rt;
        static _Atomic uint64_t fallback;
        _Atomic uint64_t *ctr = rt ? &rt->ext_refs : &fallback;
        ref = (0xffffull << 48) | (atomic_fetch_add_explicit(ctr, 1, memory_order_relaxed) + 1);
    }
    ot__proc_t *p = s ? s->current : ot__tls_ext();
    if (p) {
        ot__mailbox_pull(p);
        p->mark = p->save_tail;
        p->mark_ref = ref;
    }
    return ref;
}

static void unlink_saved(ot__proc_t *p, ot_msg_t *prev, ot_msg_t *m)
{
    if (prev)
        prev->snext = m->snext;
    else
        p->save_head = m->snext;
    if (p->save_tail == m) p->save_tail = prev;
    if (p->mark == m) p->mark = prev;
    p->save_len--;
    m->snext = NULL;
}

static void charge(ot__proc_t *p, int32_t n)
{
    if (p->external || !p->sched) return;
    p->sched->budget -= n;
    ot__count(&p->reductions, (uint64_t)n, memory_order_relaxed);
}

static int recv(ot__proc_t *p, ot_match_fn match, void *arg, ot_ref_t ref, int64_t timeout_ms,
                ot_msg_t **out)
{
    uint64_t deadline = 0;
    if (timeout_ms > 0) deadline = ot__now_ns() + (uint64_t)timeout_ms * 1000000u;

    /* 1. The save queue, from the mark when receiving on the newest ref. */
    ot_msg_t *prev = (ref && ref == p->mark_ref) ? p->mark : NULL;
    ot_msg_t *m = prev ? prev->snext : p->save_head;
    int32_t looked = 1;
    for (; m; prev = m, m = m->snext, looked++) {
        if (ref ? m->ref == ref : (!match || match(m, arg))) {
            unlink_saved(p, prev, m);
            goto found;
        }
    }
    /* 2. New arrivals. */
    for (unsigned spins = 0;;) {
        bool busy = false;
        if (p->lanes) {
            m = lanes_next(p, &busy);
        } else {
            m = (ot_msg_t *)ot__mpsc_pop_wait(&p->mbox);
            if (m)
                note_taken(p, m);
            else
                note_empty(p);
        }
        if (m) {
            /* A signal is handled in its place; it may become a message. */
            if (m->kind != OT__SIG_MSG && !(m = ot__sig_handle(p, m))) continue;
            looked++;
            if (ref ? m->ref == ref : (!match || match(m, arg))) goto found;
            append_saved(p, m);
            continue;
        }
        if (busy) {
            /* A lane's push is one store from done (as in ot__mpsc_pop_wait). */
            ot__mpsc_backoff(spins++);
            continue;
        }
        if (timeout_ms == 0 || (deadline && ot__now_ns() >= deadline)) {
            p->scanned += (uint64_t)looked;
            charge(p, looked);
            return -ETIMEDOUT;
        }
        ot__proc_wait(p, deadline);
        /* p may now run on another scheduler; p itself is unchanged. */
    }
found:
    p->scanned += (uint64_t)looked;
    if (p->mbox_flagged) ot__sysmon_mbox_shrunk(p);
    if (ref && m->ref == ref && p->mark_ref == ref) {
        /* The reply came: the mark has served. */
        p->mark_ref = 0;
        p->mark = NULL;
    }
    charge(p, looked);
    *out = m;
    return 0;
}

int ot_receive(ot_match_fn match, void *arg, int64_t timeout_ms, ot_msg_t **out)
{
    if (!out || timeout_ms < -1) return -EINVAL;
    ot__proc_t *p = ot__self();
    if (!p) return -EPERM;
    return recv(p, match, arg, 0, timeout_ms, out);
}

int ot_receive_ref(ot_ref_t ref, int64_t timeout_ms, ot_msg_t **out)
{
    if (!out || timeout_ms < -1 || ref == 0) return -EINVAL;
    ot__proc_t *p = ot__self();
    if (!p) return -EPERM;
    return recv(p, NULL, NULL, ref, timeout_ms, out);
}

long ot_mailbox_len(void)
{
    ot__proc_t *p = ot__self();
    if (!p) return -EPERM;
    ot__mailbox_pull(p);
    return (long)p->save_len;
}

/* A message or signal that reached p too late: a request still gets its
 * answer (noproc). */
static void dead_letter(ot__proc_t *p, ot_msg_t *m)
{
    if (m->kind != OT__SIG_MSG)
        ot__sig_dead_letter(p, m);
    else
        ot__msg_release(m);
}

static void drain_queue(ot__proc_t *p, ot__mpsc_t *q, bool wait_busy)
{
    for (;;) {
        ot__mpsc_node_t *n = wait_busy ? ot__mpsc_pop_wait(q) : ot__mpsc_pop(q);
        if (!n || n == OT__MPSC_BUSY) break;
        dead_letter(p, (ot_msg_t *)n);
    }
}

void ot__mailbox_drain_slow(ot__proc_t *p, bool wait_busy)
{
    ot_msg_t *m = p->save_head;
    while (m) {
        ot_msg_t *next = m->snext;
        ot__msg_release(m);
        m = next;
    }
    p->save_head = p->save_tail = p->mark = NULL;
    p->save_len = 0;
    while ((m = p->arr_head)) {
        p->arr_head = m->snext;
        dead_letter(p, m);
    }
    p->arr_tail = NULL;
    drain_queue(p, &p->mbox, wait_busy);
    if (p->lanes)
        for (unsigned i = 0; i <= p->lanes->mask; i++)
            drain_queue(p, &p->lanes->q[i], wait_busy);
}
