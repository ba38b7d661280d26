/* Chapter 07: bounded channels; see sync.h. Items go straight from a sender
 * to a waiting receiver, and from a waiting sender into the room a receive
 * makes, so that a coroutine woken for an item always gets it: first come,
 * first served, and nobody who runs in between can take it. */
#include <errno.h>
#include <stdlib.h>

#include "sync.h"

int co_chan_init(struct co_chan *ch, size_t capacity)
{
	*ch = (struct co_chan){ .capacity = capacity };
	if (capacity == 0)
		return 0;
	ch->items = calloc(capacity, sizeof *ch->items);
	return ch->items != NULL ? 0 : -1;
}

void co_chan_free(struct co_chan *ch)
{
	free(ch->items);
	*ch = (struct co_chan){ .capacity = 0 };
}

static void push(struct co_chan *ch, void *item)
{
	ch->items[(ch->first + ch->len) % ch->capacity] = item;
	ch->len++;
}

static void *pop(struct co_chan *ch)
{
	void *item = ch->items[ch->first];
	ch->first = (ch->first + 1) % ch->capacity;
	ch->len--;
	return item;
}

static int fail(int err)
{
	errno = err;
	return -1;
}

int co_chan_send(struct co_chan *ch, void *item, int64_t deadline)
{
	if (ch->closed)
		return fail(EPIPE);
	struct waiter *receiver = waitq_wake(&ch->receivers, 0);
	if (receiver != NULL) {
		receiver->item = item;
		return 0;
	}
	if (ch->len < ch->capacity) {
		push(ch, item);
		return 0;
	}
	struct waiter w = { .item = item };
	int result = waitq_wait(&ch->senders, &w, "send", deadline);
	return result == 0 ? 0 : fail(result);
}

/* A receive made room, or finds a sender waiting on an unbuffered channel:
 * take the first waiting sender's item. false if no sender waits. */
static bool take_from_sender(struct co_chan *ch, void **item)
{
	struct waiter *sender = waitq_wake(&ch->senders, 0);
	if (sender == NULL)
		return false;
	*item = sender->item;
	return true;
}

int co_chan_recv(struct co_chan *ch, void **item, int64_t deadline)
{
	if (ch->len > 0) {
		*item = pop(ch);
		void *waiting;
		if (take_from_sender(ch, &waiting))
			push(ch, waiting);
		return 0;
	}
	if (take_from_sender(ch, item))
		return 0;
	if (ch->closed)
		return fail(EPIPE);
	struct waiter w = { .item = NULL };
	int result = waitq_wait(&ch->receivers, &w, "receive", deadline);
	if (result != 0)
		return fail(result);
	*item = w.item;
	return 0;
}

void co_chan_close(struct co_chan *ch)
{
	ch->closed = true;
	/* Receivers wait only on an empty buffer: nothing more will come. */
	waitq_wake_all(&ch->receivers, EPIPE);
	waitq_wake_all(&ch->senders, EPIPE);
}
