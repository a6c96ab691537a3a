/* ot_process_info and ot_processes. */
#include "tests/harness.h"

#define TAG_GO 10
#define TAG_DONE 11

static ot_pid_t g_main;

static void waiter(void *arg)
{
    (void)arg;
    uint64_t tag = TAG_GO;
    ot_msg_t *m;
    if (ot_receive(match_tag, &tag, OT_INFINITY, &m) == 0) ot_msg_free(m);
}

static void sleeper(void *arg)
{
    (void)arg;
    ot_sleep(60000);
}

/* Asks about itself, then about a waiter that has messages and links. */
static void asker(void *arg)
{
    (void)arg;
    ot_process_info_t in;
    PCHECK(ot_process_info(ot_self(), &in) == 0);
    PCHECK(in.status == OT_STATUS_RUNNING);
    PCHECK(in.priority == OT_PRIO_HIGH);
    PCHECK(in.scheduler >= 0);
    PCHECK(in.stack_size >= 16 * 1024 && in.stack_used > 0 && in.stack_used < in.stack_size);
    PCHECK(strcmp(in.label, "asker") == 0);

    ot_pid_t w;
    PCHECK(ot_spawn(waiter, NULL, NULL, &w) == 0);
    PCHECK(ot_link(w) == 0);
    ot_ref_t mref;
    PCHECK(ot_monitor(w, &mref) == 0);
    for (int i = 0; i < 5; i++)
        PCHECK(ot_send(w, 99, NULL, 0) == 0);
    PCHECK(ot_register("info_waiter", w) == 0);
    ot_sleep(20); /* let it block in receive */
    PCHECK(ot_process_info(w, &in) == 0);
    PCHECK(in.status == OT_STATUS_WAITING);
    PCHECK(in.message_queue_len == 5);
    PCHECK(in.links == 1);
    PCHECK(in.monitored_by == 1 && in.monitors == 0);
    PCHECK(in.trap_exit == 0);
    PCHECK(strcmp(in.registered_name, "info_waiter") == 0);

    PCHECK(ot_process_info(ot_self(), &in) == 0);
    PCHECK(in.links == 1 && in.monitors == 1);
    PCHECK(in.reductions >= 5); /* five sends at least */

    ot_pid_t sl;
    PCHECK(ot_spawn(sleeper, NULL, NULL, &sl) == 0);
    ot_sleep(20);
    PCHECK(ot_process_info(sl, &in) == 0);
    PCHECK(in.status == OT_STATUS_SLEEPING);
    /* Answering woke it: it must still be asleep afterwards. */
    ot_sleep(10);
    PCHECK(ot_process_info(sl, &in) == 0);
    PCHECK(in.status == OT_STATUS_SLEEPING);
    ot_reason_t k = {.code = OT_EXIT_KILL};
    PCHECK(ot_exit_pid(sl, &k) == 0);

    PCHECK(ot_unlink(w) == 0);
    PCHECK(ot_send(w, TAG_GO, NULL, 0) == 0);
    ot_msg_t *m;
    PCHECK(ot_receive_ref(mref, 5000, &m) == 0);
    ot_msg_free(m);
    /* Dead now. */
    PCHECK(ot_process_info(w, &in) == -ESRCH);
    PCHECK(ot_send(g_main, TAG_DONE, NULL, 0) == 0);
}

static void info_cases(void **state)
{
    (void)state;
    start_rt(2);
    assert_int_equal(ot_attach(&g_main), 0);
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.priority = OT_PRIO_HIGH;
    o.name = "asker";
    assert_int_equal(ot_spawn(asker, NULL, &o, NULL), 0);
    uint64_t tag = TAG_DONE;
    ot_msg_t *m;
    assert_int_equal(ot_receive(match_tag, &tag, 10000, &m), 0);
    ot_msg_free(m);

    /* Bad input. */
    ot_process_info_t in;
    assert_int_equal(ot_process_info(g_main, NULL), -EINVAL);
    assert_int_equal(ot_process_info(OT_PID_NONE, &in), -EINVAL);
    assert_int_equal(ot_process_info(g_main, &in), 0);
    assert_int_equal(in.status, OT_STATUS_ATTACHED);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

static void from_plain_thread(void **state)
{
    (void)state;
    start_rt(1);
    ot_pid_t w;
    assert_int_equal(ot_spawn(waiter, NULL, NULL, &w), 0);
    ot_process_info_t in;
    /* A plain thread cannot receive the answer. */
    assert_int_equal(ot_process_info(w, &in), -EPERM);
    assert_int_equal(ot_send(w, TAG_GO, NULL, 0), 0);
    stop_rt();
}

static void processes_snapshot(void **state)
{
    (void)state;
    start_rt(2);
    enum { N = 1000 };
    static ot_pid_t pids[N];
    for (int i = 0; i < N; i++)
        assert_int_equal(ot_spawn(waiter, NULL, NULL, &pids[i]), 0);
    static ot_pid_t seen[2 * N];
    long n = ot_processes(seen, 2 * N);
    assert_true(n >= N);
    /* Every process alive during the call is listed. */
    for (int i = 0; i < N; i++) {
        bool found = false;
        for (long j = 0; j < n && !found; j++)
            found = seen[j] == pids[i];
        assert_true(found);
    }
    /* Too small an array: the count, not more writes. */
    ot_pid_t two[2] = {0, 0};
    assert_true(ot_processes(two, 2) >= N);
    assert_true(two[0] != 0 && two[1] != 0);
    assert_int_equal(ot_processes(NULL, 5), -EINVAL);
    assert_true(ot_processes(NULL, 0) >= N);
    for (int i = 0; i < N; i++)
        assert_int_equal(ot_send(pids[i], TAG_GO, NULL, 0), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    assert_int_equal(ot_processes(NULL, 0), 0);
    stop_rt();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(info_cases, teardown),
        cmocka_unit_test_teardown(from_plain_thread, teardown),
        cmocka_unit_test_teardown(processes_snapshot, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
