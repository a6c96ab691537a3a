/* Receiving: selective receive keeps the order of what it skips, timeouts
 * (poll, finite, infinite), the reference trick (a reply to a fresh
 * reference is found without scanning the older mailbox), ot_mailbox_len,
 * and the ownership rules of zero-copy ot_send_buf. */
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
#include "sched/internal.h" /* ot__self()->scanned: messages examined */
#include "tests/harness.h"

/* ---- helpers ------------------------------------------------------------- */

enum {
    TAG_A = 1,
    TAG_B = 2,
    TAG_C = 3,
    TAG_FILL = 10,
    TAG_GO = 11,
    TAG_REQ = 12,
    TAG_REPLY = 13,
    TAG_STOP = 14,
    TAG_DONE = 15,
    TAG_LATE = 16,
    TAG_BUF = 17,
};

static int64_t payload_i64(const ot_msg_t *m)
{
    int64_t v;
    assert_int_equal(ot_msg_len(m), sizeof v);
    memcpy(&v, ot_msg_data(m), sizeof v);
    return v;
}

/* Receive on the attached main thread, expecting `tag`. */
static ot_msg_t *expect_msg(uint64_t tag, int64_t timeout_ms)
{
    ot_msg_t *m = NULL;
    int rc = ot_receive(match_tag, &tag, timeout_ms, &m);
    assert_int_equal(rc, 0);
    assert_non_null(m);
    assert_int_equal(ot_msg_tag(m), tag);
    return m;
}

/* Wait until `pid` names no live process (it was told to end or returns). */
static void wait_dead(ot_pid_t pid)
{
    uint64_t end = now_ns() + 10ull * 1000000000u;
    while (ot_send(pid, 999, NULL, 0) != -ESRCH) {
        assert_true(now_ns() < end);
        ot_sleep(1);
    }
}

/* Echo: replies to TAG_REQ {ref} with ot_send_ref(ref); ends on TAG_STOP. */
static void echo_proc(void *arg)
{
    (void)arg;
    for (;;) {
        ot_msg_t *m;
        PCHECK(ot_receive(NULL, NULL, OT_INFINITY, &m) == 0);
        uint64_t tag = ot_msg_tag(m);
        if (tag == TAG_REQ) {
            ot_ref_t ref;
            memcpy(&ref, ot_msg_data(m), sizeof ref);
            PCHECK(ot_send_ref(ot_msg_sender(m), TAG_REPLY, ref, &ref, sizeof ref) == 0);
        }
        ot_msg_free(m);
        if (tag == TAG_STOP || tag == OT_TAG_SHUTDOWN) return;
    }
}

/* ---- selective receive --------------------------------------------------- */

static void selective_order_attached(void **state)
{
    (void)state;
    start_rt(2);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    assert_int_equal(ot_mailbox_len(), 0);

    /* A0 B1 A2 B3 ... A18 B19 */
    for (int64_t i = 0; i < 20; i++)
        assert_int_equal(ot_send(me, i % 2 ? TAG_B : TAG_A, &i, sizeof i), 0);
    assert_int_equal(ot_mailbox_len(), 20);

    /* The B's, in order, skipping the A's. */
    uint64_t tb = TAG_B;
    for (int64_t i = 1; i < 20; i += 2) {
        ot_msg_t *m;
        assert_int_equal(ot_receive(match_tag, &tb, 0, &m), 0);
        assert_int_equal(ot_msg_tag(m), TAG_B);
        assert_int_equal(payload_i64(m), i);
        assert_int_equal(ot_msg_sender(m), me);
        ot_msg_free(m);
        assert_int_equal(ot_mailbox_len(), 20 - (i + 1) / 2);
    }
    ot_msg_t *m = (ot_msg_t *)0x1;
    assert_int_equal(ot_receive(match_tag, &tb, 0, &m), -ETIMEDOUT);

    /* A tag nobody sent: waits its timeout although messages are there. */
    uint64_t tc = TAG_C;
    uint64_t t0 = now_ns();
    assert_int_equal(ot_receive(match_tag, &tc, 30, &m), -ETIMEDOUT);
    assert_true(now_ns() - t0 >= 30000000u);
    assert_int_equal(ot_mailbox_len(), 10);

    /* A new B arrives after the A's were looked at: found, A's untouched. */
    int64_t late = 100;
    assert_int_equal(ot_send(me, TAG_B, &late, sizeof late), 0);
    m = expect_msg(TAG_B, 0);
    assert_int_equal(payload_i64(m), 100);
    ot_msg_free(m);

    /* The A's are all still there, in arrival order (match NULL = oldest). */
    for (int64_t i = 0; i < 20; i += 2) {
        assert_int_equal(ot_receive(NULL, NULL, 0, &m), 0);
        assert_int_equal(ot_msg_tag(m), TAG_A);
        assert_int_equal(payload_i64(m), i);
        ot_msg_free(m);
    }
    assert_int_equal(ot_receive(NULL, NULL, 0, &m), -ETIMEDOUT);
    assert_int_equal(ot_mailbox_len(), 0);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* A process waits for END while DATA messages (from another process) pile
 * up before it; afterwards every DATA is there, in order. Several rounds,
 * so that some DATA sit in the save queue and some still in the mailbox. */
struct sel_args {
    ot_pid_t main;
    int rounds, per_round;
};

static void sel_sender(void *arg)
{
    ot_pid_t to = *(ot_pid_t *)arg;
    for (int64_t i = 0; i < 3000; i++)
        PCHECK(ot_send(to, TAG_A, &i, sizeof i) == 0);
}

static void sel_receiver(void *arg)
{
    struct sel_args *a = arg;
    ot_pid_t me = ot_self();
    int64_t expect_a = 0, got_c = 0;
    for (int r = 0; r < a->rounds; r++) {
        /* Another process sends 3000 A's; we send ourselves a C after our
         * own B's, and wait for the C first. */
        ot_pid_t s;
        PCHECK(ot_spawn(sel_sender, &me, NULL, &s) == 0);
        for (int64_t i = 0; i < a->per_round; i++)
            PCHECK(ot_send(me, TAG_B, &i, sizeof i) == 0);
        int64_t c = r;
        PCHECK(ot_send(me, TAG_C, &c, sizeof c) == 0);
        uint64_t tc = TAG_C;
        ot_msg_t *m;
        PCHECK(ot_receive(match_tag, &tc, 10000, &m) == 0);
        int64_t v;
        memcpy(&v, ot_msg_data(m), sizeof v);
        PCHECK(v == r);
        ot_msg_free(m);
        got_c++;
        /* Our B's: all there, in order, whatever A's are interleaved. */
        uint64_t tb = TAG_B;
        for (int64_t i = 0; i < a->per_round; i++) {
            PCHECK(ot_receive(match_tag, &tb, 0, &m) == 0);
            memcpy(&v, ot_msg_data(m), sizeof v);
            PCHECK(v == i);
            ot_msg_free(m);
        }
        /* The sender's A's, in its order (some may still be on the way). */
        uint64_t ta = TAG_A;
        for (int64_t i = 0; i < 3000; i++) {
            PCHECK(ot_receive(match_tag, &ta, 10000, &m) == 0);
            memcpy(&v, ot_msg_data(m), sizeof v);
            PCHECK(v == i);
            ot_msg_free(m);
            expect_a++;
        }
        PCHECK(ot_mailbox_len() == 0);
    }
    int64_t total = expect_a + got_c;
    PCHECK(ot_send(a->main, TAG_DONE, &total, sizeof total) == 0);
}

static void selective_order_process(void **state)
{
    (void)state;
    start_rt(2);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    struct sel_args a = {me, 20, 500};
    assert_int_equal(ot_spawn(sel_receiver, &a, NULL, NULL), 0);
    ot_msg_t *m = expect_msg(TAG_DONE, 60000);
    assert_int_equal(payload_i64(m), 20 * 3000 + 20);
    ot_msg_free(m);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    stop_rt();
}

/* ---- timeouts ------------------------------------------------------------ */

struct tmo_args {
    ot_pid_t main;
    int64_t timeout_ms;
};

/* Reports {rc, elapsed ns, tag, time of return} of one receive with the
 * given timeout. */
static void tmo_proc(void *arg)
{
    struct tmo_args *a = arg;
    ot_msg_t *m = NULL;
    uint64_t t0 = now_ns();
    int64_t rc = ot_receive(NULL, NULL, a->timeout_ms, &m);
    uint64_t t1 = now_ns();
    int64_t res[4] = {rc, (int64_t)(t1 - t0), rc == 0 ? (int64_t)ot_msg_tag(m) : -1,
                      (int64_t)t1};
    if (rc == 0) ot_msg_free(m);
    PCHECK(ot_send(a->main, TAG_DONE, res, sizeof res) == 0);
}

static void get_res(int64_t res[4])
{
    ot_msg_t *m = expect_msg(TAG_DONE, 30000);
    assert_int_equal(ot_msg_len(m), 4 * sizeof(int64_t));
    memcpy(res, ot_msg_data(m), 4 * sizeof(int64_t));
    ot_msg_free(m);
}

struct delayed_send {
    ot_pid_t to;
    unsigned delay_ms;
};

static void *delayed_sender(void *arg)
{
    struct delayed_send *d = arg;
    ot_sleep(d->delay_ms); /* not a process: the thread sleeps */
    if (ot_send(d->to, TAG_LATE, NULL, 0) != 0) atomic_fetch_add(&g_fail, 1);
    return NULL;
}

static void timeouts(void **state)
{
    (void)state;
    start_rt(2);
    const uint64_t slack = (g_san ? 2000u : 300u) * 1000000u;
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    ot_msg_t *m = NULL;

    /* Poll: an empty mailbox answers at once. */
    uint64_t t0 = now_ns();
    assert_int_equal(ot_receive(NULL, NULL, 0, &m), -ETIMEDOUT);
    assert_int_equal(ot_receive_ref(12345, 0, &m), -ETIMEDOUT);
    assert_true(now_ns() - t0 < slack);
    /* Poll finds what is there. */
    assert_int_equal(ot_send(me, TAG_A, NULL, 0), 0);
    assert_int_equal(ot_receive(NULL, NULL, 0, &m), 0);
    assert_int_equal(ot_msg_tag(m), TAG_A);
    ot_msg_free(m);

    /* Finite, attached thread: about the timeout, never less. */
    t0 = now_ns();
    assert_int_equal(ot_receive(NULL, NULL, 100, &m), -ETIMEDOUT);
    uint64_t el = now_ns() - t0;
    assert_true(el >= 100000000u);
    assert_true(el < 100000000u + slack);

    /* Finite, process. */
    struct tmo_args ta = {me, 50};
    int64_t res[4];
    assert_int_equal(ot_spawn(tmo_proc, &ta, NULL, NULL), 0);
    get_res(res);
    assert_int_equal(res[0], -ETIMEDOUT);
    assert_true(res[1] >= 50000000);
    assert_true((uint64_t)res[1] < 50000000u + slack);

    /* Finite, but the message comes first: returns with it, early. */
    struct tmo_args tb = {me, 5000};
    ot_pid_t p;
    assert_int_equal(ot_spawn(tmo_proc, &tb, NULL, &p), 0);
    ot_sleep(50);
    uint64_t sent = now_ns();
    assert_int_equal(ot_send(p, TAG_LATE, NULL, 0), 0);
    get_res(res);
    assert_int_equal(res[0], 0);
    assert_int_equal(res[2], TAG_LATE);
    assert_true((uint64_t)res[3] >= sent); /* returned with the message */
    assert_true(res[1] < 4000000000);      /* well before its timeout */

    /* OT_INFINITY, process: still waiting after 300 ms, then the message. */
    struct tmo_args tc = {me, OT_INFINITY};
    assert_int_equal(ot_spawn(tmo_proc, &tc, NULL, &p), 0);
    assert_int_equal(ot_receive(NULL, NULL, 300, &m), -ETIMEDOUT); /* no result yet */
    sent = now_ns();
    assert_int_equal(ot_send(p, TAG_LATE, NULL, 0), 0);
    get_res(res);
    assert_int_equal(res[0], 0);
    assert_int_equal(res[2], TAG_LATE);
    assert_true((uint64_t)res[3] >= sent);

    /* OT_INFINITY, attached thread: a plain thread sends after 150 ms. */
    struct delayed_send d = {me, 150};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, delayed_sender, &d), 0);
    t0 = now_ns();
    assert_int_equal(ot_receive(NULL, NULL, OT_INFINITY, &m), 0);
    el = now_ns() - t0;
    assert_int_equal(ot_msg_tag(m), TAG_LATE);
    assert_int_equal(ot_msg_sender(m), OT_PID_NONE);
    ot_msg_free(m);
    assert_true(el >= 100000000u);
    pthread_join(th, NULL);

    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    stop_rt();
}

/* ---- the reference trick ------------------------------------------------- */

struct ref_args {
    ot_pid_t main, echo;
    int64_t n;
    int self_fill; /* 1: fill own mailbox; 0: main fills it, then sends GO */
};

/* Receive the n oldest messages: TAG_FILL 0..n-1, in order. */
static void drain_fill(int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        ot_msg_t *m;
        int rc = ot_receive(NULL, NULL, 0, &m);
        PCHECK(rc == 0);
        if (rc != 0) return;
        int64_t v;
        memcpy(&v, ot_msg_data(m), sizeof v);
        if (ot_msg_tag(m) != TAG_FILL || v != i) {
            PCHECK(ot_msg_tag(m) == TAG_FILL && v == i);
            ot_msg_free(m);
            return;
        }
        ot_msg_free(m);
    }
}

static void ref_proc(void *arg)
{
    struct ref_args *a = arg;
    ot_pid_t me = ot_self();
    ot__proc_t *self = ot__self();
    ot_msg_t *m;
    if (a->self_fill) {
        for (int64_t i = 0; i < a->n; i++)
            PCHECK(ot_send(me, TAG_FILL, &i, sizeof i) == 0);
    } else {
        uint64_t tg = TAG_GO; /* this one scans all n: it is not the trick */
        PCHECK(ot_receive(match_tag, &tg, 30000, &m) == 0);
        ot_msg_free(m);
    }
    PCHECK(ot_mailbox_len() == a->n);

    /* 1. A fresh ref, a reply through another process: O(1). */
    uint64_t before = self->scanned;
    ot_ref_t ref = ot_make_ref();
    PCHECK(ref != 0);
    PCHECK(ot_send(a->echo, TAG_REQ, &ref, sizeof ref) == 0);
    int rc = ot_receive_ref(ref, 10000, &m);
    uint64_t looked = self->scanned - before;
    PCHECK(rc == 0);
    if (rc == 0) {
        PCHECK(ot_msg_ref(m) == ref);
        PCHECK(ot_msg_tag(m) == TAG_REPLY);
        PCHECK(ot_msg_sender(m) == a->echo);
        ot_msg_free(m);
    }
    PCHECK(looked < 10);
    if (looked >= 10)
        fprintf(stderr, "ref receive examined %llu messages\n", (unsigned long long)looked);
    PCHECK(ot_mailbox_len() == a->n);

    /* 2. Unrelated messages arriving after the mark, before the reply: only
     * those are looked at. */
    before = self->scanned;
    ref = ot_make_ref();
    for (int64_t i = 0; i < 5; i++)
        PCHECK(ot_send(me, TAG_LATE, &i, sizeof i) == 0);
    PCHECK(ot_send(a->echo, TAG_REQ, &ref, sizeof ref) == 0);
    rc = ot_receive_ref(ref, 10000, &m);
    looked = self->scanned - before;
    PCHECK(rc == 0 && ot_msg_ref(m) == ref);
    if (rc == 0) ot_msg_free(m);
    PCHECK(looked < 10 + 5);

    /* 3. An older ref still works (it scans from the start). */
    ot_ref_t old = ot_make_ref();
    ot_ref_t newest = ot_make_ref();
    PCHECK(old != newest && old != 0 && newest != 0);
    PCHECK(ot_send(a->echo, TAG_REQ, &old, sizeof old) == 0);
    before = self->scanned;
    rc = ot_receive_ref(old, 10000, &m);
    PCHECK(rc == 0 && ot_msg_ref(m) == old);
    if (rc == 0) ot_msg_free(m);
    /* ... and the counter is not vacuous: that scan went over everything. */
    PCHECK(self->scanned - before >= (uint64_t)a->n);

    /* Arrival order: the n FILL messages, then the 5 LATE ones. */
    drain_fill(a->n);
    uint64_t tl = TAG_LATE;
    for (int64_t i = 0; i < 5; i++) {
        PCHECK(ot_receive(match_tag, &tl, 0, &m) == 0);
        ot_msg_free(m);
    }
    PCHECK(ot_mailbox_len() == 0);
    PCHECK(ot_send(a->main, TAG_DONE, NULL, 0) == 0);
}

static void run_ref_trick(int self_fill)
{
    start_rt(2);
    const int64_t n = 100000;
    ot_pid_t me, echo, r;
    assert_int_equal(ot_attach(&me), 0);
    assert_int_equal(ot_spawn(echo_proc, NULL, NULL, &echo), 0);
    struct ref_args a = {me, echo, n, self_fill};
    assert_int_equal(ot_spawn(ref_proc, &a, NULL, &r), 0);
    if (!self_fill) {
        for (int64_t i = 0; i < n; i++)
            assert_int_equal(ot_send(r, TAG_FILL, &i, sizeof i), 0);
        assert_int_equal(ot_send(r, TAG_GO, NULL, 0), 0);
    }
    ot_msg_free(expect_msg(TAG_DONE, 60000));
    assert_int_equal(ot_send(echo, TAG_STOP, NULL, 0), 0);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    stop_rt();
}

static void ref_trick_self_filled(void **state)
{
    (void)state;
    run_ref_trick(1);
}

static void ref_trick_filled_by_other(void **state)
{
    (void)state;
    run_ref_trick(0);
}

/* The same on an attached thread, whose PCB is ot__self() too. */
static void ref_trick_attached(void **state)
{
    (void)state;
    start_rt(2);
    const int64_t n = 100000;
    ot_pid_t me, echo;
    assert_int_equal(ot_attach(&me), 0);
    assert_int_equal(ot_spawn(echo_proc, NULL, NULL, &echo), 0);
    for (int64_t i = 0; i < n; i++)
        assert_int_equal(ot_send(me, TAG_FILL, &i, sizeof i), 0);
    assert_int_equal(ot_mailbox_len(), n);
    ot__proc_t *self = ot__self();
    assert_non_null(self);
    uint64_t before = self->scanned;
    ot_ref_t ref = ot_make_ref();
    assert_int_equal(ot_send(echo, TAG_REQ, &ref, sizeof ref), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive_ref(ref, 10000, &m), 0);
    assert_int_equal(ot_msg_ref(m), ref);
    ot_msg_free(m);
    assert_true(self->scanned - before < 10);
    assert_int_equal(ot_mailbox_len(), n);
    for (int64_t i = 0; i < n; i++) {
        assert_int_equal(ot_receive(NULL, NULL, 0, &m), 0);
        assert_int_equal(ot_msg_tag(m), TAG_FILL);
        if (payload_i64(m) != i) assert_int_equal(payload_i64(m), i);
        ot_msg_free(m);
    }
    assert_int_equal(ot_mailbox_len(), 0);
    assert_int_equal(ot_send(echo, TAG_STOP, NULL, 0), 0);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    stop_rt();
}

/* ---- zero-copy send ------------------------------------------------------ */

static atomic_int g_freed;
static void *g_expect_buf;

static void count_free(void *p)
{
    if (p != g_expect_buf) atomic_fetch_add(&g_fail, 1);
    atomic_fetch_add(&g_freed, 1);
    free(p);
}

static void *new_buf(size_t n)
{
    char *b = malloc(n);
    assert_non_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (char)(i * 7);
    g_expect_buf = b;
    atomic_store(&g_freed, 0);
    return b;
}

static void wait_freed(int n)
{
    uint64_t end = now_ns() + 10ull * 1000000000u;
    while (atomic_load(&g_freed) < n && now_ns() < end)
        ot_sleep(1);
    assert_int_equal(atomic_load(&g_freed), n);
}

static void exit_at_once(void *arg)
{
    (void)arg;
}

/* Waits for TAG_STOP only; anything else stays unread. */
static void wait_stop_proc(void *arg)
{
    (void)arg;
    uint64_t t = TAG_STOP;
    ot_msg_t *m;
    if (ot_receive(match_tag, &t, OT_INFINITY, &m) == 0) ot_msg_free(m);
}

/* Receives one message, checks it is the zero-copy buffer, frees it. */
static void buf_reader(void *arg)
{
    ot_pid_t main = *(ot_pid_t *)arg;
    ot_msg_t *m;
    PCHECK(ot_receive(NULL, NULL, 10000, &m) == 0);
    PCHECK(ot_msg_data(m) == g_expect_buf);
    PCHECK(ot_msg_len(m) == 4096);
    PCHECK(atomic_load(&g_freed) == 0);
    ot_msg_free(m);
    PCHECK(atomic_load(&g_freed) == 1);
    PCHECK(ot_send(main, TAG_DONE, NULL, 0) == 0);
}

static void send_buf_ownership(void **state)
{
    (void)state;
    start_rt(2);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);

    /* Delivered: zero copy, freed exactly once, when the message is. */
    char *b = new_buf(1000);
    assert_int_equal(ot_send_buf(me, TAG_BUF, 77, b, 1000, count_free), 0);
    assert_int_equal(atomic_load(&g_freed), 0);
    ot_msg_t *m = expect_msg(TAG_BUF, 1000);
    assert_ptr_equal(ot_msg_data(m), b);
    assert_int_equal(ot_msg_len(m), 1000);
    assert_int_equal(ot_msg_ref(m), 77);
    assert_int_equal(((const char *)ot_msg_data(m))[999], (char)(999 * 7));
    assert_int_equal(atomic_load(&g_freed), 0);
    ot_msg_free(m);
    assert_int_equal(atomic_load(&g_freed), 1);

    /* Received and freed by a process on a scheduler thread. */
    ot_pid_t r;
    assert_int_equal(ot_spawn(buf_reader, &me, NULL, &r), 0);
    b = new_buf(4096);
    assert_int_equal(ot_send_buf(r, TAG_BUF, 0, b, 4096, count_free), 0);
    ot_msg_free(expect_msg(TAG_DONE, 10000));
    assert_int_equal(atomic_load(&g_freed), 1);

    /* A dead pid: -ESRCH, and free_fn ran at once, once. */
    ot_pid_t dead;
    assert_int_equal(ot_spawn(exit_at_once, NULL, NULL, &dead), 0);
    wait_dead(dead);
    b = new_buf(64);
    assert_int_equal(ot_send_buf(dead, TAG_BUF, 0, b, 64, count_free), -ESRCH);
    assert_int_equal(atomic_load(&g_freed), 1);

    /* Other errors free it too: a forged pid, an oversized message. */
    b = new_buf(64);
    assert_int_equal(ot_send_buf(OT_PID_NONE, TAG_BUF, 0, b, 64, count_free), -EINVAL);
    assert_int_equal(atomic_load(&g_freed), 1);
    b = new_buf(64);
    assert_int_equal(ot_send_buf(me, TAG_BUF, 0, b, OT_MSG_MAX + 1, count_free), -EMSGSIZE);
    assert_int_equal(atomic_load(&g_freed), 1);
    assert_int_equal(ot_mailbox_len(), 0);

    /* The receiver dies without reading it: freed with its mailbox. */
    ot_pid_t w;
    assert_int_equal(ot_spawn(wait_stop_proc, NULL, NULL, &w), 0);
    b = new_buf(64);
    assert_int_equal(ot_send_buf(w, TAG_BUF, 0, b, 64, count_free), 0);
    ot_sleep(20);
    assert_int_equal(atomic_load(&g_freed), 0);
    assert_int_equal(ot_send(w, TAG_STOP, NULL, 0), 0);
    wait_freed(1);

    /* free_fn NULL: static data, nothing is freed. */
    static const char hello[] = "hello";
    assert_int_equal(ot_send_buf(me, TAG_BUF, 0, (void *)hello, sizeof hello, NULL), 0);
    m = expect_msg(TAG_BUF, 1000);
    assert_ptr_equal(ot_msg_data(m), hello);
    ot_msg_free(m);

    /* Still unread when the runtime stops: freed by the stop, once. */
    assert_int_equal(ot_spawn(wait_stop_proc, NULL, NULL, &w), 0);
    b = new_buf(64);
    assert_int_equal(ot_send_buf(w, TAG_BUF, 0, b, 64, count_free), 0);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
    assert_int_equal(atomic_load(&g_freed), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(selective_order_attached, teardown),
        cmocka_unit_test_teardown(selective_order_process, teardown),
        cmocka_unit_test_teardown(timeouts, teardown),
        cmocka_unit_test_teardown(ref_trick_self_filled, teardown),
        cmocka_unit_test_teardown(ref_trick_filled_by_other, teardown),
        cmocka_unit_test_teardown(ref_trick_attached, teardown),
        cmocka_unit_test_teardown(send_buf_ownership, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
