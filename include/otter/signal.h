/* otter/signal.h: links, monitors and exit signals (Erlang's semantics).
 *
 * Every signal between two processes -- a message, a link or unlink, an
 * exit signal, a monitor or demonitor request, a DOWN notice -- travels
 * through the receiver's one mailbox queue, so the signals from one process
 * to another arrive in the order they were sent, and a process's exit
 * signals and DOWN notices arrive after every message it sent before dying.
 *
 * A process handles the signals that reach it when it next reaches a
 * scheduling point: when it receives (each signal is handled in its place
 * in the queue), yields, sleeps, sends or spawns past its reduction budget,
 * and before it first runs. C cannot be interrupted, so a process that runs
 * C code without reaching one of those points handles them only when it
 * does. A process that dies of a signal stops where it stood: its stack is
 * dropped without unwinding (as ot_exit does).
 *
 * Exit signals, with trap_exit off (the default) and on:
 *
 *   reason received      not trapping            trapping
 *   normal               ignored (*)             message {EXIT, from, normal}
 *   kill (ot_exit_pid)   dies with `killed`      dies with `killed`
 *   anything else        dies with that reason   message {EXIT, from, reason}
 *
 *   (*) unless the signal comes from the process itself (ot_exit_pid on its
 *       own pid), which ends it with `normal`, as in Erlang.
 *
 * A process that dies sends an exit signal with its reason to every linked
 * process (a `kill` received through a link counts as `killed`), and a DOWN
 * notice to every process monitoring it. Attached threads (ot_attach)
 * cannot be killed by the runtime: they always trap exits, and `kill`
 * reaches them as a message {EXIT, from, killed}. */
#ifndef OTTER_SIGNAL_H
#define OTTER_SIGNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otter/mailbox.h"
#include "otter/process.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Exit reasons. Codes from OT_EXIT_USER up are the application's own. */
enum ot_exit_code {
    OT_EXIT_NORMAL = 0,   /* the process ended its work */
    OT_EXIT_KILL = 1,     /* untrappable; only as a signal (ot_exit_pid) */
    OT_EXIT_KILLED = 2,   /* what a killed process died of */
    OT_EXIT_SHUTDOWN = 3, /* asked to stop (supervisors use it) */
    OT_EXIT_NOPROC = 4,   /* the other process did not exist */
    OT_EXIT_USER = 256    /* first application-defined code */
};

/* Bytes of payload an exit reason may carry. */
#define OT_REASON_DATA_MAX 48

/* An exit reason: a code and an optional short payload (a string, a small
 * struct: copied by value). */
typedef struct ot_reason {
    uint32_t code; /* enum ot_exit_code, or >= OT_EXIT_USER */
    uint32_t len;  /* bytes used in data */
    unsigned char data[OT_REASON_DATA_MAX];
} ot_reason_t;

/* Fill *r with `code` and a copy of `len` bytes of `data` (data may be NULL
 * when len is 0). Errors: -EINVAL (r NULL, len > OT_REASON_DATA_MAX, data
 * NULL with len > 0). */
int ot_reason_make(ot_reason_t *r, uint32_t code, const void *data, size_t len);

/* "normal", "kill", "killed", "shutdown", "noproc", or "user" for codes
 * from OT_EXIT_USER (and "unknown" below it). Static storage. */
const char *ot_reason_name(uint32_t code);

/* The tag of an exit signal turned into a message (trap_exit): the sender is
 * the process the signal came from, the payload an ot_reason_t (read it with
 * ot_msg_reason). */
#define OT_TAG_EXIT (OT_TAG_SYSTEM + 2)
/* The tag of a DOWN notice: sender = the monitored process, reference = the
 * monitor's reference (so ot_receive_ref finds it), payload the reason. */
#define OT_TAG_DOWN (OT_TAG_SYSTEM + 3)

/* Copy the exit reason carried by an OT_TAG_EXIT or OT_TAG_DOWN message into
 * *out. Errors: -EINVAL (NULL, or a message with another tag). */
int ot_msg_reason(const ot_msg_t *msg, ot_reason_t *out);

/* Turn trapping of exit signals on or off for the calling process. Returns
 * the previous setting (0 or 1), or -EPERM outside processes (attached
 * threads always trap: -EPERM when asked to turn it off, 1 otherwise). */
int ot_trap_exit(bool on);

/* Link the calling process and `pid` (nothing happens when they are already
 * linked or pid is the caller). When either dies, the other gets an exit
 * signal with its reason. If `pid` is not alive: a trapping caller gets the
 * message {EXIT, pid, noproc} and 0 is returned; a caller that does not trap
 * gets -ESRCH and no link (the C form of Erlang's noproc error). A process
 * that dies while the link request is on its way answers with an exit
 * signal `noproc`.
 * Errors: -EINVAL (pid 0 or out of the table), -ESRCH, -EPERM (not a
 * process nor attached; no runtime), -ENOMEM. */
int ot_link(ot_pid_t pid);

/* Remove the link between the caller and `pid`, if any. Once it returns no
 * exit signal from that link reaches the caller (one already turned into an
 * {EXIT} message stays in the mailbox, as in Erlang). Returns 0 (also when
 * there was no link or pid is dead). Errors: -EINVAL, -EPERM. */
int ot_unlink(ot_pid_t pid);

/* Spawn a process already linked to the caller: no moment exists in which
 * the child can die unlinked. As ot_spawn otherwise; -EPERM when the caller
 * is not a process nor attached. */
int ot_spawn_link(ot_entry_fn fn, void *arg, const ot_spawn_opts_t *opts, ot_pid_t *pid);

/* Spawn a process already monitored by the caller; *ref receives the
 * monitor's reference. As ot_spawn otherwise. */
int ot_spawn_monitor(ot_entry_fn fn, void *arg, const ot_spawn_opts_t *opts, ot_pid_t *pid,
                     ot_ref_t *ref);

/* Send an exit signal with reason *r from the caller to `pid` (see the table
 * above). Callable from any thread; from a thread that is not a process the
 * signal's sender is OT_PID_NONE. A signal to a dead pid is dropped.
 * Errors: -EINVAL (r NULL, bad pid), -ESRCH (no such live process), -EPERM
 * (no runtime), -ENOMEM. */
int ot_exit_pid(ot_pid_t pid, const ot_reason_t *r);

/* End the calling process with reason *r (NULL = normal): its links get an
 * exit signal with that reason, its monitors a DOWN notice. By the time they
 * arrive its pid names no live process. Never returns in a process, except
 * with -EINVAL for a reason whose len exceeds OT_REASON_DATA_MAX; -EPERM
 * outside processes. (ot_exit() is ot_exit_reason(NULL).) */
int ot_exit_reason(const ot_reason_t *r);

/* Monitor `pid`: exactly one DOWN message (tag OT_TAG_DOWN, reference *ref)
 * reaches the caller when pid dies, or at once with reason noproc when pid
 * is not alive. Monitors stack: monitoring twice gives two DOWN messages.
 * The new reference is marked as by ot_make_ref, so ot_receive_ref(*ref)
 * finds the DOWN message in O(1).
 * Errors: -EINVAL (ref NULL, bad pid), -EPERM (not a process nor attached),
 * -ENOMEM. */
int ot_monitor(ot_pid_t pid, ot_ref_t *ref);

/* Flags for ot_demonitor. */
#define OT_DEMONITOR_FLUSH 1u /* also remove a DOWN message already queued */

/* Remove the monitor `ref`. After it returns no DOWN message for ref will
 * arrive; with OT_DEMONITOR_FLUSH one already in the mailbox is removed too.
 * Returns 1 if the monitor was active and is now removed, 0 if ref is not an
 * active monitor of the caller (already fired, removed, or unknown).
 * Errors: -EINVAL (ref 0, unknown flags), -EPERM. */
int ot_demonitor(ot_ref_t ref, unsigned flags);

#ifdef __cplusplus
}
#endif
#endif
