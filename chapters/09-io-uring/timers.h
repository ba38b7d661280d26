/* Chapter 05: the hub's timers, a binary min-heap ordered by deadline. The
 * next timer due is always at the root (O(1) to find), and adding or
 * removing one moves it along one branch (O(log n)). */
#ifndef TIMERS_H
#define TIMERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct timer {
	int64_t deadline;       /* co_now_ms() time at which it is due */
	uint64_t order;         /* equal deadlines fire in the order added */
	size_t index;           /* its place in the heap, or TIMER_IDLE */
};

#define TIMER_IDLE SIZE_MAX

struct timer_heap {
	struct timer **items;   /* items[0] is due first; children of i at 2i+1, 2i+2 */
	size_t len, cap;
	uint64_t added;
};

/* Add t, whose deadline is set; false when out of memory. */
bool timers_add(struct timer_heap *heap, struct timer *t);

/* Take t out of the heap, if it is in it. */
void timers_remove(struct timer_heap *heap, struct timer *t);

/* The timer due first, or NULL if there is none. */
struct timer *timers_first(const struct timer_heap *heap);

void timers_free(struct timer_heap *heap);

#endif
