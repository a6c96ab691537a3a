/* The system monitor (otter/sysmon.h).
 *
 * long_schedule: a watchdog thread, started when a monitor first asks for
 * it, looks at every scheduler each quarter of the limit. A scheduler whose
 * switch counter has not moved while the same process stayed current for
 * longer than the limit is held by that process; the event names it. The
 * schedulers pay nothing for this (the counter exists anyway, and `current`
 * is stored with a release store, a plain mov on x86-64).
 *
 * large_mailbox: checked by the process itself when it moves messages into
 * its save queue (receive), so it costs a load of the limit per message
 * looked at, and nothing in the send path. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "otter/sysmon.h"
#include "sched/internal.h"

_Atomic uint64_t ot__sysmon_large;

struct ot__sysmon {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pthread_t thread;
    bool running, stop;
    _Atomic ot_pid_t pid;     /* the monitor, 0 = none */
    _Atomic uint32_t long_ms; /* 0 = off */
    uint64_t *seen_switches;  /* per scheduler, watchdog only */
    uint64_t *since_ns;       /* when that count was first seen */
    bool *reported;
};

static int send_event(ot_pid_t to, ot_pid_t about, int kind, int sched, uint64_t value,
                      const char *label)
{
    ot_sysmon_event_t ev = {.kind = kind, .scheduler = sched, .pid = about, .value = value};
    snprintf(ev.label, sizeof ev.label, "%s", label);
    return ot__msg_send_as(about, to, OT_TAG_MONITOR, 0, &ev, sizeof ev);
}

static void watch_once(struct ot_runtime *rt, struct ot__sysmon *sm, uint64_t limit_ns)
{
    uint64_t now = ot__now_ns();
    ot_pid_t to = atomic_load_explicit(&sm->pid, memory_order_acquire);
    for (unsigned i = 0; i < rt->nsched; i++) {
        ot__sched_t *s = rt->scheds[i];
        uint64_t sw = atomic_load_explicit(&s->n_switches, memory_order_relaxed);
        if (sw != sm->seen_switches[i]) {
            sm->seen_switches[i] = sw;
            sm->since_ns[i] = now;
            sm->reported[i] = false;
            continue;
        }
        if (sm->reported[i] || now - sm->since_ns[i] < limit_ns) continue;
        /* The PCB stays valid inside the read side (it is freed only after
         * a grace period). */
        ot__ext_rcu_enter();
        /* Acquire: pairs with the release store of current, so the PCB
         * (its name) is seen as its spawner wrote it. */
        ot__proc_t *p = __atomic_load_n(&s->current, __ATOMIC_ACQUIRE);
        ot_pid_t about = p ? atomic_load_explicit(&p->pid, memory_order_relaxed) : 0;
        char label[24] = "";
        if (p) memcpy(label, p->name, sizeof label - 1);
        ot__ext_rcu_leave();
        if (!p) continue;
        sm->reported[i] = true;
        if (to && about != to)
            (void)send_event(to, about, OT_SYSMON_LONG_SCHEDULE, (int)i,
                             (now - sm->since_ns[i]) / 1000000u, label);
    }
}

static void *watchdog(void *arg)
{
    struct ot_runtime *rt = arg;
    struct ot__sysmon *sm = rt->sysmon;
    pthread_mutex_lock(&sm->lock);
    while (!sm->stop) {
        uint32_t ms = atomic_load_explicit(&sm->long_ms, memory_order_relaxed);
        if (!ms) { /* off: sleep until told otherwise (no CPU when idle) */
            pthread_cond_wait(&sm->cond, &sm->lock);
            continue;
        }
        pthread_mutex_unlock(&sm->lock);
        watch_once(rt, sm, (uint64_t)ms * 1000000u);
        uint64_t period = (uint64_t)ms * 1000000u / 4;
        if (period < 1000000u) period = 1000000u;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)(period / 1000000000u);
        ts.tv_nsec += (long)(period % 1000000000u);
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&sm->lock);
        if (!sm->stop) pthread_cond_timedwait(&sm->cond, &sm->lock, &ts);
    }
    pthread_mutex_unlock(&sm->lock);
    return NULL;
}

static struct ot__sysmon *get(struct ot_runtime *rt)
{
    /* Created by the first ot_system_monitor; rt_lock-free because the
     * runtime's lifetime bounds it and creation is rare: use a CAS. */
    struct ot__sysmon *sm = __atomic_load_n(&rt->sysmon, __ATOMIC_ACQUIRE);
    if (sm) return sm;
    sm = calloc(1, sizeof *sm);
    if (!sm) return NULL;
    sm->seen_switches = calloc(rt->nsched, sizeof *sm->seen_switches);
    sm->since_ns = calloc(rt->nsched, sizeof *sm->since_ns);
    sm->reported = calloc(rt->nsched, sizeof *sm->reported);
    pthread_mutex_init(&sm->lock, NULL);
    pthread_cond_init(&sm->cond, NULL);
    struct ot__sysmon *none = NULL;
    if (!sm->seen_switches || !sm->since_ns || !sm->reported ||
        !__atomic_compare_exchange_n(&rt->sysmon, &none, sm, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        free(sm->seen_switches);
        free(sm->since_ns);
        free(sm->reported);
        pthread_mutex_destroy(&sm->lock);
        pthread_cond_destroy(&sm->cond);
        free(sm);
        return none;
    }
    return sm;
}

int ot_system_monitor(ot_pid_t pid, const ot_sysmon_opts_t *opts)
{
    struct ot_runtime *rt = ot__rt;
    if (!rt) return -EPERM;
    if (pid && (!opts || !ot__pid_in_range(rt, pid))) return -EINVAL;
    struct ot__sysmon *sm = get(rt);
    if (!sm) return -ENOMEM;
    if (pid) {
        ot__sched_t *s = ot__tls_sched();
        if (!s) ot__ext_rcu_enter();
        bool alive = ot__lookup(rt, pid) != NULL;
        if (!s) ot__ext_rcu_leave();
        if (!alive) return -ESRCH;
    }
    pthread_mutex_lock(&sm->lock);
    uint32_t ms = pid ? opts->long_schedule_ms : 0;
    if (ms && !sm->running) {
        if (pthread_create(&sm->thread, NULL, watchdog, rt) != 0) {
            pthread_mutex_unlock(&sm->lock);
            return -EAGAIN;
        }
        sm->running = true;
    }
    atomic_store_explicit(&sm->pid, pid, memory_order_release);
    atomic_store_explicit(&sm->long_ms, ms, memory_order_relaxed);
    atomic_store_explicit(&ot__sysmon_large, pid ? opts->large_mailbox : 0,
                          memory_order_relaxed);
    pthread_cond_signal(&sm->cond);
    pthread_mutex_unlock(&sm->lock);
    return 0;
}

void ot__sysmon_large_mailbox(ot__proc_t *p, size_t len)
{
    struct ot__sysmon *sm = __atomic_load_n(&ot__rt->sysmon, __ATOMIC_ACQUIRE);
    if (!sm || p->mbox_flagged) return;
    ot_pid_t to = atomic_load_explicit(&sm->pid, memory_order_acquire);
    ot_pid_t me = atomic_load_explicit(&p->pid, memory_order_relaxed);
    if (!to || to == me) return;
    p->mbox_flagged = 1;
    (void)send_event(to, me, OT_SYSMON_LARGE_MAILBOX,
                     p->sched && !p->external ? (int)p->sched->idx : -1, len, p->name);
}

void ot__sysmon_mbox_shrunk(ot__proc_t *p)
{
    uint64_t lim = atomic_load_explicit(&ot__sysmon_large, memory_order_relaxed);
    if (!lim || p->save_len < lim / 2) p->mbox_flagged = 0;
}

void ot__sysmon_proc_exit(ot__proc_t *p)
{
    struct ot__sysmon *sm = __atomic_load_n(&ot__rt->sysmon, __ATOMIC_ACQUIRE);
    if (!sm) return;
    ot_pid_t me = atomic_load_explicit(&p->pid, memory_order_relaxed);
    if (atomic_load_explicit(&sm->pid, memory_order_acquire) != me) return;
    /* The monitor died: monitoring stops (as in the BEAM). */
    pthread_mutex_lock(&sm->lock);
    if (atomic_load_explicit(&sm->pid, memory_order_relaxed) == me) {
        atomic_store_explicit(&sm->pid, 0, memory_order_release);
        atomic_store_explicit(&sm->long_ms, 0, memory_order_relaxed);
        atomic_store_explicit(&ot__sysmon_large, 0, memory_order_relaxed);
    }
    pthread_mutex_unlock(&sm->lock);
}

void ot__sysmon_stop(struct ot_runtime *rt)
{
    atomic_store_explicit(&ot__sysmon_large, 0, memory_order_relaxed);
    struct ot__sysmon *sm = __atomic_load_n(&rt->sysmon, __ATOMIC_ACQUIRE);
    if (!sm) return;
    pthread_mutex_lock(&sm->lock);
    sm->stop = true;
    pthread_cond_signal(&sm->cond);
    pthread_mutex_unlock(&sm->lock);
    if (sm->running) pthread_join(sm->thread, NULL);
    pthread_mutex_destroy(&sm->lock);
    pthread_cond_destroy(&sm->cond);
    free(sm->seen_switches);
    free(sm->since_ns);
    free(sm->reported);
    free(sm);
    __atomic_store_n(&rt->sysmon, NULL, __ATOMIC_RELEASE);
}

int ot_msg_sysmon(const ot_msg_t *m, ot_sysmon_event_t *out)
{
    if (!m || !out || ot_msg_tag(m) != OT_TAG_MONITOR || ot_msg_len(m) != sizeof *out)
        return -EINVAL;
    memcpy(out, ot_msg_data(m), sizeof *out);
    return 0;
}
