/* Signal order between pairs of processes under load: the intent of
 * signal_SUITE's xm_sig_order and of ERTS's rule that signals from one
 * process to another arrive in the order they were sent
 * (include/otter/signal.h, first paragraph).
 *
 * A process that sends N messages and then ends: its monitor's DOWN, its
 * trapping partner's EXIT, come after all N messages, for attached and
 * process receivers, for every reason, with the sender on either
 * scheduler; several senders at once into one receiver; messages
 * interleaved with ot_exit_pid signals (a trapping receiver sees both in
 * send order); a link made or removed just before the sender ends; a long
 * monitor/demonitor churn on one target. */
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

#include "otter/otter.h"
#include "tests/harness.h"
#include "tests/sigtest.h"

/* ---- streams ------------------------------------------------------------- */

struct item {
    uint32_t k;    /* which sender */
    uint32_t kind; /* 0 message, 1 exit signal */
    int64_t seq;
};

enum { MODE_MSGS = 0, MODE_MIXED = 1 };

struct stream_arg {
    ot_pid_t to;
    int n;
    uint32_t k;
    int mode;           /* MODE_MSGS: n messages then end with `reason` */
    ot_reason_t reason; /* MODE_MIXED: messages and exit signals, then T_DONE */
};

/* The exit signal sent as item `seq` in MODE_MIXED: normal or a user code,
 * the item in the payload. */
static ot_reason_t mixed_reason(uint32_t k, int64_t seq)
{
    struct item it = {k, 1, seq};
    ot_reason_t r;
    ot_reason_make(&r, seq % 2 ? OT_EXIT_NORMAL : OT_EXIT_USER + k, &it, sizeof it);
    return r;
}

static bool mixed_is_signal(int64_t seq)
{
    return seq % 7 == 3 || seq % 11 == 5;
}

static int send_stream(const struct stream_arg *a)
{
    for (int64_t i = 0; i < a->n; i++) {
        int rc;
        if (a->mode == MODE_MIXED && mixed_is_signal(i)) {
            ot_reason_t r = mixed_reason(a->k, i);
            rc = ot_exit_pid(a->to, &r);
        } else {
            struct item it = {a->k, 0, i};
            rc = ot_send(a->to, T_DATA, &it, sizeof it);
        }
        if (rc != 0) return rc;
    }
    return 0;
}

static void stream_sender(void *arg)
{
    struct stream_arg a = *(struct stream_arg *)arg;
    int rc = send_stream(&a);
    PCHECK(rc == 0);
    if (a.mode == MODE_MIXED) {
        PCHECK(ot_send(a.to, T_DONE, &a.k, sizeof a.k) == 0);
        return;
    }
    ot_exit_reason(&a.reason);
}

/* Receive (match NULL: everything, in order) the n messages of sender
 * `from` numbered 0..n-1, then its end: `end_tag` (OT_TAG_DOWN with
 * reference `ref`, or OT_TAG_EXIT) with reason *want; then nothing more.
 * No cmocka here: it runs in processes too. Returns the number of errors
 * (the first few are printed). */
static int check_stream(ot_pid_t from, int n, uint64_t end_tag, ot_ref_t ref,
                        const ot_reason_t *want)
{
    int bad = 0;
    for (int64_t i = 0; i <= n; i++) {
        ot_msg_t *m;
        int rc = ot_receive(NULL, NULL, 20000, &m);
        if (rc != 0) {
            fprintf(stderr, "check_stream: item %lld of %d: receive %d\n", (long long)i, n, rc);
            return bad + 1;
        }
        uint64_t tag = ot_msg_tag(m);
        if (i < n) {
            struct item it = {0, 0, -1};
            if (ot_msg_len(m) == sizeof it) memcpy(&it, ot_msg_data(m), sizeof it);
            if (tag != T_DATA || ot_msg_sender(m) != from || it.seq != i) {
                if (bad++ < 3)
                    fprintf(stderr,
                            "check_stream: item %lld: tag %#llx from %#llx seq %lld "
                            "(expected message %lld)\n",
                            (long long)i, (unsigned long long)tag,
                            (unsigned long long)ot_msg_sender(m), (long long)it.seq,
                            (long long)i);
                if (tag == OT_TAG_DOWN || tag == OT_TAG_EXIT) {
                    ot_msg_free(m);
                    return bad; /* the end overtook messages */
                }
            }
        } else {
            ot_reason_t r = msg_reason(m);
            if (tag != end_tag || ot_msg_sender(m) != from ||
                (end_tag == OT_TAG_DOWN && ot_msg_ref(m) != ref) || !reason_eq(&r, want)) {
                bad++;
                fprintf(stderr, "check_stream: end: tag %#llx from %#llx, expected %#llx\n",
                        (unsigned long long)tag, (unsigned long long)ot_msg_sender(m),
                        (unsigned long long)end_tag);
                print_reason("  got", &r);
                print_reason("  expected", want);
            }
        }
        ot_msg_free(m);
    }
    ot_msg_t *m;
    if (ot_receive(NULL, NULL, 20, &m) == 0) {
        fprintf(stderr, "check_stream: extra message tag %#llx\n",
                (unsigned long long)ot_msg_tag(m));
        ot_msg_free(m);
        bad++;
    }
    return bad;
}

/* Receiver process: spawns a stream sender (on the other scheduler) with
 * spawn_monitor or, trapping, with spawn_link; checks its stream. */
struct recv_arg {
    ot_pid_t main;
    int n;
    int linked;
    ot_reason_t reason;
};

static void stream_receiver(void *arg)
{
    struct recv_arg a = *(struct recv_arg *)arg;
    if (a.linked) PCHECK(ot_trap_exit(true) == 0);
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.scheduler = (int)(ot_self() & 1) ^ 1;
    struct stream_arg sa = {ot_self(), a.n, 0, MODE_MSGS, a.reason};
    ot_pid_t s;
    ot_ref_t ref = 0;
    int rc = a.linked ? ot_spawn_link(stream_sender, &sa, &o, &s)
                      : ot_spawn_monitor(stream_sender, &sa, &o, &s, &ref);
    PCHECK(rc == 0);
    int64_t bad = rc != 0;
    if (rc == 0)
        bad = check_stream(s, a.n, a.linked ? OT_TAG_EXIT : OT_TAG_DOWN, ref, &a.reason);
    PCHECK(ot_send(a.main, T_DONE, &bad, sizeof bad) == 0);
}

static int64_t wait_done(int64_t timeout_ms)
{
    uint64_t done = T_DONE;
    ot_msg_t *m;
    int rc = ot_receive(match_tag, &done, timeout_ms, &m);
    assert_int_equal(rc, 0);
    int64_t v;
    assert_int_equal(ot_msg_len(m), sizeof v);
    memcpy(&v, ot_msg_data(m), sizeof v);
    ot_msg_free(m);
    return v;
}

/* ---- N messages, then the end ----------------------------------------------- */

static void messages_before_end(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    const int n = (int)scaled(200000);
    ot_reason_t rs[3] = {reason(OT_EXIT_NORMAL), reason(OT_EXIT_SHUTDOWN),
                         reason_s(OT_EXIT_USER + 7, "after the messages")};
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    for (int ri = 0; ri < 3; ri++) {
        for (int linked = 0; linked < 2; linked++) {
            for (int sched = 0; sched < 2; sched++) {
                /* The attached thread as the receiver. */
                o.scheduler = sched;
                struct stream_arg sa = {me, n, 0, MODE_MSGS, rs[ri]};
                ot_pid_t s;
                ot_ref_t ref = 0;
                if (linked)
                    assert_int_equal(ot_spawn_link(stream_sender, &sa, &o, &s), 0);
                else
                    assert_int_equal(ot_spawn_monitor(stream_sender, &sa, &o, &s, &ref), 0);
                assert_int_equal(
                    check_stream(s, n, linked ? OT_TAG_EXIT : OT_TAG_DOWN, ref, &rs[ri]), 0);
            }
            /* A process as the receiver. */
            struct recv_arg ra = {me, n, linked, rs[ri]};
            assert_int_equal(ot_spawn(stream_receiver, &ra, NULL, NULL), 0);
            assert_int_equal(wait_done(60000), 0);
        }
    }
    end_attached();
}

/* ---- several senders into one receiver -------------------------------------- */

enum { NSEND = 8 };

struct par_arg {
    ot_pid_t main;
    int n;
};

static void parallel_receiver(void *arg)
{
    struct par_arg a = *(struct par_arg *)arg;
    PCHECK(ot_trap_exit(true) == 0);
    struct stream_arg sa[NSEND];
    ot_pid_t pids[NSEND];
    ot_ref_t refs[NSEND];
    int64_t next[NSEND];
    int ended[NSEND];
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    for (int k = 0; k < NSEND; k++) {
        struct item it = {(uint32_t)k, 0, 0};
        sa[k] = (struct stream_arg){ot_self(), a.n, (uint32_t)k, MODE_MSGS, reason(0)};
        ot_reason_make(&sa[k].reason, OT_EXIT_USER + (uint32_t)k, &it, sizeof it);
        o.scheduler = k & 1;
        refs[k] = 0;
        next[k] = 0;
        ended[k] = 0;
        int rc = k % 2 ? ot_spawn_link(stream_sender, &sa[k], &o, &pids[k])
                       : ot_spawn_monitor(stream_sender, &sa[k], &o, &pids[k], &refs[k]);
        PCHECK(rc == 0);
        if (rc != 0) return;
    }
    int64_t bad = 0;
    int left = NSEND;
    while (left > 0) {
        ot_msg_t *m;
        int rc = ot_receive(NULL, NULL, 20000, &m);
        if (rc != 0) {
            fprintf(stderr, "parallel_receiver: receive %d with %d senders left\n", rc, left);
            bad++;
            break;
        }
        uint64_t tag = ot_msg_tag(m);
        ot_pid_t from = ot_msg_sender(m);
        int k = -1;
        for (int j = 0; j < NSEND; j++)
            if (pids[j] == from) k = j;
        if (k < 0) {
            bad++;
        } else if (tag == T_DATA) {
            struct item it = {0, 0, -1};
            memcpy(&it, ot_msg_data(m), sizeof it);
            if (ended[k] || it.k != (uint32_t)k || it.seq != next[k]) {
                if (bad++ < 3)
                    fprintf(stderr, "parallel_receiver: sender %d: seq %lld, expected %lld%s\n",
                            k, (long long)it.seq, (long long)next[k],
                            ended[k] ? " after its end" : "");
            }
            next[k] = it.seq + 1;
        } else if (tag == OT_TAG_DOWN || tag == OT_TAG_EXIT) {
            ot_reason_t r = msg_reason(m);
            bool want_down = k % 2 == 0;
            if (ended[k] || next[k] != a.n || (tag == OT_TAG_DOWN) != want_down ||
                (want_down && ot_msg_ref(m) != refs[k]) || !reason_eq(&r, &sa[k].reason)) {
                bad++;
                fprintf(stderr,
                        "parallel_receiver: sender %d ended after %lld of %d (ended %d)\n", k,
                        (long long)next[k], a.n, ended[k]);
            }
            ended[k]++;
            left--;
        } else {
            bad++;
        }
        ot_msg_free(m);
    }
    ot_msg_t *m;
    if (ot_receive(NULL, NULL, 20, &m) == 0) {
        bad++;
        ot_msg_free(m);
    }
    PCHECK(ot_send(a.main, T_DONE, &bad, sizeof bad) == 0);
}

static void parallel_senders(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    struct par_arg pa = {me, (int)scaled(100000)};
    /* Two receivers at once, each with its eight senders. */
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    for (int r = 0; r < 2; r++) {
        o.scheduler = r;
        assert_int_equal(ot_spawn(parallel_receiver, &pa, &o, NULL), 0);
    }
    for (int r = 0; r < 2; r++)
        assert_int_equal(wait_done(120000), 0);
    end_attached();
}

/* ---- messages and exit signals interleaved ------------------------------------ */

/* Receive the MODE_MIXED streams of `nsenders` senders (pids[k]) of n items
 * each, then their T_DONE: per sender, messages and {EXIT} messages in send
 * order. Returns the number of errors. */
static int check_mixed(const ot_pid_t *pids, int nsenders, int n)
{
    int bad = 0;
    int64_t next[NSEND] = {0};
    int left = nsenders;
    while (left > 0) {
        ot_msg_t *m;
        int rc = ot_receive(NULL, NULL, 20000, &m);
        if (rc != 0) {
            fprintf(stderr, "check_mixed: receive %d\n", rc);
            return bad + 1;
        }
        uint64_t tag = ot_msg_tag(m);
        ot_pid_t from = ot_msg_sender(m);
        int k = -1;
        for (int j = 0; j < nsenders; j++)
            if (pids[j] == from) k = j;
        struct item it = {0, 0, -1};
        if (k < 0) {
            bad++;
        } else if (tag == T_DATA) {
            memcpy(&it, ot_msg_data(m), sizeof it);
            if (it.k != (uint32_t)k || it.seq != next[k] || mixed_is_signal(it.seq)) {
                if (bad++ < 3)
                    fprintf(stderr,
                            "check_mixed: sender %d: message %lld, expected item %lld\n", k,
                            (long long)it.seq, (long long)next[k]);
            }
            next[k] = it.seq + 1;
        } else if (tag == OT_TAG_EXIT) {
            ot_reason_t r = msg_reason(m);
            if (r.len == sizeof it) memcpy(&it, r.data, sizeof it);
            ot_reason_t want = mixed_reason((uint32_t)k, next[k]);
            if (it.seq != next[k] || !mixed_is_signal(it.seq) || !reason_eq(&r, &want)) {
                if (bad++ < 3)
                    fprintf(stderr,
                            "check_mixed: sender %d: EXIT %lld (code %u), expected item %lld\n",
                            k, (long long)it.seq, r.code, (long long)next[k]);
            }
            next[k] = it.seq + 1;
        } else if (tag == T_DONE) {
            if (next[k] != n) {
                bad++;
                fprintf(stderr, "check_mixed: sender %d done after %lld of %d\n", k,
                        (long long)next[k], n);
            }
            left--;
        } else {
            bad++;
        }
        ot_msg_free(m);
    }
    return bad;
}

struct mixed_arg {
    ot_pid_t main;
    int n, nsenders;
};

static void mixed_receiver(void *arg)
{
    struct mixed_arg a = *(struct mixed_arg *)arg;
    PCHECK(ot_trap_exit(true) == 0);
    struct stream_arg sa[NSEND];
    ot_pid_t pids[NSEND];
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    for (int k = 0; k < a.nsenders; k++) {
        sa[k] = (struct stream_arg){ot_self(), a.n, (uint32_t)k, MODE_MIXED, reason(0)};
        o.scheduler = k & 1;
        PCHECK(ot_spawn(stream_sender, &sa[k], &o, &pids[k]) == 0);
    }
    int64_t bad = check_mixed(pids, a.nsenders, a.n);
    PCHECK(ot_send(a.main, T_DONE, &bad, sizeof bad) == 0);
}

/* The attached thread sends the mixed stream to a trapping process. */
static void mixed_from_attached_receiver(void *arg)
{
    struct mixed_arg a = *(struct mixed_arg *)arg;
    PCHECK(ot_trap_exit(true) == 0);
    PCHECK(ot_send(a.main, T_READY, NULL, 0) == 0);
    ot_pid_t from = a.main;
    int64_t bad = check_mixed(&from, 1, a.n);
    PCHECK(ot_send(a.main, T_DONE, &bad, sizeof bad) == 0);
}

static void messages_and_exit_signals(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    const int n = (int)scaled(100000);

    /* Into the attached thread (it traps): one sender, then four. */
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    for (int ns = 1; ns <= 4; ns += 3) {
        struct stream_arg sa[4];
        ot_pid_t pids[4];
        for (int k = 0; k < ns; k++) {
            sa[k] = (struct stream_arg){me, n, (uint32_t)k, MODE_MIXED, reason(0)};
            o.scheduler = k & 1;
            assert_int_equal(ot_spawn(stream_sender, &sa[k], &o, &pids[k]), 0);
        }
        assert_int_equal(check_mixed(pids, ns, n), 0);
    }

    /* Into a trapping process: one sender, then eight. */
    for (int ns = 1; ns <= NSEND; ns += NSEND - 1) {
        struct mixed_arg ma = {me, n, ns};
        assert_int_equal(ot_spawn(mixed_receiver, &ma, NULL, NULL), 0);
        assert_int_equal(wait_done(120000), 0);
    }

    /* From the attached thread into a trapping process. */
    struct mixed_arg ma = {me, n, 1};
    ot_pid_t r;
    assert_int_equal(ot_spawn(mixed_from_attached_receiver, &ma, NULL, &r), 0);
    uint64_t ready = T_READY;
    ot_msg_t *m;
    assert_int_equal(ot_receive(match_tag, &ready, 5000, &m), 0);
    ot_msg_free(m);
    struct stream_arg sa = {r, n, 0, MODE_MIXED, reason(0)};
    assert_int_equal(send_stream(&sa), 0);
    assert_int_equal(ot_send(r, T_DONE, &sa.k, sizeof sa.k), 0);
    assert_int_equal(wait_done(60000), 0);
    end_attached();
}

/* ---- link or unlink just before the end --------------------------------------- */

struct lx_arg {
    ot_pid_t to;
    int unlink; /* 0: link, exit; 1: (linked by `to`) unlink, exit; 2: msg, link, msg, exit */
};

static const ot_reason_t g_shutdown = {OT_EXIT_SHUTDOWN, 0, {0}};

static void link_then_exit(void *arg)
{
    struct lx_arg a = *(struct lx_arg *)arg;
    int64_t one = 1, two = 2;
    switch (a.unlink) {
    case 0: PCHECK(ot_link(a.to) == 0); break;
    case 1: PCHECK(ot_unlink(a.to) == 0); break;
    default:
        PCHECK(ot_send(a.to, T_DATA, &one, sizeof one) == 0);
        PCHECK(ot_link(a.to) == 0);
        PCHECK(ot_send(a.to, T_DATA, &two, sizeof two) == 0);
        break;
    }
    ot_exit_reason(&g_shutdown);
}

/* Waits for T_GO, then behaves as link_then_exit. */
static void link_then_exit_on_go(void *arg)
{
    uint64_t go = T_GO;
    ot_msg_t *m;
    PCHECK(ot_receive(match_tag, &go, 10000, &m) == 0);
    ot_msg_free(m);
    link_then_exit(arg);
}

static void link_just_before_end(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    const int n = (int)scaled(3000);
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    struct lx_arg la = {me, 0};
    /* link, exit: the link is in place when the exit signal comes. */
    for (int i = 0; i < n; i++) {
        o.scheduler = i & 1;
        ot_pid_t s;
        assert_int_equal(ot_spawn(link_then_exit, &la, &o, &s), 0);
        expect_exit(s, &g_shutdown, 5000);
    }
    expect_empty(20);
    /* message, link, message, exit: in that order. */
    struct lx_arg lm = {me, 2};
    for (int i = 0; i < n; i++) {
        o.scheduler = i & 1;
        ot_pid_t s;
        assert_int_equal(ot_spawn(link_then_exit, &lm, &o, &s), 0);
        for (int64_t k = 1; k <= 2; k++) {
            ot_msg_t *m;
            assert_int_equal(ot_receive(NULL, NULL, 5000, &m), 0);
            assert_int_equal(ot_msg_tag(m), T_DATA);
            assert_int_equal(ot_msg_sender(m), s);
            int64_t v;
            memcpy(&v, ot_msg_data(m), sizeof v);
            assert_int_equal(v, k);
            ot_msg_free(m);
        }
        ot_msg_t *m;
        assert_int_equal(ot_receive(NULL, NULL, 5000, &m), 0);
        assert_int_equal(ot_msg_tag(m), OT_TAG_EXIT);
        assert_int_equal(ot_msg_sender(m), s);
        assert_int_equal(msg_reason(m).code, OT_EXIT_SHUTDOWN);
        ot_msg_free(m);
    }
    /* Linked by us, it unlinks and ends: no EXIT reaches us. */
    struct lx_arg lu = {me, 1};
    /* The senders above are all gone (their EXITs came before their pids
     * were freed: wait), leaving this thread. */
    wait_count(1, 10000);
    size_t base = 1;
    for (int i = 0; i < n; i++) {
        o.scheduler = i & 1;
        ot_pid_t s;
        assert_int_equal(ot_spawn(link_then_exit_on_go, &lu, &o, &s), 0);
        assert_int_equal(ot_link(s), 0);
        assert_int_equal(ot_send(s, T_GO, NULL, 0), 0);
    }
    wait_count(base, 20000);
    expect_empty(50);
    end_attached();
}

/* ---- monitor/demonitor churn ------------------------------------------------- */

static void monitor_churn(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    ot_pid_t t = spawn_puppet(me, 0);
    const int n = (int)scaled(20000);
    for (int i = 0; i < n; i++) {
        ot_ref_t ref;
        assert_int_equal(ot_monitor(t, &ref), 0);
        assert_int_equal(ot_demonitor(ref, i % 2 ? OT_DEMONITOR_FLUSH : 0), 1);
    }
    /* Also from a process, interleaved with its own messages to t. */
    ot_pid_t o = spawn_puppet(me, 0);
    for (int i = 0; i < n / 10; i++) {
        struct cmd c;
        memset(&c, 0, sizeof c);
        c.pid = t;
        struct reply rep = call(o, C_MONITOR, &c);
        assert_int_equal(rep.rc, 0);
        c.ref = rep.val;
        c.flags = i % 2 ? OT_DEMONITOR_FLUSH : 0;
        assert_int_equal(call(o, C_DEMONITOR, &c).rc, 1);
    }
    ot_ref_t last;
    assert_int_equal(ot_monitor(t, &last), 0);
    ot_reason_t sh = reason(OT_EXIT_SHUTDOWN);
    tell_exit(t, &sh);
    expect_down(last, t, &sh, 5000);
    expect_no_fwd(o, 50);
    expect_empty(0);
    ot_ref_t oref;
    assert_int_equal(ot_monitor(o, &oref), 0);
    assert_int_equal(ot_send(o, T_STOP, NULL, 0), 0);
    ot_reason_t normal = reason(OT_EXIT_NORMAL);
    expect_down(oref, o, &normal, 5000);
    end_attached();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(messages_before_end, teardown),
        cmocka_unit_test_teardown(parallel_senders, teardown),
        cmocka_unit_test_teardown(messages_and_exit_signals, teardown),
        cmocka_unit_test_teardown(link_just_before_end, teardown),
        cmocka_unit_test_teardown(monitor_churn, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
