/* The context switch (sched/arch/<arch>.S).
 *
 * A context is a saved stack pointer: ot__ctx_switch pushes the callee-saved
 * registers of the System V (or AAPCS64) ABI onto the current stack, stores
 * the stack pointer into *save, loads `to` and pops the registers saved
 * there. Caller-saved registers need no saving: the switch is a function
 * call. The floating-point control words (MXCSR, x87 CW, FPCR) are not
 * switched: processes share the thread's rounding and exception modes.
 * Measured against glibc swapcontext in bench/micro. */
#ifndef OT_SCHED_ARCH_CTX_H
#define OT_SCHED_ARCH_CTX_H

/* Save the current context into *save and resume the one saved in `to`. */
void ot__ctx_switch(void **save, void *to);

/* Prepare a new context on the stack whose top (highest address, exclusive)
 * is `top`: the first switch to the returned pointer calls fn(arg) on that
 * stack. fn must never return. */
void *ot__ctx_init(void *top, void (*fn)(void *), void *arg);

#endif
