/* Chapter 04: the context switch for x86-64 Linux (System V ABI).
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
	/* EXERCISE switch: save this stack's registers, switch, restore.
	 * Push rbp, rbx, r12, r13, r14 and r15; make room for 8 more bytes and
	 * store MXCSR there (stmxcsr) and the x87 control word 4 bytes above it
	 * (fnstcw); store rsp in *from (rdi). Load rsp from *to (rsi), then undo
	 * the same steps in reverse order: ldmxcsr, fldcw, release the 8 bytes,
	 * pop r15 ... rbp. Finally continue at the address on top of the new
	 * stack: pop it into a scratch register (rcx is free) and jmp to it.
	 * make bench-switch also builds this file with -DCO_SWITCH_ENDS_IN_RET,
	 * to time the plain `ret` that does the same: write that ending under
	 * #ifdef CO_SWITCH_ENDS_IN_RET, and pop + jmp under its #else.
	 * Hint: the layout must match first_frame() in co.c exactly.
	 * Tests: callee_saved_registers_survive_a_switch,
	 *        rounding_mode_stays_with_its_coroutine,
	 *        arithmetic_rounds_in_each_coroutines_own_mode, and every other
	 *        test of test_switch, test_co and the server.
	 */
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
#ifdef CO_SWITCH_ENDS_IN_RET
	ret				/* pop the address and go there */
#else
	popq	%rcx			/* the address */
	jmpq	*%rcx			/* and go there */
#endif
	/* STUB: ud2 */
	/* END switch */
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
