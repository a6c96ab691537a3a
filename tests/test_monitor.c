/* Monitors: the intent of ERTS's monitor_SUITE (case_1, case_1a, case_2,
 * case_3, mon_e_*, demon_*, mixer, otp_5827) against
 * include/otter/signal.h.
 *
 * Exactly one DOWN per monitor (tag OT_TAG_DOWN, reference = the monitor's,
 * sender = the target, payload = its reason), whatever the reason; noproc at
 * once for a target that is not alive; monitors stack; ot_demonitor's
 * result and what it guarantees, with and without OT_DEMONITOR_FLUSH;
 * ot_spawn_monitor without a window; ot_receive_ref finding a DOWN behind a
 * long mailbox without scanning it; monitors racing with deaths; many
 * observers; observers that die first. */
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

/* ---- helpers ------------------------------------------------------------- */

static void return_at_once(void *arg)
{
    (void)arg;
}

static void die_with(void *arg)
{
    ot_exit_reason((const ot_reason_t *)arg);
}

static const ot_reason_t g_shutdown = {OT_EXIT_SHUTDOWN, 0, {0}};

/* A pid that was alive and is not any more. */
/* A pid that was alive and is not any more; `gone`: also unpublished. */
static ot_pid_t dead_pid(ot_pid_t me, bool gone)
{
    ot_pid_t d = spawn_puppet(me, 0);
    ot_ref_t r;
    assert_int_equal(ot_monitor(d, &r), 0);
    stop_puppet(d, r);
    if (gone) wait_gone(d);
    return d;
}

/* The DOWN puppet `o` forwarded for its monitor `ref`. */
static void expect_fwd_down(ot_pid_t o, ot_ref_t ref, ot_pid_t from, const ot_reason_t *want)
{
    struct fwd f = expect_fwd(o, 5000);
    assert_int_equal(f.tag, OT_TAG_DOWN);
    assert_int_equal(f.ref, ref);
    assert_int_equal(f.sender, from);
    assert_reason(&f.reason, want);
}

/* ---- exactly one DOWN ---------------------------------------------------- */

static void down_exactly_once(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    ot_reason_t rs[5] = {reason(OT_EXIT_NORMAL), reason(OT_EXIT_KILL), reason(OT_EXIT_KILLED),
                         reason(OT_EXIT_SHUTDOWN),
                         reason_s(OT_EXIT_USER + 3, "monitor payload 0123456789")};
    ot_reason_t killed = reason(OT_EXIT_KILLED);
    ot_pid_t o = spawn_puppet(me, 0); /* an observer that does not trap */
    for (int i = 0; i < 5; i++) {
        for (int trap = 0; trap < 2; trap++) {
            ot_pid_t p = spawn_puppet(me, trap);
            ot_ref_t ref;
            assert_int_equal(ot_monitor(p, &ref), 0);
            assert_int_not_equal(ref, 0);
            struct cmd c;
            memset(&c, 0, sizeof c);
            c.pid = p;
            struct reply rep = call(o, C_MONITOR, &c);
            assert_int_equal(rep.rc, 0);
            ot_ref_t oref = rep.val;
            assert_int_not_equal(oref, 0);
            assert_int_not_equal(oref, ref);
            const ot_reason_t *want = &rs[i];
            if (rs[i].code == OT_EXIT_KILL) {
                assert_int_equal(ot_exit_pid(p, &rs[i]), 0);
                want = &killed;
            } else {
                tell_exit(p, &rs[i]);
            }
            expect_down(ref, p, want, 5000);
            expect_fwd_down(o, oref, p, want);
            /* One only; the monitor is gone; the observers live on. */
            expect_no_ref(ref, 30);
            expect_no_fwd(o, 0);
            assert_int_equal(ot_demonitor(ref, 0), 0);
            struct cmd d;
            memset(&d, 0, sizeof d);
            d.ref = oref;
            assert_int_equal(call(o, C_DEMONITOR, &d).rc, 0);
            assert_true(puppet_alive(o));
            expect_no_fwd(p, 0);
        }
    }
    ot_ref_t oref;
    assert_int_equal(ot_monitor(o, &oref), 0);
    stop_puppet(o, oref);
    end_attached();
}

/* ---- noproc --------------------------------------------------------------- */

static void down_noproc(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    ot_reason_t noproc = reason(OT_EXIT_NOPROC);
    ot_ref_t ref;
    /* Just dead (its DOWN came; its pid may not be unpublished yet): the
     * noproc DOWN may take a moment, but it comes, and the schedulers
     * have nothing else to do meanwhile. */
    for (int i = 0; i < 20; i++) {
        ot_pid_t j = dead_pid(me, false);
        assert_int_equal(ot_monitor(j, &ref), 0);
        expect_down(ref, j, &noproc, 5000);
        expect_no_ref(ref, 0);
    }

    /* Long dead: the DOWN is there when ot_monitor returns. */
    ot_pid_t d = dead_pid(me, true);
    assert_int_equal(ot_monitor(d, &ref), 0);
    expect_down(ref, d, &noproc, 0);
    expect_no_ref(ref, 30);
    assert_int_equal(ot_demonitor(ref, 0), 0);

    /* Twice: two DOWNs, each with its reference. */
    ot_ref_t r1, r2;
    assert_int_equal(ot_monitor(d, &r1), 0);
    assert_int_equal(ot_monitor(d, &r2), 0);
    assert_int_not_equal(r1, r2);
    expect_down(r2, d, &noproc, 1000);
    expect_down(r1, d, &noproc, 1000);

    /* From a process. */
    ot_pid_t o = spawn_puppet(me, 0);
    struct cmd c;
    memset(&c, 0, sizeof c);
    c.pid = d;
    struct reply rep = call(o, C_MONITOR, &c);
    assert_int_equal(rep.rc, 0);
    expect_fwd_down(o, rep.val, d, &noproc);
    expect_no_fwd(o, 30);
    ot_ref_t oref;
    assert_int_equal(ot_monitor(o, &oref), 0);
    stop_puppet(o, oref);
    end_attached();
}

/* ---- monitors stack -------------------------------------------------------- */

static void monitors_stack(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    ot_reason_t sh = reason(OT_EXIT_SHUTDOWN);
    enum { K = 5 };
    ot_pid_t p = spawn_puppet(me, 0);
    ot_pid_t o = spawn_puppet(me, 0);
    ot_ref_t mine[K], theirs[K];
    for (int i = 0; i < K; i++) {
        assert_int_equal(ot_monitor(p, &mine[i]), 0);
        struct cmd c;
        memset(&c, 0, sizeof c);
        c.pid = p;
        struct reply rep = call(o, C_MONITOR, &c);
        assert_int_equal(rep.rc, 0);
        theirs[i] = rep.val;
        for (int j = 0; j < i; j++) {
            assert_int_not_equal(mine[i], mine[j]);
            assert_int_not_equal(theirs[i], theirs[j]);
        }
    }
    /* Remove one of each: the others still fire. */
    assert_int_equal(ot_demonitor(mine[2], 0), 1);
    struct cmd d;
    memset(&d, 0, sizeof d);
    d.ref = theirs[3];
    assert_int_equal(call(o, C_DEMONITOR, &d).rc, 1);
    tell_exit(p, &sh);
    for (int i = K - 1; i >= 0; i--)
        if (i != 2) expect_down(mine[i], p, &sh, 5000);
    expect_no_ref(mine[2], 30);
    /* The observer gets one DOWN per monitor left. */
    bool seen[K] = {false};
    for (int n = 0; n < K - 1; n++) {
        struct fwd f = expect_fwd(o, 5000);
        assert_int_equal(f.tag, OT_TAG_DOWN);
        assert_int_equal(f.sender, p);
        assert_reason(&f.reason, &sh);
        int idx = -1;
        for (int i = 0; i < K; i++)
            if (theirs[i] == f.ref) idx = i;
        assert_true(idx >= 0 && idx != 3);
        assert_false(seen[idx]);
        seen[idx] = true;
    }
    expect_no_fwd(o, 30);
    expect_empty(0);
    ot_ref_t oref;
    assert_int_equal(ot_monitor(o, &oref), 0);
    stop_puppet(o, oref);
    end_attached();
}

/* ---- demonitor ------------------------------------------------------------ */

/* Monitors *arg twice, waits for the second DOWN, lets the first become a
 * message, then flushes it: ot_demonitor returns 0 (it has fired), the DOWN
 * is gone, an unrelated message stays. Reports 1 on success. */
struct flusher_arg {
    ot_pid_t main, target;
};

static void flusher(void *arg)
{
    struct flusher_arg a = *(struct flusher_arg *)arg;
    ot_pid_t me = ot_self();
    ot_ref_t r1, r2;
    PCHECK(ot_send(me, T_DATA, NULL, 0) == 0);
    PCHECK(ot_monitor(a.target, &r1) == 0);
    PCHECK(ot_monitor(a.target, &r2) == 0);
    PCHECK(ot_send(a.main, T_READY, NULL, 0) == 0);
    int64_t ok = 1;
    ot_msg_t *m;
    if (ot_receive_ref(r2, 10000, &m) != 0) {
        ok = 0;
    } else {
        PCHECK(ot_msg_tag(m) == OT_TAG_DOWN);
        ot_msg_free(m);
        uint64_t never = T_NEVER;
        PCHECK(ot_receive(match_tag, &never, 30, &m) == -ETIMEDOUT);
        long len = ot_mailbox_len();
        if (len != 2) {
            fprintf(stderr, "flusher: mailbox %ld, expected 2 (T_DATA and a DOWN)\n", len);
            ok = 0;
        }
        int rc = ot_demonitor(r1, OT_DEMONITOR_FLUSH);
        if (rc != 0) {
            fprintf(stderr, "flusher: demonitor of a fired monitor returned %d\n", rc);
            ok = 0;
        }
        if (ot_receive_ref(r1, 0, &m) == 0) {
            fprintf(stderr, "flusher: the DOWN survived the flush\n");
            ot_msg_free(m);
            ok = 0;
        }
        if (ot_mailbox_len() != 1) ok = 0;
        uint64_t data = T_DATA;
        if (ot_receive(match_tag, &data, 0, &m) == 0)
            ot_msg_free(m);
        else
            ok = 0;
    }
    PCHECK(ok == 1);
    PCHECK(ot_send(a.main, T_DONE, &ok, sizeof ok) == 0);
}

static void demonitor_cases(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    ot_reason_t sh = reason(OT_EXIT_SHUTDOWN);

    /* Active: 1, then 0; unknown: 0; no DOWN after a demonitor. */
    ot_pid_t p = spawn_puppet(me, 0);
    ot_ref_t r1, r2, r3;
    assert_int_equal(ot_monitor(p, &r1), 0);
    assert_int_equal(ot_monitor(p, &r2), 0);
    assert_int_equal(ot_monitor(p, &r3), 0);
    assert_int_equal(ot_demonitor(r1, 0), 1);
    assert_int_equal(ot_demonitor(r1, 0), 0);
    assert_int_equal(ot_demonitor(r1, OT_DEMONITOR_FLUSH), 0);
    assert_int_equal(ot_demonitor(r2, OT_DEMONITOR_FLUSH), 1); /* flush on an active one */
    assert_int_equal(ot_demonitor(ot_make_ref(), 0), 0);
    assert_true(puppet_alive(p));
    tell_exit(p, &sh);
    expect_down(r3, p, &sh, 5000);
    expect_no_ref(r1, 30);
    expect_no_ref(r2, 0);
    assert_int_equal(ot_demonitor(r3, 0), 0); /* fired */

    /* Another process's monitor is not ours to remove. */
    p = spawn_puppet(me, 0);
    ot_pid_t o = spawn_puppet(me, 0);
    struct cmd c;
    memset(&c, 0, sizeof c);
    c.pid = p;
    struct reply rep = call(o, C_MONITOR, &c);
    assert_int_equal(rep.rc, 0);
    assert_int_equal(ot_demonitor(rep.val, 0), 0);
    assert_int_equal(ot_demonitor(rep.val, OT_DEMONITOR_FLUSH), 0);
    tell_exit(p, &sh);
    expect_fwd_down(o, rep.val, p, &sh);

    /* Demonitor in a process: 1 then 0, and that DOWN never comes; the
     * other monitor of the same target still fires. */
    p = spawn_puppet(me, 0);
    c.pid = p;
    rep = call(o, C_MONITOR, &c);
    assert_int_equal(rep.rc, 0);
    ot_ref_t keep = rep.val;
    rep = call(o, C_MONITOR, &c);
    assert_int_equal(rep.rc, 0);
    struct cmd d;
    memset(&d, 0, sizeof d);
    d.ref = rep.val;
    assert_int_equal(call(o, C_DEMONITOR, &d).rc, 1);
    assert_int_equal(call(o, C_DEMONITOR, &d).rc, 0);
    tell_exit(p, &sh);
    expect_fwd_down(o, keep, p, &sh);
    expect_no_fwd(o, 50);
    ot_msg_t *m;

    /* The DOWN is queued (p is dead: a second monitor's DOWN came) and
     * not received: demonitor without flush returns 1 only if the DOWN
     * will never be seen; 0 means it fired, and its DOWN is there. */
    for (int flush = 0; flush < 2; flush++) {
        p = spawn_puppet(me, 0);
        assert_int_equal(ot_send(me, T_DATA, NULL, 0), 0);
        assert_int_equal(ot_monitor(p, &r1), 0);
        assert_int_equal(ot_monitor(p, &r2), 0);
        tell_exit(p, &sh);
        expect_down(r2, p, &sh, 5000);
        ot_sleep(20);
        int rc = ot_demonitor(r1, flush ? OT_DEMONITOR_FLUSH : 0);
        assert_true(rc == 0 || rc == 1);
        if (rc == 1 || flush)
            expect_no_ref(r1, 30);
        else
            expect_down(r1, p, &sh, 0);
        uint64_t data = T_DATA;
        assert_int_equal(ot_receive(match_tag, &data, 0, &m), 0); /* untouched */
        ot_msg_free(m);
        expect_empty(0);
    }

    /* In a process, after a receive has turned the DOWN into a message. */
    p = spawn_puppet(me, 0);
    struct flusher_arg fa = {me, p};
    ot_pid_t fp;
    ot_ref_t fref;
    assert_int_equal(ot_spawn_monitor(flusher, &fa, NULL, &fp, &fref), 0);
    uint64_t ready = T_READY;
    assert_int_equal(ot_receive(match_tag, &ready, 5000, &m), 0);
    ot_msg_free(m);
    tell_exit(p, &sh);
    uint64_t done = T_DONE;
    assert_int_equal(ot_receive(match_tag, &done, 15000, &m), 0);
    int64_t ok;
    memcpy(&ok, ot_msg_data(m), sizeof ok);
    ot_msg_free(m);
    assert_int_equal(ok, 1);
    ot_reason_t n = reason(OT_EXIT_NORMAL);
    expect_down(fref, fp, &n, 5000);

    ot_ref_t oref;
    assert_int_equal(ot_monitor(o, &oref), 0);
    stop_puppet(o, oref);
    end_attached();
}

/* ---- spawn_monitor -------------------------------------------------------- */

/* Spawn-monitors n children that end at once; every DOWN is `normal`. */
struct sm_arg {
    ot_pid_t main;
    int n;
};

static void sm_parent(void *arg)
{
    struct sm_arg a = *(struct sm_arg *)arg;
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    int64_t good = 0;
    for (int i = 0; i < a.n; i++) {
        o.scheduler = i & 1;
        ot_pid_t c = OT_PID_NONE;
        ot_ref_t ref = 0;
        int rc = ot_spawn_monitor(return_at_once, NULL, &o, &c, &ref);
        PCHECK(rc == 0);
        if (rc != 0) break;
        ot_msg_t *m;
        rc = ot_receive_ref(ref, 5000, &m);
        PCHECK(rc == 0);
        if (rc != 0) break;
        ot_reason_t r = msg_reason(m);
        bool ok = ot_msg_tag(m) == OT_TAG_DOWN && ot_msg_sender(m) == c &&
                  ot_msg_ref(m) == ref && r.code == OT_EXIT_NORMAL;
        PCHECK(ok);
        good += ok;
        ot_msg_free(m);
    }
    PCHECK(ot_mailbox_len() == 0);
    PCHECK(ot_send(a.main, T_DONE, &good, sizeof good) == 0);
}

static void spawn_monitor_cases(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    const int n = (int)scaled(3000);
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    ot_reason_t normal = reason(OT_EXIT_NORMAL);
    ot_reason_t user = reason_s(OT_EXIT_USER + 99, "spawn_monitor");
    for (int i = 0; i < n; i++) {
        o.scheduler = i & 1;
        ot_pid_t c = OT_PID_NONE;
        ot_ref_t ref = 0;
        if (i % 2) {
            assert_int_equal(ot_spawn_monitor(return_at_once, NULL, &o, &c, &ref), 0);
            expect_down(ref, c, &normal, 5000);
        } else {
            assert_int_equal(ot_spawn_monitor(die_with, &user, &o, &c, &ref), 0);
            expect_down(ref, c, &user, 5000);
        }
        assert_int_not_equal(c, OT_PID_NONE);
        assert_int_not_equal(ref, 0);
    }
    /* pid NULL, as ot_spawn allows. */
    ot_ref_t ref;
    assert_int_equal(ot_spawn_monitor(return_at_once, NULL, NULL, NULL, &ref), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive_ref(ref, 5000, &m), 0);
    assert_int_equal(ot_msg_tag(m), OT_TAG_DOWN);
    assert_int_not_equal(ot_msg_sender(m), OT_PID_NONE);
    assert_int_equal(msg_reason(m).code, OT_EXIT_NORMAL);
    ot_msg_free(m);

    /* From processes, two at once. */
    struct sm_arg sa = {me, (int)scaled(3000)};
    for (int k = 0; k < 2; k++) {
        o.scheduler = k;
        assert_int_equal(ot_spawn(sm_parent, &sa, &o, NULL), 0);
    }
    for (int k = 0; k < 2; k++) {
        uint64_t done = T_DONE;
        assert_int_equal(ot_receive(match_tag, &done, 30000, &m), 0);
        int64_t good;
        memcpy(&good, ot_msg_data(m), sizeof good);
        ot_msg_free(m);
        assert_int_equal(good, sa.n);
    }
    end_attached();
}

/* ---- a DOWN behind a long mailbox ------------------------------------------ */

/* k monitors of a dead pid, each DOWN taken with ot_receive_ref: ns. */
static uint64_t noproc_rounds(ot_pid_t dead, int k, int *bad)
{
    uint64_t t0 = now_ns();
    for (int i = 0; i < k; i++) {
        ot_ref_t ref;
        if (ot_monitor(dead, &ref) != 0) {
            (*bad)++;
            continue;
        }
        ot_msg_t *m;
        if (ot_receive_ref(ref, 5000, &m) != 0) {
            (*bad)++;
            continue;
        }
        if (ot_msg_tag(m) != OT_TAG_DOWN || ot_msg_sender(m) != dead ||
            msg_reason(m).code != OT_EXIT_NOPROC)
            (*bad)++;
        ot_msg_free(m);
    }
    return now_ns() - t0;
}

/* A few live targets that die after the monitor is made. */
static int live_rounds(int k)
{
    int bad = 0;
    for (int i = 0; i < k; i++) {
        ot_pid_t c;
        ot_ref_t ref;
        if (ot_spawn(die_with, (void *)&g_shutdown, NULL, &c) != 0) {
            bad++;
            continue;
        }
        /* A monitor made after the spawn: the DOWN is shutdown or, if the
         * child was fast, noproc; it comes after the mark either way. */
        if (ot_monitor(c, &ref) != 0) {
            bad++;
            continue;
        }
        ot_msg_t *m;
        int rc = ot_receive_ref(ref, 5000, &m);
        if (rc != 0) {
            fprintf(stderr, "live_rounds: no DOWN for a monitor of a dying process (%d)\n", rc);
            bad++;
            continue;
        }
        uint32_t code = msg_reason(m).code;
        if (ot_msg_tag(m) != OT_TAG_DOWN || ot_msg_sender(m) != c ||
            (code != OT_EXIT_SHUTDOWN && code != OT_EXIT_NOPROC)) {
            fprintf(stderr, "live_rounds: tag %#llx, reason %s\n",
                    (unsigned long long)ot_msg_tag(m), ot_reason_name(code));
            bad++;
        }
        ot_msg_free(m);
    }
    return bad;
}

struct longbox_res {
    int64_t bad;
    uint64_t t_empty, t_long;
};

struct longbox_arg {
    ot_pid_t main, dead;
    int fill, k;
};

static int fill_self(ot_pid_t me, int n)
{
    for (int64_t i = 0; i < n; i++)
        if (ot_send(me, T_DATA, &i, sizeof i) != 0) return -1;
    return 0;
}

static int drain_check(int n)
{
    int bad = 0;
    if (ot_mailbox_len() != n) bad++;
    for (int64_t i = 0; i < n; i++) {
        ot_msg_t *m;
        if (ot_receive(NULL, NULL, 0, &m) != 0) return bad + 1;
        int64_t v = -1;
        if (ot_msg_len(m) == sizeof v) memcpy(&v, ot_msg_data(m), sizeof v);
        if (ot_msg_tag(m) != T_DATA || v != i) bad++;
        ot_msg_free(m);
    }
    return bad;
}

static void longbox_proc(void *arg)
{
    struct longbox_arg a = *(struct longbox_arg *)arg;
    struct longbox_res r = {0, 0, 0};
    int bad = 0;
    r.t_empty = noproc_rounds(a.dead, a.k, &bad);
    PCHECK(fill_self(ot_self(), a.fill) == 0);
    r.t_long = noproc_rounds(a.dead, a.k, &bad);
    bad += live_rounds(50);
    bad += drain_check(a.fill);
    r.bad = bad;
    PCHECK(ot_send(a.main, T_DONE, &r, sizeof r) == 0);
}

static void check_times(const char *who, uint64_t t_empty, uint64_t t_long)
{
    fprintf(stderr,
            "  %s: monitor+DOWN rounds take %.2f ms with an empty mailbox, %.2f ms "
            "behind a long one\n",
            who, t_empty / 1e6, t_long / 1e6);
    /* A scan of the long mailbox per round would cost orders of magnitude
     * more; leave room for noise. Timing means nothing under sanitizers. */
    if (!g_san) assert_true(t_long < 10 * t_empty + 100000000u);
}

static void down_behind_long_mailbox(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    const int fill = (int)scaled(100000), k = (int)scaled(2000);
    ot_pid_t dead = dead_pid(me, true);

    /* The attached thread. */
    int bad = 0;
    uint64_t t_empty = noproc_rounds(dead, k, &bad);
    assert_int_equal(fill_self(me, fill), 0);
    uint64_t t_long = noproc_rounds(dead, k, &bad);
    assert_int_equal(bad, 0);
    assert_int_equal(live_rounds(50), 0);
    check_times("attached", t_empty, t_long);
    assert_int_equal(drain_check(fill), 0);

    /* A process (where each message examined costs a reduction). */
    struct longbox_arg a = {me, dead, fill, k};
    assert_int_equal(ot_spawn(longbox_proc, &a, NULL, NULL), 0);
    ot_msg_t *m;
    uint64_t done = T_DONE;
    assert_int_equal(ot_receive(match_tag, &done, 60000, &m), 0);
    struct longbox_res r;
    assert_int_equal(ot_msg_len(m), sizeof r);
    memcpy(&r, ot_msg_data(m), sizeof r);
    ot_msg_free(m);
    assert_int_equal(r.bad, 0);
    check_times("process", r.t_empty, r.t_long);
    end_attached();
}

/* ---- races, many observers, observers that die ---------------------------- */

/* Monitors children that end at once: exactly one DOWN each, normal or
 * noproc. */
static void monitor_death_race(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    const int n = (int)scaled(5000);
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    int normal = 0, noproc = 0;
    for (int i = 0; i < n; i++) {
        o.scheduler = i & 1;
        ot_pid_t c;
        assert_int_equal(ot_spawn(return_at_once, NULL, &o, &c), 0);
        if (i % 3 == 1) ot_sleep(0);
        ot_ref_t ref;
        assert_int_equal(ot_monitor(c, &ref), 0);
        ot_msg_t *m;
        assert_int_equal(ot_receive_ref(ref, 5000, &m), 0);
        assert_int_equal(ot_msg_tag(m), OT_TAG_DOWN);
        assert_int_equal(ot_msg_sender(m), c);
        uint32_t code = msg_reason(m).code;
        ot_msg_free(m);
        if (code == OT_EXIT_NORMAL)
            normal++;
        else if (code == OT_EXIT_NOPROC)
            noproc++;
        else
            fail_msg("DOWN with reason %u", code);
    }
    fprintf(stderr, "  %d normal, %d noproc\n", normal, noproc);
    expect_empty(100); /* no second DOWN for any of them */
    end_attached();
}

static void many_observers(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    enum { NOBS = 64, MINE = 100 };
    ot_reason_t user = reason_s(OT_EXIT_USER + 1, "many");
    ot_pid_t t = spawn_puppet(me, 0);
    ot_pid_t obs[NOBS];
    ot_ref_t oref[NOBS];
    for (int i = 0; i < NOBS; i++) {
        obs[i] = spawn_puppet(me, i & 1);
        struct cmd c;
        memset(&c, 0, sizeof c);
        c.pid = t;
        struct reply rep = call(obs[i], C_MONITOR, &c);
        assert_int_equal(rep.rc, 0);
        oref[i] = rep.val;
    }
    ot_ref_t mine[MINE];
    for (int i = 0; i < MINE; i++)
        assert_int_equal(ot_monitor(t, &mine[i]), 0);
    tell_exit(t, &user);
    for (int i = 0; i < MINE; i++)
        expect_down(mine[i], t, &user, 5000);
    for (int i = 0; i < NOBS; i++)
        expect_fwd_down(obs[i], oref[i], t, &user);
    for (int i = 0; i < NOBS; i++) {
        expect_no_fwd(obs[i], i == 0 ? 50 : 0);
        ot_ref_t r;
        assert_int_equal(ot_monitor(obs[i], &r), 0);
        stop_puppet(obs[i], r);
    }
    end_attached();
}

/* Observers die before their targets, targets before observers, both at
 * once; nothing is left behind (the sanitizers see leaks). */
static void observers_die(void **state)
{
    (void)state;
    ot_pid_t me;
    start_attached(2, &me);
    ot_reason_t kill = reason(OT_EXIT_KILL), killed = reason(OT_EXIT_KILLED);
    const int n = (int)scaled(300);
    for (int i = 0; i < n; i++) {
        ot_pid_t o = spawn_puppet(OT_PID_NONE, 0);
        ot_pid_t t = spawn_puppet(OT_PID_NONE, 0);
        for (int j = 0; j < 3; j++) {
            struct cmd c;
            memset(&c, 0, sizeof c);
            c.pid = j == 2 ? o : t;
            assert_int_equal(call(j == 2 ? t : o, C_MONITOR, &c).rc, 0);
        }
        ot_ref_t orf, trf;
        assert_int_equal(ot_monitor(o, &orf), 0);
        assert_int_equal(ot_monitor(t, &trf), 0);
        switch (i % 3) {
        case 0: /* observer first */
            assert_int_equal(ot_exit_pid(o, &kill), 0);
            expect_down(orf, o, &killed, 5000);
            assert_true(puppet_alive(t));
            assert_int_equal(ot_exit_pid(t, &kill), 0);
            expect_down(trf, t, &killed, 5000);
            break;
        case 1: /* target first */
            stop_puppet(t, trf);
            assert_true(puppet_alive(o));
            stop_puppet(o, orf);
            break;
        default: /* both at once */
            assert_int_equal(ot_exit_pid(t, &kill), 0);
            assert_int_equal(ot_exit_pid(o, &kill), 0);
            expect_down(trf, t, &killed, 5000);
            expect_down(orf, o, &killed, 5000);
            break;
        }
    }
    end_attached();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(down_exactly_once, teardown),
        cmocka_unit_test_teardown(down_noproc, teardown),
        cmocka_unit_test_teardown(monitors_stack, teardown),
        cmocka_unit_test_teardown(demonitor_cases, teardown),
        cmocka_unit_test_teardown(spawn_monitor_cases, teardown),
        cmocka_unit_test_teardown(down_behind_long_mailbox, teardown),
        cmocka_unit_test_teardown(monitor_death_race, teardown),
        cmocka_unit_test_teardown(many_observers, teardown),
        cmocka_unit_test_teardown(observers_die, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
