/* otter/runtime.h: starting and stopping the runtime.
 *
 * One runtime runs at a time in a process (like one BEAM node per OS
 * process): pids, ot_send and ot_spawn refer to it implicitly. Starting a
 * second one while the first runs fails with -EBUSY; after ot_runtime_stop
 * a new one can be started. */
#ifndef OTTER_RUNTIME_H
#define OTTER_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ot_runtime ot_runtime_t;

/* Start-up settings. Fill with ot_config_init(), then change fields. */
typedef struct ot_config {
    /* Scheduler threads; 0 = one per core as hwloc counts cores. */
    unsigned schedulers;
    /* Bind each scheduler thread to its core (hwloc). Default 1. */
    int bind;
    /* Default stack size of a process in bytes, rounded up to a power of two
     * between 16 KiB and 8 MiB. Committed lazily. Default 64 KiB. */
    size_t stack_size;
    /* Most processes alive at once (size of the process table, reserved
     * lazily). Default 4,194,304. */
    size_t max_processes;
    /* Scheduling policy by name (see ot_policy_names()); NULL = "default". */
    const char *policy;
    /* Grace period of ot_runtime_stop in milliseconds. Default 5000. */
    unsigned stop_grace_ms;
    /* How many process stacks get a guard page; past that, stacks rely on the
     * canary checked at every switch. -1 (the default) = all of them where
     * the kernel has guard regions (Linux 6.13+, MADV_GUARD_INSTALL), else as
     * many as vm.max_map_count comfortably allows; 0 = none. */
    long stack_guards;
    /* An hwloc synthetic topology description ("pack:2 core:4 pu:1") used
     * instead of this machine's, to simulate larger machines. Binding is
     * then skipped. NULL = this machine. */
    const char *topology;
    /* Threads of the dirty pool (ot_dirty_run); 0 = as many as schedulers,
     * at least 2. They sleep until dirty work comes. */
    unsigned dirty_threads;
    /* When a mailbox splits into lanes, one queue per group of senders, so
     * that senders on different cores stop contending for one tail (as the
     * BEAM's parallel signal sending does): after this many changes of
     * sending core between messages the receiver found already queued, less
     * one each time it found its mailbox empty. 0 = the default, 256; 1
     * splits at the first sign of contention (tests). A split is for the
     * rest of the process's life. */
    unsigned lane_threshold;
} ot_config_t;

/* Fill `cfg` with the defaults. */
void ot_config_init(ot_config_t *cfg);

/* Start the runtime: discover the topology, start the scheduler threads.
 * `cfg` NULL means defaults. On success *out owns the runtime until
 * ot_runtime_stop. Errors: -EINVAL (NULL out, bad field, unknown policy),
 * -EBUSY (a runtime already runs), -ENOMEM, -EAGAIN (threads), -EPERM
 * (called from a scheduler thread, i.e. from a process). */
int ot_runtime_start(const ot_config_t *cfg, ot_runtime_t **out);

/* Stop the runtime: every live process is sent a message with tag
 * OT_TAG_SHUTDOWN (it should exit); after the grace period the processes
 * still alive are killed (they are not resumed again; their stacks and
 * mailboxes are reclaimed, nothing they hold is unwound). Then the scheduler
 * threads are joined and all memory is returned. A process that runs C code
 * without ever reaching a scheduling point cannot be killed: stop reports it
 * on stderr, names it, and keeps waiting.
 * Errors: -EINVAL (NULL), -EPERM (called from a process). */
int ot_runtime_stop(ot_runtime_t *rt);

/* Number of scheduler threads of `rt`, or -EINVAL. */
int ot_runtime_schedulers(const ot_runtime_t *rt);

/* Block the calling thread until no process is alive, or `timeout_ms`
 * passes (-1 = forever). Returns 0, -ETIMEDOUT, -EINVAL, or -EPERM from a
 * process or an attached thread (it would wait on itself). Attached threads
 * do not count as alive. */
int ot_runtime_wait_idle(ot_runtime_t *rt, int64_t timeout_ms);

/* Names of the built-in policies, NULL-terminated. Static storage. */
const char *const *ot_policy_names(void);

/* Per-scheduler counters, summed over schedulers, for profiling. */
typedef struct ot_sched_stats {
    uint64_t switches;     /* processes resumed */
    uint64_t steals;       /* successful steal operations */
    uint64_t stolen;       /* processes moved by them */
    uint64_t parks;        /* times a scheduler went to sleep */
    uint64_t wakeups;      /* times a parked scheduler was woken */
    uint64_t runnext_hits; /* resumptions through the run-next slot */
    uint64_t rests;        /* timed sleeps of a thief after steals that did not pay */
} ot_sched_stats_t;

/* Fill *out with the sum of the schedulers' counters. The counters are
 * read without stopping the schedulers. Errors: -EINVAL. */
int ot_runtime_stats(const ot_runtime_t *rt, ot_sched_stats_t *out);

#ifdef __cplusplus
}
#endif
#endif
