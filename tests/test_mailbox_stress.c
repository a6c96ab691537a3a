/* Mailbox stress: many senders, one receiver, over a million messages.
 * Messages from one sender to one receiver arrive in the order sent; none is
 * lost, none is delivered twice; payloads arrive intact. Senders are
 * processes spread over the schedulers, plain threads, or both. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
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

enum { TAG_DATA = 1, TAG_DONE = 2, TAG_GO = 3 };

#define MAX_SENDERS 64
#define EXTRA_MAX 160

/* Payload: header, then (seq % 5) * 40 bytes of a pattern of (idx, seq), so
 * that several envelope size classes are used. */
struct hdr {
    uint32_t idx;
    uint32_t extra;
    uint64_t seq;
    ot_pid_t from; /* ot_self() of the sender, OT_PID_NONE for threads */
};

static uint8_t pat(uint32_t idx, uint64_t seq, uint32_t k)
{
    return (uint8_t)(idx * 31u + (uint32_t)seq * 7u + k);
}

static size_t make_msg(uint8_t *buf, uint32_t idx, uint64_t seq, ot_pid_t from)
{
    struct hdr h = {idx, (uint32_t)(seq % 5) * 40u, seq, from};
    memcpy(buf, &h, sizeof h);
    for (uint32_t k = 0; k < h.extra; k++)
        buf[sizeof h + k] = pat(idx, seq, k);
    return sizeof h + h.extra;
}

/* What a receiver knows about each sender. */
struct tally {
    int64_t next[MAX_SENDERS]; /* expected seq */
    int64_t received, bad_order, bad_data, bad_sender;
};

static void tally_init(struct tally *t)
{
    memset(t, 0, sizeof *t);
}

static void tally_msg(struct tally *t, const ot_msg_t *m, unsigned nsenders)
{
    struct hdr h;
    size_t len = ot_msg_len(m);
    if (ot_msg_tag(m) != TAG_DATA || len < sizeof h) {
        t->bad_data++;
        return;
    }
    memcpy(&h, ot_msg_data(m), sizeof h);
    if (h.idx >= nsenders || len != sizeof h + h.extra || h.extra != (h.seq % 5) * 40u) {
        t->bad_data++;
        return;
    }
    const uint8_t *x = (const uint8_t *)ot_msg_data(m) + sizeof h;
    for (uint32_t k = 0; k < h.extra; k++)
        if (x[k] != pat(h.idx, h.seq, k)) {
            t->bad_data++;
            break;
        }
    if (ot_msg_sender(m) != h.from) t->bad_sender++;
    /* Per-pair order, no loss, no duplicate: exactly the next one. */
    if ((int64_t)h.seq != t->next[h.idx]) {
        if (t->bad_order < 5)
            fprintf(stderr, "sender %u: got seq %llu, expected %lld\n", h.idx,
                    (unsigned long long)h.seq, (long long)t->next[h.idx]);
        t->bad_order++;
    }
    t->next[h.idx] = (int64_t)h.seq + 1;
    t->received++;
}

/* ---- process senders, process receiver ----------------------------------- */

struct job {
    ot_pid_t to;
    uint32_t idx;
    long n;
    atomic_int *go; /* senders start together when set */
};

static void proc_sender(void *arg)
{
    struct job *j = arg;
    ot_pid_t me = ot_self();
    uint8_t buf[sizeof(struct hdr) + EXTRA_MAX];
    while (!atomic_load_explicit(j->go, memory_order_acquire))
        ot_yield();
    for (long s = 0; s < j->n; s++) {
        size_t len = make_msg(buf, j->idx, (uint64_t)s, me);
        int rc = ot_send(j->to, TAG_DATA, buf, len);
        if (rc != 0) {
            PCHECK(rc == 0);
            return;
        }
    }
}

struct rcv_args {
    ot_pid_t main;
    unsigned nsenders;
    int64_t total;
};

static void proc_receiver(void *arg)
{
    struct rcv_args *a = arg;
    struct tally *t = malloc(sizeof *t);
    PCHECK(t != NULL);
    if (!t) return;
    tally_init(t);
    while (t->received < a->total) {
        ot_msg_t *m;
        int rc = ot_receive(NULL, NULL, 30000, &m);
        if (rc != 0) {
            PCHECK(rc == 0);
            break;
        }
        tally_msg(t, m, a->nsenders);
        ot_msg_free(m);
    }
    /* Nothing extra behind them. */
    ot_msg_t *m;
    int64_t extra = 0;
    while (ot_receive(NULL, NULL, 50, &m) == 0) {
        extra++;
        ot_msg_free(m);
    }
    int64_t res[6] = {t->received, t->bad_order, t->bad_data, t->bad_sender, extra, 0};
    for (unsigned i = 0; i < a->nsenders; i++)
        if (t->next[i] != a->total / a->nsenders) res[5]++;
    free(t);
    PCHECK(ot_send(a->main, TAG_DONE, res, sizeof res) == 0);
}

static void check_result(const ot_msg_t *m, int64_t total)
{
    int64_t res[6];
    assert_int_equal(ot_msg_tag(m), TAG_DONE);
    assert_int_equal(ot_msg_len(m), sizeof res);
    memcpy(res, ot_msg_data(m), sizeof res);
    assert_int_equal(res[0], total); /* all received */
    assert_int_equal(res[1], 0);     /* per-pair order, no loss, no duplicate */
    assert_int_equal(res[2], 0);     /* payloads intact */
    assert_int_equal(res[3], 0);     /* sender pid right */
    assert_int_equal(res[4], 0);     /* nothing more */
    assert_int_equal(res[5], 0);     /* every sender's count complete */
}

static void million_from_processes(void **state)
{
    (void)state;
    start_rt(2);
    const unsigned ns = 8;
    /* At least one million in Release. */
    const long per = scaled(125000);
    ot_pid_t me, r;
    assert_int_equal(ot_attach(&me), 0);
    struct rcv_args ra = {me, ns, (int64_t)per * ns};
    assert_int_equal(ot_spawn(proc_receiver, &ra, NULL, &r), 0);
    atomic_int go = 0;
    struct job jobs[8];
    for (unsigned i = 0; i < ns; i++) {
        jobs[i] = (struct job){r, i, per, &go};
        ot_spawn_opts_t o;
        ot_spawn_opts_init(&o);
        o.scheduler = (int)(i % 2); /* both schedulers send from the start */
        assert_int_equal(ot_spawn(proc_sender, &jobs[i], &o, NULL), 0);
    }
    atomic_store_explicit(&go, 1, memory_order_release);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 120000, &m), 0);
    check_result(m, (int64_t)per * ns);
    ot_msg_free(m);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    assert_int_equal(ot_process_count(), 0);
    stop_rt();
}

/* ---- plain threads and processes, to an attached thread ------------------ */

static void *thread_sender(void *arg)
{
    struct job *j = arg;
    uint8_t buf[sizeof(struct hdr) + EXTRA_MAX];
    while (!atomic_load_explicit(j->go, memory_order_acquire))
        sched_yield();
    for (long s = 0; s < j->n; s++) {
        size_t len = make_msg(buf, j->idx, (uint64_t)s, OT_PID_NONE);
        int rc = ot_send(j->to, TAG_DATA, buf, len);
        if (rc != 0) {
            PCHECK(rc == 0);
            break;
        }
    }
    return NULL;
}

static void threads_and_processes(void **state)
{
    (void)state;
    start_rt(2);
    const unsigned nt = 4, np = 4, ns = nt + np;
    const long per = scaled(100000);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    atomic_int go = 0;
    struct job jobs[8];
    pthread_t th[4];
    for (unsigned i = 0; i < ns; i++) {
        jobs[i] = (struct job){me, i, per, &go};
        if (i < nt)
            assert_int_equal(pthread_create(&th[i], NULL, thread_sender, &jobs[i]), 0);
        else
            assert_int_equal(ot_spawn(proc_sender, &jobs[i], NULL, NULL), 0);
    }
    atomic_store_explicit(&go, 1, memory_order_release);

    struct tally *t = malloc(sizeof *t);
    assert_non_null(t);
    tally_init(t);
    const int64_t total = (int64_t)per * ns;
    while (t->received < total) {
        ot_msg_t *m;
        int rc = ot_receive(NULL, NULL, 30000, &m);
        if (rc != 0) break;
        tally_msg(t, m, ns);
        ot_msg_free(m);
    }
    for (unsigned i = 0; i < nt; i++)
        pthread_join(th[i], NULL);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 50, &m), -ETIMEDOUT);
    int64_t received = t->received, bad_order = t->bad_order, bad_data = t->bad_data,
            bad_sender = t->bad_sender;
    unsigned incomplete = 0;
    for (unsigned i = 0; i < ns; i++)
        incomplete += t->next[i] != per;
    free(t);
    assert_int_equal(received, total);
    assert_int_equal(bad_order, 0);
    assert_int_equal(bad_data, 0);
    assert_int_equal(bad_sender, 0);
    assert_int_equal(incomplete, 0);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    stop_rt();
}

/* ---- all to all: every process sends to and receives from every other --- */

#define A2A_N 16

struct a2a {
    ot_pid_t pids[A2A_N];
    ot_pid_t main;
    long per_pair;
    atomic_int ready;
};

struct a2a_self {
    struct a2a *g;
    uint32_t idx;
};

static void a2a_proc(void *arg)
{
    struct a2a_self *me = arg;
    struct a2a *g = me->g;
    /* Wait until every pid is known. */
    while (atomic_load_explicit(&g->ready, memory_order_acquire) == 0)
        ot_yield();
    struct tally *t = malloc(sizeof *t);
    PCHECK(t != NULL);
    if (!t) return;
    tally_init(t);
    uint8_t buf[sizeof(struct hdr) + EXTRA_MAX];
    const int64_t expect = g->per_pair * (A2A_N - 1);
    ot_pid_t self = ot_self();
    for (long s = 0; s < g->per_pair; s++) {
        for (uint32_t k = 0; k < A2A_N; k++) {
            if (k == me->idx) continue;
            size_t len = make_msg(buf, me->idx, (uint64_t)s, self);
            PCHECK(ot_send(g->pids[k], TAG_DATA, buf, len) == 0);
        }
        /* Take what has come so far, without waiting. */
        ot_msg_t *m;
        while (ot_receive(NULL, NULL, 0, &m) == 0) {
            tally_msg(t, m, A2A_N);
            ot_msg_free(m);
        }
    }
    while (t->received < expect) {
        ot_msg_t *m;
        int rc = ot_receive(NULL, NULL, 30000, &m);
        if (rc != 0) {
            PCHECK(rc == 0);
            break;
        }
        tally_msg(t, m, A2A_N);
        ot_msg_free(m);
    }
    int64_t res[6] = {t->received, t->bad_order, t->bad_data, t->bad_sender, 0, 0};
    for (unsigned i = 0; i < A2A_N; i++)
        if (i != me->idx && t->next[i] != g->per_pair) res[5]++;
    free(t);
    PCHECK(ot_send(g->main, TAG_DONE, res, sizeof res) == 0);
}

static void all_to_all(void **state)
{
    (void)state;
    start_rt(2);
    static struct a2a g;
    static struct a2a_self selves[A2A_N];
    memset(&g, 0, sizeof g);
    g.per_pair = scaled(5000);
    assert_int_equal(ot_attach(&g.main), 0);
    for (uint32_t i = 0; i < A2A_N; i++) {
        selves[i] = (struct a2a_self){&g, i};
        assert_int_equal(ot_spawn(a2a_proc, &selves[i], NULL, &g.pids[i]), 0);
    }
    atomic_store_explicit(&g.ready, 1, memory_order_release);
    for (int i = 0; i < A2A_N; i++) {
        ot_msg_t *m;
        assert_int_equal(ot_receive(NULL, NULL, 120000, &m), 0);
        check_result(m, g.per_pair * (A2A_N - 1));
        ot_msg_free(m);
    }
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    stop_rt();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(million_from_processes, teardown),
        cmocka_unit_test_teardown(threads_and_processes, teardown),
        cmocka_unit_test_teardown(all_to_all, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
