/* sched/arch/ctx.h: the context switch (sched/arch/<arch>.S).
 *
 * Invariants checked:
 * - a fresh context runs fn(arg) on its own stack (the stack pointer is
 *   inside the given stack) at the first switch to it, and control comes
 *   back to the exact point after the switch, a million round trips over;
 * - every callee-saved register is preserved across a switch: exactly, by
 *   an assembly probe that loads known values into them (x86-64: rbx, rbp,
 *   r12-r15; AArch64: x19-x29, d8-d15) on both sides, and through the
 *   compiler, by many live integer and double locals on both sides;
 * - the stack pointer is 16-byte aligned at every call inside a new
 *   context, whatever the alignment of the `top` given to ot__ctx_init;
 * - two contexts can switch directly to each other (ping-pong), without
 *   going through the thread's own context;
 * - a context suspended on one thread resumes on another one (processes
 *   migrate between schedulers).
 * Under ASan and TSan the switches are annotated the way sched/fiber.h
 * does it (start/finish_switch_fiber, tsan fibers). Failures inside a
 * context are counted and asserted on the thread's own stack. */
#define _GNU_SOURCE 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/arch/ctx.h"

#if defined(__SANITIZE_ADDRESS__)
#define T_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define T_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define T_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define T_TSAN 1
#endif
#endif
#ifdef T_ASAN
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef T_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* The sanitizer legs of CI (OTTER_SANITIZER_BUILD=1) run a quarter of the
 * iterations: still millions of operations, well inside the time budget. */
static unsigned long scaled(unsigned long n)
{
    const char *s = getenv("OTTER_SANITIZER_BUILD");
    return s && *s && strcmp(s, "0") != 0 ? n / 4 : n;
}

/* ---- assembly probes ------------------------------------------------------ */

/* probe_switch(save, to, in, out): load in[] into the callee-saved
 * registers, ot__ctx_switch(save, to), and when resumed store the
 * registers into out[]; the caller's own callee-saved registers are saved
 * and restored around it. probe_sp(): the stack pointer at its call site
 * (by the ABI, 16-byte aligned). */
#if defined(__x86_64__)
#define PROBE_N 6 /* rbp rbx r12 r13 r14 r15 */
__asm__(".text\n"
        ".p2align 4\n"
        ".type probe_switch, %function\n"
        "probe_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  pushq %rcx\n" /* out; 7 pushes: the call below is 16-aligned */
        "  movq 0(%rdx), %rbp\n  movq 8(%rdx), %rbx\n  movq 16(%rdx), %r12\n"
        "  movq 24(%rdx), %r13\n  movq 32(%rdx), %r14\n  movq 40(%rdx), %r15\n"
        "  call ot__ctx_switch\n"
        "  movq (%rsp), %rcx\n"
        "  movq %rbp, 0(%rcx)\n  movq %rbx, 8(%rcx)\n  movq %r12, 16(%rcx)\n"
        "  movq %r13, 24(%rcx)\n  movq %r14, 32(%rcx)\n  movq %r15, 40(%rcx)\n"
        "  popq %rcx\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".p2align 4\n"
        ".type probe_sp, %function\n"
        "probe_sp:\n"
        "  leaq 8(%rsp), %rax\n"
        "  ret\n");
#elif defined(__aarch64__)
#define PROBE_N 19 /* x19..x29 (11), d8..d15 (8, as bit patterns) */
__asm__(".text\n"
        ".p2align 4\n"
        ".type probe_switch, %function\n"
        "probe_switch:\n"
        "  sub sp, sp, #176\n"
        "  stp x19, x20, [sp, #0]\n  stp x21, x22, [sp, #16]\n  stp x23, x24, [sp, #32]\n"
        "  stp x25, x26, [sp, #48]\n  stp x27, x28, [sp, #64]\n  stp x29, x30, [sp, #80]\n"
        "  stp d8, d9, [sp, #96]\n  stp d10, d11, [sp, #112]\n  stp d12, d13, [sp, #128]\n"
        "  stp d14, d15, [sp, #144]\n  str x3, [sp, #160]\n"
        "  ldp x19, x20, [x2, #0]\n  ldp x21, x22, [x2, #16]\n  ldp x23, x24, [x2, #32]\n"
        "  ldp x25, x26, [x2, #48]\n  ldp x27, x28, [x2, #64]\n  ldr x29, [x2, #80]\n"
        "  ldp d8, d9, [x2, #88]\n  ldp d10, d11, [x2, #104]\n  ldp d12, d13, [x2, #120]\n"
        "  ldp d14, d15, [x2, #136]\n"
        "  bl ot__ctx_switch\n"
        "  ldr x3, [sp, #160]\n"
        "  stp x19, x20, [x3, #0]\n  stp x21, x22, [x3, #16]\n  stp x23, x24, [x3, #32]\n"
        "  stp x25, x26, [x3, #48]\n  stp x27, x28, [x3, #64]\n  str x29, [x3, #80]\n"
        "  stp d8, d9, [x3, #88]\n  stp d10, d11, [x3, #104]\n  stp d12, d13, [x3, #120]\n"
        "  stp d14, d15, [x3, #136]\n"
        "  ldp x19, x20, [sp, #0]\n  ldp x21, x22, [sp, #16]\n  ldp x23, x24, [sp, #32]\n"
        "  ldp x25, x26, [sp, #48]\n  ldp x27, x28, [sp, #64]\n  ldp x29, x30, [sp, #80]\n"
        "  ldp d8, d9, [sp, #96]\n  ldp d10, d11, [sp, #112]\n  ldp d12, d13, [sp, #128]\n"
        "  ldp d14, d15, [sp, #144]\n"
        "  add sp, sp, #176\n"
        "  ret\n"
        ".p2align 4\n"
        ".type probe_sp, %function\n"
        "probe_sp:\n"
        "  mov x0, sp\n"
        "  ret\n");
#else
#error "no register probe for this architecture"
#endif
void probe_switch(void **save, void *to, const uint64_t *in, uint64_t *out);
uintptr_t probe_sp(void);

/* ---- fibers: a context plus what the sanitizers need ---------------------- */

typedef struct fiber {
    void *sp;    /* saved context */
    char *stack; /* lowest byte of its stack, NULL for a thread */
    size_t size;
    const void *bottom; /* bounds for ASan; a thread's are learnt on the way */
    size_t bsize;
    void *asan_fake;
    void *tsan;
} fiber_t;

/* The fiber that switched last on this thread: whoever is resumed learns
 * from it who resumed it. Reached through a function the compiler cannot
 * see into, so that a context resumed on another thread does not use a
 * thread-local address computed before the switch. */
static __thread fiber_t *t_from;
__attribute__((noinline, noipa)) static fiber_t **t_from_slot(void)
{
    return &t_from;
}

static void fiber_thread_init(fiber_t *f)
{
    memset(f, 0, sizeof *f);
#ifdef T_TSAN
    f->tsan = __tsan_get_current_fiber();
#endif
}

static void fiber_create(fiber_t *f, size_t size, size_t top_misalign, void (*fn)(void *),
                         void *arg)
{
    memset(f, 0, sizeof *f);
    f->stack = malloc(size);
    assert_non_null(f->stack);
    f->size = size;
    f->bottom = f->stack;
    f->bsize = size;
    f->sp = ot__ctx_init(f->stack + size - top_misalign, fn, arg);
    assert_non_null(f->sp);
    assert_true((char *)f->sp > f->stack && (char *)f->sp < f->stack + size);
#ifdef T_TSAN
    f->tsan = __tsan_create_fiber(0);
#endif
}

/* After a fiber is resumed (also at its very first entry). */
static void fiber_landed(fiber_t *self)
{
    fiber_t *from = *t_from_slot();
#ifdef T_ASAN
    /* A thread's own stack bounds are learnt here, as the runtime does. */
    __sanitizer_finish_switch_fiber(self ? self->asan_fake : NULL, &from->bottom, &from->bsize);
#else
    (void)self;
    (void)from;
#endif
}

/* Switch from `from` (the running fiber) to `to`; returns when resumed. */
static void fiber_switch(fiber_t *from, fiber_t *to)
{
#ifdef T_ASAN
    __sanitizer_start_switch_fiber(&from->asan_fake, to->bottom, to->bsize);
#endif
#ifdef T_TSAN
    __tsan_switch_to_fiber(to->tsan, 0);
#endif
    *t_from_slot() = from;
    ot__ctx_switch(&from->sp, to->sp);
    fiber_landed(from);
}

/* The same through the register probe. */
static void fiber_switch_probe(fiber_t *from, fiber_t *to, const uint64_t *in, uint64_t *out)
{
#ifdef T_ASAN
    __sanitizer_start_switch_fiber(&from->asan_fake, to->bottom, to->bsize);
#endif
#ifdef T_TSAN
    __tsan_switch_to_fiber(to->tsan, 0);
#endif
    *t_from_slot() = from;
    probe_switch(&from->sp, to->sp, in, out);
    fiber_landed(from);
}

/* Leave a fiber for good (it will never be resumed). */
static _Noreturn void fiber_exit(fiber_t *from, fiber_t *to)
{
#ifdef T_ASAN
    __sanitizer_start_switch_fiber(NULL, to->bottom, to->bsize);
#endif
#ifdef T_TSAN
    __tsan_switch_to_fiber(to->tsan, 0);
#endif
    *t_from_slot() = from;
    ot__ctx_switch(&from->sp, to->sp);
    abort(); /* not reached */
}

/* On the thread, once f has exited. */
static void fiber_destroy(fiber_t *f)
{
#ifdef T_TSAN
    __tsan_destroy_fiber(f->tsan);
#endif
    free(f->stack);
}

/* Is sp inside f's stack? */
static bool on_stack(const fiber_t *f, uintptr_t sp)
{
    return sp > (uintptr_t)f->stack && sp <= (uintptr_t)f->stack + f->size;
}

/* ---- round trips ---------------------------------------------------------------- */

static fiber_t g_thread, g_co;
static unsigned long g_counter, g_errors;
static volatile bool g_quit;
static volatile uint64_t g_sink;

static void counter_fn(void *arg)
{
    fiber_landed(NULL);
    if (arg != &g_co) g_errors++;
    if (!on_stack(&g_co, probe_sp())) g_errors++;
    while (!g_quit) {
        g_counter++;
        fiber_switch(&g_co, &g_thread);
    }
    fiber_exit(&g_co, &g_thread);
}

/* A million round trips: each switch in runs exactly one step. */
static void million_round_trips(void **state)
{
    (void)state;
    fiber_thread_init(&g_thread);
    g_counter = g_errors = 0;
    g_quit = false;
    fiber_create(&g_co, 64 << 10, 0, counter_fn, &g_co);
    unsigned long n = scaled(1000000);
    for (unsigned long i = 0; i < n; i++) {
        fiber_switch(&g_thread, &g_co);
        if (g_counter != i + 1) fail_msg("round trip %lu: counter %lu", i, g_counter);
    }
    g_quit = true;
    fiber_switch(&g_thread, &g_co); /* lets it exit */
    assert_int_equal(g_counter, n);
    assert_int_equal(g_errors, 0);
    fiber_destroy(&g_co);
}

/* ---- callee-saved registers ------------------------------------------------------- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* The context's side of the register probe: its own values, different
 * every time, must come back exactly. */
static void probe_fn(void *arg)
{
    (void)arg;
    fiber_landed(NULL);
    uint64_t in[PROBE_N], out[PROBE_N];
    for (uint64_t round = 0; !g_quit; round++) {
        for (int k = 0; k < PROBE_N; k++)
            in[k] = mix(0xc0ffee00ull + round * 64 + (uint64_t)k);
        memset(out, 0, sizeof out);
        fiber_switch_probe(&g_co, &g_thread, in, out);
        if (memcmp(in, out, sizeof in) != 0) g_errors++;
        g_counter++;
    }
    fiber_exit(&g_co, &g_thread);
}

/* Both sides load distinct values into every callee-saved register and
 * switch: each gets exactly its own values back. */
static void callee_saved_exact(void **state)
{
    (void)state;
    fiber_thread_init(&g_thread);
    g_counter = g_errors = 0;
    g_quit = false;
    fiber_create(&g_co, 64 << 10, 0, probe_fn, NULL);
    fiber_switch(&g_thread, &g_co); /* first entry: the context starts probing */
    uint64_t in[PROBE_N], out[PROBE_N];
    unsigned long n = scaled(100000);
    for (unsigned long r = 0; r < n; r++) {
        for (int k = 0; k < PROBE_N; k++)
            in[k] = mix(0x5eed0000ull + r * 64 + (uint64_t)k);
        memset(out, 0, sizeof out);
        fiber_switch_probe(&g_thread, &g_co, in, out);
        for (int k = 0; k < PROBE_N; k++)
            if (in[k] != out[k])
                fail_msg("round %lu: callee-saved register #%d was %#llx, now %#llx", r, k,
                         (unsigned long long)in[k], (unsigned long long)out[k]);
    }
    g_quit = true;
    fiber_switch(&g_thread, &g_co);
    assert_int_equal(g_errors, 0);
    assert_int_equal(g_counter, n + 1);
    fiber_destroy(&g_co);
}

/* Many live locals on the context's side too, changed every round, so
 * that its callee-saved registers hold other values at each switch. */
static void busy_fn(void *arg)
{
    (void)arg;
    fiber_landed(NULL);
    volatile uint64_t seed = 77;
    uint64_t a = seed, b = seed * 3, c = seed * 5, d = seed * 7, e = seed * 11, f = seed * 13,
             g = seed * 17, h = seed * 19;
    double x = (double)seed * 0.5, y = (double)seed * 0.25, z = (double)seed * 0.125;
    for (uint64_t i = 0; !g_quit; i++) {
        a += i, b ^= a, c += b, d ^= c, e += d, f ^= e, g += f, h ^= g;
        x += 1.0, y += 2.0, z += 4.0;
        fiber_switch(&g_co, &g_thread);
        /* Recompute from the state before the switch; compare. */
        if (x != (double)seed * 0.5 + (double)(i + 1) ||
            y != (double)seed * 0.25 + 2.0 * (double)(i + 1) ||
            z != (double)seed * 0.125 + 4.0 * (double)(i + 1))
            g_errors++;
        g_counter++;
    }
    g_sink = a ^ b ^ c ^ d ^ e ^ f ^ g ^ h; /* keeps them live */
    fiber_exit(&g_co, &g_thread);
}

/* Twelve integers and eight doubles live across every switch in the
 * thread, updated every round and checked against a recomputation. */
static void live_locals_survive(void **state)
{
    (void)state;
    fiber_thread_init(&g_thread);
    g_counter = g_errors = 0;
    g_quit = false;
    fiber_create(&g_co, 64 << 10, 0, busy_fn, NULL);
    volatile uint64_t seed = 0x1234567;
    uint64_t v0 = seed, v1 = seed + 1, v2 = seed + 2, v3 = seed + 3, v4 = seed + 4,
             v5 = seed + 5, v6 = seed + 6, v7 = seed + 7, v8 = seed + 8, v9 = seed + 9,
             v10 = seed + 10, v11 = seed + 11;
    /* Dyadic values: every sum below is exact, so == is the right test. */
    double d0 = (double)seed, d1 = d0 / 4, d2 = d0 / 8, d3 = d0 * 0.75, d4 = d0 * 1.5,
           d5 = d0 * 2.5, d6 = -d0, d7 = 0.125;
    unsigned long n = scaled(1000000);
    for (unsigned long i = 0; i < n; i++) {
        v0 += 1, v1 += 2, v2 += 3, v3 += 4, v4 += 5, v5 += 6;
        v6 += 7, v7 += 8, v8 += 9, v9 += 10, v10 += 11, v11 += 12;
        d0 += 1, d1 += 2, d2 += 3, d3 += 4, d4 += 5, d5 += 6, d6 += 7, d7 += 8;
        fiber_switch(&g_thread, &g_co);
        const uint64_t k = i + 1;
        if (v0 != seed + k || v1 != seed + 1 + 2 * k || v2 != seed + 2 + 3 * k ||
            v3 != seed + 3 + 4 * k || v4 != seed + 4 + 5 * k || v5 != seed + 5 + 6 * k ||
            v6 != seed + 6 + 7 * k || v7 != seed + 7 + 8 * k || v8 != seed + 8 + 9 * k ||
            v9 != seed + 9 + 10 * k || v10 != seed + 10 + 11 * k || v11 != seed + 11 + 12 * k)
            fail_msg("round %lu: an integer local changed across the switch", i);
        const double s = (double)seed, kd = (double)k;
        if (d0 != s + kd || d1 != s / 4 + 2 * kd || d2 != s / 8 + 3 * kd ||
            d3 != s * 0.75 + 4 * kd || d4 != s * 1.5 + 5 * kd || d5 != s * 2.5 + 6 * kd ||
            d6 != -s + 7 * kd || d7 != 0.125 + 8 * kd)
            fail_msg("round %lu: a double local changed across the switch", i);
    }
    g_quit = true;
    fiber_switch(&g_thread, &g_co);
    assert_int_equal(g_errors, 0);
    assert_int_equal(g_counter, n);
    fiber_destroy(&g_co);
}

/* ---- stack alignment --------------------------------------------------------------- */

static uintptr_t g_entry_sp;
static char g_fmt[64];

static void align_fn(void *arg)
{
    fiber_landed(NULL);
    g_entry_sp = probe_sp();
    /* Something that uses aligned SSE/NEON spills in libc. */
    snprintf(g_fmt, sizeof g_fmt, "%.3f %Lf", *(double *)arg, (long double)1.5);
    fiber_exit(&g_co, &g_thread);
}

/* Whatever the alignment of `top`, calls in the new context see a 16-byte
 * aligned stack pointer, inside the stack and below top. */
static void stack_alignment(void **state)
{
    (void)state;
    double v = 2.25;
    for (size_t mis = 0; mis < 32; mis++) {
        fiber_thread_init(&g_thread);
        fiber_create(&g_co, 64 << 10, mis, align_fn, &v);
        g_entry_sp = 1;
        g_fmt[0] = 0;
        fiber_switch(&g_thread, &g_co);
        assert_int_equal(g_entry_sp % 16, 0);
        assert_true(on_stack(&g_co, g_entry_sp));
        assert_true(g_entry_sp <= (uintptr_t)g_co.stack + g_co.size - mis);
        assert_string_equal(g_fmt, "2.250 1.500000");
        fiber_destroy(&g_co);
    }
}

/* ---- ping-pong ------------------------------------------------------------------ */

static fiber_t g_a, g_b;
static unsigned long g_turn, g_rounds;

static void ping_fn(void *arg)
{
    (void)arg;
    fiber_landed(NULL);
    while (g_turn < g_rounds) {
        if (g_turn % 2 != 0 || !on_stack(&g_a, probe_sp())) g_errors++;
        g_turn++;
        fiber_switch(&g_a, &g_b);
    }
    fiber_exit(&g_a, &g_thread);
}

static void pong_fn(void *arg)
{
    (void)arg;
    fiber_landed(NULL);
    for (;;) {
        if (g_turn % 2 != 1 || !on_stack(&g_b, probe_sp())) g_errors++;
        g_turn++;
        if (g_quit) break;
        fiber_switch(&g_b, &g_a);
    }
    fiber_exit(&g_b, &g_thread);
}

/* A and B switch directly to each other; the thread only starts A and,
 * after A ends the game, lets B finish. */
static void ping_pong(void **state)
{
    (void)state;
    fiber_thread_init(&g_thread);
    g_errors = 0;
    g_turn = 0;
    g_quit = false;
    g_rounds = 2 * scaled(500000);
    fiber_create(&g_a, 64 << 10, 0, ping_fn, NULL);
    fiber_create(&g_b, 64 << 10, 0, pong_fn, NULL);
    fiber_switch(&g_thread, &g_a); /* returns when A exits */
    assert_int_equal(g_turn, g_rounds);
    g_quit = true;
    g_turn = 1; /* B's turn parity */
    fiber_switch(&g_thread, &g_b);
    assert_int_equal(g_errors, 0);
    fiber_destroy(&g_a);
    fiber_destroy(&g_b);
}

/* ---- migration ------------------------------------------------------------------ */

/* The context returns to whichever thread resumed it. */
static fiber_t *volatile g_resumer;
static pthread_t g_resumer_tid;

static void migrant_fn(void *arg)
{
    (void)arg;
    fiber_landed(NULL);
    uint64_t local = 0; /* lives on the context's stack across threads */
    while (!g_quit) {
        if (!pthread_equal(pthread_self(), g_resumer_tid) || local != g_counter) g_errors++;
        local++;
        g_counter++;
        fiber_switch(&g_co, g_resumer);
    }
    fiber_exit(&g_co, g_resumer);
}

static unsigned long g_per_thread;

static fiber_t g_resumers[5]; /* one per resuming thread */

static void *resumer_main(void *arg)
{
    fiber_t *self = arg;
    fiber_thread_init(self);
    g_resumer = self;
    g_resumer_tid = pthread_self();
    for (unsigned long i = 0; i < g_per_thread; i++)
        fiber_switch(self, &g_co);
    return NULL;
}

/* Four threads, one after the other, each resume the same context. */
static void resumes_on_other_threads(void **state)
{
    (void)state;
    g_counter = g_errors = 0;
    g_quit = false;
    g_per_thread = scaled(100000);
    fiber_create(&g_co, 64 << 10, 0, migrant_fn, NULL);
    for (int t = 0; t < 4; t++) {
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, resumer_main, &g_resumers[t]), 0);
        assert_int_equal(pthread_join(th, NULL), 0);
        assert_int_equal(g_counter, (unsigned long)(t + 1) * g_per_thread);
    }
    /* The main thread ends it. */
    fiber_t *self = &g_resumers[4];
    fiber_thread_init(self);
    g_resumer = self;
    g_resumer_tid = pthread_self();
    g_quit = true;
    fiber_switch(self, &g_co);
    assert_int_equal(g_errors, 0);
    fiber_destroy(&g_co);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(million_round_trips), cmocka_unit_test(callee_saved_exact),
        cmocka_unit_test(live_locals_survive), cmocka_unit_test(stack_alignment),
        cmocka_unit_test(ping_pong),           cmocka_unit_test(resumes_on_other_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
