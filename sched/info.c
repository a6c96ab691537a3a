/* ot_process_info and ot_processes (otter/info.h).
 *
 * About another process the figures are the process's own: the request
 * travels as a signal and the process answers it when it handles its
 * signals (sched/signal.c), reading fields only it writes. The caller reads
 * only the target's atomic state word itself, for the status. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "otter/info.h"
#include "sched/internal.h"
#include "sched/sigtab.h"

static int status_peek(ot__proc_t *q)
{
    if (q->external) return OT_STATUS_ATTACHED;
    if (__atomic_load_n(&q->in_dirty, __ATOMIC_RELAXED)) return OT_STATUS_DIRTY;
    switch (atomic_load_explicit(&q->state, memory_order_relaxed) & 3) {
    case OT__ST_WAITING: return OT_STATUS_WAITING;
    case OT__ST_SLEEPING: return OT_STATUS_SLEEPING;
    default: return OT_STATUS_RUNNABLE;
    }
}

/* Messages still in a queue: the consumer may walk it (it alone frees). */
static size_t queued_in(ot__mpsc_t *q)
{
    size_t n = 0;
    ot__mpsc_node_t *x = q->head;
    while (x) {
        if (x != &q->stub && ((ot_msg_t *)x)->kind == OT__SIG_MSG) n++;
        x = atomic_load_explicit(&x->next, memory_order_acquire);
    }
    return n;
}

static size_t queued(ot__proc_t *p)
{
    size_t n = queued_in(&p->mbox);
    /* Taken from the queues, not yet sorted (an INFO request answered
     * while a pull sorts them). */
    for (ot_msg_t *m = p->arr_head; m; m = m->snext)
        if (m->kind == OT__SIG_MSG) n++;
    if (p->lanes)
        for (unsigned i = 0; i <= p->lanes->mask; i++)
            n += queued_in(&p->lanes->q[i]);
    return n;
}

/* Fill *out about p, in p's own context. */
static void fill_self(ot__proc_t *p, ot_process_info_t *out)
{
    memset(out, 0, sizeof *out);
    out->status = p->external ? OT_STATUS_ATTACHED : OT_STATUS_RUNNING;
    out->priority = p->prio;
    out->scheduler = p->external || !p->sched ? -1 : (int)p->sched->idx;
    out->trap_exit = p->trap_exit || p->external;
    out->message_queue_len = p->save_len + queued(p);
    out->mailbox_lanes = p->lanes ? p->lanes->mask + 1 : 0;
    out->reductions = atomic_load_explicit(&p->reductions, memory_order_relaxed);
    if (p->stack) {
        char here;
        out->stack_size = ot__stack_class_size(p->stack_cls);
        out->stack_used = (size_t)((char *)ot__stack_top(p->stack) - &here);
    }
    out->links = ot__sigtab_count(p->sigtab, OT__ENT_LINK);
    out->monitors = ot__sigtab_count(p->sigtab, OT__ENT_MON_OUT);
    out->monitored_by = ot__sigtab_count(p->sigtab, OT__ENT_MON_IN);
    ot__registry_name_of(p, out->registered_name, sizeof out->registered_name);
    snprintf(out->label, sizeof out->label, "%s", p->name);
    ot__sysmon_check_mbox(p, out->message_queue_len);
}

void ot__info_answer(ot__proc_t *p, ot_msg_t *req)
{
    ot_process_info_t info;
    fill_self(p, &info);
    /* No memory for the reply: the asker waits on. */
    (void)ot__msg_send_as(atomic_load_explicit(&p->pid, memory_order_relaxed), req->from,
                          OT__TAG_INFO_REPLY, req->ref, &info, sizeof info);
}

int ot_process_info(ot_pid_t pid, ot_process_info_t *out)
{
    struct ot_runtime *rt = ot__rt;
    if (!rt) return -EPERM;
    if (!out || !ot__pid_in_range(rt, pid)) return -EINVAL;
    ot__proc_t *me = ot__self();
    ot_pid_t mypid = me ? atomic_load_explicit(&me->pid, memory_order_relaxed) : OT_PID_NONE;
    if (me && pid == mypid) {
        ot__mailbox_pull(me);
        fill_self(me, out);
        return 0;
    }
    if (!me) return -EPERM;
    ot__sched_t *s = ot__tls_sched();
    if (!s) ot__ext_rcu_enter();
    ot__proc_t *q = ot__lookup(rt, pid);
    int status = q ? status_peek(q) : 0;
    if (!s) ot__ext_rcu_leave();
    if (!q) return -ESRCH;
    ot_ref_t ref = ot_make_ref();
    int rc = ot__sig_send(mypid, pid, OT__SIG_INFO, ref, NULL);
    if (rc) return rc;
    ot_msg_t *m;
    /* Every request is answered: by the process, or by its last drain
     * (empty: it died first). */
    rc = ot_receive_ref(ref, OT_INFINITY, &m);
    if (rc) return rc;
    if (ot_msg_len(m) != sizeof *out) {
        ot_msg_free(m);
        return -ESRCH;
    }
    memcpy(out, ot_msg_data(m), sizeof *out);
    out->status = status;
    ot_msg_free(m);
    return 0;
}

long ot_processes(ot_pid_t *pids, size_t cap)
{
    struct ot_runtime *rt = ot__rt;
    if (!rt) return -EPERM;
    if (!pids && cap) return -EINVAL;
    ot__sched_t *s = ot__tls_sched();
    if (!s) ot__ext_rcu_enter();
    size_t n = 0;
    /* Slots at and above next_fresh were never used. A slot handed out
     * after this read holds a process born during the call. */
    pthread_mutex_lock(&rt->pids.lock);
    uint32_t hi = rt->pids.next_fresh;
    pthread_mutex_unlock(&rt->pids.lock);
    for (uint32_t i = 1; i < hi; i++) {
        ot__proc_t *p = ot__slot_live(rt, i);
        if (!p) continue;
        if (n < cap) pids[n] = atomic_load_explicit(&p->pid, memory_order_relaxed);
        n++;
    }
    if (!s) ot__ext_rcu_leave();
    return (long)n;
}
