/* otter/dirty.h: dirty work, off the schedulers.
 *
 * A process that must make a blocking system call or run a long computation
 * hands it to the dirty pool, a separate set of threads (ot_config_t
 * dirty_threads), so that its scheduler keeps running the other processes. */
#ifndef OTTER_DIRTY_H
#define OTTER_DIRTY_H

#ifdef __cplusplus
extern "C" {
#endif

/* Run fn(arg) on a dirty thread and return when it has returned. The calling
 * process waits meanwhile without holding its scheduler (process_info
 * shows OT_STATUS_DIRTY). fn runs on a plain thread: it may block, and may
 * call what other threads may (ot_send, ot_whereis ...), but not receive.
 * Exit signals that reach the process meanwhile take effect when fn has
 * returned (a kill cannot cut a system call short, as for the BEAM's dirty
 * NIFs). From a thread that is not a process (an attached one included)
 * fn simply runs on the calling thread.
 * Returns 0, or -EINVAL (fn NULL), -EPERM (no runtime), -ENOMEM. */
int ot_dirty_run(void (*fn)(void *arg), void *arg);

#ifdef __cplusplus
}
#endif
#endif
