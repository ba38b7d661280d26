/* Chapter 04 pitfall, DELIBERATELY BROKEN: a copy of switch_aarch64.S that
 * does not save or restore the FPCR. AAPCS64 (section 6.1.2) makes its
 * rounding-mode bits callee-saved, and a switch is a call that returns on
 * another stack, so leaving it out lets one coroutine's rounding mode leak
 * into the next one to run. pitfalls/rounding_leak.c shows it. Do not use
 * this file.
 *
 * The frame keeps the chapter's 176-byte layout, FPCR slot included (co.c's
 * first_frame() builds it), so only the FPCR is missing. */

	.text
	.globl	co_switch
	.type	co_switch, %function
co_switch:
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
	mov	x9, sp			/* BROKEN: no mrs x9, fpcr and no store */
	str	x9, [x0]		/* to sp + 160; *from = this stack */

	ldr	x9, [x1]		/* the stack we switch to */
	mov	sp, x9			/* BROKEN: no msr fpcr: the rounding mode */
					/* of the stack we left stays in force */
	ldp	d14, d15, [sp, #144]	/* callee-saved, as that stack left them */
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
	ret				/* to x30: where that stack called co_switch */
	.size	co_switch, .-co_switch

/* A new coroutine's first switch lands here, as in switch_aarch64.S. */
	.globl	co_start
	.type	co_start, %function
co_start:
	mov	x30, x19		/* co_trampoline's return address: the trap */
	br	x20			/* co_trampoline */
	.size	co_start, .-co_start

/* uint64_t co_fp_control_now(void): co.c stores its value in a new
 * coroutine's FPCR slot, which this switch never reads. */
	.globl	co_fp_control_now
	.type	co_fp_control_now, %function
co_fp_control_now:
	mov	x0, xzr			/* nothing to report: the slot is unused */
	ret
	.size	co_fp_control_now, .-co_fp_control_now

	/* No executable stack wanted: without this note the linker assumes one. */
	.section .note.GNU-stack,"",%progbits
