/* Chapter 04 benchmark: the chapter's switch (switch_aarch64.S), ending in
 * `br x30` instead of `ret`, to measure what the ending costs.
 *
 * void co_switch_variant(void **from, void *const *to);
 *
 * On AArch64 too, `ret` is predicted from a small stack of the return
 * addresses recent `bl`s made, and a switch returns to an address another
 * stack's `bl` made, so that prediction is wrong every time. `br x30` is the
 * same jump, predicted like any indirect branch, from its own history. The
 * frame is the chapter's, so first_frame() in bench_switch.c serves both. */

	.text
	.globl	co_switch_variant
	.type	co_switch_variant, %function
co_switch_variant:
	sub	sp, sp, #176		/* the frame of switch_aarch64.S */
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
	ldr	x9, [sp, #160]		/* its FPCR */
	msr	fpcr, x9
	ldp	d14, d15, [sp, #144]	/* its callee-saved registers */
	ldp	d12, d13, [sp, #128]
	ldp	d10, d11, [sp, #112]
	ldp	d8, d9, [sp, #96]
	ldp	x29, x30, [sp, #80]
	ldp	x27, x28, [sp, #64]
	ldp	x25, x26, [sp, #48]
	ldp	x23, x24, [sp, #32]
	ldp	x21, x22, [sp, #16]
	ldp	x19, x20, [sp, #0]
	add	sp, sp, #176		/* release the frame */
	br	x30			/* the one difference: a jump, not a return */
	.size	co_switch_variant, .-co_switch_variant

	/* No executable stack wanted: without this note the linker assumes one. */
	.section .note.GNU-stack,"",%progbits
