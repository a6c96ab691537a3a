/* Runtime life cycle: start, stop, idle waiting, statistics. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <urcu/urcu-qsbr.h>

#include "sched/fiber.h"
#include "sched/internal.h"

#define OT__MAX_TIMERS (1u << 20)

struct ot_runtime *ot__rt;
_Atomic uint64_t ot__rt_gen;
static pthread_mutex_t rt_lock = PTHREAD_MUTEX_INITIALIZER;

void ot_config_init(ot_config_t *cfg)
{
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->bind = 1;
    cfg->stack_size = 64 * 1024;
    cfg->max_processes = (size_t)1 << 22;
    cfg->stop_grace_ms = 5000;
    cfg->stack_guards = -1;
}

static void *map_table(size_t bytes)
{
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return m == MAP_FAILED ? NULL : m;
}

static void *sched_main(void *arg)
{
    ot__sched_t *s = arg;
    struct ot_runtime *rt = s->rt;
    ot__tls_set_sched(s);
    if (rt->cfg.bind) (void)ot__topo_bind(&rt->topo, s->idx);
    urcu_qsbr_register_thread();
    ot__epoch_sched_online(s);
    ot__fiber_sched_init(s);
    (void)ot__overflow_thread_init(s);
    ot__sched_loop(s);
    ot__fiber_sched_fini(s);
    ot__overflow_thread_fini(s);
    ot__epoch_sched_offline(s);
    urcu_qsbr_unregister_thread();
    ot__tls_set_sched(NULL);
    return NULL;
}

static ot__sched_t *sched_new(struct ot_runtime *rt, unsigned i)
{
    size_t sz = (sizeof(ot__sched_t) + 63) & ~(size_t)63;
    ot__sched_t *s = aligned_alloc(64, sz);
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    s->idx = i;
    s->rt = rt;
    if (ot__epoch_sched_init(s) != 0) {
        free(s);
        return NULL;
    }
    s->rng = 0x9E3779B97F4A7C15ull * (i + 1);
    for (int q = 0; q < 3; q++)
        ot__runq_init(&s->rq[q]);
    void *hw = rt->topo.hw;
    int node = rt->topo.synthetic ? -1 : rt->topo.numa[i];
    size_t pcb = (sizeof(ot__proc_t) + 63) & ~(size_t)63;
    ot__pool_init(&s->pcb_pool, pcb, offsetof(ot__proc_t, pool_link), (size_t)2 << 20, s, NULL);
    ot__pool_set_node(&s->pcb_pool, hw, node);
    ot__pool_set_huge(&s->pcb_pool);
    for (int c = 0; c < OT__MSG_CLASSES; c++) {
        ot__pool_init(&s->msg_pool[c], (size_t)1 << (OT__MSG_CLASS_MIN_SHIFT + c),
                      offsetof(struct ot_msg, snext), (size_t)2 << 20, s, NULL);
        ot__pool_set_node(&s->msg_pool[c], hw, node);
        ot__pool_set_huge(&s->msg_pool[c]);
    }
    ot__stack_pools_init(&s->stacks, s, hw, node);
    pthread_mutex_init(&s->inj_lock, NULL);
    return s;
}

/* A send timer still pending at stop is cancelled like any other: its
 * message is freed, never sent. */
static void drop_send_timer(const ot__tnode_t *n)
{
    if (n->kind == OT__T_SEND) (void)ot_timer_cancel(((n->b & 0xffffffffu) << 32) | n->a);
}

static void release_timers(ot__sched_t *s)
{
    for (size_t i = 0; i < s->timers.n; i++)
        drop_send_timer(&s->timers.v[i]);
    ot__heap_free(&s->timers);
    while (s->tinbox) {
        ot__timer_req_t *r = s->tinbox;
        s->tinbox = r->next;
        drop_send_timer(&r->node);
        free(r);
    }
}

static void sched_free(ot__sched_t *s)
{
    ot__pool_destroy(&s->pcb_pool);
    for (int c = 0; c < OT__MSG_CLASSES; c++)
        ot__pool_destroy(&s->msg_pool[c]);
    ot__stack_pools_destroy(&s->stacks);
    pthread_mutex_destroy(&s->inj_lock);
    free(s);
}

static void rt_free(struct ot_runtime *rt)
{
    ot__registry_fini(rt); /* safe when never initialised (reg_ht NULL) */
    if (rt->scheds) {
        for (unsigned i = 0; i < rt->nsched; i++)
            if (rt->scheds[i]) sched_free(rt->scheds[i]);
        free(rt->scheds);
    }
    ot__epoch_fini(rt);
    if (rt->table) munmap(rt->table, rt->table_bytes);
    if (rt->tentries) munmap(rt->tentries, rt->tentries_bytes);
    ot__idx_destroy(&rt->pids);
    ot__idx_destroy(&rt->timer_ids);
    ot__topo_destroy(&rt->topo);
    free(rt);
}

int ot_runtime_start(const ot_config_t *cfgp, ot_runtime_t **out)
{
    if (!out) return -EINVAL;
    ot_config_t cfg;
    if (cfgp)
        cfg = *cfgp;
    else
        ot_config_init(&cfg);
    const ot__policy_t *pol = ot__policy_find(cfg.policy);
    if (!pol) return -EINVAL;
    if (cfg.schedulers > 1024) return -EINVAL;
    if (cfg.stack_size == 0) cfg.stack_size = 64 * 1024;
    if (ot__stack_class(cfg.stack_size) < 0) return -EINVAL;
    if (cfg.max_processes == 0) cfg.max_processes = (size_t)1 << 22;
    if (cfg.max_processes < 16 || cfg.max_processes > ((size_t)1 << 31)) return -EINVAL;
    if (ot__tls_sched()) return -EPERM;

    pthread_mutex_lock(&rt_lock);
    if (ot__rt) {
        pthread_mutex_unlock(&rt_lock);
        return -EBUSY;
    }
    int rc = -ENOMEM;
    struct ot_runtime *rt = calloc(1, sizeof *rt);
    if (!rt) goto fail_unlocked;
    rt->cfg = cfg;
    rt->cfg.policy = NULL; /* the caller's strings are not kept */
    rt->cfg.topology = NULL;
    rt->policy = *pol;
    ot__epoch_init(rt);
    rt->default_stack_cls = ot__stack_class(cfg.stack_size);
    rc = ot__topo_init(&rt->topo, cfg.topology, cfg.schedulers);
    if (rc != 0) goto fail;
    rt->nsched = rt->topo.nsched;
    if (cfg.topology) rt->cfg.bind = 0;
    /* Lanes (mailbox/lanes.h): twice the schedulers, so that senders on
     * different cores rarely share one; at least 4, at most 64 (the BEAM's
     * count), since the receiver looks at every lane when it pulls. */
    rt->nlanes = 4;
    while (rt->nlanes < 2 * rt->nsched && rt->nlanes < 64)
        rt->nlanes *= 2;
    rt->lane_threshold = cfg.lane_threshold ? cfg.lane_threshold : 256;

    rc = -ENOMEM;
    /* Slot 0 is never a pid: max_processes live processes need one more. */
    rt->max_procs = (uint32_t)cfg.max_processes + 1;
    rt->pid_caches = (uint64_t)rt->max_procs >= (uint64_t)rt->nsched * OT__IDX_CACHE * 64;
    rt->table_bytes = (size_t)rt->max_procs * sizeof(ot__slot_t);
    rt->table = map_table(rt->table_bytes);
    rt->tentries_bytes = (size_t)OT__MAX_TIMERS * sizeof(ot__timer_entry_t);
    rt->tentries = map_table(rt->tentries_bytes);
    if (!rt->table || !rt->tentries) goto fail;
    ot__idx_init(&rt->pids, rt->max_procs);
    ot__idx_init(&rt->timer_ids, OT__MAX_TIMERS);
    ot__stack_set_guard_budget(cfg.stack_guards);

    rt->scheds = calloc(rt->nsched, sizeof *rt->scheds);
    if (!rt->scheds) goto fail;
    for (unsigned i = 0; i < rt->nsched; i++)
        if (!(rt->scheds[i] = sched_new(rt, i))) goto fail;

    rc = ot__registry_init(rt);
    if (rc != 0) goto fail;
    rc = ot__reclaim_start(rt);
    if (rc != 0) goto fail;
    rc = ot__dirty_start(rt);
    if (rc != 0) {
        ot__reclaim_stop(rt);
        goto fail;
    }
    ot__overflow_install();
    atomic_fetch_add_explicit(&ot__rt_gen, 1, memory_order_relaxed);
    ot__rt = rt;
    for (unsigned i = 0; i < rt->nsched; i++) {
        if (pthread_create(&rt->scheds[i]->thread, NULL, sched_main, rt->scheds[i]) != 0) {
            /* Stop the ones that started. */
            atomic_store(&rt->shutdown, 1);
            for (unsigned j = 0; j < i; j++) {
                atomic_store(&rt->scheds[j]->wake_word, 1);
                ot__futex_wake(&rt->scheds[j]->wake_word, 1);
            }
            for (unsigned j = 0; j < i; j++)
                pthread_join(rt->scheds[j]->thread, NULL);
            ot__rt = NULL;
            ot__dirty_stop(rt);
            ot__reclaim_stop(rt);
            ot__overflow_uninstall();
            rc = -EAGAIN;
            goto fail;
        }
    }
    pthread_mutex_unlock(&rt_lock);
    *out = rt;
    return 0;
fail:
    rt_free(rt);
fail_unlocked:
    pthread_mutex_unlock(&rt_lock);
    return rc;
}

/* Live processes that are not attached threads. */
static size_t procs_alive(struct ot_runtime *rt)
{
    size_t n = ot_process_count();
    size_t attached = (size_t)atomic_load_explicit(&rt->attached, memory_order_acquire);
    return n > attached ? n - attached : 0;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int ot_runtime_wait_idle(ot_runtime_t *rt, int64_t timeout_ms)
{
    if (!rt || rt != ot__rt || timeout_ms < -1) return -EINVAL;
    if (ot__self()) return -EPERM;
    uint64_t end = timeout_ms >= 0 ? ot__now_ns() + (uint64_t)timeout_ms * 1000000u : 0;
    while (procs_alive(rt) > 0) {
        if (end && ot__now_ns() >= end) return -ETIMEDOUT;
        sleep_ms(1);
    }
    return 0;
}

/* Every live non-attached process gets OT_TAG_SHUTDOWN. */
static void tell_all(struct ot_runtime *rt)
{
    uint32_t hi = rt->pids.next_fresh;
    for (uint32_t i = 1; i < hi; i++) {
        ot__ext_rcu_enter();
        ot__proc_t *p = ot__slot_live(rt, i);
        ot_pid_t pid =
            p && !p->external ? atomic_load_explicit(&p->pid, memory_order_relaxed) : 0;
        ot__ext_rcu_leave();
        if (pid) (void)ot_send(pid, OT_TAG_SHUTDOWN, NULL, 0);
    }
}

/* Wake every waiting process so its scheduler destroys it. */
static void kill_all(struct ot_runtime *rt)
{
    atomic_store_explicit(&rt->killing, 1, memory_order_seq_cst);
    uint32_t hi = rt->pids.next_fresh;
    ot__ext_rcu_enter();
    for (uint32_t i = 1; i < hi; i++) {
        ot__proc_t *p = ot__slot_live(rt, i);
        if (!p || p->external) continue;
        uint64_t st = atomic_load_explicit(&p->state, memory_order_seq_cst);
        uint32_t low = st & 3;
        if (low != OT__ST_WAITING && low != OT__ST_SLEEPING) continue;
        if (atomic_compare_exchange_strong_explicit(&p->state, &st,
                                                    (st & ~(uint64_t)3) | OT__ST_RUNNABLE,
                                                    memory_order_acq_rel, memory_order_relaxed))
            ot__inject(p->sched ? p->sched : rt->scheds[0], p);
    }
    ot__ext_rcu_leave();
}

static void report_stuck(struct ot_runtime *rt)
{
    for (unsigned i = 0; i < rt->nsched; i++) {
        ot__sched_t *s = rt->scheds[i];
        /* A racy peek, for a diagnostic only. */
        ot__proc_t *p = __atomic_load_n(&s->current, __ATOMIC_RELAXED);
        if (!p) continue;
        char pid[40];
        ot_pid_format(__atomic_load_n(&p->pid, __ATOMIC_RELAXED), pid, sizeof pid);
        fprintf(stderr,
                "otter: stop: scheduler %u is stuck in process %s \"%s\", which does "
                "not reach a scheduling point\n",
                i, pid, p->name);
    }
}

int ot_runtime_stop(ot_runtime_t *rt)
{
    if (!rt || rt != ot__rt) return -EINVAL;
    if (ot__tls_sched()) return -EPERM; /* from a process */

    tell_all(rt);
    uint64_t grace_end = ot__now_ns() + (uint64_t)rt->cfg.stop_grace_ms * 1000000u;
    while (procs_alive(rt) > 0 && ot__now_ns() < grace_end)
        sleep_ms(1);

    kill_all(rt);
    uint64_t next_report = ot__now_ns() + 1000000000u;
    while (procs_alive(rt) > 0) {
        sleep_ms(1);
        kill_all(rt); /* processes that went to wait after the last sweep */
        if (ot__now_ns() >= next_report) {
            report_stuck(rt);
            next_report = ot__now_ns() + 10000000000u;
        }
    }

    /* Every process is gone; a dirty call still running is waited for (its
     * completion message finds nobody). */
    ot__dirty_stop(rt);
    atomic_store_explicit(&rt->shutdown, 1, memory_order_seq_cst);
    for (unsigned i = 0; i < rt->nsched; i++) {
        atomic_store_explicit(&rt->scheds[i]->wake_word, 1, memory_order_seq_cst);
        ot__futex_wake(&rt->scheds[i]->wake_word, 1);
    }
    for (unsigned i = 0; i < rt->nsched; i++)
        pthread_join(rt->scheds[i]->thread, NULL);

    /* Attached threads left attached are detached here. */
    uint32_t hi = rt->pids.next_fresh;
    for (uint32_t i = 1; i < hi; i++) {
        ot__proc_t *p = ot__slot_live(rt, i);
        if (p) ot__proc_destroy(NULL, p);
    }
    ot__sysmon_stop(rt);
    for (unsigned i = 0; i < rt->nsched; i++) {
        ot__reclaim_flush(rt->scheds[i]);
        release_timers(rt->scheds[i]);
    }
    ot__reclaim_stop(rt);
    ot__overflow_uninstall();

    pthread_mutex_lock(&rt_lock);
    ot__rt = NULL;
    pthread_mutex_unlock(&rt_lock);
    rt_free(rt);
    return 0;
}

int ot_runtime_schedulers(const ot_runtime_t *rt)
{
    return rt ? (int)rt->nsched : -EINVAL;
}

int ot_runtime_stats(const ot_runtime_t *rt, ot_sched_stats_t *out)
{
    if (!rt || !out) return -EINVAL;
    memset(out, 0, sizeof *out);
    for (unsigned i = 0; i < rt->nsched; i++) {
        ot__sched_t *s = rt->scheds[i];
        out->switches += atomic_load_explicit(&s->n_switches, memory_order_relaxed);
        out->steals += atomic_load_explicit(&s->n_steals, memory_order_relaxed);
        out->stolen += atomic_load_explicit(&s->n_stolen, memory_order_relaxed);
        out->parks += atomic_load_explicit(&s->n_parks, memory_order_relaxed);
        out->wakeups += atomic_load_explicit(&s->n_wakeups, memory_order_relaxed);
        out->runnext_hits += atomic_load_explicit(&s->n_runnext, memory_order_relaxed);
        out->rests += atomic_load_explicit(&s->n_rests, memory_order_relaxed);
    }
    return 0;
}
