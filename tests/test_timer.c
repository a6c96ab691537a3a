/* Timers: ot_sleep, receive timeouts and ot_send_after fire on time (never
 * early; within a millisecond typically, on an idle machine), cancellation
 * works exactly once, many timers all arrive, in deadline order, and timers
 * can be armed from threads that are not processes. */
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

/* Lateness bounds (ns): median and max. Relaxed under the sanitizers. */
static int64_t med_bound(void)
{
    return g_san ? 5000000 : 1000000;
}
static int64_t max_bound(void)
{
    return g_san ? 200000000 : 20000000;
}

enum { TAG_DONE = 1, TAG_TICK = 2, TAG_HANDLE = 3, TAG_OTHER = 4 };

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Check a set of lateness samples: none negative (early), median and max
 * within bounds. */
static void check_lateness(const char *what, int64_t *late, int n)
{
    int64_t min = late[0];
    for (int i = 0; i < n; i++)
        if (late[i] < min) min = late[i];
    qsort(late, (size_t)n, sizeof *late, cmp_i64);
    int64_t med = late[n / 2], max = late[n - 1];
    printf("%s: %d samples, lateness min %.3f ms, median %.3f ms, max %.3f ms\n", what, n,
           min / 1e6, med / 1e6, max / 1e6);
    assert_true(min >= 0);
    assert_true(med < med_bound());
    assert_true(max < max_bound());
}

static void wait_done(void)
{
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 60000, &m), 0);
    assert_int_equal(ot_msg_tag(m), TAG_DONE);
    ot_msg_free(m);
}

/* ---- accuracy ------------------------------------------------------------ */

#define NSAMPLES 60
static const uint64_t delays_ms[] = {1, 2, 3, 5, 10, 20};

struct acc {
    ot_pid_t main;
    int kind; /* 0 sleep, 1 receive timeout, 2 send_after */
    int64_t late[NSAMPLES];
};

static void acc_proc(void *arg)
{
    struct acc *a = arg;
    ot_pid_t me = ot_self();
    for (int i = 0; i < NSAMPLES; i++) {
        uint64_t ms = delays_ms[i % (sizeof delays_ms / sizeof delays_ms[0])];
        uint64_t t0 = now_ns();
        if (a->kind == 0) {
            PCHECK(ot_sleep(ms) == 0);
        } else if (a->kind == 1) {
            ot_msg_t *m;
            PCHECK(ot_receive(NULL, NULL, (int64_t)ms, &m) == -ETIMEDOUT);
        } else {
            ot_timer_t t = 0;
            PCHECK(ot_send_after(ms, me, TAG_TICK, &t0, sizeof t0, &t) == 0);
            PCHECK(t != 0);
            ot_msg_t *m;
            PCHECK(ot_receive(NULL, NULL, 10000, &m) == 0);
            PCHECK(ot_msg_tag(m) == TAG_TICK);
            PCHECK(ot_msg_sender(m) == me); /* the process that armed it */
            PCHECK(ot_msg_len(m) == sizeof t0 && memcmp(ot_msg_data(m), &t0, sizeof t0) == 0);
            ot_msg_free(m);
            /* It fired: too late to cancel. */
            PCHECK(ot_timer_cancel(t) == -ENOENT);
        }
        a->late[i] = (int64_t)(now_ns() - t0) - (int64_t)(ms * 1000000u);
    }
    PCHECK(ot_send(a->main, TAG_DONE, NULL, 0) == 0);
}

static void run_accuracy(int kind, const char *what)
{
    start_rt(2);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    static struct acc a;
    memset(&a, 0, sizeof a);
    a.main = me;
    a.kind = kind;
    assert_int_equal(ot_spawn(acc_proc, &a, NULL, NULL), 0);
    wait_done();
    assert_int_equal(ot_detach(), 0);
    stop_rt();
    check_lateness(what, a.late, NSAMPLES);
}

static void sleep_accuracy(void **state)
{
    (void)state;
    run_accuracy(0, "ot_sleep");
}

static void receive_timeout_accuracy(void **state)
{
    (void)state;
    run_accuracy(1, "receive timeout");
}

static void send_after_accuracy(void **state)
{
    (void)state;
    run_accuracy(2, "ot_send_after");
}

/* Sleeping processes do not hold up the others, and ot_sleep(0) yields. */
static atomic_int g_ticks;
static void ticker(void *arg)
{
    atomic_int *stop = arg;
    while (!atomic_load(stop)) {
        atomic_fetch_add(&g_ticks, 1);
        PCHECK(ot_sleep(0) == 0);
    }
}

static void sleeper(void *arg)
{
    ot_pid_t main = *(ot_pid_t *)arg;
    uint64_t t0 = now_ns();
    PCHECK(ot_sleep(100) == 0);
    int64_t el = (int64_t)(now_ns() - t0);
    PCHECK(ot_send(main, TAG_DONE, &el, sizeof el) == 0);
}

static void sleep_lets_others_run(void **state)
{
    (void)state;
    start_rt(1); /* one scheduler: the sleeper and the ticker share it */
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    atomic_int stop = 0;
    atomic_store(&g_ticks, 0);
    assert_int_equal(ot_spawn(ticker, &stop, NULL, NULL), 0);
    assert_int_equal(ot_spawn(sleeper, &me, NULL, NULL), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 10000, &m), 0);
    int64_t el;
    memcpy(&el, ot_msg_data(m), sizeof el);
    ot_msg_free(m);
    atomic_store(&stop, 1);
    assert_true(el >= 100000000);
    assert_true(el < 100000000 + max_bound());
    assert_true(atomic_load(&g_ticks) > 100); /* the ticker ran meanwhile */
    /* Outside a process, ot_sleep sleeps the thread. */
    uint64_t t0 = now_ns();
    assert_int_equal(ot_sleep(20), 0);
    assert_true(now_ns() - t0 >= 20000000u);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    stop_rt();
}

/* ---- cancellation -------------------------------------------------------- */

static void cancel_proc(void *arg)
{
    ot_pid_t main = *(ot_pid_t *)arg;
    ot_pid_t me = ot_self();
    ot_timer_t t;
    ot_msg_t *m;

    /* Cancelled before firing: 0, and the message never comes. */
    PCHECK(ot_send_after(100, me, TAG_TICK, NULL, 0, &t) == 0);
    PCHECK(ot_timer_cancel(t) == 0);
    PCHECK(ot_receive(NULL, NULL, 300, &m) == -ETIMEDOUT);
    /* Cancelled twice: the second says there is nothing to cancel. */
    PCHECK(ot_timer_cancel(t) == -ENOENT);

    /* Fired, then cancelled: -ENOENT. */
    PCHECK(ot_send_after(1, me, TAG_TICK, NULL, 0, &t) == 0);
    PCHECK(ot_receive(NULL, NULL, 5000, &m) == 0);
    ot_msg_free(m);
    PCHECK(ot_timer_cancel(t) == -ENOENT);

    /* Armed here, cancelled by another thread (main). */
    PCHECK(ot_send_after(300, me, TAG_TICK, NULL, 0, &t) == 0);
    PCHECK(ot_send(main, TAG_HANDLE, &t, sizeof t) == 0);
    uint64_t want = TAG_OTHER; /* main's go-ahead after it cancelled */
    PCHECK(ot_receive(NULL, NULL, 5000, &m) == 0);
    PCHECK(ot_msg_tag(m) == want);
    ot_msg_free(m);
    PCHECK(ot_receive(NULL, NULL, 500, &m) == -ETIMEDOUT);

    /* Of two timers, cancel one: only the other comes. */
    ot_timer_t a, b;
    int x = 1, y = 2;
    PCHECK(ot_send_after(50, me, TAG_TICK, &x, sizeof x, &a) == 0);
    PCHECK(ot_send_after(60, me, TAG_TICK, &y, sizeof y, &b) == 0);
    PCHECK(a != b);
    PCHECK(ot_timer_cancel(a) == 0);
    PCHECK(ot_receive(NULL, NULL, 5000, &m) == 0);
    PCHECK(ot_msg_len(m) == sizeof y && memcmp(ot_msg_data(m), &y, sizeof y) == 0);
    ot_msg_free(m);
    PCHECK(ot_receive(NULL, NULL, 200, &m) == -ETIMEDOUT);
    PCHECK(ot_timer_cancel(b) == -ENOENT);

    /* Handles that never were timers. */
    PCHECK(ot_timer_cancel(0) == -ENOENT);
    PCHECK(ot_timer_cancel(~(ot_timer_t)0) == -ENOENT);
    PCHECK(ot_timer_cancel(((ot_timer_t)12345 << 32) | 7) == -ENOENT);

    PCHECK(ot_send(main, TAG_DONE, NULL, 0) == 0);
}

static void cancel(void **state)
{
    (void)state;
    start_rt(2);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    assert_int_equal(ot_spawn(cancel_proc, &me, NULL, NULL), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 10000, &m), 0);
    assert_int_equal(ot_msg_tag(m), TAG_HANDLE);
    ot_timer_t t;
    memcpy(&t, ot_msg_data(m), sizeof t);
    assert_int_equal(ot_timer_cancel(t), 0);
    assert_int_equal(ot_timer_cancel(t), -ENOENT);
    assert_int_equal(ot_send(ot_msg_sender(m), TAG_OTHER, NULL, 0), 0);
    ot_msg_free(m);
    wait_done();

    /* From the attached main thread, to itself. */
    assert_int_equal(ot_send_after(100, me, TAG_TICK, NULL, 0, &t), 0);
    assert_int_equal(ot_timer_cancel(t), 0);
    assert_int_equal(ot_timer_cancel(t), -ENOENT);
    assert_int_equal(ot_receive(NULL, NULL, 300, &m), -ETIMEDOUT);
    assert_int_equal(ot_send_after(5, me, TAG_TICK, NULL, 0, &t), 0);
    assert_int_equal(ot_receive(NULL, NULL, 5000, &m), 0);
    assert_int_equal(ot_msg_sender(m), me); /* armed by the attached thread */
    ot_msg_free(m);
    assert_int_equal(ot_timer_cancel(t), -ENOENT);

    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    stop_rt();
}

/* A stale handle whose slot was reused by a new timer cancels nothing. */
static void stale_proc(void *arg)
{
    ot_pid_t main = *(ot_pid_t *)arg;
    ot_pid_t me = ot_self();
    ot_timer_t t1, t2;
    ot_msg_t *m;
    PCHECK(ot_send_after(20, me, TAG_TICK, NULL, 0, &t1) == 0);
    PCHECK(ot_timer_cancel(t1) == 0);
    PCHECK(ot_sleep(60) == 0); /* its deadline passes: the slot is free again */
    PCHECK(ot_send_after(100, me, TAG_TICK, NULL, 0, &t2) == 0);
    int64_t same = (uint32_t)t1 == (uint32_t)t2;
    PCHECK(t1 != t2);
    PCHECK(ot_timer_cancel(t1) == -ENOENT);
    PCHECK(ot_receive(NULL, NULL, 5000, &m) == 0); /* t2 still fires */
    ot_msg_free(m);
    PCHECK(ot_send(main, TAG_DONE, &same, sizeof same) == 0);
}

static void cancel_stale_handle(void **state)
{
    (void)state;
    start_rt(1); /* one scheduler: its timer-slot cache gives the slot back */
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    assert_int_equal(ot_spawn(stale_proc, &me, NULL, NULL), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 10000, &m), 0);
    assert_int_equal(ot_msg_tag(m), TAG_DONE);
    int64_t same;
    memcpy(&same, ot_msg_data(m), sizeof same);
    ot_msg_free(m);
    assert_int_equal(same, 1); /* the scenario did reuse the slot */
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* ---- many timers --------------------------------------------------------- */

#define MANY 10000

struct many {
    ot_pid_t main;
    /* The library takes its own clock reading inside ot_send_after: its
     * deadline is between lo and hi (readings before and after the call,
     * plus the delay), whatever preemption happened around the call. */
    uint64_t lo[MANY], hi[MANY];
    int64_t late[MANY];
    uint8_t seen[MANY];
    int64_t inversions, dup, bad, lost;
};

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Collects MANY timer messages carrying their index, then checks them. */
static void collect(struct many *g, int64_t from_expected)
{
    uint64_t maxd = 0, tick = TAG_TICK;
    for (int k = 0; k < MANY; k++) {
        ot_msg_t *m;
        int rc = ot_receive(match_tag, &tick, 10000, &m);
        uint64_t at = now_ns();
        if (rc != 0) {
            g->lost = MANY - k;
            break;
        }
        uint32_t i;
        if (ot_msg_len(m) != sizeof i || ot_msg_sender(m) != (ot_pid_t)from_expected) {
            g->bad++;
            ot_msg_free(m);
            continue;
        }
        memcpy(&i, ot_msg_data(m), sizeof i);
        ot_msg_free(m);
        if (i >= MANY || g->seen[i]) {
            g->dup++;
            continue;
        }
        g->seen[i] = 1;
        g->late[i] = (int64_t)(at - g->lo[i]); /* >= the true lateness */
        /* Deadline order: no timer arrives after one whose deadline is
         * surely more than 1 ms later than its own. */
        if (g->hi[i] + 1000000u < maxd) g->inversions++;
        if (g->lo[i] > maxd) maxd = g->lo[i];
    }
}

static void arm_many(struct many *g, ot_pid_t to, uint64_t seed)
{
    for (uint32_t i = 0; i < MANY; i++) {
        uint64_t ms = 1 + rng_next(&seed) % 400;
        g->lo[i] = now_ns() + ms * 1000000u;
        PCHECK(ot_send_after(ms, to, TAG_TICK, &i, sizeof i, NULL) == 0);
        g->hi[i] = now_ns() + ms * 1000000u;
    }
}

static void many_proc(void *arg)
{
    struct many *g = arg;
    arm_many(g, ot_self(), 88172645463325252ull);
    collect(g, (int64_t)ot_self());
    PCHECK(ot_send(g->main, TAG_DONE, NULL, 0) == 0);
}

static void check_many(struct many *g)
{
    assert_int_equal(g->lost, 0);
    assert_int_equal(g->dup, 0);
    assert_int_equal(g->bad, 0);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(g->seen[i], 1);
    assert_int_equal(g->inversions, 0);
    /* Received by a busy receiver: allow a little more than for one timer. */
    int64_t min = g->late[0];
    for (int i = 0; i < MANY; i++)
        if (g->late[i] < min) min = g->late[i];
    qsort(g->late, MANY, sizeof g->late[0], cmp_i64);
    printf("%d timers: lateness min %.3f ms, median %.3f ms, max %.3f ms\n", MANY, min / 1e6,
           g->late[MANY / 2] / 1e6, g->late[MANY - 1] / 1e6);
    assert_true(min >= 0);
    assert_true(g->late[MANY / 2] < 2 * med_bound());
    assert_true(g->late[MANY - 1] < 2 * max_bound());
}

static void many_timers(void **state)
{
    (void)state;
    start_rt(2);
    static struct many g;
    memset(&g, 0, sizeof g);
    assert_int_equal(ot_attach(&g.main), 0);
    assert_int_equal(ot_spawn(many_proc, &g, NULL, NULL), 0);
    wait_done();
    assert_int_equal(ot_detach(), 0);
    stop_rt();
    check_many(&g);
}

/* Armed from the (not attached) main thread: the sender is OT_PID_NONE. */
static void collector_proc(void *arg)
{
    struct many *g = arg;
    collect(g, (int64_t)OT_PID_NONE);
    /* Then main's pid, sent once it attached. */
    uint64_t other = TAG_OTHER;
    ot_msg_t *m;
    PCHECK(ot_receive(match_tag, &other, 30000, &m) == 0);
    ot_pid_t main;
    memcpy(&main, ot_msg_data(m), sizeof main);
    ot_msg_free(m);
    PCHECK(ot_send(main, TAG_DONE, NULL, 0) == 0);
}

static void send_after_from_thread(void **state)
{
    (void)state;
    start_rt(2);
    static struct many g;
    memset(&g, 0, sizeof g);
    ot_pid_t c;
    /* The main thread is not a process while it arms the timers. */
    assert_int_equal(ot_self(), OT_PID_NONE);
    assert_int_equal(ot_spawn(collector_proc, &g, NULL, &c), 0);
    arm_many(&g, c, 0x2545F4914F6CDD1Dull);
    assert_int_equal(atomic_load(&g_fail), 0);
    /* Then main attaches to hear the result, and tells the collector. */
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    assert_int_equal(ot_send(c, TAG_OTHER, &me, sizeof me), 0);
    wait_done();
    assert_int_equal(ot_detach(), 0);
    stop_rt();
    check_many(&g);
}

/* A timer whose target died drops its message; pending timers do not hold
 * up ot_runtime_stop and are freed by it. */
static void dies_early(void *arg)
{
    (void)arg;
}

static void timers_and_death_and_stop(void **state)
{
    (void)state;
    start_rt(2);
    ot_pid_t p;
    assert_int_equal(ot_spawn(dies_early, NULL, NULL, &p), 0);
    ot_timer_t t;
    assert_int_equal(ot_send_after(30, p, TAG_TICK, "x", 1, &t), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    ot_sleep(60); /* fired by now, into nothing */
    assert_int_equal(ot_timer_cancel(t), -ENOENT);

    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(ot_send_after(60000, me, TAG_TICK, "pending", 7, NULL), 0);
    assert_int_equal(ot_detach(), 0);
    uint64_t t0 = now_ns();
    stop_rt(); /* LeakSanitizer checks that their messages are freed */
    assert_true(now_ns() - t0 < 5000000000u);
}

static void now_ms_is_monotonic_clock(void **state)
{
    (void)state;
    uint64_t a = now_ns() / 1000000u;
    uint64_t b = ot_now_ms();
    uint64_t c = now_ns() / 1000000u;
    assert_true(b >= a && b <= c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(now_ms_is_monotonic_clock),
        cmocka_unit_test_teardown(sleep_accuracy, teardown),
        cmocka_unit_test_teardown(receive_timeout_accuracy, teardown),
        cmocka_unit_test_teardown(send_after_accuracy, teardown),
        cmocka_unit_test_teardown(sleep_lets_others_run, teardown),
        cmocka_unit_test_teardown(cancel, teardown),
        cmocka_unit_test_teardown(cancel_stale_handle, teardown),
        cmocka_unit_test_teardown(many_timers, teardown),
        cmocka_unit_test_teardown(send_after_from_thread, teardown),
        cmocka_unit_test_teardown(timers_and_death_and_stop, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
