/* The dirty pool (otter/dirty.h).
 *
 * ot_dirty_run does not move the process's stack to another thread: the
 * function runs on a dirty thread's own stack while the process waits in
 * an ordinary receive for the completion message (found in O(1) by its
 * reference), so its scheduler runs others meanwhile. The job is the dirty
 * thread's, not the process's: if the runtime stops and drops the waiting
 * process, the thread still finishes the job and its message is dropped.
 * While it waits, a fatal exit signal is kept (defer_exit) and takes effect
 * when the function has returned, as for the BEAM's dirty NIFs. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "otter/dirty.h"
#include "otter/signal.h"
#include "sched/internal.h"

typedef struct job {
    struct job *next;
    void (*fn)(void *);
    void *arg;
    ot_pid_t pid;
    ot_ref_t ref;
} job_t;

struct ot__dirty {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    job_t *head, *tail;
    bool stop;
    unsigned n;
    pthread_t *threads;
};

static void *dirty_main(void *arg)
{
    struct ot__dirty *d = arg;
    pthread_mutex_lock(&d->lock);
    for (;;) {
        while (!d->head && !d->stop)
            pthread_cond_wait(&d->cond, &d->lock);
        job_t *j = d->head;
        if (!j) break; /* stopping, nothing left */
        d->head = j->next;
        if (!d->head) d->tail = NULL;
        pthread_mutex_unlock(&d->lock);
        j->fn(j->arg);
        (void)ot_send_ref(j->pid, OT__TAG_DIRTY_DONE, j->ref, NULL, 0);
        free(j);
        pthread_mutex_lock(&d->lock);
    }
    pthread_mutex_unlock(&d->lock);
    return NULL;
}

int ot__dirty_start(struct ot_runtime *rt)
{
    struct ot__dirty *d = calloc(1, sizeof *d);
    if (!d) return -ENOMEM;
    d->n = rt->cfg.dirty_threads ? rt->cfg.dirty_threads : (rt->nsched > 2 ? rt->nsched : 2);
    d->threads = calloc(d->n, sizeof *d->threads);
    if (!d->threads) {
        free(d);
        return -ENOMEM;
    }
    pthread_mutex_init(&d->lock, NULL);
    pthread_cond_init(&d->cond, NULL);
    rt->dirty = d;
    for (unsigned i = 0; i < d->n; i++) {
        if (pthread_create(&d->threads[i], NULL, dirty_main, d) != 0) {
            d->n = i;
            ot__dirty_stop(rt);
            return -EAGAIN;
        }
    }
    return 0;
}

void ot__dirty_stop(struct ot_runtime *rt)
{
    struct ot__dirty *d = rt->dirty;
    if (!d) return;
    pthread_mutex_lock(&d->lock);
    d->stop = true;
    pthread_cond_broadcast(&d->cond);
    pthread_mutex_unlock(&d->lock);
    for (unsigned i = 0; i < d->n; i++)
        pthread_join(d->threads[i], NULL);
    pthread_mutex_destroy(&d->lock);
    pthread_cond_destroy(&d->cond);
    free(d->threads);
    free(d);
    rt->dirty = NULL;
}

int ot_dirty_run(void (*fn)(void *), void *arg)
{
    struct ot_runtime *rt = ot__rt;
    if (!fn) return -EINVAL;
    if (!rt) return -EPERM;
    ot__sched_t *s = ot__tls_sched();
    if (!s || !s->current) { /* a plain or attached thread may block */
        fn(arg);
        return 0;
    }
    ot__proc_t *p = s->current;
    job_t *j = malloc(sizeof *j);
    if (!j) return -ENOMEM;
    *j = (job_t){.fn = fn,
                 .arg = arg,
                 .pid = atomic_load_explicit(&p->pid, memory_order_relaxed),
                 .ref = ot_make_ref()};
    ot_ref_t ref = j->ref;
    p->defer_exit = 1;
    __atomic_store_n(&p->in_dirty, 1, __ATOMIC_RELAXED); /* read by process_info */
    struct ot__dirty *d = rt->dirty;
    pthread_mutex_lock(&d->lock);
    if (d->tail)
        d->tail->next = j;
    else
        d->head = j;
    d->tail = j;
    pthread_cond_signal(&d->cond);
    pthread_mutex_unlock(&d->lock);
    ot_msg_t *m;
    while (ot_receive_ref(ref, OT_INFINITY, &m) != 0) {
    }
    ot_msg_free(m);
    __atomic_store_n(&p->in_dirty, 0, __ATOMIC_RELAXED);
    p->defer_exit = 0;
    if (p->pending_exit) {
        ot_reason_t r = *p->pending_exit;
        ot__pending_exit_free(p);
        ot__proc_exit(p, &r);
    }
    return 0;
}
