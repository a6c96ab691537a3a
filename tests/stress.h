/* Shared by the stress tests of the lock-free primitives (test_idx, test_mpsc,
 * test_pool, test_runq): how many iterations to run, and thread pinning.
 * Include after defining _GNU_SOURCE (pthread_setaffinity_np). */
#ifndef OT_TESTS_STRESS_H
#define OT_TESTS_STRESS_H

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The sanitizer legs of CI (OTTER_SANITIZER_BUILD=1) run a quarter of the
 * iterations: still millions of operations, well inside the time budget. */
static inline unsigned long scaled(unsigned long n)
{
    const char *s = getenv("OTTER_SANITIZER_BUILD");
    return s && *s && strcmp(s, "0") != 0 ? n / 4 : n;
}

/* Pin the calling thread to CPU i (modulo the CPUs online). Best effort: a
 * restricted cpuset only costs interleavings. */
static inline void pin_to_cpu(int i)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    CPU_SET((int)(i % (n > 0 ? n : 1)), &set);
    (void)pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

#endif
