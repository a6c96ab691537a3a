/* Seeded random spawn / link / unlink / monitor / demonitor / exit / kill
 * among many processes, for OTTER_STRESS_SECONDS (default 10) with seed
 * OTTER_STRESS_SEED (default below); both are printed, so that a failure
 * can be replayed (the operations each process draws are reproducible; how
 * they interleave is up to the schedulers).
 *
 * Workers sit in a shared pool of pids; they exit on their own after a
 * random life, with a random reason, and on commands they link, unlink,
 * monitor, spawn (linked or not), toggle trap_exit, send exit signals to
 * random pool pids and exit. Driver processes (trapping exits) do the same
 * to the pool and keep books of every monitor and link they make; a plain
 * thread sends exit signals too. At the end every worker stops, and each
 * driver checks:
 *   - each monitor got exactly one DOWN, from its target; none after
 *     ot_demonitor returned 1; exactly one after it returned 0 without
 *     flush; none more after it returned 0 with OT_DEMONITOR_FLUSH;
 *   - each EXIT comes from a pid the driver linked, at most one per
 *     successful link, at least one when the last thing the driver did to
 *     that pid was to link;
 *   - no DOWN or EXIT carries `kill`; DOWN and EXIT of one pid agree on its
 *     reason (noproc aside);
 * and the main thread checks that no process is left (ot_process_count()
 * back to the baseline) and that nothing hangs (generous timeouts fail
 * instead). */
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

#define DEFAULT_SEED 0x07735eedull
#define POOL 2048
#define NDRIVERS 4

enum { T_WCMD = 0x5300 };

enum wop {
    W_EXIT,
    W_LINK,
    W_UNLINK,
    W_SPAWN_LINK,
    W_SPAWN,
    W_TRAP,
    W_MONITOR,
    W_DEMONITOR,
    W_KILL,
    W_NOPS
};

struct wcmd {
    uint32_t op;
    uint32_t flag;
    ot_pid_t pid;
    uint64_t seed;
    ot_reason_t reason;
};

static _Atomic ot_pid_t g_pool[POOL];
static atomic_bool g_stop;
static size_t g_cap; /* spawn only while fewer processes live */
static atomic_long g_spawned;

/* The drivers and the main thread: never in the pool (nobody may kill them). */
static _Atomic ot_pid_t g_protected[NDRIVERS + 1];
static atomic_int g_registered;

static bool is_protected(ot_pid_t p)
{
    for (int i = 0; i <= NDRIVERS; i++)
        if (atomic_load_explicit(&g_protected[i], memory_order_relaxed) == p) return true;
    return false;
}

/* New workers write their pid into a random slot, so most slots soon name
 * dead processes; now and then driver 0 refills the pool with live pids
 * (ot_processes) so that most operations find a live target. */
static void refresh_pool(rng_t *g)
{
    static ot_pid_t buf[8192];
    if (atomic_load(&g_registered) < NDRIVERS) return;
    long n = ot_processes(buf, sizeof buf / sizeof buf[0]);
    if (n < 0) {
        PCHECK(n >= 0);
        return;
    }
    if (n > (long)(sizeof buf / sizeof buf[0])) n = sizeof buf / sizeof buf[0];
    long k = 0;
    for (long i = 0; i < n; i++)
        if (!is_protected(buf[i])) buf[k++] = buf[i];
    if (k == 0) return;
    /* Every slot: the pool then names live processes only, for a while. */
    for (size_t i = 0; i < POOL; i++)
        atomic_store_explicit(&g_pool[i], buf[rng_below(g, (uint64_t)k)], memory_order_relaxed);
}

static ot_pid_t pool_pick(rng_t *g)
{
    return atomic_load_explicit(&g_pool[rng_below(g, POOL)], memory_order_relaxed);
}

/* A random reason a process may end with or send: never `kill` (that one
 * only goes through ot_exit_pid, see random_signal). */
static ot_reason_t random_reason(rng_t *g)
{
    switch (rng_below(g, 5)) {
    case 0: return reason(OT_EXIT_NORMAL);
    case 1: return reason(OT_EXIT_SHUTDOWN);
    case 2: return reason(OT_EXIT_KILLED);
    default: {
        uint64_t v = rng_next(g);
        ot_reason_t r;
        ot_reason_make(&r, OT_EXIT_USER + (uint32_t)(v % 7), &v, rng_below(g, 9));
        return r;
    }
    }
}

static ot_reason_t random_signal(rng_t *g)
{
    return rng_below(g, 3) == 0 ? reason(OT_EXIT_KILL) : random_reason(g);
}

static bool can_spawn(void)
{
    return !atomic_load(&g_stop) && ot_process_count() < g_cap;
}

static void worker(void *arg);

static int spawn_worker(rng_t *g, int how, ot_pid_t *pid, ot_ref_t *ref)
{
    void *seed = (void *)(uintptr_t)(rng_next(g) | 1);
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    o.scheduler = (int)rng_below(g, 2);
    int rc;
    if (how == 0)
        rc = ot_spawn(worker, seed, &o, pid);
    else if (how == 1)
        rc = ot_spawn_link(worker, seed, &o, pid);
    else
        rc = ot_spawn_monitor(worker, seed, &o, pid, ref);
    if (rc == 0) atomic_fetch_add_explicit(&g_spawned, 1, memory_order_relaxed);
    return rc;
}

static void worker_do(rng_t *g, const struct wcmd *c, ot_ref_t *last_mon)
{
    ot_pid_t p;
    ot_ref_t ref;
    int rc;
    switch (c->op) {
    case W_EXIT: ot_exit_reason(&c->reason); break;
    case W_LINK:
        rc = ot_link(c->pid);
        PCHECK(rc == 0 || rc == -ESRCH);
        break;
    case W_UNLINK: PCHECK(ot_unlink(c->pid) == 0); break;
    case W_SPAWN_LINK:
    case W_SPAWN:
        if (can_spawn()) {
            rc = spawn_worker(g, c->op == W_SPAWN_LINK ? 1 : 0, &p, &ref);
            PCHECK(rc == 0 || rc == -EAGAIN || rc == -ENOMEM);
        }
        break;
    case W_TRAP: PCHECK(ot_trap_exit(c->flag != 0) >= 0); break;
    case W_MONITOR:
        if (ot_monitor(c->pid, &ref) == 0) *last_mon = ref;
        break;
    case W_DEMONITOR:
        if (*last_mon) {
            rc = ot_demonitor(*last_mon, c->flag ? OT_DEMONITOR_FLUSH : 0);
            PCHECK(rc == 0 || rc == 1);
            *last_mon = 0;
        }
        break;
    case W_KILL:
        rc = ot_exit_pid(c->pid, &c->reason);
        PCHECK(rc == 0 || rc == -ESRCH);
        break;
    default: break;
    }
}

static struct wcmd random_wcmd(rng_t *g)
{
    struct wcmd c;
    memset(&c, 0, sizeof c);
    c.op = (uint32_t)rng_below(g, W_NOPS);
    c.flag = (uint32_t)rng_below(g, 2);
    c.pid = pool_pick(g);
    if (c.pid == OT_PID_NONE) c.op = W_SPAWN;
    c.seed = rng_next(g);
    c.reason = c.op == W_KILL ? random_signal(g) : random_reason(g);
    return c;
}

/* Lives a random number of idle periods, obeys commands, acts at random. */
static void worker(void *arg)
{
    rng_t g = {(uint64_t)(uintptr_t)arg};
    atomic_store_explicit(&g_pool[rng_below(&g, POOL)], ot_self(), memory_order_relaxed);
    if (rng_below(&g, 4) == 0) PCHECK(ot_trap_exit(true) == 0);
    uint64_t life = 20 + rng_below(&g, 200);
    ot_ref_t last_mon = 0;
    for (uint64_t idle = 0;;) {
        if (atomic_load_explicit(&g_stop, memory_order_relaxed)) return;
        ot_msg_t *m;
        int rc = ot_receive(NULL, NULL, (int64_t)(1 + rng_below(&g, 10)), &m);
        if (rc == 0) {
            uint64_t tag = ot_msg_tag(m);
            if (tag == T_WCMD && ot_msg_len(m) == sizeof(struct wcmd)) {
                struct wcmd c;
                memcpy(&c, ot_msg_data(m), sizeof c);
                ot_msg_free(m);
                worker_do(&g, &c, &last_mon);
            } else {
                ot_msg_free(m);
                if (tag == OT_TAG_SHUTDOWN) return;
            }
            continue;
        }
        PCHECK(rc == -ETIMEDOUT);
        if (++idle >= life) {
            if (rng_below(&g, 2)) return;
            ot_reason_t r = random_reason(&g);
            ot_exit_reason(&r);
        }
        if (rng_below(&g, 3) == 0) {
            struct wcmd c = random_wcmd(&g);
            if (c.op != W_EXIT) worker_do(&g, &c, &last_mon);
        }
    }
}

/* ---- a small hash map: u64 key (never 0) -> u32 index ---------------------- */

typedef struct {
    uint64_t *keys;
    uint32_t *vals;
    size_t cap, n;
} hmap_t;

static size_t hslot(uint64_t k, size_t cap)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (size_t)k & (cap - 1);
}

static void hmap_put(hmap_t *h, uint64_t key, uint32_t val);

static void hmap_grow(hmap_t *h)
{
    hmap_t old = *h;
    h->cap = old.cap ? old.cap * 2 : 1024;
    h->keys = calloc(h->cap, sizeof *h->keys);
    h->vals = calloc(h->cap, sizeof *h->vals);
    h->n = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.keys[i]) hmap_put(h, old.keys[i], old.vals[i]);
    free(old.keys);
    free(old.vals);
}

static void hmap_put(hmap_t *h, uint64_t key, uint32_t val)
{
    if ((h->n + 1) * 2 > h->cap) hmap_grow(h);
    size_t i = hslot(key, h->cap);
    while (h->keys[i] && h->keys[i] != key)
        i = (i + 1) & (h->cap - 1);
    if (!h->keys[i]) h->n++;
    h->keys[i] = key;
    h->vals[i] = val;
}

static bool hmap_get(const hmap_t *h, uint64_t key, uint32_t *val)
{
    if (!h->cap) return false;
    size_t i = hslot(key, h->cap);
    while (h->keys[i]) {
        if (h->keys[i] == key) {
            *val = h->vals[i];
            return true;
        }
        i = (i + 1) & (h->cap - 1);
    }
    return false;
}

static void hmap_free(hmap_t *h)
{
    free(h->keys);
    free(h->vals);
    memset(h, 0, sizeof *h);
}

/* ---- drivers --------------------------------------------------------------- */

enum mon_state { M_ACTIVE, M_DEMON1, M_DEMON0, M_DEMON0_FLUSH };

struct mon {
    ot_pid_t target;
    ot_ref_t ref;
    uint8_t state;
    uint8_t downs;
    uint8_t downs_at_demon;
};

struct pinfo {
    ot_pid_t pid;
    uint32_t links_ok;    /* ot_link / ot_spawn_link that returned 0 */
    uint32_t exits;       /* EXIT messages from it */
    uint32_t exits_since; /* ... since the last link */
    uint8_t last_linked;  /* the last link/unlink done to it was a link */
    uint32_t death;       /* its reason, from a DOWN or EXIT (not noproc) */
    uint8_t death_known;
};

struct driver {
    int id;
    ot_pid_t main;
    rng_t g;
    struct mon *mons;
    size_t nmons, capmons;
    struct pinfo *pis;
    size_t npis, cappis;
    hmap_t monmap, pimap;
    uint32_t *cand; /* monitors that may still be active, to demonitor */
    size_t ncand, capcand;
    long errors;
    /* statistics */
    long ops, n_mon, n_demon1, n_demon0, n_links, n_unlinks, n_exits, n_downs, n_kills,
        n_spawns, n_noproc;
};

struct driver_res {
    long errors, ops, n_mon, n_demon1, n_demon0, n_links, n_unlinks, n_exits, n_downs, n_kills,
        n_spawns, n_noproc;
};

#define DERR(d, ...)                                 \
    do {                                             \
        if ((d)->errors++ < 10) {                    \
            fprintf(stderr, "driver %d: ", (d)->id); \
            fprintf(stderr, __VA_ARGS__);            \
            fputc('\n', stderr);                     \
        }                                            \
    } while (0)

static void *grow(void *p, size_t *cap, size_t elem)
{
    *cap = *cap ? *cap * 2 : 1024;
    void *q = realloc(p, *cap * elem);
    if (!q) abort();
    return q;
}

static struct pinfo *pinfo_of(struct driver *d, ot_pid_t pid)
{
    uint32_t i;
    if (hmap_get(&d->pimap, pid, &i)) return &d->pis[i];
    if (d->npis == d->cappis) d->pis = grow(d->pis, &d->cappis, sizeof *d->pis);
    struct pinfo *p = &d->pis[d->npis];
    memset(p, 0, sizeof *p);
    p->pid = pid;
    hmap_put(&d->pimap, pid, (uint32_t)d->npis);
    d->npis++;
    return p;
}

static void add_mon(struct driver *d, ot_pid_t target, ot_ref_t ref)
{
    uint32_t dummy;
    if (hmap_get(&d->monmap, ref, &dummy))
        DERR(d, "monitor reference %#llx reused", (unsigned long long)ref);
    if (d->nmons == d->capmons) d->mons = grow(d->mons, &d->capmons, sizeof *d->mons);
    d->mons[d->nmons] = (struct mon){target, ref, M_ACTIVE, 0, 0};
    hmap_put(&d->monmap, ref, (uint32_t)d->nmons);
    if (d->ncand == d->capcand) d->cand = grow(d->cand, &d->capcand, sizeof *d->cand);
    d->cand[d->ncand++] = (uint32_t)d->nmons;
    d->nmons++;
    d->n_mon++;
}

static void note_link(struct driver *d, ot_pid_t pid)
{
    struct pinfo *p = pinfo_of(d, pid);
    p->links_ok++;
    p->last_linked = 1;
    p->exits_since = 0;
    d->n_links++;
}

static void note_death(struct driver *d, struct pinfo *p, uint32_t code, const char *via)
{
    if (code == OT_EXIT_NOPROC) {
        d->n_noproc++;
        return;
    }
    if (!p->death_known) {
        p->death_known = 1;
        p->death = code;
    } else if (p->death != code) {
        DERR(d, "%#llx died of %s and of %s (%s)", (unsigned long long)p->pid,
             ot_reason_name(p->death), ot_reason_name(code), via);
    }
}

static void handle(struct driver *d, ot_msg_t *m)
{
    uint64_t tag = ot_msg_tag(m);
    ot_pid_t from = ot_msg_sender(m);
    if (tag == OT_TAG_DOWN) {
        d->n_downs++;
        ot_reason_t r;
        if (ot_msg_reason(m, &r) != 0) DERR(d, "unreadable DOWN");
        uint32_t i;
        if (!hmap_get(&d->monmap, ot_msg_ref(m), &i)) {
            DERR(d, "DOWN with an unknown reference %#llx", (unsigned long long)ot_msg_ref(m));
            return;
        }
        struct mon *mo = &d->mons[i];
        mo->downs++;
        if (mo->downs > 1) DERR(d, "second DOWN for %#llx", (unsigned long long)mo->ref);
        if (mo->state == M_DEMON1) DERR(d, "DOWN after ot_demonitor returned 1");
        if (mo->state == M_DEMON0_FLUSH && mo->downs_at_demon == 0)
            DERR(d, "DOWN after a flushing ot_demonitor returned 0");
        if (from != mo->target)
            DERR(d, "DOWN from %#llx for a monitor of %#llx", (unsigned long long)from,
                 (unsigned long long)mo->target);
        if (r.code == OT_EXIT_KILL) DERR(d, "DOWN with reason kill");
        note_death(d, pinfo_of(d, mo->target), r.code, "DOWN");
    } else if (tag == OT_TAG_EXIT) {
        d->n_exits++;
        ot_reason_t r;
        if (ot_msg_reason(m, &r) != 0) DERR(d, "unreadable EXIT");
        uint32_t i;
        if (!hmap_get(&d->pimap, from, &i) || d->pis[i].links_ok == 0) {
            DERR(d, "EXIT from %#llx, never linked (reason %s)", (unsigned long long)from,
                 ot_reason_name(r.code));
            return;
        }
        struct pinfo *p = &d->pis[i];
        p->exits++;
        p->exits_since++;
        if (p->exits > p->links_ok)
            DERR(d, "%u EXITs from %#llx, linked %u times", p->exits, (unsigned long long)from,
                 p->links_ok);
        if (r.code == OT_EXIT_KILL) DERR(d, "EXIT with reason kill");
        note_death(d, p, r.code, "EXIT");
    } else {
        DERR(d, "unexpected message tag %#llx", (unsigned long long)tag);
    }
}

/* Take what is in the mailbox, up to max messages, waiting timeout_ms for
 * the first. */
static int drain(struct driver *d, int max, int64_t timeout_ms)
{
    int n = 0;
    for (; n < max; n++) {
        ot_msg_t *m;
        if (ot_receive(NULL, NULL, n ? 0 : timeout_ms, &m) != 0) break;
        handle(d, m);
        ot_msg_free(m);
    }
    return n;
}

static void driver_op(struct driver *d)
{
    rng_t *g = &d->g;
    uint64_t k = rng_below(g, 100);
    ot_pid_t p = pool_pick(g);
    ot_ref_t ref;
    int rc;
    d->ops++;
    if (k < 12 || p == OT_PID_NONE) { /* spawn */
        if (!can_spawn()) return;
        int how = (int)rng_below(g, 3);
        rc = spawn_worker(g, how, &p, &ref);
        if (rc != 0) {
            if (rc != -EAGAIN && rc != -ENOMEM) DERR(d, "spawn: %d", rc);
            return;
        }
        d->n_spawns++;
        if (how == 1) note_link(d, p);
        if (how == 2) add_mon(d, p, ref);
    } else if (k < 32) { /* monitor */
        rc = ot_monitor(p, &ref);
        if (rc != 0)
            DERR(d, "ot_monitor: %d", rc);
        else
            add_mon(d, p, ref);
    } else if (k < 42) { /* demonitor one that may be active */
        while (d->ncand) {
            size_t j = rng_below(g, d->ncand);
            uint32_t mi = d->cand[j];
            d->cand[j] = d->cand[--d->ncand];
            struct mon *mo = &d->mons[mi];
            if (mo->state != M_ACTIVE || mo->downs) continue;
            bool flush = rng_below(g, 2);
            mo->downs_at_demon = mo->downs;
            rc = ot_demonitor(mo->ref, flush ? OT_DEMONITOR_FLUSH : 0);
            if (rc == 1) {
                mo->state = M_DEMON1;
                d->n_demon1++;
            } else if (rc == 0) {
                mo->state = flush ? M_DEMON0_FLUSH : M_DEMON0;
                d->n_demon0++;
            } else {
                DERR(d, "ot_demonitor: %d", rc);
            }
            break;
        }
    } else if (k < 57) { /* link */
        rc = ot_link(p);
        if (rc != 0)
            DERR(d, "ot_link (trapping): %d", rc);
        else
            note_link(d, p);
    } else if (k < 65) { /* unlink */
        rc = ot_unlink(p);
        if (rc != 0) DERR(d, "ot_unlink: %d", rc);
        uint32_t i;
        if (hmap_get(&d->pimap, p, &i)) d->pis[i].last_linked = 0;
        d->n_unlinks++;
    } else if (k < 67) { /* exit signal */
        ot_reason_t r = random_signal(g);
        rc = ot_exit_pid(p, &r);
        if (rc != 0 && rc != -ESRCH) DERR(d, "ot_exit_pid: %d", rc);
        d->n_kills++;
    } else if (k < 88) { /* command a worker */
        struct wcmd c = random_wcmd(g);
        rc = ot_send(p, T_WCMD, &c, sizeof c);
        if (rc != 0 && rc != -ESRCH) DERR(d, "ot_send: %d", rc);
    } else {
        drain(d, 200, 0);
    }
}

/* What must still come: DOWNs of monitors not removed, an EXIT for links
 * still in place. */
static size_t outstanding(const struct driver *d)
{
    size_t n = 0;
    for (size_t i = 0; i < d->nmons; i++) {
        const struct mon *mo = &d->mons[i];
        if ((mo->state == M_ACTIVE || mo->state == M_DEMON0) && mo->downs == 0) n++;
    }
    for (size_t i = 0; i < d->npis; i++)
        if (d->pis[i].last_linked && d->pis[i].exits_since == 0) n++;
    return n;
}

static void final_check(struct driver *d)
{
    for (size_t i = 0; i < d->nmons; i++) {
        const struct mon *mo = &d->mons[i];
        unsigned want;
        switch (mo->state) {
        case M_ACTIVE:
        case M_DEMON0: want = 1; break;
        case M_DEMON1: want = 0; break;
        default: want = mo->downs_at_demon; break;
        }
        if (mo->downs != want)
            DERR(d, "monitor %#llx of %#llx (state %d): %u DOWN, expected %u",
                 (unsigned long long)mo->ref, (unsigned long long)mo->target, mo->state,
                 mo->downs, want);
    }
    for (size_t i = 0; i < d->npis; i++) {
        const struct pinfo *p = &d->pis[i];
        if (p->exits > p->links_ok)
            DERR(d, "%#llx: %u EXITs for %u links", (unsigned long long)p->pid, p->exits,
                 p->links_ok);
        if (p->last_linked && p->exits == 0)
            DERR(d, "%#llx: linked, dead, and no EXIT", (unsigned long long)p->pid);
    }
}

static void driver_proc(void *arg)
{
    struct driver *d = arg;
    atomic_store(&g_protected[d->id + 1], ot_self());
    atomic_fetch_add(&g_registered, 1);
    PCHECK(ot_trap_exit(true) == 0);
    for (int i = 0; i < 50; i++) {
        ot_pid_t p;
        ot_ref_t ref;
        if (spawn_worker(&d->g, 0, &p, &ref) == 0) d->n_spawns++;
    }
    while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
        driver_op(d);
        if (d->ops % 64 == 0) drain(d, 500, 1);
        if (d->id == 0 && d->ops % 4096 == 0) refresh_pool(&d->g);
    }
    /* The end: every worker stops; wait for what must come. */
    uint64_t deadline = now_ns() + 120ull * 1000000000u;
    size_t left;
    while ((left = outstanding(d)) > 0 && now_ns() < deadline)
        drain(d, 100000, 100);
    if (left) DERR(d, "%zu DOWN/EXIT still missing after 120 s", left);
    while (drain(d, 100000, 300) > 0) {
    }
    final_check(d);
    struct driver_res res = {d->errors,   d->ops,     d->n_mon,     d->n_demon1,
                             d->n_demon0, d->n_links, d->n_unlinks, d->n_exits,
                             d->n_downs,  d->n_kills, d->n_spawns,  d->n_noproc};
    PCHECK(ot_send(d->main, T_DONE, &res, sizeof res) == 0);
}

/* A plain thread sends exit signals to random pool pids (sender NONE). */
struct chaos {
    uint64_t seed;
    long sent;
};

static void *chaos_thread(void *arg)
{
    struct chaos *c = arg;
    rng_t g = {c->seed};
    while (!atomic_load(&g_stop)) {
        ot_pid_t p = pool_pick(&g);
        if (p != OT_PID_NONE) {
            ot_reason_t r = random_signal(&g);
            int rc = ot_exit_pid(p, &r);
            PCHECK(rc == 0 || rc == -ESRCH);
            c->sent++;
        }
        struct timespec ts = {0, 500000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void signal_stress(void **state)
{
    (void)state;
    const char *e = getenv("OTTER_STRESS_SECONDS");
    double seconds = e && *e ? atof(e) : 10.0;
    if (seconds <= 0) seconds = 10.0;
    e = getenv("OTTER_STRESS_SEED");
    uint64_t seed = e && *e ? strtoull(e, NULL, 0) : DEFAULT_SEED;
    printf("signal_stress: seed %#llx, %.1f s (OTTER_STRESS_SEED, OTTER_STRESS_SECONDS)\n",
           (unsigned long long)seed, seconds);
    fflush(stdout);

    g_cap = g_san ? 400 : 3000;
    atomic_store(&g_stop, false);
    for (int i = 0; i < POOL; i++)
        atomic_store(&g_pool[i], OT_PID_NONE);
    start_rt_grace(2, 2000);
    ot_pid_t me;
    assert_int_equal(ot_attach(&me), 0);
    size_t base = ot_process_count();
    for (int i = 0; i <= NDRIVERS; i++)
        atomic_store(&g_protected[i], i ? OT_PID_NONE : me);
    atomic_store(&g_registered, 0);

    struct driver *ds = calloc(NDRIVERS, sizeof *ds);
    assert_non_null(ds);
    ot_spawn_opts_t o;
    ot_spawn_opts_init(&o);
    for (int i = 0; i < NDRIVERS; i++) {
        ds[i].id = i;
        ds[i].main = me;
        ds[i].g.s = seed * 1000003u + (uint64_t)i;
        o.scheduler = i & 1;
        assert_int_equal(ot_spawn(driver_proc, &ds[i], &o, NULL), 0);
    }
    struct chaos ch = {seed ^ 0xc4a05ull, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, chaos_thread, &ch), 0);

    uint64_t t0 = now_ns();
    size_t peak = 0, sum = 0, samples = 0;
    while ((double)(now_ns() - t0) < seconds * 1e9) {
        ot_sleep(100);
        size_t live = ot_process_count();
        peak = live > peak ? live : peak;
        sum += live;
        samples++;
        ot_msg_t *m;
        uint64_t done = T_DONE;
        if (ot_receive(match_tag, &done, 0, &m) == 0) {
            ot_msg_free(m);
            fail_msg("a driver finished early");
        }
    }
    atomic_store(&g_stop, true);
    assert_int_equal(pthread_join(t, NULL), 0);
    printf("signal_stress: %zu processes alive on average, %zu at most\n",
           samples ? sum / samples : 0, peak);

    long errors = 0;
    struct driver_res tot;
    memset(&tot, 0, sizeof tot);
    for (int i = 0; i < NDRIVERS; i++) {
        ot_msg_t *m;
        uint64_t done = T_DONE;
        int rc = ot_receive(match_tag, &done, 240000, &m);
        if (rc != 0)
            fprintf(stderr, "signal_stress: only %d of %d drivers reported\n", i, NDRIVERS);
        assert_int_equal(rc, 0);
        struct driver_res r;
        assert_int_equal(ot_msg_len(m), sizeof r);
        memcpy(&r, ot_msg_data(m), sizeof r);
        ot_msg_free(m);
        errors += r.errors;
        tot.ops += r.ops;
        tot.n_mon += r.n_mon;
        tot.n_demon1 += r.n_demon1;
        tot.n_demon0 += r.n_demon0;
        tot.n_links += r.n_links;
        tot.n_unlinks += r.n_unlinks;
        tot.n_exits += r.n_exits;
        tot.n_downs += r.n_downs;
        tot.n_kills += r.n_kills;
        tot.n_spawns += r.n_spawns;
        tot.n_noproc += r.n_noproc;
    }
    printf("signal_stress: %ld driver ops, %ld processes spawned (all), %ld monitors "
           "(%ld demonitored: %ld returned 1), %ld DOWN, %ld links, %ld unlinks, %ld EXIT "
           "(%ld DOWN and EXIT with noproc), "
           "%ld exit signals from drivers, %ld from a plain thread\n",
           tot.ops, atomic_load(&g_spawned), tot.n_mon, tot.n_demon1 + tot.n_demon0,
           tot.n_demon1, tot.n_downs, tot.n_links, tot.n_unlinks, tot.n_exits, tot.n_noproc,
           tot.n_kills, ch.sent);
    fflush(stdout);
    assert_int_equal(errors, 0);
    wait_count(base, 60000);
    for (int i = 0; i < NDRIVERS; i++) {
        free(ds[i].mons);
        free(ds[i].pis);
        free(ds[i].cand);
        hmap_free(&ds[i].monmap);
        hmap_free(&ds[i].pimap);
    }
    free(ds);
    expect_empty(0);
    assert_int_equal(ot_detach(), 0);
    assert_int_equal(ot_runtime_wait_idle(g_rt, 10000), 0);
    stop_rt();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(signal_stress, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
