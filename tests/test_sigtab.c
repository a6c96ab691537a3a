/* The per-process link/monitor table against a reference model: random
 * adds and deletes (backward-shift deletion must keep every entry
 * findable), growth past the inline slots, per-kind counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sched/sigtab.h"

#define KEYS 600

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void random_ops(void **state)
{
    (void)state;
    static uint8_t model[4][KEYS]; /* present? */
    static uint64_t pid_of[4][KEYS];
    memset(model, 0, sizeof model);
    struct ot__sigtab *t = NULL;
    uint64_t seed = 0x9E3779B97F4A7C15ull;
    size_t count[4] = {0};
    for (int op = 0; op < 400000; op++) {
        uint32_t kind = 1 + (uint32_t)(rng(&seed) % 3);
        /* Keys chosen so that some collide in the hash's low bits. */
        uint32_t k = (uint32_t)(rng(&seed) % KEYS);
        uint64_t key = ((uint64_t)k << 32) | k;
        if (rng(&seed) % 3) {
            uint64_t pid = rng(&seed);
            int rc = ot__sigtab_add(&t, kind, key, pid);
            assert_true(rc == (model[kind][k] ? 0 : 1));
            if (rc == 1) {
                model[kind][k] = 1;
                pid_of[kind][k] = pid;
                count[kind]++;
            }
        } else {
            uint64_t pid = 0;
            int rc = ot__sigtab_del(t, kind, key, &pid);
            assert_int_equal(rc, model[kind][k]);
            if (rc) {
                assert_true(pid == pid_of[kind][k]);
                model[kind][k] = 0;
                count[kind]--;
            }
        }
        if (op % 50000 == 0) {
            for (uint32_t kd = 1; kd < 4; kd++) {
                assert_int_equal(ot__sigtab_count(t, kd), count[kd]);
                for (uint32_t i = 0; i < KEYS; i++) {
                    uint64_t pid;
                    uint64_t kk = ((uint64_t)i << 32) | i;
                    /* Find by deleting and re-adding. */
                    int rc = ot__sigtab_del(t, kd, kk, &pid);
                    assert_int_equal(rc, model[kd][i]);
                    if (rc) assert_int_equal(ot__sigtab_add(&t, kd, kk, pid), 1);
                }
            }
        }
    }
    /* Same key, different kinds: distinct entries. */
    assert_int_equal(ot__sigtab_add(&t, 1, 424242, 1), 1);
    assert_int_equal(ot__sigtab_add(&t, 2, 424242, 2), 1);
    uint64_t p;
    assert_int_equal(ot__sigtab_del(t, 2, 424242, &p), 1);
    assert_true(p == 2);
    assert_int_equal(ot__sigtab_del(t, 1, 424242, &p), 1);
    assert_true(p == 1);
    ot__sigtab_free(t);
    /* NULL table: empty. */
    assert_int_equal(ot__sigtab_count(NULL, 1), 0);
    assert_int_equal(ot__sigtab_del(NULL, 1, 5, NULL), 0);
    ot__sigtab_free(NULL);
}

static void reserve_then_add_cannot_fail(void **state)
{
    (void)state;
    struct ot__sigtab *t = NULL;
    for (uint64_t i = 1; i <= 100; i++) {
        assert_int_equal(ot__sigtab_reserve(&t), 0);
        size_t cap = t->cap;
        assert_int_equal(ot__sigtab_add(&t, 1, i, i), 1);
        assert_int_equal(t->cap, cap); /* no growth after a reserve */
    }
    assert_int_equal(ot__sigtab_count(t, 1), 100);
    ot__sigtab_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(random_ops),
        cmocka_unit_test(reserve_then_add_cannot_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
