/* The scheduler loop: picking the next process, running it, and dealing
 * with why it came back. Stealing and parking are in sched/park.c. */
#include <stdio.h>

#include "sched/arch/ctx.h"
#include "sched/fiber.h"
#include "sched/internal.h"

static inline int qidx(const ot__proc_t *p)
{
    return p->prio >= OT_PRIO_NORMAL ? 2 : p->prio;
}

/* Append p to s's injection queue; the caller holds s->inj_lock. */
static void inj_append_locked(ot__sched_t *s, ot__proc_t *p)
{
    p->qnext = NULL;
    if (s->inj_tail)
        s->inj_tail->qnext = p;
    else
        s->inj_head = p;
    s->inj_tail = p;
}

/* q is full: move its older half to the injection queue, where thieves
 * reach it too (Go's runqputslow moves half to the global queue), then push
 * p. Out of line: its buffer and lock made every push save registers. */
static __attribute__((noinline)) void local_spill(ot__sched_t *s, ot__runq_t *q, ot__proc_t *p)
{
    void *batch[OT__RUNQ_SIZE / 2];
    uint32_t n = ot__runq_take(q, batch, OT__RUNQ_SIZE / 2);
    pthread_mutex_lock(&s->inj_lock);
    for (uint32_t i = 0; i < n; i++)
        inj_append_locked(s, batch[i]);
    atomic_fetch_add_explicit(&s->inj_len, n, memory_order_seq_cst);
    pthread_mutex_unlock(&s->inj_lock);
    if (!ot__runq_push(q, p)) ot__inject(s, p); /* cannot happen: we just made room */
}

void ot__local_push(ot__sched_t *s, ot__proc_t *p)
{
    ot__runq_t *q = &s->rq[qidx(p)];
    if (!ot__runq_push(q, p)) local_spill(s, q, p);
}

void ot__inject(ot__sched_t *s, ot__proc_t *p)
{
    pthread_mutex_lock(&s->inj_lock);
    inj_append_locked(s, p);
    /* seq_cst: the injector's half of the handshake with a parking
     * scheduler (it sets parked, then reads inj_len). */
    atomic_fetch_add_explicit(&s->inj_len, 1, memory_order_seq_cst);
    pthread_mutex_unlock(&s->inj_lock);
    ot__wake_sched(s);
    if (ot__tls_sched() != s) ot__wake_one_if_needed(s->rt);
}

ot__proc_t *ot__inj_pop(ot__sched_t *s)
{
    if (!atomic_load_explicit(&s->inj_len, memory_order_acquire)) return NULL;
    pthread_mutex_lock(&s->inj_lock);
    ot__proc_t *p = s->inj_head;
    if (p) {
        s->inj_head = p->qnext;
        if (!s->inj_head) s->inj_tail = NULL;
        atomic_fetch_sub_explicit(&s->inj_len, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->inj_lock);
    return p;
}

/* p runs on this core as soon as the waker stops: start loading what its
 * resumption reads first, which is cold when p is one of many taking
 * turns (its saved context and the frames above it, its receive state, its
 * queue's head). The waker still has its own send, receive and switch to
 * do, which hides part of the misses. ring: 45.1 -> 38.8 ns per hop
 * (median of 5 runs); pingpong, whose two processes stay hot, pays for
 * the prefetches: 64.6 -> 66.6. Two stack lines instead of four: ring
 * 42.5, pingpong 65.4. */
static inline void prefetch_resume(const ot__proc_t *p)
{
    const char *sp = p->sp;
    for (int i = 0; i < 4; i++)
        __builtin_prefetch(sp + 64 * i);
    __builtin_prefetch(&p->save_head);
    __builtin_prefetch(&p->mbox.head);
}

void ot__make_runnable(ot__sched_t *s, ot__proc_t *p, bool from_timer)
{
    if (p->external) {
        /* Release: pairs with the attached thread's acquire of its futex. */
        atomic_store_explicit(&p->futex, 1, memory_order_seq_cst);
        ot__futex_wake(&p->futex, 1);
        return;
    }
    if (!s) {
        ot__inject(p->sched ? p->sched : ot__rt->scheds[0], p);
        return;
    }
    p->sched = s;
    if (!from_timer && qidx(p) == 2 && s->rt->policy.runnext && s->current) {
        prefetch_resume(p);
        ot__runnext_push(s, p); /* run next, as soon as the sender stops */
        return;
    }
    ot__local_push(s, p);
    ot__wake_one_if_needed(s->rt);
}

void ot__runnext_push(ot__sched_t *s, ot__proc_t *p)
{
    ot__proc_t *old = s->runnext;
    s->runnext = p;
    if (!old) return;
    ot__local_push(s, old);
    ot__wake_one_if_needed(s->rt);
}

/* Never-run children: the fresh deque.
 *
 * A child spawned here takes the run-next slot (ot__spawn_push); the never-
 * run child it displaces goes on the fresh deque, newest taken first, ahead
 * of the run queue (next_local). A tree of spawns is then walked depth
 * first, as a work-stealing runtime walks a tree of tasks: the newest
 * subtree finishes before its older siblings start, so only a path of
 * half-done parents holds stacks, and the control blocks, stacks and
 * messages of the dead are reused at once, warm. With the run queue's FIFO
 * order alone the walk went breadth first: skynet on one scheduler had
 * 11,000 stacks and 21,000 control blocks in use at once, against 8 and
 * 350 depth first, and ran twice as slow.
 *
 * The deque is the owner's alone (plain loads and stores): thieves see
 * only the run queue and the offer. So that it never hides work from a
 * core that could run it, while some scheduler is parked or searching, the
 * deque's oldest entry goes into the scheduler's offer (s->offer, one
 * slot; fresh_offer) and one idle scheduler is woken: when a displaced
 * child joins the deque (fresh_keep) and when the owner picks from it
 * (fresh_pop). Thieves take the offer first (ot__offer_take: the owner
 * stores only into an empty slot, with release; takers exchange, with
 * acquire, so exactly one gets it); the owner takes it back when it has
 * nothing else, or to the deque's bottom after OT__OFFER_WAIT picks. The
 * oldest entry is the biggest subtree, and one at a time is what one
 * thief takes: skynet on two schedulers ran at 232 ns per process when
 * displaced children went to the run queue themselves whenever a
 * scheduler was idle (the newest, so mostly leaves) and the older half of
 * the deque followed at each pick; the thief's steals were small, its
 * FIFO run queue started them side by side, and 12,000 stacks were carved
 * per run. The oldest, one at a time, through the run queue: 120 ns,
 * 2,600-4,200 stacks (bench/ab.sh, 7 rounds), but the owner's one pick in
 * eight from the run queue started many itself; through the offer: 88 ns,
 * and 14-40 processes started and unfinished at the peak of a 100,000-leaf
 * tree (tests/test_fresh.c). A bulk spawner (OT__FRESH_PER_PARENT
 * children waiting, spawn_exit's driver) sends its children to the run
 * queue in spawn order, where thieves take them in halves.
 *
 * And so that nothing waits in it forever (the newest-first order alone
 * would let a busy top starve the bottom): one pick in OT__FRESH_AGE looks
 * at the oldest entry and moves it to the run queue's tail (fresh_age) if
 * it has waited OT__FRESH_WAIT picks and nothing was aged for as long. The
 * oldest entry thus reaches the FIFO run queue, which has one pick in
 * eight, within about OT__FRESH_WAIT + OT__FRESH_AGE picks (~0.1 s at
 * 100 ns a pick), the k-th oldest within k times that; a child displaced
 * from a full deque goes there at once. Aging goes by waiting time, late
 * and one at a time, because the oldest entries are the biggest subtrees,
 * and a depth-first walk leaves them waiting by design. Every aged subtree
 * starts beside the walk in progress, and their displaced children fill
 * the deque, which then overflows into the run queue: breadth first. A
 * tree of 111,111 on one scheduler had 6 processes started and unfinished
 * at its peak without aging, 6 with a wait of 2^18 picks, 845 with 2^16,
 * 1351 aging one entry every 1024 picks, and 1625 breadth first (the run
 * queue alone). skynet's 1,111,111 (2.2 million picks) outgrew 2^18:
 * 8,417 stacks in use at once, ~400 ns per process on one scheduler; with
 * 2^20, 8 stacks and 134-175 ns. */

static inline unsigned fresh_len(const ot__sched_t *s)
{
    return s->fresh_t - s->fresh_h;
}

/* The oldest entry to the run queue's tail. */
static void fresh_age(ot__sched_t *s)
{
    ot__local_push(s, s->fresh[s->fresh_h++ % OT__FRESH]);
}

/* The never-run children of `parent` on top of the deque (a parent's are
 * always together there: nothing else ran since it pushed them) go to the
 * run queue, oldest first, so that they start in the order spawned.
 * Parents are told apart by pid, not by PCB address: a dead parent's PCB
 * comes back at once for a new process, at the same address, and a yield
 * of the new one would flush the old one's children too. */
static void fresh_flush(ot__sched_t *s, ot_pid_t parent)
{
    unsigned lo = s->fresh_t;
    while (lo != s->fresh_h && s->fresh_by[(lo - 1) % OT__FRESH] == parent)
        lo--;
    for (unsigned i = lo; i != s->fresh_t; i++)
        ot__local_push(s, s->fresh[i % OT__FRESH]);
    s->fresh_t = lo;
}

/* Is some scheduler parked or looking for work (so that work should be
 * where it can steal it)? */
static inline bool someone_idle(const struct ot_runtime *rt)
{
    return atomic_load_explicit(&rt->nparked, memory_order_relaxed) ||
           atomic_load_explicit(&rt->nsearching, memory_order_relaxed);
}

/* While a scheduler is idle, offer it the deque's oldest entry (see the
 * top), unless one is on offer already. */
static void fresh_offer(ot__sched_t *s)
{
    if (atomic_load_explicit(&s->offer, memory_order_relaxed) || !someone_idle(s->rt)) return;
    s->offer_tick = s->tick;
    /* Release: the child's control block before the pointer. */
    atomic_store_explicit(&s->offer, s->fresh[s->fresh_h++ % OT__FRESH], memory_order_release);
    ot__wake_one_if_needed(s->rt);
}

/* Keep `old`, a child displaced from the run-next slot by a newer one of
 * the current process, on the fresh deque (and show an idle scheduler the
 * deque's oldest entry); false when it must go to the run queue instead:
 * it has run already, the policy is breadth first, the deque is full (its
 * older siblings, bigger subtrees, stay: moving those instead let skynet
 * start more subtrees at once, 106 -> 122 ns per process), or the current
 * process is a bulk spawner. A bulk spawner's children kept so far go to the run queue
 * first, and so will its next ones until it waits or exits
 * (finish_switch_out), on whatever scheduler it moves to (the mark is the
 * process's). */
static bool fresh_keep(ot__sched_t *s, ot__proc_t *old)
{
    ot__proc_t *cur = s->current;
    /* Already a bulk spawner: none of its children was kept since it became
     * one, and the flush below took those kept on the scheduler where it
     * did. Any it kept on another scheduler before it moved stay in that
     * deque, to be run, offered or aged from there (the flush at every
     * spawn used to send them to the run queue if it came back). */
    if (cur->bulk) return false;
    ot_pid_t parent = atomic_load_explicit(&cur->pid, memory_order_relaxed);
    unsigned n = fresh_len(s);
    if (n >= OT__FRESH_PER_PARENT &&
        s->fresh_by[(s->fresh_t - OT__FRESH_PER_PARENT) % OT__FRESH] == parent) {
        cur->bulk = 1;
        fresh_flush(s, parent);
        return false;
    }
    if (old->stack || n == OT__FRESH || !s->rt->policy.depth_first) return false;
    unsigned i = s->fresh_t++ % OT__FRESH;
    s->fresh[i] = old;
    s->fresh_by[i] = parent;
    s->fresh_tick[i] = s->tick;
    fresh_offer(s);
    return true;
}

void ot__spawn_push(ot__sched_t *s, ot__proc_t *p)
{
    ot__proc_t *old = s->runnext;
    if (old && fresh_keep(s, old))
        s->runnext = p;
    else
        ot__runnext_push(s, p); /* the slot's old child to the run queue */
}

/* An offer no thief took within OT__OFFER_WAIT picks goes back to the
 * bottom of the deque, where it came from: while the owner has other work,
 * nothing else would run it (under TSan, with both schedulers busy, a
 * process waited there for more than the 30 s test_kill_race gives it).
 * Into the run queue instead, the owner started these subtrees beside its
 * walk: skynet 100 -> 122 ns. */
static void offer_expire(ot__sched_t *s)
{
    ot__proc_t *p = ot__offer_take(s);
    if (!p) return;
    if (fresh_len(s) == OT__FRESH) {
        ot__local_push(s, p);
        return;
    }
    unsigned i = --s->fresh_h % OT__FRESH;
    s->fresh[i] = p;
    s->fresh_by[i] = OT_PID_NONE;
    s->fresh_tick[i] = s->offer_tick;
}

static inline ot__proc_t *fresh_pop(ot__sched_t *s)
{
    unsigned n = fresh_len(s);
    if (!n) return NULL;
    if (n > 1) fresh_offer(s); /* leaves n - 1 */
    return s->fresh[--s->fresh_t % OT__FRESH];
}

/* pop_normal found p of low priority at the head of q. Out of line, so that
 * the common case saves no registers. */
static __attribute__((noinline)) ot__proc_t *pop_low(ot__sched_t *s, ot__runq_t *q,
                                                     ot__proc_t *p)
{
    uint32_t n = ot__runq_len(q) + 1;
    for (uint32_t i = 0;; i++) {
        if (i) {
            p = ot__runq_pop(q);
            if (!p) return NULL;
        }
        if (p->prio != OT_PRIO_LOW || ++p->low_skips >= 8 || i >= n) {
            p->low_skips = 0;
            return p;
        }
        ot__local_push(s, p);
    }
}

/* Normal and low share a queue; a low process is passed over seven times
 * in eight (BEAM's rule), unless it is alone. */
static ot__proc_t *pop_normal(ot__sched_t *s)
{
    ot__runq_t *q = &s->rq[2];
    ot__proc_t *p = ot__runq_pop(q);
    if (p) ot__runq_prefetch_next(q);
    if (!p || p->prio != OT_PRIO_LOW) return p; /* the common case */
    return pop_low(s, q, p);
}

static ot__proc_t *next_local(ot__sched_t *s)
{
    const int32_t reds = s->rt->policy.reductions;
    ot__proc_t *p;
    s->tick++;
    bool timers = s->timers.n || atomic_load_explicit(&s->tinbox_len, memory_order_relaxed);
    if (timers && (s->tick & 7) == 0) ot__timers_run(s, ot__now_ns());
    /* Now and then the injection queue first, so it cannot starve. */
    if (s->tick % 61 == 0 && (p = ot__inj_pop(s))) goto fresh;
    if ((p = ot__runq_pop(&s->rq[0])) || (p = ot__runq_pop(&s->rq[1]))) goto fresh;
    if (s->runnext && s->budget > 0) {
        /* Inherits what is left of the turn (Go's runnext rule), so two
         * processes passing messages cannot starve the queue. */
        p = s->runnext;
        s->runnext = NULL;
        ot__count(&s->n_runnext, 1, memory_order_relaxed);
        return p;
    }
    /* The fresh deque before the run queue, but one pick in eight goes to
     * the run queue first, and one in OT__FRESH_AGE ages the deque:
     * neither starves. */
    if (s->tick & 7) {
        if ((p = fresh_pop(s))) goto fresh;
    } else {
        if ((s->tick % OT__FRESH_AGE) == 0 && fresh_len(s) &&
            s->tick - s->fresh_tick[s->fresh_h % OT__FRESH] >= OT__FRESH_WAIT &&
            s->tick - s->fresh_aged >= OT__FRESH_WAIT) {
            s->fresh_aged = s->tick;
            fresh_age(s);
        }
        if (s->tick - s->offer_tick >= OT__OFFER_WAIT) offer_expire(s);
    }
    if ((p = pop_normal(s)) || (p = fresh_pop(s))) goto fresh;
    if ((p = s->runnext)) {
        s->runnext = NULL;
        goto fresh;
    }
    if ((p = ot__inj_pop(s))) goto fresh;
    if (timers) {
        ot__timers_run(s, ot__now_ns());
        if ((p = ot__runq_pop(&s->rq[0])) || (p = ot__runq_pop(&s->rq[1])) ||
            (p = pop_normal(s)))
            goto fresh;
    }
    /* Nothing else here: the offer nobody took comes back. */
    if ((p = ot__offer_take(s))) goto fresh;
    return NULL;
fresh:
    s->budget = reds;
    return p;
}

static bool finish_switch_out(ot__sched_t *s, ot__proc_t *p);

static void run(ot__sched_t *s, ot__proc_t *p)
{
    struct ot_runtime *rt = s->rt;
    for (;;) {
        if (atomic_load_explicit(&rt->killing, memory_order_relaxed)) {
            ot__proc_destroy(s, p);
            return;
        }
        if (!p->stack && !ot__proc_start_stack(s, p)) {
            char pid[40];
            ot_pid_format(atomic_load_explicit(&p->pid, memory_order_relaxed), pid, sizeof pid);
            fprintf(stderr,
                    "otter: no memory for the stack of process %s \"%s\"; it is "
                    "dropped\n",
                    pid, p->name);
            ot__proc_destroy(s, p);
            return;
        }
        /* We own p: it came from a queue or a won CAS. */
        atomic_store_explicit(&p->state, p->wait_seq << 2, memory_order_relaxed);
        __atomic_store_n(&s->current, p, __ATOMIC_RELEASE); /* watchdog reads */
        p->sched = s;
        ot__count(&s->n_switches, 1, memory_order_relaxed);
        ot__fiber_enter(s, p);
        ot__ctx_switch(&s->sp, p->sp);
        ot__fiber_entered_sched(s);
        /* The process that switched back may not be p: p may have handed
         * the core to its run-next process directly. */
        p = s->current;
        __atomic_store_n(&s->current, NULL, __ATOMIC_RELAXED);
        if (!finish_switch_out(s, p)) return;
        if (s->budget <= 0) {
            ot__local_push(s, p);
            return;
        }
    }
}

static bool publish_wait(ot__sched_t *s, ot__proc_t *p, int reason)
{
    struct ot_runtime *rt = s->rt;
    /* Read p's own fields first: once the state is published, a waker may
     * resume p on another scheduler, and they are p's again. */
    uint64_t seq = p->wait_seq;
    bool has_deadline = p->has_deadline;
    ot__lanes_t *lanes = p->lanes;
    uint64_t w = (seq << 2) | (reason == OT__Y_WAIT ? OT__ST_WAITING : OT__ST_SLEEPING);
    /* seq_cst: the sleeper's half of the handshakes with senders and with
     * the timer (store state, then load tail / timer_fired); see MAILBOX.md. */
    atomic_store_explicit(&p->state, w, memory_order_seq_cst);
    bool again =
        atomic_load_explicit(&rt->killing, memory_order_seq_cst) ||
        (reason == OT__Y_WAIT && ot__lanes_maybe_nonempty(&p->mbox, lanes)) ||
        (reason == OT__Y_SLEEP && atomic_load_explicit(&p->nsig, memory_order_seq_cst)) ||
        (has_deadline && atomic_load_explicit(&p->timer_fired, memory_order_seq_cst) == seq);
    if (!again) return false;
    /* acq_rel: losing means a waker won and queues p itself. */
    return atomic_compare_exchange_strong_explicit(&p->state, &w, seq << 2,
                                                   memory_order_acq_rel, memory_order_relaxed);
}

/* Deal with why p (now off its stack) switched out: check its stack, destroy
 * it, queue it, or publish its wait. True when it must run again at once (a
 * message or its timer came while it was going to sleep). */
static bool finish_switch_out(ot__sched_t *s, ot__proc_t *p)
{
    if (!ot__stack_ok(p->stack, p->sp))
        ot__overflow_report(p, "its stack canary was overwritten");
    int reason = p->yield_reason;
    if (reason != OT__Y_YIELD) p->bulk = 0;
    if (reason == OT__Y_EXIT) {
        ot__proc_destroy(s, p);
        return false;
    }
    if (reason == OT__Y_YIELD) {
        /* A process that yields lets its never-run children run first, in
         * the order spawned (the BEAM's order for runnable processes): they
         * go from the fresh deque to the run queue ahead of it. Not when
         * the yield is a spawn's, the turn spent: that is a parent of a
         * spawn tree that ran out of the budget it inherited through the
         * run-next slot as often as a bulk spawner (which fresh_keep finds
         * by the count of its children), and flushing there sent skynet's
         * half-spawned siblings to the run queue, where a thief took them
         * in halves and started them side by side: 600-1,800 processes
         * started and unfinished at once on two schedulers instead of
         * 14-40 (tests/test_fresh.c). */
        if (!s->spawn_yield)
            fresh_flush(s, atomic_load_explicit(&p->pid, memory_order_relaxed));
        s->spawn_yield = false;
        /* The process woken into the run-next slot during this turn queues
         * ahead of the one that spent the turn: otherwise a sender that
         * keeps its budget busy would be picked again and again while its
         * receiver waits in the slot. */
        if (s->runnext) {
            ot__local_push(s, s->runnext);
            s->runnext = NULL;
        }
        ot__local_push(s, p);
        return false;
    }
    return publish_wait(s, p, reason);
}

void ot__sched_settle(ot__sched_t *s)
{
    ot__proc_t *prev = s->pending;
    if (!prev) return;
    s->pending = NULL;
    if (finish_switch_out(s, prev)) {
        ot__local_push(s, prev);
        ot__wake_one_if_needed(s->rt);
    }
}

void ot__sched_loop(ot__sched_t *s)
{
    struct ot_runtime *rt = s->rt;
    while (!atomic_load_explicit(&rt->shutdown, memory_order_acquire)) {
        ot__proc_t *p = next_local(s);
        if (!p)
            p = ot__find_work(s);
        else if (s->searching)
            ot__stop_searching(s); /* woken to search, found its own work */
        if (p) {
            if (p->sched != s) p->sched = s;
            run(s, p);
        }
        if ((s->tick & 15) == 0) {
            ot__rcu_quiescent(s);
            ot__reclaim_poll(s);
        }
    }
}
