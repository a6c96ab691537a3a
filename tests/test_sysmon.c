/* The system monitor: long_schedule names a process that holds its
 * scheduler; large_mailbox one whose mailbox passed the limit. */
#include "tests/harness.h"

#define TAG_FILL 20
#define TAG_NEVER 21

static void spin_ms(void *arg)
{
    uint64_t ms = (uint64_t)(uintptr_t)arg;
    uint64_t end = now_ns() + ms * 1000000u;
    while (now_ns() < end) {
        /* C code with no scheduling point: the case C cannot preempt. */
    }
}

static bool is_monitor_event(const ot_msg_t *m, void *arg)
{
    (void)arg;
    return ot_msg_tag(m) == OT_TAG_MONITOR;
}

static void long_schedule(void **state)
{
    (void)state;
    start_rt(2);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    ot_sysmon_opts_t o = {.long_schedule_ms = 50};
    assert_int_equal(ot_system_monitor(me, &o), 0);
    ot_pid_t hog;
    ot_spawn_opts_t so;
    ot_spawn_opts_init(&so);
    so.name = "hog";
    assert_int_equal(ot_spawn(spin_ms, (void *)(uintptr_t)400, &so, &hog), 0);
    ot_ref_t href;
    assert_int_equal(ot_monitor(hog, &href), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(is_monitor_event, NULL, 5000, &m), 0);
    ot_sysmon_event_t ev;
    assert_int_equal(ot_msg_sysmon(m, &ev), 0);
    assert_int_equal(ev.kind, OT_SYSMON_LONG_SCHEDULE);
    assert_true(ev.pid == hog);
    assert_true(ot_msg_sender(m) == hog);
    assert_true(ev.value >= 50);
    assert_string_equal(ev.label, "hog");
    assert_true(ev.scheduler >= 0 && ev.scheduler < 2);
    ot_msg_free(m);
    /* Reported once per stretch: no second event for the same run. */
    assert_int_equal(ot_receive(is_monitor_event, NULL, 300, &m), -ETIMEDOUT);
    assert_int_equal(ot_receive_ref(href, 5000, &m), 0);
    ot_msg_free(m);

    /* A short run does not trigger it. */
    assert_int_equal(ot_spawn(spin_ms, (void *)(uintptr_t)5, NULL, NULL), 0);
    assert_int_equal(ot_receive(is_monitor_event, NULL, 200, &m), -ETIMEDOUT);

    /* Off. */
    assert_int_equal(ot_system_monitor(OT_PID_NONE, NULL), 0);
    assert_int_equal(ot_spawn(spin_ms, (void *)(uintptr_t)200, NULL, NULL), 0);
    assert_int_equal(ot_receive(is_monitor_event, NULL, 400, &m), -ETIMEDOUT);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

static bool never(const ot_msg_t *m, void *arg)
{
    (void)arg;
    return ot_msg_tag(m) == TAG_NEVER;
}

/* Looks at its mailbox without taking anything until told. */
static void hoarder(void *arg)
{
    (void)arg;
    ot_msg_t *m;
    while (ot_receive(never, NULL, OT_INFINITY, &m) != 0) {
    }
    ot_msg_free(m);
}

static void large_mailbox(void **state)
{
    (void)state;
    start_rt(1);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    ot_sysmon_opts_t o = {.large_mailbox = 1000};
    assert_int_equal(ot_system_monitor(me, &o), 0);
    ot_pid_t h;
    assert_int_equal(ot_spawn(hoarder, NULL, NULL, &h), 0);
    for (int i = 0; i < 999; i++)
        assert_int_equal(ot_send(h, TAG_FILL, NULL, 0), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(is_monitor_event, NULL, 200, &m), -ETIMEDOUT);
    for (int i = 0; i < 10; i++)
        assert_int_equal(ot_send(h, TAG_FILL, NULL, 0), 0);
    assert_int_equal(ot_receive(is_monitor_event, NULL, 5000, &m), 0);
    ot_sysmon_event_t ev;
    assert_int_equal(ot_msg_sysmon(m, &ev), 0);
    assert_int_equal(ev.kind, OT_SYSMON_LARGE_MAILBOX);
    assert_true(ev.pid == h);
    assert_true(ev.value > 1000);
    ot_msg_free(m);
    /* Once, not per message. */
    for (int i = 0; i < 100; i++)
        assert_int_equal(ot_send(h, TAG_FILL, NULL, 0), 0);
    assert_int_equal(ot_receive(is_monitor_event, NULL, 200, &m), -ETIMEDOUT);
    assert_int_equal(ot_send(h, TAG_NEVER, NULL, 0), 0);

    /* The monitor dies: monitoring stops, nobody is told. */
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_system_monitor(OT_PID_NONE, NULL), 0);
    stop_rt();
}

static void bad_input(void **state)
{
    (void)state;
    ot_sysmon_opts_t o = {.long_schedule_ms = 10};
    assert_int_equal(ot_system_monitor(1, &o), -EPERM);
    start_rt(1);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    assert_int_equal(ot_system_monitor(me, NULL), -EINVAL);
    assert_int_equal(ot_system_monitor((ot_pid_t)-1, &o), -EINVAL);
    ot_sysmon_event_t ev;
    assert_int_equal(ot_msg_sysmon(NULL, &ev), -EINVAL);
    assert_int_equal(ot_detach(), 0);
    /* A dead pid. */
    assert_int_equal(ot_system_monitor(me, &o), -ESRCH);
    stop_rt();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(long_schedule, teardown),
        cmocka_unit_test_teardown(large_mailbox, teardown),
        cmocka_unit_test_teardown(bad_input, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
