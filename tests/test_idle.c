/* An idle runtime uses no CPU: its schedulers park (blocked processes,
 * far-off timers and a recent burst of work notwithstanding) instead of
 * spinning or polling, and no process is resumed while nothing happens. */
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
#include "tests/harness.h"

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

enum { TAG_PING = 1, TAG_NEVER = 2, TAG_STOP = 3, TAG_DONE = 4 };

/* Blocked until shutdown. */
static void blocked(void *arg)
{
    (void)arg;
    ot_msg_t *m;
    if (ot_receive(NULL, NULL, OT_INFINITY, &m) == 0) ot_msg_free(m);
}

static void blocked_with_timeout(void *arg)
{
    (void)arg;
    uint64_t t = TAG_NEVER;
    ot_msg_t *m;
    (void)ot_receive(match_tag, &t, 600000, &m);
}

static void sleeping(void *arg)
{
    (void)arg;
    ot_sleep(600000);
}

/* CPU time of the whole program over `ms` of idleness, and the number of
 * processes resumed meanwhile. */
static void measure_idle(long ms, uint64_t *cpu, uint64_t *switches)
{
    ot_sched_stats_t a, b;
    assert_int_equal(ot_runtime_stats(g_rt, &a), 0);
    uint64_t c0 = cpu_ns();
    sleep_ms(ms);
    uint64_t c1 = cpu_ns();
    assert_int_equal(ot_runtime_stats(g_rt, &b), 0);
    *cpu = c1 - c0;
    *switches = b.switches - a.switches;
    printf("idle %ld ms: cpu %.3f ms, processes resumed %llu, parks %llu, wakeups %llu\n", ms,
           *cpu / 1e6, (unsigned long long)*switches, (unsigned long long)(b.parks - a.parks),
           (unsigned long long)(b.wakeups - a.wakeups));
}

static uint64_t cpu_bound(void)
{
    return (g_san ? 100u : 20u) * 1000000u;
}

static void start_with_blocked_processes(void)
{
    start_rt(2);
    ot_pid_t first = OT_PID_NONE;
    for (int i = 0; i < 4; i++)
        assert_int_equal(ot_spawn(blocked, NULL, NULL, &first), 0);
    assert_int_equal(ot_spawn(blocked_with_timeout, NULL, NULL, NULL), 0);
    assert_int_equal(ot_spawn(sleeping, NULL, NULL, NULL), 0);
    /* A timer far away, armed from this thread. */
    assert_int_equal(ot_send_after(600000, first, TAG_NEVER, NULL, 0, NULL), 0);
}

static void idle_uses_no_cpu(void **state)
{
    (void)state;
    start_with_blocked_processes();
    sleep_ms(200);
    uint64_t cpu, sw;
    measure_idle(500, &cpu, &sw);
    assert_true(cpu < cpu_bound());
    assert_int_equal(sw, 0);
    assert_int_equal(ot_process_count(), 6);
    stop_rt();
}

/* ---- idle again after a burst of work -------------------------------------- */

static void ponger(void *arg)
{
    (void)arg;
    for (;;) {
        ot_msg_t *m;
        if (ot_receive(NULL, NULL, OT_INFINITY, &m) != 0) return;
        uint64_t tag = ot_msg_tag(m);
        if (tag == TAG_PING) PCHECK(ot_send(ot_msg_sender(m), TAG_PING, NULL, 0) == 0);
        ot_msg_free(m);
        if (tag != TAG_PING) return;
    }
}

struct burst {
    ot_pid_t main;
    int rounds;
};

static void pinger(void *arg)
{
    struct burst *b = arg;
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.scheduler = 1; /* cross-scheduler ping-pong: both schedulers busy */
    ot_pid_t p;
    PCHECK(ot_spawn(ponger, NULL, &o, &p) == 0);
    for (int i = 0; i < b->rounds; i++) {
        PCHECK(ot_send(p, TAG_PING, NULL, 0) == 0);
        ot_msg_t *m;
        if (ot_receive(NULL, NULL, 10000, &m) != 0) {
            PCHECK(!"no pong");
            break;
        }
        ot_msg_free(m);
    }
    PCHECK(ot_send(p, TAG_STOP, NULL, 0) == 0);
    PCHECK(ot_send(b->main, TAG_DONE, NULL, 0) == 0);
}

static void idle_after_burst(void **state)
{
    (void)state;
    start_with_blocked_processes();
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    struct burst b = {me, g_san ? 20000 : 200000};
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.scheduler = 0;
    assert_int_equal(ot_spawn(pinger, &b, &o, NULL), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 60000, &m), 0);
    assert_int_equal(ot_msg_tag(m), TAG_DONE);
    ot_msg_free(m);
    /* The main thread stays attached, blocked in nothing: idle too. */
    sleep_ms(200);
    uint64_t cpu, sw;
    measure_idle(500, &cpu, &sw);
    assert_true(cpu < cpu_bound());
    assert_int_equal(sw, 0);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* ---- an empty runtime ------------------------------------------------------ */

static void empty_runtime_is_idle(void **state)
{
    (void)state;
    ot_config_t cfg;
    ot_config_init(&cfg);
    cfg.schedulers = 2;
    assert_int_equal(ot_runtime_start(&cfg, &g_rt), 0);
    sleep_ms(200);
    uint64_t cpu, sw;
    measure_idle(500, &cpu, &sw);
    assert_true(cpu < cpu_bound());
    assert_int_equal(sw, 0);
    assert_int_equal(ot_runtime_stop(g_rt), 0);
    g_rt = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(empty_runtime_is_idle, teardown),
        cmocka_unit_test_teardown(idle_uses_no_cpu, teardown),
        cmocka_unit_test_teardown(idle_after_burst, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
