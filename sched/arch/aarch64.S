/* Context switch for AArch64 (AAPCS64). See sched/arch/ctx.h.
 *
 * Frame saved on the switched-out stack (160 bytes), from sp up:
 *   x19 x20 x21 x22 x23 x24 x25 x26 x27 x28 x29(fp) x30(lr) d8 .. d15
 */
        .text

/* void ot__ctx_switch(void **save, void *to) */
        .globl  ot__ctx_switch
        .hidden ot__ctx_switch
        .type   ot__ctx_switch, %function
        .p2align 4
ot__ctx_switch:
        sub     sp, sp, #160
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        stp     d8, d9, [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mov     x2, sp
        str     x2, [x0]
        mov     sp, x1
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8, d9, [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        add     sp, sp, #160
        ret
        .size   ot__ctx_switch, .-ot__ctx_switch

/* First code run on a new stack: x19 = fn, x20 = arg. */
        .type   ot__ctx_boot, %function
        .p2align 4
ot__ctx_boot:
        mov     x29, #0         /* outermost frame */
        mov     x0, x20
        blr     x19
        brk     #0              /* fn must not return */
        .size   ot__ctx_boot, .-ot__ctx_boot

/* void *ot__ctx_init(void *top, void (*fn)(void *), void *arg) */
        .globl  ot__ctx_init
        .hidden ot__ctx_init
        .type   ot__ctx_init, %function
        .p2align 4
ot__ctx_init:
        and     x0, x0, #~15
        sub     x0, x0, #160
        str     x1, [x0, #0]    /* x19 = fn */
        str     x2, [x0, #8]    /* x20 = arg */
        stp     xzr, xzr, [x0, #16]
        stp     xzr, xzr, [x0, #32]
        stp     xzr, xzr, [x0, #48]
        stp     xzr, xzr, [x0, #64]
        adr     x3, ot__ctx_boot
        stp     xzr, x3, [x0, #80] /* x29 = 0, x30 = boot */
        stp     xzr, xzr, [x0, #96]
        stp     xzr, xzr, [x0, #112]
        stp     xzr, xzr, [x0, #128]
        stp     xzr, xzr, [x0, #144]
        ret
        .size   ot__ctx_init, .-ot__ctx_init

        .section .note.GNU-stack,"",@progbits
