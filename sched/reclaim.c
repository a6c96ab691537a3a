/* Reclamation of dead processes' control blocks.
 *
 * A sender looks a pid up and pushes onto the mailbox without a lock, so a
 * dead process's PCB must outlive every sender that may have found it. We
 * use liburcu's QSBR flavour: scheduler threads are registered readers that
 * announce a quiescent state between processes (they hold no PCB pointer
 * then) and go offline while parked; other threads go online only around a
 * send. Schedulers batch their dead PCBs and hand them to one reclaimer
 * thread, which waits for a grace period (synchronize_rcu), then drains
 * whatever late senders pushed and frees the PCBs into their pools.
 *
 * liburcu's internals are invisible to TSan, so the grace period is also
 * told to TSan: each quiescent state releases ot__rcu_sync and the
 * reclaimer acquires it after synchronize_rcu. */
#include <errno.h>
#include <urcu/urcu-qsbr.h>

#include "sched/fiber.h"
#include "sched/internal.h"

char ot__rcu_sync;

void ot__rcu_quiescent(void)
{
    ot__tsan_release(&ot__rcu_sync);
    urcu_qsbr_quiescent_state();
}

static void *reclaimer_main(void *arg)
{
    struct ot_runtime *rt = arg;
    pthread_mutex_lock(&rt->rlock);
    for (;;) {
        while (!rt->rpending && !rt->rstop)
            pthread_cond_wait(&rt->rcond, &rt->rlock);
        if (!rt->rpending) break; /* stopping, nothing left */
        ot__proc_t *list = rt->rpending;
        rt->rpending = NULL;
        pthread_mutex_unlock(&rt->rlock);

        urcu_qsbr_synchronize_rcu();
        ot__tsan_acquire(&ot__rcu_sync);
        /* PCBs of one pool come in runs (a batch is one scheduler's): give
         * each run back with one CAS. */
        ot__pool_t *pool = NULL;
        void *first = NULL, *last = NULL;
        while (list) {
            ot__proc_t *next = list->qnext;
            ot__pool_t *pp = list->pool;
            ot__mailbox_drain(list, true); /* what late senders pushed */
            if (!pp) {
                ot__proc_free(list);
            } else {
                if (pp != pool && first) ot__pool_free_chain(pool, first, last);
                if (pp != pool) {
                    pool = pp;
                    first = last = NULL;
                }
                if (last)
                    *ot__pool_link(pool, last) = list;
                else
                    first = list;
                last = list;
            }
            list = next;
        }
        if (first) ot__pool_free_chain(pool, first, last);
        pthread_mutex_lock(&rt->rlock);
        rt->rgen++;
    }
    pthread_mutex_unlock(&rt->rlock);
    return NULL;
}

int ot__reclaim_start(struct ot_runtime *rt)
{
    pthread_mutex_init(&rt->rlock, NULL);
    pthread_cond_init(&rt->rcond, NULL);
    rt->rpending = NULL;
    rt->rstop = false;
    int rc = pthread_create(&rt->reclaimer, NULL, reclaimer_main, rt);
    if (rc != 0) {
        pthread_cond_destroy(&rt->rcond);
        pthread_mutex_destroy(&rt->rlock);
        return -rc;
    }
    return 0;
}

void ot__reclaim_handoff(ot__sched_t *s)
{
    if (!s->dead) return;
    ot__proc_t *tail = s->dead;
    while (tail->qnext)
        tail = tail->qnext;
    struct ot_runtime *rt = s->rt;
    pthread_mutex_lock(&rt->rlock);
    tail->qnext = rt->rpending;
    rt->rpending = s->dead;
    pthread_cond_signal(&rt->rcond);
    pthread_mutex_unlock(&rt->rlock);
    s->dead = NULL;
    s->ndead = 0;
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
