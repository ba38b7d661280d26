/* Chapter 04 pitfall, DELIBERATELY BROKEN: a copy of switch_x86_64.S that
 * does not save or restore MXCSR and the x87 control word. The System V
 * AMD64 ABI (section 3.2.1, Figure 3.4) lists their control bits as
 * callee-saved, and a switch is a call that returns on another stack, so
 * leaving them out lets one coroutine's rounding mode leak into the next one
 * to run. pitfalls/rounding_leak.c shows it. Do not use this file.
 *
 * The frame keeps the chapter's layout, FP slot included (co.c's
 * first_frame() builds it), so only the control words are missing. */

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
	subq	$8, %rsp		/* the FP slot, left unwritten: BROKEN, */
					/* no stmxcsr and no fnstcw here */
	movq	%rsp, (%rdi)		/* *from = the stack we are leaving */

	movq	(%rsi), %rsp		/* the stack we switch to */
	addq	$8, %rsp		/* skip the FP slot: BROKEN, no ldmxcsr and */
					/* no fldcw, so the rounding mode of the */
					/* stack we left stays in force here */
	popq	%r15			/* callee-saved, as that stack left them */
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	popq	%rcx			/* where that stack called co_switch */
	jmpq	*%rcx			/* (or co_trampoline), as in the original */
	.size	co_switch, .-co_switch

/* uint64_t co_fp_control_now(void): co.c stores its value in a new
 * coroutine's FP slot, which this switch never reads. */
	.globl	co_fp_control_now
	.type	co_fp_control_now, @function
co_fp_control_now:
	xorl	%eax, %eax		/* nothing to report: the slot is unused */
	ret
	.size	co_fp_control_now, .-co_fp_control_now

	/* No executable stack wanted: without this note the linker assumes one. */
	.section .note.GNU-stack,"",@progbits
