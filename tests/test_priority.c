/* Priorities, on one scheduler so that the order is deterministic: runnable
 * max processes run before high ones, high before normal, whatever the order
 * they became runnable in; low processes run less often than normal ones
 * but are not starved. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "otter/otter.h"
#include "tests/harness.h"

enum { TAG_DONE = 1, TAG_WAKE = 2 };

/* The order processes ran in (one scheduler: one writer at a time; the
 * main thread reads after the DONE message). */
#define LOG_MAX 64
static int g_log[LOG_MAX];
static atomic_int g_nlog;

static void log_id(int id)
{
    int i = atomic_fetch_add(&g_nlog, 1);
    if (i < LOG_MAX) g_log[i] = id;
}

static void log_proc(void *arg)
{
    log_id((int)(intptr_t)arg);
}

static ot_pid_t spawn_prio(ot_entry_fn fn, int id, int prio)
{
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.priority = prio;
    ot_pid_t pid = OT_PID_NONE;
    PCHECK(ot_spawn(fn, (void *)(intptr_t)id, &o, &pid) == 0);
    return pid;
}

static void expect_log(const int *want, int n)
{
    assert_int_equal(atomic_load(&g_nlog), n);
    for (int i = 0; i < n; i++) {
        if (g_log[i] != want[i]) {
            fprintf(stderr, "run order:");
            for (int k = 0; k < n; k++)
                fprintf(stderr, " %d", g_log[k]);
            fprintf(stderr, "\n");
        }
        assert_int_equal(g_log[i], want[i]);
    }
}

/* Spawns (ids) normal 1,2,3, then high 10,11, then max 20,21, then yields:
 * they all were runnable at once; the log must read 20 21 10 11 1 2 3, and
 * then the controller itself (0), which went to the back of the queue. */
static void mixed_controller(void *arg)
{
    ot_pid_t main = *(ot_pid_t *)arg;
    spawn_prio(log_proc, 1, OT_PRIO_NORMAL);
    spawn_prio(log_proc, 2, OT_PRIO_NORMAL);
    spawn_prio(log_proc, 3, OT_PRIO_NORMAL);
    spawn_prio(log_proc, 10, OT_PRIO_HIGH);
    spawn_prio(log_proc, 11, OT_PRIO_HIGH);
    spawn_prio(log_proc, 20, OT_PRIO_MAX);
    spawn_prio(log_proc, 21, OT_PRIO_MAX);
    PCHECK(atomic_load(&g_nlog) == 0); /* nobody ran yet: we hold the core */
    PCHECK(ot_yield() == 0);
    log_id(0);
    PCHECK(ot_send(main, TAG_DONE, NULL, 0) == 0);
}

static void run_controller(ot_entry_fn fn)
{
    start_rt(1);
    atomic_store(&g_nlog, 0);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    assert_int_equal(ot_spawn(fn, &me, NULL, NULL), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 10000, &m), 0);
    assert_int_equal(ot_msg_tag(m), TAG_DONE);
    ot_msg_free(m);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    stop_rt();
}

static void max_high_normal_order(void **state)
{
    (void)state;
    run_controller(mixed_controller);
    const int want[] = {20, 21, 10, 11, 1, 2, 3, 0};
    expect_log(want, 8);
}

/* A max process woken by a message runs before normal processes that were
 * runnable before it; likewise a high one. */
static void waiting_proc(void *arg)
{
    int id = (int)(intptr_t)arg;
    ot_msg_t *m;
    PCHECK(ot_receive(NULL, NULL, 10000, &m) == 0);
    if (m) ot_msg_free(m);
    log_id(id);
}

static void wake_controller(void *arg)
{
    ot_pid_t main = *(ot_pid_t *)arg;
    ot_pid_t mx = spawn_prio(waiting_proc, 20, OT_PRIO_MAX);
    ot_pid_t hi = spawn_prio(waiting_proc, 10, OT_PRIO_HIGH);
    PCHECK(ot_yield() == 0); /* both run and block in receive */
    PCHECK(atomic_load(&g_nlog) == 0);
    spawn_prio(log_proc, 1, OT_PRIO_NORMAL);
    spawn_prio(log_proc, 2, OT_PRIO_NORMAL);
    PCHECK(ot_send(hi, TAG_WAKE, NULL, 0) == 0); /* high first, then max */
    PCHECK(ot_send(mx, TAG_WAKE, NULL, 0) == 0);
    PCHECK(ot_yield() == 0);
    log_id(0);
    PCHECK(ot_send(main, TAG_DONE, NULL, 0) == 0);
}

static void woken_by_message(void **state)
{
    (void)state;
    run_controller(wake_controller);
    const int want[] = {20, 10, 1, 2, 0};
    expect_log(want, 5);
}

/* A high process that keeps yielding keeps the core from normal ones until
 * it ends (strict priority, as in BEAM). */
static atomic_int g_high_iter, g_high_seen_by_normal;

static void yielding_high(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++) {
        atomic_store(&g_high_iter, i + 1);
        PCHECK(ot_yield() == 0);
    }
}

static void normal_peeks(void *arg)
{
    (void)arg;
    atomic_store(&g_high_seen_by_normal, atomic_load(&g_high_iter));
}

static void strict_controller(void *arg)
{
    ot_pid_t main = *(ot_pid_t *)arg;
    atomic_store(&g_high_iter, 0);
    atomic_store(&g_high_seen_by_normal, -1);
    spawn_prio(normal_peeks, 1, OT_PRIO_NORMAL);
    spawn_prio(yielding_high, 10, OT_PRIO_HIGH);
    PCHECK(ot_yield() == 0);
    PCHECK(ot_send(main, TAG_DONE, NULL, 0) == 0);
}

static void high_starves_normal_while_runnable(void **state)
{
    (void)state;
    run_controller(strict_controller);
    assert_int_equal(atomic_load(&g_high_seen_by_normal), 1000);
}

/* ---- low: less often, not starved ---------------------------------------- */

#define NNORMAL 4
static atomic_int g_stop;
static atomic_long g_runs[NNORMAL + 1];

static void counting_yielder(void *arg)
{
    int id = (int)(intptr_t)arg;
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        atomic_fetch_add_explicit(&g_runs[id], 1, memory_order_relaxed);
        ot_yield();
    }
}

static void low_controller(void *arg)
{
    (void)arg;
    for (int i = 0; i < NNORMAL; i++)
        spawn_prio(counting_yielder, i, OT_PRIO_NORMAL);
    spawn_prio(counting_yielder, NNORMAL, OT_PRIO_LOW);
}

static void low_runs_less_but_runs(void **state)
{
    (void)state;
    start_rt(1);
    atomic_store(&g_stop, 0);
    for (int i = 0; i <= NNORMAL; i++)
        atomic_store(&g_runs[i], 0);
    assert_int_equal(ot_spawn(low_controller, NULL, NULL, NULL), 0);
    struct timespec ts = {0, 300 * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store(&g_stop, 1);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    long normal = 0, low = atomic_load(&g_runs[NNORMAL]);
    long nmin = -1;
    for (int i = 0; i < NNORMAL; i++) {
        long r = atomic_load(&g_runs[i]);
        normal += r;
        if (nmin < 0 || r < nmin) nmin = r;
    }
    long avg = normal / NNORMAL;
    printf("runs in 300 ms: normal avg %ld (min %ld), low %ld (1/%.1f)\n", avg, nmin, low,
           low ? (double)avg / (double)low : 0.0);
    assert_true(avg > 100);
    assert_true(low > 0);         /* not starved */
    assert_true(low * 20 >= avg); /* ... and not far from BEAM's 1 in 8 */
    assert_true(low * 4 <= avg);  /* less often than a normal process */
    stop_rt();
}

/* Fairness between a sender and its receiver on one scheduler: the
 * receiver, woken into the run-next slot, must get its turn when the sender
 * spends its budget, so the mailbox never holds much more than a turn's
 * worth of messages (4000 reductions), not the whole stream. */
#define FAIR_N 200000
static atomic_long g_max_backlog;

static void fair_receiver(void *arg)
{
    ot_pid_t done_to = (ot_pid_t)(uintptr_t)arg;
    long max = 0;
    for (int i = 0; i < FAIR_N; i++) {
        long len = ot_mailbox_len();
        if (len > max) max = len;
        ot_msg_t *m;
        PCHECK(ot_receive(NULL, NULL, OT_INFINITY, &m) == 0);
        ot_msg_free(m);
    }
    atomic_store(&g_max_backlog, max);
    ot_send(done_to, 1, NULL, 0);
}

static void fair_sender(void *arg)
{
    ot_pid_t to = (ot_pid_t)(uintptr_t)arg;
    for (int i = 0; i < FAIR_N; i++)
        PCHECK(ot_send(to, 2, &i, sizeof i) == 0);
}

static void receiver_not_starved_by_sender(void **state)
{
    (void)state;
    start_rt(1);
    ot_pid_t me, rx;
    assert_int_equal(ot_attach(&me), 0);
    assert_int_equal(ot_spawn(fair_receiver, (void *)(uintptr_t)me, NULL, &rx), 0);
    assert_int_equal(ot_spawn(fair_sender, (void *)(uintptr_t)rx, NULL, NULL), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 60000, &m), 0);
    ot_msg_free(m);
    assert_int_equal(ot_detach(), 0);
    long max = atomic_load(&g_max_backlog);
    assert_true(max > 0);
    assert_true(max <= 3 * 4000);
    stop_rt();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(max_high_normal_order, teardown),
        cmocka_unit_test_teardown(woken_by_message, teardown),
        cmocka_unit_test_teardown(high_starves_normal_while_runnable, teardown),
        cmocka_unit_test_teardown(low_runs_less_but_runs, teardown),
        cmocka_unit_test_teardown(receiver_not_starved_by_sender, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
