/* Chapter 04's switch tests: what the assembly must preserve across a
 * switch (the callee-saved registers, the floating-point control state) and
 * the guard page below every stack. The shared coroutine tests (turn order,
 * alignment, recursion...) are in tests/coroutines. */
#define _GNU_SOURCE

#include <fenv.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "co.h"
#include "harness.h"

/* In the test helper regs_<arch>.S. */
uint64_t regs_survive(void (*yield)(void), uint64_t seed);

static uint64_t changed[2];

static void hold_registers(void *arg)
{
	int i = (int)(intptr_t)arg;
	/* Different patterns in each coroutine, so a register left over from
	 * the other one shows. */
	changed[i] = regs_survive(co_yield, i == 0 ? 0x1111111111111110u : 0x2222222222222220u);
}

START_TEST(callee_saved_registers_survive_a_switch)
{
	th_about("switch", "co_switch does not save and restore every callee-saved register "
		 "(x86-64: rbx, rbp, r12-r15; AArch64: x19-x29, d8-d15)");
	changed[0] = changed[1] = ~0u;
	co_spawn(hold_registers, (void *)0);
	co_spawn(hold_registers, (void *)1);
	co_run();
	for (int i = 0; i < 2; i++)
		if (changed[i] != 0)
			th_fail("in coroutine %d, callee-saved registers changed across a switch: "
				"mask %#llx (x86-64 bits: 0 rbx, 1 rbp, 2 r12, 3 r13, 4 r14, 5 r15; "
				"AArch64: 0-9 x19-x28, 10-17 d8-d15)", i, (unsigned long long)changed[i]);
}
END_TEST

static int rounding_seen[2];

static void keep_rounding(void *arg)
{
	int mode = (int)(intptr_t)arg;
	fesetround(mode);
	for (int i = 0; i < 3; i++)
		co_yield();
	rounding_seen[mode == FE_UPWARD ? 0 : 1] = fegetround();
	fesetround(FE_TONEAREST);
}

START_TEST(rounding_mode_stays_with_its_coroutine)
{
	th_about("switch", "the floating-point control state (x86-64: MXCSR and the x87 control "
		 "word; AArch64: FPCR) is not saved and restored by co_switch");
	co_spawn(keep_rounding, (void *)(intptr_t)FE_UPWARD);
	co_spawn(keep_rounding, (void *)(intptr_t)FE_DOWNWARD);
	co_run();
	if (rounding_seen[0] != FE_UPWARD || rounding_seen[1] != FE_DOWNWARD)
		th_fail("one coroutine set rounding upward, another downward, and both yielded; "
			"afterwards they saw modes %#x and %#x, expected %#x and %#x",
			rounding_seen[0], rounding_seen[1], FE_UPWARD, FE_DOWNWARD);
	if (fegetround() != FE_TONEAREST)
		th_fail("after the coroutines ran, the scheduler's rounding mode is %#x, "
			"not round-to-nearest", fegetround());
}
END_TEST

/* Far deeper than any coroutine stack: 256 bytes a frame, a million frames. */
static volatile int max_depth = 1 << 20;

static int recurse_deep(int depth)
{
	volatile char frame[256];
	frame[0] = (char)depth;
	if (depth == max_depth)
		return frame[0];
	return recurse_deep(depth + 1) + frame[0];
}

static void overflow(void *arg)
{
	(void)arg;
	recurse_deep(0);
}

/* The stack runs into the PROT_NONE page below it: the kernel sends SIGSEGV.
 * Check's fork mode sees the signal; without the guard page the recursion
 * would write over whatever lies below and the test would not end this way. */
START_TEST(overflowing_a_stack_hits_the_guard_page)
{
	th_about("", "the stack is not mapped with a PROT_NONE guard page below it");
	co_spawn(overflow, NULL);
	co_run();
}
END_TEST

static Suite *switch_suite(void)
{
	Suite *s = th_suite("04-asm-switch");
	TCase *tc = th_tcase(s, "switch", "switch");
	th_test(tc, callee_saved_registers_survive_a_switch);
	th_test(tc, rounding_mode_stays_with_its_coroutine);

	/* A test that ends in a signal needs Check's fork mode (make memcheck runs
	 * without it). */
	const char *fork_mode = getenv("CK_FORK");
	if (fork_mode == NULL || strcmp(fork_mode, "no") != 0) {
		tc = th_tcase(s, "guard_page", "");
		th_test_raise_signal(tc, overflowing_a_stack_hits_the_guard_page, SIGSEGV);
	}
	return s;
}

int main(void)
{
	return th_run(switch_suite());
}
