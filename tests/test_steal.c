/* The steal rule (sched/park.c, ot__steal_review): a thief weighs what a
 * steal brought against what it cost. What it promises, each case failing
 * when the promise breaks:
 * - the rule itself, on made-up steals: rests start at the minimum, double
 *   while steals do not pay, stop at the maximum, halve while they pay,
 *   and a steal is judged with the ones before it (averages);
 * - one-message children, which cost more to move than to run, are left
 *   to their spawner's scheduler: the thief rests instead of stealing them
 *   (against the "eager" policy, which steals them as before);
 * - work that pays for its move is still spread, even right after a run of
 *   steals that did not pay has sent the thief to its longest rest;
 * - a victim's lone queued process is left to it when its owner takes from
 *   that queue within the thief's wait, and taken otherwise (the rule on a
 *   made-up queue), so two processes that never yield still run side by
 *   side. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "otter/otter.h"
#include "sched/internal.h"
#include "tests/harness.h"

enum { T_CHILD = 1, T_DONE = 2 };

/* ---- the rule on made-up steals -------------------------------------------- */

/* A steal of k processes at a cost of `cost` ns each that brought
 * `brought` ns: returns whether the thief rests. */
static bool judge(ot__sched_t *s, uint32_t k, uint64_t cost, uint64_t brought)
{
    s->steal_k = k;
    s->steal_cost = cost;
    s->steal_t0 = 1000000;
    bool rest = ot__steal_review(s, 1000000 + brought);
    assert_int_equal(s->steal_k, 0); /* judged once */
    return rest;
}

static void review_rule(void **state)
{
    (void)state;
    struct ot_runtime *rt = calloc(1, sizeof *rt);
    ot__sched_t *s = calloc(1, sizeof *s);
    assert_non_null(rt);
    assert_non_null(s);
    s->rt = rt;
    rt->policy = *ot__policy_find("default");
    assert_int_equal(rt->policy.steal_pays, 2);

    /* Nothing stolen since the last judgement: nothing to judge. */
    assert_false(ot__steal_review(s, 5000000));
    /* 10 processes at 500 ns a steal: pays from 10 us on. */
    assert_false(judge(s, 10, 500, 10000));
    assert_int_equal(s->rest_ns, 0);
    s->won = s->paid = 0;
    assert_true(judge(s, 10, 500, 9999));
    assert_int_equal(s->rest_ns, OT__REST_MIN_NS);
    /* Doubling while steals do not pay, up to the maximum. */
    uint64_t want = OT__REST_MIN_NS;
    for (int i = 0; i < 20; i++) {
        assert_true(judge(s, 1, 500, 100));
        want = want * 2 > OT__REST_MAX_NS ? OT__REST_MAX_NS : want * 2;
        assert_int_equal(s->rest_ns, want);
    }
    /* One steal that brought a lot pays: the rest halves. But it counts
     * for at most OT__STEAL_WON_CAP times its cost, however much it
     * brought, so the next poor steal rests again (uncapped, a second of
     * work carried hundreds of them). */
    s->won = 0;
    s->paid = 500;
    assert_false(judge(s, 1, 500, 1000000000));
    assert_int_equal(s->won, OT__STEAL_WON_CAP * 500 / 8);
    assert_int_equal(s->rest_ns, OT__REST_MAX_NS / 2);
    assert_true(judge(s, 1, 500, 0));
    assert_int_equal(s->rest_ns, OT__REST_MAX_NS);
    /* Steals that pay halve the rest, to none under the minimum. */
    for (int i = 0; i < 10; i++)
        assert_false(judge(s, 10, 500, OT__STEAL_WON_CAP * 5000));
    assert_int_equal(s->rest_ns, 0);
    /* The average then carries poor steals for a while, not for good. */
    int poor = 0;
    while (!judge(s, 10, 500, 0))
        assert_true(++poor < 200);
    assert_true(poor > 5);

    /* The eager policy never rests. */
    rt->policy = *ot__policy_find("eager");
    assert_false(judge(s, 1000, 1000000, 0));
    free(s);
    free(rt);
}

static ot_pid_t g_main;

static void start_policy(const char *policy)
{
    ot_config_t cfg;
    ot_config_init(&cfg);
    cfg.schedulers = 2;
    cfg.stop_grace_ms = 200;
    cfg.policy = policy;
    start_cfg(&cfg);
    assert_int_equal(ot_attach(&g_main), 0);
}

static void spawn_on_0(ot_entry_fn fn, void *arg)
{
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.scheduler = 0;
    assert_int_equal(ot_spawn(fn, arg, &o, NULL), 0);
}

static void wait_tag(uint64_t tag)
{
    ot_msg_t *m;
    assert_int_equal(ot_receive(match_tag, &tag, 120000, &m), 0);
    ot_msg_free(m);
}

/* ---- one-message children: spawn_exit in small ---------------------------- */

static void one_message(void *arg)
{
    PCHECK(ot_send((ot_pid_t)(uintptr_t)arg, T_CHILD, NULL, 0) == 0);
}

/* What a driver spawns: n children running `child`, each given the
 * driver's pid. */
typedef struct {
    ot_entry_fn child;
    long n;
} drive_t;

/* Spawns the children, takes one T_CHILD message from each, then tells
 * main. */
static void driver(void *arg)
{
    const drive_t *d = arg;
    ot_pid_t me = ot_self();
    for (long i = 0; i < d->n; i++)
        PCHECK(ot_spawn(d->child, (void *)(uintptr_t)me, NULL, NULL) == 0);
    for (long i = 0; i < d->n; i++) {
        ot_msg_t *m;
        uint64_t tag = T_CHILD;
        PCHECK(ot_receive(match_tag, &tag, 60000, &m) == 0);
        ot_msg_free(m);
    }
    PCHECK(ot_send(g_main, T_DONE, NULL, 0) == 0);
}

/* Runs a driver on scheduler 0 and waits for it. */
static void drive(ot_entry_fn child, long n)
{
    drive_t d = {child, n};
    spawn_on_0(driver, &d);
    wait_tag(T_DONE);
}

static ot_sched_stats_t bulk_run(const char *policy, long n)
{
    start_policy(policy);
    drive(one_message, n);
    ot_sched_stats_t st;
    assert_int_equal(ot_runtime_stats(g_rt, &st), 0);
    fprintf(stderr, "%s: %ld children, %llu steals moved %llu, %llu rests\n", policy, n,
            (unsigned long long)st.steals, (unsigned long long)st.stolen,
            (unsigned long long)st.rests);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
    return st;
}

/* 200,000 children. Measured here: the eager policy moved 98,000-152,000
 * of them, the default 250-5,300, resting 35-120 times. A rule that never
 * judged a steal poor moves as many as eager; one that never rested would
 * keep probing and move far more. Not under the sanitizers: there a
 * child's instrumented run outweighs its move, and the rule rightly lets
 * the thief take them (TSan: the default moved 9,300-9,900 of 20,000). */
static void short_children_stay(void **state)
{
    (void)state;
    if (g_san) skip();
    long n = 200000;
    ot_sched_stats_t eager = bulk_run("eager", n);
    ot_sched_stats_t dflt = bulk_run("default", n);
    assert_int_equal(eager.rests, 0);
    assert_true(eager.stolen >= (uint64_t)n / 50); /* the workload does invite steals */
    assert_true(dflt.rests > 0);
    assert_true(dflt.stolen * 4 < eager.stolen);
}

/* ---- work that pays: computations of ~50 us -------------------------------- */

static atomic_uint g_ran[2];

/* About `ns` of arithmetic the compiler cannot drop. */
static uint64_t burn(uint64_t x, uint64_t ns)
{
    uint64_t t0 = now_ns();
    while (now_ns() - t0 < ns)
        for (int i = 0; i < 100; i++)
            x = x * 6364136223846793005ull + 1442695040888963407ull;
    return x;
}

/* Computes for ~50 us, notes its scheduler, reports to its spawner. */
static void worker(void *arg)
{
    ot_pid_t to = (ot_pid_t)(uintptr_t)arg;
    uint64_t x = burn(to, 50000);
    ot_process_info_t info;
    PCHECK(ot_process_info(ot_self(), &info) == 0);
    if (info.scheduler == 0 || info.scheduler == 1) atomic_fetch_add(&g_ran[info.scheduler], 1);
    PCHECK(ot_send(to, T_CHILD, &x, sizeof x) == 0);
}

#define WORKERS 2000

/* First a burst of one-message children, so that the thief's steals do
 * not pay and its rest grows to the longest; then 2000 processes of ~50 us
 * each (100 ms of work), spawned on scheduler 0. Each steal of them brings
 * ~100 times its cost, so the thief must stop resting and take halves
 * again: here ~30 steals moved ~1000 of them, with no rest, and each
 * scheduler ran half. With every steal judged poor (planted), the thief
 * moved one process per rest, 85-89 in all, and the schedulers ran 1915/85
 * or, when the driver itself was the one moved, 201/1799. */
static void paying_work_spreads(void **state)
{
    (void)state;
    start_policy("default");
    drive(one_message, scaled(100000));
    ot_sched_stats_t before;
    assert_int_equal(ot_runtime_stats(g_rt, &before), 0);
    atomic_store(&g_ran[0], 0);
    atomic_store(&g_ran[1], 0);
    drive(worker, WORKERS);
    unsigned r0 = atomic_load(&g_ran[0]), r1 = atomic_load(&g_ran[1]);
    ot_sched_stats_t after;
    assert_int_equal(ot_runtime_stats(g_rt, &after), 0);
    fprintf(stderr,
            "workers: scheduler 0 ran %u, scheduler 1 ran %u; %llu steals moved %llu, %llu "
            "rests (%llu rests before)\n",
            r0, r1, (unsigned long long)(after.steals - before.steals),
            (unsigned long long)(after.stolen - before.stolen),
            (unsigned long long)(after.rests - before.rests), (unsigned long long)before.rests);
    assert_int_equal(r0 + r1, WORKERS);
    if (!g_san) assert_true(before.rests > 0); /* see short_children_stay */
    assert_true(after.stolen - before.stolen >= WORKERS / 4);
    assert_true(r0 >= WORKERS / 4 && r1 >= WORKERS / 4);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* ---- the lone-process rule ------------------------------------------------- */

typedef struct {
    ot__runq_t *q;
    atomic_int go;
    void *got;
} popper_t;

/* The victim's owner: once the thief is watching, takes its one process. */
static void *popper(void *arg)
{
    popper_t *pp = arg;
    while (!atomic_load(&pp->go))
        ;
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
    pp->got = ot__runq_pop(pp->q);
    return NULL;
}

static void lone_rule(void **state)
{
    (void)state;
    ot__sched_t *v = calloc(1, sizeof *v);
    ot__runq_t *q = calloc(1, sizeof *q);
    assert_non_null(v);
    assert_non_null(q);
    ot__runq_init(q);
    atomic_init(&v->parked, 0);
    int a, b;

    /* Nothing, or more than one: not the rule's case, and no wait. */
    uint64_t t0 = now_ns();
    assert_false(ot__lone_soon_run(v, q, 10000000000ull));
    assert_true(ot__runq_push(q, &a));
    assert_true(ot__runq_push(q, &b));
    assert_false(ot__lone_soon_run(v, q, 10000000000ull));
    assert_ptr_equal(ot__runq_pop(q), &a);
    /* One, but its owner is parked (or resting): nobody will run it. */
    atomic_store(&v->parked, 1);
    assert_false(ot__lone_soon_run(v, q, 10000000000ull));
    atomic_store(&v->parked, 3);
    assert_false(ot__lone_soon_run(v, q, 10000000000ull));
    assert_true(now_ns() - t0 < 5000000000ull);

    /* One, owner awake but busy past the wait: the thief may take it. */
    atomic_store(&v->parked, 0);
    t0 = now_ns();
    assert_false(ot__lone_soon_run(v, q, 2000000));
    assert_true(now_ns() - t0 >= 2000000);
    assert_int_equal(ot__runq_len(q), 1);

    /* One, and the owner takes it during the wait: left to the owner. */
    popper_t pp = {.q = q};
    atomic_init(&pp.go, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, popper, &pp), 0);
    atomic_store(&pp.go, 1);
    t0 = now_ns();
    assert_true(ot__lone_soon_run(v, q, 30000000000ull));
    assert_true(now_ns() - t0 < 15000000000ull); /* as soon as it is taken */
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_ptr_equal(pp.got, &b);
    free(q);
    free(v);
}

/* Two processes that never yield, spawned on scheduler 0 at high priority
 * (its run queue, not the run-next slot): whichever runs first burns until
 * the other has started, so they must end up on the two schedulers. With
 * a thief that always left a lone process to a busy victim, the second
 * would wait behind the first for good (here: until the 20 s bound). */
static atomic_int g_started;
static atomic_int g_on[2];

static void spinner(void *arg)
{
    ot_pid_t to = (ot_pid_t)(uintptr_t)arg;
    atomic_fetch_add(&g_started, 1);
    uint64_t t0 = now_ns();
    while (atomic_load(&g_started) < 2 && now_ns() - t0 < 20000000000ull)
        ;
    ot_process_info_t info;
    PCHECK(ot_process_info(ot_self(), &info) == 0);
    if (info.scheduler == 0 || info.scheduler == 1) atomic_fetch_add(&g_on[info.scheduler], 1);
    uint64_t ok = atomic_load(&g_started) >= 2;
    PCHECK(ot_send(to, T_CHILD, &ok, sizeof ok) == 0);
}

static void spin_driver(void *arg)
{
    (void)arg;
    ot_pid_t me = ot_self();
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.priority = OT_PRIO_HIGH;
    for (int i = 0; i < 2; i++)
        PCHECK(ot_spawn(spinner, (void *)(uintptr_t)me, &o, NULL) == 0);
    for (int i = 0; i < 2; i++) {
        ot_msg_t *m;
        uint64_t tag = T_CHILD;
        PCHECK(ot_receive(match_tag, &tag, 60000, &m) == 0);
        PCHECK(*(const uint64_t *)ot_msg_data(m) == 1);
        ot_msg_free(m);
    }
    PCHECK(ot_send(g_main, T_DONE, NULL, 0) == 0);
}

static void busy_pair_spreads(void **state)
{
    (void)state;
    start_policy("default");
    for (int round = 0; round < 20; round++) {
        atomic_store(&g_started, 0);
        atomic_store(&g_on[0], 0);
        atomic_store(&g_on[1], 0);
        spawn_on_0(spin_driver, NULL);
        wait_tag(T_DONE);
        assert_int_equal(atomic_load(&g_on[0]), 1);
        assert_int_equal(atomic_load(&g_on[1]), 1);
    }
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(review_rule),
        cmocka_unit_test_teardown(short_children_stay, teardown),
        cmocka_unit_test_teardown(paying_work_spreads, teardown),
        cmocka_unit_test(lone_rule),
        cmocka_unit_test_teardown(busy_pair_spreads, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
