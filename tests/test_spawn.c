/* Spawning: storms of short-lived processes from threads and processes,
 * deep spawn trees, pids that go stale and never alias a new process,
 * forged pids, stack-size and scheduler options. */
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
#include "sched/internal.h" /* which scheduler runs a process, its stack */
#include "tests/harness.h"

enum { TAG_HELLO = 1, TAG_DONE = 2, TAG_STOP = 3, TAG_X = 4, TAG_PARAMS = 5 };

/* ---- spawn storms -------------------------------------------------------- */

static ot_pid_t g_main;

struct hello {
    uint32_t idx;
    ot_pid_t self;
};

/* One message to main, then exit. */
static void hello_proc(void *arg)
{
    struct hello h = {(uint32_t)(uintptr_t)arg, ot_self()};
    PCHECK(ot_send(g_main, TAG_HELLO, &h, sizeof h) == 0);
}

struct spawner {
    uint32_t first, n;
};

static void spawner_proc(void *arg)
{
    struct spawner *s = arg;
    for (uint32_t i = 0; i < s->n; i++) {
        int rc = ot_spawn(hello_proc, (void *)(uintptr_t)(s->first + i), NULL, NULL);
        if (rc != 0) {
            PCHECK(rc == 0);
            return;
        }
    }
}

static void spawn_storm(void **state)
{
    (void)state;
    start_rt(2);
    const uint32_t from_main = (uint32_t)scaled(100000);
    const uint32_t nspawners = 4, per = (uint32_t)scaled(25000);
    const uint32_t total = from_main + nspawners * per;
    ot_pid_t *pids = calloc(total, sizeof *pids);
    uint8_t *seen = calloc(total, 1);
    assert_non_null(pids);
    assert_non_null(seen);
    assert_int_equal(ot_attach(&g_main), 0);

    /* From processes... */
    struct spawner sp[4];
    for (uint32_t k = 0; k < nspawners; k++) {
        sp[k] = (struct spawner){from_main + k * per, per};
        assert_int_equal(ot_spawn(spawner_proc, &sp[k], NULL, NULL), 0);
    }
    /* ... and from this thread, at the same time. */
    for (uint32_t i = 0; i < from_main; i++)
        assert_int_equal(ot_spawn(hello_proc, (void *)(uintptr_t)i, NULL, &pids[i]), 0);

    uint32_t got = 0, dup = 0, bad = 0;
    for (; got < total; got++) {
        ot_msg_t *m;
        if (ot_receive(NULL, NULL, 30000, &m) != 0) break;
        struct hello h;
        assert_int_equal(ot_msg_len(m), sizeof h);
        memcpy(&h, ot_msg_data(m), sizeof h);
        if (h.idx >= total || h.self != ot_msg_sender(m) || h.self == OT_PID_NONE)
            bad++;
        else if (seen[h.idx]++)
            dup++;
        else if (h.idx < from_main && pids[h.idx] != h.self)
            bad++; /* pid as spawn said */
        ot_msg_free(m);
    }
    assert_int_equal(got, total);
    assert_int_equal(dup, 0);
    assert_int_equal(bad, 0);
    for (uint32_t i = 0; i < total; i++)
        assert_int_equal(seen[i], 1);

    /* Every process ends: only the attached main thread is left. */
    uint64_t end = now_ns() + 20ull * 1000000000u;
    while (ot_process_count() != 1 && now_ns() < end)
        ot_sleep(1);
    assert_int_equal(ot_process_count(), 1);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_process_count(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 1000), 0);
    free(pids);
    free(seen);
    stop_rt();
}

/* ---- deep spawn trees (skynet) ------------------------------------------- */

struct node {
    ot_pid_t parent;
    int level;
    uint64_t num;
};

static void skynet(void *arg)
{
    struct node n = *(struct node *)arg;
    free(arg);
    uint64_t sum = 0;
    if (n.level == 0) {
        sum = n.num;
    } else {
        ot_pid_t me = ot_self();
        for (uint64_t i = 0; i < 10; i++) {
            struct node *c = malloc(sizeof *c);
            PCHECK(c != NULL);
            if (!c) return;
            *c = (struct node){me, n.level - 1, n.num * 10 + i};
            int rc = ot_spawn(skynet, c, NULL, NULL);
            PCHECK(rc == 0);
            if (rc != 0) {
                free(c);
                return;
            }
        }
        for (int i = 0; i < 10; i++) {
            ot_msg_t *m;
            int rc = ot_receive(NULL, NULL, 60000, &m);
            PCHECK(rc == 0);
            if (rc != 0) return;
            uint64_t v;
            memcpy(&v, ot_msg_data(m), sizeof v);
            sum += v;
            ot_msg_free(m);
        }
    }
    PCHECK(ot_send(n.parent, TAG_DONE, &sum, sizeof sum) == 0);
}

static void skynet_tree(void **state)
{
    (void)state;
    start_rt(2);
    const int levels = g_san ? 4 : 5; /* 10^levels leaves */
    uint64_t leaves = 1;
    for (int i = 0; i < levels; i++)
        leaves *= 10;
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    struct node *root = malloc(sizeof *root);
    assert_non_null(root);
    *root = (struct node){me, levels, 0};
    assert_int_equal(ot_spawn(skynet, root, NULL, NULL), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 120000, &m), 0);
    uint64_t sum;
    memcpy(&sum, ot_msg_data(m), sizeof sum);
    ot_msg_free(m);
    assert_int_equal(sum, leaves * (leaves - 1) / 2);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 20000), 0);
    assert_int_equal(ot_process_count(), 0);
    stop_rt();
}

/* ---- stale pids ------------------------------------------------------------ */

static void exit_at_once(void *arg)
{
    (void)arg;
}

/* Waits for TAG_STOP; reports how many other messages it had by then. */
static void waiter_proc(void *arg)
{
    (void)arg;
    uint64_t t = TAG_STOP;
    ot_msg_t *m;
    if (ot_receive(match_tag, &t, 60000, &m) != 0) return;
    ot_pid_t reply = ot_msg_sender(m);
    ot_msg_free(m);
    int64_t others = ot_mailbox_len();
    PCHECK(ot_send(reply, TAG_DONE, &others, sizeof others) == 0);
}

static bool match_sender(const ot_msg_t *m, void *arg)
{
    return ot_msg_tag(m) == TAG_DONE && ot_msg_sender(m) == *(const ot_pid_t *)arg;
}

static atomic_int g_bufs_freed;
static void count_free(void *p)
{
    (void)p;
    atomic_fetch_add(&g_bufs_freed, 1);
}

static void stale_controller(void *arg)
{
    ot_pid_t main = *(ot_pid_t *)arg;
    ot_pid_t old;
    PCHECK(ot_spawn(exit_at_once, NULL, NULL, &old) == 0);
    /* One scheduler: once we run again, `old` has run and died. */
    int spins = 0;
    while (ot_send(old, TAG_X, NULL, 0) != -ESRCH && spins++ < 1000)
        ot_yield();
    PCHECK(ot_send(old, TAG_X, NULL, 0) == -ESRCH);

    /* New processes until one gets the same table slot. */
    ot_pid_t q = OT_PID_NONE;
    for (int i = 0; i < 1000; i++) {
        ot_pid_t c;
        PCHECK(ot_spawn(waiter_proc, NULL, NULL, &c) == 0);
        if ((uint32_t)c == (uint32_t)old) {
            q = c;
            break;
        }
        PCHECK(ot_send(c, TAG_STOP, NULL, 0) == 0);
    }
    int64_t reused = q != OT_PID_NONE;
    if (reused) {
        PCHECK(q != old);
        PCHECK((q >> 32) != (old >> 32)); /* another generation */
        /* Every way of sending to the old pid misses the new process. */
        PCHECK(ot_send(old, TAG_X, "x", 1) == -ESRCH);
        PCHECK(ot_send_ref(old, TAG_X, ot_make_ref(), NULL, 0) == -ESRCH);
        atomic_store(&g_bufs_freed, 0);
        PCHECK(ot_send_buf(old, TAG_X, 0, (void *)"static", 6, count_free) == -ESRCH);
        PCHECK(atomic_load(&g_bufs_freed) == 1);
        PCHECK(ot_send_after(1, old, TAG_X, NULL, 0, NULL) == 0); /* dropped when due */
        PCHECK(ot_sleep(30) == 0);
        /* The new process got none of it. */
        PCHECK(ot_send(q, TAG_STOP, NULL, 0) == 0);
        ot_msg_t *m; /* its answer (the others we stopped answer too) */
        PCHECK(ot_receive(match_sender, &q, 10000, &m) == 0);
        int64_t others;
        memcpy(&others, ot_msg_data(m), sizeof others);
        PCHECK(ot_msg_sender(m) == q);
        ot_msg_free(m);
        PCHECK(others == 0);
    }
    PCHECK(ot_send(main, TAG_DONE, &reused, sizeof reused) == 0);
}

static void stale_pids(void **state)
{
    (void)state;
    start_rt(1);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    assert_int_equal(ot_spawn(stale_controller, &me, NULL, NULL), 0);
    ot_msg_t *m;
    uint64_t d = TAG_DONE;
    assert_int_equal(ot_receive(match_tag, &d, 30000, &m), 0);
    int64_t reused;
    memcpy(&reused, ot_msg_data(m), sizeof reused);
    ot_msg_free(m);
    assert_int_equal(reused, 1); /* the slot was reused: the test tested */

    /* An attached thread's pid goes stale at detach, and stays stale. */
    assert_int_equal(ot_detach(), 0);
    ot_pid_t again;
    assert_int_equal(ot_attach(&again), 0);
    assert_true(again != me);
    assert_int_equal(ot_send(me, TAG_X, NULL, 0), -ESRCH);
    assert_int_equal(ot_send(again, TAG_X, NULL, 0), 0);
    assert_int_equal(ot_mailbox_len(), 1);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* ---- dead PCBs behind table slots ---------------------------------------- */

/* A death leaves its table slot pointing at the dead PCB (sched/internal.h,
 * ot__proc_is), and the PCB comes back a grace period later for a process
 * in another slot, while the dead one's slot goes to another PCB at once.
 * Through that shuffle: no dead pid reaches anyone, the process list holds
 * each live process once and no dead one, and each live process gets only
 * its own messages. */
#define DS_N 2000

static int cmp_pid(const void *a, const void *b)
{
    ot_pid_t x = *(const ot_pid_t *)a, y = *(const ot_pid_t *)b;
    return x < y ? -1 : x > y;
}

/* The live pids listed by ot_processes, less `self`, sorted; their count,
 * or -1 when one is listed twice. */
static long listed(ot_pid_t self, ot_pid_t *buf, size_t cap)
{
    long n = ot_processes(buf, cap);
    if (n < 0 || (size_t)n > cap) return -1;
    long k = 0;
    for (long i = 0; i < n; i++)
        if (buf[i] != self && buf[i] != g_main) buf[k++] = buf[i];
    qsort(buf, (size_t)k, sizeof *buf, cmp_pid);
    for (long i = 1; i < k; i++)
        if (buf[i] == buf[i - 1]) return -1;
    return k;
}

/* Stop each of pids[0..n) (waiter_proc) and check that it had no other
 * message. From a process or an attached thread. */
static void stop_all(const ot_pid_t *pids, int n)
{
    uint64_t done = TAG_DONE;
    for (int i = 0; i < n; i++)
        PCHECK(ot_send(pids[i], TAG_STOP, NULL, 0) == 0);
    for (int i = 0; i < n; i++) {
        ot_msg_t *m;
        PCHECK(ot_receive(match_tag, &done, 30000, &m) == 0);
        int64_t others = -1;
        memcpy(&others, ot_msg_data(m), sizeof others);
        PCHECK(others == 0);
        ot_msg_free(m);
    }
}

static ot_pid_t ds_old[DS_N];

static void dead_slots_controller(void *arg)
{
    (void)arg;
    static ot_pid_t young[DS_N / 2], buf[4 * DS_N];
    ot_pid_t self = ot_self();
    /* The old ones wait on scheduler 1; main stops them from its thread, so
     * they die there (a stop from a process would wake them here): their
     * PCBs come from this scheduler's pool and go back to it, their slots
     * to scheduler 1's cache. */
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.scheduler = 1;
    for (int i = 0; i < DS_N; i++)
        PCHECK(ot_spawn(waiter_proc, NULL, &o, &ds_old[i]) == 0);
    PCHECK(ot_send(g_main, TAG_HELLO, NULL, 0) == 0);
    uint64_t go = TAG_X;
    ot_msg_t *m;
    PCHECK(ot_receive(match_tag, &go, 30000, &m) == 0);
    ot_msg_free(m);
    for (int i = 0; i < DS_N; i++)
        for (int spins = 0; ot_send(ds_old[i], TAG_X, NULL, 0) != -ESRCH && spins < 100000;
             spins++)
            ot_yield();
    /* Scheduler 1, idle, ends their grace periods and sends the PCBs home. */
    PCHECK(ot_sleep(20) == 0);
    /* Half as many new ones: they reuse the old PCBs in some order, and
     * half of the old slots or more stay unused, pointing at PCBs that
     * live on under other pids. */
    for (int i = 0; i < DS_N / 2; i++)
        PCHECK(ot_spawn(waiter_proc, NULL, NULL, &young[i]) == 0);
    for (int i = 0; i < DS_N; i++)
        PCHECK(ot_send(ds_old[i], TAG_X, NULL, 0) == -ESRCH);
    long n = listed(self, buf, sizeof buf / sizeof buf[0]);
    PCHECK(n == DS_N / 2);
    for (int i = 0; i < DS_N / 2 && n == DS_N / 2; i++)
        PCHECK(bsearch(&young[i], buf, (size_t)n, sizeof *buf, cmp_pid) != NULL);
    stop_all(young, DS_N / 2);
    PCHECK(ot_send(g_main, TAG_DONE, NULL, 0) == 0);
}

static void dead_slots(void **state)
{
    (void)state;
    start_rt(2);
    assert_int_equal(ot_attach(&g_main), 0);
    ot_pid_t ctl;
    assert_int_equal(ot_spawn(dead_slots_controller, NULL, NULL, &ctl), 0);
    ot_msg_t *m;
    uint64_t tag = TAG_HELLO;
    assert_int_equal(ot_receive(match_tag, &tag, 30000, &m), 0);
    ot_msg_free(m);
    stop_all(ds_old, DS_N);
    tag = TAG_DONE;
    assert_int_equal(ot_send(ctl, TAG_X, NULL, 0), 0);
    assert_int_equal(ot_receive(match_tag, &tag, 60000, &m), 0);
    assert_int_equal(ot_msg_sender(m), ctl);
    ot_msg_free(m);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* ---- forged pids ------------------------------------------------------------ */

static void forged_pids(void **state)
{
    (void)state;
    ot_config_t cfg;
    ot_config_init(&cfg);
    cfg.schedulers = 2;
    cfg.max_processes = 1024;
    cfg.stop_grace_ms = 200;
    start_cfg(&cfg);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    uint32_t idx = (uint32_t)me;
    uint64_t gen = me >> 32;
    assert_true(idx != 0);
    assert_true(gen != 0);

    /* Index 0 is never a process, whatever the generation. */
    assert_int_equal(ot_send(OT_PID_NONE, TAG_X, NULL, 0), -EINVAL);
    assert_int_equal(ot_send((ot_pid_t)1 << 32, TAG_X, NULL, 0), -EINVAL);
    assert_int_equal(ot_send(gen << 32, TAG_X, NULL, 0), -EINVAL);
    /* Beyond the table. */
    assert_int_equal(ot_send((gen << 32) | 1025, TAG_X, NULL, 0),
                     -EINVAL); /* max_processes = 1024: slots 1..1024 */
    assert_int_equal(ot_send((gen << 32) | 5000, TAG_X, NULL, 0), -EINVAL);
    assert_int_equal(ot_send((gen << 32) | 0xffffffffu, TAG_X, NULL, 0), -EINVAL);
    assert_int_equal(ot_send(~(ot_pid_t)0, TAG_X, NULL, 0), -EINVAL);
    assert_int_equal(ot_send_ref(~(ot_pid_t)0, TAG_X, 1, NULL, 0), -EINVAL);
    assert_int_equal(ot_send_after(1, (ot_pid_t)5000, TAG_X, NULL, 0, NULL), -EINVAL);
    /* A live slot with the wrong generation. */
    assert_int_equal(ot_send(((gen + 1) << 32) | idx, TAG_X, NULL, 0), -ESRCH);
    assert_int_equal(ot_send(((gen ^ 0x80000000u) << 32) | idx, TAG_X, NULL, 0), -ESRCH);
    assert_int_equal(ot_send((ot_pid_t)idx, TAG_X, NULL, 0), -ESRCH); /* gen 0 */
    /* A slot in range that was never used. */
    assert_int_equal(ot_send(((ot_pid_t)1 << 32) | 1000, TAG_X, NULL, 0), -ESRCH);
    assert_int_equal(ot_send(((ot_pid_t)1 << 32) | 1023, TAG_X, NULL, 0), -ESRCH);
    /* None of it reached us. */
    assert_int_equal(ot_mailbox_len(), 0);
    assert_int_equal(ot_send(me, TAG_X, NULL, 0), 0);
    assert_int_equal(ot_mailbox_len(), 1);

    /* The pid's text form. */
    char buf[64], want[64];
    snprintf(want, sizeof want, "<0.%u.%u>", idx, (unsigned)gen);
    assert_int_equal(ot_pid_format(me, buf, sizeof buf), (int)strlen(want));
    assert_string_equal(buf, want);
    assert_int_equal(ot_detach(), 0);
    stop_rt();
}

/* ---- options: stack size, scheduler ---------------------------------------- */

struct stack_probe {
    ot_pid_t main;
    size_t use; /* bytes of stack to touch */
};

static __attribute__((noinline)) uint64_t touch_stack(size_t n)
{
    volatile uint8_t *a = __builtin_alloca(n);
    for (size_t i = 0; i < n; i += 512)
        a[i] = (uint8_t)i;
    a[n - 1] = 1;
    uint64_t s = 0;
    for (size_t i = 0; i < n; i += 512)
        s += a[i];
    return s;
}

static void stack_proc(void *arg)
{
    struct stack_probe *sp = arg;
    uint64_t res[2] = {ot__self()->stack->size, 0};
    if (sp->use) res[1] = touch_stack(sp->use);
    PCHECK(ot_send(sp->main, TAG_DONE, res, sizeof res) == 0);
}

static uint64_t stack_size_of(ot_pid_t me, size_t opt, size_t use)
{
    struct stack_probe sp = {me, use};
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.stack_size = opt;
    assert_int_equal(ot_spawn(stack_proc, &sp, &o, NULL), 0);
    ot_msg_t *m;
    assert_int_equal(ot_receive(NULL, NULL, 10000, &m), 0);
    uint64_t res[2];
    memcpy(res, ot_msg_data(m), sizeof res);
    ot_msg_free(m);
    return res[0];
}

static void stack_size_option(void **state)
{
    (void)state;
    ot_config_t cfg;
    ot_config_init(&cfg);
    cfg.schedulers = 2;
    cfg.stack_size = 100000; /* rounded up: 128 KiB */
    cfg.stop_grace_ms = 200;
    start_cfg(&cfg);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    assert_int_equal(stack_size_of(me, 0, 0), 128 * 1024);
    assert_int_equal(stack_size_of(me, 16 * 1024, 0), 16 * 1024);
    assert_int_equal(stack_size_of(me, 20000, 0), 32 * 1024);
    /* A big stack can really be used: 3 MiB of a 4 MiB stack. */
    assert_int_equal(stack_size_of(me, 4u << 20, 3u << 20), 4u << 20);
    assert_int_equal(stack_size_of(me, 8u << 20, 0), 8u << 20);
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.stack_size = (8u << 20) + 1;
    assert_int_equal(ot_spawn(stack_proc, NULL, &o, NULL), -EINVAL);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    stop_rt();
}

static atomic_int g_hog_sched = -1, g_target_sched = -1;

/* Holds its scheduler (no scheduling point) until the target has run. */
static void hog_proc(void *arg)
{
    (void)arg;
    atomic_store(&g_hog_sched, (int)ot__tls_sched()->idx);
    uint64_t end = now_ns() + 10ull * 1000000000u;
    while (atomic_load(&g_target_sched) < 0 && now_ns() < end) {
    }
}

static void target_proc(void *arg)
{
    (void)arg;
    atomic_store(&g_target_sched, (int)ot__tls_sched()->idx);
}

static void scheduler_option(void **state)
{
    (void)state;
    start_rt(2);
    for (int round = 0; round < 4; round++) {
        atomic_store(&g_hog_sched, -1);
        atomic_store(&g_target_sched, -1);
        ot_spawn_opts_t o;
        ot_spawn_opts_init(&o);
        o.scheduler = round % 2;
        assert_int_equal(ot_spawn(hog_proc, NULL, &o, NULL), 0);
        uint64_t end = now_ns() + 10ull * 1000000000u;
        while (atomic_load(&g_hog_sched) < 0 && now_ns() < end)
            ot_sleep(1);
        int h = atomic_load(&g_hog_sched);
        assert_true(h == 0 || h == 1);
        /* The other scheduler is the only one free to run the target: it
         * must start exactly where it was asked to. */
        o.scheduler = 1 - h;
        assert_int_equal(ot_spawn(target_proc, NULL, &o, NULL), 0);
        assert_int_equal(ot_runtime_wait_idle(g_rt, 20000), 0);
        assert_int_equal(atomic_load(&g_target_sched), 1 - h);
    }
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.scheduler = 2;
    assert_int_equal(ot_spawn(target_proc, NULL, &o, NULL), -EINVAL);
    o.scheduler = -2;
    assert_int_equal(ot_spawn(target_proc, NULL, &o, NULL), -EINVAL);
    stop_rt();
}

/* ---- ot_exit ------------------------------------------------------------- */

static atomic_int g_after_exit, g_users_done;

/* Frames with addressable locals that never unwind: ot_exit from below. */
static __attribute__((noinline)) void exit_from_depth(int n, ot_pid_t to)
{
    volatile char buf[96];
    char *volatile esc = (char *)buf;
    buf[0] = (char)n;
    (void)esc;
    if (n == 0) {
        PCHECK(ot_send(to, TAG_X, "left", 4) == 0); /* unread: freed at exit */
        ot_exit();
        atomic_fetch_add(&g_after_exit, 1); /* never */
        return;
    }
    exit_from_depth(n - 1, to);
    buf[1] = 1;
    atomic_fetch_add(&g_after_exit, 1); /* never */
}

static void exiter(void *arg)
{
    (void)arg;
    exit_from_depth(10, ot_self());
    atomic_fetch_add(&g_after_exit, 1); /* never */
}

/* Uses the same stack addresses with another frame layout. */
static __attribute__((noinline)) int use_locals(int n)
{
    volatile char x[200];
    char *volatile esc = (char *)x;
    (void)esc;
    memset((char *)x, n, sizeof x);
    return n ? use_locals(n - 1) + x[7] : x[3];
}

static void stack_user(void *arg)
{
    (void)arg;
    PCHECK(use_locals(12) == 12 * 13 / 2);
    atomic_fetch_add(&g_users_done, 1);
}

static void exit_from_deep_frames(void **state)
{
    (void)state;
    start_rt(1); /* one scheduler: the next process reuses the stack */
    atomic_store(&g_after_exit, 0);
    atomic_store(&g_users_done, 0);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(ot_spawn(exiter, NULL, NULL, NULL), 0);
        assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
        assert_int_equal(ot_spawn(stack_user, NULL, NULL, NULL), 0);
        assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    }
    assert_int_equal(atomic_load(&g_after_exit), 0);
    assert_int_equal(atomic_load(&g_users_done), 200);
    assert_int_equal(ot_process_count(), 0);
    stop_rt(); /* LeakSanitizer: the unread messages were freed */
}

/* Under TSan a dead process's fiber serves the next process started on its
 * scheduler, and its shadow stack keeps the frames the dead one never
 * returned from; TSan's is of fixed size. Reused for every process, a
 * fiber crashed TSan after 15,000-60,000 processes that exit a few frames
 * deep (sched/fiber.h). In the other builds, a long chain of such exits on
 * one scheduler. Not scaled down: the sanitizer builds are the point. */
static void below_exiter(void *arg)
{
    exit_from_depth(3, (ot_pid_t)(uintptr_t)arg); /* sends TAG_X, then exits */
}

enum { N_CHAIN = 100000 };

static void chain_driver(void *arg)
{
    (void)arg;
    ot_pid_t me = ot_self();
    uint64_t left = TAG_X;
    for (int i = 0; i < N_CHAIN; i++) {
        PCHECK(ot_spawn(below_exiter, (void *)(uintptr_t)me, NULL, NULL) == 0);
        ot_msg_t *m;
        if (ot_receive(match_tag, &left, 30000, &m) != 0) {
            PCHECK(!"an exiter's message never came");
            return;
        }
        ot_msg_free(m);
    }
    PCHECK(ot_send(g_main, TAG_STOP, NULL, 0) == 0);
}

static void many_exits_one_scheduler(void **state)
{
    (void)state;
    start_rt(1);
    atomic_store(&g_after_exit, 0);
    assert_int_equal(ot_attach(&g_main), 0);
    assert_int_equal(ot_spawn(chain_driver, NULL, NULL, NULL), 0);
    uint64_t stop = TAG_STOP;
    ot_msg_t *m;
    assert_int_equal(ot_receive(match_tag, &stop, 120000, &m), 0);
    ot_msg_free(m);
    assert_int_equal(atomic_load(&g_after_exit), 0);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    assert_int_equal(ot_process_count(), 0);
    stop_rt();
}

/* A name is kept (23 characters), for reports. */
static void name_proc(void *arg)
{
    char *out = arg;
    snprintf(out, 32, "%s", ot__self()->name);
}

static void name_option(void **state)
{
    (void)state;
    start_rt(2);
    static char got[32];
    char name[40];
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = 0;
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.name = name;
    assert_int_equal(ot_spawn(name_proc, got, &o, NULL), 0);
    name[0] = 'X'; /* copied at spawn: later changes do not matter */
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    assert_int_equal(strlen(got), 23);
    assert_int_equal(got[0], 'n');
    stop_rt();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(spawn_storm, teardown),
        cmocka_unit_test_teardown(skynet_tree, teardown),
        cmocka_unit_test_teardown(stale_pids, teardown),
        cmocka_unit_test_teardown(dead_slots, teardown),
        cmocka_unit_test_teardown(forged_pids, teardown),
        cmocka_unit_test_teardown(stack_size_option, teardown),
        cmocka_unit_test_teardown(scheduler_option, teardown),
        cmocka_unit_test_teardown(name_option, teardown),
        cmocka_unit_test_teardown(exit_from_deep_frames, teardown),
        cmocka_unit_test_teardown(many_exits_one_scheduler, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
