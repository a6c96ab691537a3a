/* otter/mailbox.h: messages, sending and (selective) receiving.
 *
 * Every process has one mailbox, a lock-free multi-producer queue. A message
 * carries the sender's pid, a 64-bit tag, an optional reference and a
 * payload. Messages from one sender to one receiver arrive in the order sent.
 *
 * Delivery semantics are Erlang's: ot_send returns 0 once the message is in
 * the receiver's mailbox; if the receiver dies before reading it, the message
 * is freed unread. A pid that names no live process gets -ESRCH and the
 * message is dropped (and freed) at once. */
#ifndef OTTER_MAILBOX_H
#define OTTER_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "otter/process.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ot_msg ot_msg_t;
typedef uint64_t ot_ref_t;

/* Largest payload a message may carry: 64 MiB. */
#define OT_MSG_MAX ((size_t)64 << 20)
/* Wait forever, in receive timeouts. */
#define OT_INFINITY ((int64_t)-1)
/* Tags at and above this value are the runtime's own. */
#define OT_TAG_SYSTEM ((uint64_t)0xffffffff00000000ull)
/* Sent by ot_runtime_stop to every live process: exit now. */
#define OT_TAG_SHUTDOWN (OT_TAG_SYSTEM + 1)

/* Copy `len` bytes at `data` into a new message and put it in `to`'s mailbox.
 * data may be NULL when len is 0. Callable from processes and other threads.
 * In a process, a send costs one reduction and may yield.
 * Returns 0, or -EINVAL (len > 0 with data NULL; pid 0 or out of the table),
 * -EMSGSIZE (len > OT_MSG_MAX), -ESRCH (no such live process: dropped),
 * -EPERM (no runtime), -ENOMEM. */
int ot_send(ot_pid_t to, uint64_t tag, const void *data, size_t len);

/* As ot_send, with a reference the receiver can match in O(1) with
 * ot_receive_ref. */
int ot_send_ref(ot_pid_t to, uint64_t tag, ot_ref_t ref, const void *data, size_t len);

/* Zero-copy send: the message points at `buf` instead of copying it, and
 * ownership of buf moves to the runtime, which calls free_fn(buf) when the
 * message is freed (or at once, on any error, including -ESRCH). free_fn
 * NULL means buf is not freed (static data). Errors as ot_send. */
int ot_send_buf(ot_pid_t to, uint64_t tag, ot_ref_t ref, void *buf, size_t len,
                void (*free_fn)(void *));

/* A new reference, unique in this runtime. In a process it also marks the
 * mailbox: ot_receive_ref on this reference looks only at messages that
 * arrive after this call, however long the mailbox already is (only the
 * newest reference is marked; older ones still work, scanning from the
 * start). Never 0. */
ot_ref_t ot_make_ref(void);

/* A selective-receive predicate: true takes the message. It runs in the
 * receiving process and must not receive itself. */
typedef bool (*ot_match_fn)(const ot_msg_t *msg, void *arg);

/* Take the oldest message of the caller's mailbox for which match(msg, arg)
 * is true (match NULL takes the oldest message). Messages that do not match
 * stay, in order, for later receives. Waits up to timeout_ms milliseconds:
 * 0 only looks, OT_INFINITY waits forever. On success *out owns the message
 * (free it with ot_msg_free).
 * Callable from processes and attached threads. In a process each message
 * examined costs one reduction (the BEAM's rule).
 * Errors: -EINVAL (out NULL, timeout < -1), -ETIMEDOUT, -EPERM (caller is not
 * a process nor attached). */
int ot_receive(ot_match_fn match, void *arg, int64_t timeout_ms, ot_msg_t **out);

/* Take the first message whose reference is `ref`. If `ref` is the newest
 * reference the caller made, only messages that arrived after it are looked
 * at (O(1) in the mailbox's length). Errors as ot_receive. */
int ot_receive_ref(ot_ref_t ref, int64_t timeout_ms, ot_msg_t **out);

/* Number of messages in the caller's mailbox (those not yet looked at are
 * counted too). -EPERM outside processes and attached threads. */
long ot_mailbox_len(void);

/* Accessors. `msg` must be a message the caller owns. */
uint64_t ot_msg_tag(const ot_msg_t *msg);
ot_ref_t ot_msg_ref(const ot_msg_t *msg);
ot_pid_t ot_msg_sender(const ot_msg_t *msg); /* OT_PID_NONE from non-processes */
const void *ot_msg_data(const ot_msg_t *msg);
size_t ot_msg_len(const ot_msg_t *msg);

/* Free a received message (and, for ot_send_buf messages, call free_fn).
 * Any thread may free; NULL is ignored. */
void ot_msg_free(ot_msg_t *msg);

#ifdef __cplusplus
}
#endif
#endif
