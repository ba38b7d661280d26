/* A test helper for chapter 04 (AArch64): do the callee-saved registers
 * survive a call that switches to other coroutines and back?
 *
 * uint64_t regs_survive(void (*yield)(void), uint64_t seed);
 *
 * Fills x19-x29 and d8-d15 with patterns made from seed (seed + 1 .. seed +
 * 19), calls yield(), and returns a bit mask of the registers that no longer
 * hold their pattern: bits 0-10 x19-x29, bits 11-18 d8-d15. 0 means all
 * survived. x29, the frame pointer, is callee-saved like the others. */

	.text
	.globl	regs_survive
	.type	regs_survive, %function
regs_survive:
	sub	sp, sp, #160		/* save what our caller expects kept */
	stp	x19, x20, [sp, #0]
	stp	x21, x22, [sp, #16]
	stp	x23, x24, [sp, #32]
	stp	x25, x26, [sp, #48]
	stp	x27, x28, [sp, #64]
	stp	x29, x30, [sp, #80]
	stp	d8, d9, [sp, #96]
	stp	d10, d11, [sp, #112]
	stp	d12, d13, [sp, #128]
	stp	d14, d15, [sp, #144]
	str	x1, [sp, #-16]!		/* keep seed; sp stays 16-byte aligned */

	/* add, not eor: a logical immediate must be a repeating bit pattern,
	 * and most small numbers are not (5 is not encodable for eor). */
	.macro	fill reg, k
	add	\reg, x1, #\k
	.endm
	.macro	filld reg, k
	add	x9, x1, #\k
	fmov	\reg, x9
	.endm
	fill	x19, 1
	fill	x20, 2
	fill	x21, 3
	fill	x22, 4
	fill	x23, 5
	fill	x24, 6
	fill	x25, 7
	fill	x26, 8
	fill	x27, 9
	fill	x28, 10
	fill	x29, 11
	filld	d8, 12
	filld	d9, 13
	filld	d10, 14
	filld	d11, 15
	filld	d12, 16
	filld	d13, 17
	filld	d14, 18
	filld	d15, 19

	blr	x0			/* switch away and, some day, back */

	ldr	x1, [sp]		/* seed */
	mov	x0, #0			/* the mask of registers that changed */
	.macro	expect reg, k, bit
	add	x9, x1, #\k
	cmp	\reg, x9
	b.eq	1f
	orr	x0, x0, #(1 << \bit)
1:
	.endm
	.macro	expectd reg, k, bit
	add	x9, x1, #\k
	fmov	x10, \reg
	cmp	x10, x9
	b.eq	1f
	orr	x0, x0, #(1 << \bit)
1:
	.endm
	expect	x19, 1, 0
	expect	x20, 2, 1
	expect	x21, 3, 2
	expect	x22, 4, 3
	expect	x23, 5, 4
	expect	x24, 6, 5
	expect	x25, 7, 6
	expect	x26, 8, 7
	expect	x27, 9, 8
	expect	x28, 10, 9
	expect	x29, 11, 10
	expectd	d8, 12, 11
	expectd	d9, 13, 12
	expectd	d10, 14, 13
	expectd	d11, 15, 14
	expectd	d12, 16, 15
	expectd	d13, 17, 16
	expectd	d14, 18, 17
	expectd	d15, 19, 18

	add	sp, sp, #16
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
	add	sp, sp, #160
	ret
	.size	regs_survive, .-regs_survive

	.section .note.GNU-stack,"",%progbits
