/* otter/error.h: error codes.
 *
 * Every public function reports failure as a negative errno-style code
 * (-EINVAL, -ENOMEM, -ESRCH ...) and success as 0 or a count. errno is never
 * used to report. ot_strerror() and ot_err_name() name any such code. */
#ifndef OTTER_ERROR_H
#define OTTER_ERROR_H

#include <errno.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The codes the runtime returns, with what each means in otter. */
#define OT_ERRNO_MAP(X)                                                                \
    X(EINVAL, "invalid argument")                                                      \
    X(ENOMEM, "out of memory")                                                         \
    X(ESRCH, "no such process (the pid names no live process)")                        \
    X(ETIMEDOUT, "timed out")                                                          \
    X(EEXIST, "already exists")                                                        \
    X(ENOENT, "no such entry (timer already fired or cancelled; name not registered)") \
    X(EMSGSIZE, "message too large")                                                   \
    X(EPERM, "not allowed from this thread (not a process, or not attached)")          \
    X(EBUSY, "busy (a runtime is already running, or still in use)")                   \
    X(EAGAIN, "resource temporarily unavailable (process table full)")                 \
    X(ENOSYS, "not supported on this system")                                          \
    X(EDEADLK, "would deadlock (a process waiting on itself)")

/* A short English description of `err` (negative code; positive accepted
 * too). Unknown codes give "unknown error". Static storage; any thread. */
const char *ot_strerror(int err);

/* The symbolic name of `err`, e.g. "ESRCH"; "UNKNOWN" if not one of ours. */
const char *ot_err_name(int err);

#ifdef __cplusplus
}
#endif
#endif
