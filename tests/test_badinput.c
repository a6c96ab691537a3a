/* Bad input gets the documented error, never a crash: NULLs, zero and
 * oversized lengths, forged pids, calls from the wrong thread, calls with no
 * runtime, bad configurations. Every error returned has a name and a text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
#include <cmocka.h>

#include "otter/otter.h"
#include "tests/harness.h"

/* rc must be exactly -code, and ot_strerror / ot_err_name must know it. */
#define EXPECT_ERR(expr, code)                                      \
    do {                                                            \
        int rc_ = (int)(expr);                                      \
        assert_int_equal(rc_, -(code));                             \
        assert_string_not_equal(ot_strerror(rc_), "unknown error"); \
        assert_string_not_equal(ot_err_name(rc_), "UNKNOWN");       \
    } while (0)

/* The same inside processes. */
#define PEXPECT_ERR(expr, code)                                 \
    do {                                                        \
        int rc_ = (int)(expr);                                  \
        PCHECK(rc_ == -(code));                                 \
        PCHECK(strcmp(ot_strerror(rc_), "unknown error") != 0); \
    } while (0)

enum { TAG_X = 1, TAG_DONE = 2, TAG_STOP = 3 };

static void nothing(void *arg)
{
    (void)arg;
}

static atomic_int g_freed;
static void count_free(void *p)
{
    (void)p;
    atomic_fetch_add(&g_freed, 1);
}

/* ---- no runtime ---------------------------------------------------------- */

static void no_runtime(void **state)
{
    (void)state;
    char b[8] = "payload";
    ot_msg_t *m = NULL;
    const ot_pid_t some = ((ot_pid_t)1 << 32) | 1;
    EXPECT_ERR(ot_send(some, TAG_X, b, sizeof b), EPERM);
    EXPECT_ERR(ot_send_ref(some, TAG_X, 1, b, sizeof b), EPERM);
    atomic_store(&g_freed, 0);
    EXPECT_ERR(ot_send_buf(some, TAG_X, 0, b, sizeof b, count_free), EPERM);
    assert_int_equal(atomic_load(&g_freed), 1); /* freed on error too */
    EXPECT_ERR(ot_send_after(1, some, TAG_X, b, sizeof b, NULL), EPERM);
    EXPECT_ERR(ot_spawn(nothing, NULL, NULL, NULL), EPERM);
    ot_pid_t pid = 77;
    EXPECT_ERR(ot_attach(&pid), EPERM);
    EXPECT_ERR(ot_attach(NULL), EINVAL);
    EXPECT_ERR(ot_detach(), EPERM);
    EXPECT_ERR(ot_receive(NULL, NULL, 0, &m), EPERM);
    EXPECT_ERR(ot_receive(NULL, NULL, 10, &m), EPERM);
    EXPECT_ERR(ot_receive_ref(5, 0, &m), EPERM);
    EXPECT_ERR(ot_mailbox_len(), EPERM);
    EXPECT_ERR(ot_yield(), EPERM);
    EXPECT_ERR(ot_exit(), EPERM);
    EXPECT_ERR(ot_timer_cancel(((ot_timer_t)1 << 32) | 1), ENOENT);
    EXPECT_ERR(ot_runtime_stop(NULL), EINVAL);
    EXPECT_ERR(ot_runtime_wait_idle(NULL, 0), EINVAL);
    EXPECT_ERR(ot_runtime_schedulers(NULL), EINVAL);
    ot_sched_stats_t st;
    EXPECT_ERR(ot_runtime_stats(NULL, &st), EINVAL);
    assert_int_equal(ot_self(), OT_PID_NONE);
    assert_int_equal(ot_process_count(), 0);
    /* References work anywhere, and are never 0. */
    ot_ref_t r1 = ot_make_ref(), r2 = ot_make_ref();
    assert_true(r1 != 0 && r2 != 0 && r1 != r2);
    /* ot_sleep outside a process sleeps the thread. */
    uint64_t t0 = now_ns();
    assert_int_equal(ot_sleep(5), 0);
    assert_true(now_ns() - t0 >= 5000000u);

    /* A runtime that was stopped is not one any more. */
    ot_runtime_t *old;
    assert_int_equal(ot_runtime_start(NULL, &old), 0);
    assert_int_equal(ot_runtime_stop(old), 0);
    EXPECT_ERR(ot_runtime_stop(old), EINVAL);
    EXPECT_ERR(ot_runtime_wait_idle(old, 0), EINVAL);
    EXPECT_ERR(ot_send(some, TAG_X, NULL, 0), EPERM);
}

/* ---- links, monitors, exits, names, information -------------------------- */

static void ft_calls_in_process(void *arg)
{
    ot_pid_t main_pid = *(ot_pid_t *)arg;
    const ot_pid_t forged = ((ot_pid_t)7 << 32) | 0x7fffffffu; /* outside the table */
    PEXPECT_ERR(ot_link(OT_PID_NONE), EINVAL);
    PEXPECT_ERR(ot_link(forged), EINVAL);
    PEXPECT_ERR(ot_unlink(forged), EINVAL);
    ot_ref_t ref;
    PEXPECT_ERR(ot_monitor(main_pid, NULL), EINVAL);
    PEXPECT_ERR(ot_monitor(forged, &ref), EINVAL);
    PEXPECT_ERR(ot_demonitor(0, 0), EINVAL);
    PEXPECT_ERR(ot_demonitor(12345, 0x80), EINVAL);
    PCHECK(ot_demonitor(12345, OT_DEMONITOR_FLUSH) == 0); /* unknown: not active */
    PEXPECT_ERR(ot_exit_pid(main_pid, NULL), EINVAL);
    ot_reason_t r = {.code = OT_EXIT_SHUTDOWN, .len = OT_REASON_DATA_MAX + 1};
    PEXPECT_ERR(ot_exit_pid(main_pid, &r), EINVAL);
    PEXPECT_ERR(ot_exit_reason(&r), EINVAL); /* returns: the reason is bad */
    PEXPECT_ERR(ot_spawn_monitor(nothing, NULL, NULL, NULL, NULL), EINVAL);
    PEXPECT_ERR(ot_spawn_link(NULL, NULL, NULL, NULL), EINVAL);
    PCHECK(ot_trap_exit(true) == 0);
    PCHECK(ot_trap_exit(false) == 1);
    ot_process_info_t in;
    PEXPECT_ERR(ot_process_info(forged, &in), EINVAL);
    PEXPECT_ERR(ot_process_info(ot_self(), NULL), EINVAL);
    PCHECK(ot_send(main_pid, TAG_X, NULL, 0) == 0);
}

static void fault_tolerance_errors(void **state)
{
    (void)state;
    const ot_pid_t some = ((ot_pid_t)1 << 32) | 1;
    ot_reason_t r;
    ot_ref_t ref;
    /* No runtime. */
    EXPECT_ERR(ot_link(some), EPERM);
    EXPECT_ERR(ot_unlink(some), EPERM);
    EXPECT_ERR(ot_monitor(some, &ref), EPERM);
    EXPECT_ERR(ot_demonitor(1, 0), EPERM);
    EXPECT_ERR(ot_exit_pid(some, &(ot_reason_t){.code = OT_EXIT_KILL}), EPERM);
    EXPECT_ERR(ot_exit_reason(NULL), EPERM);
    EXPECT_ERR(ot_trap_exit(true), EPERM);
    EXPECT_ERR(ot_spawn_link(nothing, NULL, NULL, NULL), EPERM);
    EXPECT_ERR(ot_spawn_monitor(nothing, NULL, NULL, NULL, &ref), EPERM);
    EXPECT_ERR(ot_register("x", some), EPERM);
    EXPECT_ERR(ot_unregister("x"), EPERM);
    assert_int_equal(ot_whereis("x"), OT_PID_NONE);
    EXPECT_ERR(ot_send_named("x", TAG_X, NULL, 0), EPERM);
    ot_process_info_t in;
    EXPECT_ERR(ot_process_info(some, &in), EPERM);
    EXPECT_ERR(ot_processes(NULL, 0), EPERM);
    EXPECT_ERR(ot_system_monitor(OT_PID_NONE, NULL), EPERM);
    EXPECT_ERR(ot_dirty_run(nothing, NULL), EPERM);
    /* Reasons. */
    EXPECT_ERR(ot_reason_make(NULL, 0, NULL, 0), EINVAL);
    EXPECT_ERR(ot_reason_make(&r, OT_EXIT_USER, NULL, 3), EINVAL);
    EXPECT_ERR(ot_reason_make(&r, OT_EXIT_USER, "x", OT_REASON_DATA_MAX + 1), EINVAL);
    assert_int_equal(ot_reason_make(&r, OT_EXIT_USER + 1, "abc", 3), 0);
    assert_string_equal(ot_reason_name(r.code), "user");
    assert_string_equal(ot_reason_name(OT_EXIT_KILLED), "killed");
    assert_string_equal(ot_reason_name(100), "unknown");
    EXPECT_ERR(ot_msg_reason(NULL, &r), EINVAL);

    /* With a runtime, from a plain thread and from a process. */
    start_rt(1);
    EXPECT_ERR(ot_link(some), EPERM); /* not a process */
    EXPECT_ERR(ot_monitor(some, &ref), EPERM);
    EXPECT_ERR(ot_exit_pid(OT_PID_NONE, &r), EINVAL);
    EXPECT_ERR(ot_exit_pid(some, &r), ESRCH);
    EXPECT_ERR(ot_register(NULL, some), EINVAL);
    EXPECT_ERR(ot_register("", some), EINVAL);
    EXPECT_ERR(ot_register("x", OT_PID_NONE), EINVAL);
    EXPECT_ERR(ot_register("x", some), ESRCH);
    EXPECT_ERR(ot_unregister("nobody"), ENOENT);
    EXPECT_ERR(ot_send_named("nobody", TAG_X, NULL, 0), ENOENT);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    EXPECT_ERR(ot_trap_exit(false), EPERM); /* attached threads always trap */
    assert_int_equal(ot_trap_exit(true), 1);
    assert_int_equal(ot_spawn(ft_calls_in_process, &me, NULL, NULL), 0);
    uint64_t tag = TAG_X;
    ot_msg_t *m;
    assert_int_equal(ot_receive(match_tag, &tag, 5000, &m), 0);
    ot_msg_free(m);
    /* A message that is not an EXIT or DOWN has no reason. */
    assert_int_equal(ot_send(me, TAG_X, NULL, 0), 0);
    assert_int_equal(ot_receive(match_tag, &tag, 5000, &m), 0);
    EXPECT_ERR(ot_msg_reason(m, &r), EINVAL);
    ot_msg_free(m);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* ---- configuration -------------------------------------------------------- */

static void expect_start_fails(const ot_config_t *cfg, int code)
{
    ot_runtime_t *rt = NULL;
    EXPECT_ERR(ot_runtime_start(cfg, &rt), code);
    /* Nothing runs after a failed start. */
    EXPECT_ERR(ot_spawn(nothing, NULL, NULL, NULL), EPERM);
    assert_int_equal(ot_process_count(), 0);
}

static void bad_config(void **state)
{
    (void)state;
    ot_config_t cfg;
    ot_config_init(NULL); /* ignored, no crash */
    EXPECT_ERR(ot_runtime_start(NULL, NULL), EINVAL);
    ot_config_init(&cfg);
    EXPECT_ERR(ot_runtime_start(&cfg, NULL), EINVAL);

    ot_config_init(&cfg);
    cfg.policy = "no-such-policy";
    expect_start_fails(&cfg, EINVAL);
    cfg.policy = "";
    expect_start_fails(&cfg, EINVAL);

    ot_config_init(&cfg);
    cfg.schedulers = 1025;
    expect_start_fails(&cfg, EINVAL);

    ot_config_init(&cfg);
    cfg.stack_size = (8u << 20) + 1;
    expect_start_fails(&cfg, EINVAL);

    ot_config_init(&cfg);
    cfg.max_processes = 15;
    expect_start_fails(&cfg, EINVAL);
    cfg.max_processes = ((size_t)1 << 31) + 1;
    expect_start_fails(&cfg, EINVAL);

    ot_config_init(&cfg);
    cfg.topology = "this is not a topology";
    expect_start_fails(&cfg, EINVAL);

    /* Every built-in policy name is accepted. */
    const char *const *names = ot_policy_names();
    assert_non_null(names);
    assert_non_null(names[0]);
    for (int i = 0; names[i]; i++) {
        ot_config_init(&cfg);
        cfg.schedulers = 1;
        cfg.policy = names[i];
        ot_runtime_t *rt;
        assert_int_equal(ot_runtime_start(&cfg, &rt), 0);
        assert_int_equal(ot_runtime_schedulers(rt), 1);
        assert_int_equal(ot_runtime_stop(rt), 0);
    }
}

/* ---- a second runtime, stop and wait from the wrong places --------------- */

static void in_process_runtime_calls(void *arg)
{
    ot_pid_t main = *(ot_pid_t *)arg;
    PEXPECT_ERR(ot_runtime_stop(g_rt), EPERM);
    PEXPECT_ERR(ot_runtime_wait_idle(g_rt, 0), EPERM);
    ot_runtime_t *rt2 = NULL;
    PCHECK(ot_runtime_start(NULL, &rt2) < 0); /* not from a scheduler thread */
    PCHECK(rt2 == NULL);
    ot_pid_t p;
    PEXPECT_ERR(ot_attach(&p), EPERM); /* a scheduler thread cannot attach */
    PEXPECT_ERR(ot_detach(), EPERM);
    PCHECK(ot_send(main, TAG_DONE, NULL, 0) == 0);
}

static void busy_and_wrong_thread(void **state)
{
    (void)state;
    start_rt(2);
    ot_runtime_t *rt2 = NULL;
    EXPECT_ERR(ot_runtime_start(NULL, &rt2), EBUSY);
    ot_config_t cfg;
    ot_config_init(&cfg);
    cfg.schedulers = 1;
    EXPECT_ERR(ot_runtime_start(&cfg, &rt2), EBUSY);
    assert_null(rt2);
    int bogus;
    EXPECT_ERR(ot_runtime_stop((ot_runtime_t *)&bogus), EINVAL);
    EXPECT_ERR(ot_runtime_wait_idle((ot_runtime_t *)&bogus, 0), EINVAL);
    EXPECT_ERR(ot_runtime_wait_idle(g_rt, -2), EINVAL);
    EXPECT_ERR(ot_runtime_stats(g_rt, NULL), EINVAL);
    ot_sched_stats_t st;
    assert_int_equal(ot_runtime_stats(g_rt, &st), 0);
    assert_int_equal(ot_runtime_schedulers(g_rt), 2);

    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    /* An attached thread is not a process for these. */
    EXPECT_ERR(ot_yield(), EPERM);
    EXPECT_ERR(ot_exit(), EPERM);
    assert_int_equal(ot_spawn(in_process_runtime_calls, &me, NULL, NULL), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 10000, &m), 0);
    ot_msg_free(m);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    stop_rt();
}

/* ---- messages ------------------------------------------------------------ */

static void *plain_thread_calls(void *arg)
{
    (void)arg;
    ot_msg_t *m;
    int *res = calloc(6, sizeof *res);
    res[0] = ot_receive(NULL, NULL, 0, &m);
    res[1] = ot_receive(NULL, NULL, 10, &m);
    res[2] = ot_receive_ref(1, 10, &m);
    res[3] = (int)ot_mailbox_len();
    res[4] = ot_yield();
    res[5] = ot_detach();
    return res;
}

static void message_errors(void **state)
{
    (void)state;
    start_rt(2);
    char small[16] = "x";
    ot_msg_t *m = NULL;

    /* Not attached: no mailbox. */
    EXPECT_ERR(ot_receive(NULL, NULL, 0, &m), EPERM);
    EXPECT_ERR(ot_receive(NULL, NULL, OT_INFINITY, &m), EPERM);
    EXPECT_ERR(ot_receive_ref(1, 0, &m), EPERM);
    EXPECT_ERR(ot_mailbox_len(), EPERM);
    EXPECT_ERR(ot_yield(), EPERM);
    EXPECT_ERR(ot_exit(), EPERM);
    EXPECT_ERR(ot_detach(), EPERM);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, plain_thread_calls, NULL), 0);
    int *res;
    assert_int_equal(pthread_join(th, (void **)&res), 0);
    for (int i = 0; i < 6; i++)
        EXPECT_ERR(res[i], EPERM);
    free(res);

    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    /* Receive arguments. */
    EXPECT_ERR(ot_receive(NULL, NULL, 0, NULL), EINVAL);
    EXPECT_ERR(ot_receive(NULL, NULL, -2, &m), EINVAL);
    EXPECT_ERR(ot_receive(NULL, NULL, INT64_MIN, &m), EINVAL);
    EXPECT_ERR(ot_receive_ref(0, 0, &m), EINVAL);
    EXPECT_ERR(ot_receive_ref(1, 0, NULL), EINVAL);
    EXPECT_ERR(ot_receive_ref(1, -5, &m), EINVAL);

    /* Send arguments. */
    EXPECT_ERR(ot_send(me, TAG_X, NULL, 1), EINVAL);
    EXPECT_ERR(ot_send_ref(me, TAG_X, 1, NULL, 10), EINVAL);
    EXPECT_ERR(ot_send(OT_PID_NONE, TAG_X, small, 1), EINVAL);
    EXPECT_ERR(ot_send(me, TAG_X, small, OT_MSG_MAX + 1), EMSGSIZE);
    EXPECT_ERR(ot_send(me, TAG_X, small, SIZE_MAX), EMSGSIZE);
    EXPECT_ERR(ot_send_ref(me, TAG_X, 1, small, OT_MSG_MAX + 1), EMSGSIZE);
    atomic_store(&g_freed, 0);
    EXPECT_ERR(ot_send_buf(me, TAG_X, 0, NULL, 5, count_free), EINVAL);
    assert_int_equal(atomic_load(&g_freed), 0); /* nothing to free */
    EXPECT_ERR(ot_send_buf(me, TAG_X, 0, small, OT_MSG_MAX + 1, count_free), EMSGSIZE);
    assert_int_equal(atomic_load(&g_freed), 1);
    EXPECT_ERR(ot_send_buf(OT_PID_NONE, TAG_X, 0, small, 1, count_free), EINVAL);
    assert_int_equal(atomic_load(&g_freed), 2);
    /* Timers. */
    EXPECT_ERR(ot_send_after(1, me, TAG_X, NULL, 3, NULL), EINVAL);
    EXPECT_ERR(ot_send_after(1, me, TAG_X, small, OT_MSG_MAX + 1, NULL), EMSGSIZE);
    EXPECT_ERR(ot_send_after(1, OT_PID_NONE, TAG_X, NULL, 0, NULL), EINVAL);
    EXPECT_ERR(ot_send_after(UINT64_MAX, me, TAG_X, NULL, 0, NULL), EINVAL);
    EXPECT_ERR(ot_timer_cancel(0), ENOENT);
    EXPECT_ERR(ot_timer_cancel(UINT64_MAX), ENOENT);
    /* None of the failed sends left anything. */
    assert_int_equal(ot_mailbox_len(), 0);
    EXPECT_ERR(ot_receive(NULL, NULL, 20, &m), ETIMEDOUT);

    /* Zero-length messages, with or without a pointer. */
    assert_int_equal(ot_send(me, TAG_X, NULL, 0), 0);
    assert_int_equal(ot_send(me, TAG_X, small, 0), 0);
    assert_int_equal(ot_send_buf(me, TAG_X, 0, NULL, 0, NULL), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(ot_receive(NULL, NULL, 0, &m), 0);
        assert_int_equal(ot_msg_len(m), 0);
        ot_msg_free(m);
    }
    /* Exactly the largest message is fine, and arrives intact. */
    char *big = malloc(OT_MSG_MAX);
    assert_non_null(big);
    for (size_t i = 0; i < OT_MSG_MAX; i += 4096)
        big[i] = (char)(i >> 12);
    big[OT_MSG_MAX - 1] = 42;
    assert_int_equal(ot_send(me, TAG_X, big, OT_MSG_MAX), 0);
    free(big);
    assert_int_equal(ot_receive(NULL, NULL, 0, &m), 0);
    assert_int_equal(ot_msg_len(m), OT_MSG_MAX);
    const char *d = ot_msg_data(m);
    for (size_t i = 0; i < OT_MSG_MAX; i += 4096)
        assert_int_equal(d[i], (char)(i >> 12));
    assert_int_equal(d[OT_MSG_MAX - 1], 42);
    ot_msg_free(m);

    /* Accessors on NULL, and freeing NULL. */
    assert_int_equal(ot_msg_tag(NULL), 0);
    assert_int_equal(ot_msg_ref(NULL), 0);
    assert_int_equal(ot_msg_sender(NULL), OT_PID_NONE);
    assert_null(ot_msg_data(NULL));
    assert_int_equal(ot_msg_len(NULL), 0);
    ot_msg_free(NULL);

    /* Attaching twice, detaching twice. */
    ot_pid_t again;
    EXPECT_ERR(ot_attach(&again), EEXIST);
    EXPECT_ERR(ot_attach(NULL), EINVAL);
    assert_int_equal(ot_detach(), 0);
    EXPECT_ERR(ot_detach(), EPERM);
    EXPECT_ERR(ot_receive(NULL, NULL, 0, &m), EPERM);
    stop_rt();
}

/* ---- spawn --------------------------------------------------------------- */

static void waiter(void *arg)
{
    (void)arg;
    uint64_t t = TAG_STOP;
    ot_msg_t *m;
    if (ot_receive(match_tag, &t, 60000, &m) == 0) ot_msg_free(m);
}

static void spawn_errors(void **state)
{
    (void)state;
    ot_config_t cfg;
    ot_config_init(&cfg);
    cfg.schedulers = 2;
    cfg.max_processes = 16;
    cfg.stop_grace_ms = 200;
    start_cfg(&cfg);

    ot_spawn_opts_t o;
    ot_spawn_opts_init(NULL); /* ignored */
    EXPECT_ERR(ot_spawn(NULL, NULL, NULL, NULL), EINVAL);
    ot_spawn_opts_init(&o);
    o.priority = -1;
    EXPECT_ERR(ot_spawn(nothing, NULL, &o, NULL), EINVAL);
    o.priority = OT_PRIO_LOW + 1;
    EXPECT_ERR(ot_spawn(nothing, NULL, &o, NULL), EINVAL);
    ot_spawn_opts_init(&o);
    o.stack_size = (8u << 20) + 1;
    EXPECT_ERR(ot_spawn(nothing, NULL, &o, NULL), EINVAL);
    o.stack_size = SIZE_MAX;
    EXPECT_ERR(ot_spawn(nothing, NULL, &o, NULL), EINVAL);
    ot_spawn_opts_init(&o);
    o.scheduler = 2;
    EXPECT_ERR(ot_spawn(nothing, NULL, &o, NULL), EINVAL);
    o.scheduler = -2;
    EXPECT_ERR(ot_spawn(nothing, NULL, &o, NULL), EINVAL);
    assert_int_equal(ot_process_count(), 0); /* no failed spawn left a process */

    /* A full table: -EAGAIN, for processes and attached threads alike. */
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    ot_pid_t pids[32];
    int n = 0, rc;
    while ((rc = ot_spawn(waiter, NULL, NULL, &pids[n])) == 0 && n < 31)
        n++;
    EXPECT_ERR(rc, EAGAIN);
    assert_true(n + 1 >= 15 && n + 1 <= 16); /* table of 16, slot 0 unused */
    assert_int_equal(ot_process_count(), (size_t)n + 1);
    /* Room again once they are gone. */
    for (int i = 0; i < n; i++)
        assert_int_equal(ot_send(pids[i], TAG_STOP, NULL, 0), 0);
    uint64_t end = now_ns() + 10ull * 1000000000u;
    while (ot_process_count() != 1 && now_ns() < end)
        ot_sleep(1);
    assert_int_equal(ot_process_count(), 1);
    for (int i = 0; i < n; i++) {
        rc = ot_spawn(waiter, NULL, NULL, &pids[i]);
        if (rc != 0) fprintf(stderr, "respawn %d of %d: %s\n", i, n, ot_strerror(rc));
        assert_int_equal(rc, 0);
    }
    for (int i = 0; i < n; i++)
        assert_int_equal(ot_send(pids[i], TAG_STOP, NULL, 0), 0);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    stop_rt();
}

/* ---- pid formatting ------------------------------------------------------ */

static void pid_format(void **state)
{
    (void)state;
    ot_pid_t pid = ((ot_pid_t)7 << 32) | 1234;
    char buf[32];
    assert_int_equal(ot_pid_format(pid, buf, sizeof buf), 10);
    assert_string_equal(buf, "<0.1234.7>");
    /* Truncated, still terminated; the return is the length needed. */
    memset(buf, 'z', sizeof buf);
    assert_int_equal(ot_pid_format(pid, buf, 5), 10);
    assert_string_equal(buf, "<0.1");
    assert_int_equal(ot_pid_format(pid, NULL, 0), 10);
    EXPECT_ERR(ot_pid_format(pid, NULL, 10), EINVAL);
    assert_int_equal(ot_pid_format(OT_PID_NONE, buf, sizeof buf), 7);
    assert_string_equal(buf, "<0.0.0>");
}

/* ---- error texts --------------------------------------------------------- */

static void every_error_has_a_text(void **state)
{
    (void)state;
    const int codes[] = {EINVAL,   ENOMEM, ESRCH, ETIMEDOUT, EEXIST, ENOENT,
                         EMSGSIZE, EPERM,  EBUSY, EAGAIN,    ENOSYS, EDEADLK};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        assert_string_not_equal(ot_strerror(-codes[i]), "unknown error");
        assert_string_equal(ot_strerror(-codes[i]), ot_strerror(codes[i]));
        assert_string_not_equal(ot_err_name(-codes[i]), "UNKNOWN");
    }
    assert_string_equal(ot_strerror(-EWOULDBLOCK - 100000), "unknown error");
    assert_string_equal(ot_strerror(INT32_MIN + 1), "unknown error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_error_has_a_text),
        cmocka_unit_test(pid_format),
        cmocka_unit_test_teardown(no_runtime, teardown),
        cmocka_unit_test_teardown(bad_config, teardown),
        cmocka_unit_test_teardown(busy_and_wrong_thread, teardown),
        cmocka_unit_test_teardown(message_errors, teardown),
        cmocka_unit_test_teardown(spawn_errors, teardown),
        cmocka_unit_test_teardown(fault_tolerance_errors, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
