/* Chapter 05: the hub's timers, a binary min-heap; see timers.h. */
#include "timers.h"

#include <stdlib.h>

static bool earlier(const struct timer *a, const struct timer *b)
{
	return a->deadline < b->deadline || (a->deadline == b->deadline && a->order < b->order);
}

static void place(struct timer_heap *heap, size_t i, struct timer *t)
{
	heap->items[i] = t;
	t->index = i;
}

/* Move the timer at i up while it is due before its parent. */
static void sift_up(struct timer_heap *heap, size_t i)
{
	struct timer *t = heap->items[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!earlier(t, heap->items[parent]))
			break;
		place(heap, i, heap->items[parent]);
		i = parent;
	}
	place(heap, i, t);
}

/* Move the timer at i down while a child is due before it. */
static void sift_down(struct timer_heap *heap, size_t i)
{
	struct timer *t = heap->items[i];
	for (;;) {
		size_t child = 2 * i + 1;
		if (child >= heap->len)
			break;
		if (child + 1 < heap->len && earlier(heap->items[child + 1], heap->items[child]))
			child++;
		if (!earlier(heap->items[child], t))
			break;
		place(heap, i, heap->items[child]);
		i = child;
	}
	place(heap, i, t);
}

bool timers_add(struct timer_heap *heap, struct timer *t)
{
	if (heap->len == heap->cap) {
		size_t cap = heap->cap ? heap->cap * 2 : 64;
		struct timer **items = realloc(heap->items, cap * sizeof *items);
		if (items == NULL)
			return false;
		heap->items = items;
		heap->cap = cap;
	}
	t->order = heap->added++;
	place(heap, heap->len++, t);
	sift_up(heap, t->index);
	return true;
}

void timers_remove(struct timer_heap *heap, struct timer *t)
{
	if (t->index == TIMER_IDLE)
		return;
	size_t i = t->index;
	t->index = TIMER_IDLE;
	struct timer *last = heap->items[--heap->len];
	if (last == t)
		return;
	/* The last timer fills the hole; it may belong above or below it. */
	place(heap, i, last);
	sift_up(heap, i);
	sift_down(heap, last->index);
}

struct timer *timers_first(const struct timer_heap *heap)
{
	return heap->len > 0 ? heap->items[0] : NULL;
}

void timers_free(struct timer_heap *heap)
{
	free(heap->items);
	*heap = (struct timer_heap){ 0 };
}
