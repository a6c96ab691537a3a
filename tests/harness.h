/* The scaffolding shared by the runtime's cmocka tests (tests/test_*.c that
 * start a runtime): include it after the system headers and otter.h.
 *
 * Header-only on purpose: every test is its own executable (see
 * tests/CMakeLists.txt), so each gets its own copy of these file-static
 * variables and functions, and no library is needed for them. What a test
 * does not use costs nothing and draws no warning (HARNESS_UNUSED).
 *
 *   g_fail, PCHECK(c)  checks made inside processes: cmocka's asserts must
 *                      stay on the main thread, so a failed check is counted
 *                      and printed, and stop_rt() asserts the count is zero
 *   g_san              nonzero in a sanitizer build (environment variable
 *                      OTTER_SANITIZER_BUILD set, and not "0"): relax timing
 *                      bounds, scale work down; set before main() runs
 *   scaled(n)          n, or n / 10 under the sanitizers
 *   g_rt               the runtime under test
 *   now_ns()           CLOCK_MONOTONIC in nanoseconds
 *   start_cfg(cfg)     start g_rt with cfg and reset g_fail
 *   start_rt_grace(schedulers, grace_ms), start_rt(schedulers)
 *                      the same with the default configuration but for the
 *                      number of schedulers and stop_grace_ms (200 ms for
 *                      start_rt)
 *   stop_rt()          stop g_rt (must succeed) and assert g_fail is zero
 *   teardown(state)    cmocka teardown: after a failed assertion, leave no
 *                      attached thread and no runtime for the next test
 *   match_tag(m, &tag) a receive filter: messages whose tag is *(uint64_t *)
 */
#ifndef OTTER_TESTS_HARNESS_H
#define OTTER_TESTS_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "otter/otter.h"

#define HARNESS_UNUSED __attribute__((unused))

HARNESS_UNUSED static atomic_int g_fail;
#define PCHECK(c)                                                                            \
    do {                                                                                     \
        if (!(c)) {                                                                          \
            atomic_fetch_add(&g_fail, 1);                                                    \
            fprintf(stderr, "%s:%d: check failed in process: %s\n", __FILE__, __LINE__, #c); \
        }                                                                                    \
    } while (0)

HARNESS_UNUSED static int g_san; /* sanitizer build: relax timing bounds */
HARNESS_UNUSED static ot_runtime_t *g_rt;

__attribute__((constructor)) static void harness_read_env(void)
{
    const char *e = getenv("OTTER_SANITIZER_BUILD");
    g_san = e && *e && strcmp(e, "0") != 0;
}

HARNESS_UNUSED static long scaled(long n)
{
    return g_san ? n / 10 : n;
}

HARNESS_UNUSED static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

HARNESS_UNUSED static void start_cfg(const ot_config_t *cfg)
{
    assert_int_equal(ot_runtime_start(cfg, &g_rt), 0);
    atomic_store(&g_fail, 0);
}

HARNESS_UNUSED static void start_rt_grace(unsigned schedulers, unsigned grace_ms)
{
    ot_config_t cfg;
    ot_config_init(&cfg);
    cfg.schedulers = schedulers;
    cfg.stop_grace_ms = grace_ms;
    start_cfg(&cfg);
}

HARNESS_UNUSED static void start_rt(unsigned schedulers)
{
    start_rt_grace(schedulers, 200);
}

HARNESS_UNUSED static void stop_rt(void)
{
    assert_int_equal(ot_runtime_stop(g_rt), 0);
    g_rt = NULL;
    assert_int_equal(atomic_load(&g_fail), 0);
}

/* After a failed assertion: leave no runtime behind for the next test. */
HARNESS_UNUSED static int teardown(void **state)
{
    (void)state;
    (void)ot_detach();
    if (g_rt) {
        ot_runtime_stop(g_rt);
        g_rt = NULL;
    }
    return 0;
}

HARNESS_UNUSED static bool match_tag(const ot_msg_t *m, void *arg)
{
    return ot_msg_tag(m) == *(const uint64_t *)arg;
}

#endif
