/* Chapter 04 benchmark: the chapter's switch (switch_x86_64.S), ending in
 * `ret` instead of pop + jmp, to measure what that ending costs.
 *
 * void co_switch_variant(void **from, void *const *to);
 *
 * The CPU predicts a `ret` with a small stack of the return addresses its
 * recent `call`s pushed. A switch is called on one stack and returns on
 * another, to an address some other `call` pushed, so that prediction is
 * wrong every time. An indirect `jmp` is predicted from the branch's own
 * history, which a steady back-and-forth makes right. The frame is the
 * chapter's, so first_frame() in bench_switch.c serves both. */

	.text
	.globl	co_switch_variant
	.type	co_switch_variant, @function
co_switch_variant:
	pushq	%rbp			/* callee-saved: the frame pointer */
	pushq	%rbx			/* callee-saved */
	pushq	%r12			/* callee-saved */
	pushq	%r13			/* callee-saved */
	pushq	%r14			/* callee-saved */
	pushq	%r15			/* callee-saved */
	subq	$8, %rsp		/* a slot for the FP control state: */
	stmxcsr	(%rsp)			/* MXCSR */
	fnstcw	4(%rsp)			/* the x87 control word */
	movq	%rsp, (%rdi)		/* *from = the stack we are leaving */

	movq	(%rsi), %rsp		/* the stack we switch to */
	ldmxcsr	(%rsp)			/* its MXCSR */
	fldcw	4(%rsp)			/* its x87 control word */
	addq	$8, %rsp		/* release the slot */
	popq	%r15			/* its callee-saved registers */
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret				/* the one difference: pop the address and */
					/* go there, mispredicted */
	.size	co_switch_variant, .-co_switch_variant

	/* No executable stack wanted: without this note the linker assumes one. */
	.section .note.GNU-stack,"",@progbits
