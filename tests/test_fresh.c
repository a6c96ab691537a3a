/* The fresh deque (sched/sched.c): never-run children displaced from the
 * run-next slot, run newest first so that spawn trees are walked depth
 * first. What it promises, each case failing when the promise breaks:
 * - a tree of spawns keeps only a path of half-done parents alive;
 * - a bulk spawner's children start in the order they were spawned;
 * - an old never-run child is not starved by a busy top of the deque;
 * - a child is never hidden from an idle scheduler: two children that
 *   each wait, without yielding, for the other to start both start. */
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

enum { T_SUM = 1, T_DONE = 2, T_FLAG = 3 };

static ot_pid_t g_main;

/* ---- depth first: a 10-ary tree, skynet's shape --------------------------- */

static atomic_long g_live, g_peak;

static void note_start(void)
{
    long n = atomic_fetch_add(&g_live, 1) + 1;
    long p = atomic_load(&g_peak);
    while (n > p && !atomic_compare_exchange_weak(&g_peak, &p, n)) {
    }
}

struct node {
    ot_pid_t parent;
    uint64_t num, size;
};

static void tree_node(void *arg)
{
    struct node me = *(struct node *)arg;
    free(arg);
    note_start();
    uint64_t sum = me.num;
    if (me.size > 1) {
        uint64_t child = me.size / 10;
        sum = 0;
        for (uint64_t i = 0; i < 10; i++) {
            struct node *c = malloc(sizeof *c);
            PCHECK(c != NULL);
            if (!c) break;
            *c = (struct node){ot_self(), me.num + i * child, child};
            PCHECK(ot_spawn(tree_node, c, NULL, NULL) == 0);
        }
        for (int i = 0; i < 10; i++) {
            ot_msg_t *m;
            uint64_t tag = T_SUM;
            PCHECK(ot_receive(match_tag, &tag, OT_INFINITY, &m) == 0);
            uint64_t v;
            memcpy(&v, ot_msg_data(m), sizeof v);
            sum += v;
            ot_msg_free(m);
        }
    }
    atomic_fetch_sub(&g_live, 1);
    PCHECK(ot_send(me.parent, T_SUM, &sum, sizeof sum) == 0);
}

/* A tree with `leaves` leaves on one scheduler under `policy`; returns the
 * most processes started and not finished at once. */
static long run_tree(const char *policy, unsigned schedulers, uint64_t leaves)
{
    ot_config_t cfg;
    ot_config_init(&cfg);
    cfg.schedulers = schedulers;
    cfg.stop_grace_ms = 200;
    cfg.policy = policy;
    start_cfg(&cfg);
    assert_int_equal(ot_attach(&g_main), 0);
    atomic_store(&g_live, 0);
    atomic_store(&g_peak, 0);
    struct node *root = malloc(sizeof *root);
    assert_non_null(root);
    *root = (struct node){g_main, 0, leaves};
    assert_int_equal(ot_spawn(tree_node, root, NULL, NULL), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 120000, &m), 0);
    uint64_t sum;
    memcpy(&sum, ot_msg_data(m), sizeof sum);
    ot_msg_free(m);
    assert_int_equal(sum, leaves * (leaves - 1) / 2);
    long peak = atomic_load(&g_peak);
    fprintf(stderr, "%s, %u scheduler(s): tree of %llu leaves, at most %ld alive at once\n",
            policy, schedulers, (unsigned long long)leaves, peak);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
    return peak;
}

/* 111,111 processes on one scheduler. Depth first, the ones started and
 * not finished are about the path from the root (6 measured). Breadth
 * first (policy "breadth-first": the run queue alone) they were 1625;
 * aging the deque too eagerly, 845. Under the sanitizers (TSan makes each
 * process ~100x dearer) a tree of 11,111. */
static void tree_walks_depth_first(void **state)
{
    (void)state;
    uint64_t leaves = g_san ? 10000 : 100000;
    long depth = run_tree("default", 1, leaves);
    long breadth = run_tree("breadth-first", 1, leaves);
    assert_true(depth <= 50);
    assert_true(breadth >= 4 * depth);
}

/* The same tree on two schedulers: an idle scheduler is offered the
 * other's oldest never-run child (the biggest subtree), one at a time,
 * and walks it depth first too, so each holds a path: 14-63 processes
 * started and unfinished at the peak here (240 trees). Before the offer
 * (the idle one took the newest displaced children from the run queue,
 * and a parent that ran out of budget mid-spawn flushed its children
 * there), 600-1,800 in most runs and 15 in a few. Until spawn's back-
 * pressure yield was kept to bulk spawners (sched/proc.c), about one tree
 * in 50 still went that way (800-1,500). Three trees, each under 200. */
static void tree_on_two_schedulers(void **state)
{
    (void)state;
    uint64_t leaves = g_san ? 10000 : 100000;
    for (int i = 0; i < (g_san ? 1 : 3); i++) /* TSan: ~15 s a tree */
        assert_true(run_tree("default", 2, leaves) <= 200);
}

/* The offer slot under contention: four schedulers on two cores, three
 * of them thieves at any moment, taking offers while their owners take
 * them back. Every process must run exactly once: the tree's sum (checked
 * by run_tree) misses a leaf that was lost and counts twice one that ran
 * twice, and a lost parent hangs it. Under TSan this is the slot's race
 * check (release store by the owner, acquire exchange by whoever takes). */
static void offers_under_contention(void **state)
{
    (void)state;
    int rounds = g_san ? 1 : 20; /* TSan: ~17 s a round */
    for (int i = 0; i < rounds; i++)
        (void)run_tree("default", 4, g_san ? 10000 : 100000);
}

/* ---- bulk spawners keep spawn order -------------------------------------- */

#define BULK 300

static atomic_uint g_seq;
static unsigned g_order[BULK];

static void bulk_child(void *arg)
{
    unsigned i = (unsigned)(uintptr_t)arg;
    g_order[i] = atomic_fetch_add(&g_seq, 1);
    PCHECK(ot_send(g_main, T_DONE, NULL, 0) == 0);
}

static void bulk_spawner(void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < BULK; i++)
        PCHECK(ot_spawn(bulk_child, (void *)(uintptr_t)i, NULL, NULL) == 0);
}

/* On one scheduler, children start in spawn order, but for the newest,
 * which waits in the run-next slot and runs as soon as its spawner stops.
 * The fresh deque alone would start the first ones newest first. */
static void bulk_spawn_keeps_order(void **state)
{
    (void)state;
    start_rt(1);
    assert_int_equal(ot_attach(&g_main), 0);
    atomic_store(&g_seq, 0);
    assert_int_equal(ot_spawn(bulk_spawner, NULL, NULL, NULL), 0);
    for (int i = 0; i < BULK; i++) {
        ot_msg_t *m;
        assert_int_equal(ot_receive(NULL, NULL, 60000, &m), 0);
        ot_msg_free(m);
    }
    unsigned inversions = 0;
    for (unsigned i = 1; i < BULK - 1; i++)
        if (g_order[i] < g_order[i - 1]) inversions++;
    assert_int_equal(inversions, 0);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* ---- no starvation ------------------------------------------------------- */

#define CHURN 2400000

static atomic_long g_churned, g_old_ran_at;

static void leaf(void *arg)
{
    (void)arg;
}

/* Spawns the next churn, which goes on top of the deque when the leaf
 * spawned after it takes the run-next slot, then dies; the leaf runs and
 * dies, and the next pick takes the top of the deque: the next churn. One
 * push and one pop per pick, for CHURN picks, above whatever waits below. */
static void churn(void *arg)
{
    (void)arg;
    if (atomic_fetch_add(&g_churned, 1) >= CHURN) return;
    PCHECK(ot_spawn(churn, NULL, NULL, NULL) == 0);
    PCHECK(ot_spawn(leaf, NULL, NULL, NULL) == 0);
}

static void old_child(void *arg)
{
    (void)arg;
    atomic_store(&g_old_ran_at, atomic_load(&g_churned));
    PCHECK(ot_send(g_main, T_DONE, NULL, 0) == 0);
}

static void churn_root(void *arg)
{
    (void)arg;
    /* old_child takes the run-next slot, then churn displaces it into the
     * deque, at the bottom. */
    PCHECK(ot_spawn(old_child, NULL, NULL, NULL) == 0);
    PCHECK(ot_spawn(churn, NULL, NULL, NULL) == 0);
}

/* Newest first alone, old_child would wait for the whole churn (CHURN
 * picks). Aged into the run queue once it has waited OT__FRESH_WAIT picks
 * (1,048,576), it runs after about that many (1,049,598 here). */
static void old_child_not_starved(void **state)
{
    (void)state;
    /* 4.8 million processes: minutes under TSan, for owner-only code with
     * nothing concurrent in it. */
    if (g_san) skip();
    start_rt(1);
    assert_int_equal(ot_attach(&g_main), 0);
    atomic_store(&g_churned, 0);
    atomic_store(&g_old_ran_at, -1);
    assert_int_equal(ot_spawn(churn_root, NULL, NULL, NULL), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 60000, &m), 0);
    ot_msg_free(m);
    long at = atomic_load(&g_old_ran_at);
    fprintf(stderr, "old child ran after %ld of %d churn spawns\n", at, CHURN);
    assert_true(at >= 0 && at < CHURN / 2);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* ---- never hidden from an idle scheduler --------------------------------- */

static atomic_int g_started;
static atomic_int g_met;

/* Start, then wait without yielding (nothing else can run on this
 * scheduler meanwhile) for the other to start: only a second scheduler
 * can run it. After 2 s, give up and yield until it has started, so that
 * a hidden child costs the round, not the test's time. */
static void waiter(void *arg)
{
    (void)arg;
    atomic_fetch_add(&g_started, 1);
    uint64_t deadline = now_ns() + 2000000000ull;
    while (atomic_load(&g_started) < 2 && now_ns() < deadline) {
    }
    if (atomic_load(&g_started) >= 2) atomic_fetch_add(&g_met, 1);
    while (atomic_load(&g_started) < 2)
        ot_yield();
    PCHECK(ot_send(g_main, T_DONE, NULL, 0) == 0);
}

static void pair_spawner(void *arg)
{
    (void)arg;
    ot_sleep(50); /* the other scheduler goes to sleep meanwhile */
    PCHECK(ot_spawn(waiter, NULL, NULL, NULL) == 0);
    PCHECK(ot_spawn(waiter, NULL, NULL, NULL) == 0);
}

/* With the other scheduler parked, the first child (the deque's oldest entry
 * when the second displaces it) goes to the run queue
 * and wakes it. The rule reads the parked and searching counts at the
 * spawn, so a scheduler caught between states (woken by its own timer,
 * say) can miss it, and the child waits in the deque behind a process
 * that never yields: C cannot be preempted (README, Limitations). Under
 * TSan with other tests beside it, one round in five went that way. So:
 * most rounds must meet; without the rule none does. */
static void idle_scheduler_gets_children(void **state)
{
    (void)state;
    start_rt(2);
    assert_int_equal(ot_attach(&g_main), 0);
    int met = 0;
    for (int round = 0; round < 5; round++) {
        atomic_store(&g_started, 0);
        atomic_store(&g_met, 0);
        assert_int_equal(ot_spawn(pair_spawner, NULL, NULL, NULL), 0);
        for (int i = 0; i < 2; i++) {
            ot_msg_t *m;
            assert_int_equal(ot_receive(NULL, NULL, 60000, &m), 0);
            ot_msg_free(m);
        }
        if (atomic_load(&g_met) == 2) met++;
    }
    fprintf(stderr, "both spinning at once in %d of 5 rounds\n", met);
    assert_true(met >= 3);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(tree_walks_depth_first, teardown),
        cmocka_unit_test_teardown(tree_on_two_schedulers, teardown),
        cmocka_unit_test_teardown(offers_under_contention, teardown),
        cmocka_unit_test_teardown(bulk_spawn_keeps_order, teardown),
        cmocka_unit_test_teardown(old_child_not_starved, teardown),
        cmocka_unit_test_teardown(idle_scheduler_gets_children, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
