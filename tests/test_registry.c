/* The process registry: register, whereis, send_named, unregister; the
 * Erlang rules (one live process per name, one name per process), bad
 * input, names freed when their process dies (and free again at once), and
 * races: processes registering, unregistering and dying on a small set of
 * names while other threads look them up. */
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
#include <urcu/urcu-qsbr.h>
#include <urcu/rculfhash.h>

#include "otter/otter.h"
#include "sched/internal.h" /* the table itself, ot__registry_name_of */
#include "tests/harness.h"

enum {
    TAG_PING = 1,
    TAG_PONG = 2,
    TAG_STOP = 3,
    TAG_NAME = 4, /* reply with ot__registry_name_of(self), truncated to arg */
    TAG_NOISE = 5,
    TAG_GO = 6,
};

/* ---- helpers ------------------------------------------------------------- */

/* Names in the table, dead owners' included: the registry's real state. */
static unsigned long table_nodes(void)
{
    long before, after;
    unsigned long count;
    ot__ext_rcu_enter();
    cds_lfht_count_nodes(g_rt->reg_ht, &before, &count, &after);
    ot__ext_rcu_leave();
    return count;
}

/* Until only `n` processes are left (the attached main thread). */
static void wait_count(size_t n)
{
    uint64_t end = now_ns() + (g_san ? 120ull : 20ull) * 1000000000u;
    while (ot_process_count() != n) {
        assert_true(now_ns() < end);
        ot_sleep(1);
    }
}

/* Until `pid` names no live process. */
static void wait_dead(ot_pid_t pid)
{
    uint64_t end = now_ns() + 10ull * 1000000000u;
    while (ot_send(pid, TAG_NOISE, NULL, 0) != -ESRCH) {
        assert_true(now_ns() < end);
        ot_sleep(1);
    }
}

static ot_msg_t *expect_msg(uint64_t tag)
{
    ot_msg_t *m = NULL;
    assert_int_equal(ot_receive(match_tag, &tag, 10000, &m), 0);
    assert_non_null(m);
    return m;
}

/* Answers TAG_PING with TAG_PONG, TAG_NAME with its registered name; ends
 * on TAG_STOP or shutdown. */
static void server_proc(void *arg)
{
    (void)arg;
    for (;;) {
        ot_msg_t *m;
        if (ot_receive(NULL, NULL, OT_INFINITY, &m) != 0) return;
        uint64_t tag = ot_msg_tag(m);
        if (tag == TAG_PING) {
            PCHECK(ot_send(ot_msg_sender(m), TAG_PONG, NULL, 0) == 0);
        } else if (tag == TAG_NAME) {
            uint32_t n;
            memcpy(&n, ot_msg_data(m), sizeof n);
            char buf[OT_NAME_MAX];
            /* A scheduler thread running a process: inside the read side. */
            ot__registry_name_of(ot__self(), buf, n);
            PCHECK(ot_send(ot_msg_sender(m), TAG_NAME, buf, strlen(buf) + 1) == 0);
        }
        ot_msg_free(m);
        if (tag == TAG_STOP || tag == OT_TAG_SHUTDOWN) return;
    }
}

/* The name `to` reports for itself, through a buffer of n bytes. */
static void expect_name(ot_pid_t to, uint32_t n, const char *want)
{
    assert_int_equal(ot_send(to, TAG_NAME, &n, sizeof n), 0);
    ot_msg_t *m = expect_msg(TAG_NAME);
    assert_string_equal((const char *)ot_msg_data(m), want);
    ot_msg_free(m);
}

/* ---- without a runtime --------------------------------------------------- */

static void no_runtime(void **state)
{
    (void)state;
    assert_int_equal(ot_register("x", 1), -EPERM);
    assert_int_equal(ot_unregister("x"), -EPERM);
    assert_int_equal(ot_whereis("x"), OT_PID_NONE);
    assert_int_equal(ot_send_named("x", TAG_PING, NULL, 0), -EPERM);
}

/* ---- the basic operations ------------------------------------------------ */

static void basics(void **state)
{
    (void)state;
    start_rt(2);
    ot_pid_t me, srv;
    assert_int_equal(ot_attach(&me), 0);
    assert_int_equal(ot_spawn(server_proc, NULL, NULL, &srv), 0);

    expect_name(srv, OT_NAME_MAX, "");
    assert_int_equal(ot_whereis("server"), OT_PID_NONE);
    assert_int_equal(ot_send_named("server", TAG_PING, NULL, 0), -ENOENT);
    assert_int_equal(ot_register("server", srv), 0);
    assert_int_equal(ot_whereis("server"), srv);
    expect_name(srv, OT_NAME_MAX, "server");
    expect_name(srv, 4, "ser"); /* truncated, NUL-terminated */
    expect_name(srv, 1, "");

    /* send_named is ot_send to the registered pid. */
    assert_int_equal(ot_send_named("server", TAG_PING, NULL, 0), 0);
    ot_msg_t *m = expect_msg(TAG_PONG);
    assert_int_equal(ot_msg_sender(m), srv);
    ot_msg_free(m);

    /* One process per name, one name per process. */
    assert_int_equal(ot_register("server", me), -EEXIST);
    assert_int_equal(ot_register("server", srv), -EEXIST);
    assert_int_equal(ot_register("other", srv), -EEXIST);
    assert_int_equal(ot_whereis("other"), OT_PID_NONE);

    /* Unregister frees both the name and the process. */
    assert_int_equal(ot_unregister("server"), 0);
    assert_int_equal(ot_whereis("server"), OT_PID_NONE);
    assert_int_equal(ot_unregister("server"), -ENOENT);
    assert_int_equal(ot_send_named("server", TAG_PING, NULL, 0), -ENOENT);
    expect_name(srv, OT_NAME_MAX, "");
    assert_int_equal(ot_register("other", srv), 0);
    assert_int_equal(ot_register("server", me), 0); /* an attached thread */
    assert_int_equal(ot_whereis("other"), srv);
    assert_int_equal(ot_whereis("server"), me);
    assert_int_equal(ot_send_named("server", TAG_PING, NULL, 0), 0);
    m = expect_msg(TAG_PING);
    assert_int_equal(ot_msg_sender(m), me);
    ot_msg_free(m);
    assert_int_equal(table_nodes(), 2);

    /* Names that differ only in length or case are different names. */
    assert_int_equal(ot_whereis("othe"), OT_PID_NONE);
    assert_int_equal(ot_whereis("other2"), OT_PID_NONE);
    assert_int_equal(ot_whereis("Other"), OT_PID_NONE);

    assert_int_equal(ot_send(srv, TAG_STOP, NULL, 0), 0);
    wait_dead(srv);
    assert_int_equal(ot_whereis("other"), OT_PID_NONE);
    assert_int_equal(ot_unregister("server"), 0);
    wait_count(1);
    assert_int_equal(table_nodes(), 0);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* ---- bad input ----------------------------------------------------------- */

static void bad_input(void **state)
{
    (void)state;
    start_rt(1);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);

    char longest[OT_NAME_MAX], too_long[OT_NAME_MAX + 1];
    memset(longest, 'a', sizeof longest - 1);
    longest[sizeof longest - 1] = '\0';
    memset(too_long, 'b', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';

    assert_int_equal(ot_register(NULL, me), -EINVAL);
    assert_int_equal(ot_register("", me), -EINVAL);
    assert_int_equal(ot_register(too_long, me), -EINVAL);
    assert_int_equal(ot_register("x", OT_PID_NONE), -EINVAL);
    assert_int_equal(ot_register("x", (ot_pid_t)0xffffffffu), -EINVAL);   /* out of table */
    assert_int_equal(ot_register("x", me ^ ((ot_pid_t)1 << 32)), -ESRCH); /* forged gen */
    assert_int_equal(ot_unregister(NULL), -EINVAL);
    assert_int_equal(ot_unregister(""), -EINVAL);
    assert_int_equal(ot_unregister(too_long), -EINVAL);
    assert_int_equal(ot_whereis(NULL), OT_PID_NONE);
    assert_int_equal(ot_whereis(""), OT_PID_NONE);
    assert_int_equal(ot_whereis(too_long), OT_PID_NONE);
    assert_int_equal(ot_send_named(NULL, TAG_PING, NULL, 0), -EINVAL);
    assert_int_equal(ot_send_named(too_long, TAG_PING, NULL, 0), -EINVAL);
    assert_int_equal(table_nodes(), 0);

    /* The longest name works, and send_named passes ot_send's errors on. */
    assert_int_equal(ot_register(longest, me), 0);
    assert_int_equal(ot_whereis(longest), me);
    assert_int_equal(ot_send_named(longest, TAG_PING, NULL, OT_MSG_MAX + 1), -EMSGSIZE);
    assert_int_equal(ot_send_named(longest, TAG_PING, NULL, 8), -EINVAL);
    assert_int_equal(ot_unregister(longest), 0);

    /* A dead process cannot be registered. */
    ot_pid_t dead;
    assert_int_equal(ot_spawn(server_proc, NULL, NULL, &dead), 0);
    assert_int_equal(ot_send(dead, TAG_STOP, NULL, 0), 0);
    wait_dead(dead);
    assert_int_equal(ot_register("x", dead), -ESRCH);
    assert_int_equal(ot_whereis("x"), OT_PID_NONE);
    assert_int_equal(table_nodes(), 0);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* ---- names die with their process ---------------------------------------- */

/* Registers itself under arg's name, says so, waits for TAG_GO, and ends:
 * by returning, or by ot_exit. */
struct ephemeral {
    ot_pid_t parent;
    const char *name;
    bool use_exit;
};

static void ephemeral_proc(void *arg)
{
    struct ephemeral *e = arg;
    PCHECK(ot_register(e->name, ot_self()) == 0);
    PCHECK(ot_send(e->parent, TAG_PONG, NULL, 0) == 0);
    uint64_t go = TAG_GO;
    ot_msg_t *m;
    if (ot_receive(match_tag, &go, OT_INFINITY, &m) == 0) ot_msg_free(m);
    if (e->use_exit) ot_exit();
}

static void name_dies_with_process(void **state)
{
    (void)state;
    start_rt(2);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    const int rounds = (int)scaled(500);
    for (int i = 0; i < rounds; i++) {
        struct ephemeral e = {me, "ephemeral", i % 2 == 1};
        ot_pid_t pid;
        assert_int_equal(ot_spawn(ephemeral_proc, &e, NULL, &pid), 0);
        ot_msg_free(expect_msg(TAG_PONG));
        assert_int_equal(ot_whereis("ephemeral"), pid);
        assert_int_equal(ot_register("ephemeral", me), -EEXIST);
        assert_int_equal(ot_send(pid, TAG_GO, NULL, 0), 0);
        /* Seen dead one way or another: the name is free right away. */
        if (i % 4 < 2) {
            wait_dead(pid);
        } else {
            uint64_t end = now_ns() + 10ull * 1000000000u;
            while (ot_whereis("ephemeral") != OT_PID_NONE)
                assert_true(now_ns() < end);
        }
        assert_int_equal(ot_register("ephemeral", me), 0);
        assert_int_equal(ot_whereis("ephemeral"), me);
        assert_int_equal(ot_unregister("ephemeral"), 0);
    }
    wait_count(1);
    assert_int_equal(table_nodes(), 0);

    /* An attached thread's name dies when it detaches. */
    assert_int_equal(ot_register("main", me), 0);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_whereis("main"), OT_PID_NONE);
    assert_int_equal(table_nodes(), 0);

    /* Processes still registered at stop: their names go with them (ASan
     * checks nothing is left). */
    for (int i = 0; i < 8; i++) {
        ot_pid_t pid;
        char name[16];
        snprintf(name, sizeof name, "left%d", i);
        assert_int_equal(ot_spawn(server_proc, NULL, NULL, &pid), 0);
        assert_int_equal(ot_register(name, pid), 0);
    }
    assert_int_equal(table_nodes(), 8);
    stop_rt();
}

/* ---- races --------------------------------------------------------------- */

/* Owner names ("o0".."o7") are taken by processes for themselves and given
 * up only by their owner (unregister, or death); victim names ("v0".."v31")
 * are given by registrars to short-lived victims, and removed by anyone. */
#define NOWN 8
#define NVIC 32

static char g_own[NOWN][8], g_vic[NVIC][8];
static _Atomic ot_pid_t g_owner[NOWN]; /* who believes it holds o<k> */
static _Atomic ot_pid_t g_last_victim;
static atomic_long g_reg_ok, g_reg_esrch, g_reg_eexist, g_stale_seen;
static atomic_int g_stop_observers, g_observer_attached;

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Takes owner names, checks it alone holds them, gives them back or dies
 * holding one. */
static void worker_proc(void *arg)
{
    (void)arg;
    ot_pid_t self = ot_self();
    uint64_t rng = self * 0x9E3779B97F4A7C15ull | 1;
    for (int round = 0; round < 4; round++) {
        unsigned k = (unsigned)(rng_next(&rng) % NOWN);
        int rc = ot_register(g_own[k], self);
        if (rc == -EEXIST) {
            ot_yield();
            continue;
        }
        PCHECK(rc == 0);
        if (rc != 0) return;
        /* Nobody else may believe it holds the name. */
        ot_pid_t none = OT_PID_NONE;
        PCHECK(atomic_compare_exchange_strong(&g_owner[k], &none, self));
        PCHECK(ot_whereis(g_own[k]) == self);
        PCHECK(ot_register(g_own[(k + 1) % NOWN], self) == -EEXIST); /* one name */
        ot_yield();
        PCHECK(ot_whereis(g_own[k]) == self); /* still ours after others ran */
        PCHECK(atomic_exchange(&g_owner[k], OT_PID_NONE) == self);
        if (rng_next(&rng) % 4 == 0) return; /* die holding it */
        PCHECK(ot_unregister(g_own[k]) == 0);
    }
}

static void victim_proc(void *arg)
{
    /* Die at once, or after a few turns. */
    for (uintptr_t i = 0; i < (uintptr_t)arg; i++)
        ot_yield();
}

/* Spawns workers and victims; registers each victim at once (racing with
 * its death). */
static void driver_proc(void *arg)
{
    long n = (long)(intptr_t)arg;
    uint64_t rng = ot_self() * 0x9E3779B97F4A7C15ull | 1;
    for (long i = 0; i < n; i++) {
        PCHECK(ot_spawn(worker_proc, NULL, NULL, NULL) == 0);
        /* On a random scheduler: it may run, and die, while we register
         * it. */
        ot_spawn_opts_t o;
        ot_spawn_opts_init(&o);
        o.scheduler = (int)(rng_next(&rng) % 4);
        ot_pid_t v;
        uintptr_t turns = (uintptr_t)(rng_next(&rng) % 3);
        PCHECK(ot_spawn(victim_proc, (void *)turns, &o, &v) == 0);
        atomic_store(&g_last_victim, v);
        int rc = ot_register(g_vic[rng_next(&rng) % NVIC], v);
        if (rc == 0)
            atomic_fetch_add(&g_reg_ok, 1);
        else if (rc == -ESRCH)
            atomic_fetch_add(&g_reg_esrch, 1);
        else if (rc == -EEXIST)
            atomic_fetch_add(&g_reg_eexist, 1);
        else
            PCHECK(!"unexpected ot_register result");
        if (i % 16 == 0) ot_yield();
    }
}

/* Looks names up, sends to them, unregisters and registers victim names,
 * from a thread that is not a scheduler (attached when arg is non-NULL, and
 * then registered itself now and then). */
static void *observer_main(void *arg)
{
    ot_pid_t me = OT_PID_NONE;
    if (arg) {
        int rc = ot_attach(&me);
        PCHECK(rc == 0);
        atomic_store(&g_observer_attached, 1);
        if (rc != 0) return NULL;
    }
    uint64_t rng = (uint64_t)(uintptr_t)&me | 1;
    while (!atomic_load(&g_stop_observers)) {
        for (unsigned k = 0; k < NOWN; k++) {
            ot_pid_t pid = ot_whereis(g_own[k]);
            if (pid != OT_PID_NONE && ot_send(pid, TAG_NOISE, NULL, 0) == -ESRCH)
                atomic_fetch_add(&g_stale_seen, 1); /* died since: fine, count */
            int rc = ot_send_named(g_own[k], TAG_NOISE, NULL, 0);
            PCHECK(rc == 0 || rc == -ENOENT || rc == -ESRCH);
        }
        unsigned j = (unsigned)(rng_next(&rng) % NVIC);
        int rc = ot_unregister(g_vic[j]);
        PCHECK(rc == 0 || rc == -ENOENT);
        rc = ot_register(g_vic[(j + 1) % NVIC], atomic_load(&g_last_victim));
        PCHECK(rc == 0 || rc == -EEXIST || rc == -ESRCH || rc == -EINVAL);
        if (me) {
            rc = ot_register("observer", me);
            PCHECK(rc == 0);
            PCHECK(ot_whereis("observer") == me);
            PCHECK(ot_unregister("observer") == 0);
            if (rng_next(&rng) % 2) PCHECK(ot_register("observer", me) == 0);
            /* Left registered half the time: its detach frees it. */
            if (ot_whereis("observer") == me) PCHECK(ot_unregister("observer") == 0);
            ot_msg_t *m;
            while (ot_receive(NULL, NULL, 0, &m) == 0)
                ot_msg_free(m);
        }
        /* Leave the schedulers some CPU (the machine may have two). */
        nanosleep(&(struct timespec){.tv_nsec = 20000}, NULL);
    }
    if (me) {
        (void)ot_register("observer", me);
        PCHECK(ot_detach() == 0);
    }
    return NULL;
}

static void races(void **state)
{
    (void)state;
    for (unsigned k = 0; k < NOWN; k++)
        snprintf(g_own[k], sizeof g_own[k], "o%u", k);
    for (unsigned k = 0; k < NVIC; k++)
        snprintf(g_vic[k], sizeof g_vic[k], "v%u", k);
    atomic_store(&g_stop_observers, 0);
    atomic_store(&g_observer_attached, 0);
    start_rt(4);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);

    pthread_t obs[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(
            pthread_create(&obs[i], NULL, observer_main, i == 0 ? (void *)1 : NULL), 0);
    while (!atomic_load(&g_observer_attached))
        ot_sleep(1);
    const long per_driver = g_san ? 500 : 50000; /* TSan: ~0.3 ms a process */
    for (int i = 0; i < 4; i++)
        assert_int_equal(ot_spawn(driver_proc, (void *)(intptr_t)per_driver, NULL, NULL), 0);

    /* Drivers, workers and victims all end; then the observers stop. */
    wait_count(2); /* main and the attached observer */
    atomic_store(&g_stop_observers, 1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_join(obs[i], NULL), 0);
    wait_count(1);
    assert_int_equal(atomic_load(&g_fail), 0);
    printf("registrations of victims: %ld ok, %ld dead (-ESRCH), %ld taken; "
           "%ld stale lookups\n",
           atomic_load(&g_reg_ok), atomic_load(&g_reg_esrch), atomic_load(&g_reg_eexist),
           atomic_load(&g_stale_seen));

    /* Everyone is dead: every name is free, in the table too. */
    assert_int_equal(table_nodes(), 0);
    for (unsigned k = 0; k < NOWN; k++) {
        assert_int_equal(g_owner[k], OT_PID_NONE);
        assert_int_equal(ot_whereis(g_own[k]), OT_PID_NONE);
        assert_int_equal(ot_unregister(g_own[k]), -ENOENT);
        assert_int_equal(ot_register(g_own[k], me), 0);
        assert_int_equal(ot_unregister(g_own[k]), 0);
    }
    for (unsigned k = 0; k < NVIC; k++) {
        assert_int_equal(ot_whereis(g_vic[k]), OT_PID_NONE);
        assert_int_equal(ot_unregister(g_vic[k]), -ENOENT);
    }
    assert_int_equal(ot_whereis("observer"), OT_PID_NONE);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* Register processes that are dying right then, from a thread that is not
 * a scheduler: whatever the outcome, no dead process keeps a name. */
static void register_vs_exit(void **state)
{
    (void)state;
    start_rt(4);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    char names[64][8];
    for (int k = 0; k < 64; k++)
        snprintf(names[k], sizeof names[k], "d%d", k);
    long ok = 0, dead = 0, taken = 0;
    const long n = scaled(50000);
    for (long i = 0; i < n; i++) {
        ot_spawn_opts_t o;
        ot_spawn_opts_init(&o);
        o.scheduler = (int)(i % 4);
        ot_pid_t v;
        assert_int_equal(ot_spawn(victim_proc, (void *)(uintptr_t)(i % 2), &o, &v), 0);
        int rc = ot_register(names[i % 64], v);
        if (rc == 0)
            ok++;
        else if (rc == -ESRCH)
            dead++;
        else if (rc == -EEXIST)
            taken++;
        else
            fail_msg("ot_register: %d", rc);
    }
    printf("registrations of dying processes: %ld ok, %ld dead, %ld taken\n", ok, dead, taken);
    wait_count(1);
    assert_int_equal(table_nodes(), 0);
    for (int k = 0; k < 64; k++)
        assert_int_equal(ot_whereis(names[k]), OT_PID_NONE);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* The runtime's hooks on their own: fini before init (a start that failed
 * early), and fini with a name still in the table (every live process's
 * destroy removes its name, so a real stop leaves none: a fake runtime and
 * PCB stand in). ASan checks that the node is freed. */
static void hooks_alone(void **state)
{
    (void)state;
    struct ot_runtime *rt = calloc(1, sizeof *rt);
    assert_non_null(rt);
    ot__epoch_init(rt);
    ot__registry_fini(rt); /* init never ran */
    assert_int_equal(ot__registry_init(rt), 0);
    rt->max_procs = 16;
    rt->table = calloc(rt->max_procs, sizeof *rt->table);
    size_t pcb = (sizeof(ot__proc_t) + 63) & ~(size_t)63;
    ot__proc_t *p = aligned_alloc(64, pcb);
    assert_non_null(rt->table);
    assert_non_null(p);
    memset(p, 0, pcb);
    ot_pid_t pid = ((ot_pid_t)1 << 32) | 3;
    atomic_store(&p->pid, pid);
    atomic_store(&rt->table[3].p, p);

    ot__rt = rt;
    assert_int_equal(ot_register("left", pid), 0);
    assert_int_equal(ot_whereis("left"), pid);
    char buf[OT_NAME_MAX];
    ot__ext_rcu_enter();
    ot__registry_name_of(p, buf, sizeof buf);
    ot__ext_rcu_leave();
    assert_string_equal(buf, "left");
    ot__rt = NULL;

    ot__registry_fini(rt);
    assert_null(rt->reg_ht);
    ot__epoch_fini(rt); /* the record ot__ext_rcu_enter took */
    free(p);
    free(rt->table);
    free(rt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(no_runtime, teardown),
        cmocka_unit_test_teardown(hooks_alone, teardown),
        cmocka_unit_test_teardown(basics, teardown),
        cmocka_unit_test_teardown(bad_input, teardown),
        cmocka_unit_test_teardown(name_dies_with_process, teardown),
        cmocka_unit_test_teardown(races, teardown),
        cmocka_unit_test_teardown(register_vs_exit, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
