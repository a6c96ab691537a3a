/* Registered process names (otter/registry.h).
 *
 * The table is liburcu's lock-free hash table (cds_lfht) in the QSBR
 * flavour the rest of the runtime uses. Lookups (ot_whereis, ot_send_named)
 * take no lock: a cds_lfht_lookup inside the RCU read side. Mutations take
 * rt->reg_lock: a name's node and its process's `regname` must change
 * together, and at most one of each may exist, which a lock makes simple to
 * get right on what is a slow path. Removed nodes are freed by
 * ot__defer_free after a grace period, so a lookup that found one may still
 * read it.
 *
 * Lifetime of a name. A name is alive while its node is in the table. The
 * owner's PCB (node->proc) is valid while the node is in the table: a PCB
 * is queued for reclamation only after ot__proc_destroy has called
 * ot__registry_proc_exit, which removes the node under reg_lock, so anyone
 * holding reg_lock and finding the node in the table may use node->proc.
 *
 * A name dies with its process. ot__proc_destroy marks the process dead
 * (ot__proc_unlink: its pid no longer looks up) and then calls
 * ot__registry_proc_exit. From the moment it is marked the name is treated
 * as free (whereis says none, register may take
 * it over), so a name can be registered again as soon as the death is
 * observable at all; proc_exit then only tidies up.
 *
 * The race between ot_register(name, pid) and pid dying. proc_exit has a
 * lock-free fast path (most processes have no name, and taking a global lock
 * on every death would serialise the schedulers), so the lock alone does not
 * order them. Instead the two sides form a store-buffer (Dekker) pattern:
 *
 *   register (under reg_lock)        ot__proc_destroy
 *   S1: p->regname = node (seq_cst)  S2: p->dead = 1 (release)
 *   L1: p->dead (seq_cst)            F2: fence(seq_cst)  (in proc_exit)
 *                                    L2: p->regname (relaxed)
 *
 * S1, L1 and F2 are in the single total order S, S1 before L1. If F2
 * precedes L1, L1 sees S2 or a later store (C11 7.17.3: a seq_cst read
 * that follows, in S, a fence sequenced after a store sees that store or a
 * later one): p is marked dead, so register removes its own node
 * and returns -ESRCH. Otherwise S1 precedes F2, and L2 sees S1 or a later
 * store (a read sequenced after a seq_cst fence sees the last seq_cst store
 * before the fence in S, or a later one): proc_exit removes the name under
 * the lock. Both may happen; the removal is done once, under the lock, by
 * whoever still finds the node in p->regname. So a dead process never keeps
 * a name. (S2 is ot__proc_unlink's and stays a release store; the fence
 * is on the death path. S2 writes a line of the PCB that the dying
 * process's scheduler holds already: when it was the table slot, which the
 * spawning core had written, the fence waited for that miss, 16% of
 * spawn_exit's time on two cores of a machine with slow cross-core lines.)
 *
 * Sizing. The table has a fixed number of buckets: CDS_LFHT_AUTO_RESIZE
 * would start liburcu's resize worker thread, which outlives the runtime
 * (tests/test_lifecycle.c checks that start/stop leaves no thread). With
 * OT__REG_BUCKETS buckets, lookups stay short up to a few thousand names and
 * degrade linearly (chain length names / buckets) beyond. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <urcu/urcu-qsbr.h>
#include <urcu/rculfhash.h>

#include "otter/registry.h"
#include "sched/fiber.h"
#include "sched/internal.h"

#define OT__REG_BUCKETS 4096 /* a power of two; 64 KiB of bucket heads */

struct ot__regnode {
    /* Word 0 is overwritten by ot__defer_free's link as soon as the node is
     * removed, while lookups may still be reading it: nothing lives here. */
    void *defer_link;
    struct cds_lfht_node lfn;
    ot__proc_t *proc; /* owner: read only under reg_lock (see the top) */
    ot_pid_t pid;     /* owner's pid: read by lookups */
    size_t len;
    char name[]; /* len bytes and a NUL */
};

/* What a lookup compares against. */
typedef struct {
    const char *name;
    size_t len;
} ot__regkey_t;

/* ---- names --------------------------------------------------------------- */

/* The length of a valid name, or -EINVAL. strnlen never reads past the
 * longest valid name's NUL. */
static long ot__name_len(const char *name)
{
    if (!name) return -EINVAL;
    size_t len = strnlen(name, OT_NAME_MAX);
    if (len == 0 || len == OT_NAME_MAX) return -EINVAL;
    return (long)len;
}

/* FNV-1a, 64 bits: names are short, and this spreads them well enough
 * over the buckets (cds_lfht uses the low bits for the bucket and the
 * bit-reversed hash for the order within it). */
static unsigned long ot__name_hash(const char *name, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)name[i];
        h *= 0x100000001b3ull;
    }
    return (unsigned long)h;
}

static int ot__reg_match(struct cds_lfht_node *lfn, const void *key)
{
    struct ot__regnode *n = caa_container_of(lfn, struct ot__regnode, lfn);
    const ot__regkey_t *k = key;
    /* TSan cannot see liburcu's publication of the node (uninstrumented
     * library, inline-asm atomics): pair with the release before
     * cds_lfht_add_unique, so that reading the name is not a "race". */
    ot__tsan_acquire(n);
    return n->len == k->len && memcmp(n->name, k->name, k->len) == 0;
}

/* ---- the read side ------------------------------------------------------- */

/* Enter the RCU read side unless the calling thread is in it already (a
 * scheduler thread always is while it runs a process): true when it
 * entered and must leave. Asking liburcu instead of looking at
 * ot__tls_sched() also covers a thread that is inside an
 * ot__ext_rcu_enter of its own (leaving there would end the caller's read
 * side early). */
static bool ot__rs_enter(void)
{
    if (urcu_qsbr_read_ongoing()) return false;
    ot__ext_rcu_enter();
    return true;
}

static void ot__rs_leave(bool entered)
{
    if (entered) ot__ext_rcu_leave();
}

/* The node for a name, or NULL. Caller inside the read side. */
static struct ot__regnode *ot__reg_find(struct ot_runtime *rt, const char *name, size_t len)
{
    ot__regkey_t key = {name, len};
    struct cds_lfht_iter it;
    cds_lfht_lookup(rt->reg_ht, ot__name_hash(name, len), ot__reg_match, &key, &it);
    struct cds_lfht_node *lfn = cds_lfht_iter_get_node(&it);
    return lfn ? caa_container_of(lfn, struct ot__regnode, lfn) : NULL;
}

/* Whether the node's owner is still in the process table. Caller inside
 * the read side. A node whose owner left the table is a dead name waiting
 * for ot__registry_proc_exit: everyone treats it as absent. */
static bool ot__reg_owner_alive(struct ot_runtime *rt, const struct ot__regnode *n)
{
    return ot__lookup(rt, n->pid) != NULL;
}

/* ---- mutations (reg_lock held, inside the read side) --------------------- */

/* Take n out of the table and off its owner, and free it after a grace
 * period. */
static void ot__reg_remove(struct ot_runtime *rt, struct ot__regnode *n)
{
    /* Relaxed: every writer of regname holds reg_lock; the fast path of
     * proc_exit only compares it with NULL and then takes the lock. */
    struct ot__regnode *was =
        atomic_exchange_explicit(&n->proc->regname, NULL, memory_order_relaxed);
    (void)was; /* == n: a process's regname is its node while both exist */
    int rc = cds_lfht_del(rt->reg_ht, &n->lfn);
    (void)rc; /* 0: only reg_lock holders delete, and n was in the table */
    ot__defer_free(rt, n);
}

/* Insert n (for live process p) or return -EEXIST. A node left by a dead
 * owner is removed and the insertion retried: its name is free already. */
static int ot__reg_insert(struct ot_runtime *rt, struct ot__regnode *n, unsigned long hash)
{
    ot__regkey_t key = {n->name, n->len};
    for (;;) {
        /* Release for TSan: see ot__reg_match. liburcu's own full barriers
         * publish the node to lookups. */
        ot__tsan_release(n);
        struct cds_lfht_node *got =
            cds_lfht_add_unique(rt->reg_ht, hash, ot__reg_match, &key, &n->lfn);
        if (got == &n->lfn) return 0;
        struct ot__regnode *old = caa_container_of(got, struct ot__regnode, lfn);
        if (ot__reg_owner_alive(rt, old)) return -EEXIST;
        ot__reg_remove(rt, old);
    }
}

/* Give live process p the name in n. Takes n: on failure it is freed, at
 * once when it was never visible (cds_lfht_add_unique's contract), after a
 * grace period otherwise. */
static int ot__reg_add(struct ot_runtime *rt, ot__proc_t *p, struct ot__regnode *n)
{
    /* A process has at most one name. A dead name of p cannot be here: p
     * is alive (found in the table by our caller), and its names die with
     * it. */
    int rc = -EEXIST;
    if (!atomic_load_explicit(&p->regname, memory_order_relaxed))
        rc = ot__reg_insert(rt, n, ot__name_hash(n->name, n->len));
    if (rc != 0) {
        free(n);
        return rc;
    }
    /* S1 and L1 of the Dekker pattern at the top: both seq_cst, so they
     * are in the total order S with proc_exit's fence (a store then a load
     * of another object needs that; release/acquire do not order them).
     * The store's release half also publishes the node to
     * ot__registry_name_of. p not marked dead means p is alive: p cannot
     * be freed and reused while we are inside the read side. */
    atomic_store_explicit(&p->regname, n, memory_order_seq_cst);
    if (!atomic_load_explicit(&p->dead, memory_order_seq_cst)) return 0;
    /* p died meanwhile, and its proc_exit may have missed our store. */
    ot__reg_remove(rt, n);
    return -ESRCH;
}

/* ---- public API ---------------------------------------------------------- */

int ot_register(const char *name, ot_pid_t pid)
{
    struct ot_runtime *rt = ot__rt;
    if (!rt) return -EPERM;
    long len = ot__name_len(name);
    if (len < 0) return (int)len;
    if (!ot__pid_in_range(rt, pid)) return -EINVAL;
    /* Allocate outside the lock; a failed insertion frees it at once (it
     * was never visible, cds_lfht_add_unique's contract). */
    struct ot__regnode *n = malloc(offsetof(struct ot__regnode, name) + (size_t)len + 1);
    if (!n) return -ENOMEM;
    memset(n, 0, sizeof *n);
    memcpy(n->name, name, (size_t)len + 1);
    n->len = (size_t)len;
    n->pid = pid;
    cds_lfht_node_init(&n->lfn);

    /* Enter the read side before taking the lock: registering a thread
     * with liburcu takes liburcu's own locks, kept out of reg_lock. */
    bool entered = ot__rs_enter();
    pthread_mutex_lock(&rt->reg_lock);
    ot__proc_t *p = ot__lookup(rt, pid);
    int rc = -ESRCH;
    if (p) {
        n->proc = p;
        rc = ot__reg_add(rt, p, n); /* takes n */
    } else {
        free(n);
    }
    pthread_mutex_unlock(&rt->reg_lock);
    ot__rs_leave(entered);
    return rc;
}

int ot_unregister(const char *name)
{
    struct ot_runtime *rt = ot__rt;
    if (!rt) return -EPERM;
    long len = ot__name_len(name);
    if (len < 0) return (int)len;
    bool entered = ot__rs_enter();
    pthread_mutex_lock(&rt->reg_lock);
    struct ot__regnode *n = ot__reg_find(rt, name, (size_t)len);
    int rc = -ENOENT;
    if (n) {
        /* A dead owner's name is already free: tidy it, but say so. */
        if (ot__reg_owner_alive(rt, n)) rc = 0;
        ot__reg_remove(rt, n);
    }
    pthread_mutex_unlock(&rt->reg_lock);
    ot__rs_leave(entered);
    return rc;
}

ot_pid_t ot_whereis(const char *name)
{
    struct ot_runtime *rt = ot__rt;
    long len = ot__name_len(name);
    if (!rt || len < 0) return OT_PID_NONE;
    bool entered = ot__rs_enter();
    struct ot__regnode *n = ot__reg_find(rt, name, (size_t)len);
    /* The node is immutable once published, and stays readable until we
     * leave the read side (freed after a grace period). */
    ot_pid_t pid = n && ot__reg_owner_alive(rt, n) ? n->pid : OT_PID_NONE;
    ot__rs_leave(entered);
    return pid;
}

int ot_send_named(const char *name, uint64_t tag, const void *data, size_t len)
{
    struct ot_runtime *rt = ot__rt;
    if (!rt) return -EPERM;
    if (ot__name_len(name) < 0) return -EINVAL;
    ot_pid_t pid = ot_whereis(name);
    if (pid == OT_PID_NONE) return -ENOENT;
    /* The owner may die between the lookup and the send: ot_send then says
     * -ESRCH, as a send to any pid that just died. */
    return ot_send(pid, tag, data, len);
}

/* ---- runtime hooks ------------------------------------------------------- */

int ot__registry_init(struct ot_runtime *rt)
{
    /* No CDS_LFHT_AUTO_RESIZE: no worker thread (see the top). With init,
     * minimum and maximum sizes equal, the buckets are one calloc. */
    rt->reg_ht = cds_lfht_new_flavor(OT__REG_BUCKETS, OT__REG_BUCKETS, OT__REG_BUCKETS, 0,
                                     &urcu_qsbr_flavor, NULL);
    if (!rt->reg_ht) return -ENOMEM;
    pthread_mutex_init(&rt->reg_lock, NULL);
    return 0;
}

void ot__registry_fini(struct ot_runtime *rt)
{
    if (!rt->reg_ht) return; /* init never ran */
    /* Every thread is joined and the reclaimer stopped: no reader is left,
     * so what remains is freed at once (normally nothing: every process's
     * destroy removed its name). cds_lfht_destroy needs an empty table;
     * since liburcu 0.10 it has no RCU requirement of its own, but walking
     * the table is a read-side operation. */
    bool entered = ot__rs_enter();
    for (;;) {
        struct cds_lfht_iter it;
        cds_lfht_first(rt->reg_ht, &it);
        struct cds_lfht_node *lfn = cds_lfht_iter_get_node(&it);
        if (!lfn) break;
        (void)cds_lfht_del(rt->reg_ht, lfn);
        free(caa_container_of(lfn, struct ot__regnode, lfn));
    }
    ot__rs_leave(entered);
    (void)cds_lfht_destroy(rt->reg_ht, NULL);
    rt->reg_ht = NULL;
    pthread_mutex_destroy(&rt->reg_lock);
}

void ot__registry_proc_exit(ot__proc_t *p)
{
    /* F2 of the Dekker pattern at the top: orders ot__proc_destroy's store
     * clearing the slot before the load of regname. Relaxed load: NULL
     * means nothing to do; anything else is re-read under the lock. */
    atomic_thread_fence(memory_order_seq_cst);
    if (!atomic_load_explicit(&p->regname, memory_order_relaxed)) return;
    struct ot_runtime *rt = ot__rt;
    if (!rt) return;
    bool entered = ot__rs_enter();
    pthread_mutex_lock(&rt->reg_lock);
    /* Relaxed: regname's writers all hold reg_lock. NULL when a concurrent
     * ot_register removed its own node, or an earlier call did. */
    struct ot__regnode *n = atomic_load_explicit(&p->regname, memory_order_relaxed);
    if (n) ot__reg_remove(rt, n);
    pthread_mutex_unlock(&rt->reg_lock);
    ot__rs_leave(entered);
}

void ot__registry_name_of(ot__proc_t *p, char *buf, size_t n)
{
    if (!buf || n == 0) return;
    /* Acquire: pairs with the seq_cst (hence release) store in
     * ot__reg_add, so the name's bytes are visible. The caller is inside
     * the read side: a node removed meanwhile is still readable. */
    struct ot__regnode *node = atomic_load_explicit(&p->regname, memory_order_acquire);
    size_t len = node ? node->len : 0;
    if (len > n - 1) len = n - 1;
    if (len) memcpy(buf, node->name, len);
    buf[len] = '\0';
}
