/* Timers: the per-scheduler heap, firing, ot_send_after and cancellation.
 * See sched/timer.h for the design. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched/internal.h"

uint64_t ot__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t ot_now_ms(void)
{
    return ot__now_ns() / 1000000u;
}

/* ---- 4-ary min-heap ------------------------------------------------------- */

int ot__heap_push(ot__timer_heap_t *h, ot__tnode_t n)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        ot__tnode_t *v = realloc(h->v, cap * sizeof *v);
        if (!v) return -ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 4;
        if (h->v[parent].deadline <= n.deadline) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = n;
    return 0;
}

void ot__heap_pop(ot__timer_heap_t *h)
{
    if (h->n == 0) return;
    ot__tnode_t last = h->v[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 4 * i + 1, best = i;
        uint64_t bd = last.deadline;
        for (size_t k = c; k < c + 4 && k < n; k++)
            if (h->v[k].deadline < bd) {
                bd = h->v[k].deadline;
                best = k;
            }
        if (best == i) break;
        h->v[i] = h->v[best];
        i = best;
    }
    if (n) h->v[i] = last;
}

void ot__heap_free(ot__timer_heap_t *h)
{
    free(h->v);
    *h = (ot__timer_heap_t){0};
}

/* ---- firing -------------------------------------------------------------- */

static void fire_wake(ot__sched_t *s, ot_pid_t pid, uint64_t seq)
{
    ot__proc_t *p = ot__lookup(s->rt, pid);
    if (!p) return;
    /* seq_cst: the timer's half of the handshake with a process going to
     * sleep (it stores WAITING, then reads timer_fired). */
    atomic_store_explicit(&p->timer_fired, seq, memory_order_seq_cst);
    uint64_t st = atomic_load_explicit(&p->state, memory_order_seq_cst);
    uint32_t low = st & 3;
    if ((st >> 2) != seq || (low != OT__ST_WAITING && low != OT__ST_SLEEPING)) return;
    if (atomic_compare_exchange_strong_explicit(&p->state, &st,
                                                (st & ~(uint64_t)3) | OT__ST_RUNNABLE,
                                                memory_order_acq_rel, memory_order_relaxed))
        ot__make_runnable(s, p, true);
}

static void entry_release(struct ot_runtime *rt, ot__sched_t *s, uint32_t idx, uint64_t gen)
{
    ot__timer_entry_t *e = &rt->tentries[idx];
    /* Release: the next user of the slot sees it cleared. */
    atomic_store_explicit(&e->word, ((gen + 1) << 2) | OT__TE_FREE, memory_order_release);
    ot__idx_put(&rt->timer_ids, s ? &s->timer_cache : NULL, idx);
}

static void fire_send(ot__sched_t *s, uint32_t idx, uint64_t gen)
{
    struct ot_runtime *rt = s->rt;
    ot__timer_entry_t *e = &rt->tentries[idx];
    uint64_t w = (gen << 2) | OT__TE_PENDING;
    /* acq_rel: on success we own e->msg (written before the entry was
     * published PENDING with release); a cancel that won has already
     * freed it. */
    if (atomic_compare_exchange_strong_explicit(&e->word, &w, (gen << 2) | OT__TE_FIRED,
                                                memory_order_acq_rel, memory_order_acquire))
        (void)ot__msg_deliver(rt, s, e->to,
                              atomic_load_explicit(&e->msg, memory_order_relaxed));
    entry_release(rt, s, idx, gen);
}

static void drain_inbox(ot__sched_t *s)
{
    if (!atomic_load_explicit(&s->tinbox_len, memory_order_acquire)) return;
    pthread_mutex_lock(&s->inj_lock);
    ot__timer_req_t *r = s->tinbox;
    s->tinbox = NULL;
    atomic_store_explicit(&s->tinbox_len, 0, memory_order_relaxed);
    pthread_mutex_unlock(&s->inj_lock);
    while (r) {
        ot__timer_req_t *next = r->next;
        if (ot__heap_push(&s->timers, r->node) != 0) {
            /* No memory to keep the timer: fire it now rather than lose it. */
            ot__tnode_t n = r->node;
            if (n.kind == OT__T_SEND)
                fire_send(s, (uint32_t)n.a, n.b);
            else
                fire_wake(s, n.a, n.b);
        }
        free(r);
        r = next;
    }
}

void ot__timers_run(ot__sched_t *s, uint64_t now)
{
    drain_inbox(s);
    const ot__tnode_t *t;
    while ((t = ot__heap_top(&s->timers)) && t->deadline <= now) {
        ot__tnode_t n = *t;
        ot__heap_pop(&s->timers);
        if (n.kind == OT__T_WAKE)
            fire_wake(s, n.a, n.b);
        else
            fire_send(s, (uint32_t)n.a, n.b);
    }
}

/* Arm a timer node on the calling thread's scheduler, or hand it to
 * scheduler 0 from other threads. */
static int arm(struct ot_runtime *rt, ot__sched_t *s, ot__tnode_t n)
{
    if (s) return ot__heap_push(&s->timers, n);
    ot__timer_req_t *r = malloc(sizeof *r);
    if (!r) return -ENOMEM;
    r->node = n;
    ot__sched_t *t = rt->scheds[0];
    pthread_mutex_lock(&t->inj_lock);
    r->next = t->tinbox;
    t->tinbox = r;
    /* seq_cst: paired with the parker's re-check, as for injection. */
    atomic_fetch_add_explicit(&t->tinbox_len, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&t->inj_lock);
    ot__wake_sched(t);
    return 0;
}

int ot__timer_arm_wake(ot__sched_t *s, ot__proc_t *p, uint64_t deadline)
{
    ot__tnode_t n = {deadline, atomic_load_explicit(&p->pid, memory_order_relaxed), p->wait_seq,
                     OT__T_WAKE};
    return arm(s->rt, s, n);
}

/* ---- public -------------------------------------------------------------- */

int ot_send_after(uint64_t ms, ot_pid_t to, uint64_t tag, const void *data, size_t len,
                  ot_timer_t *timer)
{
    struct ot_runtime *rt = ot__rt;
    if (!rt) return -EPERM;
    if (len && !data) return -EINVAL;
    if (len > OT_MSG_MAX) return -EMSGSIZE;
    if (!ot__pid_in_range(rt, to)) return -EINVAL;
    if (ms > (uint64_t)365 * 24 * 3600 * 1000) return -EINVAL;
    ot__sched_t *s = ot__tls_sched();
    int64_t idx = ot__idx_get(&rt->timer_ids, s ? &s->timer_cache : NULL);
    if (idx < 0) return (int)idx;
    ot_msg_t *m = ot__msg_alloc(s, len);
    if (!m) {
        ot__idx_put(&rt->timer_ids, s ? &s->timer_cache : NULL, (uint32_t)idx);
        return -ENOMEM;
    }
    ot__proc_t *self = ot__self();
    m->from = self ? atomic_load_explicit(&self->pid, memory_order_relaxed) : OT_PID_NONE;
    m->tag = tag;
    m->ref = 0;
    if (len) memcpy(m + 1, data, len);
    ot__timer_entry_t *e = &rt->tentries[idx];
    uint64_t gen = atomic_load_explicit(&e->word, memory_order_acquire) >> 2;
    atomic_store_explicit(&e->msg, m, memory_order_relaxed);
    e->to = to;
    /* Release: msg and to are written before the entry reads as PENDING. */
    atomic_store_explicit(&e->word, (gen << 2) | OT__TE_PENDING, memory_order_release);
    ot__tnode_t n = {ot__now_ns() + ms * 1000000u, (uint64_t)idx, gen, OT__T_SEND};
    int rc = arm(rt, s, n);
    if (rc != 0) {
        ot__msg_release(m);
        entry_release(rt, s, (uint32_t)idx, gen);
        return rc;
    }
    if (timer) *timer = ((gen & 0xffffffffu) << 32) | (uint64_t)idx;
    return 0;
}

int ot_timer_cancel(ot_timer_t timer)
{
    struct ot_runtime *rt = ot__rt;
    if (!rt) return -ENOENT;
    uint32_t idx = (uint32_t)timer;
    uint64_t gen = timer >> 32;
    if (idx == 0 || idx >= rt->timer_ids.limit) return -ENOENT;
    ot__timer_entry_t *e = &rt->tentries[idx];
    uint64_t w = atomic_load_explicit(&e->word, memory_order_acquire);
    if ((w & 3) != OT__TE_PENDING || ((w >> 2) & 0xffffffffu) != gen) return -ENOENT;
    /* Read before the CAS: once the CAS wins, the firing scheduler may
     * release the entry for reuse at any moment. */
    ot_msg_t *m = atomic_load_explicit(&e->msg, memory_order_relaxed);
    /* acq_rel: winning makes e->msg ours (published with release). */
    if (!atomic_compare_exchange_strong_explicit(&e->word, &w,
                                                 (w & ~(uint64_t)3) | OT__TE_CANCELLED,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return -ENOENT;
    ot__msg_release(m);
    return 0;
}
