/* otter/info.h: what a process is doing, and which processes exist. */
#ifndef OTTER_INFO_H
#define OTTER_INFO_H

#include <stddef.h>
#include <stdint.h>

#include "otter/process.h"
#include "otter/registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a process was doing when asked. */
enum ot_status {
    OT_STATUS_RUNNING = 0,  /* the caller itself (asking about itself) */
    OT_STATUS_RUNNABLE = 1, /* running on another scheduler, or in a run queue */
    OT_STATUS_WAITING = 2,  /* blocked in receive */
    OT_STATUS_SLEEPING = 3, /* in ot_sleep */
    OT_STATUS_DIRTY = 4,    /* in ot_dirty_run: its function runs on a dirty thread */
    OT_STATUS_ATTACHED = 5  /* an attached thread */
};

typedef struct ot_process_info {
    int status;               /* enum ot_status */
    int priority;             /* enum ot_prio */
    int scheduler;            /* the scheduler it runs on or last ran on; -1 for attached */
    int trap_exit;            /* 0 or 1 */
    size_t message_queue_len; /* messages in its mailbox, looked at or not */
    unsigned mailbox_lanes;   /* 0, or the lanes its mailbox split into when
                                 senders on several cores contended */
    uint64_t reductions;      /* reductions spent since it was spawned */
    size_t stack_size;        /* bytes; 0 before its first run and for attached threads */
    size_t stack_used;        /* bytes in use when it last stopped */
    size_t links;             /* processes linked to it */
    size_t monitors;          /* processes it monitors (one per monitor) */
    size_t monitored_by;      /* monitors on it */
    char registered_name[OT_NAME_MAX]; /* "" when none */
    char label[24];                    /* ot_spawn_opts_t.name, "" when none */
} ot_process_info_t;

/* Fill *out with the state of process `pid`. About the caller itself the
 * answer is read directly. About another process, the request travels as a
 * signal and the process answers it itself at its next scheduling point
 * (as in the BEAM), so the figures are consistent with each other; the
 * caller waits for the answer, and must be a process or an attached thread.
 * Errors: -EINVAL (out NULL, bad pid), -ESRCH (not alive, or died before
 * answering), -EPERM (no runtime; another process asked from a plain
 * thread), -ENOMEM. */
int ot_process_info(ot_pid_t pid, ot_process_info_t *out);

/* Write the pids of up to `cap` live processes (attached threads included)
 * into pids[] and return how many live processes were found (which may be
 * more than cap: call again with a bigger array). A process alive during the
 * whole call is always included; one spawned or dying during the call may
 * or may not be. Errors: -EINVAL (pids NULL with cap > 0), -EPERM. */
long ot_processes(ot_pid_t *pids, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
