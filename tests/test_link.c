/* Links and exit signals, case by case: the intent of ERTS's link and exit
 * tests (process_SUITE's t_exit_2_*, self_exit, normal_suicide_exit,
 * abnormal_suicide_exit, link_fun; signal_SUITE's kill2killed) against
 * include/otter/signal.h.
 *
 * Every exit reason (normal, kill, killed, shutdown, a user reason with a
 * payload) sent with ot_exit_pid to a process that traps or does not, from a
 * process and from the attached main thread; exit signals to oneself; links
 * to dead processes (noproc); propagation through links with every reason;
 * kill turning into killed through links; unlink; spawn_link without a
 * window; links that are made twice or to oneself; attached threads, which
 * always trap; races between link and death.
 *
 * Most cases use puppets (tests/sigtest.h): processes driven by messages
 * from the main thread that forward whatever EXIT or DOWN they receive. */
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

/* The five kinds of reason, with a payload on the user one. */
static ot_reason_t test_reasons[5];
static const char *const test_reason_names[5] = {"normal", "kill", "killed", "shutdown",
                                                 "user"};

static void init_reasons(void)
{
    test_reasons[0] = reason(OT_EXIT_NORMAL);
    test_reasons[1] = reason(OT_EXIT_KILL);
    test_reasons[2] = reason(OT_EXIT_KILLED);
    test_reasons[3] = reason(OT_EXIT_SHUTDOWN);
    test_reasons[4] = reason_s(OT_EXIT_USER + 17, "a user reason, with a payload");
}

static void die_with(void *arg)
{
    ot_exit_reason((const ot_reason_t *)arg);
    PCHECK(!"ot_exit_reason returned");
}

static void return_at_once(void *arg)
{
    (void)arg;
}

static void call_exit(void *arg)
{
    (void)arg;
    ot_exit();
    PCHECK(!"ot_exit returned");
}

static void call_exit_null(void *arg)
{
    (void)arg;
    ot_exit_reason(NULL);
    PCHECK(!"ot_exit_reason returned");
}

/* The shared start, with this file's reasons ready. */
static void start_linked_tests(unsigned schedulers, ot_pid_t *me)
{
    init_reasons();
    start_attached(schedulers, me);
}

/* ---- bad input, wrong threads, no runtime -------------------------------- */

struct plain_rcs {
    ot_pid_t target;
    int link, unlink, spawn_link, trap_on, trap_off, exit_reason, monitor, demonitor, exit_pid;
};

static void *plain_calls(void *arg)
{
    struct plain_rcs *r = arg;
    ot_reason_t sh = reason(OT_EXIT_SHUTDOWN);
    ot_ref_t ref = 0;
    r->link = ot_link(r->target);
    r->unlink = ot_unlink(r->target);
    r->spawn_link = ot_spawn_link(return_at_once, NULL, NULL, NULL);
    r->trap_on = ot_trap_exit(true);
    r->trap_off = ot_trap_exit(false);
    r->exit_reason = ot_exit_reason(&sh);
    r->monitor = ot_monitor(r->target, &ref);
    r->demonitor = ot_demonitor(12345, 0);
    /* The one call that works from any thread: sender OT_PID_NONE. */
    r->exit_pid = ot_exit_pid(r->target, &sh);
    return NULL;
}

static void api_errors(void **state)
{
    (void)state;
    init_reasons();
    /* No runtime. */
    ot_pid_t fake = ((ot_pid_t)1 << 32) | 1;
    ot_reason_t sh = reason(OT_EXIT_SHUTDOWN);
    ot_ref_t ref = 0;
    assert_int_equal(ot_link(fake), -EPERM);
    assert_int_equal(ot_unlink(fake), -EPERM);
    assert_int_equal(ot_exit_pid(fake, &sh), -EPERM);
    assert_int_equal(ot_monitor(fake, &ref), -EPERM);
    assert_int_equal(ot_demonitor(5, 0), -EPERM);
    assert_int_equal(ot_trap_exit(true), -EPERM);
    assert_int_equal(ot_exit_reason(&sh), -EPERM);
    assert_int_equal(ot_exit(), -EPERM);
    assert_int_equal(ot_spawn_link(return_at_once, NULL, NULL, NULL), -EPERM);
    assert_int_equal(ot_spawn_monitor(return_at_once, NULL, NULL, NULL, &ref), -EPERM);

    ot_pid_t me;
    start_linked_tests(2, &me);
    ot_pid_t p = spawn_puppet(me, 1);
    ot_ref_t mref;
    assert_int_equal(ot_monitor(p, &mref), 0);

    /* Bad pids and arguments. */
    assert_int_equal(ot_link(OT_PID_NONE), -EINVAL);
    assert_int_equal(ot_link(~(ot_pid_t)0), -EINVAL);
    assert_int_equal(ot_unlink(OT_PID_NONE), -EINVAL);
    assert_int_equal(ot_unlink(~(ot_pid_t)0), -EINVAL);
    assert_int_equal(ot_exit_pid(OT_PID_NONE, &sh), -EINVAL);
    assert_int_equal(ot_exit_pid(~(ot_pid_t)0, &sh), -EINVAL);
    assert_int_equal(ot_exit_pid(p, NULL), -EINVAL);
    assert_int_equal(ot_monitor(OT_PID_NONE, &ref), -EINVAL);
    assert_int_equal(ot_monitor(~(ot_pid_t)0, &ref), -EINVAL);
    assert_int_equal(ot_monitor(p, NULL), -EINVAL);
    assert_int_equal(ot_demonitor(0, 0), -EINVAL);
    assert_int_equal(ot_demonitor(ot_make_ref(), 2), -EINVAL);
    assert_int_equal(ot_demonitor(ot_make_ref(), 0), 0); /* not a monitor */
    assert_int_equal(ot_spawn_link(NULL, NULL, NULL, NULL), -EINVAL);
    assert_int_equal(ot_spawn_monitor(NULL, NULL, NULL, NULL, &ref), -EINVAL);
    /* Unlinking what is not linked: 0. */
    assert_int_equal(ot_unlink(p), 0);
    assert_int_equal(ot_unlink(me), 0);
    /* Attached: always traps. */
    assert_int_equal(ot_trap_exit(true), 1);
    assert_int_equal(ot_trap_exit(false), -EPERM);
    assert_int_equal(ot_trap_exit(true), 1);

    /* A plain thread: only ot_exit_pid works, with sender OT_PID_NONE. */
    struct plain_rcs rc = {.target = p};
    on_plain_thread(plain_calls, &rc);
    assert_int_equal(rc.link, -EPERM);
    assert_int_equal(rc.unlink, -EPERM);
    assert_int_equal(rc.spawn_link, -EPERM);
    assert_int_equal(rc.trap_on, -EPERM);
    assert_int_equal(rc.trap_off, -EPERM);
    assert_int_equal(rc.exit_reason, -EPERM);
    assert_int_equal(rc.monitor, -EPERM);
    assert_int_equal(rc.demonitor, -EPERM);
    assert_int_equal(rc.exit_pid, 0);
    struct fwd f = expect_fwd(p, 5000);
    assert_int_equal(f.tag, OT_TAG_EXIT);
    assert_int_equal(f.sender, OT_PID_NONE);
    assert_reason(&f.reason, &sh);
    assert_true(puppet_alive(p));

    /* A dead pid: exit signals get -ESRCH, unlink 0. */
    stop_puppet(p, mref);
    wait_gone(p);
    assert_int_equal(ot_exit_pid(p, &sh), -ESRCH);
    assert_int_equal(ot_unlink(p), 0);
    end_attached();
}

/* ---- reasons ------------------------------------------------------------- */

static void reasons_api(void **state)
{
    (void)state;
    unsigned char buf[64];
    for (int i = 0; i < 64; i++)
        buf[i] = (unsigned char)(i * 37 + 1);
    buf[3] = 0; /* payloads are bytes, not strings */
    ot_reason_t r;
    assert_int_equal(ot_reason_make(NULL, OT_EXIT_USER, NULL, 0), -EINVAL);
    assert_int_equal(ot_reason_make(&r, OT_EXIT_USER, buf, OT_REASON_DATA_MAX + 1), -EINVAL);
    assert_int_equal(ot_reason_make(&r, OT_EXIT_USER, NULL, 1), -EINVAL);
    memset(&r, 0xaa, sizeof r);
    assert_int_equal(ot_reason_make(&r, OT_EXIT_USER + 5, NULL, 0), 0);
    assert_int_equal(r.code, OT_EXIT_USER + 5);
    assert_int_equal(r.len, 0);
    assert_int_equal(ot_reason_make(&r, OT_EXIT_SHUTDOWN, buf, OT_REASON_DATA_MAX), 0);
    assert_int_equal(r.code, OT_EXIT_SHUTDOWN);
    assert_int_equal(r.len, OT_REASON_DATA_MAX);
    assert_memory_equal(r.data, buf, OT_REASON_DATA_MAX);

    assert_string_equal(ot_reason_name(OT_EXIT_NORMAL), "normal");
    assert_string_equal(ot_reason_name(OT_EXIT_KILL), "kill");
    assert_string_equal(ot_reason_name(OT_EXIT_KILLED), "killed");
    assert_string_equal(ot_reason_name(OT_EXIT_SHUTDOWN), "shutdown");
    assert_string_equal(ot_reason_name(OT_EXIT_NOPROC), "noproc");
    assert_string_equal(ot_reason_name(OT_EXIT_USER), "user");
    assert_string_equal(ot_reason_name(0xffffffffu), "user");
    assert_string_equal(ot_reason_name(5), "unknown");
    assert_string_equal(ot_reason_name(OT_EXIT_USER - 1), "unknown");

    ot_pid_t me;
    start_linked_tests(2, &me);

    /* ot_msg_reason only reads EXIT and DOWN messages. */
    assert_int_equal(ot_msg_reason(NULL, &r), -EINVAL);
    assert_int_equal(ot_send(me, T_DATA, buf, 8), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 1000, &m), 0);
    assert_int_equal(ot_msg_reason(m, &r), -EINVAL);
    ot_msg_free(m);

    /* A 48-byte binary payload round-trips through a link and a monitor. */
    ot_reason_t big;
    assert_int_equal(ot_reason_make(&big, 0xfffffff0u, buf, OT_REASON_DATA_MAX), 0);
    ot_pid_t a = spawn_puppet(me, 0);
    assert_int_equal(ot_link(a), 0);
    ot_ref_t mref;
    assert_int_equal(ot_monitor(a, &mref), 0);
    tell_exit(a, &big);
    struct exit_match em = {a};
    assert_int_equal(ot_receive(match_exit_from, &em, 5000, &m), 0);
    assert_int_equal(ot_msg_tag(m), OT_TAG_EXIT);
    assert_int_equal(ot_msg_reason(m, NULL), -EINVAL);
    memset(&r, 0, sizeof r);
    assert_int_equal(ot_msg_reason(m, &r), 0);
    assert_int_equal(r.code, 0xfffffff0u);
    assert_int_equal(r.len, OT_REASON_DATA_MAX);
    assert_memory_equal(r.data, buf, OT_REASON_DATA_MAX);
    ot_msg_free(m);
    expect_down(mref, a, &big, 5000);

    /* ot_exit(), ot_exit_reason(NULL) and returning: all normal. */
    ot_entry_fn fns[3] = {call_exit, call_exit_null, return_at_once};
    ot_reason_t n = reason(OT_EXIT_NORMAL);
    for (int i = 0; i < 3; i++) {
        ot_pid_t c;
        assert_int_equal(ot_spawn_link(fns[i], NULL, NULL, &c), 0);
        expect_exit(c, &n, 5000);
    }
    end_attached();
}

/* ---- the table: ot_exit_pid to another process ---------------------------- */

static void exit_signal_table(void **state)
{
    (void)state;
    ot_pid_t me;
    start_linked_tests(2, &me);
    ot_pid_t k = spawn_puppet(me, 0); /* sends signals for us */
    for (int ri = 0; ri < 5; ri++) {
        const ot_reason_t *r = &test_reasons[ri];
        for (int trap = 0; trap < 2; trap++) {
            for (int from_main = 0; from_main < 2; from_main++) {
                fprintf(stderr, "  %s to a process %strapping, from %s\n",
                        test_reason_names[ri], trap ? "" : "not ",
                        from_main ? "the attached thread" : "a process");
                ot_pid_t p = spawn_puppet(me, trap);
                ot_ref_t mref;
                assert_int_equal(ot_monitor(p, &mref), 0);
                ot_pid_t from = from_main ? me : k;
                if (from_main)
                    assert_int_equal(ot_exit_pid(p, r), 0);
                else
                    assert_int_equal(call_exit_pid(k, p, r), 0);
                if (r->code == OT_EXIT_KILL) {
                    /* Untrappable: dies with `killed`. */
                    ot_reason_t killed = reason(OT_EXIT_KILLED);
                    expect_down(mref, p, &killed, 5000);
                    expect_no_fwd(p, 0);
                } else if (trap) {
                    /* A message {EXIT, from, reason}; the process lives. */
                    struct fwd f = expect_fwd(p, 5000);
                    assert_int_equal(f.tag, OT_TAG_EXIT);
                    assert_int_equal(f.sender, from);
                    assert_reason(&f.reason, r);
                    assert_true(puppet_alive(p));
                    stop_puppet(p, mref);
                } else if (r->code == OT_EXIT_NORMAL) {
                    /* Ignored. The signal went out before the ping (same
                     * sender, or k sent it before replying), so the ping's
                     * answer proves it was handled and ignored. */
                    assert_true(puppet_alive(p));
                    expect_no_fwd(p, 0);
                    stop_puppet(p, mref);
                } else {
                    expect_down(mref, p, r, 5000);
                    expect_no_fwd(p, 0);
                }
                expect_no_exit(p, 0);
            }
        }
    }
    ot_ref_t kref;
    assert_int_equal(ot_monitor(k, &kref), 0);
    stop_puppet(k, kref);
    end_attached();
}

/* ---- exit signals to oneself --------------------------------------------- */

static void exit_self(void **state)
{
    (void)state;
    ot_pid_t me;
    start_linked_tests(2, &me);
    for (int ri = 0; ri < 5; ri++) {
        const ot_reason_t *r = &test_reasons[ri];
        for (int trap = 0; trap < 2; trap++) {
            fprintf(stderr, "  ot_exit_pid(self, %s), %strapping\n", test_reason_names[ri],
                    trap ? "" : "not ");
            ot_pid_t p = spawn_puppet(me, trap);
            ot_ref_t mref;
            assert_int_equal(ot_monitor(p, &mref), 0);
            struct cmd c;
            memset(&c, 0, sizeof c);
            c.pid = p;
            c.reason = *r;
            ot_ref_t cref = send_cmd(p, C_EXIT_PID, &c);
            if (r->code == OT_EXIT_KILL) {
                ot_reason_t killed = reason(OT_EXIT_KILLED);
                expect_down(mref, p, &killed, 5000);
                expect_no_fwd(p, 0);
            } else if (trap) {
                /* Trapping: a message from itself, even for normal. */
                struct reply rep;
                ot_msg_t *m;
                assert_int_equal(ot_receive_ref(cref, 5000, &m), 0);
                assert_int_equal(ot_msg_len(m), sizeof rep);
                memcpy(&rep, ot_msg_data(m), sizeof rep);
                ot_msg_free(m);
                assert_int_equal(rep.rc, 0);
                struct fwd f = expect_fwd(p, 5000);
                assert_int_equal(f.tag, OT_TAG_EXIT);
                assert_int_equal(f.sender, p);
                assert_reason(&f.reason, r);
                assert_true(puppet_alive(p));
                stop_puppet(p, mref);
            } else {
                /* Not trapping: it ends with that reason, normal included
                 * (Erlang's exit(self(), normal)). */
                expect_down(mref, p, r, 5000);
                expect_no_fwd(p, 0);
            }
            /* A reply may or may not have gone out before the end. */
            ot_msg_t *m;
            if (ot_receive_ref(cref, 0, &m) == 0) ot_msg_free(m);
        }
    }
    end_attached();
}

/* ---- links to dead processes: noproc -------------------------------------- */

static void link_noproc(void **state)
{
    (void)state;
    ot_pid_t me;
    start_linked_tests(2, &me);
    ot_reason_t noproc = reason(OT_EXIT_NOPROC);
    ot_ref_t dref;

    /* Just dead (its DOWN came, its pid may not be unpublished yet): the
     * link request is answered with noproc, if not at once then soon,
     * although the schedulers have nothing else to do meanwhile. */
    for (int i = 0; i < 20; i++) {
        ot_pid_t j = spawn_puppet(me, 0);
        assert_int_equal(ot_monitor(j, &dref), 0);
        stop_puppet(j, dref);
        assert_int_equal(ot_link(j), 0);
        expect_exit(j, &noproc, 5000);
    }

    /* Long dead (unpublished). */
    ot_pid_t d = spawn_puppet(me, 0);
    assert_int_equal(ot_monitor(d, &dref), 0);
    stop_puppet(d, dref);
    wait_gone(d);

    /* The attached thread traps: 0 and {EXIT, d, noproc}. */
    assert_int_equal(ot_link(d), 0);
    expect_exit(d, &noproc, 5000);
    expect_empty(20);

    /* A trapping process: the same. */
    ot_pid_t t = spawn_puppet(me, 1);
    assert_int_equal(call_pid(t, C_LINK, d), 0);
    struct fwd f = expect_fwd(t, 5000);
    assert_int_equal(f.tag, OT_TAG_EXIT);
    assert_int_equal(f.sender, d);
    assert_reason(&f.reason, &noproc);
    expect_no_fwd(t, 20);

    /* A process that does not trap: -ESRCH, no link, no signal, alive. */
    ot_pid_t n = spawn_puppet(me, 0);
    assert_int_equal(call_pid(n, C_LINK, d), -ESRCH);
    expect_no_fwd(n, 20);
    assert_true(puppet_alive(n));

    /* No link was made: n's death does not reach t, nor d's absence n. */
    ot_ref_t nref, tref;
    assert_int_equal(ot_monitor(n, &nref), 0);
    assert_int_equal(ot_monitor(t, &tref), 0);
    stop_puppet(n, nref);
    stop_puppet(t, tref);
    end_attached();
}

/* ---- propagation through links -------------------------------------------- */

static void link_propagation(void **state)
{
    (void)state;
    ot_pid_t me;
    start_linked_tests(2, &me);
    /* Every reason a process can end with (kill aside: see kill_through_links). */
    const int order[4] = {0, 2, 3, 4};
    for (int oi = 0; oi < 4; oi++) {
        const ot_reason_t *r = &test_reasons[order[oi]];
        for (int dir = 0; dir < 2; dir++) {
            fprintf(stderr, "  a ends with %s, link made by %s\n", test_reason_names[order[oi]],
                    dir ? "the partner" : "the dying process");
            ot_pid_t a = spawn_puppet(me, 0);
            ot_pid_t b = spawn_puppet(me, 0); /* not trapping */
            ot_pid_t w = spawn_puppet(me, 1); /* trapping watcher */
            if (dir)
                assert_int_equal(call_pid(b, C_LINK, a), 0);
            else
                assert_int_equal(call_pid(a, C_LINK, b), 0);
            assert_int_equal(call_pid(w, C_LINK, a), 0);
            assert_int_equal(ot_link(a), 0); /* main traps too */
            ot_ref_t aref, bref, wref;
            assert_int_equal(ot_monitor(a, &aref), 0);
            assert_int_equal(ot_monitor(b, &bref), 0);
            assert_int_equal(ot_monitor(w, &wref), 0);

            tell_exit(a, r);
            expect_down(aref, a, r, 5000);
            expect_exit(a, r, 5000);
            struct fwd f = expect_fwd(w, 5000);
            assert_int_equal(f.tag, OT_TAG_EXIT);
            assert_int_equal(f.sender, a);
            assert_reason(&f.reason, r);
            if (r->code == OT_EXIT_NORMAL) {
                /* Normal does not kill a partner that does not trap. Give
                 * a stray signal time to land before asking. */
                ot_sleep(20);
                assert_true(puppet_alive(b));
                stop_puppet(b, bref);
            } else {
                expect_down(bref, b, r, 5000);
            }
            expect_no_fwd(b, 0);
            stop_puppet(w, wref);
            expect_no_fwd(w, 0);
        }
    }
    end_attached();
}

/* kill becomes killed: the killed process dies with `killed`, and so does
 * a chain of non-trapping processes linked to it; a trapping process at the
 * end gets {EXIT, b, killed}. kill is untrappable, even for a trapping
 * target. (signal_SUITE's kill2killed.) */
static void kill_through_links(void **state)
{
    (void)state;
    ot_pid_t me;
    start_linked_tests(2, &me);
    ot_reason_t kill = reason(OT_EXIT_KILL), killed = reason(OT_EXIT_KILLED);
    for (int trap_a = 0; trap_a < 2; trap_a++) {
        ot_pid_t a = spawn_puppet(me, trap_a);
        ot_pid_t b = spawn_puppet(me, 0);
        ot_pid_t c = spawn_puppet(me, 0);
        ot_pid_t w = spawn_puppet(me, 1);
        assert_int_equal(call_pid(a, C_LINK, b), 0);
        assert_int_equal(call_pid(b, C_LINK, c), 0);
        assert_int_equal(call_pid(c, C_LINK, w), 0);
        assert_int_equal(ot_link(a), 0);
        ot_ref_t ar, br, cr, wr;
        assert_int_equal(ot_monitor(a, &ar), 0);
        assert_int_equal(ot_monitor(b, &br), 0);
        assert_int_equal(ot_monitor(c, &cr), 0);
        assert_int_equal(ot_monitor(w, &wr), 0);
        assert_int_equal(ot_exit_pid(a, &kill), 0);
        expect_down(ar, a, &killed, 5000);
        expect_exit(a, &killed, 5000);
        expect_down(br, b, &killed, 5000);
        expect_down(cr, c, &killed, 5000);
        struct fwd f = expect_fwd(w, 5000);
        assert_int_equal(f.tag, OT_TAG_EXIT);
        assert_int_equal(f.sender, c);
        assert_reason(&f.reason, &killed);
        expect_no_fwd(a, 0);
        assert_true(puppet_alive(w));
        stop_puppet(w, wr);
    }

    /* A process that ends with reason kill itself (ot_exit_reason, not a
     * signal): its links get `kill`, which through a link counts as
     * `killed`, an ordinary reason: the non-trapping partner dies with
     * killed, the trapping one gets {EXIT, a, killed}. */
    ot_pid_t a = spawn_puppet(me, 0);
    ot_pid_t b = spawn_puppet(me, 0);
    ot_pid_t w = spawn_puppet(me, 1);
    assert_int_equal(call_pid(a, C_LINK, b), 0);
    assert_int_equal(call_pid(a, C_LINK, w), 0);
    ot_ref_t ar, br, wr;
    assert_int_equal(ot_monitor(a, &ar), 0);
    assert_int_equal(ot_monitor(b, &br), 0);
    assert_int_equal(ot_monitor(w, &wr), 0);
    tell_exit(a, &kill);
    ot_msg_t *m;
    assert_int_equal(ot_receive_ref(ar, 5000, &m), 0); /* a's own reason: not checked */
    assert_int_equal(ot_msg_tag(m), OT_TAG_DOWN);
    ot_msg_free(m);
    expect_down(br, b, &killed, 5000);
    struct fwd f = expect_fwd(w, 5000);
    assert_int_equal(f.tag, OT_TAG_EXIT);
    assert_int_equal(f.sender, a);
    assert_reason(&f.reason, &killed);
    assert_true(puppet_alive(w));
    stop_puppet(w, wr);
    end_attached();
}

/* ---- unlink ------------------------------------------------------------- */

/* Arg: the process to link to. Links (trapping), waits for the partner's
 * death, lets the EXIT become a message, unlinks, and checks the message is
 * still there. Reports 1 to main on success. */
struct keeper_arg {
    ot_pid_t main, partner;
};

static void keeper(void *arg)
{
    struct keeper_arg a = *(struct keeper_arg *)arg;
    PCHECK(ot_trap_exit(true) == 0);
    PCHECK(ot_link(a.partner) == 0);
    ot_ref_t mref;
    PCHECK(ot_monitor(a.partner, &mref) == 0);
    PCHECK(ot_send(a.main, T_READY, NULL, 0) == 0);
    ot_msg_t *m;
    int64_t ok = 0;
    if (ot_receive_ref(mref, 10000, &m) == 0) {
        ot_msg_free(m);
        uint64_t never = T_NEVER;
        PCHECK(ot_receive(match_tag, &never, 50, &m) == -ETIMEDOUT);
        PCHECK(ot_unlink(a.partner) == 0);
        uint64_t ex = OT_TAG_EXIT;
        if (ot_receive(match_tag, &ex, 0, &m) == 0) {
            ot_reason_t r = msg_reason(m);
            ok = ot_msg_sender(m) == a.partner && r.code == OT_EXIT_SHUTDOWN;
            ot_msg_free(m);
        }
    }
    PCHECK(ot_send(a.main, T_DONE, &ok, sizeof ok) == 0);
}

static void unlink_cases(void **state)
{
    (void)state;
    ot_pid_t me;
    start_linked_tests(2, &me);
    ot_reason_t sh = reason(OT_EXIT_SHUTDOWN), kill = reason(OT_EXIT_KILL);
    for (int side = 0; side < 3; side++) {
        for (int how = 0; how < 2; how++) {
            /* side 0: a unlinks b; 1: b unlinks a; 2: main unlinks a. */
            ot_pid_t a = spawn_puppet(me, 0);
            ot_pid_t b = spawn_puppet(me, side == 2);
            if (side == 2)
                assert_int_equal(ot_link(a), 0);
            else
                assert_int_equal(call_pid(a, C_LINK, b), 0);
            if (side == 0) assert_int_equal(call_pid(a, C_UNLINK, b), 0);
            if (side == 1) assert_int_equal(call_pid(b, C_UNLINK, a), 0);
            if (side == 2) assert_int_equal(ot_unlink(a), 0);
            ot_ref_t ar, br;
            assert_int_equal(ot_monitor(a, &ar), 0);
            assert_int_equal(ot_monitor(b, &br), 0);
            if (how == 0) {
                tell_exit(a, &sh);
                expect_down(ar, a, &sh, 5000);
            } else {
                ot_reason_t killed = reason(OT_EXIT_KILLED);
                assert_int_equal(ot_exit_pid(a, &kill), 0);
                expect_down(ar, a, &killed, 5000);
            }
            ot_sleep(20);
            assert_true(puppet_alive(b));
            expect_no_fwd(b, 0);
            expect_no_exit(a, 0);
            stop_puppet(b, br);
        }
    }

    /* An EXIT already turned into a message stays after unlink. */
    ot_pid_t c = spawn_puppet(me, 0);
    struct keeper_arg ka = {me, c};
    ot_pid_t kp;
    ot_ref_t kref;
    assert_int_equal(ot_spawn_monitor(keeper, &ka, NULL, &kp, &kref), 0);
    uint64_t ready = T_READY;
    ot_msg_t *m;
    assert_int_equal(ot_receive(match_tag, &ready, 5000, &m), 0);
    ot_msg_free(m);
    tell_exit(c, &sh);
    uint64_t done = T_DONE;
    assert_int_equal(ot_receive(match_tag, &done, 15000, &m), 0);
    int64_t ok;
    memcpy(&ok, ot_msg_data(m), sizeof ok);
    ot_msg_free(m);
    assert_int_equal(ok, 1);
    ot_reason_t n = reason(OT_EXIT_NORMAL);
    expect_down(kref, kp, &n, 5000);
    end_attached();
}

/* ---- spawn_link ----------------------------------------------------------- */

/* Does not trap: spawn_links a child that dies at once with *arg, and
 * should die of it before its receive times out. */
static void linked_parent(void *arg)
{
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.scheduler = (int)(ot_self() & 1);
    ot_pid_t c;
    PCHECK(ot_spawn_link(die_with, arg, &o, &c) == 0);
    uint64_t never = T_NEVER;
    ot_msg_t *m;
    PCHECK(ot_receive(match_tag, &never, 10000, &m) == -ETIMEDOUT);
    PCHECK(!"linked_parent outlived its linked child");
}

static void spawn_link_no_window(void **state)
{
    (void)state;
    ot_pid_t me;
    start_linked_tests(2, &me);
    const int n = (int)scaled(3000);
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    ot_reason_t normal = reason(OT_EXIT_NORMAL);
    /* The attached thread: one {EXIT, child, reason} per child, whatever
     * reason, however fast the child ends. */
    for (int i = 0; i < n; i++) {
        o.scheduler = i & 1;
        ot_pid_t c = OT_PID_NONE;
        int k = i % 4;
        if (k == 0) {
            assert_int_equal(ot_spawn_link(return_at_once, NULL, &o, &c), 0);
            expect_exit(c, &normal, 5000);
        } else {
            const ot_reason_t *r = &test_reasons[k == 1 ? 2 : k == 2 ? 3 : 4];
            assert_int_equal(ot_spawn_link(die_with, (void *)r, &o, &c), 0);
            expect_exit(c, r, 5000);
        }
        assert_int_not_equal(c, OT_PID_NONE);
    }
    /* A process that does not trap dies with its child's reason. */
    const int np = (int)scaled(500);
    for (int i = 0; i < np; i++) {
        const ot_reason_t *r = &test_reasons[i % 2 ? 3 : 4];
        ot_pid_t p;
        ot_ref_t ref;
        assert_int_equal(ot_spawn_monitor(linked_parent, (void *)r, NULL, &p, &ref), 0);
        expect_down(ref, p, r, 15000);
    }
    expect_empty(20);
    end_attached();
}

/* ---- link twice, link to self --------------------------------------------- */

static void link_twice_and_self(void **state)
{
    (void)state;
    ot_pid_t me;
    start_linked_tests(2, &me);
    ot_reason_t sh = reason(OT_EXIT_SHUTDOWN);

    /* Linked three times (twice from here, once from there): one EXIT. */
    ot_pid_t a = spawn_puppet(me, 0);
    assert_int_equal(ot_link(a), 0);
    assert_int_equal(ot_link(a), 0);
    assert_int_equal(call_pid(a, C_LINK, me), 0);
    ot_ref_t ar;
    assert_int_equal(ot_monitor(a, &ar), 0);
    tell_exit(a, &sh);
    expect_exit(a, &sh, 5000);
    expect_down(ar, a, &sh, 5000);
    expect_no_exit(a, 100);

    /* Linked twice, unlinked once: no link left. */
    a = spawn_puppet(me, 0);
    assert_int_equal(ot_link(a), 0);
    assert_int_equal(ot_link(a), 0);
    assert_int_equal(ot_unlink(a), 0);
    assert_int_equal(ot_monitor(a, &ar), 0);
    tell_exit(a, &sh);
    expect_down(ar, a, &sh, 5000);
    expect_no_exit(a, 50);

    /* A trapping process linked twice: one forwarded EXIT. */
    a = spawn_puppet(me, 0);
    ot_pid_t w = spawn_puppet(me, 1);
    assert_int_equal(call_pid(w, C_LINK, a), 0);
    assert_int_equal(call_pid(w, C_LINK, a), 0);
    assert_int_equal(call_pid(a, C_LINK, w), 0);
    assert_int_equal(ot_monitor(a, &ar), 0);
    tell_exit(a, &sh);
    expect_down(ar, a, &sh, 5000);
    struct fwd f = expect_fwd(w, 5000);
    assert_int_equal(f.tag, OT_TAG_EXIT);
    assert_int_equal(f.sender, a);
    assert_reason(&f.reason, &sh);
    expect_no_fwd(w, 100);

    /* Link to self: a no-op, for the attached thread and for processes. */
    assert_int_equal(ot_link(me), 0);
    expect_empty(20);
    assert_int_equal(ot_unlink(me), 0);
    assert_int_equal(call_pid(w, C_LINK, w), 0);
    expect_no_fwd(w, 20);
    ot_pid_t p = spawn_puppet(me, 0);
    assert_int_equal(call_pid(p, C_LINK, p), 0);
    assert_true(puppet_alive(p));
    ot_ref_t pr, wr;
    assert_int_equal(ot_monitor(p, &pr), 0);
    tell_exit(p, &sh);
    expect_down(pr, p, &sh, 5000);
    /* w is linked to itself (nothing) and was linked to a (dead). An exit
     * signal now gives exactly one message. */
    assert_int_equal(ot_exit_pid(w, &sh), 0);
    f = expect_fwd(w, 5000);
    assert_int_equal(f.tag, OT_TAG_EXIT);
    assert_int_equal(f.sender, me);
    expect_no_fwd(w, 50);
    assert_int_equal(ot_monitor(w, &wr), 0);
    stop_puppet(w, wr);
    end_attached();
}

/* ---- attached threads always trap ------------------------------------------ */

static void *plain_kill(void *arg)
{
    ot_reason_t kill = reason(OT_EXIT_KILL);
    intptr_t rc = ot_exit_pid(*(ot_pid_t *)arg, &kill);
    return (void *)rc;
}

static void attached_always_traps(void **state)
{
    (void)state;
    ot_pid_t me;
    start_linked_tests(2, &me);
    ot_reason_t killed = reason(OT_EXIT_KILLED);
    ot_pid_t k = spawn_puppet(me, 0);
    for (int ri = 0; ri < 5; ri++) {
        const ot_reason_t *r = &test_reasons[ri];
        const ot_reason_t *want = r->code == OT_EXIT_KILL ? &killed : r;
        /* From a process. */
        assert_int_equal(call_exit_pid(k, me, r), 0);
        expect_exit(k, want, 5000);
        /* From itself: a message too (it traps), normal included. */
        assert_int_equal(ot_exit_pid(me, r), 0);
        expect_exit(me, want, 5000);
    }
    /* From a plain thread: sender OT_PID_NONE. */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, plain_kill, &me), 0);
    void *res;
    assert_int_equal(pthread_join(t, &res), 0);
    assert_int_equal((intptr_t)res, 0);
    expect_exit(OT_PID_NONE, &killed, 5000);

    /* A linked process killed: {EXIT, a, killed}; the thread lives on. */
    ot_pid_t a = spawn_puppet(me, 0);
    assert_int_equal(ot_link(a), 0);
    ot_reason_t kill = reason(OT_EXIT_KILL);
    assert_int_equal(ot_exit_pid(a, &kill), 0);
    expect_exit(a, &killed, 5000);
    assert_true(puppet_alive(k));

    /* Detaching ends the attached pid with `normal`: a linked process that
     * does not trap survives it. */
    ot_pid_t b = spawn_puppet(OT_PID_NONE, 0);
    assert_int_equal(ot_link(b), 0);
    assert_int_equal(call_pid(k, C_LINK, me), 0);
    expect_empty(0);
    assert_int_equal(ot_detach(), 0);
    ot_pid_t me2;
    assert_int_equal(ot_attach(&me2), 0);
    assert_int_not_equal(me2, me);
    ot_sleep(20);
    assert_true(puppet_alive(b));
    assert_true(puppet_alive(k));
    ot_ref_t br, kr;
    assert_int_equal(ot_monitor(b, &br), 0);
    assert_int_equal(ot_monitor(k, &kr), 0);
    stop_puppet(b, br);
    stop_puppet(k, kr);
    end_attached();
}

/* ---- races between link and death ---------------------------------------- */

/* Not trapping: spawns a child that ends at once, links to it, lets the
 * signals land, and reports the link's rc. It may die of `noproc` when the
 * child was dying as the request travelled. */
static void racing_linker(void *arg)
{
    ot_pid_t main = *(ot_pid_t *)arg;
    ot_pid_t c;
    PCHECK(ot_spawn(return_at_once, NULL, NULL, &c) == 0);
    for (int i = 0; i < (int)(ot_self() % 3); i++)
        ot_yield();
    int64_t rc = ot_link(c);
    PCHECK(rc == 0 || rc == -ESRCH);
    uint64_t never = T_NEVER;
    ot_msg_t *m;
    PCHECK(ot_receive(match_tag, &never, 20, &m) == -ETIMEDOUT);
    PCHECK(ot_send(main, T_DONE, &rc, sizeof rc) == 0);
}

static bool match_done_from(const ot_msg_t *m, void *arg)
{
    return ot_msg_tag(m) == T_DONE && ot_msg_sender(m) == ((struct exit_match *)arg)->from;
}

static void link_death_race(void **state)
{
    (void)state;
    ot_pid_t me;
    start_linked_tests(2, &me);
    const int n = (int)scaled(5000);
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    int normal = 0, noproc = 0;
    /* The attached thread links to a child that ends at once: exactly one
     * EXIT, `normal` (linked in time) or `noproc` (too late). */
    for (int i = 0; i < n; i++) {
        o.scheduler = i & 1;
        ot_pid_t c;
        assert_int_equal(ot_spawn(return_at_once, NULL, &o, &c), 0);
        if (i % 3 == 1) ot_sleep(0);
        assert_int_equal(ot_link(c), 0);
        struct exit_match em = {c};
        ot_msg_t *m;
        assert_int_equal(ot_receive(match_exit_from, &em, 5000, &m), 0);
        ot_reason_t r = msg_reason(m);
        ot_msg_free(m);
        if (r.code == OT_EXIT_NORMAL)
            normal++;
        else if (r.code == OT_EXIT_NOPROC)
            noproc++;
        else
            fail_msg("EXIT with reason %u", r.code);
        assert_int_equal(r.len, 0);
    }
    fprintf(stderr, "  attached: %d normal, %d noproc\n", normal, noproc);
    expect_empty(100); /* no second EXIT for any child */

    /* A process that does not trap: -ESRCH (and lives), or a link (and
     * lives: normal is ignored), or a noproc signal (and dies of it). */
    /* All at once (each waits 20 ms for late signals). */
    const int np = (int)scaled(2000);
    int esrch = 0, linked = 0, died = 0;
    ot_pid_t *ps = calloc((size_t)np, sizeof *ps);
    ot_ref_t *refs = calloc((size_t)np, sizeof *refs);
    assert_non_null(ps);
    assert_non_null(refs);
    for (int i = 0; i < np; i++) {
        o.scheduler = i & 1;
        assert_int_equal(ot_spawn_monitor(racing_linker, &me, &o, &ps[i], &refs[i]), 0);
    }
    for (int i = 0; i < np; i++) {
        ot_msg_t *m;
        assert_int_equal(ot_receive_ref(refs[i], 10000, &m), 0);
        assert_int_equal(ot_msg_tag(m), OT_TAG_DOWN);
        ot_reason_t r = msg_reason(m);
        ot_msg_free(m);
        /* Its report, if it made one, came before its DOWN. */
        struct exit_match from = {ps[i]};
        bool reported = ot_receive(match_done_from, &from, 0, &m) == 0;
        int64_t rc = 1;
        if (reported) {
            memcpy(&rc, ot_msg_data(m), sizeof rc);
            ot_msg_free(m);
        }
        if (r.code == OT_EXIT_NORMAL) {
            assert_true(reported);
            if (rc == 0)
                linked++;
            else
                esrch++;
        } else {
            if (r.code != OT_EXIT_NOPROC) print_reason("racing_linker died of", &r);
            assert_int_equal(r.code, OT_EXIT_NOPROC);
            died++;
        }
    }
    free(ps);
    free(refs);
    fprintf(stderr, "  process: %d -ESRCH, %d linked, %d noproc deaths\n", esrch, linked, died);
    end_attached();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(api_errors, teardown),
        cmocka_unit_test_teardown(reasons_api, teardown),
        cmocka_unit_test_teardown(exit_signal_table, teardown),
        cmocka_unit_test_teardown(exit_self, teardown),
        cmocka_unit_test_teardown(link_noproc, teardown),
        cmocka_unit_test_teardown(link_propagation, teardown),
        cmocka_unit_test_teardown(kill_through_links, teardown),
        cmocka_unit_test_teardown(unlink_cases, teardown),
        cmocka_unit_test_teardown(spawn_link_no_window, teardown),
        cmocka_unit_test_teardown(link_twice_and_self, teardown),
        cmocka_unit_test_teardown(attached_always_traps, teardown),
        cmocka_unit_test_teardown(link_death_race, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
