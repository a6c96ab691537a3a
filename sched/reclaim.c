/* Reclamation of dead processes' control blocks.
 *
 * A sender looks a pid up and pushes onto the mailbox without a lock, so a
 * dead process's PCB must outlive every sender that may have found it. We
 * use liburcu's QSBR flavour: scheduler threads are registered readers that
 * announce a quiescent state between processes (they hold no PCB pointer
 * then) and go offline while parked; other threads go online only around a
 * send.
 *
 * Schedulers batch their dead PCBs (256 at a time) and take a ticket for
 * each batch. One reclaimer thread runs synchronize_rcu for all tickets
 * asked so far and publishes the highest in gp_done. The scheduler keeps
 * its batches and, at a scheduling point, frees those whose ticket is done:
 * it drains what late senders pushed and returns the PCBs to its own pools,
 * locally and warm (a PCB from another scheduler's pool goes back in one
 * chain per pool). The reclaimer touches no PCB; it also frees the PCBs of
 * attached threads, which are not pool objects.
 *
 * Why a ticket is safe: a batch's PCBs were unlinked from the table before
 * the ticket was taken (acq_rel increment); the reclaimer reads gp_asked
 * (acquire) before starting its grace period, so every reader that could
 * have found those PCBs has passed a quiescent state when gp_done says so.
 *
 * liburcu's internals are invisible to TSan, so the grace period is also
 * told to TSan: each quiescent state releases ot__rcu_sync and the
 * reclaimer acquires it after synchronize_rcu. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <urcu/urcu-qsbr.h>

#include "sched/fiber.h"
#include "sched/internal.h"

/* How long the reclaimer lets tickets gather before a grace period. */
#define OT__RECLAIM_PAUSE_NS 500000

char ot__rcu_sync;

void ot__rcu_quiescent(void)
{
    ot__tsan_release(&ot__rcu_sync);
    urcu_qsbr_quiescent_state();
}

/* Free a PCB whose grace period has ended. What late senders pushed is
 * drained; an attached thread's PCB (malloc'd) is freed; a pool's goes
 * back locally when `me` owns the pool, otherwise through the remote-free
 * cache `rc` (magazines per pool, one CAS each). */
static void free_proc(ot__proc_t *p, const void *me, ot__pool_rcache_t *rc)
{
    ot__mailbox_drain(p, true);
    free(p->lanes); /* nobody can reach them after the grace period */
    if (!p->pool)
        free(p);
    else
        ot__pool_give(p->pool, p, me, rc);
}

/* A PCB gone cold during its grace period: load every line free_proc reads
 * or writes (its pool and link, the drain's looks at the receive state and
 * at both ends of the mailbox queue). */
static inline void prefetch_dead(const ot__proc_t *p)
{
    __builtin_prefetch(&p->pool);
    __builtin_prefetch(&p->pool_link, 1);
    __builtin_prefetch(&p->arr_head);
    __builtin_prefetch(&p->mbox.tail);
    __builtin_prefetch(&p->mbox.head);
}

static void free_list(ot__proc_t *list, const void *me, ot__pool_rcache_t *rc)
{
    while (list) {
        ot__proc_t *next = list->qnext;
        if (next) prefetch_dead(next);
        free_proc(list, me, rc);
        list = next;
    }
}

/* Free batch b of s: its array, eight PCBs ahead of their misses, then its
 * list. */
static void free_batch(ot__sched_t *s, unsigned b, ot__pool_rcache_t *rc)
{
    enum { AHEAD = 8 };
    unsigned n = s->batch[b].n;
    ot__proc_t **v = s->batch[b].procs;
    for (unsigned i = 0; i < n && i < AHEAD; i++)
        prefetch_dead(v[i]);
    for (unsigned i = 0; i < n; i++) {
        if (i + AHEAD < n) prefetch_dead(v[i + AHEAD]);
        free_proc(v[i], s, rc);
    }
    free_list(s->batch[b].list, s, rc);
    s->batch[b].n = 0;
    s->batch[b].list = NULL;
}

static void *reclaimer_main(void *arg)
{
    struct ot_runtime *rt = arg;
    pthread_mutex_lock(&rt->rlock);
    for (;;) {
        while (!rt->rpending && !rt->rdeferred && !rt->rstop &&
               atomic_load_explicit(&rt->gp_asked, memory_order_acquire) ==
                   atomic_load_explicit(&rt->gp_done, memory_order_relaxed))
            pthread_cond_wait(&rt->rcond, &rt->rlock);
        /* Let tickets gather: one grace period then serves every batch
         * handed off meanwhile, and those hand-offs find us not waiting on
         * the condition, so they cost no futex wake (on a busy runtime this
         * cut wake-ups from one per 256 dead processes to one per pause). */
        if (!rt->rstop) {
            pthread_mutex_unlock(&rt->rlock);
            nanosleep(&(struct timespec){.tv_nsec = OT__RECLAIM_PAUSE_NS}, NULL);
            pthread_mutex_lock(&rt->rlock);
        }
        ot__proc_t *list = rt->rpending;
        rt->rpending = NULL;
        void **deferred = rt->rdeferred;
        rt->rdeferred = NULL;
        /* Acquire: pairs with the acq_rel ticket increment; the batches up to
         * `asked` were unlinked before our grace period starts. */
        uint64_t asked = atomic_load_explicit(&rt->gp_asked, memory_order_acquire);
        if (!list && !deferred && rt->rstop &&
            asked == atomic_load_explicit(&rt->gp_done, memory_order_relaxed))
            break;
        pthread_mutex_unlock(&rt->rlock);

        urcu_qsbr_synchronize_rcu();
        ot__tsan_acquire(&ot__rcu_sync);
        /* Release: the grace period happens before a scheduler's acquire
         * load in ot__reclaim_poll, and so before it frees. */
        atomic_store_explicit(&rt->gp_done, asked, memory_order_release);
        while (deferred) {
            void **next = *deferred;
            free(deferred);
            deferred = next;
        }
        ot__pool_rcache_t rc = {0};
        free_list(list, NULL, &rc);
        ot__pool_rcache_flush(&rc);
        pthread_mutex_lock(&rt->rlock);
    }
    pthread_mutex_unlock(&rt->rlock);
    return NULL;
}

int ot__reclaim_start(struct ot_runtime *rt)
{
    pthread_mutex_init(&rt->rlock, NULL);
    pthread_cond_init(&rt->rcond, NULL);
    rt->rpending = NULL;
    rt->rdeferred = NULL;
    rt->rstop = false;
    atomic_init(&rt->gp_asked, 0);
    atomic_init(&rt->gp_done, 0);
    int rc = pthread_create(&rt->reclaimer, NULL, reclaimer_main, rt);
    if (rc != 0) {
        pthread_cond_destroy(&rt->rcond);
        pthread_mutex_destroy(&rt->rlock);
        return -rc;
    }
    return 0;
}

void ot__reclaim_poll(ot__sched_t *s)
{
    if (s->batch_head == s->batch_tail) return;
    /* Acquire: pairs with the reclaimer's release store of gp_done. */
    uint64_t done = atomic_load_explicit(&s->rt->gp_done, memory_order_acquire);
    while (s->batch_head != s->batch_tail) {
        unsigned i = s->batch_head % OT__BATCHES;
        if (s->batch[i].ticket > done) break;
        free_batch(s, i, &s->rcache);
        s->batch_head++;
    }
}

void ot__reclaim_handoff(ot__sched_t *s)
{
    if (!s->ndead && !s->dead) return;
    ot__reclaim_poll(s);
    /* Too many batches in flight (the reclaimer lags): keep collecting on
     * the list (ndead is 0: no batch was free to collect in), and try again
     * OT__BATCH_PROCS deaths later, not at every death. */
    if (s->batch_tail - s->batch_head == OT__BATCHES) return;
    struct ot_runtime *rt = s->rt;
    /* acq_rel: the unlinking of these PCBs happens before the reclaimer's
     * acquire read of gp_asked, hence before the grace period it starts. */
    uint64_t t = atomic_fetch_add_explicit(&rt->gp_asked, 1, memory_order_acq_rel) + 1;
    unsigned i = s->batch_tail % OT__BATCHES;
    s->batch[i].n = s->ndead;
    s->batch[i].list = s->dead;
    s->batch[i].ticket = t;
    s->batch_tail++;
    s->dead = NULL;
    s->ndead = s->nover = 0;
    pthread_mutex_lock(&rt->rlock);
    pthread_cond_signal(&rt->rcond);
    pthread_mutex_unlock(&rt->rlock);
}

void ot__reclaim_flush(ot__sched_t *s)
{
    /* Every scheduler is joined; senders on other threads may still hold
     * PCBs they looked up: one grace period covers them all. */
    urcu_qsbr_synchronize_rcu();
    ot__tsan_acquire(&ot__rcu_sync);
    while (s->batch_head != s->batch_tail) {
        free_batch(s, s->batch_head % OT__BATCHES, &s->rcache);
        s->batch_head++;
    }
    /* What was still collecting: batch[tail] (not in flight) and the list. */
    unsigned i = s->batch_tail % OT__BATCHES;
    s->batch[i].n = s->ndead;
    s->batch[i].list = s->dead;
    free_batch(s, i, &s->rcache);
    ot__pool_rcache_flush(&s->rcache);
    s->dead = NULL;
    s->ndead = s->nover = 0;
}

void ot__defer_free(struct ot_runtime *rt, void *ptr)
{
    if (!ptr) return;
    pthread_mutex_lock(&rt->rlock);
    *(void **)ptr = rt->rdeferred;
    rt->rdeferred = ptr;
    pthread_cond_signal(&rt->rcond);
    pthread_mutex_unlock(&rt->rlock);
}

void ot__reclaim_stop(struct ot_runtime *rt)
{
    pthread_mutex_lock(&rt->rlock);
    rt->rstop = true;
    pthread_cond_signal(&rt->rcond);
    pthread_mutex_unlock(&rt->rlock);
    pthread_join(rt->reclaimer, NULL);
    pthread_cond_destroy(&rt->rcond);
    pthread_mutex_destroy(&rt->rlock);
}
