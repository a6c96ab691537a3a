/* sched/arch/aarch64.S under qemu-aarch64: the checks of tests/test_ctx.c,
 * as a standalone static program (no cmocka, no sanitizers), built and run
 * by tests/aarch64/run.sh.
 *
 * Invariants checked:
 * - a fresh context runs fn(arg) on its own stack at the first switch, and
 *   control returns right after the switch, a million round trips over;
 * - every callee-saved register of AAPCS64 is preserved exactly: x19-x28,
 *   x29 (fp) and d8-d15, loaded with known values by an assembly probe on
 *   both sides of the switch; also many live integer and double locals;
 * - sp is 16-byte aligned inside a new context for any alignment of `top`,
 *   and libc's formatted output works there;
 * - two contexts switch directly to each other (ping-pong);
 * - a context suspended on one thread resumes on another.
 * Prints "N passed, M failed"; exits 0 only when nothing failed. */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sched/arch/ctx.h"

#ifndef __aarch64__
#error "build this for AArch64 (tests/aarch64/run.sh)"
#endif

/* probe_switch(save, to, in, out): in[0..9] -> x19..x28, in[10] -> x29,
 * in[11..18] -> d8..d15 (bit patterns); ot__ctx_switch(save, to); when
 * resumed, the same registers -> out[]. The caller's own callee-saved
 * registers are kept around it. probe_sp(): sp at the call site. */
#define PROBE_N 19
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
void probe_switch(void **save, void *to, const uint64_t *in, uint64_t *out);
uintptr_t probe_sp(void);

static int passed, failed;

#define CHECK(cond, ...)                                         \
    do {                                                         \
        if (!(cond)) {                                           \
            fprintf(stderr, "FAIL %s:%d: ", __func__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                        \
            fputc('\n', stderr);                                 \
            return false;                                        \
        }                                                        \
    } while (0)

typedef struct {
    void *sp;
    char *stack;
    size_t size;
} fiber_t;

static void fiber_create(fiber_t *f, size_t mis, void (*fn)(void *), void *arg)
{
    f->size = 64 << 10;
    f->stack = malloc(f->size);
    if (!f->stack) abort();
    f->sp = ot__ctx_init(f->stack + f->size - mis, fn, arg);
}

static bool on_stack(const fiber_t *f, uintptr_t sp)
{
    return sp > (uintptr_t)f->stack && sp <= (uintptr_t)f->stack + f->size;
}

static fiber_t g_thread, g_co;
static unsigned long g_counter, g_errors;
static volatile bool g_quit;
static volatile uint64_t g_sink;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* ---- a million round trips ---- */

static void counter_fn(void *arg)
{
    if (arg != &g_co || !on_stack(&g_co, probe_sp())) g_errors++;
    while (!g_quit) {
        g_counter++;
        ot__ctx_switch(&g_co.sp, g_thread.sp);
    }
    ot__ctx_switch(&g_co.sp, g_thread.sp);
    abort();
}

static bool million_round_trips(void)
{
    g_counter = g_errors = 0;
    g_quit = false;
    fiber_create(&g_co, 0, counter_fn, &g_co);
    for (unsigned long i = 0; i < 1000000; i++) {
        ot__ctx_switch(&g_thread.sp, g_co.sp);
        CHECK(g_counter == i + 1, "round trip %lu: counter %lu", i, g_counter);
    }
    g_quit = true;
    ot__ctx_switch(&g_thread.sp, g_co.sp);
    CHECK(g_errors == 0, "%lu errors inside the context", g_errors);
    free(g_co.stack);
    return true;
}

/* ---- callee-saved registers, exactly ---- */

static void probe_fn(void *arg)
{
    (void)arg;
    uint64_t in[PROBE_N], out[PROBE_N];
    for (uint64_t round = 0; !g_quit; round++) {
        for (int k = 0; k < PROBE_N; k++)
            in[k] = mix(0xc0ffee00ull + round * 64 + (uint64_t)k);
        memset(out, 0, sizeof out);
        probe_switch(&g_co.sp, g_thread.sp, in, out);
        if (memcmp(in, out, sizeof in) != 0) g_errors++;
        g_counter++;
    }
    ot__ctx_switch(&g_co.sp, g_thread.sp);
    abort();
}

static bool callee_saved_exact(void)
{
    static const char *name[PROBE_N] = {"x19", "x20", "x21", "x22", "x23", "x24", "x25",
                                        "x26", "x27", "x28", "x29", "d8",  "d9",  "d10",
                                        "d11", "d12", "d13", "d14", "d15"};
    g_counter = g_errors = 0;
    g_quit = false;
    fiber_create(&g_co, 0, probe_fn, NULL);
    ot__ctx_switch(&g_thread.sp, g_co.sp);
    uint64_t in[PROBE_N], out[PROBE_N];
    for (unsigned long r = 0; r < 100000; r++) {
        for (int k = 0; k < PROBE_N; k++)
            in[k] = mix(0x5eed0000ull + r * 64 + (uint64_t)k);
        memset(out, 0, sizeof out);
        probe_switch(&g_thread.sp, g_co.sp, in, out);
        for (int k = 0; k < PROBE_N; k++)
            CHECK(in[k] == out[k], "round %lu: %s was %#llx, now %#llx", r, name[k],
                  (unsigned long long)in[k], (unsigned long long)out[k]);
    }
    g_quit = true;
    ot__ctx_switch(&g_thread.sp, g_co.sp);
    CHECK(g_errors == 0, "the context's registers changed %lu times", g_errors);
    CHECK(g_counter == 100001, "counter %lu", g_counter);
    free(g_co.stack);
    return true;
}

/* ---- live locals through the compiler ---- */

static void busy_fn(void *arg)
{
    (void)arg;
    volatile uint64_t seed = 77;
    uint64_t a = seed, b = seed * 3, c = seed * 5, d = seed * 7, e = seed * 11, f = seed * 13,
             g = seed * 17, h = seed * 19;
    double x = (double)seed * 0.5, y = (double)seed * 0.25, z = (double)seed * 0.125;
    for (uint64_t i = 0; !g_quit; i++) {
        a += i, b ^= a, c += b, d ^= c, e += d, f ^= e, g += f, h ^= g;
        x += 1.0, y += 2.0, z += 4.0;
        ot__ctx_switch(&g_co.sp, g_thread.sp);
        if (x != (double)seed * 0.5 + (double)(i + 1) ||
            y != (double)seed * 0.25 + 2.0 * (double)(i + 1) ||
            z != (double)seed * 0.125 + 4.0 * (double)(i + 1))
            g_errors++;
        g_counter++;
    }
    g_sink = a ^ b ^ c ^ d ^ e ^ f ^ g ^ h;
    ot__ctx_switch(&g_co.sp, g_thread.sp);
    abort();
}

static bool live_locals_survive(void)
{
    g_counter = g_errors = 0;
    g_quit = false;
    fiber_create(&g_co, 0, busy_fn, NULL);
    volatile uint64_t seed = 0x1234567;
    uint64_t v0 = seed, v1 = seed + 1, v2 = seed + 2, v3 = seed + 3, v4 = seed + 4,
             v5 = seed + 5, v6 = seed + 6, v7 = seed + 7, v8 = seed + 8, v9 = seed + 9,
             v10 = seed + 10, v11 = seed + 11;
    /* Dyadic values: every sum is exact, so == is the right test. */
    double d0 = (double)seed, d1 = d0 / 4, d2 = d0 / 8, d3 = d0 * 0.75, d4 = d0 * 1.5,
           d5 = d0 * 2.5, d6 = -d0, d7 = 0.125;
    for (unsigned long i = 0; i < 1000000; i++) {
        v0 += 1, v1 += 2, v2 += 3, v3 += 4, v4 += 5, v5 += 6;
        v6 += 7, v7 += 8, v8 += 9, v9 += 10, v10 += 11, v11 += 12;
        d0 += 1, d1 += 2, d2 += 3, d3 += 4, d4 += 5, d5 += 6, d6 += 7, d7 += 8;
        ot__ctx_switch(&g_thread.sp, g_co.sp);
        const uint64_t k = i + 1;
        CHECK(v0 == seed + k && v1 == seed + 1 + 2 * k && v2 == seed + 2 + 3 * k &&
                  v3 == seed + 3 + 4 * k && v4 == seed + 4 + 5 * k && v5 == seed + 5 + 6 * k &&
                  v6 == seed + 6 + 7 * k && v7 == seed + 7 + 8 * k && v8 == seed + 8 + 9 * k &&
                  v9 == seed + 9 + 10 * k && v10 == seed + 10 + 11 * k &&
                  v11 == seed + 11 + 12 * k,
              "round %lu: an integer local changed", i);
        const double s = (double)seed, kd = (double)k;
        CHECK(d0 == s + kd && d1 == s / 4 + 2 * kd && d2 == s / 8 + 3 * kd &&
                  d3 == s * 0.75 + 4 * kd && d4 == s * 1.5 + 5 * kd && d5 == s * 2.5 + 6 * kd &&
                  d6 == -s + 7 * kd && d7 == 0.125 + 8 * kd,
              "round %lu: a double local changed", i);
    }
    g_quit = true;
    ot__ctx_switch(&g_thread.sp, g_co.sp);
    CHECK(g_errors == 0, "%lu errors in the context", g_errors);
    CHECK(g_counter == 1000000, "counter %lu", g_counter);
    free(g_co.stack);
    return true;
}

/* ---- alignment ---- */

static uintptr_t g_entry_sp;
static char g_fmt[64];

static void align_fn(void *arg)
{
    g_entry_sp = probe_sp();
    snprintf(g_fmt, sizeof g_fmt, "%.3f %Lf", *(double *)arg, (long double)1.5);
    ot__ctx_switch(&g_co.sp, g_thread.sp);
    abort();
}

static bool stack_alignment(void)
{
    double v = 2.25;
    for (size_t mis = 0; mis < 32; mis++) {
        fiber_create(&g_co, mis, align_fn, &v);
        g_entry_sp = 1;
        g_fmt[0] = 0;
        ot__ctx_switch(&g_thread.sp, g_co.sp);
        CHECK(g_entry_sp % 16 == 0, "top - %zu: sp %#lx", mis, (unsigned long)g_entry_sp);
        CHECK(on_stack(&g_co, g_entry_sp), "top - %zu: sp off the stack", mis);
        CHECK(g_entry_sp <= (uintptr_t)g_co.stack + g_co.size - mis, "sp above top");
        CHECK(strcmp(g_fmt, "2.250 1.500000") == 0, "snprintf gave '%s'", g_fmt);
        free(g_co.stack);
    }
    return true;
}

/* ---- ping-pong ---- */

static fiber_t g_a, g_b;
static unsigned long g_turn;

static void ping_fn(void *arg)
{
    (void)arg;
    while (g_turn < 1000000) {
        if (g_turn % 2 != 0 || !on_stack(&g_a, probe_sp())) g_errors++;
        g_turn++;
        ot__ctx_switch(&g_a.sp, g_b.sp);
    }
    ot__ctx_switch(&g_a.sp, g_thread.sp);
    abort();
}

static void pong_fn(void *arg)
{
    (void)arg;
    for (;;) {
        if (g_turn % 2 != 1 || !on_stack(&g_b, probe_sp())) g_errors++;
        g_turn++;
        if (g_quit) break;
        ot__ctx_switch(&g_b.sp, g_a.sp);
    }
    ot__ctx_switch(&g_b.sp, g_thread.sp);
    abort();
}

static bool ping_pong(void)
{
    g_errors = 0;
    g_turn = 0;
    g_quit = false;
    fiber_create(&g_a, 0, ping_fn, NULL);
    fiber_create(&g_b, 0, pong_fn, NULL);
    ot__ctx_switch(&g_thread.sp, g_a.sp);
    CHECK(g_turn == 1000000, "turn %lu", g_turn);
    g_quit = true;
    g_turn = 1;
    ot__ctx_switch(&g_thread.sp, g_b.sp);
    CHECK(g_errors == 0, "%lu errors", g_errors);
    free(g_a.stack);
    free(g_b.stack);
    return true;
}

/* ---- migration between threads ---- */

static fiber_t *volatile g_resumer;
static pthread_t g_resumer_tid;
static fiber_t g_resumers[5];

static void migrant_fn(void *arg)
{
    (void)arg;
    uint64_t local = 0;
    while (!g_quit) {
        if (!pthread_equal(pthread_self(), g_resumer_tid) || local != g_counter) g_errors++;
        local++;
        g_counter++;
        ot__ctx_switch(&g_co.sp, g_resumer->sp);
    }
    ot__ctx_switch(&g_co.sp, g_resumer->sp);
    abort();
}

static void *resumer_main(void *arg)
{
    fiber_t *self = arg;
    g_resumer = self;
    g_resumer_tid = pthread_self();
    for (unsigned long i = 0; i < 100000; i++)
        ot__ctx_switch(&self->sp, g_co.sp);
    return NULL;
}

static bool resumes_on_other_threads(void)
{
    g_counter = g_errors = 0;
    g_quit = false;
    fiber_create(&g_co, 0, migrant_fn, NULL);
    for (int t = 0; t < 4; t++) {
        pthread_t th;
        CHECK(pthread_create(&th, NULL, resumer_main, &g_resumers[t]) == 0, "pthread_create");
        pthread_join(th, NULL);
        CHECK(g_counter == (unsigned long)(t + 1) * 100000, "counter %lu", g_counter);
    }
    g_resumer = &g_resumers[4];
    g_resumer_tid = pthread_self();
    g_quit = true;
    ot__ctx_switch(&g_resumers[4].sp, g_co.sp);
    CHECK(g_errors == 0, "%lu errors", g_errors);
    free(g_co.stack);
    return true;
}

int main(void)
{
    static const struct {
        const char *name;
        bool (*fn)(void);
    } tests[] = {
        {"million_round_trips", million_round_trips},
        {"callee_saved_exact", callee_saved_exact},
        {"live_locals_survive", live_locals_survive},
        {"stack_alignment", stack_alignment},
        {"ping_pong", ping_pong},
        {"resumes_on_other_threads", resumes_on_other_threads},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        bool ok = tests[i].fn();
        printf("%s %s\n", ok ? "ok  " : "FAIL", tests[i].name);
        if (ok)
            passed++;
        else
            failed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
