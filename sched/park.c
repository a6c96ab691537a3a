/* Finding work when the local queues are empty: stealing, spinning a
 * little, then parking on a futex. The protocol (Go's, see sched/PARK.md):
 *
 * - At most about half of the non-parked schedulers search at once
 *   (2 * nsearching < nsched - nparked), so idle schedulers do not stampede.
 * - Whoever makes work stealable calls ot__wake_one_if_needed: if some
 *   scheduler is parked and nobody is searching, it claims one parked
 *   scheduler and wakes it as a searcher (counted in nsearching before it
 *   even wakes, so a burst of pushes wakes one scheduler, not many).
 * - A scheduler going to park publishes `parked` and `nparked` (seq_cst),
 *   then looks at the queues once more; the waker publishes the work, then
 *   (seq_cst fence) reads nparked. One of the two sees the other: no lost
 *   wake-up.
 * - `parked` is 1 while claimable; a waker CASes it to 0 (plain wake) or 2
 *   (woken as a searcher); the parker only sleeps while it reads 1. */
/* Spin between steal sweeps: exponential, capped at 512 pause loops (a few
 * microseconds), so that a searcher notices new work quickly. */
#define CK_BACKOFF_CEILING ((1 << 9) - 1)
#include <ck_backoff.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <urcu/urcu-qsbr.h>

#include "sched/fiber.h"
#include "sched/internal.h"

void ot__futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t timeout_ns)
{
    struct timespec ts, *tsp = NULL;
    if (timeout_ns >= 0) {
        ts.tv_sec = timeout_ns / 1000000000;
        ts.tv_nsec = timeout_ns % 1000000000;
        tsp = &ts;
    }
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, tsp, NULL, 0);
}

void ot__futex_wake(_Atomic uint32_t *word, int n)
{
    syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Claim a sleeping scheduler and wake it: `from` is 1 (parked, in the idle
 * set, counted in nparked and n_wakeups) or 3 (resting, counted in
 * neither); `as` is 0, or 2 when it is to search. */
static bool claim_and_wake(struct ot_runtime *rt, ot__sched_t *t, int from, int as)
{
    if (!atomic_compare_exchange_strong_explicit(&t->parked, &from, as, memory_order_seq_cst,
                                                 memory_order_relaxed))
        return false;
    if (from == 1) atomic_fetch_sub_explicit(&rt->nparked, 1, memory_order_seq_cst);
    /* seq_cst: ordered after the claim, so that the parker's reset of the
     * word (also seq_cst, before it re-reads `parked`) cannot hide it. */
    atomic_store_explicit(&t->wake_word, 1, memory_order_seq_cst);
    ot__futex_wake(&t->wake_word, 1);
    /* Written by wakers on any thread: an atomic add. */
    if (from == 1) atomic_fetch_add_explicit(&t->n_wakeups, 1, memory_order_relaxed);
    return true;
}

void ot__wake_sched(ot__sched_t *s)
{
    /* seq_cst fence: the work we published is ordered before reading
     * `parked` (pairs with the parker's seq_cst store of parked). */
    atomic_thread_fence(memory_order_seq_cst);
    /* Parked, or resting (work handed to it ends the rest). */
    int v = atomic_load_explicit(&s->parked, memory_order_relaxed);
    if (v == 1 || v == 3) claim_and_wake(s->rt, s, v, 0);
}

void ot__wake_one_if_needed(struct ot_runtime *rt)
{
    /* No fence here, as in Go's wakep: the work was pushed onto the caller's
     * own queue, which its owner runs anyway, so a parker that misses it
     * costs parallelism for a moment, never liveness. Work handed to another
     * scheduler goes through ot__wake_sched, which does fence. */
    if (atomic_load_explicit(&rt->nparked, memory_order_relaxed) == 0) return;
    if (atomic_load_explicit(&rt->nsearching, memory_order_relaxed) != 0) return;
    int zero = 0;
    if (!atomic_compare_exchange_strong_explicit(&rt->nsearching, &zero, 1,
                                                 memory_order_seq_cst, memory_order_relaxed))
        return; /* somebody searches: it will find the work */
    ot__sched_t *me = ot__tls_sched();
    unsigned start = me ? me->idx + 1 : 0;
    for (unsigned k = 0; k < rt->nsched; k++) {
        ot__sched_t *t = rt->scheds[(start + k) % rt->nsched];
        if (t != me && claim_and_wake(rt, t, 1, 2)) return;
    }
    atomic_fetch_sub_explicit(&rt->nsearching, 1, memory_order_seq_cst);
}

static uint64_t rng_next(ot__sched_t *s)
{
    /* xorshift64*: victim rotation only. */
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Count a steal and start judging it (steal_review). */
static void stolen(ot__sched_t *s, uint32_t moved, uint64_t t0)
{
    ot__count(&s->n_steals, 1, memory_order_relaxed);
    ot__count(&s->n_stolen, moved, memory_order_relaxed);
    s->steal_k = moved;
    s->steal_t0 = ot__now_ns();
    /* An average over about the last eight steals. */
    uint64_t c = s->steal_t0 - t0;
    s->steal_cost = s->steal_cost ? s->steal_cost - s->steal_cost / 8 + c / 8 : c;
}

/* Is the one process in q about to be run by its owner anyway? An awake
 * victim with exactly one process in its queue is most often a scheduler
 * that has just run down its queue and will pick that one next, warm,
 * within a turn: spawn_exit's spawner, queued behind the children it
 * spawned, is alone at the head after the last of them. Taken then, it
 * moved between the cores (1-23 times in a run of 1,000,000 spawns,
 * counted every 256; each move costs its pools' and its mailbox's lines).
 * As Go's runqgrab does before it takes a running P's runnext, the thief
 * watches for up to `wait_ns` (OT__LONE_WAIT_NS) and leaves the process
 * as soon as the owner takes anything from that queue: 0-4 moves, and
 * spawn_exit 110.3 -> 104.2 ns (bench/ab.sh, 8 rounds) with a wait of
 * 5 us. Go waits 3 us, but here an owner between two processes can be
 * longer about it (a batch of dead PCBs to free, a page fault): 20 us
 * took spawn_exit from 107.8 to 98.7 and from 104.5 to 100.9 ns (6 and 5
 * rounds), the other workloads unchanged. A process that really waits
 * (its owner is in a long turn) is still at the head after the wait and
 * is taken; the wait costs only an idle thief's time. */
bool ot__lone_soon_run(ot__sched_t *v, ot__runq_t *q, uint64_t wait_ns)
{
    if (ot__runq_len(q) != 1 || atomic_load_explicit(&v->parked, memory_order_relaxed))
        return false;
    /* Relaxed: a hint; the steal that may follow does its own acquire. */
    uint32_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    uint64_t until = ot__now_ns() + wait_ns;
    do {
        if (atomic_load_explicit(&q->head, memory_order_relaxed) != h) return true;
        ck_pr_stall();
    } while (ot__now_ns() < until);
    return atomic_load_explicit(&q->head, memory_order_relaxed) != h;
}

static ot__proc_t *steal_from(ot__sched_t *s, ot__sched_t *v)
{
    uint64_t t0 = ot__now_ns();
    /* What the victim offers first: its oldest never-run child, the
     * biggest subtree (sched/sched.c). */
    ot__proc_t *o = ot__offer_take(v);
    if (o) {
        stolen(s, 1, t0);
        return o;
    }
    /* After poor steals, one process: a probe of whether stealing pays. */
    bool half = s->rt->policy.steal_half && !s->rest_ns;
    for (int q = 0; q < 3; q++) {
        if (ot__lone_soon_run(v, &v->rq[q], OT__LONE_WAIT_NS)) continue;
        uint32_t moved;
        ot__proc_t *p = ot__runq_steal(&v->rq[q], &s->rq[q], half, &moved);
        if (p) {
            stolen(s, moved, t0);
            return p;
        }
    }
    ot__proc_t *p = ot__inj_pop(v);
    if (p) stolen(s, 1, t0);
    return p;
}

static ot__proc_t *steal_any(ot__sched_t *s)
{
    struct ot_runtime *rt = s->rt;
    unsigned nv = rt->nsched - 1;
    const uint16_t *vic = &rt->topo.victims[(size_t)s->idx * nv];
    const uint16_t *grp = &rt->topo.group[(size_t)s->idx * nv];
    ot__proc_t *p;
    if (rt->policy.victim_order == OT__VICTIM_RANDOM) {
        unsigned start = (unsigned)(rng_next(s) % nv);
        for (unsigned k = 0; k < nv; k++)
            if ((p = steal_from(s, rt->scheds[vic[(start + k) % nv]]))) return p;
        return NULL;
    }
    /* Nearest group first; inside a group, a random rotation spreads the
     * thieves over the equally near victims. */
    for (unsigned k = 0; k < nv;) {
        unsigned e = k + 1;
        while (e < nv && grp[e] == grp[k])
            e++;
        unsigned len = e - k, off = (unsigned)(rng_next(s) % len);
        for (unsigned j = 0; j < len; j++)
            if ((p = steal_from(s, rt->scheds[vic[k + (off + j) % len]]))) return p;
        k = e;
    }
    return NULL;
}

/* Is there anything this scheduler should do rather than sleep? With
 * `others`, stealable work elsewhere counts too. */
static bool work_visible(ot__sched_t *s, bool others)
{
    struct ot_runtime *rt = s->rt;
    if (s->runnext || s->fresh_t != s->fresh_h ||
        atomic_load_explicit(&s->offer, memory_order_seq_cst))
        return true;
    for (int q = 0; q < 3; q++)
        if (ot__runq_len(&s->rq[q])) return true;
    if (atomic_load_explicit(&s->inj_len, memory_order_seq_cst) ||
        atomic_load_explicit(&s->tinbox_len, memory_order_seq_cst))
        return true;
    const ot__tnode_t *t = ot__heap_top(&s->timers);
    if (t && t->deadline <= ot__now_ns()) return true;
    if (others) {
        for (unsigned i = 0; i < rt->nsched; i++) {
            ot__sched_t *v = rt->scheds[i];
            if (v == s) continue;
            for (int q = 0; q < 3; q++)
                if (ot__runq_len(&v->rq[q])) return true;
            if (atomic_load_explicit(&v->inj_len, memory_order_seq_cst) ||
                atomic_load_explicit(&v->offer, memory_order_seq_cst))
                return true;
        }
    }
    return false;
}

static void stop_searching(ot__sched_t *s, bool found)
{
    s->searching = false;
    int was = atomic_fetch_sub_explicit(&s->rt->nsearching, 1, memory_order_seq_cst);
    /* The last searcher found work: there may be more, keep one looking. */
    if (was == 1 && found) ot__wake_one_if_needed(s->rt);
}

/* A scheduler woken as a searcher (unpark_self) may find work in its own
 * queues (the injected process it was woken for) and run it without
 * coming back here. It must stop counting as a searcher then, as Go's
 * resetspinning does for a spinning M that found a goroutine anywhere:
 * while nsearching stayed 1, ot__wake_one_if_needed woke nobody, and a
 * process queued behind one that never yields waited for good beside a
 * parked scheduler (tests/test_steal.c, busy_pair_spreads, failed about
 * one run in two). */
void ot__stop_searching(ot__sched_t *s)
{
    stop_searching(s, true);
}

static void unpark_self(ot__sched_t *s)
{
    int v = atomic_exchange_explicit(&s->parked, 0, memory_order_seq_cst);
    if (v == 1)
        atomic_fetch_sub_explicit(&s->rt->nparked, 1, memory_order_seq_cst);
    else if (v == 2)         /* (3, resting, was never counted anywhere) */
        s->searching = true; /* the waker counted us in nsearching */
}

static void park(ot__sched_t *s, bool was_searching, uint64_t rest_until)
{
    struct ot_runtime *rt = s->rt;
    if (s->ndead || s->dead) ot__reclaim_handoff(s);
    /* Two quiescent points of ours can move the epoch by two when the other
     * schedulers are parked, freeing what just died before we sleep. */
    for (int i = 0; i < 2 && s->batch_head != s->batch_tail; i++) {
        ot__rcu_quiescent(s);
        ot__reclaim_poll(s);
    }
    /* Objects of other schedulers' pools go home before we sleep. */
    ot__pool_rcache_flush(&s->rcache);
    /* Free table slots cached here are of no use to others while we sleep. */
    if (s->pid_cache.n) ot__idx_flush(&rt->pids, &s->pid_cache);
    const ot__tnode_t *t = ot__heap_top(&s->timers);
    uint64_t deadline = t ? t->deadline : 0;
    /* Batches still in their grace period: come back to free them soon.
     * Not only for memory: a link or monitor request that reached a process
     * just after its death is answered (noproc) by that last drain. */
    if (s->batch_head != s->batch_tail) {
        uint64_t soon = ot__now_ns() + OT__RECLAIM_RECHECK_NS;
        if (!deadline || soon < deadline) deadline = soon;
    }
    if (rest_until && (!deadline || rest_until < deadline)) deadline = rest_until;

    int mark = rest_until ? 3 : 1;
    atomic_store_explicit(&s->parked, mark, memory_order_seq_cst);
    if (!rest_until) atomic_fetch_add_explicit(&rt->nparked, 1, memory_order_seq_cst);
    if (work_visible(s, was_searching && !rest_until) ||
        atomic_load_explicit(&rt->shutdown, memory_order_seq_cst)) {
        unpark_self(s);
        return;
    }
    ot__count(rest_until ? &s->n_rests : &s->n_parks, 1, memory_order_relaxed);
    /* A parked scheduler holds up no grace period of either kind (the
     * epoch's going offline releases ot__rcu_sync for both). */
    ot__epoch_sched_offline(s);
    urcu_qsbr_thread_offline();
    for (;;) {
        /* seq_cst reset before re-reading parked: see claim_and_wake. */
        atomic_store_explicit(&s->wake_word, 0, memory_order_seq_cst);
        if (atomic_load_explicit(&s->parked, memory_order_seq_cst) != mark) break;
        if (atomic_load_explicit(&rt->shutdown, memory_order_acquire)) break;
        int64_t tmo = -1;
        if (deadline) {
            uint64_t now = ot__now_ns();
            if (now >= deadline) break;
            tmo = (int64_t)(deadline - now);
        }
        ot__futex_wait(&s->wake_word, 0, tmo);
    }
    urcu_qsbr_thread_online();
    ot__epoch_sched_online(s);
    unpark_self(s);
}

/* ot__steal_review: do steals pay?
 *
 * Moving a process costs the lines it takes along: its control block and
 * stack, which the thief pulls over and the victim's pool later takes back,
 * and the mailboxes it then talks to. On a machine whose cores are far
 * apart a process that runs a microsecond and sends one message costs more
 * to move than to run where it is: spawn_exit on two cores of a Zen 5 VM
 * (448 ns cache-line round trip) took 106 ns per process on one scheduler
 * and 225 on two, the thief taking 29% of the children. So a thief weighs
 * what its steals bring against what they cost:
 *
 * - a process moved is taken to cost what a steal takes (steal_from:
 *   reading and moving the victim's queue lines, a few cross-core misses),
 *   averaged per thief, which tracks the distance between the cores
 *   without a calibration run;
 * - a steal brought the time from the steal until the thief next runs dry:
 *   the stolen processes and everything they spawned or woke here;
 * - steals pay while what they brought is at least policy.steal_pays
 *   times what they cost, both averaged over about the last eight steals
 *   (won, paid). The sums, not each steal: skynet's thief steals many
 *   small subtrees that do not pay alone and a few big ones that pay for
 *   all; judged one by one, it rested after the small ones and skynet ran
 *   8-15% slower. 0 turns the rule off (the "eager" policy);
 * - but no steal counts for more than OT__STEAL_WON_CAP times its cost.
 *   Taking spawn_exit's spawner (alone in its queue while its owner was
 *   held up in a page fault, ot__lone_soon_run notwithstanding)
 *   brought 5-40 ms for a cost of ~1 us, and that one steal carried the
 *   average for hundreds of poor steal-halves after it: ~14,000 children
 *   moved per run, each costing the spawner's core the lines its move
 *   dragged across. Capped at 16: spawn_exit 113.2 -> 108.8 ns, and
 *   102.8-120.8 -> 108.4-113.5 over 6 rounds; skynet 87.1 -> 87.5.
 *
 * When steals do not pay the thief rests: a timed sleep outside the idle
 * set (sched/PARK.md), so a victim's pushes do not wake it, starting at
 * OT__REST_MIN_NS and doubling up to OT__REST_MAX_NS while steals keep not
 * paying; when they pay the rest halves (to none below the minimum), and
 * until it is none a thief takes one process per steal, not half. A
 * workload whose moves pay (skynet, a long computation) steals as before;
 * one whose moves do not settles on one probe per rest.
 *
 * Measured with bench/ab.sh (medians of 7-15 alternating rounds, ns,
 * against the eager rule): spawn_exit 228 -> 120, skynet 192 -> 194,
 * link_exit_storm ~650 either way. A factor of 3 gave spawn_exit 117,
 * skynet 208 and link_exit_storm 570; 4, 113-121, 223 and 562-578; a
 * factor judged per steal instead of on the sums, 4: 115, 227, 579; per
 * steal with factors 2-3 link_exit_storm went to 711-850, a mix of small
 * steals and rests worse than either extreme. Minimum rests of 4 and
 * 16 us measured no better than 8. */
bool ot__steal_review(ot__sched_t *s, uint64_t now)
{
    if (!s->steal_k) return false;
    uint64_t brought = now - s->steal_t0;
    uint64_t cost = (uint64_t)s->steal_k * s->steal_cost;
    s->steal_k = 0;
    if (brought > OT__STEAL_WON_CAP * cost) brought = OT__STEAL_WON_CAP * cost;
    if (!s->paid) {
        s->won = brought;
        s->paid = cost;
    } else {
        s->won = s->won - s->won / 8 + brought / 8;
        s->paid = s->paid - s->paid / 8 + cost / 8;
    }
    if (s->won >= (uint64_t)s->rt->policy.steal_pays * s->paid) {
        s->rest_ns /= 2;
        if (s->rest_ns < OT__REST_MIN_NS) s->rest_ns = 0;
        return false;
    }
    s->rest_ns = s->rest_ns ? s->rest_ns * 2 : OT__REST_MIN_NS;
    if (s->rest_ns > OT__REST_MAX_NS) s->rest_ns = OT__REST_MAX_NS;
    return true;
}

ot__proc_t *ot__find_work(ot__sched_t *s)
{
    struct ot_runtime *rt = s->rt;
    bool searched = false;
    if (s->steal_k) { /* a steal to judge (so not alone): read the clock */
        uint64_t now = ot__now_ns();
        if (ot__steal_review(s, now)) {
            if (s->searching) stop_searching(s, false);
            park(s, false, now + s->rest_ns);
            return NULL; /* the loop looks at the local queues, then here again */
        }
    }
    if (rt->nsched > 1) {
        if (!s->searching) {
            int n = atomic_load_explicit(&rt->nsearching, memory_order_relaxed);
            int parked = atomic_load_explicit(&rt->nparked, memory_order_relaxed);
            if (2 * n < (int)rt->nsched - parked) {
                atomic_fetch_add_explicit(&rt->nsearching, 1, memory_order_seq_cst);
                s->searching = true;
            }
        }
        if (s->searching) {
            searched = true;
            ck_backoff_t backoff = 32;
            for (unsigned r = 0; r < rt->policy.spin_rounds; r++) {
                ot__proc_t *p = steal_any(s);
                if (p) {
                    stop_searching(s, true);
                    return p;
                }
                if (work_visible(s, false) ||
                    atomic_load_explicit(&rt->shutdown, memory_order_relaxed)) {
                    stop_searching(s, true);
                    return NULL;
                }
                ck_backoff_eb(&backoff);
            }
            stop_searching(s, false);
        }
    }
    park(s, searched, 0);
    return NULL;
}
