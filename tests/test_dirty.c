/* The dirty pool: a process in a blocking call does not hold its
 * scheduler; a kill during the call takes effect after it. */
#include <unistd.h>

#include "tests/harness.h"

#define TAG_DONE 11

static ot_pid_t g_main;
static atomic_long g_ticks;
static atomic_int g_in_call;

static void block_200ms(void *arg)
{
    (void)arg;
    atomic_store(&g_in_call, 1);
    usleep(200 * 1000); /* a blocking system call */
    atomic_store(&g_in_call, 0);
}

static void dirty_proc(void *arg)
{
    (void)arg;
    PCHECK(ot_dirty_run(block_200ms, NULL) == 0);
    PCHECK(ot_send(g_main, TAG_DONE, NULL, 0) == 0);
}

static void ticker(void *arg)
{
    (void)arg;
    for (;;) {
        atomic_fetch_add(&g_ticks, 1);
        ot_sleep(1);
    }
}

/* One scheduler: without the dirty pool the ticker could not run at all
 * while the call blocks. */
static void others_keep_running(void **state)
{
    (void)state;
    ot_config_t cfg;
    ot_config_init(&cfg);
    cfg.schedulers = 1;
    cfg.stop_grace_ms = 100;
    cfg.dirty_threads = 1;
    start_cfg(&cfg);
    assert_int_equal(ot_attach(&g_main), 0);
    atomic_store(&g_ticks, 0);
    ot_pid_t t, d;
    assert_int_equal(ot_spawn(ticker, NULL, NULL, &t), 0);
    assert_int_equal(ot_spawn(dirty_proc, NULL, NULL, &d), 0);
    while (!atomic_load(&g_in_call))
        usleep(1000);
    long before = atomic_load(&g_ticks);
    /* process_info says where it is. */
    ot_process_info_t in;
    assert_int_equal(ot_process_info(d, &in), 0);
    assert_int_equal(in.status, OT_STATUS_DIRTY);
    usleep(100 * 1000);
    long during = atomic_load(&g_ticks) - before;
    assert_true(atomic_load(&g_in_call)); /* still blocked */
    assert_true(during >= 20);            /* ~100 expected: 1 ms sleeps */
    uint64_t tag = TAG_DONE;
    ot_msg_t *m;
    assert_int_equal(ot_receive(match_tag, &tag, 5000, &m), 0);
    ot_msg_free(m);
    ot_reason_t k = {.code = OT_EXIT_KILL};
    assert_int_equal(ot_exit_pid(t, &k), 0);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

static void victim(void *arg)
{
    (void)arg;
    ot_dirty_run(block_200ms, NULL);
    /* Never reached: the kill waits for the call, then takes effect. */
    PCHECK(0);
}

static void kill_during_call(void **state)
{
    (void)state;
    start_rt(1);
    assert_int_equal(ot_attach(&g_main), 0);
    ot_pid_t v;
    assert_int_equal(ot_spawn(victim, NULL, NULL, &v), 0);
    ot_ref_t ref;
    assert_int_equal(ot_monitor(v, &ref), 0);
    while (!atomic_load(&g_in_call))
        usleep(1000);
    ot_reason_t k = {.code = OT_EXIT_KILL};
    assert_int_equal(ot_exit_pid(v, &k), 0);
    ot_msg_t *m;
    /* Not before the call ends. */
    assert_int_equal(ot_receive_ref(ref, 50, &m), -ETIMEDOUT);
    assert_int_equal(ot_receive_ref(ref, 5000, &m), 0);
    assert_int_equal(atomic_load(&g_in_call), 0);
    ot_reason_t r;
    assert_int_equal(ot_msg_reason(m, &r), 0);
    assert_int_equal(r.code, OT_EXIT_KILLED);
    ot_msg_free(m);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

static int g_plain;
static void set_plain(void *arg)
{
    *(int *)arg = 1;
}

static void bad_input_and_threads(void **state)
{
    (void)state;
    assert_int_equal(ot_dirty_run(set_plain, &g_plain), -EPERM); /* no runtime */
    start_rt(1);
    assert_int_equal(ot_dirty_run(NULL, NULL), -EINVAL);
    /* A plain thread runs it in place. */
    assert_int_equal(ot_dirty_run(set_plain, &g_plain), 0);
    assert_int_equal(g_plain, 1);
    stop_rt();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(others_keep_running, teardown),
        cmocka_unit_test_teardown(kill_during_call, teardown),
        cmocka_unit_test_teardown(bad_input_and_threads, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
