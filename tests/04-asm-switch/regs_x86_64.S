/* A test helper for chapter 04 (x86-64): do the callee-saved registers
 * survive a call that switches to other coroutines and back?
 *
 * uint64_t regs_survive(void (*yield)(void), uint64_t seed);
 *
 * Fills rbx, rbp, r12-r15 with patterns made from seed, calls yield(), and
 * returns a bit mask of the registers that no longer hold their pattern:
 * bit 0 rbx, 1 rbp, 2 r12, 3 r13, 4 r14, 5 r15. 0 means all survived. */

	.text
	.globl	regs_survive
	.type	regs_survive, @function
regs_survive:
	pushq	%rbx			/* they are callee-saved for our caller too */
	pushq	%rbp
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	pushq	%rsi			/* keep seed; 7 pushes re-align rsp to 16 */

	movq	%rsi, %rbx		/* the patterns: seed xor 1..6 */
	xorq	$1, %rbx
	movq	%rsi, %rbp
	xorq	$2, %rbp
	movq	%rsi, %r12
	xorq	$3, %r12
	movq	%rsi, %r13
	xorq	$4, %r13
	movq	%rsi, %r14
	xorq	$5, %r14
	movq	%rsi, %r15
	xorq	$6, %r15

	call	*%rdi			/* switch away and, some day, back */

	xorl	%eax, %eax		/* the mask of registers that changed */
	movq	(%rsp), %rsi		/* seed */
	.macro	expect reg, k, bit
	movq	%rsi, %rcx
	xorq	$\k, %rcx
	cmpq	%rcx, \reg
	je	1f
	orq	$(1 << \bit), %rax
1:
	.endm
	expect	%rbx, 1, 0
	expect	%rbp, 2, 1
	expect	%r12, 3, 2
	expect	%r13, 4, 3
	expect	%r14, 5, 4
	expect	%r15, 6, 5

	popq	%rsi
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbp
	popq	%rbx
	ret
	.size	regs_survive, .-regs_survive

	.section .note.GNU-stack,"",@progbits
