/* Scaffolding shared by the tests of links, monitors and exit signals
 * (tests/test_link.c, test_monitor.c, test_signal_order.c,
 * test_kill_race.c, test_signal_stress.c). Include it after tests/harness.h.
 *
 * Header-only like harness.h: each test executable gets its own copy.
 *
 *   reason(code), reason_s(code, str)   build an ot_reason_t
 *   reason_eq(a, b)                     same code, length and payload
 *   puppet                              a process driven by messages from
 *                                       the main thread (call()): it links,
 *                                       unlinks, monitors, traps, sends exit
 *                                       signals, exits on command, and
 *                                       forwards every EXIT, DOWN and other
 *                                       message it receives to its owner as
 *                                       T_FWD (struct fwd), in order
 *   call(pid, cmd, &c)                  send a command, wait for its reply
 *   expect_fwd(...), expect_exit(...), expect_down(...), expect_none(...)
 *                                       main-thread receives that assert
 *   wait_count(n, ms)                   wait until ot_process_count() == n
 *   pidmap                              pid (or ref) -> index, sorted array
 *   rng                                 splitmix64
 */
#ifndef OTTER_TESTS_SIGTEST_H
#define OTTER_TESTS_SIGTEST_H

#include <errno.h>
#include <pthread.h>

#define SIG_UNUSED __attribute__((unused))

/* Tags of the tests' own messages (below OT_TAG_SYSTEM). */
enum {
    T_REPLY = 0x5100,
    T_FWD,   /* a puppet forwards what it received: struct fwd */
    T_READY, /* a process is set up */
    T_GO,    /* start */
    T_DONE,  /* finished; payload per test */
    T_DATA,  /* a numbered message */
    T_NEVER, /* never sent: a receive filter that matches nothing */
    T_STOP,  /* return (exit normal) */
    /* Puppet commands: struct cmd, reply struct reply (T_REPLY, same ref). */
    C_PING = 0x5200,
    C_TRAP,      /* flags = on; rc = ot_trap_exit */
    C_LINK,      /* rc = ot_link(pid) */
    C_UNLINK,    /* rc = ot_unlink(pid) */
    C_MONITOR,   /* rc = ot_monitor(pid, &val) */
    C_DEMONITOR, /* rc = ot_demonitor(ref, flags) */
    C_EXIT_PID,  /* rc = ot_exit_pid(pid, &reason) */
    C_EXIT,      /* ot_exit_reason(&reason): no reply */
    C_MBOX_LEN,  /* rc = ot_mailbox_len() */
};

/* ---- reasons ------------------------------------------------------------- */

SIG_UNUSED static ot_reason_t reason(uint32_t code)
{
    ot_reason_t r;
    memset(&r, 0, sizeof r);
    r.code = code;
    return r;
}

SIG_UNUSED static ot_reason_t reason_s(uint32_t code, const char *s)
{
    ot_reason_t r = reason(code);
    size_t n = strlen(s);
    if (n > OT_REASON_DATA_MAX) n = OT_REASON_DATA_MAX;
    r.len = (uint32_t)n;
    memcpy(r.data, s, n);
    return r;
}

SIG_UNUSED static bool reason_eq(const ot_reason_t *a, const ot_reason_t *b)
{
    return a->code == b->code && a->len == b->len && a->len <= OT_REASON_DATA_MAX &&
           memcmp(a->data, b->data, a->len) == 0;
}

SIG_UNUSED static void print_reason(const char *what, const ot_reason_t *r)
{
    fprintf(stderr, "%s: code %u (%s) len %u \"%.*s\"\n", what, r->code,
            ot_reason_name(r->code), r->len, (int)(r->len <= OT_REASON_DATA_MAX ? r->len : 0),
            (const char *)r->data);
}

/* The reason of an EXIT or DOWN message (code 0xffffffff if unreadable). */
SIG_UNUSED static ot_reason_t msg_reason(const ot_msg_t *m)
{
    ot_reason_t r = reason(0xffffffffu);
    if (ot_msg_reason(m, &r) != 0) return reason(0xffffffffu);
    return r;
}

/* ---- PRNG ---------------------------------------------------------------- */

typedef struct {
    uint64_t s;
} rng_t;

SIG_UNUSED static uint64_t rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

SIG_UNUSED static uint64_t rng_below(rng_t *r, uint64_t n)
{
    return n ? rng_next(r) % n : 0;
}

/* ---- the puppet ---------------------------------------------------------- */

struct cmd {
    ot_pid_t pid;
    ot_ref_t ref;
    uint64_t flags;
    ot_reason_t reason;
};

struct reply {
    int64_t rc;
    uint64_t val;
};

/* What a puppet received, forwarded to its owner. */
struct fwd {
    uint64_t tag;
    ot_pid_t sender;
    ot_ref_t ref;
    ot_pid_t puppet;
    ot_reason_t reason; /* for EXIT and DOWN */
};

struct puppet_arg {
    ot_pid_t owner; /* gets T_FWD; OT_PID_NONE: forward nothing */
    int trap;       /* trap exits from the start */
};

static void puppet_reply(ot_pid_t to, ot_ref_t ref, int64_t rc, uint64_t val)
{
    struct reply r = {rc, val};
    int s = ot_send_ref(to, T_REPLY, ref, &r, sizeof r);
    PCHECK(s == 0 || s == -ESRCH);
}

/* arg: a struct puppet_arg that must stay valid until the puppet has run
 * (it is copied first thing), or NULL (no owner, no trap).
 *
 * A process that dies of a signal stops where it stood, and a message it
 * had received is its own to free: so the puppet frees each message before
 * it does anything that may end it (a send, an exit signal, a link). */
SIG_UNUSED static void puppet(void *arg)
{
    struct puppet_arg a = {OT_PID_NONE, 0};
    if (arg) a = *(struct puppet_arg *)arg;
    if (a.trap) PCHECK(ot_trap_exit(true) == 0);
    for (;;) {
        ot_msg_t *m;
        int rc = ot_receive(NULL, NULL, OT_INFINITY, &m);
        PCHECK(rc == 0);
        if (rc != 0) return;
        uint64_t tag = ot_msg_tag(m);
        ot_pid_t from = ot_msg_sender(m);
        ot_ref_t mref = ot_msg_ref(m);
        struct cmd c;
        memset(&c, 0, sizeof c);
        if (tag >= C_PING && tag <= C_MBOX_LEN) {
            PCHECK(ot_msg_len(m) == sizeof c);
            if (ot_msg_len(m) == sizeof c) memcpy(&c, ot_msg_data(m), sizeof c);
        }
        struct fwd f;
        memset(&f, 0, sizeof f);
        f.tag = tag;
        f.sender = from;
        f.ref = mref;
        f.puppet = ot_self();
        if (tag == OT_TAG_EXIT || tag == OT_TAG_DOWN) PCHECK(ot_msg_reason(m, &f.reason) == 0);
        ot_msg_free(m);
        switch (tag) {
        case C_PING: puppet_reply(from, mref, 0, ot_self()); break;
        case C_TRAP: puppet_reply(from, mref, ot_trap_exit(c.flags != 0), 0); break;
        case C_LINK: puppet_reply(from, mref, ot_link(c.pid), 0); break;
        case C_UNLINK: puppet_reply(from, mref, ot_unlink(c.pid), 0); break;
        case C_MONITOR: {
            ot_ref_t ref = 0;
            int r = ot_monitor(c.pid, &ref);
            puppet_reply(from, mref, r, ref);
            break;
        }
        case C_DEMONITOR:
            puppet_reply(from, mref, ot_demonitor(c.ref, (unsigned)c.flags), 0);
            break;
        case C_EXIT_PID: {
            int r = ot_exit_pid(c.pid, &c.reason);
            puppet_reply(from, mref, r, 0);
            break;
        }
        case C_EXIT:
            ot_exit_reason(&c.reason);
            PCHECK(!"ot_exit_reason returned");
            return;
        case C_MBOX_LEN: puppet_reply(from, mref, ot_mailbox_len(), 0); break;
        case T_STOP:
        case OT_TAG_SHUTDOWN: return;
        default:
            if (a.owner != OT_PID_NONE) {
                int s = ot_send(a.owner, T_FWD, &f, sizeof f);
                PCHECK(s == 0 || s == -ESRCH);
            }
            break;
        }
    }
}

/* ---- main-thread helpers (cmocka asserts) -------------------------------- */

/* Send a command to a puppet and wait for its reply. */
SIG_UNUSED static struct reply call(ot_pid_t to, uint64_t cmd, const struct cmd *c)
{
    struct cmd z;
    memset(&z, 0, sizeof z);
    if (!c) c = &z;
    ot_ref_t ref = ot_make_ref();
    assert_int_equal(ot_send_ref(to, cmd, ref, c, sizeof *c), 0);
    ot_msg_t *m = NULL;
    int rc = ot_receive_ref(ref, 10000, &m);
    if (rc != 0) fprintf(stderr, "call %#llx: no reply (%d)\n", (unsigned long long)cmd, rc);
    assert_int_equal(rc, 0);
    assert_int_equal(ot_msg_tag(m), T_REPLY);
    struct reply r;
    assert_int_equal(ot_msg_len(m), sizeof r);
    memcpy(&r, ot_msg_data(m), sizeof r);
    ot_msg_free(m);
    return r;
}

/* Send a command without waiting for the reply (for commands the puppet may
 * not survive); returns the reference a reply would carry. */
SIG_UNUSED static ot_ref_t send_cmd(ot_pid_t to, uint64_t cmd, const struct cmd *c)
{
    ot_ref_t ref = ot_make_ref();
    assert_int_equal(ot_send_ref(to, cmd, ref, c, sizeof *c), 0);
    return ref;
}

SIG_UNUSED static int64_t call_pid(ot_pid_t to, uint64_t cmd, ot_pid_t pid)
{
    struct cmd c;
    memset(&c, 0, sizeof c);
    c.pid = pid;
    return call(to, cmd, &c).rc;
}

SIG_UNUSED static int64_t call_flags(ot_pid_t to, uint64_t cmd, uint64_t flags)
{
    struct cmd c;
    memset(&c, 0, sizeof c);
    c.flags = flags;
    return call(to, cmd, &c).rc;
}

/* Tell a puppet to send an exit signal to `pid`; returns ot_exit_pid's rc. */
SIG_UNUSED static int64_t call_exit_pid(ot_pid_t to, ot_pid_t pid, const ot_reason_t *r)
{
    struct cmd c;
    memset(&c, 0, sizeof c);
    c.pid = pid;
    c.reason = *r;
    return call(to, C_EXIT_PID, &c).rc;
}

/* Tell a puppet to end with reason *r. */
SIG_UNUSED static void tell_exit(ot_pid_t to, const ot_reason_t *r)
{
    struct cmd c;
    memset(&c, 0, sizeof c);
    c.reason = *r;
    assert_int_equal(ot_send(to, C_EXIT, &c, sizeof c), 0);
}

SIG_UNUSED static ot_pid_t spawn_puppet(ot_pid_t owner, int trap)
{
    struct puppet_arg *a = malloc(sizeof *a);
    assert_non_null(a);
    a->owner = owner;
    a->trap = trap;
    ot_pid_t p;
    assert_int_equal(ot_spawn(puppet, a, NULL, &p), 0);
    /* The puppet copies *a when it first runs: a ping proves it has. */
    assert_int_equal(call(p, C_PING, NULL).rc, 0);
    free(a);
    return p;
}

/* True if `p` answers a ping (it is alive and serving). */
SIG_UNUSED static bool puppet_alive(ot_pid_t p)
{
    struct cmd z;
    memset(&z, 0, sizeof z);
    ot_ref_t ref = ot_make_ref();
    if (ot_send_ref(p, C_PING, ref, &z, sizeof z) != 0) return false;
    ot_msg_t *m = NULL;
    if (ot_receive_ref(ref, 2000, &m) != 0) return false;
    ot_msg_free(m);
    return true;
}

struct fwd_match {
    ot_pid_t puppet;
};

static bool match_fwd_from(const ot_msg_t *m, void *arg)
{
    if (ot_msg_tag(m) != T_FWD || ot_msg_len(m) != sizeof(struct fwd)) return false;
    struct fwd f;
    memcpy(&f, ot_msg_data(m), sizeof f);
    return f.puppet == ((struct fwd_match *)arg)->puppet;
}

/* The next message puppet `p` forwarded. */
SIG_UNUSED static struct fwd expect_fwd(ot_pid_t p, int64_t timeout_ms)
{
    struct fwd_match fm = {p};
    ot_msg_t *m = NULL;
    int rc = ot_receive(match_fwd_from, &fm, timeout_ms, &m);
    if (rc != 0) fprintf(stderr, "expected a forwarded message, got %d\n", rc);
    assert_int_equal(rc, 0);
    struct fwd f;
    memcpy(&f, ot_msg_data(m), sizeof f);
    ot_msg_free(m);
    return f;
}

/* Puppet `p` forwards nothing within timeout_ms. */
SIG_UNUSED static void expect_no_fwd(ot_pid_t p, int64_t timeout_ms)
{
    struct fwd_match fm = {p};
    ot_msg_t *m = NULL;
    int rc = ot_receive(match_fwd_from, &fm, timeout_ms, &m);
    if (rc == 0) {
        struct fwd f;
        memcpy(&f, ot_msg_data(m), sizeof f);
        fprintf(stderr, "unexpected forward: tag %#llx from %#llx\n", (unsigned long long)f.tag,
                (unsigned long long)f.sender);
        print_reason("  reason", &f.reason);
        ot_msg_free(m);
    }
    assert_int_equal(rc, -ETIMEDOUT);
}

SIG_UNUSED static void assert_reason(const ot_reason_t *got, const ot_reason_t *want)
{
    if (!reason_eq(got, want)) {
        print_reason("expected", want);
        print_reason("got     ", got);
    }
    assert_true(reason_eq(got, want));
}

struct exit_match {
    ot_pid_t from;
};

static bool match_exit_from(const ot_msg_t *m, void *arg)
{
    return ot_msg_tag(m) == OT_TAG_EXIT && ot_msg_sender(m) == ((struct exit_match *)arg)->from;
}

/* The caller (main, attached: it traps) gets {EXIT, from, *want}. */
SIG_UNUSED static void expect_exit(ot_pid_t from, const ot_reason_t *want, int64_t timeout_ms)
{
    struct exit_match em = {from};
    ot_msg_t *m = NULL;
    int rc = ot_receive(match_exit_from, &em, timeout_ms, &m);
    if (rc != 0)
        fprintf(stderr, "expected {EXIT, %#llx}, got %d\n", (unsigned long long)from, rc);
    assert_int_equal(rc, 0);
    assert_int_equal(ot_msg_tag(m), OT_TAG_EXIT);
    assert_int_equal(ot_msg_sender(m), from);
    ot_reason_t r;
    assert_int_equal(ot_msg_reason(m, &r), 0);
    ot_msg_free(m);
    assert_reason(&r, want);
}

/* No {EXIT, from, _} reaches the caller within timeout_ms. */
SIG_UNUSED static void expect_no_exit(ot_pid_t from, int64_t timeout_ms)
{
    struct exit_match em = {from};
    ot_msg_t *m = NULL;
    int rc = ot_receive(match_exit_from, &em, timeout_ms, &m);
    if (rc == 0) {
        ot_reason_t r = msg_reason(m);
        print_reason("unexpected EXIT", &r);
        ot_msg_free(m);
    }
    assert_int_equal(rc, -ETIMEDOUT);
}

/* The DOWN of monitor `ref`: from `from`, with reason *want. */
SIG_UNUSED static void expect_down(ot_ref_t ref, ot_pid_t from, const ot_reason_t *want,
                                   int64_t timeout_ms)
{
    ot_msg_t *m = NULL;
    int rc = ot_receive_ref(ref, timeout_ms, &m);
    if (rc != 0)
        fprintf(stderr, "expected a DOWN for ref %#llx, got %d\n", (unsigned long long)ref, rc);
    assert_int_equal(rc, 0);
    assert_int_equal(ot_msg_tag(m), OT_TAG_DOWN);
    assert_int_equal(ot_msg_ref(m), ref);
    assert_int_equal(ot_msg_sender(m), from);
    ot_reason_t r;
    assert_int_equal(ot_msg_reason(m, &r), 0);
    ot_msg_free(m);
    assert_reason(&r, want);
}

/* Nothing with reference `ref` reaches the caller within timeout_ms. */
SIG_UNUSED static void expect_no_ref(ot_ref_t ref, int64_t timeout_ms)
{
    ot_msg_t *m = NULL;
    int rc = ot_receive_ref(ref, timeout_ms, &m);
    if (rc == 0) {
        fprintf(stderr, "unexpected message with ref %#llx, tag %#llx\n",
                (unsigned long long)ref, (unsigned long long)ot_msg_tag(m));
        ot_msg_free(m);
    }
    assert_int_equal(rc, -ETIMEDOUT);
}

/* The caller's mailbox holds nothing (after timeout_ms). */
SIG_UNUSED static void expect_empty(int64_t timeout_ms)
{
    ot_msg_t *m = NULL;
    int rc = ot_receive(NULL, NULL, timeout_ms, &m);
    if (rc == 0) {
        fprintf(stderr, "unexpected message: tag %#llx from %#llx\n",
                (unsigned long long)ot_msg_tag(m), (unsigned long long)ot_msg_sender(m));
        if (ot_msg_tag(m) == OT_TAG_EXIT || ot_msg_tag(m) == OT_TAG_DOWN) {
            ot_reason_t r = msg_reason(m);
            print_reason("  reason", &r);
        }
        ot_msg_free(m);
    }
    assert_int_equal(rc, -ETIMEDOUT);
}

/* Wait until ot_process_count() == n. */
SIG_UNUSED static void wait_count(size_t n, unsigned timeout_ms)
{
    uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000u;
    while (ot_process_count() != n && now_ns() < end)
        ot_sleep(1);
    if (ot_process_count() != n)
        fprintf(stderr, "process count %zu, expected %zu\n", ot_process_count(), n);
    assert_int_equal(ot_process_count(), n);
}

/* Wait until `pid` is gone from the process table: ot_send answers -ESRCH
 * (a process's DOWN and EXITs go out before its pid is unpublished, so
 * right after them a send may still be accepted, and dropped). */
SIG_UNUSED static void wait_gone(ot_pid_t pid)
{
    uint64_t end = now_ns() + 10ull * 1000000000u;
    while (ot_send(pid, T_NEVER, NULL, 0) != -ESRCH) {
        assert_true(now_ns() < end);
        ot_sleep(1);
    }
}

/* Run fn(arg) on a plain thread (not attached, not a process) and join it. */
SIG_UNUSED static void on_plain_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
}

/* ---- pid/ref -> index ------------------------------------------------------ */

struct pm_ent {
    uint64_t key;
    uint32_t idx;
};

typedef struct {
    struct pm_ent *e;
    size_t n;
} pidmap_t;

static int pm_cmp(const void *a, const void *b)
{
    uint64_t x = ((const struct pm_ent *)a)->key, y = ((const struct pm_ent *)b)->key;
    return x < y ? -1 : x > y;
}

/* keys[0..n) must be distinct. */
SIG_UNUSED static void pidmap_build(pidmap_t *pm, const uint64_t *keys, size_t n)
{
    pm->e = malloc((n ? n : 1) * sizeof *pm->e);
    pm->n = n;
    for (size_t i = 0; i < n; i++)
        pm->e[i] = (struct pm_ent){keys[i], (uint32_t)i};
    qsort(pm->e, n, sizeof *pm->e, pm_cmp);
}

/* Index of key, or -1. */
SIG_UNUSED static long pidmap_get(const pidmap_t *pm, uint64_t key)
{
    struct pm_ent k = {key, 0};
    struct pm_ent *f = bsearch(&k, pm->e, pm->n, sizeof *pm->e, pm_cmp);
    return f ? (long)f->idx : -1;
}

SIG_UNUSED static void pidmap_free(pidmap_t *pm)
{
    free(pm->e);
    pm->e = NULL;
    pm->n = 0;
}

/* A runtime with the main thread attached, and its end: nothing left in
 * the mailbox, no process alive, then stop. */
SIG_UNUSED static void start_attached(unsigned schedulers, ot_pid_t *me)
{
    start_rt(schedulers);
    assert_int_equal(ot_attach(me), 0);
}

SIG_UNUSED static void end_attached(void)
{
    expect_empty(0);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 20000), 0);
    assert_int_equal(ot_process_count(), 0);
    stop_rt();
}

/* Stop a puppet that should be alive, and see it end normally. */
SIG_UNUSED static void stop_puppet(ot_pid_t p, ot_ref_t mref)
{
    assert_int_equal(ot_send(p, T_STOP, NULL, 0), 0);
    ot_reason_t n = reason(OT_EXIT_NORMAL);
    expect_down(mref, p, &n, 5000);
}

#endif
