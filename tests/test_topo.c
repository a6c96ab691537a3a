/* sched/topo.h: scheduler placement and steal order, on hwloc synthetic
 * topologies (so the result does not depend on the test machine).
 *
 * Invariants checked, against an independent model of each topology (a
 * distance: 0 same core, then same cache, same package/NUMA node, remote):
 * - nsched defaults to the number of cores (PUs when there are no cores),
 *   core[i] = i % ncores;
 * - victims of each scheduler are all the other schedulers, exactly once,
 *   nearest first; group[] starts at 0, is non-decreasing and steps by one
 *   exactly where the model's distance changes;
 * - numa[] maps each scheduler to its NUMA node;
 * - more schedulers than cores wrap around, and same-core schedulers are
 *   each other's first victims;
 * - invalid synthetic strings give -EINVAL and leave nothing allocated;
 * - the real machine loads, and binding to scheduler 0's core works. */
#define _GNU_SOURCE 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sched/topo.h"

/* Model of a synthetic topology: how many cores share a cache, a package
 * and a NUMA node (0 = that level is not there / is the whole machine). */
typedef struct {
    unsigned per_cache, per_pack, per_numa;
} model_t;

/* Distance between two cores in the model: 0 same core, 1 same cache,
 * 2 same package, 3 different packages. A level the machine lacks
 * merges with the next. */
static int model_dist(const model_t *m, int a, int b)
{
    if (a == b) return 0;
    if (m->per_cache && a / (int)m->per_cache == b / (int)m->per_cache) return 1;
    if (m->per_pack && a / (int)m->per_pack == b / (int)m->per_pack) return 2;
    return 3;
}

/* The whole contract of the victim lists against the model. */
static void check_plan(const ot__topo_t *t, const model_t *m)
{
    unsigned n = t->nsched, nv = n - 1;
    assert_true(n >= 2);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(t->core[i], (int)(i % t->ncores));
    for (unsigned i = 0; i < n; i++) {
        const uint16_t *v = &t->victims[(size_t)i * nv];
        const uint16_t *g = &t->group[(size_t)i * nv];
        /* A permutation of the others. */
        uint8_t seen[1024] = {0};
        assert_true(n <= 1024);
        for (unsigned k = 0; k < nv; k++) {
            assert_true(v[k] < n);
            assert_int_not_equal(v[k], i);
            assert_int_equal(seen[v[k]]++, 0);
        }
        /* Nearest first; groups step exactly at distance changes. */
        assert_int_equal(g[0], 0);
        for (unsigned k = 1; k < nv; k++) {
            int d0 = model_dist(m, t->core[i], t->core[v[k - 1]]);
            int d1 = model_dist(m, t->core[i], t->core[v[k]]);
            if (d1 < d0)
                fail_msg("sched %u: victim %u (dist %d) after victim %u (dist %d)", i, v[k], d1,
                         v[k - 1], d0);
            assert_int_equal(g[k], g[k - 1] + (d1 != d0));
        }
    }
}

/* 2 packages x 2 L3 x 2 cores: scheduler 0 steals from its L3 sibling,
 * then the rest of its package, then the other package. */
static void two_packages_two_caches(void **state)
{
    (void)state;
    ot__topo_t t;
    assert_int_equal(ot__topo_init(&t, "pack:2 l3:2 core:2 pu:1", 0), 0);
    assert_int_equal(t.synthetic, 1);
    assert_int_equal(t.ncores, 8);
    assert_int_equal(t.nsched, 8);
    const model_t m = {.per_cache = 2, .per_pack = 4};
    check_plan(&t, &m);
    /* Scheduler 0 spelled out: [1] [2 3] [4 5 6 7]. */
    const uint16_t *v = t.victims, *g = t.group;
    assert_int_equal(v[0], 1);
    assert_int_equal(g[0], 0);
    assert_true((v[1] == 2 && v[2] == 3) || (v[1] == 3 && v[2] == 2));
    assert_int_equal(g[1], 1);
    assert_int_equal(g[2], 1);
    unsigned mask = 0;
    for (int k = 3; k < 7; k++) {
        assert_true(v[k] >= 4 && v[k] <= 7);
        mask |= 1u << v[k];
        assert_int_equal(g[k], 2);
    }
    assert_int_equal(mask, 0xf0);
    /* Scheduler 5: [4] [6 7] [0 1 2 3]. */
    v = &t.victims[5 * 7];
    g = &t.group[5 * 7];
    assert_int_equal(v[0], 4);
    assert_int_equal(g[2], 1);
    assert_int_equal(g[3], 2);
    assert_int_equal(g[6], 2);
    /* One NUMA node (hwloc inserts it): every scheduler on node 0. */
    for (unsigned i = 0; i < t.nsched; i++)
        assert_int_equal(t.numa[i], 0);
    assert_int_equal(ot__topo_bind(&t, 3), 0); /* no-op when synthetic */
    ot__topo_destroy(&t);
    assert_null(t.core);
    assert_null(t.hw);
}

/* Two NUMA nodes, one per package: numa[] follows the package; the same
 * node is nearer than the other one. */
static void two_numa_nodes(void **state)
{
    (void)state;
    ot__topo_t t;
    assert_int_equal(ot__topo_init(&t, "pack:2 numa:1 core:4 pu:1", 0), 0);
    assert_int_equal(t.nsched, 8);
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(t.numa[i], (int)i / 4);
    const model_t m = {.per_cache = 0, .per_pack = 4};
    check_plan(&t, &m);
    /* Scheduler 6: three on node 1 first (group 0), then node 0 (group 1). */
    const uint16_t *v = &t.victims[6 * 7], *g = &t.group[6 * 7];
    for (int k = 0; k < 3; k++) {
        assert_true(v[k] >= 4 && v[k] <= 7);
        assert_int_equal(g[k], 0);
    }
    for (int k = 3; k < 7; k++) {
        assert_true(v[k] <= 3);
        assert_int_equal(g[k], 1);
    }
    ot__topo_destroy(&t);
}

/* Sub-NUMA clustering: a NUMA node per L3 (4 nodes). */
static void numa_node_per_cache(void **state)
{
    (void)state;
    ot__topo_t t;
    assert_int_equal(ot__topo_init(&t, "pack:2 l3:2 numa:1 core:2 pu:1", 0), 0);
    assert_int_equal(t.nsched, 8);
    for (unsigned i = 0; i < 8; i++)
        assert_int_equal(t.numa[i], (int)i / 2);
    const model_t m = {.per_cache = 2, .per_pack = 4};
    check_plan(&t, &m);
    ot__topo_destroy(&t);
}

/* NUMA nodes under hwloc Group objects (no packages). */
static void numa_under_groups(void **state)
{
    (void)state;
    ot__topo_t t;
    assert_int_equal(ot__topo_init(&t, "numa:2 core:3 pu:1", 0), 0);
    assert_int_equal(t.nsched, 6);
    for (unsigned i = 0; i < 6; i++)
        assert_int_equal(t.numa[i], (int)i / 3);
    const model_t m = {.per_cache = 0, .per_pack = 3};
    check_plan(&t, &m);
    ot__topo_destroy(&t);
}

/* Hyper-threads: schedulers default to cores, not PUs. */
static void smt_counts_cores(void **state)
{
    (void)state;
    ot__topo_t t;
    assert_int_equal(ot__topo_init(&t, "pack:1 core:4 pu:2", 0), 0);
    assert_int_equal(t.ncores, 4);
    assert_int_equal(t.nsched, 4);
    const model_t m = {.per_cache = 0, .per_pack = 4};
    check_plan(&t, &m);
    ot__topo_destroy(&t);
}

/* No Core objects at all: PUs stand in for cores. */
static void pus_without_cores(void **state)
{
    (void)state;
    ot__topo_t t;
    assert_int_equal(ot__topo_init(&t, "pack:2 pu:2", 0), 0);
    assert_int_equal(t.ncores, 4);
    assert_int_equal(t.nsched, 4);
    const model_t m = {.per_cache = 0, .per_pack = 2};
    check_plan(&t, &m);
    assert_int_equal(t.victims[0], 1);
    ot__topo_destroy(&t);
}

/* 12 schedulers on 8 cores: i and i+8 share a core and are each other's
 * first (and only group-0) victim; sched 0: [8] [1 9] [2 3 10 11] [4..7]. */
static void more_schedulers_than_cores(void **state)
{
    (void)state;
    ot__topo_t t;
    assert_int_equal(ot__topo_init(&t, "pack:2 l3:2 core:2 pu:1", 12), 0);
    assert_int_equal(t.ncores, 8);
    assert_int_equal(t.nsched, 12);
    const model_t m = {.per_cache = 2, .per_pack = 4};
    check_plan(&t, &m);
    const unsigned nv = 11;
    for (unsigned i = 0; i < 4; i++) {
        assert_int_equal(t.victims[i * nv], i + 8);
        assert_int_equal(t.victims[(i + 8) * nv], i);
        assert_int_equal(t.group[i * nv + 1], 1);
    }
    /* Schedulers 4..7 have their core to themselves: their L3 sibling
     * comes first, alone in group 0. */
    for (unsigned i = 4; i < 8; i++) {
        assert_int_equal(t.victims[i * nv], i ^ 1);
        assert_int_equal(t.group[i * nv + 1], 1);
    }
    const uint16_t *g = t.group;
    const int want[11] = {0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
    for (int k = 0; k < 11; k++)
        assert_int_equal(g[k], want[k]);
    ot__topo_destroy(&t);
}

/* One scheduler: nothing to steal from, but a valid plan. */
static void one_scheduler(void **state)
{
    (void)state;
    ot__topo_t t;
    assert_int_equal(ot__topo_init(&t, "pack:2 l3:2 core:2 pu:1", 1), 0);
    assert_int_equal(t.nsched, 1);
    assert_int_equal(t.core[0], 0);
    assert_int_equal(t.numa[0], 0);
    ot__topo_destroy(&t);
}

/* Invalid descriptions: -EINVAL, and the struct is left empty. */
static void invalid_strings(void **state)
{
    (void)state;
    const char *bad[] = {"bogus:3", "pack:2 core:", "pack:0 core:1", "pack:2 core:2 pu:1 extra",
                         "core:-1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ot__topo_t t;
        memset(&t, 0xff, sizeof t);
        assert_int_equal(ot__topo_init(&t, bad[i], 0), -EINVAL);
        assert_null(t.hw);
        assert_null(t.core);
        assert_null(t.victims);
        ot__topo_destroy(&t); /* harmless on the emptied struct */
    }
}

/* This machine: one scheduler per core, and scheduler 0 can be bound. */
static void real_machine(void **state)
{
    (void)state;
    ot__topo_t t;
    assert_int_equal(ot__topo_init(&t, NULL, 0), 0);
    assert_int_equal(t.synthetic, 0);
    assert_true(t.ncores >= 1);
    assert_int_equal(t.nsched, t.ncores);
    for (unsigned i = 0; i < t.nsched; i++)
        assert_int_equal(t.core[i], (int)i);
    cpu_set_t saved, now;
    assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof saved, &saved), 0);
    assert_int_equal(ot__topo_bind(&t, 0), 0);
    assert_int_equal(pthread_getaffinity_np(pthread_self(), sizeof now, &now), 0);
    assert_true(CPU_COUNT(&now) >= 1 && CPU_COUNT(&now) <= CPU_COUNT(&saved));
    assert_int_equal(pthread_setaffinity_np(pthread_self(), sizeof saved, &saved), 0);
    ot__topo_destroy(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_packages_two_caches),
        cmocka_unit_test(two_numa_nodes),
        cmocka_unit_test(numa_node_per_cache),
        cmocka_unit_test(numa_under_groups),
        cmocka_unit_test(smt_counts_cores),
        cmocka_unit_test(pus_without_cores),
        cmocka_unit_test(more_schedulers_than_cores),
        cmocka_unit_test(one_scheduler),
        cmocka_unit_test(invalid_strings),
        cmocka_unit_test(real_machine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
