/* Chapter 05's timer heap on its own (timers.c, linked without the hub):
 * timers added latest-first come out earliest-first, and thousands of
 * random adds and removes, in an order fixed by a seed, keep the heap in
 * order after every single step. The heap's array is public (timers.h), so
 * the tests look at it directly and say which slot went wrong. */
#define _GNU_SOURCE

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "timers.h"

/* Due before: the deadline, then the order of adding (timers.c's rule). */
static bool due_before(const struct timer *a, const struct timer *b)
{
	return a->deadline < b->deadline || (a->deadline == b->deadline && a->order < b->order);
}

/* The first slots of the heap, "[index] deadline/order", for messages. */
static const char *show_heap(const struct timer_heap *heap)
{
	static char text[512];
	size_t used = 0;
	text[0] = '\0';
	for (size_t i = 0; i < heap->len && used + 32 < sizeof text; i++)
		used += (size_t)snprintf(text + used, sizeof text - used, "%s[%zu] %lld/%llu",
					 i == 0 ? "" : ", ", i, (long long)heap->items[i]->deadline,
					 (unsigned long long)heap->items[i]->order);
	if (used + 32 >= sizeof text)
		snprintf(text + used, sizeof text - used, ", ...");
	return text;
}

/* Fail unless the heap holds exactly `expected` timers, each knowing its
 * slot, none due before its parent. `step` says what was just done. */
static void check_heap(const struct timer_heap *heap, size_t expected, const char *step)
{
	if (heap->len != expected)
		th_fail("%s: the heap holds %zu timers, expected %zu", step, heap->len, expected);
	for (size_t i = 0; i < heap->len; i++) {
		const struct timer *t = heap->items[i];
		if (t->index != i && t->index < heap->len && heap->items[t->index] == t)
			th_fail("%s: the timer due at %lld is in slot %zu and in slot %zu too: the "
				"timer that belonged in one of them is lost (t is written with place() "
				"where it stops). The heap: %s", step, (long long)t->deadline, i,
				t->index, show_heap(heap));
		if (t->index != i)
			th_fail("%s: the timer in slot %zu (deadline %lld) says its index is %zu: "
				"a timer moved without place() keeps a stale index, and removing it "
				"later takes the wrong slot out. The heap: %s", step, i,
				(long long)t->deadline, t->index, show_heap(heap));
		size_t parent = (i - 1) / 2;
		if (i > 0 && due_before(t, heap->items[parent]))
			th_fail("%s: the timer in slot %zu (deadline %lld, added %llu) is due before "
				"its parent in slot %zu (deadline %lld, added %llu); every timer must be "
				"due no earlier than its parent at (i - 1) / 2. The heap: %s", step, i,
				(long long)t->deadline, (unsigned long long)t->order, parent,
				(long long)heap->items[parent]->deadline,
				(unsigned long long)heap->items[parent]->order, show_heap(heap));
	}
}

START_TEST(timers_added_latest_first_come_out_earliest_first)
{
	th_about("sift_up", "a new timer must move up past every parent due after it: sift_up "
		 "stops too early, compares the wrong way, or loses the timer");
	enum { N = 9 };
	static struct timer timers[N];
	struct timer_heap heap = { 0 };
	char step[96];
	for (int i = 0; i < N; i++) {
		timers[i] = (struct timer){ .deadline = 100 - 10 * i, .index = TIMER_IDLE };
		if (!timers_add(&heap, &timers[i]))
			th_fail("timers_add: out of memory");
		snprintf(step, sizeof step, "after adding deadlines 100, 90, ... %d", 100 - 10 * i);
		check_heap(&heap, (size_t)i + 1, step);
	}
	for (int i = N - 1; i >= 0; i--) {
		struct timer *first = timers_first(&heap);
		if (first != &timers[i])
			th_fail("deadlines 100, 90, ... 20 were added; the timer due first should have "
				"deadline %lld, but timers_first() gave %lld. The heap: %s",
				(long long)timers[i].deadline,
				first != NULL ? (long long)first->deadline : -1LL, show_heap(&heap));
		timers_remove(&heap, first);
	}
	timers_free(&heap);
}
END_TEST

/* xorshift64*: the same numbers on every machine, unlike rand(). */
static uint64_t next_random(uint64_t *state)
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return *state * 0x2545F4914F6CDD1DULL;
}

START_TEST(random_adds_and_removes_keep_the_heap_in_order)
{
	th_about("sift_up", "after every add, and after a remove that moved the last timer "
		 "into a hole, the heap must be in order: sift_up compares with the wrong parent, "
		 "the wrong way, stops early, or moves a parent without updating its index");
	enum { POOL = 200, STEPS = 30000, SEED = 20240501 };
	static struct timer pool[POOL];
	struct timer_heap heap = { 0 };
	uint64_t state = SEED;
	size_t held = 0;
	int64_t now = 0;
	char step[160];
	for (int i = 0; i < POOL; i++)
		pool[i] = (struct timer){ .index = TIMER_IDLE };
	for (long n = 1; n <= STEPS; n++) {
		uint64_t r = next_random(&state);
		struct timer *t = &pool[(r >> 8) % POOL];
		switch (r % 4) {
		case 0:
		case 1:	/* add, if it is idle: deadlines close together, ties often */
			if (t->index != TIMER_IDLE)
				continue;
			t->deadline = now + (int64_t)((r >> 32) % 40);
			if (!timers_add(&heap, t))
				th_fail("timers_add: out of memory");
			held++;
			snprintf(step, sizeof step, "step %ld (seed %d): after adding a timer due at %lld",
				 n, SEED, (long long)t->deadline);
			break;
		case 2:	/* remove one from anywhere, as a woken waiter does */
			if (t->index == TIMER_IDLE)
				continue;
			snprintf(step, sizeof step, "step %ld (seed %d): after removing the timer in "
				 "slot %zu (deadline %lld)", n, SEED, t->index, (long long)t->deadline);
			timers_remove(&heap, t);
			held--;
			break;
		default: {	/* take the first out, as expire_timers() does */
			struct timer *first = timers_first(&heap);
			if (first == NULL)
				continue;
			for (int i = 0; i < POOL; i++)
				if (pool[i].index != TIMER_IDLE && due_before(&pool[i], first))
					th_fail("step %ld (seed %d): timers_first() gave the timer due at "
						"%lld (added %llu), but one due at %lld (added %llu) is in the "
						"heap too. The heap: %s", n, SEED, (long long)first->deadline,
						(unsigned long long)first->order, (long long)pool[i].deadline,
						(unsigned long long)pool[i].order, show_heap(&heap));
			now = first->deadline;
			timers_remove(&heap, first);
			held--;
			snprintf(step, sizeof step, "step %ld (seed %d): after taking out the first "
				 "timer (deadline %lld)", n, SEED, (long long)now);
			break;
		}
		}
		check_heap(&heap, held, step);
	}
	/* Whatever is left comes out in order, each timer once. */
	struct timer *last = NULL;
	while (held > 0) {
		struct timer *first = timers_first(&heap);
		if (first == NULL)
			th_fail("%zu timers should be left in the heap, but it is empty", held);
		if (last != NULL && due_before(first, last))
			th_fail("the timer due at %lld came out after one due at %lld",
				(long long)first->deadline, (long long)last->deadline);
		timers_remove(&heap, first);
		held--;
		check_heap(&heap, held, "while taking the last timers out in order");
		last = first;
	}
	timers_free(&heap);
}
END_TEST

static Suite *timers_suite(void)
{
	Suite *s = suite_create("timer heap");
	TCase *tc = th_tcase(s, "heap", "sift_up");
	th_test(tc, timers_added_latest_first_come_out_earliest_first);
	th_test(tc, random_adds_and_removes_keep_the_heap_in_order);
	return s;
}

int main(void)
{
	return th_run(timers_suite());
}
