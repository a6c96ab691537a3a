/* Mailbox lanes (mailbox/lanes.h, mailbox/receive.c): a mailbox whose
 * senders on several cores contend splits into several queues, one per
 * group of senders (picked by pid), and everything Erlang promises about
 * a mailbox must still hold.
 *
 *   - lanes appear under contention (lane_threshold = 1, two and four
 *     schedulers), and never for one sender with the default threshold;
 *     ot_process_info reports them (a power of two, at least 4);
 *   - per-pair order, nothing lost or duplicated, across the switch from
 *     the one queue to lanes (a backlog in the main queue while later
 *     messages go to lanes) and with lanes on, for a process and for the
 *     attached main thread. The senders hop from scheduler to scheduler
 *     (bouncer, hop_to): a lane picked by anything but the pid would then
 *     reorder one sender's messages;
 *   - a DOWN or a trapped EXIT comes after all of its sender's messages,
 *     exactly once;
 *   - selective receive and the reference trick with a backlog in lanes;
 *   - ot_process_info's message_queue_len counts what is still in lanes;
 *   - a process dies with full lanes: every message is freed (ot_send_buf
 *     destructors counted; LSan sees those buffers, not pooled envelopes),
 *     monitor and link requests arriving before, as or after it dies are
 *     answered exactly once (DOWN / EXIT, its reason or noproc);
 *   - ot_mailbox_len and receive with timeout 0 with lanes on;
 *   - a receiver going to wait while a message lands in a lane is woken;
 *   - a pull (ot_mailbox_len, ot_make_ref, ot_process_info, a signal at a
 *     scheduling point) that meets a main-queue backlog from several
 *     schedulers while senders keep sending installs lanes once and loses
 *     nothing (the bug fixed in 032a147).
 *
 * OTTER_TEST_FILTER=pattern runs some of the tests (cmocka's filter). */
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
#include "sched/internal.h"
#include "tests/harness.h"
#include "tests/sigtest.h"

/* Tags of this test (sigtest.h has T_DATA, T_DONE, T_GO, T_STOP, ...). */
enum { T_WARM = 0x5300, T_ASK, T_HOP };

#define MAXS 16        /* senders to one receiver, at most */
#define WARM_SENDERS 4 /* senders of a round that forces lanes */
#define WARM_ROUNDS 50 /* rounds before giving up on lanes */
#define RECV_MS 30000  /* a receive that should succeed */
#define DONE_MS 180000 /* the main thread waiting for a receiver's verdict */

/* One numbered message: sender number k, sequence number seq. */
struct item {
    uint32_t k;
    uint32_t pad;
    int64_t seq;
};

/* ---- shared state of the running test ------------------------------------ */

/* Processes that outlive their spawner's stack frame point here, never into
 * a process's stack. Reset by start_lanes. */
static struct {
    atomic_int go;          /* senders start when set */
    atomic_int done;        /* senders finished */
    atomic_int ready;       /* a holder process has its lanes */
    atomic_int release;     /* a holder process may receive */
    atomic_uint lanes;      /* what the holder saw */
    atomic_long sent[MAXS]; /* messages accepted per sender */
    atomic_long bufs_made;  /* ot_send_buf buffers handed over */
    atomic_long bufs_freed; /* ... and freed by the runtime */
    ot_pid_t pids[MAXS];    /* the senders */
    struct sender *args;    /* their arguments (heap) */
    /* Hopping (see bouncer): senders made by spawn_senders hop every
     * hop_every messages (0: never) to the next of nbouncers schedulers. */
    long hop_every;
    long pace; /* senders made by spawn_senders yield every pace messages */
    unsigned nbouncers;
    atomic_int bouncers_stop;
    atomic_uint hop_req[MAXS]; /* sender k asks bouncer j - 1 to wake it */
    atomic_long hops, landed;  /* hops made, and those that landed where asked */
    atomic_int requested;      /* requests sent (late_requests_answered) */
    atomic_int dead;           /* the holder is known dead */
    atomic_long acked;         /* wakeup_with_lanes: messages the receiver has taken */
    atomic_int ping_stuck;     /* ... and the pinger waited in vain */
} g_sh;

static void buf_free(void *b)
{
    atomic_fetch_add(&g_sh.bufs_freed, 1);
    free(b);
}

/* ---- senders ---------------------------------------------------------------- */

struct sender {
    ot_pid_t to;
    uint64_t tag;
    uint32_t k;
    long n;             /* messages to send; -1: until `to` is gone */
    int use_buf;        /* every other message with ot_send_buf */
    int track;          /* count in g_sh.sent[k] and g_sh.done */
    int wait_go;        /* wait for g_sh.go */
    uint32_t exit_code; /* 0: return; else exit with reason_s(exit_code, "lane sender") */
    long hop;           /* move to another scheduler every hop messages (0: never) */
    long pace;          /* yield every pace messages (0: only when the turn is spent) */
};

/* Move the calling sender k to scheduler j. A process woken by a message
 * from a process is queued on the waker's scheduler; the bouncer of
 * scheduler j only yields, so it stays there, and its T_HOP brings us
 * over. This makes one sender's stream come from several schedulers. */
static void hop_to(uint32_t k, unsigned j)
{
    atomic_store_explicit(&g_sh.hop_req[k], j + 1, memory_order_release);
    uint64_t tag = T_HOP;
    ot_msg_t *m;
    int rc = ot_receive(match_tag, &tag, RECV_MS, &m);
    PCHECK(rc == 0);
    if (rc) return;
    ot_msg_free(m);
    atomic_fetch_add(&g_sh.hops, 1);
    ot_process_info_t in;
    if (ot_process_info(ot_self(), &in) == 0 && in.scheduler == (int)j)
        atomic_fetch_add(&g_sh.landed, 1);
}

static void bouncer(void *arg)
{
    unsigned j = (unsigned)(uintptr_t)arg;
    while (!atomic_load_explicit(&g_sh.bouncers_stop, memory_order_acquire)) {
        for (unsigned k = 0; k < MAXS; k++) {
            unsigned v = j + 1;
            if (atomic_load_explicit(&g_sh.hop_req[k], memory_order_relaxed) == v &&
                atomic_compare_exchange_strong(&g_sh.hop_req[k], &v, 0))
                PCHECK(ot_send(g_sh.pids[k], T_HOP, NULL, 0) == 0);
        }
        ot_yield();
    }
}

/* Bouncers on schedulers 0..nsched-1; senders spawned after this hop
 * every `every` messages. */
static void start_bouncers(unsigned nsched, long every)
{
    g_sh.nbouncers = nsched;
    g_sh.hop_every = every;
    for (unsigned j = 0; j < nsched; j++) {
        ot_spawn_opts_t o;
        ot_spawn_opts_init(&o);
        o.scheduler = (int)j;
        PCHECK(ot_spawn(bouncer, (void *)(uintptr_t)j, &o, NULL) == 0);
    }
}

static void stop_bouncers(void)
{
    atomic_store_explicit(&g_sh.bouncers_stop, 1, memory_order_release);
    fprintf(stderr, "hops: %ld, %ld landed on the scheduler asked\n", atomic_load(&g_sh.hops),
            atomic_load(&g_sh.landed));
}

static ot_reason_t sender_reason(uint32_t code)
{
    return reason_s(code, "lane sender");
}

static void sender_proc(void *arg)
{
    struct sender a = *(struct sender *)arg; /* the arg may go away */
    if (a.wait_go)
        while (!atomic_load_explicit(&g_sh.go, memory_order_acquire))
            ot_yield();
    uint64_t deadline = now_ns() + 60ull * 1000000000u;
    for (long i = 0; a.n < 0 || i < a.n; i++) {
        struct item it = {a.k, 0, i};
        int rc;
        if (a.use_buf && (i & 1)) {
            struct item *b = malloc(sizeof *b);
            PCHECK(b != NULL);
            if (!b) break;
            *b = it;
            atomic_fetch_add(&g_sh.bufs_made, 1);
            rc = ot_send_buf(a.to, a.tag, 0, b, sizeof *b, buf_free);
        } else {
            rc = ot_send(a.to, a.tag, &it, sizeof it);
        }
        if (rc == -ESRCH && a.n < 0) break; /* the receiver is gone: done */
        if (rc != 0) {
            fprintf(stderr, "sender %u: send %ld: %d\n", a.k, i, rc);
            PCHECK(rc == 0);
            break;
        }
        if (a.track) atomic_store_explicit(&g_sh.sent[a.k], i + 1, memory_order_release);
        if (a.pace && (i + 1) % a.pace == 0) ot_yield();
        if (a.hop && (i + 1) % a.hop == 0 && i + 1 < a.n)
            hop_to(a.k, (unsigned)((i + 1) / a.hop) % g_sh.nbouncers);
        if (a.n < 0 && (i & 4095) == 0 && now_ns() > deadline) {
            PCHECK(!"the receiver never died");
            break;
        }
    }
    if (a.track) atomic_fetch_add(&g_sh.done, 1);
    if (a.exit_code) {
        ot_reason_t r = sender_reason(a.exit_code);
        ot_exit_reason(&r);
    }
}

static int spawn_on(ot_entry_fn fn, void *arg, int sched, ot_pid_t *pid)
{
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.scheduler = sched;
    return ot_spawn(fn, arg, &o, pid);
}

/* Spawn ns tracked senders of n messages each (tag T_DATA) to `to`, sender i
 * on scheduler i % nsched; they wait for g_sh.go when wait_go. From a
 * process or the main thread; the arguments live in g_sh.args. */
static int spawn_senders(ot_pid_t to, unsigned ns, unsigned nsched, long n, int wait_go,
                         uint32_t exit_base, int use_buf)
{
    for (unsigned i = 0; i < ns; i++) {
        g_sh.args[i] = (struct sender){.to = to,
                                       .tag = T_DATA,
                                       .k = i,
                                       .n = n,
                                       .use_buf = use_buf,
                                       .track = 1,
                                       .wait_go = wait_go,
                                       .exit_code = exit_base ? exit_base + i : 0,
                                       .hop = g_sh.hop_every,
                                       .pace = g_sh.pace};
        int rc = spawn_on(sender_proc, &g_sh.args[i], (int)(i % nsched), &g_sh.pids[i]);
        if (rc != 0) return rc;
    }
    return 0;
}

static long min_sent(unsigned ns)
{
    long m = -1;
    for (unsigned i = 0; i < ns; i++) {
        long s = atomic_load_explicit(&g_sh.sent[i], memory_order_acquire);
        if (m < 0 || s < m) m = s;
    }
    return m;
}

/* Sleep (a process or the main thread) until cond holds; false after ms. */
#define WAIT_UNTIL(cond, ms)                                \
    ({                                                      \
        uint64_t end_ = now_ns() + (uint64_t)(ms)*1000000u; \
        bool ok_;                                           \
        while (!(ok_ = (cond)) && now_ns() < end_)          \
            ot_sleep(1);                                    \
        ok_;                                                \
    })

/* The same, yielding instead of sleeping: back as soon as cond holds (a
 * process yields; the attached thread yields its CPU). */
#define SPIN_UNTIL(cond, ms)                                \
    ({                                                      \
        uint64_t end_ = now_ns() + (uint64_t)(ms)*1000000u; \
        bool ok_;                                           \
        while (!(ok_ = (cond)) && now_ns() < end_)          \
            if (ot_yield() != 0) sched_yield();             \
        ok_;                                                \
    })

/* ---- checking numbered streams ----------------------------------------------- */

struct tally {
    int64_t next[MAXS]; /* next expected seq per sender */
    int64_t got, bad;
};

/* m must be sender k's message number next[k], from pids[k] (pids NULL: any
 * sender); counts and prints (the first few) errors. */
static void tally_msg(struct tally *t, const ot_msg_t *m, const ot_pid_t *pids, unsigned ns)
{
    struct item it = {UINT32_MAX, 0, -1};
    bool ok = ot_msg_tag(m) == T_DATA && ot_msg_len(m) == sizeof it;
    if (ok) memcpy(&it, ot_msg_data(m), sizeof it);
    ok =
        ok && it.k < ns && (!pids || ot_msg_sender(m) == pids[it.k]) && it.seq == t->next[it.k];
    if (!ok) {
        if (t->bad < 5)
            fprintf(stderr, "tally: tag %#llx len %zu sender %u seq %lld (expected %lld)\n",
                    (unsigned long long)ot_msg_tag(m), ot_msg_len(m), it.k, (long long)it.seq,
                    it.k < ns ? (long long)t->next[it.k] : -1ll);
        t->bad++;
    }
    if (it.k < ns && it.seq >= 0) t->next[it.k] = it.seq + 1;
    t->got++;
}

/* Senders [from, to) of the tally short of n messages. */
static int64_t incomplete(const struct tally *t, unsigned from, unsigned to, long n)
{
    int64_t c = 0;
    for (unsigned i = from; i < to; i++)
        if (t->next[i] != n) {
            fprintf(stderr, "sender %u: %lld of %ld messages\n", i, (long long)t->next[i], n);
            c++;
        }
    return c;
}

/* Receive `total` numbered messages (match NULL) into t; false on a timeout. */
static bool receive_all(struct tally *t, int64_t total, const ot_pid_t *pids, unsigned ns,
                        int64_t timeout_ms)
{
    for (int64_t i = 0; i < total; i++) {
        ot_msg_t *m;
        int rc = ot_receive(NULL, NULL, timeout_ms, &m);
        if (rc != 0) {
            fprintf(stderr, "receive_all: %lld of %lld: %d\n", (long long)i, (long long)total,
                    rc);
            return false;
        }
        tally_msg(t, m, pids, ns);
        ot_msg_free(m);
    }
    return true;
}

/* Nothing more arrives within ms. */
static bool nothing_more(int64_t ms)
{
    ot_msg_t *m;
    int rc = ot_receive(NULL, NULL, ms, &m);
    if (rc == 0) {
        fprintf(stderr, "unexpected message: tag %#llx from %#llx\n",
                (unsigned long long)ot_msg_tag(m), (unsigned long long)ot_msg_sender(m));
        ot_msg_free(m);
    }
    return rc == -ETIMEDOUT;
}

static unsigned my_lanes(void)
{
    ot_process_info_t in;
    if (ot_process_info(ot_self(), &in) != 0) return 0;
    return in.mailbox_lanes;
}

static bool pow2(unsigned x)
{
    return x && !(x & (x - 1));
}

/* Split the caller's own mailbox now, as the receive path does once it has
 * counted enough contention (and from the same place: the receiver, between
 * receives). For the tests of what lanes promise, on a machine so loaded
 * that the senders' cores never run at once: there is no contention then,
 * and the mailbox rightly stays whole. Returns the lanes. */
static unsigned split_now(void)
{
    ot__proc_t *p = ot__self();
    if (!p->lanes) p->lanes = ot__lanes_install(&p->mbox, ot__rt->nlanes);
    return p->lanes ? ot__rt->nlanes : 0;
}

/* ---- forcing lanes -------------------------------------------------------------- */

/* In the receiver (a process or the attached thread): rounds of
 * WARM_SENDERS senders on all schedulers, each sending as fast as it can,
 * all received as fast as we can, until the mailbox has lanes. From round
 * `assist` on (0: never), the receiver first sleeps a little, so that a
 * backlog from all schedulers builds up (for a runtime with the default
 * lane_threshold, or an unlucky run). Returns the lanes and, in *rounds,
 * the rounds it took; with no lanes after the last round, 0 when `assist`
 * is 0 (the test asks whether contention makes them), else the mailbox is
 * split by hand. The mailbox is empty on return. */
static unsigned force_lanes(unsigned nsched, int *rounds, int assist)
{
    const long n = g_san ? 1000 : 5000;
    struct sender ws[WARM_SENDERS];
    for (int r = 1; r <= WARM_ROUNDS; r++) {
        for (unsigned i = 0; i < WARM_SENDERS; i++) {
            ws[i] = (struct sender){.to = ot_self(), .tag = T_WARM, .k = i, .n = n};
            int rc = spawn_on(sender_proc, &ws[i], (int)(i % nsched), NULL);
            PCHECK(rc == 0);
            if (rc) return 0;
        }
        if (assist && r >= assist) ot_sleep(5);
        uint64_t warm = T_WARM;
        /* Every message received: each sender has copied its ws[i]. */
        for (long j = 0; j < WARM_SENDERS * n; j++) {
            ot_msg_t *m;
            int rc = ot_receive(match_tag, &warm, RECV_MS, &m);
            PCHECK(rc == 0);
            if (rc) return 0;
            ot_msg_free(m);
        }
        unsigned l = my_lanes();
        if (l) {
            if (rounds) *rounds = r;
            return l;
        }
    }
    if (rounds) *rounds = WARM_ROUNDS;
    /* Asked for lanes, not whether contention makes them: on a machine too
     * loaded for the senders' cores to run at once there is none. */
    return assist ? split_now() : 0;
}

/* ---- runtime ------------------------------------------------------------------- */

static void start_lanes(unsigned nsched, unsigned threshold, ot_pid_t *me)
{
    free(g_sh.args);
    memset(&g_sh, 0, sizeof g_sh);
    g_sh.args = calloc(MAXS, sizeof *g_sh.args);
    assert_non_null(g_sh.args);
    ot_config_t cfg;
    ot_config_init(&cfg);
    cfg.schedulers = nsched;
    cfg.lane_threshold = threshold;
    cfg.stop_grace_ms = 200;
    start_cfg(&cfg);
    assert_int_equal(ot_attach(me), 0);
}

static int lanes_teardown(void **state)
{
    teardown(state);
    free(g_sh.args);
    g_sh.args = NULL;
    return 0;
}

/* The main thread: a receiver's verdict, n int64 values. */
static void wait_result(int64_t *res, size_t n)
{
    uint64_t done = T_DONE;
    ot_msg_t *m;
    int rc = ot_receive(match_tag, &done, DONE_MS, &m);
    if (rc != 0) fprintf(stderr, "no verdict from the receiver: %d\n", rc);
    assert_int_equal(rc, 0);
    assert_int_equal(ot_msg_len(m), n * sizeof *res);
    memcpy(res, ot_msg_data(m), n * sizeof *res);
    ot_msg_free(m);
}

static void send_result(ot_pid_t to, const int64_t *res, size_t n)
{
    PCHECK(ot_send(to, T_DONE, res, n * sizeof *res) == 0);
}

static void wait_stop(void)
{
    uint64_t stop = T_STOP;
    ot_msg_t *m;
    int rc = ot_receive(match_tag, &stop, DONE_MS, &m);
    PCHECK(rc == 0);
    if (rc == 0) ot_msg_free(m);
}

/* ---- 1. lanes appear under contention ----------------------------------------- */

struct probe_arg {
    ot_pid_t main;
    unsigned nsched;
};

static void probe_proc(void *arg)
{
    struct probe_arg a = *(struct probe_arg *)arg;
    int rounds = 0;
    unsigned l = force_lanes(a.nsched, &rounds, 0);
    int64_t res[2] = {l, rounds};
    send_result(a.main, res, 2);
    wait_stop();
}

static void lanes_appear(unsigned nsched)
{
    ot_pid_t me, r;
    start_lanes(nsched, 1, &me);
    struct probe_arg a = {me, nsched};
    assert_int_equal(ot_spawn(probe_proc, &a, NULL, &r), 0);
    int64_t res[2];
    wait_result(res, 2);
    fprintf(stderr, "%u schedulers: %lld lanes after %lld round(s)\n", nsched,
            (long long)res[0], (long long)res[1]);
    assert_true(res[0] > 0); /* lanes never appeared */
    assert_true(pow2((unsigned)res[0]));
    assert_true(res[0] >= 4 && res[0] <= 64);
    /* Asked from outside, it says the same. */
    ot_process_info_t in;
    assert_int_equal(ot_process_info(r, &in), 0);
    assert_int_equal(in.mailbox_lanes, (unsigned)res[0]);
    assert_int_equal(in.message_queue_len, 0);
    assert_int_equal(ot_send(r, T_STOP, NULL, 0), 0);
    end_attached();
}

static void lanes_appear_2_schedulers(void **state)
{
    (void)state;
    lanes_appear(2);
}

static void lanes_appear_4_schedulers(void **state)
{
    (void)state;
    lanes_appear(4);
}

/* One sender, the default threshold: a million messages, never lanes. */
struct one_arg {
    ot_pid_t main;
    long n;
};

static void one_sender_receiver(void *arg)
{
    struct one_arg a = *(struct one_arg *)arg;
    ot_process_info_t in;
    PCHECK(ot_process_info(ot_self(), &in) == 0);
    struct sender s = {.to = ot_self(), .tag = T_DATA, .k = 0, .n = a.n};
    ot_pid_t sp;
    PCHECK(spawn_on(sender_proc, &s, (in.scheduler + 1) % 2, &sp) == 0);
    struct tally t;
    memset(&t, 0, sizeof t);
    bool ok = receive_all(&t, a.n, &sp, 1, RECV_MS);
    int64_t res[4] = {ok, t.bad, incomplete(&t, 0, 1, a.n), my_lanes()};
    send_result(a.main, res, 4);
    wait_stop();
}

static void one_sender_never_splits(void **state)
{
    (void)state;
    ot_pid_t me, r;
    start_lanes(2, 0, &me);
    struct one_arg a = {me, scaled(1000000)};
    assert_int_equal(ot_spawn(one_sender_receiver, &a, NULL, &r), 0);
    int64_t res[4];
    wait_result(res, 4);
    assert_int_equal(res[0], 1);
    assert_int_equal(res[1], 0);
    assert_int_equal(res[2], 0);
    assert_int_equal(res[3], 0); /* one sender split the mailbox */
    ot_process_info_t in;
    assert_int_equal(ot_process_info(r, &in), 0);
    assert_int_equal(in.mailbox_lanes, 0);
    assert_int_equal(ot_send(r, T_STOP, NULL, 0), 0);
    end_attached();
}

/* A crowd of processes that send once each, from both schedulers, into a
 * backlog (spawn_exit's pattern), even at lane_threshold = 1: lanes are
 * picked by sender and would not spread such senders, so the mailbox must
 * not split (it did before the check asked for senders that keep
 * sending). */
static void crowd_child(void *arg)
{
    (void)ot_send((ot_pid_t)(uintptr_t)arg, T_DATA, NULL, 0);
}

static void crowd_receiver(void *arg)
{
    struct one_arg a = *(struct one_arg *)arg;
    ot_pid_t me = ot_self();
    int64_t got = 0;
    for (long i = 0; i < a.n; i++)
        PCHECK(ot_spawn(crowd_child, (void *)(uintptr_t)me, NULL, NULL) == 0);
    for (long i = 0; i < a.n; i++) {
        ot_msg_t *m;
        if (ot_receive(NULL, NULL, RECV_MS, &m) != 0) break;
        got += ot_msg_tag(m) == T_DATA;
        ot_msg_free(m);
    }
    int64_t res[2] = {got, my_lanes()};
    send_result(a.main, res, 2);
    wait_stop();
}

static void crowd_never_splits(void **state)
{
    (void)state;
    ot_pid_t me, r;
    start_lanes(2, 1, &me);
    struct one_arg a = {me, scaled(200000)};
    assert_int_equal(ot_spawn(crowd_receiver, &a, NULL, &r), 0);
    int64_t res[2];
    wait_result(res, 2);
    assert_int_equal(res[0], a.n);
    assert_int_equal(res[1], 0); /* a crowd split the mailbox */
    assert_int_equal(ot_send(r, T_STOP, NULL, 0), 0);
    end_attached();
}

/* ---- 2. per-pair order across the switch ---------------------------------------- */

struct order_arg {
    ot_pid_t main;
    unsigned nsched, ns;
    long k;
    int delay; /* let a backlog build in the main queue before receiving */
    int force; /* split the mailbox ourselves (after the backlog, if any) */
};

/* Receive ns * k numbered messages; the verdict: {received all, errors,
 * incomplete senders, lanes}. Runs in a process or the attached thread. */
static void order_run(const struct order_arg *a, int64_t *res)
{
    PCHECK(spawn_senders(ot_self(), a->ns, a->nsched, a->k, 1, 0, 0) == 0);
    atomic_store_explicit(&g_sh.go, 1, memory_order_release);
    if (a->delay) {
        /* A backlog from every sender, hence from every scheduler, sits in
         * the one queue: lanes come at the first messages taken, and the
         * rest of the stream goes to them while the backlog is taken. */
        PCHECK(SPIN_UNTIL(min_sent(a->ns) >= a->k / 8, 60000));
        /* (Not asked here whether it has lanes yet: ot_process_info would
         * pull the whole backlog into the save queue, and the receives
         * would no longer meet it in the main queue.) */
    }
    if (a->force) split_now();
    struct tally tt, *t = &tt;
    memset(t, 0, sizeof *t);
    bool ok = receive_all(t, (int64_t)a->ns * a->k, g_sh.pids, a->ns, RECV_MS);
    res[0] = ok && nothing_more(20);
    res[1] = t->bad;
    res[2] = incomplete(t, 0, a->ns, a->k);
    res[3] = my_lanes();
}

static void order_receiver(void *arg)
{
    struct order_arg a = *(struct order_arg *)arg;
    int64_t res[4];
    order_run(&a, res);
    send_result(a.main, res, 4);
}

static void check_order(const int64_t *res)
{
    assert_int_equal(res[0], 1); /* all received, nothing more */
    assert_int_equal(res[1], 0); /* each sender's exactly 0, 1, 2, ... */
    assert_int_equal(res[2], 0); /* every sender complete */
    assert_true(res[3] > 0);     /* the switch happened */
}

/* A run in which the senders never contended (a loaded machine) proves
 * nothing about the switch: run again with the mailbox split by hand. */
static bool no_switch(const int64_t *res, struct order_arg *a)
{
    if (res[3] || a->force) return false;
    printf("no contention in this run: again, with the mailbox split by the receiver\n");
    a->force = 1;
    atomic_store(&g_sh.go, 0);
    atomic_store(&g_sh.done, 0);
    for (unsigned i = 0; i < a->ns; i++)
        atomic_store(&g_sh.sent[i], 0);
    return true;
}

static void order_process(int delay)
{
    ot_pid_t me;
    start_lanes(2, 1, &me);
    struct order_arg a = {me, 2, 6, scaled(200000), delay, 0};
    start_bouncers(2, 1000);
    int64_t res[4];
    do {
        assert_int_equal(ot_spawn(order_receiver, &a, NULL, NULL), 0);
        wait_result(res, 4);
    } while (no_switch(res, &a));
    stop_bouncers();
    check_order(res);
    end_attached();
}

static void order_across_switch_backlog(void **state)
{
    (void)state;
    order_process(1);
}

static void order_across_switch_streaming(void **state)
{
    (void)state;
    order_process(0);
}

/* The attached main thread as the receiver, four schedulers. */
static void order_attached_receiver(void **state)
{
    (void)state;
    ot_pid_t me;
    start_lanes(4, 1, &me);
    struct order_arg a = {me, 4, 8, scaled(60000), 1, 0};
    start_bouncers(4, 1000);
    int64_t res[4];
    do
        order_run(&a, res);
    while (no_switch(res, &a));
    stop_bouncers();
    check_order(res);
    assert_int_equal(atomic_load(&g_fail), 0);
    end_attached();
}

/* ---- 3. DOWN and EXIT keep their place ----------------------------------------- */

struct sig_arg {
    ot_pid_t main;
    unsigned nsched, ns;
    long k;
    int links; /* trap exits and link, instead of monitoring */
};

#define SIG_EXIT_BASE (OT_EXIT_USER + 100)

static void sig_receiver(void *arg)
{
    struct sig_arg a = *(struct sig_arg *)arg;
    int64_t res[5] = {0, 0, 0, 0, 0}; /* ok, errors, incomplete, ends, lanes */
    unsigned l = force_lanes(a.nsched, NULL, 2);
    res[4] = l;
    if (a.links) PCHECK(ot_trap_exit(true) == 0);
    PCHECK(spawn_senders(ot_self(), a.ns, a.nsched, a.k, 1, SIG_EXIT_BASE, 0) == 0);
    ot_ref_t refs[MAXS] = {0};
    for (unsigned i = 0; i < a.ns; i++)
        PCHECK((a.links ? ot_link(g_sh.pids[i]) : ot_monitor(g_sh.pids[i], &refs[i])) == 0);
    atomic_store_explicit(&g_sh.go, 1, memory_order_release);
    struct tally t;
    memset(&t, 0, sizeof t);
    int ended[MAXS] = {0};
    unsigned ends = 0;
    const uint64_t end_tag = a.links ? OT_TAG_EXIT : OT_TAG_DOWN;
    while (ends < a.ns) {
        ot_msg_t *m;
        int rc = ot_receive(NULL, NULL, RECV_MS, &m);
        if (rc != 0) {
            fprintf(stderr, "sig_receiver: %u ends of %u: %d\n", ends, a.ns, rc);
            break;
        }
        uint64_t tag = ot_msg_tag(m);
        if (tag == T_DATA) {
            struct item it = {UINT32_MAX, 0, -1};
            if (ot_msg_len(m) == sizeof it) memcpy(&it, ot_msg_data(m), sizeof it);
            if (it.k < a.ns && ended[it.k]) {
                fprintf(stderr, "sender %u: message %lld after its end\n", it.k,
                        (long long)it.seq);
                t.bad++;
            }
            tally_msg(&t, m, g_sh.pids, a.ns);
        } else if (tag == end_tag) {
            unsigned i = 0;
            while (i < a.ns &&
                   (a.links ? g_sh.pids[i] != ot_msg_sender(m) : refs[i] != ot_msg_ref(m)))
                i++;
            ot_reason_t want = sender_reason(SIG_EXIT_BASE + i), got = msg_reason(m);
            if (i == a.ns || ot_msg_sender(m) != g_sh.pids[i] || ended[i] ||
                !reason_eq(&got, &want) || t.next[i] != a.k) {
                fprintf(stderr, "sender %u: end %#llx after %lld of %ld messages (ended %d)\n",
                        i, (unsigned long long)tag, i < a.ns ? (long long)t.next[i] : -1ll, a.k,
                        i < a.ns ? ended[i] : -1);
                print_reason("  reason", &got);
                t.bad++;
            }
            if (i < a.ns && !ended[i]) {
                ended[i] = 1;
                ends++;
            }
        } else {
            fprintf(stderr, "sig_receiver: unexpected tag %#llx\n", (unsigned long long)tag);
            t.bad++;
        }
        ot_msg_free(m);
    }
    res[0] = ends == a.ns && nothing_more(50);
    res[1] = t.bad;
    res[2] = incomplete(&t, 0, a.ns, a.k);
    res[3] = ends;
    send_result(a.main, res, 5);
}

static void signals_keep_place(int links)
{
    ot_pid_t me;
    start_lanes(2, 1, &me);
    struct sig_arg a = {me, 2, 6, scaled(50000), links};
    start_bouncers(2, 500);
    assert_int_equal(ot_spawn(sig_receiver, &a, NULL, NULL), 0);
    int64_t res[5];
    wait_result(res, 5);
    stop_bouncers();
    assert_true(res[4] > 0);     /* lanes were on */
    assert_int_equal(res[3], 6); /* every end seen, exactly once */
    assert_int_equal(res[1], 0); /* no message after its sender's end, order kept */
    assert_int_equal(res[2], 0); /* all messages before the end */
    assert_int_equal(res[0], 1); /* nothing more */
    end_attached();
}

static void down_after_messages(void **state)
{
    (void)state;
    signals_keep_place(0);
}

static void exit_after_messages(void **state)
{
    (void)state;
    signals_keep_place(1);
}

/* ---- 4. selective receive, the reference trick ------------------------------------ */

static bool match_k(const ot_msg_t *m, void *arg)
{
    struct item it;
    if (ot_msg_tag(m) != T_DATA || ot_msg_len(m) != sizeof it) return false;
    memcpy(&it, ot_msg_data(m), sizeof it);
    return it.k == *(const uint32_t *)arg;
}

/* Take the n messages of sender k with a filter that skips everyone else's. */
static void take_only(struct tally *t, uint32_t k, long n, unsigned ns)
{
    for (long i = 0; i < n; i++) {
        ot_msg_t *m;
        int rc = ot_receive(match_k, &k, RECV_MS, &m);
        if (rc != 0) {
            fprintf(stderr, "take_only %u: %ld of %ld: %d\n", k, i, n, rc);
            t->bad++;
            return;
        }
        tally_msg(t, m, g_sh.pids, ns);
        ot_msg_free(m);
    }
}

struct sel_arg {
    ot_pid_t main;
    unsigned nsched, ns;
    long k;
};

static void selective_receiver(void *arg)
{
    struct sel_arg a = *(struct sel_arg *)arg;
    int64_t res[6] = {0};
    res[5] = force_lanes(a.nsched, NULL, 2);
    PCHECK(spawn_senders(ot_self(), a.ns, a.nsched, a.k, 1, 0, 0) == 0);
    atomic_store_explicit(&g_sh.go, 1, memory_order_release);
    struct tally tt, *t = &tt;
    memset(t, 0, sizeof *t);
    /* Sender 1 only, while the others pile up. */
    take_only(t, 1, a.k, a.ns);
    PCHECK(WAIT_UNTIL(atomic_load(&g_sh.done) == (int)a.ns, 60000));
    res[1] = ot_mailbox_len(); /* the others', all of them */
    /* Sender 3 only. */
    take_only(t, 3, a.k, a.ns);
    res[2] = ot_mailbox_len();
    /* The rest, in each sender's order. */
    bool ok = receive_all(t, (int64_t)(a.ns - 2) * a.k, g_sh.pids, a.ns, RECV_MS);
    ot_msg_t *m;
    res[0] = ok && ot_receive(NULL, NULL, 0, &m) == -ETIMEDOUT && ot_mailbox_len() == 0;
    res[3] = t->bad;
    res[4] = incomplete(t, 0, a.ns, a.k);
    send_result(a.main, res, 6);
}

static void selective_receive_with_lanes(void **state)
{
    (void)state;
    ot_pid_t me;
    start_lanes(2, 1, &me);
    const long k = g_san ? 500 : 2500;
    struct sel_arg a = {me, 2, 4, k};
    assert_int_equal(ot_spawn(selective_receiver, &a, NULL, NULL), 0);
    int64_t res[6];
    wait_result(res, 6);
    assert_true(res[5] > 0);
    assert_int_equal(res[1], 3 * k); /* skipped messages kept */
    assert_int_equal(res[2], 2 * k);
    assert_int_equal(res[3], 0); /* per-sender order, right senders */
    assert_int_equal(res[4], 0); /* nothing lost */
    assert_int_equal(res[0], 1); /* nothing more, mailbox empty */
    end_attached();
}

/* Replies to {T_ASK, ref} with {T_REPLY, ref}, until T_STOP. */
static void replier(void *arg)
{
    (void)arg;
    for (;;) {
        ot_msg_t *m;
        int rc = ot_receive(NULL, NULL, DONE_MS, &m);
        PCHECK(rc == 0);
        if (rc) return;
        uint64_t tag = ot_msg_tag(m);
        ot_pid_t from = ot_msg_sender(m);
        ot_ref_t ref = 0;
        if (tag == T_ASK && ot_msg_len(m) == sizeof ref)
            memcpy(&ref, ot_msg_data(m), sizeof ref);
        ot_msg_free(m);
        if (tag == T_STOP) return;
        PCHECK(tag == T_ASK && ref != 0);
        PCHECK(ot_send_ref(from, T_REPLY, ref, NULL, 0) == 0);
    }
}

/* ask q for a reply under a fresh ref; true when it comes, from q. */
static bool ask_and_wait(ot_pid_t q)
{
    ot_ref_t ref = ot_make_ref();
    PCHECK(ot_send(q, T_ASK, &ref, sizeof ref) == 0);
    ot_msg_t *m;
    int rc = ot_receive_ref(ref, RECV_MS, &m);
    if (rc != 0) {
        fprintf(stderr, "reply under ref %#llx: %d\n", (unsigned long long)ref, rc);
        return false;
    }
    bool ok = ot_msg_tag(m) == T_REPLY && ot_msg_ref(m) == ref && ot_msg_sender(m) == q;
    ot_msg_free(m);
    return ok;
}

static void ref_receiver(void *arg)
{
    struct sel_arg a = *(struct sel_arg *)arg;
    int64_t res[7] = {0};
    res[6] = force_lanes(a.nsched, NULL, 2);
    ot_pid_t q;
    PCHECK(spawn_on(replier, NULL, 1, &q) == 0);
    PCHECK(spawn_senders(ot_self(), a.ns, a.nsched, a.k, 1, 0, 0) == 0);
    atomic_store_explicit(&g_sh.go, 1, memory_order_release);
    /* The senders are under way: their backlog is in the lanes, and more
     * comes while the reply is awaited. */
    PCHECK(WAIT_UNTIL(min_sent(a.ns) >= a.k / 4, 60000));
    res[1] = ask_and_wait(q);
    /* All sent, nothing received: the reply is found after the mark, without
     * looking at the backlog (each message looked at is a reduction). */
    PCHECK(WAIT_UNTIL(atomic_load(&g_sh.done) == (int)a.ns, 60000));
    ot_process_info_t in0, in1;
    PCHECK(ot_process_info(ot_self(), &in0) == 0);
    res[2] = ask_and_wait(q);
    PCHECK(ot_process_info(ot_self(), &in1) == 0);
    res[3] = (int64_t)(in1.reductions - in0.reductions);
    res[4] = (int64_t)in1.message_queue_len;
    /* The backlog is intact and in order. */
    struct tally tt, *t = &tt;
    memset(t, 0, sizeof *t);
    bool ok = receive_all(t, (int64_t)a.ns * a.k, g_sh.pids, a.ns, RECV_MS);
    res[0] = ok && nothing_more(20);
    res[5] = t->bad + incomplete(t, 0, a.ns, a.k);
    PCHECK(ot_send(q, T_STOP, NULL, 0) == 0);
    send_result(a.main, res, 7);
}

static void ref_trick_with_lanes(void **state)
{
    (void)state;
    ot_pid_t me;
    start_lanes(2, 1, &me);
    const long k = scaled(50000);
    struct sel_arg a = {me, 2, 4, k};
    assert_int_equal(ot_spawn(ref_receiver, &a, NULL, NULL), 0);
    int64_t res[7];
    wait_result(res, 7);
    fprintf(stderr, "ref trick: %lld reductions with %lld messages waiting\n",
            (long long)res[3], (long long)res[4]);
    assert_true(res[6] > 0);
    assert_int_equal(res[1], 1);     /* reply found while senders fill the lanes */
    assert_int_equal(res[2], 1);     /* reply found behind a full backlog */
    assert_int_equal(res[4], 4 * k); /* the backlog, all of it */
    assert_true(res[3] < 100);       /* without scanning it */
    assert_int_equal(res[5], 0);     /* the backlog intact, in order */
    assert_int_equal(res[0], 1);
    end_attached();
}

/* ---- 5. message_queue_len counts what is in lanes -------------------------------------- */

/* Gets lanes, then sleeps (takes nothing) until released; then checks
 * ot_mailbox_len against g_sh.done senders' worth, and takes them all. */
struct hold_arg {
    ot_pid_t main;
    unsigned nsched, ns;
    long k;
};

static void holder(void *arg)
{
    struct hold_arg a = *(struct hold_arg *)arg;
    atomic_store(&g_sh.lanes, force_lanes(a.nsched, NULL, 2));
    atomic_store_explicit(&g_sh.ready, 1, memory_order_release);
    /* A sleeping process takes no messages; signals wake it (an info
     * request is answered; an exit signal ends it). */
    while (!atomic_load_explicit(&g_sh.release, memory_order_acquire))
        ot_sleep(1);
    int64_t res[4] = {0};
    res[1] = ot_mailbox_len();
    struct tally tt, *t = &tt;
    memset(t, 0, sizeof *t);
    bool ok = receive_all(t, (int64_t)a.ns * a.k, g_sh.pids, a.ns, RECV_MS);
    res[0] = ok && nothing_more(20);
    res[2] = t->bad;
    res[3] = incomplete(t, 0, a.ns, a.k);
    send_result(a.main, res, 4);
}

/* Asks about the holder if its own lane (lanes are picked by the pid's
 * index bits, mailbox/lanes.h) is none of the senders': then the holder
 * meets the request after at most one turn of the other lanes, with nearly
 * everything still in them. {asked, message_queue_len, lanes}. */
struct lane_asker_arg {
    ot_pid_t main, target;
    unsigned ns, lanes;
};

static void lane_asker(void *arg)
{
    struct lane_asker_arg a = *(struct lane_asker_arg *)arg;
    int64_t res[3] = {0, 0, 0};
    uint32_t mask = a.lanes - 1, mine = (uint32_t)ot_self() & mask;
    bool shared = false;
    for (unsigned i = 0; i < a.ns; i++)
        shared |= ((uint32_t)g_sh.pids[i] & mask) == mine;
    if (!shared) {
        ot_process_info_t in;
        PCHECK(ot_process_info(a.target, &in) == 0);
        res[0] = 1;
        res[1] = (int64_t)in.message_queue_len;
        res[2] = in.mailbox_lanes;
    }
    send_result(a.main, res, 3);
    wait_stop(); /* alive, so that the next asker gets another pid index */
}

static void info_counts_lanes(void **state)
{
    (void)state;
    ot_pid_t me, r;
    start_lanes(2, 1, &me);
    const unsigned ns = 2;
    const long k = scaled(100000);
    struct hold_arg a = {me, 2, ns, k};
    assert_int_equal(ot_spawn(holder, &a, NULL, &r), 0);
    assert_true(WAIT_UNTIL(atomic_load(&g_sh.ready), 60000));
    unsigned l = atomic_load(&g_sh.lanes);
    assert_true(l >= 4);
    assert_int_equal(spawn_senders(r, ns, 2, k, 0, 0, 0), 0);
    assert_true(WAIT_UNTIL(atomic_load(&g_sh.done) == (int)ns, 60000));
    /* The holder answers from its sleep, taking in what it meets before the
     * request, in lane order; the rest is still in its lanes. */
    static struct lane_asker_arg la;
    la = (struct lane_asker_arg){me, r, ns, l};
    int64_t res[4] = {0, 0, 0, 0};
    ot_pid_t askers[16];
    int tries = 0;
    while (tries < 16 && !res[0]) {
        assert_int_equal(ot_spawn(lane_asker, &la, NULL, &askers[tries++]), 0);
        wait_result(res, 3);
    }
    for (int i = 0; i < tries; i++)
        assert_int_equal(ot_send(askers[i], T_STOP, NULL, 0), 0);
    assert_int_equal(res[0], 1); /* an asker with a lane of its own */
    fprintf(stderr, "info: %lld messages, %lld lanes\n", (long long)res[1], (long long)res[2]);
    assert_int_equal(res[2], l);
    assert_int_equal(res[1], ns * k);
    /* Asked again (from the main thread): the same, now mostly sorted. */
    ot_process_info_t in;
    assert_int_equal(ot_process_info(r, &in), 0);
    assert_int_equal(in.mailbox_lanes, l);
    assert_int_equal(in.message_queue_len, ns * k);
    atomic_store_explicit(&g_sh.release, 1, memory_order_release);
    wait_result(res, 4);
    assert_int_equal(res[1], ns * k); /* ot_mailbox_len */
    assert_int_equal(res[2], 0);
    assert_int_equal(res[3], 0);
    assert_int_equal(res[0], 1);
    end_attached();
}

/* ---- 6. dying with full lanes; late requests ----------------------------------------- */

static void dies_with_full_lanes(void **state)
{
    (void)state;
    ot_pid_t me, r;
    start_lanes(2, 1, &me);
    const unsigned ns = 4;
    const long k = scaled(50000);
    struct hold_arg a = {me, 2, ns, k};
    assert_int_equal(ot_spawn(holder, &a, NULL, &r), 0);
    assert_true(WAIT_UNTIL(atomic_load(&g_sh.ready), 60000));
    assert_true(atomic_load(&g_sh.lanes) > 0);
    ot_ref_t mref;
    assert_int_equal(ot_monitor(r, &mref), 0);
    /* Senders that go on until the holder is gone, half of their messages
     * zero-copy: each buffer's destructor counts its freeing. */
    assert_int_equal(spawn_senders(r, ns, 2, -1, 0, 0, 1), 0);
    assert_true(WAIT_UNTIL(min_sent(ns) >= k, 60000));
    ot_reason_t why = reason_s(OT_EXIT_USER + 42, "died with full lanes");
    assert_int_equal(ot_exit_pid(r, &why), 0);
    expect_down(mref, r, &why, 20000);
    assert_true(WAIT_UNTIL(atomic_load(&g_sh.done) == (int)ns, 60000));
    /* Too late: answered noproc. */
    wait_gone(r);
    ot_ref_t late;
    assert_int_equal(ot_monitor(r, &late), 0);
    ot_reason_t noproc = reason(OT_EXIT_NOPROC);
    expect_down(late, r, &noproc, 5000);
    end_attached();
    long made = atomic_load(&g_sh.bufs_made), freed = atomic_load(&g_sh.bufs_freed);
    fprintf(stderr, "zero-copy buffers: %ld made, %ld freed\n", made, freed);
    assert_true(made >= ns * k / 2);
    assert_int_equal(freed, made); /* every message freed, none twice */
}

/* Requests around a death. Monitor requesters ask for monitor after
 * monitor on the holder (none cancelled) until they have seen it dead, and
 * once more; link requesters link once, at a random moment. A request
 * that reaches the holder before its exit gets its reason, one that comes
 * later noproc: from ot_monitor/ot_link themselves when the pid is gone,
 * or, when it was pushed into a lane just as the holder died, from the
 * drain of its mailbox (ot__sig_dead_letter). Every request gets exactly
 * one answer. */
#define NREQ 8
#define MAXREF 4096
#define DEATH_CODE (OT_EXIT_USER + 43)

struct req_arg {
    ot_pid_t main, target;
    uint32_t i;
};

static void requester(void *arg)
{
    struct req_arg a = *(struct req_arg *)arg;
    bool link = a.i & 1;
    if (link) PCHECK(ot_trap_exit(true) == 0);
    ot_reason_t why = reason_s(DEATH_CODE, "requested"), noproc = reason(OT_EXIT_NOPROC);
    /* {requests, answered with the reason, answered noproc, errors} */
    int64_t res[4] = {0, 0, 0, 0};
    rng_t rng = {a.i * 7919u + 1};
    while (!atomic_load_explicit(&g_sh.go, memory_order_acquire))
        ot_yield();
    ot_msg_t *m = NULL;
    if (link) {
        for (uint64_t n = rng_below(&rng, 2000); n; n--)
            ot_yield();
        atomic_fetch_add(&g_sh.requested, 1);
        PCHECK(ot_link(a.target) == 0);
        res[0] = 1;
        struct exit_match em = {a.target};
        if (ot_receive(match_exit_from, &em, RECV_MS, &m) == 0) {
            ot_reason_t got = msg_reason(m);
            res[1] += reason_eq(&got, &why);
            res[2] += reason_eq(&got, &noproc);
            ot_msg_free(m);
        }
    } else {
        ot_ref_t *refs = malloc(MAXREF * sizeof *refs);
        PCHECK(refs != NULL);
        if (!refs) return;
        size_t n = 0;
        while (n < MAXREF) {
            bool dead = atomic_load_explicit(&g_sh.dead, memory_order_acquire);
            /* The last request waits for the death, so that some are
             * answered noproc however early the others were made (with
             * the holder's exit late, every requester reached MAXREF
             * first in about one run in ten). */
            if (!dead && n == MAXREF - 1) {
                uint64_t end = now_ns() + 60ull * 1000000000u;
                while (!atomic_load_explicit(&g_sh.dead, memory_order_acquire) &&
                       now_ns() < end)
                    ot_yield();
                continue;
            }
            PCHECK(ot_monitor(a.target, &refs[n]) == 0);
            n++;
            atomic_fetch_add(&g_sh.requested, 1);
            if (dead) break;
            if ((n & 63) == 0) ot_yield();
        }
        res[0] = (int64_t)n;
        pidmap_t pm;
        pidmap_build(&pm, refs, n);
        char *seen = calloc(n, 1);
        PCHECK(seen != NULL);
        for (size_t got_n = 0; seen && got_n < n; got_n++) {
            if (ot_receive(NULL, NULL, RECV_MS, &m) != 0) {
                fprintf(stderr, "requester %u: %zu of %zu DOWNs\n", a.i, got_n, n);
                break;
            }
            long x = pidmap_get(&pm, ot_msg_ref(m));
            ot_reason_t got = msg_reason(m);
            if (ot_msg_tag(m) != OT_TAG_DOWN || ot_msg_sender(m) != a.target || x < 0 ||
                seen[x]) {
                fprintf(stderr, "requester %u: unexpected tag %#llx ref %#llx (seen %d)\n", a.i,
                        (unsigned long long)ot_msg_tag(m), (unsigned long long)ot_msg_ref(m),
                        x < 0 ? -1 : seen[x]);
                res[3]++;
            } else {
                seen[x] = 1;
                res[1] += reason_eq(&got, &why);
                res[2] += reason_eq(&got, &noproc);
            }
            ot_msg_free(m);
        }
        free(seen);
        pidmap_free(&pm);
        free(refs);
    }
    /* Exactly one answer each. */
    if (!nothing_more(20)) res[3]++;
    send_result(a.main, res, 4);
}

static void late_requests_answered(void **state)
{
    (void)state;
    ot_pid_t me;
    /* The default lane_threshold here (the other tests use 1): the holder
     * gets its lanes from a backlog (force_lanes' assist). */
    start_lanes(2, 0, &me);
    const int rounds = g_san ? 3 : 8;
    static struct req_arg ra[NREQ];
    int64_t total[4] = {0, 0, 0, 0};
    for (int round = 0; round < rounds; round++) {
        atomic_store(&g_sh.go, 0);
        atomic_store(&g_sh.dead, 0);
        atomic_store(&g_sh.ready, 0);
        atomic_store(&g_sh.requested, 0);
        ot_pid_t r;
        struct hold_arg a = {me, 2, 0, 0};
        assert_int_equal(ot_spawn(holder, &a, NULL, &r), 0);
        assert_true(WAIT_UNTIL(atomic_load(&g_sh.ready), 60000));
        assert_true(atomic_load(&g_sh.lanes) > 0);
        ot_ref_t mref;
        assert_int_equal(ot_monitor(r, &mref), 0);
        for (uint32_t i = 0; i < NREQ; i++) {
            ra[i] = (struct req_arg){me, r, (uint32_t)round * NREQ + i};
            assert_int_equal(spawn_on(requester, &ra[i], (int)(i % 2), NULL), 0);
        }
        atomic_store_explicit(&g_sh.go, 1, memory_order_release);
        /* Requests before the exit signal, and during and after the exit. */
        uint64_t end = now_ns() + 60ull * 1000000000u;
        while (atomic_load(&g_sh.requested) < 200 && now_ns() < end)
            sched_yield();
        ot_reason_t why = reason_s(DEATH_CODE, "requested");
        assert_int_equal(ot_exit_pid(r, &why), 0);
        expect_down(mref, r, &why, 20000);
        atomic_store_explicit(&g_sh.dead, 1, memory_order_release);
        for (int i = 0; i < NREQ; i++) {
            int64_t res[4];
            wait_result(res, 4);
            if (res[1] + res[2] + res[3] != res[0])
                fprintf(stderr, "round %d: %lld requests, %lld + %lld answers, %lld errors\n",
                        round, (long long)res[0], (long long)res[1], (long long)res[2],
                        (long long)res[3]);
            for (int x = 0; x < 4; x++)
                total[x] += res[x];
        }
        if (round == rounds - 1) {
            /* From the attached thread, after it is gone: DOWN and EXIT noproc. */
            wait_gone(r);
            ot_ref_t late;
            assert_int_equal(ot_monitor(r, &late), 0);
            ot_reason_t noproc = reason(OT_EXIT_NOPROC);
            expect_down(late, r, &noproc, 5000);
            assert_int_equal(ot_link(r), 0);
            expect_exit(r, &noproc, 5000);
        }
    }
    fprintf(stderr,
            "requests: %lld, answered %lld with the reason and %lld noproc; %lld errors\n",
            (long long)total[0], (long long)total[1], (long long)total[2], (long long)total[3]);
    assert_int_equal(total[3], 0);
    assert_int_equal(total[1] + total[2], total[0]); /* each exactly once */
    assert_true(total[1] > 0 && total[2] > 0);       /* both kinds happened */
    end_attached();
}

/* ---- 7. ot_mailbox_len, timeout 0 ----------------------------------------------------- */

/* With lanes on (forced by the caller): empty, then n messages from three
 * senders on all schedulers, counted and taken with timeout 0. Returns the
 * number of failed checks. In a process or the attached thread. */
static int64_t len_and_poll(unsigned nsched, long n)
{
    int64_t bad = 0;
    ot_msg_t *m;
#define LCHECK(c)                                                                 \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "%s:%d: len_and_poll: %s\n", __FILE__, __LINE__, #c); \
            bad++;                                                                \
        }                                                                         \
    } while (0)
    LCHECK(ot_receive(NULL, NULL, 0, &m) == -ETIMEDOUT);
    LCHECK(ot_mailbox_len() == 0);
    const unsigned ns = 3;
    atomic_store(&g_sh.done, 0);
    for (unsigned i = 0; i < ns; i++)
        atomic_store(&g_sh.sent[i], 0);
    LCHECK(spawn_senders(ot_self(), ns, nsched, n, 0, 0, 0) == 0);
    LCHECK(WAIT_UNTIL(atomic_load(&g_sh.done) == (int)ns, 60000));
    LCHECK(ot_mailbox_len() == (long)(ns * n));
    uint64_t never = T_NEVER;
    LCHECK(ot_receive(match_tag, &never, 0, &m) == -ETIMEDOUT);
    LCHECK(ot_mailbox_len() == (long)(ns * n));
    struct tally t;
    memset(&t, 0, sizeof t);
    for (long i = 0; i < (long)ns * n; i++) {
        int rc = ot_receive(NULL, NULL, 0, &m);
        if (rc != 0) {
            fprintf(stderr, "timeout-0 receive %ld of %ld: %d\n", i, (long)ns * n, rc);
            bad++;
            break;
        }
        tally_msg(&t, m, g_sh.pids, ns);
        ot_msg_free(m);
    }
    bad += t.bad + incomplete(&t, 0, ns, n);
    LCHECK(ot_receive(NULL, NULL, 0, &m) == -ETIMEDOUT);
    LCHECK(ot_mailbox_len() == 0);
    LCHECK(my_lanes() > 0);
#undef LCHECK
    return bad;
}

struct poll_arg {
    ot_pid_t main;
    unsigned nsched;
    long n;
};

static void poll_receiver(void *arg)
{
    struct poll_arg a = *(struct poll_arg *)arg;
    int64_t res[2] = {force_lanes(a.nsched, NULL, 2), 0};
    res[1] = len_and_poll(a.nsched, a.n);
    send_result(a.main, res, 2);
}

static void len_and_timeout0(void **state)
{
    (void)state;
    ot_pid_t me;
    start_lanes(2, 1, &me);
    const long n = scaled(20000);
    struct poll_arg a = {me, 2, n};
    assert_int_equal(ot_spawn(poll_receiver, &a, NULL, NULL), 0);
    int64_t res[2];
    wait_result(res, 2);
    assert_true(res[0] > 0);
    assert_int_equal(res[1], 0);
    /* The same on the attached main thread. */
    assert_true(force_lanes(2, NULL, 2) > 0);
    assert_int_equal(len_and_poll(2, n), 0);
    end_attached();
}

/* ---- 7b. waking a receiver with lanes -------------------------------------------- */

/* The pinger sends message i, then waits (yielding, never receiving: it is
 * not woken by the receiver, so it runs on its own core) until the
 * receiver has taken it, then sends i + 1: each message arrives just as the
 * receiver goes back to wait, into a lane. The waiter's last look (store
 * its state, then look at the main queue and every lane) must see it, or
 * the receiver sleeps with a message in its mailbox. */
struct ping_arg {
    ot_pid_t to;
    long n;
};

static void pinger(void *arg)
{
    struct ping_arg a = *(struct ping_arg *)arg;
    for (long i = 0; i < a.n; i++) {
        struct item it = {0, 0, i};
        PCHECK(ot_send(a.to, T_DATA, &it, sizeof it) == 0);
        uint64_t end = now_ns() + 5ull * 1000000000u;
        while (atomic_load_explicit(&g_sh.acked, memory_order_acquire) <= i) {
            if (now_ns() > end) {
                fprintf(stderr, "pinger: message %ld not taken in 5 s\n", i);
                atomic_store(&g_sh.ping_stuck, 1);
                /* Wake it (a push that finds it waiting does), to end. */
                PCHECK(ot_send(a.to, T_STOP, NULL, 0) == 0);
                return;
            }
            ot_yield();
        }
    }
    PCHECK(ot_send(a.to, T_STOP, NULL, 0) == 0);
}

/* The receiver's side: lanes, then n messages in order, then T_STOP.
 * Returns the number of errors. A process or the attached thread. */
static int64_t ping_receive(unsigned nsched, int pinger_sched, long n)
{
    int64_t bad = force_lanes(nsched, NULL, 2) ? 0 : 1;
    static struct ping_arg pa;
    pa = (struct ping_arg){ot_self(), n};
    atomic_store(&g_sh.acked, 0);
    atomic_store(&g_sh.ping_stuck, 0);
    PCHECK(spawn_on(pinger, &pa, pinger_sched, NULL) == 0);
    for (long i = 0;; i++) {
        ot_msg_t *m;
        int rc = ot_receive(NULL, NULL, OT_INFINITY, &m);
        if (rc != 0) return bad + 1;
        struct item it = {0, 0, -1};
        uint64_t tag = ot_msg_tag(m);
        if (tag == T_DATA && ot_msg_len(m) == sizeof it) memcpy(&it, ot_msg_data(m), sizeof it);
        ot_msg_free(m);
        if (tag == T_STOP) {
            bad += i != n;
            break;
        }
        bad += it.seq != i;
        atomic_store_explicit(&g_sh.acked, i + 1, memory_order_release);
    }
    return bad + atomic_load(&g_sh.ping_stuck);
}

struct ping_recv_arg {
    ot_pid_t main;
    long n;
};

static void ping_receiver(void *arg)
{
    struct ping_recv_arg a = *(struct ping_recv_arg *)arg;
    int64_t res[1] = {ping_receive(2, 1, a.n)};
    send_result(a.main, res, 1);
}

static void wakeup_with_lanes(void **state)
{
    (void)state;
    ot_pid_t me;
    start_lanes(2, 1, &me);
    const long n = g_san ? 2000 : 20000;
    struct ping_recv_arg a = {me, n};
    assert_int_equal(spawn_on(ping_receiver, &a, 0, NULL), 0);
    int64_t res[1];
    wait_result(res, 1);
    assert_int_equal(res[0], 0); /* every message taken at once, in order */
    /* The attached thread waits on its futex: the same look. */
    assert_int_equal(ping_receive(2, 1, n), 0);
    end_attached();
}

/* ---- 8. a pull that meets a mixed backlog --------------------------------------------- */

/* No lanes yet, lane_threshold 1: a backlog from both schedulers sits in
 * the main queue, and the receiver pulls it in whole (ot__mailbox_pull:
 * ot_mailbox_len, ot_make_ref, ot_process_info, and any signal handled at
 * a scheduling point) while the senders go on. Lanes are installed at the
 * first change of sending scheduler met; no message may be lost. */
struct pull_arg {
    ot_pid_t main;
    unsigned nsched, ns; /* ns process senders; the main thread is sender ns */
    long k;
    int by_info; /* the pulls: another process's info requests (signals),
                    instead of the receiver's own ot_mailbox_len */
};

/* Asks about the receiver from when the senders are an eighth of the way
 * until they are done, then once more: {requests, message_queue_len,
 * lanes} to the main thread. */
struct asker_arg {
    ot_pid_t main, target;
    unsigned nt; /* senders, the main thread included */
    long k;
};

static void pull_asker(void *arg)
{
    struct asker_arg a = *(struct asker_arg *)arg;
    ot_process_info_t in;
    int64_t asks = 0;
    uint64_t end = now_ns() + 60ull * 1000000000u;
    while (min_sent(a.nt) < a.k / 8 && now_ns() < end)
        ot_yield();
    while (atomic_load(&g_sh.done) < (int)a.nt) {
        PCHECK(ot_process_info(a.target, &in) == 0);
        asks++;
    }
    PCHECK(ot_process_info(a.target, &in) == 0);
    int64_t res[3] = {asks, (int64_t)in.message_queue_len, in.mailbox_lanes};
    send_result(a.main, res, 3);
}

static struct asker_arg g_asker;

static void pull_receiver(void *arg)
{
    struct pull_arg a = *(struct pull_arg *)arg;
    const unsigned nt = a.ns + 1;
    int64_t res[5] = {0};
    PCHECK(spawn_senders(ot_self(), a.ns, a.nsched, a.k, 1, 0, 0) == 0);
    if (a.by_info) {
        g_asker = (struct asker_arg){a.main, ot_self(), nt, a.k};
        PCHECK(spawn_on(pull_asker, &g_asker, 1, NULL) == 0);
    }
    atomic_store_explicit(&g_sh.go, 1, memory_order_release);
    /* Only ot_yield here: a signal lost for good would make every ot_sleep
     * return at once, arming a timer each time. */
    uint64_t end = now_ns() + 120ull * 1000000000u;
    if (a.by_info) {
        /* Take nothing; the asker's requests are signals, handled at our
         * scheduling points, after taking in what has come. */
        while (!atomic_load_explicit(&g_sh.release, memory_order_acquire) && now_ns() < end)
            ot_yield();
    } else {
        while (min_sent(nt) < a.k / 8 && now_ns() < end)
            ot_yield();
        long pulls = 0;
        while (atomic_load(&g_sh.done) < (int)nt && now_ns() < end) {
            PCHECK(ot_mailbox_len() >= 0);
            pulls++;
            ot_yield();
        }
        fprintf(stderr, "pull: %ld ot_mailbox_len calls while the senders sent\n", pulls);
    }
    res[1] = ot_mailbox_len();
    struct tally t;
    memset(&t, 0, sizeof t);
    bool ok = receive_all(&t, (int64_t)nt * a.k, g_sh.pids, nt, 5000);
    res[0] = ok && nothing_more(20);
    res[2] = t.bad;
    res[3] = incomplete(&t, 0, nt, a.k);
    res[4] = my_lanes();
    send_result(a.main, res, 5);
}

static void pull_mixed_backlog(int by_info)
{
    ot_pid_t me;
    start_lanes(2, 1, &me);
    const unsigned ns = 4, nt = ns + 1;
    const long k = scaled(100000);
    struct pull_arg a = {me, 2, ns, k, by_info};
    /* Senders that let the others run often, so that the pulls meet them
     * sending; and the main thread sends too, so that the backlog comes
     * from several sources even if the processes end up on one scheduler. */
    g_sh.pace = 64;
    g_sh.pids[ns] = me;
    assert_int_equal(spawn_on(pull_receiver, &a, 0, NULL), 0);
    assert_true(WAIT_UNTIL(atomic_load_explicit(&g_sh.go, memory_order_acquire), 60000));
    ot_pid_t r = g_sh.args[0].to;
    for (long i = 0; i < k; i++) {
        struct item it = {ns, 0, i};
        assert_int_equal(ot_send(r, T_DATA, &it, sizeof it), 0);
        atomic_store_explicit(&g_sh.sent[ns], i + 1, memory_order_release);
    }
    atomic_fetch_add(&g_sh.done, 1);
    if (by_info) {
        /* An answer that never comes: the asker waits for ever. */
        uint64_t done = T_DONE;
        ot_msg_t *m;
        int rc = ot_receive(match_tag, &done, 60000, &m);
        if (rc != 0) fprintf(stderr, "pull: an info request was never answered\n");
        assert_int_equal(rc, 0);
        int64_t info[3];
        assert_int_equal(ot_msg_len(m), sizeof info);
        memcpy(info, ot_msg_data(m), sizeof info);
        ot_msg_free(m);
        fprintf(stderr,
                "pull: %lld info requests while the senders sent; then %lld messages, "
                "%lld lanes\n",
                (long long)info[0], (long long)info[1], (long long)info[2]);
        atomic_store_explicit(&g_sh.release, 1, memory_order_release);
        assert_int_equal(info[1], nt * k); /* all there */
    }
    int64_t res[5];
    wait_result(res, 5);
    fprintf(stderr, "pull: %lld lanes at the end\n", (long long)res[4]);
    assert_int_equal(res[1], nt * k); /* all counted */
    assert_int_equal(res[3], 0);      /* nothing lost */
    assert_int_equal(res[2], 0);
    assert_int_equal(res[0], 1);
    end_attached();
}

static void pull_mixed_backlog_len(void **state)
{
    (void)state;
    pull_mixed_backlog(0);
}

static void pull_mixed_backlog_info(void **state)
{
    (void)state;
    pull_mixed_backlog(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(lanes_appear_2_schedulers, lanes_teardown),
        cmocka_unit_test_teardown(lanes_appear_4_schedulers, lanes_teardown),
        cmocka_unit_test_teardown(one_sender_never_splits, lanes_teardown),
        cmocka_unit_test_teardown(crowd_never_splits, lanes_teardown),
        cmocka_unit_test_teardown(order_across_switch_backlog, lanes_teardown),
        cmocka_unit_test_teardown(order_across_switch_streaming, lanes_teardown),
        cmocka_unit_test_teardown(order_attached_receiver, lanes_teardown),
        cmocka_unit_test_teardown(down_after_messages, lanes_teardown),
        cmocka_unit_test_teardown(exit_after_messages, lanes_teardown),
        cmocka_unit_test_teardown(selective_receive_with_lanes, lanes_teardown),
        cmocka_unit_test_teardown(ref_trick_with_lanes, lanes_teardown),
        cmocka_unit_test_teardown(info_counts_lanes, lanes_teardown),
        cmocka_unit_test_teardown(dies_with_full_lanes, lanes_teardown),
        cmocka_unit_test_teardown(late_requests_answered, lanes_teardown),
        cmocka_unit_test_teardown(len_and_timeout0, lanes_teardown),
        cmocka_unit_test_teardown(wakeup_with_lanes, lanes_teardown),
        cmocka_unit_test_teardown(pull_mixed_backlog_len, lanes_teardown),
        cmocka_unit_test_teardown(pull_mixed_backlog_info, lanes_teardown),
    };
    /* OTTER_TEST_FILTER=pattern (cmocka's, '*' and '?') runs some of them. */
    const char *filter = getenv("OTTER_TEST_FILTER");
    if (filter && *filter) cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
