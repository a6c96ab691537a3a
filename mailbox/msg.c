/* Messages: envelopes, sending and the wake-up of a waiting receiver.
 * The protocol is described in mailbox/MAILBOX.md. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sched/internal.h"

/* Inlined into the send path; ot__msg_alloc is the same for the rest. */
static inline __attribute__((always_inline)) ot_msg_t *msg_alloc(ot__sched_t *s, size_t len)
{
    size_t total = sizeof(ot_msg_t) + len;
    size_t min = (size_t)1 << OT__MSG_CLASS_MIN_SHIFT;
    ot_msg_t *m = NULL;
    if (s && total <= (min << (OT__MSG_CLASSES - 1))) {
        /* Smallest power-of-two class that fits: 64 bytes is class 0. */
        int c = total <= min ? 0 : (64 - __builtin_clzll(total - 1)) - OT__MSG_CLASS_MIN_SHIFT;
        m = ot__pool_alloc(&s->msg_pool[c]);
        if (m) m->pool = &s->msg_pool[c];
    }
    if (!m) {
        /* Large payloads, and senders that are not schedulers: glibc malloc
         * (its per-thread caches serve the small ones; big ones are mmapped
         * and go back to the system when freed). */
        m = malloc(total);
        if (!m) return NULL;
        m->pool = NULL;
    }
    m->snext = NULL;
    m->len = (uint32_t)len;
    m->moved = 0;
    m->src = s ? (uint8_t)(s->idx + 1) : 0;
    m->kind = OT__SIG_MSG;
    return m;
}

ot_msg_t *ot__msg_alloc(ot__sched_t *s, size_t len)
{
    return msg_alloc(s, len);
}

/* An envelope for a buffer moved in: the payload area holds its pointer
 * and destructor. */
static ot_msg_t *msg_alloc_moved(ot__sched_t *s, void *buf, size_t len, void (*dtor)(void *))
{
    ot_msg_t *m = ot__msg_alloc(s, sizeof(ot__moved_t));
    if (!m) return NULL;
    ot__moved_t *mv = (ot__moved_t *)(m + 1);
    mv->data = buf;
    mv->dtor = dtor;
    m->len = (uint32_t)len;
    m->moved = 1;
    return m;
}

void ot__msg_release(ot_msg_t *m)
{
    if (m->moved) {
        ot__moved_t *mv = (ot__moved_t *)(m + 1);
        if (mv->dtor) mv->dtor(mv->data);
    }
    if (!m->pool) {
        free(m);
        return;
    }
    ot__sched_t *s = ot__tls_sched();
    ot__pool_give(m->pool, m, s, s ? &s->rcache : NULL);
}

void ot_msg_free(ot_msg_t *m)
{
    if (m) ot__msg_release(m);
}

/* Push m onto p's mailbox and wake p if it waits. */
static void push_and_wake(ot__sched_t *s, ot__proc_t *p, ot_msg_t *m)
{
    ot__mbox_push(p, m);
    /* seq_cst load after the seq_cst exchange in push: see MAILBOX.md. */
    uint64_t st = atomic_load_explicit(&p->state, memory_order_seq_cst);
    if ((st & 3) != OT__ST_WAITING) return;
    /* acq_rel: the winner of this CAS is the one that queues p. */
    if (atomic_compare_exchange_strong_explicit(&p->state, &st,
                                                (st & ~(uint64_t)3) | OT__ST_RUNNABLE,
                                                memory_order_acq_rel, memory_order_relaxed))
        ot__make_runnable(s, p, false);
}

int ot__msg_deliver(struct ot_runtime *rt, ot__sched_t *s, ot_pid_t to, ot_msg_t *m)
{
    ot__proc_t *p = ot__lookup(rt, to);
    if (!p) {
        ot__msg_release(m);
        return -ESRCH;
    }
    push_and_wake(s, p, m);
    return 0;
}

int ot__msg_post(ot_pid_t to, ot_msg_t *m)
{
    ot__sched_t *s = ot__tls_sched();
    if (!s) ot__ext_rcu_enter();
    int rc = ot__msg_deliver(ot__rt, s, to, m);
    if (!s) ot__ext_rcu_leave();
    return rc;
}

int ot__msg_send_as(ot_pid_t from, ot_pid_t to, uint64_t tag, ot_ref_t ref, const void *data,
                    size_t len)
{
    ot_msg_t *m = msg_alloc(ot__tls_sched(), len);
    if (!m) return -ENOMEM;
    m->from = from;
    m->tag = tag;
    m->ref = ref;
    if (len) memcpy(m + 1, data, len);
    return ot__msg_post(to, m);
}

/* Count a reduction for a send from a process; yield when the turn is spent. */
static inline void charge(ot__sched_t *s, ot__proc_t *self)
{
    if (!s || !self) return;
    ot__count(&self->reductions, 1, memory_order_relaxed);
    if (--s->budget <= 0) ot__proc_yield(self);
}

static int send_common(ot_pid_t to, uint64_t tag, ot_ref_t ref, const void *data, size_t len,
                       void *buf, void (*free_fn)(void *))
{
    struct ot_runtime *rt = ot__rt;
    int rc;
    if (!rt) {
        rc = -EPERM;
        goto fail;
    }
    if (len > OT_MSG_MAX) {
        rc = -EMSGSIZE;
        goto fail;
    }
    if (!ot__pid_in_range(rt, to) || (len && !data && !buf)) {
        rc = -EINVAL;
        goto fail;
    }
    ot__sched_t *s = ot__tls_sched();
    ot__proc_t *self = s ? s->current : ot__tls_ext();
    if (!s) ot__ext_rcu_enter();
    ot__proc_t *p = ot__lookup(rt, to);
    if (!p) {
        if (!s) ot__ext_rcu_leave();
        rc = -ESRCH;
        goto fail;
    }
    ot_msg_t *m = buf ? msg_alloc_moved(s, buf, len, free_fn) : msg_alloc(s, len);
    if (!m) {
        if (!s) ot__ext_rcu_leave();
        rc = -ENOMEM;
        goto fail;
    }
    m->from = self ? atomic_load_explicit(&self->pid, memory_order_relaxed) : OT_PID_NONE;
    m->tag = tag;
    m->ref = ref;
    if (!buf && data && len) {
        /* A word-sized payload is the common case: copy it inline rather
         * than through a call to memcpy (a fifth of a send's instructions). */
        if (len == sizeof(uint64_t))
            memcpy(m + 1, data, sizeof(uint64_t));
        else
            memcpy(m + 1, data, len);
    }
    push_and_wake(s, p, m);
    if (!s) ot__ext_rcu_leave();
    charge(s, self);
    return 0;
fail:
    if (buf && free_fn) free_fn(buf);
    return rc;
}

int ot_send(ot_pid_t to, uint64_t tag, const void *data, size_t len)
{
    return send_common(to, tag, 0, data, len, NULL, NULL);
}

int ot_send_ref(ot_pid_t to, uint64_t tag, ot_ref_t ref, const void *data, size_t len)
{
    return send_common(to, tag, ref, data, len, NULL, NULL);
}

int ot_send_buf(ot_pid_t to, uint64_t tag, ot_ref_t ref, void *buf, size_t len,
                void (*free_fn)(void *))
{
    if (!buf && len) return -EINVAL;
    return send_common(to, tag, ref, NULL, len, buf, free_fn);
}

uint64_t ot_msg_tag(const ot_msg_t *m)
{
    return m ? m->tag : 0;
}
ot_ref_t ot_msg_ref(const ot_msg_t *m)
{
    return m ? m->ref : 0;
}
ot_pid_t ot_msg_sender(const ot_msg_t *m)
{
    return m ? m->from : OT_PID_NONE;
}
const void *ot_msg_data(const ot_msg_t *m)
{
    return m ? ot__msg_payload(m) : NULL;
}
size_t ot_msg_len(const ot_msg_t *m)
{
    return m ? m->len : 0;
}
