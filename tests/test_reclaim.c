/* Reclamation of dead processes' PCBs (sched/reclaim.c) under load: short-
 * lived processes die while senders on schedulers and on plain threads look
 * their pids up and push to them, so PCBs are freed and handed to new
 * processes while late sends are still in flight.
 *
 * Every message carries the pid it was sent to, and every receiver checks
 * that pid is its own: a PCB freed before every sender that found it had
 * left its read section would take such a late message into the mailbox of
 * the process that got the PCB next (or corrupt the pool). A second check
 * counts the messages that were delivered, so the test cannot pass on a run
 * in which nothing reached anybody.
 *
 * It runs for OTTER_STRESS_SECONDS (default 3, at most 20) on 2 schedulers,
 * then on 4 (more scheduler threads than cores: a thread preempted in the
 * middle of a send holds its PCB for a whole time slice), with external
 * sender threads beside them. */
#include <errno.h>
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
#include <cmocka.h>

#include "otter/otter.h"
#include "tests/harness.h"

#define RING 256     /* recent victims' pids that senders pick from */
#define LIVE_CAP 512 /* victims alive at once, at most */
#define NSPAWNERS 2
#define NSENDERS 3
#define NTHREADS 2

enum { T_TO = 0x7ec1 };

static _Atomic ot_pid_t g_ring[RING];
static atomic_uint g_ring_pos;
static atomic_bool g_stop;
static atomic_int g_live;         /* victims alive */
static atomic_int g_drivers;      /* spawners and senders still running */
static atomic_long g_sent, g_got; /* sends that returned 0; messages received */
static atomic_long g_victims;     /* victims spawned */

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* For a few rounds, take up to 16 messages, checking that each was meant
 * for us, and yield; then die (some at once), dropping the rest. */
static void victim(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg | 1;
    ot_pid_t me = ot_self();
    atomic_store(&g_ring[atomic_fetch_add(&g_ring_pos, 1) % RING], me);
    unsigned rounds = (unsigned)(xorshift(&seed) % 8);
    for (unsigned r = 0; r < rounds; r++) {
        ot_msg_t *m;
        int rc = 0;
        for (int k = 0; k < 16 && (rc = ot_receive(NULL, NULL, 0, &m)) == 0; k++) {
            ot_pid_t to = 0;
            PCHECK(ot_msg_len(m) == sizeof to);
            memcpy(&to, ot_msg_data(m), sizeof to);
            PCHECK(ot_msg_tag(m) == T_TO);
            PCHECK(to == me);
            atomic_fetch_add(&g_got, 1);
            ot_msg_free(m);
        }
        PCHECK(rc == 0 || rc == -ETIMEDOUT);
        ot_yield();
    }
    atomic_fetch_sub(&g_live, 1);
}

static void spawner(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull | 1;
    while (!atomic_load(&g_stop)) {
        if (atomic_load(&g_live) >= LIVE_CAP) {
            ot_yield();
            continue;
        }
        atomic_fetch_add(&g_live, 1);
        if (ot_spawn(victim, (void *)(uintptr_t)xorshift(&seed), NULL, NULL) != 0) {
            atomic_fetch_sub(&g_live, 1);
            PCHECK(0);
            break;
        }
        atomic_fetch_add(&g_victims, 1);
    }
    atomic_fetch_sub(&g_drivers, 1);
}

/* One send to a recent victim, which may be dead (dropped), dying, or
 * gone with its PCB reused. */
static void send_one(uint64_t *seed)
{
    ot_pid_t to = atomic_load(&g_ring[xorshift(seed) % RING]);
    if (!to) return;
    int rc = ot_send(to, T_TO, &to, sizeof to);
    if (rc == 0) atomic_fetch_add(&g_sent, 1);
}

static void sender(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0xD1B54A32D192ED03ull | 1;
    for (unsigned i = 0; !atomic_load(&g_stop); i++) {
        send_one(&seed);
        if ((i & 63) == 0) ot_yield();
    }
    atomic_fetch_sub(&g_drivers, 1);
}

static void *thread_sender(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0xA24BAED4963EE407ull | 1;
    while (!atomic_load(&g_stop))
        send_one(&seed);
    return NULL;
}

static unsigned seconds(void)
{
    const char *e = getenv("OTTER_STRESS_SECONDS");
    long s = e ? strtol(e, NULL, 10) : 3;
    return s < 1 ? 1 : s > 20 ? 20 : (unsigned)s;
}

static void run(unsigned schedulers)
{
    memset(g_ring, 0, sizeof g_ring);
    atomic_store(&g_stop, false);
    atomic_store(&g_live, 0);
    atomic_store(&g_sent, 0);
    atomic_store(&g_got, 0);
    atomic_store(&g_victims, 0);
    atomic_store(&g_drivers, NSPAWNERS + NSENDERS);
    start_rt(schedulers);
    for (uintptr_t i = 0; i < NSPAWNERS; i++)
        assert_int_equal(ot_spawn(spawner, (void *)(i + 1), NULL, NULL), 0);
    for (uintptr_t i = 0; i < NSENDERS; i++)
        assert_int_equal(ot_spawn(sender, (void *)(i + 1), NULL, NULL), 0);
    pthread_t th[NTHREADS];
    for (uintptr_t i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_sender, (void *)(i + 1)), 0);

    uint64_t end = now_ns() + (uint64_t)seconds() * 1000000000u;
    while (now_ns() < end)
        ot_sleep(50);
    atomic_store(&g_stop, true);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    /* Drivers stop at their next look at g_stop; victims after a few yields. */
    uint64_t limit = now_ns() + 30ull * 1000000000u;
    while ((atomic_load(&g_drivers) || atomic_load(&g_live)) && now_ns() < limit)
        ot_sleep(5);
    assert_int_equal(atomic_load(&g_drivers), 0);
    assert_int_equal(atomic_load(&g_live), 0);
    printf("reclaim, %u schedulers: %ld victims, %ld sends, %ld received\n", schedulers,
           atomic_load(&g_victims), atomic_load(&g_sent), atomic_load(&g_got));
    /* Victims must have lived and died, and many of the sends must have
     * reached a live one (a tenth under the sanitizers). On 4 schedulers
     * the victims are few: six busy threads share two cores, the senders
     * take most turns (~500,000 switches in 3 s against 18 million on 2
     * schedulers), and 940 to 25,000 victims lived and died in 3 s, with
     * or without the fresh deque (policy breadth-first). A floor of 1000
     * failed now and then; the floor only shows that the case did
     * something, the checks that catch an early free are in victim(). */
    assert_true(atomic_load(&g_victims) > scaled(100));
    assert_true(atomic_load(&g_got) > scaled(1000));
    assert_true(atomic_load(&g_got) <= atomic_load(&g_sent));
    stop_rt();
}

static void late_sends_2(void **state)
{
    (void)state;
    run(2);
}

static void late_sends_4(void **state)
{
    (void)state;
    run(4);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("reclaim stress: %u s per case\n", seconds());
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(late_sends_2, teardown),
        cmocka_unit_test_teardown(late_sends_4, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
