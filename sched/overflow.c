/* Stack overflow: a fault in a guard page, or a canary found overwritten
 * at a switch, is reported with the process named, and the program stops:
 * after an overflow the memory below the stack can no longer be trusted. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sched/internal.h"

#define ALTSTACK_SIZE (64 * 1024)

static struct sigaction old_segv;
static int installed;

_Noreturn void ot__overflow_report(ot__proc_t *p, const char *how)
{
    char pid[40], buf[320];
    ot_pid_format(atomic_load_explicit(&p->pid, memory_order_relaxed), pid, sizeof pid);
    int n = snprintf(buf, sizeof buf,
                     "otter: stack overflow in process %s%s%s%s (stack %zu bytes, "
                     "scheduler %u): %s\n",
                     pid, p->name[0] ? " \"" : "", p->name, p->name[0] ? "\"" : "",
                     p->stack ? p->stack->size : 0, p->sched ? p->sched->idx : 0, how);
    if (n > 0) {
        ssize_t w = write(STDERR_FILENO, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf);
        (void)w;
    }
    abort();
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    ot__sched_t *s = ot__tls_sched();
    ot__proc_t *p = s ? s->current : NULL;
    if (p && p->stack && ot__stack_in_guard(p->stack, si->si_addr)) {
        signal(SIGABRT, SIG_DFL);
        ot__overflow_report(p, "it ran into its guard page");
    }
    /* Not ours: put the previous handler back; the fault repeats under it. */
    (void)sig;
    (void)uc;
    sigaction(SIGSEGV, &old_segv, NULL);
}

int ot__overflow_install(void)
{
    if (installed) return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &old_segv) != 0) return -1;
    installed = 1;
    return 0;
}

void ot__overflow_uninstall(void)
{
    if (!installed) return;
    sigaction(SIGSEGV, &old_segv, NULL);
    installed = 0;
}

int ot__overflow_thread_init(ot__sched_t *s)
{
    s->altstack = malloc(ALTSTACK_SIZE);
    if (!s->altstack) return -1;
    stack_t ss = {.ss_sp = s->altstack, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    return sigaltstack(&ss, NULL);
}

void ot__overflow_thread_fini(ot__sched_t *s)
{
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    free(s->altstack);
    s->altstack = NULL;
}
