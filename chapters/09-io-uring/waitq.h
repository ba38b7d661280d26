/* Chapter 07: a queue of coroutines waiting for something that is neither a
 * socket nor a timer: an event to be set, an item or room in a channel, a
 * semaphore's permit. First come, first served. The inside of sync.h's
 * primitives, shared by event.c, chan.c and sem.c. */
#ifndef WAITQ_H
#define WAITQ_H

#include <stdbool.h>
#include <stdint.h>

struct co;

/* One waiting coroutine. It lives on that coroutine's stack for as long as
 * it waits, so waiting allocates nothing. */
struct waiter {
	struct co *co;
	void *item;             /* what a channel hands over, either way */
	bool queued;
	struct waiter *prev, *next;
};

struct waitq {
	struct waiter *head, *tail;
};

/* Park the running coroutine at the back of q until waitq_wake() picks it,
 * or deadline (co_now_ms() time, -1: none). Returns the result given to
 * waitq_wake(), or ETIMEDOUT, ECANCELED, EPERM (not in a coroutine). */
int waitq_wait(struct waitq *q, struct waiter *w, const char *what, int64_t deadline);

/* Take the first waiter still parked off q and wake it with result; NULL if
 * nobody waits. Until it runs, the caller may hand it something in ->item. */
struct waiter *waitq_wake(struct waitq *q, int result);

/* Wake every waiter, in the order they came. */
void waitq_wake_all(struct waitq *q, int result);

#endif
