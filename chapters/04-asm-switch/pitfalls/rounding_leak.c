/* Chapter 04 pitfall: the rounding mode leaks between coroutines when the
 * switch does not save the floating-point control state.
 *
 * The rounding mode lives in a register (x86-64: MXCSR for SSE, the x87
 * control word; AArch64: FPCR), and the ABI makes it callee-saved: a function
 * that changes it must put it back before returning, so across a call that
 * returns on another stack, each coroutine must get its own back. One
 * coroutine rounds upward for a while and yields; another then computes.
 * build.mk links this file twice with the chapter's co.c:
 *
 *   rounding_kept   with the chapter's switch: the second coroutine is right
 *   rounding_leak   with the chapter's switch assembled with every access
 *                   to the control state made a no-op (see build.mk): it is
 *                   wrong, and nothing crashes or warns */
#include <fenv.h>
#include <math.h>
#include <stdio.h>

#include "co.h"

static double rounded, third;

static void careless(void *arg)
{
	(void)arg;
	fesetround(FE_UPWARD);
	printf("careless: rounding set to FE_UPWARD, yielding\n");
	co_yield();
	fesetround(FE_TONEAREST);
	printf("careless: rounding back to FE_TONEAREST, done\n");
}

static void computer(void *arg)
{
	(void)arg;
	/* volatile: computed now, in whatever rounding mode is in force, not
	 * folded by the compiler (which rounds to nearest). */
	volatile double two_and_a_half = 2.5, one = 1.0, three = 3.0;
	rounded = rint(two_and_a_half);
	third = one / three;
	printf("computer: computed rint(2.5) and 1.0/3.0, never touching the rounding mode\n");
}

int main(void)
{
	if (!co_spawn(careless, NULL) || !co_spawn(computer, NULL)) {
		perror("rounding: co_spawn");
		return 1;
	}
	co_run();
	/* Printed here, in round-to-nearest: printf rounds its digits in the
	 * current mode too. */
	printf("computer's rint(2.5): expected 2, got %g\n", rounded);
	printf("computer's 1.0/3.0:   expected %.20f, got %.20f\n", 1.0 / 3.0, third);
	return 0;
}
