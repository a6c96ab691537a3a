/* mailbox/mpsc.h: Vyukov's intrusive MPSC queue (the mailbox).
 *
 * Invariants checked:
 * - single thread: FIFO; pop of an empty queue is NULL (not BUSY); the stub
 *   is re-inserted correctly when the last node is taken, many times over;
 * - ot__mpsc_maybe_nonempty, within its contract (asked after the consumer
 *   last saw the queue empty, so head is the stub): false while nothing was
 *   pushed since, true after any push, even a half-done one;
 * - a half-done push (tail exchanged, link not yet stored) makes pop return
 *   OT__MPSC_BUSY, never NULL or a wrong node, and the queue is whole again
 *   once the link is stored;
 * - stress: three producers push a million nodes each while one consumer
 *   pops with ot__mpsc_pop_wait: the total is exact, each producer's
 *   sequence numbers arrive exactly in order (so none lost or duplicated),
 *   and every node is the one its producer pushed with that number. */
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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mailbox/mpsc.h"

#include "tests/stress.h"

/* A message: the node first, so that a node pointer is a message pointer. */
typedef struct {
    ot__mpsc_node_t node;
    uint32_t producer;
    uint32_t seq;
} item_t;

/* Empty queue: NULL (not BUSY), maybe_nonempty false. */
static void empty_is_null(void **state)
{
    (void)state;
    ot__mpsc_t q;
    ot__mpsc_init(&q);
    assert_false(ot__mpsc_maybe_nonempty(&q));
    assert_null(ot__mpsc_pop(&q));
    assert_null(ot__mpsc_pop_wait(&q));
    assert_false(ot__mpsc_maybe_nonempty(&q));
}

/* FIFO over a batch, and the queue returns to empty. */
static void fifo_single_thread(void **state)
{
    (void)state;
    enum { N = 1000 };
    static item_t it[N];
    ot__mpsc_t q;
    ot__mpsc_init(&q);
    for (int round = 0; round < 3; round++) {
        for (uint32_t i = 0; i < N; i++) {
            it[i].seq = i;
            ot__mpsc_push(&q, &it[i].node);
            assert_true(ot__mpsc_maybe_nonempty(&q));
        }
        for (uint32_t i = 0; i < N; i++) {
            ot__mpsc_node_t *n = ot__mpsc_pop(&q);
            assert_ptr_equal(n, &it[i].node);
            assert_int_equal(((item_t *)n)->seq, i);
        }
        assert_null(ot__mpsc_pop(&q));
        assert_false(ot__mpsc_maybe_nonempty(&q));
    }
}

/* One node at a time: every pop takes the last node, which goes through
 * the "push the stub behind it" path; and the same node may be pushed
 * again once popped. */
static void one_at_a_time_stub_path(void **state)
{
    (void)state;
    static item_t a, b;
    ot__mpsc_t q;
    ot__mpsc_init(&q);
    for (int i = 0; i < 10000; i++) {
        item_t *x = (i & 1) ? &a : &b;
        ot__mpsc_push(&q, &x->node);
        assert_true(ot__mpsc_maybe_nonempty(&q));
        assert_ptr_equal(ot__mpsc_pop(&q), &x->node);
        assert_null(ot__mpsc_pop(&q));
        assert_false(ot__mpsc_maybe_nonempty(&q));
        /* Two queued, popped one by one, interleaved with a push. */
        ot__mpsc_push(&q, &a.node);
        ot__mpsc_push(&q, &b.node);
        assert_ptr_equal(ot__mpsc_pop(&q), &a.node);
        ot__mpsc_push(&q, &a.node);
        assert_ptr_equal(ot__mpsc_pop(&q), &b.node);
        assert_ptr_equal(ot__mpsc_pop(&q), &a.node);
        assert_null(ot__mpsc_pop(&q));
    }
}

/* The first half of ot__mpsc_push, as a producer preempted between its
 * exchange and its link store would leave it. Returns the previous tail. */
static ot__mpsc_node_t *half_push(ot__mpsc_t *q, ot__mpsc_node_t *n)
{
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    return atomic_exchange_explicit(&q->tail, n, memory_order_seq_cst);
}

static void finish_push(ot__mpsc_node_t *prev, ot__mpsc_node_t *n)
{
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

/* Half-done push on an empty queue: BUSY, never NULL. */
static void half_push_on_empty_is_busy(void **state)
{
    (void)state;
    static item_t a;
    ot__mpsc_t q;
    ot__mpsc_init(&q);
    ot__mpsc_node_t *prev = half_push(&q, &a.node);
    assert_ptr_equal(prev, &q.stub);
    assert_true(ot__mpsc_maybe_nonempty(&q));
    assert_ptr_equal(ot__mpsc_pop(&q), OT__MPSC_BUSY);
    assert_ptr_equal(ot__mpsc_pop(&q), OT__MPSC_BUSY);
    finish_push(prev, &a.node);
    assert_ptr_equal(ot__mpsc_pop(&q), &a.node);
    assert_null(ot__mpsc_pop(&q));
}

/* Half-done push behind a complete one: the complete one cannot be taken
 * (its successor is unknown), BUSY; then both in order. */
static void half_push_behind_node_is_busy(void **state)
{
    (void)state;
    static item_t a, b, c;
    ot__mpsc_t q;
    ot__mpsc_init(&q);
    ot__mpsc_push(&q, &a.node);
    ot__mpsc_node_t *prev = half_push(&q, &b.node);
    assert_ptr_equal(prev, &a.node);
    assert_ptr_equal(ot__mpsc_pop(&q), OT__MPSC_BUSY);
    /* A third producer completes its push meanwhile: still BUSY (a's link
     * to b is missing; c hangs off b). */
    ot__mpsc_push(&q, &c.node);
    assert_ptr_equal(ot__mpsc_pop(&q), OT__MPSC_BUSY);
    finish_push(prev, &b.node);
    assert_ptr_equal(ot__mpsc_pop(&q), &a.node);
    assert_ptr_equal(ot__mpsc_pop(&q), &b.node);
    assert_ptr_equal(ot__mpsc_pop(&q), &c.node);
    assert_null(ot__mpsc_pop(&q));
    assert_false(ot__mpsc_maybe_nonempty(&q));
}

/* The consumer's own stub re-insertion races with a half-done push: the
 * last node is taken only once its successor is linked. */
static void half_push_during_last_node(void **state)
{
    (void)state;
    static item_t a, b;
    ot__mpsc_t q;
    ot__mpsc_init(&q);
    ot__mpsc_push(&q, &a.node);
    ot__mpsc_push(&q, &b.node);
    assert_ptr_equal(ot__mpsc_pop(&q), &a.node);
    /* b is the last node; a producer swaps tail to a but does not link. */
    ot__mpsc_node_t *prev = half_push(&q, &a.node);
    assert_ptr_equal(prev, &b.node);
    assert_ptr_equal(ot__mpsc_pop(&q), OT__MPSC_BUSY);
    finish_push(prev, &a.node);
    assert_ptr_equal(ot__mpsc_pop(&q), &b.node);
    assert_ptr_equal(ot__mpsc_pop(&q), &a.node);
    assert_null(ot__mpsc_pop(&q));
}

/* ---- stress: three producers, one consumer ----------------------------------- */

#define PRODUCERS 3

typedef struct {
    ot__mpsc_t *q;
    item_t *items;
    uint32_t id, n;
} producer_t;

static atomic_int s_start;

static void *producer_main(void *arg)
{
    producer_t *p = arg;
    pin_to_cpu((int)p->id + 1);
    while (!atomic_load_explicit(&s_start, memory_order_acquire))
        sched_yield();
    for (uint32_t i = 0; i < p->n; i++) {
        /* Written before the push: the push's release publishes them. */
        p->items[i].producer = p->id;
        p->items[i].seq = i;
        ot__mpsc_push(p->q, &p->items[i].node);
    }
    return NULL;
}

static void stress_three_producers(void **state)
{
    (void)state;
    static ot__mpsc_t q; /* aligned: the struct wants 64 */
    ot__mpsc_init(&q);
    uint32_t n = (uint32_t)scaled(1000000);
    producer_t pr[PRODUCERS];
    pthread_t tid[PRODUCERS];
    atomic_store(&s_start, 0);
    for (uint32_t i = 0; i < PRODUCERS; i++) {
        pr[i] = (producer_t){.q = &q, .id = i, .n = n};
        pr[i].items = calloc(n, sizeof(item_t));
        assert_non_null(pr[i].items);
        assert_int_equal(pthread_create(&tid[i], NULL, producer_main, &pr[i]), 0);
    }
    pin_to_cpu(0);
    atomic_store_explicit(&s_start, 1, memory_order_release);
    uint32_t next[PRODUCERS] = {0};
    unsigned long total = 0, empty = 0, bad = 0;
    const unsigned long want = (unsigned long)n * PRODUCERS;
    while (total < want) {
        ot__mpsc_node_t *node = ot__mpsc_pop_wait(&q);
        if (!node) {
            empty++;
            if ((empty & 63) == 0) sched_yield();
            continue;
        }
        if (node == OT__MPSC_BUSY) { /* pop_wait never returns BUSY */
            bad++;
            break;
        }
        item_t *it = (item_t *)node;
        uint32_t pid = it->producer;
        /* Exactly the next of that producer: in order, none skipped, none
         * repeated, and it is the node that producer pushed for it. */
        if (pid >= PRODUCERS || it->seq != next[pid] || it != &pr[pid].items[next[pid]]) {
            if (bad++ < 5)
                print_error("bad node: producer %u seq %u expected %u\n", pid, it->seq,
                            pid < PRODUCERS ? next[pid] : 0);
            break;
        }
        next[pid]++;
        total++;
    }
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(pthread_join(tid[i], NULL), 0);
    print_message("%lu nodes from %d producers; the consumer found it empty %lu times\n", total,
                  PRODUCERS, empty);
    assert_int_equal(bad, 0);
    assert_int_equal(total, want);
    for (int i = 0; i < PRODUCERS; i++)
        assert_int_equal(next[i], n);
    /* Nothing left over. */
    assert_null(ot__mpsc_pop_wait(&q));
    assert_false(ot__mpsc_maybe_nonempty(&q));
    for (int i = 0; i < PRODUCERS; i++)
        free(pr[i].items);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_is_null),
        cmocka_unit_test(fifo_single_thread),
        cmocka_unit_test(one_at_a_time_stub_path),
        cmocka_unit_test(half_push_on_empty_is_busy),
        cmocka_unit_test(half_push_behind_node_is_busy),
        cmocka_unit_test(half_push_during_last_node),
        cmocka_unit_test(stress_three_producers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
