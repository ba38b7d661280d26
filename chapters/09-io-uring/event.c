/* Chapter 07: events; see sync.h. */
#include <errno.h>

#include "sync.h"

void co_event_init(struct co_event *ev)
{
	*ev = (struct co_event){ .set = false };
}

void co_event_set(struct co_event *ev)
{
	ev->set = true;
	waitq_wake_all(&ev->waiters, 0);
}

void co_event_clear(struct co_event *ev)
{
	ev->set = false;
}

bool co_event_is_set(const struct co_event *ev)
{
	return ev->set;
}

int co_event_wait(struct co_event *ev, int64_t deadline)
{
	if (ev->set)
		return 0;
	struct waiter w = { .item = NULL };
	int result = waitq_wait(&ev->waiters, &w, "event", deadline);
	if (result != 0) {
		errno = result;
		return -1;
	}
	return 0;
}
