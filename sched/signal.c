/* Links, monitors and exit signals (otter/signal.h).
 *
 * A signal is an envelope in the receiver's mailbox queue with a kind other
 * than OT__SIG_MSG, so it keeps its place among the sender's messages (the
 * pair ordering of Erlang comes from the queue's per-producer FIFO order).
 * The sender also adds one to the receiver's nsig and wakes it if it waits
 * or sleeps. The receiver handles signals in its own context, in queue
 * order: in receive as it meets them, or at a scheduling point (yield,
 * sleep, a spent budget, its first run) when nsig says some came. Links and
 * monitors live in the process's own table (sigtab.c), which only it
 * touches, so none of this takes a lock.
 *
 * A link is held on both sides. Whoever links adds the entry on its side
 * first and then sends LINK; when either side dies it sends EXIT_LINK to
 * every link, and the receiver acts on it only if it still holds the link
 * (so after ot_unlink nothing from that link can reach it). A monitor is
 * MON_OUT at the watcher (keyed by its reference) and MON_IN at the target;
 * DOWN counts only while the watcher still holds MON_OUT, which is how
 * ot_demonitor guarantees no DOWN afterwards. A LINK or MONITOR that reaches
 * a process already gone is answered from its mailbox's last drain
 * (ot__sig_dead_letter) with noproc, so every request gets exactly one
 * answer. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "otter/signal.h"
#include "sched/internal.h"
#include "sched/sigtab.h"

/* ---- reasons --------------------------------------------------------------- */

/* On the wire a reason is its code, its length and its bytes. */
typedef struct {
    uint32_t code, len;
} wire_reason_t;

int ot_reason_make(ot_reason_t *r, uint32_t code, const void *data, size_t len)
{
    if (!r || len > OT_REASON_DATA_MAX || (len && !data)) return -EINVAL;
    memset(r, 0, sizeof *r);
    r->code = code;
    r->len = (uint32_t)len;
    if (len) memcpy(r->data, data, len);
    return 0;
}

const char *ot_reason_name(uint32_t code)
{
    switch (code) {
    case OT_EXIT_NORMAL: return "normal";
    case OT_EXIT_KILL: return "kill";
    case OT_EXIT_KILLED: return "killed";
    case OT_EXIT_SHUTDOWN: return "shutdown";
    case OT_EXIT_NOPROC: return "noproc";
    default: return code >= OT_EXIT_USER ? "user" : "unknown";
    }
}

static const ot_reason_t reason_normal = {.code = OT_EXIT_NORMAL};
static const ot_reason_t reason_noproc = {.code = OT_EXIT_NOPROC};
static const ot_reason_t reason_killed = {.code = OT_EXIT_KILLED};
ot_reason_t ot__pending_fallback = {.code = OT_EXIT_KILLED};

void ot__pending_exit_free(ot__proc_t *p)
{
    if (p->pending_exit != &ot__pending_fallback) free(p->pending_exit);
    p->pending_exit = NULL;
}

static void read_reason(const ot_msg_t *m, ot_reason_t *out)
{
    memset(out, 0, sizeof *out);
    if (m->len < sizeof(wire_reason_t)) return; /* cannot happen: we wrote it */
    wire_reason_t w;
    memcpy(&w, m + 1, sizeof w);
    out->code = w.code;
    out->len = w.len <= OT_REASON_DATA_MAX ? w.len : OT_REASON_DATA_MAX;
    memcpy(out->data, (const char *)(m + 1) + sizeof w, out->len);
}

static void set_code(ot_msg_t *m, uint32_t code)
{
    memcpy(m + 1, &code, sizeof code);
}

int ot_msg_reason(const ot_msg_t *m, ot_reason_t *out)
{
    if (!m || !out || (m->tag != OT_TAG_EXIT && m->tag != OT_TAG_DOWN)) return -EINVAL;
    read_reason(m, out);
    return 0;
}

/* ---- sending ------------------------------------------------------------- */

static ot_msg_t *sig_alloc(ot__sched_t *s, ot_pid_t from, unsigned kind, ot_ref_t ref,
                           const ot_reason_t *r)
{
    size_t len = r ? sizeof(wire_reason_t) + r->len : 0;
    ot_msg_t *m = ot__msg_alloc(s, len);
    if (!m) return NULL;
    m->from = from;
    m->tag = 0;
    m->ref = ref;
    m->kind = (uint16_t)kind;
    if (r) {
        wire_reason_t w = {r->code, r->len};
        memcpy(m + 1, &w, sizeof w);
        memcpy((char *)(m + 1) + sizeof w, r->data, r->len);
    }
    return m;
}

int ot__sig_send(ot_pid_t from, ot_pid_t to, unsigned kind, ot_ref_t ref, const ot_reason_t *r)
{
    struct ot_runtime *rt = ot__rt;
    if (!rt) return -EPERM;
    ot__sched_t *s = ot__tls_sched();
    if (!s) ot__ext_rcu_enter();
    int rc = 0;
    ot__proc_t *p = ot__lookup(rt, to);
    ot_msg_t *m = p ? sig_alloc(s, from, kind, ref, r) : NULL;
    if (!p || !m) {
        rc = p ? -ENOMEM : -ESRCH;
        goto out;
    }
    ot__mbox_push(p, m);
    /* seq_cst: the sender's half of the handshake with a process going to
     * sleep (it stores its state, then loads nsig; we add, then load its
     * state), as for messages with the queue's tail (MAILBOX.md). */
    atomic_fetch_add_explicit(&p->nsig, 1, memory_order_seq_cst);
    uint64_t st = atomic_load_explicit(&p->state, memory_order_seq_cst);
    uint32_t low = st & 3;
    /* A signal also wakes a sleeper: it may have to die, or answer. */
    if ((low == OT__ST_WAITING || low == OT__ST_SLEEPING) &&
        atomic_compare_exchange_strong_explicit(&p->state, &st,
                                                (st & ~(uint64_t)3) | OT__ST_RUNNABLE,
                                                memory_order_acq_rel, memory_order_relaxed))
        ot__make_runnable(s, p, false);
out:
    if (!s) ot__ext_rcu_leave();
    return rc;
}

static ot_pid_t pid_of(ot__proc_t *p)
{
    return atomic_load_explicit(&p->pid, memory_order_relaxed);
}

/* Put a ready-made EXIT or DOWN message into p's own mailbox. */
static int self_notice(ot__proc_t *p, uint64_t tag, ot_pid_t from, ot_ref_t ref,
                       const ot_reason_t *r)
{
    ot_msg_t *m = sig_alloc(ot__tls_sched(), from, OT__SIG_MSG, ref, r);
    if (!m) return -ENOMEM;
    m->tag = tag;
    return ot__msg_post(pid_of(p), m);
}

/* ---- handling (the receiver's own context) ------------------------------- */

static bool traps(const ot__proc_t *p)
{
    return p->trap_exit || p->external;
}

/* The signal says p must die of r. */
static ot_msg_t *fatal(ot__proc_t *p, ot_msg_t *m, const ot_reason_t *r)
{
    if (p->exiting) {
        /* Already on its way out (taking in its last signals). */
        ot__msg_release(m);
        return NULL;
    }
    ot_reason_t keep = *r;
    ot__msg_release(m);
    if (p->defer_exit) {
        /* In ot_dirty_run: the first fatal reason waits for its end. With
         * no memory to keep it, the process still dies, of `killed`: a
         * fatal signal is never dropped. */
        if (!p->pending_exit) {
            p->pending_exit = malloc(sizeof keep);
            if (p->pending_exit)
                memcpy(p->pending_exit, &keep, sizeof keep);
            else
                p->pending_exit = &ot__pending_fallback;
        }
        return NULL;
    }
    ot__proc_exit(p, &keep);
}

static ot_msg_t *as_message(ot_msg_t *m, uint64_t tag)
{
    m->kind = OT__SIG_MSG;
    m->tag = tag;
    return m;
}

static ot_msg_t *on_exit_signal(ot__proc_t *p, ot_msg_t *m, bool via_link)
{
    ot_reason_t r;
    read_reason(m, &r);
    if (via_link) {
        /* Only a link still held counts (ot_unlink's promise). */
        if (ot__sigtab_del(p->sigtab, OT__ENT_LINK, m->from, NULL) == 0) {
            ot__msg_release(m);
            return NULL;
        }
        /* `kill` passes through a link as `killed`, and is trappable. */
        if (r.code == OT_EXIT_KILL) {
            r = reason_killed;
            set_code(m, OT_EXIT_KILLED);
        }
    } else if (r.code == OT_EXIT_KILL) {
        /* Untrappable; a thread cannot be killed, so it gets the news. */
        if (!p->external) return fatal(p, m, &reason_killed);
        set_code(m, OT_EXIT_KILLED);
        return as_message(m, OT_TAG_EXIT);
    }
    if (traps(p)) return p->exiting ? (ot__msg_release(m), NULL) : as_message(m, OT_TAG_EXIT);
    if (r.code == OT_EXIT_NORMAL) {
        /* Ignored, unless a process told itself to exit normally. */
        if (!via_link && m->from == pid_of(p)) return fatal(p, m, &reason_normal);
        ot__msg_release(m);
        return NULL;
    }
    return fatal(p, m, &r);
}

ot_msg_t *ot__sig_handle(ot__proc_t *p, ot_msg_t *m)
{
    atomic_fetch_sub_explicit(&p->nsig, 1, memory_order_relaxed);
    switch (m->kind) {
    case OT__SIG_LINK:
        /* No memory for the entry: the link cannot be kept, so tell the
         * linker now rather than never (it sees noproc-like loss). */
        if (ot__sigtab_add(&p->sigtab, OT__ENT_LINK, m->from, m->from) < 0)
            (void)ot__sig_send(pid_of(p), m->from, OT__SIG_EXIT_LINK, 0, &reason_noproc);
        break;
    case OT__SIG_UNLINK: ot__sigtab_del(p->sigtab, OT__ENT_LINK, m->from, NULL); break;
    case OT__SIG_EXIT: return on_exit_signal(p, m, false);
    case OT__SIG_EXIT_LINK: return on_exit_signal(p, m, true);
    case OT__SIG_MONITOR:
        if (ot__sigtab_add(&p->sigtab, OT__ENT_MON_IN, m->ref, m->from) < 0)
            (void)ot__sig_send(pid_of(p), m->from, OT__SIG_DOWN, m->ref, &reason_noproc);
        break;
    case OT__SIG_DEMONITOR: ot__sigtab_del(p->sigtab, OT__ENT_MON_IN, m->ref, NULL); break;
    case OT__SIG_DOWN:
        if (ot__sigtab_del(p->sigtab, OT__ENT_MON_OUT, m->ref, NULL) && !p->exiting)
            return as_message(m, OT_TAG_DOWN);
        break;
    case OT__SIG_INFO: ot__info_answer(p, m); break;
    default: break;
    }
    ot__msg_release(m);
    return NULL;
}

void ot__sig_dead_letter(ot__proc_t *p, ot_msg_t *m)
{
    ot_pid_t me = pid_of(p);
    switch (m->kind) {
    case OT__SIG_LINK:
        (void)ot__sig_send(me, m->from, OT__SIG_EXIT_LINK, 0, &reason_noproc);
        break;
    case OT__SIG_MONITOR:
        (void)ot__sig_send(me, m->from, OT__SIG_DOWN, m->ref, &reason_noproc);
        break;
    case OT__SIG_INFO: /* an empty reply says "gone" */
        (void)ot__msg_send_as(me, m->from, OT__TAG_INFO_REPLY, m->ref, NULL, 0);
        break;
    default: break;
    }
    ot__msg_release(m);
}

/* ---- exit ---------------------------------------------------------------- */

static __attribute__((noinline)) void exit_signals(ot__proc_t *p, const ot_reason_t *r);

void ot__proc_exit_signals(ot__proc_t *p, const ot_reason_t *r)
{
    p->exiting = 1;
    /* The common case, with no call and no registers to save: nothing
     * pending, no links or monitors, no name, no system monitor (what
     * exit_signals looks at, in order). 41 -> 16 instructions (callgrind,
     * spawn_exit). */
    if (atomic_load_explicit(&p->nsig, memory_order_acquire) || p->sigtab ||
        atomic_load_explicit(&p->regname, memory_order_relaxed) ||
        __atomic_load_n(&ot__rt->sysmon, __ATOMIC_RELAXED) || p->pending_exit)
        exit_signals(p, r);
}

static void exit_signals(ot__proc_t *p, const ot_reason_t *r)
{
    if (!r) r = &reason_normal;
    /* Links and monitors asked for before now get the real reason (only
     * signals matter here: messages are freed with the mailbox). */
    if (atomic_load_explicit(&p->nsig, memory_order_acquire)) ot__mailbox_pull(p);
    ot_pid_t me = pid_of(p);
    struct ot__sigtab *t = p->sigtab;
    if (t) {
        /* Leave the table before telling anyone: whoever gets our DOWN or
         * EXIT and then names our pid must find it dead (-ESRCH, noproc at
         * once). ot__proc_destroy unlinks it again. Requests that reach us
         * from now on are answered noproc by the mailbox's drain. */
        ot__proc_unlink(p);
    }
    /* Free the name before telling anyone too: whoever restarts p on its
     * EXIT may register the same name at once (as in Erlang). (A name
     * registered concurrently and missed by this relaxed peek is freed by
     * ot__proc_destroy, which orders its check after leaving the table: see
     * sched/registry.c.) */
    if (atomic_load_explicit(&p->regname, memory_order_relaxed)) ot__registry_proc_exit(p);
    if (__atomic_load_n(&ot__rt->sysmon, __ATOMIC_RELAXED)) ot__sysmon_proc_exit(p);
    if (!t && !p->pending_exit) return; /* the common case: nobody to tell */
    p->sigtab = NULL;
    for (size_t i = 0; t && i < t->cap; i++) {
        const ot__sigent_t *e = &t->e[i];
        switch (e->kind) {
        case OT__ENT_LINK: (void)ot__sig_send(me, e->pid, OT__SIG_EXIT_LINK, 0, r); break;
        case OT__ENT_MON_IN: (void)ot__sig_send(me, e->pid, OT__SIG_DOWN, e->key, r); break;
        case OT__ENT_MON_OUT:
            (void)ot__sig_send(me, e->pid, OT__SIG_DEMONITOR, e->key, NULL);
            break;
        default: break;
        }
    }
    ot__sigtab_free(t);
    ot__pending_exit_free(p);
}

_Noreturn void ot__proc_exit(ot__proc_t *p, const ot_reason_t *r)
{
    ot__proc_exit_signals(p, r);
    ot__proc_switch_out(p, OT__Y_EXIT);
    __builtin_unreachable();
}

int ot_exit_reason(const ot_reason_t *r)
{
    ot__sched_t *s = ot__tls_sched();
    if (!s || !s->current) return -EPERM;
    if (r && r->len > OT_REASON_DATA_MAX) return -EINVAL;
    ot__proc_exit(s->current, r);
}

int ot_exit(void)
{
    return ot_exit_reason(NULL);
}

/* ---- the public calls ---------------------------------------------------- */

int ot_trap_exit(bool on)
{
    ot__proc_t *p = ot__self();
    if (!p) return -EPERM;
    if (p->external) return on ? 1 : -EPERM;
    int old = p->trap_exit;
    p->trap_exit = on;
    return old;
}

static int check_pid(ot_pid_t pid)
{
    struct ot_runtime *rt = ot__rt;
    if (!rt) return -EPERM;
    return ot__pid_in_range(rt, pid) ? 0 : -EINVAL;
}

int ot_link(ot_pid_t pid)
{
    ot__proc_t *p = ot__self();
    if (!p) return -EPERM;
    int rc = check_pid(pid);
    if (rc) return rc;
    ot_pid_t me = pid_of(p);
    if (pid == me) return 0;
    rc = ot__sigtab_add(&p->sigtab, OT__ENT_LINK, pid, pid);
    if (rc <= 0) return rc; /* already linked (0), or -ENOMEM */
    rc = ot__sig_send(me, pid, OT__SIG_LINK, 0, NULL);
    if (rc == 0) return 0;
    ot__sigtab_del(p->sigtab, OT__ENT_LINK, pid, NULL);
    if (rc != -ESRCH) return rc;
    if (!traps(p)) return -ESRCH;
    return self_notice(p, OT_TAG_EXIT, pid, 0, &reason_noproc);
}

int ot_unlink(ot_pid_t pid)
{
    ot__proc_t *p = ot__self();
    if (!p) return -EPERM;
    int rc = check_pid(pid);
    if (rc) return rc;
    if (ot__sigtab_del(p->sigtab, OT__ENT_LINK, pid, NULL))
        (void)ot__sig_send(pid_of(p), pid, OT__SIG_UNLINK, 0, NULL);
    return 0;
}

int ot_monitor(ot_pid_t pid, ot_ref_t *ref)
{
    ot__proc_t *p = ot__self();
    if (!p) return -EPERM;
    if (!ref) return -EINVAL;
    int rc = check_pid(pid);
    if (rc) return rc;
    ot_ref_t r = ot_make_ref();
    rc = ot__sigtab_add(&p->sigtab, OT__ENT_MON_OUT, r, pid);
    if (rc < 0) return rc;
    rc = ot__sig_send(pid_of(p), pid, OT__SIG_MONITOR, r, NULL);
    if (rc == -ESRCH) {
        ot__sigtab_del(p->sigtab, OT__ENT_MON_OUT, r, NULL);
        rc = self_notice(p, OT_TAG_DOWN, pid, r, &reason_noproc);
    } else if (rc != 0) {
        ot__sigtab_del(p->sigtab, OT__ENT_MON_OUT, r, NULL);
    }
    if (rc == 0) *ref = r;
    return rc;
}

static bool is_down_for(const ot_msg_t *m, void *arg)
{
    return m->tag == OT_TAG_DOWN && m->ref == *(const ot_ref_t *)arg;
}

int ot_demonitor(ot_ref_t ref, unsigned flags)
{
    ot__proc_t *p = ot__self();
    if (!p) return -EPERM;
    if (!ref || (flags & ~OT_DEMONITOR_FLUSH)) return -EINVAL;
    ot_pid_t target;
    int active = ot__sigtab_del(p->sigtab, OT__ENT_MON_OUT, ref, &target);
    if (active) (void)ot__sig_send(pid_of(p), target, OT__SIG_DEMONITOR, ref, NULL);
    if (flags & OT_DEMONITOR_FLUSH) {
        ot_msg_t *m;
        /* A DOWN already turned into a message (the table no longer has
         * ref, so no later one can appear). */
        if (ot_receive(is_down_for, &ref, 0, &m) == 0) ot_msg_free(m);
    }
    return active;
}

int ot_exit_pid(ot_pid_t pid, const ot_reason_t *r)
{
    if (!r || r->len > OT_REASON_DATA_MAX) return -EINVAL;
    int rc = check_pid(pid);
    if (rc) return rc;
    ot__proc_t *p = ot__self();
    ot_pid_t me = p ? pid_of(p) : OT_PID_NONE;
    rc = ot__sig_send(me, pid, OT__SIG_EXIT, 0, r);
    /* A signal to oneself takes effect at once. */
    if (rc == 0 && pid == me && !p->external) ot__sig_safe_point(p);
    return rc;
}
