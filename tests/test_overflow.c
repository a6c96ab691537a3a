/* Stack overflow is detected and reported with the process named, never
 * silent: once through the guard page, once through the canary checked at
 * every switch (stacks without guard pages). Each case runs in a child
 * process (forked before any runtime starts here), which must die by
 * SIGABRT with the report on its stderr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <cmocka.h>

#include "otter/otter.h"
#include "sched/internal.h" /* the process's stack bounds, for the canary case */
#include "tests/harness.h"

/* ---- what the child runs ------------------------------------------------- */

/* Recursion without bound. The frame is used after the call, so the
 * compiler can neither turn the recursion into a loop nor drop the frame. */
#pragma GCC diagnostic ignored "-Winfinite-recursion"
static __attribute__((noinline)) uint64_t recurse(uint64_t n)
{
    volatile char frame[256];
    frame[0] = (char)n;
    frame[255] = (char)(n >> 8);
    uint64_t r = recurse(n + 1);
    __asm__ __volatile__("" : : "r"(frame) : "memory");
    return r + (uint64_t)frame[0] + (uint64_t)frame[255];
}

static void deep_recursion(void *arg)
{
    (void)arg;
    volatile uint64_t r = recurse(0);
    (void)r;
}

/* A frame that reaches past the usable stack into the canary (the lowest
 * bytes of an unguarded stack), by a bounded amount: nothing below the
 * stack's own slot is touched. In Release the block itself covers the
 * canary. Under the sanitizers every store and the alloca itself call into
 * the sanitizer's runtime, whose frames would land below the slot if the
 * stack pointer sat on the canary: there the block stops `headroom` bytes
 * above it and the stores that hit the canary land just below the block
 * (an out-of-bounds write downwards, the other common way in). Returns 0 if
 * the frame did not get near the canary (the scenario failed). */
static __attribute__((noinline)) int overrun_into_canary(size_t headroom)
{
    ot__proc_t *p = ot__self();
    uintptr_t lo = (uintptr_t)p->stack->lo; /* the canary starts here */
    char here;
    size_t n = (size_t)((uintptr_t)&here - lo) - 24 - headroom;
    volatile char *b = __builtin_alloca(n);
    b[n - 1] = 1; /* use the block's far end, as a real frame would */
    if ((uintptr_t)b > lo + OT__STACK_CANARY + headroom) return 0;
    for (uintptr_t a = lo + 8; a < lo + OT__STACK_CANARY - 8; a++)
        *(volatile char *)a = 0x5a;
    return 1;
}

static void canary_overrun(void *arg)
{
    (void)arg;
    if (ot__self()->stack->guarded) _exit(21);              /* the test needs no guard */
    if (!overrun_into_canary(g_san ? 16384 : 0)) _exit(22); /* missed the canary */
    /* Back within bounds; the damage is seen at the next switch. */
    ot_yield();
    ot_sleep(10);
}

/* In the child: a runtime with one process named "deep" running fn. If the
 * overflow goes unnoticed the child exits 0, which the parent rejects. */
static _Noreturn void child_main(long stack_guards, ot_entry_fn fn, int errfd)
{
    dup2(errfd, STDERR_FILENO);
    struct rlimit nocore = {0, 0};
    setrlimit(RLIMIT_CORE, &nocore);
    ot_config_t cfg;
    ot_config_init(&cfg);
    cfg.schedulers = 2;
    cfg.stack_guards = stack_guards;
    ot_runtime_t *rt;
    if (ot_runtime_start(&cfg, &rt) != 0) _exit(10);
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.name = "deep";
    if (ot_spawn(fn, NULL, &o, NULL) != 0) _exit(11);
    (void)ot_runtime_wait_idle(rt, 60000);
    _exit(0);
}

/* ---- the parent ---------------------------------------------------------- */

struct outcome {
    int status;
    char err[16384];
};

static void run_child(long stack_guards, ot_entry_fn fn, struct outcome *out)
{
    char path[] = "/tmp/otter_overflow_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) child_main(stack_guards, fn, fd);

    /* Wait, but not forever. */
    int status = 0;
    struct timespec ms10 = {0, 10 * 1000000L};
    for (int i = 0; i < 9000; i++) { /* 90 s */
        pid_t w = waitpid(pid, &status, WNOHANG);
        assert_true(w >= 0);
        if (w == pid) break;
        if (i == 8999) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("the child hung instead of reporting the overflow");
        }
        nanosleep(&ms10, NULL);
    }
    out->status = status;
    ssize_t n = pread(fd, out->err, sizeof out->err - 1, 0);
    out->err[n > 0 ? n : 0] = 0;
    close(fd);
    fprintf(stderr, "child: %s %d; its stderr:\n%s\n", WIFSIGNALED(status) ? "signal" : "exit",
            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status), out->err);
}

/* Our report: "otter: stack overflow in process <0.I.G> "deep" ..." */
static int our_report(const struct outcome *o)
{
    return strstr(o->err, "stack overflow in process") && strstr(o->err, "\"deep\"");
}

static void check(const struct outcome *o, const char *how)
{
    if (g_san) {
        /* A sanitizer may see the fault first: then its own stack-overflow
         * report will do, but the child must not end well either way. */
        int ours = our_report(o) && strstr(o->err, how);
        int theirs = strstr(o->err, "stack-overflow") || strstr(o->err, "stack overflow");
        assert_true(ours || theirs);
        assert_false(WIFEXITED(o->status) && WEXITSTATUS(o->status) == 0);
        return;
    }
    assert_true(WIFSIGNALED(o->status));
    assert_int_equal(WTERMSIG(o->status), SIGABRT);
    assert_true(our_report(o));
    assert_non_null(strstr(o->err, how));
}

static void guard_page(void **state)
{
    (void)state;
    static struct outcome o;
    run_child(-1, deep_recursion, &o);
    check(&o, "guard page");
}

static void canary(void **state)
{
    (void)state;
    static struct outcome o;
    run_child(0, canary_overrun, &o);
    /* Exit codes 21, 22: the scenario itself went wrong. */
    assert_false(WIFEXITED(o.status) &&
                 (WEXITSTATUS(o.status) == 21 || WEXITSTATUS(o.status) == 22));
    check(&o, "canary");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(guard_page),
        cmocka_unit_test(canary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
