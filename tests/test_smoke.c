/* First light: start, spawn, ping-pong, stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "otter/otter.h"

static void pong(void *arg)
{
    (void)arg;
    for (;;) {
        ot_msg_t *m;
        assert_int_equal(ot_receive(NULL, NULL, OT_INFINITY, &m), 0);
        if (ot_msg_tag(m) == 2) {
            ot_msg_free(m);
            return;
        }
        assert_int_equal(ot_send(ot_msg_sender(m), 1, NULL, 0), 0);
        ot_msg_free(m);
    }
}

static void ping(void *arg)
{
    ot_pid_t *main_pid = arg;
    ot_pid_t pp;
    assert_int_equal(ot_spawn(pong, NULL, NULL, &pp), 0);
    for (int i = 0; i < 100000; i++) {
        ot_msg_t *m;
        assert_int_equal(ot_send(pp, 1, NULL, 0), 0);
        assert_int_equal(ot_receive(NULL, NULL, OT_INFINITY, &m), 0);
        ot_msg_free(m);
    }
    ot_send(pp, 2, NULL, 0);
    uint64_t done = 42;
    assert_int_equal(ot_send(*main_pid, 7, &done, sizeof done), 0);
}

static void start_pingpong_stop(void **state)
{
    (void)state;
    ot_runtime_t *rt;
    assert_int_equal(ot_runtime_start(NULL, &rt), 0);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    assert_int_equal(ot_spawn(ping, &me, NULL, NULL), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 10000, &m), 0);
    assert_int_equal(ot_msg_tag(m), 7);
    assert_int_equal(*(const uint64_t *)ot_msg_data(m), 42);
    ot_msg_free(m);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(rt, 10000), 0);
    assert_int_equal(ot_runtime_stop(rt), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(start_pingpong_stop)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
