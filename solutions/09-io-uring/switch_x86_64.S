/* The context switch (from chapter 04) for x86-64 Linux (System V ABI).
 *
 * void co_switch(void **from, void *const *to);
 *     rdi = from: where to store the current stack pointer
 *     rsi = to:   where the stack pointer to switch to is stored
 *
 * A switch is a function call that returns on another stack. The caller of
 * co_switch() already assumes rax, rcx, rdx, rsi, rdi, r8-r11 and the xmm
 * registers are clobbered by any call, so only what the ABI says a callee
 * must preserve is saved: rbx, rbp, r12-r15, the stack pointer, and the
 * control bits of MXCSR and the x87 control word (System V AMD64 ABI,
 * section 3.2.1, "Registers", Figure 3.4). Everything is pushed on the
 * current stack; the one thing stored elsewhere is the stack pointer. */

	.text
	.globl	co_switch
	.type	co_switch, @function
co_switch:
	pushq	%rbp			/* callee-saved: the frame pointer */
	pushq	%rbx			/* callee-saved */
	pushq	%r12			/* callee-saved */
	pushq	%r13			/* callee-saved */
	pushq	%r14			/* callee-saved */
	pushq	%r15			/* callee-saved */
	subq	$8, %rsp		/* a slot for the FP control state: */
	stmxcsr	(%rsp)			/* MXCSR: SSE rounding mode, exception masks */
	fnstcw	4(%rsp)			/* x87 control word: precision, rounding */
	movq	%rsp, (%rdi)		/* *from = the stack we are leaving */

	movq	(%rsi), %rsp		/* the stack we switch to: its own layout, */
	ldmxcsr	(%rsp)			/* saved the same way by an earlier switch */
	fldcw	4(%rsp)			/* or built by first_frame() */
	addq	$8, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	/* Continue where that stack called co_switch (or at co_trampoline).
	 * pop + jmp instead of ret: a ret to another stack than the call came
	 * from misses the CPU's return-address predictor, an indirect jump is
	 * predicted from its own history. Which is faster depends on the calls
	 * around the switch: make bench-switch measures both. */
	popq	%rcx
	jmpq	*%rcx
	.size	co_switch, .-co_switch

/* uint64_t co_fp_control_now(void): MXCSR | x87 control word << 32, the
 * values a new coroutine starts with (those of whoever spawns it). */
	.globl	co_fp_control_now
	.type	co_fp_control_now, @function
co_fp_control_now:
	subq	$8, %rsp		/* an 8-byte slot, as co_switch uses: */
	movq	$0, (%rsp)		/* bytes 6 and 7 stay zero */
	stmxcsr	(%rsp)			/* bytes 0-3: MXCSR */
	fnstcw	4(%rsp)			/* bytes 4-5: the x87 control word */
	movq	(%rsp), %rax
	addq	$8, %rsp
	ret
	.size	co_fp_control_now, .-co_fp_control_now

	/* No executable stack wanted: without this note the linker assumes one. */
	.section .note.GNU-stack,"",@progbits
