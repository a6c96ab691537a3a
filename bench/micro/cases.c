/* Micro-benchmark bodies: otter's hot primitives against the library
 * alternatives, in the same binary on the same machine. See cases.h for the
 * calling convention and README.md for what each case measures.
 *
 * Each comparison is written once, generic over a `kind` that is a
 * compile-time constant at every call (the helpers are always_inline), so
 * ours and theirs run the very same loop with only the queue/allocator
 * operations differing. */
#define _GNU_SOURCE  /* pthread_attr_setaffinity_np, CPU_SET */
#define _LGPL_SOURCE /* liburcu: the static inline wfcqueue, no library call */

#include "cases.h"

#include "alloc/pool.h"
#include "mailbox/mpsc.h"
#include "sched/arch/ctx.h"
#include "sched/runq.h"

#include <ck_fifo.h>
#include <ck_pr.h>
#include <ck_ring.h>
#include <urcu/wfcqueue.h>

#include <pthread.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>

#if !defined(CK_F_FIFO_MPMC)
#error "ck_fifo_mpmc needs a double-width CAS (CK_F_PR_CAS_PTR_2) on this target"
#endif

#define OTB_INLINE static inline __attribute__((always_inline))

/* ------------------------------------------------------------------------ */
/* Common helpers                                                           */
/* ------------------------------------------------------------------------ */

/* Make the compiler assume `p` (and all memory) is read here, so that it
 * can neither drop a malloc/free pair nor stores into an object. */
#define OTB_ESCAPE(p) __asm__ __volatile__("" : : "r"(p) : "memory")

static inline uint64_t otb_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline double otb_secs(uint64_t t0, uint64_t t1)
{
    return (double)(t1 - t0) * 1e-9;
}

/* One step of a spin-wait: a pause, and every 1024 steps the CPU is given
 * away in case the other side was preempted (the machine may be shared). */
static inline void otb_spin(unsigned *spins)
{
    if (++*spins % 1024 == 0) {
        sched_yield();
        return;
    }
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline uint64_t otb_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* --- two pinned threads -------------------------------------------------- */

/* The first two CPUs this process may run on; -1 if there are fewer. */
static int otb_two_cpus(int cpu[2])
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int k = 0;
    for (int c = 0; c < CPU_SETSIZE && k < 2; c++)
        if (CPU_ISSET(c, &set)) cpu[k++] = c;
    return k == 2 ? 0 : -1;
}

/* Run a(arg) and b(arg) on two threads pinned to two different CPUs and
 * wait for both. -1 (nothing run) when two CPUs are not available. */
static int otb_run_pinned(void *(*a)(void *), void *(*b)(void *), void *arg)
{
    int cpu[2];
    if (otb_two_cpus(cpu) != 0) return -1;
    void *(*fn[2])(void *) = {a, b};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        pthread_attr_t attr;
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(cpu[i], &set);
        pthread_attr_init(&attr);
        int rc = pthread_attr_setaffinity_np(&attr, sizeof set, &set);
        if (rc == 0) rc = pthread_create(&th[i], &attr, fn[i], arg);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            /* The first thread would wait at the start barrier forever. */
            fprintf(stderr, "otter-micro: cannot start a pinned thread: %s\n", strerror(rc));
            abort();
        }
    }
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    return 0;
}

/* Start line for two threads: neither starts its loop before both exist. */
static void otb_barrier(_Atomic unsigned *ready)
{
    atomic_fetch_add_explicit(ready, 1, memory_order_acq_rel);
    unsigned spins = 0;
    while (atomic_load_explicit(ready, memory_order_acquire) < 2)
        otb_spin(&spins);
}

/* --- baseline: the cost of moving a cache line between the two CPUs ----- */

/* The two-thread cases are bounded by how fast a cache line travels between
 * the two CPUs, which depends on where they sit (same core complex or not;
 * on a VM, where the host put the vCPUs at that moment). This ping-pong
 * measures it in the same run, so the two-thread figures can be read
 * against it. One iteration = one round trip of one line. */
typedef struct otb_pingpong {
    alignas(64) _Atomic uint64_t ball; /* odd: B's turn; even: A's turn */
    alignas(64) _Atomic unsigned ready;
    uint64_t n, t0, t1;
} otb_pingpong_t;

static void *otb_ping(void *arg)
{
    otb_pingpong_t *p = arg;
    otb_barrier(&p->ready);
    p->t0 = otb_now_ns();
    for (uint64_t i = 0; i < p->n; i++) {
        atomic_store_explicit(&p->ball, 2 * i + 1, memory_order_release);
        unsigned spins = 0;
        while (atomic_load_explicit(&p->ball, memory_order_acquire) != 2 * i + 2)
            otb_spin(&spins);
    }
    p->t1 = otb_now_ns();
    return NULL;
}

static void *otb_pong(void *arg)
{
    otb_pingpong_t *p = arg;
    otb_barrier(&p->ready);
    for (uint64_t i = 0; i < p->n; i++) {
        unsigned spins = 0;
        while (atomic_load_explicit(&p->ball, memory_order_acquire) != 2 * i + 1)
            otb_spin(&spins);
        atomic_store_explicit(&p->ball, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

double otb_xcore_pingpong(uint64_t n)
{
    otb_pingpong_t *p = aligned_alloc(64, sizeof *p);
    if (!p) return OTB_ERR_MEM;
    memset(p, 0, sizeof *p);
    atomic_init(&p->ball, 0);
    atomic_init(&p->ready, 0);
    p->n = n;
    double s =
        otb_run_pinned(otb_ping, otb_pong, p) != 0 ? OTB_ERR_CPUS : otb_secs(p->t0, p->t1);
    free(p);
    return s;
}

/* ------------------------------------------------------------------------ */
/* 1. Context switch: ot__ctx_switch vs glibc swapcontext                   */
/* ------------------------------------------------------------------------ */

enum { OTB_STACK_SIZE = 64 << 10 };

static void *otb_stack_new(void)
{
    void *s =
        mmap(NULL, OTB_STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return s == MAP_FAILED ? NULL : s;
}

typedef struct otb_ctx_pair {
    void *main_sp; /* the benchmark thread, while the coroutine runs */
    void *co_sp;   /* the coroutine, while the benchmark thread runs */
} otb_ctx_pair_t;

/* The coroutine: switch straight back, forever. It is abandoned (parked in
 * its switch) when the case ends; its stack is then unmapped. */
static void otb_ctx_co(void *arg)
{
    otb_ctx_pair_t *c = arg;
    for (;;)
        ot__ctx_switch(&c->co_sp, c->main_sp);
}

double otb_ctx_otter(uint64_t n)
{
    char *stack = otb_stack_new();
    if (!stack) return OTB_ERR_MEM;
    otb_ctx_pair_t c = {0};
    c.co_sp = ot__ctx_init(stack + OTB_STACK_SIZE, otb_ctx_co, &c);
    ot__ctx_switch(&c.main_sp, c.co_sp); /* boot the coroutine, untimed */

    uint64_t t0 = otb_now_ns();
    for (uint64_t i = 0; i < n; i++)
        ot__ctx_switch(&c.main_sp, c.co_sp);
    uint64_t t1 = otb_now_ns();

    munmap(stack, OTB_STACK_SIZE);
    return otb_secs(t0, t1);
}

/* makecontext passes only int arguments: the contexts are file statics
 * (Google Benchmark runs single-threaded cases one at a time). */
static ucontext_t otb_uc_main, otb_uc_co;

static void otb_uc_co_fn(void)
{
    for (;;)
        swapcontext(&otb_uc_co, &otb_uc_main);
}

double otb_ctx_ucontext(uint64_t n)
{
    char *stack = otb_stack_new();
    if (!stack) return OTB_ERR_MEM;
    if (getcontext(&otb_uc_co) != 0) {
        munmap(stack, OTB_STACK_SIZE);
        return OTB_ERR_CHECK;
    }
    otb_uc_co.uc_stack.ss_sp = stack;
    otb_uc_co.uc_stack.ss_size = OTB_STACK_SIZE;
    otb_uc_co.uc_link = NULL;
    makecontext(&otb_uc_co, otb_uc_co_fn, 0);
    swapcontext(&otb_uc_main, &otb_uc_co); /* boot the coroutine, untimed */

    uint64_t t0 = otb_now_ns();
    for (uint64_t i = 0; i < n; i++)
        swapcontext(&otb_uc_main, &otb_uc_co);
    uint64_t t1 = otb_now_ns();

    munmap(stack, OTB_STACK_SIZE);
    return otb_secs(t0, t1);
}

/* ------------------------------------------------------------------------ */
/* 2. Mailbox: ot__mpsc vs liburcu cds_wfcq vs ck_fifo_mpmc                 */
/* ------------------------------------------------------------------------ */

/* MB_WFCQ dequeues with __cds_wfcq_dequeue_nonblocking: a half-done enqueue
 * comes back as "retry", exactly like ours (OT__MPSC_BUSY), and both retry
 * with the same spin, so the comparison is of the queues alone.
 * MB_WFCQ_BLOCKING (two-thread case only) uses __cds_wfcq_dequeue_blocking,
 * whose own wait sleeps 10 ms (poll) after 10 cpu_relax: see README.md. */
typedef enum { MB_OTTER, MB_WFCQ, MB_WFCQ_BLOCKING, MB_CK } otb_mb_kind;

enum {
    OTB_MB_RING = 64,     /* messages cycled through by the one-thread cases */
    OTB_MB_BURST = 32,    /* messages per burst */
    OTB_MB_WINDOW = 1024, /* messages of the two-thread case (max in flight) */
    OTB_MB_PUBLISH = 64,  /* the consumer publishes its progress this often */
};

/* A message: one cache line, the queue's link first (so a link pointer is
 * the message pointer), then the payload. ck_fifo_mpmc is not intrusive in
 * the same way (an entry carries a value pointer, and dequeue hands back
 * the previous entry as garbage), so its entry lives in the message too and
 * its value is the message itself. */
typedef struct otb_msg {
    alignas(64) union {
        ot__mpsc_node_t otter;
        struct cds_wfcq_node wfcq;
        ck_fifo_mpmc_entry_t ck;
    } link;
    uint64_t seq;
} otb_msg_t;

/* One queue of each kind, producer and consumer ends on their own lines. */
typedef struct otb_mbq {
    union {
        ot__mpsc_t otter;
        struct {
            alignas(64) struct __cds_wfcq_head head;
            alignas(64) struct cds_wfcq_tail tail;
        } wfcq;
        struct {
            alignas(64) ck_fifo_mpmc_t fifo; /* head and tail a line apart */
            otb_msg_t stub;
        } ck;
    } q;
} otb_mbq_t;

OTB_INLINE void mb_init(otb_mb_kind k, otb_mbq_t *q)
{
    switch (k) {
    case MB_OTTER: ot__mpsc_init(&q->q.otter); break;
    case MB_WFCQ:
    case MB_WFCQ_BLOCKING: __cds_wfcq_init(&q->q.wfcq.head, &q->q.wfcq.tail); break;
    case MB_CK: ck_fifo_mpmc_init(&q->q.ck.fifo, &q->q.ck.stub.link.ck); break;
    }
}

OTB_INLINE void mb_push(otb_mb_kind k, otb_mbq_t *q, otb_msg_t *m)
{
    switch (k) {
    case MB_OTTER: ot__mpsc_push(&q->q.otter, &m->link.otter); break;
    case MB_WFCQ:
    case MB_WFCQ_BLOCKING:
        /* wfcq leaves resetting the link to the caller (ours does it in
         * push): same work on both sides. */
        cds_wfcq_node_init(&m->link.wfcq);
        cds_wfcq_enqueue(&q->q.wfcq.head, &q->q.wfcq.tail, &m->link.wfcq);
        break;
    case MB_CK: ck_fifo_mpmc_enqueue(&q->q.ck.fifo, &m->link.ck, m); break;
    }
}

/* The next message; NULL when there is none yet (empty, or an enqueue half
 * done: the caller retries either way). The single consumer needs no lock
 * for the __cds_wfcq_* calls. */
OTB_INLINE otb_msg_t *mb_pop(otb_mb_kind k, otb_mbq_t *q)
{
    switch (k) {
    case MB_OTTER: {
        ot__mpsc_node_t *n = ot__mpsc_pop(&q->q.otter);
        return n == OT__MPSC_BUSY ? NULL : (otb_msg_t *)n;
    }
    case MB_WFCQ: {
        struct cds_wfcq_node *n =
            __cds_wfcq_dequeue_nonblocking(&q->q.wfcq.head, &q->q.wfcq.tail);
        return n == CDS_WFCQ_WOULDBLOCK ? NULL : (otb_msg_t *)n;
    }
    case MB_WFCQ_BLOCKING:
        return (otb_msg_t *)__cds_wfcq_dequeue_blocking(&q->q.wfcq.head, &q->q.wfcq.tail);
    case MB_CK: {
        void *v;
        ck_fifo_mpmc_entry_t *garbage; /* the old stub: no longer referenced */
        return ck_fifo_mpmc_dequeue(&q->q.ck.fifo, &v, &garbage) ? v : NULL;
    }
    }
    return NULL;
}

/* Messages are reused round-robin. ck only frees an entry one dequeue late
 * (a dequeued entry becomes the stub), so a message slot is refilled only
 * once at least two dequeues have passed it: RING/WINDOW leave room. */
static otb_msg_t *mb_msgs_new(size_t count)
{
    otb_msg_t *m = aligned_alloc(64, count * sizeof *m);
    if (m) memset(m, 0, count * sizeof *m);
    return m;
}

/* One thread; bursts of `burst` messages pushed, then popped (burst = 1 is
 * the push+pop pair). The popped order is checked. */
OTB_INLINE double mb_single(otb_mb_kind k, uint64_t n, uint64_t burst)
{
    otb_mbq_t *q = aligned_alloc(64, sizeof *q);
    otb_msg_t *msgs = mb_msgs_new(OTB_MB_RING);
    if (!q || !msgs) {
        free(q);
        free(msgs);
        return OTB_ERR_MEM;
    }
    mb_init(k, q);
    bool bad = false;

    uint64_t t0 = otb_now_ns();
    for (uint64_t i = 0; i < n; i += burst) {
        uint64_t b = otb_min(burst, n - i);
        for (uint64_t j = 0; j < b; j++) {
            otb_msg_t *m = &msgs[(i + j) % OTB_MB_RING];
            m->seq = i + j;
            mb_push(k, q, m);
        }
        for (uint64_t j = 0; j < b; j++) {
            otb_msg_t *m = mb_pop(k, q);
            if (!m || m->seq != i + j) bad = true;
        }
    }
    uint64_t t1 = otb_now_ns();

    free(msgs);
    free(q);
    return bad ? OTB_ERR_CHECK : otb_secs(t0, t1);
}

double otb_mbox_pair_otter(uint64_t n)
{
    return mb_single(MB_OTTER, n, 1);
}
double otb_mbox_pair_wfcq(uint64_t n)
{
    return mb_single(MB_WFCQ, n, 1);
}
double otb_mbox_pair_ck(uint64_t n)
{
    return mb_single(MB_CK, n, 1);
}
double otb_mbox_burst_otter(uint64_t n)
{
    return mb_single(MB_OTTER, n, OTB_MB_BURST);
}
double otb_mbox_burst_wfcq(uint64_t n)
{
    return mb_single(MB_WFCQ, n, OTB_MB_BURST);
}
double otb_mbox_burst_ck(uint64_t n)
{
    return mb_single(MB_CK, n, OTB_MB_BURST);
}

/* --- producer -> consumer on two CPUs ------------------------------------ */

typedef struct otb_mb_run {
    otb_mbq_t q;
    /* Consumer progress (messages fully read), published every
     * OTB_MB_PUBLISH: the producer reuses a message slot only behind it. */
    alignas(64) _Atomic uint64_t consumed;
    /* Read-mostly: set up before the threads start. */
    alignas(64) _Atomic unsigned ready;
    otb_mb_kind kind;
    uint64_t n;
    otb_msg_t *msgs; /* OTB_MB_WINDOW of them */
    /* Written once each, at the start and at the end. */
    alignas(64) uint64_t t0;
    alignas(64) uint64_t t1;
    bool bad;
} otb_mb_run_t;

OTB_INLINE void mb_produce(otb_mb_kind k, otb_mb_run_t *r)
{
    otb_barrier(&r->ready);
    r->t0 = otb_now_ns();
    /* May push message i while i < consumed + WINDOW - 1 (see mb_msgs_new). */
    uint64_t limit = OTB_MB_WINDOW - 1;
    for (uint64_t i = 0; i < r->n; i++) {
        unsigned spins = 0;
        while (i >= limit) {
            /* Acquire: the consumer is done reading the slots behind it. */
            limit =
                atomic_load_explicit(&r->consumed, memory_order_acquire) + OTB_MB_WINDOW - 1;
            if (i >= limit) otb_spin(&spins);
        }
        otb_msg_t *m = &r->msgs[i % OTB_MB_WINDOW];
        m->seq = i;
        mb_push(k, &r->q, m);
    }
}

OTB_INLINE void mb_consume(otb_mb_kind k, otb_mb_run_t *r)
{
    otb_barrier(&r->ready);
    bool bad = false;
    for (uint64_t i = 0; i < r->n; i++) {
        otb_msg_t *m;
        unsigned spins = 0;
        while (!(m = mb_pop(k, &r->q)))
            otb_spin(&spins);
        if (m->seq != i) bad = true; /* FIFO from the one producer */
        if ((i + 1) % OTB_MB_PUBLISH == 0)
            atomic_store_explicit(&r->consumed, i + 1, memory_order_release);
    }
    r->t1 = otb_now_ns();
    r->bad = bad;
}

/* Thread entries: dispatch once on the kind, then run the specialised loop. */
static void *mb_producer(void *arg)
{
    otb_mb_run_t *r = arg;
    switch (r->kind) {
    case MB_OTTER: mb_produce(MB_OTTER, r); break;
    case MB_WFCQ: mb_produce(MB_WFCQ, r); break;
    case MB_WFCQ_BLOCKING: mb_produce(MB_WFCQ_BLOCKING, r); break;
    case MB_CK: mb_produce(MB_CK, r); break;
    }
    return NULL;
}

static void *mb_consumer(void *arg)
{
    otb_mb_run_t *r = arg;
    switch (r->kind) {
    case MB_OTTER: mb_consume(MB_OTTER, r); break;
    case MB_WFCQ: mb_consume(MB_WFCQ, r); break;
    case MB_WFCQ_BLOCKING: mb_consume(MB_WFCQ_BLOCKING, r); break;
    case MB_CK: mb_consume(MB_CK, r); break;
    }
    return NULL;
}

static double mb_two_threads(otb_mb_kind k, uint64_t n)
{
    otb_mb_run_t *r = aligned_alloc(64, sizeof *r);
    otb_msg_t *msgs = mb_msgs_new(OTB_MB_WINDOW);
    if (!r || !msgs) {
        free(r);
        free(msgs);
        return OTB_ERR_MEM;
    }
    memset(r, 0, sizeof *r);
    mb_init(k, &r->q);
    atomic_init(&r->consumed, 0);
    atomic_init(&r->ready, 0);
    r->kind = k;
    r->n = n;
    r->msgs = msgs;

    double s = otb_run_pinned(mb_producer, mb_consumer, r) != 0 ? OTB_ERR_CPUS
               : r->bad                                         ? OTB_ERR_CHECK
                                                                : otb_secs(r->t0, r->t1);
    free(msgs);
    free(r);
    return s;
}

double otb_mbox_2t_otter(uint64_t n)
{
    return mb_two_threads(MB_OTTER, n);
}
double otb_mbox_2t_wfcq(uint64_t n)
{
    return mb_two_threads(MB_WFCQ, n);
}
double otb_mbox_2t_wfcq_blocking(uint64_t n)
{
    return mb_two_threads(MB_WFCQ_BLOCKING, n);
}
double otb_mbox_2t_ck(uint64_t n)
{
    return mb_two_threads(MB_CK, n);
}

/* ------------------------------------------------------------------------ */
/* 3. Run queue: ot__runq (Go-style ring) vs ck_ring spmc                   */
/* ------------------------------------------------------------------------ */

enum { OTB_RQ_FILL = 128 };

/* Run-queue items are opaque non-NULL pointers. */
static inline void *otb_item(uint64_t i)
{
    return (void *)(uintptr_t)((i + 1) * 16);
}

/* A ck_ring with its 256-slot buffer, the same capacity as ot__runq. */
typedef struct otb_ckring {
    alignas(64) ck_ring_t ring;
    alignas(64) ck_ring_buffer_t buf[OT__RUNQ_SIZE];
} otb_ckring_t;

static otb_ckring_t *otb_ckring_new(void)
{
    otb_ckring_t *r = aligned_alloc(64, sizeof *r);
    if (r) {
        memset(r, 0, sizeof *r);
        ck_ring_init(&r->ring, OT__RUNQ_SIZE);
    }
    return r;
}

static ot__runq_t *otb_runq_new(void)
{
    ot__runq_t *q = aligned_alloc(64, sizeof *q);
    if (q) ot__runq_init(q);
    return q;
}

double otb_runq_pair_otter(uint64_t n)
{
    ot__runq_t *q = otb_runq_new();
    if (!q) return OTB_ERR_MEM;
    bool bad = false;

    uint64_t t0 = otb_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        void *it = otb_item(i);
        if (!ot__runq_push(q, it)) bad = true;
        if (ot__runq_pop(q) != it) bad = true;
    }
    uint64_t t1 = otb_now_ns();

    free(q);
    return bad ? OTB_ERR_CHECK : otb_secs(t0, t1);
}

double otb_runq_pair_ck(uint64_t n)
{
    otb_ckring_t *r = otb_ckring_new();
    if (!r) return OTB_ERR_MEM;
    bool bad = false;

    uint64_t t0 = otb_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        void *it = otb_item(i), *out = NULL;
        if (!ck_ring_enqueue_spmc(&r->ring, r->buf, it)) bad = true;
        if (!ck_ring_dequeue_spmc(&r->ring, r->buf, &out) || out != it) bad = true;
    }
    uint64_t t1 = otb_now_ns();

    free(r);
    return bad ? OTB_ERR_CHECK : otb_secs(t0, t1);
}

/* Bench only, single-threaded, reaching into the ring: undo a steal so that
 * every iteration steals from the same 128-item queue into an empty one.
 * The victim's slots still hold the stolen items (a steal only reads them),
 * so moving its head back restores it; the thief's queue is emptied by
 * moving its head up to its tail. These two stores are timed with the
 * steal (negligible next to it); the ck case undoes its steal the same way. */
static void otb_runq_unsteal(ot__runq_t *victim, ot__runq_t *thief, uint32_t moved)
{
    uint32_t h = atomic_load_explicit(&victim->head, memory_order_relaxed);
    atomic_store_explicit(&victim->head, h - moved, memory_order_relaxed);
    uint32_t t = atomic_load_explicit(&thief->tail, memory_order_relaxed);
    atomic_store_explicit(&thief->head, t, memory_order_relaxed);
}

double otb_runq_steal_otter(uint64_t n)
{
    ot__runq_t *victim = otb_runq_new(), *thief = otb_runq_new();
    if (!victim || !thief) {
        free(victim);
        free(thief);
        return OTB_ERR_MEM;
    }
    for (uint64_t i = 0; i < OTB_RQ_FILL; i++)
        ot__runq_push(victim, otb_item(i));
    uint64_t moved_total = 0;
    bool bad = false;

    uint64_t t0 = otb_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        uint32_t moved;
        if (!ot__runq_steal(victim, thief, true, &moved)) bad = true;
        moved_total += moved;
        otb_runq_unsteal(victim, thief, moved);
    }
    uint64_t t1 = otb_now_ns();

    free(victim);
    free(thief);
    if (bad || moved_total != n * OTB_RUNQ_STEAL_ITEMS) return OTB_ERR_CHECK;
    return otb_secs(t0, t1);
}

/* ck_ring has no batch steal: take half of the victim's items one by one
 * (dequeue_spmc, one CAS each), keeping the last one to run and putting the
 * others in the thief's ring, which is what ot__runq_steal returns. */
double otb_runq_steal_ck(uint64_t n)
{
    otb_ckring_t *victim = otb_ckring_new(), *thief = otb_ckring_new();
    if (!victim || !thief) {
        free(victim);
        free(thief);
        return OTB_ERR_MEM;
    }
    for (uint64_t i = 0; i < OTB_RQ_FILL; i++)
        ck_ring_enqueue_spmc(&victim->ring, victim->buf, otb_item(i));
    uint64_t moved_total = 0;
    bool bad = false;

    uint64_t t0 = otb_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        unsigned want = ck_ring_size(&victim->ring);
        want -= want / 2;
        unsigned moved = 0;
        void *it = NULL;
        while (moved < want && ck_ring_dequeue_spmc(&victim->ring, victim->buf, &it)) {
            if (++moved < want) ck_ring_enqueue_spmc(&thief->ring, thief->buf, it);
        }
        if (!it) bad = true;
        moved_total += moved;
        /* Undo, as otb_runq_unsteal does for ours. */
        ck_pr_store_uint(&victim->ring.c_head, ck_pr_load_uint(&victim->ring.c_head) - moved);
        ck_pr_store_uint(&thief->ring.c_head, ck_pr_load_uint(&thief->ring.p_tail));
    }
    uint64_t t1 = otb_now_ns();

    free(victim);
    free(thief);
    if (bad || moved_total != n * OTB_RUNQ_STEAL_ITEMS) return OTB_ERR_CHECK;
    return otb_secs(t0, t1);
}

/* ------------------------------------------------------------------------ */
/* 4. Pool: ot__pool vs glibc malloc, 128-byte objects                      */
/* ------------------------------------------------------------------------ */

/* AL_POOL_MAG: the pool, remote frees through a remote-free cache
 * (magazines), as the runtime frees messages and control blocks. */
typedef enum { AL_POOL, AL_POOL_MAG, AL_MALLOC } otb_al_kind;

enum {
    OTB_OBJ_SIZE = 128,
    OTB_POOL_BURST = 64,
    OTB_SLAB_SIZE = 2 << 20, /* as the runtime's pools */
    OTB_HANDOFF_BATCH = 64,  /* objects per hand-off from owner to remote */
    OTB_HANDOFF_SLOTS = 16,  /* hand-offs in flight */
};

/* Scheduler identities: the pool's owner, and some other scheduler. */
static const char otb_owner_tag, otb_other_tag;

static ot__pool_t *otb_pool_new(void)
{
    ot__pool_t *p = aligned_alloc(64, sizeof *p);
    if (p) ot__pool_init(p, OTB_OBJ_SIZE, 0, OTB_SLAB_SIZE, &otb_owner_tag, NULL);
    return p;
}

static void otb_pool_delete(ot__pool_t *p)
{
    if (!p) return;
    ot__pool_destroy(p);
    free(p);
}

/* The object's payload word (word 0 is the pool's free-list link). */
OTB_INLINE uint64_t *al_alloc(otb_al_kind k, ot__pool_t *p)
{
    uint64_t *o = k != AL_MALLOC ? ot__pool_alloc(p) : malloc(OTB_OBJ_SIZE);
    if (!o) abort(); /* out of memory mid-loop: nothing left to measure */
    return o;
}

OTB_INLINE void al_free(otb_al_kind k, ot__pool_t *p, void *o, const void *me)
{
    if (k == AL_POOL)
        ot__pool_free(p, o, me);
    else
        free(o);
}

/* The owner alone: bursts of `burst` allocations (each object written),
 * then as many frees (burst = 1 is the alloc+free pair). */
OTB_INLINE double al_single(otb_al_kind k, uint64_t n, uint64_t burst)
{
    ot__pool_t *p = NULL;
    if (k == AL_POOL && !(p = otb_pool_new())) return OTB_ERR_MEM;
    uint64_t *objs[OTB_POOL_BURST];
    /* Untimed warm-up: carve (or let malloc cache) one burst's worth. */
    for (uint64_t j = 0; j < burst; j++)
        objs[j] = al_alloc(k, p);
    for (uint64_t j = 0; j < burst; j++)
        al_free(k, p, objs[j], &otb_owner_tag);

    uint64_t t0 = otb_now_ns();
    for (uint64_t i = 0; i < n; i += burst) {
        uint64_t b = otb_min(burst, n - i);
        for (uint64_t j = 0; j < b; j++) {
            uint64_t *o = al_alloc(k, p);
            o[1] = i + j;
            objs[j] = o;
        }
        OTB_ESCAPE(objs);
        for (uint64_t j = 0; j < b; j++)
            al_free(k, p, objs[j], &otb_owner_tag);
    }
    uint64_t t1 = otb_now_ns();

    otb_pool_delete(p);
    return otb_secs(t0, t1);
}

double otb_pool_pair_otter(uint64_t n)
{
    return al_single(AL_POOL, n, 1);
}
double otb_pool_pair_malloc(uint64_t n)
{
    return al_single(AL_MALLOC, n, 1);
}
double otb_pool_burst_otter(uint64_t n)
{
    return al_single(AL_POOL, n, OTB_POOL_BURST);
}
double otb_pool_burst_malloc(uint64_t n)
{
    return al_single(AL_MALLOC, n, OTB_POOL_BURST);
}

/* --- allocated on one CPU, freed on another ------------------------------ */

/* A batch of objects handed from the owner to the remote thread. */
typedef struct otb_handoff {
    /* 0: empty, the owner may fill it; else the count, the remote drains. */
    alignas(64) _Atomic uint32_t count;
    uint64_t *obj[OTB_HANDOFF_BATCH];
} otb_handoff_t;

typedef struct otb_al_run {
    alignas(64) _Atomic unsigned ready;
    otb_al_kind kind;
    ot__pool_t *pool; /* AL_POOL */
    uint64_t n;
    alignas(64) uint64_t t0;
    alignas(64) uint64_t t1;
    bool bad;
    ot__pool_rcache_t rcache; /* B's, for AL_POOL_MAG */
    otb_handoff_t slot[OTB_HANDOFF_SLOTS];
} otb_al_run_t;

/* Thread A, the pool's owner: allocate, write, hand over. Its allocations
 * recycle what B freed remotely (for the pool: by taking the remote list). */
OTB_INLINE void al_owner(otb_al_kind k, otb_al_run_t *r)
{
    otb_barrier(&r->ready);
    r->t0 = otb_now_ns();
    for (uint64_t i = 0, b = 0; i < r->n; b++) {
        otb_handoff_t *s = &r->slot[b % OTB_HANDOFF_SLOTS];
        unsigned spins = 0;
        /* Acquire: B is done with the slot's previous batch. */
        while (atomic_load_explicit(&s->count, memory_order_acquire) != 0)
            otb_spin(&spins);
        uint32_t c = (uint32_t)otb_min(OTB_HANDOFF_BATCH, r->n - i);
        for (uint32_t j = 0; j < c; j++) {
            uint64_t *o = al_alloc(k, r->pool);
            o[1] = i + j;
            s->obj[j] = o;
        }
        /* Release: the objects and the slot's pointers before the count. */
        atomic_store_explicit(&s->count, c, memory_order_release);
        i += c;
    }
}

/* Thread B, another scheduler: read and free each object (remote frees). */
OTB_INLINE void al_remote(otb_al_kind k, otb_al_run_t *r)
{
    otb_barrier(&r->ready);
    bool bad = false;
    for (uint64_t i = 0, b = 0; i < r->n; b++) {
        otb_handoff_t *s = &r->slot[b % OTB_HANDOFF_SLOTS];
        unsigned spins = 0;
        uint32_t c;
        while ((c = atomic_load_explicit(&s->count, memory_order_acquire)) == 0)
            otb_spin(&spins);
        for (uint32_t j = 0; j < c; j++) {
            uint64_t *o = s->obj[j];
            if (o[1] != i + j) bad = true;
            if (k == AL_POOL_MAG)
                ot__pool_free_cached(&r->rcache, r->pool, o);
            else
                al_free(k, r->pool, o, &otb_other_tag);
        }
        atomic_store_explicit(&s->count, 0, memory_order_release);
        i += c;
    }
    r->t1 = otb_now_ns();
    if (k == AL_POOL_MAG) ot__pool_rcache_flush(&r->rcache);
    r->bad = bad;
}

static void *al_owner_thread(void *arg)
{
    otb_al_run_t *r = arg;
    if (r->kind == AL_MALLOC)
        al_owner(AL_MALLOC, r);
    else
        al_owner(AL_POOL, r);
    return NULL;
}

static void *al_remote_thread(void *arg)
{
    otb_al_run_t *r = arg;
    if (r->kind == AL_POOL)
        al_remote(AL_POOL, r);
    else if (r->kind == AL_POOL_MAG)
        al_remote(AL_POOL_MAG, r);
    else
        al_remote(AL_MALLOC, r);
    return NULL;
}

static double al_two_threads(otb_al_kind k, uint64_t n)
{
    otb_al_run_t *r = aligned_alloc(64, sizeof *r);
    if (!r) return OTB_ERR_MEM;
    memset(r, 0, sizeof *r);
    atomic_init(&r->ready, 0);
    for (int i = 0; i < OTB_HANDOFF_SLOTS; i++)
        atomic_init(&r->slot[i].count, 0);
    r->kind = k;
    r->n = n;
    if (k != AL_MALLOC && !(r->pool = otb_pool_new())) {
        free(r);
        return OTB_ERR_MEM;
    }

    double s = otb_run_pinned(al_owner_thread, al_remote_thread, r) != 0 ? OTB_ERR_CPUS
               : r->bad                                                  ? OTB_ERR_CHECK
                        : otb_secs(r->t0, r->t1);
    otb_pool_delete(r->pool);
    free(r);
    return s;
}

double otb_pool_remote_2t_otter(uint64_t n)
{
    return al_two_threads(AL_POOL, n);
}
double otb_pool_remote_2t_otter_mag(uint64_t n)
{
    return al_two_threads(AL_POOL_MAG, n);
}
double otb_pool_remote_2t_malloc(uint64_t n)
{
    return al_two_threads(AL_MALLOC, n);
}
