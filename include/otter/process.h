/* otter/process.h: lightweight processes.
 *
 * A process is a C function running on its own stack, scheduled by the
 * runtime's scheduler threads. It may block in ot_receive, ot_sleep or
 * ot_yield; any other blocking call holds its scheduler thread (see the
 * README on what C cannot preempt).
 *
 * A pid carries a table index and a generation: once a process is dead, its
 * pid never names another process (until the 32-bit generation of that slot
 * wraps, after 2^32 reuses of one slot). Pid 0 (OT_PID_NONE) is never a
 * process. */
#ifndef OTTER_PROCESS_H
#define OTTER_PROCESS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint64_t ot_pid_t;
#define OT_PID_NONE ((ot_pid_t)0)

/* Priorities, with BEAM's meaning: runnable max processes run before high
 * ones, high before normal and low; low processes share the normal queue but
 * are picked one time in eight. */
enum ot_prio { OT_PRIO_MAX = 0, OT_PRIO_HIGH = 1, OT_PRIO_NORMAL = 2, OT_PRIO_LOW = 3 };

typedef void (*ot_entry_fn)(void *arg);

/* Spawn options. Zero-initialise (or ot_spawn_opts_init) and set fields. */
typedef struct ot_spawn_opts {
    int priority;      /* enum ot_prio */
    size_t stack_size; /* bytes; 0 = the runtime's default */
    int scheduler;     /* scheduler to start on; -1 = the spawner's */
    const char *name;  /* label used in reports (copied, 23 chars kept) */
} ot_spawn_opts_t;

/* Defaults: OT_PRIO_NORMAL, default stack, spawner's scheduler, no name. */
void ot_spawn_opts_init(ot_spawn_opts_t *opts);

/* Create a process that runs fn(arg) and exits when fn returns. `opts` NULL
 * means defaults. The new process is runnable at once; *pid (if not NULL)
 * receives its pid. `arg` stays the caller's to manage.
 * Callable from processes and from any other thread while a runtime runs.
 * From a process the child starts on the caller's scheduler (others may
 * steal it); a spawn costs one reduction and yields when the turn is spent
 * or when the scheduler's run queue is half full of runnable processes. From
 * other threads children are spread over the schedulers round-robin. The
 * stack is allocated when the child first runs; if memory runs out then, the
 * child is dropped and reported on stderr.
 * Errors: -EINVAL (fn NULL, bad priority, stack size over 8 MiB, scheduler
 * out of range), -EPERM (no runtime), -EAGAIN (process table full), -ENOMEM. */
int ot_spawn(ot_entry_fn fn, void *arg, const ot_spawn_opts_t *opts, ot_pid_t *pid);

/* The calling process's pid; OT_PID_NONE outside processes (an attached
 * thread gets its attached pid). */
ot_pid_t ot_self(void);

/* End the calling process now: its stack is dropped without unwinding, its
 * unread messages are freed. Never returns in a process; returns -EPERM
 * elsewhere. */
int ot_exit(void);

/* Give the scheduler a chance to run other processes (the caller goes to the
 * back of its run queue). Returns 0, or -EPERM outside a process. */
int ot_yield(void);

/* Sleep at least `ms` milliseconds. In a process, other processes run
 * meanwhile; in an attached or other thread, the thread sleeps.
 * Returns 0. */
int ot_sleep(uint64_t ms);

/* Make the calling thread (not a scheduler, not already attached) a process
 * so that it can ot_receive: messages to *pid reach it, and its receives
 * block the thread. Errors: -EINVAL (NULL), -EPERM (no runtime, or the
 * thread is a scheduler), -EEXIST (already attached), -EAGAIN, -ENOMEM. */
int ot_attach(ot_pid_t *pid);

/* Undo ot_attach: the pid dies, unread messages are freed.
 * Errors: -EPERM (thread not attached). */
int ot_detach(void);

/* Write "<0.INDEX.GEN>" into buf (always NUL-terminated when n > 0).
 * Returns the length it needed, as snprintf, or -EINVAL. */
int ot_pid_format(ot_pid_t pid, char *buf, size_t n);

/* Number of live processes (attached threads included). */
size_t ot_process_count(void);

#ifdef __cplusplus
}
#endif
#endif
