/* alloc/stack.h: process stacks (size classes, guard pages, zero canary).
 *
 * Invariants checked:
 * - size classes: 16 KiB .. 8 MiB powers of two, rounding up, -1 above;
 * - a stack from ot__stack_get: descriptor at the top 64 bytes of its slot,
 *   top 16-byte aligned and inside the slot, slot page-aligned, the whole
 *   range [floor, top) writable; its fields survive a put/get cycle (the
 *   pool link is the descriptor's `link`, nothing else is overwritten);
 * - ot__stack_ok: true for a fresh stack and an sp at or above the floor,
 *   false below the floor, and (unguarded stacks) false as soon as any of
 *   the canary words is non-zero;
 * - guard pages: one PROT_NONE page at the bottom of the slot while the
 *   process-wide budget lasts (seen in /proc/self/maps, and a read of it
 *   faults), the budget decreases by one per guarded stack, none after it
 *   reaches 0; ot__stack_in_guard covers exactly [lo, floor);
 * - mapping count: 10,000 unguarded stacks from one pool add at most a
 *   couple of lines to /proc/self/maps (guarded ones add two each, which
 *   shows the measurement works). */
#define _GNU_SOURCE 1
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "alloc/stack.h"

static const char OWNER = 'o';

/* Number of lines in /proc/self/maps. */
static long count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        if (c == '\n') n++;
    fclose(f);
    return n;
}

/* Permissions ("rw-p", "---p", ...) and bounds of the mapping holding addr. */
static int mapping_of(const void *addr, char perms[5], uintptr_t *lo, uintptr_t *hi)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[512];
    int found = 0;
    while (fgets(line, sizeof line, f)) {
        uintptr_t a, b;
        char p[5];
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %4s", &a, &b, p) != 3) continue;
        if ((uintptr_t)addr >= a && (uintptr_t)addr < b) {
            memcpy(perms, p, 5);
            *lo = a;
            *hi = b;
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

static void class_boundaries(void **state)
{
    (void)state;
    assert_int_equal(ot__stack_class(0), 0);
    assert_int_equal(ot__stack_class(1), 0);
    assert_int_equal(ot__stack_class(16384), 0);
    assert_int_equal(ot__stack_class(16385), 1);
    assert_int_equal(ot__stack_class(32768), 1);
    assert_int_equal(ot__stack_class(32769), 2);
    assert_int_equal(ot__stack_class((size_t)8 << 20), OT__STACK_CLASSES - 1);
    assert_int_equal(ot__stack_class(((size_t)8 << 20) + 1), -1);
    assert_int_equal(ot__stack_class((size_t)1 << 40), -1);
    assert_int_equal(ot__stack_class(SIZE_MAX), -1);
    assert_int_equal(OT__STACK_CLASSES, 10);
    for (int c = 0; c < OT__STACK_CLASSES; c++) {
        size_t sz = ot__stack_class_size(c);
        assert_int_equal(sz, (size_t)16384 << c);
        assert_int_equal(ot__stack_class(sz), c);
        assert_int_equal(ot__stack_class(sz - 1), c == 0 ? 0 : c);
        if (c + 1 < OT__STACK_CLASSES) assert_int_equal(ot__stack_class(sz + 1), c + 1);
        if (c > 0) assert_int_equal(ot__stack_class(sz / 2 + 1), c);
    }
}

/* Geometry of the descriptor, top, floor; all usable bytes writable. One
 * stack of every class, some guarded, some not. */
static void descriptor_and_top(void **state)
{
    (void)state;
    ot__stack_set_guard_budget(OT__STACK_CLASSES / 2);
    ot__stack_pools_t sp;
    ot__stack_pools_init(&sp, &OWNER, NULL, -1);
    int guarded = 0;
    for (int c = 0; c < OT__STACK_CLASSES; c++) {
        ot__stack_t *st = ot__stack_get(&sp, c);
        assert_non_null(st);
        assert_int_equal(st->size, ot__stack_class_size(c));
        assert_int_equal((uintptr_t)st->lo % 4096, 0);
        assert_ptr_equal((char *)st, st->lo + st->size - OT__STACK_DESC_SIZE);
        char *top = ot__stack_top(st);
        assert_int_equal((uintptr_t)top % 16, 0);
        assert_true(top > st->lo && top <= st->lo + st->size);
        assert_true(top <= (char *)st); /* the stack does not overlap the descriptor */
        assert_true(ot__stack_floor(st) < top);
        assert_ptr_equal(ot__stack_floor(st),
                         st->lo + (st->guarded ? 4096 : 0) + OT__STACK_RESERVE);
        guarded += (int)st->guarded;
        /* A fresh stack is intact, with sp anywhere from the top down to
         * the floor (inclusive). */
        assert_true(ot__stack_ok(st, top));
        assert_true(ot__stack_ok(st, top - 512));
        assert_true(ot__stack_ok(st, ot__stack_floor(st)));
        assert_false(ot__stack_ok(st, ot__stack_floor(st) - 1));
        assert_false(ot__stack_ok(st, st->lo));
        if (c < 4) {
            /* Every byte above the canary is usable (touching the small
             * classes only: the large ones would commit megabytes). */
            char *from = (char *)ot__stack_canary(st) + OT__STACK_CANARY;
            memset(from, 0x5a, (size_t)(top - from));
            assert_true(ot__stack_ok(st, ot__stack_floor(st)));
            memset(from, 0, (size_t)(top - from));
        }
    }
    assert_int_equal(guarded, OT__STACK_CLASSES / 2);
    assert_int_equal(ot__stack_guards_left(), 0);
    ot__stack_pools_destroy(&sp);
}

/* Unguarded stacks: any non-zero canary word fails ot__stack_ok; bytes
 * just above the canary do not. */
static void canary_detects_writes(void **state)
{
    (void)state;
    ot__stack_set_guard_budget(0);
    ot__stack_pools_t sp;
    ot__stack_pools_init(&sp, &OWNER, NULL, -1);
    ot__stack_t *st = ot__stack_get(&sp, 0);
    assert_non_null(st);
    assert_int_equal(st->guarded, 0);
    assert_int_equal(ot__stack_guards_left(), 0);
    char *top = ot__stack_top(st);
    uint64_t *canary = (uint64_t *)ot__stack_canary(st);
    assert_ptr_equal(canary, (uint64_t *)st->lo);
    assert_true(ot__stack_ok(st, top - 64));
    for (int i = 0; i < OT__STACK_CANARY / 8; i++) {
        canary[i] = (uint64_t)1 << (i * 7);
        assert_false(ot__stack_ok(st, top - 64));
        canary[i] = 0;
        assert_true(ot__stack_ok(st, top - 64));
    }
    /* One byte is enough. */
    ((volatile char *)canary)[OT__STACK_CANARY - 1] = 1;
    assert_false(ot__stack_ok(st, top - 64));
    ((volatile char *)canary)[OT__STACK_CANARY - 1] = 0;
    /* Above the canary (the rest of the reserve) is not checked. */
    ((volatile char *)canary)[OT__STACK_CANARY] = 1;
    assert_true(ot__stack_ok(st, top - 64));
    ((volatile char *)canary)[OT__STACK_CANARY] = 0;
    /* in_guard: the canary and reserve, [lo, floor). */
    assert_true(ot__stack_in_guard(st, st->lo));
    assert_true(ot__stack_in_guard(st, ot__stack_floor(st) - 1));
    assert_false(ot__stack_in_guard(st, ot__stack_floor(st)));
    assert_false(ot__stack_in_guard(st, st->lo - 1));
    assert_false(ot__stack_in_guard(st, top - 1));
    ot__stack_pools_destroy(&sp);
}

/* Read `addr` in a child; the child's exit status tells whether it faulted. */
static int child_read_faults(const volatile char *addr)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* Our own handler, so that a sanitizer's report-and-abort does not
         * stand in for the fault. */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = _exit; /* _exit(SIGSEGV) */
        sigaction(SIGSEGV, &sa, NULL);
        sigaction(SIGBUS, &sa, NULL);
        (void)*addr;
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFEXITED(status))
        return WEXITSTATUS(status) == SIGSEGV || WEXITSTATUS(status) == SIGBUS;
    return WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS);
}

/* The budget: 3 guards for 5 stacks. The guarded ones have a PROT_NONE
 * page at lo (maps and a faulting read say so), the others do not; the
 * budget counts down to 0 and stays there. */
static void guard_pages_and_budget(void **state)
{
    (void)state;
    ot__stack_set_guard_budget(3);
    assert_int_equal(ot__stack_guards_left(), 3);
    ot__stack_pools_t sp;
    ot__stack_pools_init(&sp, &OWNER, NULL, -1);
    ot__stack_t *st[5];
    for (int i = 0; i < 5; i++) {
        st[i] = ot__stack_get(&sp, 0);
        assert_non_null(st[i]);
        assert_int_equal(st[i]->guarded, i < 3);
        assert_int_equal(ot__stack_guards_left(), i < 3 ? 2 - i : 0);
    }
    for (int i = 0; i < 5; i++) {
        char perms[5];
        uintptr_t lo, hi;
        assert_true(mapping_of(st[i]->lo, perms, &lo, &hi));
        if (i < 3) {
            assert_string_equal(perms, "---p");
            assert_int_equal(lo, (uintptr_t)st[i]->lo);
            assert_int_equal(hi, (uintptr_t)st[i]->lo + 4096);
            assert_true(ot__stack_in_guard(st[i], st[i]->lo));
            assert_true(ot__stack_in_guard(st[i], st[i]->lo + 4095));
            assert_true(ot__stack_in_guard(st[i], st[i]->lo + 4096)); /* the canary */
            assert_false(ot__stack_in_guard(st[i], ot__stack_floor(st[i])));
            assert_ptr_equal(ot__stack_canary(st[i]), (uint64_t *)(st[i]->lo + 4096));
            assert_true(child_read_faults(st[i]->lo));
        } else {
            assert_int_equal(perms[0], 'r');
            assert_int_equal(perms[1], 'w');
            assert_false(child_read_faults(st[i]->lo));
        }
        /* The page above the guard is ordinary stack. */
        assert_true(mapping_of(st[i]->lo + 4096, perms, &lo, &hi));
        assert_int_equal(perms[0], 'r');
        assert_int_equal(perms[1], 'w');
        assert_false(child_read_faults(st[i]->lo + 4096));
    }
    /* A guarded stack's canary is not consulted (the guard page is the
     * check), the floor is. */
    assert_true(ot__stack_ok(st[0], ot__stack_floor(st[0])));
    assert_false(ot__stack_ok(st[0], ot__stack_floor(st[0]) - 1));
    /* -1 derives the budget from vm.max_map_count: a quarter of it. */
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    if (f) {
        long max = 0;
        if (fscanf(f, "%ld", &max) == 1) {
            ot__stack_set_guard_budget(-1);
            assert_int_equal(ot__stack_guards_left(), max / 4);
        }
        fclose(f);
    }
    ot__stack_set_guard_budget(0);
    ot__stack_pools_destroy(&sp);
}

/* put/get: the same slot comes back with its descriptor intact, from a
 * local put and from a remote one (me != owner). */
static void put_get_keeps_descriptor(void **state)
{
    (void)state;
    ot__stack_set_guard_budget(1);
    ot__stack_pools_t sp;
    ot__stack_pools_init(&sp, &OWNER, NULL, -1);
    int cls = ot__stack_class(64 << 10);
    ot__stack_t *a = ot__stack_get(&sp, cls), *b = ot__stack_get(&sp, cls);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    ot__stack_t da = *a, db = *b;
    assert_int_equal(da.guarded, 1);
    assert_int_equal(db.guarded, 0);
    ot__stack_put(&sp, a, &OWNER); /* local */
    ot__stack_t *x = ot__stack_get(&sp, cls);
    assert_ptr_equal(x, a);
    assert_ptr_equal(x->lo, da.lo);
    assert_int_equal(x->size, da.size);
    assert_int_equal(x->guarded, 1);
    ot__stack_put(&sp, b, NULL); /* remote */
    x = ot__stack_get(&sp, cls);
    assert_ptr_equal(x, b);
    assert_ptr_equal(x->lo, db.lo);
    assert_int_equal(x->size, db.size);
    assert_int_equal(x->guarded, 0);
    assert_true(ot__stack_ok(x, ot__stack_top(x)));
    assert_int_equal(sp.cls[cls].carved, 2);
    ot__stack_pools_destroy(&sp);
}

/* 10,000 unguarded 16 KiB stacks live in one slab mapping: the number of
 * mappings hardly moves. Then 64 guarded ones each split it. */
static void mappings_do_not_grow(void **state)
{
    (void)state;
    enum { N = 10000, G = 64 };
    ot__stack_set_guard_budget(0);
    ot__stack_pools_t sp;
    ot__stack_pools_init(&sp, &OWNER, NULL, -1);
    long before = count_maps();
    for (int i = 0; i < N; i++) {
        ot__stack_t *st = ot__stack_get(&sp, 0);
        assert_non_null(st);
        assert_int_equal(st->guarded, 0);
    }
    long after = count_maps();
    print_message("maps: %ld before, %ld after %d unguarded stacks, %zu slab(s)\n", before,
                  after, N, sp.cls[0].nslabs);
    assert_true(after - before <= 3);
    assert_int_equal(sp.cls[0].nslabs, 1);
    ot__stack_pools_destroy(&sp);

    ot__stack_set_guard_budget(G);
    ot__stack_pools_init(&sp, &OWNER, NULL, -1);
    before = count_maps();
    for (int i = 0; i < G; i++)
        assert_int_equal(ot__stack_get(&sp, 0)->guarded, 1);
    after = count_maps();
    assert_true(after - before >= 2 * G - 2);
    ot__stack_pools_destroy(&sp);
    ot__stack_set_guard_budget(0);
}

/* The tests above check the mprotect mechanism (the budget, PROT_NONE
 * pages in /proc/self/maps), whatever the kernel offers. */
static int force_mprotect(void **state)
{
    (void)state;
    ot__stack_set_guard_mechanism(OT__GUARD_MPROTECT);
    return 0;
}

/* Linux 6.13+: guard regions (MADV_GUARD_INSTALL) give every stack a guard
 * page without splitting the mapping: the default budget covers all stacks,
 * 64 guarded stacks add no line to /proc/self/maps, a read of the guard
 * faults and the page above it does not. Skipped on older kernels. */
static void guard_regions(void **state)
{
    (void)state;
    ot__stack_set_guard_mechanism(0); /* probe the kernel */
    if (ot__stack_guard_mechanism() != OT__GUARD_MADVISE) {
        ot__stack_set_guard_mechanism(OT__GUARD_MPROTECT);
        skip();
    }
    ot__stack_set_guard_budget(-1);
    assert_true(ot__stack_guards_left() > 1000000000L);
    ot__stack_pools_t sp;
    ot__stack_pools_init(&sp, &OWNER, NULL, -1);
    ot__stack_t *first = ot__stack_get(&sp, 0); /* the slab is mapped now */
    assert_non_null(first);
    long before = count_maps();
    ot__stack_t *st[64];
    for (int i = 0; i < 64; i++) {
        st[i] = ot__stack_get(&sp, 0);
        assert_non_null(st[i]);
        assert_int_equal(st[i]->guarded, 1);
    }
    assert_true(count_maps() <= before + 1);
    for (int i = 0; i < 64; i += 21) {
        assert_true(child_read_faults(st[i]->lo));
        assert_true(child_read_faults(st[i]->lo + 4095));
        assert_false(child_read_faults(st[i]->lo + 4096));
        assert_true(ot__stack_in_guard(st[i], st[i]->lo));
        assert_true(ot__stack_ok(st[i], ot__stack_floor(st[i])));
    }
    ot__stack_pools_destroy(&sp);
    ot__stack_set_guard_mechanism(OT__GUARD_MPROTECT);
    ot__stack_set_guard_budget(0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(class_boundaries),
        cmocka_unit_test(descriptor_and_top),
        cmocka_unit_test(canary_detects_writes),
        cmocka_unit_test(guard_pages_and_budget),
        cmocka_unit_test(put_get_keeps_descriptor),
        cmocka_unit_test(mappings_do_not_grow),
        cmocka_unit_test(guard_regions),
    };
    return cmocka_run_group_tests(tests, force_mprotect, NULL);
}
