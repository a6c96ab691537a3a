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
 * the mark and never rescans the older messages. */
#include <errno.h>

#include "sched/internal.h"

static void append_saved(ot__proc_t *p, ot_msg_t *m)
{
    m->snext = NULL;
    if (p->save_tail)
        p->save_tail->snext = m;
    else
        p->save_head = m;
    p->save_tail = m;
    p->save_len++;
    ot__sysmon_check_mbox(p, p->save_len);
}

/* Pull everything the mailbox queue holds into the save queue, stopping at
 * a push that is half done (that message arrived "now" anyway). Signals are
 * handled in their place; an EXIT or DOWN they become is kept like any
 * message. */
void ot__mailbox_pull(ot__proc_t *p)
{
    ot__mpsc_node_t *n;
    while ((n = ot__mpsc_pop(&p->mbox)) && n != OT__MPSC_BUSY) {
        ot_msg_t *m = (ot_msg_t *)n;
        if (m->kind != OT__SIG_MSG && !(m = ot__sig_handle(p, m))) continue;
        append_saved(p, m);
    }
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
    for (;;) {
        ot__mpsc_node_t *n = ot__mpsc_pop_wait(&p->mbox);
        if (n) {
            m = (ot_msg_t *)n;
            /* A signal is handled in its place; it may become a message. */
            if (m->kind != OT__SIG_MSG && !(m = ot__sig_handle(p, m))) continue;
            looked++;
            if (ref ? m->ref == ref : (!match || match(m, arg))) goto found;
            append_saved(p, m);
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

void ot__mailbox_drain(ot__proc_t *p, bool wait_busy)
{
    /* Most processes die with nothing unread: head at the stub and no push
     * since (a push, even half done, moves tail off the stub). */
    if (!p->save_head && p->mbox.head == &p->mbox.stub &&
        atomic_load_explicit(&p->mbox.tail, memory_order_acquire) == &p->mbox.stub)
        return;
    ot_msg_t *m = p->save_head;
    while (m) {
        ot_msg_t *next = m->snext;
        ot__msg_release(m);
        m = next;
    }
    p->save_head = p->save_tail = p->mark = NULL;
    p->save_len = 0;
    for (;;) {
        ot__mpsc_node_t *n = wait_busy ? ot__mpsc_pop_wait(&p->mbox) : ot__mpsc_pop(&p->mbox);
        if (!n || n == OT__MPSC_BUSY) break;
        m = (ot_msg_t *)n;
        /* A request that came too late still gets its answer (noproc). */
        if (m->kind != OT__SIG_MSG)
            ot__sig_dead_letter(p, m);
        else
            ot__msg_release(m);
    }
}
