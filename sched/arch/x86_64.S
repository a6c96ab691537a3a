/* Context switch for x86-64 (System V ABI). See sched/arch/ctx.h.
 *
 * Frame saved on the switched-out stack, from the stack pointer up:
 *   r15 r14 r13 r12 rbx rbp <return address>
 */
        .text

/* void ot__ctx_switch(void **save, void *to) */
        .globl  ot__ctx_switch
        .hidden ot__ctx_switch
        .type   ot__ctx_switch, @function
        .p2align 4
ot__ctx_switch:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   ot__ctx_switch, .-ot__ctx_switch

/* First code run on a new stack: r12 = fn, r13 = arg. The stack pointer is
 * 16-byte aligned here, as a call requires. */
        .type   ot__ctx_boot, @function
        .p2align 4
ot__ctx_boot:
        .cfi_startproc
        .cfi_undefined rip      /* the outermost frame: unwinders stop here */
        movq    %r13, %rdi
        callq   *%r12
        ud2                     /* fn must not return */
        .cfi_endproc
        .size   ot__ctx_boot, .-ot__ctx_boot

/* void *ot__ctx_init(void *top, void (*fn)(void *), void *arg) */
        .globl  ot__ctx_init
        .hidden ot__ctx_init
        .type   ot__ctx_init, @function
        .p2align 4
ot__ctx_init:
        .cfi_startproc
        movq    %rdi, %rax
        andq    $-16, %rax
        leaq    ot__ctx_boot(%rip), %rcx
        movq    %rcx, -8(%rax)  /* return address: boot */
        movq    $0, -16(%rax)   /* rbp */
        movq    $0, -24(%rax)   /* rbx */
        movq    %rsi, -32(%rax) /* r12 = fn */
        movq    %rdx, -40(%rax) /* r13 = arg */
        movq    $0, -48(%rax)   /* r14 */
        movq    $0, -56(%rax)   /* r15 */
        subq    $56, %rax
        ret
        .cfi_endproc
        .size   ot__ctx_init, .-ot__ctx_init

        .section .note.GNU-stack,"",@progbits
