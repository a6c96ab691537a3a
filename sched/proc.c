/* Processes: spawn, exit, yield, sleep, waiting, attach/detach, and the
 * thread-local view of "who am I". */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sched/arch/ctx.h"
#include "sched/fiber.h"
#include "sched/internal.h"
#include "sched/sigtab.h"

/* ---- thread-local state -------------------------------------------------- */

/* initial-exec: a direct %fs-relative access instead of a __tls_get_addr
 * call, on the hot path of every send. These few bytes fit the static TLS
 * reserve even when libotter.so is dlopen()ed. */
#define OT_TLS _Thread_local __attribute__((tls_model("initial-exec")))
static OT_TLS ot__sched_t *tls_sched;
static OT_TLS ot__proc_t *tls_ext;
static OT_TLS uint64_t tls_ext_gen;

__attribute__((noinline)) ot__sched_t *ot__tls_sched(void)
{
    /* The barrier keeps the compiler from treating this as pure and reusing
     * a value read on another thread before a context switch. */
    __asm__ __volatile__("" ::: "memory");
    return tls_sched;
}

void ot__tls_set_sched(ot__sched_t *s)
{
    tls_sched = s;
}

ot__proc_t *ot__tls_ext(void)
{
    if (tls_ext && ot__rt &&
        tls_ext_gen == atomic_load_explicit(&ot__rt_gen, memory_order_relaxed))
        return tls_ext;
    return NULL;
}

void ot__tls_set_ext(ot__proc_t *p)
{
    tls_ext = p;
    tls_ext_gen = atomic_load_explicit(&ot__rt_gen, memory_order_relaxed);
}

ot__proc_t *ot__self(void)
{
    ot__sched_t *s = ot__tls_sched();
    return s ? s->current : ot__tls_ext();
}

ot_pid_t ot_self(void)
{
    ot__proc_t *p = ot__self();
    return p ? atomic_load_explicit(&p->pid, memory_order_relaxed) : OT_PID_NONE;
}

/* ---- spawning ------------------------------------------------------------ */

void ot_spawn_opts_init(ot_spawn_opts_t *o)
{
    if (!o) return;
    o->priority = OT_PRIO_NORMAL;
    o->stack_size = 0;
    o->scheduler = -1;
    o->name = NULL;
}

static void proc_boot(void *arg)
{
    ot__proc_t *p = arg;
    ot__fiber_entered_proc(p, p->sched);
    ot__sched_settle(p->sched);
    /* Signals that came before it ever ran: a kill stops it here. */
    ot__sig_safe_point(p);
    p->fn(p->arg);
    ot__proc_exit(p, NULL);
}

/* Zero n bytes (a multiple of 16, 8-aligned) with 16-byte stores. A
 * memset of the PCB's ~300 bytes compiles to `rep stosq`, whose start-up
 * cost was half of ot_spawn's time (perf annotate, spawn_exit); the empty
 * asm hides the pattern, so the loop is not turned back into that memset.
 * Unrolled (n is a constant), it is 18 stores with no loop: 56 fewer
 * instructions per spawn (callgrind), spawn_exit 109.3 -> 107.2 ns and
 * skynet 83.3 -> 78.8 (bench/ab.sh, 6 rounds). */
typedef uint64_t ot__v16 __attribute__((vector_size(16), aligned(8)));
static inline void zero_wide(void *dst, size_t n)
{
    char *q = dst;
#pragma GCC unroll 32
    for (size_t i = 0; i < n; i += 16) {
        __asm__("" : "+r"(q));
        *(ot__v16 *)(q + i) = (ot__v16){0};
    }
}
_Static_assert((offsetof(ot__proc_t, mbox) - offsetof(ot__proc_t, sp)) % 16 == 0,
               "zero_wide clears whole 16-byte words");

/* Everything but pid and dead, which stale table slots may be read for at
 * any time (ot__lookup): a reused PCB keeps them until proc_publish. */
static void proc_init(ot__proc_t *p, ot__pool_t *pool)
{
    atomic_store_explicit(&p->state, 0, memory_order_relaxed);
    atomic_store_explicit(&p->timer_fired, 0, memory_order_relaxed);
    atomic_store_explicit(&p->futex, 0, memory_order_relaxed);
    zero_wide(&p->sp, offsetof(ot__proc_t, mbox) - offsetof(ot__proc_t, sp));
    ot__mpsc_init(&p->mbox);
    p->pool = pool;
}

/* The per-scheduler pid cache takes and returns table slots without the
 * global lock, but it strands up to OT__IDX_CACHE free slots per scheduler
 * where no other thread can use them. In a small table that is a large part
 * of it: with max_processes = 16, a spawn from another thread got -EAGAIN
 * ("table full") with one process alive, the free slots sitting in the
 * caches of the schedulers its processes died on (tests/test_badinput.c).
 * So tables where the caches could hold more than 1/64 of the slots use the
 * global allocator only. Fixed for the runtime's life: a slot goes back the
 * way it came. */
static ot__idx_cache_t *pid_cache(struct ot_runtime *rt, ot__sched_t *s)
{
    return s && rt->pid_caches ? &s->pid_cache : NULL;
}

/* Give p a pid in the table (published last, with release). */
static inline int proc_publish(struct ot_runtime *rt, ot__sched_t *s, ot__proc_t *p)
{
    int64_t idx = ot__idx_get(&rt->pids, pid_cache(rt, s));
    if (idx < 0) return (int)idx;
    uint32_t gen = ++rt->table[idx].gen;
    if (gen == 0) gen = ++rt->table[idx].gen; /* generation 0 is never used */
    atomic_store_explicit(&p->pid, ((uint64_t)gen << 32) | (uint64_t)idx, memory_order_relaxed);
    /* Release: the new pid and the initialised PCB before a reader that
     * sees dead = 0 (pairs with the acquire in ot__proc_is): a stale pid
     * read through an old slot then never matches. */
    atomic_store_explicit(&p->dead, 0, memory_order_release);
    /* Release: the PCB is initialised before a lookup can find it (pairs
     * with the acquire in ot__lookup). */
    atomic_store_explicit(&rt->table[idx].p, p, memory_order_release);
    return 0;
}

static ot__proc_t *ext_pcb_alloc(void)
{
    size_t sz = (sizeof(ot__proc_t) + 63) & ~(size_t)63;
    ot__proc_t *p = aligned_alloc(64, sz);
    if (p) { /* not reachable yet: plain initialisation */
        atomic_init(&p->pid, 0);
        atomic_init(&p->dead, 0);
    }
    return p;
}

/* ot_spawn, ot_spawn_link and ot_spawn_monitor. The link or monitor is in
 * the child's table before anyone can know its pid, and in the parent's
 * before the parent can handle any signal (it handles them only itself),
 * so there is no moment in which the child can die unwatched. */
static int spawn(ot_entry_fn fn, void *arg, const ot_spawn_opts_t *opts, ot_pid_t *out,
                 ot__proc_t *parent, int kind, ot_ref_t mref)
{
    struct ot_runtime *rt = ot__rt;
    if (!rt) return -EPERM;
    if (!fn) return -EINVAL;
    ot_spawn_opts_t o;
    if (opts)
        o = *opts;
    else
        ot_spawn_opts_init(&o);
    if (o.priority < OT_PRIO_MAX || o.priority > OT_PRIO_LOW) return -EINVAL;
    if (o.scheduler < -1 || o.scheduler >= (int)rt->nsched) return -EINVAL;
    int cls = o.stack_size ? ot__stack_class(o.stack_size) : rt->default_stack_cls;
    if (cls < 0) return -EINVAL;

    /* The stack is given when the process first runs (sched/sched.c): a
     * process spawned but not yet started holds only its PCB, and a short-
     * lived one takes a stack that the previous one just returned, warm. */
    ot__sched_t *s = ot__tls_sched();
    ot__proc_t *p;
    if (s) {
        p = ot__pool_alloc(&s->pcb_pool);
        if (!p) return -ENOMEM;
        proc_init(p, &s->pcb_pool);
    } else {
        p = ext_pcb_alloc();
        if (!p) return -ENOMEM;
        proc_init(p, NULL);
    }
    p->stack_cls = (uint8_t)cls;
    p->fn = fn;
    p->arg = arg;
    p->prio = (uint8_t)o.priority;
    if (o.name) snprintf(p->name, sizeof p->name, "%s", o.name);
    int rc = 0;
    ot_pid_t ppid = parent ? atomic_load_explicit(&parent->pid, memory_order_relaxed) : 0;
    if (kind == OT__ENT_LINK) rc = ot__sigtab_add(&p->sigtab, OT__ENT_LINK, ppid, ppid);
    if (kind == OT__ENT_MON_OUT) rc = ot__sigtab_add(&p->sigtab, OT__ENT_MON_IN, mref, ppid);
    /* Room in the parent's table first: after publishing, the add must not
     * fail. */
    if (rc >= 0 && kind) rc = ot__sigtab_reserve(&parent->sigtab);
    if (rc >= 0) rc = proc_publish(rt, s, p);
    if (rc == 0 && kind) {
        ot_pid_t cpid = atomic_load_explicit(&p->pid, memory_order_relaxed);
        if (kind == OT__ENT_LINK)
            ot__sigtab_add(&parent->sigtab, OT__ENT_LINK, cpid, cpid);
        else
            ot__sigtab_add(&parent->sigtab, OT__ENT_MON_OUT, mref, cpid);
    }
    if (rc != 0) {
        ot__sigtab_free(p->sigtab);
        if (s)
            ot__pool_free(&s->pcb_pool, p, s);
        else
            free(p);
        return rc;
    }
    if (out) *out = atomic_load_explicit(&p->pid, memory_order_relaxed);
    /* Release: see ot_process_count. */
    if (s)
        ot__count(&s->n_spawned, 1, memory_order_release);
    else
        atomic_fetch_add_explicit(&rt->ext_spawned, 1, memory_order_release);

    ot__sched_t *target = o.scheduler >= 0 ? rt->scheds[o.scheduler] : s;
    bool to_runq = false; /* this spawn fills s's run queue (back-pressure) */
    if (target && target == s) {
        p->sched = s;
        /* The child takes the run-next slot (as Go does): when the spawner
         * blocks, its newest child runs at once on the same core, warm
         * (skynet 155 -> 135 ns, link_exit_storm 555 -> 305 ns per pair).
         * A never-run child it displaces goes to the fresh deque, newest
         * first, so a tree of spawns is walked depth first (skynet 107 ->
         * 92 ns); a bulk spawner's go to the run queue (sched/sched.c). A
         * spawner that spends its turn queues behind the slot's child (see
         * finish_switch_out), so BEAM's rule "a new process runs after the
         * runnable ones" bends only for the newest ones. */
        if (s->current && rt->policy.runnext && p->prio == OT_PRIO_NORMAL) {
            ot__spawn_push(s, p);
            /* Displaced children go to the run queue only from a bulk
             * spawner, or with no fresh deque (fresh_keep). */
            to_runq = s->current->bulk || !rt->policy.depth_first;
        } else {
            ot__local_push(s, p);
            ot__wake_one_if_needed(rt);
            to_runq = true;
        }
    } else {
        if (!target)
            target = rt->scheds[atomic_fetch_add_explicit(&rt->rr, 1, memory_order_relaxed) %
                                rt->nsched];
        p->sched = target;
        ot__inject(target, p);
    }
    /* A spawn costs a reduction, as in the BEAM. And a spawner whose
     * children go to its run queue (a bulk spawner's, sched/sched.c; every
     * child under a policy without the run-next slot or the fresh deque; a
     * child not of normal priority) yields to them once that queue is half
     * full: spawning further would only spill them to the injection queue
     * and grow the working set past the caches (back-pressure on spawn).
     * Only such a spawner: with the rule applied to every spawn, a run
     * queue that had reached half full by other means made each node of a
     * spawn tree yield at each spawn, pushing itself and its newest child
     * to the run queue, which kept it full; about one tree in 50 on two
     * schedulers went breadth first that way, 23,000 such yields, 800-1,500
     * processes started and unfinished at once instead of 14-40
     * (tests/test_fresh.c). */
    if (s && s->current &&
        (--s->budget <= 0 || (to_runq && ot__runq_len(&s->rq[2]) >= OT__RUNQ_SIZE / 2))) {
        s->spawn_yield = true; /* its children stay in the fresh deque */
        ot__proc_yield(s->current);
    }
    return 0;
}

int ot_spawn(ot_entry_fn fn, void *arg, const ot_spawn_opts_t *opts, ot_pid_t *out)
{
    return spawn(fn, arg, opts, out, NULL, 0, 0);
}

int ot_spawn_link(ot_entry_fn fn, void *arg, const ot_spawn_opts_t *opts, ot_pid_t *out)
{
    ot__proc_t *me = ot__self();
    if (!ot__rt || !me) return -EPERM;
    return spawn(fn, arg, opts, out, me, OT__ENT_LINK, 0);
}

int ot_spawn_monitor(ot_entry_fn fn, void *arg, const ot_spawn_opts_t *opts, ot_pid_t *out,
                     ot_ref_t *ref)
{
    ot__proc_t *me = ot__self();
    if (!ot__rt || !me) return -EPERM;
    if (!ref) return -EINVAL;
    ot_ref_t r = ot_make_ref();
    int rc = spawn(fn, arg, opts, out, me, OT__ENT_MON_OUT, r);
    if (rc == 0) *ref = r;
    return rc;
}

bool ot__proc_start_stack(ot__sched_t *s, ot__proc_t *p)
{
    p->stack = ot__stack_get(&s->stacks, p->stack_cls);
    if (!p->stack) return false;
    p->stack_home = &s->stacks;
    p->sp = ot__ctx_init(ot__stack_top(p->stack), proc_boot, p);
    ot__fiber_create(s, p);
    return true;
}

/* ---- switching and waiting ----------------------------------------------- */

void ot__proc_switch_out(ot__proc_t *p, int reason)
{
    ot__sched_t *s = p->sched;
    p->yield_reason = (uint8_t)reason;
    ot__proc_t *q = s->runnext;
    if (q && reason != OT__Y_YIELD && s->budget > 0 && !ot__runq_len(&s->rq[0]) &&
        !ot__runq_len(&s->rq[1]) &&
        !atomic_load_explicit(&s->rt->killing, memory_order_relaxed) &&
        (q->stack || ot__proc_start_stack(s, q))) { /* a new child's first run */
        /* Hand the core straight to the run-next process (it inherits the
         * rest of the turn), skipping the scheduler's stack: q publishes
         * p's wait, or destroys p, once it is running (ot__sched_settle),
         * since only then is p off its stack (and, if waiting, safe for a
         * waker to resume elsewhere). */
        s->runnext = NULL;
        s->pending = p;
        __atomic_store_n(&s->current, q, __ATOMIC_RELEASE); /* watchdog reads */
        q->sched = s;
        atomic_store_explicit(&q->state, q->wait_seq << 2, memory_order_relaxed);
        ot__count(&s->n_switches, 1, memory_order_relaxed);
        ot__count(&s->n_runnext, 1, memory_order_relaxed);
        s->from_proc = true;
        ot__fiber_hand_over(p, q, reason == OT__Y_EXIT);
        ot__ctx_switch(&p->sp, q->sp);
    } else {
        ot__fiber_leave(p, s, reason == OT__Y_EXIT);
        ot__ctx_switch(&p->sp, s->sp);
    }
    /* Resumed, perhaps by another scheduler: it set p->sched. */
    ot__fiber_entered_proc(p, p->sched);
    ot__sched_settle(p->sched);
}

/* An attached thread waits on its futex. */
static void ext_wait(ot__proc_t *p, uint64_t deadline)
{
    uint64_t seq = ++p->wait_seq;
    uint64_t w = (seq << 2) | OT__ST_WAITING;
    atomic_store_explicit(&p->futex, 0, memory_order_relaxed);
    /* seq_cst: our half of the Dekker handshake with senders (store state,
     * then load the mailbox tail; they exchange tail, then load state). */
    atomic_store_explicit(&p->state, w, memory_order_seq_cst);
    if (!ot__lanes_maybe_nonempty(&p->mbox, p->lanes)) {
        for (;;) {
            int64_t tmo = -1;
            if (deadline) {
                uint64_t now = ot__now_ns();
                if (now >= deadline) break;
                tmo = (int64_t)(deadline - now);
            }
            ot__futex_wait(&p->futex, 0, tmo);
            /* Acquire: pairs with the waker's release store of 1. */
            if (atomic_load_explicit(&p->futex, memory_order_acquire)) break;
        }
    }
    uint64_t cur = w;
    if (!atomic_compare_exchange_strong_explicit(&p->state, &cur, seq << 2,
                                                 memory_order_acq_rel, memory_order_acquire)) {
        /* A sender won the CAS to RUNNABLE and is about to set the futex:
         * wait for it so that its store cannot leak into our next wait. */
        while (!atomic_load_explicit(&p->futex, memory_order_acquire))
            ot__futex_wait(&p->futex, 0, -1);
        atomic_store_explicit(&p->state, seq << 2, memory_order_relaxed);
    }
}

void ot__proc_wait(ot__proc_t *p, uint64_t deadline)
{
    if (p->external) {
        ext_wait(p, deadline);
        return;
    }
    p->wait_seq++;
    p->has_deadline = deadline != 0;
    if (deadline && ot__timer_arm_wake(p->sched, p, deadline) != 0) {
        /* No memory for a timer: poll by yielding rather than hang. */
        p->has_deadline = 0;
        ot__proc_switch_out(p, OT__Y_YIELD);
        return;
    }
    ot__proc_switch_out(p, OT__Y_WAIT);
}

int ot_yield(void)
{
    ot__sched_t *s = ot__tls_sched();
    if (!s || !s->current) return -EPERM;
    s->budget = 0;
    ot__proc_yield(s->current);
    return 0;
}

int ot_sleep(uint64_t ms)
{
    ot__sched_t *s = ot__tls_sched();
    if (!s || !s->current) {
        struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
        return 0;
    }
    ot__proc_t *p = s->current;
    if (ms == 0) return ot_yield();
    uint64_t deadline = ot__now_ns() + ms * 1000000u;
    while (ot__now_ns() < deadline) {
        p->wait_seq++;
        p->has_deadline = 1;
        if (ot__timer_arm_wake(p->sched, p, deadline) != 0)
            ot__proc_switch_out(p, OT__Y_YIELD);
        else
            ot__proc_switch_out(p, OT__Y_SLEEP);
        /* Woken early by a signal: handle it, then sleep on. */
        ot__sig_safe_point(p);
    }
    return 0;
}

/* ---- death and reclamation ----------------------------------------------- */

void ot__proc_destroy(ot__sched_t *s, ot__proc_t *p)
{
    struct ot_runtime *rt = s ? s->rt : ot__rt;
    uint32_t idx = (uint32_t)atomic_load_explicit(&p->pid, memory_order_relaxed);
    /* New lookups miss p from now on; senders that already found it are
     * inside a read section, so p stays until its grace period. The slot
     * keeps pointing to p (see ot__proc_is), unless p is not pool memory
     * (spawned from a plain thread, or an attached thread) and will be
     * freed. */
    ot__proc_unlink(p);
    if (!p->pool) atomic_store_explicit(&rt->table[idx].p, NULL, memory_order_release);
    ot__registry_proc_exit(p); /* done already when it exited by itself */
    /* Killed at stop, or never started: nobody hears of it (the runtime is
     * going away, or memory ran out). */
    if (p->sigtab || p->pending_exit) {
        ot__sigtab_free(p->sigtab);
        p->sigtab = NULL;
        ot__pending_exit_free(p);
    }
    ot__mailbox_drain(p, false);
    ot__fiber_destroy(s, p); /* reads how much of the stack was in use */
    if (p->stack) {
        ot__stack_put(p->stack_home, p->stack, s);
        p->stack = NULL;
    }
    ot__idx_put(&rt->pids, pid_cache(rt, s), idx);
    if (s) {
        ot__count(&s->n_died, 1, memory_order_release);
        ot__reclaim_add(s, p);
    } else { /* no scheduler: an attached thread detaching, or stop */
        atomic_fetch_add_explicit(&rt->ext_died, 1, memory_order_release);
        atomic_fetch_sub_explicit(&rt->attached, 1, memory_order_release);
        pthread_mutex_lock(&rt->rlock);
        p->qnext = rt->rpending;
        rt->rpending = p;
        pthread_cond_signal(&rt->rcond);
        pthread_mutex_unlock(&rt->rlock);
    }
}

/* ---- attached threads ---------------------------------------------------- */

int ot_attach(ot_pid_t *out)
{
    struct ot_runtime *rt = ot__rt;
    if (!out) return -EINVAL;
    if (!rt || ot__tls_sched()) return -EPERM;
    if (ot__tls_ext()) return -EEXIST;
    ot__proc_t *p = ext_pcb_alloc();
    if (!p) return -ENOMEM;
    proc_init(p, NULL);
    p->external = 1;
    p->prio = OT_PRIO_NORMAL;
    snprintf(p->name, sizeof p->name, "attached");
    int rc = proc_publish(rt, NULL, p);
    if (rc != 0) {
        free(p);
        return rc;
    }
    atomic_fetch_add_explicit(&rt->ext_spawned, 1, memory_order_release);
    atomic_fetch_add_explicit(&rt->attached, 1, memory_order_release);
    ot__tls_set_ext(p);
    *out = atomic_load_explicit(&p->pid, memory_order_relaxed);
    return 0;
}

int ot_detach(void)
{
    ot__proc_t *p = ot__tls_ext();
    if (!p) return -EPERM;
    ot__proc_exit_signals(p, NULL);
    ot__proc_destroy(NULL, p);
    ot__tls_set_ext(NULL);
    return 0;
}

/* ---- information ------------------------------------------------------- */

int ot_pid_format(ot_pid_t pid, char *buf, size_t n)
{
    if (!buf && n) return -EINVAL;
    return snprintf(buf, n, "<0.%u.%u>", (unsigned)(uint32_t)pid, (unsigned)(pid >> 32));
}

size_t ot_process_count(void)
{
    struct ot_runtime *rt = ot__rt;
    if (!rt) return 0;
    /* Deaths first, then spawns, all with acquire (the counters are stored
     * with release): every death counted has its spawn counted too, so the
     * result never undercounts the processes alive at the end of the call. */
    int64_t died = (int64_t)atomic_load_explicit(&rt->ext_died, memory_order_acquire);
    for (unsigned i = 0; i < rt->nsched; i++)
        died += (int64_t)atomic_load_explicit(&rt->scheds[i]->n_died, memory_order_acquire);
    int64_t born = (int64_t)atomic_load_explicit(&rt->ext_spawned, memory_order_acquire);
    for (unsigned i = 0; i < rt->nsched; i++)
        born += (int64_t)atomic_load_explicit(&rt->scheds[i]->n_spawned, memory_order_acquire);
    return born > died ? (size_t)(born - died) : 0;
}
