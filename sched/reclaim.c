/* Reclamation of dead processes' control blocks.
 *
 * A sender looks a pid up and pushes onto the mailbox without a lock, so a
 * dead process's PCB must outlive every sender that may have found it.
 *
 * PCBs wait on an epoch (Concurrency Kit's ck_epoch), driven by the
 * schedulers themselves, with no thread of its own:
 * - Every scheduler holds a record and is inside a read section whenever
 *   its thread runs. At each quiescent point (between processes, every 16
 *   ticks: it holds no PCB pointer then) it ends and begins its section
 *   again, which observes the current epoch; it leaves the section while
 *   parked. Other threads take a record around each lookup
 *   (ot__ext_rcu_enter/leave).
 * - A scheduler collects its dead in batches of 256. Closing a batch takes
 *   its ticket: the epoch, read after a full fence that follows the
 *   unlinking of its PCBs (ot__proc_unlink: their pids stop looking up).
 * - At its quiescent points a scheduler with batches in flight calls
 *   ck_epoch_poll, which moves the epoch from e to e + 1 only when every
 *   record inside a section has observed e. It frees, in order, the
 *   batches whose ticket the epoch has passed by two.
 *
 * Why two: a reader that could still hold a batch's PCB looked it up
 * before the unlinking, so its section began at the ticket t or earlier and
 * it holds the epoch below t + 1 until the section ends; the epoch moves
 * from t + 1 to t + 2 only when every reader in a section has begun it at
 * t + 1 or later, so after the unlinking (the fence and the epoch read
 * order the ticket after it, and a section's begin orders its epoch read
 * before its lookups: ck_epoch_begin's exchange).
 *
 * So a PCB comes back into its pool a few dozen process switches after its
 * death, still in the cache, where the grace periods of a liburcu
 * reclaimer thread (half a millisecond apart, to spare wake-ups) let
 * thousands go cold first; and nothing wakes a thread for it.
 *
 * liburcu's QSBR stays for what is freed rarely and may wait: attached
 * threads' PCBs (not pool objects) and ot__defer_free's blocks (registry
 * nodes, read by cds_lfht lookups), freed by the reclaimer thread after
 * synchronize_rcu. Every reader is inside both kinds of read section.
 *
 * Neither library's atomics are visible to TSan, so each quiescent point
 * (and each external leave) releases ot__rcu_sync, and whoever frees after
 * a grace period acquires it first. */
#include <errno.h>
#include <sched.h>
#include <stdalign.h>
#include <stdlib.h>
#include <time.h>
#include <urcu/urcu-qsbr.h>

#include "sched/fiber.h"
#include "sched/internal.h"

/* How long the reclaimer lets frees gather before a grace period. */
#define OT__RECLAIM_PAUSE_NS 500000

char ot__rcu_sync;

/* ---- the epoch ------------------------------------------------------------ */

static ck_epoch_record_t *record_new(struct ot_runtime *rt, void *ct)
{
    size_t al = alignof(ck_epoch_record_t);
    ck_epoch_record_t *r = aligned_alloc(al, (sizeof *r + al - 1) / al * al);
    if (r) ck_epoch_register(&rt->epoch, r, ct);
    return r;
}

void ot__epoch_init(struct ot_runtime *rt)
{
    ck_epoch_init(&rt->epoch);
}

void ot__epoch_fini(struct ot_runtime *rt)
{
    /* Every thread is joined (and no external one is inside a section, by
     * the contract of ot_runtime_stop): the records can go. */
    ck_stack_entry_t *e = CK_STACK_FIRST(&rt->epoch.records);
    while (e) {
        ck_stack_entry_t *next = CK_STACK_NEXT(e);
        ot__tsan_acquire(e);          /* see record_take */
        free((ck_epoch_record_t *)e); /* record_next is the first member */
        e = next;
    }
    ck_epoch_init(&rt->epoch);
}

int ot__epoch_sched_init(ot__sched_t *s)
{
    s->erec = record_new(s->rt, s);
    return s->erec ? 0 : -ENOMEM;
}

void ot__epoch_sched_online(ot__sched_t *s)
{
    ck_epoch_begin(s->erec, NULL);
}

void ot__epoch_sched_offline(ot__sched_t *s)
{
    ot__tsan_release(&ot__rcu_sync);
    ck_epoch_end(s->erec, NULL);
}

void ot__rcu_quiescent(ot__sched_t *s)
{
    ot__tsan_release(&ot__rcu_sync);
    urcu_qsbr_quiescent_state();
    ck_epoch_end(s->erec, NULL);
    ck_epoch_begin(s->erec, NULL);
}

/* ---- the read side of threads that are not schedulers --------------------- */

static pthread_key_t rcu_key;
static pthread_once_t rcu_once = PTHREAD_ONCE_INIT;
static _Thread_local int tls_rcu; /* registered with liburcu */
/* The record held while inside a section (depth > 0): taken at the
 * outermost enter, given back at the outermost leave, so that no record
 * outlives its runtime in a thread-local. */
static _Thread_local ck_epoch_record_t *tls_erec;
static _Thread_local unsigned tls_edepth;

static void rcu_thread_gone(void *unused)
{
    (void)unused;
    urcu_qsbr_unregister_thread();
}

static void rcu_make_key(void)
{
    pthread_key_create(&rcu_key, rcu_thread_gone);
}

/* A free record, or a new one; with no memory for one, wait for another
 * thread to give one back (sections are short) rather than fail a send.
 * A record passes between threads through ck's own atomics, which TSan
 * does not see: the giver releases the record's address, the taker (and
 * ot__epoch_fini) acquires it. */
static ck_epoch_record_t *record_take(struct ot_runtime *rt)
{
    for (;;) {
        ck_epoch_record_t *r = ck_epoch_recycle(&rt->epoch, NULL);
        if (r) {
            ot__tsan_acquire(r);
            return r;
        }
        if ((r = record_new(rt, NULL))) return r;
        sched_yield();
    }
}

static void record_give(ck_epoch_record_t *r)
{
    ot__tsan_release(r);
    ck_epoch_unregister(r);
}

void ot__ext_rcu_enter(void)
{
    if (!tls_rcu) {
        pthread_once(&rcu_once, rcu_make_key);
        urcu_qsbr_register_thread(); /* registers online */
        pthread_setspecific(rcu_key, (void *)1);
        tls_rcu = 1;
    } else {
        urcu_qsbr_thread_online();
    }
    struct ot_runtime *rt = ot__rt;
    if (!rt) return;
    if (tls_edepth++ == 0) tls_erec = record_take(rt);
    ck_epoch_begin(tls_erec, NULL);
}

void ot__ext_rcu_leave(void)
{
    ot__tsan_release(&ot__rcu_sync);
    if (tls_edepth) {
        ck_epoch_end(tls_erec, NULL);
        if (--tls_edepth == 0) {
            record_give(tls_erec);
            tls_erec = NULL;
        }
    }
    urcu_qsbr_thread_offline();
}

/* ---- dead PCBs ------------------------------------------------------------ */

/* Free a PCB whose grace period has ended. What late senders pushed is
 * drained; an attached thread's PCB (malloc'd) is freed; a pool's goes
 * back locally when `me` owns the pool, otherwise through the remote-free
 * cache `rc` (magazines per pool, one CAS each). */
static void free_proc(ot__proc_t *p, const void *me, ot__pool_rcache_t *rc)
{
    ot__mailbox_drain(p, true);
    if (p->lanes) free(p->lanes); /* nobody can reach them after the grace period */
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
        while (!rt->rpending && !rt->rdeferred && !rt->rstop)
            pthread_cond_wait(&rt->rcond, &rt->rlock);
        /* Let frees gather: one grace period then serves them all, and the
         * threads that hand them over meanwhile find us not waiting on the
         * condition, so they cost no futex wake. */
        if (!rt->rstop) {
            pthread_mutex_unlock(&rt->rlock);
            nanosleep(&(struct timespec){.tv_nsec = OT__RECLAIM_PAUSE_NS}, NULL);
            pthread_mutex_lock(&rt->rlock);
        }
        ot__proc_t *list = rt->rpending;
        rt->rpending = NULL;
        void **deferred = rt->rdeferred;
        rt->rdeferred = NULL;
        if (!list && !deferred && rt->rstop) break;
        pthread_mutex_unlock(&rt->rlock);

        urcu_qsbr_synchronize_rcu();
        ot__tsan_acquire(&ot__rcu_sync);
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
    int rc = pthread_create(&rt->reclaimer, NULL, reclaimer_main, rt);
    if (rc != 0) {
        pthread_cond_destroy(&rt->rcond);
        pthread_mutex_destroy(&rt->rlock);
        return -rc;
    }
    return 0;
}

/* Free, in order, the batches the epoch has passed by two (see the top of
 * the file). */
static void free_ready(ot__sched_t *s)
{
    if (s->batch_head == s->batch_tail) return;
    unsigned e = ck_epoch_value(&s->rt->epoch);
    bool synced = false;
    while (s->batch_head != s->batch_tail) {
        unsigned i = s->batch_head % OT__BATCHES;
        if ((int)(e - s->batch[i].ticket) < 2) break; /* wraps safely */
        if (!synced) {
            ot__tsan_acquire(&ot__rcu_sync);
            synced = true;
        }
        free_batch(s, i, &s->rcache);
        s->batch_head++;
    }
}

void ot__reclaim_poll(ot__sched_t *s)
{
    if (s->batch_head == s->batch_tail) return;
    /* Our record is in a section that observed the epoch at this
     * quiescent point, so the poll can move it on if the others have. */
    (void)ck_epoch_poll(s->erec);
    free_ready(s);
}

void ot__reclaim_handoff(ot__sched_t *s)
{
    if (!s->ndead && !s->dead) return;
    free_ready(s);
    /* Too many batches in flight (a scheduler is stuck in one process, or
     * the epoch lags): keep collecting on the list (ndead is 0: no batch
     * was free to collect in), and try again OT__BATCH_PROCS deaths later,
     * not at every death. */
    if (s->batch_tail - s->batch_head == OT__BATCHES) return;
    /* Full fence: these PCBs were unlinked (marked dead) before the epoch
     * is read for the ticket. */
    atomic_thread_fence(memory_order_seq_cst);
    unsigned i = s->batch_tail % OT__BATCHES;
    s->batch[i].n = s->ndead;
    s->batch[i].list = s->dead;
    s->batch[i].ticket = ck_epoch_value(&s->rt->epoch);
    s->batch_tail++;
    s->dead = NULL;
    s->ndead = s->nover = 0;
}

void ot__reclaim_flush(ot__sched_t *s)
{
    /* Every scheduler is joined; senders on other threads may still hold
     * PCBs they looked up: one liburcu grace period covers them all (they
     * are inside both kinds of read section). */
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
