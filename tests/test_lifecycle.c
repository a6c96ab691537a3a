/* Runtime life cycle: many start/stop rounds, stopping with processes that
 * wait forever, ignore the shutdown message or sleep, attaching and
 * detaching, waiting for idleness, every policy, a synthetic topology. */
#define _GNU_SOURCE
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
#include <pthread.h>
#include <sched.h>
#include <cmocka.h>

#include <dirent.h>
#include <unistd.h>

#include "otter/otter.h"
#include "sched/internal.h" /* scheduler threads, for their CPU affinity */
#include "tests/harness.h"

enum { TAG_PING = 1, TAG_PONG = 2, TAG_DONE = 3, TAG_STOP = 4, TAG_NEVER = 5 };

/* ---- a small workload ---------------------------------------------------- */

/* Answers PING with PONG until STOP or SHUTDOWN. */
static void ponger(void *arg)
{
    (void)arg;
    for (;;) {
        ot_msg_t *m;
        if (ot_receive(NULL, NULL, 30000, &m) != 0) {
            PCHECK(!"ponger timed out");
            return;
        }
        uint64_t tag = ot_msg_tag(m);
        if (tag == TAG_PING)
            PCHECK(ot_send(ot_msg_sender(m), TAG_PONG, ot_msg_data(m), ot_msg_len(m)) == 0);
        ot_msg_free(m);
        if (tag != TAG_PING) return;
    }
}

struct pp {
    ot_pid_t report;
    int rounds;
    int scheduler; /* where to put the ponger, -1 anywhere */
};

/* Ping-pong `rounds` times with a fresh ponger; reports rounds done. */
static void pinger(void *arg)
{
    struct pp *a = arg;
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.scheduler = a->scheduler;
    ot_pid_t p;
    PCHECK(ot_spawn(ponger, NULL, &o, &p) == 0);
    int64_t ok = 0;
    for (int64_t i = 0; i < a->rounds; i++) {
        PCHECK(ot_send(p, TAG_PING, &i, sizeof i) == 0);
        ot_msg_t *m;
        if (ot_receive(NULL, NULL, 30000, &m) != 0) break;
        int64_t v;
        memcpy(&v, ot_msg_data(m), sizeof v);
        if (ot_msg_tag(m) == TAG_PONG && v == i) ok++;
        ot_msg_free(m);
    }
    PCHECK(ot_send(p, TAG_STOP, NULL, 0) == 0);
    PCHECK(ot_send(a->report, TAG_DONE, &ok, sizeof ok) == 0);
}

static void hello(void *arg)
{
    ot_pid_t to = *(ot_pid_t *)arg;
    PCHECK(ot_send(to, TAG_DONE, NULL, 0) == 0);
}

/* Pingers on every scheduler and a burst of spawns; checks the results on
 * the attached main thread. */
static void workload(int npingers, int rounds, int nspawn)
{
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    int ns = ot_runtime_schedulers(g_rt);
    assert_true(ns >= 1);
    struct pp a[16];
    assert_true(npingers <= 16);
    for (int i = 0; i < npingers; i++) {
        a[i] = (struct pp){me, rounds, (i + 1) % ns};
        ot_spawn_opts_t o;
        ot_spawn_opts_init(&o);
        o.scheduler = i % ns;
        assert_int_equal(ot_spawn(pinger, &a[i], &o, NULL), 0);
    }
    for (int i = 0; i < nspawn; i++)
        assert_int_equal(ot_spawn(hello, &me, NULL, NULL), 0);
    int64_t pongs = 0;
    int hellos = 0, dones = 0;
    while (dones < npingers || hellos < nspawn) {
        ot_msg_t *m;
        assert_int_equal(ot_receive(NULL, NULL, 30000, &m), 0);
        assert_int_equal(ot_msg_tag(m), TAG_DONE);
        if (ot_msg_len(m) == sizeof(int64_t)) {
            int64_t v;
            memcpy(&v, ot_msg_data(m), sizeof v);
            pongs += v;
            dones++;
        } else {
            hellos++;
        }
        ot_msg_free(m);
    }
    assert_int_equal(pongs, (int64_t)npingers * rounds);
    assert_int_equal(hellos, nspawn);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 30000), 0);
}

/* ---- many rounds ---------------------------------------------------------- */

static void blocked_forever(void *arg)
{
    (void)arg;
    uint64_t t = TAG_NEVER;
    ot_msg_t *m;
    (void)ot_receive(match_tag, &t, OT_INFINITY, &m);
}

/* Threads of this process, from /proc/self/task. */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static void start_stop_many(void **state)
{
    (void)state;
    const int rounds = 50;
    int threads_before = -1; /* after round 0: sanitizers start threads of their own */
    for (int r = 0; r < rounds; r++) {
        start_rt_grace(1 + r % 3, 50); /* 1, 2 or 3 schedulers (3 > cores) */
        assert_int_equal(ot_process_count(), 0);
        workload(2, 200, 50);
        /* Every other round, leave processes behind for stop to end. */
        if (r % 2) {
            for (int i = 0; i < 20; i++)
                assert_int_equal(ot_spawn(blocked_forever, NULL, NULL, NULL), 0);
            assert_int_equal(ot_process_count(), 20);
        }
        /* Every third round, stop with the main thread still attached. */
        ot_pid_t me = OT_PID_NONE;
        if (r % 3 == 0) assert_int_equal(ot_attach(&me), 0);
        stop_rt();
        if (me != OT_PID_NONE) {
            ot_msg_t *m;
            /* The stop detached us. */
            assert_int_equal(ot_receive(NULL, NULL, 0, &m), -EPERM);
            assert_int_equal(ot_detach(), -EPERM);
        }
        /* No thread left behind: schedulers and the reclaimer are joined.
         * A joined thread can stay listed in /proc/self/task for a moment
         * after pthread_join returns (the kernel reaps it after the futex
         * wake that ends the join): this failed once in a dozen runs on a
         * loaded machine. So wait up to a second for the count to settle;
         * a thread really left behind stays. */
        if (r == 0) {
            threads_before = thread_count();
        } else {
            for (int i = 0; i < 100 && thread_count() != threads_before; i++)
                usleep(10000);
            assert_int_equal(thread_count(), threads_before);
        }
    }
}

/* ---- stopping ------------------------------------------------------------ */

static atomic_int g_polite_shutdowns, g_stubborn_shutdowns, g_after_kill, g_woke;

/* Exits on OT_TAG_SHUTDOWN. */
static void polite(void *arg)
{
    (void)arg;
    for (;;) {
        ot_msg_t *m;
        if (ot_receive(NULL, NULL, OT_INFINITY, &m) != 0) return;
        uint64_t tag = ot_msg_tag(m);
        ot_msg_free(m);
        if (tag == OT_TAG_SHUTDOWN) {
            atomic_fetch_add(&g_polite_shutdowns, 1);
            return;
        }
    }
}

/* Sees OT_TAG_SHUTDOWN and waits on regardless. */
static void stubborn(void *arg)
{
    (void)arg;
    for (;;) {
        ot_msg_t *m;
        if (ot_receive(NULL, NULL, OT_INFINITY, &m) != 0) break;
        uint64_t tag = ot_msg_tag(m);
        ot_msg_free(m);
        if (tag == OT_TAG_SHUTDOWN) {
            /* A second one would mean we were resumed after the kill. */
            if (atomic_fetch_add(&g_stubborn_shutdowns, 1) >= 5)
                atomic_fetch_add(&g_after_kill, 1);
        }
    }
    atomic_fetch_add(&g_after_kill, 1);
}

/* Waits for a tag that never comes: never even looks at the shutdown. */
static void deaf(void *arg)
{
    (void)arg;
    uint64_t t = TAG_NEVER;
    ot_msg_t *m;
    int rc = ot_receive(match_tag, &t, OT_INFINITY, &m);
    (void)rc;
    atomic_fetch_add(&g_after_kill, 1);
}

static void sleepy(void *arg)
{
    (void)arg;
    ot_sleep(60000);
    atomic_fetch_add(&g_woke, 1);
}

static void waits_long(void *arg)
{
    (void)arg;
    ot_msg_t *m;
    uint64_t t = TAG_NEVER;
    (void)ot_receive(match_tag, &t, 60000, &m);
    atomic_fetch_add(&g_woke, 1);
}

static void stop_with_blocked_processes(void **state)
{
    (void)state;
    atomic_store(&g_polite_shutdowns, 0);
    atomic_store(&g_stubborn_shutdowns, 0);
    atomic_store(&g_after_kill, 0);
    start_rt_grace(2, 50);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ot_spawn(polite, NULL, NULL, NULL), 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(ot_spawn(stubborn, NULL, NULL, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ot_spawn(deaf, NULL, NULL, NULL), 0);
    /* All blocked: nobody ends on its own. */
    assert_int_equal(ot_runtime_wait_idle(g_rt, 100), -ETIMEDOUT);
    assert_int_equal(ot_process_count(), 18);
    uint64_t t0 = now_ns();
    stop_rt();
    uint64_t el = now_ns() - t0;
    printf("stop with 8 processes that do not exit: %.1f ms (grace 50 ms)\n", el / 1e6);
    assert_int_equal(atomic_load(&g_polite_shutdowns), 10); /* all were told */
    assert_int_equal(atomic_load(&g_stubborn_shutdowns), 5);
    assert_int_equal(atomic_load(&g_after_kill), 0); /* killed, not resumed */
    assert_true(el >= 50000000u);                    /* the grace was given */
    assert_true(el < (g_san ? 10000000000u : 3000000000u));

    /* When everyone obeys, stop does not wait out the grace period. */
    atomic_store(&g_polite_shutdowns, 0);
    start_rt_grace(2, 20000);
    for (int i = 0; i < 50; i++)
        assert_int_equal(ot_spawn(polite, NULL, NULL, NULL), 0);
    t0 = now_ns();
    stop_rt();
    el = now_ns() - t0;
    assert_int_equal(atomic_load(&g_polite_shutdowns), 50);
    assert_true(el < 10000000000u);
}

static void stop_while_sleeping(void **state)
{
    (void)state;
    atomic_store(&g_woke, 0);
    start_rt_grace(2, 50);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ot_spawn(sleepy, NULL, NULL, NULL), 0);
        assert_int_equal(ot_spawn(waits_long, NULL, NULL, NULL), 0);
    }
    ot_sleep(20); /* let them all go to sleep */
    uint64_t t0 = now_ns();
    stop_rt();
    uint64_t el = now_ns() - t0;
    assert_int_equal(atomic_load(&g_woke), 0); /* killed in their sleep */
    assert_true(el < 10000000000u);            /* not their 60 s */
}

/* ---- attaching ------------------------------------------------------------ */

struct att {
    ot_pid_t peer;
    atomic_int ready;
    ot_pid_t self;
    int64_t got;
};

static void *attached_thread(void *arg)
{
    struct att *a = arg;
    if (ot_attach(&a->self) != 0) atomic_fetch_add(&g_fail, 1);
    atomic_store(&a->ready, 1);
    ot_msg_t *m;
    if (ot_receive(NULL, NULL, 10000, &m) == 0) {
        memcpy(&a->got, ot_msg_data(m), sizeof a->got);
        /* Answer the sender, an attached thread too. */
        if (ot_send(ot_msg_sender(m), TAG_PONG, NULL, 0) != 0) atomic_fetch_add(&g_fail, 1);
        ot_msg_free(m);
    }
    if (ot_detach() != 0) atomic_fetch_add(&g_fail, 1);
    return NULL;
}

static void attach_detach(void **state)
{
    (void)state;
    start_rt_grace(2, 50);
    ot_pid_t a, b;
    assert_int_equal(ot_attach(&a), 0);
    assert_true(a != OT_PID_NONE);
    assert_int_equal(ot_self(), a);
    assert_int_equal(ot_process_count(), 1);
    assert_int_equal(ot_attach(&b), -EEXIST);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_self(), OT_PID_NONE);
    assert_int_equal(ot_process_count(), 0);
    assert_int_equal(ot_detach(), -EPERM);
    assert_int_equal(ot_attach(&b), 0);
    assert_true(b != a);
    assert_int_equal(ot_attach(&a), -EEXIST);

    /* Two attached threads talk. */
    struct att t = {.peer = b};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, attached_thread, &t), 0);
    while (!atomic_load(&t.ready))
        sched_yield();
    assert_int_equal(ot_process_count(), 2);
    int64_t v = 4242;
    assert_int_equal(ot_send(t.self, TAG_PING, &v, sizeof v), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 10000, &m), 0);
    assert_int_equal(ot_msg_tag(m), TAG_PONG);
    assert_int_equal(ot_msg_sender(m), t.self);
    ot_msg_free(m);
    pthread_join(th, NULL);
    assert_int_equal(t.got, 4242);
    assert_int_equal(ot_send(t.self, TAG_PING, NULL, 0), -ESRCH); /* it detached */
    assert_int_equal(ot_detach(), 0);
    stop_rt();

    /* Attached when the runtime stops: detached by the stop; a new runtime
     * can be attached to again. */
    start_rt_grace(1, 50);
    assert_int_equal(ot_attach(&a), 0);
    assert_int_equal(ot_send(a, TAG_PING, NULL, 0), 0); /* unread: freed by stop */
    stop_rt();
    assert_int_equal(ot_self(), OT_PID_NONE);
    assert_int_equal(ot_mailbox_len(), -EPERM);
    start_rt_grace(1, 50);
    assert_int_equal(ot_mailbox_len(), -EPERM);
    assert_int_equal(ot_attach(&b), 0);
    assert_int_equal(ot_mailbox_len(), 0);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* ---- waiting for idleness ------------------------------------------------- */

static void naps(void *arg)
{
    (void)arg;
    ot_sleep(100);
}

static void *attached_waiter(void *arg)
{
    atomic_int *state = arg;
    ot_pid_t me;
    if (ot_attach(&me) != 0) atomic_fetch_add(&g_fail, 1);
    atomic_store(state, 1);
    while (atomic_load(state) == 1)
        ot_sleep(1);
    if (ot_detach() != 0) atomic_fetch_add(&g_fail, 1);
    return NULL;
}

static void wait_idle(void **state)
{
    (void)state;
    start_rt_grace(2, 50);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 0), 0); /* nothing alive */
    for (int i = 0; i < 20; i++)
        assert_int_equal(ot_spawn(naps, NULL, NULL, NULL), 0);
    uint64_t t0 = now_ns();
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10), -ETIMEDOUT);
    assert_int_equal(ot_runtime_wait_idle(g_rt, -1), 0);
    assert_true(now_ns() - t0 >= 100000000u);
    assert_int_equal(ot_process_count(), 0);

    /* Attached threads are not "alive" for wait_idle. */
    atomic_int st = 0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, attached_waiter, &st), 0);
    while (atomic_load(&st) == 0)
        sched_yield();
    assert_int_equal(ot_process_count(), 1);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 5000), 0);
    atomic_store(&st, 2);
    pthread_join(th, NULL);
    stop_rt();
}

/* ---- policies and topologies --------------------------------------------- */

static void every_policy(void **state)
{
    (void)state;
    const char *const *names = ot_policy_names();
    int n = 0;
    for (; names[n]; n++) {
        ot_config_t cfg;
        ot_config_init(&cfg);
        cfg.schedulers = 2;
        cfg.stop_grace_ms = 50;
        cfg.policy = names[n];
        start_cfg(&cfg);
        workload(4, g_san ? 2000 : 20000, g_san ? 500 : 5000);
        ot_sched_stats_t st;
        assert_int_equal(ot_runtime_stats(g_rt, &st), 0);
        assert_true(st.switches > 0);
        stop_rt();
    }
    assert_true(n >= 1);
    assert_string_equal(names[0], "default");
}

static void synthetic_topology(void **state)
{
    (void)state;
    ot_config_t cfg;
    ot_config_init(&cfg);
    cfg.schedulers = 4;
    cfg.stop_grace_ms = 50;
    cfg.topology = "pack:2 core:2 pu:1";
    start_cfg(&cfg);
    assert_int_equal(ot_runtime_schedulers(g_rt), 4);
    /* Not bound: each scheduler thread may run on every CPU we may. */
    cpu_set_t all, th;
    assert_int_equal(sched_getaffinity(0, sizeof all, &all), 0);
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(pthread_getaffinity_np(g_rt->scheds[i]->thread, sizeof th, &th), 0);
        assert_true(CPU_EQUAL(&th, &all));
    }
    workload(8, g_san ? 2000 : 20000, g_san ? 500 : 5000);
    stop_rt();

    /* The same workload with a policy that ignores the topology. */
    cfg.policy = "random";
    start_cfg(&cfg);
    workload(8, g_san ? 1000 : 10000, g_san ? 200 : 2000);
    stop_rt();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(start_stop_many, teardown),
        cmocka_unit_test_teardown(stop_with_blocked_processes, teardown),
        cmocka_unit_test_teardown(stop_while_sleeping, teardown),
        cmocka_unit_test_teardown(attach_detach, teardown),
        cmocka_unit_test_teardown(wait_idle, teardown),
        cmocka_unit_test_teardown(every_policy, teardown),
        cmocka_unit_test_teardown(synthetic_topology, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
