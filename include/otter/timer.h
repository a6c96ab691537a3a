/* otter/timer.h: timers.
 *
 * Timers live in the schedulers' timer heaps; a timer fires within a
 * millisecond of its deadline when its scheduler is not busy running a
 * process that does not yield. */
#ifndef OTTER_TIMER_H
#define OTTER_TIMER_H

#include <stddef.h>
#include <stdint.h>

#include "otter/process.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef uint64_t ot_timer_t;

/* After `ms` milliseconds, send a copy of data/len to `to` with `tag`, as
 * ot_send would then (a dead pid by then drops it). *timer (if not NULL)
 * receives a handle for ot_timer_cancel. The sender of the message is the
 * process that armed the timer.
 * Errors: -EINVAL, -EMSGSIZE, -EPERM (no runtime), -EAGAIN (too many
 * timers), -ENOMEM. */
int ot_send_after(uint64_t ms, ot_pid_t to, uint64_t tag, const void *data, size_t len,
                  ot_timer_t *timer);

/* Cancel a pending ot_send_after timer: its message is never sent.
 * Returns 0 if the timer was pending and is now cancelled, -ENOENT if it had
 * already fired or been cancelled (or never existed). Any thread. */
int ot_timer_cancel(ot_timer_t timer);

/* Milliseconds of a monotonic clock (CLOCK_MONOTONIC). */
uint64_t ot_now_ms(void);

#ifdef __cplusplus
}
#endif
#endif
