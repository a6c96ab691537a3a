/* Telling the sanitizers and valgrind about process stacks.
 *
 * ASan must know which stack is current to check accesses (and to keep
 * per-fiber fake stacks): __sanitizer_start_switch_fiber before a switch,
 * __sanitizer_finish_switch_fiber after it, on the new stack. TSan tracks
 * each process as a fiber (__tsan_create_fiber, __tsan_switch_to_fiber) so
 * that happens-before follows the process across threads. Valgrind learns
 * stacks when they are carved (alloc/stack.c). In other builds these are
 * empty. */
#ifndef OT_SCHED_FIBER_H
#define OT_SCHED_FIBER_H

#include "sched/internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define OT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OT_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define OT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define OT_TSAN 1
#endif
#endif

#ifdef OT_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef OT_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* Scheduler thread start: remember its own fiber. */
static inline void ot__fiber_sched_init(ot__sched_t *s)
{
#ifdef OT_TSAN
    s->tsan_fiber = __tsan_get_current_fiber();
#endif
}

/* Scheduler thread end: destroy the fibers it kept. */
static inline void ot__fiber_sched_fini(ot__sched_t *s)
{
#ifdef OT_TSAN
    while (s->nfiber_cache)
        __tsan_destroy_fiber(s->fiber_cache[--s->nfiber_cache]);
#else
    (void)s;
#endif
}

/* A new process on p->stack, before its first switch, on scheduler s.
 *
 * Under TSan it takes a fiber a dead process left on s, if there is one.
 * Creating a fiber maps and clears TSan's per-thread state: ~70% of the
 * time of spawn-heavy tests under TSan went to that clearing and its page
 * faults (perf, test_kill_race). Reuse hides no race: every switch
 * synchronizes (flag 0 to __tsan_switch_to_fiber), so a process started
 * on s already inherits, through s's own fiber, all that the dead one
 * knew when it switched out for the last time. But a reused fiber keeps
 * the dead process's frames on its shadow stack (they never returned), so
 * it is reused only while those carried entries stay few: see
 * ot__fiber_destroy. */
static inline void ot__fiber_create(ot__sched_t *s, ot__proc_t *p)
{
#ifdef OT_ASAN
    /* The stack may have belonged to a process that never unwound (it
     * called ot_exit from inside deeper frames, or ot_runtime_stop killed
     * it), or its memory may be a new mapping at an address a stopped
     * runtime used: ASan's shadow still marks the redzones of those frames,
     * and the new process's frames at the same addresses were reported as
     * stack-buffer-underflow (tests/test_lifecycle.c, start_stop_many).
     * Start from a clean shadow. */
    if (p->stack) __asan_unpoison_memory_region(p->stack->lo, p->stack->size);
#endif
#ifdef OT_TSAN
    if (s->nfiber_cache) {
        s->nfiber_cache--;
        p->tsan_fiber = s->fiber_cache[s->nfiber_cache];
        p->tsan_carried = s->fiber_carried[s->nfiber_cache];
    } else {
        p->tsan_fiber = __tsan_create_fiber(0);
        p->tsan_carried = 0;
    }
#else
    (void)s;
#endif
    p->asan_fake = NULL;
}

/* Called once p will never run again, before its stack is returned: on
 * the stack of scheduler s, whose cache may keep p's fiber, or with s NULL
 * from another thread.
 *
 * The fiber's shadow stack still holds the frames p was in when it last
 * switched out, on top of those it came with. Each is an instrumented call
 * with at least its return address on p's stack, so they are at most one
 * per 8 bytes of the stack in use. TSan's shadow stack has a fixed size
 * (64K entries): reused for every process, a fiber crashed TSan after
 * 15,000-60,000 processes on one scheduler. So it is kept only while what
 * it carries stays under OT__FIBER_CARRY_MAX (a few hundred reuses for a
 * process that exits a few frames deep). */
static inline void ot__fiber_destroy(ot__sched_t *s, ot__proc_t *p)
{
#ifdef OT_TSAN
    if (p->tsan_fiber) {
        size_t carried = OT__FIBER_CARRY_MAX; /* unknown without the stack */
        if (p->stack && p->sp)
            carried =
                (size_t)((char *)ot__stack_top(p->stack) - (char *)p->sp) / 8 + p->tsan_carried;
        if (s && s->nfiber_cache < OT__FIBER_CACHE && carried < OT__FIBER_CARRY_MAX) {
            s->fiber_cache[s->nfiber_cache] = p->tsan_fiber;
            s->fiber_carried[s->nfiber_cache++] = (uint32_t)carried;
        } else {
            __tsan_destroy_fiber(p->tsan_fiber);
        }
    }
    p->tsan_fiber = NULL;
#else
    (void)s;
    (void)p;
#endif
}

/* Scheduler -> process. */
static inline void ot__fiber_enter(ot__sched_t *s, ot__proc_t *p)
{
#ifdef OT_ASAN
    __sanitizer_start_switch_fiber(&s->asan_fake, p->stack->lo, p->stack->size);
#endif
#ifdef OT_TSAN
    __tsan_switch_to_fiber(p->tsan_fiber, 0);
#endif
}
/* On the scheduler's stack, after a process switched back. */
static inline void ot__fiber_entered_sched(ot__sched_t *s)
{
#ifdef OT_ASAN
    __sanitizer_finish_switch_fiber(s->asan_fake, NULL, NULL);
#endif
}

/* Process -> scheduler; `dying` lets ASan drop the fake stack. */
static inline void ot__fiber_leave(ot__proc_t *p, ot__sched_t *s, int dying)
{
#ifdef OT_ASAN
    __sanitizer_start_switch_fiber(dying ? NULL : &p->asan_fake, s->asan_bottom, s->asan_size);
#endif
#ifdef OT_TSAN
    __tsan_switch_to_fiber(s->tsan_fiber, 0);
#endif
}
/* Process p -> process q directly (both on scheduler s). */
static inline void ot__fiber_hand_over(ot__proc_t *p, ot__proc_t *q, int dying)
{
#ifdef OT_ASAN
    __sanitizer_start_switch_fiber(dying ? NULL : &p->asan_fake, q->stack->lo, q->stack->size);
#endif
#ifdef OT_TSAN
    __tsan_switch_to_fiber(q->tsan_fiber, 0);
#endif
}
/* On the process's stack, after it was (re)started on scheduler s, from
 * the scheduler's stack (whose bounds ASan tells us) or from a process. */
static inline void ot__fiber_entered_proc(ot__proc_t *p, ot__sched_t *s)
{
#ifdef OT_ASAN
    if (s->from_proc)
        __sanitizer_finish_switch_fiber(p->asan_fake, NULL, NULL);
    else
        __sanitizer_finish_switch_fiber(p->asan_fake, &s->asan_bottom, &s->asan_size);
#endif
    s->from_proc = false;
}

/* Happens-before edges for RCU grace periods, which TSan cannot see inside
 * liburcu: every quiescent state releases, the reclaimer acquires after
 * synchronize_rcu. */
static inline void ot__tsan_release(void *addr)
{
#ifdef OT_TSAN
    __tsan_release(addr);
#endif
}
static inline void ot__tsan_acquire(void *addr)
{
#ifdef OT_TSAN
    __tsan_acquire(addr);
#endif
}

#endif
