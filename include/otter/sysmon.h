/* otter/sysmon.h: the system monitor (erlang:system_monitor).
 *
 * One process subscribes and receives events as messages with tag
 * OT_TAG_MONITOR, sender = the process the event is about, and an
 * ot_sysmon_event_t as payload. */
#ifndef OTTER_SYSMON_H
#define OTTER_SYSMON_H

#include <stdint.h>

#include "otter/mailbox.h"
#include "otter/process.h"

#ifdef __cplusplus
extern "C" {
#endif

#define OT_TAG_MONITOR (OT_TAG_SYSTEM + 4)

enum ot_sysmon_kind {
    /* A process has run for `value` milliseconds without reaching a
     * scheduling point (reported once per such stretch, while it lasts, as
     * soon as it passes the limit: C cannot be preempted, so this is how a
     * scheduler held by one process is found). */
    OT_SYSMON_LONG_SCHEDULE = 1,
    /* A process's mailbox holds `value` messages, more than the limit
     * (checked when the process looks at its mailbox: a receive, a
     * process_info request, ot_mailbox_len; reported once, then again only
     * after the mailbox has fallen below half the limit). */
    OT_SYSMON_LARGE_MAILBOX = 2
};

typedef struct ot_sysmon_event {
    int kind;       /* enum ot_sysmon_kind */
    int scheduler;  /* where it happened */
    ot_pid_t pid;   /* the process (also the message's sender) */
    uint64_t value; /* milliseconds, or messages */
    char label[24]; /* the process's ot_spawn_opts_t.name */
} ot_sysmon_event_t;

typedef struct ot_sysmon_opts {
    uint32_t long_schedule_ms; /* 0 = off */
    uint64_t large_mailbox;    /* 0 = off */
} ot_sysmon_opts_t;

/* Make `pid` the system monitor with the limits in *opts (replacing any
 * earlier monitor), or turn monitoring off with pid OT_PID_NONE (opts may
 * then be NULL). If the monitor dies, monitoring stops.
 * Errors: -EINVAL (opts NULL with a pid, bad pid), -ESRCH (pid not alive),
 * -EPERM (no runtime), -EAGAIN (the watchdog thread could not start). */
int ot_system_monitor(ot_pid_t pid, const ot_sysmon_opts_t *opts);

/* Copy the event carried by an OT_TAG_MONITOR message into *out.
 * Errors: -EINVAL. */
int ot_msg_sysmon(const ot_msg_t *msg, ot_sysmon_event_t *out);

#ifdef __cplusplus
}
#endif
#endif
