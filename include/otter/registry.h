/* otter/registry.h: registered process names.
 *
 * A name (a C string of 1 to OT_NAME_MAX - 1 bytes) names at most one live
 * process, and a process has at most one name. The name is freed when its
 * process dies. Lookups are lock-free (liburcu's cds_lfht). All functions
 * are callable from processes and from any other thread while a runtime
 * runs. */
#ifndef OTTER_REGISTRY_H
#define OTTER_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "otter/process.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest name, with its terminating NUL. */
#define OT_NAME_MAX 64

/* Register `name` for `pid`. The name is copied.
 * Errors: -EINVAL (name NULL, empty or too long; pid 0 or out of the
 * table), -EEXIST (the name is taken, or the process already has a name),
 * -ESRCH (pid is not alive), -EPERM (no runtime), -ENOMEM. */
int ot_register(const char *name, ot_pid_t pid);

/* Remove `name`. Errors: -EINVAL, -ENOENT (not registered), -EPERM. */
int ot_unregister(const char *name);

/* The pid registered as `name`, or OT_PID_NONE (also for bad input). */
ot_pid_t ot_whereis(const char *name);

/* ot_send to the process registered as `name`.
 * Errors: -ENOENT (no such name), and those of ot_send. */
int ot_send_named(const char *name, uint64_t tag, const void *data, size_t len);

#ifdef __cplusplus
}
#endif
#endif
