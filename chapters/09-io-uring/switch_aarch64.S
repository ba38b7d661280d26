/* The context switch (from chapter 04) for AArch64 Linux (AAPCS64).
 *
 * void co_switch(void **from, void *const *to);
 *     x0 = from: where to store the current stack pointer
 *     x1 = to:   where the stack pointer to switch to is stored
 *
 * A switch is a function call that returns on another stack, so only what
 * the procedure call standard says a callee must preserve is saved: x19-x28,
 * the frame pointer x29, the link register x30 (where to continue), sp, the
 * low 64 bits of v8-v15 (d8-d15), and the FPCR, which holds the rounding
 * mode (AAPCS64, section 6.1.1 "General-purpose registers" and 6.1.2 "SIMD
 * and Floating-Point registers"). They go in a 176-byte frame on the current
 * stack (a multiple of 16: sp must stay 16-byte aligned), laid out as:
 *
 *     sp +   0  x19 x20      sp +  96  d8  d9
 *     sp +  16  x21 x22      sp + 112  d10 d11
 *     sp +  32  x23 x24      sp + 128  d12 d13
 *     sp +  48  x25 x26      sp + 144  d14 d15
 *     sp +  64  x27 x28      sp + 160  fpcr, padding
 *     sp +  80  x29 x30
 *
 * first_frame() in co.c builds the same layout for a new coroutine. */

	.text
	.globl	co_switch
	.type	co_switch, %function
co_switch:
	sub	sp, sp, #176		/* the frame for this stack's registers */
	stp	x19, x20, [sp, #0]	/* callee-saved general registers */
	stp	x21, x22, [sp, #16]
	stp	x23, x24, [sp, #32]
	stp	x25, x26, [sp, #48]
	stp	x27, x28, [sp, #64]
	stp	x29, x30, [sp, #80]	/* frame pointer, and where to continue */
	stp	d8, d9, [sp, #96]	/* callee-saved low halves of v8-v15 */
	stp	d10, d11, [sp, #112]
	stp	d12, d13, [sp, #128]
	stp	d14, d15, [sp, #144]
	mrs	x9, fpcr		/* rounding mode and exception traps */
	str	x9, [sp, #160]
	mov	x9, sp			/* *from = the stack we are leaving */
	str	x9, [x0]

	ldr	x9, [x1]		/* the stack we switch to */
	mov	sp, x9
	ldr	x9, [sp, #160]
	msr	fpcr, x9
	ldp	d14, d15, [sp, #144]
	ldp	d12, d13, [sp, #128]
	ldp	d10, d11, [sp, #112]
	ldp	d8, d9, [sp, #96]
	ldp	x29, x30, [sp, #80]
	ldp	x27, x28, [sp, #64]
	ldp	x25, x26, [sp, #48]
	ldp	x23, x24, [sp, #32]
	ldp	x21, x22, [sp, #16]
	ldp	x19, x20, [sp, #0]
	add	sp, sp, #176
	ret				/* to x30: where that stack called co_switch */
	.size	co_switch, .-co_switch

/* A new coroutine's first switch "returns" here (first_frame() put co_start
 * in the x30 slot), with x19 = the trap and x20 = co_trampoline. Unlike on
 * x86-64, a return address lives in a register, not on the stack: set it to
 * the trap, so that co_trampoline returning would land there. */
	.globl	co_start
	.type	co_start, %function
co_start:
	mov	x30, x19		/* co_trampoline's return address: the trap */
	br	x20			/* co_trampoline, with sp 16-byte aligned */
	.size	co_start, .-co_start

/* uint64_t co_fp_control_now(void): the FPCR, which new coroutines start with. */
	.globl	co_fp_control_now
	.type	co_fp_control_now, %function
co_fp_control_now:
	mrs	x0, fpcr
	ret
	.size	co_fp_control_now, .-co_fp_control_now

	/* No executable stack wanted: without this note the linker assumes one. */
	.section .note.GNU-stack,"",%progbits
