/* sched/runq.h: the scheduler's bounded run queue (Go's runq layout).
 *
 * Invariants checked:
 * - owner push/pop is FIFO, push fails exactly when OT__RUNQ_SIZE items are
 *   queued, pop of an empty queue is NULL, and this holds across the ring
 *   wrapping and across the 32-bit head/tail counters wrapping;
 * - ot__runq_steal takes ceil(n/2) (half) or 1 (!half) of the OLDEST items,
 *   reports them in *moved, returns the newest of those and leaves the rest,
 *   in order, in the thief's queue; the victim keeps the remainder in order;
 * - ot__runq_take takes the oldest items in order;
 * - stress: one owner pushing and popping, three thieves stealing (half and
 *   one) into their own queues and draining them: over millions of unique
 *   items, each is taken exactly once (per-item counters), and the plain
 *   data the owner wrote for an item before pushing it is visible to
 *   whoever takes it (under TSan, a missing release/acquire is a race).
 * Items are unique integers cast to pointers (never NULL). */
#define _GNU_SOURCE 1 /* pthread_setaffinity_np */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sched/runq.h"

#define IT(i) ((void *)(uintptr_t)(i))
#define VAL(p) ((uintptr_t)(p))

#include "tests/stress.h"

static inline void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Pop everything and check it is exactly first, first+1, ..., last. */
static void expect_pop_range(ot__runq_t *q, uintptr_t first, uintptr_t last)
{
    for (uintptr_t i = first; i <= last; i++)
        assert_int_equal(VAL(ot__runq_pop(q)), i);
    assert_null(ot__runq_pop(q));
    assert_int_equal(ot__runq_len(q), 0);
}

/* An empty queue: pop NULL, len 0, steal nothing. */
static void empty_queue(void **state)
{
    (void)state;
    static ot__runq_t q, mine;
    ot__runq_init(&q);
    ot__runq_init(&mine);
    assert_null(ot__runq_pop(&q));
    assert_int_equal(ot__runq_len(&q), 0);
    uint32_t moved = 99;
    assert_null(ot__runq_steal(&q, &mine, true, &moved));
    assert_int_equal(moved, 0);
    moved = 99;
    assert_null(ot__runq_steal(&q, &mine, false, &moved));
    assert_int_equal(moved, 0);
    void *out[4];
    assert_int_equal(ot__runq_take(&q, out, 4), 0);
}

/* FIFO; full at exactly OT__RUNQ_SIZE; a pop makes room for one push. */
static void fifo_and_full(void **state)
{
    (void)state;
    static ot__runq_t q;
    ot__runq_init(&q);
    for (uintptr_t i = 1; i <= OT__RUNQ_SIZE; i++) {
        assert_true(ot__runq_push(&q, IT(i)));
        assert_int_equal(ot__runq_len(&q), i);
    }
    assert_false(ot__runq_push(&q, IT(9999)));
    assert_int_equal(ot__runq_len(&q), OT__RUNQ_SIZE);
    assert_int_equal(VAL(ot__runq_pop(&q)), 1);
    assert_true(ot__runq_push(&q, IT(OT__RUNQ_SIZE + 1)));
    assert_false(ot__runq_push(&q, IT(9999)));
    expect_pop_range(&q, 2, OT__RUNQ_SIZE + 1);
}

/* Interleaved push/pop over many laps of the ring keeps FIFO order. */
static void fifo_across_ring_wrap(void **state)
{
    (void)state;
    static ot__runq_t q;
    ot__runq_init(&q);
    uintptr_t next_in = 1, next_out = 1;
    for (int lap = 0; lap < 50; lap++) {
        unsigned burst = 1 + (unsigned)(lap * 37) % OT__RUNQ_SIZE;
        for (unsigned k = 0; k < burst; k++) {
            if (!ot__runq_push(&q, IT(next_in))) break;
            next_in++;
        }
        unsigned drain = 1 + (unsigned)(lap * 53) % OT__RUNQ_SIZE;
        for (unsigned k = 0; k < drain; k++) {
            void *p = ot__runq_pop(&q);
            if (!p) break;
            assert_int_equal(VAL(p), next_out);
            next_out++;
        }
        assert_int_equal(ot__runq_len(&q), next_in - next_out);
    }
    expect_pop_range(&q, next_out, next_in - 1);
}

/* head and tail are free-running uint32 counters: start them just below
 * 2^32 and check full/empty/FIFO/steal across the wrap. */
static void counters_wrap_2_32(void **state)
{
    (void)state;
    static ot__runq_t q, mine;
    ot__runq_init(&q);
    ot__runq_init(&mine);
    const uint32_t start = UINT32_MAX - 100;
    atomic_store(&q.head, start);
    atomic_store(&q.tail, start);
    atomic_store(&mine.head, start + 50);
    atomic_store(&mine.tail, start + 50);
    for (uintptr_t i = 1; i <= OT__RUNQ_SIZE; i++)
        assert_true(ot__runq_push(&q, IT(i)));
    assert_false(ot__runq_push(&q, IT(9999)));
    assert_int_equal(ot__runq_len(&q), OT__RUNQ_SIZE);
    for (uintptr_t i = 1; i <= 10; i++)
        assert_int_equal(VAL(ot__runq_pop(&q)), i);
    uint32_t moved = 0;
    /* 246 queued: half is 123, items 11..133; returns 133. */
    assert_int_equal(VAL(ot__runq_steal(&q, &mine, true, &moved)), 133);
    assert_int_equal(moved, 123);
    expect_pop_range(&mine, 11, 132);
    expect_pop_range(&q, 134, OT__RUNQ_SIZE);
}

/* steal(half): of n queued, ceil(n/2) oldest move; the newest of them is
 * returned, the others land in `mine` in order. */
static void steal_half_semantics(void **state)
{
    (void)state;
    static ot__runq_t victim, mine;
    for (uint32_t n = 1; n <= OT__RUNQ_SIZE; n++) {
        ot__runq_init(&victim);
        ot__runq_init(&mine);
        for (uintptr_t i = 1; i <= n; i++)
            assert_true(ot__runq_push(&victim, IT(i)));
        uint32_t moved = 0;
        void *got = ot__runq_steal(&victim, &mine, true, &moved);
        uint32_t want = n - n / 2;
        assert_int_equal(moved, want);
        assert_int_equal(VAL(got), want);
        assert_int_equal(ot__runq_len(&mine), want - 1);
        assert_int_equal(ot__runq_len(&victim), n - want);
        if (want > 1)
            expect_pop_range(&mine, 1, want - 1);
        else
            assert_null(ot__runq_pop(&mine));
        if (n > want)
            expect_pop_range(&victim, want + 1, n);
        else
            assert_null(ot__runq_pop(&victim));
    }
}

/* steal(!half) moves exactly one, the oldest, and leaves `mine` empty. */
static void steal_one_semantics(void **state)
{
    (void)state;
    static ot__runq_t victim, mine;
    ot__runq_init(&victim);
    ot__runq_init(&mine);
    for (uintptr_t i = 1; i <= 5; i++)
        assert_true(ot__runq_push(&victim, IT(i)));
    for (uintptr_t i = 1; i <= 5; i++) {
        uint32_t moved = 0;
        assert_int_equal(VAL(ot__runq_steal(&victim, &mine, false, &moved)), i);
        assert_int_equal(moved, 1);
        assert_int_equal(ot__runq_len(&mine), 0);
        assert_null(ot__runq_pop(&mine));
        assert_int_equal(ot__runq_len(&victim), 5 - i);
    }
    uint32_t moved = 7;
    assert_null(ot__runq_steal(&victim, &mine, false, &moved));
    assert_int_equal(moved, 0);
}

/* The thief's queue is used at an arbitrary position (its counters are
 * not at 0 and the copy wraps around its ring), and it can itself be
 * stolen from afterwards. */
static void steal_into_used_queue(void **state)
{
    (void)state;
    static ot__runq_t victim, mine, third;
    ot__runq_init(&victim);
    ot__runq_init(&mine);
    ot__runq_init(&third);
    /* Advance mine's counters to 250 so that the copy wraps. */
    for (uintptr_t i = 0; i < 250; i++) {
        assert_true(ot__runq_push(&mine, IT(100000 + i)));
        assert_int_equal(VAL(ot__runq_pop(&mine)), 100000 + i);
    }
    for (uintptr_t i = 1; i <= 40; i++)
        assert_true(ot__runq_push(&victim, IT(i)));
    uint32_t moved = 0;
    assert_int_equal(VAL(ot__runq_steal(&victim, &mine, true, &moved)), 20);
    assert_int_equal(moved, 20);
    assert_int_equal(ot__runq_len(&mine), 19);
    /* A third queue steals half of mine: 10 of 19 (items 1..10). */
    assert_int_equal(VAL(ot__runq_steal(&mine, &third, true, &moved)), 10);
    assert_int_equal(moved, 10);
    expect_pop_range(&third, 1, 9);
    expect_pop_range(&mine, 11, 19);
    expect_pop_range(&victim, 21, 40);
}

/* take: the oldest up to n, in order; the count is returned. */
static void take_semantics(void **state)
{
    (void)state;
    static ot__runq_t q;
    ot__runq_init(&q);
    for (uintptr_t i = 1; i <= 10; i++)
        assert_true(ot__runq_push(&q, IT(i)));
    void *out[OT__RUNQ_SIZE];
    assert_int_equal(ot__runq_take(&q, out, 4), 4);
    for (uintptr_t i = 0; i < 4; i++)
        assert_int_equal(VAL(out[i]), i + 1);
    assert_int_equal(ot__runq_len(&q), 6);
    assert_int_equal(ot__runq_take(&q, out, OT__RUNQ_SIZE), 6);
    for (uintptr_t i = 0; i < 6; i++)
        assert_int_equal(VAL(out[i]), i + 5);
    assert_int_equal(ot__runq_take(&q, out, 1), 0);
    /* Spilling half of a full queue, as the scheduler does. */
    for (uintptr_t i = 1; i <= OT__RUNQ_SIZE; i++)
        assert_true(ot__runq_push(&q, IT(i)));
    assert_int_equal(ot__runq_take(&q, out, OT__RUNQ_SIZE / 2), OT__RUNQ_SIZE / 2);
    for (uintptr_t i = 0; i < OT__RUNQ_SIZE / 2; i++)
        assert_int_equal(VAL(out[i]), i + 1);
    expect_pop_range(&q, OT__RUNQ_SIZE / 2 + 1, OT__RUNQ_SIZE);
}

/* ---- stress: one owner, three thieves --------------------------------------- */

#define THIEVES 3

static ot__runq_t s_victim;
static _Atomic uint8_t *s_count; /* s_count[i]: how many times item i was taken */
static uint32_t *s_payload;      /* written (plainly) by the owner before the push */
#define PAYLOAD(v) ((uint32_t)(v)*2654435761u)
static uintptr_t s_nitems;
static atomic_bool s_done;
static atomic_int s_started; /* thieves running: the owner waits for all */

typedef struct {
    int id;
    ot__runq_t mine;
    unsigned long taken, steals, cross_steals, bad;
} thief_t;

static void take_item(void *p, unsigned long *bad)
{
    uintptr_t v = VAL(p);
    if (v == 0 || v > s_nitems || s_payload[v] != PAYLOAD(v)) {
        (*bad)++;
        return;
    }
    atomic_fetch_add_explicit(&s_count[v], 1, memory_order_relaxed);
}

static thief_t s_thief[THIEVES];

static void *thief_main(void *arg)
{
    thief_t *t = arg;
    pin_to_cpu(t->id + 1);
    atomic_fetch_add_explicit(&s_started, 1, memory_order_relaxed);
    unsigned k = 0;
    for (;;) {
        /* Read done before stealing: once done is seen the owner's queue is
         * empty for good, so one more failed steal from it means we are
         * finished (our own queue is empty: we drain it after each steal). */
        bool done = atomic_load_explicit(&s_done, memory_order_acquire);
        uint32_t moved = 0;
        /* Mostly from the owner; one attempt in eight from another thief's
         * queue while that thief drains it (the runtime's thieves steal
         * from each other too). Our own queue is empty here, as required. */
        k++;
        bool from_owner = (k & 7) != 0;
        ot__runq_t *victim =
            from_owner ? &s_victim
                       : &s_thief[(t->id + 1 + (int)(k >> 3) % (THIEVES - 1)) % THIEVES].mine;
        void *p = ot__runq_steal(victim, &t->mine, (k & 3) != 0 || !from_owner, &moved);
        if (!p) {
            if (moved != 0) t->bad++;
            if (done && from_owner) break;
            cpu_relax();
            continue;
        }
        t->steals++;
        if (!from_owner) t->cross_steals++;
        if (moved == 0 || moved > OT__RUNQ_SIZE / 2) t->bad++;
        /* Our queue holds at most moved - 1 (others may steal from it). */
        if (ot__runq_len(&t->mine) > moved - 1) t->bad++;
        take_item(p, &t->bad);
        t->taken++;
        uint32_t drained = 0;
        /* One drain in sixteen is slow ("runs" each item a little): a window
         * for the other thieves to steal from our queue. */
        bool slow = (t->steals & 15) == 0;
        while ((p = ot__runq_pop(&t->mine))) {
            take_item(p, &t->bad);
            t->taken++;
            drained++;
            if (slow)
                for (int s = 0; s < 16; s++)
                    cpu_relax();
        }
        if (drained > moved - 1) t->bad++;
    }
    return NULL;
}

static void stress_owner_and_thieves(void **state)
{
    (void)state;
    s_nitems = scaled(16000000);
    s_count = calloc(s_nitems + 1, sizeof *s_count);
    assert_non_null(s_count);
    s_payload = malloc((s_nitems + 1) * sizeof *s_payload);
    assert_non_null(s_payload);
    ot__runq_init(&s_victim);
    atomic_store(&s_done, false);
    atomic_store(&s_started, 0);
    thief_t *th = s_thief;
    pthread_t tid[THIEVES];
    for (int i = 0; i < THIEVES; i++) { /* all queues exist before any thief runs */
        memset(&th[i], 0, sizeof th[i]);
        th[i].id = i;
        ot__runq_init(&th[i].mine);
    }
    for (int i = 0; i < THIEVES; i++)
        assert_int_equal(pthread_create(&tid[i], NULL, thief_main, &th[i]), 0);
    pin_to_cpu(0);
    while (atomic_load_explicit(&s_started, memory_order_relaxed) < THIEVES)
        sched_yield();
    unsigned long owner_taken = 0, owner_bad = 0, full = 0;
    uint64_t rng = 88172645463325252ull;
    for (uintptr_t i = 1; i <= s_nitems; i++) {
        s_payload[i] = PAYLOAD(i);
        if (!ot__runq_push(&s_victim, IT(i))) {
            full++;
            /* Full: spill half like the scheduler (take), or pop one. Either
             * way there is room afterwards (only the owner adds). */
            void *out[OT__RUNQ_SIZE / 2];
            uint32_t n = (full & 1) ? ot__runq_take(&s_victim, out, OT__RUNQ_SIZE / 2) : 0;
            for (uint32_t k = 0; k < n; k++)
                take_item(out[k], &owner_bad);
            owner_taken += n;
            if (n == 0) {
                void *p = ot__runq_pop(&s_victim);
                if (p) {
                    take_item(p, &owner_bad);
                    owner_taken++;
                }
            }
            assert_true(ot__runq_push(&s_victim, IT(i)));
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        /* Pop now and then (a quarter of the pushes) so that the owner and
         * the thieves race for the head. */
        if ((rng & 3) == 0) {
            void *p = ot__runq_pop(&s_victim);
            if (p) {
                take_item(p, &owner_bad);
                owner_taken++;
            }
        }
    }
    void *p;
    while ((p = ot__runq_pop(&s_victim))) {
        take_item(p, &owner_bad);
        owner_taken++;
    }
    atomic_store_explicit(&s_done, true, memory_order_release);
    unsigned long total = owner_taken, steals = 0, cross = 0;
    for (int i = 0; i < THIEVES; i++) {
        assert_int_equal(pthread_join(tid[i], NULL), 0);
        assert_int_equal(th[i].bad, 0);
        total += th[i].taken;
        steals += th[i].steals;
        cross += th[i].cross_steals;
    }
    assert_int_equal(owner_bad, 0);
    /* Every item exactly once: no loss, no duplicate. */
    unsigned long lost = 0, dup = 0;
    for (uintptr_t i = 1; i <= s_nitems; i++) {
        uint8_t c = atomic_load_explicit(&s_count[i], memory_order_relaxed);
        if (c == 0) lost++;
        if (c > 1) dup++;
    }
    if (lost || dup)
        print_error("lost %lu duplicated %lu (of %lu)\n", lost, dup, (unsigned long)s_nitems);
    assert_int_equal(lost, 0);
    assert_int_equal(dup, 0);
    assert_int_equal(total, s_nitems);
    print_message("items %lu: owner took %lu, %lu steals (%lu between thieves), "
                  "queue full %lu times\n",
                  (unsigned long)s_nitems, owner_taken, steals, cross, full);
    /* The thieves really competed (otherwise this tested nothing). */
    assert_true(steals > 0);
    assert_true(owner_taken < s_nitems);
    free(s_count);
    free(s_payload);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_queue),
        cmocka_unit_test(fifo_and_full),
        cmocka_unit_test(fifo_across_ring_wrap),
        cmocka_unit_test(counters_wrap_2_32),
        cmocka_unit_test(steal_half_semantics),
        cmocka_unit_test(steal_one_semantics),
        cmocka_unit_test(steal_into_used_queue),
        cmocka_unit_test(take_semantics),
        cmocka_unit_test(stress_owner_and_thieves),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
