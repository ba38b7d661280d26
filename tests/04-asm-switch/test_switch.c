/* Chapter 04's switch tests: what the assembly must preserve across a
 * switch (the callee-saved registers, the floating-point control state),
 * what a new coroutine starts with, and the guard page below every stack.
 * The shared coroutine tests (turn order, alignment, recursion...) are in
 * tests/coroutines. */
#define _GNU_SOURCE

#include <fenv.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The chapter's coroutines, included rather than linked: the register test
 * plays the scheduler itself, with co.c's own data (sched, a coroutine's
 * sp), so that a switch that loses a register is reported by name instead of
 * crashing co_run(), which keeps its own values in such registers. */
#include "co.c"
#include "harness.h"

/* In the test helper regs_<arch>.S. */
uint64_t regs_survive(void (*yield)(void), uint64_t seed);

/* The registers regs_survive() checks, in the order of the bits of its mask. */
#if defined(__x86_64__)
static const char *const reg_names[] = { "rbx", "rbp", "r12", "r13", "r14", "r15" };
#elif defined(__aarch64__)
static const char *const reg_names[] = {
	"x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29",
	"d8", "d9", "d10", "d11", "d12", "d13", "d14", "d15",
};
#else
#error "regs_survive() has no helper for this CPU"
#endif
enum { REGS = sizeof reg_names / sizeof reg_names[0] };

/* The names of the registers in mask, space-separated, into out. */
static void name_registers(uint64_t mask, char *out, size_t size)
{
	size_t len = 0;
	out[0] = '\0';
	for (int i = 0; i < REGS && len < size; i++)
		if (mask & (UINT64_C(1) << i))
			len += (size_t)snprintf(out + len, size - len, "%s%s", len > 0 ? " " : "",
						reg_names[i]);
}

/* The coroutine of the register test, and what changed on each side. */
static struct co *held;
static uint64_t changed_in_scheduler, changed_in_coroutine;

/* One switch each way, as co_run() and co_yield() make them. Nothing here
 * keeps a value in a register across co_switch(): the registers at stake
 * are regs_survive()'s, which restores its caller's from its own stack. */
static void switch_to_held(void)
{
	stack_tools_leave(&sched.tools, false, held->stack, CO_STACK_SIZE);
	co_switch(&sched.sp, &held->sp);
	stack_tools_arrived(&sched.tools, NULL, NULL);
}

static void switch_to_scheduler(void)
{
	stack_tools_leave(&held->tools, false, sched.stack_low, sched.stack_size);
	co_switch(&held->sp, &sched.sp);
	stack_tools_arrived(&held->tools, NULL, NULL);
}

static void hold_registers(void *arg)
{
	(void)arg;
	changed_in_coroutine = regs_survive(switch_to_scheduler, 0x2222222222222220u);
}

START_TEST(callee_saved_registers_survive_a_switch)
{
	th_about("switch", "co_switch does not save and restore every callee-saved register "
		 "(x86-64: rbx, rbp, r12-r15; AArch64: x19-x29, d8-d15), or restores them in "
		 "another order than it saved them");
	changed_in_scheduler = changed_in_coroutine = ~UINT64_C(0);
	if (!co_spawn(hold_registers, NULL))
		th_fail("co_spawn failed");
	held = dequeue();	/* this test schedules it by hand */
	sched.current = held;
	/* Start it; it fills the registers with its own values and switches
	 * back. Then resume it: it checks its registers, ends, and switches
	 * back once more, from co_trampoline. Each side's values differ, so a
	 * register one side left behind shows on the other. */
	uint64_t changed_at_start = regs_survive(switch_to_held, 0x1111111111111110u);
	uint64_t changed_at_end = regs_survive(switch_to_held, 0x3333333333333330u);
	changed_in_scheduler = changed_at_start | changed_at_end;
	sched.current = NULL;
	if (!held->finished)
		th_fail("the coroutine was resumed after its switch to the scheduler, but did not "
			"run to its end");
	co_free(held);
	const char *side[2] = { "the scheduler", "the coroutine" };
	uint64_t changed[2] = { changed_in_scheduler, changed_in_coroutine };
	for (int i = 0; i < 2; i++) {
		if (changed[i] == 0)
			continue;
		char names[128];
		name_registers(changed[i], names, sizeof names);
		th_fail("in %s, callee-saved registers changed across a switch: %s (each held a "
			"value of its own before it switched away, and another when it got back)",
			side[i], names);
	}
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

/* 1/3, computed when called (volatile: never folded by the compiler) in the
 * rounding mode in force, in double and in long double. On x86-64 the two
 * take different hardware: double arithmetic is done by SSE instructions,
 * which round as MXCSR says; long double by the x87, which rounds as its
 * control word says (and fegetround() reads only that one). On AArch64 the
 * FPCR rules both. */
struct thirds {
	double d;
	long double ld;
};

static struct thirds one_third(void)
{
	volatile double one = 1.0, three = 3.0;
	volatile long double one_l = 1.0L, three_l = 3.0L;
	return (struct thirds){ one / three, one_l / three_l };
}

static struct thirds thirds_seen[2];

/* Fail unless seen is 1/3 rounded in mode, as the main stack computes it. */
static void expect_thirds(const char *who, struct thirds seen, int mode, const char *mode_name)
{
	fesetround(mode);
	struct thirds want = one_third();
	fesetround(FE_TONEAREST);
	if (seen.d != want.d)
		th_fail("%s computed 1.0 / 3.0 in double as %.17g (%a); rounded %s it is %.17g (%a). "
			"On x86-64, double arithmetic rounds as MXCSR says (SSE), on AArch64 as the "
			"FPCR says", who, seen.d, seen.d, mode_name, want.d, want.d);
	if (seen.ld != want.ld)
		th_fail("%s computed 1.0L / 3.0L in long double as %.21Lg (%La); rounded %s it is "
			"%.21Lg (%La). On x86-64, long double arithmetic rounds as the x87 control "
			"word says, on AArch64 as the FPCR says", who, seen.ld, seen.ld, mode_name,
			want.ld, want.ld);
}

static void divide_after_yields(void *arg)
{
	int i = (int)(intptr_t)arg;
	fesetround(i == 0 ? FE_UPWARD : FE_DOWNWARD);
	for (int k = 0; k < 3; k++)
		co_yield();
	thirds_seen[i] = one_third();
	fesetround(FE_TONEAREST);
}

START_TEST(arithmetic_rounds_in_each_coroutines_own_mode)
{
	th_about("switch", "co_switch does not save and restore the whole floating-point control "
		 "state: on x86-64 both MXCSR (stmxcsr/ldmxcsr) and the x87 control word "
		 "(fnstcw/fldcw); on AArch64 the FPCR");
	co_spawn(divide_after_yields, (void *)0);
	co_spawn(divide_after_yields, (void *)1);
	co_run();
	expect_thirds("the coroutine that set FE_UPWARD, then yielded three times,", thirds_seen[0],
		      FE_UPWARD, "upward");
	expect_thirds("the coroutine that set FE_DOWNWARD, then yielded three times,", thirds_seen[1],
		      FE_DOWNWARD, "downward");
}
END_TEST

static void divide_at_once(void *arg)
{
	thirds_seen[(intptr_t)arg] = one_third();
}

START_TEST(a_new_coroutine_starts_in_its_spawners_rounding_mode)
{
	th_about("first_frame switch", "a new coroutine's first frame must hold the floating-point "
		 "control state of whoever spawns it, as co_fp_control_now() reads it at co_spawn() "
		 "time, and its first switch must load it from there");
	fesetround(FE_UPWARD);
	co_spawn(divide_at_once, (void *)0);
	fesetround(FE_DOWNWARD);
	co_spawn(divide_at_once, (void *)1);
	fesetround(FE_TONEAREST);
	co_run();
	expect_thirds("a coroutine spawned while rounding upward, run while rounding to nearest,",
		      thirds_seen[0], FE_UPWARD, "upward");
	expect_thirds("a coroutine spawned while rounding downward, run while rounding to nearest,",
		      thirds_seen[1], FE_DOWNWARD, "downward");
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
	th_test(tc, arithmetic_rounds_in_each_coroutines_own_mode);
	tc = th_tcase(s, "first_frame", "first_frame switch");
	th_test(tc, a_new_coroutine_starts_in_its_spawners_rounding_mode);

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
