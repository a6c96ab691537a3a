/* The micro-benchmark bodies (cases.c), as plain C functions for the C++
 * shim (shim.cc) that registers them with Google Benchmark.
 *
 * Every case has the same shape:
 *
 *     double otb_<case>(uint64_t iterations);
 *
 * It sets up what it needs, performs `iterations` operations (what one
 * operation is - a round trip, a message, a steal, an object - is said at
 * each declaration), tears down, and returns the wall-clock seconds spent in
 * the measured part only (setup, thread creation and teardown excluded); the
 * shim reports that with SetIterationTime (UseManualTime). A negative return
 * means the case could not run, or checked its own result and found it
 * wrong (OTB_ERR_*); the shim then skips it with an error.
 *
 * The header is plain C with no internal header behind it, so the C++ shim
 * can include it (the library's headers use C11 _Atomic). */
#ifndef OTB_MICRO_CASES_H
#define OTB_MICRO_CASES_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OTB_ERR_CPUS (-1.0)  /* a two-thread case needs two usable CPUs */
#define OTB_ERR_CHECK (-2.0) /* the case's own result check failed */
#define OTB_ERR_MEM (-3.0)   /* out of memory during setup */

/* 0. Baseline for the two-thread cases: one iteration = one round trip of
 *    a cache line between the two pinned CPUs (store, wait for the echo). */
double otb_xcore_pingpong(uint64_t iterations);

/* 1. Context switch. One iteration = one round trip main -> coroutine ->
 *    main (two switches). */
double otb_ctx_otter(uint64_t iterations);    /* ot__ctx_switch */
double otb_ctx_ucontext(uint64_t iterations); /* glibc swapcontext */

/* 2. Mailbox queues. One iteration = one message (enqueued and dequeued).
 *    Messages are 64-byte, cache-line aligned, with the queue link inside.
 *    _pair: one thread, push one then pop one (the queue is empty between).
 *    _burst: one thread, push 32 then pop 32.
 *    _2t: a producer and a consumer thread pinned to two different CPUs,
 *         up to 1024 messages in flight. */
double otb_mbox_pair_otter(uint64_t iterations); /* mailbox/mpsc.h */
double otb_mbox_pair_wfcq(uint64_t iterations);  /* liburcu cds_wfcq (1) */
double otb_mbox_pair_ck(uint64_t iterations);    /* ck_fifo_mpmc */
double otb_mbox_burst_otter(uint64_t iterations);
double otb_mbox_burst_wfcq(uint64_t iterations);
double otb_mbox_burst_ck(uint64_t iterations);
double otb_mbox_2t_otter(uint64_t iterations);
double otb_mbox_2t_wfcq(uint64_t iterations);
double otb_mbox_2t_ck(uint64_t iterations);
/* (1) The wfcq cases dequeue with __cds_wfcq_dequeue_nonblocking and retry
 *     like ours; this one uses __cds_wfcq_dequeue_blocking as it comes
 *     (its wait sleeps 10 ms after 10 spins). */
double otb_mbox_2t_wfcq_blocking(uint64_t iterations);

/* 3. Run queue.
 *    _pair: one iteration = the owner pushes one item and pops it back.
 *    _steal: one iteration = a thief takes half of a 128-item queue (64
 *            items) into its own empty queue. ck_ring has no batch steal:
 *            its equivalent is 64 x (dequeue_spmc from the victim, enqueue
 *            into the thief's ring). */
double otb_runq_pair_otter(uint64_t iterations);  /* sched/runq.h */
double otb_runq_pair_ck(uint64_t iterations);     /* ck_ring spmc, 256 slots */
double otb_runq_steal_otter(uint64_t iterations); /* ot__runq_steal(half) */
double otb_runq_steal_ck(uint64_t iterations);
#define OTB_RUNQ_STEAL_ITEMS 64 /* items moved per steal iteration */

/* 4. Fixed-size (128-byte) objects. One iteration = one object allocated,
 *    written, and freed.
 *    _pair: alloc then free, by the owner.
 *    _burst: 64 allocs then 64 frees, by the owner.
 *    _remote_2t: thread A (the owner) allocates and hands the objects in
 *                batches to thread B (another CPU), which reads and frees
 *                them: remote frees that A's later allocations recycle. */
double otb_pool_pair_otter(uint64_t iterations);  /* alloc/pool.h */
double otb_pool_pair_malloc(uint64_t iterations); /* glibc malloc/free */
double otb_pool_burst_otter(uint64_t iterations);
double otb_pool_burst_malloc(uint64_t iterations);
double otb_pool_remote_2t_otter(uint64_t iterations);
double otb_pool_remote_2t_otter_mag(uint64_t iterations);
double otb_pool_remote_2t_malloc(uint64_t iterations);

#ifdef __cplusplus
}
#endif

#endif
