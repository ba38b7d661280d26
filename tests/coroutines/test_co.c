/* The coroutine tests, for every chapter with coroutines (co.h): turn order,
 * coroutines that end, locals across yields, stack use and alignment.
 * Assertions run on the main stack, after co_run() returns: a failed Check
 * assertion in CK_FORK=no mode longjmps out of the test, which must never
 * happen from a coroutine's stack. */
#define _GNU_SOURCE

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "co.h"
#include "harness.h"
#include "promises.h"

/* What the coroutines did, written by them and checked after co_run(). */
static char trace[64];
static size_t trace_len;

static void note(char c)
{
	if (trace_len + 1 < sizeof trace)
		trace[trace_len++] = c;
	trace[trace_len] = '\0';
}

static void letter_twice(void *arg)
{
	note(*(const char *)arg);
	co_yield();
	note(*(const char *)arg);
}

START_TEST(runs_coroutines_in_turn_order)
{
	th_about(th_promise()->coroutine_todos, "co_yield() does not go back to the scheduler, or the "
		 "scheduler does not resume each coroutine in turn");
	trace_len = 0;
	trace[0] = '\0';
	static const char letters[] = "ABC";
	for (int i = 0; i < 3; i++)
		if (!co_spawn(letter_twice, (void *)&letters[i]))
			th_fail("co_spawn failed");
	co_run();
	if (strcmp(trace, "ABCABC") != 0)
		th_fail("three coroutines each noted their letter, yielded, and noted it again; "
			"expected \"ABCABC\", got \"%s\"", trace);
	if (co_count() != 0)
		th_fail("after co_run() returned, %zu coroutines still exist", co_count());
}
END_TEST

static void spawn_child(void *arg)
{
	(void)arg;
	note('p');
	if (!co_spawn(letter_twice, (void *)"c"))
		note('!');
	co_yield();
	note('p');
}

START_TEST(a_coroutine_can_spawn_another)
{
	th_about(th_promise()->coroutine_todos, "a coroutine spawned by another is not queued after it");
	trace_len = 0;
	trace[0] = '\0';
	if (!co_spawn(spawn_child, NULL))
		th_fail("co_spawn failed");
	co_run();
	if (strcmp(trace, "pcpc") != 0)
		th_fail("expected \"pcpc\" (parent, child, parent, child), got \"%s\"", trace);
}
END_TEST

static long yields_seen;

static void yield_once(void *arg)
{
	(void)arg;
	co_yield();
	yields_seen++;
}

START_TEST(ten_thousand_coroutines_come_and_go)
{
	th_about(th_promise()->coroutine_todos, "finished coroutines are not freed, or not all of them run");
	enum { MANY = 10000 };
	/* mallinfo2() reports glibc's heap; under Valgrind or ASan, whose
	 * allocators replace it, the leak checkers do this job instead. A first
	 * round lets malloc set up what it keeps for itself (arenas, caches of
	 * freed chunks); a leak of even one small struct per coroutine would
	 * then show as megabytes. */
	for (int i = 0; i < 1000; i++)
		co_spawn(yield_once, NULL);
	co_run();
	size_t before = mallinfo2().uordblks;
	yields_seen = 0;
	for (int i = 0; i < MANY; i++)
		if (!co_spawn(yield_once, NULL))
			th_fail("co_spawn failed after %d coroutines", i);
	if (co_count() != MANY)
		th_fail("spawned %d coroutines, co_count() says %zu", MANY, co_count());
	co_run();
	size_t after = mallinfo2().uordblks;
	if (yields_seen != MANY)
		th_fail("%d coroutines should each have run to the end; %ld did", MANY, yields_seen);
	if (co_count() != 0)
		th_fail("all %d coroutines ended, but co_count() says %zu remain", MANY, co_count());
	if (after > before + 256 * 1024)
		th_fail("the heap holds %zu bytes more after %d coroutines came and went: "
			"a finished coroutine's stack or struct is not freed", after - before, MANY);
}
END_TEST

static long sums[2];

/* Locals live on the coroutine's own stack, so yields cannot disturb them. */
static void sum_with_yields(void *arg)
{
	long *out = arg;
	long sum = 0;
	double scaled = 0.5;
	for (int i = 1; i <= 100; i++) {
		sum += i;
		scaled *= 1.01;
		co_yield();
	}
	*out = sum + (scaled > 1.0 ? 1000000 : 0);
}

START_TEST(locals_survive_yields)
{
	th_about(th_promise()->coroutine_todos, "registers or the stack of one coroutine leak into another");
	sums[0] = sums[1] = 0;
	co_spawn(sum_with_yields, &sums[0]);
	co_spawn(sum_with_yields, &sums[1]);
	co_run();
	for (int i = 0; i < 2; i++)
		if (sums[i] != 5050 + 1000000)
			th_fail("coroutine %d summed 1..100 while yielding; expected %d, got %ld",
				i, 5050 + 1000000, sums[i]);
}
END_TEST

static uintptr_t frame_at_entry;

static void record_frame(void *arg)
{
	(void)arg;
	frame_at_entry = (uintptr_t)__builtin_frame_address(0);
}

START_TEST(stack_is_16_byte_aligned_at_entry)
{
	th_about(th_promise()->coroutine_todos, "the first frame is not aligned as the ABI requires: on x86-64 the "
		 "stack pointer plus 8 must be a multiple of 16 when a function starts");
	frame_at_entry = 1;
	co_spawn(record_frame, NULL);
	co_run();
	/* The frame address is where the caller's frame pointer was saved: on
	 * both x86-64 and AArch64 a multiple of 16 when the ABI's alignment held. */
	if (frame_at_entry % 16 != 0)
		th_fail("a coroutine's frame address is %#lx, not a multiple of 16",
			(unsigned long)frame_at_entry);
}
END_TEST

static int depth_reached;

static int recurse(int depth, int max)
{
	volatile char frame[512];	/* a real frame, not optimised away */
	frame[0] = (char)depth;
	depth_reached = depth;
	if (depth < max)
		return recurse(depth + 1, max) + frame[0];
	return frame[0];
}

static void go_deep(void *arg)
{
	recurse(0, *(int *)arg);
}

START_TEST(deep_recursion_fits_in_the_stack)
{
	th_about(th_promise()->coroutine_todos, "a coroutine's stack is smaller than CO_STACK_SIZE, or overlaps "
		 "something");
	/* About three quarters of the stack, 512-byte frames plus overhead. */
	int max = (int)(CO_STACK_SIZE * 3 / 4 / 600);
	depth_reached = 0;
	co_spawn(go_deep, &max);
	co_spawn(go_deep, &max);
	co_run();
	if (depth_reached != max)
		th_fail("expected recursion to depth %d, reached %d", max, depth_reached);
}
END_TEST

START_TEST(yield_outside_a_coroutine_does_nothing)
{
	th_about("", "co_yield() called from main should return at once");
	co_yield();
	co_run();	/* nothing to run */
}
END_TEST

static Suite *co_suite(void)
{
	Suite *s = th_suite("coroutines");
	TCase *tc = th_tcase(s, "coroutines", th_promise()->coroutine_todos);
	th_test(tc, runs_coroutines_in_turn_order);
	th_test(tc, a_coroutine_can_spawn_another);
	th_test(tc, ten_thousand_coroutines_come_and_go);
	th_test(tc, locals_survive_yields);
	th_test(tc, stack_is_16_byte_aligned_at_entry);
	th_test(tc, deep_recursion_fits_in_the_stack);
	tc = th_tcase(s, "scheduler", "");
	th_test(tc, yield_outside_a_coroutine_does_nothing);
	return s;
}

int main(void)
{
	return th_run(co_suite());
}
