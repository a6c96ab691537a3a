/* Private structures of the runtime, shared by sched/, mailbox/ and the
 * tests. Not installed. */
#ifndef OT_SCHED_INTERNAL_H
#define OT_SCHED_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <ck_epoch.h>

#include "otter/otter.h"
#include "alloc/pool.h"
#include "alloc/stack.h"
#include "mailbox/lanes.h"
#include "mailbox/mpsc.h"
#include "sched/policy.h"
#include "sched/runq.h"
#include "sched/timer.h"
#include "sched/topo.h"
#include "util/idx.h"

/* ---- messages ------------------------------------------------------------ */

struct ot_msg {
    ot__mpsc_node_t node; /* mailbox link: first, so a node is a message */
    struct ot_msg *snext; /* save-queue link (receiver only) */
    ot__pool_t *pool;     /* pool it came from; NULL = malloc */
    ot_pid_t from;
    uint64_t tag;
    ot_ref_t ref;
    uint32_t len;  /* payload bytes (<= OT_MSG_MAX) */
    uint8_t moved; /* the payload area holds an ot__moved_t, not the bytes */
    uint8_t src;   /* sending scheduler's index + 1 (mod 256), 0 = a thread:
                      the receiver's contention check (mailbox/lanes.h) */
    uint16_t kind; /* OT__SIG_MSG for a message, else a signal (signal.c) */
    /* The payload follows: the bytes inline, or an ot__moved_t. Keeping the
     * envelope at 56 bytes lets a message of up to 8 bytes fit one 64-byte
     * line (halving the memory a backed-up mailbox touches). */
};

_Static_assert(sizeof(struct ot_msg) == 56, "an envelope and 8 bytes fill one line");

/* A buffer moved in by ot_send_buf, and what frees it. */
typedef struct {
    void *data;
    void (*dtor)(void *);
} ot__moved_t;

static inline void *ot__msg_payload(const struct ot_msg *m)
{
    void *inl = (void *)(m + 1);
    return m->moved ? ((ot__moved_t *)inl)->data : inl;
}

#define OT__MSG_CLASSES 7 /* 64 .. 4096 bytes, envelope included */
#define OT__MSG_CLASS_MIN_SHIFT 6

/* ---- processes ----------------------------------------------------------- */

#define OT__FIBER_CACHE 64 /* TSan fibers a scheduler keeps for reuse */
/* A TSan fiber whose shadow stack carries more entries than this from dead
 * processes is destroyed, not reused (sched/fiber.h). */
#define OT__FIBER_CARRY_MAX 8192

/* Low two bits of ot__proc.state; the rest is the wait sequence. */
enum {
    OT__ST_RUNNING = 0,  /* running, or owned by whoever will run it */
    OT__ST_WAITING = 1,  /* blocked in receive: a message or its timer wakes it */
    OT__ST_RUNNABLE = 2, /* woken; the waker queues it */
    OT__ST_SLEEPING = 3, /* in ot_sleep: only its timer wakes it */
};

/* Why a process switched back to its scheduler. */
enum { OT__Y_YIELD, OT__Y_WAIT, OT__Y_SLEEP, OT__Y_EXIT };

typedef struct ot__proc ot__proc_t;
typedef struct ot__sched ot__sched_t;

struct ot__proc {
    /* Read by senders while the process may be dying: atomic. pid and dead
     * are read through stale table slots too, at any time (see ot__lookup):
     * only atomic stores write them, never proc_init's memset. */
    _Atomic ot_pid_t pid;
    _Atomic uint64_t state;       /* seq << 2 | OT__ST_* */
    _Atomic uint64_t timer_fired; /* wait seq whose timer fired */
    _Atomic uint32_t futex;       /* attached threads block on it */
    _Atomic uint32_t dead;        /* 1 from its death until the PCB's next publish */

    /* Owned by the process / the scheduler running it. */
    void *sp;           /* saved context */
    ot__stack_t *stack; /* given at first run; NULL before, and for
                           attached threads */
    ot__stack_pools_t *stack_home;
    ot__pool_t *pool; /* PCB's pool; NULL = aligned_alloc */
    void *pool_link;  /* PCB pool free-list link */
    ot_entry_fn fn;
    void *arg;
    ot__sched_t *sched; /* scheduler running it, or that last did */
    ot__proc_t *qnext;  /* injection-queue / reclaim-list link */
    uint8_t prio;
    uint8_t yield_reason;
    uint8_t external; /* an attached thread, not a process */
    uint8_t low_skips;
    uint8_t has_deadline;
    uint8_t stack_cls; /* stack size class, for the first run */
    uint8_t bulk;      /* spawning too many children to keep in a fresh deque
                          (sched/sched.c); cleared when it waits or exits */
    uint64_t wait_seq;

    /* Receive state (the process only). */
    ot_msg_t *save_head, *save_tail; /* looked at, not taken, in order */
    size_t save_len;
    ot_msg_t *mark;    /* newest-ref mark: scan after this */
    ot_ref_t mark_ref; /* 0 = no mark */
    uint64_t scanned;  /* messages examined by receives (tests) */
    /* Lanes (mailbox/lanes.h): the ones installed, or NULL; messages taken
     * from the queues and not yet sorted into the save queue (so that an
     * exit in the middle frees them); and the contention check: the source
     * (+1) of the last message taken while the queue was not empty (0: it
     * was), the senders of the last two messages, and the count of source
     * changes seen in such runs from senders that keep sending. */
    ot__lanes_t *lanes;
    ot_msg_t *arr_head, *arr_tail;
    ot_pid_t from1, from2; /* senders of the last two messages taken */
    uint16_t last_src;
    uint16_t lane_next; /* lane taken from, and how many in a row */
    uint16_t lane_run;
    uint32_t contended;

    void *tsan_fiber;
    uint32_t tsan_carried; /* shadow-stack entries its fiber came with */
    void *asan_fake;
    char name[24];

    /* Signals (sched/signal.c). nsig counts signals pushed and not yet
     * handled (senders add, the process subtracts); the rest is the
     * process's own. */
    _Atomic uint32_t nsig;
    uint8_t trap_exit;
    uint8_t exiting;    /* its exit has begun: signals no longer kill it */
    uint8_t defer_exit; /* in ot_dirty_run: a fatal signal waits (pending) */
    uint8_t in_dirty;
    uint8_t mbox_flagged;           /* large_mailbox reported, not yet below half */
    struct ot__sigtab *sigtab;      /* links and monitors; NULL when none */
    struct ot_reason *pending_exit; /* deferred fatal reason */
    _Atomic uint64_t reductions;    /* owner-written, for process_info */
    /* Registered name (sched/registry.c): the registry's node, or NULL.
     * Written under the registry's lock, read by anyone (acquire). */
    _Atomic(struct ot__regnode *) regname;

    ot__mpsc_t mbox; /* producers' cache line inside */
};

/* ---- schedulers ---------------------------------------------------------- */

#define OT__BATCHES 64      /* dead-PCB batches a scheduler may have in flight */
#define OT__BATCH_PROCS 256 /* dead PCBs per batch (more join its list) */
/* A parked scheduler with batches in flight wakes after this to free them. */
#define OT__RECLAIM_RECHECK_NS 2000000u

/* A thief's rest after steals that did not pay (sched/park.c). */
#define OT__REST_MIN_NS 8000u
#define OT__REST_MAX_NS 1000000u
/* What one steal may count for in the steal rule, in times its cost
 * (ot__steal_review). */
#define OT__STEAL_WON_CAP 16u
/* How long a thief watches a victim's lone queued process (sched/park.c). */
#define OT__LONE_WAIT_NS 20000u

/* The fresh deque: never-run children, newest run first (sched/sched.c). */
#define OT__FRESH 64
/* At most this many of them from one parent: past that it is a bulk
 * spawner, whose children go to the run queue, where thieves see them. */
#define OT__FRESH_PER_PARENT 16
/* One pick in OT__FRESH_AGE looks at the deque's oldest child, and moves it
 * to the run queue if it has waited OT__FRESH_WAIT picks and no child was
 * aged for as long. */
#define OT__FRESH_AGE 1024u
#define OT__FRESH_WAIT 1048576u
/* An offered child nobody took goes back to the fresh deque after this
 * many picks (~1 ms at 100 ns a pick): time for an idle scheduler to wake. */
#define OT__OFFER_WAIT 8192u

struct ot__sched {
    /* Owner-only, hot. */
    unsigned idx;
    struct ot_runtime *rt;
    ot__proc_t *current;
    ot__proc_t *runnext;
    unsigned fresh_h, fresh_t; /* fresh[] holds [fresh_h, fresh_t), mod OT__FRESH */
    int32_t budget;            /* reductions left in this turn */
    uint32_t tick;
    bool searching;
    bool spawn_yield; /* the current process yields inside a spawn */
    /* The last steal, judged when the thief next runs dry (sched/park.c). */
    uint32_t steal_k;    /* processes it moved; 0 when judged */
    uint64_t steal_t0;   /* when */
    uint64_t rest_ns;    /* current rest after poor steals; 0 after a good one */
    uint64_t steal_cost; /* ns a steal takes, averaged */
    uint64_t won, paid;  /* what recent steals brought and cost, averaged */
    void *sp;            /* the scheduler's own context */
    void *tsan_fiber;
    void *asan_fake;
    const void *asan_bottom;
    size_t asan_size;
    ot__proc_t *pending; /* switched out directly to another process:
                            its wait is published by whoever lands */
    bool from_proc;      /* the last switch came from a process */
    uint64_t rng;
    uint64_t next_ref;
    ot__proc_t *fresh[OT__FRESH];   /* never-run children (sched/sched.c) */
    ot_pid_t fresh_by[OT__FRESH];   /* the pid of the process that spawned each */
    uint32_t fresh_tick[OT__FRESH]; /* the tick when each was pushed */
    uint32_t fresh_aged;            /* the tick of the last aging */

    ot__runq_t rq[3]; /* max, high, normal+low */

    ot__pool_t pcb_pool;
    ot__pool_t msg_pool[OT__MSG_CLASSES];
    ot__stack_pools_t stacks;
    ot__pool_rcache_t rcache; /* frees into other schedulers' pools */
    ot__idx_cache_t pid_cache;
    ot__idx_cache_t timer_cache;
    ot__timer_heap_t timers;

    /* This scheduler's record in rt->epoch (sched/reclaim.c): in a read
     * section whenever the thread runs, renewed at every quiescent point. */
    ck_epoch_record_t *erec;

    /* Batches of dead PCBs waiting for their grace period: FIFO by ticket
     * (the epoch they were retired in); freed here, into warm pools, once
     * the epoch has moved two past the ticket.
     * [batch_head, batch_tail) are in flight; batch[batch_tail] collects
     * the dying (ndead of them in procs[]) while it is not in flight. The
     * PCBs are an array, not a list through them: freeing a batch after
     * its grace period meets them cold, and an array lets it load them
     * ahead where a list made it wait for each one's link (a fifth of
     * skynet's time). Deaths that find no free batch (the epoch lags)
     * or a full array go on the `dead` list (through qnext), which joins
     * the next batch. */
    struct {
        unsigned ticket;
        ot__proc_t *list;
        unsigned n;
        ot__proc_t *procs[OT__BATCH_PROCS];
    } batch[OT__BATCHES];
    unsigned batch_head, batch_tail;
    ot__proc_t *dead;
    unsigned ndead, nover; /* in batch[batch_tail].procs; on `dead` since the
                              last hand-off */

    /* Counters: written by the owner (relaxed), read by anyone. */
    _Atomic uint64_t n_spawned, n_died, n_switches, n_steals, n_stolen, n_parks, n_wakeups,
        n_runnext, n_rests;

    /* The offer: one never-run child from the fresh deque, shown to idle
     * schedulers (sched/sched.c, fresh_offer). The owner stores into it
     * only when it is empty; whoever exchanges it out runs the child. */
    alignas(64) _Atomic(ot__proc_t *) offer;
    uint32_t offer_tick; /* owner: the tick of the offer */

    /* Injection queue: processes handed over by other threads. Anyone. */
    alignas(64) pthread_mutex_t inj_lock;
    ot__proc_t *inj_head, *inj_tail;
    _Atomic uint32_t inj_len;
    ot__timer_req_t *tinbox; /* timers armed by non-schedulers */
    _Atomic uint32_t tinbox_len;

    /* Parking. */
    alignas(64) _Atomic int parked; /* 1: in the idle set, claimable; 3: resting */
    _Atomic uint32_t wake_word;     /* futex */
    _Atomic int wake_searching;     /* woken to search (counted in nsearching) */

    pthread_t thread;
    void *altstack;

    /* TSan only: fibers of processes that died here, for the next ones
     * started here, and the shadow-stack entries each carries
     * (sched/fiber.h). Last: cold in other builds. */
    void *fiber_cache[OT__FIBER_CACHE];
    uint32_t fiber_carried[OT__FIBER_CACHE];
    unsigned nfiber_cache;
};

/* ---- the runtime --------------------------------------------------------- */

typedef struct ot__slot {
    _Atomic(ot__proc_t *) p;
    uint32_t gen; /* touched only by the index's owner */
} ot__slot_t;

struct ot_runtime {
    ot_config_t cfg;
    ot__policy_t policy;
    unsigned nsched;
    ot__sched_t **scheds;
    ot__topo_t topo;
    int default_stack_cls; /* class of the default stack size (alloc/stack.h) */

    ot__slot_t *table;
    size_t table_bytes;
    uint32_t max_procs;
    bool pid_caches;         /* schedulers cache pids (sched/proc.c, pid_cache) */
    unsigned nlanes;         /* lanes a contended mailbox splits into */
    uint32_t lane_threshold; /* source changes before it does */
    ot__idx_global_t pids;

    ot__timer_entry_t *tentries;
    size_t tentries_bytes;
    ot__idx_global_t timer_ids;

    /* Apart: every push onto a local queue reads nparked (wake_one_if_needed),
     * and searching thieves write nsearching twice per steal. */
    alignas(64) _Atomic int nsearching;
    alignas(64) _Atomic int nparked;
    alignas(64) _Atomic int shutdown;
    _Atomic int killing;
    _Atomic uint32_t rr; /* round robin for external spawns */
    _Atomic uint64_t ext_spawned, ext_died, ext_refs;
    _Atomic uint64_t attached; /* attached threads (counted in ext_spawned) */

    /* Reclaimer thread: frees, after an RCU grace period, what is freed
     * rarely: attached threads' PCBs and ot__defer_free's blocks. */
    pthread_t reclaimer;
    pthread_mutex_t rlock;
    pthread_cond_t rcond;
    ot__proc_t *rpending; /* attached threads' PCBs, freed by the reclaimer */
    void **rdeferred;     /* ot__defer_free: a list linked through word 0 */
    /* Registry (sched/registry.c). */
    struct cds_lfht *reg_ht;
    pthread_mutex_t reg_lock;
    struct ot__dirty *dirty;   /* sched/dirty.c */
    struct ot__sysmon *sysmon; /* sched/sysmon.c; NULL until first used */
    bool rstop;
    /* The epoch that dead PCBs wait on (sched/reclaim.c): every scheduler
     * and every external thread inside ot__ext_rcu_enter/leave holds a
     * record in it. */
    alignas(64) ck_epoch_t epoch;
};

/* ---- shared internals ---------------------------------------------------- */

extern struct ot_runtime *ot__rt;   /* the running runtime, or NULL */
extern _Atomic uint64_t ot__rt_gen; /* bumped by every start */

/* The calling thread's scheduler (NULL elsewhere). Not inlined, and with a
 * compiler barrier: a process can move between threads across a switch, so
 * a thread-local address must never be cached across one. */
ot__sched_t *ot__tls_sched(void);
void ot__tls_set_sched(ot__sched_t *s);
/* The calling thread's attached process, or NULL. */
ot__proc_t *ot__tls_ext(void);
void ot__tls_set_ext(ot__proc_t *p);
/* The calling process (scheduler's current, or the attached one). */
ot__proc_t *ot__self(void);

/* External threads enter and leave the RCU read side around a lookup. */
void ot__ext_rcu_enter(void);
void ot__ext_rcu_leave(void);

/* Is p, found in a table slot, alive as `pid`?
 *
 * A death does not clear the table slot: it sets p->dead, on a line of the
 * PCB that the dying process's scheduler already holds, while the slot's
 * line belongs to whoever spawned into it last (a cross-core miss per
 * death when a thief ran the child, and the store the death path's fences
 * then waited on). So a slot may point to a dead PCB, or to one reused
 * since by a process with another pid. Reused PCBs stay PCBs (pool memory
 * is type-stable: it goes back to the system only when the runtime stops),
 * and the PCBs that are not pool memory (processes spawned from a plain
 * thread, attached threads), which are freed, still clear their slot.
 *
 * Order: dead first (acquire), then pid. proc_publish stores the new pid,
 * then dead = 0 (release); so a reader that sees that 0 sees the new pid,
 * and a stale pid never matches a PCB being reused. A reader that sees a 0
 * from before the death read it before the death's store of 1, which the
 * reclamation's fence and ticket follow (sched/reclaim.c): the PCB cannot
 * be reused while the reader is inside its read section. */
static inline bool ot__proc_is(ot__proc_t *p, ot_pid_t pid)
{
    return !atomic_load_explicit(&p->dead, memory_order_acquire) &&
           atomic_load_explicit(&p->pid, memory_order_relaxed) == pid;
}

/* Look a pid up. Caller is inside the RCU read side (a scheduler thread, or
 * between ot__ext_rcu_enter/leave). NULL when no live process has it. */
static inline ot__proc_t *ot__lookup(struct ot_runtime *rt, ot_pid_t pid)
{
    uint32_t idx = (uint32_t)pid;
    /* Acquire: pairs with the release store publishing the PCB in spawn. */
    ot__proc_t *p = atomic_load_explicit(&rt->table[idx].p, memory_order_acquire);
    return p && ot__proc_is(p, pid) ? p : NULL;
}

/* The live process in table slot idx, or NULL (walks over the table). */
static inline ot__proc_t *ot__slot_live(struct ot_runtime *rt, uint32_t idx)
{
    ot__proc_t *p = atomic_load_explicit(&rt->table[idx].p, memory_order_acquire);
    if (!p || atomic_load_explicit(&p->dead, memory_order_acquire)) return NULL;
    ot_pid_t pid = atomic_load_explicit(&p->pid, memory_order_relaxed);
    return (uint32_t)pid == idx ? p : NULL;
}

/* p leaves the table: lookups of its pid fail from now on (ot__proc_is).
 * Release, so that what it did before is visible to whoever acquires its
 * death (reclaim orders the ticket after it with a full fence). */
static inline void ot__proc_unlink(ot__proc_t *p)
{
    atomic_store_explicit(&p->dead, 1, memory_order_release);
}

static inline bool ot__pid_in_range(struct ot_runtime *rt, ot_pid_t pid)
{
    uint32_t idx = (uint32_t)pid;
    return idx != 0 && idx < rt->max_procs;
}

/* Make a woken process runnable (after the caller won the CAS to
 * OT__ST_RUNNABLE). `s` is the calling thread's scheduler or NULL. */
void ot__make_runnable(ot__sched_t *s, ot__proc_t *p, bool from_timer);
/* On landing in a process after any switch: finish the switch-out of the
 * process that handed over directly (publish its wait). */
void ot__sched_settle(ot__sched_t *s);
/* Switch from process p back to its scheduler with `reason`. Returns when
 * p is resumed (never for OT__Y_EXIT). */
void ot__proc_switch_out(ot__proc_t *p, int reason);
/* Block p (a process or attached thread) until its mailbox may have grown,
 * its deadline (ns, 0 = none) passed, or it was woken. */
void ot__proc_wait(ot__proc_t *p, uint64_t deadline_ns);

/* Put p in s's run-next slot (owner; p runs when the current process
 * stops); the process that held the slot goes to the queue. */
void ot__runnext_push(ot__sched_t *s, ot__proc_t *p);
/* A child spawned on s (owner) takes the run-next slot; a never-run child it
 * displaces goes to the fresh deque (sched/sched.c). */
void ot__spawn_push(ot__sched_t *s, ot__proc_t *p);
/* Queue a runnable process on the calling scheduler s (owner). */
void ot__local_push(ot__sched_t *s, ot__proc_t *p);
/* Queue a process on scheduler s from any thread, waking s if parked. */
void ot__inject(ot__sched_t *s, ot__proc_t *p);
/* Take one process from s's injection queue (any thread), or NULL. */
ot__proc_t *ot__inj_pop(ot__sched_t *s);
/* Take s's offered never-run child, if any (any thread). */
static inline ot__proc_t *ot__offer_take(ot__sched_t *s)
{
    if (!atomic_load_explicit(&s->offer, memory_order_relaxed)) return NULL;
    /* Acquire: pairs with the owner's release store of the offer (the
     * child's control block, written at spawn, is visible). */
    return atomic_exchange_explicit(&s->offer, NULL, memory_order_acquire);
}

/* Judge s's last steal at `now`, when the work it brought has run out (the
 * rule is at its definition, sched/park.c): adjusts s->rest_ns and returns
 * whether s should rest now. */
bool ot__steal_review(ot__sched_t *s, uint64_t now);

/* Wake one parked scheduler if there is new work and nobody searches. */
void ot__wake_one_if_needed(struct ot_runtime *rt);
void ot__wake_sched(ot__sched_t *s);
/* The scheduler loop (sched/sched.c) and parking (sched/park.c). */
void ot__sched_loop(ot__sched_t *s);
ot__proc_t *ot__find_work(ot__sched_t *s);
/* s, counted as searching, found work of its own: it stops searching, and
 * wakes another searcher if it was the last (sched/park.c). */
void ot__stop_searching(ot__sched_t *s);
/* Thief: true when q's one queued process should be left to v, whose
 * owner took from q within `wait_ns` (sched/park.c). */
bool ot__lone_soon_run(ot__sched_t *v, ot__runq_t *q, uint64_t wait_ns);

/* Messages (mailbox/msg.c). */
ot_msg_t *ot__msg_alloc(ot__sched_t *s, size_t len);
void ot__msg_release(ot_msg_t *m); /* free, dtor included */
/* Deliver m to `to`: 0, or -ESRCH (m freed). Caller in RCU read side. */
int ot__msg_deliver(struct ot_runtime *rt, ot__sched_t *s, ot_pid_t to, ot_msg_t *m);
/* Send a message with the given sender, tag, reference and a copy of
 * `len` bytes at data, from any thread (the runtime's own notices: EXIT,
 * DOWN, info replies, monitor events). 0, -ESRCH or -ENOMEM. */
int ot__msg_send_as(ot_pid_t from, ot_pid_t to, uint64_t tag, ot_ref_t ref, const void *data,
                    size_t len);
/* Deliver a filled message from any thread (entering the RCU read side off
 * the schedulers). 0, or -ESRCH (m freed). */
int ot__msg_post(ot_pid_t to, ot_msg_t *m);
/* Free every message p still holds (process dead; caller is its consumer):
 * a signal gets its dead-letter answer. wait_busy: wait through half-done
 * pushes (after the grace period, when none can stay half done). */
void ot__mailbox_drain_slow(ot__proc_t *p, bool wait_busy);
static inline void ot__mailbox_drain(ot__proc_t *p, bool wait_busy)
{
    /* Most processes die with nothing unread: head at the stub and no push
     * since (a push, even half done, moves tail off the stub). Inline, so
     * that this common case costs no call (twice per process). */
    if (!p->save_head && !p->arr_head && !p->lanes && ot__mpsc_empty(&p->mbox)) return;
    ot__mailbox_drain_slow(p, wait_busy);
}
/* Push m onto p's mailbox: the lane of m's sender once p has lanes. */
static inline void ot__mbox_push(ot__proc_t *p, ot_msg_t *m)
{
    ot__mpsc_push(ot__lanes_pick(&p->mbox, m->from), &m->node);
}

/* Processes (sched/proc.c). */
void ot__proc_destroy(ot__sched_t *s, ot__proc_t *p);
/* Give p its stack before its first run; false when memory is exhausted. */
bool ot__proc_start_stack(ot__sched_t *s, ot__proc_t *p);

/* Signals (sched/signal.c). The kind of an envelope: */
enum {
    OT__SIG_MSG = 0,       /* an ordinary message */
    OT__SIG_LINK = 1,      /* from wants a link */
    OT__SIG_UNLINK = 2,    /* from removed its link */
    OT__SIG_EXIT = 3,      /* ot_exit_pid: payload a reason */
    OT__SIG_EXIT_LINK = 4, /* a linked process died: payload its reason */
    OT__SIG_MONITOR = 5,   /* from monitors us under ref */
    OT__SIG_DEMONITOR = 6, /* the monitor ref is gone */
    OT__SIG_DOWN = 7,      /* the process we monitor under ref died */
    OT__SIG_INFO = 8,      /* ot_process_info request; reply under ref */
};
/* Reply to an info request (an ordinary message, internal tag). */
#define OT__TAG_INFO_REPLY (OT_TAG_SYSTEM + 100)
/* Completion of ot_dirty_run (an ordinary message, internal tag). */
#define OT__TAG_DIRTY_DONE (OT_TAG_SYSTEM + 101)

struct ot_reason;
/* Send a signal of `kind` from `from` to `to` (any thread): push it, count
 * it in nsig and wake `to` if it waits or sleeps. 0 or -ESRCH/-ENOMEM. */
int ot__sig_send(ot_pid_t from, ot_pid_t to, unsigned kind, ot_ref_t ref,
                 const struct ot_reason *r);
/* p (the caller, in its own context) popped signal m: handle it. Returns
 * the message m has become (an EXIT or DOWN message, to be treated as an
 * arrival), or NULL when m was consumed. Does not return when the signal
 * ends p. */
ot_msg_t *ot__sig_handle(ot__proc_t *p, ot_msg_t *m);
/* A dead process's mailbox still held m (caller: its last consumer): answer
 * a link, monitor or info request with noproc, and free m. */
void ot__sig_dead_letter(ot__proc_t *p, ot_msg_t *m);
/* p is ending with reason r (NULL = normal), in its own context: take in the
 * signals that arrived, free its name, and tell its links and monitors. */
void ot__proc_exit_signals(ot__proc_t *p, const struct ot_reason *r);
/* A fatal reason kept during ot_dirty_run, when there was no memory for a
 * copy (it is `killed`); and the free of p->pending_exit either way. */
extern struct ot_reason ot__pending_fallback;
void ot__pending_exit_free(ot__proc_t *p);
/* ot__proc_exit_signals, then switch out for good. */
_Noreturn void ot__proc_exit(ot__proc_t *p, const struct ot_reason *r);
/* Pull every arrived signal and message into the save queue, handling the
 * signals (mailbox/receive.c). */
void ot__mailbox_pull(ot__proc_t *p);
/* At a scheduling point outside receive: handle signals that came. */
static inline void ot__sig_safe_point(ot__proc_t *p)
{
    /* Acquire: pairs with the sender's increment, made after its push. */
    if (atomic_load_explicit(&p->nsig, memory_order_acquire)) ot__mailbox_pull(p);
}
/* p gives up the rest of its turn (a process outside receive), then handles
 * what signals came meanwhile. */
static inline void ot__proc_yield(ot__proc_t *p)
{
    ot__proc_switch_out(p, OT__Y_YIELD);
    ot__sig_safe_point(p);
}

/* Process information (sched/info.c): answer request m (p's own context). */
void ot__info_answer(ot__proc_t *p, ot_msg_t *m);
/* System monitor (sched/sysmon.c). */
extern _Atomic uint64_t ot__sysmon_large; /* mailbox limit; 0 = off */
void ot__sysmon_large_mailbox(ot__proc_t *p, size_t len);
static inline void ot__sysmon_check_mbox(ot__proc_t *p, size_t len)
{
    uint64_t lim = atomic_load_explicit(&ot__sysmon_large, memory_order_relaxed);
    if (lim && len > lim) ot__sysmon_large_mailbox(p, len);
}
void ot__sysmon_mbox_shrunk(ot__proc_t *p);
void ot__sysmon_proc_exit(ot__proc_t *p);
void ot__sysmon_stop(struct ot_runtime *rt);
/* Dirty pool (sched/dirty.c). */
int ot__dirty_start(struct ot_runtime *rt);
void ot__dirty_stop(struct ot_runtime *rt);

/* Registry (sched/registry.c). */
int ot__registry_init(struct ot_runtime *rt);
/* All threads joined: free every node left. */
void ot__registry_fini(struct ot_runtime *rt);
/* p is dying (in its own context, or at destroy): free its name, if any. */
void ot__registry_proc_exit(ot__proc_t *p);
/* Copy p's registered name into buf ("" when none). Any thread, inside the
 * RCU read side. */
void ot__registry_name_of(ot__proc_t *p, char *buf, size_t n);

/* Reclamation (sched/reclaim.c). */
/* Set up rt->epoch and the external threads' records; free every record at
 * stop (all threads joined). */
void ot__epoch_init(struct ot_runtime *rt);
void ot__epoch_fini(struct ot_runtime *rt);
/* Give s its record (before its thread starts). */
int ot__epoch_sched_init(ot__sched_t *s);
/* A scheduler thread enters its read section when it starts or wakes from a
 * park, and leaves it when it parks or ends. */
void ot__epoch_sched_online(ot__sched_t *s);
void ot__epoch_sched_offline(ot__sched_t *s);
/* Free `ptr` with free() after an RCU grace period (any thread; for slow
 * paths such as the registry: it takes a lock). */
void ot__defer_free(struct ot_runtime *rt, void *ptr);
int ot__reclaim_start(struct ot_runtime *rt);
/* Close the batch collecting the dead: it starts its grace period (owner). */
void ot__reclaim_handoff(ot__sched_t *s);
/* A process died on s (owner): it is freed after a grace period. */
static inline void ot__reclaim_add(ot__sched_t *s, ot__proc_t *p)
{
    if (s->batch_tail - s->batch_head < OT__BATCHES && s->ndead < OT__BATCH_PROCS) {
        s->batch[s->batch_tail % OT__BATCHES].procs[s->ndead] = p;
        if (++s->ndead == OT__BATCH_PROCS) ot__reclaim_handoff(s);
        return;
    }
    p->qnext = s->dead;
    s->dead = p;
    if (++s->nover % OT__BATCH_PROCS == 0) ot__reclaim_handoff(s);
}
/* Free the batches whose grace period has ended, at a quiescent point
 * (owner): s's read section is renewed and the epoch pushed on. */
void ot__reclaim_poll(ot__sched_t *s);
/* At stop, all threads joined: end a grace period, free every batch. */
void ot__reclaim_flush(ot__sched_t *s);
void ot__reclaim_stop(struct ot_runtime *rt);
/* A scheduler's quiescent point: it holds no PCB or registry pointer. */
void ot__rcu_quiescent(ot__sched_t *s);

/* Timers (sched/timer.c). */
void ot__timers_run(ot__sched_t *s, uint64_t now_ns);
/* Arm p's wake-up at `deadline` (ns) for its current wait_seq, on s. */
int ot__timer_arm_wake(ot__sched_t *s, ot__proc_t *p, uint64_t deadline);
uint64_t ot__now_ns(void);

/* Stack overflow reporting (sched/overflow.c). */
_Noreturn void ot__overflow_report(ot__proc_t *p, const char *how);
int ot__overflow_install(void);
int ot__overflow_thread_init(ot__sched_t *s);
void ot__overflow_thread_fini(ot__sched_t *s);
void ot__overflow_uninstall(void);

/* Futex helpers. */
void ot__futex_wait(_Atomic uint32_t *word, uint32_t val, int64_t timeout_ns);
void ot__futex_wake(_Atomic uint32_t *word, int n);

/* Add n to a counter only its owner (the scheduler's thread) writes: a plain
 * increment published with `order` (others only read it). */
static inline void ot__count(_Atomic uint64_t *c, uint64_t n, memory_order order)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, order);
}

#endif
