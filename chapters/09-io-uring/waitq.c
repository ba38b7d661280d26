/* Chapter 07: wait queues; see waitq.h. */
#include "waitq.h"

#include <errno.h>

#include "hub.h"
#include "sched.h"

static void take_out(struct waitq *q, struct waiter *w)
{
	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		q->head = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	else
		q->tail = w->prev;
	w->prev = w->next = NULL;
	w->queued = false;
}

int waitq_wait(struct waitq *q, struct waiter *w, const char *what, int64_t deadline)
{
	struct co *co = co_current();
	if (co == NULL)
		return EPERM;
	*w = (struct waiter){ .co = co, .item = w->item, .queued = true, .prev = q->tail };
	if (q->tail != NULL)
		q->tail->next = w;
	else
		q->head = w;
	q->tail = w;
	co->wait = (struct co_wait){ .what = what, .fd = -1 };
	int result = hub_park_until(deadline);
	/* Woken by its deadline or a cancel, not by waitq_wake(): it is still
	 * in the queue, and must leave before its stack frame does. */
	if (w->queued)
		take_out(q, w);
	return result;
}

struct waiter *waitq_wake(struct waitq *q, int result)
{
	for (struct waiter *w = q->head; w != NULL; w = w->next) {
		/* A waiter whose deadline passed, or that was cancelled, is
		 * runnable already with that error, and leaves the queue when it
		 * runs: it must not be handed an item or a permit it would drop. */
		if (w->co->state != CO_WAITING)
			continue;
		take_out(q, w);
		co_wake(w->co, result);
		return w;
	}
	return NULL;
}

void waitq_wake_all(struct waitq *q, int result)
{
	while (waitq_wake(q, result) != NULL)
		continue;
}
