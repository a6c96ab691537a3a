/* Killing processes in every state they can be in, from other schedulers,
 * from many killers at once: the intent of ERTS's process_SUITE exit_twice,
 * exit_and_timeout and signal_SUITE's contended signal handling.
 *
 * Each scenario: a trapping partner process spawn_links N victims (some of
 * which trap exits themselves) and waits until every victim is up; the main
 * thread monitors every victim; killer processes on the other scheduler (and
 * sometimes the main thread) send exit signals. Then:
 *   - every victim dies exactly once: its monitor fires exactly once, its
 *     partner gets exactly one {EXIT}, and both carry the same reason, one
 *     the scenario allows (killed for kill; a trapping victim only dies of
 *     kill);
 *   - no DOWN or EXIT is left over;
 *   - ot_process_count() returns to the baseline (stacks and mailboxes are
 *     reclaimed; the sanitizer builds report leaks).
 * Victims are blocked in receive, runnable (yielding in a loop), sleeping,
 * doing a mix of scheduling points, being stolen by the other scheduler,
 * linked in a chain, or ending on their own while the killers come. */
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

enum victim_kind {
    V_BLOCKED,  /* receive that matches nothing, no timeout */
    V_RECV_TMO, /* receive that matches nothing, long timeout */
    V_YIELDER,  /* runnable: yields in a loop */
    V_SLEEPER,  /* ot_sleep(long) */
    V_MIXED,    /* waits for T_GO, then every kind of scheduling point, in turn */
    V_NATURAL,  /* waits for T_GO, then ends normally soon after */
    V_CHAIN,    /* blocked, linked to the previous victim (none trap) */
};

#define MAX_KILLERS 8

struct race {
    ot_pid_t main, partner;
    int n, kind, trap_every; /* victim i traps if trap_every && i % trap_every == 0 */
    int victim_sched;        /* -1: spread over both */
    _Atomic ot_pid_t *victims;
    _Atomic int *hits; /* ot_exit_pid calls that returned 0, per victim */
    /* Partner's findings, per victim. */
    int *exit_count;
    uint32_t *exit_code;
    int exit_extra; /* EXITs from unknown senders */
    struct vic_arg *vargs;
    _Atomic int busy; /* V_MIXED victims past their first round */
};

struct vic_arg {
    struct race *r;
    int i;
};

static void nothing(void *arg)
{
    (void)arg;
}

static void victim(void *arg)
{
    struct vic_arg *va = arg;
    struct race *r = va->r;
    int i = va->i;
    bool trap = r->trap_every && i % r->trap_every == 0 && r->kind != V_CHAIN;
    if (trap) PCHECK(ot_trap_exit(true) == 0);
    if (r->kind == V_CHAIN && i > 0) {
        ot_pid_t prev = atomic_load(&r->victims[i - 1]);
        PCHECK(ot_link(prev) == 0);
    }
    PCHECK(ot_send(r->partner, T_READY, NULL, 0) == 0);
    uint64_t never = T_NEVER;
    ot_msg_t *m;
    switch (r->kind) {
    case V_BLOCKED:
    case V_CHAIN:
        for (;;) {
            PCHECK(ot_receive(match_tag, &never, OT_INFINITY, &m) != 0);
            PCHECK(!"a blocked victim's receive returned");
        }
    case V_RECV_TMO:
        for (;;)
            (void)ot_receive(match_tag, &never, 30000, &m);
    case V_YIELDER:
        for (;;)
            ot_yield();
    case V_SLEEPER:
        for (;;)
            ot_sleep(30000);
    case V_MIXED: {
        /* Busy only from T_GO on: victims busy (spawning, under TSan a
         * fiber each) while the partner is still starting the others made
         * the set-up quadratic, ~25 s under TSan, past the 60 s bound when
         * another test shared the cores. */
        uint64_t go = T_GO;
        if (ot_receive(match_tag, &go, 30000, &m) == 0) ot_msg_free(m);
        ot_pid_t me = ot_self();
        for (uint64_t k = 0;; k++) {
            if (k == 5) atomic_fetch_add(&r->busy, 1); /* every kind once */
            switch ((k + (uint64_t)i) % 5) {
            case 0: ot_yield(); break;
            case 1: (void)ot_receive(match_tag, &never, 1, &m); break;
            case 2: ot_sleep(1); break;
            case 3: {
                /* A message to itself, taken back. */
                uint64_t d = T_DATA;
                PCHECK(ot_send(me, T_DATA, &k, sizeof k) == 0);
                if (ot_receive(match_tag, &d, 1000, &m) == 0) ot_msg_free(m);
                break;
            }
            default: (void)ot_spawn(nothing, NULL, NULL, NULL); break;
            }
        }
    }
    case V_NATURAL: {
        uint64_t go = T_GO;
        if (ot_receive(match_tag, &go, 30000, &m) == 0) ot_msg_free(m);
        for (int k = 0; k < i % 4; k++)
            ot_yield();
        return;
    }
    default: PCHECK(!"unknown victim kind"); return;
    }
}

/* Traps; spawn_links the victims, waits until each is up, tells main, then
 * counts the EXITs (and any extra for 100 ms). */
static void partner(void *arg)
{
    struct race *r = arg;
    PCHECK(ot_trap_exit(true) == 0);
    r->partner = ot_self();
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    for (int i = 0; i < r->n; i++) {
        o.scheduler = r->victim_sched >= 0 ? r->victim_sched : i & 1;
        r->vargs[i] = (struct vic_arg){r, i};
        ot_pid_t v;
        int rc = ot_spawn_link(victim, &r->vargs[i], &o, &v);
        PCHECK(rc == 0);
        if (rc != 0) return;
        atomic_store(&r->victims[i], v);
    }
    uint64_t ready = T_READY;
    for (int i = 0; i < r->n; i++) {
        ot_msg_t *m;
        int rc = ot_receive(match_tag, &ready, 30000, &m);
        PCHECK(rc == 0);
        if (rc != 0) return;
        ot_msg_free(m);
    }
    uint64_t keys_n = (uint64_t)r->n;
    uint64_t *keys = malloc(keys_n * sizeof *keys);
    for (int i = 0; i < r->n; i++)
        keys[i] = atomic_load(&r->victims[i]);
    pidmap_t pm;
    pidmap_build(&pm, keys, keys_n);
    free(keys);
    PCHECK(ot_send(r->main, T_READY, NULL, 0) == 0);

    uint64_t ex = OT_TAG_EXIT;
    int got = 0;
    while (got < r->n) {
        ot_msg_t *m;
        int rc = ot_receive(match_tag, &ex, 30000, &m);
        if (rc != 0) {
            fprintf(stderr, "partner: %d of %d EXITs, then %d\n", got, r->n, rc);
            break;
        }
        long i = pidmap_get(&pm, ot_msg_sender(m));
        if (i < 0) {
            r->exit_extra++;
        } else {
            r->exit_count[i]++;
            r->exit_code[i] = msg_reason(m).code;
            got++;
        }
        ot_msg_free(m);
    }
    for (;;) {
        ot_msg_t *m;
        if (ot_receive(match_tag, &ex, 100, &m) != 0) break;
        long i = pidmap_get(&pm, ot_msg_sender(m));
        if (i < 0)
            r->exit_extra++;
        else
            r->exit_count[i]++;
        ot_msg_free(m);
    }
    pidmap_free(&pm);
    int64_t g = got;
    PCHECK(ot_send(r->main, T_DONE, &g, sizeof g) == 0);
}

struct killer_arg {
    struct race *r;
    ot_pid_t main;
    int first, count; /* victims first .. first+count-1 (mod n) */
    ot_reason_t reason;
    uint64_t seed; /* 0: in order; else a shuffled order */
    int yield_every;
};

/* ot_exit_pid to every victim of its range; each must return 0 or -ESRCH. */
static int kill_range(struct killer_arg *k)
{
    struct race *r = k->r;
    int *order = malloc((size_t)k->count * sizeof *order);
    for (int j = 0; j < k->count; j++)
        order[j] = (k->first + j) % r->n;
    if (k->seed) {
        rng_t g = {k->seed};
        for (int j = k->count - 1; j > 0; j--) {
            int s = (int)rng_below(&g, (uint64_t)j + 1);
            int t = order[j];
            order[j] = order[s];
            order[s] = t;
        }
    }
    int bad = 0;
    for (int j = 0; j < k->count; j++) {
        int i = order[j];
        int rc = ot_exit_pid(atomic_load(&r->victims[i]), &k->reason);
        if (rc == 0)
            atomic_fetch_add(&r->hits[i], 1);
        else if (rc != -ESRCH)
            bad++;
        if (k->yield_every && j % k->yield_every == 0 && ot_self() != OT_PID_NONE &&
            ot_self() != k->main)
            ot_yield();
    }
    free(order);
    return bad;
}

static void killer(void *arg)
{
    struct killer_arg *k = arg;
    int64_t bad = kill_range(k);
    PCHECK(bad == 0);
    PCHECK(ot_send(k->main, T_DONE, &bad, sizeof bad) == 0);
}

/* ---- the scenario runner -------------------------------------------------- */

struct scenario {
    const char *name;
    int n, kind, trap_every, victim_sched;
    int nkillers;
    ot_reason_t reasons[MAX_KILLERS];
    bool all_ranges; /* every killer goes over all victims (else: slices) */
    bool shuffle;
    int main_kills; /* the main thread kills victims 0 .. main_kills-1 */
    /* Allowed death reasons, for victims that do not trap and those that do. */
    uint32_t allowed[4], allowed_trap[4];
    int nallowed, nallowed_trap;
    bool must_hit;         /* every victim got at least one ot_exit_pid == 0 */
    unsigned max_death_ms; /* all dead within this after the killing starts; 0 = no bound */
};

static bool allowed_code(const uint32_t *a, int n, uint32_t c)
{
    for (int i = 0; i < n; i++)
        if (a[i] == c) return true;
    return false;
}

static void run_scenario_once(const struct scenario *sc)
{
    fprintf(stderr, "  %s: %d victims, %d killers\n", sc->name, sc->n, sc->nkillers);
    ot_pid_t me;
    start_rt(2);
    assert_int_equal(ot_attach(&me), 0);
    size_t base = ot_process_count();
    int n = sc->n;
    struct race r;
    memset(&r, 0, sizeof r);
    r.main = me;
    r.n = n;
    r.kind = sc->kind;
    r.trap_every = sc->trap_every;
    r.victim_sched = sc->victim_sched;
    r.victims = calloc((size_t)n, sizeof *r.victims);
    r.hits = calloc((size_t)n, sizeof *r.hits);
    r.exit_count = calloc((size_t)n, sizeof *r.exit_count);
    r.exit_code = calloc((size_t)n, sizeof *r.exit_code);
    r.vargs = calloc((size_t)n, sizeof *r.vargs);
    int *down_count = calloc((size_t)n, sizeof *down_count);
    uint32_t *down_code = calloc((size_t)n, sizeof *down_code);
    ot_ref_t *refs = calloc((size_t)n, sizeof *refs);
    assert_non_null(r.victims);
    assert_non_null(r.vargs);
    assert_non_null(down_code);
    assert_non_null(refs);

    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.scheduler = 1;
    assert_int_equal(ot_spawn(partner, &r, &o, NULL), 0);
    uint64_t ready = T_READY;
    ot_msg_t *m;
    assert_int_equal(ot_receive(match_tag, &ready, 60000, &m), 0);
    ot_msg_free(m);

    /* Monitor every victim: all are alive (up, and nobody kills yet). */
    for (int i = 0; i < n; i++)
        assert_int_equal(ot_monitor(atomic_load(&r.victims[i]), &refs[i]), 0);
    pidmap_t rm;
    pidmap_build(&rm, refs, (size_t)n);

    /* Busy victims (each has been through every kind of scheduling point
     * once), then the killers come. */
    if (sc->kind == V_MIXED) {
        for (int i = 0; i < n; i++)
            assert_int_equal(ot_send(atomic_load(&r.victims[i]), T_GO, NULL, 0), 0);
        for (int waited = 0; atomic_load(&r.busy) < n && waited < 60000; waited++)
            nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
        assert_int_equal(atomic_load(&r.busy), n);
    }

    /* Killers on scheduler 1, the victims' other one (or both). */
    struct killer_arg ka[MAX_KILLERS];
    uint64_t t0 = now_ns();
    for (int k = 0; k < sc->nkillers; k++) {
        int per = (n + sc->nkillers - 1) / sc->nkillers;
        ka[k] =
            (struct killer_arg){&r,
                                me,
                                sc->all_ranges ? (k * 7919) % n : k * per,
                                sc->all_ranges ? n : (k * per + per > n ? n - k * per : per),
                                sc->reasons[k],
                                sc->shuffle ? 0x5eed0000u + (uint64_t)k : 0,
                                16};
        if (ka[k].count < 0) ka[k].count = 0;
        o.scheduler = 1;
        assert_int_equal(ot_spawn(killer, &ka[k], &o, NULL), 0);
    }
    if (sc->kind == V_NATURAL)
        for (int i = 0; i < n; i++)
            (void)ot_send(atomic_load(&r.victims[i]), T_GO, NULL, 0);
    if (sc->main_kills) {
        struct killer_arg mk = {&r, me, 0, sc->main_kills, reason(OT_EXIT_KILL), 0, 0};
        assert_int_equal(kill_range(&mk), 0);
    }

    /* The DOWNs. */
    uint64_t down = OT_TAG_DOWN;
    int got = 0, strays = 0;
    for (; got < n; got++) {
        int rc = ot_receive(match_tag, &down, 20000, &m);
        if (rc != 0) {
            fprintf(stderr, "  %d of %d DOWNs, then %d\n", got, n, rc);
            break;
        }
        long i = pidmap_get(&rm, ot_msg_ref(m));
        if (i < 0 || ot_msg_sender(m) != atomic_load(&r.victims[i])) {
            strays++;
        } else {
            down_count[i]++;
            down_code[i] = msg_reason(m).code;
        }
        ot_msg_free(m);
    }
    uint64_t t_dead = now_ns() - t0;
    assert_int_equal(got, n);
    fprintf(stderr, "  all dead %.1f ms after the killing started\n", t_dead / 1e6);
    for (int k = 0; k < sc->nkillers; k++) {
        uint64_t done = T_DONE;
        assert_int_equal(ot_receive(match_tag, &done, 30000, &m), 0);
        int64_t bad;
        memcpy(&bad, ot_msg_data(m), sizeof bad);
        ot_msg_free(m);
        assert_int_equal(bad, 0);
    }
    /* The partner's count. */
    uint64_t done = T_DONE;
    assert_int_equal(ot_receive(match_tag, &done, 60000, &m), 0);
    int64_t pgot;
    memcpy(&pgot, ot_msg_data(m), sizeof pgot);
    ot_msg_free(m);
    /* No DOWN left over. */
    while (ot_receive(match_tag, &down, 50, &m) == 0) {
        long i = pidmap_get(&rm, ot_msg_ref(m));
        if (i >= 0)
            down_count[i]++;
        else
            strays++;
        ot_msg_free(m);
    }

    int bad = 0;
    for (int i = 0; i < n; i++) {
        bool trap = sc->trap_every && i % sc->trap_every == 0 && sc->kind != V_CHAIN;
        bool ok = down_count[i] == 1 && r.exit_count[i] == 1 &&
                  down_code[i] == r.exit_code[i] &&
                  (trap ? allowed_code(sc->allowed_trap, sc->nallowed_trap, down_code[i])
                        : allowed_code(sc->allowed, sc->nallowed, down_code[i])) &&
                  (!sc->must_hit || atomic_load(&r.hits[i]) >= 1);
        if (!ok && bad++ < 5)
            fprintf(stderr,
                    "  victim %d (%strapping): %d DOWN (%s), %d EXIT (%s), %d signals taken\n",
                    i, trap ? "" : "not ", down_count[i], ot_reason_name(down_code[i]),
                    r.exit_count[i], ot_reason_name(r.exit_code[i]), atomic_load(&r.hits[i]));
    }
    if (bad) fprintf(stderr, "  %d of %d victims wrong\n", bad, n);
    assert_int_equal(bad, 0);
    assert_int_equal(strays, 0);
    assert_int_equal(r.exit_extra, 0);
    assert_int_equal(pgot, n);
    if (sc->max_death_ms && !g_san) assert_true(t_dead < (uint64_t)sc->max_death_ms * 1000000u);

    /* Everything reclaimed: the partner, the killers, the victims. */
    wait_count(base, 20000);
    expect_empty(0);
    pidmap_free(&rm);
    free(r.victims);
    free(r.hits);
    free(r.exit_count);
    free(r.exit_code);
    free(r.vargs);
    free(down_count);
    free(down_code);
    free(refs);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    assert_int_equal(ot_process_count(), 0);
    stop_rt();
}

/* A few rounds of each: the races differ every time. */
static void run_scenario(const struct scenario *sc)
{
    int rounds = g_san ? 2 : 3;
    for (int i = 0; i < rounds; i++)
        run_scenario_once(sc);
}

#define KILL_ONLY                                                                 \
    .allowed = {OT_EXIT_KILLED}, .nallowed = 1, .allowed_trap = {OT_EXIT_KILLED}, \
    .nallowed_trap = 1

static void fill_reasons(struct scenario *sc, uint32_t code)
{
    for (int k = 0; k < MAX_KILLERS; k++)
        sc->reasons[k] = reason(code);
}

/* ---- scenarios --------------------------------------------------------------- */

static void kill_blocked_in_receive(void **state)
{
    (void)state;
    struct scenario sc = {.name = "blocked in receive",
                          .n = (int)scaled(4000),
                          .kind = V_BLOCKED,
                          .trap_every = 2,
                          .victim_sched = -1,
                          .nkillers = 4,
                          KILL_ONLY};
    fill_reasons(&sc, OT_EXIT_KILL);
    sc.main_kills = sc.n / 4; /* and from the attached thread too */
    sc.must_hit = true;
    run_scenario(&sc);
    /* A receive with a timeout is no different. */
    sc.name = "blocked in receive with a timeout";
    sc.kind = V_RECV_TMO;
    sc.main_kills = 0;
    sc.max_death_ms = 10000; /* long before the 30 s timeout */
    run_scenario(&sc);
}

static void kill_sleeping(void **state)
{
    (void)state;
    /* Erlang's timer:sleep is a receive with a timeout: a signal ends it. */
    struct scenario sc = {.name = "sleeping",
                          .n = (int)scaled(1000),
                          .kind = V_SLEEPER,
                          .trap_every = 2,
                          .victim_sched = -1,
                          .nkillers = 2,
                          KILL_ONLY};
    fill_reasons(&sc, OT_EXIT_KILL);
    sc.must_hit = true;
    sc.max_death_ms = 10000; /* long before the 30 s sleep ends */
    run_scenario(&sc);
}

static void kill_runnable(void **state)
{
    (void)state;
    /* Yielding in a loop on scheduler 0, killers on scheduler 1. */
    struct scenario sc = {.name = "runnable",
                          .n = (int)scaled(2000),
                          .kind = V_YIELDER,
                          .trap_every = 2,
                          .victim_sched = 0,
                          .nkillers = 2,
                          KILL_ONLY};
    fill_reasons(&sc, OT_EXIT_KILL);
    sc.must_hit = true;
    run_scenario(&sc);
}

static void kill_while_stolen(void **state)
{
    (void)state;
    /* Many runnable processes on scheduler 0, so that scheduler 1 steals
     * them, while killers on scheduler 1 kill them in a shuffled order. */
    struct scenario sc = {.name = "being stolen",
                          .n = (int)scaled(8000),
                          .kind = V_YIELDER,
                          .trap_every = 3,
                          .victim_sched = 0,
                          .nkillers = 4,
                          KILL_ONLY};
    fill_reasons(&sc, OT_EXIT_KILL);
    sc.shuffle = true;
    sc.must_hit = true;
    run_scenario(&sc);
    sc.name = "being stolen, busy with every kind of scheduling point";
    sc.kind = V_MIXED;
    sc.n = (int)scaled(3000);
    run_scenario(&sc);
}

static void many_killers(void **state)
{
    (void)state;
    /* Eight killers each signal every victim, with different reasons; the
     * first kill wins. Victims that trap only die of `kill`. */
    struct scenario sc = {.name = "many killers",
                          .n = (int)scaled(2000),
                          .kind = V_MIXED,
                          .trap_every = 2,
                          .victim_sched = -1,
                          .nkillers = 8};
    for (int k = 0; k < 8; k++)
        sc.reasons[k] = k % 4 == 0   ? reason(OT_EXIT_KILL)
                        : k % 4 == 1 ? reason(OT_EXIT_SHUTDOWN)
                        : k % 4 == 2 ? reason_s(OT_EXIT_USER + 1, "killer")
                                     : reason(OT_EXIT_NORMAL); /* ignored or trapped */
    sc.all_ranges = true;
    sc.shuffle = true;
    sc.allowed[0] = OT_EXIT_KILLED;
    sc.allowed[1] = OT_EXIT_SHUTDOWN;
    sc.allowed[2] = OT_EXIT_USER + 1;
    sc.nallowed = 3;
    sc.allowed_trap[0] = OT_EXIT_KILLED;
    sc.nallowed_trap = 1;
    sc.must_hit = true;
    run_scenario(&sc);
    sc.name = "many killers, victims blocked";
    sc.kind = V_BLOCKED;
    run_scenario(&sc);
}

static void kill_vs_natural_exit(void **state)
{
    (void)state;
    /* Victims end on their own as the killers come: each still dies once,
     * of `normal` or `killed`, and both observers agree. */
    struct scenario sc = {.name = "ending on their own",
                          .n = (int)scaled(4000),
                          .kind = V_NATURAL,
                          .trap_every = 2,
                          .victim_sched = -1,
                          .nkillers = 4};
    fill_reasons(&sc, OT_EXIT_KILL);
    sc.shuffle = true;
    sc.allowed[0] = OT_EXIT_NORMAL;
    sc.allowed[1] = OT_EXIT_KILLED;
    sc.nallowed = 2;
    sc.allowed_trap[0] = OT_EXIT_NORMAL;
    sc.allowed_trap[1] = OT_EXIT_KILLED;
    sc.nallowed_trap = 2;
    run_scenario(&sc);
}

static void kill_chain(void **state)
{
    (void)state;
    /* Victims linked in a chain (none trap): killers kill some, the links
     * kill the rest; every one dies once, of `killed`. */
    struct scenario sc = {.name = "linked in a chain",
                          .n = (int)scaled(3000),
                          .kind = V_CHAIN,
                          .trap_every = 0,
                          .victim_sched = -1,
                          .nkillers = 4,
                          KILL_ONLY};
    fill_reasons(&sc, OT_EXIT_KILL);
    sc.shuffle = true;
    run_scenario(&sc);
    /* Only the first one killed (by the main thread): the chain follows. */
    sc.name = "linked in a chain, one killed";
    sc.nkillers = 0;
    sc.shuffle = false;
    sc.main_kills = 1;
    run_scenario(&sc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(kill_blocked_in_receive, teardown),
        cmocka_unit_test_teardown(kill_sleeping, teardown),
        cmocka_unit_test_teardown(kill_runnable, teardown),
        cmocka_unit_test_teardown(kill_while_stolen, teardown),
        cmocka_unit_test_teardown(many_killers, teardown),
        cmocka_unit_test_teardown(kill_vs_natural_exit, teardown),
        cmocka_unit_test_teardown(kill_chain, teardown),
    };
    /* OTTER_TEST_FILTER=pattern (cmocka's, '*' and '?') runs some of them. */
    const char *filter = getenv("OTTER_TEST_FILTER");
    if (filter && *filter) cmocka_set_test_filter(filter);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
